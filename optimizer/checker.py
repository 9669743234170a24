"""Independent checker: is a ``Plan`` safe and honest for a ``Problem``?

It re-derives every rule from the domain model and shares no code with the compiler or the
solvers (only the documented electrical facts of ``model``: ``phase_coefficients``, ``kw_per_amp``),
so that a bug there shows up here as a violation instead of being repeated. It reads profiles
exactly as a charger would and works on *elementary segments* (the union of every change point,
arrival, departure and signal window edge), so a limit or a stay that starts mid-slot is checked
exactly where it starts, not rounded to a slot.

Conventions (documented so a reader can tell a checker decision from a bug):

* times are handled as integer microseconds since the epoch, so edges compare exactly;
* a car draws its connector's current while one of its sessions is present (``[arrival,
  departure)``); an absent car draws nothing;
* limits use a tolerance of ``1e-6`` relative (absolute ``1e-6`` for limits below 1);
* a NaN current is reported as ``connector_bounds`` and counted as 0 in node sums;
* a negative limit (a reduction larger than the baseline) is treated as 0: drawing nothing is
  always allowed;
* a higher ``modification`` of a curtailment event supersedes lower ones of the same ``id``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np
from numpy.typing import NDArray

from .model import (
    PHASES,
    CapacityLimit,
    Connector,
    CurtailmentEvent,
    Node,
    Problem,
    Session,
    TimeValue,
    kw_per_amp,
    phase_coefficients,
)
from .plan import ConnectorProfile, Plan, SessionResult, Violation

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
C128 = NDArray[np.complex128]
Bools = NDArray[np.bool_]

__all__ = ["box_max_magnitude", "check"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
#: Relative tolerance of every limit (absolute below a limit of 1).
REL_TOL = 1e-6
#: A current at most this large (A) counts as zero.
ZERO_A = 1e-6
#: Energy figures may differ by this much (kWh) plus REL_TOL relative.
ENERGY_TOL = 1e-6
#: Up to this many coefficient directions the partial-draw maximum enumerates all arcs.
_ARC_ENUM_MAX = 16
PARTIAL = "if some cars draw less"


def _us(d: datetime) -> int:
    """Exact integer microseconds since the epoch (naive times are read as UTC)."""
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return (d - EPOCH) // _US


def _tol(limit: F64 | float) -> F64:
    return REL_TOL * np.maximum(np.abs(limit), 1.0)


@dataclass(frozen=True)
class _Segments:
    """Elementary time segments [start, end) covering the horizon; everything is constant on one."""

    start: I64
    end: I64
    hours: F64
    tz: tzinfo

    @property
    def n(self) -> int:
        return int(self.start.shape[0])

    def time(self, us: int) -> datetime:
        return (EPOCH + timedelta(microseconds=int(us))).astimezone(self.tz)

    def window(self, a: datetime, b: datetime) -> Bools:
        """Segments that a window [a, b) covers (edges are segment edges, so overlap = inside)."""
        return (self.start < _us(b)) & (self.end > _us(a))


def _runs(mask: Bools) -> list[tuple[int, int]]:
    """Maximal runs [a, b) of True in a 1-D mask."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


