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

Speed without a second set of rules: a plan has a few change points per connector, the horizon
thousands of segments, so currents are kept as pieces (constant stretches) and every rule is
first *screened* on pieces: the per-connector and per-session rules exactly (they are
elementwise), the node sums with a margin far above any rounding. The plain per-segment rules
then run only for the rows and nodes a screen flags, so they alone decide what is reported.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TypeVar

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
    Wiring,
    kw_per_amp,
    phase_coefficients,
)
from .plan import ConnectorProfile, Plan, Violation

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
C128 = NDArray[np.complex128]
Bools = NDArray[np.bool_]
_Arr = TypeVar("_Arr", I64, F64)

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


class _Clock(dict[datetime, int]):
    """``_us`` memoised: profiles, stays and signals share many of their times."""

    def __missing__(self, d: datetime) -> int:
        us = self[d] = ((d if d.tzinfo is not None else d.replace(tzinfo=UTC)) - EPOCH) // _US
        return us


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


def _phasor_terms(coef: C128, plc: C128, split: Bools) -> C128:
    """[N, 3] a phasor limit's terms per A of each car: one per phase it may draw on its own.

    A wye car may draw less on one phase than on another, so its phases are separate draws in
    [0, x]; a delta branch's terms are one current (in the first column, the others zero).
    """
    per = coef * plc[None, :]
    joined = np.zeros_like(per)
    joined[:, 0] = per.sum(axis=1)
    return np.where(split[:, None], per, joined)


def _planned_magnitude(coef: C128, x: F64) -> F64:
    """|sum_i coef[i] * x[i, t]| at the planned currents."""
    return np.abs(coef.real @ x + 1j * (coef.imag @ x))


# --- step functions over segments ------------------------------------------------------------
#
# A profile holds a few change points but the horizon has thousands of elementary segments (every
# arrival and departure is an edge), so currents are kept as *pieces*: row ``row[k]`` equals
# ``v[k]`` on the segments [a[k], b[k]). Every rule is first screened on the pieces (elementwise
# rules exactly, node sums with a margin far above rounding); only the rows and nodes the screen
# flags are expanded to per-segment arrays and run through the plain per-segment rules, which
# therefore alone decide what is reported.


def _distinct(a: _Arr) -> _Arr:
    """Sorted distinct values of a 1-D array (``np.unique`` without its overhead; no NaN)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def _ranges(lo: I64, hi: I64) -> tuple[I64, I64]:
    """Every element of the ranges [lo[k], hi[k]) (hi >= lo): its range k and its position."""
    cnt = hi - lo
    k = np.repeat(np.arange(lo.shape[0]), cnt)
    pos = np.arange(k.shape[0]) + np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
    return k, pos


@dataclass(frozen=True)
class _Steps:
    """Rows of step functions over ``n`` segments; 0 wherever no piece covers a segment.

    Pieces are sorted by (row, a) and do not overlap; ``ptr[r]:ptr[r + 1]`` are row r's.
    """

    n_rows: int
    n: int
    row: I64
    a: I64
    b: I64
    v: F64
    ptr: I64

    @staticmethod
    def of(n_rows: int, n: int, row: I64, a: I64, b: I64, v: F64) -> _Steps:
        ptr = np.searchsorted(row, np.arange(n_rows + 1), side="left")
        return _Steps(n_rows, n, row, a, b, v, ptr)

    def dense(self, rows: Sequence[int] | I64) -> F64:
        """The per-segment values of ``rows``: [len(rows), n]."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((rows.shape[0], self.n))
        k, p = _ranges(self.ptr[rows], self.ptr[rows + 1])
        kk, s = _ranges(self.a[p], self.b[p])
        out[k[kk], s] = self.v[p[kk]]
        return out


@dataclass(frozen=True)
class _Points:
    """Change points of all profiles, flat in plan order: profile p owns ``ptr[p]:ptr[p + 1]``."""

    ptr: I64
    t: I64  # microseconds
    v: F64


def _points(plan: Plan, clock: _Clock) -> _Points:
    t = np.asarray([clock[p.start] for prof in plan.profiles for p in prof.points], dtype=np.int64)
    v = np.asarray(
        [float(p.current_a) for prof in plan.profiles for p in prof.points], dtype=np.float64
    )
    lens = [len(prof.points) for prof in plan.profiles]
    ptr = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=ptr[1:])
    return _Points(ptr, t, v)


# --- the checker -----------------------------------------------------------------------------


