"""Tests of the independent checker: hand-built plans with hand-computed numbers.

Every violation kind is planted once in an otherwise correct plan and must come back with the
right kind, subject, window, value and limit. Energy figures of the plans are computed here by a
brute-force minute loop, not by the checker, so a correct plan really is correct.
"""

from __future__ import annotations

import cmath
import itertools
import math
from collections.abc import Sequence
from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from optimizer.core import checker
from optimizer.core.checker import PARTIAL, box_max_magnitude, check
from optimizer.core.model import (
    CapacityLimit,
    Connector,
    CurtailmentEvent,
    Node,
    Options,
    PhasorLimit,
    Problem,
    Session,
    Signals,
    Site,
    Wiring,
    kw_per_amp,
    phase_coefficients,
)
from optimizer.core.plan import ChangePoint, ConnectorProfile, Plan, SessionResult, Violation

from ..strategies import problems

T0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
SQRT3 = math.sqrt(3.0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def prof(cid: str, sids: Sequence[str], points: Sequence[tuple[float, float]]) -> ConnectorProfile:
    return ConnectorProfile(cid, tuple(sids), tuple(ChangePoint(at(m), a) for m, a in points))


def current_at(p: ConnectorProfile, t: datetime) -> float:
    """Brute-force charger reading: the last point at or before t."""
    cur = 0.0
    for pt in p.points:
        if pt.start <= t:
            cur = pt.current_a
    return cur


def delivered(problem: Problem, profiles: Sequence[ConnectorProfile]) -> dict[str, float]:
    """kWh per session by a 1-minute loop (all test times are whole minutes)."""
    conns = {c.id: c for c in problem.site.connectors}
    by_conn = {p.connector: p for p in profiles}
    minutes = int(problem.options.horizon_hours * 60)
    out: dict[str, float] = {}
    for s in problem.sessions:
        kwh = 0.0
        p = by_conn.get(s.connector)
        for m in range(minutes):
            t = at(m)
            if p is not None and s.arrival <= t < s.departure:
                kwh += current_at(p, t) * kw_per_amp(conns[s.connector], s) / 60.0
        out[s.id] = kwh
    return out


def results(problem: Problem, profiles: Sequence[ConnectorProfile]) -> tuple[SessionResult, ...]:
    got = delivered(problem, profiles)
    out = []
    for s in problem.sessions:
        want = max(0.0, s.energy_requested_kwh - s.energy_delivered_kwh)
        out.append(SessionResult(s.id, s.connector, want, got[s.id], max(0.0, want - got[s.id])))
    return tuple(out)


def make_plan(
    problem: Problem,
    profiles: Sequence[ConnectorProfile],
    sessions: tuple[SessionResult, ...] | None = None,
) -> Plan:
    return Plan(
        start=problem.now,
        end=problem.horizon_end,
        profiles=tuple(profiles),
        sessions=results(problem, profiles) if sessions is None else sessions,
    )


def only(vs: list[Violation], kind: str, subject: str | None = None) -> list[Violation]:
    return [v for v in vs if v.kind == kind and (subject is None or v.subject == subject)]


# --- a small European site ---------------------------------------------------------------------
#
# site (63 A/phase) <- panel (40 A/phase, 30 kW) <- c1 (3-phase, 0.69 kW/A), c2 (1-phase on L2,
# 0.23 kW/A), c3 (ClipperCreek-like: 0/8/16/24/32 A only).
# s1 on c1 from before now to 01:30, s2 on c2 from 00:30 past the 2 h horizon.


def make_site(**panel: Any) -> Site:
    return Site(
        "eu",
        nodes=(
            Node("site", phase_limit_a=(63.0, 63.0, 63.0)),
            replace(
                Node("panel", parent="site", phase_limit_a=(40.0, 40.0, 40.0), power_limit_kw=30),
                **panel,
            ),
        ),
        connectors=(
            Connector("c1", "panel", max_current_a=32.0),
            Connector("c2", "panel", max_current_a=32.0, phases=1, phase_rotation="L2L3L1"),
            Connector(
                "c3", "panel", max_current_a=32.0, allowed_currents_a=(8.0, 16.0, 24.0, 32.0)
            ),
        ),
    )


def make_sessions(**s1: Any) -> tuple[Session, ...]:
    return (
        replace(Session("s1", "c1", at(-60), at(90), energy_requested_kwh=30.0), **s1),
        Session("s2", "c2", at(30), at(180), energy_requested_kwh=10.0),
    )


def problem(
    signals: Signals | None = None,
    *,
    site: Site | None = None,
    sessions: tuple[Session, ...] | None = None,
) -> Problem:
    return Problem(
        site=site or make_site(),
        sessions=sessions or make_sessions(),
        now=T0,
        signals=signals or Signals(),
        options=Options(horizon_hours=2.0),
    )


def good_profiles() -> list[ConnectorProfile]:
    return [
        prof("c1", ["s1"], [(0, 16.0), (60, 10.0), (90, 0.0)]),
        prof("c2", ["s2"], [(0, 0.0), (30, 16.0)]),
    ]


def test_correct_hand_built_plan_is_clean() -> None:
    p = problem()
    # Hand-computed: s1 = 0.69 kW/A * (16 A * 1 h + 10 A * 0.5 h) = 14.49 kWh,
    # s2 = 0.23 kW/A * 16 A * 1.5 h = 5.52 kWh; panel peaks: L1 16 A, L2 32 A, 14.72 kW.
    hand = (
        SessionResult("s1", "c1", 30.0, 14.49, 15.51),
        SessionResult("s2", "c2", 10.0, 5.52, 4.48),
    )
    assert check(p, make_plan(p, good_profiles(), hand)) == []
    assert check(p, make_plan(p, good_profiles())) == []


def test_no_profiles_at_all_is_clean() -> None:
    p = problem()
    assert check(p, make_plan(p, [])) == []


# --- node limits ---------------------------------------------------------------------------------


def test_node_phase_limit_counts_rotated_single_phase_car() -> None:
    # L2 of the panel: c1 24 A (3-phase) + c2 20 A (1-phase on L2) = 44 A > 40 A.
    p = problem()
    profiles = [
        prof("c1", ["s1"], [(0, 24.0), (90, 0.0)]),
        prof("c2", ["s2"], [(30, 20.0)]),
    ]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject) for v in vs] == [("node_limit", "panel")]
    (v,) = vs
    assert (v.start, v.end) == (at(30), at(90))
    assert v.value == pytest.approx(44.0) and v.limit == pytest.approx(40.0)
    assert "L2" in v.message


