"""Rendering plans into SetChargingProfile payloads: known answers, validity, safety."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.core.model import Connector, Session, Wiring
from optimizer.core.plan import ChangePoint, ConnectorProfile, Plan
from optimizer.ocpp import (
    VERSIONS,
    ChargerCapabilities,
    ProfileKind,
    applied_limit,
    payload_errors,
    render_plan,
    render_station_max,
)

from .common import NOW, plan_of, problem_of, unsafe_instants
from .helpers import limit_at, parts, period_starts, rule_errors, schema_errors

H = 3600
WYE3 = Connector("c1", "n", 32.0, phases=3)


def car(
    sid: str = "s1",
    conn: str = "c1",
    phases: int | None = 3,
    hours: float = 4.0,
    arrive_h: float = -1.0,
) -> Session:
    return Session(
        sid,
        conn,
        NOW + timedelta(hours=arrive_h),
        NOW + timedelta(hours=hours),
        30.0,
        vehicle_phases=phases,
    )


def valid(rendered, max_periods: int = 1024) -> None:
    for r in rendered:
        assert schema_errors(r.payload, r.ocpp_version) == []
        assert rule_errors(r.payload, r.ocpp_version, max_periods) == []


def periods(r) -> list[dict]:
    return parts(r.payload, r.ocpp_version)[2][0]["chargingSchedulePeriod"]


# --- known answers ------------------------------------------------------------------------------


def test_16_25_amps_becomes_16_2_in_16() -> None:
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": [(0, 16.25)]})
    out = render_plan(pr, plan, {"c1": ChargerCapabilities("1.6")}, {"s1": "42"})
    assert [p["limit"] for p in periods(out[0])] == [16.2]
    assert out[0].payload["csChargingProfiles"]["transactionId"] == 42
    valid(out)


@pytest.mark.parametrize("version", VERSIONS)
def test_watts_for_three_phase_car(version: str) -> None:
    pr = problem_of([WYE3], [car(phases=3)])
    plan = plan_of({"c1": [(0, 16.0)]})
    out = render_plan(pr, plan, {"c1": ChargerCapabilities(version, "W")}, {"s1": "7"})
    assert [(p["limit"], p["numberPhases"]) for p in periods(out[0])] == [(11040.0, 3)]
    assert out[0].warnings == ()
    valid(out)


def test_watts_for_unknown_phases_assume_one_phase_and_warn() -> None:
    pr = problem_of([WYE3], [car(phases=None)])
    out = render_plan(
        pr, plan_of({"c1": [(0, 16.0)]}), {"c1": ChargerCapabilities("2.0.1", "W")}, {"s1": "7"}
    )
    assert periods(out[0])[0]["limit"] == 3680.0
    assert any("phases unknown" in w for w in out[0].warnings)
    valid(out)


def test_delta_connector_watts_line_to_line() -> None:
    conn = Connector("c1", "n", 32.0, phases=1, wiring=Wiring.DELTA, voltage_v=208.0)
    pr = problem_of([conn], [car(phases=None)])
    out = render_plan(
        pr, plan_of({"c1": [(0, 16.0)]}), {"c1": ChargerCapabilities("2.1", "W")}, {"s1": "7"}
    )
    assert [(p["limit"], p["numberPhases"]) for p in periods(out[0])] == [(3328.0, 1)]
    assert out[0].warnings == ()


def test_merging_alternating_periods_never_exceeds_plan() -> None:
    pts = [(k * 900, a) for k, a in enumerate([32, 8, 32, 8, 32])]
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": pts}, hours=1.25)
    for version in VERSIONS:
        caps = {"c1": ChargerCapabilities(version, max_periods=3)}
        out = render_plan(pr, plan, caps, {"s1": "9"})
        valid(out, 3)
        assert len(periods(out[0])) == 3
        assert unsafe_instants(pr, plan, out) == []
        # Least energy lost: lower the middle 32 (one slot), not two of them.
        assert [(p["startPeriod"], p["limit"]) for p in periods(out[0])] == [
            (0, 32.0),
            (900, 8.0),
            (3600, 32.0),
        ]


def test_fractional_second_edges_take_the_lower_value() -> None:
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": [(0, 20.0), (10.5, 10.0), (20.5, 16.0)]}, hours=1)
    out = render_plan(pr, plan, {"c1": ChargerCapabilities("2.0.1")}, {"s1": "x"})
    # decrease at 10.5 s starts at 10 s; increase at 20.5 s waits until 21 s
    assert [(p["startPeriod"], p["limit"]) for p in periods(out[0])] == [
        (0, 20.0),
        (10, 10.0),
        (21, 16.0),
    ]
    assert unsafe_instants(pr, plan, out) == []


def test_start_with_microseconds_floors_schedule_start() -> None:
    start = NOW + timedelta(microseconds=250_000)
    pr = problem_of([WYE3], [car()], now=start)
    plan = plan_of({"c1": [(0, 12.0), (60, 6.0)]}, start=start, hours=0.5)
    out = render_plan(pr, plan, {"c1": ChargerCapabilities("2.1")}, {"s1": "x"})
    sch = parts(out[0].payload, "2.1")[2][0]
    assert sch["startSchedule"] == "2026-03-02T08:07:00Z"
    assert [(p["startPeriod"], p["limit"]) for p in sch["chargingSchedulePeriod"]] == [
        (0, 12.0),
        (60, 6.0),
    ]  # 60.25 s lies in second 60, which takes the lower value
    assert sch["duration"] == 1801
    assert unsafe_instants(pr, plan, out) == []


def test_resolution_and_min_limit_only_lower() -> None:
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": [(0, 16.9), (600, 5.0), (1200, 0.0)]})
    caps = ChargerCapabilities("1.6", limit_resolution=1.0, min_limit=6.0, zero_limit_ok=False)
    out = render_plan(pr, plan, {"c1": caps}, {"s1": "1"})
    assert [p["limit"] for p in periods(out[0])] == [16.0, 0.0]  # 5 A < 6 A -> 0, not 6
    assert any("limit of 0" in w for w in out[0].warnings)
    valid(out)


def test_phase_to_use_only_for_one_phase_on_switching_charger() -> None:
    pr = problem_of([WYE3], [car(phases=1)])
    plan = plan_of({"c1": [(0, 16.0)]})
    sw = {"c1": ChargerCapabilities("2.0.1", supports_phase_switching=True)}
    assert periods(render_plan(pr, plan, sw, {"s1": "1"})[0]) == [
        {"startPeriod": 0, "limit": 16.0, "numberPhases": 1, "phaseToUse": 1}
    ]
    no_sw = {"c1": ChargerCapabilities("2.0.1")}
    assert "phaseToUse" not in periods(render_plan(pr, plan, no_sw, {"s1": "1"})[0])[0]
    v16 = {"c1": ChargerCapabilities("1.6", supports_phase_switching=True)}
    assert "phaseToUse" not in periods(render_plan(pr, plan, v16, {"s1": "1"})[0])[0]
    pr3 = problem_of([WYE3], [car(phases=3)])
    p3 = periods(render_plan(pr3, plan, sw, {"s1": "1"})[0])[0]
    assert p3["numberPhases"] == 3 and "phaseToUse" not in p3


@pytest.mark.parametrize("version", VERSIONS)
def test_tx_default_has_no_transaction_and_tx_ends_at_departure(version: str) -> None:
    pr = problem_of([WYE3], [car(hours=2.0)])
    plan = plan_of({"c1": [(0, 16.0), (2 * H, 0.0)]})
    caps = {"c1": ChargerCapabilities(version)}
    tx = render_plan(pr, plan, caps, {"s1": "5"})
    txd = render_plan(pr, plan, caps, purpose="TxDefaultProfile")
    valid(tx + txd)
    ptx, pd = parts(tx[0].payload, version)[1], parts(txd[0].payload, version)[1]
    assert ptx["chargingProfilePurpose"] == "TxProfile" and "transactionId" in ptx
    assert pd["chargingProfilePurpose"] == "TxDefaultProfile" and "transactionId" not in pd
    assert parts(tx[0].payload, version)[2][0]["duration"] == 2 * H
    assert ptx["validTo"] == "2026-03-02T10:07:00Z"
    assert pd["validTo"] == "2026-03-02T12:07:00Z"
    assert "validFrom" not in ptx
    assert pd["stackLevel"] > 0  # above the fail-safe
    assert unsafe_instants(pr, plan, tx + txd) == []


def test_sessions_without_transaction_get_no_tx_profile() -> None:
    pr = problem_of([WYE3], [car("s1"), car("s2", arrive_h=2.0, hours=3.0)])
    plan = plan_of({"c1": [(0, 16.0)]})
    out = render_plan(pr, plan, {"c1": ChargerCapabilities()}, {"s1": "a"})
    assert [r.session for r in out] == ["s1"]


def test_v21_offline_fields_on_plan_profiles() -> None:
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": [(0, 16.0)]})
    caps = {"c1": ChargerCapabilities("2.1", max_offline_duration_s=120)}
    prof = parts(render_plan(pr, plan, caps, {"s1": "a"})[0].payload, "2.1")[1]
    assert prof["maxOfflineDuration"] == 120 and prof["invalidAfterOfflineDuration"] is True
    prof201 = parts(
        render_plan(pr, plan, {"c1": ChargerCapabilities("2.0.1")}, {"s1": "a"})[0].payload, "2.0.1"
    )[1]
    assert "maxOfflineDuration" not in prof201
    station = render_station_max(pr, plan, caps)[0]
    assert parts(station.payload, "2.1")[1]["maxOfflineDuration"] == 120


def test_one_transaction_per_connector() -> None:
    pr = problem_of([WYE3], [car("s1"), car("s2", arrive_h=2.0, hours=3.0)])
    with pytest.raises(ValueError, match="active"):
        render_plan(
            pr, plan_of({"c1": [(0, 16.0)]}), {"c1": ChargerCapabilities()}, {"s1": "a", "s2": "b"}
        )


def test_invalid_transaction_ids_rejected() -> None:
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": [(0, 16.0)]})
    with pytest.raises(ValueError, match="integer"):
        render_plan(pr, plan, {"c1": ChargerCapabilities("1.6")}, {"s1": "abc"})
    with pytest.raises(ValueError, match="36"):
        render_plan(pr, plan, {"c1": ChargerCapabilities("2.0.1")}, {"s1": "x" * 37})


def test_capabilities_reject_bad_values() -> None:
    with pytest.raises(ValueError):
        ChargerCapabilities(limit_resolution=0.05)
    with pytest.raises(ValueError):
        ChargerCapabilities(ocpp_version="2.0")
    with pytest.raises(ValueError):
        ChargerCapabilities(stack_level_tx_default=0, stack_level_failsafe=0)


@pytest.mark.parametrize("version", VERSIONS)
def test_station_max_is_sum_of_connectors(version: str) -> None:
    c1 = Connector("c1", "n", 32.0, phases=3, phase_rotation="L1L2L3")
    c2 = Connector("c2", "n", 32.0, phases=3, phase_rotation="L2L3L1")
    pr = problem_of([c1, c2], [car("s1", "c1", phases=1), car("s2", "c2", phases=1)])
    plan = plan_of({"c1": [(0, 16.0), (H, 10.0)], "c2": [(0, 10.0), (1800, 20.0)]})
    caps = {
        "c1": ChargerCapabilities(version, evse_id=1, connector_id=1),
        "c2": ChargerCapabilities(version, evse_id=2, connector_id=2),
    }
    out = render_station_max(pr, plan, caps)
    valid(out)
    (st_,) = out
    target, prof, _ = parts(st_.payload, version)
    assert target == 0
    assert prof["chargingProfilePurpose"] == (
        "ChargePointMaxProfile" if version == "1.6" else "ChargingStationMaxProfile"
    )
    # 1-phase cars on L1 (c1) and L2 (c2): the highest phase total.
    assert [(p["startPeriod"], p["limit"]) for p in periods(st_)] == [(0, 16.0), (1800, 20.0)]
    capped = render_station_max(pr, plan, caps, limits={"n": 18.0})
    assert [p["limit"] for p in periods(capped[0])] == [16.0, 18.0]
    ids = {
        parts(r.payload, version)[1]["id" if version != "1.6" else "chargingProfileId"]
        for r in render_plan(pr, plan, caps, {"s1": "1", "s2": "2"}, station_max=True)
    }
    assert len(ids) == 3  # distinct, stable profile ids per connector and the station


def test_payload_errors_catch_what_schemas_miss() -> None:
    pr = problem_of([WYE3], [car()])
    out = render_plan(
        pr,
        plan_of({"c1": [(0, 16.0), (60, 8.0)]}),
        {"c1": ChargerCapabilities("2.0.1", supports_phase_switching=True)},
        {"s1": "1"},
    )
    good = out[0].payload
    assert payload_errors(good, "2.0.1") == []

    def broken(mutate) -> list[str]:
        import copy

        p = copy.deepcopy(good)
        mutate(p["chargingProfile"], p["chargingProfile"]["chargingSchedule"][0])
        return payload_errors(p, "2.0.1", max_periods=2)

    assert broken(lambda pr_, s: s["chargingSchedulePeriod"][0].update(startPeriod=5))
    assert broken(lambda pr_, s: s["chargingSchedulePeriod"][1].update(startPeriod=0))
    assert broken(lambda pr_, s: s["chargingSchedulePeriod"][0].update(limit=16.25))
    assert broken(lambda pr_, s: s["chargingSchedulePeriod"][0].update(phaseToUse=1))
    assert broken(lambda pr_, s: s.pop("startSchedule"))
    assert broken(lambda pr_, s: pr_.update(chargingProfilePurpose="TxDefaultProfile"))
    assert broken(
        lambda pr_, s: s["chargingSchedulePeriod"].append({"startPeriod": 120, "limit": 6.0})
    )
    assert broken(lambda pr_, s: s.update(chargingRateUnit="kW"))  # schema


def test_applied_limit_matches_independent_reader() -> None:
    pr = problem_of([WYE3], [car()])
    plan = plan_of({"c1": [(0, 16.0), (60.5, 8.0), (3000, 0.0)]}, hours=1)
    for version in VERSIONS:
        (r,) = render_plan(pr, plan, {"c1": ChargerCapabilities(version)}, {"s1": "1"})
        for t in [
            NOW - timedelta(seconds=1),
            *period_starts(r.payload, version),
            NOW + timedelta(seconds=59.9),
            NOW + timedelta(hours=2),
        ]:
            assert applied_limit(r.payload, version, t) == limit_at(r.payload, version, t)


# --- property: random plans and chargers --------------------------------------------------------


@st.composite
def cases(draw: st.DrawFn):
    version = draw(st.sampled_from(VERSIONS))
    unit = draw(st.sampled_from(["A", "W"]))
    kind = draw(st.sampled_from(["wye3", "wye1", "delta"]))
    conn = {
        "wye3": Connector(
            "c1", "n", 32.0, phases=3, phase_rotation=draw(st.sampled_from(["L1L2L3", "L3L1L2"]))
        ),
        "wye1": Connector("c1", "n", 32.0, phases=1),
        "delta": Connector("c1", "n", 32.0, phases=1, wiring=Wiring.DELTA, voltage_v=208.0),
    }[kind]
    res = draw(st.sampled_from([0.1, 0.5, 1.0] if unit == "A" else [0.1, 1.0, 10.0, 100.0]))
    caps = ChargerCapabilities(
        version,
        unit,
        max_periods=draw(st.integers(1, 12)),
        limit_resolution=res,
        min_limit=draw(st.sampled_from([0.0, 6.0] if unit == "A" else [0.0, 1380.0])),
        zero_limit_ok=draw(st.booleans()),
        supports_phase_switching=draw(st.booleans()),
        evse_id=draw(st.integers(1, 4)),
        connector_id=draw(st.integers(1, 4)),
    )
    start = NOW + timedelta(microseconds=draw(st.integers(0, 999_999)))
    offsets = sorted(set(draw(st.lists(st.integers(1, 6 * H * 10**6), max_size=25))))
    amps = st.one_of(
        st.just(0.0),
        st.floats(0.0, 32.0, allow_nan=False),
        st.integers(0, 320).map(lambda k: k / 10),
    )
    pts = [ChangePoint(start, draw(amps))] + [
        ChangePoint(start + timedelta(microseconds=o), draw(amps)) for o in offsets
    ]
    end = start + timedelta(
        microseconds=(offsets[-1] if offsets else 0) + draw(st.integers(1, 2 * H * 10**6))
    )
    sessions = []
    t = start - timedelta(seconds=draw(st.integers(-H, H)))
    for k in range(draw(st.integers(1, 3))):  # successive cars, maybe with gaps
        dep = t + timedelta(microseconds=draw(st.integers(10**6, 4 * H * 10**6)))
        sessions.append(
            Session(
                f"s{k}", "c1", t, dep, 20.0, vehicle_phases=draw(st.sampled_from([None, 1, 2, 3]))
            )
        )
        t = dep + timedelta(microseconds=draw(st.integers(0, H * 10**6)))
    pr = problem_of([conn], sessions, now=start)
    plan = Plan(start, end, (ConnectorProfile("c1", (), tuple(pts)),), ())
    purpose = draw(st.sampled_from(["TxProfile", "TxDefaultProfile"]))
    return pr, plan, caps, purpose


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_plans_render_valid_and_never_above_plan(case) -> None:
    pr, plan, caps, purpose = case
    tx = {pr.sessions[-1].id: "17"}  # the active transaction (any of them, for the test)
    out = render_plan(pr, plan, {"c1": caps}, tx, purpose=purpose, station_max=True)
    assert {r.kind for r in out} == {ProfileKind(purpose), ProfileKind.STATION_MAX}
    valid(out, caps.max_periods)
    assert unsafe_instants(pr, plan, out) == []
    for r in out:
        for t in period_starts(r.payload, r.ocpp_version):
            assert applied_limit(r.payload, r.ocpp_version, t) == limit_at(
                r.payload, r.ocpp_version, t
            )


def test_payload_errors_survive_a_float_cached_16_validator() -> None:
    """ocpp caches validators by name, whatever parse_float they were built with."""
    from ocpp import messages

    pr = problem_of([WYE3], [car()])
    (r,) = render_plan(
        pr, plan_of({"c1": [(0, 16.2)]}), {"c1": ChargerCapabilities("1.6")}, {"s1": "1"}
    )
    saved = dict(messages._validators)
    try:
        messages._validators.clear()
        messages.get_validator(2, "SetChargingProfile", "1.6")  # float-parsed, cached
        assert payload_errors(r.payload, "1.6") == []
    finally:
        messages._validators.clear()
        messages._validators.update(saved)
