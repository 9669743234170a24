"""Core solver benchmarks (pytest-benchmark). Goals on a 2-core machine, compile time excluded:

fast path: Caltech 53 x 144 <= 1 ms; 1,000 x 96 <= 5 ms; 10,000 x 288 <= 150 ms.
LP (build + solve, HiGHS): 1,000 x 96 <= 0.5 s.

Run: ``.venv/bin/python -m pytest benchmarks/bench_core.py --benchmark-only``.
Quality (fast energy / LP bound) is recorded in each benchmark's extra_info.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest

from optimizer import kernels, lp
from optimizer.compile import Compiled, compile_problem
from optimizer.model import Problem

from .workloads import caltech_problem, tree_problem

CASES: dict[str, Callable[[], Problem]] = {
    "caltech-53x144": caltech_problem,
    "tree-1000x96": lambda: tree_problem(1000, 96),
    "tree-10000x288": lambda: tree_problem(10_000, 288),
}


@cache
def compiled(name: str) -> Compiled:
    return compile_problem(CASES[name]())


@cache
def compile_seconds() -> float:
    return kernels.warmup()


def _energy(c: Compiled, x: np.ndarray) -> float:
    return float(((x * c.hours).sum(axis=1) * c.kw_per_a).sum())


@pytest.mark.parametrize("name", list(CASES))
def test_fast_path(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.extra_info["numba_compile_s"] = compile_seconds()
    c = compiled(name)
    x = benchmark(kernels.allocate, c)
    benchmark.extra_info["fast_kwh"] = _energy(c, x)
    benchmark.extra_info["requested_kwh"] = float((c.need_ah * c.kw_per_a).sum())
    if c.n <= 1000:
        bound = lp.lp_energy_bound(c, time_limit_s=30.0)
        if bound:
            benchmark.extra_info["lp_bound_kwh"] = bound
            benchmark.extra_info["quality"] = _energy(c, x) / bound


@pytest.mark.parametrize("name", ["caltech-53x144", "tree-1000x96"])
def test_lp(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    c = compiled(name)
    res = benchmark.pedantic(lp.solve_lp, args=(c,), kwargs={"time_limit_s": 30.0},
                             rounds=3, iterations=1)
    assert res.status == "optimal"
    benchmark.extra_info["lp_kwh"] = res.energy_kwh
    benchmark.extra_info["build_s"] = res.build_s
    benchmark.extra_info["solve_s"] = res.solve_s


def test_compile_problem(benchmark) -> None:  # type: ignore[no-untyped-def]
    """Domain -> arrays for 1,000 x 96 (part of every request's latency)."""
    p = CASES["tree-1000x96"]()
    benchmark(compile_problem, p)
