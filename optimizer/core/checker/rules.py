"""The exact rules, as the domain defines them, on per-segment arrays.

Connector bounds, minimum, grid and discrete set; a car's own limits; the energy it gets while
present (``_Delivered``); node limits from baselines, capacity limits and curtailment events at
the planned currents and at the worst partial draw; and what makes a profile malformed. Apart
from the malformed-profile rules, which always run, they run only where a screen flags, so they
alone decide what is reported.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import numpy as np

from ..model import (
    PHASES,
    CapacityLimit,
    Connector,
    CurtailmentEvent,
    Node,
    Problem,
    Session,
)
from ..plan import Plan, Violation
from .phasor import _box_max, _direction_sums, _phasor_terms, _planned_magnitude
from .timeline import (
    C128,
    ENERGY_TOL,
    F64,
    I64,
    REL_TOL,
    ZERO_A,
    Bools,
    _Loads,
    _Points,
    _Report,
    _Segments,
    _tol,
    _us,
)

PARTIAL = "if some cars draw less"


def _structure(
    problem: Problem,
    plan: Plan,
    conns: dict[str, Connector],
    sessions: dict[str, Session],
    pts: _Points,
    out: list[Violation],
) -> dict[str, list[int]]:
    """Profile indices by connector; what a charger would reject or misread becomes malformed."""

    def bad(subject: str, at: datetime | None, value: float, limit: float, msg: str) -> None:
        out.append(Violation("malformed_profile", subject, at, at, value, limit, msg))

    if plan.start != problem.now or plan.end != problem.horizon_end:
        bad(
            "plan",
            plan.start,
            (plan.end - plan.start).total_seconds(),
            (problem.horizon_end - problem.now).total_seconds(),
            f"plan covers [{plan.start.isoformat()}, {plan.end.isoformat()}), the problem "
            f"[{problem.now.isoformat()}, {problem.horizon_end.isoformat()})",
        )
    start_us = _us(plan.start)
    tl = pts.t.tolist()
    ptr = pts.ptr.tolist()
    # profiles with a point that does not come after its predecessor
    step_back = np.zeros(pts.t.shape[0], dtype=np.bool_)
    step_back[1:] = pts.t[1:] <= pts.t[:-1]
    step_back[pts.ptr[:-1][pts.ptr[:-1] < pts.t.shape[0]]] = False  # first points
    where = np.searchsorted(pts.ptr, np.flatnonzero(step_back), side="right") - 1
    unordered = set(where.tolist())
    by_conn: dict[str, list[int]] = defaultdict(list)
    for pi, prof in enumerate(plan.profiles):
        cid = prof.connector
        if cid not in conns:
            bad(cid, None, 0.0, 0.0, f"profile for unknown connector {cid!r}")
            continue
        if by_conn[cid]:
            bad(cid, None, len(by_conn[cid]) + 1, 1, f"connector {cid} has more than one profile")
        by_conn[cid].append(pi)
        for sid in prof.sessions:
            if sid not in sessions:
                bad(cid, None, 0.0, 0.0, f"profile of {cid} names unknown session {sid!r}")
            elif sessions[sid].connector != cid:
                bad(
                    cid,
                    None,
                    0.0,
                    0.0,
                    f"profile of {cid} names session {sid} of connector {sessions[sid].connector}",
                )
        lo, hi = ptr[pi], ptr[pi + 1]
        if hi > lo and tl[lo] < start_us:
            bad(
                cid,
                prof.points[0].start,
                (tl[lo] - start_us) / 1e6,
                0.0,
                f"profile of {cid} starts at {prof.points[0].start.isoformat()}, before the plan "
                f"start {plan.start.isoformat()}",
            )
        if pi not in unordered:
            continue
        for k in range(1, hi - lo):
            if tl[lo + k] <= tl[lo + k - 1]:
                bad(
                    cid,
                    prof.points[k].start,
                    (tl[lo + k] - tl[lo + k - 1]) / 1e6,
                    0.0,
                    f"profile of {cid}: point {k} at {prof.points[k].start.isoformat()} does not "
                    f"come after point {k - 1} at {prof.points[k - 1].start.isoformat()}",
                )
    return dict(by_conn)


def _effective_events(events: Iterable[CurtailmentEvent]) -> list[CurtailmentEvent]:
    """Only the highest modification of each event id is in force."""
    events = list(events)
    top: dict[str, int] = {}
    for ev in events:
        top[ev.id] = max(top.get(ev.id, ev.modification), ev.modification)
    return [ev for ev in events if ev.modification == top[ev.id]]


def _connector_rows(rep: _Report, y: F64, cs: list[Connector], ids: list[str]) -> None:
    """The connector rules on per-segment currents [R, S]."""
    mx = np.asarray([c.max_current_a for c in cs], dtype=np.float64)[:, None]
    mn = np.asarray([c.min_current_a for c in cs], dtype=np.float64)[:, None]
    step = np.asarray([c.current_step_a for c in cs], dtype=np.float64)[:, None]
    listed = np.asarray([bool(c.allowed_currents_a) for c in cs])[:, None]
    nan = np.isnan(y)
    rep.matrix(
        "connector_bounds",
        ids,
        nan,
        y,
        mx,
        "connector {subject}: current is NaN (limit {limit:g} A)",
    )
    rep.matrix(
        "connector_bounds",
        ids,
        y > mx + _tol(mx),
        y,
        mx,
        "connector {subject}: {value:.6g} A above its maximum {limit:.6g} A",
    )
    rep.matrix(
        "connector_bounds",
        ids,
        y < -ZERO_A,
        y,
        np.zeros_like(mx),
        "connector {subject}: negative current {value:.6g} A",
        severity=-y,
    )
    on = y > ZERO_A
    low = on & ~listed & (y < mn - _tol(mn))
    rep.matrix(
        "min_current",
        ids,
        low,
        y,
        mn,
        "connector {subject}: {value:.6g} A is neither 0 nor at least its minimum {limit:.6g} A",
        severity=mn - y,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(step > 0, (y - mn) / np.where(step > 0, step, 1.0), 0.0)
        off = np.abs(k - np.round(k)) * step
        nearest = mn + np.round(k) * step
    grid = on & ~listed & ~low & (step > 0) & (off > _tol(y))
    for r in np.flatnonzero(grid.any(axis=1)).tolist():
        rep.runs(
            "grid_step",
            ids[r],
            grid[r],
            y[r],
            nearest[r],
            "connector {subject}: {value:.6g} A is not on its grid {lo:g} + k * {step:g} A "
            "(nearest {limit:.6g} A)",
            severity=off[r],
            lo=cs[r].min_current_a,
            step=cs[r].current_step_a,
        )
    for r, c in enumerate(cs):
        if not c.allowed_currents_a:
            continue
        allowed = np.asarray((0.0, *c.allowed_currents_a), dtype=np.float64)
        gap = np.abs(y[r][:, None] - allowed[None, :])
        dist = np.min(gap, axis=1)
        nearest = allowed[np.argmin(np.where(np.isnan(gap), np.inf, gap), axis=1)]
        bad = ~nan[r] & (dist > _tol(y[r]))
        rep.runs(
            "discrete_set",
            ids[r],
            bad,
            y[r],
            nearest,
            "connector {subject}: {value:.6g} A is not one of 0, {allowed} A (nearest {limit:g} A)",
            severity=dist,
            allowed=", ".join(f"{a:g}" for a in c.allowed_currents_a),
        )


def _vehicle_rules(rep: _Report, loads: _Loads, i: int, x: F64, pres: Bools) -> None:
    s = loads.sessions[i]
    on = pres & (x > ZERO_A)
    if not on.any():
        return
    if s.vehicle_max_current_a is not None:
        lim = s.vehicle_max_current_a
        rep.runs(
            "vehicle_bounds",
            s.id,
            on & (x > lim + _tol(lim)),
            x,
            lim,
            "session {subject}: {value:.6g} A above the vehicle maximum {limit:.6g} A",
        )
    if s.vehicle_max_power_kw is not None:
        lim = s.vehicle_max_power_kw / loads.kwpa[i]
        rep.runs(
            "vehicle_bounds",
            s.id,
            on & (x > lim + _tol(lim)),
            x,
            lim,
            "session {subject}: {value:.6g} A above the vehicle power {kw:g} kW = {limit:.6g} A",
            kw=s.vehicle_max_power_kw,
        )
    if s.vehicle_min_current_a is not None:
        lim = s.vehicle_min_current_a
        rep.runs(
            "vehicle_bounds",
            s.id,
            on & (x < lim - _tol(lim)),
            x,
            lim,
            "session {subject}: {value:.6g} A is neither 0 nor at least the vehicle "
            "minimum {limit:.6g} A",
            severity=lim - x,
        )


def _remaining(s: Session) -> float:
    return max(0.0, s.energy_requested_kwh - s.energy_delivered_kwh)


class _Delivered:
    """kWh each session gets while present.

    ``kwh`` starts as a sum over pieces, within ``margin`` of the per-segment running sum; a
    decision that the margin could change first makes that entry exact (``exact``: the
    per-segment running sum itself, as the rules define it).
    """

    def __init__(self, loads: _Loads, seg: _Segments) -> None:
        self.loads, self.seg = loads, seg
        n = len(loads.sessions)
        self.want = np.asarray([_remaining(s) for s in loads.sessions], dtype=np.float64)
        edges = np.append(seg.start, seg.end[-1:])
        st = loads.x
        kwpa = loads.kwpa[st.row]
        with np.errstate(invalid="ignore", over="ignore"):
            e = st.v * ((edges[st.b] - edges[st.a]) / 3.6e9) * kwpa
            self.kwh = np.asarray(np.bincount(st.row, e, minlength=n), dtype=np.float64)
            size = np.bincount(st.row, np.abs(e), minlength=n)
            self.margin = np.asarray(1e-9 * (size + 1.0), dtype=np.float64)
        self.margin[~np.isfinite(self.kwh) | ~np.isfinite(self.margin)] = np.inf
        self.is_exact = np.zeros(n, dtype=np.bool_)
        self.cum: dict[int, tuple[F64, F64]] = {}

    def exact(self, idx: Sequence[int] | I64) -> None:
        idx = [i for i in np.asarray(idx, dtype=np.int64).tolist() if not self.is_exact[i]]
        if not idx:
            return
        per_seg = self.loads.x.dense(idx) * self.seg.hours[None, :] * self.loads.kwpa[idx][:, None]
        cum = np.cumsum(per_seg, axis=1)
        for n, i in enumerate(idx):
            self.cum[i] = (per_seg[n], cum[n])
            self.kwh[i] = cum[n, -1] if self.seg.n else 0.0
            self.margin[i] = 0.0
            self.is_exact[i] = True

    def __getitem__(self, i: int) -> float:
        self.exact([i])
        return float(self.kwh[i])


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= ENERGY_TOL + REL_TOL * max(abs(a), abs(b))


def _node_limits(
    node: Node, seg: _Segments, caps: list[CapacityLimit], events: list[CurtailmentEvent]
) -> tuple[list[F64], F64]:
    """Per-segment phase limits (A) and power limit (kW) of one node, inf = none.

    ``caps`` and ``events`` are the node's own capacity limits and events in force.
    """
    phase = [np.full(seg.n, np.inf) for _ in range(3)]
    if node.phase_limit_a is not None:
        for p in range(3):
            phase[p][:] = node.phase_limit_a[p]
    kw = np.full(seg.n, np.inf if node.power_limit_kw is None else node.power_limit_kw)
    for cap in caps:
        w = seg.window(cap.start, cap.end)
        if cap.limit_kw is not None:
            kw[w] = np.minimum(kw[w], cap.limit_kw)
        if cap.phase_limit_a is not None:
            for p in range(3):
                phase[p][w] = np.minimum(phase[p][w], cap.phase_limit_a[p])
    if node.power_limit_kw is not None:
        baseline: float | None = node.power_limit_kw
    elif node.phase_limit_a is not None:
        baseline = sum(node.phase_limit_a) * node.voltage_v / 1000.0
    else:
        baseline = None
    for ev in events:
        w = seg.window(ev.start, ev.end)
        if ev.limit_kw is not None:
            kw[w] = np.minimum(kw[w], ev.limit_kw)
        if ev.reduction_kw is not None and baseline is not None:
            kw[w] = np.minimum(kw[w], baseline - ev.reduction_kw)
    return [np.maximum(p, 0.0) for p in phase], np.maximum(kw, 0.0)


def _chain(nid: str | None, nodes: dict[str, Node]) -> list[str]:
    """A connector's node and its ancestors (a cycle is walked once)."""
    out: list[str] = []
    visited: set[str] = set()
    while nid is not None and nid in nodes and nid not in visited:
        visited.add(nid)
        out.append(nid)
        nid = nodes[nid].parent
    return out


