"""The optional MILP: the LP's arrays with each current restricted to its allowed set.

``milp_arrays`` adds integrality for ``lo``/``step``/discrete levels to what ``build_lp``
assembled; :func:`optimizer.core.lp.solve_milp` runs it through the same HiGHS adapter and
status table as the LP. Apart from ``lp`` because it is a formulation of its own (binaries,
semi-integer and semi-continuous columns) that only small instances use.
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from .compile import Compiled
from .lp_arrays import F64, LPArrays

INF = highspy.kHighsInf


def milp_arrays(lp: LPArrays, c: Compiled) -> tuple[LPArrays, NDArray[np.int32], F64]:
    """Add integrality for each current's allowed set; returns (arrays, integrality, x scale).

    Column ``j`` of ``x`` becomes, by its session's rule:
    levels ``{0, v1..vL}``: ``x = sum_l v_l b_l``, ``sum_l b_l <= 1`` with binaries ``b``;
    grid with ``lo`` a multiple of ``step``: ``x = step * y``, ``y`` semi-integer in
    ``{0} u [lo/step, ub/step]``; grid with ``lo`` off the step grid: ``x = lo z + step k``,
    ``k <= K z``; continuous (``step = 0``) with ``lo > 0``: ``x`` semi-continuous in
    ``{0} u [lo, ub]``. Extra columns go after ``f``; loops run only over level/off-grid columns.
    """
    n_x = lp.n_x
    t = c.t
    si = np.flatnonzero(lp.active.ravel()) // max(t, 1)
    nlev = np.diff(c.lev_ptr)[si]
    lo = c.lo[si]
    step = c.step[si]
    hi = lp.col_hi[:n_x]
    lev = nlev > 1
    grid = ~lev & (step > 0)
    ratio = np.where(grid, lo / np.where(grid, step, 1.0), 0.0)
    on = grid & (np.abs(ratio - np.round(ratio)) < 1e-7)
    off = grid & ~on
    semi_c = ~lev & ~grid & (lo > 0)

    scale = np.where(on, step, 1.0)
    ncol0 = lp.cost.size
    colscale = np.concatenate((scale, np.ones(ncol0 - n_x)))
    a = (lp.a @ sp.diags(colscale)).tocsc()
    cost = lp.cost * colscale
    col_lo = lp.col_lo.copy()
    col_hi = lp.col_hi.copy()
    integ = np.zeros(ncol0, dtype=np.int32)
    col_hi[:n_x] = np.where(on, np.floor(hi / scale + 1e-7), hi)
    col_lo[:n_x] = np.where(on, np.round(ratio), np.where(semi_c, lo, 0.0))
    semi_int = int(highspy.HighsVarType.kSemiInteger)
    integ[:n_x] = np.where(on, np.where(np.round(ratio) > 0, semi_int, 1), integ[:n_x])
    integ[:n_x][semi_c] = int(highspy.HighsVarType.kSemiContinuous)

    rr: list[int] = []
    rc: list[int] = []
    rv: list[float] = []
    rlo: list[float] = []
    rhi: list[float] = []
    xlo: list[float] = []
    xhi: list[float] = []
    xint: list[int] = []
    nrow0 = lp.row_lo.size
    nxt = ncol0
    for j in np.flatnonzero(lev | off):
        r = nrow0 + len(rlo)
        if lev[j]:
            i = si[j]
            vals = c.lev_val[c.lev_ptr[i] : c.lev_ptr[i + 1]]
            vals = vals[(vals > 0) & (vals <= hi[j] + 1e-9)]
            b = list(range(nxt, nxt + vals.size))
            rr += [r] * (1 + vals.size) + [r + 1] * vals.size
            rc += [int(j), *b, *b]
            rv += [1.0, *(-vals).tolist(), *([1.0] * vals.size)]
            rlo += [0.0, -INF]
            rhi += [0.0, 1.0]
            xlo += [0.0] * vals.size
            xhi += [1.0] * vals.size
            xint += [1] * vals.size
            nxt += vals.size
        else:
            z, k = nxt, nxt + 1
            kmax = float(np.floor((hi[j] - lo[j]) / step[j] + 1e-7))
            rr += [r, r, r, r + 1, r + 1]
            rc += [int(j), z, k, k, z]
            rv += [1.0, -float(lo[j]), -float(step[j]), 1.0, -kmax]
            rlo += [0.0, -INF]
            rhi += [0.0, 0.0]
            xlo += [0.0, 0.0]
            xhi += [1.0, kmax]
            xint += [1, 1]
            nxt += 2
    ncol = nxt
    nrow = nrow0 + len(rlo)
    a = sp.hstack([a, sp.csc_matrix((nrow0, ncol - ncol0))])
    extra = sp.csc_matrix(
        (rv, (np.asarray(rr, dtype=np.int64) - nrow0, rc)), shape=(nrow - nrow0, ncol)
    )
    a = sp.vstack([a, extra]).tocsc()
    a.sum_duplicates()
    arrays = LPArrays(
        cost=np.concatenate((cost, np.zeros(ncol - ncol0))),
        col_lo=np.concatenate((col_lo, xlo)),
        col_hi=np.concatenate((col_hi, xhi)),
        row_lo=np.concatenate((lp.row_lo, rlo)),
        row_hi=np.concatenate((lp.row_hi, rhi)),
        a=a,
        active=lp.active,
    )
    return arrays, np.concatenate((integ, np.asarray(xint, dtype=np.int32))), scale
