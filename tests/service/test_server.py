"""The gRPC service end to end: a real server on a loopback port with a real SQLite file.

Every RPC of both services is called and its answer checked against values worked out by hand
(limits, versions, stored content). Process-level behaviour (kill -9 during a burst of writes,
SIGTERM with a stream open) runs the server as a subprocess.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.model import Problem
from optimizer.core.plan import Plan
from optimizer.core.solve import solve, warmup
from optimizer.service.server import RunningServer, build_server
from optimizer.service.servicers import ServiceConfig

from ..paths import REPO

#: 3-phase 230 V: kW per ampere of per-phase current.
KW_PER_A = 3 * 230 / 1000
#: Generous bound for "eventually" (a new plan, a subprocess start); never asserted as a timing.
PATIENCE_S = 120.0


# --- builders ------------------------------------------------------------------------------------


def ts(d: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(d)
    return t


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def make_site(site_id: str, grid_a: float = 40.0, n: int = 4) -> pb.Site:
    """One grid node with a per-phase limit and ``n`` 3-phase 32 A connectors below it."""
    return pb.Site(
        id=site_id,
        nodes=[pb.Node(id="grid", phase_limit_a=[grid_a] * 3, voltage_v=230.0)],
        connectors=[
            pb.Connector(id=f"c{k}", node="grid", max_current_a=32.0, min_current_a=6.0,
                         current_step_a=0.1, phases=3, phase_rotation="L1L2L3",
                         wiring=pb.WIRING_WYE, voltage_v=230.0)
            for k in range(n)
        ],
    )


def make_options(mode: pb.Mode = pb.MODE_FAST, hours: float = 6.0) -> pb.Options:
    o = pb.Options(mode=mode)
    o.slot_length.FromTimedelta(timedelta(minutes=15))
    o.horizon.FromTimedelta(timedelta(hours=hours))
    o.time_limit.FromTimedelta(timedelta(seconds=5))
    return o


def make_session(sid: str, connector: str, start: datetime, hours: float = 5.0,
                 kwh: float = 60.0) -> pb.Session:
    """A 3-phase car that wants more than it can get: limits bind for its whole stay."""
    return pb.Session(id=sid, connector=connector, arrival=ts(start),
                      departure=ts(start + timedelta(hours=hours)), energy_requested_kwh=kwh,
                      vehicle_phases=3)


def make_event(eid: str, limit_kw: float, modification: int = 0, node: str = "grid",
               start: datetime | None = None, hours: float = 48.0) -> pb.CurtailmentEvent:
    t0 = (start or now_utc()) - timedelta(hours=1)
    return pb.CurtailmentEvent(id=eid, node=node, start=ts(t0),
                               end=ts(t0 + timedelta(hours=hours)), limit_kw=limit_kw,
                               modification=modification)


def optimize_request(site_id: str, grid_a: float, n: int = 4,
                     mode: pb.Mode = pb.MODE_FAST) -> pb.OptimizeRequest:
    t0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    return pb.OptimizeRequest(
        site=make_site(site_id, grid_a, n),
        sessions=[make_session(f"s{k}", f"c{k}", t0) for k in range(n)],
        now=ts(t0),
        options=make_options(mode),
    )


# --- plan checks ---------------------------------------------------------------------------------


def _dt(t: Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def current_at(profile: pb.ConnectorProfile, t: datetime) -> float:
    value = 0.0
    for p in profile.points:
        if _dt(p.start) <= t:
            value = p.current_a
    return value


def max_total_current(plan: pb.Plan) -> float:
    """Largest sum of connector currents at any change point (= phase current: all 3-phase,
    same rotation)."""
    times = sorted({_dt(p.start) for prof in plan.profiles for p in prof.points})
    return max((sum(current_at(prof, t) for prof in plan.profiles) for t in times), default=0.0)


def max_connector_current(plan: pb.Plan) -> float:
    return max((p.current_a for prof in plan.profiles for p in prof.points), default=0.0)


def delivered(plan: pb.Plan) -> float:
    return sum(s.expected_kwh for s in plan.sessions)


# --- server fixture ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("server") / "service.db"
    srv = build_server(port=0, db_path=db, refresh=False)
    assert srv.wait_ready(PATIENCE_S), "server never became SERVING"
    yield srv
    srv.stop(1.0)


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{server.port}",
                               options=[("grpc.max_receive_message_length", 64 << 20)])
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def csms(channel: grpc.Channel) -> pb_grpc.ChargingOptimizerStub:
    return pb_grpc.ChargingOptimizerStub(channel)


@pytest.fixture(scope="module")
def grid(channel: grpc.Channel) -> pb_grpc.GridOperatorStub:
    return pb_grpc.GridOperatorStub(channel)


def next_plan(csms: pb_grpc.ChargingOptimizerStub, site_id: str, after: int) -> pb.Plan:
    """Poll GetPlan until the site's plan version passes ``after`` (the planner is async)."""
    end = time.monotonic() + PATIENCE_S
    while time.monotonic() < end:
        plan = csms.GetPlan(pb.GetPlanRequest(site_id=site_id), timeout=30).plan
        if plan.version > after:
            return plan
        time.sleep(0.01)
    raise AssertionError(f"no plan newer than version {after} for {site_id}")


