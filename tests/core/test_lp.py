"""The exact LP path: hand-computed optima, phasor safety, energy bound, Pyomo parity, statuses."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import highspy
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.core import lp
from optimizer.core.compile import Compiled, compile_problem
from optimizer.core.lp import lp_energy_bound, solve_lp, solve_milp
from optimizer.core.model import (
    ROTATIONS,
    Connector,
    Node,
    Options,
    PhasorLimit,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
    Wiring,
)
from optimizer.core.pyomo_model import build_pyomo, solve_pyomo
from optimizer.core.validate import validate
from tests.strategies import problems

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # on a slot boundary: every slot is 15 min
H = timedelta(hours=1)
KW3 = 0.69  # kW per A, 3-phase 230 V
KWD = 0.208  # kW per A, delta 208 V
TOL = 1e-6


def _problem(
    nodes: tuple[Node, ...],
    conns: tuple[Connector, ...],
    sessions: tuple[Session, ...],
    hours: float = 4.0,
    prices: tuple[TimeValue, ...] = (),
) -> Compiled:
    p = Problem(
        Site("s", nodes, conns),
        sessions,
        NOW,
        Signals(prices=prices),
        Options(horizon_hours=hours),
    )
    validate(p)
    return compile_problem(p)


def _delivered(c: Compiled, x: np.ndarray) -> np.ndarray:
    return (c.kw_per_a[:, None] * c.hours * x).sum(axis=1)


def _excess(c: Compiled, x: np.ndarray) -> float:
    """Largest |sum_p c_p x| - limit over rows and slots (exact phasors), in units of the row."""
    if c.k == 0:
        return -math.inf
    coef = c.row_re + 1j * c.row_im
    z = np.add.reduceat(coef[:, None] * x[c.row_idx], c.row_ptr[:-1], axis=0)
    lim = np.where(np.isfinite(c.limit), c.limit, np.inf)
    return float((np.abs(z) - lim).max())


def _two_cars(need_a: float, need_b: float, prio_a: float = 1.0, prio_b: float = 1.0) -> Compiled:
    nodes = (Node("grid", phase_limit_a=(32.0, 32.0, 32.0)),)
    conns = (Connector("c1", "grid", 32.0), Connector("c2", "grid", 32.0))
    sessions = (
        Session("a", "c1", NOW, NOW + 4 * H, need_a, priority=prio_a),
        Session("b", "c2", NOW, NOW + 4 * H, need_b, priority=prio_b),
    )
    return _problem(nodes, conns, sessions)


# --- hand-computed optima -----------------------------------------------------------------------


def test_node_capacity_is_delivered_and_split_by_equal_shortfall_share() -> None:
    c = _two_cars(40.0, 80.0)
    r = solve_lp(c)
    cap = 32.0 * KW3 * 4.0  # 88.32 kWh through a 32 A/phase node in 4 h
    assert r.status == "optimal" and r.has_solution and r.solver == "highs-lp"
    assert r.energy_kwh == pytest.approx(cap, rel=1e-9)
    d = _delivered(c, r.x)
    # equal shares: (40 - d_a)/40 == (80 - d_b)/80 with d_a + d_b = cap
    assert d == pytest.approx([cap / 3.0, 2.0 * cap / 3.0], rel=1e-7)
    assert _excess(c, r.x) <= TOL


def test_priority_two_car_gets_its_need_first() -> None:
    c = _two_cars(20.0, 100.0, prio_a=2.0, prio_b=1.0)
    r = solve_lp(c)
    d = _delivered(c, r.x)
    assert d == pytest.approx([20.0, 32.0 * KW3 * 4.0 - 20.0], rel=1e-7)


def _one_car(need_kwh: float, prices: list[float]) -> Compiled:
    nodes = (Node("grid", phase_limit_a=(63.0, 63.0, 63.0)),)
    conns = (Connector("c1", "grid", 32.0),)
    tv = tuple(TimeValue(NOW + k * H / 4, NOW + (k + 1) * H / 4, p) for k, p in enumerate(prices))
    sessions = (Session("a", "c1", NOW, NOW + H, need_kwh),)
    return _problem(nodes, conns, sessions, hours=1.0, prices=tv)


def test_cheapest_slot_first_then_earliest() -> None:
    slot_kwh = 32.0 * KW3 * 0.25
    c = _one_car(slot_kwh, [0.3, 0.3, 0.1, 0.3])
    assert solve_lp(c).x[0] == pytest.approx([0.0, 0.0, 32.0, 0.0], abs=1e-7)
    c = _one_car(2 * slot_kwh, [0.3, 0.3, 0.1, 0.3])
    assert solve_lp(c).x[0] == pytest.approx([32.0, 0.0, 32.0, 0.0], abs=1e-7)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_energy_dominates_cost_at_any_price_scale(scale: float) -> None:
    slot_kwh = 32.0 * KW3 * 0.25
    c = _one_car(3.5 * slot_kwh, [scale * p for p in (5.0, 1.0, 3.0, 2.0)])
    r = solve_lp(c)
    assert r.energy_kwh == pytest.approx(3.5 * slot_kwh, rel=1e-9)
    assert r.x[0] == pytest.approx([16.0, 32.0, 32.0, 32.0], abs=1e-7)  # the dearest half-filled


def test_negative_prices_never_deliver_beyond_the_request() -> None:
    c = _one_car(5.0, [-0.2, -0.1, 0.1, 0.3])
    r = solve_lp(c)
    assert r.energy_kwh == pytest.approx(5.0, rel=1e-9)
    assert r.x[0, 0] == pytest.approx(5.0 / (KW3 * 0.25), abs=1e-7)  # all in the most negative


def test_no_need_no_current_and_empty_problem() -> None:
    c = _two_cars(0.0, 10.0)
    r = solve_lp(c)
    assert np.all(r.x[0] == 0.0) and r.energy_kwh == pytest.approx(10.0, rel=1e-9)
    empty = _problem((Node("grid", phase_limit_a=(32.0,) * 3),), (), ())
    r = solve_lp(empty)
    assert r.status == "optimal" and r.x.shape == (0, empty.t) and r.energy_kwh == 0.0


# --- phasor rows: inner polygon is safe, outer gives a true bound ------------------------------


def _delta_pair(sides: int = 24) -> Compiled:
    """Two 208 V branches, L1-L2 (30 deg) and L3-L1 (-30 deg on L1), under 40 A on L1.

    L1 = a e^{j30} + b e^{-j30}, so |L1|^2 = a^2 + b^2 + ab <= 40^2: the continuous optimum
    is a = b = 40/sqrt(3) A (both below the 32 A connector limit).
    """
    nodes = (Node("tr", phase_limit_a=(40.0, 1000.0, 1000.0)),)
    conns = tuple(
        Connector(
            cid, "tr", 32.0, phases=1, wiring=Wiring.DELTA, voltage_v=208.0, phase_rotation=rot
        )
        for cid, rot in (("d1", "L1L2L3"), ("d2", "L3L1L2"))
    )
    sessions = tuple(Session(f"s{k}", conns[k].id, NOW, NOW + H, 100.0) for k in range(2))
    p = Problem(
        Site("s", nodes, conns),
        sessions,
        NOW,
        options=Options(horizon_hours=1.0, phasor_polygon_sides=sides),
    )
    validate(p)
    return compile_problem(p)


@pytest.mark.parametrize("sides", [8, 24])
def test_delta_phasor_inner_is_safe_and_outer_bounds_the_exact_optimum(sides: int) -> None:
    c = _delta_pair(sides)
    assert not c.row_linear.all()  # the L1 row really is a phasor row
    exact = 2.0 * 40.0 / math.sqrt(3.0) * KWD * 1.0  # kWh in the one-hour horizon
    s = math.cos(math.pi / sides)
    inner = solve_lp(c, polygon="inner", sides=sides)
    assert inner.status == "optimal"
    assert _excess(c, inner.x) <= TOL  # the exact disk holds
    assert s * exact - TOL <= inner.energy_kwh <= exact + TOL
    outer = solve_lp(c, polygon="outer", sides=sides)
    bound = lp_energy_bound(c, sides=sides)
    assert bound is not None
    assert exact - TOL <= bound <= exact / s + TOL
    assert bound >= outer.energy_kwh - TOL >= inner.energy_kwh - 2 * TOL


def test_energy_bound_ignores_priorities() -> None:
    """A 1-phase priority car on L1 vs a 3-phase car: the weighted optimum is no bound."""
    nodes = (Node("grid", phase_limit_a=(32.0, 32.0, 32.0)),)
    conns = (Connector("c1", "grid", 32.0, phases=1), Connector("c3", "grid", 32.0))
    sessions = (
        Session("one", "c1", NOW, NOW + H, 100.0, priority=10.0),
        Session("three", "c3", NOW, NOW + H, 100.0),
    )
    c = _problem(nodes, conns, sessions, hours=1.0)
    r = solve_lp(c)
    assert _delivered(c, r.x)[0] == pytest.approx(32.0 * 0.23, rel=1e-7)  # L1 goes to priority
    bound = lp_energy_bound(c)
    assert bound == pytest.approx(32.0 * KW3, rel=1e-7)  # all of L1 to the 3-phase car
    assert bound is not None and bound > r.energy_kwh


# --- random instances ---------------------------------------------------------------------------


@st.composite
def small(draw: st.DrawFn) -> Compiled:
    """2-4 connectors (wye 1/3-phase on rotated phases, delta) below 1-2 nodes, 2 h horizon."""
    lim = draw(st.floats(10, 60))
    nodes = [
        Node(
            "g",
            phase_limit_a=(lim, draw(st.floats(10, 60)), lim),
            power_limit_kw=draw(st.one_of(st.none(), st.floats(5, 30))),
        )
    ]
    if draw(st.booleans()):
        nodes.append(
            Node(
                "t",
                "g",
                phasor_limits=(PhasorLimit("primary", (0.25, 0.0, -0.25), draw(st.floats(2, 12))),),
            )
        )
    conns = []
    for k in range(draw(st.integers(2, 4))):
        node = draw(st.sampled_from([n.id for n in nodes]))
        rot = draw(st.sampled_from(ROTATIONS))
        if draw(st.booleans()):
            conns.append(
                Connector(
                    f"c{k}",
                    node,
                    32.0,
                    phases=1,
                    wiring=Wiring.DELTA,
                    voltage_v=208.0,
                    phase_rotation=rot,
                )
            )
        else:
            conns.append(
                Connector(
                    f"c{k}",
                    node,
                    draw(st.sampled_from([16.0, 32.0])),
                    phases=draw(st.sampled_from([1, 3])),
                    phase_rotation=rot,
                )
            )
    sessions = []
    for k, cn in enumerate(conns):
        arr = draw(st.integers(-30, 90))
        sessions.append(
            Session(
                f"s{k}",
                cn.id,
                NOW + timedelta(minutes=arr),
                NOW + timedelta(minutes=arr + draw(st.integers(15, 180))),
                draw(st.floats(0, 40)),
                priority=draw(st.sampled_from([1.0, 2.0, 0.5])),
            )
        )
    prices = tuple(
        TimeValue(NOW + k * H / 2, NOW + (k + 1) * H / 2, draw(st.floats(0, 0.5))) for k in range(4)
    )
    return _problem(tuple(nodes), tuple(conns), tuple(sessions), hours=2.0, prices=prices)


SLOW = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SLOW
@given(small(), st.sampled_from(["inner", "outer"]), st.sampled_from([4, 7, 24]))
def test_pyomo_and_highspy_agree(c: Compiled, polygon: str, sides: int) -> None:
    r = solve_lp(c, polygon=polygon, sides=sides)
    assert r.status == "optimal"
    _, obj = solve_pyomo(c, polygon=polygon, sides=sides)
    assert obj == pytest.approx(r.objective, rel=1e-6, abs=1e-9)
    # same rows, not just the same optimum
    m = build_pyomo(c, polygon=polygon, sides=sides)
    arrays = lp.build_lp(c, polygon=polygon, sides=sides)
    assert len(m.energy) + len(m.fair) + len(m.limit) == arrays.row_lo.size
    assert arrays.cost.size == len(m.x) + len(m.u) + 1


@SLOW
@given(problems(max_connectors=6))
def test_lp_plans_are_feasible_and_bounded(p: Problem) -> None:
    c = compile_problem(p)
    r = solve_lp(c, polygon="inner", sides=p.options.phasor_polygon_sides)
    assert r.status == "optimal" and r.has_solution
    assert np.all(r.x >= 0.0) and np.all(r.x <= c.ub + 1e-12)
    assert np.all(_delivered(c, r.x) <= c.need_ah * c.kw_per_a + 1e-6)
    assert _excess(c, r.x) <= 1e-5
    bound = lp_energy_bound(c, sides=p.options.phasor_polygon_sides)
    assert bound is not None and bound >= r.energy_kwh - 1e-6


# --- MILP ---------------------------------------------------------------------------------------


def test_milp_honours_min_current_step_and_levels() -> None:
    nodes = (
        Node("root", phase_limit_a=(100.0,) * 3),
        Node("g", "root", phase_limit_a=(10.0, 100.0, 100.0)),
        Node("h", "root"),
        Node("k", "root", phase_limit_a=(20.0, 100.0, 100.0)),
    )
    conns = (
        Connector("a", "g", 16.0, min_current_a=6.0, current_step_a=1.0, phases=1),
        Connector("b", "g", 16.0, min_current_a=6.0, current_step_a=1.0, phases=1),
        Connector("o", "h", 9.0, min_current_a=6.5, current_step_a=1.0, phases=1),
        Connector("l1", "k", 16.0, min_current_a=8.0, allowed_currents_a=(8.0, 13.0), phases=1),
        Connector("l2", "k", 16.0, min_current_a=8.0, allowed_currents_a=(8.0, 13.0), phases=1),
    )
    sessions = tuple(Session(f"s{cn.id}", cn.id, NOW, NOW + H, 100.0) for cn in conns)
    c = _problem(nodes, conns, sessions, hours=1.0)
    lp_x = solve_lp(c).x
    assert lp_x[0] + lp_x[1] == pytest.approx([10.0] * 4)  # the LP shares 10 A: 5 + 5
    r = solve_milp(c, time_limit_s=20.0)
    assert r.status == "optimal" and r.solver == "highs-milp"
    x = r.x
    # a, b: 6 + 6 > 10, so one car per slot, at 10 A
    assert np.all(np.minimum(x[0], x[1]) <= 1e-7)
    assert x[0] + x[1] == pytest.approx([10.0] * 4, abs=1e-6)
    # o: grid 6.5, 7.5, 8.5 (9 is off the grid)
    assert x[2] == pytest.approx([8.5] * 4, abs=1e-6)
    # l1, l2: levels {0, 8, 13} under 20 A: 8 + 8 beats 13
    assert x[3] == pytest.approx([8.0] * 4, abs=1e-6)
    assert x[4] == pytest.approx([8.0] * 4, abs=1e-6)
    assert _excess(c, x) <= TOL


# --- statuses and misuse ------------------------------------------------------------------------


def test_every_highs_model_status_is_mapped() -> None:
    allowed = {
        "optimal",
        "time_limit",
        "limit",
        "interrupted",
        "infeasible",
        "unbounded",
        "unknown",
        "error",
    }
    members = list(highspy.HighsModelStatus.__members__.values())
    assert len(members) >= 19
    for name, ms in highspy.HighsModelStatus.__members__.items():
        assert name in lp.STATUS_BY_NAME, f"{name} has no explicit row in the status table"
        assert ms in lp.STATUS
        assert lp.map_status(ms) in allowed
    assert lp.STATUS[highspy.HighsModelStatus.kOptimal] == "optimal"
    assert lp.STATUS[highspy.HighsModelStatus.kTimeLimit] == "time_limit"


def test_classify_uses_a_point_only_when_feasible() -> None:
    ms, ok, err = highspy.HighsModelStatus, highspy.HighsStatus.kOk, highspy.HighsStatus.kError
    assert lp.classify(ms.kOptimal, ok, True) == ("optimal", True)
    assert lp.classify(ms.kTimeLimit, highspy.HighsStatus.kWarning, True) == (
        "time_limit_feasible",
        True,
    )
    assert lp.classify(ms.kTimeLimit, highspy.HighsStatus.kWarning, False) == ("time_limit", False)
    assert lp.classify(ms.kOptimal, err, True) == ("error", False)
    assert lp.classify(ms.kInfeasible, ok, True) == ("infeasible", False)
    assert lp.classify(ms.kSolveError, ok, True) == ("error", False)


def test_time_limit_without_a_point_returns_zero_current() -> None:
    nodes = (Node("grid", phase_limit_a=(100.0,) * 3),)
    conns = tuple(
        Connector(f"c{k}", "grid", 32.0, phases=3 if k % 2 else 1, phase_rotation=ROTATIONS[k % 3])
        for k in range(60)
    )
    sessions = tuple(
        Session(
            f"s{k}",
            f"c{k}",
            NOW + (k % 7) * H / 4,
            NOW + 20 * H,
            10.0 + k % 13,
            priority=1.0 + k % 2,
        )
        for k in range(60)
    )
    prices = tuple(
        TimeValue(NOW + k * H, NOW + (k + 1) * H, 0.1 + 0.01 * (k % 5)) for k in range(24)
    )
    c = _problem(nodes, conns, sessions, hours=24.0, prices=prices)
    raw = lp._run_highs(lp.build_lp(c), 1e-9)
    assert raw.status in ("time_limit", "time_limit_feasible")
    r = solve_lp(c, time_limit_s=1e-9)  # a millisecond for HiGHS
    assert r.status in ("optimal", "time_limit", "time_limit_feasible")
    if not r.has_solution:
        assert not r.x.any() and r.energy_kwh == 0.0


def test_misuse_raises() -> None:
    c = _two_cars(10.0, 10.0)
    with pytest.raises(ValueError):
        solve_lp(c, polygon="middle")
    with pytest.raises(ValueError):
        solve_lp(c, sides=2)
    with pytest.raises(ValueError):
        solve_lp(c, time_limit_s=0.0)
    with pytest.raises(ValueError):
        solve_lp(c, method="barrier")


@pytest.mark.parametrize("method", ["simplex", "interior", "ipm"])
def test_every_method_reaches_the_same_optimum(method: str) -> None:
    c = _two_cars(40.0, 80.0, prio_b=2.0)
    ref = solve_lp(c, method="simplex")
    r = solve_lp(c, method=method)
    assert r.status == "optimal"
    assert r.objective == pytest.approx(ref.objective, rel=1e-7)
    assert _delivered(c, r.x) == pytest.approx(_delivered(c, ref.x), rel=1e-5, abs=1e-5)


def test_auto_switches_to_interior_point_on_large_models() -> None:
    assert lp._pick_method("auto", lp.AUTO_IPM_NNZ) == "simplex"
    assert lp._pick_method("auto", lp.AUTO_IPM_NNZ + 1) == "interior"
    assert lp._pick_method("ipm", 10) == "ipm"


def test_interior_shares_ties_that_a_vertex_may_alternate() -> None:
    c = _two_cars(100.0, 100.0)
    r = solve_lp(c, method="interior")
    assert r.status == "optimal"
    assert r.x == pytest.approx(np.full((2, c.t), 16.0), abs=1e-3)  # 16 A + 16 A in every slot
    assert r.objective == pytest.approx(solve_lp(c, method="simplex").objective, rel=1e-7)