def _const_limits(node: Node) -> tuple[float, ...]:
    """L1..L3 and kW limits of a node without signals, inf = none (not yet clipped at 0)."""
    ph = node.phase_limit_a
    phases = (math.inf,) * 3 if ph is None else (ph[0], ph[1], ph[2])
    return (*phases, math.inf if node.power_limit_kw is None else node.power_limit_kw)


def _node_rules(
    rep: _Report,
    node: Node,
    idx: list[int],
    limits: tuple[list[F64], F64],
    loads: _Loads,
    nonneg: bool,
) -> None:
    """The node rules on per-segment currents of the sessions ``idx`` below it."""
    phase_lim, kw_lim = limits
    n = kw_lim.shape[0]
    coef = loads.coef[idx]
    # (label, unit, terms, limit, owner): terms[j] per A of session idx[owner[j]]
    one = np.arange(len(idx))
    rows: list[tuple[str, str, C128, F64, I64]] = [
        (PHASES[p], "A", coef[:, p], phase_lim[p], one) for p in range(3)
    ]
    rows.append(("kW", "kW", loads.kwpa[idx].astype(np.complex128), kw_lim, one))
    three = np.repeat(one, 3)
    for pl in node.phasor_limits:
        plc = np.asarray(pl.coefficients, dtype=np.complex128)
        terms = _phasor_terms(coef, plc, loads.split[idx]).reshape(-1)
        rows.append((pl.name, "A", terms, np.full(n, max(pl.limit_a, 0.0)), three))
    x_s = np.nan_to_num(loads.x.dense(idx), nan=0.0)
    u_s = np.maximum(x_s, 0.0)
    for label, unit, c, lim, owner in rows:
        if not np.isfinite(lim).any() or not (np.abs(c) > 1e-12).any():
            continue
        x, u = x_s[owner], u_s[owner]
        dirs, w = _direction_sums(c, u)
        planned = np.abs(w.sum(axis=0)) if nonneg else _planned_magnitude(c, x)
        tol = _tol(lim)
        over = planned > lim + tol
        rep.runs(
            "node_limit",
            node.id,
            over,
            planned,
            lim,
            "node {subject} {label}: {value:.6g} {unit} above its limit {limit:.6g} {unit}",
            label=label,
            unit=unit,
        )
        worst = _box_max(dirs, w)
        rep.runs(
            "node_limit",
            node.id,
            ~over & (worst > lim + tol),
            worst,
            lim,
            "node {subject} {label}: {value:.6g} {unit} above its limit {limit:.6g} {unit} "
            + PARTIAL
            + " than planned (within the limit at the planned currents)",
            label=label,
            unit=unit,
        )
