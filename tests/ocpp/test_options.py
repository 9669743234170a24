"""OCPP options of a request: mistakes named by their field path; rendering never loses a plan."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.core.model import Connector, Node, Problem, Session, Site
from optimizer.core.validate import ValidationError
from optimizer.ocpp import ChargerCapabilities, ProfileKind, RateUnit
from optimizer.ocpp.options import (
    OcppOptions,
    check_transaction_id,
    options_from_message,
    plain_payload,
    render_all,
)

from .common import NOW, plan_of, unsafe_instants
from .helpers import rule_errors, schema_errors


def site(n: int = 3) -> Site:
    return Site(
        "s",
        (Node("grid", power_limit_kw=30.0), Node("panel", parent="grid")),
        tuple(Connector(f"c{k}", "panel", 32.0) for k in range(n)),
    )


def sessions(n: int = 3) -> tuple[Session, ...]:
    return tuple(
        Session(f"s{k}", f"c{k}", NOW, NOW + timedelta(hours=3), 20.0, vehicle_phases=3)
        for k in range(n)
    )


def charger(cid: str, evse: int, **kw: object) -> pb.ChargerCapabilities:
    return pb.ChargerCapabilities(connector=cid, evse_id=evse, station_id="st", **kw)


def good() -> pb.OcppOptions:
    return pb.OcppOptions(
        chargers=[charger("c0", 1), charger("c1", 2, ocpp_version="2.0.1", max_periods=5),
                  charger("c2", 3, rate_unit=pb.RATE_UNIT_WATTS, limit_resolution=1.0)],
        transaction_ids={"s0": "tx-0"},
        failsafe=True,
        fallback=[pb.NodeFallback(node="grid", power_limit_kw=20.0)],
    )


def fields(m: pb.OcppOptions, **kw: object) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        options_from_message(m, site(), kw.get("sessions", sessions()),  # type: ignore[arg-type]
                             stored=bool(kw.get("stored", False)))
    return {v.field: v.description for v in info.value.violations}


def test_good_options_convert_with_defaults() -> None:
    opts = options_from_message(good(), site(), sessions())
    assert list(opts.chargers) == ["c0", "c1", "c2"]
    c0 = opts.chargers["c0"]
    assert c0 == ChargerCapabilities(evse_id=1, station_id="st")  # every other field defaulted
    assert opts.chargers["c1"].max_periods == 5
    assert opts.chargers["c2"].rate_unit is RateUnit.WATTS
    assert opts.transaction_ids == {"s0": "tx-0"}
    assert opts.failsafe and not opts.station_max and not opts.tx_default
    assert opts.fallback["grid"].power_limit_kw == 20.0


def test_offline_fields() -> None:
    m = pb.OcppOptions(chargers=[
        charger("c0", 1, ocpp_version="2.1", no_offline_limit=True),
        charger("c1", 2, ocpp_version="2.1", max_offline_duration_s=60,
                invalid_after_offline=False),
    ])
    opts = options_from_message(m, site(), sessions())
    assert opts.chargers["c0"].max_offline_duration_s is None
    assert opts.chargers["c1"].max_offline_duration_s == 60
    assert opts.chargers["c1"].invalid_after_offline is False


@pytest.mark.parametrize(
    ("edit", "path", "words"),
    [
        (lambda m: setattr(m.chargers[2], "ocpp_version", "1.5"), "ocpp.chargers[2].ocpp_version",
         "must be 1.6, 2.0.1 or 2.1"),
        (lambda m: setattr(m.chargers[1], "connector", "c9"), "ocpp.chargers[1].connector",
         "unknown connector 'c9'"),
        (lambda m: setattr(m.chargers[1], "connector", "c0"), "ocpp.chargers[1].connector",
         "already has chargers[0]"),
        (lambda m: setattr(m.chargers[0], "connector", ""), "ocpp.chargers[0].connector",
         "required"),
        (lambda m: setattr(m.chargers[1], "max_periods", 0), "ocpp.chargers[1].max_periods",
         "at least 1"),
        (lambda m: setattr(m.chargers[1], "max_periods", 5000), "ocpp.chargers[1].max_periods",
         "at most 1024"),
        (lambda m: setattr(m.chargers[0], "limit_resolution", 0.0),
         "ocpp.chargers[0].limit_resolution", "> 0"),
        (lambda m: setattr(m.chargers[0], "limit_resolution", 0.05),
         "ocpp.chargers[0].limit_resolution", "multiple of 0.1"),
        (lambda m: setattr(m.chargers[0], "limit_resolution", math.nan),
         "ocpp.chargers[0].limit_resolution", "> 0"),
        (lambda m: setattr(m.chargers[0], "min_limit", -1.0), "ocpp.chargers[0].min_limit",
         ">= 0"),
        (lambda m: setattr(m.chargers[0], "rate_unit", 7), "ocpp.chargers[0].rate_unit",
         "unknown enum value 7"),
        (lambda m: setattr(m.chargers[0], "evse_id", 0), "ocpp.chargers[0].evse_id",
         "at least 1"),
        (lambda m: setattr(m.chargers[0], "connector_id", -2), "ocpp.chargers[0].connector_id",
         "at least 1"),
        (lambda m: setattr(m.chargers[0], "profile_id_base", 2**31 - 5),
         "ocpp.chargers[0].profile_id_base", "32-bit"),
        (lambda m: setattr(m.chargers[0], "stack_level_tx_default", 0),
         "ocpp.chargers[0].stack_level_tx_default", "above stack_level_failsafe"),
        (lambda m: setattr(m.chargers[0], "stack_level_tx", -1), "ocpp.chargers[0].stack_level_tx",
         "at least 0"),
        (lambda m: setattr(m.chargers[0], "max_offline_duration_s", -1),
         "ocpp.chargers[0].max_offline_duration_s", "at least 0"),
        (lambda m: (setattr(m.chargers[0], "max_offline_duration_s", 5),
                    setattr(m.chargers[0], "no_offline_limit", True)),
         "ocpp.chargers[0].no_offline_limit", "contradicts"),
        (lambda m: setattr(m.chargers[1], "evse_id", 1), "ocpp.chargers[1].evse_id",
         "already chargers[0]"),
        (lambda m: setattr(m.chargers[1], "ocpp_version", "1.6"),
         "ocpp.chargers[1].ocpp_version", "one station has one OCPP version"),
        (lambda m: setattr(m, "station_max", True), "ocpp.chargers[2].rate_unit",
         "one unit per station"),
        (lambda m: m.transaction_ids.update({"s9": "x"}), "ocpp.transaction_ids[s9]",
         "unknown session 's9'"),
        (lambda m: m.transaction_ids.update({"s1": "y" * 37}), "ocpp.transaction_ids[s1]",
         "1-36 characters"),
        (lambda m: m.fallback.add(node="nowhere"), "ocpp.fallback[1].node", "unknown node"),
        (lambda m: m.fallback.add(node="grid"), "ocpp.fallback[1].node", "already has"),
        (lambda m: m.fallback.add(node="panel", phase_limit_a=[1.0, 2.0]),
         "ocpp.fallback[1].phase_limit_a", "3 values"),
        (lambda m: m.fallback.add(node="panel", power_limit_kw=-3.0),
         "ocpp.fallback[1].power_limit_kw", ">= 0"),
    ],
)
def test_each_mistake_is_named_by_its_path(edit, path: str, words: str) -> None:  # type: ignore[no-untyped-def]
    m = good()
    edit(m)
    got = fields(m)
    assert path in got, got
    assert words in got[path], got[path]


def test_transaction_rules() -> None:
    m = good()
    m.chargers[0].ocpp_version = "1.6"
    m.chargers[0].connector_id = 1
    m.chargers[0].station_id = "old"
    got = fields(m)
    assert "integers" in got["ocpp.transaction_ids[s0]"]
    m.transaction_ids["s0"] = "42"
    assert options_from_message(m, site(), sessions()).transaction_ids == {"s0": "42"}
    # a session whose connector has no charger
    m = good()
    del m.chargers[1]
    m.transaction_ids["s1"] = "t1"
    assert "no charger" in fields(m)["ocpp.transaction_ids[s1]"]
    # two sessions with transactions on one connector
    later = Session("s3", "c0", NOW + timedelta(hours=4), NOW + timedelta(hours=5), 5.0)
    m = good()
    m.transaction_ids["s3"] = "t3"
    got = fields(m, sessions=(*sessions(), later))
    assert "pass only the active" in got["ocpp.transaction_ids[s3]"]
    # stored options take no transaction ids
    assert "StartSessionRequest.transaction_id" in fields(good(), stored=True)[
        "ocpp.transaction_ids"]


def test_size_bounds_come_first() -> None:
    m = pb.OcppOptions(chargers=[charger(f"c{k}", k + 1) for k in range(10)])
    m.transaction_ids.update({f"x{k}": "1" for k in range(10)})
    got = fields(m)
    assert set(got) == {"ocpp.chargers", "ocpp.transaction_ids"}


def test_check_transaction_id() -> None:
    v16 = ChargerCapabilities("1.6")
    assert check_transaction_id(v16, "17") is None
    assert check_transaction_id(v16, "abc") is not None
    assert check_transaction_id(v16, str(2**31)) is not None
    assert check_transaction_id(ChargerCapabilities("2.0.1"), "a" * 36) is None
    assert check_transaction_id(ChargerCapabilities("2.1"), "a" * 37) is not None


def _problem() -> Problem:
    return Problem(site(), sessions(), NOW)


def _plan():  # type: ignore[no-untyped-def]
    return plan_of({"c0": [(0, 16.0), (3600, 8.0)], "c1": [(0, 10.0)], "c2": [(0, 6.0)]})


def test_render_all_renders_everything_asked_for() -> None:
    m = good()
    m.station_max = True
    m.tx_default = True
    m.chargers[2].rate_unit = pb.RATE_UNIT_AMPS
    opts = options_from_message(m, site(), sessions())
    out, warnings = render_all(_problem(), _plan(), opts)
    assert warnings == []
    kinds = [(r.kind, r.connector) for r in out]
    assert kinds.count((ProfileKind.TX, "c0")) == 1
    assert sum(k is ProfileKind.TX_DEFAULT for k, _ in kinds) == 3
    assert sum(k is ProfileKind.FAILSAFE for k, _ in kinds) == 3
    assert sum(k is ProfileKind.STATION_MAX for k, _ in kinds) == 1
    for r in out:
        assert schema_errors(r.payload, r.ocpp_version) == []
        assert rule_errors(r.payload, r.ocpp_version, 24) == []
    assert unsafe_instants(_problem(), _plan(), out) == []
    # the fallback (20 kW) binds the fail-safe: 3 connectors x 3 phases x 230 V x I <= 20 kW
    fs = [r for r in out if r.kind is ProfileKind.FAILSAFE]
    amps = [r.payload["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]
            ["limit"] for r in fs]
    assert sum(amps) * 3 * 230 <= 20_000 + 1e-6


def test_a_connector_that_cannot_render_costs_only_its_own_profile() -> None:
    opts = OcppOptions(
        chargers={"c0": ChargerCapabilities("1.6", station_id="a"),
                  "c1": ChargerCapabilities("2.0.1", station_id="b")},
        transaction_ids={"s0": "not-an-int", "s1": "tx-1"},
    )
    out, warnings = render_all(_problem(), _plan(), opts)
    assert [(r.connector, r.session) for r in out] == [("c1", "s1")]
    assert len(warnings) == 1 and "c0" in warnings[0] and "integer" in warnings[0]


def test_stale_transaction_ids_leave_one_per_connector() -> None:
    later = Session("s3", "c0", NOW + timedelta(hours=3), NOW + timedelta(hours=4), 5.0)
    problem = Problem(site(), (*sessions(), later), NOW)
    opts = OcppOptions(chargers={"c0": ChargerCapabilities(station_id="a")})
    out, warnings = render_all(problem, _plan(), opts, {"s0": "t0", "s3": "t3"})
    assert [r.session for r in out] == ["s0"]  # present at the plan start
    assert "TxProfile only for 's0'" in warnings[0]


def test_plain_payload_restores_integers() -> None:
    assert plain_payload({"a": [1.0, 2.5, {"b": 3.0}], "c": "x", "d": True}) == {
        "a": [1, 2.5, {"b": 3}], "c": "x", "d": True}
    assert isinstance(plain_payload(True), bool)
