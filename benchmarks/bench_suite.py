"""Scaling suite: fast path and LP over N x T, with quality, rendered next to the goals.

Why: ``bench_core`` pins three headline cases; this sweeps N in {10, 100, 1000, 10000} x T in
{96, 288} (LP up to N = 1000) so regressions in scaling show, and writes BENCHMARKS.md.

Run all and write the report (about 2-4 minutes on 2 cores):
    python -m benchmarks.bench_suite --out BENCHMARKS.md --json benchmarks/bench_suite.json
or only the pytest-benchmark part:
    python -m pytest benchmarks/bench_suite.py --benchmark-only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optimizer import kernels, lp
from optimizer.compile import Compiled, compile_problem

from .workloads import caltech_problem, tree_problem

SIZES = [(n, t) for n in (10, 100, 1000, 10_000) for t in (96, 288)]
LP_SIZES = [(n, t) for n, t in SIZES if n <= 1000]
#: name -> (goal in seconds, what it is); from the project brief.
GOALS = {
    "fast caltech-53x144": (0.001, "fast Caltech <= 1 ms"),
    "fast tree-1000x96": (0.005, "1000x96 <= 5 ms"),
    "fast tree-10000x288": (0.150, "10000x288 <= 150 ms"),
    "lp tree-1000x96": (0.5, "LP 1000x96 <= 0.5 s"),
}


@cache
def compiled(name: str) -> Compiled:
    if name == "caltech-53x144":
        return compile_problem(caltech_problem())
    n, t = (int(v) for v in name.removeprefix("tree-").split("x"))
    return compile_problem(tree_problem(n, t))


def _energy(c: Compiled, x: np.ndarray) -> float:
    return float(((x * c.hours).sum(axis=1) * c.kw_per_a).sum())


FAST_CASES = ["caltech-53x144", *(f"tree-{n}x{t}" for n, t in SIZES)]


@pytest.mark.parametrize("name", FAST_CASES)
def test_fast(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    kernels.warmup()
    c = compiled(name)
    x = benchmark(kernels.allocate, c)
    e = _energy(c, x)
    benchmark.extra_info.update(n=c.n, t=c.t, fast_kwh=e,
                                requested_kwh=float((c.need_ah * c.kw_per_a).sum()))
    if c.n <= 1000:
        bound = lp.lp_energy_bound(c, time_limit_s=60.0)
        if bound:
            benchmark.extra_info.update(lp_bound_kwh=bound, quality=e / bound)


@pytest.mark.parametrize("name", [f"tree-{n}x{t}" for n, t in LP_SIZES])
def test_lp(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    c = compiled(name)
    res = benchmark.pedantic(lp.solve_lp, args=(c,), kwargs={"time_limit_s": 60.0},
                             rounds=3 if c.n * c.t <= 100_000 else 1, iterations=1)
    assert res.status == "optimal"
    benchmark.extra_info.update(n=c.n, t=c.t, lp_kwh=res.energy_kwh, build_s=res.build_s,
                                solve_s=res.solve_s)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def render(data: dict[str, Any]) -> str:
    """Markdown table from a pytest-benchmark JSON."""
    rows = []
    for b in data["benchmarks"]:
        kind = "fast" if b["name"].startswith("test_fast") else "lp"
        case = b["param"]
        st, ex = b["stats"], b["extra_info"]
        key = f"{kind} {case}"
        goal = GOALS.get(key)
        ok = "" if goal is None else ("met" if st["median"] <= goal[0] else "**missed**")
        rows.append((kind, ex.get("n", 0), ex.get("t", 0), case, st["median"], st["min"],
                     st["rounds"], ex.get("quality"), goal[1] if goal else "", ok))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    out = ["| solver | case | N | T | median | min | rounds | quality (fast / LP bound) | goal "
           "| |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, n, t, case, med, mn, rounds, q, goal_text, ok in rows:
        fmt = (lambda s: f"{s * 1e3:.2f} ms") if med < 1 else (lambda s: f"{s:.2f} s")
        out.append(f"| {kind} | {case} | {n} | {t} | {fmt(med)} | {fmt(mn)} | {rounds} | "
                   f"{'' if q is None else f'{100 * q:.1f} %'} | {goal_text} | {ok} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--json", default=None, help="also keep pytest-benchmark's JSON here")
    ap.add_argument("-k", default=None, help="pytest -k filter (e.g. 'not 10000')")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(a.json) if a.json else Path(tmp) / "bench.json"
        args = [__file__, "-q", "-p", "no:cacheprovider", "--benchmark-only",
                f"--benchmark-json={js}", "--benchmark-min-rounds=5"]
        if a.k:
            args += ["-k", a.k]
        rc = pytest.main(args)
        if rc != 0:
            return int(rc)
        data = json.loads(js.read_text())
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# Benchmarks", "",
          f"Measured {when} on {_machine()}.", "",
          "Command: `python -m benchmarks.bench_suite --out BENCHMARKS.md "
          "--json benchmarks/bench_suite.json` (pytest-benchmark; numba compile and "
          "`compile_problem` excluded; LP = build + HiGHS solve, inner polygon).", "",
          "Workload: `benchmarks/workloads.py` `tree_problem(N, T)`: grid > panels > chargers > "
          "connectors, 40 % 1-phase cars on rotated phases, nodes sized at 35 % of what is below "
          "them so limits bind; 24 h horizon. `caltech-53x144`: the real busiest Caltech day, "
          "transformer derated to 50 kW. Quality = fast-path energy / outer-polygon LP energy "
          "bound (N <= 1000).", "",
          "Goals: fast Caltech <= 1 ms, 1000x96 <= 5 ms, 10000x288 <= 150 ms; LP 1000x96 <= "
          "0.5 s. gRPC round-trip numbers are in README.md.", "",
          render(data), "",
          "Replay (whole-system) figures: see `reports/README.md` "
          "(`python -m optimizer.replay ...`).", ""]
    Path(a.out).write_text("\n".join(md))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
