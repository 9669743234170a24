"""Exact LP path: the continuous relaxation of a compiled problem, solved by HiGHS.

Why a separate module: the fast kernels plan greedily; this LP gives the best continuous plan and,
with the outer polygon, a true upper bound on deliverable energy (the plan's "gap"). The rounding
to lo/step/levels is someone else's job: here ``0 <= x <= ub`` is continuous.

Formulation (N sessions, T slots, columns ``x[i, t]`` only where ``ub[i, t] > 0``)::

    min  sum_i E_i * kWh_i * u_i                                  (unmet energy, dominates)
       + sum_{i,t} (C * cost[t] / max|cost| + R * t / (T-1)) * kWh_i * hours[i,t] * x[i,t]
       + F * f                                                    (fairness, then earliness)
    s.t. sum_t hours[i,t] x[i,t] + u_i = need_ah[i]               (energy, per session)
         w_i / max(need_i, NEED_FLOOR_AH) * u_i - f <= 0          (need_i > 0, w_i > 0)
         sum_p a_p x[row_idx[p], t] <= s * limit[k, t]            (limit rows, per slot)
         0 <= x <= ub,  0 <= u <= need,  f >= 0

with ``kWh_i = kw_per_a[i]`` (so every term is in kWh), ``E_i = ENERGY_FACTOR * w_i / w_min``,
``C = COST_FACTOR``, ``R = EARLY_FACTOR``, ``F = FAIR_FACTOR * mean need (kWh)``. A linear row has
``a_p = |c_p|, s = 1``; a phasor row becomes one row per direction ``psi_m = 2 pi m / M`` with
``a_p = Re(c_p e^{-j psi_m})`` and ``s = cos(pi/M)`` (inner: LP-feasible => |z| <= L) or ``s = 1``
(outer: a relaxation, so its optimum bounds the exact continuous problem). Directions whose
coefficients are all <= 0 are dropped (x >= 0 makes them slack), and so are rows that cannot bind
(``sum_p max(a_p, 0) ub <= rhs``) or whose limit is infinite: none changes the feasible set.

Factors (why these numbers): one weighted kWh of unmet energy costs >= 1e4 while one kWh at the
dearest price costs 1, so energy dominates cost for any price scale (prices are normalised by the
largest |cost|); fairness is worth 1 % of a mean car's energy per unit of shortfall share, so price
differences above ~1 % of the top price beat fairness; the earliness tie-break totals 0.1 % per kWh
over the horizon, so it only settles ties (price gaps < 0.1 % of the top price may be overridden).
Coefficients then span ~1e-7 .. 1e5 per A: inside what HiGHS scales well. The factors also steer
the simplex path: on the 1,000-car benchmark ENERGY_FACTOR 1e4 needed ~40 % fewer dual simplex
iterations than 1e3 (measured, not derived).

Like scipy's ``linprog``: :func:`build_lp` (input -> arrays, pure numpy/scipy) is separate from
:func:`_run_highs` (the solver adapter), so the arrays can be tested or sent to another solver.
The array form and the polygon directions are in :mod:`optimizer.core.lp_arrays`, the MILP's
extra formulation in :mod:`optimizer.core.milp`; every HiGHS run (LP and MILP) and its status
mapping stays here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from .compile import Compiled
from .lp_arrays import COEF_EPS, F64, Directions, LPArrays, directions
from .milp import milp_arrays

__all__ = [
    "AUTO_IPM_NNZ",
    "COEF_EPS",
    "COST_FACTOR",
    "EARLY_FACTOR",
    "ENERGY_FACTOR",
    "FAIR_FACTOR",
    "FEASIBLE_SUFFIX",
    "INF",
    "METHODS",
    "NEED_FLOOR_AH",
    "STATUS",
    "STATUS_BY_NAME",
    "Directions",
    "LPArrays",
    "LPResult",
    "build_lp",
    "check_inputs",
    "classify",
    "directions",
    "fairness_coef",
    "lp_energy_bound",
    "map_status",
    "milp_arrays",
    "objective_terms",
    "solve_lp",
    "solve_milp",
]

#: Objective weight of one weighted kWh of unmet energy (for the lowest positive weight).
ENERGY_FACTOR = 1e4
#: Objective weight of one kWh at the highest |cost| of the horizon.
COST_FACTOR = 1.0
#: Fairness weight per unit of shortfall share, times the mean need in kWh.
FAIR_FACTOR = 1e-2
#: Earliness tie-break per kWh delivered in the last slot (0 in the first).
EARLY_FACTOR = 1e-3
#: Needs below this (A*h) are treated as this in the fairness share: avoids huge coefficients.
NEED_FLOOR_AH = 1e-3

INF = highspy.kHighsInf


def _silence_highs_banner() -> None:
    """Construct the process's first Highs with fd 1 sent to /dev/null.

    HiGHS prints its copyright banner to the C-level stdout on the first construction, before any
    option can be set; that would corrupt ``optimizer solve --json`` output. Done once, at import,
    when the process is normally still single-threaded.
    """
    import os
    import sys

    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        highspy.Highs()
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(devnull)
    finally:
        os.close(saved)


_silence_highs_banner()

#: Every HiGHS model status (by member name, so that the table survives stub and version gaps)
#: -> our status. A stop other than "optimal" that still holds a primal feasible point gets
#: FEASIBLE_SUFFIX ("time_limit_feasible"); ``LPResult.has_solution`` says the same as a bool.
#: Without a feasible point ``x`` is all zero.
STATUS_BY_NAME: dict[str, str] = {
    "kNotset": "error",
    "kLoadError": "error",
    "kModelError": "error",
    "kPresolveError": "error",
    "kSolveError": "error",
    "kPostsolveError": "error",
    "kMemoryLimit": "error",
    "kModelEmpty": "optimal",  # nothing to decide: the empty plan is optimal
    "kOptimal": "optimal",
    "kInfeasible": "infeasible",  # cannot happen (x = 0, u = need is feasible): a bug
    "kUnboundedOrInfeasible": "infeasible",
    "kUnbounded": "unbounded",  # cannot happen (all columns bounded but f, which costs > 0)
    "kObjectiveBound": "limit",
    "kObjectiveTarget": "limit",
    "kIterationLimit": "limit",
    "kSolutionLimit": "limit",
    "kTimeLimit": "time_limit",
    "kInterrupt": "interrupted",
    "kHighsInterrupt": "interrupted",
    "kUnknown": "unknown",
}
STATUS: dict[highspy.HighsModelStatus, str] = {
    member: STATUS_BY_NAME.get(name, "error")
    for name, member in highspy.HighsModelStatus.__members__.items()
}


FEASIBLE_SUFFIX = "_feasible"


def map_status(status: highspy.HighsModelStatus) -> str:
    """Our status for a HiGHS model status; "error" for a member newer HiGHS versions add."""
    return STATUS.get(status, "error")


def classify(
    model_status: highspy.HighsModelStatus, run_status: highspy.HighsStatus, primal_feasible: bool
) -> tuple[str, bool]:
    """(our status, whether to use HiGHS's primal point) after ``Highs.run``.

    Uses the point only if HiGHS calls it primal feasible and the run did not fail; a stop other
    than optimal that keeps a point is reported as e.g. "time_limit_feasible".
    """
    status = map_status(model_status)
    if run_status == highspy.HighsStatus.kError:
        return ("error" if status == "optimal" else status), False
    if not primal_feasible or status in ("error", "infeasible", "unbounded"):
        return status, False
    return (status if status == "optimal" else status + FEASIBLE_SUFFIX), True


@dataclass(frozen=True)
class LPResult:
    """A solved (or stopped) LP. ``x`` is [N, T] A, zero where no variable or no solution.

    ``status``: "optimal", a :data:`STATUS` value, or that value + "_feasible" when HiGHS stopped
    early (time limit, interrupt, ...) with a primal feasible point, which ``x`` then holds.
    """

    x: F64
    status: str
    energy_kwh: float
    objective: float
    build_s: float
    solve_s: float
    solver: str = "highs-lp"
    has_solution: bool = True


# --- formulation pieces shared with the Pyomo reference model ---------------------------------


def check_inputs(c: Compiled, polygon: str, sides: int) -> None:
    """Raise ValueError on misuse (programming errors), never on hard-but-valid problems."""
    if polygon not in ("inner", "outer"):
        raise ValueError(f"polygon must be 'inner' or 'outer', not {polygon!r}")
    if isinstance(sides, bool) or not isinstance(sides, (int, np.integer)) or sides < 3:
        raise ValueError(f"sides must be an integer >= 3, not {sides!r}")
    n, t = c.n, c.t
    if c.hours.shape != (n, t) or c.ub.shape != (n, t):
        raise ValueError("hours/ub must be [N, T]")
    for name in ("kw_per_a", "need_ah", "weight"):
        if getattr(c, name).shape != (n,):
            raise ValueError(f"{name} must be [N]")
    if c.cost.shape != (t,) or c.limit.shape != (c.k, t) or c.row_ptr.shape != (c.k + 1,):
        raise ValueError("cost [T], limit [K, T], row_ptr [K+1] expected")
    if not (np.isfinite(c.ub).all() and (c.ub >= 0).all() and (c.need_ah >= 0).all()):
        raise ValueError("ub and need_ah must be finite and >= 0")
    if (c.weight < 0).any() or not np.isfinite(c.cost).all():
        raise ValueError("weights must be >= 0 and costs finite")


def objective_terms(c: Compiled) -> tuple[F64, F64, float]:
    """Objective coefficients: per A of ``x`` [N, T], per A*h of ``u`` [N], and of ``f``."""
    n, t = c.n, c.t
    pos = c.weight[c.weight > 0]
    w_min = float(pos.min()) if pos.size else 1.0
    u_cost = ENERGY_FACTOR * (c.weight / w_min) * c.kw_per_a
    cmax = float(np.abs(c.cost).max()) if t else 0.0
    price = COST_FACTOR * c.cost / cmax if cmax > 0 else np.zeros(t)
    early = EARLY_FACTOR * np.arange(t) / max(t - 1, 1)
    x_cost = (price + early)[None, :] * (c.kw_per_a[:, None] * c.hours)
    has = c.need_ah > 0
    mean_kwh = float((c.need_ah * c.kw_per_a)[has].mean()) if has.any() else 1.0
    return x_cost.reshape(n, t), u_cost, FAIR_FACTOR * mean_kwh


def fairness_coef(c: Compiled) -> F64:
    """``w_i / need_i`` per A*h unmet (0 = no fairness row: no need or zero weight)."""
    ok = (c.need_ah > 0) & (c.weight > 0)
    return np.where(ok, c.weight / np.maximum(c.need_ah, NEED_FLOOR_AH), 0.0)


# --- input handling: Compiled -> arrays --------------------------------------------------------


def build_lp(
    c: Compiled, *, polygon: str = "inner", sides: int = 24, objective: str = "full"
) -> LPArrays:
    """Assemble the LP (vectorised; no Python loop over N*T).

    ``objective="energy"`` keeps only the unmet-energy term with unit weights: the LP then
    maximises plain delivered kWh, which is what an energy *bound* must bound.
    """
    check_inputs(c, polygon, sides)
    n, t = c.n, c.t
    active = c.ub > 0
    ax = np.flatnonzero(active.ravel())
    nx = ax.size
    col_flat = np.full(n * t, -1, dtype=np.int64)
    col_flat[ax] = np.arange(nx)
    col = col_flat.reshape(n, t)
    ucol = nx + np.arange(n)
    fcol = nx + n

    x_cost, u_cost, f_cost = objective_terms(c)
    if objective == "energy":
        x_cost = np.zeros_like(x_cost)
        u_cost = c.kw_per_a.astype(np.float64).copy()
        f_cost = 0.0
    elif objective != "full":
        raise ValueError(f"objective must be 'full' or 'energy', not {objective!r}")
    cost = np.concatenate((x_cost.ravel()[ax], u_cost, [f_cost]))
    col_lo = np.zeros(nx + n + 1)
    col_hi = np.concatenate((c.ub.ravel()[ax], c.need_ah, [INF]))

    # energy rows 0..N-1: sum_t hours x + u = need
    si = ax // t
    r_parts = [si, np.arange(n)]
    c_parts = [np.arange(nx), ucol]
    v_parts = [c.hours.ravel()[ax], np.ones(n)]
    lo_parts = [c.need_ah]
    hi_parts = [c.need_ah]
    nrow = n

    # fairness rows: w/need * u - f <= 0
    if objective == "full":
        fc = fairness_coef(c)
        fi = np.flatnonzero(fc > 0)
        fr = nrow + np.arange(fi.size)
        r_parts += [fr, fr]
        c_parts += [ucol[fi], np.full(fi.size, fcol)]
        v_parts += [fc[fi], -np.ones(fi.size)]
        lo_parts.append(np.full(fi.size, -INF))
        hi_parts.append(np.zeros(fi.size))
        nrow += fi.size

    # limit rows: one per (generalised row g, slot t) that can bind
    if c.k and t:
        d = directions(c, polygon, sides)
        rhs_gt = d.scale[:, None] * c.limit[d.k]  # [G, T]
        cols = col[d.ent_sess]  # [E, T]
        ok = (cols >= 0) & np.isfinite(rhs_gt[d.ent_g])
        e_idx, e_t = np.nonzero(ok)
        g_t = d.ent_g[e_idx] * t + e_t
        ecol = cols[e_idx, e_t]
        eval_ = d.ent_a[e_idx]
        rhs = rhs_gt.ravel()
        most = np.bincount(
            g_t, weights=np.maximum(eval_, 0.0) * c.ub[d.ent_sess[e_idx], e_t], minlength=rhs.size
        )
        binds = most > rhs
        keep = binds[g_t]
        newid = np.cumsum(binds) - 1
        r_parts.append(nrow + newid[g_t[keep]])
        c_parts.append(ecol[keep])
        v_parts.append(eval_[keep])
        lo_parts.append(np.full(int(binds.sum()), -INF))
        hi_parts.append(rhs[binds])
        nrow += int(binds.sum())

    a = sp.csc_matrix(
        (np.concatenate(v_parts), (np.concatenate(r_parts), np.concatenate(c_parts))),
        shape=(nrow, nx + n + 1),
    )
    a.sum_duplicates()
    return LPArrays(
        cost=cost,
        col_lo=col_lo,
        col_hi=col_hi,
        row_lo=np.concatenate(lo_parts).astype(np.float64),
        row_hi=np.concatenate(hi_parts).astype(np.float64),
        a=a,
        active=active,
    )


# --- solver adapter ----------------------------------------------------------------------------

#: HiGHS options per ``method``. Dual simplex gives a vertex: exact in every tier, and
#: rounding-friendly (a car's leftover energy sits in few slots at high current), but bang-bang
#: between competing cars (a vertex cannot let two identical cars share every slot). Its cost
#: perturbation is 30x the default because our objective is full of near-ties (one price for every
#: car in a slot, tiny earliness steps): on the 1,000-car benchmark that halved the iterations on
#: loosely constrained sites (12.5k -> 6.6k) and left tight ones alone; HiGHS removes the
#: perturbation before it reports optimal. "interior" is IPX without crossover: a point near the
#: analytic centre of the optimal face, so ties are shared (two identical cars get 8 A + 8 A in
#: every slot instead of alternating 16 A), but small leftovers spread thinly (possibly below a
#: car's minimum current). Its gap tolerance is relative to an objective dominated by the
#: unmet-energy term: 1e-9 keeps the cost/fairness tiers accurate to ~0.05 % on the benchmark
#: (1e-8: ~0.2 %, 30 % faster). "ipm" adds crossover to get a vertex.
METHODS: dict[str, dict[str, bool | float | str]] = {
    "simplex": {"solver": "simplex", "dual_simplex_cost_perturbation_multiplier": 30.0},
    "interior": {"solver": "ipm", "run_crossover": "off", "ipm_optimality_tolerance": 1e-9},
    "ipm": {"solver": "ipm"},
}
#: ``method="auto"`` uses simplex up to this many nonzeros, "interior" above. Measured on the
#: 3-level benchmark (simplex / interior at tolerance 1e-8): 0.45 / 0.66 s at 160k nnz (N=1000),
#: 1.8 / 1.7 s at 320k, 6.8 / 2.2 s at 480k, 50 / 3.1 s at 780k (N=5000; 4.5 s at 1e-9).
AUTO_IPM_NNZ = 300_000


def _pick_method(method: str, nnz: int) -> str:
    if method == "auto":
        return "simplex" if nnz <= AUTO_IPM_NNZ else "interior"
    return method


@dataclass(frozen=True)
class _Raw:
    status: str
    has_solution: bool
    col_value: F64
    objective: float


def _run_highs(
    lp: LPArrays,
    time_limit_s: float,
    method: str = "simplex",
    integrality: NDArray[np.int32] | None = None,
) -> _Raw:
    """Pass the arrays to HiGHS, run, check every status, read the primal solution."""
    h = highspy.Highs()
    opts: dict[str, bool | float | str] = {"output_flag": False, "time_limit": float(time_limit_s)}
    if integrality is None or not integrality.any():
        opts.update(METHODS[method])
    for name, value in opts.items():
        if h.setOptionValue(name, value) != highspy.HighsStatus.kOk:
            raise RuntimeError(f"HiGHS rejected option {name}={value!r}")
    ncol = lp.cost.size
    a = lp.a
    st = h.passModel(
        ncol,
        lp.row_lo.size,
        int(a.nnz),
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        lp.cost,
        lp.col_lo,
        lp.col_hi,
        lp.row_lo,
        lp.row_hi,
        a.indptr.astype(np.int32),
        a.indices.astype(np.int32),
        a.data.astype(np.float64),
        np.zeros(ncol, dtype=np.int32) if integrality is None else integrality,
    )
    if st == highspy.HighsStatus.kError:
        return _Raw("error", False, np.zeros(ncol), math.nan)
    run = h.run()
    info = h.getInfo()
    feasible = int(info.primal_solution_status) == int(highspy.kSolutionStatusFeasible)
    status, has = classify(h.getModelStatus(), run, feasible)
    if not has:
        return _Raw(status, False, np.zeros(ncol), math.nan)
    values = np.asarray(h.getSolution().col_value, dtype=np.float64)
    if values.size != ncol:
        return _Raw("error", False, np.zeros(ncol), math.nan)
    return _Raw(status, True, values, float(info.objective_function_value))


def _result(
    c: Compiled, lp: LPArrays, raw: _Raw, build_s: float, solve_s: float, solver: str
) -> LPResult:
    x = np.zeros((c.n, c.t))
    if raw.has_solution:
        # Clip solver tolerance noise (|err| <= 1e-7) back into the column bounds.
        x[lp.active] = np.clip(raw.col_value[: lp.n_x], 0.0, lp.col_hi[: lp.n_x])
    energy = float((c.kw_per_a[:, None] * c.hours * x).sum())
    return LPResult(
        x=x,
        status=raw.status,
        energy_kwh=energy,
        objective=raw.objective,
        build_s=build_s,
        solve_s=solve_s,
        solver=solver,
        has_solution=raw.has_solution,
    )


def _check_time(time_limit_s: float) -> None:
    if not (time_limit_s > 0 and math.isfinite(time_limit_s)):
        raise ValueError(f"time_limit_s must be > 0 and finite, not {time_limit_s!r}")


def _solve(
    c: Compiled, time_limit_s: float, polygon: str, sides: int, objective: str, method: str
) -> LPResult:
    _check_time(time_limit_s)
    if method != "auto" and method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {sorted(METHODS)}, not {method!r}")
    t0 = time.perf_counter()
    lp = build_lp(c, polygon=polygon, sides=sides, objective=objective)
    build_s = time.perf_counter() - t0
    if c.n == 0 or c.t == 0:
        empty = _Raw("optimal", True, np.zeros(lp.cost.size), 0.0)
        return _result(c, lp, empty, build_s, 0.0, "highs-lp")
    t1 = time.perf_counter()
    raw = _run_highs(lp, max(time_limit_s - build_s, 1e-3), _pick_method(method, lp.a.nnz))
    return _result(c, lp, raw, build_s, time.perf_counter() - t1, "highs-lp")


def solve_lp(
    c: Compiled,
    *,
    time_limit_s: float = 10.0,
    polygon: str = "inner",
    sides: int = 24,
    method: str = "auto",
) -> LPResult:
    """Best continuous plan (see module docstring). ``time_limit_s`` covers build + solve.

    ``polygon="inner"`` gives a plan that satisfies every phasor limit exactly; ``"outer"`` a
    relaxation. ``method``: "auto" (simplex for small models, interior point for large ones),
    or a key of :data:`METHODS`. If time runs out, the result carries HiGHS's point only when
    HiGHS reports it primal feasible (``has_solution``); otherwise ``x`` is zero (always safe).
    """
    return _solve(c, time_limit_s, polygon, sides, "full", method)


def lp_energy_bound(c: Compiled, time_limit_s: float = 10.0, sides: int = 24) -> float | None:
    """Upper bound (kWh) on the energy any plan can deliver, or None if not proven in time.

    Maximises plain (unweighted) delivered energy over the outer polygon: a relaxation of the
    exact continuous problem, itself a relaxation of the discrete one. (The weighted optimum of
    :func:`solve_lp` is no bound: priorities may trade plain kWh for weighted kWh.) Optimal means
    within HiGHS's tolerances (~1e-7 relative), not a certified dual bound.
    """
    r = _solve(c, time_limit_s, "outer", sides, "energy", "simplex")
    return r.energy_kwh if r.status == "optimal" else None


# --- optional MILP: lo / step / discrete levels ------------------------------------------------


def solve_milp(
    c: Compiled, *, time_limit_s: float = 10.0, polygon: str = "inner", sides: int = 24
) -> LPResult:
    """The LP with every current restricted to 0 or its allowed set: small instances only.

    Same rows and objective as :func:`solve_lp` (see :func:`milp_arrays`). On a time limit the
    incumbent, if any, is returned (``has_solution``), with status "time_limit_feasible".
    """
    _check_time(time_limit_s)
    t0 = time.perf_counter()
    lp = build_lp(c, polygon=polygon, sides=sides)
    if c.n == 0 or c.t == 0:
        empty = _Raw("optimal", True, np.zeros(lp.cost.size), 0.0)
        return _result(c, lp, empty, 0.0, 0.0, "highs-milp")
    milp, integ, scale = milp_arrays(lp, c)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    raw = _run_highs(milp, max(time_limit_s - build_s, 1e-3), integrality=integ)
    if raw.has_solution:
        vals = raw.col_value.copy()
        vals[: lp.n_x] *= scale
        raw = _Raw(raw.status, True, vals, raw.objective)
    return _result(c, lp, raw, build_s, time.perf_counter() - t1, "highs-milp")