@dataclass
class _Loads:
    """Per session (a car on a connector): its current while present (pieces), and facts."""

    sessions: list[Session]
    conn: list[Connector]
    rows: I64  # [N] profile row of the connector, -1 = no profile
    first: I64  # [N] present on segments [first, stop)
    stop: I64
    x: _Steps  # [N] connector current while present (NaN kept), pieces within the stay
    kwpa: F64  # [N]
    coef: C128  # [N, 3] phasor per A on L1..L3
    cls: I64  # [N] class: sessions of one class have identical ``kwpa`` and ``coef``
    # [N] the car's phases may draw unequally (wye: an unbalanced or fewer-phase vehicle); a
    # delta branch is one current on both of its lines
    split: Bools

    def present(self, idx: Sequence[int] | I64) -> Bools:
        s = np.arange(self.x.n)[None, :]
        i = np.asarray(idx, dtype=np.int64)[:, None]
        return (s >= self.first[i]) & (s < self.stop[i])


def check(problem: Problem, plan: Plan) -> list[Violation]:
    """Every violation of ``plan`` against ``problem`` (empty = safe and consistent)."""
    conns = {c.id: c for c in problem.site.connectors}
    sessions = {s.id: s for s in problem.sessions}
    malformed: list[Violation] = []
    clock = _Clock()
    pts = _points(plan, clock)
    profiles = _structure(problem, plan, conns, sessions, pts, malformed)
    stays = np.asarray(
        [clock[t] for s in problem.sessions for t in (s.arrival, s.departure)], dtype=np.int64
    ).reshape(-1, 2)
    seg = _segments(problem, plan, pts, stays, clock)
    rep = _Report(seg)
    rep.items.extend(malformed)

    prof_ids = sorted(profiles)
    y = _profile_steps([profiles[c] for c in prof_ids], plan, pts, seg)
    row_of = {cid: r for r, cid in enumerate(prof_ids)}

    loads = _loads(problem, seg, y, row_of, conns, stays)
    _connector_checks(rep, y, [conns[c] for c in prof_ids], prof_ids)
    _outside_stay(rep, y, prof_ids, loads)
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


def _segments(
    problem: Problem, plan: Plan, pts: _Points, stays: I64, clock: _Clock
) -> _Segments:
    t0, t1 = _us(problem.now), _us(problem.horizon_end)
    sig = problem.signals
    windows: list[CapacityLimit | CurtailmentEvent | TimeValue] = [
        *sig.capacity,
        *sig.events,
        *sig.prices,
        *sig.carbon,
    ]
    fixed = [t0, t1, _us(plan.start), _us(plan.end)]
    fixed += [clock[t] for w in windows for t in (w.start, w.end)]
    edges = np.concatenate([np.asarray(fixed, dtype=np.int64), pts.t, stays.reshape(-1)])
    e = _distinct(edges[(edges >= t0) & (edges <= t1)])
    if e.shape[0] < 2:  # empty horizon: one empty segment keeps the arrays well-formed
        e = np.asarray([t0, t0], dtype=np.int64)
    tz = plan.start.tzinfo or UTC
    return _Segments(e[:-1], e[1:], (e[1:] - e[:-1]) / 3.6e9, tz)


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


