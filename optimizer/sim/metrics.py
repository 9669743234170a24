"""What a replay records and how it is scored.

``Config`` (the site and rules of a replay), ``DayResult`` (what one strategy did on one day),
``Score`` and ``score`` (energy delivered, sessions served, limit violations by exact phasor
magnitude, cost, demand response, solve times), the offline optimum that bounds them, and the
Markdown tables. The replay loop and the report both build on these, so they sit below both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ..core.compile import Compiled, compile_problem
from ..core.model import CurtailmentEvent, Options, Problem, Session, Signals, Site
from .data import tou_price, tou_prices


@dataclass
class Config:
    """The site and the rules of one replay: the same for every strategy it compares."""

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
