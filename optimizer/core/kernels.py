"""Fast path: a greedy, always-feasible allocator and a repair pass, as numba kernels.

**Allocation (``allocate``).** Slots are visited in one global order, cheapest first (cost
rounded to 1e-6, ties by time, so equal prices give early, contiguous charging); every session
thus fills its own slots cheapest first. In a slot, the sessions present that still want energy
take turns in *rounds*, most urgent first (weight times the share of its remaining hours at full
current that a session still needs: a car that lost out in one slot goes first in the next, a
car leaving soon before one with time to spare, priority counts). In its turn a session raises
its current by ``quantum_a`` times its weight relative to the smallest weight (at least to its
next allowed value, so from 0 straight to its minimum current), capped by its maximum current,
by the energy it still wants (never more than requested) and by the exact headroom of every
limit row that contains it in that slot; the result is floored to the allowed currents (the
``lo + k*step`` grid or the discrete set). A session whose step was cut by a row,
or that cannot fit its next allowed value, is done with the slot. So a contested slot is shared
in proportion to the weights instead of first come, first served: nobody is starved at 0 or 6 A
while others draw full current. A session whose rows could give every competitor of the slot all
it wants there (tracked per row as room minus what the others may still add) takes its share in
one step: the rounds could not change it, so only congested slots pay for the fine steps.

**Headroom.** A *linear* row (all coefficients in one direction) keeps its room ``L - sum |c| x``
per slot; a member's headroom is ``room / |c|``. A *phasor* row keeps ``z = sum c x`` and the
largest step ``d`` with ``|z + c d| <= L`` is the upper root of ``|c|^2 d^2 + 2 b d + |z|^2 -
L^2 = 0`` with ``b = Re(conj(z) c)``. The feasible steps form an interval containing 0, so
flooring a feasible target to the grid stays feasible; currents only increase, so the plan is
feasible after every step. The row state is stored slot-major (``[T, K]``) and a slot's work
touches only its own row of it, which keeps the working set in cache. Cost: O(N*T + T*K) plus
O(rows per session) per increment.

**Improvement (``_shift``).** After the rounds, a session still short of its need looks at its
slots where a row blocks it and asks the other members of that row that draw in the slot to move
current to their own free slots: the donor drops there by what the short session lacks (or to 0,
as a new slot may need its whole minimum current), refills its lost energy in its other slots,
then the short session refills. The move is kept if the short session gained and the donor kept
all its energy, else undone exactly. A work budget (about two visits per plan cell) bounds it.

**Repair (``polish``).** Takes any current matrix (typically a continuous LP solution, which may be
off-grid and may slightly exceed phasor limits because the LP uses a polygon) and returns a plan
that meets every hard constraint: clip to ``[0, ub]``, floor to the allowed currents, cut energy
above the request (dearest slots first), then, slot by slot, scale down the members of every
over-limit row whose coefficient points along the row's phasor (``Re(conj(z) c) > 0``) by the
largest factor that makes the row hold, floored to the grid; lowering members can push another
phasor row over, so the slot is swept again, and after a few sweeps an over-limit row's members
are zeroed (zero is always feasible). Finally the plan is topped up with the same rounds.

**Not modelled here.** Minimum on/off times and a preference for fewer changes beyond
"cheapest, then earliest": when limits force cars to take turns at their
minimum current, they may alternate slot by slot.

All kernels are ``nogil`` and keep no global state, so a thread pool may run them in parallel.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from .compile import GRID_EPS, Compiled, compile_problem
from .model import (
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

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

__all__ = ["allocate", "polish", "slot_order", "urgency_order", "warmup"]

#: Remaining energy (A*h) below which a session counts as served.
REM_TOL_AH = 1e-9
#: Energy above the request (A*h) that counts as float noise (currents within GRID_EPS of a grid
#: point count as on it, so a plan may exceed its request by GRID_EPS * hours per slot).
ENERGY_TOL_AH = 1e-9
#: Smallest increment (A) worth making on a continuous (step 0) grid.
MIN_STEP_A = 1e-6
#: A row counts as over its limit above ``L + ROW_TOL * max(L, 1)`` (float noise only).
ROW_TOL = 1e-9
#: Repair sweeps over a slot's rows before over-limit rows are zeroed outright.
REPAIR_SWEEPS = 12
#: Work budget of the improvement pass, in slot visits per cell of the [N, T] plan.
SHIFT_WORK = 2
#: Cost keys are rounded to this before ordering slots (equal prices -> time order).
COST_ROUND = 1e-6


class Sessions(NamedTuple):
    """Per-session arrays the kernels read (from ``Compiled``)."""

    hours: F64  # [N, T]
    ub: F64  # [N, T]
    grid: F64  # [N, 2]: lo, step
    lev_ptr: I64  # [N+1]
    lev_val: F64
    weight: F64  # [N]
    quantum: F64  # [N] step per turn (A): quantum_a * weight / smallest weight


class Rows(NamedTuple):
    """Limit rows, indexed both ways, and their running state per slot.

    ``e_*`` follow the per-session entries (``sess_ptr``; what the hot loops read), ``r_*`` the
    per-row entries (``row_ptr``). ``e_k[e]`` = (row k, phasor index or -1 on a linear row);
    ``e_f[e]`` = (re, im, |c|, 1/|c|) and ``r_f[p]`` = (re, im, |c|) of the effective coefficient,
    which is ``(|c|, 0)`` on a linear row. State: ``room[t, k]`` is ``L - sum |c| x`` on a linear
    row and just ``L`` on a phasor row, whose ``z`` lives in ``z[t, j]`` (re, im).

    Kernels unpack these tuples into local arrays once: numba increfs every array of a tuple
    handed to a helper, which costs more than the work in the hot loops.
    """

    sess_ptr: I64  # [N+1]
    e_k: I64  # [E, 2]
    e_f: F64  # [E, 4]
    row_ptr: I64  # [K+1]
    row_idx: I64  # [E]
    r_f: F64  # [E, 3]
    ph: I64  # [K]
    limit: F64  # [K, T] as compiled
    room: F64  # [T, K]
    z: F64  # [T, K_phasor, 2]


# --- allowed currents ----------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _grid_floor(v: float, lo: float, step: float) -> float:
    """Largest current of the grid {0} + {lo + k*step} (step 0: [lo, inf)) <= v + GRID_EPS."""
    if v < lo - GRID_EPS or v <= 0.0:
        return 0.0
    if step <= 0.0:
        return max(v, lo)
    return lo + math.floor((v - lo + GRID_EPS) / step) * step


@numba.njit(cache=True, nogil=True, inline="always")
def _grid_above(v: float, lo: float, step: float) -> float:
    """Smallest current of the grid meaningfully above v."""
    if v < lo - GRID_EPS:
        return lo
    if step <= 0.0:
        return v + MIN_STEP_A
    return lo + (math.floor((v - lo + GRID_EPS) / step) + 1.0) * step


@numba.njit(cache=True, nogil=True, inline="always")
def _floor_allowed(v: float, lo: float, step: float, lev: F64, a: int, b: int) -> float:
    """Largest allowed current <= v + GRID_EPS (absorbs float noise just below a grid point)."""
    if b > a:
        r = 0.0
        for q in range(a, b):
            if lev[q] <= v + GRID_EPS:
                r = lev[q]
            else:
                break
        return r
    return _grid_floor(v, lo, step)


@numba.njit(cache=True, nogil=True, inline="always")
def _next_above(v: float, lo: float, step: float, lev: F64, a: int, b: int) -> float:
    """Smallest allowed current meaningfully above v (inf if none)."""
    if b > a:
        for q in range(a, b):
            if lev[q] > v + GRID_EPS:
                return lev[q]
        return math.inf
    return _grid_above(v, lo, step)


@numba.njit(cache=True, nogil=True, inline="always")
def _next_below(v: float, lo: float, step: float, lev: F64, a: int, b: int) -> float:
    """Largest allowed current meaningfully below v (0 if none)."""
    if b > a:
        r = 0.0
        for q in range(a, b):
            if lev[q] < v - GRID_EPS:
                r = lev[q]
            else:
                break
        return r
    if step <= 0.0:
        return v - MIN_STEP_A if v - MIN_STEP_A >= lo - GRID_EPS else 0.0
    k = math.floor((v - lo + GRID_EPS) / step)  # v's grid index (v may be a hair off)
    if lo + k * step < v - GRID_EPS:
        return lo + k * step
    return lo + (k - 1.0) * step if k >= 1.0 else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _floor_i(grid: F64, lev_ptr: I64, lev_val: F64, i: int, v: float) -> float:
    return _floor_allowed(v, grid[i, 0], grid[i, 1], lev_val, lev_ptr[i], lev_ptr[i + 1])


@numba.njit(cache=True, nogil=True, inline="always")
def _above_i(grid: F64, lev_ptr: I64, lev_val: F64, i: int, v: float) -> float:
    return _next_above(v, grid[i, 0], grid[i, 1], lev_val, lev_ptr[i], lev_ptr[i + 1])


@numba.njit(cache=True, nogil=True, inline="always")
def _below_i(grid: F64, lev_ptr: I64, lev_val: F64, i: int, v: float) -> float:
    return _next_below(v, grid[i, 0], grid[i, 1], lev_val, lev_ptr[i], lev_ptr[i + 1])


# --- row headroom --------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _step_room(zr: float, zi: float, cr: float, ci: float, lim: float) -> float:
    """Largest d >= 0 with |z + c d| <= lim (0 if none)."""
    if lim == math.inf:
        return math.inf
    cc = cr * cr + ci * ci
    b = zr * cr + zi * ci
    gap = lim * lim - (zr * zr + zi * zi)  # L^2 - |z|^2
    disc = b * b + cc * gap
    if disc <= 0.0:
        return 0.0
    sq = math.sqrt(disc)
    # upper root of cc d^2 + 2 b d - gap = 0, in the form without cancellation
    d = gap / (b + sq) if b > 0.0 else (sq - b) / cc
    return d if d > 0.0 else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _entry_room(e_k: I64, e_f: F64, room: F64, z: F64, e: int, t: int) -> float:
    """Headroom (A) of session entry e's row at slot t for that session."""
    k = e_k[e, 0]
    j = e_k[e, 1]
    if j < 0:
        return room[t, k] * e_f[e, 3]
    return _step_room(z[t, j, 0], z[t, j, 1], e_f[e, 0], e_f[e, 1], room[t, k])


