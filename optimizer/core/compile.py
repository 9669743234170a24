"""Domain model -> arrays: the one representation both solvers read.

Every limit becomes a *row*: a set of sessions with complex coefficients and a limit per slot,
meaning ``|sum_i coef[i] * x[i, t]| <= limit[row, t]``. Per-phase node limits, power limits,
capacity envelopes, curtailment events and transformer phasor limits all land here, so the kernels
and the LP never see the tree. Rows whose coefficients all point the same way are flagged
``linear``: their magnitude is the plain weighted sum.

Slots: slot 0 starts at ``now`` and ends at the next multiple of the slot length (so plans line up
with wall-clock boundaries); the last slot ends at the horizon end. ``hours[i, t]`` is how long
session i's car is plugged in during slot t: energy uses it, limits apply to the whole slot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from .model import (
    PHASES,
    CapacityLimit,
    CurtailmentEvent,
    Node,
    Problem,
    Session,
    Wiring,
    kw_per_amp,
    phase_coefficients,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
C128 = NDArray[np.complex128]

#: Currents this close to a grid point count as on it (absorbs float noise in A).
GRID_EPS = 1e-7


@dataclass(frozen=True)
class Row:
    """What a constraint row means, for reports (``panel P2 L1``)."""

    node: str
    kind: str  # "phase", "power" or "phasor"
    label: str  # "L1", "kW" or the phasor limit's name

    def __str__(self) -> str:
        return f"{self.node} {self.label}"


@dataclass(frozen=True)
class Compiled:
    """A validated problem as arrays. N sessions, T slots, K rows.

    Sessions that cannot draw anything in the horizon are still present (all-zero ``ub``) so that
    indices match ``problem.sessions``.
    """

    session_ids: tuple[str, ...]
    connector_ids: tuple[str, ...]  # per session
    slot_start: F64  # [T] epoch seconds
    slot_end: F64  # [T]
    hours: F64  # [N, T] hours the car is present in each slot
    ub: F64  # [N, T] highest allowed current (A), on the session's grid; 0 where absent
    lo: F64  # [N] smallest non-zero current the session may draw (A)
    step: F64  # [N] grid step above lo (A); 0 = continuous; ignored when levels are given
    lev_ptr: I64  # [N+1] CSR pointers into lev_val (empty range = use lo/step grid)
    lev_val: F64  # allowed currents, ascending, each range starting with 0
    kw_per_a: F64  # [N] kW per A drawn
    need_ah: F64  # [N] remaining energy request in A*h (kWh / kw_per_a)
    weight: F64  # [N] priority x urgency weight of a unit of unmet energy
    price: F64  # [T] price per kWh (mean over the slot)
    carbon: F64  # [T] g CO2 per kWh (mean over the slot)
    cost: F64  # [T] objective cost per kWh: cost_weight*price + carbon_weight*carbon/1000
    row_ptr: I64  # [K+1] CSR over sessions
    row_idx: I64  # [nnz] session index
    row_re: F64  # [nnz] real part of coefficient
    row_im: F64  # [nnz] imaginary part of coefficient
    row_linear: NDArray[np.bool_]  # [K] all coefficients share one direction
    limit: F64  # [K, T] row limit per slot (A or kW); may be 0, never negative
    rows: tuple[Row, ...]
    sess_ptr: I64  # [N+1] CSR: rows that contain each session
    sess_row: I64  # [nnz] row index
    sess_pos: I64  # [nnz] position of that entry in row_idx/row_re/row_im

    @property
    def n(self) -> int:
        return len(self.session_ids)

    @property
    def t(self) -> int:
        return int(self.slot_start.shape[0])

    @property
    def k(self) -> int:
        return len(self.rows)


def _ts(d: datetime) -> float:
    return d.timestamp()


def slot_edges(problem: Problem) -> tuple[F64, F64]:
    """Slot starts and ends (epoch s): first slot from now to the next wall-clock boundary."""
    dt = problem.options.slot_minutes * 60.0
    t0 = _ts(problem.now)
    t_end = _ts(problem.horizon_end)
    edges = [t0]
    nxt = (math.floor(t0 / dt) + 1) * dt
    while nxt < t_end - 1e-6:
        edges.append(nxt)
        nxt += dt
    edges.append(t_end)
    e = np.asarray(edges, dtype=np.float64)
    return e[:-1].copy(), e[1:].copy()


def _overlap(a0: float, a1: float, starts: F64, ends: F64) -> F64:
    return np.clip(np.minimum(ends, a1) - np.maximum(starts, a0), 0.0, None)


def _mean_over_slots(items: tuple, starts: F64, ends: F64) -> F64:  # type: ignore[type-arg]
    """Time-weighted mean of piecewise values over each slot; uncovered time counts as 0."""
    acc = np.zeros_like(starts)
    for it in items:
        acc += it.value * _overlap(_ts(it.start), _ts(it.end), starts, ends)
    return acc / (ends - starts)


def _touches(a0: float, a1: float, starts: F64, ends: F64) -> NDArray[np.bool_]:
    """Slots that a window overlaps at all: a limit there holds for the whole slot."""
    return (np.minimum(ends, a1) - np.maximum(starts, a0)) > 1e-9


def baseline_kw(node: Node) -> float | None:
    """Capacity a kW reduction is taken from: the power limit, else the phase limits' power."""
    if node.power_limit_kw is not None:
        return node.power_limit_kw
    if node.phase_limit_a is not None:
        return sum(node.phase_limit_a) * node.voltage_v / 1000.0
    return None


