"""The OpenADR 2.0b VEN end to end: a real ``openleadr`` VTN on a loopback port, a real optimizer
server, and the VEN as production runs it (``OptimizerVEN`` on an asyncio loop, or the
``python -m optimizer.grid.openadr2b`` process).

The VTN and the VEN share one asyncio loop in a background thread; the tests drive the VTN and
read the optimizer from the test thread. Every plan check reads ``WatchPlans``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from openleadr import OpenADRServer, enums, hooks, objects, utils
from openleadr.messaging import parse_message

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.model import Connector, Node, Site, Wiring
from optimizer.grid.openadr2b import OPT_IN, OPT_OUT, OptimizerVEN, VenConfig
from optimizer.grid.openadr2b_telemetry import NodeLoad, measured_kw
from optimizer.service.server import RunningServer, build_server

from ..paths import REPO
from ..service.test_server import ServerProcess, make_options, make_session, make_site

T = TypeVar("T")
#: 3-phase 230 V: kW per ampere of per-phase current.
KW_PER_A = 3 * 230 / 1000
GRID_KW = 40.0 * KW_PER_A  # the site's 3 x 40 A grid connection: 27.6 kW
PATIENCE_S = 30.0
POLL_S = 0.2
SITE = "oadr"
PLANNED = f"{SITE}:grid:planned_kw"  # the VEN's rIDs: <site>:<node>:<what>_kw
MEASURED = f"{SITE}:grid:measured_kw"
logging.getLogger("openleadr").setLevel(logging.WARNING)  # it logs every poll at INFO
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey")  # openleadr


# --- harness: loop, VTN, plan stream -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Loop:
    """An asyncio loop in a daemon thread (the VTN and the VENs live there)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = PATIENCE_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def go() -> T:
            return fn()
        return self.run(go())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Response:
    event_id: str
    modification: int
    opt: str
    description: str


@dataclass(frozen=True)
class Sample:
    """One report value as it came over the wire (oadrUpdateReport), with its data point."""

    ven_id: str
    r_id: str
    dt: datetime
    value: float


