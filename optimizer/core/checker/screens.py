"""Screens: vectorised tests on pieces that clear most rows, sessions, results and nodes at once.

The elementwise rules (connector, outside stay, vehicle) are screened exactly on every piece,
the node sums in fixed point with a margin far above any rounding, the energy figures with half
their tolerance to spare. A screen only decides where the per-segment rules of ``rules`` run,
never what is reported, so flagging too much costs time, not correctness. The orchestration in
the package looks them up in its own namespace at call time, so tests can force every one to
flag everything.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..model import Connector
from .phasor import _box_max, _phasor_terms
from .timeline import (
    C128,
    ENERGY_TOL,
    F64,
    REL_TOL,
    ZERO_A,
    Bools,
    _distinct,
    _Loads,
    _ranges,
    _Segments,
    _Steps,
    _Targets,
    _tol,
)


def _connector_screen(y: _Steps, cs: list[Connector]) -> list[int]:
    """The rows that break a connector rule: the rules are elementwise, so testing every piece
    finds exactly these."""
    r, v = y.row, y.v
    facts = np.asarray(
        [
            f
            for c in cs
            for f in (
                c.max_current_a,
                c.min_current_a,
                c.current_step_a,
                bool(c.allowed_currents_a),
            )
        ],
        dtype=np.float64,
    ).reshape(-1, 4)
    mx, mn, step = facts[:, 0], facts[:, 1], facts[:, 2]
    above, below = (mx + _tol(mx))[r], (mn - _tol(mn))[r]
    mn, step, listed = mn[r], step[r], (facts[:, 3] > 0)[r]
    nan = np.isnan(v)
    bad = nan | (v > above) | (v < -ZERO_A)
    on = v > ZERO_A
    low = on & ~listed & (v < below)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(step > 0, (v - mn) / np.where(step > 0, step, 1.0), 0.0)
        off = np.abs(k - np.round(k)) * step
    bad |= low | (on & ~listed & ~low & (step > 0) & (off > _tol(v)))
    sets: dict[tuple[float, ...], list[int]] = defaultdict(list)
    for i, c in enumerate(cs):
        if c.allowed_currents_a:
            sets[tuple(c.allowed_currents_a)].append(i)
    for allowed_set, members in sets.items():
        allowed = np.asarray((0.0, *allowed_set), dtype=np.float64)
        sel = np.flatnonzero(np.isin(r, members))
        dist = np.min(np.abs(v[sel][:, None] - allowed[None, :]), axis=1)
        bad[sel] |= ~nan[sel] & (dist > _tol(v[sel]))
    return _distinct(r[bad]).tolist()


def _outside_screen(y: _Steps, loads: _Loads) -> list[int]:
    """Rows that may carry current outside every stay: those with a current piece that is not
    inside one stay of the connector."""
    live = np.flatnonzero(np.abs(y.v) > ZERO_A)
    on_row = np.flatnonzero(loads.rows >= 0)
    by_row = on_row[np.argsort(loads.rows[on_row], kind="stable")]
    rptr = np.searchsorted(loads.rows[by_row], np.arange(y.n_rows + 1), side="left")
    r = y.row[live]
    k, q = _ranges(rptr[r], rptr[r + 1])
    i = by_row[q]
    inside = (loads.first[i] <= y.a[live][k]) & (y.b[live][k] <= loads.stop[i])
    covered = np.bincount(k[inside], minlength=live.shape[0]) > 0
    return _distinct(r[~covered]).tolist()


def _optional(values: list[float | None]) -> F64:
    """None as NaN: every comparison with it is false, as a missing limit never binds."""
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


def _vehicle_screen(loads: _Loads) -> list[int]:
    """The sessions that break a vehicle rule: elementwise, so testing every piece finds them."""
    lim = _optional(
        [
            v
            for s in loads.sessions
            for v in (s.vehicle_max_current_a, s.vehicle_max_power_kw, s.vehicle_min_current_a)
        ]
    ).reshape(-1, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        lim[:, 1] /= loads.kwpa
    vmax, plim = lim[:, :2].T + _tol(lim[:, :2].T)
    vmin = lim[:, 2] - _tol(lim[:, 2])
    i, x = loads.x.row, loads.x.v
    bad = (x > ZERO_A) & ((x > vmax[i]) | (x > plim[i]) | (x < vmin[i]))
    return _distinct(i[bad]).tolist()


def _surely_close(a: F64, b: F64, margin: F64 | float = 0.0) -> Bools:
    """``_close`` with room to spare (half the tolerance beyond ``margin``); NaN is not."""
    with np.errstate(invalid="ignore"):
        room = 0.5 * (ENERGY_TOL + REL_TOL * np.maximum(np.abs(a), np.abs(b)))
        return np.abs(a - b) <= room - margin


def _node_screen(
    targets: _Targets, loads: _Loads, xv: F64, nonneg: bool, seg: _Segments
) -> Bools:
    """[T] the nodes that may break a limit; the others surely do not.

    Per node, the horizon is cut where a current below it or one of its limits changes. On each
    such piece the currents below are summed per class (sessions with identical phasors and kW
    per A) in fixed point: currents are rounded to multiples of 2^-shift, with shift chosen so
    that every sum is an integer below 2^53, hence exact, and so are the per-node running sums
    of the currents starting and ending. Every limit row then combines the class sums as the
    per-segment rule combines currents (``_rows_screen``). A piece passes if it stays below
    limit + tolerance by more than the rounding (sessions below * 2^-shift * largest coefficient)
    plus ``1e-9 * (sum of |terms| + 1)``, far above the rounding of any float summation order.
    """
    n = seg.n
    span = n + 1
    nt = len(targets.nodes)
    nz = np.flatnonzero(xv != 0)
    p_sess, p_a, p_b, p_x = loads.x.row[nz], loads.x.a[nz], loads.x.b[nz], xv[nz]
    pptr = np.searchsorted(p_sess, np.arange(len(loads.sessions) + 1), side="left")
    mem_i = targets.mem_i
    k, p = _ranges(pptr[mem_i], pptr[mem_i + 1])  # (node, current piece below it)
    base = targets.mem_t[k] * span
    ends = np.concatenate([base + p_a[p], base + p_b[p]])  # a current starts, then ends
    loaded = np.flatnonzero(targets.count) * span
    cuts = [ends, loaded, loaded + n]
    for t, (ph, kw) in targets.limits.items():
        changes = np.zeros(n, dtype=np.bool_)
        for arr in (*ph, kw):
            changes[1:] |= arr[1:] != arr[:-1]
        cuts.append(t * span + np.flatnonzero(changes))
    key = _distinct(np.concatenate(cuts))
    n_cls = int(loads.cls.max()) + 1
    cls = loads.cls[p_sess[p]]
    bins = np.concatenate([cls, cls]) * key.shape[0] + np.searchsorted(key, ends)
    x = p_x[p]
    amax = float(np.abs(x).max()) if x.size else 0.0
    if not math.isfinite(2.0 * x.size * amax):
        return np.ones(nt, dtype=np.bool_)
    shift = min(52 - math.frexp(2.0 * x.size * amax)[1], 200) if x.size else 0
    qx = np.rint(np.ldexp(x, shift))
    piece = np.flatnonzero(key % span < n)  # a node's last key only ends its last piece
    unit = math.ldexp(1.0, -shift)

    def sums(w: F64) -> F64:
        """Per piece and class [P, C]: running sum over the node's keys, class after class."""
        d = np.bincount(bins, np.concatenate([w, -w]), minlength=key.shape[0] * n_cls)
        # integers below 2^53, and every class ends at 0: one integer running sum is exact
        run = np.cumsum(d.astype(np.int64)).reshape(n_cls, -1)[:, piece]
        return np.asarray(run.T * unit, dtype=np.float64)

    u_sum = sums(np.maximum(qx, 0.0))
    x_sum = u_sum if nonneg else sums(qx)
    a_sum = u_sum if nonneg else sums(np.abs(qx))
    t_of = key[piece] // span
    start = key[piece] % span
    # each current is off by at most 2^-(shift + 1), and a node sums at most its members, each
    # in up to three terms (a wye car's phases in a phasor row)
    err = np.asarray(3 * targets.count[t_of] * unit, dtype=np.float64)

    # limit rows: L1..L3, kW, then one per distinct phasor-limit coefficient vector; columns:
    # the class sums three times over, one block per phase a wye car may draw on its own
    c_coef = np.zeros((n_cls, 3), dtype=np.complex128)
    c_kw = np.zeros(n_cls, dtype=np.complex128)
    c_split = np.zeros(n_cls, dtype=np.bool_)
    c_coef[loads.cls] = loads.coef
    c_kw[loads.cls] = loads.kwpa
    c_split[loads.cls] = loads.split
    pad = np.zeros(2 * n_cls, dtype=np.complex128)
    u_sum, x_sum, a_sum = (np.hstack([a, a, a]) for a in (u_sum, x_sum, a_sum))
    lim = targets.const[t_of].T  # [4, pieces]
    tptr = np.searchsorted(t_of, np.arange(nt + 1), side="left")
    for t, (ph, kw) in targets.limits.items():
        sl = slice(tptr[t], tptr[t + 1])
        for r, arr in enumerate((*ph, kw)):
            lim[r, sl] = arr[start[sl]]
    coefs = [np.concatenate([c, pad]) for c in (c_coef[:, 0], c_coef[:, 1], c_coef[:, 2], c_kw)]
    lims = [lim]
    phasor: dict[tuple[complex, ...], F64] = {}
    for t in np.flatnonzero(targets.count).tolist():
        for pl in targets.nodes[t].phasor_limits:
            plc = tuple(complex(c) for c in pl.coefficients)
            if plc not in phasor:
                phasor[plc] = np.full(nt, np.inf)
            # a NaN limit never binds; the smallest of several binds first
            phasor[plc][t] = np.fmin(phasor[plc][t], max(pl.limit_a, 0.0))
    for plc, per_target in phasor.items():
        terms = _phasor_terms(c_coef, np.asarray(plc, dtype=np.complex128), c_split)
        coefs.append(terms.T.reshape(-1))
        lims.append(per_target[t_of][None, :])
    bad = _rows_screen(np.vstack(coefs), u_sum, x_sum, a_sum, err, np.vstack(lims), nonneg)
    flagged = np.zeros(nt, dtype=np.bool_)
    flagged[t_of[bad.any(axis=0)]] = True
    return flagged