def test_violation_in_partial_segment_car_arrives_mid_profile() -> None:
    # c2 is told 20 A from 00:00 but its car only arrives at 00:20: the current before that is an
    # outside-stay violation, and the panel's L2 (24 + 20 A) is only overloaded from 00:20.
    p = problem(sessions=(make_sessions()[0], Session("s2", "c2", at(20), at(180), 10.0)))
    profiles = [
        prof("c1", ["s1"], [(0, 24.0), (60, 16.0), (90, 0.0)]),
        prof("c2", ["s2"], [(0, 20.0), (60, 16.0)]),
    ]
    vs = check(p, make_plan(p, profiles))
    node = only(vs, "node_limit")
    assert len(node) == 1
    assert (node[0].subject, node[0].start, node[0].end) == ("panel", at(20), at(60))
    assert node[0].value == pytest.approx(44.0)
    out = only(vs, "outside_stay")
    assert [(v.subject, v.start, v.end, v.value) for v in out] == [("c2", at(0), at(20), 20.0)]
    assert {v.kind for v in vs} == {"node_limit", "outside_stay"}


def test_node_power_limit() -> None:
    # 00:30-01:00: 0.69 * 16 + 0.23 * 16 = 14.72 kW > 14 kW; 01:00-01:30: 10.58 kW is fine.
    p = problem(site=make_site(power_limit_kw=14.0))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "panel", at(30), at(60))
    ]
    assert vs[0].value == pytest.approx(14.72) and vs[0].limit == pytest.approx(14.0)
    assert "kW" in vs[0].message


def test_capacity_limit_window_per_phase_and_merging() -> None:
    # An envelope of 9 A on L1 from 00:00 to 01:30: c1 draws 16 A then 10 A. The segments
    # 00:00-00:30, 00:30-01:00 and 01:00-01:30 merge into one violation, worst value 16 A.
    cap = CapacityLimit("panel", at(0), at(90), phase_limit_a=(9.0, 40.0, 40.0))
    p = problem(Signals(capacity=(cap,)))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "panel", at(0), at(90))
    ]
    assert vs[0].value == pytest.approx(16.0) and vs[0].limit == pytest.approx(9.0)


def test_capacity_limit_kw_window() -> None:
    cap = CapacityLimit("site", at(45), at(75), limit_kw=12.0)
    p = problem(Signals(capacity=(cap,)))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "site", at(45), at(60))
    ]
    assert vs[0].value == pytest.approx(14.72) and vs[0].limit == pytest.approx(12.0)


def test_curtailment_event_window() -> None:
    # 10 kW cap on the site from 01:00 to 01:30: 0.69 * 10 + 0.23 * 16 = 10.58 kW.
    ev = CurtailmentEvent("dr1", "site", at(60), at(90), limit_kw=10.0)
    p = problem(Signals(events=(ev,)))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "site", at(60), at(90))
    ]
    assert vs[0].value == pytest.approx(10.58) and vs[0].limit == pytest.approx(10.0)


def test_reduction_event_on_phase_only_node_uses_phase_baseline() -> None:
    # The site has no kW limit: baseline = 3 * 63 A * 230 V = 43.47 kW; minus 35 kW = 8.47 kW.
    ev = CurtailmentEvent("dr2", "site", at(30), at(60), reduction_kw=35.0)
    p = problem(Signals(events=(ev,)))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "site", at(30), at(60))
    ]
    assert vs[0].value == pytest.approx(14.72) and vs[0].limit == pytest.approx(8.47)


def test_reduction_event_on_kw_node_and_supersession() -> None:
    # Panel baseline 30 kW - 20 kW = 10 kW from 00:00 to 02:00 (modification 1); the superseded
    # modification 0 of the same event (a 1 kW cap) is no longer in force.
    evs = (
        CurtailmentEvent("dr3", "panel", at(0), at(120), limit_kw=1.0, modification=0),
        CurtailmentEvent("dr3", "panel", at(0), at(120), reduction_kw=20.0, modification=1),
    )
    p = problem(Signals(events=evs))
    vs = check(p, make_plan(p, good_profiles()))
    # 00:00-00:30 11.04 kW, 00:30-01:00 14.72 kW, 01:00-01:30 10.58 kW, then 3.68 kW.
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "panel", at(0), at(90))
    ]
    assert vs[0].value == pytest.approx(14.72) and vs[0].limit == pytest.approx(10.0)


