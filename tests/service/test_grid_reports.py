"""GetCompliance and GetFlexibility over gRPC: a real server on a loopback port, a real SQLite file.

Sites (fast mode, 15-min slots, 4 h horizon): one 3-phase 32 A connector on a 32 A grid node,
one car plugged in now until +5 h wanting 95 kWh, more than the 4 h x 22.08 kW = 88.32 kWh the
horizon holds, so it charges at 32 A throughout unless a limit says otherwise. Windows start on
a 15-min boundary (slots are epoch-aligned), so the solver's whole-slot rule adds nothing and
the figures can be worked out by hand.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.model import Problem
from optimizer.core.plan import Plan
from optimizer.core.solve import solve, warmup
from optimizer.service.server import RunningServer, build_server
from optimizer.service.servicers import ServiceConfig

from .test_hostile import _details
from .test_server import PATIENCE_S, make_options, make_session, make_site, now_utc, ts

GRID = "smartcharging.v1.GridOperator"
KW_32A = 32 * 0.69  # 22.08 kW
H = timedelta(hours=1)
T0 = now_utc()
#: First 15-min boundary at least 15 min from now: windows from here are slot-aligned and lie
#: well inside the plan whenever the requests run.
W0 = datetime.fromtimestamp((int(T0.timestamp()) // 900 + 2) * 900, tz=T0.tzinfo)


def _event(eid: str, start: datetime, end: datetime, limit_kw: float,
           node: str = "grid") -> pb.CurtailmentEvent:
    return pb.CurtailmentEvent(id=eid, node=node, start=ts(start), end=ts(end), limit_kw=limit_kw)


def _site(channel: grpc.Channel, site_id: str, *events: pb.CurtailmentEvent,
          node: str = "grid") -> None:
    csms, grid = pb_grpc.ChargingOptimizerStub(channel), pb_grpc.GridOperatorStub(channel)
    site = make_site(site_id, grid_a=32.0, n=1)
    site.nodes[0].id = node
    site.connectors[0].node = node
    csms.PutSite(pb.PutSiteRequest(site=site, options=make_options(hours=4.0)), timeout=30)
    csms.StartSession(pb.StartSessionRequest(
        site_id=site_id, session=make_session("s0", "c0", T0, kwh=95.0)), timeout=30)
    for ev in events:
        grid.SubmitEvent(pb.SubmitEventRequest(site_id=site_id, event=ev), timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("reports") / "r.db",
                       refresh=False)
    assert srv.wait_ready(PATIENCE_S)
    yield srv
    srv.stop(1.0)


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    # "dso-a": a 4 kW event for the hour from W0, one past the horizon's end, one cancelled.
    _site(ch, "dso-a", _event("ev-4kw", W0, W0 + H, 4.0),
          _event("ev-late", T0 + 3 * H, T0 + 7 * H, 15.0), _event("ev-gone", W0, W0 + H, 1.0))
    pb_grpc.GridOperatorStub(ch).CancelEvent(
        pb.CancelEventRequest(site_id="dso-a", event_id="ev-gone"), timeout=30)
    _site(ch, "dso-f")  # no events: flexibility of today's plan
    # another tenant, whose names must never show up in answers about the others
    _site(ch, "tenant-b", _event("secret-ev", W0, W0 + H, 3.0, node="secret-panel"),
          node="secret-panel")
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def grid(channel: grpc.Channel) -> pb_grpc.GridOperatorStub:
    return pb_grpc.GridOperatorStub(channel)


def snapshot(channel: grpc.Channel) -> dict[str, Any]:
    """What a client can read of the stored state, and each site's plan version."""
    csms, grid = pb_grpc.ChargingOptimizerStub(channel), pb_grpc.GridOperatorStub(channel)
    out: dict[str, Any] = {}
    for sid in csms.ListSites(pb.ListSitesRequest(), timeout=30).site_ids:
        out[f"site/{sid}"] = csms.GetSite(pb.GetSiteRequest(site_id=sid),
                                          timeout=30).SerializeToString(deterministic=True)
        out[f"events/{sid}"] = grid.ListEvents(pb.ListEventsRequest(site_id=sid),
                                               timeout=30).SerializeToString(deterministic=True)
        out[f"plan/{sid}"] = csms.GetPlan(pb.GetPlanRequest(site_id=sid), timeout=60).plan.version
    return out


@pytest.fixture(scope="module")
def before(channel: grpc.Channel) -> dict[str, Any]:
    last, now = None, snapshot(channel)
    while now != last:  # settled: no re-plan still coming from the setup's changes
        time.sleep(0.3)
        last, now = now, snapshot(channel)
    return now


def _dt(t: Any) -> datetime:
    return t.ToDatetime(tzinfo=W0.tzinfo)


