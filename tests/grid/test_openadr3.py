"""The OpenADR 3 VEN against a test VTN (aiohttp on 127.0.0.1, serving the spec's example
objects, checking the bearer token, recording reports) and a real optimizer server: events
become stored events and lower the plan, a modification supersedes, a removal cancels, a VTN
gone longer than ``safe_after_s`` brings safe mode, reports carry the planned import, and
hostile documents change nothing stored."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.grid.link import GridLink
from optimizer.grid.openadr3 import (
    ClientCredentials,
    FileToken,
    Ven,
    VtnClient,
    build_parser,
    main,
)
from optimizer.grid.openadr3_models import Window
from optimizer.service.server import RunningServer, build_server

from ..service.test_server import KW_PER_A, current_at, make_options, make_session, make_site

DATA = Path(__file__).parent / "data"
TOKEN = "vtn-bearer-7f3a"
SITE = "oa3"
H30 = timedelta(minutes=30)


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the test VTN ------------------------------------------------------------------------------


class Vtn:
    """Programs and events in memory, served like a 3.0.1 VTN (``skip``/``limit`` pages)."""

    def __init__(self) -> None:
        self.programs: list[Any] = [load("openadr3_program_minimal.json")]
        self.events: dict[str, Any] = {}
        self.reports: list[Any] = []
        self.token = TOKEN
        self.raw_events: bytes | None = None  # served instead of the events list
        self.unauthorized = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    def put(self, eid: str, event: dict[str, Any], modified: datetime) -> None:
        ev = copy.deepcopy(event)
        ev.update(id=eid, objectType="EVENT", programID="0",
                  createdDateTime=iso(modified - timedelta(hours=1)),
                  modificationDateTime=iso(modified))
        self.events[eid] = ev

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            raise web.HTTPForbidden(text=json.dumps({"title": "Forbidden", "status": 403}),
                                    content_type="application/json")

    @staticmethod
    def _page(items: list[Any], request: web.Request) -> web.Response:
        skip = int(request.query.get("skip", 0))
        limit = min(int(request.query.get("limit", 50)), 50)
        return web.json_response(items[skip:skip + limit])

    async def _programs(self, request: web.Request) -> web.Response:
        self._auth(request)
        return self._page(self.programs, request)

    async def _events(self, request: web.Request) -> web.Response:
        self._auth(request)
        if self.raw_events is not None:
            return web.Response(body=self.raw_events, content_type="application/json")
        pid = request.query.get("programID")
        return self._page([e for e in self.events.values()
                           if pid is None or e.get("programID") == pid], request)

    async def _reports(self, request: web.Request) -> web.Response:
        self._auth(request)
        body = await request.json()
        self.reports.append(body)
        return web.json_response({**body, "id": f"r{len(self.reports)}"}, status=201)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("grant_type"), form.get("client_id"), form.get("client_secret")) != (
                "client_credentials", "ven-1", "s3cret"):
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": self.token, "token_type": "Bearer",
                                  "expires_in": 3600})

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.add_routes([web.get("/programs", self._programs), web.get("/events", self._events),
                        web.post("/reports", self._reports),
                        web.post("/auth/token", self._token)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("oa3") / "db.sqlite",
                       refresh=False)
    assert srv.wait_ready(120)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        csms = pb_grpc.ChargingOptimizerStub(ch)
        # 3 x 40 A at 230 V (27.6 kW); two 3-phase cars that want more than the grid gives
        csms.PutSite(pb.PutSiteRequest(site=make_site(SITE, 40.0, n=2), options=make_options()))
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        for k in range(2):
            csms.StartSession(pb.StartSessionRequest(
                site_id=SITE, session=make_session(f"car{k}", f"c{k}", now, hours=8, kwh=150)))
    yield srv
    srv.stop(1.0)


class Clock:
    """Wall time plus an offset that only grows: the service remembers what a modification
    number cancelled, so one module's VENs must never step back in time."""

    offset = timedelta(0)

    def advance(self, seconds: float) -> None:
        Clock.offset += timedelta(seconds=seconds)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + Clock.offset


def held(server: RunningServer) -> dict[str, tuple[float | None, int, datetime, datetime]]:
    return {e.id: (e.limit_kw, e.modification, e.start, e.end)
            for e in server.store.events(SITE) if e.id.startswith("openadr3:")}


