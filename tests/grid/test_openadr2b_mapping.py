"""The OpenADR 2.0b mapping on plain event dicts (as openleadr parses them), hostile ones first,
and the planned-import arithmetic of the telemetry report."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.core.grid_signal import MAX_INTERVALS, Measure, SignalInterval, validate_signal
from optimizer.core.model import Connector, Node, Site, Wiring
from optimizer.grid.openadr2b_mapping import (
    Unmappable,
    event_key,
    map_event,
    parse_simple_levels,
)
from optimizer.grid.openadr2b_telemetry import NodeLoad, planned_kw

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)
NODE = Node("grid", None, (40.0, 40.0, 40.0))  # 27.6 kW baseline


def iv(value: Any, minutes: int = 60, start: datetime | None = None, uid: int | None = None
       ) -> dict[str, Any]:
    out: dict[str, Any] = {"duration": minutes * M, "signal_payload": value}
    if start is not None:
        out["dtstart"] = start
    if uid is not None:
        out["uid"] = uid
    return out


def sig(name: str, typ: str, *intervals: dict[str, Any], measurement: Any = None
        ) -> dict[str, Any]:
    s: dict[str, Any] = {"signal_name": name, "signal_type": typ, "intervals": list(intervals)}
    if measurement is not None:
        s["measurement"] = measurement
    return s


def event(*signals: dict[str, Any], mod: int = 3, status: str = "far",
          startafter: timedelta | None = None) -> dict[str, Any]:
    period: dict[str, Any] = {"dtstart": T0, "duration": 2 * H}
    if startafter is not None:
        period["tolerance"] = {"tolerate": {"startafter": startafter}}
    return {"event_descriptor": {"event_id": "E1", "modification_number": mod,
                                 "event_status": status},
            "active_period": period, "event_signals": list(signals)}


def setpoint(*intervals: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return sig("LOAD_CONTROL", "x-loadControlSetpoint", *intervals, **kw)


def capacity(*intervals: dict[str, Any]) -> dict[str, Any]:
    return sig("LOAD_CONTROL", "x-loadControlCapacity", *intervals)


def simple(*intervals: dict[str, Any]) -> dict[str, Any]:
    return sig("SIMPLE", "level", *intervals)


def power(unit: str = "W", scale: str | None = "none", name: str = "powerReal"
          ) -> dict[str, Any]:
    return {"name": name, "description": "RealPower", "unit": unit, "scale": scale}


def values(e: dict[str, Any], **kw: Any) -> list[tuple[datetime, datetime, float]]:
    s = map_event(e, "grid", **kw)
    assert s is not None
    return [(i.start, i.end, i.value) for i in s.intervals]


# --- units and measures --------------------------------------------------------------------------


@pytest.mark.parametrize(("measurement", "payload", "kw"), [
    (None, 11.0, 11.0),                              # no itemBase: kW
    (power("W", "none"), 11000.0, 11.0),
    (power("W", "k"), 11.0, 11.0),
    (power("W", "M"), 0.011, 11.0),
    (power("kW", "none", "customUnit"), 11.0, 11.0),
    (power("W", None), 2500, 2.5),                   # an int payload, scale absent
])
def test_setpoint_units_and_scale(measurement: Any, payload: float, kw: float) -> None:
    s = map_event(event(setpoint(iv(payload), measurement=measurement)), "grid")
    assert s is not None and s.measure is Measure.LIMIT_KW
    assert s.intervals[0].value == pytest.approx(kw)
    assert (s.source, s.id, s.modification, s.node) == ("openadr2b", "E1", 3, "grid")


@pytest.mark.parametrize(("measurement", "why"), [
    (power("VA", "none", "powerApparent"), "only real power"),
    (power("A", "none", "current"), "only real power"),
    (power("W", "X"), "siScaleCode"),
    ("kW", "not understood"),
])
def test_setpoint_in_other_units_is_refused(measurement: Any, why: str) -> None:
    with pytest.raises(Unmappable, match=why):
        map_event(event(setpoint(iv(11.0), measurement=measurement)), "grid")


def test_capacity_is_a_share_and_simple_levels_map_through_the_table() -> None:
    s = map_event(event(capacity(iv(0.4))), "grid")
    assert s is not None and s.measure is Measure.SHARE and s.intervals[0].value == 0.4
    e = event(simple(iv(0, 10), iv(1, 10), iv(2, 10), iv(0, 10), iv(3, 10)))
    assert values(e) == [(T0 + 10 * M, T0 + 20 * M, 0.75), (T0 + 20 * M, T0 + 30 * M, 0.5),
                         (T0 + 40 * M, T0 + 50 * M, 0.25)]  # level 0 = no limit: dropped
    assert values(e, simple_levels={1: 0.9, 2: 0.6, 3: 0.0})[2][2] == 0.0
    assert map_event(event(simple(iv(0), iv(0))), "grid") is None  # nothing to limit
    with pytest.raises(Unmappable, match="level 3 has no mapping"):
        map_event(e, "grid", simple_levels={1: 0.5, 2: 0.4})


# --- time: cumulative starts, order, startafter --------------------------------------------------


def test_intervals_start_at_the_period_start_plus_the_durations_before() -> None:
    e = event(setpoint(iv(5.0, 10), iv(6.0, 20), iv(7.0, 30)))
    assert values(e) == [(T0, T0 + 10 * M, 5.0), (T0 + 10 * M, T0 + 30 * M, 6.0),
                         (T0 + 30 * M, T0 + 60 * M, 7.0)]
    shuffled = event(setpoint(iv(7.0, 30, uid=2), iv(5.0, 10, uid=0), iv(6.0, 20, uid=1)))
    assert values(shuffled) == values(e)  # uid orders them
    gap = event(setpoint(iv(5.0, 10), iv(6.0, 10, start=T0 + 30 * M)))
    assert values(gap)[1] == (T0 + 30 * M, T0 + 40 * M, 6.0)


def test_startafter_holds_each_limit_until_the_next_or_the_latest_end() -> None:
    e = event(setpoint(iv(5.0, 60), iv(6.0, 60), iv(7.0, 60, start=T0 + 3 * H)),
              startafter=30 * M)
    assert values(e) == [(T0, T0 + H, 5.0),                  # contiguous: unchanged
                         (T0 + H, T0 + 2.5 * H, 6.0),        # before a gap: 30 min longer
                         (T0 + 3 * H, T0 + 4.5 * H, 7.0)]    # the last: until the latest end
    tight = event(setpoint(iv(5.0, 60), iv(6.0, 60, start=T0 + 70 * M)), startafter=30 * M)
    assert values(tight)[0][1] == T0 + 70 * M  # never runs into the next interval


# --- hostile payloads ----------------------------------------------------------------------------


@pytest.mark.parametrize(("e", "why"), [
    (event(setpoint(iv(math.nan))), "finite"),
    (event(setpoint(iv(math.inf))), "finite"),
    (event(setpoint(iv(-1.0))), "negative"),
    (event(capacity(iv(-0.1))), "negative"),
    (event(capacity(iv(1.01))), "fraction"),
    (event(capacity(iv(True))), "must be a number"),
    (event(capacity(iv("0.5"))), "must be a number"),
    (event(capacity(iv(None))), "must be a number"),
    (event(capacity(iv({"payload_float": {}}))), "must be a number"),
    (event(simple(iv(1.5))), "level 1.5"),
    (event(simple(iv(4))), "level 4"),
    (event(simple(iv(-1))), "negative"),
    (event(setpoint(iv(5.0, 60), iv(6.0, 60, start=T0 + 30 * M))), "overlaps"),
    (event(setpoint(iv(2e6))), "beyond any site"),
    (event(setpoint(iv(5.0, 32 * 24 * 60))), "longer than the 31 days"),
    (event(setpoint(iv(5.0, 0))), "duration must be positive"),
    (event(setpoint(iv(5.0, -10))), "duration must be positive"),
    (event(setpoint(iv(5.0, start=datetime(2026, 6, 1)))), "UTC"),  # naive
    (event(setpoint()), "no intervals"),
    (event(), "no eventSignals"),
    (event(sig("LOAD_DISPATCH", "setpoint", iv(5.0))), "LOAD_DISPATCH/setpoint is not supp"),
    (event(sig("LOAD_CONTROL", "x-loadControlPercentOffset", iv(5.0))), "not supported"),
    (event(sig("x-custom", "level", iv(1))), "not supported"),
    (event(sig("SIMPLE", "delta", iv(1))), "SIMPLE/delta is not supported"),
    (event(sig("ELECTRICITY_PRICE", "price", iv(0.3))), "prices are not acted on"),
    (event(sig("LOAD_DISPATCH", "delta", iv(5.0)), simple(iv(1))), "not supported"),
    (event(capacity(iv(0.5)), setpoint(iv(5.0))), "more than one LOAD_CONTROL"),
    (event(simple(iv(1)), simple(iv(2))), "more than one SIMPLE"),
    (event(setpoint(iv(5.0)), startafter=-M), "startafter"),
    (event(setpoint(*[iv(1.0, 1) for _ in range(MAX_INTERVALS + 1)])), "at most"),
    (event(setpoint(iv(1.0)), mod=-1), "modificationNumber"),
    (event(setpoint(iv(1.0)), mod=True), "modificationNumber"),  # type: ignore[arg-type]
    ({"event_descriptor": {"modification_number": 0}}, "eventID"),
    ({"event_signals": []}, "eventDescriptor"),
    ({"event_descriptor": {"event_id": "x"}, "event_signals": [setpoint(iv(1.0))]},
     "activePeriod"),
])
def test_hostile_events_are_refused_with_a_reason(e: dict[str, Any], why: str) -> None:
    with pytest.raises(Unmappable, match=why):
        map_event(e, "grid")


def test_load_signal_wins_over_simple_and_prices_are_ignored_beside_it() -> None:
    both = event(simple(iv(3)), capacity(iv(0.6)), sig("ELECTRICITY_PRICE", "price", iv(0.3)))
    s = map_event(both, "grid")
    assert s is not None and s.measure is Measure.SHARE and s.intervals[0].value == 0.6
    s = map_event(event(sig("ENERGY_PRICE", "price", iv(0.3)), simple(iv(2))), "grid")
    assert s is not None and s.intervals[0].value == 0.5


def test_event_key_reads_status_and_test_flag() -> None:
    e = event(setpoint(iv(1.0)), status="cancelled")
    e["event_descriptor"]["test_event"] = True
    e["event_descriptor"]["event_id"] = 123  # openleadr turns numeric ids into ints
    k = event_key(e)
    assert (k.event_id, k.modification, k.status, k.test) == ("123", 3, "cancelled", True)


PLAUSIBLE = st.one_of(st.integers(0, 3), st.floats(0, 1), st.floats(0, 1e5))
PAYLOADS = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, PLAUSIBLE,  # hostile one time in 2
                     st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**7),
                     st.booleans(), st.none(), st.text(max_size=3))
DURATIONS = st.one_of(st.timedeltas(min_value=M, max_value=4 * H),
                      st.timedeltas(min_value=-H, max_value=timedelta(days=40)))
INTERVALS = st.lists(st.fixed_dictionaries(
    {"duration": DURATIONS, "signal_payload": PAYLOADS},
    optional={"dtstart": st.datetimes(min_value=datetime(2026, 1, 1),
                                      max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
              "uid": st.integers(0, 5)}), min_size=1, max_size=4)
SIGNALS = st.lists(st.builds(
    lambda nt, ivs, m: {"signal_name": nt[0], "signal_type": nt[1], "intervals": ivs,
                        **({"measurement": m} if m else {})},
    st.one_of(st.sampled_from([("SIMPLE", "level"), ("simple", "level"),
                               ("LOAD_CONTROL", "x-loadControlCapacity"),
                               ("LOAD_CONTROL", "x-loadControlSetpoint")]),
              st.tuples(st.sampled_from(["SIMPLE", "LOAD_CONTROL", "LOAD_DISPATCH",
                                         "ELECTRICITY_PRICE"]),
                        st.sampled_from(["level", "x-loadControlCapacity", "delta", "price"]))),
    INTERVALS,
    st.one_of(st.none(), st.builds(power, st.sampled_from(["W", "kW", "VA"]),
                                   st.sampled_from(["none", "k", "m", "M", "Q"])))),
    min_size=1, max_size=2)


@settings(max_examples=300, deadline=None)
@given(SIGNALS, st.one_of(st.none(), st.timedeltas(min_value=-H, max_value=H)))
def test_any_payload_is_refused_or_a_signal_the_core_accepts(
        signals: list[dict[str, Any]], after: timedelta | None) -> None:
    """Whatever a VTN sends: Unmappable, or a signal that passes the core's own validation
    with limits in range and intervals in order (nothing else escapes)."""
    try:
        s = map_event(event(*signals, startafter=after), "grid")
    except Unmappable as exc:
        assert exc.reason
        return
    if s is None:
        return
    validate_signal(s, {"grid": NODE})  # raises on NaN, negative, overlap, > 31 days, ...
    assert all(isinstance(i, SignalInterval) and i.end > i.start for i in s.intervals)


def test_parse_simple_levels() -> None:
    assert parse_simple_levels("1=0.75, 2=0.5,3=0.25") == {1: 0.75, 2: 0.5, 3: 0.25}
    assert parse_simple_levels({"1": 0.6, 3: "0"}) == {1: 0.6, 3: 0.0}
    for bad, why in [("0=0.5", "levels start at 1"), ("1=1.5", r"\[0, 1\]"), ("1=nan", "share"),
                     ("a=b", "integer level"), ("1", "LEVEL=SHARE"), ("", "at least one")]:
        with pytest.raises(ValueError, match=why):
            parse_simple_levels(bad)


# --- telemetry arithmetic ------------------------------------------------------------------------


def test_planned_kw_sums_the_connectors_below_the_node() -> None:
    site = Site("s", (Node("grid"), Node("panel", "grid"), Node("other", None)), (
        Connector("a", "panel", 32.0),                              # 3 x 230 V: 0.69 kW/A
        Connector("b", "grid", 32.0, phases=1),                     # 0.23 kW/A
        Connector("d", "panel", 32.0, wiring=Wiring.DELTA, voltage_v=208.0),  # 0.208 kW/A
        Connector("x", "other", 32.0),                              # not below grid
    ))
    load = NodeLoad.of(site, "grid")
    assert load.kw_per_a == pytest.approx({"a": 0.69, "b": 0.23, "d": 0.208})
    assert NodeLoad.of(site, "panel").kw_per_a.keys() == {"a", "d"}
    with pytest.raises(KeyError):
        NodeLoad.of(site, "nowhere")

    plan = pb.Plan()
    plan.end.FromDatetime(T0 + 4 * H)
    for conn, points in {"a": [(0, 10.0), (60, 20.0)], "b": [(30, 16.0)],
                         "d": [(0, 5.0)], "x": [(0, 32.0)]}.items():
        prof = plan.profiles.add(connector=conn)
        for minute, amps in points:
            p = prof.points.add(current_a=amps)
            p.start.FromDatetime(T0 + minute * M)
    assert planned_kw(plan, load, T0) == pytest.approx(10 * 0.69 + 5 * 0.208)
    assert planned_kw(plan, load, T0 + 45 * M) == pytest.approx(10 * 0.69 + 16 * 0.23 + 1.04)
    assert planned_kw(plan, load, T0 + 2 * H) == pytest.approx(20 * 0.69 + 16 * 0.23 + 1.04)
    assert planned_kw(plan, load, T0 - M) == 0.0 and planned_kw(plan, load, T0 + 4 * H) == 0.0