def test_absent_car_draws_nothing() -> None:
    # After s1 leaves at 01:30 the c1 profile still says 30 A: that is outside_stay, but it must not
    # count towards the panel (which would exceed 0.69*30 + 3.68 > 20 kW).
    p = problem(site=make_site(power_limit_kw=20.0))
    profiles = [prof("c1", ["s1"], [(0, 16.0), (60, 10.0), (90, 30.0)]), good_profiles()[1]]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject, v.start, v.end, v.value) for v in vs] == [
        ("outside_stay", "c1", at(90), at(120), 30.0)
    ]


# --- Caltech-like delta site -------------------------------------------------------------------
#
# Stations wired line-to-line at 208 V: ab on L1-L2 (30 deg), bc on L2-L3 (-90), ca on L3-L1
# (150). Per A of branch current, L1 carries e^{j30} (ab) - e^{j150} (ca). The transformer
# primary current 0.25 * (I_L1 - I_L3) then weighs ab 0.25 e^{j30}, bc 0.25 e^{-j90},
# ca 0.5 e^{-j30}.


def delta_problem(phase_limit: float | None = None, primary: float | None = None) -> Problem:
    nodes = [
        Node(
            "primary",
            phasor_limits=(PhasorLimit("primary A", (0.25, 0.0, -0.25), primary),)
            if primary is not None
            else (),
        ),
        Node(
            "secondary",
            parent="primary",
            phase_limit_a=None if phase_limit is None else (phase_limit,) * 3,
            voltage_v=120.0,
        ),
    ]
    conns = tuple(
        Connector(
            cid,
            "secondary",
            max_current_a=32.0,
            current_step_a=1.0,
            wiring=Wiring.DELTA,
            phase_rotation=rot,
            voltage_v=208.0,
        )
        for cid, rot in (("ab", "L1L2L3"), ("bc", "L2L3L1"), ("ca", "L3L1L2"))
    )
    sess = tuple(Session(f"s_{c.id}", c.id, at(-30), at(240), 100.0) for c in conns)
    return Problem(Site("caltech", tuple(nodes), conns), sess, T0, options=Options(horizon_hours=1))


def delta_plan(p: Problem, ab: float, bc: float, ca: float) -> Plan:
    profiles = [prof(c, [f"s_{c}"], [(0, a)]) for c, a in (("ab", ab), ("bc", bc), ("ca", ca))]
    return make_plan(p, profiles)


def test_delta_coefficients_match_hand_phasors() -> None:
    p = delta_problem()
    c = {s.connector: phase_coefficients(p.site.connectors[i], s) for i, s in enumerate(p.sessions)}
    assert c["ab"][0] == pytest.approx(cmath.rect(1, math.radians(30)))
    assert c["ca"][0] == pytest.approx(-cmath.rect(1, math.radians(150)))
    assert kw_per_amp(p.site.connectors[0], p.sessions[0]) == pytest.approx(0.208)


def test_delta_phase_current_is_phasor_sum() -> None:
    # L1 = 32 e^{j30} - 32 e^{j150} = 32 * sqrt(3) = 55.43 A (a linear sum would say 64 A).
    p = delta_problem(phase_limit=56.0)
    assert check(p, delta_plan(p, 32, 0, 32)) == []
    p = delta_problem(phase_limit=55.0)
    vs = check(p, delta_plan(p, 32, 0, 32))
    assert [(v.kind, v.subject) for v in vs] == [("node_limit", "secondary")]
    assert vs[0].value == pytest.approx(32 * SQRT3) and vs[0].limit == 55.0
    assert "L1" in vs[0].message and PARTIAL not in vs[0].message
    # A (forbidden) negative current elsewhere must not change the L1 phasor arithmetic.
    vs = check(p, delta_plan(p, 32, -1, 32))
    assert only(vs, "connector_bounds", "bc")
    (node,) = only(vs, "node_limit", "secondary")
    assert node.value == pytest.approx(32 * SQRT3) and "L1" in node.message


def test_delta_primary_phasor_limit_at_planned_currents() -> None:
    # All three at 32 A: 8 e^{j30} + 8 e^{-j90} + 16 e^{-j30} = 24 e^{-j30}, |.| = 24 A.
    p = delta_problem(primary=20.0)
    vs = check(p, delta_plan(p, 32, 32, 32))
    assert [(v.kind, v.subject) for v in vs] == [("node_limit", "primary")]
    assert vs[0].value == pytest.approx(24.0) and vs[0].limit == 20.0
    assert "primary A" in vs[0].message and PARTIAL not in vs[0].message
    p = delta_problem(primary=24.0)
    assert check(p, delta_plan(p, 32, 32, 32)) == []


def test_delta_primary_breaks_only_if_a_car_draws_less() -> None:
    # ab 32 A, bc 16 A: |8 e^{j30} + 4 e^{-j90}| = sqrt(64 + 16 - 32) = sqrt(48) = 6.93 A <= 7 A,
    # but if bc's car draws nothing the primary carries 8 A > 7 A.
    p = delta_problem(primary=7.0)
    vs = check(p, delta_plan(p, 32, 16, 0))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("node_limit", "primary", at(0), at(60))
    ]
    assert vs[0].value == pytest.approx(8.0) and vs[0].limit == 7.0
    assert PARTIAL in vs[0].message
    # With 8 A allowed both the planned (6.93 A) and the worst partial draw (8 A) fit.
    p = delta_problem(primary=8.0)
    assert check(p, delta_plan(p, 32, 16, 0)) == []


