"""Time segmentation and the data every rule reads, shared so screens and rules agree on it.

Times become exact integer microseconds (``_us``, ``_Clock``), so edges compare exactly; the
horizon is cut into elementary segments (``_segments``) on which everything is constant; a
connector's current is kept as pieces (``_Steps``), built the way a charger reads a profile
(``_profile_steps``) and cut to each car's stay (``_Loads``); ``_Report`` merges offending
segments into violations. The screens and the per-segment rules both start from these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ..model import (
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
from ..plan import ConnectorProfile, Plan, Violation

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
C128 = NDArray[np.complex128]
Bools = NDArray[np.bool_]
_Arr = TypeVar("_Arr", I64, F64)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
#: Relative tolerance of every limit (absolute below a limit of 1).
REL_TOL = 1e-6
#: A current at most this large (A) counts as zero.
ZERO_A = 1e-6
#: Energy figures may differ by this much (kWh) plus REL_TOL relative.
ENERGY_TOL = 1e-6


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