def _dt(t: Any) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def max_amps(plan: pb.Plan, a: datetime, b: datetime) -> float:
    """Largest summed connector current (= phase current: all 3-phase, same rotation) in [a, b)."""
    times = {max(a, _dt(plan.start))} | {_dt(p.start) for prof in plan.profiles
                                         for p in prof.points if a <= _dt(p.start) < b}
    return max(sum(current_at(prof, t) for prof in plan.profiles) for t in times if t < b)


def plan_where(server: RunningServer, ok: Callable[[pb.Plan], bool],
               timeout: float = 60.0) -> pb.Plan:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        csms = pb_grpc.ChargingOptimizerStub(ch)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                plan = csms.GetPlan(pb.GetPlanRequest(site_id=SITE), timeout=30).plan
            except grpc.RpcError:
                time.sleep(0.02)
                continue
            if ok(plan):
                return plan
            time.sleep(0.02)
    raise AssertionError("no plan with the expected property")


def fresh_plan(server: RunningServer) -> pb.Plan:
    """Re-plan now, as the slot ticker would, and wait for that plan."""
    t = datetime.now(UTC)
    server.planner.touch(SITE, urgent=True)
    return plan_where(server, lambda p: _dt(p.start) >= t)


def mean_kw(plan: pb.Plan, a: datetime, b: datetime) -> float:
    """Independent of the VEN: 3-phase 230 V connectors, so kW = A x 0.69, time-weighted."""
    lo, hi = max(a, _dt(plan.start)), min(b, _dt(plan.end))
    step = timedelta(seconds=10)
    t, total, n = lo, 0.0, 0
    while t < hi:
        total += sum(current_at(prof, t) for prof in plan.profiles) * KW_PER_A
        n += 1
        t += step
    return total / n


def capacity_event(t0: datetime, values: tuple[float, ...] = (10.0, 8.0)) -> dict[str, Any]:
    """User Guide example 8.10.1-1 (two 30-minute intervals, 10 and 8 kW), starting at t0."""
    ev = load("openadr3_event_capacity_limit.json")
    ev["intervalPeriod"]["start"] = iso(t0)
    for iv, v in zip(ev["intervals"], values, strict=True):
        iv["payloads"][0]["values"] = [v]
    return ev


def run(server: RunningServer, tmp: Path,
        body: Callable[[Vtn, Ven, Clock], Awaitable[None]], **ven_kw: Any) -> Vtn:
    token = tmp / "vtn.token"
    token.write_text(TOKEN + "\n")

    async def go() -> Vtn:
        vtn = Vtn()
        await vtn.start()
        clock = Clock()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                    grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
                tokens = FileToken(token)
                ven = Ven(VtnClient(vtn.url, tokens, http), GridLink(ch, SITE), ch, SITE,
                          "grid", clock=clock, **ven_kw)
                await body(vtn, ven, clock)
        finally:
            await vtn.stop()
        return vtn

    return asyncio.run(go())


T0 = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=2)


def mod(mdt: datetime) -> int:
    return int(mdt.timestamp() * 1000) * 100_000 + Window.at(datetime.now(UTC)).day


# --- tests -------------------------------------------------------------------------------------