def test_neutral_current_of_an_unbalanced_wye_car() -> None:
    # A neutral (L1 + L2 + L3 phasors) limit of 5 A under one 3-phase wye car at 10 A: balanced,
    # the neutral carries 0 A; a car drawing on one or two phases only puts 10 A on it.
    node = Node("n", phasor_limits=(PhasorLimit("N", (1.0, 1.0, 1.0), 5.0),))
    conn = Connector("c", "n", 32.0, phases=3)
    p = Problem(
        Site("s", (node,), (conn,)),
        (Session("s1", "c", at(0), at(60), 1000.0),),
        T0,
        options=Options(horizon_hours=1),
    )
    vs = only(check(p, make_plan(p, [prof("c", ["s1"], [(0, 10.0)])])), "node_limit")
    assert [(v.subject, v.start, v.end) for v in vs] == [("n", at(0), at(60))]
    assert vs[0].value == pytest.approx(10.0) and vs[0].limit == 5.0
    assert PARTIAL in vs[0].message
    assert not only(check(p, make_plan(p, [prof("c", ["s1"], [(0, 5.0)])])), "node_limit")


def test_delta_primary_planned_violation_is_not_reported_twice() -> None:
    # ab = bc = 32 A: planned |8 e^{j30} + 8 e^{-j90}| = 8 A = worst partial draw; one report.
    p = delta_problem(primary=7.9)
    vs = check(p, delta_plan(p, 32, 32, 0))
    assert len(vs) == 1 and vs[0].value == pytest.approx(8.0)
    assert PARTIAL not in vs[0].message


def test_ids_with_braces_do_not_break_messages() -> None:
    p = delta_problem(primary=7.0)
    nodes = (
        replace(
            p.site.nodes[0],
            id="xf{0}",
            phasor_limits=(PhasorLimit("prim {A}", (0.25, 0.0, -0.25), 7.0),),
        ),
        replace(p.site.nodes[1], parent="xf{0}"),
    )
    p = replace(p, site=replace(p.site, nodes=nodes))
    vs = check(p, delta_plan(p, 32, 16, 0))
    assert [(v.kind, v.subject) for v in vs] == [("node_limit", "xf{0}")]
    assert "xf{0} prim {A}: 8 A above its limit 7 A " + PARTIAL in vs[0].message


# --- connector and vehicle rules ----------------------------------------------------------------


def test_connector_bounds_above_max_negative_and_nan() -> None:
    p = problem()
    profiles = [prof("c1", ["s1"], [(0, 40.0), (30, -1.0), (60, math.nan), (90, 0.0)])]
    vs = check(p, make_plan(p, profiles, ()))
    cb = sorted(only(vs, "connector_bounds", "c1"), key=lambda v: v.start or T0)
    assert [(v.start, v.end) for v in cb] == [(at(0), at(30)), (at(30), at(60)), (at(60), at(90))]
    assert cb[0].value == 40.0 and cb[0].limit == 32.0
    assert cb[1].value == -1.0 and cb[1].limit == 0.0
    assert math.isnan(cb[2].value)
    # 40 A on the panel's 40 A phases is still within limits; the plan has no energy results.
    assert {v.kind for v in vs} == {"connector_bounds", "energy_report"}


def test_vehicle_max_current() -> None:
    p = problem(sessions=make_sessions(vehicle_max_current_a=10.0))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end, v.value, v.limit) for v in vs] == [
        ("vehicle_bounds", "s1", at(0), at(60), 16.0, 10.0)
    ]


def test_vehicle_max_power() -> None:
    # 9 kW / 0.69 kW/A = 13.04 A < 16 A.
    p = problem(sessions=make_sessions(vehicle_max_power_kw=9.0))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end) for v in vs] == [
        ("vehicle_bounds", "s1", at(0), at(60))
    ]
    assert vs[0].limit == pytest.approx(9.0 / 0.69)


def test_vehicle_min_current() -> None:
    p = problem(sessions=make_sessions(vehicle_min_current_a=12.0))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject, v.start, v.end, v.value, v.limit) for v in vs] == [
        ("vehicle_bounds", "s1", at(60), at(90), 10.0, 12.0)
    ]


def test_min_current() -> None:
    p = problem()
    profiles = [prof("c1", ["s1"], [(0, 4.0), (30, 6.0), (90, 0.0)])]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject, v.start, v.end, v.value, v.limit) for v in vs] == [
        ("min_current", "c1", at(0), at(30), 4.0, 6.0)
    ]


def test_discrete_set() -> None:
    p = problem(sessions=(*make_sessions(), Session("s3", "c3", at(0), at(120), 50.0)))
    profiles = [prof("c3", ["s3"], [(0, 16.0), (30, 12.0), (60, 24.0)])]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject, v.start, v.end, v.value) for v in vs] == [
        ("discrete_set", "c3", at(30), at(60), 12.0)
    ]
    assert vs[0].limit in (8.0, 16.0)


def test_grid_step() -> None:
    # Grid 6 + k * 0.1 A: 16.2 is on it (float noise tolerated), 16.23 is not (nearest 16.2).
    p = problem()
    profiles = [prof("c1", ["s1"], [(0, 6.0 + 102 * 0.1), (30, 16.23), (60, 0.0)])]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject, v.start, v.end, v.value) for v in vs] == [
        ("grid_step", "c1", at(30), at(60), 16.23)
    ]
    assert vs[0].limit == pytest.approx(16.2)


def test_outside_stay_before_arrival() -> None:
    p = problem()
    profiles = [good_profiles()[0], prof("c2", ["s2"], [(0, 8.0), (30, 16.0)])]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject, v.start, v.end, v.value, v.limit) for v in vs] == [
        ("outside_stay", "c2", at(0), at(30), 8.0, 0.0)
    ]


