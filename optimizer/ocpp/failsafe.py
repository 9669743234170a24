"""Fail-safe currents: what each connector may draw when the CSMS or the optimizer is gone.

A charger that loses its backend keeps obeying its TxDefaultProfile, for any car that comes,
for as long as it takes. So the fail-safe current must be safe with *no* knowledge of the cars:

* every connector may draw anything from 0 up to its fail-safe current, independently, and a
  car on a wye connector may use any subset of its phases (1-, 2- or 3-phase cars, cars that
  draw less than allowed). Each wye phase is therefore an independent draw in [0, u], a delta
  connector one draw. For a per-phase limit all draws point the same way and everything at
  full current is the worst case; for a transformer's phasor limit it need not be, so the check
  takes the exact maximum of |sum coef_j x_j| over that box (at a vertex whose draws lie in one
  half-plane; see ``box_max``);
* node limits are the static ones (per-phase A, kW, phasor limits), tightened by the caller's
  ``fallback`` limits; time-bounded signals are ignored, they do not outlive the link.

Allocation is max-min fair (progressive filling): all connectors rise together in A until a node
becomes tight, its connectors freeze, the others go on. That is "equal share" where connectors are
alike and never wastes a node's headroom on a connector that another node already caps. Each
stage is a bisection on an exact, monotone check, so the result passes by construction; it is
then floored to each connector's grid (0 if below its minimum). What flooring left over is handed
out one grid step at a time, lowest current first, each step only if the exact check still
passes: where the equal share is below the minimum current, as many connectors as fit get their
minimum instead of all getting 0. A last exact check guards the result.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..core.model import (
    PHASE_ANGLE_DEG,
    PHASES,
    Connector,
    Node,
    Problem,
    Site,
    Wiring,
    phase_coefficients,
)

__all__ = ["FallbackLimit", "Load", "box_max", "failsafe_currents", "worst_case_loads"]

#: Bisection aims this much (relative) below each limit, so that flooring noise never crosses it.
MARGIN = 1e-9
_BISECT_STEPS = 60


@dataclass(frozen=True)
class FallbackLimit:
    """A node's import limit while signals are lost (e.g. OSCP fallback, OpenADR safe mode)."""

    phase_limit_a: tuple[float, float, float] | None = None
    power_limit_kw: float | None = None


@dataclass(frozen=True)
class Load:
    """Worst case of one limited quantity of a node at given fail-safe currents."""

    node: str
    label: str  # L1, L2, L3, kW or a phasor limit's name
    worst: float
    limit: float


@dataclass(frozen=True)
class _Quantity:
    node: str
    label: str
    limit: float
    coef: NDArray[np.complex128]  # per draw
    draw_conn: NDArray[np.int64]  # connector index of each draw
    mask: NDArray[np.float64]  # candidate vertices x draws (0/1)


def _draws(conn: Connector) -> list[tuple[complex, complex, complex]]:
    """Independent current draws of a connector, as phasor coefficients on L1..L3 per A."""
    if conn.wiring is Wiring.DELTA:
        c = phase_coefficients(conn, None)
        return [(c[0], c[1], c[2])]
    out = []
    for k in range(conn.phases):
        p = PHASES.index(conn.phase_rotation[2 * k : 2 * k + 2])
        v = [0j, 0j, 0j]
        v[p] = cmath.rect(1.0, math.radians(PHASE_ANGLE_DEG[p]))
        out.append((v[0], v[1], v[2]))
    return out


def _kw_per_draw(conn: Connector) -> float:
    return conn.voltage_v / 1000.0


def _vertex_mask(coef: NDArray[np.complex128]) -> NDArray[np.float64]:
    """Subsets that contain the maximiser of |sum coef_j x_j| over a box: one per half-plane arc.

    Between consecutive breakpoints (angle_j +- 90 degrees) the set of draws with a positive
    projection is fixed; the box maximum is the largest |sum| over these sets. Every row is also
    a real vertex, so the maximum over rows is exact, never above the truth.
    """
    ang = np.angle(coef)
    cuts = np.unique(np.mod(np.concatenate([ang + math.pi / 2, ang - math.pi / 2]), 2 * math.pi))
    mids = (cuts + np.append(cuts[1:], cuts[0] + 2 * math.pi)) / 2
    inside = np.cos(ang[None, :] - mids[:, None]) > 0
    rows = np.vstack([inside, np.ones((1, coef.size), dtype=bool)])
    return np.unique(rows, axis=0).astype(np.float64)


