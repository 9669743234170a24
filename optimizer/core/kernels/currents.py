"""Allowed currents: floor to, and step along, a session's grid or discrete set of currents.

A session draws 0 or a current of the ``lo + k*step`` grid (``step`` 0: any current from ``lo``),
or one of a discrete set of levels; these ``inline="always"`` helpers are all that decide which,
so every pass rounds the same way (within ``GRID_EPS``, which absorbs float noise).
"""

from __future__ import annotations

import math

import numba

from ..compile import GRID_EPS
from .arrays import F64, I64, MIN_STEP_A


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