# --- energy --------------------------------------------------------------------------------------


def test_energy_above_request() -> None:
    # s2 wants 5 - 0 kWh; 16 A from 00:30 to 02:00 gives 5.52 kWh, crossing 5 kWh after 01:30.
    p = problem(sessions=(make_sessions()[0], Session("s2", "c2", at(30), at(180), 5.0)))
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject) for v in vs] == [("energy_above_request", "s2")]
    assert vs[0].value == pytest.approx(5.52) and vs[0].limit == pytest.approx(5.0)
    assert (vs[0].start, vs[0].end) == (at(90), at(120))


def test_energy_above_request_counts_already_delivered() -> None:
    p = problem(sessions=make_sessions(energy_delivered_kwh=20.0))  # s1 still wants 10 kWh < 14.49
    vs = check(p, make_plan(p, good_profiles()))
    assert [(v.kind, v.subject) for v in vs] == [("energy_above_request", "s1")]
    assert vs[0].value == pytest.approx(14.49) and vs[0].limit == pytest.approx(10.0)


def test_energy_report_mismatches() -> None:
    p = problem()
    good = results(p, good_profiles())
    wrong = (
        replace(good[0], expected_kwh=good[0].expected_kwh + 0.01),
        replace(good[1], unmet_kwh=good[1].unmet_kwh + 1.0),
    )
    vs = check(p, make_plan(p, good_profiles(), wrong))
    rep = only(vs, "energy_report")
    assert len(vs) == len(rep) == 3  # s1 expected and (derived) unmet, s2 unmet
    s1 = [v for v in rep if v.subject == "s1"]
    exp = [v for v in s1 if "expected_kwh" in v.message]
    assert len(exp) == 1 and exp[0].value == pytest.approx(14.50)
    assert exp[0].limit == pytest.approx(14.49)
    s2 = [v for v in rep if v.subject == "s2"]
    assert (
        len(s2) == 1 and s2[0].value == pytest.approx(5.48) and s2[0].limit == pytest.approx(4.48)
    )


def test_energy_report_tolerates_float_noise_but_not_more() -> None:
    p = problem()
    good = results(p, good_profiles())
    noisy = (replace(good[0], expected_kwh=good[0].expected_kwh + 1e-9), good[1])
    assert check(p, make_plan(p, good_profiles(), noisy)) == []


def test_energy_report_missing_and_unknown_results() -> None:
    p = problem()
    good = results(p, good_profiles())
    vs = check(p, make_plan(p, good_profiles(), (good[0], SessionResult("ghost", "c9", 1, 1, 0))))
    assert sorted((v.kind, v.subject) for v in vs) == [
        ("energy_report", "ghost"),
        ("energy_report", "s2"),
    ]
    s2 = only(vs, "energy_report", "s2")[0]
    assert s2.limit == pytest.approx(5.52)


def test_energy_report_requested_kwh() -> None:
    p = problem()
    good = results(p, good_profiles())
    bad = (replace(good[0], requested_kwh=31.0, unmet_kwh=31.0 - good[0].expected_kwh), good[1])
    vs = check(p, make_plan(p, good_profiles(), bad))
    assert [(v.kind, v.subject, v.value, v.limit) for v in vs] == [
        ("energy_report", "s1", 31.0, 30.0)
    ]


# --- malformed profiles --------------------------------------------------------------------------


def test_malformed_points_not_increasing() -> None:
    p = problem()
    profiles = [prof("c1", ["s1"], [(0, 16.0), (60, 10.0), (60, 12.0), (30, 8.0)])]
    vs = check(p, make_plan(p, profiles))
    mal = only(vs, "malformed_profile", "c1")
    assert [v.start for v in mal] == [at(60), at(30)]


def test_malformed_first_point_before_plan_start() -> None:
    p = problem()
    profiles = [prof("c1", ["s1"], [(-15, 16.0), (60, 10.0), (90, 0.0)]), good_profiles()[1]]
    vs = check(p, make_plan(p, profiles))
    assert [(v.kind, v.subject, v.start) for v in vs] == [("malformed_profile", "c1", at(-15))]
    assert vs[0].value == -900.0


def test_malformed_duplicate_and_unknown_references() -> None:
    p = problem()
    profiles = [
        *good_profiles(),
        prof("c1", ["s1"], [(0, 16.0), (60, 10.0), (90, 0.0)]),
        prof("nope", [], [(0, 10.0)]),
        prof("c3", ["ghost", "s1"], [(0, 0.0)]),
    ]
    vs = check(p, make_plan(p, profiles))
    assert sorted((v.kind, v.subject) for v in vs) == [
        ("malformed_profile", "c1"),
        ("malformed_profile", "c3"),
        ("malformed_profile", "c3"),
        ("malformed_profile", "nope"),
    ]


def test_duplicate_profiles_are_read_at_their_maximum() -> None:
    p = problem()
    profiles = [*good_profiles(), prof("c1", ["s1"], [(0, 40.0), (90, 0.0)])]
    vs = check(p, make_plan(p, profiles))
    assert only(vs, "malformed_profile", "c1")
    assert only(vs, "connector_bounds", "c1")[0].value == 40.0


def test_plan_horizon_mismatch() -> None:
    p = problem()
    plan = replace(make_plan(p, good_profiles()), end=at(100))
    vs = check(p, plan)
    assert [(v.kind, v.subject) for v in vs if v.kind == "malformed_profile"] == [
        ("malformed_profile", "plan")
    ]


# --- exact partial-draw maximum ------------------------------------------------------------------


