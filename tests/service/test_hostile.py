"""Hostile requests: each is refused with the right status code and the right field, and none of
them changes what the server stores or breaks it for the next client.

Every row names the RPC, the request, the expected status and the expected machine-readable
detail: a ``google.rpc.BadRequest`` field path for INVALID_ARGUMENT, ``ResourceInfo`` type for
NOT_FOUND / ALREADY_EXISTS, ``PreconditionFailure`` subject for FAILED_PRECONDITION.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.service.server import RunningServer, build_server

from .test_server import (
    PATIENCE_S,
    make_event,
    make_options,
    make_session,
    make_site,
    max_total_current,
    now_utc,
    optimize_request,
    ts,
)

CSMS = "smartcharging.v1.ChargingOptimizer"
GRID = "smartcharging.v1.GridOperator"
SITE = "hostile"
T0 = now_utc()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("hostile") / "hostile.db"
    srv = build_server(port=0, db_path=db, refresh=False)
    assert srv.wait_ready(PATIENCE_S)
    yield srv
    srv.stop(1.0)


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    csms = pb_grpc.ChargingOptimizerStub(ch)
    grid = pb_grpc.GridOperatorStub(ch)
    csms.PutSite(pb.PutSiteRequest(site=make_site(SITE, 40.0, 2), options=make_options()),
                 timeout=30)
    csms.StartSession(pb.StartSessionRequest(site_id=SITE,
                                             session=make_session("s1", "c0", T0)), timeout=30)
    grid.SubmitEvent(pb.SubmitEventRequest(site_id=SITE, event=make_event("ev1", 30.0, 5,
                                                                         start=T0)), timeout=30)
    yield ch
    ch.close()


# --- request builders ----------------------------------------------------------------------------


def opt(**edit: Any) -> Callable[[], pb.OptimizeRequest]:
    """A valid Optimize request with one edit applied by ``edit['fn']``."""
    def build() -> pb.OptimizeRequest:
        req = optimize_request("opt", 40.0, n=2)
        edit["fn"](req)
        return req
    return build


def _set(path: str, value: Any) -> Callable[[Any], None]:
    def fn(msg: Any) -> None:
        *head, last = path.split(".")
        for part in head:
            msg = msg[int(part)] if part.isdigit() else getattr(msg, part)
        if last.isdigit():
            msg[int(last)] = value
        else:
            setattr(msg, last, value)
    return fn


def _cycle(req: pb.OptimizeRequest) -> None:
    req.site.nodes.append(pb.Node(id="a", parent="b"))
    req.site.nodes.append(pb.Node(id="b", parent="a"))


def _too_many_sessions(req: pb.OptimizeRequest) -> None:
    s = req.sessions[0]
    del req.sessions[:]
    req.sessions.extend([s] * 50_001)


def _too_many_slots(req: pb.OptimizeRequest) -> None:
    req.options.slot_length.FromTimedelta(timedelta(minutes=1))
    req.options.horizon.FromTimedelta(timedelta(hours=168))


def _dup_connector(req: pb.OptimizeRequest) -> None:
    req.site.connectors[1].id = req.site.connectors[0].id


def _dup_session(req: pb.OptimizeRequest) -> None:
    req.sessions[1].id = req.sessions[0].id


def _backwards(req: pb.OptimizeRequest) -> None:
    s = req.sessions[0]
    s.departure.CopyFrom(ts(s.arrival.ToDatetime() - timedelta(hours=1)))


def _no_arrival(req: pb.OptimizeRequest) -> None:
    req.sessions[0].ClearField("arrival")


def _bad_now(req: pb.OptimizeRequest) -> None:
    req.now.seconds = 2**62


def _event_nan(req: pb.OptimizeRequest) -> None:
    req.signals.events.append(make_event("x", math.nan))


def _event_both(req: pb.OptimizeRequest) -> None:
    ev = make_event("x", 10.0)
    ev.reduction_kw = 5.0
    req.signals.events.append(ev)


def _ocpp(**charger: Any) -> Callable[[pb.OptimizeRequest], None]:
    """OCPP options with one charger per connector, the first one edited."""
    def fn(req: pb.OptimizeRequest) -> None:
        for k, c in enumerate(req.site.connectors):
            req.ocpp.chargers.add(connector=c.id, station_id=f"st{k}")
        for name, value in charger.items():
            if name == "transaction_ids":
                req.ocpp.transaction_ids.update(value)
            else:
                setattr(req.ocpp.chargers[0], name, value)
    return fn


def _put_site_ocpp(**charger: Any) -> Callable[[], pb.PutSiteRequest]:
    def build() -> pb.PutSiteRequest:
        req = pb.PutSiteRequest(site=make_site(SITE, 40.0, 2), options=make_options())
        req.ocpp.chargers.add(connector="c0")
        for name, value in charger.items():
            if name == "transaction_ids":
                req.ocpp.transaction_ids.update(value)
            else:
                setattr(req.ocpp.chargers[0], name, value)
        return req
    return build


def _oversized() -> pb.OptimizeRequest:
    req = optimize_request("big", 40.0, n=1)
    req.sessions[0].id = "x" * (17 * 1024 * 1024)
    return req


def start(session: pb.Session, site_id: str = SITE) -> Callable[[], pb.StartSessionRequest]:
    return lambda: pb.StartSessionRequest(site_id=site_id, session=session)


def submit(event: pb.CurtailmentEvent, site_id: str = SITE) -> Callable[[], Any]:
    return lambda: pb.SubmitEventRequest(site_id=site_id, event=event)


def _backwards_session() -> pb.Session:
    s = make_session("s9", "c1", T0)
    s.departure.CopyFrom(ts(T0 - timedelta(hours=1)))
    return s


def _site_without_c0() -> pb.PutSiteRequest:
    site = make_site(SITE, 40.0, 2)
    del site.connectors[0]
    return pb.PutSiteRequest(site=site, options=make_options())


def _site_without_grid_node() -> pb.PutSiteRequest:
    site = make_site(SITE, 40.0, 2)
    site.nodes[0].id = "main"
    for c in site.connectors:
        c.node = "main"
    return pb.PutSiteRequest(site=site, options=make_options())


def _both_event_limits() -> pb.CurtailmentEvent:
    ev = make_event("ev2", 10.0)
    ev.reduction_kw = 3.0
    return ev


def _capacity(node: str, value: float = 20.0) -> pb.CapacityLimit:
    return pb.CapacityLimit(node=node, start=ts(T0), end=ts(T0 + timedelta(hours=2)),
                            limit_kw=value)


def _price(value: float) -> pb.TimeValue:
    return pb.TimeValue(start=ts(T0), end=ts(T0 + timedelta(hours=2)), value=value)


def _update(**kw: Any) -> Callable[[], pb.UpdateSessionRequest]:
    def build() -> pb.UpdateSessionRequest:
        req = pb.UpdateSessionRequest(site_id=SITE, session_id=kw.pop("session_id", "s1"))
        for k, v in kw.items():
            if k == "departure":
                req.departure.CopyFrom(v)
            else:
                setattr(req, k, v)
        return req
    return build


#: Raw bytes: a Site whose id is the invalid UTF-8 byte 0xff (a proto3 string must be UTF-8).
BAD_UTF8 = b"\x0a\x03\x0a\x01\xff"


@dataclass(frozen=True)
class Case:
    name: str
    service: str
    method: str
    build: Callable[[], Any]
    code: grpc.StatusCode
    detail: tuple[str, str] | None  # (kind, value): field / resource / subject


INV = grpc.StatusCode.INVALID_ARGUMENT
CASES = [
    # --- Optimize: numbers ---
    Case("nan energy", CSMS, "Optimize",
         opt(fn=_set("sessions.0.energy_requested_kwh", math.nan)), INV,
         ("field", "sessions[0].energy_requested_kwh")),
    Case("negative max current", CSMS, "Optimize",
         opt(fn=_set("site.connectors.0.max_current_a", -16.0)), INV,
         ("field", "site.connectors[0].max_current_a")),
    Case("+inf phase limit", CSMS, "Optimize",
         opt(fn=_set("site.nodes.0.phase_limit_a.0", math.inf)), INV,
         ("field", "site.nodes[0].phase_limit_a[0]")),
    Case("huge power limit", CSMS, "Optimize",
         opt(fn=_set("site.nodes.0.power_limit_kw", 1e300)), INV,
         ("field", "site.nodes[0].power_limit_kw")),
    Case("energy in Wh", CSMS, "Optimize",
         opt(fn=_set("sessions.0.energy_requested_kwh", 60_000.0)), INV,
         ("field", "sessions[0].energy_requested_kwh")),
    Case("vehicle phases 2", CSMS, "Optimize",
         opt(fn=_set("sessions.0.vehicle_phases", 2)), INV,
         ("field", "sessions[0].vehicle_phases")),
    # --- Optimize: identity and references ---
    Case("duplicate connector id", CSMS, "Optimize", opt(fn=_dup_connector), INV,
         ("field", "site.connectors[1].id")),
    Case("duplicate session id", CSMS, "Optimize", opt(fn=_dup_session), INV,
         ("field", "sessions[1].id")),
    Case("node cycle", CSMS, "Optimize", opt(fn=_cycle), INV, ("field", "site.nodes[1].parent")),
    Case("unknown parent", CSMS, "Optimize",
         opt(fn=lambda r: r.site.nodes.append(pb.Node(id="p", parent="nowhere"))), INV,
         ("field", "site.nodes[1].parent")),
    Case("unknown connector", CSMS, "Optimize",
         opt(fn=_set("sessions.0.connector", "c99")), INV, ("field", "sessions[0].connector")),
    Case("unknown node", CSMS, "Optimize",
         opt(fn=_set("site.connectors.0.node", "n99")), INV, ("field", "site.connectors[0].node")),
    Case("empty site id", CSMS, "Optimize", opt(fn=_set("site.id", "")), INV,
         ("field", "site.id")),
    # --- Optimize: time ---
    Case("departure before arrival", CSMS, "Optimize", opt(fn=_backwards), INV,
         ("field", "sessions[0].departure")),
    Case("missing arrival", CSMS, "Optimize", opt(fn=_no_arrival), INV,
         ("field", "sessions[0].arrival")),
    Case("now out of range", CSMS, "Optimize", opt(fn=_bad_now), INV, ("field", "now")),
    Case("fractional slot", CSMS, "Optimize",
         opt(fn=lambda r: r.options.slot_length.FromTimedelta(timedelta(seconds=450))), INV,
         ("field", "options.slot_length")),
    # --- Optimize: enums, sizes, bytes ---
    Case("unknown mode enum", CSMS, "Optimize", opt(fn=_set("options.mode", 99)), INV,
         ("field", "options.mode")),
    Case("unknown wiring enum", CSMS, "Optimize",
         opt(fn=_set("site.connectors.0.wiring", 7)), INV,
         ("field", "site.connectors[0].wiring")),
    Case("too many sessions", CSMS, "Optimize", opt(fn=_too_many_sessions), INV,
         ("field", "sessions")),
    Case("too many slots", CSMS, "Optimize", opt(fn=_too_many_slots), INV,
         ("field", "options.horizon")),
    Case("polygon sides 3", CSMS, "Optimize",
         opt(fn=_set("options.phasor_polygon_sides", 3)), INV,
         ("field", "options.phasor_polygon_sides")),
    Case("event nan limit", CSMS, "Optimize", opt(fn=_event_nan), INV,
         ("field", "signals.events[0].limit_kw")),
    Case("event limit and reduction", CSMS, "Optimize", opt(fn=_event_both), INV,
         ("field", "signals.events[0]")),
    Case("oversized message", CSMS, "Optimize", _oversized, INV, ("field", "")),
    Case("not protobuf", CSMS, "Optimize", lambda: b"\xff\xff\xff\xff", INV, ("field", "")),
    Case("invalid utf-8", CSMS, "Optimize", lambda: BAD_UTF8, INV, ("field", "")),
    # --- Optimize: OCPP options ---
    Case("ocpp version 1.5", CSMS, "Optimize", opt(fn=_ocpp(ocpp_version="1.5")), INV,
         ("field", "ocpp.chargers[0].ocpp_version")),
    Case("ocpp zero periods", CSMS, "Optimize", opt(fn=_ocpp(max_periods=0)), INV,
         ("field", "ocpp.chargers[0].max_periods")),
    Case("ocpp resolution 0.05", CSMS, "Optimize", opt(fn=_ocpp(limit_resolution=0.05)), INV,
         ("field", "ocpp.chargers[0].limit_resolution")),
    Case("ocpp unknown connector", CSMS, "Optimize", opt(fn=_ocpp(connector="c9")), INV,
         ("field", "ocpp.chargers[0].connector")),
    Case("ocpp unknown rate unit", CSMS, "Optimize", opt(fn=_ocpp(rate_unit=9)), INV,
         ("field", "ocpp.chargers[0].rate_unit")),
    Case("ocpp transaction of unknown session", CSMS, "Optimize",
         opt(fn=_ocpp(transaction_ids={"ghost": "1"})), INV,
         ("field", "ocpp.transaction_ids[ghost]")),
    Case("ocpp 1.6 text transaction id", CSMS, "Optimize",
         opt(fn=_ocpp(ocpp_version="1.6", transaction_ids={"s0": "abc"})), INV,
         ("field", "ocpp.transaction_ids[s0]")),
    # --- sites ---
    Case("put site with ocpp transaction ids", CSMS, "PutSite",
         _put_site_ocpp(transaction_ids={"s1": "1"}), INV, ("field", "ocpp.transaction_ids")),
    Case("put site with ocpp on unknown connector", CSMS, "PutSite",
         _put_site_ocpp(connector="c7"), INV, ("field", "ocpp.chargers[0].connector")),
    Case("put site with ocpp negative stack level", CSMS, "PutSite",
         _put_site_ocpp(stack_level_tx=-1), INV, ("field", "ocpp.chargers[0].stack_level_tx")),
    Case("put empty site", CSMS, "PutSite", lambda: pb.PutSiteRequest(site=pb.Site()), INV,
         ("field", "site.id")),
    Case("put no site", CSMS, "PutSite", lambda: pb.PutSiteRequest(), INV, ("field", "site")),
    Case("put site dropping a used connector", CSMS, "PutSite", _site_without_c0,
         grpc.StatusCode.FAILED_PRECONDITION, ("subject", "stored session 's1'.connector")),
    Case("put site dropping an event's node", CSMS, "PutSite", _site_without_grid_node,
         grpc.StatusCode.FAILED_PRECONDITION, ("subject", "stored event 'ev1'.node")),
    Case("get empty id", CSMS, "GetSite", lambda: pb.GetSiteRequest(site_id=""), INV,
         ("field", "site_id")),
    Case("get blank id", CSMS, "GetPlan", lambda: pb.GetPlanRequest(site_id="   "), INV,
         ("field", "site_id")),
    Case("get huge id", CSMS, "GetSite", lambda: pb.GetSiteRequest(site_id="x" * 300), INV,
         ("field", "site_id")),
    Case("delete unknown site", CSMS, "DeleteSite",
         lambda: pb.DeleteSiteRequest(site_id="nope"), grpc.StatusCode.NOT_FOUND,
         ("resource", "site")),
    Case("plan of unknown site", CSMS, "GetPlan", lambda: pb.GetPlanRequest(site_id="nope"),
         grpc.StatusCode.NOT_FOUND, ("resource", "site")),
    Case("watch unknown site", CSMS, "WatchPlans",
         lambda: pb.WatchPlansRequest(site_ids=["nope"]), grpc.StatusCode.NOT_FOUND,
         ("resource", "site")),
    # --- sessions ---
    Case("start on unknown site", CSMS, "StartSession",
         start(make_session("s2", "c1", T0), "nope"), grpc.StatusCode.NOT_FOUND,
         ("resource", "site")),
    Case("duplicate session start", CSMS, "StartSession", start(make_session("s1", "c1", T0)),
         grpc.StatusCode.ALREADY_EXISTS, ("resource", "session")),
    Case("start on unknown connector", CSMS, "StartSession",
         start(make_session("s2", "c7", T0)), INV, ("field", "session.connector")),
    Case("start overlapping a stored stay", CSMS, "StartSession",
         start(make_session("s2", "c0", T0 + timedelta(hours=1))), INV,
         ("field", "session.arrival")),
    Case("start running into a stored stay", CSMS, "StartSession",
         start(make_session("s2", "c0", T0 - timedelta(hours=1))), INV,
         ("field", "session.departure")),
    Case("start departing before arrival", CSMS, "StartSession", start(_backwards_session()),
         INV, ("field", "session.departure")),
    Case("start with nan energy", CSMS, "StartSession",
         start(make_session("s2", "c1", T0, kwh=math.nan)), INV,
         ("field", "session.energy_requested_kwh")),
    Case("start with blank transaction id", CSMS, "StartSession",
         lambda: pb.StartSessionRequest(site_id=SITE, session=make_session("s2", "c1", T0),
                                        transaction_id="  "), INV, ("field", "transaction_id")),
    Case("start without session", CSMS, "StartSession",
         lambda: pb.StartSessionRequest(site_id=SITE), INV, ("field", "session")),
    Case("update departing before arrival", CSMS, "UpdateSession",
         _update(departure=ts(T0 - timedelta(hours=2))), INV, ("field", "departure")),
    Case("update negative delivered", CSMS, "UpdateSession",
         _update(energy_delivered_kwh=-1.0), INV, ("field", "energy_delivered_kwh")),
    Case("update unknown session", CSMS, "UpdateSession",
         _update(session_id="ghost", energy_delivered_kwh=1.0), grpc.StatusCode.NOT_FOUND,
         ("resource", "session")),
    Case("stop unknown session", CSMS, "StopSession",
         lambda: pb.StopSessionRequest(site_id=SITE, session_id="ghost"),
         grpc.StatusCode.NOT_FOUND, ("resource", "session")),
    # --- grid operator ---
    Case("event on unknown node", GRID, "SubmitEvent", submit(make_event("ev2", 10.0, node="x")),
         INV, ("field", "event.node")),
    Case("event with nan limit", GRID, "SubmitEvent", submit(make_event("ev2", math.nan)), INV,
         ("field", "event.limit_kw")),
    Case("event with limit and reduction", GRID, "SubmitEvent", submit(_both_event_limits()),
         INV, ("field", "event")),
    Case("event with empty id", GRID, "SubmitEvent", submit(make_event("", 10.0)), INV,
         ("field", "event.id")),
    Case("lower event modification", GRID, "SubmitEvent", submit(make_event("ev1", 30.0, 4)),
         grpc.StatusCode.FAILED_PRECONDITION, ("subject", "event.modification")),
    Case("event on unknown site", GRID, "SubmitEvent", submit(make_event("e", 10.0), "nope"),
         grpc.StatusCode.NOT_FOUND, ("resource", "site")),
    Case("cancel unknown event", GRID, "CancelEvent",
         lambda: pb.CancelEventRequest(site_id=SITE, event_id="ghost"),
         grpc.StatusCode.NOT_FOUND, ("resource", "event")),
    Case("list events of unknown site", GRID, "ListEvents",
         lambda: pb.ListEventsRequest(site_id="nope"), grpc.StatusCode.NOT_FOUND,
         ("resource", "site")),
    Case("capacity for another node", GRID, "SetCapacityForecast",
         lambda: pb.SetCapacityForecastRequest(site_id=SITE, node="grid",
                                               capacity=[_capacity("panel")]), INV,
         ("field", "capacity[0].node")),
    Case("capacity for unknown node", GRID, "SetCapacityForecast",
         lambda: pb.SetCapacityForecastRequest(site_id=SITE, node="panel",
                                               capacity=[_capacity("panel")]), INV,
         ("field", "node")),
    Case("capacity negative", GRID, "SetCapacityForecast",
         lambda: pb.SetCapacityForecastRequest(site_id=SITE, node="grid",
                                               capacity=[_capacity("grid", -5.0)]), INV,
         ("field", "capacity[0].limit_kw")),
    Case("nan price", GRID, "SetPrices",
         lambda: pb.SetPricesRequest(site_id=SITE, prices=[_price(math.nan)]), INV,
         ("field", "prices[0].value")),
    Case("overlapping prices", GRID, "SetPrices",
         lambda: pb.SetPricesRequest(site_id=SITE, prices=[_price(0.1), _price(0.2)]), INV,
         ("field", "prices[1].start")),
    Case("negative carbon", GRID, "SetPrices",
         lambda: pb.SetPricesRequest(site_id=SITE, carbon=[_price(-1.0)]), INV,
         ("field", "carbon[0].value")),
]


def _call(channel: grpc.Channel, case: Case) -> None:
    path = f"/{case.service}/{case.method}"
    ser: Callable[[Any], bytes] = lambda m: m if isinstance(m, bytes) else m.SerializeToString()  # noqa: E731
    request = case.build()
    if case.method == "WatchPlans":
        it = channel.unary_stream(path, request_serializer=ser,
                                  response_deserializer=pb.PlanUpdate.FromString)(
            request, timeout=30)
        next(it)
    else:
        channel.unary_unary(path, request_serializer=ser,
                            response_deserializer=lambda b: b)(request, timeout=30)


def _details(err: grpc.RpcError) -> tuple[list[str], list[str], list[str]]:
    """(BadRequest fields, ResourceInfo types, PreconditionFailure subjects) of an error."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    fields: list[str] = []
    resources: list[str] = []
    subjects: list[str] = []
    if status is None:
        return fields, resources, subjects
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            fields += [v.field for v in br.field_violations]
        elif d.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            ri = error_details_pb2.ResourceInfo()
            d.Unpack(ri)
            resources.append(ri.resource_type)
        elif d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            d.Unpack(pf)
            subjects += [v.subject for v in pf.violations]
    return fields, resources, subjects


