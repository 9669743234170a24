"""The array compiler: slot edges, presence, bounds, coefficients and rows, computed by hand."""

from __future__ import annotations

import cmath
import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.core.compile import box_safe_subsets, compile_problem
from optimizer.core.model import (
    Connector,
    CurtailmentEvent,
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

NOW = datetime(2026, 1, 5, 8, 7, tzinfo=UTC)
M = timedelta(minutes=1)


def _site() -> Site:
    return Site(
        "s",
        (Node("grid", None, (40.0, 40.0, 40.0), 20.0),
         Node("tr", "grid", None, None, (PhasorLimit("pA", (0.25, 0.0, -0.25), 30.0),))),
        (Connector("c1", "grid", 32.0, phases=1, phase_rotation="L2L3L1"),
         Connector("c2", "grid", 32.0, current_step_a=1.0),
         Connector("d1", "tr", 32.0, min_current_a=6.0, current_step_a=1.0, phases=1,
                   wiring=Wiring.DELTA, voltage_v=208.0, phase_rotation="L3L1L2"),
         Connector("cc", "tr", 32.0, allowed_currents_a=(8.0, 16.0, 24.0, 32.0), phases=1,
                   wiring=Wiring.DELTA, voltage_v=208.0)),
    )


def test_slots_start_at_now_and_align_to_the_wall_clock() -> None:
    p = Problem(_site(), (), NOW, options=Options(slot_minutes=15, horizon_hours=1.0))
    c = compile_problem(p)
    minutes = (c.slot_end - c.slot_start) / 60
    # 08:07-08:15 (8 min), then 15-min slots, the last one cut at 09:07.
    assert minutes.tolist() == [8.0, 15.0, 15.0, 15.0, 7.0]
    assert c.slot_start[1] == datetime(2026, 1, 5, 8, 15, tzinfo=UTC).timestamp()


def test_partial_presence_hours_and_bounds() -> None:
    s = Session("a", "c2", NOW + 13 * M, NOW + 58 * M, 5.0, vehicle_max_current_a=20.5)
    c = compile_problem(Problem(_site(), (s,), NOW, options=Options(horizon_hours=1.0)))
    # arrives 08:20 (slot 08:15-08:30: 10 min), leaves 09:05 (slot 09:00-09:07: 5 min)
    assert np.allclose(c.hours[0] * 60, [0, 10, 15, 15, 5])
    # vehicle max 20.5 A on a 1 A grid from 6 A -> 20 A; 0 where absent
    assert c.ub[0].tolist() == [0, 20, 20, 20, 20]
    assert c.need_ah[0] == pytest.approx(5.0 / (3 * 230 / 1000))
    # departs inside the horizon: urgency doubles its weight
    assert c.weight[0] == 2.0


def test_vehicle_power_limit_and_discrete_levels() -> None:
    s1 = Session("a", "d1", NOW, NOW + 60 * M, 5.0, vehicle_max_power_kw=6.6)
    s2 = Session("b", "cc", NOW, NOW + 60 * M, 5.0, vehicle_max_current_a=20.0)
    c = compile_problem(Problem(_site(), (s1, s2), NOW, options=Options(horizon_hours=1.0)))
    assert c.ub[0, 0] == 31.0  # 6.6 kW / 208 V = 31.7 A, floored to the 1 A grid
    assert c.lev_val[c.lev_ptr[1]:c.lev_ptr[2]].tolist() == [0.0, 8.0, 16.0]
    assert c.ub[1, 0] == 16.0 and c.lo[1] == 8.0


def test_phase_coefficients_rotation_and_delta_angles() -> None:
    sess = (Session("a", "c1", NOW, NOW + 60 * M, 5.0),
            Session("b", "c2", NOW, NOW + 60 * M, 5.0, vehicle_phases=1),
            Session("d", "d1", NOW, NOW + 60 * M, 5.0))
    c = compile_problem(Problem(_site(), sess, NOW, options=Options(horizon_hours=1.0)))
    coef = {(str(c.rows[k]), int(c.row_idx[p])): complex(c.row_re[p], c.row_im[p])
            for k in range(c.k) for p in range(c.row_ptr[k], c.row_ptr[k + 1])}
    e = lambda deg: cmath.rect(1.0, math.radians(deg))  # noqa: E731
    assert coef[("grid L2", 0)] == pytest.approx(e(-120))  # 1-phase car rotated onto L2
    assert coef[("grid L1", 1)] == pytest.approx(1.0)  # 3-phase connector, 1-phase car: L1
    assert ("grid L2", 1) not in coef
    # delta L3-L1 branch at 150 degrees: +e(150) on L3, -e(150) on L1
    assert coef[("grid L3", 2)] == pytest.approx(e(150))
    assert coef[("grid L1", 2)] == pytest.approx(-e(150))
    # primary A = 0.25 * (I_L1 - I_L3) -> -0.5 * e(150)
    assert coef[("tr pA", 2)] == pytest.approx(-0.5 * e(150))
    # mixed wye (0 deg) and delta (-30 deg) on L1: not a plain sum
    assert not c.row_linear[[str(r) for r in c.rows].index("grid L1")]


def test_events_and_capacity_take_the_most_restrictive_limit() -> None:
    s = Session("a", "c2", NOW, NOW + 60 * M, 5.0)
    ev = (CurtailmentEvent("e1", "grid", NOW + 10 * M, NOW + 20 * M, limit_kw=11.0),
          CurtailmentEvent("e2", "grid", NOW + 40 * M, NOW + 45 * M, reduction_kw=15.0),
          CurtailmentEvent("e3", "grid", NOW + 38 * M, NOW + 50 * M, limit_kw=30.0))
    p = Problem(_site(), (s,), NOW, Signals(events=ev), Options(horizon_hours=1.0))
    c = compile_problem(p)
    kw = c.limit[[str(r) for r in c.rows].index("grid kW")]
    # slots: 08:07-15, 15-30, 30-45, 45-00, 00-07; e1 touches 08:17-08:27 -> slot 1,
    # e2 touches 08:47-08:52 -> slot 3 (20 - 15 = 5 kW), e3 08:45-08:57 -> slot 3 (30, looser)
    assert kw.tolist() == [20.0, 11.0, 20.0, 5.0, 20.0]


def test_prices_are_time_weighted_over_slots() -> None:
    prices = (TimeValue(NOW, NOW + 3 * M, 1.0), TimeValue(NOW + 3 * M, NOW + 60 * M, 0.2))
    c = compile_problem(Problem(_site(), (), NOW, Signals(prices=prices),
                                Options(horizon_hours=1.0)))
    assert c.price[0] == pytest.approx((3 * 1.0 + 5 * 0.2) / 8)
    assert c.price[1] == pytest.approx(0.2)


def test_caltech_primary_expands_into_box_safe_rows() -> None:
    e = lambda deg: cmath.rect(1.0, math.radians(deg))  # noqa: E731
    subsets = box_safe_subsets([0.25 * e(30), 0.25 * e(-90), -0.5 * e(150)])
    # AB alone, BC alone, AB+CA, BC+CA, all three: CA alone never tops those.
    assert sorted(map(sorted, subsets)) == [[0], [0, 1, 2], [0, 2], [1], [1, 2]]
    # coefficients within 90 degrees of each other: the plain row suffices
    assert box_safe_subsets([e(30), e(-30), e(30)]) == [[0, 1, 2]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 2.0), st.sampled_from([0, 30, -90, 150, -30, 90, 180]),
                          st.floats(0.0, 32.0)), min_size=1, max_size=6))
def test_box_safe_rows_bound_every_partial_draw(items: list[tuple[float, int, float]]) -> None:
    """max over emitted rows of |z| >= |z| of any subset of cars drawing (brute force)."""
    cs = [r * cmath.rect(1, math.radians(a)) for r, a, _ in items]
    x = [v for *_, v in items]
    emitted = max(abs(sum(cs[j] * x[j] for j in s)) for s in box_safe_subsets(cs))
    worst = max(abs(sum(cs[j] * x[j] for j in sub))
                for r in range(1, len(cs) + 1) for sub in itertools.combinations(range(len(cs)), r))
    assert emitted >= worst - 1e-9


def test_vehicle_minimum_keeps_the_connector_grid() -> None:
    s = Session("a", "c2", NOW, NOW + 60 * M, 5.0, vehicle_min_current_a=6.5)
    c = compile_problem(Problem(_site(), (s,), NOW, options=Options(horizon_hours=1.0)))
    assert c.lo[0] == 7.0 and c.step[0] == 1.0 and c.ub[0, 0] == 32.0