def brute_box(coef: Sequence[complex], upper: Sequence[float]) -> float:
    best = 0.0
    for mask in itertools.product((0, 1), repeat=len(coef)):
        best = max(best, abs(sum(c * u * m for c, u, m in zip(coef, upper, mask, strict=True))))
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 2.0),
            st.sampled_from([-150.0, -90.0, -30.0, 0.0, 30.0, 90.0, 120.0, 150.0, 180.0, 47.0]),
            st.floats(0.0, 32.0),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_box_max_matches_vertex_enumeration(items: list[tuple[float, float, float]]) -> None:
    coef = np.asarray([cmath.rect(m, math.radians(a)) for m, a, _ in items])
    upper = np.asarray([[u] for _, _, u in items])
    truth = brute_box(coef.tolist(), [u for *_, u in items])
    for arcs in (True, False):
        got = float(box_max_magnitude(coef, upper, arcs=arcs)[0])
        assert got == pytest.approx(truth, rel=1e-9, abs=1e-9)


# --- property: scaling a plan against a tight limit ----------------------------------------------

WIRINGS = [
    ("wye3", Wiring.WYE, 3),
    ("wye1", Wiring.WYE, 1),
    ("delta", Wiring.DELTA, 1),
]


@st.composite
def random_case(draw: st.DrawFn) -> tuple[Problem, list[ConnectorProfile], tuple[float, ...]]:
    n = draw(st.integers(1, 4))
    conns, sess, profiles = [], [], []
    for k in range(n):
        _, wiring, phases = draw(st.sampled_from(WIRINGS))
        rot = draw(st.sampled_from(["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2"]))
        cid = f"c{k}"
        conns.append(
            Connector(cid, "n", 64.0, 0.0, 0.0, phases=phases, phase_rotation=rot, wiring=wiring)
        )
        a = draw(st.integers(0, 6)) * 10
        d = a + draw(st.integers(1, 12)) * 10
        sess.append(Session(f"s{k}", cid, at(a), at(d), 1000.0))
        times = sorted(draw(st.sets(st.integers(0, 11), min_size=1, max_size=4)))
        profiles.append(prof(cid, [f"s{k}"], [(t * 10, draw(st.floats(0.0, 32.0))) for t in times]))
    coeffs = draw(
        st.sampled_from(
            [
                (1.0, 0.0, 0.0),
                (0.0, 1.0, 0.0),
                (0.25, 0.0, -0.25),
                (1.0, -1.0, 0.5),
                (1.0, 1.0, 1.0),  # neutral: balanced wye cars cancel, unbalanced do not
            ]
        )
    )
    node = Node("n", phasor_limits=(PhasorLimit("row", coeffs, 1.0),))
    pr = Problem(
        Site("r", (node,), tuple(conns)), tuple(sess), T0, options=Options(horizon_hours=2)
    )
    return pr, profiles, coeffs


def brute_limit(pr: Problem, profiles: list[ConnectorProfile], coeffs: tuple[float, ...]) -> float:
    """Worst |row| over every minute and every partial draw (per phase of a wye car), by loops."""
    conns = {c.id: c for c in pr.site.connectors}
    by_conn = {p.connector: p for p in profiles}
    worst = 0.0
    for m in range(120):
        t = at(m)
        cs, us = [], []
        for s in pr.sessions:
            if s.arrival <= t < s.departure:
                pc = phase_coefficients(conns[s.connector], s)
                u = current_at(by_conn[s.connector], t)
                if conns[s.connector].wiring is Wiring.DELTA:  # one current on two lines
                    cs.append(sum(coeffs[q] * pc[q] for q in range(3)))
                    us.append(u)
                else:  # each phase of a wye car may draw on its own
                    cs.extend(coeffs[q] * pc[q] for q in range(3))
                    us.extend([u] * 3)
        worst = max(worst, brute_box(cs, us))
    return worst


def scaled(profiles: list[ConnectorProfile], f: float) -> list[ConnectorProfile]:
    return [
        replace(p, points=tuple(replace(q, current_a=q.current_a * f) for q in p.points))
        for p in profiles
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_case(), st.floats(1.001, 4.0))
def test_scaled_plans_against_tight_limit(
    case: tuple[Problem, list[ConnectorProfile], tuple[float, ...]], f: float
) -> None:
    pr, profiles, coeffs = case
    lim = brute_limit(pr, profiles, coeffs)
    assume(lim > 0.5)
    node = pr.site.nodes[0]
    tight = replace(node, phasor_limits=(replace(node.phasor_limits[0], limit_a=lim),))
    pr = replace(pr, site=replace(pr.site, nodes=(tight,)))

    assert not only(check(pr, make_plan(pr, profiles)), "node_limit")
    over = only(check(pr, make_plan(pr, scaled(profiles, f))), "node_limit", "n")
    assert over and all(v.value > lim * (1 + 1e-6) and v.limit == lim for v in over)
    assert check(pr, make_plan(pr, scaled(profiles, 0.0))) == []


# --- size ----------------------------------------------------------------------------------------


