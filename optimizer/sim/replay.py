"""Replay real sessions at a site the way a CSMS would, and score each charging strategy.

Why: solver benchmarks say how fast one plan is; a replay says what the site experiences when the
optimizer is re-run at every arrival, departure and slot boundary with only what is known then,
and cars draw less than allowed (taper). Every strategy sees the same sessions, limits, tariff and
curtailment events; the applied currents are scored with exact phasor magnitudes.

``python -m optimizer.sim.replay --days 2 --transformer-kw 35 --strategies fast,edf,uncontrolled``
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..core.compile import GRID_EPS, Compiled, compile_problem, floor_to_grid
from ..core.model import (
    CurtailmentEvent,
    Mode,
    Options,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
    kw_per_amp,
)

STRATEGIES = ("fast", "lp", "auto", "edf", "uncontrolled")
#: Caltech's local standard time (the bundled month is March 2019, PST/PDT; days start 00:00 PST).
CALTECH_TZ = timezone(timedelta(hours=-8))


# --- input -----------------------------------------------------------------------------------


def _session(sid: str, station: str, arr: datetime, dep: datetime, kwh: float,
             max_kw: float | None) -> Session:
    return Session(id=sid, connector=station, arrival=arr.astimezone(UTC),
                   departure=dep.astimezone(UTC), energy_requested_kwh=kwh,
                   vehicle_max_power_kw=max_kw)


def parse_csv(text: str, default_max_kw: float | None = 6.6) -> tuple[Session, ...]:
    """session_id, station_id, arrival, departure, energy_requested_kwh[, max_power_kw]."""
    out = []
    for row in csv.DictReader(text.splitlines()):
        mx = row.get("max_power_kw") or None
        out.append(_session(row["session_id"], row["station_id"],
                            datetime.fromisoformat(row["arrival"]),
                            datetime.fromisoformat(row["departure"]),
                            float(row["energy_requested_kwh"]),
                            float(mx) if mx else default_max_kw))
    return tuple(out)


def parse_acn_json(text: str, default_max_kw: float | None = 6.6) -> tuple[Session, ...]:
    """ACN-Data API JSON (``{"_items": [...]}``, RFC 1123 dates).

    The request is the driver's last ``kWhRequested`` when given (what a CSMS would know), else
    what was really delivered (``kWhDelivered``), as ACN-Sim does without user input.
    """
    items = json.loads(text)
    items = items.get("_items", items) if isinstance(items, dict) else items
    out = []
    for it in items:
        if not it.get("disconnectTime"):
            continue
        req = None
        inputs = it.get("userInputs") or []
        if inputs and inputs[-1].get("kWhRequested") is not None:
            req = float(inputs[-1]["kWhRequested"])
        if req is None:
            req = float(it["kWhDelivered"])
        out.append(_session(str(it.get("sessionID") or it.get("_id")),
                            str(it.get("spaceID") or it.get("stationID")),
                            parsedate_to_datetime(it["connectionTime"]),
                            parsedate_to_datetime(it["disconnectTime"]), req, default_max_kw))
    return tuple(out)


def load_sessions(path: str | None) -> tuple[Session, ...]:
    """The bundled Caltech month (None), a CSV file or an ACN-Data JSON file."""
    if path is None:
        from ..data.examples import caltech_sessions

        t0 = datetime(2000, 1, 1, tzinfo=UTC)
        return caltech_sessions(t0, t0 + timedelta(days=365 * 50))
    text = Path(path).read_text()
    return parse_acn_json(text) if text.lstrip().startswith(("{", "[")) else parse_csv(text)


# --- tariff and events ------------------------------------------------------------------------


def tou_price(t: datetime, tz: timezone = CALTECH_TZ) -> float:
    """Time-of-use price per kWh by local hour: night 0.12, day 0.30, evening peak 0.45."""
    h = t.astimezone(tz).hour
    return 0.12 if h < 6 or h >= 22 else 0.45 if 17 <= h < 21 else 0.30


def tou_prices(start: datetime, hours: int) -> tuple[TimeValue, ...]:
    t0 = start.replace(minute=0, second=0, microsecond=0)
    return tuple(TimeValue(t0 + timedelta(hours=k), t0 + timedelta(hours=k + 1),
                           tou_price(t0 + timedelta(hours=k))) for k in range(hours + 2))


def parse_event(spec: str, node: str, k: int) -> CurtailmentEvent:
    """``START,END,KW`` (ISO datetimes, naive = UTC) -> an absolute import limit on ``node``."""
    a, b, kw = spec.split(",")
    s, e = datetime.fromisoformat(a), datetime.fromisoformat(b)
    s = s if s.tzinfo else s.replace(tzinfo=UTC)
    e = e if e.tzinfo else e.replace(tzinfo=UTC)
    return CurtailmentEvent(f"replay-event-{k}", node, s.astimezone(UTC), e.astimezone(UTC),
                            limit_kw=float(kw))


# --- strategies -------------------------------------------------------------------------------

#: A strategy turns a problem into the current each session's connector may draw now (A).
Strategy = Callable[[Problem], np.ndarray]


def _solver_strategy(mode: Mode) -> Strategy:
    from ..core.solve import solve

    def run(problem: Problem) -> np.ndarray:
        plan = solve(replace(problem, options=replace(problem.options, mode=mode)))
        first = {p.connector: p.points[0].current_a for p in plan.profiles if p.points}
        return np.array([first.get(s.connector, 0.0) for s in problem.sessions])
    return run


def grpc_strategy(target: str, mode: Mode) -> Strategy:
    """Plan through a running server's Optimize RPC: the replay then also measures the wire."""
    import grpc

    from ..api.convert import request_from_problem
    from ..api.smartcharging.v1 import smartcharging_pb2_grpc as rpc

    stub = rpc.ChargingOptimizerStub(grpc.insecure_channel(target))

    def run(problem: Problem) -> np.ndarray:
        req = request_from_problem(replace(problem, options=replace(problem.options, mode=mode)))
        plan = stub.Optimize(req, timeout=60.0).plan
        first = {p.connector: p.points[0].current_a for p in plan.profiles if p.points}
        return np.array([first.get(s.connector, 0.0) for s in problem.sessions])
    return run