@dataclass
class VTN:
    """openleadr's OpenADRServer with the handlers a DSO would write: registration by VEN name,
    every offered report requested at 1 s, every event response and report value recorded.

    openleadr's compact ``on_register_report`` handler is not told which data point (rID) it
    is asked about, so the wire messages are recorded too: ``offered`` (venID, rID) ->
    readingType from oadrRegisterReport, ``samples`` from oadrUpdateReport; ``reports`` is what
    the handler's callbacks received."""

    loop: Loop
    port: int = field(default_factory=free_port)
    opts: dict[str, list[str]] = field(default_factory=dict)  # event id -> callback opt_types
    responses: list[Response] = field(default_factory=list)   # every eventResponse, raw
    reports: list[tuple[str, str, datetime, float]] = field(default_factory=list)
    registered_reports: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    offered: dict[tuple[str, str], str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    on_opt: dict[str, Callable[[str], None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = OpenADRServer(vtn_id="TEST-VTN", http_port=self.port,
                                    requested_poll_freq=timedelta(seconds=1),
                                    ven_lookup=self._lookup)
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)
        hooks.register("before_parse", self._raw)
        self.loop.run(self.server.run())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def close(self) -> None:
        hooks.HOOKS["before_parse"].remove(self._raw)
        self.loop.run(self.server.stop())

    # handlers

    def _lookup(self, ven_id: str) -> dict[str, str]:
        return {"ven_id": ven_id, "ven_name": ven_id[4:], "registration_id": f"reg-{ven_id}"}

    def _register(self, payload: dict[str, Any]) -> tuple[str, str]:
        ven_id = f"ven-{payload['ven_name']}"
        return ven_id, f"reg-{ven_id}"

    def _register_report(self, ven_id: str, resource_id: str, measurement: str, unit: str,
                         scale: str, min_sampling_interval: timedelta,
                         max_sampling_interval: timedelta) -> tuple[Any, timedelta]:
        self.registered_reports.append((ven_id, resource_id, measurement, unit, scale))

        def got(values: list[tuple[datetime, float]]) -> None:
            self.reports.extend((ven_id, resource_id, dt, v) for dt, v in values)
        return got, max(min_sampling_interval, timedelta(seconds=1))

    async def _raw(self, content: bytes) -> None:
        try:
            kind, payload = parse_message(content)
        except Exception:
            return
        if kind == "oadrCreatedEvent":
            for r in payload.get("event_responses", []):
                self.responses.append(Response(str(r["event_id"]), r["modification_number"],
                                               r["opt_type"], r.get("response_description", "")))
        elif kind == "oadrRegisterReport":
            for report in payload.get("reports") or []:
                for rd in report.get("report_descriptions") or []:
                    self.offered[(payload["ven_id"], rd["r_id"])] = rd.get("reading_type", "")
        elif kind == "oadrUpdateReport":
            for report in payload.get("reports") or []:
                for iv in report.get("intervals") or []:
                    rp = iv["report_payload"]
                    self.samples.append(Sample(payload["ven_id"], rp["r_id"], iv["dtstart"],
                                               float(rp["value"])))

    def wait_samples(self, ven_id: str, r_id: str, pred: Callable[[Sample], bool], n: int,
                     what: str) -> list[Sample]:
        """The first ``n`` samples of ``r_id`` from ``ven_id`` that arrive from now on and for
        which ``pred`` holds (with every later sample of it that arrived meanwhile)."""
        k = len(self.samples)
        end = time.monotonic() + PATIENCE_S
        while time.monotonic() < end:
            got = [x for x in self.samples[k:] if (x.ven_id, x.r_id) == (ven_id, r_id)]
            first = next((i for i, x in enumerate(got) if pred(x)), None)
            if first is not None and len(got) - first >= n:
                return got[first:]
            time.sleep(0.05)
        raise AssertionError(f"no {n} samples {what} of {r_id} from {ven_id}: "
                             f"{[x for x in self.samples[k:] if x.r_id == r_id][-5:]}")

    # events (call from the test thread; they run on the loop)

    def _callback(self, event_id: str) -> Callable[..., None]:
        def cb(ven_id: str, event_id: str, opt_type: str) -> None:
            self.opts.setdefault(event_id, []).append(opt_type)
            hook = self.on_opt.get(event_id)
            if hook is not None:
                hook(opt_type)
        return cb

    def add_event(self, ven_id: str, event_id: str, signal_name: str, signal_type: str,
                  intervals: list[dict[str, Any]], measurement: objects.Measurement | None = None,
                  startafter: timedelta | None = None) -> None:
        def add() -> None:
            signal = objects.EventSignal(intervals=intervals, signal_name=signal_name,
                                         signal_type=signal_type, signal_id=f"{event_id}-s",
                                         measurement=measurement)
            event = objects.Event(
                event_descriptor=objects.EventDescriptor(
                    event_id=event_id, modification_number=0, event_status="far",
                    market_context="oadr://test", created_date_time=datetime.now(UTC)),
                event_signals=[signal], targets=[{"ven_id": ven_id}])
            self.server.add_raw_event(ven_id=ven_id, event=event,
                                      callback=self._callback(event_id))
            if startafter is not None:  # after: add_raw_event replaces the active period
                event.active_period["tolerance"] = {"startafter": startafter}
        self.loop.call(add)

    def _event(self, ven_id: str, event_id: str) -> Any:
        return utils.find_by(self.server.events[ven_id], "event_descriptor.event_id", event_id)

    def modify(self, ven_id: str, event_id: str, intervals: list[dict[str, Any]],
               signal: tuple[str, str] | None = None,
               measurement: objects.Measurement | None = None) -> int:
        """A new modification with new intervals, and signal (name, type) if given: what a VTN
        operator's edit sends."""
        def edit() -> int:
            event = self._event(ven_id, event_id)
            sig = event.event_signals[0]
            sig.intervals = intervals
            if signal is not None:
                sig.signal_name, sig.signal_type = signal
                sig.measurement = measurement
            event.active_period = utils.get_active_period_from_intervals(intervals, False)
            mod = utils.increment_event_modification_number(event)
            self.server.event_callbacks[event_id] = (event, self._callback(event_id))
            self.server.events_updated[ven_id] = True
            return mod
        return self.loop.call(edit)

    def cancel(self, ven_id: str, event_id: str) -> None:
        def cancel() -> None:
            event = self._event(ven_id, event_id)
            self.server.cancel_event(ven_id, event_id)
            self.server.event_callbacks[event_id] = (event, self._callback(event_id))
        self.loop.call(cancel)

    def wait_opt(self, event_id: str, n: int = 1) -> str:
        """The n-th opt_type the VTN's event callback saw for ``event_id``."""
        end = time.monotonic() + PATIENCE_S
        while time.monotonic() < end:
            got = self.opts.get(event_id, [])
            if len(got) >= n:
                return got[n - 1]
            time.sleep(0.01)
        raise AssertionError(f"the VTN saw no response {n} to {event_id}: {self.opts}")

    def response(self, event_id: str, modification: int) -> Response:
        end = time.monotonic() + PATIENCE_S
        while time.monotonic() < end:
            for r in self.responses:
                if r.event_id == event_id and r.modification == modification:
                    return r
            time.sleep(0.01)
        raise AssertionError(f"no eventResponse for {event_id} modification {modification}")


class PlanStream:
    """``WatchPlans`` for one site, read by a thread into a queue."""

    def __init__(self, target: str, site_id: str) -> None:
        self.ch = grpc.insecure_channel(target)
        self.stream = pb_grpc.ChargingOptimizerStub(self.ch).WatchPlans(
            pb.WatchPlansRequest(site_ids=[site_id]))
        self.q: queue.Queue[pb.Plan] = queue.Queue()
        self.latest: pb.Plan | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for update in self.stream:
                if update.HasField("plan"):
                    self.q.put(update.plan)
        except grpc.RpcError:
            pass

    def wait(self, pred: Callable[[pb.Plan], bool], what: str) -> pb.Plan:
        """The first plan from now on (or the latest seen) for which ``pred`` holds."""
        if self.latest is not None and pred(self.latest):
            return self.latest
        end = time.monotonic() + PATIENCE_S
        while time.monotonic() < end:
            try:
                self.latest = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if pred(self.latest):
                return self.latest
        raise AssertionError(f"no plan {what}; last: {self.latest}")

    def close(self) -> None:
        self.stream.cancel()
        self.ch.close()


# --- plan arithmetic, independent of the VEN's ---------------------------------------------------


def _dt(ts: Any) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def amps(profile: pb.ConnectorProfile, t: datetime) -> float:
    value = 0.0
    for p in profile.points:
        if _dt(p.start) <= t:
            value = p.current_a
    return value


def kw_at(plan: pb.Plan, t: datetime) -> float:
    """Planned import at the grid node: every connector is 3-phase 230 V under it."""
    return sum(amps(p, t) for p in plan.profiles) * KW_PER_A


def times_in(plan: pb.Plan, start: datetime, end: datetime) -> list[datetime]:
    """``start`` and every change point in [start, end)."""
    ts = {start} | {_dt(p.start) for prof in plan.profiles for p in prof.points}
    return sorted(t for t in ts if start <= t < end)


def peak_kw(plan: pb.Plan, start: datetime, end: datetime) -> float:
    return max(kw_at(plan, t) for t in times_in(plan, start, end))


def min_kw(plan: pb.Plan, start: datetime, end: datetime) -> float:
    return min(kw_at(plan, t) for t in times_in(plan, start, end))


def connector_peak(plan: pb.Plan, start: datetime, end: datetime) -> dict[str, float]:
    return {p.connector: max(amps(p, t) for t in times_in(plan, start, end))
            for p in plan.profiles}


def held(target: str, site: str = SITE) -> dict[str, tuple[float, int, datetime, datetime]]:
    with grpc.insecure_channel(target) as ch:
        events = pb_grpc.GridOperatorStub(ch).ListEvents(
            pb.ListEventsRequest(site_id=site), timeout=10).events
    return {e.id: (round(e.limit_kw, 6), e.modification, _dt(e.start), _dt(e.end))
            for e in events}


def setpoint(start: datetime, *kws: float, minutes: int = 60) -> list[dict[str, Any]]:
    """Back-to-back intervals of ``minutes`` from ``start``, payload in W."""
    d = timedelta(minutes=minutes)
    return [{"dtstart": start + k * d, "duration": d, "signal_payload": kw * 1000}
            for k, kw in enumerate(kws)]


WATTS = objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="none",
                            power_attributes=objects.PowerAttributes(hertz=50, voltage=230,
                                                                     ac=True))


# --- fixtures ------------------------------------------------------------------------------------


def seed_site(channel: grpc.Channel, site: str, now: datetime) -> None:
    """3 x 40 A grid, 4 three-phase 32 A connectors, 4 cars wanting more than the grid gives."""
    csms = pb_grpc.ChargingOptimizerStub(channel)
    csms.PutSite(pb.PutSiteRequest(site=make_site(site, 40.0, n=4), options=make_options()),
                 timeout=30)
    for k in range(4):
        csms.StartSession(pb.StartSessionRequest(
            site_id=site, session=make_session(f"car{k}", f"c{k}", now, hours=5.5, kwh=80.0)),
            timeout=30)


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def optimizer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("oadr") / "db.sqlite",
                       refresh=False)
    assert srv.wait_ready(120)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        seed_site(ch, SITE, datetime.now(UTC).replace(microsecond=0))
    yield srv
    srv.stop(1.0)