@numba.njit(cache=True, nogil=True, inline="always")
def _cap_rows(
    sess_ptr: I64,
    e_k: I64,
    e_f: F64,
    room: F64,
    z: F64,
    i: int,
    t: int,
    xi: float,
    cap: float,
    floor_at: float,
) -> float:
    """min(cap, xi + headroom of every row of session i at t); stops early below floor_at."""
    for e in range(sess_ptr[i], sess_ptr[i + 1]):
        top = xi + _entry_room(e_k, e_f, room, z, e, t)
        if top < cap:
            cap = top
            if cap < floor_at:
                return cap
    return cap


@numba.njit(cache=True, nogil=True, inline="always")
def _apply(sess_ptr: I64, e_k: I64, e_f: F64, room: F64, z: F64, i: int, t: int, d: float) -> None:
    """Add d A of session i in slot t to the state of its rows."""
    for e in range(sess_ptr[i], sess_ptr[i + 1]):
        k = e_k[e, 0]
        j = e_k[e, 1]
        if j < 0:
            room[t, k] -= e_f[e, 2] * d
        else:
            z[t, j, 0] += e_f[e, 0] * d
            z[t, j, 1] += e_f[e, 1] * d


@numba.njit(cache=True, nogil=True)
def _load_slot(t: int, x: F64, slot_ptr: I64, slot_sess: I64, r: Rows) -> None:
    """Row state of slot t for plan x, from fresh state (``room[t]`` = the limits, as ``_rows``
    leaves it); only sessions present in t can draw there. Call once per slot."""
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    z[t] = 0.0
    for a in range(slot_ptr[t], slot_ptr[t + 1]):
        i = slot_sess[a]
        v = x[i, t]
        if v != 0.0:
            _apply(sess_ptr, e_k, e_f, room, z, i, t, v)


