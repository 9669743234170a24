"""What a grid operator (DSO) reads off plans: an event's compliance record and a node's
flexibility curve.

Pure functions over ``Problem`` + ``Plan``; the service does the solving and the I/O.

Reading a plan: profiles are read exactly as a charger (and the checker) reads them: a current
holds from its change point until the next one, and a car draws it only while one of the
connector's sessions is present (``[arrival, departure)``), at that session's kW per A
(``model.kw_per_amp``) and phase phasors (``model.phase_coefficients``). The time axis is cut
into *elementary intervals* (every change point, arrival, departure, plan slot edge and window
edge), so loads are exact, not sampled.

Why a counterfactual: "which cars did the event lower, and by how much" only has an answer
against a plan made without the event for the same state. The caller solves the problem twice
(same solver mode, same ``now``); ``event_compliance`` compares the two.

Flexibility: the curve is what the solver itself does under a temporary absolute cap on the
node for the window (a curtailment event that is never stored). As for every event, the solver
applies the cap to the whole of every slot the window touches, so for a window off the slot
grid the cost includes the uncovered ends of its first and last slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from .compile import baseline_kw, slot_edges
from .model import (
    Connector,
    CurtailmentEvent,
    Problem,
    Session,
    kw_per_amp,
    phase_coefficients,
)
from .plan import Plan
from .solve import ENERGY_TOL_KWH
from .validate import FieldViolation

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Levels one flexibility request may ask for: each costs a full solve.
MAX_LEVELS = 16
#: Longest window of a flexibility request (the longest horizon a site can have).
MAX_WINDOW = timedelta(days=7)
#: Highest cap a level may name (kW): larger is a unit mistake, not a site.
MAX_LEVEL_KW = 1e6
#: Default levels, as fractions of the node's planned peak in the window.
DEFAULT_FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.0)
#: A load this close to a limit is within it: the checker's tolerance (1e-6 relative, 1e-6
#: absolute below 1), so a plan the checker passed always reports 0 kWh over.
REL_TOL = 1e-6
#: Current differences below this (A) are float noise, not a reduction.
CURRENT_TOL_A = 1e-6
#: Id of the temporary event a flexibility probe adds (made unique against stored ids).
PROBE_ID = "flexibility-probe"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportInterval:
    """A stretch of the event's window, inside one plan slot, where the node's load is constant."""

    start: datetime
    end: datetime
    import_kw: float  # planned import at the event's node
    phase_a: tuple[float, float, float] | None  # |phasor| per phase, if the node has phase limits
    limit_kw: float  # the event's effective limit
    over_kw: float  # max(0, import - limit), 0 within the checker's tolerance
    import_without_kw: float  # the counterfactual plan's import (no event)


@dataclass(frozen=True)
class ConnectorEffect:
    """One connector the event lowered, against the plan made without it."""

    connector: str
    sessions: tuple[str, ...]  # sessions present on it in the covered window
    energy_kwh: float  # delivered in the covered window, with the event
    energy_without_kwh: float  # ... without it
    max_reduction_a: float  # largest drop of its current (A per phase) at any instant


@dataclass(frozen=True)
class EventCompliance:
    """An event's compliance record over the part of its window the plan covers."""

    event: CurtailmentEvent
    limit_kw: float
    plan_start: datetime
    plan_end: datetime
    covered_from: datetime  # the window clipped to the plan: [covered_from, covered_until)
    covered_until: datetime
    intervals: tuple[ImportInterval, ...]
    kwh_over: float
    peak_import_kw: float
    energy_kwh: float  # node import energy in the covered window, with the event
    energy_without_kwh: float
    lowered: tuple[ConnectorEffect, ...]  # largest reduction first
    solver: str
    counterfactual_solver: str

    @property
    def fully_covered(self) -> bool:
        """False when the plan starts after the event or ends before it (not yet planned for)."""
        return self.covered_from == self.event.start and self.covered_until == self.event.end


@dataclass(frozen=True)
class FlexLevel:
    """The site's answer to one import cap on the node for the window."""

    cap_kw: float
    peak_kw: float  # planned peak import in the window under the cap
    unmet_kwh: float  # over the horizon, all sessions
    extra_unmet_kwh: float  # unmet_kwh minus today's plan's (the energy the cap costs)
    sessions_short: int  # sessions more than ENERGY_TOL_KWH short under the cap
    newly_short: int  # ... of which today's plan serves in full
    solver: str