def box_max(
    coef: NDArray[np.complex128],
    upper: NDArray[np.float64],
    mask: NDArray[np.float64] | None = None,
) -> float:
    """max |sum_j coef[j] * x_j| over 0 <= x_j <= upper[j] (exact, see ``_vertex_mask``)."""
    keep = np.abs(coef) > 1e-12
    coef, upper = coef[keep], upper[keep]
    if coef.size == 0:
        return 0.0
    m = _vertex_mask(coef) if mask is None else mask[:, keep]
    w = coef * upper
    return float(np.abs(m @ w.real + 1j * (m @ w.imag)).max())


def _quantities(site: Site, fallback: Mapping[str, FallbackLimit]) -> list[_Quantity]:
    """Every limited quantity of every node, over the draws of the connectors below it."""
    nodes = {n.id: n for n in site.nodes}
    unknown = set(fallback) - set(nodes)
    if unknown:
        raise ValueError(f"fallback limits for unknown nodes: {sorted(unknown)}")
    draw_coef: list[tuple[complex, complex, complex]] = []
    draw_conn: list[int] = []
    draw_kw: list[float] = []
    for ci, conn in enumerate(site.connectors):
        for d in _draws(conn):
            draw_coef.append(d)
            draw_conn.append(ci)
            draw_kw.append(_kw_per_draw(conn))
    below: dict[str, list[int]] = {n: [] for n in nodes}
    for j, ci in enumerate(draw_conn):
        nid: str | None = site.connectors[ci].node
        seen: set[str] = set()
        while nid is not None and nid not in seen:
            seen.add(nid)
            below[nid].append(j)
            nid = nodes[nid].parent

    out: list[_Quantity] = []
    for node in site.nodes:
        idx = np.asarray(below[node.id], dtype=np.int64)
        if idx.size == 0:
            continue
        phase_lim, kw = _limits(node, fallback.get(node.id))
        rows: list[tuple[str, float, list[complex]]] = []
        for p in range(3):
            lim_p = phase_lim[p]
            if lim_p is not None:
                rows.append((PHASES[p], lim_p, [draw_coef[j][p] for j in idx]))
        if kw is not None:
            rows.append(("kW", kw, [complex(draw_kw[j]) for j in idx]))
        for pl in node.phasor_limits:
            rows.append(
                (
                    pl.name,
                    pl.limit_a,
                    [sum(pl.coefficients[p] * draw_coef[j][p] for p in range(3)) for j in idx],
                )
            )
        for label, lim, coefs in rows:
            c = np.asarray(coefs, dtype=np.complex128)
            keep = np.abs(c) > 1e-12
            if not keep.any():
                continue
            c, di = c[keep], idx[keep]
            out.append(
                _Quantity(
                    node.id,
                    label,
                    max(0.0, float(lim)),
                    c,
                    np.asarray([draw_conn[j] for j in di], dtype=np.int64),
                    _vertex_mask(c),
                )
            )
    return out


def _limits(node: Node, fb: FallbackLimit | None) -> tuple[list[float | None], float | None]:
    phase: list[float | None] = (
        list(node.phase_limit_a) if node.phase_limit_a is not None else [None, None, None]
    )
    kw = node.power_limit_kw
    if fb is not None:
        if fb.phase_limit_a is not None:
            phase = [
                b if a is None else min(a, b) for a, b in zip(phase, fb.phase_limit_a, strict=True)
            ]
        if fb.power_limit_kw is not None:
            kw = fb.power_limit_kw if kw is None else min(kw, fb.power_limit_kw)
    return phase, kw


def _worst(q: _Quantity, u: NDArray[np.float64]) -> float:
    w = q.coef * u[q.draw_conn]
    return float(np.abs(q.mask @ w.real + 1j * (q.mask @ w.imag)).max())


def _failing(qs: list[_Quantity], u: NDArray[np.float64], margin: float) -> list[_Quantity]:
    """The quantities that fail at currents ``u`` (empty = all pass)."""
    return [q for q in qs if _worst(q, u) > q.limit * (1.0 - margin)]