def test_event_lowers_plan_modification_supersedes_removal_cancels_and_report(
        server: RunningServer, tmp_path: Path) -> None:
    m1 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

    async def body(vtn: Vtn, ven: Ven, clock: Clock) -> None:
        vtn.put("evt-1", capacity_event(T0), m1)
        assert await ven.poll_once()
        assert held(server) == {
            "openadr3:0.evt-1#0": (10.0, mod(m1), T0, T0 + H30),
            "openadr3:0.evt-1#1": (8.0, mod(m1), T0 + H30, T0 + 2 * H30),
        }
        # the plan honours both intervals and uses the grid again after them
        plan = plan_where(server, lambda p: _dt(p.start) >= T0 - timedelta(minutes=3)
                          and max_amps(p, T0, T0 + H30) <= 10 / KW_PER_A + 1e-6
                          and max_amps(p, T0 + H30, T0 + 2 * H30) <= 8 / KW_PER_A + 1e-6)
        assert max_amps(plan, T0, T0 + H30) >= 10 / KW_PER_A - 1.0
        assert max_amps(plan, T0 + 3 * H30, T0 + 5 * H30) >= 39.0  # 40 A grid binds again

        # the report: planned import per event interval, from a plan whose state was read
        # after the event committed (the service's slot ticker, off in tests, gives one)
        fresh_plan(server)
        await ven.poll_once()
        assert len(vtn.reports) == 1
        rep = vtn.reports[0]
        assert (rep["programID"], rep["eventID"], rep["clientName"]) == (
            "0", "evt-1", f"smartcharging-{SITE}")
        assert rep["payloadDescriptors"] == [{
            "objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "DEMAND",
            "readingType": "FORECAST", "units": "KW"}]
        (res,) = rep["resources"]
        assert res["resourceName"] == "grid"
        assert [iv["id"] for iv in res["intervals"]] == [0, 1]
        assert [iv["intervalPeriod"] for iv in res["intervals"]] == [
            {"start": iso(T0), "duration": "PT1800S"},
            {"start": iso(T0 + H30), "duration": "PT1800S"}]
        now_plan = plan_where(server, lambda p: True)
        assert rep["reportName"].endswith(f"plan {now_plan.version}")
        got = [iv["payloads"][0]["values"][0] for iv in res["intervals"]]
        want = [mean_kw(now_plan, T0, T0 + H30), mean_kw(now_plan, T0 + H30, T0 + 2 * H30)]
        assert got == pytest.approx(want, abs=0.02)
        assert 9.0 <= got[0] <= 10.0 + 1e-6 and 7.0 <= got[1] <= 8.0 + 1e-6

        # modified: the second interval drops to 6 kW under a newer modificationDateTime
        m2 = m1 + timedelta(seconds=90)
        vtn.put("evt-1", capacity_event(T0, (10.0, 6.0)), m2)
        assert await ven.poll_once()
        assert held(server) == {
            "openadr3:0.evt-1#0": (10.0, mod(m2), T0, T0 + H30),
            "openadr3:0.evt-1#1": (6.0, mod(m2), T0 + H30, T0 + 2 * H30),
        }
        assert mod(m2) > mod(m1)
        plan_where(server, lambda p: max_amps(p, T0 + H30, T0 + 2 * H30) <= 6 / KW_PER_A + 1e-6)
        fresh_plan(server)
        await ven.poll_once()
        assert len(vtn.reports) == 2 and vtn.reports[1]["eventID"] == "evt-1"

        # removed from the VTN's list: cancelled, the plan uses the grid again
        del vtn.events["evt-1"]
        assert await ven.poll_once()
        assert held(server) == {}
        plan_where(server, lambda p: max_amps(p, T0, T0 + H30) >= 39.0)

    run(server, tmp_path, body)


def test_safe_mode_after_the_vtn_is_gone_and_back(server: RunningServer, tmp_path: Path) -> None:
    m1 = datetime(2026, 2, 1, tzinfo=UTC)

    async def body(vtn: Vtn, ven: Ven, clock: Clock) -> None:
        vtn.put("evt-2", capacity_event(T0, (12.0, 12.0)), m1)
        safe = capacity_event(T0)  # the GAC safe-mode event: one open-ended 5 kW interval
        safe.update(eventName="safe-mode")
        safe["intervalPeriod"] = {"start": "0001-01-01", "duration": "P9999Y"}
        safe["intervals"] = [{"id": 0, "payloads": [
            {"type": "IMPORT_CAPACITY_LIMIT", "values": [5.0]}]}]
        vtn.put("safe-1", safe, m1)
        assert await ven.poll_once()
        assert set(held(server)) == {"openadr3:0.evt-2#0", "openadr3:0.evt-2#1"}  # not applied

        port = vtn.port
        await vtn.stop()  # unreachable: connection refused
        assert not await ven.poll_once()
        assert not ven.in_safe_mode and set(held(server)) == {"openadr3:0.evt-2#0",
                                                              "openadr3:0.evt-2#1"}
        clock.advance(31)  # past safe_after_s
        assert not await ven.poll_once()
        assert ven.in_safe_mode
        window = Window.at(clock())
        h = held(server)
        limit, _, start, end = h["openadr3:0.~safe-mode#0"]
        assert (limit, start, end) == (5.0, window.lo, window.hi)
        assert h["openadr3:0.evt-2#0"][0] == 12.0  # binding events stay held
        plan_where(server, lambda p: max_amps(p, _dt(p.start), _dt(p.start) + 4 * H30)
                   <= 5 / KW_PER_A + 1e-6)

        await vtn.start(port)  # back
        assert await ven.poll_once()
        assert not ven.in_safe_mode
        assert set(held(server)) == {"openadr3:0.evt-2#0", "openadr3:0.evt-2#1"}
        del vtn.events["evt-2"]
        assert await ven.poll_once() and held(server) == {}

    run(server, tmp_path, body, safe_after_s=30.0)