@dataclass(frozen=True)
class Flexibility:
    """A node's flexibility curve for a window: one ``FlexLevel`` per cap asked for."""

    node: str
    start: datetime
    end: datetime
    plan_start: datetime
    plan_end: datetime
    covered_from: datetime
    covered_until: datetime
    baseline_peak_kw: float
    baseline_unmet_kwh: float
    baseline_sessions_short: int
    baseline_solver: str
    levels: tuple[FlexLevel, ...]
    min_feasible_kw: float = 0.0  # pausing every car is always allowed


# --- request checks ----------------------------------------------------------------------------


def check_window(start: datetime, end: datetime, path: str = "") -> list[FieldViolation]:
    """A report window runs forwards and spans at most ``MAX_WINDOW``."""
    p = f"{path}." if path else ""
    if end <= start:
        return [FieldViolation(f"{p}end", f"must be after start ({start.isoformat()})")]
    if end - start > MAX_WINDOW:
        hours = (end - start) / timedelta(hours=1)
        return [FieldViolation(
            f"{p}end", f"window of {hours:g} h; at most {MAX_WINDOW / timedelta(hours=1):g} h"
        )]
    return []


def check_levels(levels: Sequence[float], path: str = "levels_kw") -> list[FieldViolation]:
    """At most ``MAX_LEVELS`` caps, each finite, >= 0 and <= ``MAX_LEVEL_KW``."""
    if len(levels) > MAX_LEVELS:
        return [FieldViolation(path, f"{len(levels)} levels; at most {MAX_LEVELS}")]
    out = []
    for k, v in enumerate(levels):
        if not math.isfinite(v):
            out.append(FieldViolation(f"{path}[{k}]", f"must be a finite number, got {v!r}"))
        elif v < 0:
            out.append(FieldViolation(f"{path}[{k}]", f"must be >= 0 kW, got {v:g}"))
        elif v > MAX_LEVEL_KW:
            out.append(FieldViolation(f"{path}[{k}]", f"above {MAX_LEVEL_KW:g} kW, got {v:g}"))
    return out


# --- reading profiles --------------------------------------------------------------------------