def _rows_screen(
    coef: C128, u: F64, x: F64, size: F64, err: F64, lim: F64, nonneg: bool
) -> Bools:
    """[R, P] where limit row r may exceed ``lim[r]`` on piece p.

    ``coef`` [R, C]: the rows' coefficients per class; ``u``, ``x``, ``size`` [P, C]: sums of
    the drawable, planned and absolute currents per class; ``err`` [P] bounds
    the error of all class sums together, per unit coefficient.
    First by the triangle inequality (sum of |terms| bounds both the planned magnitude and the
    partial-draw maximum), then, where that bound does not clear the limit, exactly.
    """
    shape = (coef.shape[0], u.shape[0])
    if not np.isfinite(coef).all():
        return np.ones(shape, dtype=np.bool_)
    mag = np.abs(coef)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = mag @ size.T
        room = lim + _tol(lim) - 1e-9 * (bound + 1.0) - mag.max(axis=1)[:, None] * err
        maybe = ~(bound <= room)
        if not maybe.any():
            return maybe
        cols = np.flatnonzero(maybe.any(axis=0))
        bad = np.zeros(shape, dtype=np.bool_)
        bad[:, cols] = _rows_exact(coef, u[cols], x[cols], room[:, cols], nonneg)
        return bad


def _rows_exact(coef: C128, u: F64, x: F64, room: F64, nonneg: bool) -> Bools:
    """``_rows_screen`` by the rows' directions and partial-draw maximum.

    All rows share one set of directions: one with nothing in it changes no partial-draw sum.
    """
    shape = (coef.shape[0], u.shape[0])
    keep = np.abs(coef) > 1e-12
    if not keep.any():
        return ~(np.zeros(shape) <= room)
    ang = np.asarray(np.round(np.mod(np.angle(coef), 2 * math.pi), 9), dtype=np.float64)
    dirs = _distinct(ang[keep])
    r, c = np.nonzero(keep)
    g3 = np.zeros((coef.shape[0], dirs.shape[0], coef.shape[1]), dtype=np.complex128)
    g3[r, np.searchsorted(dirs, ang[r, c]), c] = coef[r, c]
    g = g3.reshape(-1, coef.shape[1])
    w: C128 = g.real @ u.T + 1j * (g.imag @ u.T)  # [R * K, P]
    w = w.reshape(shape[0], -1, shape[1]).transpose(1, 0, 2).reshape(dirs.shape[0], -1)
    if nonneg:
        planned = np.abs(w.sum(axis=0))
    else:
        planned = np.abs(coef.real @ x.T + 1j * (coef.imag @ x.T)).reshape(-1)
    worst = _box_max(dirs.astype(np.float64), w)
    room = room.reshape(-1)
    return (~(planned <= room) | ~(worst <= room)).reshape(shape)