# --- the rounds, slot by slot ---------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _fill_slots(
    x: F64,
    rem: F64,
    order: I64,
    slot_ptr: I64,
    slot_sess: I64,
    s: Sessions,
    r: Rows,
    avail: F64,
    top: F64,
    rank: I64,
    load: bool,
) -> int:
    """The rounds, slot by slot in ``order``; in place on x, rem and the row state.

    ``slot_sess[slot_ptr[t]:slot_ptr[t+1]]`` are the sessions present in slot t; sessions with
    ``rem <= REM_TOL_AH`` take nothing. ``avail[i]`` (hours present with ub > 0, consumed as the
    slots pass) and ``top[i]`` (highest ub) give the urgency that orders a contested slot:
    weight times the share of its remaining hours at full current a session still needs (so a
    car that lost out in one slot comes first in the next, priority counts, and a car leaving
    soon comes before one that has time); ties go by ``rank`` (the initial urgency order). With
    ``load`` the row state of each slot is computed from x first (else it must already be
    current). Returns the number of increments.

    The contention test: ``spare[k]`` is, on a linear row, its room minus |c| times what the
    sessions still active in the slot may add; on a phasor row, the sum of |c| times what they
    may add, so ``|z| + spare <= L`` bounds the magnitude whatever they add. A session whose rows
    all pass could be given all it wants whatever the others do: it takes it in one step. A step
    keeps the spare of a linear row (room and what may come shrink alike) and shrinks that of a
    phasor row; a session leaving the slot gives back what it will not add after all.

    Written without helpers that take arrays: numba would reference-count those arrays (atomic
    operations) on every call, which cost more than the work itself here.
    """
    hours, ub, grid, lev_ptr, lev_val = s.hours, s.ub, s.grid, s.lev_ptr, s.lev_val
    weight, quantum = s.weight, s.quantum
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    T = order.shape[0]
    K = r.ph.shape[0]
    left = avail.copy()
    spare = np.zeros(K)
    mark = np.full(K, -1, dtype=np.int64)
    width = 0
    for t in range(T):
        width = max(width, slot_ptr[t + 1] - slot_ptr[t])
    # the competitors of the slot: session, current, wish (current + what it may still add),
    # hours, minus urgency, uncontested, and the release count when it was last found contested
    c_i = np.empty(width, dtype=np.int64)
    c_x = np.empty(width)
    c_w = np.empty(width)
    c_h = np.empty(width)
    c_key = np.empty(width)
    c_free = np.zeros(width, dtype=np.bool_)
    c_seen = np.empty(width, dtype=np.int64)
    b_i = np.empty(width, dtype=np.int64)  # scratch for sorting
    b_x = np.empty(width)
    b_w = np.empty(width)
    b_h = np.empty(width)
    b_r = np.empty(width, dtype=np.int64)
    b_key = np.empty(width)
    made = 0
    for p in range(T):
        t = order[p]
        if load:
            _load_slot(t, x, slot_ptr, slot_sess, r)
        n = 0
        for a in range(slot_ptr[t], slot_ptr[t + 1]):
            i = slot_sess[a]
            if rem[i] <= REM_TOL_AH:  # served (for good: rem only shrinks)
                continue
            h = hours[i, t]
            u = ub[i, t]
            # urgency: weight times the share of its remaining time at full current it needs
            key = -weight[i] * rem[i] / max(left[i] * top[i], 1e-12)
            if u > 0.0:
                left[i] -= h
            xi = x[i, t]
            wish = min(u, xi + rem[i] / h)
            la = lev_ptr[i]
            lb = lev_ptr[i + 1]
            if lb > la:
                nxt = math.inf
                for q in range(la, lb):
                    if lev_val[q] > xi + GRID_EPS:
                        nxt = lev_val[q]
                        break
            else:
                nxt = _grid_above(xi, grid[i, 0], grid[i, 1])
            if wish < nxt - GRID_EPS:
                continue
            c_i[n] = i
            c_x[n] = xi
            c_w[n] = wish
            c_h[n] = h
            c_key[n] = key
            n += 1
            for e in range(sess_ptr[i], sess_ptr[i + 1]):
                k = e_k[e, 0]
                if mark[k] != p:
                    mark[k] = p
                    spare[k] = room[t, k] if e_k[e, 1] < 0 else 0.0
        for m in range(n):
            i = c_i[m]
            more = c_w[m] - c_x[m]
            for e in range(sess_ptr[i], sess_ptr[i + 1]):
                if e_k[e, 1] < 0:
                    spare[e_k[e, 0]] -= e_f[e, 2] * more
                else:
                    spare[e_k[e, 0]] += e_f[e, 2] * more
        # Uncontested competitors first (they stay so: spare only grows), then the others by
        # most urgent first, ties by rank.
        nf = 0
        for m in range(n):
            i = c_i[m]
            free = True
            for e in range(sess_ptr[i], sess_ptr[i + 1]):
                k = e_k[e, 0]
                j = e_k[e, 1]
                if j < 0:
                    if spare[k] < 0.0:
                        free = False
                        break
                elif math.hypot(z[t, j, 0], z[t, j, 1]) + spare[k] > room[t, k]:
                    free = False
                    break
            c_free[m] = free
            if free:
                nf += 1
        nc = 0
        for m in range(n):
            if not c_free[m]:
                b_r[nc] = rank[c_i[m]]
                b_i[nc] = m
                nc += 1
        if nc > 0:  # contested ones: rank-sorted, then stably by urgency
            by = np.argsort(b_r[:nc])
            for m in range(nc):
                b_key[m] = c_key[b_i[by[m]]]
            by2 = np.argsort(b_key[:nc], kind="mergesort")
            for m in range(nc):
                b_r[m] = b_i[by[by2[m]]]  # competitor slots in final order
        # rebuild: free ones (in list order), then the contested ones in b_r order
        w = 0
        for m in range(n):
            if c_free[m]:
                b_i[w] = c_i[m]
                b_x[w] = c_x[m]
                b_w[w] = c_w[m]
                b_h[w] = c_h[m]
                w += 1
        for m in range(nc):
            q = b_r[m]
            b_i[w] = c_i[q]
            b_x[w] = c_x[q]
            b_w[w] = c_w[q]
            b_h[w] = c_h[q]
            w += 1
        for m in range(n):
            c_i[m] = b_i[m]
            c_x[m] = b_x[m]
            c_w[m] = b_w[m]
            c_h[m] = b_h[m]
            c_free[m] = m < nf
            c_seen[m] = -1
        releases = 0  # the spare only grows on a release: no release, no new verdict
        while n > 0:
            keep = 0
            for m in range(n):
                i = c_i[m]
                xi = c_x[m]
                wish = c_w[m]
                free = c_free[m]
                if not free and c_seen[m] != releases:
                    free = True
                    for e in range(sess_ptr[i], sess_ptr[i + 1]):
                        k = e_k[e, 0]
                        j = e_k[e, 1]
                        if j < 0:
                            if spare[k] < 0.0:
                                free = False
                                break
                        elif math.hypot(z[t, j, 0], z[t, j, 1]) + spare[k] > room[t, k]:
                            free = False
                            break
                    if not free:
                        c_seen[m] = releases
                la = lev_ptr[i]
                lb = lev_ptr[i + 1]
                lo = grid[i, 0]
                st = grid[i, 1]
                if lb > la:
                    nxt = math.inf
                    for q in range(la, lb):
                        if lev_val[q] > xi + GRID_EPS:
                            nxt = lev_val[q]
                            break
                else:
                    nxt = _grid_above(xi, lo, st)
                want = wish if free else min(max(xi + quantum[i], nxt), wish)
                # cap by every row's exact headroom
                cap = want
                for e in range(sess_ptr[i], sess_ptr[i + 1]):
                    k = e_k[e, 0]
                    j = e_k[e, 1]
                    if j < 0:
                        c = xi + room[t, k] * e_f[e, 3]
                    else:
                        c = xi + _step_room(
                            z[t, j, 0], z[t, j, 1], e_f[e, 0], e_f[e, 1], room[t, k]
                        )
                    if c < cap:
                        cap = c
                        if cap < nxt - GRID_EPS:
                            break
                new = xi
                if cap >= nxt - GRID_EPS:
                    if lb > la:
                        for q in range(la, lb):
                            if lev_val[q] <= cap + GRID_EPS:
                                new = lev_val[q]
                            else:
                                break
                    else:
                        new = _grid_floor(cap, lo, st)
                if new > xi:
                    d = new - xi
                    rem[i] -= d * c_h[m]
                    for e in range(sess_ptr[i], sess_ptr[i + 1]):
                        k = e_k[e, 0]
                        j = e_k[e, 1]
                        if j < 0:
                            room[t, k] -= e_f[e, 2] * d
                        else:
                            z[t, j, 0] += e_f[e, 0] * d
                            z[t, j, 1] += e_f[e, 1] * d
                            spare[k] -= e_f[e, 2] * d
                    made += 1
                    if cap >= want and want < wish:  # a full step: stay for the next round
                        c_i[keep] = i
                        c_x[keep] = new
                        c_w[keep] = wish
                        c_h[keep] = c_h[m]
                        c_free[keep] = False
                        c_seen[keep] = c_seen[m]
                        keep += 1
                        continue
                else:
                    new = xi
                # done with this slot: give back what it will not add after all
                x[i, t] = new
                back = wish - new
                for e in range(sess_ptr[i], sess_ptr[i + 1]):
                    if e_k[e, 1] < 0:
                        spare[e_k[e, 0]] += e_f[e, 2] * back
                    else:
                        spare[e_k[e, 0]] -= e_f[e, 2] * back
                releases += 1
            n = keep
    return made