# --- GetCompliance -------------------------------------------------------------------------------


def test_compliance_of_a_4kw_hour(grid: pb_grpc.GridOperatorStub, before: dict[str, Any]) -> None:
    # 4 kW / 0.69 = 5.8 A, below the 6 A minimum: the car pauses for the event's hour. Without
    # the event it would charge at 32 A (22.08 kW) right through it.
    rec = grid.GetCompliance(pb.GetComplianceRequest(site_id="dso-a", event_id="ev-4kw"),
                             timeout=60).compliance
    assert (rec.site_id, rec.event.id, rec.event.limit_kw) == ("dso-a", "ev-4kw", 4.0)
    assert rec.limit_kw == 4.0 and rec.fully_covered
    assert (_dt(rec.covered_from), _dt(rec.covered_until)) == (W0, W0 + H)
    assert [(_dt(i.start), _dt(i.end)) for i in rec.intervals] == [
        (W0 + k * 15 * timedelta(minutes=1), W0 + (k + 1) * 15 * timedelta(minutes=1))
        for k in range(4)]
    for i in rec.intervals:
        assert (i.import_kw, i.limit_kw, i.over_kw) == (0.0, 4.0, 0.0)
        assert list(i.phase_current_a) == [0.0, 0.0, 0.0]  # the grid node has phase limits
        assert i.import_without_event_kw == pytest.approx(KW_32A)
    assert rec.kwh_over == 0.0 and rec.peak_import_kw == 0.0 and rec.energy_kwh == 0.0
    assert rec.energy_without_event_kwh == pytest.approx(KW_32A)
    assert [(c.connector, list(c.sessions)) for c in rec.lowered] == [("c0", ["s0"])]
    assert rec.lowered[0].max_reduction_a == pytest.approx(32.0)
    assert rec.lowered[0].energy_kwh == 0.0
    assert rec.lowered[0].energy_without_event_kwh == pytest.approx(KW_32A)
    assert rec.solver == rec.counterfactual_solver == "numba-fast"
    assert _dt(rec.plan_end) - _dt(rec.plan_start) == 4 * H


def test_compliance_of_an_event_past_the_horizon_says_how_far_it_is_covered(
    grid: pb_grpc.GridOperatorStub, before: dict[str, Any],
) -> None:
    rec = grid.GetCompliance(pb.GetComplianceRequest(site_id="dso-a", event_id="ev-late"),
                             timeout=60).compliance
    assert not rec.fully_covered
    assert rec.covered_until == rec.plan_end and _dt(rec.covered_from) == T0 + 3 * H
    assert rec.intervals[0].start == rec.covered_from
    assert rec.intervals[-1].end == rec.covered_until
    assert rec.kwh_over == 0.0
    assert all(i.import_kw <= 15.0 + 1e-6 and i.limit_kw == 15.0 for i in rec.intervals)


# --- GetFlexibility ------------------------------------------------------------------------------


def test_flexibility_default_levels(grid: pb_grpc.GridOperatorStub,
                                    before: dict[str, Any]) -> None:
    # Today the car charges at 32 A all the time: 88.32 kWh, 6.68 kWh short; peak 22.08 kW in
    # the window. Under a cap c for that hour it gets 3 x 22.08 + c: 22.08 - c kWh more unmet.
    resp = grid.GetFlexibility(pb.GetFlexibilityRequest(site_id="dso-f", node="grid",
                                                        start=ts(W0), end=ts(W0 + H)),
                               timeout=60)
    assert (resp.site_id, resp.node, resp.min_feasible_kw) == ("dso-f", "grid", 0.0)
    assert resp.baseline_peak_kw == pytest.approx(KW_32A)
    assert resp.baseline_unmet_kwh == pytest.approx(95 - 4 * KW_32A, abs=0.05)
    assert resp.baseline_sessions_short == 1
    assert (_dt(resp.covered_from), _dt(resp.covered_until)) == (W0, W0 + H)
    caps = [KW_32A * f for f in (1.0, 0.75, 0.5, 0.25, 0.0)]
    assert [lv.cap_kw for lv in resp.levels] == pytest.approx(caps)
    assert [lv.peak_kw for lv in resp.levels] == pytest.approx(caps)
    assert [lv.extra_unmet_kwh for lv in resp.levels] == pytest.approx(
        [KW_32A - c for c in caps], abs=0.05)
    assert [lv.unmet_kwh for lv in resp.levels] == pytest.approx(
        [95 - 3 * KW_32A - c for c in caps], abs=0.05)
    assert [lv.sessions_short for lv in resp.levels] == [1] * 5
    assert [lv.newly_short for lv in resp.levels] == [0] * 5  # short today already