@pytest.fixture(scope="module")
def target(optimizer: RunningServer) -> str:
    return f"127.0.0.1:{optimizer.port}"


@pytest.fixture(scope="module")
def vtn(loop: Loop) -> Iterator[VTN]:
    v = VTN(loop)
    yield v
    v.close()


def config(vtn: VTN, target: str, name: str, **kw: Any) -> VenConfig:
    return VenConfig(vtn=vtn.url, ven_name=name, site=kw.pop("site", SITE), node="grid",
                     optimizer=target, poll_s=POLL_S, **kw)


@pytest.fixture(scope="module")
def ven(loop: Loop, vtn: VTN, target: str) -> Iterator[OptimizerVEN]:
    v = OptimizerVEN(config(vtn, target, "depot"))
    loop.run(v.start())
    yield v
    loop.run(v.stop())


@pytest.fixture(scope="module")
def plans(target: str) -> Iterator[PlanStream]:
    s = PlanStream(target, SITE)
    yield s
    s.close()


def settled(plans: PlanStream) -> pb.Plan:
    """The plan with all four cars, the grid binding and no event."""
    return plans.wait(lambda p: len(p.sessions) == 4 and kw_at(p, _dt(p.start)) >= GRID_KW - 0.3
                      and peak_kw(p, _dt(p.start), _dt(p.start) + timedelta(hours=5))
                      <= GRID_KW + 1e-6
                      and min_kw(p, _dt(p.start), _dt(p.start) + timedelta(hours=5))
                      >= GRID_KW - 0.3, "with 4 cars sharing 27.6 kW and no event")