# --- improvement: move a blocking neighbour's current out of a contested slot --------------------


@numba.njit(cache=True, nogil=True)
def _fill_one(x: F64, rem: F64, i: int, order: I64, skip: int, s: Sessions, r: Rows) -> None:
    """Session i alone takes what fits in its slots (cheapest first), except slot ``skip``."""
    hours, ub, grid, lev_ptr, lev_val = s.hours, s.ub, s.grid, s.lev_ptr, s.lev_val
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    for p in range(order.shape[0]):
        if rem[i] <= REM_TOL_AH:
            break
        t = order[p]
        h = hours[i, t]
        xi = x[i, t]
        if t == skip or h <= 0.0 or ub[i, t] <= xi + GRID_EPS:
            continue
        nxt = _above_i(grid, lev_ptr, lev_val, i, xi)
        cap = min(ub[i, t], xi + rem[i] / h)
        if cap < nxt - GRID_EPS:
            continue
        cap = _cap_rows(sess_ptr, e_k, e_f, room, z, i, t, xi, cap, nxt - GRID_EPS)
        if cap < nxt - GRID_EPS:
            continue
        new = _floor_i(grid, lev_ptr, lev_val, i, cap)
        if new > xi:
            x[i, t] = new
            rem[i] -= (new - xi) * h
            _apply(sess_ptr, e_k, e_f, room, z, i, t, new - xi)


