"""The OSCP 2.0 receiver over HTTP on 127.0.0.1 against a real optimizer server: forecasts
(kW, W, kWh and per-phase A) replace the node's capacity forecast and the plan honours them;
the fallback forecast takes over once the link is lost past the last forecast, re-anchored;
hostile requests (bad token, unknown units, NaN, negative, overlaps, missing fields, wrong
types, 100k blocks, a 20 MB body) get 400/401/403/413 with the field path, and nothing stored
changes."""

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

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.model import CapacityLimit
from optimizer.grid.oscp import Group, Receiver, build_parser, main
from optimizer.service.server import RunningServer, build_server

from ..service.test_server import KW_PER_A, current_at, make_options, make_session, make_site

DATA = Path(__file__).parent / "data"
TOKEN = "cp-token-91c2"
SITE = "os1"
AUTH = {"Authorization": f"Token {TOKEN}", "X-Request-ID": "req-1"}
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
T0 = NOW + timedelta(minutes=2)


def load(name: str, t0: datetime = T0) -> dict[str, Any]:
    """A payload with every time shifted by one offset so its first block starts at ``t0``."""
    doc = json.loads((DATA / name).read_text())
    blocks = doc.get("forecasted_blocks", [])
    if blocks:
        first = min(datetime.fromisoformat(b["start_time"]) for b in blocks)
        shift = t0 - first
        for b in blocks:
            for k in ("start_time", "end_time"):
                b[k] = (datetime.fromisoformat(b[k]) + shift).isoformat()
    return doc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("oscp") / "db.sqlite",
                       refresh=False)
    assert srv.wait_ready(120)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        csms = pb_grpc.ChargingOptimizerStub(ch)
        csms.PutSite(pb.PutSiteRequest(site=make_site(SITE, 40.0, n=2), options=make_options()))
        for k in range(2):
            csms.StartSession(pb.StartSessionRequest(site_id=SITE, session=make_session(
                f"car{k}", f"c{k}", NOW - timedelta(minutes=5), hours=8, kwh=150)))
    yield srv
    srv.stop(1.0)


class Clock:
    offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + Clock.offset


def capacity(server: RunningServer) -> tuple[CapacityLimit, ...]:
    return server.store.signals(SITE).capacity


def _dt(t: Any) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def max_amps(plan: pb.Plan, a: datetime, b: datetime) -> float:
    times = {max(a, _dt(plan.start))} | {_dt(p.start) for prof in plan.profiles
                                         for p in prof.points if a <= _dt(p.start) < b}
    return max(sum(current_at(prof, t) for prof in plan.profiles) for t in times if t < b)


def plan_where(server: RunningServer, ok: Callable[[pb.Plan], bool]) -> pb.Plan:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        csms = pb_grpc.ChargingOptimizerStub(ch)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                plan = csms.GetPlan(pb.GetPlanRequest(site_id=SITE), timeout=30).plan
                if ok(plan):
                    return plan
            except grpc.RpcError:
                pass
            time.sleep(0.02)
    raise AssertionError("no plan with the expected property")


Body = Callable[[Receiver, aiohttp.ClientSession, str], Awaitable[None]]


def run(server: RunningServer, body: Body, **kw: Any) -> Receiver:
    async def go() -> Receiver:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            rx = Receiver(TOKEN, {"group-1": Group("group-1", SITE, "grid")}, ch,
                          clock=Clock(), check_s=3600, **kw)
            port = await rx.start("127.0.0.1", 0)
            try:
                async with aiohttp.ClientSession() as http:
                    await body(rx, http, f"http://127.0.0.1:{port}/oscp/fp/2.0")
            finally:
                await rx.stop()
        return rx

    return asyncio.run(go())


