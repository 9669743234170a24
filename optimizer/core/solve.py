"""Solve a problem: pick the solver(s) for the mode, build the plan, and gate it on the checker.

Data flow: ``Problem`` -> ``compile_problem`` (arrays) -> ``kernels.allocate`` and/or
``lp.solve_lp`` + ``kernels.polish`` (a current matrix) -> ``build_plan`` -> ``checker.check``.
A plan with any violation never leaves: in ``auto`` the other candidate is used if it is clean
(and the failure is reported in the warnings); otherwise ``PlanCheckError`` is raised.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from . import kernels, lp
from .checker import check
from .compile import F64, Compiled, compile_problem
from .model import Mode, Problem
from .plan import ChangePoint, ConnectorProfile, Peak, Plan, SessionResult, Violation

#: Energy below this (kWh) is rounding to the current grid, not worth a warning or an LP.
ENERGY_TOL_KWH = 0.05


class PlanCheckError(RuntimeError):
    """The independent checker rejected every candidate plan: a bug, never a client error."""

    def __init__(self, violations: tuple[Violation, ...], plan: Plan) -> None:
        super().__init__(f"{len(violations)} violations, first: {violations[0].message}")
        self.violations = violations
        self.plan = plan


def warmup() -> float:
    """Compile every numba kernel (call before serving)."""
    return kernels.warmup()


def delivered_kwh(c: Compiled, x: F64) -> F64:
    return (x * c.hours).sum(axis=1) * c.kw_per_a


def _score(c: Compiled, x: F64) -> tuple[float, float]:
    """Weighted energy first, then lower cost: how two candidate plans are compared."""
    e = delivered_kwh(c, x)
    cost = float((c.cost[None, :] * x * c.hours * c.kw_per_a[:, None]).sum())
    return float((c.weight * e).sum()), -cost


#: Instances up to this many session-slots also get a MILP (exact minimum currents and sets).
MILP_MAX_CELLS = 2_000


def solve(problem: Problem, *, time_limit_s: float | None = None) -> Plan:
    """Plan a validated problem with ``problem.options.mode`` within the time limit.

    ``fast``: the numba heuristic. ``lp``: HiGHS LP (inner polygon, so phasor limits hold), then
    rounding and repair (plus a time-limited MILP when small). ``auto``: fast first; then the LP
    energy bound; the LP plan only when the bound says more energy is reachable and time remains.
    The best clean candidate wins (weighted energy first, then cost).
    """
    t0 = time.perf_counter()
    budget = problem.options.time_limit_s if time_limit_s is None else time_limit_s
    left = lambda: budget - (time.perf_counter() - t0)  # noqa: E731
    mode = problem.options.mode
    sides = problem.options.phasor_polygon_sides
    c = compile_problem(problem)
    candidates: list[tuple[str, F64]] = []
    bound: float | None = None
    warnings: list[str] = []

    if mode in (Mode.FAST, Mode.AUTO):
        candidates.append(("numba-fast", kernels.allocate(c)))
    run_lp = mode is Mode.LP
    if mode is Mode.AUTO and _unmet_kwh(c, candidates[0][1]) > ENERGY_TOL_KWH and left() > 0.05:
        bound = lp.lp_energy_bound(c, time_limit_s=max(0.01, left() / 3), sides=sides)
        fast_kwh = float(delivered_kwh(c, candidates[0][1]).sum())
        run_lp = bound is None or bound > fast_kwh + ENERGY_TOL_KWH
    if run_lp and left() > 0.01:
        res = lp.solve_lp(c, time_limit_s=max(0.01, left()), polygon="inner", sides=sides)
        if res.status == "optimal" or res.status.endswith("_feasible"):
            candidates.append(("highs-lp+repair", kernels.polish(c, res.x)))
        else:
            warnings.append(f"LP ended {res.status} within the time limit")
        if c.n * c.t <= MILP_MAX_CELLS and left() > 0.05:
            milp = lp.solve_milp(c, time_limit_s=left() / 2, polygon="inner", sides=sides)
            if milp.status == "optimal" or milp.status.endswith("_feasible"):
                candidates.append(("highs-milp", kernels.polish(c, milp.x)))
    if mode is Mode.LP and bound is None and left() > 0.01:
        bound = lp.lp_energy_bound(c, time_limit_s=max(0.01, left()), sides=sides)
    if not candidates:  # the LP found nothing in time: never a useless answer
        warnings.append("no LP plan in time; using the fast plan")
        candidates.append(("numba-fast", kernels.allocate(c)))

    candidates.sort(key=lambda cand: _score(c, cand[1]), reverse=True)
    rejected: list[Plan] = []
    for solver, x in candidates:
        plan = build_plan(problem, c, x, solver=solver, bound=bound,
                          solve_time_s=time.perf_counter() - t0, warnings=warnings)
        violations = tuple(check(problem, plan))
        if not violations:
            if rejected:
                plan = replace(plan, warnings=(
                    *plan.warnings,
                    f"internal: {rejected[0].solver} plan failed the checker "
                    f"({len(rejected[0].violations)} violations); it was not used",
                ))
            return plan
        rejected.append(replace(plan, violations=violations))
    worst = rejected[0]
    raise PlanCheckError(worst.violations, worst)


def _unmet_kwh(c: Compiled, x: F64) -> float:
    return float((c.need_ah * c.kw_per_a).sum() - delivered_kwh(c, x).sum())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _us(d: datetime | float) -> int:
    """Integer microseconds since the epoch: exact, so change points compare exactly."""
    if isinstance(d, datetime):
        return (d - _EPOCH) // timedelta(microseconds=1)
    return round(d * 1e6)


def row_magnitude(c: Compiled, x: F64) -> F64:
    """|sum c x| per row and slot, [K, T]."""
    if c.k == 0:
        return np.zeros((0, c.t))
    coef = c.row_re + 1j * c.row_im
    contrib = coef[:, None] * x[c.row_idx]
    z = np.add.reduceat(contrib, c.row_ptr[:-1], axis=0)
    return np.abs(z)


def build_plan(problem: Problem, c: Compiled, x: F64, *, solver: str, bound: float | None,
               solve_time_s: float, warnings: list[str] | None = None) -> Plan:
    """Turn a current matrix into profiles (0 whenever no car is present), results and reports."""
    # Publish micro-ampere values (16.2, not 16.200000000000003) and derive energy from exactly
    # what is published; the +1e-3 keeps a value a hair below a grid point on it.
    x = np.floor(x * 1e6 + 1e-3) / 1e6
    profiles = _profiles(problem, c, x)

    e = delivered_kwh(c, x)
    req = c.need_ah * c.kw_per_a
    results = tuple(
        SessionResult(s.id, s.connector, float(req[i]), float(e[i]),
                      float(max(0.0, req[i] - e[i])))
        for i, s in enumerate(problem.sessions)
    )

    mag = row_magnitude(c, x)
    peaks: dict[tuple[str, str], Peak] = {}
    at = mag.argmax(axis=1) if c.k else np.zeros(0, dtype=np.int64)
    top = mag[np.arange(c.k), at]
    for k, row in enumerate(c.rows):
        key = (row.node, row.label)
        if key not in peaks or top[k] > peaks[key].peak:
            t = int(at[k])
            peaks[key] = Peak(row.node, row.label, float(top[k]), float(c.limit[k, t]),
                              _dt(float(c.slot_start[t])))

    energy_slot = x * c.hours * c.kw_per_a[:, None]
    delivered = float(e.sum())
    out_warnings = list(warnings or [])
    out_warnings.extend(_unmet_warnings(problem, c, x, mag, results))
    return Plan(
        start=problem.now,
        end=problem.horizon_end,
        profiles=tuple(profiles),
        sessions=results,
        peaks=tuple(peaks.values()),
        energy_cost=float((energy_slot * c.price).sum()),
        carbon_kg=float((energy_slot * c.carbon).sum() / 1000.0),
        solver=solver,
        mode=problem.options.mode.value,
        solve_time_s=solve_time_s,
        lp_bound_kwh=bound,
        gap=None if bound is None or bound <= 0 else max(0.0, 1.0 - delivered / bound),
        warnings=tuple(out_warnings),
    )


def _profiles(problem: Problem, c: Compiled, x: F64) -> tuple[ConnectorProfile, ...]:
    """Change points per connector, 0 whenever no car is present, equal neighbours merged.

    Per connector, in time order: (now, 0 A); each of its sessions' slots with the car present
    at max(slot start, arrival); (departure, 0 A) when the car leaves within the horizon. A later
    point at the same instant replaces an earlier one, then a point equal to the one before it
    is dropped. Times are integer microseconds, so instants compare exactly. (Validation
    guarantees one car at a time per connector, so times never go back.)
    """
    conns = problem.site.connectors
    sessions = problem.sessions
    n, n_slots = len(sessions), c.t
    t_now, t_end = _us(problem.now), _us(problem.horizon_end)
    pos = {conn.id: k for k, conn in enumerate(conns)}
    sc = np.fromiter((pos[s.connector] for s in sessions), dtype=np.int64, count=n)
    arrival = np.fromiter((_us(s.arrival) for s in sessions), dtype=np.int64, count=n)
    departure = np.fromiter((_us(s.departure) for s in sessions), dtype=np.int64, count=n)
    order = np.lexsort((arrival, sc))  # per connector by arrival (stable: ties by index)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    slot_us = np.rint(c.slot_start * 1e6).astype(np.int64)

    ii, tt = np.nonzero(c.hours > 0)
    served = np.zeros(n, dtype=np.bool_)
    served[ii] = True
    leave = np.flatnonzero(served & (departure < t_end))
    m = len(conns)
    group = np.concatenate([np.arange(m), sc[ii], sc[leave]])
    k1 = np.concatenate([np.full(m, -1), rank[ii], rank[leave]])
    k2 = np.concatenate([np.zeros(m, dtype=np.int64), tt, np.full(leave.size, n_slots)])
    start = np.maximum(slot_us[tt], np.maximum(arrival[ii], t_now))
    when = np.concatenate([np.full(m, t_now), start, departure[leave]])
    value = np.concatenate([np.zeros(m), x[ii, tt], np.zeros(leave.size)])
    o = np.lexsort((k2, k1, group))
    group, when, value = group[o], when[o], value[o]
    last = np.ones(group.size, dtype=np.bool_)  # the last point at each (connector, instant)
    last[:-1] = (group[1:] != group[:-1]) | (when[1:] != when[:-1])
    group, when, value = group[last], when[last], value[last]
    new = np.ones(group.size, dtype=np.bool_)
    new[1:] = (group[1:] != group[:-1]) | (np.abs(value[1:] - value[:-1]) >= 1e-9)
    group, when, value = group[new], when[new], value[new]

    points = [ChangePoint(_EPOCH + timedelta(microseconds=us), v)
              for us, v in zip(when.tolist(), value.tolist(), strict=True)]
    bounds = np.searchsorted(group, np.arange(m + 1)).tolist()
    served_by: list[list[str]] = [[] for _ in range(m)]
    for i in order[served[order]].tolist():
        served_by[sc[i]].append(sessions[i].id)
    return tuple(
        ConnectorProfile(conn.id, tuple(served_by[k]), tuple(points[bounds[k]:bounds[k + 1]]))
        for k, conn in enumerate(conns)
    )


def _unmet_warnings(problem: Problem, c: Compiled, x: F64, mag: F64,
                    results: tuple[SessionResult, ...]) -> list[str]:
    """`s3: 4.2 kWh unmet; binding: P2 L1 14:00-16:00` for each session left short."""
    out = []
    tight = mag >= c.limit * (1 - 1e-6) - 1e-6  # [K, T] rows at their limit
    for i, r in enumerate(results):
        if r.unmet_kwh <= ENERGY_TOL_KWH:
            continue
        present = c.hours[i] > 0
        room = present & (x[i] < c.ub[i] - 1e-9)
        rows_i = c.sess_row[c.sess_ptr[i]:c.sess_ptr[i + 1]]
        best, best_slots = -1, np.empty(0, dtype=np.int64)
        if rows_i.size:
            counts = (tight[rows_i] & room).sum(axis=1)
            j = int(np.argmax(counts))  # the first row with the most binding slots
            if counts[j]:
                best = int(rows_i[j])
                best_slots = np.flatnonzero(tight[best] & room)
        if best >= 0:
            a = _dt(float(c.slot_start[best_slots[0]]))
            b = _dt(float(c.slot_end[best_slots[-1]]))
            why = f"binding: {c.rows[best]} {a:%H:%M}-{b:%H:%M}"
        elif not present.any():
            why = "car not present within the horizon"
        elif not room.any():
            why = "binding: connector/vehicle maximum current for the whole stay"
        else:
            why = "minimum current or current step does not fit the remaining energy"
        out.append(f"{r.session}: {r.unmet_kwh:.2f} kWh unmet; {why}")
    return out