def _profile_steps(groups: list[list[int]], plan: Plan, pts: _Points, seg: _Segments) -> _Steps:
    """Each connector's current as a charger reads it (``_profile_values``), as pieces.

    Segment s shows the latest point (ties: the later one) at or before its start, 0 before the
    first point and from the plan end on. A point at t first shows on the first segment starting
    at or after t, so per row the pieces start where the last point of each such segment group
    does. Connectors with several profiles (malformed) are read at their maximum, per segment.
    """
    n = seg.n
    end_us = _us(plan.end)
    stop = int(np.searchsorted(seg.start, end_us, side="left"))  # zero from here on
    single = np.asarray([r for r, g in enumerate(groups) if len(g) == 1], dtype=np.int64)
    first = np.asarray([groups[r][0] for r in single.tolist()], dtype=np.int64)
    k, pos = _ranges(pts.ptr[first], pts.ptr[first + 1])
    t = pts.t[pos]
    j = np.searchsorted(seg.start, t, side="left")
    live = j < stop
    m = single.shape[0]
    tail = int(stop < n)
    if np.all((t[1:] >= t[:-1]) | (k[1:] != k[:-1])):
        # points in time order (the usual case): per row a 0 from segment 0, the live points
        # (a prefix: j grows with t), and a 0 from the plan end; placed without sorting
        count = np.bincount(k[live], minlength=m)
        block = 1 + count + tail
        at0 = np.cumsum(block) - block
        row = np.repeat(single, block)
        a = np.zeros(row.shape[0], dtype=np.int64)
        v = np.zeros(row.shape[0])
        where = at0[k[live]] + 1 + (pos - pts.ptr[first][k])[live]
        a[where] = j[live]
        v[where] = pts.v[pos[live]]
        if tail:
            a[at0 + 1 + count] = stop
    else:
        big = np.iinfo(np.int64)
        row = np.concatenate([single[k[live]], single, single[: m * tail]])
        a = np.concatenate([j[live], np.zeros(m, np.int64), np.full(m * tail, stop)])
        tt = np.concatenate([t[live], np.full(m, big.min), np.full(m * tail, big.max)])
        order_in = np.concatenate([pos[live], np.full(m, -1), np.full(m * tail, big.max)])
        v = np.concatenate([pts.v[pos[live]], np.zeros(m), np.zeros(m * tail)])
        o = np.lexsort((order_in, tt, row))  # by row, time, list order; the 0s first and last
        row, a, v = row[o], a[o], v[o]
    last = np.ones(row.shape[0], dtype=np.bool_)
    last[:-1] = (row[1:] != row[:-1]) | (a[1:] != a[:-1])
    row, a, v = row[last], a[last], v[last]
    b = np.full(row.shape[0], n, dtype=np.int64)
    same = row[1:] == row[:-1]
    b[:-1][same] = a[1:][same]

    multi = [r for r, g in enumerate(groups) if len(g) > 1]
    if multi:
        rows_m, a_m, v_m = [row], [a], [v]
        b_m = [b]
        for r in multi:
            vals = [
                _profile_values(
                    plan.profiles[p], pts.t[pts.ptr[p] : pts.ptr[p + 1]], seg.start, end_us
                )
                for p in groups[r]
            ]
            rows_m.append(np.full(n, r, dtype=np.int64))
            a_m.append(np.arange(n, dtype=np.int64))
            b_m.append(np.arange(1, n + 1, dtype=np.int64))
            v_m.append(np.max(np.vstack(vals), axis=0))  # NaN propagates
        o = np.lexsort((np.concatenate(a_m), np.concatenate(rows_m)))
        row, a = np.concatenate(rows_m)[o], np.concatenate(a_m)[o]
        b, v = np.concatenate(b_m)[o], np.concatenate(v_m)[o]
    return _Steps.of(len(groups), n, row, a, b, v)


def _loads(
    problem: Problem,
    seg: _Segments,
    y: _Steps,
    row_of: dict[str, int],
    conns: dict[str, Connector],
    stays: I64,
) -> _Loads:
    keep = [k for k, s in enumerate(problem.sessions) if s.connector in conns]
    ss = [problem.sessions[k] for k in keep]
    cs = [conns[s.connector] for s in ss]
    stay = stays[np.asarray(keep, dtype=np.int64)].reshape(-1, 2)
    # present on a segment iff arrival <= its start < departure
    first = np.searchsorted(seg.start, stay[:, 0], side="left")
    stop = np.searchsorted(seg.start, stay[:, 1], side="left")
    rows = np.asarray([row_of.get(s.connector, -1) for s in ss], dtype=np.int64)
    # the session's pieces: its connector's pieces cut to the stay
    has = np.flatnonzero(rows >= 0)
    k, p = _ranges(y.ptr[rows[has]], y.ptr[rows[has] + 1])
    sess = has[k]
    a = np.maximum(y.a[p], first[sess])
    b = np.minimum(y.b[p], stop[sess])
    ok = a < b
    x = _Steps.of(len(ss), seg.n, sess[ok], a[ok], b[ok], y.v[p[ok]])
    # The electrical facts depend on the connector's wiring, phases, rotation, angle and voltage
    # and on the vehicle's phases only (model.used_phases): one call per distinct combination,
    # which also makes the classes of sessions with identical phasors and kW per A.
    keys = [
        (
            c.wiring,
            type(c.wiring),  # model tests ``is Wiring.DELTA``: "delta" == Wiring.DELTA is not it
            c.phases,
            c.phase_rotation,
            c.phase_angle_deg,
            c.voltage_v,
            s.vehicle_phases,
        )
        for s, c in zip(ss, cs, strict=True)
    ]
    cls_of: dict[object, int] = {}
    first_of: list[int] = []
    for i, key in enumerate(keys):
        if key not in cls_of:
            cls_of[key] = len(first_of)
            first_of.append(i)
    cls = np.asarray([cls_of[key] for key in keys], dtype=np.int64)
    facts = [(kw_per_amp(cs[i], ss[i]), phase_coefficients(cs[i], ss[i])) for i in first_of]
    kwpa = np.asarray([f[0] for f in facts], dtype=np.float64)[cls]
    coef = np.asarray([f[1] for f in facts], dtype=np.complex128).reshape(-1, 3)[cls]
    split = np.asarray([c.wiring is not Wiring.DELTA for c in cs], dtype=np.bool_)
    return _Loads(ss, cs, rows, first, stop, x, kwpa, coef, cls, split)


