"""What every kernel shares: the array types, the tolerances, and the ``Sessions``/``Rows`` tuples.

The driver builds ``Sessions`` and ``Rows`` from ``Compiled`` once per call and hands them to the
kernels, which unpack them into local arrays; keeping them here lets each kernel module name them
without importing the driver.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

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
#: ... plus this many, so that a small plan over a long horizon (one tried move costs ~4*T
#: visits however few slots its two sessions are present in) is not cut short (well under 1 ms).
SHIFT_WORK_MIN = 100_000
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
    kwpa: F64  # [N] kW per A (energy of an A*h, to compare sessions in the improvement pass)


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