def put_site(csms: pb_grpc.ChargingOptimizerStub, site: pb.Site,
             options: pb.Options | None = None) -> bool:
    return csms.PutSite(pb.PutSiteRequest(site=site, options=options or make_options()),
                        timeout=30).created


# --- health, reflection --------------------------------------------------------------------------


def test_health_serving_for_server_and_both_services(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", "smartcharging.v1.ChargingOptimizer", "smartcharging.v1.GridOperator"):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, name
    with pytest.raises(grpc.RpcError) as err:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_both_services_and_health(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"smartcharging.v1.ChargingOptimizer", "smartcharging.v1.GridOperator",
            "grpc.health.v1.Health"} <= names
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="smartcharging.v1.GridOperator")]), timeout=10)
    files = [r.file_descriptor_response.file_descriptor_proto for r in responses]
    assert files and files[0], "no descriptor for the GridOperator service"


# --- Optimize ------------------------------------------------------------------------------------


def test_optimize_respects_the_grid_limit(csms: pb_grpc.ChargingOptimizerStub) -> None:
    # 4 cars that each could take 32 A share a 40 A grid connection: at every instant the sum of
    # their currents is at most 40 A, each at most 32 A, and the grid is fully used (they want
    # far more than 40 A x 5 h delivers).
    plan = csms.Optimize(optimize_request("opt", 40.0), timeout=60).plan
    assert plan.site_id == "opt"
    assert {p.connector for p in plan.profiles} == {"c0", "c1", "c2", "c3"}
    assert max_total_current(plan) <= 40.0 + 1e-6
    assert max_connector_current(plan) <= 32.0 + 1e-6
    assert not plan.violations
    assert len(plan.sessions) == 4
    five_hours_at_40a = 40.0 * KW_PER_A * 5.0
    assert delivered(plan) <= five_hours_at_40a + 1e-6
    assert delivered(plan) >= 0.9 * five_hours_at_40a
    assert plan.computed_at.seconds > 0