def window(minutes_ahead: int = 45, hours: float = 1.0) -> tuple[datetime, datetime]:
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes_ahead)
    return t0, t0 + timedelta(hours=hours)


# --- the tests -----------------------------------------------------------------------------------


def test_event_reaches_every_connector_then_cancel_restores(
        ven: OptimizerVEN, vtn: VTN, plans: PlanStream, target: str) -> None:
    before = settled(plans)
    t0, t1 = window()
    vtn.add_event("ven-depot", "ev-cap", "LOAD_CONTROL", enums.SIGNAL_TYPE.X_LOAD_CONTROL_SETPOINT,
                  setpoint(t0, 11.0), measurement=WATTS)
    assert vtn.wait_opt("ev-cap") == OPT_IN
    # acknowledged -> stored: 11,000 W became 11 kW on the grid node, interval 0 of the event
    assert held(target)["openadr2b:ev-cap#0"] == (11.0, 0, t0, t1)

    cut = plans.wait(lambda p: peak_kw(p, t0, t1) <= 11.0 + 1e-6, "within 11 kW in the window")
    assert peak_kw(cut, t0, t1) >= 11.0 - 4.2  # it still charges what it can (a car's 6 A step)
    assert kw_at(cut, t0 - timedelta(minutes=20)) >= GRID_KW - 0.3  # before the window: as before
    old, new = connector_peak(before, t0, t1), connector_peak(cut, t0, t1)
    assert set(new) == {"c0", "c1", "c2", "c3"}
    assert all(new[c] < old[c] for c in old), (old, new)  # every connector lowered

    vtn.cancel("ven-depot", "ev-cap")
    assert vtn.wait_opt("ev-cap", 2) == OPT_IN
    assert "openadr2b:ev-cap#0" not in held(target)
    back = plans.wait(lambda p: min_kw(p, t0, t1) >= GRID_KW - 0.3, "restored after cancel")
    assert peak_kw(back, t0, t1) <= GRID_KW + 1e-6


