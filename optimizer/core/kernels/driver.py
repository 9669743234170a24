"""The Python side: arrays from ``Compiled``, the slot and urgency orders, and the entry points.

``allocate`` and ``polish`` check their arguments, build ``Sessions`` and ``Rows`` and the per-slot
session lists (small set-up kernels here), then run the passes in order in ``_plan``; ``warmup``
compiles them all on a tiny problem so the first request does not pay for it.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import numba
import numpy as np

from ..compile import Compiled, compile_problem
from ..model import (
    Connector,
    Node,
    Options,
    PhasorLimit,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
    Wiring,
)
from .arrays import (
    COST_ROUND,
    F64,
    I64,
    MIN_STEP_A,
    REM_TOL_AH,
    SHIFT_WORK,
    SHIFT_WORK_MIN,
    Rows,
    Sessions,
)
from .fill import _fill_slots
from .repair import _repair, _sanitize
from .shift import _shift

__all__ = ["allocate", "polish", "slot_order", "urgency_order", "warmup"]


@numba.njit(cache=True, nogil=True)
def _transposed(a: F64) -> F64:
    """a.T as a C-contiguous copy, in cache-sized tiles."""
    K, T = a.shape
    out = np.empty((T, K))
    B = 64
    for k0 in range(0, K, B):
        k1 = min(k0 + B, K)
        for t0 in range(0, T, B):
            t1 = min(t0 + B, T)
            for t in range(t0, t1):
                for k in range(k0, k1):
                    out[t, k] = a[k, t]
    return out


@numba.njit(cache=True, nogil=True)
def _session_stats(hours: F64, ub: F64) -> tuple[F64, F64, F64, I64, I64, I64]:
    """Per session: hours present with ub > 0, largest ub, shortest such slot (h; inf if none),
    first and last slot present (-1 if none); per slot: CSR pointers of the sessions present."""
    N, T = hours.shape
    avail = np.zeros(N)
    top = np.zeros(N)
    hmin = np.full(N, np.inf)
    first = np.full(N, -1, dtype=np.int64)
    last = np.full(N, -1, dtype=np.int64)
    count = np.zeros(T + 1, dtype=np.int64)
    for i in range(N):
        for t in range(T):
            h = hours[i, t]
            if h > 0.0:
                count[t + 1] += 1
                if first[i] < 0:
                    first[i] = t
                last[i] = t
                u = ub[i, t]
                if u > 0.0:
                    avail[i] += h
                    top[i] = max(top[i], u)
                    hmin[i] = min(hmin[i], h)
    for t in range(T):
        count[t + 1] += count[t]
    return avail, top, hmin, count, first, last


@numba.njit(cache=True, nogil=True)
def _smallest_steps(grid: F64, lev_ptr: I64, lev_val: F64) -> F64:
    """Per session, the smallest raise of its current there is (A): its grid step, the
    smallest gap of its levels, or MIN_STEP_A on a continuous grid."""
    N = grid.shape[0]
    out = np.empty(N)
    for i in range(N):
        a = lev_ptr[i]
        b = lev_ptr[i + 1]
        if b - a >= 2:
            g = math.inf
            for q in range(a + 1, b):
                g = min(g, lev_val[q] - lev_val[q - 1])
            out[i] = g
        elif b > a:
            out[i] = math.inf  # only 0: it never draws
        else:
            out[i] = grid[i, 1] if grid[i, 1] > 0.0 else MIN_STEP_A
    return out


@numba.njit(cache=True, nogil=True)
def _slot_lists(hours: F64, first: I64, last: I64, slot_ptr: I64) -> I64:
    """Sessions present in each slot, in index order (CSR over ``slot_ptr``)."""
    N, T = hours.shape
    out = np.empty(slot_ptr[T], dtype=np.int64)
    pos = slot_ptr[:T].copy()
    for i in range(N):
        if first[i] < 0:
            continue
        for t in range(first[i], last[i] + 1):
            if hours[i, t] > 0.0:
                out[pos[t]] = i
                pos[t] += 1
    return out


def slot_order(cost: F64) -> I64:
    """Slots cheapest first, ties (cost equal to ~1e-6) broken by time."""
    key = np.round(np.asarray(cost, dtype=np.float64) / COST_ROUND)
    return np.lexsort((np.arange(key.shape[0]), key)).astype(np.int64)


def _urgency(weight: F64, rem: F64, avail: F64, top: F64) -> I64:
    ok = (rem > REM_TOL_AH) & (top > 0.0) & (avail > 0.0)
    idx = np.flatnonzero(ok)
    urgency = weight[idx] * rem[idx] / (avail[idx] * top[idx])
    return idx[np.lexsort((idx, -urgency))].astype(np.int64)


def urgency_order(c: Compiled, rem: F64) -> I64:
    """Sessions with something to get, most urgent first (ties: index).

    Urgency: weight times ``rem`` over what the session could take at its highest ``ub`` in all
    the hours it is present (``ub > 0``); above 1 it cannot be served in full.
    """
    avail, top, _, _, _, _ = _session_stats(_c64(c.hours), _c64(c.ub))
    return _urgency(c.weight, rem, avail, top)


def _c64(a: object) -> F64:
    return np.ascontiguousarray(a, dtype=np.float64)


def _sessions(c: Compiled, quantum_a: float = 1.0) -> Sessions:
    w = _c64(c.weight)
    pos = w[w > 0.0]
    ref = float(pos.min()) if pos.size else 1.0
    return Sessions(
        _c64(c.hours),
        _c64(c.ub),
        np.column_stack((_c64(c.lo), _c64(c.step))),
        np.ascontiguousarray(c.lev_ptr, dtype=np.int64),
        _c64(c.lev_val),
        w,
        quantum_a * np.maximum(w / ref, 1e-3),
        _c64(c.kw_per_a),
    )


def _rows(c: Compiled) -> Rows:
    """Both indexings of the rows; fresh state (``room`` = limits, z unset until loaded)."""
    i64 = np.int64
    limit = _c64(c.limit)
    r_abs = np.hypot(c.row_re, c.row_im)
    lin = np.repeat(c.row_linear, np.diff(c.row_ptr))
    r_f = np.column_stack((np.where(lin, r_abs, c.row_re), np.where(lin, 0.0, c.row_im), r_abs))
    phasor = np.flatnonzero(~c.row_linear)
    ph = np.full(c.k, -1, dtype=i64)
    ph[phasor] = np.arange(phasor.size)
    pos = c.sess_pos
    e_f = np.column_stack((r_f[pos], 1.0 / r_abs[pos]))
    e_k = np.column_stack((c.sess_row, ph[c.sess_row])).astype(i64)
    return Rows(
        np.ascontiguousarray(c.sess_ptr, dtype=i64),
        np.ascontiguousarray(e_k),
        np.ascontiguousarray(e_f),
        np.ascontiguousarray(c.row_ptr, dtype=i64),
        np.ascontiguousarray(c.row_idx, dtype=i64),
        np.ascontiguousarray(r_f),
        ph,
        limit,
        _transposed(limit),
        np.zeros((c.t, phasor.size, 2)),
    )


def _plan(c: Compiled, x: F64, rem: F64, quantum_a: float, improve: bool, repair: bool) -> None:
    """Everything after set-up: (repair,) rounds, improvement; in place on x and rem."""
    s = _sessions(c, quantum_a)
    r = _rows(c)
    order = slot_order(c.cost)
    avail, top, hmin, slot_ptr, first, last = _session_stats(s.hours, s.ub)
    slot_sess = _slot_lists(s.hours, first, last, slot_ptr)
    if repair:
        _repair(x, slot_ptr, slot_sess, s, r)
        # the repair only lowered currents: what is still wanted now
        rem[:] = np.maximum(c.need_ah - (x * c.hours).sum(axis=1), 0.0)
    seq = _urgency(s.weight, rem, avail, top)
    rank = np.full(c.n, c.n, dtype=np.int64)
    rank[seq] = np.arange(seq.size)
    _fill_slots(x, rem, order, slot_ptr, slot_sess, s, r, avail, top, rank, not repair)
    # short: could still take one more step somewhere (not just a leftover below the grid)
    short = seq[rem[seq] >= _smallest_steps(s.grid, s.lev_ptr, s.lev_val)[seq] * hmin[seq]]
    if improve and short.size:
        _shift(x, rem, short, order, s, r, SHIFT_WORK * c.n * c.t + SHIFT_WORK_MIN)


def _check_quantum(quantum_a: float) -> float:
    q = float(quantum_a)
    if not (q > 0 and math.isfinite(q)):
        raise ValueError(f"quantum_a must be a positive number, not {quantum_a!r}")
    return q


def allocate(c: Compiled, quantum_a: float = 2.0, *, improve: bool = True) -> F64:
    """Greedy plan [N, T] (A) that meets every hard constraint; see the module docstring.

    ``quantum_a`` is the step per turn (times the session's relative weight): smaller shares
    contested slots more finely and costs more steps. ``improve=False`` skips the improvement
    pass.
    """
    q = _check_quantum(quantum_a)
    x = np.zeros((c.n, c.t))
    if c.n == 0 or c.t == 0:
        return x
    _plan(c, x, np.array(c.need_ah, dtype=np.float64), q, improve, repair=False)
    return x


def polish(c: Compiled, x: F64, quantum_a: float = 2.0, *, improve: bool = True) -> F64:
    """Any [N, T] current matrix -> a plan that meets every hard constraint, then topped up.

    ``x`` is not modified. NaN and negative currents count as 0.
    """
    if np.shape(x) != (c.n, c.t):
        raise ValueError(f"x must have shape {(c.n, c.t)}, not {np.shape(x)}")
    q = _check_quantum(quantum_a)
    y = np.array(x, dtype=np.float64, order="C", copy=True)
    if c.n == 0 or c.t == 0:
        return y
    _sanitize(y, _sessions(c), _c64(c.need_ah), slot_order(c.cost))
    _plan(c, y, np.zeros(c.n), q, improve, repair=True)
    return y


def warmup() -> float:
    """Compile every kernel on a tiny problem (phase, power, phasor and discrete); seconds spent."""
    t0 = time.perf_counter()
    now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    h = timedelta(hours=1)
    primary = PhasorLimit("primary", (0.25, 0.0, -0.25), 8.0)
    site = Site(
        "warmup",
        (
            Node("grid", None, (40.0, 40.0, 40.0), 30.0, (primary,)),
            Node("panel", "grid", (32.0, 32.0, 32.0)),
        ),
        (
            Connector("wye", "panel", 32.0, phases=3),
            Connector(
                "delta",
                "grid",
                32.0,
                wiring=Wiring.DELTA,
                phases=1,
                voltage_v=208.0,
                phase_rotation="L2L3L1",
            ),
            Connector(
                "set",
                "panel",
                32.0,
                min_current_a=8.0,
                allowed_currents_a=(8.0, 16.0, 32.0),
                phases=1,
                phase_rotation="L3L1L2",
            ),
        ),
    )
    sessions = (
        Session("a", "wye", now, now + 3 * h, 30.0),
        Session("b", "delta", now, now + 2 * h, 8.0),
        Session("c", "set", now, now + 4 * h, 12.0),
    )
    prices = (TimeValue(now, now + 2 * h, 0.3), TimeValue(now + 2 * h, now + 4 * h, 0.1))
    opts = Options(slot_minutes=30, horizon_hours=4.0)
    c = compile_problem(Problem(site, sessions, now, Signals(prices=prices), opts))
    x = allocate(c)
    polish(c, x * 1.3 + 0.05)
    return time.perf_counter() - t0
