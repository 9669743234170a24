"""Scaling suite: fast path and LP over N x T, with quality, rendered next to the goals.

Why: one sweep of N in {10, 100, 1000, 10000} x T in {96, 288} plus the real Caltech day for
the fast path, the LP and the compile step, so regressions in scaling show; with the gRPC
benchmarks of ``bench_grpc`` it writes BENCHMARKS.md next to the goals.

Run all and write the report (about 4 minutes on 2 cores; ``--smoke`` for seconds):
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

from optimizer.core import kernels, lp
from optimizer.core.compile import Compiled, compile_problem
from optimizer.core.model import Problem

from .workloads import caltech_problem, tree_problem

#: ``BENCH_SMOKE=1`` (``--smoke``): the smallest sizes only, so CI keeps the code from rotting.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
SIZES = [(10, 96)] if SMOKE else [(n, t) for n in (10, 100, 1000, 10_000) for t in (96, 288)]
#: name -> (goal in seconds, what it is); from the project brief.
GOALS = {
    "fast caltech-53x144": (0.001, "fast Caltech <= 1 ms"),
    "fast tree-1000x96": (0.005, "1000x96 <= 5 ms"),
    "fast tree-10000x288": (0.150, "10000x288 <= 150 ms"),
    "lp tree-1000x96": (0.5, "LP 1000x96 <= 0.5 s"),
}
LP_LIMIT_S = 600.0


@cache
def _problem(name: str) -> Problem:
    if name == "caltech-53x144":
        return caltech_problem()
    n, t = (int(v) for v in name.removeprefix("tree-").split("x"))
    return tree_problem(n, t)


def c_small(name: str) -> bool:
    return not name.startswith("tree-10000")


@cache
def compiled(name: str) -> Compiled:
    return compile_problem(_problem(name))


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
    bound = lp.lp_energy_bound(c, time_limit_s=LP_LIMIT_S)
    assert bound is not None and e <= bound * (1 + 1e-6) + 1e-6
    benchmark.extra_info.update(lp_bound_kwh=bound, quality=e / bound if bound > 0 else 1.0)


@pytest.mark.parametrize("name", FAST_CASES)
def test_lp(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    c = compiled(name)
    res = benchmark.pedantic(lp.solve_lp, args=(c,), kwargs={"time_limit_s": LP_LIMIT_S},
                             rounds=3 if c.n * c.t <= 100_000 else 1, iterations=1)
    assert res.status == "optimal"
    benchmark.extra_info.update(n=c.n, t=c.t, lp_kwh=res.energy_kwh, build_s=res.build_s,
                                solve_s=res.solve_s)


@pytest.mark.parametrize("name", FAST_CASES)
def test_compile(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    """Domain model -> validated arrays: part of every request's latency, outside the kernels."""
    problem = _problem(name)
    c = benchmark.pedantic(compile_problem, args=(problem,), rounds=3 if c_small(name) else 1,
                           iterations=1, warmup_rounds=1 if c_small(name) else 0)
    benchmark.extra_info.update(n=c.n, t=c.t)


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
    """Markdown table of the solver benchmarks from a pytest-benchmark JSON."""
    rows = []
    for b in data["benchmarks"]:
        kind = b["name"].split("[")[0].removeprefix("test_")
        if kind not in ("fast", "lp", "compile"):
            continue
        case = b["param"]
        st, ex = b["stats"], b["extra_info"]
        key = f"{kind} {case}"
        goal = GOALS.get(key)
        ok = "" if goal is None else ("met" if st["median"] <= goal[0] else "**missed**")
        rows.append((kind, ex.get("n", 0), ex.get("t", 0), case, st["median"], st["min"],
                     st["rounds"], ex.get("quality"), goal[1] if goal else "", ok))
    order = {"fast": 0, "lp": 1, "compile": 2}
    rows.sort(key=lambda r: (order[r[0]], r[1], r[2]))
    out = ["| step | case | N | T | median | min | rounds | quality (fast / LP bound) | goal "
           "| |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, n, t, case, med, mn, rounds, q, goal_text, ok in rows:
        out.append(f"| {kind} | {case} | {n} | {t} | {_dur(med)} | {_dur(mn)} | {rounds} | "
                   f"{'' if q is None else f'{100 * q:.1f} %'} | {goal_text} | {ok} |")
    return "\n".join(out)


def _dur(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def render_grpc(data: dict[str, Any]) -> str:
    """Markdown table of the gRPC benchmarks (``bench_grpc``) next to their goals."""
    by = {b["name"]: b for b in data["benchmarks"]}

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    out = ["| measurement | result | goal | |", "|---|---|---|---|"]
    if b := by.get("test_optimize_50_single_client"):
        st = b["stats"]
        out.append(f"| `Optimize`, 50 connectors x 96 slots, 1 client | median "
                   f"{_dur(st['median'])}, {st['ops']:.0f} RPC/s | p50 <= 2 ms | "
                   f"{verdict(st['median'] <= 0.002)} |")
    if b := by.get("test_optimize_50_eight_clients"):
        ex = b["extra_info"]
        ok = ex["p50_ms"] <= 2.0 and ex["rpc_per_s"] >= 1500
        out.append(f"| `Optimize`, 50 connectors, 8 concurrent clients | {ex['rpc_per_s']:.0f} "
                   f"RPC/s, p50 {ex['p50_ms']:.1f} ms, p99 {ex['p99_ms']:.1f} ms, "
                   f"{ex['errors']} errors | >= 1,500 RPC/s, p50 <= 2 ms | {verdict(ok)} |")
    if b := by.get("test_event_to_plan"):
        st, n = b["stats"], b["extra_info"].get("connectors", 0)
        goal = n >= 1000  # the goal is for a 1,000-connector site (smoke runs use 50)
        out.append(f"| `SubmitEvent` -> new plan on `WatchPlans`, {n:,} connectors | median "
                   f"{_dur(st['median'])}, max {_dur(st['max'])} | "
                   f"{'<= 100 ms (1,000 connectors)' if goal else ''} | "
                   f"{verdict(st['median'] <= 0.1) if goal else ''} |")
    if b := by.get("test_start_to_serving"):
        st = b["stats"]
        out.append(f"| process start -> health SERVING (numba cache warm) | median "
                   f"{_dur(st['median'])} | | |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--json", default=None, help="also keep pytest-benchmark's JSON here")
    ap.add_argument("-k", default=None, help="pytest -k filter (e.g. 'not 10000')")
    ap.add_argument("--smoke", action="store_true",
                    help="smallest sizes and short gRPC runs: checks the suite works, in seconds")
    a = ap.parse_args(argv)
    if a.smoke:
        os.environ["BENCH_SMOKE"] = "1"  # read by the benchmark modules pytest imports below
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(a.json) if a.json else Path(tmp) / "bench.json"
        # gRPC first: the solver cases leave large problems cached in this (client) process,
        # whose garbage collector would then slow every client call
        args = [str(here / "bench_grpc.py"), str(here / "bench_suite.py"), "-q",
                "-p", "no:cacheprovider", "--benchmark-only", f"--benchmark-json={js}",
                "--benchmark-min-rounds=5"]
        if a.smoke:
            args += ["--benchmark-max-time=0.05"]
        if a.k:
            args += ["-k", a.k]
        rc = pytest.main(args)
        if rc != 0:
            return int(rc)
        data = json.loads(js.read_text())
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# Benchmarks", "",
          f"Measured {when} on {_machine()}"
          + (" (**smoke run: smallest sizes, not a measurement**)." if a.smoke else "."), "",
          "Command: `python -m benchmarks.bench_suite --out BENCHMARKS.md "
          "--json benchmarks/bench_suite.json` (pytest-benchmark over `benchmarks/bench_suite.py` "
          "and `benchmarks/bench_grpc.py`; the JSON has every statistic).", "",
          "## Solvers", "",
          "fast = the numba kernels (compile excluded), lp = build + HiGHS solve (inner "
          "polygon), compile = domain model -> validated arrays, which every solve does once. "
          "Workload: `benchmarks/workloads.py` `tree_problem(N, T)`: grid > panels > "
          "chargers > connectors, 40 % 1-phase cars on rotated phases, nodes sized at 35 % of "
          "what is below them so limits bind; 24 h horizon. `caltech-53x144`: the real busiest "
          "Caltech day, transformer derated to 50 kW. Quality = fast-path energy / outer-polygon "
          "LP energy bound (an upper bound on any plan).", "",
          render(data), "",
          "## Service (gRPC)", "",
          "Server in its own process (`python -m optimizer.service.server`, mode `fast`), clients "
          "in this one, loopback; one channel per client thread.", "",
          render_grpc(data), "",
          "Replay (whole-system) figures: see `reports/README.md` "
          "(`python -m optimizer.sim.replay ...`).", ""]
    protocols = here / "grid_protocols.md"  # measured by its own command, named inside
    if protocols.exists():
        md += [protocols.read_text()]
    Path(a.out).write_text("\n".join(md))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