def test_flexibility_levels_asked_for_in_their_order(
    grid: pb_grpc.GridOperatorStub, before: dict[str, Any],
) -> None:
    resp = grid.GetFlexibility(pb.GetFlexibilityRequest(
        site_id="dso-f", node="grid", start=ts(W0), end=ts(W0 + H),
        levels_kw=[0.0, 11.04, 1e6]), timeout=60)
    assert [lv.cap_kw for lv in resp.levels] == [0.0, 11.04, 1e6]
    assert [lv.peak_kw for lv in resp.levels] == pytest.approx([0.0, 11.04, KW_32A])
    assert resp.levels[0].unmet_kwh == pytest.approx(95 - 3 * KW_32A, abs=0.05)
    assert resp.levels[1].extra_unmet_kwh == pytest.approx(KW_32A - 11.04, abs=0.05)
    assert resp.levels[2].extra_unmet_kwh == pytest.approx(0.0, abs=0.05)


# --- hostile requests ----------------------------------------------------------------------------


def flex(**kw: Any) -> Callable[[], pb.GetFlexibilityRequest]:
    def build() -> pb.GetFlexibilityRequest:
        req = pb.GetFlexibilityRequest(site_id="dso-f", node="grid", start=ts(W0),
                                       end=ts(W0 + H))
        for name, value in kw.items():
            if name == "levels_kw":
                req.levels_kw[:] = value
            elif name in ("start", "end"):
                if value is None:
                    req.ClearField(name)
                else:
                    getattr(req, name).CopyFrom(value)
            else:
                setattr(req, name, value)
        return req
    return build


def comp(site_id: str = "dso-a", event_id: str = "ev-4kw") -> Callable[[], Any]:
    return lambda: pb.GetComplianceRequest(site_id=site_id, event_id=event_id)


def _far() -> Any:
    t = ts(W0)
    t.seconds = 2**62
    return t


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    build: Callable[[], Any]
    code: grpc.StatusCode
    detail: tuple[str, str]  # ("field", path) or ("resource", type)