def _floor_grid(conn: Connector, u: float) -> float:
    """The connector's highest settable current not above ``u`` (0 if below its minimum)."""
    if conn.allowed_currents_a:
        ok = [a for a in conn.allowed_currents_a if 0 <= a <= u]
        return max(ok, default=0.0)
    if u < conn.min_current_a:
        return 0.0
    if conn.current_step_a > 0:
        n = math.floor((u - conn.min_current_a) / conn.current_step_a)
        # on the grid up to float noise (9.2, not 9.199999); MARGIN absorbs the noise
        return min(conn.max_current_a, round(conn.min_current_a + n * conn.current_step_a, 9))
    return min(conn.max_current_a, math.floor(u * 1e6) / 1e6)


def _next_level(conn: Connector, cur: float) -> float | None:
    """The connector's next settable current above ``cur`` (0.1 A steps on a free grid)."""
    if conn.allowed_currents_a:
        return min(
            (a for a in conn.allowed_currents_a if cur < a <= conn.max_current_a), default=None
        )
    if cur < conn.min_current_a:
        nxt = conn.min_current_a
    else:
        nxt = round(cur + (conn.current_step_a if conn.current_step_a > 0 else 0.1), 6)
    return nxt if 0 < nxt <= conn.max_current_a else None


def _top_up(site: Site, qs: list[_Quantity], u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Hand out what flooring left over, one grid step at a time, lowest current first.

    Where the equal share is below the minimum current (Caltech at 50 kW: 54 connectors share
    139 A), this charges as many cars as fit at their minimum instead of none.
    """
    u = u.copy()
    involved: list[list[_Quantity]] = [[] for _ in site.connectors]
    for q in qs:
        for i in set(q.draw_conn.tolist()):
            involved[i].append(q)
    open_ = {i for i, c in enumerate(site.connectors) if c.max_current_a > 0}
    while open_:
        i = min(open_, key=lambda k: (u[k], k))
        nxt = _next_level(site.connectors[i], float(u[i]))
        if nxt is None:
            open_.discard(i)
            continue
        trial = u.copy()
        trial[i] = nxt
        if _failing(involved[i], trial, MARGIN):
            open_.discard(i)  # monotone: it will not fit later either, others only rise
        else:
            u = trial
    return u


def failsafe_currents(
    problem: Problem | Site, fallback: Mapping[str, FallbackLimit] | None = None
) -> dict[str, float]:
    """Per connector a constant current (A) that is safe for every node whatever the cars do."""
    site = problem.site if isinstance(problem, Problem) else problem
    fallback = fallback or {}
    qs = _quantities(site, fallback)
    n = len(site.connectors)
    cap = np.asarray([max(0.0, c.max_current_a) for c in site.connectors])
    u = np.zeros(n)
    active = cap > 0
    level = 0.0
    while active.any():

        def at(
            t: float, active: NDArray[np.bool_] = active, base: NDArray[np.float64] = u
        ) -> NDArray[np.float64]:
            return np.where(active, np.minimum(t, cap), base)

        top = float(cap[active].max())
        if not _failing(qs, at(top), MARGIN):
            u = at(top)
            break
        lo, hi = level, top
        for _ in range(_BISECT_STEPS):
            mid = (lo + hi) / 2
            if _failing(qs, at(mid), MARGIN):
                hi = mid
            else:
                lo = mid
        u = at(lo)
        level = lo
        frozen = active & (cap <= lo)
        for q in _failing(qs, at(hi), MARGIN):
            frozen[q.draw_conn] = True
        frozen &= active
        if not frozen.any():  # numerically stuck: stop here, still safe
            break
        active &= ~frozen
    floored = np.asarray([_floor_grid(c, float(u[i])) for i, c in enumerate(site.connectors)])
    final = _top_up(site, qs, floored)
    out = {c.id: float(final[i]) for i, c in enumerate(site.connectors)}
    bad = [ld for ld in worst_case_loads(site, out, fallback) if ld.worst > ld.limit]
    if bad:  # cannot happen by construction; never hand out an unsafe fail-safe
        raise RuntimeError(f"fail-safe currents break node limits: {bad}")
    return out


def worst_case_loads(
    site: Site, currents: Mapping[str, float], fallback: Mapping[str, FallbackLimit] | None = None
) -> list[Load]:
    """Each node quantity's worst case (any car, any draw up to ``currents``) and its limit."""
    qs = _quantities(site, fallback or {})
    u = np.asarray([currents.get(c.id, 0.0) for c in site.connectors], dtype=np.float64)
    return [Load(q.node, q.label, _worst(q, u), q.limit) for q in qs]
