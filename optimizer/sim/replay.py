"""Replay real sessions at a site the way a CSMS would, and score each charging strategy.

Why: solver benchmarks say how fast one plan is; a replay says what the site experiences when the
optimizer is re-run at every arrival, departure and slot boundary with only what is known then,
and cars draw less than allowed (taper). Every strategy sees the same sessions, limits, tariff and
curtailment events; the applied currents are scored with exact phasor magnitudes.

``python -m optimizer.sim.replay --days 2 --transformer-kw 35 --strategies fast,edf,uncontrolled``

This module is the loop and the command line; inputs are in :mod:`optimizer.sim.data`, the
strategies in :mod:`optimizer.sim.strategies`, scoring in :mod:`optimizer.sim.metrics`, and
their names are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from ..core.model import Options, Problem, Session, Signals, kw_per_amp
from .data import (
    CALTECH_TZ,
    load_sessions,
    parse_acn_json,
    parse_csv,
    parse_event,
    tou_price,
    tou_prices,
)
from .metrics import (
    Config,
    DayResult,
    Score,
    as_dict,
    day_problem,
    exact_loads,
    offline_optimum,
    row_groups,
    score,
    table,
    table_of,
)
from .report import write_report
from .strategies import STRATEGIES, Strategy, edf, grpc_strategy, strategy, uncontrolled

__all__ = [
    "CALTECH_TZ",
    "STRATEGIES",
    "Config",
    "DayResult",
    "Score",
    "Strategy",
    "as_dict",
    "day_problem",
    "edf",
    "exact_loads",
    "grpc_strategy",
    "load_sessions",
    "main",
    "offline_optimum",
    "parse_acn_json",
    "parse_csv",
    "parse_event",
    "replay_day",
    "row_groups",
    "run",
    "score",
    "sessions_by_day",
    "strategy",
    "table",
    "table_of",
    "tou_price",
    "tou_prices",
    "uncontrolled",
]


def _draw(s: Session, allowed: float, delivered: float, kwpa: float, hours: float,
          taper: bool) -> float:
    """What the car really takes: min(allowed, its own max, taper, what it still needs)."""
    want = s.vehicle_max_power_kw / kwpa if s.vehicle_max_power_kw else allowed
    v = min(allowed, want)
    req = s.energy_requested_kwh
    if req <= 0:
        return 0.0
    frac = delivered / req
    if taper and frac > 0.8:
        v = min(v, want * max(0.05, (1.0 - frac) / 0.2))
    return max(0.0, min(v, (req - delivered) / (kwpa * hours)))


def replay_day(day: datetime, sessions: tuple[Session, ...], cfg: Config, name: str,
               strat: Strategy) -> DayResult:
    """Re-enact one day: plan at every event, apply the first slot until the next event."""
    conns = {c.id: c for c in cfg.site.connectors}
    sessions = tuple(s for s in sessions if s.connector in conns)
    kwpa = np.array([kw_per_amp(conns[s.connector], s) for s in sessions])
    end = max((s.departure for s in sessions), default=day + timedelta(days=1))
    dt = timedelta(minutes=cfg.slot_minutes)
    edges = {day + k * dt for k in range(int((end - day) / dt) + 2)}
    edges |= {s.arrival for s in sessions} | {s.departure for s in sessions}
    times = sorted(t for t in edges if day <= t <= end)
    delivered = np.zeros(len(sessions))
    cur = np.zeros((len(sessions), len(times) - 1))
    solve_s: list[float] = []
    for k in range(len(times) - 1):
        t, t1 = times[k], times[k + 1]
        hours = (t1 - t).total_seconds() / 3600.0
        live = [i for i, s in enumerate(sessions)
                if s.arrival <= t < s.departure and delivered[i] < s.energy_requested_kwh - 1e-6]
        if not live:
            continue
        last = max(sessions[i].departure for i in live)
        horizon = min(24.0, max(1.0, math.ceil((last - t).total_seconds() / 3600.0)))
        sig = Signals(prices=tou_prices(t, int(horizon) + 1) if cfg.tariff else (),
                      events=tuple(e for e in cfg.events if e.end > t))
        prob = Problem(cfg.site, tuple(replace(sessions[i], arrival=t,
                                               energy_delivered_kwh=float(delivered[i]))
                                       for i in live),
                       t, sig, Options(slot_minutes=cfg.slot_minutes, horizon_hours=horizon,
                                       time_limit_s=cfg.lp_time_limit_s))
        t0 = time.perf_counter()
        allowed = strat(prob)
        solve_s.append(time.perf_counter() - t0)
        for j, i in enumerate(live):
            v = _draw(sessions[i], float(allowed[j]), float(delivered[i]), float(kwpa[i]), hours,
                      cfg.taper)
            cur[i, k] = v
            delivered[i] += v * kwpa[i] * hours
    return DayResult(name, day, sessions, np.array([t.timestamp() for t in times]), cur,
                     delivered, solve_s)


def _progress(msg: str) -> None:
    sys.stderr.write("\r" + msg[:100].ljust(100))
    sys.stderr.flush()


def sessions_by_day(sessions: Iterable[Session], first: datetime,
                    days: int) -> list[tuple[datetime, tuple[Session, ...]]]:
    out = []
    allv = sorted(sessions, key=lambda s: s.arrival)
    for d in range(days):
        a, b = first + timedelta(days=d), first + timedelta(days=d + 1)
        out.append((a.astimezone(UTC), tuple(s for s in allv if a <= s.arrival < b)))
    return out


def _warm_worker() -> None:
    from ..core.solve import warmup

    warmup()


def _replay_job(day: datetime, ss: tuple[Session, ...], cfg: Config, name: str,
                via_grpc: str | None) -> DayResult:
    return replay_day(day, ss, cfg, name, strategy(name, via_grpc))


def run(sessions: tuple[Session, ...], cfg: Config, strategies: list[str], first: datetime,
        days: int, *, lp_days: int | None = None, progress: bool = True,
        via_grpc: str | None = None, pool: Executor | None = None,
        ) -> tuple[dict[str, Score], dict[str, list[DayResult]], list[float]]:
    """Replay ``days`` days from ``first`` for every strategy; lp/auto only on ``lp_days``.

    Days are independent (each starts empty), so with a ``pool`` every (strategy, day) is a job;
    solve times are then measured with the pool's processes sharing the CPU.
    """
    per_day = sessions_by_day(sessions, first, days)
    optimum = []
    for k, (day, ss) in enumerate(per_day):
        if progress:
            _progress(f"offline optimum day {k + 1}/{days}")
        optimum.append(offline_optimum(day, ss, cfg))
    n_days = {name: min(days, lp_days) if lp_days is not None and name in ("lp", "auto")
              else days for name in strategies}
    jobs = [(name, k) for name in strategies for k in range(n_days[name])]
    out: dict[tuple[str, int], DayResult] = {}
    if pool is None:
        strats = {name: strategy(name, via_grpc) for name in strategies}
        for done, (name, k) in enumerate(jobs):
            if progress:
                _progress(f"{name}: day {k + 1}/{n_days[name]} ({len(per_day[k][1])} sessions)"
                          f" [{done}/{len(jobs)}]")
            out[name, k] = replay_day(*per_day[k], cfg, name, strats[name])
    else:
        futures = {pool.submit(_replay_job, *per_day[k], cfg, name, via_grpc): (name, k)
                   for name, k in jobs}
        for done, fut in enumerate(as_completed(futures), 1):
            out[futures[fut]] = fut.result()
            if progress:
                _progress(f"replayed {done}/{len(jobs)} strategy-days")
    results = {name: [out[name, k] for k in range(n_days[name])] for name in strategies}
    scores = {name: score(results[name], optimum[:n_days[name]], cfg) for name in strategies}
    if progress:
        sys.stderr.write("\n")
    return scores, results, optimum


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="optimizer replay", description=__doc__.splitlines()[0])
    ap.add_argument("--input", help="CSV or ACN-Data JSON file (default: bundled Caltech month)")
    ap.add_argument("--start", default="2019-03-01", help="first day (local date, Caltech tz)")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--lp-days", type=int, default=None,
                    help="replay lp/auto only on the first N days (they are ~100x slower)")
    ap.add_argument("--transformer-kw", type=float, nargs="+", default=[50.0])
    ap.add_argument("--strategies", default="fast,edf,uncontrolled")
    ap.add_argument("--slot-minutes", type=int, default=10)
    ap.add_argument("--no-taper", action="store_true")
    ap.add_argument("--no-tariff", action="store_true")
    ap.add_argument("--event", action="append", default=[], metavar="START,END,KW",
                    help="curtailment on the transformer (ISO times; naive = UTC)")
    ap.add_argument("--report", help="write a Markdown report with PNG plots into this directory")
    ap.add_argument("--json", help="write the scores as JSON here")
    ap.add_argument("--lp-time-limit", type=float, default=1.0,
                    help="time limit per lp/auto plan, s (small instances also run a MILP)")
    ap.add_argument("--via-grpc", metavar="HOST:PORT",
                    help="plan fast/lp/auto through a running server's Optimize RPC")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes replaying days in parallel (solve times then share the CPU)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.workers < 1:
        ap.error("--workers must be at least 1")
    from ..data.examples import caltech_site

    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            ap.error(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
    sessions = load_sessions(a.input)
    first = datetime.fromisoformat(a.start)
    first = first if first.tzinfo else first.replace(tzinfo=CALTECH_TZ)
    if any(s in strategies for s in ("fast", "auto")):
        from ..core.solve import warmup

        warmup()
    runs = []
    # spawn, not fork: HiGHS's worker threads do not survive a fork (the children spin forever)
    pool = (ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_warm_worker) if a.workers > 1 else None)
    try:
        for kw in a.transformer_kw:
            site = caltech_site(kw)
            events = tuple(parse_event(e, site.nodes[0].id, k) for k, e in enumerate(a.event))
            cfg = Config(site, a.slot_minutes, not a.no_taper, not a.no_tariff, events,
                         a.lp_time_limit)
            scores, results, optimum = run(sessions, cfg, strategies, first, a.days,
                                           lp_days=a.lp_days, progress=not a.quiet,
                                           via_grpc=a.via_grpc, pool=pool)
            runs.append((kw, cfg, scores, results, optimum))
            print(f"\n## transformer {kw:g} kW, {a.days} day(s) from {a.start}")
            print(table(scores))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    lp_run = [s for s in strategies if s in ("lp", "auto")]
    meta = {"argv": argv if argv is not None else sys.argv[1:], "start": a.start,
            "days": a.days, "slot_minutes": a.slot_minutes, "workers": a.workers,
            "lp_days": (min(a.days, a.lp_days) if a.lp_days is not None else a.days)
            if lp_run else None,
            "taper": not a.no_taper, "lp_time_limit_s": a.lp_time_limit,
            "tariff": not a.no_tariff, "events": a.event, "via_grpc": a.via_grpc}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(
            {"meta": meta, "runs": [{"transformer_kw": kw, "scores": {k: as_dict(v)
                                                                      for k, v in sc.items()}}
                                    for kw, _, sc, _, _ in runs]}, indent=1))
    if a.report:
        path = write_report(Path(a.report), runs, meta)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