def test_modification_supersedes_and_drops_intervals(
        ven: OptimizerVEN, vtn: VTN, plans: PlanStream, target: str) -> None:
    settled(plans)
    t0, t1 = window(hours=2.0)
    mid = t0 + timedelta(hours=1)
    # SIMPLE levels 1 and 2: 0.75 and 0.5 of the 27.6 kW node = 20.7 and 13.8 kW
    vtn.add_event("ven-depot", "ev-mod", "SIMPLE", "level",
                  [{"dtstart": t0, "duration": timedelta(hours=1), "signal_payload": 1},
                   {"dtstart": mid, "duration": timedelta(hours=1), "signal_payload": 2}])
    assert vtn.wait_opt("ev-mod") == OPT_IN
    assert held(target) == {"openadr2b:ev-mod#0": (20.7, 0, t0, mid),
                            "openadr2b:ev-mod#1": (13.8, 0, mid, t1)}
    plans.wait(lambda p: peak_kw(p, t0, mid) <= 20.7 + 1e-6 and peak_kw(p, mid, t1) <= 13.8 + 1e-6
               and peak_kw(p, t0, mid) > 13.8 + 1e-6, "with both SIMPLE intervals")

    # modification 1: one interval, 16.56 kW (24 A) over the whole window
    assert vtn.modify("ven-depot", "ev-mod", setpoint(t0, 16.56, minutes=120),
                      ("LOAD_CONTROL", "x-loadControlSetpoint"), WATTS) == 1
    assert vtn.wait_opt("ev-mod", 2) == OPT_IN
    assert held(target) == {"openadr2b:ev-mod#0": (16.56, 1, t0, t1)}  # #1 cancelled
    new = plans.wait(lambda p: peak_kw(p, t0, t1) <= 16.56 + 1e-6
                     and peak_kw(p, mid, t1) > 13.8 + 1e-6, "with modification 1 only")
    assert peak_kw(new, t0, mid) <= 16.56 + 1e-6  # the old 20.7 kW is gone ...
    assert peak_kw(new, mid, t1) > 13.8 + 1e-6  # ... and so is the old 13.8 kW

    vtn.cancel("ven-depot", "ev-mod")
    assert vtn.wait_opt("ev-mod", 3) == OPT_IN
    assert not any(k.startswith("openadr2b:ev-mod") for k in held(target))


def test_unmappable_and_hostile_events_get_optout_and_change_nothing(
        ven: OptimizerVEN, vtn: VTN, target: str) -> None:
    t0, t1 = window()
    vtn.add_event("ven-depot", "ev-keep", "LOAD_CONTROL", "x-loadControlCapacity",
                  [{"dtstart": t0, "duration": t1 - t0, "signal_payload": 0.5}])
    assert vtn.wait_opt("ev-keep") == OPT_IN
    before = held(target)
    assert before["openadr2b:ev-keep#0"] == (13.8, 0, t0, t1)

    hour = timedelta(hours=1)
    hostile = {
        "ev-nan": ("LOAD_CONTROL", "x-loadControlSetpoint",
                   [{"dtstart": t0, "duration": hour, "signal_payload": "NaN"}], "finite"),
        "ev-neg": ("LOAD_CONTROL", "x-loadControlCapacity",
                   [{"dtstart": t0, "duration": hour, "signal_payload": -0.5}], "negative"),
        "ev-big": ("LOAD_CONTROL", "x-loadControlCapacity",
                   [{"dtstart": t0, "duration": hour, "signal_payload": 1.5}], "fraction"),
        "ev-overlap": ("LOAD_CONTROL", "x-loadControlSetpoint",
                       [{"dtstart": t0, "duration": hour, "signal_payload": 5.0},
                        {"dtstart": t0 + hour / 2, "duration": hour, "signal_payload": 6.0}],
                       "overlaps"),
        "ev-dispatch": ("LOAD_DISPATCH", "setpoint",
                        [{"dtstart": t0, "duration": hour, "signal_payload": 5.0}],
                        "not supported"),
        "ev-offset": ("LOAD_CONTROL", "x-loadControlLevelOffset",
                      [{"dtstart": t0, "duration": hour, "signal_payload": 1.0}],
                      "not supported"),
        "ev-price": ("ELECTRICITY_PRICE", "price",
                     [{"dtstart": t0, "duration": hour, "signal_payload": 0.3}], "prices"),
        "ev-level": ("simple", "level",
                     [{"dtstart": t0, "duration": hour, "signal_payload": 7}], "level 7"),
    }
    for eid, (name, typ, ivs, _) in hostile.items():
        vtn.add_event("ven-depot", eid, name, typ, ivs)
    for eid, (*_, why) in hostile.items():
        assert vtn.wait_opt(eid) == OPT_OUT, eid
        desc = vtn.response(eid, 0).description
        assert why in desc, (eid, desc)  # the reason reaches the VTN
    # a modification to a hostile payload: refused, the held modification stays in force
    vtn.modify("ven-depot", "ev-keep", [{"dtstart": t0, "duration": t1 - t0,
                                         "signal_payload": "INF"}])
    assert vtn.wait_opt("ev-keep", 2) == OPT_OUT
    assert held(target) == before
    vtn.cancel("ven-depot", "ev-keep")
    assert vtn.wait_opt("ev-keep", 3) == OPT_IN
    assert "openadr2b:ev-keep#0" not in held(target)


