"""Phasor geometry: the worst magnitude a phasor limit can see when cars draw less than planned.

Pure numpy on coefficients and currents, kept apart so that the node screen and the per-segment
node rule bound partial draw with the same code; ``box_max_magnitude`` is public.
"""

from __future__ import annotations

import math

import numpy as np

from .timeline import C128, F64, Bools

#: Up to this many coefficient directions the partial-draw maximum enumerates all arcs.
_ARC_ENUM_MAX = 16


def box_max_magnitude(coef: C128, upper: F64, *, arcs: bool | None = None) -> F64:
    """max |sum_i coef[i] * x_i| over 0 <= x_i <= upper[i, t], for every column t.

    Cars may draw anything up to their profile, so this, not the magnitude at the planned
    currents, must stay within a phasor limit. The maximum of a norm over a box is at a vertex,
    i.e. at max |sum over a subset S of coef_i * upper_i|, and for the best subset the
    contributions all lie in one open half-plane. Sorting the directions by angle, every
    half-plane subset is a contiguous circular arc. With few directions we take the largest over
    *all* arcs (a superset of the half-plane sets, a subset of all subsets, hence exact and free
    of angle thresholds); with many, only the arcs of the half-planes between the breakpoints
    a_i +- 90 degrees (linear in the number of directions). ``arcs`` forces either way (tests).
    """
    dirs, w = _direction_sums(np.asarray(coef, dtype=np.complex128), upper)
    return _box_max(dirs, w, arcs)


def _direction_sums(coef: C128, upper: F64) -> tuple[F64, C128]:
    """Directions (rad, ascending) and per direction sum_i coef_i * upper[i, t]: [K], [K, T]."""
    upper = np.atleast_2d(np.asarray(upper, dtype=np.float64))
    keep = np.abs(coef) > 1e-12
    if not keep.all():
        coef, upper = coef[keep], upper[keep]
    ang = np.round(np.mod(np.angle(coef), 2 * math.pi), 9)
    dirs, inv = np.unique(ang, return_inverse=True)
    # One contribution per direction: coef_i are complex, so within a group they add exactly.
    g = np.zeros((dirs.shape[0], coef.shape[0]), dtype=np.complex128)
    g[inv, np.arange(coef.shape[0])] = coef
    w: C128 = g.real @ upper + 1j * (g.imag @ upper)
    return dirs.astype(np.float64), w


def _box_max(dirs: F64, w: C128, arcs: bool | None = None) -> F64:
    k = dirs.shape[0]
    if k == 0:
        return np.zeros(w.shape[1])
    if k == 1:
        return np.abs(w[0])
    pre = np.zeros((2 * k + 1, w.shape[1]), dtype=np.complex128)
    np.cumsum(np.vstack([w, w]), axis=0, out=pre[1:])
    best = np.abs(pre[k] - pre[0])
    if (k <= _ARC_ENUM_MAX) if arcs is None else arcs:
        for length in range(1, k):
            best = np.maximum(best, np.abs(pre[length : length + k] - pre[:k]).max(axis=0))
        return best
    cuts = np.unique(np.mod(np.concatenate([dirs + math.pi / 2, dirs - math.pi / 2]), 2 * math.pi))
    mids = (cuts + np.append(cuts[1:], cuts[0] + 2 * math.pi)) / 2
    for psi in mids:
        inside = np.cos(dirs - psi) > 0
        n_in = int(inside.sum())
        if n_in in (0, k):
            continue
        first = int(np.flatnonzero(inside & ~np.roll(inside, 1))[0])  # arc start, circularly
        best = np.maximum(best, np.abs(pre[first + n_in] - pre[first]))
    return best


def _phasor_terms(coef: C128, plc: C128, split: Bools) -> C128:
    """[N, 3] a phasor limit's terms per A of each car: one per phase it may draw on its own.

    A wye car may draw less on one phase than on another, so its phases are separate draws in
    [0, x]; a delta branch's terms are one current (in the first column, the others zero).
    """
    per = coef * plc[None, :]
    joined = np.zeros_like(per)
    joined[:, 0] = per.sum(axis=1)
    return np.where(split[:, None], per, joined)


def _planned_magnitude(coef: C128, x: F64) -> F64:
    """|sum_i coef[i] * x[i, t]| at the planned currents."""
    return np.abs(coef.real @ x + 1j * (coef.imag @ x))
