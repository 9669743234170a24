"""Improvement: move a blocking neighbour's current out of a contested slot.

After the rounds, a session still short of its need asks the other members of the row that
blocks it to move current to their own free slots; a move is kept only if the short session gained
and the donor kept all its energy, else ``_undo`` restores both exactly.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..compile import GRID_EPS
from .arrays import F64, I64, REM_TOL_AH, Rows, Sessions
from .currents import _above_i, _floor_i
from .fill import _fill_one
from .headroom import _apply, _entry_room


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
