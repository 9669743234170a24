"""``optimizer``'s public API: every name in ``__all__`` resolves, lazily, to the core's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

import optimizer
from optimizer.core import checker, model, solve


def test_all_names_resolve_to_the_core_objects() -> None:
    assert optimizer.__all__ == sorted(optimizer.__all__, key=str)
    for name in optimizer.__all__:
        assert getattr(optimizer, name).__module__.startswith("optimizer.core"), name
    assert optimizer.solve is solve.solve
    assert optimizer.check is checker.check
    assert optimizer.Problem is model.Problem


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = optimizer.no_such_thing  # type: ignore[attr-defined]


def test_import_is_lazy() -> None:
    """Adapters importing one corner of the package do not pay for numba and HiGHS."""
    code = "import sys, optimizer; import optimizer.core.model; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