def floor_to_grid(v: float, lo: float, step: float, levels: F64) -> float:
    """Largest allowed current <= v (pure-Python twin of the kernel's, for compile time)."""
    if levels.size:
        ok = levels[levels <= v + GRID_EPS]
        return float(ok[-1]) if ok.size else 0.0
    if v < lo - GRID_EPS:
        return 0.0
    if step <= 0:
        return v
    return lo + math.floor((v - lo) / step + GRID_EPS) * step


def box_safe_subsets(coefs: Sequence[complex] | C128) -> list[list[int]]:
    """Member subsets whose magnitude rows together bound |z| for *every* draw in [0, x].

    A car may draw less than its profile (partial slot, taper). When all coefficients lie within
    90 degrees of each other, |sum c_i x_i| only grows with each x_i and one row suffices.
    Otherwise (e.g. a transformer primary fed by branches 120 degrees apart) the largest magnitude
    over the box is reached by a half-plane subset {i : Re(c_i e^{-j psi}) > 0} for some direction
    psi; there are at most twice as many such subsets as coefficient directions, and each becomes
    its own row.
    """
    ang = np.round(np.angle(np.asarray(coefs, dtype=np.complex128)), 9).tolist()
    angles = sorted(set(ang))
    if all(math.cos(a - b) >= -1e-12 for a in angles for b in angles):
        return [list(range(len(ang)))]
    # The half-plane set only changes where psi crosses a_k +- 90 degrees: sample between those.
    cuts = sorted({(a + s * math.pi / 2) % (2 * math.pi) for a in angles for s in (1, -1)})
    mids = [(u + v) / 2 for u, v in zip(cuts, [*cuts[1:], cuts[0] + 2 * math.pi], strict=False)]
    candidates = {
        tuple(k for k, b in enumerate(angles) if math.cos(b - psi) > 1e-9) for psi in mids
    }
    out = []
    for cls in sorted(candidates):
        chosen = {angles[k] for k in cls}
        sub = [j for j, a in enumerate(ang) if a in chosen]
        if sub:
            out.append(sub)
    return out


