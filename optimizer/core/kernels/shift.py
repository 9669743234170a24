"""Improvement: move a blocking neighbour's current out of a contested slot, trade some of it for
a lumpy step or at a binding row's rate of exchange, or gather a session's own energy for a new
slot's minimum current.

After the rounds, a session still short of its need asks the other members of the row that blocks
it to move current to their own free slots (kept only if the short session gained and the donor
kept all its energy); failing that, one donor gives up current there (``_trade``: kept if the
energy delivered grows): just the shortfall if the session leaves at least its quantum of the
row's headroom unused because its next allowed current does not fit, or, if the row binds, what
the session still wants there, provided the donor delivers less energy per unit of the row's
capacity; and a remainder too small for a free slot's minimum current is gathered from its own
other slots (``_gather``). Whatever is not kept, ``_undo`` restores exactly.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..compile import GRID_EPS
from .arrays import F64, I64, REM_TOL_AH, Rows, Sessions
from .currents import _above_i, _below_i, _floor_i
from .fill import _fill_one
from .headroom import _apply, _cap_rows, _entry_room, _row_use, _rows_hold, _step_down


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
def _gather(
    x: F64, rem: F64, i: int, t: int, nxt: float, order: I64, s: Sessions, r: Rows, before: F64
) -> bool:
    """Session i has too little energy left for its next allowed current ``nxt`` at t (which its
    rows admit there): lower i in its other slots, dearest first, by what it lacks, raise t to
    ``nxt`` and refill. Kept (True) if i ends with more energy: a remainder below one slot's
    minimum current is then delivered instead of lost. Else undone. ``before``: scratch [T]."""
    hours, grid, lev_ptr, lev_val = s.hours, s.grid, s.lev_ptr, s.lev_val
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    T = x.shape[1]
    h = hours[i, t]
    xi = x[i, t]
    rem0 = rem[i]
    want = (nxt - xi) * h - rem0  # A*h to take from i's other slots
    for u in range(T):
        before[u] = x[i, u]
    ok = True
    p = T - 1
    while want > 0.0 and p >= 0:
        u = order[p]
        p -= 1
        v = x[i, u]
        if u == t or v <= 0.0:
            continue
        hu = hours[i, u]
        nv = _floor_i(grid, lev_ptr, lev_val, i, v - want / hu - 2 * GRID_EPS)
        if nv >= v:
            nv = _below_i(grid, lev_ptr, lev_val, i, v)
        x[i, u] = nv
        _apply(sess_ptr, e_k, e_f, room, z, i, u, nv - v)
        rem[i] += (v - nv) * hu
        want -= (v - nv) * hu
        if not _rows_hold(sess_ptr, e_k, room, z, i, u):
            ok = False
            break
    if ok and want <= 0.0:
        x[i, t] = nxt
        rem[i] -= (nxt - xi) * h
        _apply(sess_ptr, e_k, e_f, room, z, i, t, nxt - xi)
        _fill_one(x, rem, i, order, -1, s, r)
        if rem[i] < rem0 - 1e-9:
            return True
    _undo(x, r, i, before)
    rem[i] = rem0
    return False


@numba.njit(cache=True, nogil=True)
def _trade(
    x: F64,
    rem: F64,
    i: int,
    t: int,
    eb: int,
    tgt: float,
    at_rate: bool,
    order: I64,
    s: Sessions,
    r: Rows,
    xi_before: F64,
    xj_before: F64,
) -> int:
    """Session i wants ``tgt`` A at t, which row ``e_k[eb]`` does not admit: let one donor j of
    that row drop by what makes room for it, if that delivers more energy than it costs.

    Tries the row's members drawing in t in turn: j drops by the least that lets i's ``tgt`` fit
    the row (floored to j's grid; to 0 if j alone cannot make that room), refills elsewhere, then
    i refills. Kept if the energy i gained exceeds, in kWh, what j lost, and does so weighted by
    priority too; else undone. With ``at_rate`` (the row binds, so i gets about what j gives up,
    at the row's rate of exchange) only donors that deliver less energy per unit of the row's
    capacity at the margin (kWh, and weighted kWh, per A of ``_row_use``) than i are tried.
    Returns the number of donors tried, positive if the last one was kept, else negative (or 0).
    ``xi_before`` and ``xj_before`` are scratch [T] arrays.
    """
    hours, grid, lev_ptr, lev_val = s.hours, s.grid, s.lev_ptr, s.lev_val
    weight, kwpa = s.weight, s.kwpa
    sess_ptr, e_k, e_f, room, z = r.sess_ptr, r.e_k, r.e_f, r.room, r.z
    row_ptr, row_idx, r_f = r.row_ptr, r.row_idx, r.r_f
    T = x.shape[1]
    kb = e_k[eb, 0]
    jb = e_k[eb, 1]
    step = tgt - x[i, t]
    zr = z[t, jb, 0] if jb >= 0 else 0.0
    zi = z[t, jb, 1] if jb >= 0 else 0.0
    use_i = _row_use(zr, zi, e_f[eb, 0], e_f[eb, 1], e_f[eb, 2])
    if at_rate and use_i <= 0.0:
        return 0
    tried = 0
    for q in range(row_ptr[kb], row_ptr[kb + 1]):
        j = row_idx[q]
        xj = x[j, t]
        if j == i or xj <= 0.0:
            continue
        if at_rate:  # j's energy per unit of row capacity must be below i's (weighted too)
            use_j = _row_use(zr, zi, r_f[q, 0], r_f[q, 1], r_f[q, 2])
            if (
                use_j <= 0.0
                or kwpa[j] * use_i >= kwpa[i] * use_j
                or weight[j] * kwpa[j] * use_i > weight[i] * kwpa[i] * use_j
            ):
                continue
        if jb < 0:  # the row lacks (step - headroom) * |c_i| of room
            d = (step * e_f[eb, 2] - room[t, kb]) / r_f[q, 2]
        else:  # the row's phasor with i at tgt, brought back by j alone
            d = _step_down(
                zr + e_f[eb, 0] * step, zi + e_f[eb, 1] * step, r_f[q, 0], r_f[q, 1], room[t, kb]
            )
        if not d < xj + GRID_EPS:
            d = xj  # j alone cannot make room short of zero (or not even then: i's fill fails)
        low = _floor_i(grid, lev_ptr, lev_val, j, xj - d)
        if low >= xj:
            continue
        tried += 1
        for u in range(T):
            xj_before[u] = x[j, u]
            xi_before[u] = x[i, u]
        rem_j0 = rem[j]
        rem_i0 = rem[i]
        x[j, t] = low
        rem[j] += (xj - low) * hours[j, t]
        _apply(sess_ptr, e_k, e_f, room, z, j, t, low - xj)
        if _rows_hold(sess_ptr, e_k, room, z, j, t):
            _fill_one(x, rem, j, order, t, s, r)
            _fill_one(x, rem, i, order, -1, s, r)
            gain = (rem_i0 - rem[i]) * kwpa[i]
            loss = (rem[j] - rem_j0) * kwpa[j]
            if gain > max(loss, 0.0) + 1e-9 and weight[i] * gain >= weight[j] * loss:
                return tried
        _undo(x, r, j, xj_before)
        _undo(x, r, i, xi_before)
        rem[j] = rem_j0
        rem[i] = rem_i0
    return -tried


@numba.njit(cache=True, nogil=True)
def _shift(x: F64, rem: F64, seq: I64, order: I64, s: Sessions, r: Rows, budget: int) -> int:
    """For short sessions, free room in blocked slots by moving donors elsewhere; returns moves.

    Session i (short of its need, in ``seq`` order) is blocked in slot t by its tightest row k. A
    donor j (another member of k drawing in t, pointing along k's phasor) drops in t by what i
    lacks (at least i's quantum), or, if that fails, to zero (a new slot of j may need its whole
    minimum current); j refills its lost energy in its other slots, then i refills. The move is
    kept if i gained and j kept all its energy (so nobody pays for it, and no car is starved by
    this pass); otherwise both sessions' currents and the row state are restored. If no donor
    can do that and i leaves at least its quantum of k's headroom unused (its next allowed
    current does not fit), ``_trade`` lets one donor give up just the shortfall when that
    delivers more energy than it costs; if k binds (less than i's quantum of headroom), one
    donor that delivers less energy per unit of k's capacity than i gives up what lets i reach
    its wish in t (as far as i's other rows admit, and at least a quantum or all it still wants
    there), kept on the same terms: the rounds share a slot by current, not by what an A costs
    the row (a delta car can take twice a phasor row per A). If i cannot take its minimum
    current in a free slot t for lack of remaining energy, ``_gather`` takes it from i's other
    slots (tried again only for shorter slots once it failed). ``budget`` bounds the work (slot
    visits).
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
        h_fail = math.inf
        while pos < T and rem[i] > REM_TOL_AH and work < budget:
            t = order[pos]
            h = hours[i, t]
            xi = x[i, t]
            work += 1
            if h <= 0.0 or ub[i, t] <= xi + GRID_EPS:
                pos += 1
                continue
            nxt = _above_i(grid, lev_ptr, lev_val, i, xi)
            if nxt > ub[i, t] + GRID_EPS:
                pos += 1
                continue
            if xi + rem[i] / h < nxt - GRID_EPS:  # too little left for the next current here
                # a new slot needs its whole minimum current: gather it from i's other slots
                # (once per slot length that failed: a longer slot needs more)
                if (
                    xi == 0.0
                    and h < h_fail
                    and _cap_rows(sess_ptr, e_k, e_f, room, z, i, t, xi, nxt, nxt - GRID_EPS)
                    >= nxt - GRID_EPS
                ):
                    work += 4 * T
                    if _gather(x, rem, i, t, nxt, order, s, r, xi_before):
                        moves += 1
                        continue
                    h_fail = h
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
                    if _rows_hold(sess_ptr, e_k, room, z, j, t):
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
            tried = 0
            if not done and worst >= quantum[i]:  # its next current misses the row's headroom
                tried = _trade(x, rem, i, t, eb, nxt, False, order, s, r, xi_before, xj_before)
            elif not done:  # the row binds: trade for i's wish here, as its other rows admit
                wish = min(ub[i, t], xi + rem[i] / h)
                tgt = wish
                for e in range(sess_ptr[i], sess_ptr[i + 1]):
                    if e != eb:
                        tgt = min(tgt, xi + _entry_room(e_k, e_f, room, z, e, t))
                tgt = _floor_i(grid, lev_ptr, lev_val, i, tgt)
                if tgt >= max(nxt, xi + min(quantum[i], wish - xi)) - GRID_EPS:
                    tried = _trade(x, rem, i, t, eb, tgt, True, order, s, r, xi_before, xj_before)
            work += 4 * T * abs(tried)
            if tried > 0:
                moves += 1
                done = True
            if not done:
                pos += 1
    return moves