def test_startafter_holds_the_limit_until_the_latest_end(
        ven: OptimizerVEN, vtn: VTN, target: str) -> None:
    t0, t1 = window()
    vtn.add_event("ven-depot", "ev-jitter", "LOAD_CONTROL", "x-loadControlSetpoint",
                  setpoint(t0, 9.0), measurement=WATTS, startafter=timedelta(minutes=10))
    assert vtn.wait_opt("ev-jitter") == OPT_IN
    assert held(target)["openadr2b:ev-jitter#0"] == (9.0, 0, t0, t1 + timedelta(minutes=10))
    vtn.cancel("ven-depot", "ev-jitter")
    assert vtn.wait_opt("ev-jitter", 2) == OPT_IN


def eventually(pred: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + PATIENCE_S
    while not pred():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def handed_to_callback(vtn: VTN, samples: list[Sample]) -> None:
    """Every sample also reached the VTN's report callback (``on_register_report``'s)."""
    keys = [(x.ven_id, SITE, x.dt, x.value) for x in samples]
    eventually(lambda: all(k in vtn.reports for k in keys),
               f"the VTN's callback did not get every one of {keys}")


def test_vtn_receives_planned_import_reports(ven: OptimizerVEN, vtn: VTN,
                                             plans: PlanStream) -> None:
    plan = settled(plans)
    assert ("ven-depot", SITE, "RealPower", "W", "k") in vtn.registered_reports
    assert vtn.offered[("ven-depot", PLANNED)] == "Projected"
    fresh = vtn.wait_samples("ven-depot", PLANNED, lambda x: True, 2, "at all")
    for x in fresh:
        # kW at the node per the plan in force: 4 cars x current x 3 phases x 230 V
        assert x.value == pytest.approx(kw_at(plan, x.dt), abs=1e-3)
        assert x.value == pytest.approx(GRID_KW, abs=0.3)
    handed_to_callback(vtn, fresh)


def test_vtn_receives_measured_import_reports(ven: OptimizerVEN, vtn: VTN, plans: PlanStream,
                                              target: str) -> None:
    """Measured import = sum over the sessions with a measured current of A x 3 x 230 V; the
    cars without a measurement add nothing (they charge ~6.9 kW each by the plan)."""
    settled(plans)
    assert vtn.offered[("ven-depot", MEASURED)] == "Summed"
    # nothing measured yet: planned samples flow, measured ones are skipped
    vtn.wait_samples("ven-depot", PLANNED, lambda x: True, 2, "at all")
    assert not [x for x in vtn.samples if (x.ven_id, x.r_id) == ("ven-depot", MEASURED)]

    with grpc.insecure_channel(target) as ch:
        csms = pb_grpc.ChargingOptimizerStub(ch)

        def measure(session: str, amps: float) -> None:
            csms.UpdateSession(pb.UpdateSessionRequest(site_id=SITE, session_id=session,
                                                       measured_current_a=amps), timeout=10)

        measure("car0", 12.5)
        measure("car2", 7.0)
        want = (12.5 + 7.0) * 3 * 230 / 1000  # 13.455 kW; car1 and car3 left out
        got = vtn.wait_samples("ven-depot", MEASURED, lambda x: abs(x.value - want) < 1e-6, 2,
                               f"of {want} kW")
        assert [x.value for x in got] == pytest.approx([want] * len(got), abs=1e-9)
        handed_to_callback(vtn, got)

        measure("car0", 20.0)  # a new measurement replaces the old one
        want = (20.0 + 7.0) * 3 * 230 / 1000  # 18.63 kW
        got = vtn.wait_samples("ven-depot", MEASURED, lambda x: abs(x.value - want) < 1e-6, 2,
                               f"of {want} kW")
        assert [x.value for x in got] == pytest.approx([want] * len(got), abs=1e-9)
        handed_to_callback(vtn, got)


def test_measured_kw_sums_the_reported_currents_below_the_node() -> None:
    site = Site("s", (Node("grid"), Node("panel", "grid"), Node("other", None)), (
        Connector("a", "panel", 32.0),                              # 3 x 230 V: 0.69 kW/A
        Connector("a1", "panel", 32.0),                             # ... a 1-phase car: 0.23
        Connector("b", "grid", 32.0, phases=1),                     # 0.23 kW/A
        Connector("c", "grid", 32.0),
        Connector("d", "panel", 32.0, wiring=Wiring.DELTA, voltage_v=208.0),  # 0.208 kW/A
        Connector("x", "other", 32.0),                              # not below grid
    ))

    def session(sid: str, conn: str, amps: float | None, phases: int = 3) -> pb.Session:
        return pb.Session(id=sid, connector=conn, vehicle_phases=phases,
                          measured_current_a=amps)

    sessions = [session("s1", "a", 10.0), session("s2", "d", 16.0), session("s3", "b", 8.0, 0),
                session("s4", "x", 32.0), session("s5", "a1", 16.0, 1),
                session("s6", "c", None)]  # not measured: left out, not counted as 0 A
    grid = 10 * 0.69 + 16 * 0.208 + 8 * 0.23 + 16 * 0.23
    assert measured_kw(sessions, NodeLoad.of(site, "grid")) == pytest.approx(grid)
    panel = 10 * 0.69 + 16 * 0.208 + 16 * 0.23
    assert measured_kw(sessions, NodeLoad.of(site, "panel")) == pytest.approx(panel)
    assert measured_kw(sessions, NodeLoad.of(site, "other")) == pytest.approx(32 * 0.69)
    # no measured session below the node: no figure; a measured 0 A is a figure
    assert measured_kw([sessions[5]], NodeLoad.of(site, "grid")) is None
    assert measured_kw(sessions[:1], NodeLoad.of(site, "other")) is None
    assert measured_kw([session("z", "c", 0.0)], NodeLoad.of(site, "grid")) == 0.0


def test_decisions_by_status_node_and_modification(
        loop: Loop, vtn: VTN, optimizer: RunningServer, target: str) -> None:
    """Decisions against the real service, without a VTN in between: what each status does,
    a share on a node without a limit, a stale modification."""
    with grpc.insecure_channel(target) as ch:
        site = make_site("free", 40.0, n=1)
        site.nodes.append(pb.Node(id="panel", parent="grid", voltage_v=230.0))
        site.connectors[0].node = "panel"
        pb_grpc.ChargingOptimizerStub(ch).PutSite(pb.PutSiteRequest(site=site), timeout=10)
    v = OptimizerVEN(replace(config(vtn, target, "free", site="free"), node="panel"))
    t0, t1 = window()

    def event(eid: str, mod: int, typ: str, value: float, status: str = "far",
              test: bool = False) -> dict[str, Any]:
        return {"event_descriptor": {"event_id": eid, "modification_number": mod,
                                     "event_status": status, "test_event": test},
                "active_period": {"dtstart": t0, "duration": t1 - t0},
                "event_signals": [{"signal_name": "LOAD_CONTROL", "signal_type": typ,
                                   "intervals": [{"duration": t1 - t0, "signal_payload": value,
                                                  "uid": 0}]}]}

    setp = "x-loadControlSetpoint"
    steps_and_holdings: list[tuple[dict[str, Any], str, set[str]]] = [
        (event("e1", 0, "x-loadControlCapacity", 0.5), OPT_OUT, set()),  # panel: no limit
        (event("e1", 2, setp, 7.0), OPT_IN, {"e1"}),
        (event("e1", 1, setp, 3.0), OPT_OUT, {"e1"}),  # older than the one held
        (event("e2", 0, setp, 5.0, "near"), OPT_IN, {"e1", "e2"}),
        (event("e3", 0, setp, 5.0, "active"), OPT_IN, {"e1", "e2", "e3"}),
        (event("e4", 0, setp, 5.0, "completed"), OPT_IN, {"e1", "e2", "e3"}),  # nothing
        (event("e5", 0, setp, 5.0, test=True), OPT_IN, {"e1", "e2", "e3"}),  # a test: nothing
        (event("e2", 1, setp, 5.0, "cancelled"), OPT_IN, {"e1", "e3"}),
        (event("e9", 0, setp, 5.0, "cancelled"), OPT_IN, {"e1", "e3"}),  # never seen: fine
    ]
    got: list[tuple[str, set[str]]] = []

    async def steps() -> None:
        await v.connect()
        try:
            for e, _, _ in steps_and_holdings:
                opt = await v.handle_event(e)
                got.append((opt, {k.split(":")[1].split("#")[0] for k in held(target, "free")}))
        finally:
            await v.stop()

    loop.run(steps())
    assert got == [(opt, ids) for _, opt, ids in steps_and_holdings]
    assert "no power or phase limit" in v.reasons[("e1", 0)]
    assert "FAILED_PRECONDITION" in v.reasons[("e1", 1)]
    assert held(target, "free")["openadr2b:e1#0"] == (7.0, 2, t0, t1)


def test_acknowledged_event_survives_kill9(loop: Loop, vtn: VTN, tmp_path: Path) -> None:
    db = tmp_path / "durable.db"
    srv = ServerProcess(db, tmp_path / "first.log")
    seed_site(srv.channel, "dur", datetime.now(UTC).replace(microsecond=0))
    v = OptimizerVEN(config(vtn, f"127.0.0.1:{srv.port}", "durable", site="dur"))
    loop.run(v.start())
    killed: list[str] = []

    def kill_on_ack(opt: str) -> None:  # runs in the VTN as the oadrCreatedEvent arrives
        srv.proc.send_signal(signal.SIGKILL)
        killed.append(opt)

    vtn.on_opt["ev-dur"] = kill_on_ack
    t0, t1 = window()
    try:
        vtn.add_event("ven-durable", "ev-dur", "LOAD_CONTROL", "x-loadControlSetpoint",
                      setpoint(t0, 12.5), measurement=WATTS)
        assert vtn.wait_opt("ev-dur") == OPT_IN
        assert srv.proc.wait(PATIENCE_S) == -signal.SIGKILL and killed == [OPT_IN]
    finally:
        loop.run(v.stop())
        if srv.proc.poll() is None:
            srv.proc.kill()
        srv.channel.close()
    again = ServerProcess(db, tmp_path / "second.log")
    try:
        assert held(f"127.0.0.1:{again.port}", "dur") == {
            "openadr2b:ev-dur#0": (12.5, 0, t0, t1)}
    finally:
        again.kill(signal.SIGTERM)


def test_cli_process_registers_and_opts_in(vtn: VTN, target: str, tmp_path: Path) -> None:
    """``python -m optimizer.grid.openadr2b --config FILE`` as a DSO-facing process: flags
    override the file; SIGTERM ends it with 0."""
    cfg = tmp_path / "ven.toml"
    cfg.write_text(f'[openadr2b]\nvtn = "{vtn.url}"\nven_name = "cli"\nsite = "{SITE}"\n'
                   f'node = "nowhere"\noptimizer = "{target}"\nsimple_levels = "1=0.5"\n')
    log = tmp_path / "ven.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "optimizer.grid.openadr2b", "--config", str(cfg),
         "--node", "grid", "--poll-s", str(POLL_S)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
        stderr=log.open("w"))
    try:
        t0, t1 = window()
        vtn.add_event("ven-cli", "ev-cli", "SIMPLE", "level",
                      [{"dtstart": t0, "duration": t1 - t0, "signal_payload": 1}])
        assert vtn.wait_opt("ev-cli") == OPT_IN, (vtn.response("ev-cli", 0), log.read_text())
        assert held(target).get("openadr2b:ev-cli#0") == (13.8, 0, t0, t1), log.read_text()
        vtn.cancel("ven-cli", "ev-cli")  # 13.8 kW: 1=0.5 from the file, of the 27.6 kW node
        assert vtn.wait_opt("ev-cli", 2) == OPT_IN, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(PATIENCE_S) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "registered with" in log.read_text()


def test_cli_refuses_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optimizer.grid.openadr2b import build_parser, main
    assert main(["--vtn", "http://x", "--ven-name", "v", "--site", "s"]) == 2
    assert "--node" in capsys.readouterr().err
    assert main(["--vtn", "http://x", "--ven-name", "v", "--site", "s", "--node", "n",
                 "--simple-levels", "1=1.5"]) == 2
    assert "share must be in [0, 1]" in capsys.readouterr().err
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"openadr2b": {"vtn": "http://x", "colour": "red"}}))
    assert main(["--config", str(bad)]) == 2
    assert "colour" in capsys.readouterr().err
    assert build_parser().prog == "python -m optimizer.grid.openadr2b"


def test_cli_exits_1_when_the_site_has_no_such_node(vtn: VTN, target: str) -> None:
    from optimizer.grid.openadr2b import main
    assert main(["--vtn", vtn.url, "--ven-name", "x", "--site", SITE, "--node", "nowhere",
                 "--optimizer", target, "--log-level", "error"]) == 1
    assert main(["--vtn", vtn.url, "--ven-name", "x", "--site", "no-such-site", "--node",
                 "grid", "--optimizer", target, "--log-level", "error"]) == 1