def compile_problem(problem: Problem) -> Compiled:
    """Turn a *validated* problem into arrays (run ``validate`` first: this trusts its input)."""
    site = problem.site
    opts = problem.options
    starts, ends = slot_edges(problem)
    T = starts.shape[0]
    t_now = _ts(problem.now)
    t_end = float(ends[-1])
    conns = {c.id: c for c in site.connectors}
    nodes = {n.id: n for n in site.nodes}
    sessions: tuple[Session, ...] = problem.sessions
    N = len(sessions)

    hours = np.zeros((N, T))
    tops = np.zeros(N)
    lo = np.zeros(N)
    step = np.zeros(N)
    kwpa = np.zeros(N)
    need = np.zeros(N)
    weight = np.zeros(N)
    lev_ptr = np.zeros(N + 1, dtype=np.int64)
    levels: list[float] = []
    coefs = np.zeros((N, 3), dtype=np.complex128)
    delta = np.zeros(N, dtype=np.bool_)
    facts: dict[tuple[object, ...], tuple[float, tuple[complex, ...]]] = {}
    if N:
        a0 = np.maximum([_ts(s.arrival) for s in sessions], t_now)
        a1 = np.asarray([_ts(s.departure) for s in sessions])
        span = np.minimum(ends[None, :], a1[:, None]) - np.maximum(starts[None, :], a0[:, None])
        hours = np.clip(span, 0.0, None) / 3600.0
    for i, s in enumerate(sessions):
        c = conns[s.connector]
        # what the facts depend on (model.phase_coefficients, kw_per_amp, used_phases)
        key = (c.wiring, c.phases, c.phase_rotation, c.phase_angle_deg, c.voltage_v,
               s.vehicle_phases)
        if key not in facts:
            facts[key] = (kw_per_amp(c, s), phase_coefficients(c, s))
        kwpa[i], coefs[i] = facts[key]
        delta[i] = c.wiring is Wiring.DELTA
        cap = c.max_current_a
        if s.vehicle_max_current_a is not None:
            cap = min(cap, s.vehicle_max_current_a)
        if s.vehicle_max_power_kw is not None:
            cap = min(cap, s.vehicle_max_power_kw / kwpa[i])
        if c.allowed_currents_a:
            lv = np.unique(np.asarray((0.0, *c.allowed_currents_a), dtype=np.float64))
            vmin = s.vehicle_min_current_a or 0.0
            lv = lv[(lv == 0.0) | ((lv >= vmin - GRID_EPS) & (lv <= cap + GRID_EPS))]
            levels.extend(lv.tolist())
            lo[i] = lv[1] if lv.size > 1 else 0.0
            top = float(lv[-1])
        else:
            # The vehicle's minimum lifts the lowest current, but the grid stays the connector's.
            lo[i] = c.min_current_a
            step[i] = c.current_step_a
            vmin = s.vehicle_min_current_a or 0.0
            if vmin > lo[i]:
                lo[i] = (lo[i] + math.ceil((vmin - lo[i]) / step[i] - GRID_EPS) * step[i]
                         if step[i] > 0 else vmin)
            top = floor_to_grid(cap, lo[i], step[i], np.empty(0)) if cap >= lo[i] else 0.0
        lev_ptr[i + 1] = len(levels)
        tops[i] = top
        need[i] = max(0.0, s.energy_requested_kwh - s.energy_delivered_kwh) / kwpa[i]
        urgent = _ts(s.departure) <= t_end + 1e-9
        weight[i] = s.priority * (2.0 if urgent else 1.0)
    ub = np.where(hours > 0, tops[:, None], 0.0)

    # Every node's sessions: walk each connector's ancestors once.
    below_l: dict[str, list[int]] = {n.id: [] for n in site.nodes}
    for i, s in enumerate(sessions):
        nid: str | None = conns[s.connector].node
        while nid is not None:
            below_l[nid].append(i)
            nid = nodes[nid].parent
    below = {k: np.asarray(v, dtype=np.int64) for k, v in below_l.items()}

    rows: list[Row] = []
    members: list[tuple[I64, C128]] = []
    limits: list[F64] = []

    def add(row: Row, idx: I64, coef: C128, lim: F64, repeated: bool = False) -> None:
        """One row per box-safe subset; a session listed once per phase is summed back."""
        if not idx.size or not np.isfinite(lim).any():
            return
        mag = np.abs(coef)
        keep = mag > 1e-12
        idx, coef = idx[keep], coef[keep]
        if not idx.size:
            return
        # all directions clearly within 90 degrees (the usual case): one row. The spread is the
        # circle minus the widest gap between neighbouring directions.
        a = np.sort(np.angle(coef))
        gap = float(a[0]) + 2 * math.pi - float(a[-1])
        if a.size > 1:
            gap = max(gap, float((a[1:] - a[:-1]).max()))
        spread = 2 * math.pi - gap
        subsets = [slice(None)] if spread < math.pi / 2 - 1e-6 else box_safe_subsets(coef)
        for subset in subsets:
            i, c = idx[subset], coef[subset]
            if repeated:  # first appearance order, as the sessions were listed
                u, first, inv = np.unique(i, return_index=True, return_inverse=True)
                merged = (np.bincount(inv, c.real, u.size)
                          + 1j * np.bincount(inv, c.imag, u.size))
                o = np.argsort(first, kind="stable")
                i, c = u[o], merged[o]
                ok = np.abs(c) > 1e-12
                i, c = i[ok], c[ok]
            if i.size:
                rows.append(row)
                members.append((i, c))
                limits.append(np.maximum(lim, 0.0))

    caps_of: dict[str, list[CapacityLimit]] = {}
    for cap_ in problem.signals.capacity:
        caps_of.setdefault(cap_.node, []).append(cap_)
    events_of: dict[str, list[CurtailmentEvent]] = {}
    for ev in problem.signals.events:
        events_of.setdefault(ev.node, []).append(ev)

    inf = np.full(T, np.inf)
    for node in site.nodes:
        idx = below[node.id]
        phase_lim = [inf.copy() for _ in range(3)]
        if node.phase_limit_a is not None:
            for p in range(3):
                phase_lim[p][:] = node.phase_limit_a[p]
        kw_lim = inf.copy()
        if node.power_limit_kw is not None:
            kw_lim[:] = node.power_limit_kw
        for cap_ in caps_of.get(node.id, ()):
            hit = _touches(_ts(cap_.start), _ts(cap_.end), starts, ends)
            if cap_.limit_kw is not None:
                kw_lim[hit] = np.minimum(kw_lim[hit], cap_.limit_kw)
            if cap_.phase_limit_a is not None:
                for p in range(3):
                    phase_lim[p][hit] = np.minimum(phase_lim[p][hit], cap_.phase_limit_a[p])
        for ev in events_of.get(node.id, ()):
            hit = _touches(_ts(ev.start), _ts(ev.end), starts, ends)
            if ev.limit_kw is not None:
                kw_lim[hit] = np.minimum(kw_lim[hit], ev.limit_kw)
            if ev.reduction_kw is not None:
                base = baseline_kw(node)
                assert base is not None, "validate() rejects reductions on nodes without capacity"
                kw_lim[hit] = np.minimum(kw_lim[hit], base - ev.reduction_kw)
        for p in range(3):
            add(Row(node.id, "phase", PHASES[p]), idx, coefs[idx, p], phase_lim[p])
        add(Row(node.id, "power", "kW"), idx, kwpa[idx].astype(np.complex128), kw_lim)
        for pl in node.phasor_limits:
            # A wye car's phases may draw unequally (a 1-phase car behind an unknown vehicle,
            # an unbalanced 3-phase one): each phase is its own draw in [0, x]. A delta branch
            # is one current on both of its lines.
            per = coefs[idx] * np.asarray(pl.coefficients, dtype=np.complex128)[None, :]  # [n, 3]
            terms = np.where(delta[idx, None], 0j, per)
            terms[:, 0] = np.where(delta[idx], per.sum(axis=1), per[:, 0])
            add(Row(node.id, "phasor", pl.name), np.repeat(idx, 3), terms.reshape(-1),
                np.full(T, pl.limit_a), repeated=True)

    K = len(rows)
    row_ptr = np.zeros(K + 1, dtype=np.int64)
    np.cumsum([m[0].size for m in members], out=row_ptr[1:])
    row_idx = np.concatenate([m[0] for m in members]) if K else np.zeros(0, dtype=np.int64)
    carr = np.concatenate([m[1] for m in members]) if K else np.zeros(0, dtype=np.complex128)
    # linear: every coefficient points the way of the row's first one
    unit = carr / np.abs(carr) if K else carr
    first = np.repeat(unit[row_ptr[:-1]], np.diff(row_ptr))
    row_of = np.repeat(np.arange(K, dtype=np.int64), np.diff(row_ptr))
    linear = np.ones(K, dtype=np.bool_)
    linear[row_of[np.abs(unit - first) >= 1e-9]] = False

    order = np.argsort(row_idx, kind="stable")
    sess_ptr = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_idx, minlength=N), out=sess_ptr[1:])

    price = _mean_over_slots(problem.signals.prices, starts, ends)
    carbon = _mean_over_slots(problem.signals.carbon, starts, ends)
    return Compiled(
        session_ids=tuple(s.id for s in sessions),
        connector_ids=tuple(s.connector for s in sessions),
        slot_start=starts,
        slot_end=ends,
        hours=hours,
        ub=ub,
        lo=lo,
        step=step,
        lev_ptr=lev_ptr,
        lev_val=np.asarray(levels, dtype=np.float64),
        kw_per_a=kwpa,
        need_ah=need,
        weight=weight,
        price=price,
        carbon=carbon,
        cost=opts.cost_weight * price + opts.carbon_weight * carbon / 1000.0,
        row_ptr=row_ptr,
        row_idx=row_idx,
        row_re=carr.real.copy(),
        row_im=carr.imag.copy(),
        row_linear=linear,
        limit=np.vstack(limits) if limits else np.zeros((0, T)),
        rows=tuple(rows),
        sess_ptr=sess_ptr,
        sess_row=row_of[order],
        sess_pos=order.astype(np.int64),
    )
