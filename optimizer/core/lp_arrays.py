"""The LP in array form, and the linearised limit rows it is assembled from.

``LPArrays`` is the solver-neutral form ``build_lp`` produces and ``milp_arrays`` extends;
``directions`` turns each compiled limit row into linear "generalised rows" (``|c_p|`` for a
linear row, polygon directions for a phasor row). Both are pure numpy with no solver, and sit
below :mod:`optimizer.core.lp` and :mod:`optimizer.core.milp` so that neither imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from .compile import Compiled

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: Polygon coefficients with smaller magnitude are dropped.
COEF_EPS = 1e-12


@dataclass(frozen=True)
class LPArrays:
    """``min cost.x  s.t.  row_lo <= A x <= row_hi, col_lo <= x <= col_hi`` (A in CSC).

    Columns: ``x`` for the True cells of ``active`` (row-major), then ``u`` (N), then ``f``.
    """

    cost: F64
    col_lo: F64
    col_hi: F64
    row_lo: F64
    row_hi: F64
    a: sp.csc_matrix
    active: NDArray[np.bool_]  # [N, T]

    @property
    def n_x(self) -> int:
        return int(self.active.sum())


@dataclass(frozen=True)
class Directions:
    """Limit rows before the slot expansion: one "generalised row" g per (row k, direction).

    ``ent_g``/``ent_sess``/``ent_a`` list the coefficients ``a`` of session ``ent_sess`` in g.
    """

    k: I64  # [G] compiled row
    scale: F64  # [G] rhs = scale * limit[k, t]
    ent_g: I64
    ent_sess: I64
    ent_a: F64


def directions(c: Compiled, polygon: str, sides: int) -> Directions:
    """Linearise every row: |c_p| for linear rows, M polygon directions for phasor rows."""
    nper = np.diff(c.row_ptr)
    row_of = np.repeat(np.arange(c.k, dtype=np.int64), nper)
    lin_k = np.flatnonzero(c.row_linear)
    nl_k = np.flatnonzero(~c.row_linear & (nper > 0))  # an empty row constrains nothing
    # linear rows: g = position among linear rows
    lin_g = np.full(c.k, -1, dtype=np.int64)
    lin_g[lin_k] = np.arange(lin_k.size)
    ent_lin = np.flatnonzero(c.row_linear[row_of])
    g_parts = [lin_g[row_of[ent_lin]]]
    s_parts = [c.row_idx[ent_lin]]
    a_parts = [np.hypot(c.row_re[ent_lin], c.row_im[ent_lin])]
    k_parts = [lin_k]
    sc_parts = [np.ones(lin_k.size)]
    if nl_k.size:
        psi = 2.0 * math.pi * np.arange(sides) / sides
        ent_nl = np.flatnonzero(~c.row_linear[row_of])  # grouped by row, rows ascending
        a = c.row_re[ent_nl, None] * np.cos(psi)[None, :] + c.row_im[ent_nl, None] * np.sin(psi)
        a[np.abs(a) < COEF_EPS] = 0.0
        seg = np.concatenate(([0], np.cumsum(nper[nl_k])[:-1]))
        keep = np.maximum.reduceat(a, seg, axis=0) > COEF_EPS  # [K_nl, M] some a_p > 0
        gid = np.cumsum(keep.ravel()).reshape(keep.shape) - 1 + lin_k.size
        local = np.repeat(np.arange(nl_k.size), nper[nl_k])  # entry -> index in nl_k
        sel = keep[local] & (a != 0.0)
        q, m = np.nonzero(sel)
        g_parts.append(gid[local[q], m])
        s_parts.append(c.row_idx[ent_nl[q]])
        a_parts.append(a[q, m])
        kk, _ = np.nonzero(keep)
        k_parts.append(nl_k[kk])
        s = math.cos(math.pi / sides) if polygon == "inner" else 1.0
        sc_parts.append(np.full(kk.size, s))
    return Directions(
        k=np.concatenate(k_parts).astype(np.int64),
        scale=np.concatenate(sc_parts),
        ent_g=np.concatenate(g_parts).astype(np.int64),
        ent_sess=np.concatenate(s_parts).astype(np.int64),
        ent_a=np.concatenate(a_parts),
    )