def snapshot(channel: grpc.Channel) -> dict[str, Any]:
    """Everything a client can read of the stored state, as bytes, plus the plan version."""
    csms = pb_grpc.ChargingOptimizerStub(channel)
    grid = pb_grpc.GridOperatorStub(channel)
    sites = csms.ListSites(pb.ListSitesRequest(), timeout=30)
    out: dict[str, Any] = {"sites": sites.SerializeToString(deterministic=True)}
    for sid in sites.site_ids:
        out[f"site/{sid}"] = csms.GetSite(pb.GetSiteRequest(site_id=sid),
                                          timeout=30).SerializeToString(deterministic=True)
        out[f"events/{sid}"] = grid.ListEvents(pb.ListEventsRequest(site_id=sid),
                                               timeout=30).SerializeToString(deterministic=True)
        plan = csms.GetPlan(pb.GetPlanRequest(site_id=sid), timeout=60).plan
        out[f"plan/{sid}"] = (plan.version, [s.session for s in plan.sessions])
    return out


@pytest.fixture(scope="module")
def before(server: RunningServer, channel: grpc.Channel) -> dict[str, Any]:
    # The setup's changes are re-planned in the background (session changes coalesced, the
    # event at once): snapshot only the plan that follows all of them.
    assert server.planner.settled(SITE, PATIENCE_S)
    return snapshot(channel)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_is_refused_with_field(
    channel: grpc.Channel, before: dict[str, Any], case: Case
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, case)
    err = info.value
    assert err.code() == case.code, err.details()
    fields, resources, subjects = _details(err)
    assert case.detail is not None
    kind, value = case.detail
    found = {"field": fields, "resource": resources, "subject": subjects}[kind]
    assert value in found, (err.details(), fields, resources, subjects)
    if kind == "field":
        assert all(f"{f or '(request)'}:" in err.details() for f in fields[:1])


def test_server_healthy_and_state_unchanged_after_the_table(
    channel: grpc.Channel, before: dict[str, Any]
) -> None:
    # Runs after the parametrized table (pytest keeps file order).
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    csms = pb_grpc.ChargingOptimizerStub(channel)
    plan = csms.Optimize(optimize_request("after", 25.0, n=2), timeout=60).plan
    assert plan.site_id == "after" and max_total_current(plan) <= 25.0 + 1e-6
    assert snapshot(channel) == before