def row_groups(c: Compiled) -> list[tuple[str, str, np.ndarray, np.ndarray, int]]:
    """Exact rows: per (node, label) the union of its box-safe rows' members -> (idx, coef, k)."""
    groups: dict[tuple[str, str], dict[int, complex]] = {}
    first: dict[tuple[str, str], int] = {}
    for k, row in enumerate(c.rows):
        key = (row.node, row.label)
        first.setdefault(key, k)
        d = groups.setdefault(key, {})
        for p in range(c.row_ptr[k], c.row_ptr[k + 1]):
            d[int(c.row_idx[p])] = complex(c.row_re[p], c.row_im[p])
    return [(n, lab, np.fromiter(d.keys(), np.int64, len(d)),
             np.array(list(d.values()), dtype=np.complex128), first[(n, lab)])
            for (n, lab), d in groups.items()]


def edf(problem: Problem) -> np.ndarray:
    """Earliest deadline first: by departure, each car gets the largest current that keeps every
    (box-safe) row of the first slot within its limit, checked with exact phasor magnitudes.

    Plain numpy on purpose: it is the baseline the optimizer has to beat.
    """
    c = compile_problem(problem)
    x = np.zeros(c.n)
    if c.n == 0:
        return x
    coef = c.row_re + 1j * c.row_im
    lim = c.limit[:, 0] if c.k else np.zeros(0)
    z = np.zeros(c.k, dtype=np.complex128)  # current phasor sum per row
    order = sorted(range(c.n), key=lambda i: problem.sessions[i].departure)
    for i in order:
        h = c.hours[i, 0]
        if h <= 0 or c.ub[i, 0] <= 0 or c.need_ah[i] <= 1e-9:
            continue
        rows = c.sess_row[c.sess_ptr[i]:c.sess_ptr[i + 1]]
        ci = coef[c.sess_pos[c.sess_ptr[i]:c.sess_ptr[i + 1]]]
        hi = min(float(c.ub[i, 0]), c.need_ah[i] / h + c.lo[i] * 0)  # never more than it needs

        def ok(v: float, rows: np.ndarray = rows, ci: np.ndarray = ci) -> bool:
            return bool(np.all(np.abs(z[rows] + ci * v) <= lim[rows] * (1 - 1e-9)))

        if ok(hi):
            v = hi
        else:
            a, b = 0.0, hi  # |z + c v| is convex in v and ok(0) holds: bisection
            for _ in range(40):
                m = (a + b) / 2
                a, b = (m, b) if ok(m) else (a, m)
            v = a
        levels = c.lev_val[c.lev_ptr[i]:c.lev_ptr[i + 1]]
        v = floor_to_grid(v + GRID_EPS, float(c.lo[i]), float(c.step[i]), levels)
        if v < c.lo[i] - GRID_EPS or not ok(v):
            v = 0.0
        x[i] = v
        z[rows] += ci * v
    return x


def uncontrolled(problem: Problem) -> np.ndarray:
    """Every car at its own maximum from arrival, limits ignored: what an unmanaged site does."""
    c = compile_problem(problem)
    return c.ub[:, 0].copy() if c.t else np.zeros(c.n)