def test_safe_mode_falls_back_to_the_capacity_subscription(
        server: RunningServer, tmp_path: Path) -> None:
    async def body(vtn: Vtn, ven: Ven, clock: Clock) -> None:
        sub = load("openadr3_event_capacity_subscription.json")  # 240 kW from 2023, P9999Y
        vtn.put("sub-1", sub, datetime(2026, 3, 1, tzinfo=UTC))
        assert await ven.poll_once() and held(server) == {}
        vtn.token = "rotated"  # the VEN's token no longer works: every poll fails
        clock.advance(11)
        assert not await ven.poll_once() and ven.in_safe_mode
        window = Window.at(clock())
        assert held(server) == {"openadr3:0.~safe-mode#0": (
            240.0, held(server)["openadr3:0.~safe-mode#0"][1], window.lo, window.hi)}
        vtn.token = TOKEN
        assert await ven.poll_once() and held(server) == {}

    vtn = run(server, tmp_path, body, safe_after_s=10.0)
    assert vtn.unauthorized >= 2  # the VEN re-read its token after the first 403/401


def test_client_credentials_token(server: RunningServer, tmp_path: Path) -> None:
    async def body(vtn: Vtn, ven: Ven, clock: Clock) -> None:
        ven.vtn.tokens = ClientCredentials(vtn.url + "/auth/token", "ven-1", "s3cret")
        vtn.put("evt-3", capacity_event(T0, (20.0, 20.0)), datetime(2026, 4, 1, tzinfo=UTC))
        assert await ven.poll_once()
        assert held(server)["openadr3:0.evt-3#0"][0] == 20.0
        ven.vtn.tokens = ClientCredentials(vtn.url + "/auth/token", "ven-1", "wrong")
        del vtn.events["evt-3"]
        assert not await ven.poll_once()  # no token: nothing changes
        assert "openadr3:0.evt-3#0" in held(server)
        ven.vtn.tokens = ClientCredentials(vtn.url + "/auth/token", "ven-1", "s3cret")
        assert await ven.poll_once() and held(server) == {}

    run(server, tmp_path, body)


# --- hostile VTN documents ---------------------------------------------------------------------