def _connector_checks(rep: _Report, y: _Steps, cs: list[Connector], ids: list[str]) -> None:
    """Bounds, minimum, discrete set and grid: what the charger itself accepts."""
    if not cs:
        return
    rows = _connector_screen(y, cs)
    if rows:
        _connector_rows(rep, y.dense(rows), [cs[i] for i in rows], [ids[i] for i in rows])


def _connector_screen(y: _Steps, cs: list[Connector]) -> list[int]:
    """The rows that break a connector rule: the rules are elementwise, so testing every piece
    finds exactly these."""
    r, v = y.row, y.v
    facts = np.asarray(
        [
            f
            for c in cs
            for f in (
                c.max_current_a,
                c.min_current_a,
                c.current_step_a,
                bool(c.allowed_currents_a),
            )
        ],
        dtype=np.float64,
    ).reshape(-1, 4)
    mx, mn, step = facts[:, 0], facts[:, 1], facts[:, 2]
    above, below = (mx + _tol(mx))[r], (mn - _tol(mn))[r]
    mn, step, listed = mn[r], step[r], (facts[:, 3] > 0)[r]
    nan = np.isnan(v)
    bad = nan | (v > above) | (v < -ZERO_A)
    on = v > ZERO_A
    low = on & ~listed & (v < below)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(step > 0, (v - mn) / np.where(step > 0, step, 1.0), 0.0)
        off = np.abs(k - np.round(k)) * step
    bad |= low | (on & ~listed & ~low & (step > 0) & (off > _tol(v)))
    sets: dict[tuple[float, ...], list[int]] = defaultdict(list)
    for i, c in enumerate(cs):
        if c.allowed_currents_a:
            sets[tuple(c.allowed_currents_a)].append(i)
    for allowed_set, members in sets.items():
        allowed = np.asarray((0.0, *allowed_set), dtype=np.float64)
        sel = np.flatnonzero(np.isin(r, members))
        dist = np.min(np.abs(v[sel][:, None] - allowed[None, :]), axis=1)
        bad[sel] |= ~nan[sel] & (dist > _tol(v[sel]))
    return _distinct(r[bad]).tolist()


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


def _outside_stay(rep: _Report, y: _Steps, ids: list[str], loads: _Loads) -> None:
    """Current on a connector while no car of the problem is plugged into it."""
    if not ids:
        return
    rows = _outside_screen(y, loads)
    if not rows:
        return
    yy = y.dense(rows)
    occupied = np.zeros(yy.shape, dtype=np.bool_)
    pos = {row: n for n, row in enumerate(rows)}
    for s in np.flatnonzero(np.isin(loads.rows, rows)).tolist():
        occupied[pos[int(loads.rows[s])]] |= loads.present([s])[0]
    bad = (np.abs(yy) > ZERO_A) & ~occupied
    rep.matrix(
        "outside_stay",
        [ids[row] for row in rows],
        bad,
        yy,
        np.zeros((1, 1)),
        "connector {subject}: {value:.6g} A while no session's car is present",
        severity=np.abs(yy),
    )


def _outside_screen(y: _Steps, loads: _Loads) -> list[int]:
    """Rows that may carry current outside every stay: those with a current piece that is not
    inside one stay of the connector."""
    live = np.flatnonzero(np.abs(y.v) > ZERO_A)
    on_row = np.flatnonzero(loads.rows >= 0)
    by_row = on_row[np.argsort(loads.rows[on_row], kind="stable")]
    rptr = np.searchsorted(loads.rows[by_row], np.arange(y.n_rows + 1), side="left")
    r = y.row[live]
    k, q = _ranges(rptr[r], rptr[r + 1])
    i = by_row[q]
    inside = (loads.first[i] <= y.a[live][k]) & (y.b[live][k] <= loads.stop[i])
    covered = np.bincount(k[inside], minlength=live.shape[0]) > 0
    return _distinct(r[~covered]).tolist()


def _optional(values: list[float | None]) -> F64:
    """None as NaN: every comparison with it is false, as a missing limit never binds."""
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


def _vehicle_checks(rep: _Report, loads: _Loads) -> None:
    """A present car's own limits: max current, max power, min current."""
    if not loads.sessions:
        return
    flagged = _vehicle_screen(loads)
    if not flagged:
        return
    xs = loads.x.dense(flagged)
    pres = loads.present(flagged)
    for n, ii in enumerate(flagged):
        _vehicle_rules(rep, loads, ii, xs[n], pres[n])