def strategy(name: str, via_grpc: str | None = None) -> Strategy:
    if name in ("fast", "lp", "auto"):
        return grpc_strategy(via_grpc, Mode(name)) if via_grpc else _solver_strategy(Mode(name))
    return {"edf": edf, "uncontrolled": uncontrolled}[name]


# --- the replay -------------------------------------------------------------------------------


@dataclass
class Config:
    site: Site
    slot_minutes: int = 10
    taper: bool = True
    tariff: bool = True
    events: tuple[CurtailmentEvent, ...] = ()
    lp_time_limit_s: float = 5.0


@dataclass
class DayResult:
    """What one strategy did on one day: step grid, applied currents, per-session energy."""

    strategy: str
    day: datetime
    sessions: tuple[Session, ...]
    times: np.ndarray  # [S+1] step edges, epoch s
    current: np.ndarray  # [N, S] drawn A
    delivered_kwh: np.ndarray  # [N]
    solve_s: list[float] = field(default_factory=list)


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


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class Score:
    strategy: str
    days: int
    requested_kwh: float
    delivered_kwh: float
    sessions: int
    served: int
    violations: int  # (row, step) pairs over the limit
    max_excess: float  # worst overshoot, in the row's unit
    peaks: dict[str, float]  # "node label" -> peak (A or kW)
    limits: dict[str, float]
    cost: float
    dr: list[dict[str, float]]  # per event: limit, max import kW, kWh above the limit
    solve_s: list[float]
    optimum_kwh: float

    @property
    def delivered_share(self) -> float:
        return self.delivered_kwh / self.requested_kwh if self.requested_kwh else 1.0

    @property
    def served_share(self) -> float:
        return self.served / self.sessions if self.sessions else 1.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.solve_s, q)) if self.solve_s else 0.0


def day_problem(day: datetime, sessions: tuple[Session, ...], cfg: Config) -> Problem:
    """The whole day with perfect knowledge, from midnight until the last departure."""
    end = max((s.departure for s in sessions), default=day + timedelta(hours=1))
    hours = max(1.0, math.ceil((end - day).total_seconds() / 3600.0))
    return Problem(cfg.site, sessions, day,
                   Signals(prices=tou_prices(day, int(hours) + 1) if cfg.tariff else (),
                           events=cfg.events),
                   Options(slot_minutes=cfg.slot_minutes, horizon_hours=hours))


def offline_optimum(day: datetime, sessions: tuple[Session, ...], cfg: Config) -> float:
    """Most energy any schedule could deliver that day (outer-polygon LP bound, no taper)."""
    from ..core.lp import lp_energy_bound

    if not sessions:
        return 0.0
    c = compile_problem(day_problem(day, sessions, cfg))
    b = lp_energy_bound(c, time_limit_s=60.0)
    return float(b) if b is not None else float("nan")


def exact_loads(r: DayResult, cfg: Config) -> tuple[list[tuple[str, np.ndarray, np.ndarray]],
                                                    np.ndarray]:
    """Per (node, label): exact magnitude per step and the limit in force; plus site kW per step."""
    c = compile_problem(day_problem(r.day, r.sessions, cfg))
    mid = (r.times[:-1] + r.times[1:]) / 2
    slot = np.clip(np.searchsorted(c.slot_end, mid, side="right"), 0, c.t - 1)
    out = []
    for node, label, idx, coef, k in row_groups(c):
        mag = np.abs((coef[:, None] * r.current[idx]).sum(axis=0))
        out.append((f"{node} {label}", mag, c.limit[k, slot]))
    kw = (r.current * c.kw_per_a[:, None]).sum(axis=0)
    return out, kw