async def post(http: aiohttp.ClientSession, url: str, doc: object,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    async with http.post(url, data=data, headers={
            **(AUTH if headers is None else headers), "Content-Type": "application/json"}) as r:
        text = await r.text()
        return r.status, (json.loads(text) if text else None)


# --- forecasts ---------------------------------------------------------------------------------


def test_consumption_forecasts_replace_the_node_forecast_and_bind_the_plan(
        server: RunningServer) -> None:
    m = timedelta(minutes=30)

    async def body(rx: Receiver, http: aiohttp.ClientSession, base: str) -> None:
        status, reply = await post(http, f"{base}/handshake", load("oscp_handshake.json"))
        assert (status, reply) == (204, None)
        assert rx.required_behaviour is not None
        assert rx.required_behaviour.heartbeat_interval == 30

        status, _ = await post(http, f"{base}/update_group_capacity_forecast",
                               load("oscp_update_group_capacity_forecast.json"))
        assert status == 204
        # KW, W (7000 -> 7 kW) and KWH over half an hour (6.5 kWh -> 13 kW)
        assert [(c.start, c.end, c.limit_kw, c.phase_limit_a) for c in capacity(server)] == [
            (T0, T0 + m, 11.0, None), (T0 + m, T0 + 2 * m, 9.0, None),
            (T0 + 2 * m, T0 + 3 * m, 7.0, None), (T0 + 3 * m, T0 + 4 * m, 13.0, None)]
        plan = plan_where(server, lambda p: max_amps(p, T0, T0 + m) <= 11 / KW_PER_A + 1e-6
                          and max_amps(p, T0 + 2 * m, T0 + 3 * m) <= 7 / KW_PER_A + 1e-6)
        assert max_amps(plan, T0, T0 + m) >= 11 / KW_PER_A - 1.0
        assert max_amps(plan, T0 + 2 * m, T0 + 3 * m) >= 7 / KW_PER_A - 1.0

        # a per-phase forecast (in +02:00) replaces it: L1 at 16 A, then all phases at 20 A.
        # One signal carries one phase set, so the L1-only window caps every phase the
        # forecast names anywhere (all three): conservative, as documented
        status, _ = await post(http, f"{base}/update_group_capacity_forecast",
                               load("oscp_update_group_capacity_forecast_amps.json"))
        assert status == 204
        hour = timedelta(hours=1)
        assert [(c.start, c.end, c.limit_kw, c.phase_limit_a) for c in capacity(server)] == [
            (T0, T0 + hour, None, (16.0, 16.0, 16.0)),
            (T0 + hour, T0 + 2 * hour, None, (20.0, 20.0, 20.0))]
        plan_where(server, lambda p: max_amps(p, T0, T0 + hour) <= 16 + 1e-6
                   and max_amps(p, T0 + hour, T0 + 2 * hour) <= 20 + 1e-6)
        assert rx.groups["group-1"].forecast_until == T0 + 2 * hour
        only_l1 = load("oscp_update_group_capacity_forecast_amps.json")
        only_l1["forecasted_blocks"][1]["phase"] = "ONE"
        assert (await post(http, f"{base}/update_group_capacity_forecast", only_l1))[0] == 204
        assert [c.phase_limit_a for c in capacity(server)] == [(16.0, 40.0, 40.0),
                                                               (20.0, 40.0, 40.0)]

        # per-phase kW becomes a current on that phase (W / 230 V)
        doc = load("oscp_update_group_capacity_forecast.json")
        doc["forecasted_blocks"] = doc["forecasted_blocks"][:1]
        doc["forecasted_blocks"][0].update(phase="TWO", capacity=2.3)
        assert (await post(http, f"{base}/update_group_capacity_forecast", doc))[0] == 204
        assert [c.phase_limit_a for c in capacity(server)] == [(40.0, 10.0, 40.0)]

    run(server, body)


def test_fallback_applies_once_the_link_is_lost_past_the_last_forecast(
        server: RunningServer) -> None:
    async def body(rx: Receiver, http: aiohttp.ClientSession, base: str) -> None:
        # the fallback pattern (one day of four 6-hour blocks) is dated a day in the past
        midnight = NOW.replace(hour=0, minute=0)
        fb = load("oscp_fallback_consumption.json", midnight - timedelta(days=1))
        assert (await post(http, f"{base}/update_group_capacity_forecast", fb))[0] == 204
        fc = load("oscp_update_group_capacity_forecast.json")
        assert (await post(http, f"{base}/update_group_capacity_forecast", fc))[0] == 204
        forecast = capacity(server)
        until = T0 + timedelta(hours=2)
        hb = {"offline_mode_at": (T0 + timedelta(hours=3)).isoformat()}
        assert (await post(http, f"{base}/heartbeat", hb))[0] == 204

        group = rx.groups["group-1"]
        assert rx.alive_until(group) == T0 + timedelta(hours=3)
        Clock.offset = until - NOW + timedelta(minutes=30)  # forecast over, heartbeat not yet
        await rx.check_fallback()
        assert capacity(server) == forecast and not group.fallback_active

        Clock.offset = timedelta(hours=3, minutes=5) + (T0 - NOW)  # heartbeat's time passed
        now = rx.clock()
        await rx.check_fallback()
        assert group.fallback_active
        caps = capacity(server)
        # re-anchored by whole days: the same four values at the same times of day, from the
        # block around now for 48 hours
        day = midnight + timedelta(days=(now - midnight).days)
        values = {0: 8.0, 6: 5.0, 12: 4.0, 18: 7.0}
        assert caps[0].start <= now < caps[0].end
        assert caps[-1].end >= now + timedelta(hours=48)
        for c in caps:
            assert c.start.minute == 0 and c.start.hour in values
            assert c.end - c.start == timedelta(hours=6)
            assert c.limit_kw == values[c.start.hour]
        assert any(c.start == day + timedelta(hours=h) for c in caps for h in values)
        plan_where(server, lambda p: max_amps(p, now, now + timedelta(hours=1))
                   <= max(values.values()) / KW_PER_A + 1e-6)

        # a new forecast ends the fallback
        Clock.offset = timedelta(0)
        assert (await post(http, f"{base}/update_group_capacity_forecast", fc))[0] == 204
        assert not group.fallback_active and capacity(server) == forecast

    run(server, body)
    Clock.offset = timedelta(0)


# --- hostile requests --------------------------------------------------------------------------


def _hostile() -> list[tuple[str, object, int, str]]:
    good = load("oscp_update_group_capacity_forecast.json")

    def edit(fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        doc = copy.deepcopy(good)
        fn(doc)
        return doc

    def block(k: int, **kv: Any) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["forecasted_blocks"][k].update(kv)

    def drop(k: int, key: str) -> Callable[[dict[str, Any]], None]:
        return lambda d: d["forecasted_blocks"][k].pop(key)

    nan = json.dumps(good).replace('"capacity": 9.0', '"capacity": NaN').encode()
    start1 = good["forecasted_blocks"][0]["start_time"]
    many = edit(lambda d: d.update(forecasted_blocks=d["forecasted_blocks"] * 25_000))
    return [
        ("unit", edit(block(3, unit="MW")), 400,
         "forecasted_blocks[3].unit: unknown unit 'MW'"),
        ("nan", nan, 400, "forecasted_blocks[1].capacity: must be a finite number"),
        ("negative", edit(block(2, capacity=-5)), 400,
         "forecasted_blocks[2].capacity: must not be negative"),
        ("overlap", edit(block(2, start_time=start1)), 400,
         "forecasted_blocks[2].start_time: overlaps forecasted_blocks[0]"),
        ("missing", edit(drop(0, "end_time")), 400, "forecasted_blocks[0].end_time: Field "
                                                   "required"),
        ("type", edit(block(1, capacity="9")), 400,
         "forecasted_blocks[1].capacity: Input should be a valid number"),
        ("phase", edit(block(0, phase="FOUR")), 400, "forecasted_blocks[0].phase: unknown "
                                                     "phase 'FOUR'"),
        ("forecast type", edit(lambda d: d.update(type="FALLBACK")), 400,
         "type: unknown type 'FALLBACK'"),
        ("zone", edit(block(0, start_time="2020-10-12T10:00:00")), 400,
         "forecasted_blocks[0].start_time: date-time without a time zone"),
        ("backwards", edit(block(0, end_time=start1)), 400,
         "forecasted_blocks[0].end_time: must be after start_time"),
        ("mixed", edit(block(1, unit="A")), 400, "forecasted_blocks[1].unit: 'A' on ALL mixes"),
        ("group", edit(lambda d: d.update(group_id="other")), 400,
         "group_id: unknown group 'other'"),
        ("empty", edit(lambda d: d.update(forecasted_blocks=[])), 400,
         "forecasted_blocks: List should have at least 1 item"),
        ("not json", b"{\"group_id\": ", 400, "body: not a JSON document"),
        ("not an object", [1, 2], 400, "(body): Input should be a valid dictionary"),
        ("100k blocks", many, 413, "body: "),
    ]


def test_hostile_requests_are_refused_and_change_nothing(server: RunningServer) -> None:
    async def body(rx: Receiver, http: aiohttp.ClientSession, base: str) -> None:
        url = f"{base}/update_group_capacity_forecast"
        good = load("oscp_update_group_capacity_forecast.json")
        assert (await post(http, url, good))[0] == 204
        before = capacity(server)
        for name, doc, status, why in _hostile():
            got, reply = await post(http, url, doc)
            assert (got, why in (reply or {}).get("message", "")) == (status, True), \
                (name, got, reply)
        for headers, status in (({"X-Request-ID": "r"}, 401),
                                ({**AUTH, "Authorization": "Bearer " + TOKEN}, 401),
                                ({**AUTH, "Authorization": "Token wrong"}, 403),
                                ({"Authorization": f"Token {TOKEN}"}, 400)):
            got, reply = await post(http, url, load("oscp_fallback_consumption.json"), headers)
            assert got == status, (headers, reply)
        for path in ("heartbeat", "handshake"):
            got, reply = await post(http, f"{base}/{path}", {"offline_mode_at": 5})
            assert got == 400, reply
        assert (await post(http, f"{base}/heartbeat", {"offline_mode_at": 5}))[1] == {
            "message": "offline_mode_at: Input should be a valid datetime"}
        assert capacity(server) == before
        assert rx.groups["group-1"].fallback is None  # the refused fallback was not kept
        assert rx.online_until is None

    run(server, body)


async def _raw(port: int, head: bytes, body: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


def test_bodies_over_the_limit_are_refused_before_parsing(server: RunningServer) -> None:
    async def body(rx: Receiver, http: aiohttp.ClientSession, base: str) -> None:
        port = int(base.split(":")[2].split("/")[0])
        before = capacity(server)
        path = b"/oscp/fp/2.0/update_group_capacity_forecast"
        head = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Token " +
                TOKEN.encode() + b"\r\nX-Request-ID: r\r\nContent-Type: application/json\r\n")
        # 20 MB announced, 1 KiB sent: the answer comes from the header alone
        t = time.monotonic()
        reply = await _raw(port, head + b"Content-Length: 20971520\r\n\r\n", b"[" * 1024)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b"20971520 bytes; at most 1048576" in reply
        assert time.monotonic() - t < 5
        # chunked, no length: refused once the stream passes the limit
        chunk = b"[" * 65536
        stream = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(40))
        reply = await _raw(port, head + b"Transfer-Encoding: chunked\r\n\r\n", stream)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        # a bad token is refused before the body is looked at, however large it claims to be
        bad = head.replace(TOKEN.encode(), b"nope")
        reply = await _raw(port, bad + b"Content-Length: 20971520\r\n\r\n", b"x")
        assert reply.startswith(b"HTTP/1.1 403"), reply[:200]
        assert capacity(server) == before

    run(server, body)


def test_cli() -> None:
    args = build_parser().parse_args(["--listen", "127.0.0.1:9999", "--token-file", "t",
                                      "--group", "g=s:n", "--group", "h=s:m"])
    assert args.listen == ("127.0.0.1", 9999)
    assert [(g.group_id, g.site, g.node) for g in args.group] == [("g", "s", "n"),
                                                                   ("h", "s", "m")]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--token-file", "t", "--group", "nogroup"])
    assert main(["--token-file", "t", "--group", "g=s:n", "--check-s", "0"]) == 2


def test_command_line_serves_and_applies(server: RunningServer, tmp_path: Path) -> None:
    """``python -m optimizer.grid.oscp`` as a process: a forecast POSTed to it is stored."""
    import socket
    import subprocess
    import sys

    from ..paths import REPO

    token = tmp_path / "t"
    token.write_text(TOKEN + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "optimizer.grid.oscp", "--listen", f"127.0.0.1:{port}",
         "--token-file", str(token), "--group", f"group-1={SITE}:grid",
         "--optimizer", f"127.0.0.1:{server.port}"], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async def go() -> int:
            doc = load("oscp_update_group_capacity_forecast.json")
            doc["forecasted_blocks"] = doc["forecasted_blocks"][:1]
            doc["forecasted_blocks"][0]["capacity"] = 12.5
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    try:
                        return (await post(http, f"http://127.0.0.1:{port}/oscp/fp/2.0/"
                                           "update_group_capacity_forecast", doc))[0]
                    except aiohttp.ClientConnectorError:
                        await asyncio.sleep(0.05)
            raise AssertionError("the receiver never listened")

        assert asyncio.run(go()) == 204
        assert [c.limit_kw for c in capacity(server)] == [12.5]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""


def test_fallback_never_overwrites_a_forecast_applied_while_it_waited() -> None:
    """A watch tick that finds the link lost, then waits for the lock while a new CONSUMPTION
    forecast is applied (and answered 204), must not put the fallback on top of it."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    import grpc

    from optimizer.core.model import Node
    from optimizer.grid.oscp import Group, Receiver
    from optimizer.grid.oscp_models import UpdateGroupCapacityForecast

    now = [datetime(2026, 1, 1, 12, tzinfo=UTC)]

    class SlowLink:
        def __init__(self) -> None:
            self.applied: list[float] = []

        async def nodes(self) -> dict[str, Node]:
            return {"grid": Node("grid", None, (40.0, 40.0, 40.0), 30.0)}

        async def set_capacity(self, sig: object) -> int:
            await asyncio.sleep(0.05)  # the gRPC round trip
            self.applied.append(sig.intervals[0].value)  # type: ignore[attr-defined]
            return 1

    def fc(typ: str, kw: float, start: datetime, hours: float) -> UpdateGroupCapacityForecast:
        return UpdateGroupCapacityForecast.model_validate({
            "group_id": "g", "type": typ, "forecasted_blocks": [{
                "capacity": kw, "phase": "ALL", "unit": "KW", "start_time": start.isoformat(),
                "end_time": (start + timedelta(hours=hours)).isoformat()}]})

    async def go() -> tuple[list[float], bool]:
        g = Group("g", "s1", "grid")
        r = Receiver("tok", {"g": g}, channel=grpc.aio.insecure_channel("127.0.0.1:1"),
                     clock=lambda: now[0])
        link = SlowLink()
        r.links = {"s1": link}  # type: ignore[dict-item]
        await r.receive_forecast(fc("FALLBACK_CONSUMPTION", 30.0, now[0] - timedelta(hours=1), 24))
        await r.receive_forecast(fc("CONSUMPTION", 20.0, now[0] - timedelta(hours=1), 1))
        now[0] += timedelta(seconds=1)  # the forecast is over and no heartbeat: link lost
        fresh = asyncio.create_task(r.receive_forecast(fc("CONSUMPTION", 10.0, now[0], 4)))
        await asyncio.sleep(0.01)
        await r.check_fallback()
        await fresh
        return link.applied, g.fallback_active

    applied, active = asyncio.run(go())
    assert applied == [20.0, 10.0] and not active
