"""Row headroom: how much current a session may add in a slot, and the row state it changes.

A linear row keeps its room ``L - sum |c| x``, a phasor row its ``z = sum c x``; the largest step
that keeps ``|z + c d| <= L`` is the upper root of a quadratic (``_step_room``). Every pass reads
and updates the row state through these helpers, so the plan stays feasible after each step.
"""

from __future__ import annotations

import math

import numba

from .arrays import F64, I64, ROW_TOL, Rows


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
def _step_down(zr: float, zi: float, cr: float, ci: float, lim: float) -> float:
    """Smallest d >= 0 with |z - c d| <= lim (0 if |z| <= lim already, inf if lowering along c
    cannot get there): how far one member must drop to bring an over-limit phasor back."""
    over = zr * zr + zi * zi - lim * lim  # |z|^2 - L^2
    if over <= 0.0:
        return 0.0
    cc = cr * cr + ci * ci
    b = zr * cr + zi * ci
    if b <= 0.0 or cc <= 0.0:
        return math.inf
    disc = b * b - cc * over
    if disc < 0.0:
        return math.inf
    # lower root of cc d^2 - 2 b d + over = 0, in the form without cancellation
    return over / (b + math.sqrt(disc))


@numba.njit(cache=True, nogil=True, inline="always")
def _row_use(zr: float, zi: float, cr: float, ci: float, cabs: float) -> float:
    """Row capacity one more A of a member takes at the margin: ``|c|`` on a linear row (pass
    ``zr = zi = 0``), ``d|z|/dx = Re(conj(z) c) / |z|`` on a phasor row (``|c|`` if z is 0);
    negative if raising the member shrinks the phasor."""
    m = math.hypot(zr, zi)
    if m <= 0.0:
        return cabs
    return (zr * cr + zi * ci) / m


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
def _rows_hold(sess_ptr: I64, e_k: I64, room: F64, z: F64, i: int, t: int) -> bool:
    """Whether every phasor row of session i holds at t (after lowering i: lowering a member whose
    coefficient points against the row's phasor lengthens it; linear rows only gain room)."""
    for e in range(sess_ptr[i], sess_ptr[i + 1]):
        j = e_k[e, 1]
        if j >= 0:
            lim = room[t, e_k[e, 0]]
            if math.hypot(z[t, j, 0], z[t, j, 1]) > lim + ROW_TOL * max(lim, 1.0):
                return False
    return True


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
