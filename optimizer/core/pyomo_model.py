"""The LP of :mod:`optimizer.core.lp`, written as a readable Pyomo model.

Why it exists: it documents the formulation in algebraic form and cross-checks the vectorised
array builder (tests compare optimal objectives). It is ~10x slower to build, so it is for small
instances only; the service uses :func:`optimizer.core.lp.solve_lp`.

Same columns, rows and objective factors as ``lp.build_lp(objective="full")``: the polygon
directions are recomputed here one row at a time (an independent implementation), while the
objective factors and fairness coefficients come from ``lp`` so that both use one definition.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
import pyomo.environ as pyo
from numpy.typing import NDArray

from .compile import Compiled
from .lp import COEF_EPS, check_inputs, fairness_coef, objective_terms

F64 = NDArray[np.float64]


def _row_terms(c: Compiled, k: int, polygon: str, sides: int) -> list[tuple[list[float], float]]:
    """Linear forms of row k: (coefficient per member, rhs factor) for each kept direction."""
    lo, hi = int(c.row_ptr[k]), int(c.row_ptr[k + 1])
    coefs = [complex(c.row_re[p], c.row_im[p]) for p in range(lo, hi)]
    if c.row_linear[k]:
        return [([abs(z) for z in coefs], 1.0)]
    scale = math.cos(math.pi / sides) if polygon == "inner" else 1.0
    out = []
    for m in range(sides):
        rot = cmath.exp(-1j * 2.0 * math.pi * m / sides)
        a = [(z * rot).real for z in coefs]
        a = [v if abs(v) >= COEF_EPS else 0.0 for v in a]
        if max(a) > COEF_EPS:  # a direction with all a <= 0 can never bind (x >= 0)
            out.append((a, scale))
    return out


def build_pyomo(c: Compiled, *, polygon: str = "inner", sides: int = 24) -> pyo.ConcreteModel:
    """Build the LP as a ConcreteModel (variables x, u, f; constraints energy, fair, limit)."""
    check_inputs(c, polygon, sides)
    n, T = c.n, c.t
    x_cost, u_cost, f_cost = objective_terms(c)
    fair = fairness_coef(c)

    m = pyo.ConcreteModel(name="smartcharging_lp")
    m.cells = pyo.Set(
        initialize=[(i, t) for i in range(n) for t in range(T) if c.ub[i, t] > 0], dimen=2
    )
    m.sessions = pyo.Set(initialize=range(n))
    m.x = pyo.Var(m.cells, bounds=lambda _m, i, t: (0.0, float(c.ub[i, t])))  # current, A
    m.u = pyo.Var(m.sessions, bounds=lambda _m, i: (0.0, float(c.need_ah[i])))  # unmet, A*h
    m.f = pyo.Var(bounds=(0.0, None))  # worst weighted shortfall share

    def energy(_m: pyo.ConcreteModel, i: int) -> object:
        drawn = sum(float(c.hours[i, t]) * _m.x[i, t] for t in range(T) if (i, t) in _m.cells)
        return drawn + _m.u[i] == float(c.need_ah[i])

    m.energy = pyo.Constraint(m.sessions, rule=energy)
    m.fair_set = pyo.Set(initialize=[i for i in range(n) if fair[i] > 0])
    m.fair = pyo.Constraint(m.fair_set, rule=lambda _m, i: float(fair[i]) * _m.u[i] - _m.f <= 0)

    # Limit rows: one per (row, direction, slot) that is finite, has variables and can bind.
    m.limit = pyo.ConstraintList()
    for k in range(c.k):
        members = [int(c.row_idx[p]) for p in range(int(c.row_ptr[k]), int(c.row_ptr[k + 1]))]
        for a, scale in _row_terms(c, k, polygon, sides):
            for t in range(T):
                rhs = scale * float(c.limit[k, t])
                pairs = zip(a, members, strict=True)
                terms = [(ap, i) for ap, i in pairs if ap != 0.0 and c.ub[i, t] > 0]
                if not math.isfinite(rhs) or not terms:
                    continue
                if sum(max(ap, 0.0) * float(c.ub[i, t]) for ap, i in terms) <= rhs:
                    continue  # cannot bind
                m.limit.add(sum(ap * m.x[i, t] for ap, i in terms) <= rhs)

    m.obj = pyo.Objective(
        expr=sum(float(u_cost[i]) * m.u[i] for i in range(n))
        + sum(float(x_cost[i, t]) * m.x[i, t] for i, t in m.cells)
        + f_cost * m.f,
        sense=pyo.minimize,
    )
    return m


def solve_pyomo(
    c: Compiled, *, polygon: str = "inner", sides: int = 24, time_limit_s: float = 60.0
) -> tuple[F64, float]:
    """Solve with Pyomo's APPSI HiGHS interface (highspy, works offline); returns (x, objective).

    Raises RuntimeError unless the solve is optimal: a reference model must not guess.
    """
    from pyomo.contrib.appsi.base import TerminationCondition
    from pyomo.contrib.appsi.solvers import Highs

    m = build_pyomo(c, polygon=polygon, sides=sides)
    opt = Highs()
    if not opt.available():
        raise RuntimeError("Pyomo's appsi HiGHS interface is not available (highspy missing?)")
    opt.config.time_limit = time_limit_s
    opt.config.stream_solver = False
    opt.config.load_solution = False
    res = opt.solve(m)
    if res.termination_condition != TerminationCondition.optimal:
        raise RuntimeError(f"Pyomo/HiGHS ended {res.termination_condition}")
    res.solution_loader.load_vars()
    x = np.zeros((c.n, c.t))
    for i, t in m.cells:
        x[i, t] = pyo.value(m.x[i, t])
    return x, float(pyo.value(m.obj))
