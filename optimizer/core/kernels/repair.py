"""Repair: turn any current matrix (an LP solution, say) into one that meets every hard limit.

``_sanitize`` clips, floors to the allowed currents and cuts energy above the request;
``_repair`` then lowers, slot by slot, the members of every over-limit row until each holds,
zeroing a row's members as the last resort (zero is always feasible).
"""

from __future__ import annotations

import math

import numba

from ..compile import GRID_EPS
from .arrays import ENERGY_TOL_AH, F64, I64, REPAIR_SWEEPS, ROW_TOL, Rows, Sessions
from .currents import _below_i, _floor_i
from .headroom import _apply, _load_slot, _step_room


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