def _hostile(t0: datetime) -> dict[str, tuple[Any, str]]:
    """event id -> (event, the field path and reason the VEN must name)."""
    good = capacity_event(t0)

    def with_(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        ev = copy.deepcopy(good)
        fn(ev)
        return ev

    def put(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
        def fn(ev: dict[str, Any]) -> None:
            d = ev
            for p in path[:-1]:
                d = d[p]
            d[path[-1]] = value
        return fn

    def drop(key: str) -> Callable[[dict[str, Any]], None]:
        return lambda ev: ev.pop(key)

    overlap = with_(lambda ev: None)
    overlap.pop("intervalPeriod")
    overlap["intervals"][0]["intervalPeriod"] = {"start": iso(t0), "duration": "PT1H"}
    overlap["intervals"][1]["intervalPeriod"] = {"start": iso(t0 + H30), "duration": "PT1H"}
    return {
        "unit": (with_(put(["payloadDescriptors", 0, "units"], "BTU")),
                 "payloadDescriptors[0].units: unknown unit 'BTU'"),
        "nan": (with_(put(["intervals", 0, "payloads", 0, "values"], ["NaN"])),
                "intervals[0].payloads[0].values[0]: must be a finite number"),
        "negative": (with_(put(["intervals", 1, "payloads", 0, "values"], [-4.0])),
                     "intervals[1].payloads[0].values[0]: must be between 0 and"),
        "overlap": (overlap, "intervals[1].intervalPeriod.start: overlaps intervals[0]"),
        "missing": (with_(drop("intervals")), "intervals: Field required"),
        "type": (with_(put(["intervals", 0, "id"], "0")),
                 "intervals[0].id: Input should be a valid integer"),
        "duration": (with_(put(["intervalPeriod", "duration"], "forever")),
                     "intervalPeriod.duration: not an ISO 8601 duration"),
        "zone": (with_(put(["intervalPeriod", "start"], "2026-01-01T00:00:00")),
                 "intervalPeriod.start: date-time without a time zone"),
        "huge": (with_(put(["intervals"], [{"id": k, "payloads": [
            {"type": "IMPORT_CAPACITY_LIMIT", "values": [1.0]}]} for k in range(10_081)])),
                 "intervals: List should have at most 10080 items"),
    }


def test_hostile_events_are_refused_by_path_and_change_nothing(
        server: RunningServer, tmp_path: Path) -> None:
    m1 = datetime(2026, 5, 1, tzinfo=UTC)

    async def body(vtn: Vtn, ven: Ven, clock: Clock) -> None:
        vtn.put("keep", capacity_event(T0, (15.0, 15.0)), m1)
        assert await ven.poll_once()
        before = held(server)
        assert set(before) == {"openadr3:0.keep#0", "openadr3:0.keep#1"}
        hostile = _hostile(T0)
        for eid, (ev, _) in hostile.items():
            vtn.put(eid, ev, m1)
        # an invalid new version of a held event: the held version stays
        vtn.put("keep", hostile["nan"][0], m1 + timedelta(seconds=5))
        assert await ven.poll_once()
        assert held(server) == before
        for eid, (_, why) in hostile.items():
            assert why in ven.rejected[eid], (eid, ven.rejected.get(eid))
        assert "intervals[0].payloads[0].values[0]: must be a finite number" in \
            ven.rejected["keep"]

        # documents that fail the whole poll: nothing cancelled, nothing applied
        for raw in (b'{"not": "a list"}', b"[1, 2", b"[" + b"0," * (5 << 20) + b"0]"):
            vtn.raw_events = raw
            assert not await ven.poll_once()
            assert held(server) == before
        vtn.raw_events = None
        vtn.events.clear()
        assert await ven.poll_once() and held(server) == {}

    run(server, tmp_path, body)


def test_cli_parser_and_bad_arguments() -> None:
    args = build_parser().parse_args(["--vtn", "http://127.0.0.1:1", "--token-file", "t",
                                      "--site", "s", "--node", "n", "--program", "GAC"])
    assert (args.poll_s, args.optimizer, args.program, args.safe_after_s) == (
        10.0, "127.0.0.1:50051", "GAC", 300.0)
    assert main(["--vtn", "http://x", "--token-file", "t", "--site", "s", "--node", "n",
                 "--poll-s", "0"]) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--vtn", "http://x", "--site", "s", "--node", "n"])


def test_command_line_once_against_the_test_vtn(server: RunningServer, tmp_path: Path) -> None:
    """``python -m optimizer.grid.openadr3 --once``: the wiring of main(), end to end."""
    import threading

    token = tmp_path / "t"
    token.write_text(TOKEN)
    loop = asyncio.new_event_loop()
    vtn = Vtn()
    vtn.put("cli-1", capacity_event(T0, (14.0, 14.0)), datetime(2026, 6, 1, tzinfo=UTC))
    url = loop.run_until_complete(vtn.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        argv = ["--vtn", url, "--token-file", str(token), "--site", SITE, "--node", "grid",
                "--program", "minimalProgram", "--optimizer", f"127.0.0.1:{server.port}",
                "--once"]
        assert main(argv) == 0
        assert {k: v[0] for k, v in held(server).items()} == {
            "openadr3:0.cli-1#0": 14.0, "openadr3:0.cli-1#1": 14.0}
        vtn.events.clear()
        assert main(argv) == 0 and held(server) == {}
        assert main([*argv, "--program", "noSuchProgram"]) == 1  # the last --program wins
    finally:
        asyncio.run_coroutine_threadsafe(vtn.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