@numba.njit(cache=True, nogil=True)
def _undo(x: F64, r: Rows, i: int, before: F64) -> None:
    """Restore session i's currents to ``before`` (and its rows' state)."""
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    for t in range(x.shape[1]):
        d = before[t] - x[i, t]
        if d != 0.0:
            x[i, t] = before[t]
            _apply(sess_ptr, e_k, e_f, room, z, i, t, d)


@numba.njit(cache=True, nogil=True)
def _shift(x: F64, rem: F64, seq: I64, order: I64, s: Sessions, r: Rows, budget: int) -> int:
    """For short sessions, free room in blocked slots by moving donors elsewhere; returns moves.

    Session i (short of its need, in ``seq`` order) is blocked in slot t by its tightest row k. A
    donor j (another member of k drawing in t, pointing along k's phasor) drops in t by what i
    lacks (at least i's quantum), or, if that fails, to zero (a new slot of j may need its whole
    minimum current); j refills its lost energy in its other slots, then i refills. The move is
    kept if i gained and j kept all its energy (so nobody pays for it, and no car is starved by
    this pass); otherwise both sessions' currents and the row state are restored. ``budget``
    bounds the work (slot visits).
    """
    hours, ub, grid, lev_ptr, lev_val = s.hours, s.ub, s.grid, s.lev_ptr, s.lev_val
    quantum = s.quantum
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    row_ptr, row_idx, r_f = r.row_ptr, r.row_idx, r.r_f
    T = x.shape[1]
    moves = 0
    work = 0
    xj_before = np.empty(T)
    xi_before = np.empty(T)
    for a in range(seq.shape[0]):
        i = seq[a]
        pos = 0
        while pos < T and rem[i] > REM_TOL_AH and work < budget:
            t = order[pos]
            h = hours[i, t]
            xi = x[i, t]
            work += 1
            if h <= 0.0 or ub[i, t] <= xi + GRID_EPS:
                pos += 1
                continue
            nxt = _above_i(grid, lev_ptr, lev_val, i, xi)
            if nxt > ub[i, t] + GRID_EPS or xi + rem[i] / h < nxt - GRID_EPS:
                pos += 1
                continue
            # the tightest row that keeps i from its next allowed current
            kb = -1
            eb = -1
            worst = math.inf
            for e in range(sess_ptr[i], sess_ptr[i + 1]):
                room_e = _entry_room(e_k, e_f, room, z, e, t)
                if xi + room_e < nxt - GRID_EPS and room_e < worst:
                    worst = room_e
                    kb = e_k[e, 0]
                    eb = e
            if kb < 0:
                pos += 1
                continue
            lack = max(nxt - xi - max(worst, 0.0), min(quantum[i], ub[i, t] - xi)) * e_f[eb, 2]
            jb = e_k[eb, 1]
            done = False
            for q in range(row_ptr[kb], row_ptr[kb + 1]):
                j = row_idx[q]
                work += 1
                if j == i or x[j, t] <= 0.0 or work >= budget:
                    continue
                if jb >= 0 and z[t, jb, 0] * r_f[q, 0] + z[t, jb, 1] * r_f[q, 1] <= 0.0:
                    continue  # lowering j would not shrink this phasor
                xj = x[j, t]
                first_low = -1.0
                for attempt in range(2):
                    low = 0.0
                    if attempt == 0:
                        low = _floor_i(grid, lev_ptr, lev_val, j, xj - lack / r_f[q, 2])
                        if low >= xj:
                            low = 0.0
                    elif first_low == 0.0:
                        break  # the first attempt already dropped j to zero
                    first_low = low
                    work += 4 * T
                    for u in range(T):
                        xj_before[u] = x[j, u]
                        xi_before[u] = x[i, u]
                    rem_j0 = rem[j]
                    rem_i0 = rem[i]
                    x[j, t] = low
                    rem[j] += (xj - low) * hours[j, t]
                    _apply(sess_ptr, e_k, e_f, room, z, j, t, low - xj)
                    _fill_one(x, rem, j, order, t, s, r)
                    _fill_one(x, rem, i, order, -1, s, r)
                    if rem_i0 - rem[i] > 1e-9 and rem[j] <= rem_j0 + 1e-9:
                        moves += 1
                        done = True
                        break
                    _undo(x, r, j, xj_before)
                    _undo(x, r, i, xi_before)
                    rem[j] = rem_j0
                    rem[i] = rem_i0
                if done:
                    break
            if not done:
                pos += 1
    return moves