def score(results: list[DayResult], optimum: list[float], cfg: Config) -> Score:
    req = dlv = cost = exc = 0.0
    n = served = viol = 0
    peaks: dict[str, float] = {}
    limits: dict[str, float] = {}
    solve_s: list[float] = []
    dr = [{"limit_kw": e.limit_kw or 0.0, "max_import_kw": 0.0, "kwh_over": 0.0}
          for e in cfg.events]
    for r in results:
        want = np.array([s.energy_requested_kwh for s in r.sessions])
        req += float(want.sum())
        dlv += float(r.delivered_kwh.sum())
        n += len(r.sessions)
        served += int((r.delivered_kwh >= 0.99 * want - 1e-9).sum())
        solve_s += r.solve_s
        loads, kw = exact_loads(r, cfg)
        h = np.diff(r.times) / 3600.0
        for name, mag, lim in loads:
            over = mag - lim
            bad = over > lim * 1e-6 + 1e-6
            viol += int(bad.sum())
            if bad.any():
                exc = max(exc, float(over[bad].max()))
            peaks[name] = max(peaks.get(name, 0.0), float(mag.max(initial=0.0)))
            fin = lim[np.isfinite(lim)]
            if fin.size:
                limits[name] = float(fin.max())
        prices = np.array([tou_price(datetime.fromtimestamp(t, UTC)) for t in r.times[:-1]])
        cost += float((kw * h * prices).sum()) if cfg.tariff else 0.0
        for e, d in zip(cfg.events, dr, strict=True):
            a, b = e.start.timestamp(), e.end.timestamp()
            ov = np.clip(np.minimum(r.times[1:], b) - np.maximum(r.times[:-1], a), 0, None)
            on = ov > 0
            if on.any():
                d["max_import_kw"] = max(d["max_import_kw"], float(kw[on].max()))
                d["kwh_over"] += float((np.clip(kw - d["limit_kw"], 0, None) * ov / 3600).sum())
    name = results[0].strategy if results else "?"
    return Score(name, len(results), req, dlv, n, served, viol, exc, peaks, limits, cost, dr,
                 solve_s, float(np.nansum(optimum)))


# --- driver -----------------------------------------------------------------------------------


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
        from .report import write_report

        path = write_report(Path(a.report), runs, meta)
        print(f"wrote {path}")
    return 0


def as_dict(s: Score) -> dict[str, Any]:
    return {"days": s.days, "requested_kwh": s.requested_kwh, "delivered_kwh": s.delivered_kwh,
            "delivered_share": s.delivered_share, "sessions": s.sessions, "served": s.served,
            "served_share": s.served_share, "violations": s.violations,
            "max_excess": s.max_excess, "peaks": s.peaks, "limits": s.limits, "cost": s.cost,
            "demand_response": s.dr, "optimum_kwh": s.optimum_kwh,
            "ratio_to_optimum": s.delivered_kwh / s.optimum_kwh if s.optimum_kwh else None,
            "solve_ms_p50": s.pct(50) * 1e3, "solve_ms_p95": s.pct(95) * 1e3,
            "solve_ms_max": max(s.solve_s, default=0.0) * 1e3, "plans": len(s.solve_s)}


def _peak_cell(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda v: f"{v['peaks'].get(name, 0.0):.2f}"


def _event_cell(k: int) -> Callable[[dict[str, Any]], str]:
    return lambda v: (f"{v['demand_response'][k]['max_import_kw']:.1f} / "
                      f"{v['demand_response'][k]['kwh_over']:.2f}")


def table(scores: dict[str, Score]) -> str:
    """Markdown table, one column per strategy."""
    return table_of({n: as_dict(s) for n, s in scores.items()})


def table_of(d: dict[str, dict[str, Any]]) -> str:
    """``table`` from the scores as ``as_dict`` (and the JSON report) holds them."""
    names = list(d)
    first = d[names[0]]
    root = next(iter(first["peaks"]), "")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("days replayed", lambda v: f"{v['days']}"),
        ("sessions", lambda v: f"{v['sessions']}"),
        ("requested kWh", lambda v: f"{v['requested_kwh']:.1f}"),
        ("delivered kWh", lambda v: f"{v['delivered_kwh']:.1f}"),
        ("delivered share", lambda v: f"{100 * v['delivered_share']:.1f} %"),
        ("sessions served >= 99 %", lambda v: f"{100 * v['served_share']:.1f} %"),
        ("offline optimum kWh (LP bound)", lambda v: f"{v['optimum_kwh']:.1f}"),
        ("ratio to optimum", lambda v: f"{100 * (v['ratio_to_optimum'] or 0):.1f} %"),
        ("limit violations (row x step)", lambda v: f"{v['violations']}"),
        ("worst overshoot (A or kW)", lambda v: f"{v['max_excess']:.1f}"),
        ("energy cost (TOU)", lambda v: f"{v['cost']:.2f}"),
        ("plans", lambda v: f"{v['plans']}"),
        ("solve ms p50 / p95 / max",
         lambda v: f"{v['solve_ms_p50']:.1f} / {v['solve_ms_p95']:.1f} / {v['solve_ms_max']:.0f}"),
    ]
    for name in sorted({k for v in d.values() for k in v["peaks"] if k.startswith(
            ("transformer", root.split()[0])) and not k.endswith(" kW")}):
        rows.append((f"peak {name} (limit {first['limits'].get(name, float('nan')):.2f})",
                     _peak_cell(name)))
    for k in range(len(next(iter(d.values()))["demand_response"])):
        rows.append((f"event {k + 1}: max import kW / kWh over limit", _event_cell(k)))
    out = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    out += [f"| {label} | " + " | ".join(f(d[n]) for n in names) + " |" for label, f in rows]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