class _Report:
    """Collects violations, merging consecutive offending segments of one (kind, subject, label)."""

    def __init__(self, seg: _Segments) -> None:
        self.seg = seg
        self.items: list[Violation] = []

    def add(
        self,
        kind: str,
        subject: str,
        start: datetime | None,
        end: datetime | None,
        value: float,
        limit: float,
        message: str,
    ) -> None:
        self.items.append(Violation(kind, subject, start, end, value, limit, message))

    def runs(
        self,
        kind: str,
        subject: str,
        bad: Bools,
        value: F64,
        limit: F64 | float,
        text: str,
        severity: F64 | None = None,
        **fields: object,
    ) -> None:
        """One violation per run of offending segments, reporting its worst segment.

        ``text`` is a ``str.format`` template of ``subject``, ``value`` and ``limit`` of the worst
        segment (largest ``severity``, default ``value - limit``; NaN counts as worst) and of
        ``fields``. Ids only ever enter as arguments, so braces in them are harmless.
        """
        lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), bad.shape)
        sev = value - lim if severity is None else severity
        for a, b in _runs(bad):
            s = np.where(np.isnan(sev[a:b]), np.inf, sev[a:b])
            w = a + int(np.argmax(s))
            v, lv = float(value[w]), float(lim[w])
            t0, t1 = self.seg.time(int(self.seg.start[a])), self.seg.time(int(self.seg.end[b - 1]))
            msg = text.format(subject=subject, value=v, limit=lv, **fields)
            msg += f" from {t0.isoformat()} to {t1.isoformat()}"
            if b - a > 1 and np.ptp(value[a:b]) > 0:  # the value varies: say where it peaks
                msg += f" (worst at {self.seg.time(int(self.seg.start[w])).isoformat()})"
            self.add(kind, subject, t0, t1, v, lv, msg)

    def matrix(
        self,
        kind: str,
        subjects: Sequence[str],
        bad: Bools,
        value: F64,
        limit: F64,
        text: str,
        severity: F64 | None = None,
    ) -> None:
        """``runs`` for each row of [R, S] arrays (``limit`` broadcastable to them)."""
        lim = np.broadcast_to(limit, bad.shape)
        for r in np.flatnonzero(bad.any(axis=1)).tolist():
            sev = None if severity is None else severity[r]
            self.runs(kind, subjects[r], bad[r], value[r], lim[r], text, sev)


# --- exact worst case over partial draw ------------------------------------------------------


def box_max_magnitude(coef: C128, upper: F64, *, arcs: bool | None = None) -> F64:
    """max |sum_i coef[i] * x_i| over 0 <= x_i <= upper[i, t], for every column t.

    Cars may draw anything up to their profile, so this, not the magnitude at the planned
    currents, must stay within a phasor limit. The maximum of a norm over a box is at a vertex,
    i.e. at max |sum over a subset S of coef_i * upper_i|, and for the best subset the
    contributions all lie in one open half-plane. Sorting the directions by angle, every
    half-plane subset is a contiguous circular arc. With few directions we take the largest over
    *all* arcs (a superset of the half-plane sets, a subset of all subsets, hence exact and free
    of angle thresholds); with many, only the arcs of the half-planes between the breakpoints
    a_i +- 90 degrees (linear in the number of directions). ``arcs`` forces either way (tests).
    """
    dirs, w = _direction_sums(np.asarray(coef, dtype=np.complex128), upper)
    return _box_max(dirs, w, arcs)


def _direction_sums(coef: C128, upper: F64) -> tuple[F64, C128]:
    """Directions (rad, ascending) and per direction sum_i coef_i * upper[i, t]: [K], [K, T]."""
    upper = np.atleast_2d(np.asarray(upper, dtype=np.float64))
    keep = np.abs(coef) > 1e-12
    if not keep.all():
        coef, upper = coef[keep], upper[keep]
    ang = np.round(np.mod(np.angle(coef), 2 * math.pi), 9)
    dirs, inv = np.unique(ang, return_inverse=True)
    # One contribution per direction: coef_i are complex, so within a group they add exactly.
    g = np.zeros((dirs.shape[0], coef.shape[0]), dtype=np.complex128)
    g[inv, np.arange(coef.shape[0])] = coef
    w: C128 = g.real @ upper + 1j * (g.imag @ upper)
    return dirs.astype(np.float64), w


