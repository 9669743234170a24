"""The committed protobuf/gRPC modules are what protos/ generates (fails when stale)."""

from __future__ import annotations

import pytest

from optimizer.api._generate import OUT_DIR, generate


def test_generated_code_is_up_to_date() -> None:
    pytest.importorskip("grpc_tools")
    fresh = generate(OUT_DIR)
    assert fresh, "protoc produced nothing"
    for name, text in fresh.items():
        committed = (OUT_DIR / name).read_text()
        assert committed == text, f"{name} is stale: run python -m optimizer.api._generate"