def _vehicle_screen(loads: _Loads) -> list[int]:
    """The sessions that break a vehicle rule: elementwise, so testing every piece finds them."""
    lim = _optional(
        [
            v
            for s in loads.sessions
            for v in (s.vehicle_max_current_a, s.vehicle_max_power_kw, s.vehicle_min_current_a)
        ]
    ).reshape(-1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        lim[:, 1] /= loads.kwpa
    vmax, plim = lim[:, :2].T + _tol(lim[:, :2].T)
    vmin = lim[:, 2] - _tol(lim[:, 2])
    i, x = loads.x.row, loads.x.v
    bad = (x > ZERO_A) & ((x > vmax[i]) | (x > plim[i]) | (x < vmin[i]))
    return _distinct(i[bad]).tolist()


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


def _energy_checks(rep: _Report, loads: _Loads, seg: _Segments) -> _Delivered:
    """Energy each session gets while present; more than it still wants is a violation."""
    dl = _Delivered(loads, seg)
    if not loads.sessions:
        return dl
    want = dl.want
    limit = want + ENERGY_TOL + REL_TOL * want
    maybe = np.flatnonzero(~(dl.kwh <= limit - dl.margin))
    dl.exact(maybe)
    for i in maybe.tolist():
        s = loads.sessions[i]
        want_i = _remaining(s)
        delivered = float(dl.kwh[i])
        if not delivered > want_i + ENERGY_TOL + REL_TOL * want_i:  # NaN: connector_bounds
            continue
        per_seg, cum = dl.cum[i]
        over = np.flatnonzero(~(cum <= want_i + ENERGY_TOL))
        a = int(over[0]) if over.size else 0
        drawn = np.flatnonzero(per_seg != 0)
        b = int(drawn[-1]) if drawn.size else seg.n - 1
        rep.add(
            "energy_above_request",
            s.id,
            seg.time(int(seg.start[a])),
            seg.time(int(seg.end[max(a, b)])),
            delivered,
            want_i,
            f"session {s.id}: the profile delivers {delivered:.6g} kWh, it still wants "
            f"{want_i:.6g} kWh (exceeded from {seg.time(int(seg.start[a])).isoformat()})",
        )
    return dl


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= ENERGY_TOL + REL_TOL * max(abs(a), abs(b))


def _surely_close(a: F64, b: F64, margin: F64 | float = 0.0) -> Bools:
    """``_close`` with room to spare (half the tolerance beyond ``margin``); NaN is not."""
    with np.errstate(invalid="ignore"):
        room = 0.5 * (ENERGY_TOL + REL_TOL * np.maximum(np.abs(a), np.abs(b)))
        return np.abs(a - b) <= room - margin


def _energy_report(
    rep: _Report, plan: Plan, loads: _Loads, delivered: _Delivered, seg: _Segments
) -> None:
    """The plan's own per-session figures must match what its profiles deliver.

    Screened for all results at once; the results that are not surely right (and the sessions
    missing a result that surely get nothing) are then checked one by one.
    """
    index = {s.id: i for i, s in enumerate(loads.sessions)}

    def stay(i: int) -> tuple[datetime | None, datetime | None]:
        a, b = int(loads.first[i]), int(loads.stop[i])
        if a >= b:
            return None, None
        return seg.time(int(seg.start[a])), seg.time(int(seg.end[b - 1]))

    results = plan.sessions
    at = [index.get(res.session, -1) for res in results]
    known = [r for r, i in enumerate(at) if i >= 0]
    fine = np.zeros(len(results), dtype=np.bool_)
    if known:
        ss = loads.sessions
        ii = np.asarray([at[r] for r in known], dtype=np.int64)
        figures = np.asarray(
            [
                f
                for res in (results[r] for r in known)
                for f in (res.requested_kwh, res.expected_kwh, res.unmet_kwh)
            ],
            dtype=np.float64,
        ).reshape(-1, 3)
        req, exp, unmet = figures.T
        d = req - exp
        ok = np.asarray([results[r].connector == ss[at[r]].connector for r in known])
        ok &= _surely_close(req, delivered.want[ii])
        ok &= _surely_close(unmet, np.where(d > 0.0, d, 0.0))
        ok &= _surely_close(exp, delivered.kwh[ii], delivered.margin[ii])
        fine[known] = ok
    fine_list = fine.tolist()
    seen: set[str] = set()
    for r, res in enumerate(results):
        sid = res.session
        i = at[r]
        if i < 0:
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
        if fine_list[r] and sid not in seen:
            seen.add(sid)
            continue
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
        want_i = _remaining(s)
        got = delivered[i]
        checks = (
            ("requested_kwh", res.requested_kwh, want_i, "still wanted at plan start"),
            ("expected_kwh", res.expected_kwh, got, "delivered by the profile"),
            (
                "unmet_kwh",
                res.unmet_kwh,
                max(0.0, res.requested_kwh - res.expected_kwh),
                "requested - expected",
            ),
        )
        for name, value, truth, why in checks:
            if not _close(value, truth):
                rep.add(
                    "energy_report",
                    sid,
                    t0,
                    t1,
                    float(value),
                    float(truth),
                    f"session {sid}: {name} = {value:.6g} kWh, but {why} is {truth:.6g} kWh",
                )
    missing = [i for i, s in enumerate(loads.sessions) if s.id not in seen]
    if not missing:
        return
    m = np.asarray(missing, dtype=np.int64)
    nothing = _surely_close(delivered.kwh[m], np.zeros(m.shape[0]), delivered.margin[m])
    for i in m[~nothing].tolist():
        s = loads.sessions[i]
        if not _close(delivered[i], 0.0):
            t0, t1 = stay(i)
            rep.add(
                "energy_report",
                s.id,
                t0,
                t1,
                0.0,
                delivered[i],
                f"session {s.id} gets {delivered[i]:.6g} kWh but the plan has no result for it",
            )


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


@dataclass
class _Targets:
    """The site's nodes (target t = site index t) and what hangs below them."""

    nodes: tuple[Node, ...]
    mem_t: I64  # (node, session below it) pairs, by session
    mem_i: I64
    count: I64  # [T] sessions below
    const: F64  # [T, 4] L1..L3 and kW limits (>= 0, inf = none) when it has no signals
    limits: dict[int, tuple[list[F64], F64]]  # per segment, for loaded nodes with signals

    def below(self, t: int) -> list[int]:
        return self.mem_i[self.mem_t == t].tolist()


def _const_limits(node: Node) -> tuple[float, ...]:
    """L1..L3 and kW limits of a node without signals, inf = none (not yet clipped at 0)."""
    ph = node.phase_limit_a
    phases = (math.inf,) * 3 if ph is None else (ph[0], ph[1], ph[2])
    return (*phases, math.inf if node.power_limit_kw is None else node.power_limit_kw)


def _node_checks(rep: _Report, problem: Problem, loads: _Loads, seg: _Segments) -> None:
    """Every node limit at the planned currents, and at the worst partial draw.

    All nodes are screened at once (``_node_screen``); flagged ones get the per-segment rule.
    """
    site = problem.site.nodes
    nodes = {n.id: n for n in site}
    if not loads.sessions or not nodes:
        return
    # (node, session below it) pairs: a connector's node and its ancestors, every site node
    # with such an id
    same_id: dict[str, list[int]] = defaultdict(list)
    for j, node in enumerate(site):
        same_id[node.id].append(j)
    start_of: dict[str | None, int] = {}
    start = np.asarray([start_of.setdefault(c.node, len(start_of)) for c in loads.conn])
    chains = [[j for nid in _chain(sid, nodes) for j in same_id[nid]] for sid in start_of]
    cptr = np.zeros(len(chains) + 1, dtype=np.int64)
    np.cumsum([len(ch) for ch in chains], out=cptr[1:])
    cnodes = np.asarray([j for ch in chains for j in ch], dtype=np.int64)
    mem_i, pos = _ranges(cptr[start], cptr[start + 1])
    mem_t = cnodes[pos]
    count = np.bincount(mem_t, minlength=len(site))
    if not mem_t.size:
        return
    loaded = np.flatnonzero(count).tolist()  # only these are checked, as nodes, at all
    const = np.full((len(site), 4), np.inf)
    const[loaded] = np.asarray(
        [f for t in loaded for f in _const_limits(site[t])], dtype=np.float64
    ).reshape(-1, 4)
    events = _effective_events(problem.signals.events)
    caps_of: dict[str, list[CapacityLimit]] = defaultdict(list)
    events_of: dict[str, list[CurtailmentEvent]] = defaultdict(list)
    for cap in problem.signals.capacity:
        caps_of[cap.node].append(cap)
    for ev in events:
        events_of[ev.node].append(ev)
    limits = {
        t: _node_limits(site[t], seg, caps_of[site[t].id], events_of[site[t].id])
        for t in loaded
        if site[t].id in caps_of or site[t].id in events_of
    }
    targets = _Targets(site, mem_t, mem_i, count, np.maximum(const, 0.0), limits)
    xv = loads.x.v
    if np.isnan(xv).any():
        xv = np.nan_to_num(xv, nan=0.0)
    nonneg = not (xv < 0).any()  # then planned currents = box corners: reuse the sums
    flagged = _node_screen(targets, loads, xv, nonneg, seg)
    for t in np.flatnonzero(flagged & (count > 0)).tolist():
        lim = limits.get(t) or _node_limits(site[t], seg, [], [])
        _node_rules(rep, site[t], targets.below(t), lim, loads, nonneg)


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


def _node_screen(
    targets: _Targets, loads: _Loads, xv: F64, nonneg: bool, seg: _Segments
) -> Bools:
    """[T] the nodes that may break a limit; the others surely do not.

    Per node, the horizon is cut where a current below it or one of its limits changes. On each
    such piece the currents below are summed per class (sessions with identical phasors and kW
    per A) in fixed point: currents are rounded to multiples of 2^-shift, with shift chosen so
    that every sum is an integer below 2^53, hence exact, and so are the per-node running sums
    of the currents starting and ending. Every limit row then combines the class sums as the
    per-segment rule combines currents (``_rows_screen``). A piece passes if it stays below
    limit + tolerance by more than the rounding (sessions below * 2^-shift * largest coefficient)
    plus ``1e-9 * (sum of |terms| + 1)``, far above the rounding of any float summation order.
    """
    n = seg.n
    span = n + 1
    nt = len(targets.nodes)
    nz = np.flatnonzero(xv != 0)
    p_sess, p_a, p_b, p_x = loads.x.row[nz], loads.x.a[nz], loads.x.b[nz], xv[nz]
    pptr = np.searchsorted(p_sess, np.arange(len(loads.sessions) + 1), side="left")
    mem_i = targets.mem_i
    k, p = _ranges(pptr[mem_i], pptr[mem_i + 1])  # (node, current piece below it)
    base = targets.mem_t[k] * span
    ends = np.concatenate([base + p_a[p], base + p_b[p]])  # a current starts, then ends
    loaded = np.flatnonzero(targets.count) * span
    cuts = [ends, loaded, loaded + n]
    for t, (ph, kw) in targets.limits.items():
        changes = np.zeros(n, dtype=np.bool_)
        for arr in (*ph, kw):
            changes[1:] |= arr[1:] != arr[:-1]
        cuts.append(t * span + np.flatnonzero(changes))
    key = _distinct(np.concatenate(cuts))
    n_cls = int(loads.cls.max()) + 1
    cls = loads.cls[p_sess[p]]
    bins = np.concatenate([cls, cls]) * key.shape[0] + np.searchsorted(key, ends)
    x = p_x[p]
    amax = float(np.abs(x).max()) if x.size else 0.0
    if not math.isfinite(2.0 * x.size * amax):
        return np.ones(nt, dtype=np.bool_)
    shift = min(52 - math.frexp(2.0 * x.size * amax)[1], 200) if x.size else 0
    qx = np.rint(np.ldexp(x, shift))
    piece = np.flatnonzero(key % span < n)  # a node's last key only ends its last piece
    unit = math.ldexp(1.0, -shift)

    def sums(w: F64) -> F64:
        """Per piece and class [P, C]: running sum over the node's keys, class after class."""
        d = np.bincount(bins, np.concatenate([w, -w]), minlength=key.shape[0] * n_cls)
        # integers below 2^53, and every class ends at 0: one integer running sum is exact
        run = np.cumsum(d.astype(np.int64)).reshape(n_cls, -1)[:, piece]
        return np.asarray(run.T * unit, dtype=np.float64)

    u_sum = sums(np.maximum(qx, 0.0))
    x_sum = u_sum if nonneg else sums(qx)
    a_sum = u_sum if nonneg else sums(np.abs(qx))
    t_of = key[piece] // span
    start = key[piece] % span
    # each current is off by at most 2^-(shift + 1), and a node sums at most its members, each
    # in up to three terms (a wye car's phases in a phasor row)
    err = np.asarray(3 * targets.count[t_of] * unit, dtype=np.float64)

    # limit rows: L1..L3, kW, then one per distinct phasor-limit coefficient vector; columns:
    # the class sums three times over, one block per phase a wye car may draw on its own
    c_coef = np.zeros((n_cls, 3), dtype=np.complex128)
    c_kw = np.zeros(n_cls, dtype=np.complex128)
    c_split = np.zeros(n_cls, dtype=np.bool_)
    c_coef[loads.cls] = loads.coef
    c_kw[loads.cls] = loads.kwpa
    c_split[loads.cls] = loads.split
    pad = np.zeros(2 * n_cls, dtype=np.complex128)
    u_sum, x_sum, a_sum = (np.hstack([a, a, a]) for a in (u_sum, x_sum, a_sum))
    lim = targets.const[t_of].T  # [4, pieces]
    tptr = np.searchsorted(t_of, np.arange(nt + 1), side="left")
    for t, (ph, kw) in targets.limits.items():
        sl = slice(tptr[t], tptr[t + 1])
        for r, arr in enumerate((*ph, kw)):
            lim[r, sl] = arr[start[sl]]
    coefs = [np.concatenate([c, pad]) for c in (c_coef[:, 0], c_coef[:, 1], c_coef[:, 2], c_kw)]
    lims = [lim]
    phasor: dict[tuple[complex, ...], F64] = {}
    for t in np.flatnonzero(targets.count).tolist():
        for pl in targets.nodes[t].phasor_limits:
            plc = tuple(complex(c) for c in pl.coefficients)
            if plc not in phasor:
                phasor[plc] = np.full(nt, np.inf)
            # a NaN limit never binds; the smallest of several binds first
            phasor[plc][t] = np.fmin(phasor[plc][t], max(pl.limit_a, 0.0))
    for plc, per_target in phasor.items():
        terms = _phasor_terms(c_coef, np.asarray(plc, dtype=np.complex128), c_split)
        coefs.append(terms.T.reshape(-1))
        lims.append(per_target[t_of][None, :])
    bad = _rows_screen(np.vstack(coefs), u_sum, x_sum, a_sum, err, np.vstack(lims), nonneg)
    flagged = np.zeros(nt, dtype=np.bool_)
    flagged[t_of[bad.any(axis=0)]] = True
    return flagged


def _rows_screen(
    coef: C128, u: F64, x: F64, size: F64, err: F64, lim: F64, nonneg: bool
) -> Bools:
    """[R, P] where limit row r may exceed ``lim[r]`` on piece p.

    ``coef`` [R, C]: the rows' coefficients per class; ``u``, ``x``, ``size`` [P, C]: sums of
    the drawable, planned and absolute currents per class; ``err`` [P] bounds
    the error of all class sums together, per unit coefficient.
    First by the triangle inequality (sum of |terms| bounds both the planned magnitude and the
    partial-draw maximum), then, where that bound does not clear the limit, exactly.
    """
    shape = (coef.shape[0], u.shape[0])
    if not np.isfinite(coef).all():
        return np.ones(shape, dtype=np.bool_)
    mag = np.abs(coef)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = mag @ size.T
        room = lim + _tol(lim) - 1e-9 * (bound + 1.0) - mag.max(axis=1)[:, None] * err
        maybe = ~(bound <= room)
        if not maybe.any():
            return maybe
        cols = np.flatnonzero(maybe.any(axis=0))
        bad = np.zeros(shape, dtype=np.bool_)
        bad[:, cols] = _rows_exact(coef, u[cols], x[cols], room[:, cols], nonneg)
        return bad


def _rows_exact(coef: C128, u: F64, x: F64, room: F64, nonneg: bool) -> Bools:
    """``_rows_screen`` by the rows' directions and partial-draw maximum.

    All rows share one set of directions: one with nothing in it changes no partial-draw sum.
    """
    shape = (coef.shape[0], u.shape[0])
    keep = np.abs(coef) > 1e-12
    if not keep.any():
        return ~(np.zeros(shape) <= room)
    ang = np.asarray(np.round(np.mod(np.angle(coef), 2 * math.pi), 9), dtype=np.float64)
    dirs = _distinct(ang[keep])
    r, c = np.nonzero(keep)
    g3 = np.zeros((coef.shape[0], dirs.shape[0], coef.shape[1]), dtype=np.complex128)
    g3[r, np.searchsorted(dirs, ang[r, c]), c] = coef[r, c]
    g = g3.reshape(-1, coef.shape[1])
    w: C128 = g.real @ u.T + 1j * (g.imag @ u.T)  # [R * K, P]
    w = w.reshape(shape[0], -1, shape[1]).transpose(1, 0, 2).reshape(dirs.shape[0], -1)
    if nonneg:
        planned = np.abs(w.sum(axis=0))
    else:
        planned = np.abs(coef.real @ x.T + 1j * (coef.imag @ x.T)).reshape(-1)
    worst = _box_max(dirs.astype(np.float64), w)
    room = room.reshape(-1)
    return (~(planned <= room) | ~(worst <= room)).reshape(shape)