def big_case(n: int = 1000, slots: int = 96) -> tuple[Problem, Plan]:
    """n connectors under 20 panels, 15-minute profiles over 24 h, arrivals off the slot grid."""
    rng = np.random.default_rng(7)
    panels = [Node(f"p{k}", parent="site", phase_limit_a=(2000.0,) * 3) for k in range(20)]
    nodes = (Node("site", phase_limit_a=(40000.0,) * 3, power_limit_kw=40000.0), *panels)
    conns, sess, profiles = [], [], []
    for i in range(n):
        delta = i % 2 == 0
        c = Connector(
            f"c{i}",
            f"p{i % 20}",
            32.0,
            phase_rotation=["L1L2L3", "L2L3L1", "L3L1L2"][i % 3],
            wiring=Wiring.DELTA if delta else Wiring.WYE,
            voltage_v=208.0 if delta else 230.0,
        )
        conns.append(c)
        a = int(rng.integers(-60, 600))
        d = a + int(rng.integers(60, 900))
        sess.append(Session(f"s{i}", c.id, at(a + 7), at(d + 3), 1e6))
        pts = [(float(t * 15), float(6 + rng.integers(0, 27))) for t in range(slots)]
        profiles.append(prof(c.id, [f"s{i}"], pts))
    pr = Problem(Site("big", nodes, tuple(conns)), tuple(sess), T0, options=Options())
    return pr, Plan(pr.now, pr.horizon_end, tuple(profiles), ())


def test_big_case_runs_and_reports_outside_stay() -> None:
    pr, plan = big_case(200)
    vs = check(pr, plan)
    assert {v.kind for v in vs} <= {"outside_stay", "energy_report"}
    assert len(only(vs, "outside_stay")) >= 200


# --- the screens decide nothing: screened = every rule per segment -------------------------------
#
# The checker screens rows, sessions, results and nodes on pieces (constant stretches of a
# current) and runs the per-segment rules only where a screen flags. Forcing every screen to flag
# everything must not change a single violation.