# --- repair --------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _sanitize(x: F64, s: Sessions, need: F64, order: I64) -> None:
    """Clip to [0, ub], floor to the allowed currents, cut energy above need (dearest first)."""
    hours, ub, grid, lev_ptr, lev_val = s.hours, s.ub, s.grid, s.lev_ptr, s.lev_val
    N, T = x.shape
    for i in range(N):
        e = 0.0
        for t in range(T):
            v = x[i, t]
            if not (v > 0.0) or hours[i, t] <= 0.0:  # also NaN
                v = 0.0
            if v > ub[i, t]:
                v = ub[i, t]
            if v > 0.0:
                v = min(_floor_i(grid, lev_ptr, lev_val, i, v), ub[i, t])
            x[i, t] = v
            e += v * hours[i, t]
        over = e - need[i]
        pos = T - 1  # dearest slots first (ties: latest first)
        while over > ENERGY_TOL_AH and pos >= 0:
            t = order[pos]
            pos -= 1
            v = x[i, t]
            h = hours[i, t]
            if v <= 0.0 or h <= 0.0:
                continue
            nv = _floor_i(grid, lev_ptr, lev_val, i, v - over / h)
            if nv >= v:
                nv = _below_i(grid, lev_ptr, lev_val, i, v)
            x[i, t] = nv
            over -= (v - nv) * h


