"""Input validation: every hostile field is named by its exact path, and nothing else escapes."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.core.compile import compile_problem
from optimizer.core.model import (
    CapacityLimit,
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
from optimizer.core.validate import (
    FieldViolation,
    Limits,
    ValidationError,
    validate,
    validate_site,
)

NOW = datetime(2026, 1, 5, 8, 7, tzinfo=UTC)
H = timedelta(hours=1)
NAN = float("nan")
INF = float("inf")


def _site() -> Site:
    return Site(
        "depot",
        (
            Node("grid", None, (63.0, 63.0, 63.0), 40.0),
            Node(
                "tr",
                "grid",
                phasor_limits=(PhasorLimit("primary", (0.25, 0.0, -0.25), 30.0),),
                voltage_v=230.0,
            ),
            Node("panel", "tr", (32.0, 32.0, 32.0)),
        ),
        (
            Connector("c1", "panel", 32.0, min_current_a=6.0, current_step_a=1.0),
            Connector(
                "c2",
                "tr",
                32.0,
                phases=1,
                wiring=Wiring.DELTA,
                voltage_v=208.0,
                phase_rotation="L2L3L1",
                phase_angle_deg=-90.0,
            ),
            Connector("c3", "panel", 32.0, allowed_currents_a=(0.0, 8.0, 16.0, 32.0), phases=1),
        ),
    )


def _baseline() -> Problem:
    """A valid problem that sets every optional field somewhere."""
    return Problem(
        site=_site(),
        sessions=(
            Session(
                "s1",
                "c1",
                NOW - H,
                NOW + 3 * H,
                20.0,
                energy_delivered_kwh=4.0,
                vehicle_max_current_a=16.0,
                vehicle_min_current_a=6.0,
                vehicle_max_power_kw=11.0,
                vehicle_phases=3,
                priority=2.0,
                measured_current_a=10.0,
            ),
            Session("s2", "c2", NOW, NOW + 5 * H, 10.0),
            Session("s3", "c3", NOW + H, NOW + 2 * H, 5.0),
            # c1 again, arriving exactly when s1 leaves: touching is not overlapping
            Session("s4", "c1", NOW + 3 * H, NOW + 30 * H, 50.0),
        ),
        now=NOW,
        signals=Signals(
            capacity=(
                CapacityLimit("grid", NOW, NOW + 2 * H, limit_kw=30.0),
                CapacityLimit("panel", NOW + H, NOW + 4 * H, phase_limit_a=(20.0, 20.0, 25.0)),
            ),
            prices=(
                TimeValue(NOW - H, NOW + 2 * H, 0.30),
                TimeValue(NOW + 2 * H, NOW + 6 * H, -0.05),  # negative prices are real
            ),
            carbon=(TimeValue(NOW, NOW + 24 * H, 350.0),),
            events=(
                CurtailmentEvent("dr-1", "grid", NOW + H, NOW + 2 * H, limit_kw=15.0),
                CurtailmentEvent(
                    "dr-2", "panel", NOW + 4 * H, NOW + 5 * H, reduction_kw=5.0, modification=2
                ),
            ),
        ),
        options=Options(
            slot_minutes=15,
            horizon_hours=24.0,
            mode=Mode.AUTO,
            time_limit_s=5.0,
            cost_weight=1.0,
            carbon_weight=0.5,
            phasor_polygon_sides=24,
        ),
    )


# --- a path-addressed setter: mutations read like the violation paths they expect -------------

_TOKEN = re.compile(r"\.?([a-z_]+)|\[(\d+)\]")


def _tokens(path: str) -> list[str | int]:
    out: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        assert m, f"bad path {path!r} at {pos}"
        out.append(m.group(1) if m.group(1) else int(m.group(2)))
        pos = m.end()
    return out


def _set(obj: Any, toks: list[str | int], value: Any) -> Any:
    if not toks:
        return value
    head, rest = toks[0], toks[1:]
    if isinstance(head, int):
        items = list(obj)
        items[head] = _set(items[head], rest, value)
        return tuple(items)
    return replace(obj, **{head: _set(getattr(obj, head), rest, value)})


def set_path(problem: Any, path: str, value: Any) -> Any:
    """``set_path(p, "site.nodes[1].phase_limit_a[2]", nan)``: a copy with one field replaced."""
    return _set(problem, _tokens(path), value)


DEFAULT_LIMITS = Limits()


def _violations(problem: Problem, limits: Limits = DEFAULT_LIMITS) -> tuple[FieldViolation, ...]:
    with pytest.raises(ValidationError) as exc:
        validate(problem, limits)
    return exc.value.violations


def _assert_one(
    problem: Problem, field: str, reason: str, limits: Limits = DEFAULT_LIMITS
) -> FieldViolation:
    vs = _violations(problem, limits)
    hits = [v for v in vs if v.field == field and reason in v.description]
    assert hits, f"expected {field}: ...{reason}...; got {vs}"
    return hits[0]


# --- baseline and edge cases that are valid -----------------------------------------------------


def test_baseline_is_valid_and_compiles() -> None:
    p = _baseline()
    validate(p)
    c = compile_problem(p)
    assert c.n == 4 and c.t == 97


def test_no_sessions_is_valid() -> None:
    validate(replace(_baseline(), sessions=()))


def test_site_without_connectors_is_valid() -> None:
    site = replace(_site(), connectors=())
    validate_site(site)
    validate(Problem(site, (), NOW))


def test_lists_are_accepted_where_tuples_are_declared() -> None:
    p = _baseline()
    validate(replace(p, sessions=list(p.sessions)))  # type: ignore[arg-type]


def test_durations_from_the_wire_may_be_whole_floats() -> None:
    # optimizer.api.convert turns Durations into float minutes.
    opts = replace(_baseline().options, slot_minutes=15.0)  # type: ignore[arg-type]
    validate(replace(_baseline(), options=opts))


def test_any_timezone_and_numpy_numbers_are_fine() -> None:
    tz = timezone(timedelta(hours=-5))
    p = set_path(_baseline(), "sessions[1].departure", (NOW + 5 * H).astimezone(tz))
    p = set_path(p, "site.connectors[0].max_current_a", np.float64(32.0))
    p = set_path(p, "site.connectors[0].phases", np.int64(3))
    validate(p)


# --- the hostile table --------------------------------------------------------------------------

Mutation = Callable[[Problem], Problem]


def at(path: str, value: Any) -> Mutation:
    return lambda p: set_path(p, path, value)


def many(*ms: Mutation) -> Mutation:
    def apply(p: Problem) -> Problem:
        for m in ms:
            p = m(p)
        return p

    return apply


NAIVE = datetime(2026, 1, 5, 10, 0)

# fmt: off
CASES: list[tuple[str, Mutation, str, str]] = [
    # (case id, mutation, exact path, reason substring)
    # site and nodes
    ("site id empty", at("site.id", ""), "site.id", "must not be empty"),
    ("site id blank", at("site.id", "   "), "site.id", "must not be empty"),
    ("site id not str", at("site.id", 7), "site.id", "must be a string, got int"),
    ("site id too long", at("site.id", "x" * 300), "site.id", "longer than 256"),
    ("no nodes", many(at("site.nodes", ()), at("site.connectors", ())), "site.nodes",
     "at least one node"),
    ("nodes not a tuple", at("site.nodes", "grid"), "site.nodes", "must be a tuple, got str"),
    ("node not a Node", at("site.nodes[2]", {"id": "panel"}), "site.nodes[2]",
     "must be a Node, got dict"),
    ("node id empty", at("site.nodes[2].id", ""), "site.nodes[2].id", "must not be empty"),
    ("node id duplicate", at("site.nodes[2].id", "tr"), "site.nodes[2].id",
     "duplicate id 'tr' (also site.nodes[1])"),
    ("unknown parent", at("site.nodes[2].parent", "nowhere"), "site.nodes[2].parent",
     "unknown node 'nowhere'"),
    ("empty parent", at("site.nodes[2].parent", ""), "site.nodes[2].parent", "must not be empty"),
    ("self parent", at("site.nodes[2].parent", "panel"), "site.nodes[2].parent",
     "cycle: panel -> panel"),
    ("two-node cycle", many(at("site.nodes[0].parent", "tr"), at("site.nodes[2].parent", None)),
     "site.nodes[0].parent", "cycle: grid -> tr -> grid"),
    ("second root", at("site.nodes[2].parent", None), "site.nodes[2].parent",
     "a second root: 'panel' has no parent but 'grid' (site.nodes[0])"),
    ("phase limit NaN", at("site.nodes[2].phase_limit_a[1]", NAN),
     "site.nodes[2].phase_limit_a[1]", "must be finite, got nan"),
    ("phase limit -inf", at("site.nodes[0].phase_limit_a[2]", -INF),
     "site.nodes[0].phase_limit_a[2]", "must be finite, got -inf"),
    ("phase limit negative", at("site.nodes[0].phase_limit_a[0]", -1.0),
     "site.nodes[0].phase_limit_a[0]", "must be >= 0, got -1"),
    ("phase limit two values", at("site.nodes[0].phase_limit_a", (63.0, 63.0)),
     "site.nodes[0].phase_limit_a", "must have 3 values"),
    ("phase limit str", at("site.nodes[0].phase_limit_a[0]", "63"),
     "site.nodes[0].phase_limit_a[0]", "must be a number, got str"),
    ("power limit inf", at("site.nodes[0].power_limit_kw", INF), "site.nodes[0].power_limit_kw",
     "must be finite, got inf"),
    ("power limit huge", at("site.nodes[0].power_limit_kw", 1e12), "site.nodes[0].power_limit_kw",
     "must be <= 1e+09"),
    ("power limit huge int", at("site.nodes[0].power_limit_kw", 10**400),
     "site.nodes[0].power_limit_kw", "too large for a float"),
    ("power limit bool", at("site.nodes[0].power_limit_kw", True), "site.nodes[0].power_limit_kw",
     "must be a number, got bool"),
    ("node voltage zero", at("site.nodes[1].voltage_v", 0.0), "site.nodes[1].voltage_v",
     "must be >= 50, got 0"),
    ("node voltage high", at("site.nodes[1].voltage_v", 11000.0), "site.nodes[1].voltage_v",
     "must be <= 1000"),
    ("phasor name empty", at("site.nodes[1].phasor_limits[0].name", ""),
     "site.nodes[1].phasor_limits[0].name", "must not be empty"),
    ("phasor name duplicate",
     at("site.nodes[1].phasor_limits",
        (PhasorLimit("p", (1.0, 0.0, 0.0), 10.0), PhasorLimit("p", (0.0, 1.0, 0.0), 10.0))),
     "site.nodes[1].phasor_limits[1].name", "duplicate name 'p' (also phasor_limits[0])"),
    ("phasor coefficients zero", at("site.nodes[1].phasor_limits[0].coefficients", (0.0, 0, -0.0)),
     "site.nodes[1].phasor_limits[0].coefficients", "all zero"),
    ("phasor coefficient NaN", at("site.nodes[1].phasor_limits[0].coefficients[2]", NAN),
     "site.nodes[1].phasor_limits[0].coefficients[2]", "must be finite"),
    ("phasor coefficients 4", at("site.nodes[1].phasor_limits[0].coefficients", (1.0,) * 4),
     "site.nodes[1].phasor_limits[0].coefficients", "must have 3 values"),
    ("phasor limit negative", at("site.nodes[1].phasor_limits[0].limit_a", -0.5),
     "site.nodes[1].phasor_limits[0].limit_a", "must be >= 0"),
    # connectors
    ("connector id duplicate", at("site.connectors[2].id", "c1"), "site.connectors[2].id",
     "duplicate id 'c1' (also site.connectors[0])"),
    ("connector id is a node id", at("site.connectors[2].id", "panel"), "site.connectors[2].id",
     "also a node id"),
    ("connector unknown node", at("site.connectors[1].node", "tr9"), "site.connectors[1].node",
     "unknown node 'tr9'"),
    ("max current zero", at("site.connectors[0].max_current_a", 0.0),
     "site.connectors[0].max_current_a", "must be > 0"),
    ("max current in mA", at("site.connectors[0].max_current_a", 32000.0),
     "site.connectors[0].max_current_a", "must be <= 1000"),
    ("max current NaN", at("site.connectors[0].max_current_a", NAN),
     "site.connectors[0].max_current_a", "must be finite, got nan"),
    ("min above max", at("site.connectors[0].min_current_a", 40.0),
     "site.connectors[0].min_current_a", "must be <= max_current_a (32), got 40"),
    ("min negative", at("site.connectors[0].min_current_a", -6.0),
     "site.connectors[0].min_current_a", "must be >= 0"),
    ("step negative", at("site.connectors[0].current_step_a", -0.1),
     "site.connectors[0].current_step_a", "must be >= 0"),
    ("step too fine", at("site.connectors[0].current_step_a", 1e-9),
     "site.connectors[0].current_step_a", "must be 0 (any current) or >= 0.01"),
    ("allowed above max", at("site.connectors[2].allowed_currents_a[3]", 40.0),
     "site.connectors[2].allowed_currents_a[3]", "must be <= max_current_a (32)"),
    ("allowed duplicate", at("site.connectors[2].allowed_currents_a[3]", 16.0),
     "site.connectors[2].allowed_currents_a[3]", "duplicate of allowed_currents_a[2]"),
    ("allowed negative", at("site.connectors[2].allowed_currents_a[1]", -8.0),
     "site.connectors[2].allowed_currents_a[1]", "must be >= 0"),
    ("allowed inf", at("site.connectors[2].allowed_currents_a[1]", INF),
     "site.connectors[2].allowed_currents_a[1]", "must be finite"),
    ("phases 2", at("site.connectors[0].phases", 2), "site.connectors[0].phases",
     "must be 1 or 3, got 2"),
    ("phases float", at("site.connectors[0].phases", 3.0), "site.connectors[0].phases",
     "must be an integer"),
    ("bad rotation", at("site.connectors[0].phase_rotation", "L1L1L2"),
     "site.connectors[0].phase_rotation", "must be one of L1L2L3"),
    ("wiring as plain str", at("site.connectors[1].wiring", "delta"), "site.connectors[1].wiring",
     "must be Wiring.WYE or Wiring.DELTA, got 'delta'"),
    ("delta three-phase", at("site.connectors[1].phases", 3), "site.connectors[1].phases",
     "DELTA wiring is one line-to-line branch: must be 1, got 3"),
    ("connector voltage negative", at("site.connectors[1].voltage_v", -208.0),
     "site.connectors[1].voltage_v", "must be >= 50"),
    ("phase angle NaN", at("site.connectors[1].phase_angle_deg", NAN),
     "site.connectors[1].phase_angle_deg", "must be finite"),
    ("phase angle on wye", at("site.connectors[0].phase_angle_deg", 30.0),
     "site.connectors[0].phase_angle_deg", "only used with DELTA"),
    # sessions
    ("session not a Session", at("sessions[1]", None), "sessions[1]", "must be a Session"),
    ("session id empty", at("sessions[0].id", ""), "sessions[0].id", "must not be empty"),
    ("session id duplicate", at("sessions[3].id", "s1"), "sessions[3].id",
     "duplicate id 's1' (also sessions[0])"),
    ("unknown connector", at("sessions[2].connector", "c9"), "sessions[2].connector",
     "unknown connector 'c9'"),
    ("departure before arrival", at("sessions[2].departure", NOW), "sessions[2].departure",
     "before arrival"),
    ("departure equal to arrival", at("sessions[2].departure", NOW + H), "sessions[2].departure",
     "equal to arrival"),
    ("naive arrival", at("sessions[0].arrival", NAIVE), "sessions[0].arrival", "timezone-aware"),
    ("arrival as str", at("sessions[0].arrival", "2026-01-05T08:00Z"), "sessions[0].arrival",
     "must be a datetime, got str"),
    ("request NaN", at("sessions[0].energy_requested_kwh", NAN), "sessions[0].energy_requested_kwh",
     "must be finite, got nan"),
    ("request in Wh", at("sessions[0].energy_requested_kwh", 60000.0),
     "sessions[0].energy_requested_kwh", "must be <= 1000"),
    ("request negative", at("sessions[0].energy_requested_kwh", -1.0),
     "sessions[0].energy_requested_kwh", "must be >= 0"),
    ("delivered -inf", at("sessions[0].energy_delivered_kwh", -INF),
     "sessions[0].energy_delivered_kwh", "must be finite"),
    ("vehicle max zero", at("sessions[0].vehicle_max_current_a", 0.0),
     "sessions[0].vehicle_max_current_a", "must be > 0"),
    ("vehicle min above max", at("sessions[0].vehicle_min_current_a", 20.0),
     "sessions[0].vehicle_min_current_a", "must be <= vehicle_max_current_a (16), got 20"),
    ("vehicle power NaN", at("sessions[0].vehicle_max_power_kw", NAN),
     "sessions[0].vehicle_max_power_kw", "must be finite"),
    ("vehicle phases 2", at("sessions[0].vehicle_phases", 2), "sessions[0].vehicle_phases",
     "must be 1 or 3"),
    ("vehicle phases 0", at("sessions[0].vehicle_phases", 0), "sessions[0].vehicle_phases",
     "must be 1 or 3"),
    ("priority zero", at("sessions[0].priority", 0.0), "sessions[0].priority", "must be > 0"),
    ("priority huge", at("sessions[0].priority", 1e6), "sessions[0].priority", "must be <= 1000"),
    ("measured negative", at("sessions[0].measured_current_a", -2.0),
     "sessions[0].measured_current_a", "must be >= 0"),
    ("overlap on one connector", at("sessions[3].arrival", NOW + 2 * H), "sessions[3].arrival",
     "overlaps sessions[0] ('s1') on connector 'c1'"),
    ("overlap, later index arrives first",
     many(at("sessions[3].arrival", NOW - 2 * H), at("sessions[3].departure", NOW)),
     "sessions[0].arrival", "overlaps sessions[3] ('s4') on connector 'c1'"),
    # signals
    ("capacity unknown node", at("signals.capacity[0].node", "ghost"), "signals.capacity[0].node",
     "unknown node 'ghost'"),
    ("capacity both limits", at("signals.capacity[0].phase_limit_a", (1.0, 1.0, 1.0)),
     "signals.capacity[0]", "exactly one of limit_kw and phase_limit_a, got both"),
    ("capacity no limit", at("signals.capacity[0].limit_kw", None), "signals.capacity[0]",
     "got neither"),
    ("capacity phase NaN", at("signals.capacity[1].phase_limit_a[2]", NAN),
     "signals.capacity[1].phase_limit_a[2]", "must be finite"),
    ("capacity negative", at("signals.capacity[0].limit_kw", -5.0), "signals.capacity[0].limit_kw",
     "must be >= 0"),
    ("capacity end before start", at("signals.capacity[0].end", NOW - H), "signals.capacity[0].end",
     "before start"),
    ("capacity naive start", at("signals.capacity[0].start", NAIVE), "signals.capacity[0].start",
     "timezone-aware"),
    ("price NaN", at("signals.prices[1].value", NAN), "signals.prices[1].value", "must be finite"),
    ("price empty window", at("signals.prices[1].end", NOW + 2 * H), "signals.prices[1].end",
     "equal to start"),
    ("prices overlap", at("signals.prices[1].start", NOW + H), "signals.prices[1].start",
     "overlaps signals.prices[0]"),
    ("carbon negative", at("signals.carbon[0].value", -1.0), "signals.carbon[0].value",
     "must be >= 0"),
    ("event id empty", at("signals.events[1].id", ""), "signals.events[1].id", "must not be empty"),
    ("event id duplicate", at("signals.events[1].id", "dr-1"), "signals.events[1].id",
     "duplicate id 'dr-1' (also signals.events[0])"),
    ("event unknown node", at("signals.events[0].node", "feeder"), "signals.events[0].node",
     "unknown node 'feeder'"),
    ("event both", at("signals.events[0].reduction_kw", 1.0), "signals.events[0]",
     "exactly one of limit_kw and reduction_kw, got both"),
    ("event neither", at("signals.events[0].limit_kw", None), "signals.events[0]", "got neither"),
    ("event reduction NaN", at("signals.events[1].reduction_kw", NAN),
     "signals.events[1].reduction_kw", "must be finite"),
    ("event limit negative", at("signals.events[0].limit_kw", -1.0), "signals.events[0].limit_kw",
     "must be >= 0"),
    ("reduction without baseline", at("signals.events[1].node", "tr"),
     "signals.events[1].reduction_kw", "node 'tr' has neither power_limit_kw nor phase_limit_a"),
    ("modification negative", at("signals.events[1].modification", -1),
     "signals.events[1].modification", "must be between 0 and"),
    ("modification float", at("signals.events[1].modification", 2.0),
     "signals.events[1].modification", "must be an integer, got float"),
    ("event end naive", at("signals.events[0].end", NAIVE), "signals.events[0].end",
     "timezone-aware"),
    # problem and options
    ("now naive", at("now", NAIVE), "now", "timezone-aware"),
    ("now not a datetime", at("now", 0), "now", "must be a datetime, got int"),
    ("now near year 9999", at("now", datetime(9999, 12, 31, 12, tzinfo=UTC)), "now",
     "past the year 9999"),
    ("slot zero", at("options.slot_minutes", 0), "options.slot_minutes",
     "must be between 1 and 60, got 0"),
    ("slot 90", at("options.slot_minutes", 90), "options.slot_minutes", "between 1 and 60"),
    ("slot fractional", at("options.slot_minutes", 7.5), "options.slot_minutes",
     "whole number of minutes, got 7.5"),
    ("slot NaN", at("options.slot_minutes", NAN), "options.slot_minutes", "must be finite"),
    ("slot str", at("options.slot_minutes", "15"), "options.slot_minutes", "must be an integer"),
    ("horizon zero", at("options.horizon_hours", 0.0), "options.horizon_hours", "must be > 0"),
    ("horizon two weeks", at("options.horizon_hours", 336.0), "options.horizon_hours",
     "must be <= 168"),
    ("horizon under a slot", at("options.horizon_hours", 0.1), "options.horizon_hours",
     "must cover at least one slot (15 min), got 6 min"),
    ("horizon NaN", at("options.horizon_hours", NAN), "options.horizon_hours", "must be finite"),
    ("too many slots", many(at("options.slot_minutes", 1), at("options.horizon_hours", 168.0)),
     "options.horizon_hours", "10080 slots; at most 2000"),
    ("mode as str", at("options.mode", "fast"), "options.mode", "must be a Mode, got 'fast'"),
    ("time limit zero", at("options.time_limit_s", 0.0), "options.time_limit_s", "must be > 0"),
    ("time limit an hour", at("options.time_limit_s", 3600.0), "options.time_limit_s",
     "must be <= 600"),
    ("cost weight negative", at("options.cost_weight", -1.0), "options.cost_weight",
     "must be >= 0"),
    ("carbon weight inf", at("options.carbon_weight", INF), "options.carbon_weight",
     "must be finite"),
    ("polygon too coarse", at("options.phasor_polygon_sides", 4), "options.phasor_polygon_sides",
     "must be between 8 and 256"),
    ("options not Options", at("options", {"slot_minutes": 15}), "options",
     "must be an Options, got dict"),
    ("signals not Signals", at("signals", None), "signals", "must be a Signals, got NoneType"),
    ("site not a Site", at("site", "depot"), "site", "must be a Site, got str"),
]
# fmt: on


@pytest.mark.parametrize(
    ("mutate", "field", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_mutation_is_named(mutate: Mutation, field: str, reason: str) -> None:
    _assert_one(mutate(_baseline()), field, reason)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


# --- several at once, sizes, and the site on its own ------------------------------------------


def test_all_violations_are_reported_at_once() -> None:
    p = _baseline()
    p = set_path(p, "site.nodes[2].phase_limit_a[1]", NAN)
    p = set_path(p, "site.connectors[0].phases", 2)
    p = set_path(p, "sessions[2].departure", NOW)
    p = set_path(p, "signals.events[0].reduction_kw", 3.0)
    p = set_path(p, "options.slot_minutes", 0)
    fields = {v.field for v in _violations(p)}
    assert fields == {
        "site.nodes[2].phase_limit_a[1]",
        "site.connectors[0].phases",
        "sessions[2].departure",
        "signals.events[0]",
        "options.slot_minutes",
    }


def test_error_text_lists_path_and_reason() -> None:
    p = set_path(_baseline(), "sessions[2].departure", NOW)
    p = set_path(p, "options.cost_weight", -1.0)
    with pytest.raises(ValidationError) as exc:
        validate(p)
    lines = str(exc.value).splitlines()
    assert lines[0].startswith("sessions[2].departure: departure ")
    assert lines[1] == "options.cost_weight: must be >= 0, got -1"
    assert isinstance(exc.value, ValueError)


def test_a_three_node_cycle_is_reported_once_with_its_path() -> None:
    p = set_path(_baseline(), "site.nodes[0].parent", "panel")
    vs = [v for v in _violations(p) if "cycle" in v.description]
    assert len(vs) == 1 and vs[0].field == "site.nodes[0].parent"
    assert vs[0].description.startswith("cycle: grid -> panel -> tr -> grid (each arrow")
    assert any(v.field == "site.nodes" and "no root" in v.description for v in _violations(p))


def test_slot_count_follows_compile_slot_edges() -> None:
    # 24 h from 08:07 in 15-minute slots: a partial first slot, 95 whole ones, a partial last: 97.
    tight = Limits(max_slots=96)
    _assert_one(_baseline(), "options.horizon_hours", "97 slots; at most 96", tight)
    validate(replace(_baseline(), now=datetime(2026, 1, 5, 8, 0, tzinfo=UTC)), tight)


def test_cells_bound_sessions_times_slots() -> None:
    _assert_one(_baseline(), "sessions", "4 sessions x 97 slots = 388 cells", Limits(max_cells=300))


def test_limit_rows_count_toward_cells() -> None:
    # no sessions: no rows; with sessions all three nodes are loaded: 3*4 + 1 phasor = 13 rows
    validate(replace(_baseline(), sessions=()), Limits(max_cells=1000))
    _assert_one(_baseline(), "site.nodes", "about 13 limit rows", Limits(max_cells=1000))


def test_tree_depth_is_bounded() -> None:
    chain = tuple(Node(f"n{k}", f"n{k - 1}" if k else None, None) for k in range(70))
    site = Site("deep", chain, ())
    with pytest.raises(ValidationError) as exc:
        validate_site(site)
    assert exc.value.violations == (
        FieldViolation("site.nodes", "the tree is 69 levels deep (node 'n69'); at most 64"),
    )


@pytest.mark.parametrize(
    ("limits", "field", "reason"),
    [
        (Limits(max_nodes=2), "site.nodes", "3 nodes; at most 2"),
        (Limits(max_connectors=2), "site.connectors", "3 connectors; at most 2"),
        (Limits(max_sessions=3), "sessions", "4 sessions; at most 3"),
        (Limits(max_events=1), "signals.events", "2 events; at most 1"),
        (Limits(max_signal_entries=4), "signals", "5 capacity, price and carbon entries"),
    ],
)
def test_oversized_requests_stop_at_the_size_check(limits: Limits, field: str, reason: str) -> None:
    p = set_path(_baseline(), "sessions[0].energy_requested_kwh", NAN)  # not even looked at
    vs = _violations(p, limits)
    assert len(vs) == 1 and vs[0].field == field and reason in vs[0].description


def test_per_element_lists_are_bounded() -> None:
    many_levels = tuple(float(k) for k in range(33))
    p = set_path(_baseline(), "site.connectors[2].allowed_currents_a", many_levels)
    _assert_one(
        p,
        "site.connectors[2].allowed_currents_a",
        "33 values; at most 20",
        Limits(max_allowed_currents=20),
    )
    pls = tuple(PhasorLimit(f"p{k}", (1.0, 0.0, 0.0), 1.0) for k in range(3))
    p = set_path(_baseline(), "site.nodes[1].phasor_limits", pls)
    _assert_one(
        p, "site.nodes[1].phasor_limits", "3 phasor limits; at most 2", Limits(max_phasor_limits=2)
    )


def test_validate_site_alone_uses_site_paths() -> None:
    site = set_path(_site(), "connectors[1].node", "nowhere")
    site = set_path(site, "nodes[0].phase_limit_a[0]", INF)
    with pytest.raises(ValidationError) as exc:
        validate_site(site)
    assert {v.field for v in exc.value.violations} == {
        "site.connectors[1].node",
        "site.nodes[0].phase_limit_a[0]",
    }
    with pytest.raises(ValidationError) as exc:
        validate_site("depot")  # type: ignore[arg-type]
    assert exc.value.violations == (FieldViolation("site", "must be a Site, got str"),)


def test_not_a_problem() -> None:
    with pytest.raises(ValidationError) as exc:
        validate(None)  # type: ignore[arg-type]
    assert exc.value.violations[0].field == "problem"


# --- hypothesis: garbage in numeric fields ------------------------------------------------------


def _numeric_paths(obj: Any, prefix: str = "") -> list[str]:
    """Every numeric leaf of the baseline (ints and floats, optional ones are all set)."""
    out: list[str] = []
    if isinstance(obj, bool | str | datetime | Wiring | Mode) or obj is None:
        return out
    if isinstance(obj, int | float):
        return [prefix]
    if isinstance(obj, tuple):
        for k, v in enumerate(obj):
            out += _numeric_paths(v, f"{prefix}[{k}]")
        return out
    for name in obj.__dataclass_fields__:
        out += _numeric_paths(getattr(obj, name), f"{prefix}.{name}" if prefix else name)
    return out


NUMERIC_PATHS = _numeric_paths(_baseline())
ALL_PATHS = sorted(
    {p for leaf in NUMERIC_PATHS for p in [leaf, re.sub(r"(\[\d+\]|\.[a-z_]+)$", "", leaf)] if p}
    | {
        "site.id",
        "site.nodes[1].parent",
        "site.connectors[0].wiring",
        "sessions[0].arrival",
        "sessions[1].departure",
        "signals.events[0].id",
        "options.mode",
        "now",
        "site.connectors[1].phase_rotation",
        "signals.prices[0].start",
    }
)

garbage_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([NAN, INF, -INF, 0.0, -0.0, 1e308, -1e308, 5e-324, 1e9, 1e9 + 1]),
)
garbage_any = st.one_of(
    garbage_float,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(10**400),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.lists(st.floats(), max_size=4).map(tuple),
    st.just(object()),
)


def _validated_compiles(p: Problem) -> None:
    """Whatever validate lets through, compile must take without error or non-finite output."""
    c = compile_problem(p)
    for arr in (c.hours, c.ub, c.lo, c.kw_per_a, c.need_ah, c.weight, c.cost, c.limit):
        assert np.isfinite(arr).all() or arr is c.limit
    assert not np.isnan(c.limit).any() and (c.limit >= 0).all()
    assert (c.kw_per_a > 0).all()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(NUMERIC_PATHS), value=garbage_float)
def test_float_garbage_in_numeric_fields(path: str, value: float) -> None:
    p = set_path(_baseline(), path, value)
    try:
        validate(p)
    except ValidationError as exc:
        assert exc.violations
        if not math.isfinite(value):
            assert any(v.field == path for v in exc.violations), (path, exc.violations)
        return
    assert math.isfinite(value), f"{path}={value} passed validation"
    _validated_compiles(p)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ALL_PATHS), value=garbage_any)
def test_any_garbage_anywhere_only_raises_validation_error(path: str, value: Any) -> None:
    p = set_path(_baseline(), path, value)
    try:
        validate(p)
    except ValidationError as exc:
        assert exc.violations
        assert all(isinstance(v, FieldViolation) for v in exc.violations)
        str(exc)
        return
    if isinstance(value, float):
        assert math.isfinite(value)
    _validated_compiles(p)


@settings(max_examples=200, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(NUMERIC_PATHS), garbage_float),
        min_size=2,
        max_size=6,
        unique_by=lambda e: e[0],
    )
)
def test_every_non_finite_field_is_reported_together(edits: list[tuple[str, float]]) -> None:
    p = _baseline()
    for path, value in edits:
        p = set_path(p, path, value)
    bad = {path for path, value in edits if not math.isfinite(value)}
    try:
        validate(p)
    except ValidationError as exc:
        assert bad <= {v.field for v in exc.violations}
        return
    assert not bad
