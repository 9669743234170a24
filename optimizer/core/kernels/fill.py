"""The rounds: fill every slot, cheapest first, sharing contested slots by weight and urgency.

``_fill_slots`` is the allocation proper (see the package docstring); ``_fill_one`` lets one
session alone take what fits in its slots, which the improvement pass uses to refill a donor and
the short session after a move.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..compile import GRID_EPS
from .arrays import F64, I64, REM_TOL_AH, Rows, Sessions
from .currents import _above_i, _floor_i, _grid_above, _grid_floor
from .headroom import _apply, _cap_rows, _load_slot, _step_room


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