@numba.njit(cache=True, nogil=True)
def _repair_slot(t: int, x: F64, s: Sessions, r: Rows) -> int:
    """Lower currents in slot t until every row holds; returns the number of rows zeroed.

    An over-limit row scales its members that point along its phasor z (Re(conj(z) c) > 0) by the
    largest factor f in [0, 1) with |z_rest + f z_along| <= L, floored to the allowed currents
    (flooring only lowers them further along z). Lowering a member may push another phasor row of
    the slot over, so the slot is swept again; after REPAIR_SWEEPS sweeps an over-limit row has
    its members zeroed (repeated until every row holds, as zero always does).
    """
    grid, lev_ptr, lev_val = s.grid, s.lev_ptr, s.lev_val
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    row_ptr, row_idx, r_f, ph, limit = r.row_ptr, r.row_idx, r.r_f, r.ph, r.limit
    K = ph.shape[0]
    zeroed = 0
    for sweep in range(REPAIR_SWEEPS + K + 1):
        bad = False
        for k in range(K):
            j = ph[k]
            if j < 0:  # (sum |c| x, 0, L)
                lim = limit[k, t]
                zr = lim - room[t, k]
                zi = 0.0
            else:
                lim = room[t, k]
                zr = z[t, j, 0]
                zi = z[t, j, 1]
            if lim == math.inf:  # no limit in this slot
                continue
            top = lim + ROW_TOL * max(lim, 1.0)
            if zr * zr + zi * zi <= top * top:
                continue
            bad = True
            if sweep >= REPAIR_SWEEPS:  # last resort: zero the row's members
                for p in range(row_ptr[k], row_ptr[k + 1]):
                    i = row_idx[p]
                    v = x[i, t]
                    if v != 0.0:
                        x[i, t] = 0.0
                        _apply(sess_ptr, e_k, e_f, room, z, i, t, -v)
                zeroed += 1
                continue
            # split z into the part along z (to scale) and the rest
            ar = 0.0
            ai = 0.0
            for p in range(row_ptr[k], row_ptr[k + 1]):
                v = x[row_idx[p], t]
                if v > 0.0 and zr * r_f[p, 0] + zi * r_f[p, 1] > 0.0:
                    ar += r_f[p, 0] * v
                    ai += r_f[p, 1] * v
            # largest f in [0, 1] with |rest + f * along| <= L
            f = min(_step_room(zr - ar, zi - ai, ar, ai, lim), 1.0) * (1.0 - 1e-12)
            for p in range(row_ptr[k], row_ptr[k + 1]):
                i = row_idx[p]
                v = x[i, t]
                if v > 0.0 and zr * r_f[p, 0] + zi * r_f[p, 1] > 0.0:
                    nv = _floor_i(grid, lev_ptr, lev_val, i, v * f - 2 * GRID_EPS)
                    if nv >= v:
                        nv = _floor_i(grid, lev_ptr, lev_val, i, v - 2 * GRID_EPS)
                    if nv < v:
                        x[i, t] = nv
                        _apply(sess_ptr, e_k, e_f, room, z, i, t, nv - v)
        if not bad:
            break
    return zeroed


@numba.njit(cache=True, nogil=True)
def _repair(x: F64, slot_ptr: I64, slot_sess: I64, s: Sessions, r: Rows) -> int:
    """Load and repair every slot; returns the number of rows zeroed as a last resort."""
    zeroed = 0
    for t in range(x.shape[1]):
        _load_slot(t, x, slot_ptr, slot_sess, r)
        zeroed += _repair_slot(t, x, s, r)
    return zeroed


# --- set-up --------------------------------------------------------------------------------------


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
        _shift(x, rem, short, order, s, r, SHIFT_WORK * c.n * c.t + 10_000)


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