@pytest.fixture
def per_segment(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``check`` with every screen flagging everything: only the per-segment rules decide."""
    init = checker._Delivered.__init__

    def exact_init(self: Any, loads: Any, seg: Any) -> None:
        init(self, loads, seg)
        self.exact(range(len(loads.sessions)))

    def never(a: np.ndarray, *_: Any) -> np.ndarray:
        return np.zeros(np.shape(a), dtype=np.bool_)

    def run(p: Problem, plan: Plan) -> list[tuple[object, ...]]:
        with monkeypatch.context() as m:
            m.setattr(checker, "_connector_screen", lambda y, cs: list(range(len(cs))))
            m.setattr(checker, "_outside_screen", lambda y, loads: list(range(y.n_rows)))
            m.setattr(checker, "_vehicle_screen", lambda loads: list(range(len(loads.sessions))))
            m.setattr(checker, "_node_screen", lambda t, *_: np.ones(len(t.nodes), np.bool_))
            m.setattr(checker, "_surely_close", never)
            m.setattr(checker._Delivered, "__init__", exact_init)
            return same(check(p, plan))

    return run


def same(vs: list[Violation]) -> list[tuple[object, ...]]:
    """Violations as comparable tuples (NaN values compare equal)."""
    return [tuple("nan" if f != f else f for f in astuple(v)) for v in vs]


CURRENTS = st.one_of(
    st.sampled_from([0.0, 0.0, 6.0, 8.0, 16.0, 16.2, 32.0, 32.00001, 40.0, -1.0, 1e-7, math.nan]),
    st.floats(-2.0, 45.0),
)


@st.composite
def random_plans(draw: st.DrawFn, p: Problem) -> Plan:
    """Profiles on and off the slot grid, unsorted, duplicated, past the horizon; results."""
    horizon = int(p.options.horizon_hours * 60)
    slot = p.options.slot_minutes
    profiles = []
    for c in p.site.connectors:
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2]))):
            times = draw(
                st.lists(
                    st.one_of(
                        st.integers(0, horizon // slot).map(lambda k: k * slot),
                        st.integers(-30, horizon + 30),
                    ),
                    max_size=8,
                )
            )
            if draw(st.booleans()):
                times.sort()
            sids = tuple(s.id for s in p.sessions if s.connector == c.id)
            points = tuple(
                ChangePoint(p.now + timedelta(minutes=m), draw(CURRENTS)) for m in times
            )
            profiles.append(ConnectorProfile(c.id, sids, points))
    end = p.horizon_end - timedelta(minutes=draw(st.sampled_from([0, 0, 0, 47])))
    results = tuple(
        SessionResult(s.id, s.connector, s.energy_requested_kwh, draw(st.floats(0, 30)), 0.0)
        for s in p.sessions
        if draw(st.booleans())
    )
    return Plan(p.now, end, tuple(profiles), results)


@st.composite
def vehicle_limits(draw: st.DrawFn, p: Problem) -> Problem:
    """Some cars with a minimum current and a power limit too."""
    sessions = tuple(
        replace(
            s,
            vehicle_min_current_a=draw(st.sampled_from([None, 6.0, 10.0, 16.2])),
            vehicle_max_power_kw=draw(st.sampled_from([None, 3.7, 7.4, 11.0])),
        )
        for s in p.sessions
    )
    return replace(p, sessions=sessions)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_screens_match_per_segment_rules_on_random_plans(per_segment: Any, data: Any) -> None:
    p = data.draw(problems(max_connectors=6).flatmap(vehicle_limits))
    plan = data.draw(random_plans(p))
    assert same(check(p, plan)) == per_segment(p, plan)


def _peaks(vs: list[tuple[Any, ...]], node: str) -> dict[str, float]:
    """Largest value per limit row of ``node`` among its violations (its rows' peaks at limit 0)."""
    out: dict[str, float] = {}
    for kind, subject, _, _, value, _, message in vs:
        if kind == "node_limit" and subject == node:
            label = message.split(": ")[0].split(" ", 2)[2]
            out[label] = max(out.get(label, 0.0), value)
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_screens_match_per_segment_rules_at_the_limit(per_segment: Any, data: Any) -> None:
    # A limit placed so that its peak sits a hair either side of limit + tolerance: the node
    # screen must leave the decision to the per-segment rule.
    p = data.draw(problems(max_connectors=6))
    plan = data.draw(random_plans(p))
    k = data.draw(st.integers(0, len(p.site.nodes) - 1))
    node = p.site.nodes[k]
    zero = replace(
        node,
        phase_limit_a=(0.0, 0.0, 0.0),
        power_limit_kw=0.0,
        phasor_limits=tuple(replace(q, limit_a=0.0) for q in node.phasor_limits),
    )

    def with_node(n: Node) -> Problem:
        nodes = (*p.site.nodes[:k], n, *p.site.nodes[k + 1 :])
        return replace(p, site=replace(p.site, nodes=nodes), signals=Signals())

    peaks = _peaks(per_segment(with_node(zero), plan), node.id)
    assume(peaks)
    label, peak = data.draw(st.sampled_from(sorted(peaks.items())))
    assume(peak >= 1.0 and math.isfinite(peak))
    lim = peak / (1 + 1e-6) * (1 + data.draw(st.sampled_from([-1e-12, -1e-15, 0.0, 1e-15, 1e-12])))
    if label in ("L1", "L2", "L3"):
        phases = [math.inf, math.inf, math.inf]
        phases[int(label[1]) - 1] = lim
        tight = replace(node, phase_limit_a=tuple(phases), power_limit_kw=None, phasor_limits=())
    elif label == "kW":
        tight = replace(node, phase_limit_a=None, power_limit_kw=lim, phasor_limits=())
    else:
        rows = tuple(replace(q, limit_a=lim) for q in node.phasor_limits if q.name == label)
        tight = replace(node, phase_limit_a=None, power_limit_kw=None, phasor_limits=rows)
    tp = with_node(tight)
    assert same(check(tp, plan)) == per_segment(tp, plan)


def test_screens_match_per_segment_rules_on_big_case(per_segment: Any) -> None:
    pr, plan = big_case(120)
    assert same(check(pr, plan)) == per_segment(pr, plan)
    # every node's L1 limit right at its peak (limit + tolerance = peak): decided per segment
    low = tuple(replace(n, phase_limit_a=(1e-3,) * 3) for n in pr.site.nodes)
    vs = per_segment(replace(pr, site=replace(pr.site, nodes=low)), plan)
    nodes = tuple(
        replace(n, phase_limit_a=(_peaks(vs, n.id)["L1"] / (1 + 1e-6),) * 3) for n in pr.site.nodes
    )
    tight = replace(pr, site=replace(pr.site, nodes=nodes))
    assert same(check(tight, plan)) == per_segment(tight, plan)


# --- how a charger reads profiles, as pieces ----------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_pieces_read_profiles_like_a_charger(data: Any) -> None:
    p = data.draw(problems(max_connectors=4))
    plan = data.draw(random_plans(p))
    clock = checker._Clock()
    pts = checker._points(plan, clock)
    stays = np.asarray(
        [(clock[s.arrival], clock[s.departure]) for s in p.sessions], dtype=np.int64
    ).reshape(-1, 2)
    seg = checker._segments(p, plan, pts, stays, clock)
    by_conn: dict[str, list[int]] = {}
    for k, q in enumerate(plan.profiles):
        by_conn.setdefault(q.connector, []).append(k)
    groups = [by_conn[c] for c in sorted(by_conn)]
    y = checker._profile_steps(groups, plan, pts, seg).dense(np.arange(len(groups)))
    for r, g in enumerate(groups):
        # brute force: per segment, the last point (in time, ties: later in the list) at or
        # before its start; 0 before the first point and from the plan end on
        want = np.zeros(seg.n)
        for s in range(seg.n):
            t = int(seg.start[s])
            vals = []
            for k in g:
                q = plan.profiles[k]
                cur, best = 0.0, None
                for pt in q.points:
                    u = checker._us(pt.start)
                    if u <= t and (best is None or u >= best):
                        best, cur = u, pt.current_a
                vals.append(cur if t < checker._us(plan.end) else 0.0)
            want[s] = np.max(vals)
        np.testing.assert_array_equal(y[r], want)


def test_electrical_facts_depend_only_on_the_classed_fields() -> None:
    # The checker calls phase_coefficients / kw_per_amp once per (wiring, phases, rotation,
    # angle, voltage, vehicle phases): other fields must not matter.
    base = Connector("a", "n", 32.0, phases=3, phase_rotation="L2L3L1", wiring=Wiring.WYE)
    other = replace(base, id="b", node="m", max_current_a=16.0, min_current_a=8.0,
                    current_step_a=1.0, allowed_currents_a=(8.0, 16.0))
    for wiring, phases, vp in itertools.product(Wiring, (1, 3), (None, 1, 3)):
        c1 = replace(base, wiring=wiring, phases=phases)
        c2 = replace(other, wiring=wiring, phases=phases)
        s1 = Session("s", "a", at(0), at(60), 10.0, vehicle_phases=vp)
        s2 = Session(
            "t", "b", at(5), at(90), 30.0, energy_delivered_kwh=3.0, vehicle_max_current_a=16.0,
            vehicle_min_current_a=6.0, vehicle_max_power_kw=7.0, vehicle_phases=vp,
            priority=2.0, measured_current_a=4.0,
        )
        assert phase_coefficients(c1, s1) == phase_coefficients(c2, s2)
        assert kw_per_amp(c1, s1) == kw_per_amp(c2, s2)