def _us(d: datetime) -> int:
    return (d - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _below(problem: Problem, node: str) -> list[Connector]:
    """Connectors at or below ``node``."""
    parent = {n.id: n.parent for n in problem.site.nodes}
    memo: dict[str, bool] = {node: True}

    def under(nid: str | None) -> bool:
        chain: list[str] = []
        while nid is not None and nid not in memo:
            chain.append(nid)
            nid = parent.get(nid)
        hit = memo.get(nid, False) if nid is not None else False
        for c in chain:
            memo[c] = hit
        return hit

    return [c for c in problem.site.connectors if under(c.node)]


class _Profiles:
    """A plan's profiles as (times, currents) arrays per connector."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._steps: dict[str, tuple[I64, F64]] = {}
        for p in plan.profiles:
            t = np.fromiter((_us(c.start) for c in p.points), dtype=np.int64, count=len(p.points))
            v = np.fromiter((c.current_a for c in p.points), dtype=np.float64,
                            count=len(p.points))
            self._steps[p.connector] = (t, v)

    def times(self, connector: str) -> I64:
        return self._steps.get(connector, (np.zeros(0, dtype=np.int64), np.zeros(0)))[0]

    def held(self, connector: str, at: I64) -> F64:
        """The current the connector holds at each instant (0 before its first point)."""
        t, v = self._steps.get(connector, (np.zeros(0, dtype=np.int64), np.zeros(0)))
        if not t.size:
            return np.zeros(at.shape)
        k = np.searchsorted(t, at, side="right") - 1
        out = np.where(k >= 0, v[np.maximum(k, 0)], 0.0)
        return np.nan_to_num(out, nan=0.0)  # the checker counts a NaN as 0 in node sums


def _sessions_on(problem: Problem) -> dict[str, list[Session]]:
    out: dict[str, list[Session]] = {}
    for s in problem.sessions:
        out.setdefault(s.connector, []).append(s)
    return out


def _edges(a: int, b: int, extra: Sequence[I64 | list[int]]) -> I64:
    """Sorted unique cut points in [a, b], always including both ends."""
    pts = np.concatenate([np.asarray([a, b], dtype=np.int64),
                          *[np.asarray(e, dtype=np.int64) for e in extra]])
    pts = pts[(pts >= a) & (pts <= b)]
    return np.unique(pts)


def _stay_cuts(sessions: Sequence[Session]) -> list[int]:
    return [x for s in sessions for x in (_us(s.arrival), _us(s.departure))]


def _present(s: Session, starts: I64) -> NDArray[np.bool_]:
    return (starts >= _us(s.arrival)) & (starts < _us(s.departure))


def _load(conns: Sequence[Connector], by_conn: dict[str, list[Session]], prof: _Profiles,
          starts: I64, phases: bool) -> tuple[F64, NDArray[np.complex128] | None]:
    """kW and (optionally) per-phase phasor current of ``conns`` on each interval."""
    kw = np.zeros(starts.shape)
    ph = np.zeros((3, starts.size), dtype=np.complex128) if phases else None
    for c in conns:
        sess = by_conn.get(c.id, ())
        if not sess:
            continue
        cur = prof.held(c.id, starts)
        for s in sess:
            drawn = np.where(_present(s, starts), cur, 0.0)
            kw += drawn * kw_per_amp(c, s)
            if ph is not None:
                for p, coef in enumerate(phase_coefficients(c, s)):
                    if coef != 0:
                        ph[p] += drawn * coef
    return kw, ph


def _covered(problem: Problem, plan: Plan, start: datetime, end: datetime) -> tuple[int, int]:
    """[start, end) clipped into the plan's [start, end): empty (a == b) when outside it."""
    p0, p1 = _us(plan.start), _us(plan.end)
    a = min(max(_us(start), p0), p1)
    b = min(max(_us(end), p0), p1)
    return a, max(a, b)


def _slot_cuts(problem: Problem) -> I64:
    starts, ends = slot_edges(problem)
    return np.unique(np.rint(np.concatenate([starts, ends]) * 1e6).astype(np.int64))


def _same_start(problem: Problem, *plans: Plan) -> None:
    for p in plans:
        if p.start != problem.now:
            raise ValueError(f"plan starts at {p.start.isoformat()}, the problem at "
                             f"{problem.now.isoformat()}: solve both for the same now")


def _over(load: F64, limit: float) -> F64:
    over = load - limit
    return np.where(over > REL_TOL * max(abs(limit), 1.0), over, 0.0)


# --- compliance --------------------------------------------------------------------------------


def effective_limit_kw(problem: Problem, event: CurtailmentEvent) -> float:
    """The event's import cap: ``limit_kw``, or the node's baseline minus ``reduction_kw``
    (at least 0: a reduction beyond the baseline means drawing nothing, as the checker reads it).
    """
    if event.limit_kw is not None:
        return max(0.0, event.limit_kw)
    node = next(n for n in problem.site.nodes if n.id == event.node)
    base = baseline_kw(node)
    if base is None or event.reduction_kw is None:
        raise ValueError(f"event {event.id!r}: a reduction on a node without capacity")
    return max(0.0, base - event.reduction_kw)


def find_event(problem: Problem, event_id: str) -> CurtailmentEvent | None:
    return next((e for e in problem.signals.events if e.id == event_id), None)


def without_event(problem: Problem, event_id: str) -> Problem:
    """The counterfactual: the same state, minus one event."""
    events = tuple(e for e in problem.signals.events if e.id != event_id)
    return replace(problem, signals=replace(problem.signals, events=events))


def event_compliance(problem: Problem, plan: Plan, event_id: str, without: Plan) -> EventCompliance:
    """The record of event ``event_id`` for ``plan`` (solved for ``problem``), compared with
    ``without`` (solved for ``without_event(problem, event_id)`` at the same ``now``).

    Intervals are cut at plan slot edges and at every change point, arrival and departure of the
    connectors below the event's node (in both plans), clipped to the window; neighbours inside
    one slot with equal loads are merged. Connectors anywhere on the site count as lowered when
    their current drops by more than ``CURRENT_TOL_A`` at some instant of the covered window
    (an event can move energy across the tree, not only below its node).
    """
    event = find_event(problem, event_id)
    if event is None:
        raise KeyError(event_id)
    _same_start(problem, plan, without)
    limit = effective_limit_kw(problem, event)
    a, b = _covered(problem, plan, event.start, event.end)
    node = next(n for n in problem.site.nodes if n.id == event.node)
    conns = _below(problem, event.node)
    by_conn = _sessions_on(problem)
    with_p, without_p = _Profiles(plan), _Profiles(without)

    slots = _slot_cuts(problem)
    edges = _edges(a, b, [slots, *[p.times(c.id) for c in conns for p in (with_p, without_p)],
                          *[_stay_cuts(by_conn.get(c.id, ())) for c in conns]])
    starts, ends = edges[:-1], edges[1:]
    kw, ph = _load(conns, by_conn, with_p, starts, node.phase_limit_a is not None)
    kw0, _ = _load(conns, by_conn, without_p, starts, False)
    mag = np.abs(ph) if ph is not None else None

    # merge neighbours in one slot whose loads are equal
    slot_of = np.searchsorted(slots, starts, side="right")
    keep = np.ones(starts.size, dtype=np.bool_)
    if starts.size > 1:
        same = (slot_of[1:] == slot_of[:-1]) & (np.abs(kw[1:] - kw[:-1]) < 1e-9) \
            & (np.abs(kw0[1:] - kw0[:-1]) < 1e-9)
        if mag is not None:
            same &= (np.abs(mag[:, 1:] - mag[:, :-1]) < 1e-9).all(axis=0)
        keep[1:] = ~same
    first = np.flatnonzero(keep)
    last_end = np.append(first[1:], starts.size)[: first.size] - 1  # [] for an empty window
    hours = (ends - starts) / 3.6e9
    over = _over(kw, limit)
    intervals = tuple(
        ImportInterval(
            start=_dt(int(starts[i])), end=_dt(int(ends[j])), import_kw=float(kw[i]),
            phase_a=None if mag is None else (float(mag[0, i]), float(mag[1, i]),
                                              float(mag[2, i])),
            limit_kw=limit, over_kw=float(over[i]), import_without_kw=float(kw0[i]),
        )
        for i, j in zip(first.tolist(), last_end.tolist(), strict=True)
    )
    lowered = _lowered(problem, by_conn, with_p, without_p, a, b)
    return EventCompliance(
        event=event, limit_kw=limit, plan_start=plan.start, plan_end=plan.end,
        covered_from=_dt(a), covered_until=_dt(b), intervals=intervals,
        kwh_over=float((over * hours).sum()),
        peak_import_kw=float(kw.max()) if kw.size else 0.0,
        energy_kwh=float((kw * hours).sum()), energy_without_kwh=float((kw0 * hours).sum()),
        lowered=lowered, solver=plan.solver, counterfactual_solver=without.solver,
    )


def _lowered(problem: Problem, by_conn: dict[str, list[Session]], with_p: _Profiles,
             without_p: _Profiles, a: int, b: int) -> tuple[ConnectorEffect, ...]:
    """Per connector, on its own change points: energy with/without and the largest drop."""
    out = []
    if b <= a:
        return ()
    for c in problem.site.connectors:
        sess = by_conn.get(c.id, ())
        if not sess:
            continue
        edges = _edges(a, b, [with_p.times(c.id), without_p.times(c.id), _stay_cuts(sess)])
        starts, ends = edges[:-1], edges[1:]
        hours = (ends - starts) / 3.6e9
        cur, cur0 = with_p.held(c.id, starts), without_p.held(c.id, starts)
        e = e0 = 0.0
        drop = 0.0
        names = []
        for s in sess:
            here = _present(s, starts)
            if not here.any():
                continue
            names.append(s.id)
            k = kw_per_amp(c, s)
            e += float((cur * hours * here).sum()) * k
            e0 += float((cur0 * hours * here).sum()) * k
            drop = max(drop, float(np.where(here, cur0 - cur, 0.0).max()))
        if drop > CURRENT_TOL_A:
            out.append(ConnectorEffect(c.id, tuple(names), e, e0, drop))
    out.sort(key=lambda x: (-x.max_reduction_a, x.connector))
    return tuple(out)


# --- flexibility -------------------------------------------------------------------------------


def window_peak_kw(problem: Problem, plan: Plan, node: str, start: datetime,
                   end: datetime) -> float:
    """Highest planned import at ``node`` in [start, end) (the part the plan covers)."""
    a, b = _covered(problem, plan, start, end)
    if b <= a:
        return 0.0
    conns = _below(problem, node)
    by_conn = _sessions_on(problem)
    prof = _Profiles(plan)
    edges = _edges(a, b, [*[prof.times(c.id) for c in conns],
                          *[_stay_cuts(by_conn.get(c.id, ())) for c in conns]])
    kw, _ = _load(conns, by_conn, prof, edges[:-1], False)
    return float(kw.max()) if kw.size else 0.0


def with_cap(problem: Problem, node: str, start: datetime, end: datetime,
             cap_kw: float) -> Problem:
    """The problem plus a temporary absolute cap on ``node`` for [start, end) (never stored)."""
    ids = {e.id for e in problem.signals.events}
    eid, k = PROBE_ID, 0
    while eid in ids:
        k += 1
        eid = f"{PROBE_ID}-{k}"
    probe = CurtailmentEvent(eid, node, start, end, limit_kw=cap_kw)
    return replace(problem, signals=replace(problem.signals,
                                            events=(*problem.signals.events, probe)))


def default_levels(peak_kw: float) -> tuple[float, ...]:
    return tuple(peak_kw * f for f in DEFAULT_FRACTIONS)


def _short(plan: Plan) -> set[str]:
    return {s.session for s in plan.sessions if s.unmet_kwh > ENERGY_TOL_KWH}


def _unmet(plan: Plan) -> float:
    return float(sum(s.unmet_kwh for s in plan.sessions))


#: ``solve(problem, solves_left)``: plans ``problem``; ``solves_left`` counts this call and the
#: ones still to come, so a caller can share one deadline between them.
Solver = Callable[[Problem, int], Plan]


def flexibility(problem: Problem, node: str, start: datetime, end: datetime,
                levels: Sequence[float] | None, solve: Solver) -> Flexibility:
    """The node's flexibility curve: today's plan, then one solve per distinct cap.

    ``levels`` None or empty: ``DEFAULT_FRACTIONS`` of today's planned peak in the window.
    Levels come back in the order given. Every plan is checked (``solve`` returns only plans the
    checker passed), so each level's peak is at most its cap. ``extra_unmet_kwh`` is the
    heuristic's answer, not an optimum: it can dip slightly below a higher cap's (see the tests
    for the tolerance measured).
    """
    base = solve(problem, 1 + (len(set(levels)) if levels else len(DEFAULT_FRACTIONS)))
    _same_start(problem, base)
    peak = window_peak_kw(problem, base, node, start, end)
    caps = tuple(levels) if levels else default_levels(peak)
    distinct = list(dict.fromkeys(caps))
    base_unmet, base_short = _unmet(base), _short(base)
    done: dict[float, FlexLevel] = {}
    for k, cap in enumerate(distinct):
        plan = solve(with_cap(problem, node, start, end, cap), len(distinct) - k)
        _same_start(problem, plan)
        short = _short(plan)
        unmet = _unmet(plan)
        done[cap] = FlexLevel(
            cap_kw=cap, peak_kw=window_peak_kw(problem, plan, node, start, end),
            unmet_kwh=unmet, extra_unmet_kwh=unmet - base_unmet, sessions_short=len(short),
            newly_short=len(short - base_short), solver=plan.solver,
        )
    a, b = _covered(problem, base, start, end)
    return Flexibility(
        node=node, start=start, end=end, plan_start=base.start, plan_end=base.end,
        covered_from=_dt(a), covered_until=_dt(b), baseline_peak_kw=peak,
        baseline_unmet_kwh=base_unmet, baseline_sessions_short=len(base_short),
        baseline_solver=base.solver, levels=tuple(done[c] for c in caps),
    )