def _box_max(dirs: F64, w: C128, arcs: bool | None = None) -> F64:
    k = dirs.shape[0]
    if k == 0:
        return np.zeros(w.shape[1])
    if k == 1:
        return np.abs(w[0])
    pre = np.zeros((2 * k + 1, w.shape[1]), dtype=np.complex128)
    np.cumsum(np.vstack([w, w]), axis=0, out=pre[1:])
    best = np.abs(pre[k] - pre[0])
    if (k <= _ARC_ENUM_MAX) if arcs is None else arcs:
        for length in range(1, k):
            best = np.maximum(best, np.abs(pre[length : length + k] - pre[:k]).max(axis=0))
        return best
    cuts = np.unique(np.mod(np.concatenate([dirs + math.pi / 2, dirs - math.pi / 2]), 2 * math.pi))
    mids = (cuts + np.append(cuts[1:], cuts[0] + 2 * math.pi)) / 2
    for psi in mids:
        inside = np.cos(dirs - psi) > 0
        n_in = int(inside.sum())
        if n_in in (0, k):
            continue
        first = int(np.flatnonzero(inside & ~np.roll(inside, 1))[0])  # arc start, circularly
        best = np.maximum(best, np.abs(pre[first + n_in] - pre[first]))
    return best


def _planned_magnitude(coef: C128, x: F64) -> F64:
    """|sum_i coef[i] * x[i, t]| at the planned currents."""
    return np.abs(coef.real @ x + 1j * (coef.imag @ x))


# --- the checker -----------------------------------------------------------------------------


@dataclass
class _Loads:
    """Per session (a car on a connector): its current per segment while present, and facts."""

    sessions: list[Session]
    conn: list[Connector]
    present: Bools  # [N, S]
    x: F64  # [N, S] connector current while present, else 0 (NaN kept)
    kwpa: F64  # [N]
    coef: C128  # [N, 3] phasor per A on L1..L3


def check(problem: Problem, plan: Plan) -> list[Violation]:
    """Every violation of ``plan`` against ``problem`` (empty = safe and consistent)."""
    conns = {c.id: c for c in problem.site.connectors}
    sessions = {s.id: s for s in problem.sessions}
    malformed: list[Violation] = []
    memo: dict[datetime, int] = {}
    times = {id(p): _point_times(p, memo) for p in plan.profiles}
    profiles = _structure(problem, plan, conns, sessions, times, malformed)
    seg = _segments(problem, plan, times)
    rep = _Report(seg)
    rep.items.extend(malformed)

    prof_ids = sorted(profiles)
    y = np.zeros((len(prof_ids) + 1, seg.n))  # last row: connectors without a profile
    end_us = _us(plan.end)
    for r, cid in enumerate(prof_ids):
        vals = [_profile_values(p, times[id(p)], seg.start, end_us) for p in profiles[cid]]
        y[r] = vals[0] if len(vals) == 1 else np.max(np.vstack(vals), axis=0)  # NaN propagates
    row_of = {cid: r for r, cid in enumerate(prof_ids)}

    loads = _loads(problem, seg, y, row_of, conns)
    _connector_checks(rep, y[:-1], [conns[c] for c in prof_ids], prof_ids)
    _outside_stay(rep, y[:-1], prof_ids, loads, row_of)
    _vehicle_checks(rep, loads)
    delivered = _energy_checks(rep, loads, seg)
    _energy_report(rep, plan, loads, delivered, seg)
    _node_checks(rep, problem, loads, seg)
    return rep.items


