"""The charging strategies a replay compares: the optimizer's modes and two baselines.

A strategy maps the problem known at one instant to the current each session may draw now.
``fast``/``lp``/``auto`` run the solver (in process or through a server's Optimize RPC);
``edf`` and ``uncontrolled`` are the plain baselines the optimizer has to beat. Kept apart from
the replay loop so a strategy can be added without touching how days are re-enacted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ..core.compile import GRID_EPS, compile_problem, floor_to_grid
from ..core.model import Mode, Problem

STRATEGIES = ("fast", "lp", "auto", "edf", "uncontrolled")

#: A strategy turns a problem into the current each session's connector may draw now (A).
Strategy = Callable[[Problem], np.ndarray]


def _solver_strategy(mode: Mode) -> Strategy:
    from ..core.solve import solve

    def run(problem: Problem) -> np.ndarray:
        plan = solve(replace(problem, options=replace(problem.options, mode=mode)))
        first = {p.connector: p.points[0].current_a for p in plan.profiles if p.points}
        return np.array([first.get(s.connector, 0.0) for s in problem.sessions])
    return run


def grpc_strategy(target: str, mode: Mode) -> Strategy:
    """Plan through a running server's Optimize RPC: the replay then also measures the wire."""
    import grpc

    from ..api.convert import request_from_problem
    from ..api.smartcharging.v1 import smartcharging_pb2_grpc as rpc

    stub = rpc.ChargingOptimizerStub(grpc.insecure_channel(target))

    def run(problem: Problem) -> np.ndarray:
        req = request_from_problem(replace(problem, options=replace(problem.options, mode=mode)))
        plan = stub.Optimize(req, timeout=60.0).plan
        first = {p.connector: p.points[0].current_a for p in plan.profiles if p.points}
        return np.array([first.get(s.connector, 0.0) for s in problem.sessions])
    return run


def edf(problem: Problem) -> np.ndarray:
    """Earliest deadline first: by departure, each car gets the largest current that keeps every
    (box-safe) row of the first slot within its limit, checked with exact phasor magnitudes.

    Plain numpy on purpose: it is the baseline the optimizer has to beat.
    """
    c = compile_problem(problem)
    x = np.zeros(c.n)
    if c.n == 0:
        return x
    coef = c.row_re + 1j * c.row_im
    lim = c.limit[:, 0] if c.k else np.zeros(0)
    z = np.zeros(c.k, dtype=np.complex128)  # current phasor sum per row
    order = sorted(range(c.n), key=lambda i: problem.sessions[i].departure)
    for i in order:
        h = c.hours[i, 0]
        if h <= 0 or c.ub[i, 0] <= 0 or c.need_ah[i] <= 1e-9:
            continue
        rows = c.sess_row[c.sess_ptr[i]:c.sess_ptr[i + 1]]
        ci = coef[c.sess_pos[c.sess_ptr[i]:c.sess_ptr[i + 1]]]
        hi = min(float(c.ub[i, 0]), c.need_ah[i] / h + c.lo[i] * 0)  # never more than it needs

        def ok(v: float, rows: np.ndarray = rows, ci: np.ndarray = ci) -> bool:
            return bool(np.all(np.abs(z[rows] + ci * v) <= lim[rows] * (1 - 1e-9)))

        if ok(hi):
            v = hi
        else:
            a, b = 0.0, hi  # |z + c v| is convex in v and ok(0) holds: bisection
            for _ in range(40):
                m = (a + b) / 2
                a, b = (m, b) if ok(m) else (a, m)
            v = a
        levels = c.lev_val[c.lev_ptr[i]:c.lev_ptr[i + 1]]
        v = floor_to_grid(v + GRID_EPS, float(c.lo[i]), float(c.step[i]), levels)
        if v < c.lo[i] - GRID_EPS or not ok(v):
            v = 0.0
        x[i] = v
        z[rows] += ci * v
    return x


def uncontrolled(problem: Problem) -> np.ndarray:
    """Every car at its own maximum from arrival, limits ignored: what an unmanaged site does."""
    c = compile_problem(problem)
    return c.ub[:, 0].copy() if c.t else np.zeros(c.n)


def strategy(name: str, via_grpc: str | None = None) -> Strategy:
    if name in ("fast", "lp", "auto"):
        return grpc_strategy(via_grpc, Mode(name)) if via_grpc else _solver_strategy(Mode(name))
    return {"edf": edf, "uncontrolled": uncontrolled}[name]
