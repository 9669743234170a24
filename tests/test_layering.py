"""The folders are the architecture: these fail when an import crosses a layer the wrong way.

Layers, lowest first: ``optimizer.core`` (pure: no I/O, no adapter), ``optimizer.ocpp`` (OCPP
rendering, pure), ``optimizer.api`` (protobuf), ``optimizer.data`` (bundled examples), the
adapter families side by side (``service``, ``sim``, ``bridge``, ``grid``), then ``cli`` and the
package's public API. A module may import from its own layer's package and from lower layers;
adapter families never import each other. Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from .paths import REPO

PACKAGE = REPO / "optimizer"
GENERATED = PACKAGE / "api" / "smartcharging"

#: Rank of each top-level part of the package; equal ranks above the core are peers that must
#: not import each other.
RANK = {"core": 0, "ocpp": 1, "api": 2, "data": 3,
        "service": 4, "sim": 4, "bridge": 4, "grid": 4, "cli": 5, "": 6}

#: What the pure core may import besides itself: numerics and solvers, and the standard
#: library minus what does I/O or talks to the outside world.
CORE_THIRD_PARTY = {"numpy", "scipy", "numba", "highspy", "pyomo"}
CORE_FORBIDDEN_STDLIB = {
    "asyncio", "socket", "ssl", "selectors", "http", "urllib", "sqlite3", "subprocess",
    "multiprocessing", "concurrent", "threading", "shutil", "tempfile", "io", "os", "pathlib",
    "logging", "signal", "argparse", "json", "csv", "importlib", "webbrowser",
}
#: The few exceptions, each with its reason.
CORE_ALLOWED = {
    ("optimizer.core.lp", "os"): "points fd 1 at /dev/null while HiGHS prints its banner",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if GENERATED in path.parents:
            continue
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


#: Modules that import by computed name (``importlib.import_module`` / ``__import__`` with a
#: non-constant argument), which the walk cannot follow; each with its reason.
DYNAMIC_ALLOWED = {
    "optimizer": "the public API, loaded on first use from the names in its own table",
    "optimizer.service": "its public names, loaded on first use",
    "optimizer.cli": "grid commands delegated to their adapter modules, named in its table",
}
DYNAMIC = "<computed>"


def _dynamic(node: ast.Call) -> bool:
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "__import__") or (
        isinstance(f, ast.Attribute | ast.Name)
        and (f.attr if isinstance(f, ast.Attribute) else f.id) == "import_module")


def imports(name: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in a module, relative ones resolved.

    ``from pkg import x`` counts as importing ``pkg.x`` when that is a module, else ``pkg``.
    ``import_module("x")`` / ``__import__("x")`` with a constant name count as imports of it;
    with a computed name as :data:`DYNAMIC`.
    """
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    here = name.split(".") if _is_package(name) else name.split(".")[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dynamic(node):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) \
                    and not arg.value.startswith("."):
                out.append((node.lineno, arg.value))
            else:
                out.append((node.lineno, DYNAMIC))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((node.lineno, sub if sub in MODULES else mod))
    return out


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to ('' for ``optimizer`` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _internal(target: str) -> str | None:
    """The project module an import lands in, or None for outside packages."""
    if target != "optimizer" and not target.startswith("optimizer."):
        return None
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def test_the_walk_sees_the_package() -> None:
    assert "optimizer.core.solve" in MODULES and "optimizer.service.server" in MODULES
    assert ("optimizer.core.checker" in {t for _, t in imports("optimizer.core.solve")}
            or any(t.startswith("optimizer.core.checker") for _, t in
                   imports("optimizer.core.solve")))
    assert set(RANK) >= {_part(m) for m in MODULES}, "a new top-level part needs a rank"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _part(m) == "core"))
def test_core_imports_nothing_outside_the_core(name: str) -> None:
    bad = []
    for line, target in imports(name):
        top = target.split(".")[0]
        if target == DYNAMIC:
            bad.append(f"line {line}: an import by computed name")
        elif top == "optimizer":
            if _part(target) != "core":
                bad.append(f"line {line}: {target} (an adapter)")
        elif top == "__future__":
            continue
        elif top in sys.stdlib_module_names:
            if top in CORE_FORBIDDEN_STDLIB and (name, top) not in CORE_ALLOWED:
                bad.append(f"line {line}: {target} (I/O)")
        elif top not in CORE_THIRD_PARTY:
            bad.append(f"line {line}: {target} (not a numerics package)")
    assert not bad, f"{name} imports: " + "; ".join(bad)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    mine = _part(name)
    bad = []
    for line, target in imports(name):
        dest = _internal(target)
        if dest is None:
            continue
        theirs = _part(dest)
        if theirs == mine:
            continue
        if RANK[theirs] >= RANK[mine]:
            bad.append(f"line {line}: {dest}")
    assert not bad, f"{name} ({mine or 'optimizer'}) imports up or sideways: " + "; ".join(bad)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_computed_imports_only_where_allowed(name: str) -> None:
    lines = [line for line, target in imports(name) if target == DYNAMIC]
    assert not lines or name in DYNAMIC_ALLOWED, (
        f"{name} imports by computed name at lines {lines}: the layering walk cannot follow it")


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for _, target in imports(name):
            dest = _internal(target)
            if dest is not None and dest != name:
                graph[name].add(dest)
    found = cycle(graph)
    assert found is None, f"import cycle: {' -> '.join(found or [])}"
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None


def test_the_walk_catches_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a core module importing the service is caught."""
    fake = "optimizer.core._fake"
    MODULES[fake] = tmp_path / "_fake.py"
    MODULES[fake].write_text("def f():\n    from ..service import store\n    import sqlite3\n"
                             "    __import__('optimizer.sim.replay')\n"
                             "    import importlib\n    importlib.import_module(f'x{1}')\n")
    try:
        with pytest.raises(AssertionError, match=r"service\.store"):
            test_core_imports_nothing_outside_the_core(fake)
        with pytest.raises(AssertionError, match="sqlite3"):
            test_core_imports_nothing_outside_the_core(fake)
        with pytest.raises(AssertionError, match=r"sim\.replay \(an adapter\)"):
            test_core_imports_nothing_outside_the_core(fake)
        with pytest.raises(AssertionError, match="computed name"):
            test_core_imports_nothing_outside_the_core(fake)
        with pytest.raises(AssertionError, match="computed name"):
            test_computed_imports_only_where_allowed(fake)
        with pytest.raises(AssertionError, match="imports up"):
            test_imports_go_down_the_layers(fake)
    finally:
        del MODULES[fake]