def test_optimize_deadline_already_past_is_deadline_exceeded(
    csms: pb_grpc.ChargingOptimizerStub,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        csms.Optimize(optimize_request("late", 40.0), timeout=0.02)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_concurrent_clients_get_independent_answers(
    csms: pb_grpc.ChargingOptimizerStub,
) -> None:
    # 8 threads, each with its own site and limit; every answer must match the one computed for
    # that problem alone and respect that problem's limit (not a neighbour's).
    limits = [12.0 + 7.0 * k for k in range(8)]
    requests = [optimize_request(f"conc-{k}", lim) for k, lim in enumerate(limits)]
    alone = [csms.Optimize(r, timeout=60).plan for r in requests]
    results: dict[int, list[pb.Plan]] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            results[k] = [csms.Optimize(requests[k], timeout=60).plan for _ in range(5)]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k, plans in results.items():
        for plan in plans:
            assert plan.site_id == f"conc-{k}"
            assert max_total_current(plan) <= limits[k] + 1e-6
            assert list(plan.profiles) == list(alone[k].profiles)
            assert list(plan.sessions) == list(alone[k].sessions)


# --- sites ---------------------------------------------------------------------------------------


def test_site_round_trip(csms: pb_grpc.ChargingOptimizerStub) -> None:
    site = make_site("rt", grid_a=63.0, n=2)
    opts = make_options(hours=12.0)
    assert put_site(csms, site, opts) is True
    got = csms.GetSite(pb.GetSiteRequest(site_id="rt"), timeout=10)
    assert got.site == site
    assert got.options.horizon.ToTimedelta() == timedelta(hours=12)
    assert got.options.mode == pb.MODE_FAST
    assert "rt" in csms.ListSites(pb.ListSitesRequest(), timeout=10).site_ids

    site.nodes[0].phase_limit_a[:] = [50.0, 50.0, 50.0]
    assert put_site(csms, site, opts) is False  # replaced, not created
    assert csms.GetSite(pb.GetSiteRequest(site_id="rt"), timeout=10).site.nodes[0] \
        .phase_limit_a == [50.0, 50.0, 50.0]

    watch = csms.WatchPlans(pb.WatchPlansRequest(site_ids=["rt"]), timeout=PATIENCE_S)
    assert next(watch).plan.version > 0
    csms.DeleteSite(pb.DeleteSiteRequest(site_id="rt"), timeout=10)
    update = next(watch)
    while update.HasField("plan"):  # plans of the replaced site still on their way
        update = next(watch)
    assert update.site_id == "rt"  # a deleted site's watchers get an update without a plan
    watch.cancel()
    assert "rt" not in csms.ListSites(pb.ListSitesRequest(), timeout=10).site_ids
    for call in (lambda: csms.GetSite(pb.GetSiteRequest(site_id="rt"), timeout=10),
                 lambda: csms.DeleteSite(pb.DeleteSiteRequest(site_id="rt"), timeout=10),
                 lambda: csms.GetPlan(pb.GetPlanRequest(site_id="rt"), timeout=10)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_sessions_start_update_stop_change_the_plan(csms: pb_grpc.ChargingOptimizerStub) -> None:
    put_site(csms, make_site("sess", grid_a=40.0, n=2))
    empty = next_plan(csms, "sess", 0)
    assert max_connector_current(empty) == 0.0 and not empty.sessions

    t0 = now_utc()
    csms.StartSession(pb.StartSessionRequest(site_id="sess",
                                             session=make_session("a", "c0", t0, kwh=5.0)),
                      timeout=10)
    p1 = next_plan(csms, "sess", empty.version)
    assert [s.session for s in p1.sessions] == ["a"]
    assert p1.sessions[0].requested_kwh == pytest.approx(5.0)
    # uncongested: all of it, up to the last slot's rounding to the 0.1 A grid
    assert p1.sessions[0].expected_kwh == pytest.approx(5.0, abs=0.05)
    assert max_connector_current(p1) <= 32.0 + 1e-6

    csms.UpdateSession(pb.UpdateSessionRequest(site_id="sess", session_id="a",
                                               energy_delivered_kwh=2.0), timeout=10)
    p2 = next_plan(csms, "sess", p1.version)
    assert p2.sessions[0].requested_kwh == pytest.approx(3.0)  # 5 wanted, 2 delivered

    csms.StartSession(pb.StartSessionRequest(site_id="sess",
                                             session=make_session("b", "c1", t0, kwh=80.0)),
                      timeout=10)
    p3 = next_plan(csms, "sess", p2.version)
    assert sorted(s.session for s in p3.sessions) == ["a", "b"]
    assert max_total_current(p3) <= 40.0 + 1e-6

    csms.StopSession(pb.StopSessionRequest(site_id="sess", session_id="a"), timeout=10)
    p4 = next_plan(csms, "sess", p3.version)
    assert [s.session for s in p4.sessions] == ["b"]
    with pytest.raises(grpc.RpcError) as err:
        csms.StopSession(pb.StopSessionRequest(site_id="sess", session_id="a"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# --- WatchPlans and the grid operator ------------------------------------------------------------


def test_watch_gets_current_plan_then_new_plan_after_event(
    csms: pb_grpc.ChargingOptimizerStub, grid: pb_grpc.GridOperatorStub,
) -> None:
    put_site(csms, make_site("watch", grid_a=40.0, n=2))
    t0 = now_utc()
    for k in range(2):
        csms.StartSession(pb.StartSessionRequest(
            site_id="watch", session=make_session(f"w{k}", f"c{k}", t0)), timeout=10)
    settled = next_plan(csms, "watch", 0)
    while True:  # wait until the plan reflects both sessions
        if len(settled.sessions) == 2:
            break
        settled = next_plan(csms, "watch", settled.version)
    assert max_total_current(settled) == pytest.approx(40.0, abs=0.2)  # the grid binds

    stream = csms.WatchPlans(pb.WatchPlansRequest(site_ids=["watch"]), timeout=PATIENCE_S)
    try:
        first = next(stream)
        assert first.site_id == "watch"
        assert first.plan.version >= settled.version  # the current plan, at once

        # 11 kW over the whole horizon: 11 / 0.69 = 15.94 A per phase for both cars together.
        out = grid.SubmitEvent(pb.SubmitEventRequest(site_id="watch",
                                                     event=make_event("dso-1", 11.0)), timeout=10)
        assert out.outcome == "APPLIED"
        update = next(stream)
        while max_total_current(update.plan) > 11.0 / KW_PER_A + 1e-6:
            update = next(stream)  # a plan computed from a state read before the event
        assert update.plan.version > first.plan.version
        assert max_total_current(update.plan) <= 11.0 / KW_PER_A + 1e-6
        assert max_total_current(update.plan) >= 11.0 / KW_PER_A - 1.0  # still uses what it can
    finally:
        stream.cancel()

    listed = grid.ListEvents(pb.ListEventsRequest(site_id="watch"), timeout=10).events
    assert [e.id for e in listed] == ["dso-1"] and listed[0].limit_kw == 11.0


def test_event_resubmission_noop_supersede_stale_cancel(
    csms: pb_grpc.ChargingOptimizerStub, grid: pb_grpc.GridOperatorStub,
) -> None:
    put_site(csms, make_site("ev", grid_a=40.0, n=1))

    def submit(limit: float, mod: int) -> str:
        return grid.SubmitEvent(pb.SubmitEventRequest(
            site_id="ev", event=make_event("e1", limit, mod, start=START)), timeout=10).outcome

    START = now_utc()
    assert submit(20.0, 1) == "APPLIED"
    assert submit(20.0, 1) == "UNCHANGED"  # a retry is a no-op
    assert submit(15.0, 2) == "APPLIED"  # a higher modification supersedes
    events = grid.ListEvents(pb.ListEventsRequest(site_id="ev"), timeout=10).events
    assert [(e.id, e.modification, e.limit_kw) for e in events] == [("e1", 2, 15.0)]
    for limit, mod in ((25.0, 1), (30.0, 2)):  # older, or same modification other content
        with pytest.raises(grpc.RpcError) as err:
            submit(limit, mod)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    events = grid.ListEvents(pb.ListEventsRequest(site_id="ev"), timeout=10).events
    assert [(e.modification, e.limit_kw) for e in events] == [(2, 15.0)]

    grid.CancelEvent(pb.CancelEventRequest(site_id="ev", event_id="e1"), timeout=10)
    assert not grid.ListEvents(pb.ListEventsRequest(site_id="ev"), timeout=10).events
    with pytest.raises(grpc.RpcError) as err:
        grid.CancelEvent(pb.CancelEventRequest(site_id="ev", event_id="e1"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:  # a delayed retry cannot resurrect it
        submit(15.0, 2)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert submit(10.0, 3) == "APPLIED"


def test_capacity_forecast_and_prices_change_the_plan(
    csms: pb_grpc.ChargingOptimizerStub, grid: pb_grpc.GridOperatorStub,
) -> None:
    put_site(csms, make_site("cap", grid_a=40.0, n=2))
    t0 = now_utc()
    for k in range(2):
        csms.StartSession(pb.StartSessionRequest(
            site_id="cap", session=make_session(f"k{k}", f"c{k}", t0)), timeout=10)
    plan = next_plan(csms, "cap", 0)
    while len(plan.sessions) < 2:
        plan = next_plan(csms, "cap", plan.version)

    cap = pb.CapacityLimit(node="grid", start=ts(t0 - timedelta(hours=1)),
                           end=ts(t0 + timedelta(hours=48)), phase_limit_a=[20.0, 20.0, 20.0])
    grid.SetCapacityForecast(pb.SetCapacityForecastRequest(site_id="cap", node="grid",
                                                           capacity=[cap]), timeout=10)
    plan = next_plan(csms, "cap", plan.version)
    while max_total_current(plan) > 20.0 + 1e-6:
        plan = next_plan(csms, "cap", plan.version)
    assert max_total_current(plan) >= 19.0

    price = pb.TimeValue(start=ts(t0 - timedelta(hours=1)), end=ts(t0 + timedelta(hours=48)),
                         value=0.5)
    grid.SetPrices(pb.SetPricesRequest(site_id="cap", prices=[price]), timeout=10)
    plan = next_plan(csms, "cap", plan.version)
    while plan.energy_cost == 0.0:
        plan = next_plan(csms, "cap", plan.version)
    assert plan.energy_cost == pytest.approx(0.5 * delivered(plan), rel=1e-6)

    grid.SetCapacityForecast(pb.SetCapacityForecastRequest(site_id="cap", node="grid"),
                             timeout=10)  # empty: the forecast is cleared
    plan = next_plan(csms, "cap", plan.version)
    while max_total_current(plan) <= 20.0 + 1e-6:
        plan = next_plan(csms, "cap", plan.version)
    assert max_total_current(plan) <= 40.0 + 1e-6


# --- admission, deadlines, coalescing (a server whose solve can be held and watched) ------------


class GatedSolve:
    """The real ``solve``, recording each call's time limit and optionally held at a gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.limits: list[float | None] = []
        self.sites: list[str] = []

    def __call__(self, problem: Problem, *, time_limit_s: float | None = None) -> Plan:
        self.limits.append(time_limit_s)
        self.sites.append(problem.site.id)
        self.entered.release()
        self.gate.wait(PATIENCE_S)
        return solve(problem, time_limit_s=time_limit_s)


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, GatedSolve]]:
    fn = GatedSolve()
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("gated") / "g.db", refresh=False,
                       config=ServiceConfig(max_concurrent_optimize=1, max_watchers=1),
                       coalesce_s=0.3, solve_fn=fn, warmup_fn=warmup)
    assert srv.wait_ready(PATIENCE_S)
    yield srv, fn
    fn.gate.set()
    srv.stop(1.0)


class FlakySolve:
    """The real solver, or a failure (as a checker rejection would be) while ``fail`` is set."""

    def __init__(self) -> None:
        self.fail = threading.Event()

    def __call__(self, problem: Problem, *, time_limit_s: float | None = None) -> Plan:
        if self.fail.is_set():
            raise RuntimeError("simulated planning bug")
        return solve(problem, time_limit_s=time_limit_s)


def test_failed_replan_withdraws_the_plan_for_watchers_and_getplan(
    tmp_path: Path,
) -> None:
    fn = FlakySolve()
    srv = build_server(port=0, db_path=tmp_path / "f.db", refresh=False, coalesce_s=0.01,
                       solve_fn=fn, warmup_fn=warmup)
    assert srv.wait_ready(PATIENCE_S)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            csms, grid = pb_grpc.ChargingOptimizerStub(ch), pb_grpc.GridOperatorStub(ch)
            put_site(csms, make_site("fl", grid_a=40.0, n=1))
            csms.StartSession(pb.StartSessionRequest(
                site_id="fl", session=make_session("a", "c0", now_utc())), timeout=10)
            stream = csms.WatchPlans(pb.WatchPlansRequest(site_ids=["fl"]), timeout=PATIENCE_S)
            try:
                first = next(stream)
                while not first.HasField("plan"):
                    first = next(stream)
                fn.fail.set()
                grid.SubmitEvent(pb.SubmitEventRequest(
                    site_id="fl", event=make_event("dso", 5.0)), timeout=10)
                update = next(stream)
                while update.HasField("plan"):  # a plan of the state before the event
                    update = next(stream)
                assert update.site_id == "fl" and "planning failed" in update.withdrawn
                with pytest.raises(grpc.RpcError) as err:
                    csms.GetPlan(pb.GetPlanRequest(site_id="fl"), timeout=10)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                late = csms.WatchPlans(pb.WatchPlansRequest(site_ids=["fl"]), timeout=PATIENCE_S)
                assert next(late).withdrawn == update.withdrawn  # a new watcher learns it too
                late.cancel()

                fn.fail.clear()
                csms.UpdateSession(pb.UpdateSessionRequest(
                    site_id="fl", session_id="a", energy_delivered_kwh=1.0), timeout=10)
                update = next(stream)
                while not update.HasField("plan"):
                    update = next(stream)
                assert not update.withdrawn and update.plan.version > first.plan.version
                assert max_total_current(update.plan) <= 5.0 / KW_PER_A + 1e-6  # the event holds
            finally:
                stream.cancel()
    finally:
        srv.stop(1.0)


def test_full_server_answers_resource_exhausted_at_once(
    gated: tuple[RunningServer, GatedSolve],
) -> None:
    srv, fn = gated
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = pb_grpc.ChargingOptimizerStub(ch)
        fn.gate.clear()
        held = stub.Optimize.future(optimize_request("held", 40.0), timeout=PATIENCE_S)
        assert fn.entered.acquire(timeout=PATIENCE_S)  # the one slot is taken
        try:
            with pytest.raises(grpc.RpcError) as err:
                stub.Optimize(optimize_request("second", 40.0), timeout=PATIENCE_S)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            fn.gate.set()
        assert held.result().plan.site_id == "held"
        assert stub.Optimize(optimize_request("third", 40.0), timeout=60).plan.site_id == "third"

        put_site(stub, make_site("w1", n=1))
        first = stub.WatchPlans(pb.WatchPlansRequest(), timeout=PATIENCE_S)
        try:
            next(first)
            with pytest.raises(grpc.RpcError) as err:
                next(stub.WatchPlans(pb.WatchPlansRequest(), timeout=PATIENCE_S))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            first.cancel()
        # the slot is released once the cancelled stream's handler returns
        end = time.monotonic() + PATIENCE_S
        while srv.planner.subscribers and time.monotonic() < end:
            time.sleep(0.01)
        second = stub.WatchPlans(pb.WatchPlansRequest(), timeout=PATIENCE_S)
        assert next(second).site_id == "w1"
        second.cancel()


def test_client_deadline_becomes_the_solver_budget(
    gated: tuple[RunningServer, GatedSolve],
) -> None:
    srv, fn = gated
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = pb_grpc.ChargingOptimizerStub(ch)
        stub.Optimize(optimize_request("no-deadline", 40.0))
        assert fn.limits[fn.sites.index("no-deadline")] == pytest.approx(5.0)  # the option
        stub.Optimize(optimize_request("deadline", 40.0), timeout=3.0)
        budget = fn.limits[fn.sites.index("deadline")]
        # grpc rounds the propagated timeout up a little; what matters: below the deadline, not
        # the 5 s option.
        assert budget is not None and 0.0 < budget < 3.0


def test_burst_of_changes_is_planned_once(gated: tuple[RunningServer, GatedSolve]) -> None:
    # 0.3 s coalescing window: 20 updates sent back to back fold into very few plans, and the
    # last plan reflects the last update.
    srv, fn = gated
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = pb_grpc.ChargingOptimizerStub(ch)
        put_site(stub, make_site("burst", n=1))
        stub.StartSession(pb.StartSessionRequest(
            site_id="burst", session=make_session("b", "c0", now_utc(), kwh=30.0)), timeout=10)
        plan = next_plan(stub, "burst", 0)
        while not plan.sessions:
            plan = next_plan(stub, "burst", plan.version)
        before = fn.sites.count("burst")
        for k in range(1, 21):
            stub.UpdateSession(pb.UpdateSessionRequest(
                site_id="burst", session_id="b", energy_delivered_kwh=float(k)), timeout=10)
        plan = next_plan(stub, "burst", plan.version)
        while plan.sessions[0].requested_kwh != pytest.approx(10.0):  # 30 wanted, 20 delivered
            plan = next_plan(stub, "burst", plan.version)
        assert fn.sites.count("burst") - before <= 3


def test_grid_event_skips_the_coalescing_window(gated: tuple[RunningServer, GatedSolve]) -> None:
    # 0.3 s window: a session update waits in it, a curtailment event is due at once
    srv, fn = gated
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub, grid = pb_grpc.ChargingOptimizerStub(ch), pb_grpc.GridOperatorStub(ch)
        put_site(stub, make_site("urgent", n=1))
        stub.StartSession(pb.StartSessionRequest(
            site_id="urgent", session=make_session("u", "c0", now_utc())), timeout=10)
        plan = next_plan(stub, "urgent", 0)
        fn.gate.clear()  # hold the planner's next solve so the schedule can be read
        try:
            stub.UpdateSession(pb.UpdateSessionRequest(
                site_id="urgent", session_id="u", energy_delivered_kwh=1.0), timeout=10)
            with srv.planner._cv:
                due = srv.planner._due["urgent"] - time.monotonic()
            assert due > 0.2  # still inside the coalescing window
            grid.SubmitEvent(pb.SubmitEventRequest(
                site_id="urgent", event=make_event("cut", 5.0)), timeout=10)
            with srv.planner._cv:
                left = srv.planner._due.get("urgent")
                assert left is None or left <= time.monotonic()  # due now (or already taken)
        finally:
            fn.gate.set()
        plan = next_plan(stub, "urgent", plan.version)
        while max_total_current(plan) > 5.0 / KW_PER_A + 1e-6:
            plan = next_plan(stub, "urgent", plan.version)


# --- processes -----------------------------------------------------------------------------------


class ServerProcess:
    """``python -m optimizer.service.server`` on a free port; stderr to a file, never a pipe."""

    def __init__(self, db: Path, log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "optimizer.service.server", "--port", "0", "--db", str(db),
             "--no-example", "--grace", "2"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        )
        self.port = self._port()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self._wait_serving()

    def _port(self) -> int:
        end = time.monotonic() + PATIENCE_S
        while time.monotonic() < end:
            m = re.search(r"listening on [\d.]+:(\d+)", self.log.read_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            time.sleep(0.02)
        raise AssertionError("server never printed its port")

    def _wait_serving(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        end = time.monotonic() + PATIENCE_S
        while time.monotonic() < end:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"never SERVING: {self.log.read_text()}")

    def kill(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=PATIENCE_S)
        self.channel.close()
        return code


def test_kill9_during_event_burst_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    srv = ServerProcess(db, tmp_path / "first.log")
    csms = pb_grpc.ChargingOptimizerStub(srv.channel)
    grid = pb_grpc.GridOperatorStub(srv.channel)
    put_site(csms, make_site("crash", grid_a=40.0, n=2))
    csms.StartSession(pb.StartSessionRequest(
        site_id="crash", session=make_session("s", "c0", now_utc())), timeout=10)

    acked: list[str] = []
    enough = threading.Event()

    def burst(worker: int) -> None:
        for k in range(10_000):
            eid = f"w{worker}-{k}"
            try:
                grid.SubmitEvent(pb.SubmitEventRequest(
                    site_id="crash", event=make_event(eid, 30.0 + k % 7)), timeout=10)
            except grpc.RpcError:
                return  # the server died under us: this one was never acknowledged
            acked.append(eid)
            if len(acked) >= 60:
                enough.set()

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    assert enough.wait(PATIENCE_S)
    assert srv.kill(signal.SIGKILL) == -signal.SIGKILL
    for t in threads:
        t.join()
    snapshot = list(acked)

    again = ServerProcess(db, tmp_path / "second.log")
    try:
        csms = pb_grpc.ChargingOptimizerStub(again.channel)
        grid = pb_grpc.GridOperatorStub(again.channel)
        held = {e.id for e in grid.ListEvents(pb.ListEventsRequest(site_id="crash"),
                                              timeout=30).events}
        assert set(snapshot) <= held
        plan = csms.GetPlan(pb.GetPlanRequest(site_id="crash"), timeout=60).plan
        assert plan.version > 0 and [s.session for s in plan.sessions] == ["s"]
        # the tightest acknowledged-or-not event still in force is 30 kW -> 43.5 A per phase
        assert max_total_current(plan) <= 30.0 / KW_PER_A + 1e-6
    finally:
        assert again.kill(signal.SIGTERM) == 0


def test_sigterm_ends_open_stream_cleanly_and_exits_zero(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "term.db", tmp_path / "term.log")
    csms = pb_grpc.ChargingOptimizerStub(srv.channel)
    put_site(csms, make_site("term", grid_a=40.0, n=1))
    stream = csms.WatchPlans(pb.WatchPlansRequest(), timeout=PATIENCE_S)
    first = next(stream)
    assert first.site_id == "term" and first.plan.version > 0
    srv.proc.send_signal(signal.SIGTERM)
    rest: list[Any] = list(stream)  # ends without an error: status OK
    assert all(u.site_id == "term" for u in rest)
    assert stream.code() == grpc.StatusCode.OK
    assert srv.proc.wait(timeout=PATIENCE_S) == 0
    srv.channel.close()
    assert "stopped" in srv.log.read_text()


# --- OCPP profiles in plans ----------------------------------------------------------------------


def ocpp_options(n: int, version: str = "2.0.1", **kw: Any) -> pb.OcppOptions:
    """Every connector of ``make_site`` its own station (EVSE / connector 1)."""
    chargers = [pb.ChargerCapabilities(connector=f"c{k}", ocpp_version=version,
                                       station_id=f"st{k}", max_periods=8) for k in range(n)]
    return pb.OcppOptions(chargers=chargers, failsafe=True, **kw)


def payload_errors_of(profile: pb.OcppProfile) -> list[str]:
    import decimal
    import json

    from ocpp.messages import get_validator

    from optimizer.api.convert import ocpp_payload

    payload = ocpp_payload(profile)
    if profile.ocpp_version == "1.6":
        doc = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
        validator = get_validator(2, "SetChargingProfile", "1.6", parse_float=decimal.Decimal)
    else:
        doc = json.loads(json.dumps(payload))
        validator = get_validator(2, "SetChargingProfile", profile.ocpp_version)
    return [e.message for e in validator.iter_errors(doc)]


def applied(profile: pb.OcppProfile, t: datetime) -> float | None:
    from optimizer.api.convert import ocpp_payload
    from optimizer.ocpp import applied_limit

    return applied_limit(ocpp_payload(profile), profile.ocpp_version, t)


def test_optimize_returns_ocpp_profiles(csms: pb_grpc.ChargingOptimizerStub) -> None:
    req = optimize_request("ocpp-opt", 40.0)
    req.ocpp.CopyFrom(ocpp_options(4, transaction_ids={"s0": "tx-a", "s2": "tx-c"}))
    plan = csms.Optimize(req, timeout=60).plan
    kinds = sorted((p.kind, p.connector) for p in plan.ocpp_profiles)
    assert kinds == sorted([(pb.OCPP_PROFILE_KIND_TX, "c0"), (pb.OCPP_PROFILE_KIND_TX, "c2")]
                           + [(pb.OCPP_PROFILE_KIND_FAILSAFE, f"c{k}") for k in range(4)])
    profiles = {p.connector: p for p in plan.profiles}
    for prof in plan.ocpp_profiles:
        assert payload_errors_of(prof) == []
        assert prof.action == "SetChargingProfile" and prof.station == f"st{prof.connector[1]}"
        if prof.kind != pb.OCPP_PROFILE_KIND_TX:
            continue
        assert prof.session == f"s{prof.connector[1]}"
        assert prof.payload["chargingProfile"]["transactionId"] in ("tx-a", "tx-c")
        for point in profiles[prof.connector].points:  # the charger never gets more than planned
            limit = applied(prof, _dt(point.start))
            if limit is None:  # the TxProfile ends at departure: the car is gone
                assert point.current_a == 0.0
            else:
                assert limit <= point.current_a + 1e-9
    # fail-safe: 4 x 3-phase worst case within the 40 A per-phase grid limit
    fs = [applied(p, _dt(plan.start)) for p in plan.ocpp_profiles
          if p.kind == pb.OCPP_PROFILE_KIND_FAILSAFE]
    assert sum(v or 0.0 for v in fs) <= 40.0 + 1e-9 and all(v and v >= 6.0 for v in fs)

    without = csms.Optimize(optimize_request("ocpp-opt", 40.0), timeout=60).plan
    assert not without.ocpp_profiles


def test_optimize_with_bad_ocpp_options_names_the_field(
    csms: pb_grpc.ChargingOptimizerStub,
) -> None:
    req = optimize_request("ocpp-bad", 40.0)
    req.ocpp.CopyFrom(ocpp_options(4, transaction_ids={"s1": "x"}))
    req.ocpp.chargers[2].ocpp_version = "1.5"
    req.ocpp.chargers[3].connector = "c9"
    with pytest.raises(grpc.RpcError) as err:
        csms.Optimize(req, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ocpp.chargers[2].ocpp_version: must be 1.6, 2.0.1 or 2.1" in err.value.details()
    assert "ocpp.chargers[3].connector: unknown connector 'c9'" in err.value.details()


def test_stored_site_plans_carry_tx_profiles(csms: pb_grpc.ChargingOptimizerStub) -> None:
    site = make_site("ocpp-site", grid_a=40.0, n=2)
    ocpp = ocpp_options(2, "1.6")
    assert csms.PutSite(pb.PutSiteRequest(site=site, options=make_options(), ocpp=ocpp),
                        timeout=30).created
    assert csms.GetSite(pb.GetSiteRequest(site_id="ocpp-site"), timeout=10).ocpp == ocpp
    first = next_plan(csms, "ocpp-site", 0)
    assert {p.kind for p in first.ocpp_profiles} == {pb.OCPP_PROFILE_KIND_FAILSAFE}

    t0 = now_utc()
    with pytest.raises(grpc.RpcError) as err:  # 1.6 transaction ids are integers
        csms.StartSession(pb.StartSessionRequest(
            site_id="ocpp-site", session=make_session("a", "c0", t0), transaction_id="tx-a"),
            timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transaction_id:" in err.value.details()
    csms.StartSession(pb.StartSessionRequest(
        site_id="ocpp-site", session=make_session("a", "c0", t0), transaction_id="4711"),
        timeout=10)
    csms.StartSession(pb.StartSessionRequest(site_id="ocpp-site",
                                             session=make_session("b", "c1", t0)), timeout=10)
    p1 = next_plan(csms, "ocpp-site", first.version)
    tx = [p for p in p1.ocpp_profiles if p.kind == pb.OCPP_PROFILE_KIND_TX]
    assert [(p.connector, p.session) for p in tx] == [("c0", "a")]  # b has no transaction
    assert tx[0].payload["csChargingProfiles"]["transactionId"] == 4711
    assert all(payload_errors_of(p) == [] for p in p1.ocpp_profiles)

    # the transaction id survives an update of its session
    csms.UpdateSession(pb.UpdateSessionRequest(site_id="ocpp-site", session_id="a",
                                               energy_delivered_kwh=1.0), timeout=10)
    p2 = next_plan(csms, "ocpp-site", p1.version)
    assert [p.session for p in p2.ocpp_profiles if p.kind == pb.OCPP_PROFILE_KIND_TX] == ["a"]

    # a charger reconfigured to 2.0.1 still takes "4711"; stored ids stay consistent
    put = pb.PutSiteRequest(site=site, options=make_options(), ocpp=ocpp_options(2, "2.0.1"))
    assert not csms.PutSite(put, timeout=30).created
    # transaction ids are not stored with a site
    put.ocpp.transaction_ids["a"] = "1"
    with pytest.raises(grpc.RpcError) as err:
        csms.PutSite(put, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ocpp.transaction_ids" in err.value.details()

    csms.StopSession(pb.StopSessionRequest(site_id="ocpp-site", session_id="a"), timeout=10)
    p3 = next_plan(csms, "ocpp-site", p2.version)
    assert not [p for p in p3.ocpp_profiles if p.kind == pb.OCPP_PROFILE_KIND_TX]
    csms.DeleteSite(pb.DeleteSiteRequest(site_id="ocpp-site"), timeout=10)


def test_put_site_refuses_a_charger_that_breaks_a_stored_transaction(
    csms: pb_grpc.ChargingOptimizerStub,
) -> None:
    site = make_site("ocpp-re", grid_a=40.0, n=1)
    csms.PutSite(pb.PutSiteRequest(site=site, options=make_options(), ocpp=ocpp_options(1)),
                 timeout=30)
    csms.StartSession(pb.StartSessionRequest(
        site_id="ocpp-re", session=make_session("a", "c0", now_utc()), transaction_id="tx-a"),
        timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        csms.PutSite(pb.PutSiteRequest(site=site, options=make_options(),
                                       ocpp=ocpp_options(1, "1.6")), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stored session 'a'.transaction_id" in err.value.details()
    assert csms.GetSite(pb.GetSiteRequest(site_id="ocpp-re"), timeout=10).ocpp == ocpp_options(1)
    csms.DeleteSite(pb.DeleteSiteRequest(site_id="ocpp-re"), timeout=10)


def test_store_migrates_a_version_1_file(tmp_path: Path) -> None:
    import sqlite3

    from optimizer.service.store import SCHEMA_VERSION, Store

    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path)
    site = make_site("old", 40.0, 1)
    with raw:
        raw.executescript("""
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE sites (id TEXT PRIMARY KEY, site BLOB NOT NULL, options BLOB NOT NULL);
            CREATE TABLE sessions (site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                id TEXT NOT NULL, connector TEXT NOT NULL, arrival_us INTEGER NOT NULL,
                body BLOB NOT NULL, PRIMARY KEY (site_id, id));
        """)
        raw.execute("INSERT INTO sites VALUES (?, ?, ?)",
                    ("old", site.SerializeToString(), make_options().SerializeToString()))
        raw.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                    ("old", "s", "c0", 0, make_session("s", "c0", now_utc()).SerializeToString()))
    raw.close()
    with Store(path) as store:
        assert store.get_site("old")[0].id == "old"
        assert store.get_ocpp("old") is None
        assert store.transaction_ids("old") == {}
        assert [s.id for s in store.sessions("old")] == ["s"]
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    raw.close()
    Store(path).close()  # opening a migrated file again changes nothing