INV, NF = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
CASES = [
    Case("compliance: unknown site", "GetCompliance", comp("nope"), NF, ("resource", "site")),
    Case("compliance: unknown event", "GetCompliance", comp(event_id="ghost"), NF,
         ("resource", "event")),
    Case("compliance: cancelled event", "GetCompliance", comp(event_id="ev-gone"), NF,
         ("resource", "event")),
    Case("compliance: another tenant's event", "GetCompliance", comp(event_id="secret-ev"), NF,
         ("resource", "event")),
    Case("compliance: empty site id", "GetCompliance", comp(""), INV, ("field", "site_id")),
    Case("compliance: blank event id", "GetCompliance", comp(event_id="  "), INV,
         ("field", "event_id")),
    Case("compliance: huge event id", "GetCompliance", comp(event_id="x" * 300), INV,
         ("field", "event_id")),
    Case("flexibility: unknown site", "GetFlexibility", flex(site_id="nope"), NF,
         ("resource", "site")),
    Case("flexibility: unknown node", "GetFlexibility", flex(node="panel-9"), NF,
         ("resource", "node")),
    Case("flexibility: another tenant's node", "GetFlexibility", flex(node="secret-panel"), NF,
         ("resource", "node")),
    Case("flexibility: empty node", "GetFlexibility", flex(node=""), INV, ("field", "node")),
    Case("flexibility: end before start", "GetFlexibility", flex(end=ts(W0 - H)), INV,
         ("field", "end")),
    Case("flexibility: empty window", "GetFlexibility", flex(end=ts(W0)), INV, ("field", "end")),
    Case("flexibility: window over a week", "GetFlexibility",
         flex(end=ts(W0 + timedelta(days=7, seconds=1))), INV, ("field", "end")),
    Case("flexibility: no start", "GetFlexibility", flex(start=None), INV, ("field", "start")),
    Case("flexibility: start out of range", "GetFlexibility", flex(start=_far()), INV,
         ("field", "start")),
    Case("flexibility: nan level", "GetFlexibility", flex(levels_kw=[5.0, math.nan]), INV,
         ("field", "levels_kw[1]")),
    Case("flexibility: infinite level", "GetFlexibility", flex(levels_kw=[math.inf]), INV,
         ("field", "levels_kw[0]")),
    Case("flexibility: negative level", "GetFlexibility", flex(levels_kw=[-1.0]), INV,
         ("field", "levels_kw[0]")),
    Case("flexibility: huge level", "GetFlexibility", flex(levels_kw=[1e300]), INV,
         ("field", "levels_kw[0]")),
    Case("flexibility: 17 levels", "GetFlexibility", flex(levels_kw=[1.0] * 17), INV,
         ("field", "levels_kw")),
    Case("flexibility: a million levels", "GetFlexibility", flex(levels_kw=[1.0] * 1_000_000),
         INV, ("field", "levels_kw")),
    Case("flexibility: not protobuf", "GetFlexibility", lambda: b"\xff\xff\xff", INV,
         ("field", "")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request_is_refused(channel: grpc.Channel, before: dict[str, Any],
                                    case: Case) -> None:
    ser: Callable[[Any], bytes] = lambda m: m if isinstance(m, bytes) else m.SerializeToString()  # noqa: E731
    call = channel.unary_unary(f"/{GRID}/{case.method}", request_serializer=ser,
                               response_deserializer=lambda b: b)
    request = ser(case.build())
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=60)
    err = info.value
    assert err.code() == case.code, err.details()
    fields, resources, _ = _details(err)
    kind, value = case.detail
    assert value in {"field": fields, "resource": resources}[kind], (err.details(), fields)
    # no name the request did not send comes back: not another tenant's site, node or event,
    # nor another site's (the answer echoes only what the caller named)
    for name in ("tenant-b", "secret-panel", "secret-ev", "dso-a", "dso-f", "ev-4kw", "grid"):
        if name.encode() not in request:
            assert name not in (err.details() or ""), err.details()


def test_deadline_already_past_is_deadline_exceeded(grid: pb_grpc.GridOperatorStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        grid.GetFlexibility(flex(levels_kw=[1.0] * 16)(), timeout=0.02)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_nothing_stored_changed_and_the_server_still_serves(
    channel: grpc.Channel, grid: pb_grpc.GridOperatorStub, before: dict[str, Any],
) -> None:
    # Runs after the cases above (pytest keeps file order): no report stored anything or made
    # the planner re-plan (plan versions are unchanged; the server runs with refresh off).
    assert snapshot(channel) == before
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    rec = grid.GetCompliance(comp()(), timeout=60).compliance
    assert rec.kwh_over == 0.0 and rec.lowered[0].max_reduction_a == pytest.approx(32.0)


# --- admission and deadlines (a server whose report solves can be held) --------------------------


class HeldSolve:
    """The real ``solve``; calls from RPC threads record their budget and may be held."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.budgets: list[float | None] = []

    def __call__(self, problem: Problem, *, time_limit_s: float | None = None) -> Plan:
        if threading.current_thread().name.startswith("rpc"):
            self.budgets.append(time_limit_s)
            self.entered.release()
            self.gate.wait(PATIENCE_S)
        return solve(problem, time_limit_s=time_limit_s)


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[grpc.Channel, HeldSolve]]:
    fn = HeldSolve()
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("held") / "h.db", refresh=False,
                       config=ServiceConfig(max_concurrent_optimize=1), solve_fn=fn,
                       warmup_fn=warmup)
    assert srv.wait_ready(PATIENCE_S)
    ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    _site(ch, "dso-h", _event("ev", W0, W0 + H, 4.0))
    yield ch, fn
    fn.gate.set()
    ch.close()
    srv.stop(1.0)


def test_a_running_report_takes_the_solve_slot(held: tuple[grpc.Channel, HeldSolve]) -> None:
    ch, fn = held
    grid = pb_grpc.GridOperatorStub(ch)
    fn.gate.clear()
    first = grid.GetFlexibility.future(flex(site_id="dso-h")(), timeout=PATIENCE_S)
    assert fn.entered.acquire(timeout=PATIENCE_S)
    try:
        for call in (lambda: grid.GetCompliance(comp("dso-h", "ev")(), timeout=PATIENCE_S),
                     lambda: grid.GetFlexibility(flex(site_id="dso-h")(), timeout=PATIENCE_S)):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        fn.gate.set()
    assert len(first.result().levels) == 5
    assert grid.GetCompliance(comp("dso-h", "ev")(), timeout=60).compliance.event.id == "ev"


def test_the_deadline_is_shared_between_the_solves(held: tuple[grpc.Channel, HeldSolve]) -> None:
    ch, fn = held
    grid = pb_grpc.GridOperatorStub(ch)
    fn.budgets.clear()
    grid.GetFlexibility(flex(site_id="dso-h", levels_kw=[20.0, 15.0, 10.0, 5.0, 0.0])(),
                        timeout=6.0)
    # today's plan + 5 levels: each solve gets at most an even share of what is left of the
    # 6 s for it and the solves after it (so all of them together fit), the first a sixth
    assert len(fn.budgets) == 6
    assert all(b is not None and 0 < b * (6 - k) <= 6.05
               for k, b in enumerate(fn.budgets)), fn.budgets
    assert fn.budgets[0] is not None and fn.budgets[0] <= 1.01
    fn.budgets.clear()
    grid.GetCompliance(comp("dso-h", "ev")())  # no deadline: each solve gets the site's 5 s
    assert fn.budgets == [5.0, 5.0]
