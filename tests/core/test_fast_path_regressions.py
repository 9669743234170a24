"""Hand-built cases where the fast path once fell well short of the best real plan.

Each case is a falsifying example that the property
``test_solve.py::test_fast_path_energy_is_close_to_the_lp_bound`` found, rebuilt here so that it
is checked on every run (CI starts with an empty hypothesis database, so the property alone finds
such a case only at random). The best real plan is computed
the way the property computes it: the LP rounded and repaired by ``kernels.polish``, or the small
MILP, repaired.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from optimizer.core import kernels
from optimizer.core.checker import check
from optimizer.core.compile import Compiled, compile_problem
from optimizer.core.lp import lp_energy_bound, solve_lp, solve_milp
from optimizer.core.model import (
    Connector,
    CurtailmentEvent,
    Mode,
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
from optimizer.core.solve import delivered_kwh, solve
from optimizer.core.validate import validate


def _best_real_kwh(c: Compiled) -> float:
    """As the property: max of LP + polish and (if optimal) MILP + polish."""
    real = [float(delivered_kwh(c, kernels.polish(c, solve_lp(c).x)).sum())]
    milp = solve_milp(c, time_limit_s=10.0)
    if milp.status == "optimal":
        real.append(float(delivered_kwh(c, kernels.polish(c, milp.x)).sum()))
    return max(real)


LEVELS = (8.0, 16.0, 24.0, 32.0)
#: The hour the falsifying examples start at (slots are counted from it).
T0 = datetime(2026, 3, 2, 8, 7, tzinfo=UTC)


def _discrete(k: int, wiring: Wiring = Wiring.WYE) -> Connector:
    """1-phase connector c<k> on n0 (L1, or L1-L2 if delta) with currents 8/16/24/32 A."""
    return Connector(
        f"c{k}",
        "n0",
        32.0,
        min_current_a=8.0,
        current_step_a=0.1,
        allowed_currents_a=LEVELS,
        phases=1,
        wiring=wiring,
        voltage_v=208.0 if wiring is Wiring.DELTA else 230.0,
    )


def _continuous(k: int, wiring: Wiring = Wiring.WYE, rotation: str = "L1L2L3") -> Connector:
    """1-phase connector c<k> on n0, any current from 6 A."""
    return Connector(
        f"c{k}",
        "n0",
        32.0,
        min_current_a=6.0,
        current_step_a=0.0,
        phases=1,
        phase_rotation=rotation,
        wiring=wiring,
        voltage_v=208.0 if wiring is Wiring.DELTA else 230.0,
    )


def _zero_prices() -> tuple[TimeValue, ...]:
    hour = timedelta(hours=1)
    return tuple(TimeValue(T0 + h * hour, T0 + (h + 1) * hour, 0.0) for h in range(12))


def _discrete_set_blocked_by_a_hair() -> Problem:
    """Found by hypothesis: a 1-phase delta car (s9, connector c9 on L1-L2, currents 8/16/24/32,
    priority 0.5) shares L1 (24 A) with a 1-phase wye car (s4, c4 on L1, continuous, 9 A vehicle
    maximum, priority 1). L2 (16 A) caps s9 at 16 A; with s4 at its full 9 A, L1 leaves s9 only
    15.78 A, so s9 falls back to 8 A while s4 is there. s4 at 8.77 A would let s9 draw 16 A: the
    MILP plan delivers 4.99 kWh, the fast path used to deliver 3.97 kWh (80 % floor broken)."""
    m = timedelta(minutes=1)
    nodes = (
        Node("n0", None, (24.0, 16.0, 16.0)),
        Node("n1", "n0"),
        Node("n2", "n0"),
        Node("n3", "n0"),
    )
    conns = (
        _discrete(0),
        _continuous(1, Wiring.DELTA),
        _discrete(2),
        _continuous(3),
        _continuous(4),
        _continuous(5),
        _discrete(6),
        _discrete(7, Wiring.DELTA),
        _discrete(8, Wiring.DELTA),
        _discrete(9, Wiring.DELTA),
    )

    def idle(k: int) -> Session:  # present for 10 minutes, wants nothing
        return Session(f"s{k}", f"c{k}", T0, T0 + 10 * m, 0.0)

    sessions = (
        idle(1),
        idle(2),
        idle(3),
        Session("s4", "c4", T0, T0 + 38 * m, 2.0, vehicle_max_current_a=9.0),
        idle(5),
        idle(7),
        Session("s9", "c9", T0, T0 + 67 * m, 4.0, priority=0.5),
    )
    return Problem(
        Site("rnd", nodes, conns),
        sessions,
        T0,
        Signals(prices=_zero_prices()),
        Options(slot_minutes=5, horizon_hours=12.0),
    )


def test_discrete_car_is_not_kept_a_level_down_by_a_hair_of_headroom() -> None:
    p = _discrete_set_blocked_by_a_hair()
    validate(p)
    c = compile_problem(p)
    bound = lp_energy_bound(c, time_limit_s=10.0)
    assert bound is not None
    fast = kernels.allocate(c)
    got = float(delivered_kwh(c, fast).sum())
    assert got <= bound + 1e-6
    best = _best_real_kwh(c)
    # The property asserts 0.8; here the fast path should find (nearly) the MILP's plan: s4 gives
    # up a quarter of an amp so that s9 can hold 16 A.
    assert got >= 0.95 * best, (got, best)
    plan = solve(replace(p, options=replace(p.options, mode=Mode.FAST)))
    assert check(p, plan) == []


def _remainder_below_one_slots_minimum() -> Problem:
    """Found by hypothesis (with seed 6, 300 examples; the fast path of the time failed it too):
    one 3-phase car (continuous, minimum 6 A) under a 6 kW node (8.7 A), 60-minute slots. It
    fills its cheapest slot (40 min present) at 8.7 A and is left with 4.6 A*h: too little for
    6 A in a full hour, so it used only its 17-minute last slot (5.7 kWh). Lowering the first slot
    to 6.66 A leaves exactly the 6 A*h of one more full hour: all 7.2 kWh."""
    t0 = T0
    hour = timedelta(hours=1)
    nodes = (
        Node(
            "n0",
            None,
            (80.41281571045764, 29.380436190824604, 63.74756160933496),
            6.0,
            (PhasorLimit("primary", (0.25, 0.0, -0.25), 16.0),),
        ),
    )
    conns = (
        Connector("c0", "n0", 32.0, current_step_a=0.0, phases=3, phase_rotation="L2L3L1"),
        Connector(
            "c1",
            "n0",
            32.0,
            phases=1,
            phase_rotation="L3L1L2",
            wiring=Wiring.DELTA,
            voltage_v=208.0,
        ),
    )
    arrival = datetime(2026, 3, 2, 11, 20, tzinfo=UTC)
    departure = datetime(2026, 3, 2, 16, 17, tzinfo=UTC)
    sessions = (
        Session("s0", "c0", arrival, departure, 7.202261350976428, vehicle_max_current_a=31.0),
    )
    values = (0.09434475321679865, 0.40429214637030364, -0.046460846193141274,
              1.1754943508222875e-38, 0.4273853948275242, 0.4172429314065474,
              0.15797258674869968, 0.29609943246937737, 0.5556630179518174,
              -2.225073858507e-311, 0.25, 0.33223582361662257)  # fmt: skip
    prices = tuple(TimeValue(t0 + h * hour, t0 + (h + 1) * hour, v) for h, v in enumerate(values))
    events = (
        CurtailmentEvent(
            "e0",
            "n0",
            datetime(2026, 3, 2, 11, 16, tzinfo=UTC),
            datetime(2026, 3, 2, 14, 4, tzinfo=UTC),
            limit_kw=12.0,
        ),
        CurtailmentEvent(
            "e1",
            "n0",
            datetime(2026, 3, 2, 9, 7, tzinfo=UTC),
            datetime(2026, 3, 2, 9, 12, tzinfo=UTC),
            limit_kw=10.5516903175946,
        ),
    )
    return Problem(
        Site("rnd", nodes, conns),
        sessions,
        t0,
        Signals(prices=prices, events=events),
        Options(slot_minutes=60, horizon_hours=12.0),
    )


def test_a_remainder_too_small_for_a_new_slot_is_gathered_from_the_others() -> None:
    p = _remainder_below_one_slots_minimum()
    validate(p)
    c = compile_problem(p)
    fast = kernels.allocate(c)
    got = float(delivered_kwh(c, fast).sum())
    best = _best_real_kwh(c)
    assert got >= 0.95 * best, (got, best)
    assert got == pytest.approx(7.202261350976428)  # the whole request
    plan = solve(replace(p, options=replace(p.options, mode=Mode.FAST)))
    assert check(p, plan) == []


def _delta_car_costs_twice_the_row() -> Problem:
    """Found by hypothesis (the fast path before the trade and gather moves failed it too): two
    continuous cars under one phasor limit, |0.25 I_L1 - 0.25 I_L3| <= 8 A, i.e. |I_L1 - I_L3| <=
    32 A. s7 (wye on L1) adds I7 to it, s5 (delta L3-L1) adds 2 I5 at -30 degrees: per A, s5 takes
    twice the row. The rounds give both the same current per turn (12 A and 10.5 A fill the row)
    and serve s5 in full, s7 by half: 18.9 kWh. The MILP lets s7 draw 32 A first and s5 (6 A)
    only later: 24.9 kWh, so the fast path delivers 76 % of it."""
    nodes = (
        Node("n0", None, None, None, (PhasorLimit("primary", (0.25, 0.0, -0.25), 8.0),)),
        Node("n1", "n0"),
    )
    conns = (
        _discrete(0, Wiring.DELTA),
        _continuous(1, Wiring.DELTA),
        _discrete(2, Wiring.DELTA),
        _continuous(3, Wiring.DELTA),
        _discrete(4),
        _continuous(5, Wiring.DELTA, "L3L1L2"),
        _discrete(6, Wiring.DELTA),
        _continuous(7),
        _continuous(8),
    )
    m = timedelta(minutes=1)
    sessions = (
        Session("s5", "c5", T0, T0 + 225 * m, 8.0),
        Session("s7", "c7", T0, T0 + 227 * m, 22.0),
    )
    return Problem(
        Site("rnd", nodes, conns),
        sessions,
        T0,
        Signals(prices=_zero_prices()),
        Options(slot_minutes=5, horizon_hours=12.0),
    )


def test_a_car_that_costs_twice_the_row_does_not_halve_the_other() -> None:
    p = _delta_car_costs_twice_the_row()
    validate(p)
    c = compile_problem(p)
    got = float(delivered_kwh(c, kernels.allocate(c)).sum())
    best = _best_real_kwh(c)
    # The property asserts 0.8; here the binding row is traded at its rate of exchange: s5 gives
    # up its current (0.42 kWh per A of the row at the margin) to s7 (0.97), which then draws
    # 32 A until it is served, and s5 charges after it.
    assert got >= 0.95 * best, (got, best)
    plan = solve(replace(p, options=replace(p.options, mode=Mode.FAST)))
    assert check(p, plan) == []