def _structure(
    problem: Problem,
    plan: Plan,
    conns: dict[str, Connector],
    sessions: dict[str, Session],
    point_times: dict[int, I64],
    out: list[Violation],
) -> dict[str, list[ConnectorProfile]]:
    """Profiles by connector; everything a charger would reject or misread becomes malformed."""

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
    by_conn: dict[str, list[ConnectorProfile]] = defaultdict(list)
    for prof in plan.profiles:
        cid = prof.connector
        if cid not in conns:
            bad(cid, None, 0.0, 0.0, f"profile for unknown connector {cid!r}")
            continue
        if by_conn[cid]:
            bad(cid, None, len(by_conn[cid]) + 1, 1, f"connector {cid} has more than one profile")
        by_conn[cid].append(prof)
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
        times = point_times[id(prof)].tolist()
        if times and times[0] < start_us:
            bad(
                cid,
                prof.points[0].start,
                (times[0] - start_us) / 1e6,
                0.0,
                f"profile of {cid} starts at {prof.points[0].start.isoformat()}, before the plan "
                f"start {plan.start.isoformat()}",
            )
        for k in range(1, len(times)):
            if times[k] <= times[k - 1]:
                bad(
                    cid,
                    prof.points[k].start,
                    (times[k] - times[k - 1]) / 1e6,
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


def _segments(problem: Problem, plan: Plan, point_times: dict[int, I64]) -> _Segments:
    t0, t1 = _us(problem.now), _us(problem.horizon_end)
    edges = {t0, t1, _us(plan.start), _us(plan.end)}
    for t in point_times.values():
        edges.update(t.tolist())
    for s in problem.sessions:
        edges.update((_us(s.arrival), _us(s.departure)))
    sig = problem.signals
    windows: list[CapacityLimit | CurtailmentEvent | TimeValue] = [
        *sig.capacity,
        *sig.events,
        *sig.prices,
        *sig.carbon,
    ]
    for w in windows:
        edges.update((_us(w.start), _us(w.end)))
    e = np.asarray(sorted(t for t in edges if t0 <= t <= t1), dtype=np.int64)
    if e.shape[0] < 2:  # empty horizon: one empty segment keeps the arrays well-formed
        e = np.asarray([t0, t0], dtype=np.int64)
    tz = plan.start.tzinfo or UTC
    return _Segments(e[:-1], e[1:], (e[1:] - e[:-1]) / 3.6e9, tz)


def _point_times(prof: ConnectorProfile, cache: dict[datetime, int]) -> I64:
    """Change-point times in microseconds (profiles usually share their slot edges: memoised)."""
    out = np.empty(len(prof.points), dtype=np.int64)
    for k, p in enumerate(prof.points):
        us = cache.get(p.start)
        if us is None:
            us = cache[p.start] = _us(p.start)
        out[k] = us
    return out


def _profile_values(prof: ConnectorProfile, t: I64, seg_start: I64, end_us: int) -> F64:
    """Current per segment as a charger reads it: the latest point at or before the segment."""
    if not prof.points:
        return np.zeros(seg_start.shape[0])
    v = np.asarray([float(p.current_a) for p in prof.points], dtype=np.float64)
    order = np.argsort(t, kind="stable")  # equal times: the later point wins
    t, v = t[order], v[order]
    k = np.searchsorted(t, seg_start, side="right") - 1
    out = np.where(k >= 0, v[np.maximum(k, 0)], 0.0)
    out[seg_start >= end_us] = 0.0
    return out


def _loads(
    problem: Problem,
    seg: _Segments,
    y: F64,
    row_of: dict[str, int],
    conns: dict[str, Connector],
) -> _Loads:
    ss = [s for s in problem.sessions if s.connector in conns]
    cs = [conns[s.connector] for s in ss]
    arr = np.asarray([_us(s.arrival) for s in ss], dtype=np.int64).reshape(-1, 1)
    dep = np.asarray([_us(s.departure) for s in ss], dtype=np.int64).reshape(-1, 1)
    present = (seg.start[None, :] >= arr) & (seg.start[None, :] < dep)
    rows = np.asarray([row_of.get(s.connector, y.shape[0] - 1) for s in ss], dtype=np.int64)
    x = np.where(present, y[rows], 0.0) if ss else np.zeros((0, seg.n))
    kwpa = np.asarray([kw_per_amp(c, s) for c, s in zip(cs, ss, strict=True)], dtype=np.float64)
    coef = np.asarray(
        [phase_coefficients(c, s) for c, s in zip(cs, ss, strict=True)], dtype=np.complex128
    ).reshape(-1, 3)
    return _Loads(ss, cs, present, x, kwpa, coef)


def _connector_checks(rep: _Report, y: F64, cs: list[Connector], ids: list[str]) -> None:
    """Bounds, minimum, discrete set and grid: what the charger itself accepts."""
    if not cs:
        return
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


def _outside_stay(
    rep: _Report, y: F64, ids: list[str], loads: _Loads, row_of: dict[str, int]
) -> None:
    """Current on a connector while no car of the problem is plugged into it."""
    if not ids:
        return
    occupied = np.zeros(y.shape, dtype=np.bool_)
    for i, s in enumerate(loads.sessions):
        r = row_of.get(s.connector)
        if r is not None:
            occupied[r] |= loads.present[i]
    bad = (np.abs(y) > ZERO_A) & ~occupied
    rep.matrix(
        "outside_stay",
        ids,
        bad,
        y,
        np.zeros((1, 1)),
        "connector {subject}: {value:.6g} A while no session's car is present",
        severity=np.abs(y),
    )


def _vehicle_checks(rep: _Report, loads: _Loads) -> None:
    """A present car's own limits: max current, max power, min current."""
    for i, s in enumerate(loads.sessions):
        x, pres = loads.x[i], loads.present[i]
        on = pres & (x > ZERO_A)
        if not on.any():
            continue
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
                "session {subject}: {value:.6g} A above the vehicle power {kw:g} kW "
                "= {limit:.6g} A",
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


def _energy_checks(rep: _Report, loads: _Loads, seg: _Segments) -> F64:
    """Energy each session gets while present; more than it still wants is a violation."""
    if not loads.sessions:
        return np.zeros(0)
    per_seg = loads.x * seg.hours[None, :] * loads.kwpa[:, None]
    cum = np.cumsum(per_seg, axis=1)
    delivered = cum[:, -1] if seg.n else np.zeros(len(loads.sessions))
    for i, s in enumerate(loads.sessions):
        want = _remaining(s)
        if not delivered[i] > want + ENERGY_TOL + REL_TOL * want:  # NaN: connector_bounds
            continue
        over = np.flatnonzero(~(cum[i] <= want + ENERGY_TOL))
        a = int(over[0]) if over.size else 0
        drawn = np.flatnonzero(per_seg[i] != 0)
        b = int(drawn[-1]) if drawn.size else seg.n - 1
        rep.add(
            "energy_above_request",
            s.id,
            seg.time(int(seg.start[a])),
            seg.time(int(seg.end[max(a, b)])),
            float(delivered[i]),
            want,
            f"session {s.id}: the profile delivers {delivered[i]:.6g} kWh, it still wants "
            f"{want:.6g} kWh (exceeded from {seg.time(int(seg.start[a])).isoformat()})",
        )
    return delivered


def _energy_report(rep: _Report, plan: Plan, loads: _Loads, delivered: F64, seg: _Segments) -> None:
    """The plan's own per-session figures must match what its profiles deliver."""
    index = {s.id: i for i, s in enumerate(loads.sessions)}

    def stay(i: int) -> tuple[datetime | None, datetime | None]:
        p = np.flatnonzero(loads.present[i])
        if not p.size:
            return None, None
        return seg.time(int(seg.start[p[0]])), seg.time(int(seg.end[p[-1]]))

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= ENERGY_TOL + REL_TOL * max(abs(a), abs(b))

    seen: set[str] = set()
    res: SessionResult
    for res in plan.sessions:
        sid = res.session
        if sid not in index:
            rep.add(
                "energy_report",
                sid,
                None,
                None,
                res.expected_kwh,
                0.0,
                f"result for unknown session {sid!r}",
            )
            continue
        i = index[sid]
        t0, t1 = stay(i)
        if sid in seen:
            rep.add("energy_report", sid, t0, t1, 2, 1, f"session {sid} has more than one result")
        seen.add(sid)
        s = loads.sessions[i]
        if res.connector != s.connector:
            rep.add(
                "energy_report",
                sid,
                t0,
                t1,
                0.0,
                0.0,
                f"result of session {sid} names connector {res.connector}, it is on {s.connector}",
            )
        want = _remaining(s)
        got = float(delivered[i])
        checks = (
            ("requested_kwh", res.requested_kwh, want, "still wanted at plan start"),
            ("expected_kwh", res.expected_kwh, got, "delivered by the profile"),
            (
                "unmet_kwh",
                res.unmet_kwh,
                max(0.0, res.requested_kwh - res.expected_kwh),
                "requested - expected",
            ),
        )
        for name, value, truth, why in checks:
            if not close(value, truth):
                rep.add(
                    "energy_report",
                    sid,
                    t0,
                    t1,
                    float(value),
                    float(truth),
                    f"session {sid}: {name} = {value:.6g} kWh, but {why} is {truth:.6g} kWh",
                )
    for i, s in enumerate(loads.sessions):
        if s.id not in seen and not close(float(delivered[i]), 0.0):
            t0, t1 = stay(i)
            rep.add(
                "energy_report",
                s.id,
                t0,
                t1,
                0.0,
                float(delivered[i]),
                f"session {s.id} gets {delivered[i]:.6g} kWh but the plan has no result for it",
            )


def _node_limits(
    problem: Problem, node: Node, seg: _Segments, events: list[CurtailmentEvent]
) -> tuple[list[F64], F64]:
    """Per-segment phase limits (A) and power limit (kW) of one node, inf = none."""
    phase = [np.full(seg.n, np.inf) for _ in range(3)]
    if node.phase_limit_a is not None:
        for p in range(3):
            phase[p][:] = node.phase_limit_a[p]
    kw = np.full(seg.n, np.inf if node.power_limit_kw is None else node.power_limit_kw)
    for cap in problem.signals.capacity:
        if cap.node != node.id:
            continue
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
        if ev.node != node.id:
            continue
        w = seg.window(ev.start, ev.end)
        if ev.limit_kw is not None:
            kw[w] = np.minimum(kw[w], ev.limit_kw)
        if ev.reduction_kw is not None and baseline is not None:
            kw[w] = np.minimum(kw[w], baseline - ev.reduction_kw)
    return [np.maximum(p, 0.0) for p in phase], np.maximum(kw, 0.0)


def _node_checks(rep: _Report, problem: Problem, loads: _Loads, seg: _Segments) -> None:
    """Every node limit at the planned currents, and at the worst partial draw."""
    nodes = {n.id: n for n in problem.site.nodes}
    below: dict[str, list[int]] = defaultdict(list)
    for i, conn in enumerate(loads.conn):
        nid: str | None = conn.node
        visited: set[str] = set()
        while nid is not None and nid in nodes and nid not in visited:
            visited.add(nid)
            below[nid].append(i)
            nid = nodes[nid].parent
    events = _effective_events(problem.signals.events)
    x_all = np.nan_to_num(loads.x, nan=0.0)
    u_all = np.maximum(x_all, 0.0)
    nonneg = not (x_all < 0).any()  # then planned currents = box corners: reuse the sums
    for node in problem.site.nodes:
        idx = below.get(node.id)
        if not idx:
            continue
        phase_lim, kw_lim = _node_limits(problem, node, seg, events)
        coef = loads.coef[idx]
        rows: list[tuple[str, str, C128, F64]] = [
            (PHASES[p], "A", coef[:, p], phase_lim[p]) for p in range(3)
        ]
        rows.append(("kW", "kW", loads.kwpa[idx].astype(np.complex128), kw_lim))
        for pl in node.phasor_limits:
            c = coef @ np.asarray(pl.coefficients, dtype=np.complex128)
            rows.append((pl.name, "A", c, np.full(seg.n, max(pl.limit_a, 0.0))))
        whole = len(idx) == x_all.shape[0]  # idx is ascending: all loads, no copy needed
        x, u = (x_all, u_all) if whole else (x_all[idx], u_all[idx])
        for label, unit, c, lim in rows:
            if not np.isfinite(lim).any() or not (np.abs(c) > 1e-12).any():
                continue
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
