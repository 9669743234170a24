"""End to end on loopback: optimizer gRPC server + OCPP bridge + 11 simulated charge points.

Real servers and sockets: the optimizer (``build_server``, temp SQLite), the bridge
(``optimizer.bridge.Bridge``, asyncio) and charge points built on the ``ocpp`` package's
``ChargePoint`` (10 x OCPP 2.0.1, one of them with two EVSEs and one in W, 1 x OCPP 1.6 with two
connectors mapped by ``--map``), which validate every message against the OCPP JSON schemas,
check what the schemas miss (independent code in ``tests/ocpp/helpers``) and answer
SetChargingProfile with Accepted, recording what they hold.

Flow: site registered (13 connectors under a 100 kW node, OCPP options with fail-safe) -> charge
points boot and receive fail-safe TxDefaultProfiles whose worst case fits the node ->
transactions start -> every EVSE holds a TxProfile bound to its transaction -> a curtailment
event (45 kW) over gRPC -> every charge point gets new profiles, and at every instant of the
event window the sum of what the charge points hold fits the event -> one charge point drops its
connection -> the event is cancelled -> the others get higher limits at once (unless the new plan
gives the dropped one less than it still holds: then once it is back and lowered), the
reconnected one as soon as it is back -> meter values and ISO 15118 charging needs reach the
optimizer -> the bridge restarts: the stations reconnect, the new bridge adopts their
transactions and a second event curtails them again -> transactions end and their sessions are
gone. Every wait is on a condition with a timeout; the event -> last acceptance latency is
printed (and recorded as a test property), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.bridge import Bridge, BridgeConfig
from optimizer.ocpp import applied_limit
from optimizer.service.server import RunningServer, build_server

from ..ocpp.helpers import limit_at, parts, period_starts, rule_errors, schema_errors

SITE = "e2e-depot"
NODE_KW = 100.0
EVENT_KW = 45.0
V = 230.0
PATIENCE_S = 20.0  # per awaited condition; never a timing assertion
MAX_PERIODS = 24


# --- the site ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evse:
    station: str
    evse: int
    connector: str
    version: str
    unit: str = "A"


def layout() -> list[Evse]:
    out = [Evse(f"CP{k:02d}", 1, f"c{k:02d}", "2.0.1", "W" if k == 9 else "A")
           for k in range(1, 10)]
    out += [Evse("CP10", 1, "c10", "2.0.1"), Evse("CP10", 2, "c11", "2.0.1")]
    out += [Evse("CP11", 1, "c12", "1.6"), Evse("CP11", 2, "c13", "1.6")]
    return out


EVSES = layout()
STATIONS = sorted({e.station for e in EVSES})


def site_request() -> pb.PutSiteRequest:
    site = pb.Site(
        id=SITE,
        nodes=[pb.Node(id="grid", power_limit_kw=NODE_KW, voltage_v=V)],
        connectors=[pb.Connector(id=e.connector, node="grid", max_current_a=32.0,
                                 min_current_a=6.0, phases=3, voltage_v=V) for e in EVSES],
    )
    options = pb.Options(mode=pb.MODE_FAST)
    options.slot_length.FromTimedelta(timedelta(minutes=15))
    options.horizon.FromTimedelta(timedelta(hours=6))
    options.time_limit.FromTimedelta(timedelta(seconds=5))
    chargers = []
    for e in EVSES:
        ch = pb.ChargerCapabilities(
            connector=e.connector, ocpp_version=e.version, max_periods=MAX_PERIODS,
            rate_unit=pb.RATE_UNIT_WATTS if e.unit == "W" else pb.RATE_UNIT_AMPS,
            # the 1.6 charge point's OCPP identity is not its station_id: the bridge gets
            # --map CP11:N=c1x for it (mapping rule 1); the others match by station_id (rule 2)
            station_id="legacy-16" if e.version == "1.6" else e.station,
        )
        if e.version == "1.6":
            ch.connector_id = e.evse
        else:
            ch.evse_id = e.evse
        chargers.append(ch)
    return pb.PutSiteRequest(site=site, options=options,
                             ocpp=pb.OcppOptions(chargers=chargers, failsafe=True))


# --- simulated charge points -------------------------------------------------------------------


class Hub:
    """Wakes every waiter whenever any charge point records something, after running ``probe``
    (the test's invariant checks, on every change of what the charge points hold)."""

    def __init__(self) -> None:
        self.cond = asyncio.Condition()
        self.probe: Callable[[], None] = lambda: None

    async def notify(self) -> None:
        self.probe()
        async with self.cond:
            self.cond.notify_all()

    async def until(self, pred: Callable[[], bool], what: str,
                    timeout: float = PATIENCE_S) -> None:
        async with self.cond:
            try:
                await asyncio.wait_for(self.cond.wait_for(pred), timeout)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for: {what}") from None


@dataclass
class Held:
    payload: dict[str, Any]
    accepted_at: float  # perf_counter


@dataclass
class Station:
    """What one simulated charge point holds; survives its reconnects."""

    name: str
    version: str
    evses: list[int]
    tx: dict[int, str] = field(default_factory=dict)  # evse -> transaction id
    profiles: dict[tuple[int, int], Held] = field(default_factory=dict)  # (evse, id) -> held
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def purpose(self, payload: dict[str, Any]) -> str:
        return str(parts(payload, self.version)[1]["chargingProfilePurpose"])

    def check_and_hold(self, payload: dict[str, Any]) -> str:
        """Accept a SetChargingProfile the way a strict charger would, or say why not."""
        self.received.append((time.perf_counter(), payload))
        errs = schema_errors(payload, self.version) + rule_errors(payload, self.version,
                                                                  MAX_PERIODS)
        target, prof, _ = parts(payload, self.version)
        pid = prof["id"] if self.version != "1.6" else prof["chargingProfileId"]
        if target not in self.evses:
            errs.append(f"unknown EVSE {target}")
        purpose = prof["chargingProfilePurpose"]
        if purpose == "TxProfile" and str(prof.get("transactionId")) != self.tx.get(target):
            errs.append(f"TxProfile for transaction {prof.get('transactionId')}, "
                        f"active: {self.tx.get(target)}")
        for (evse, other), held in self.profiles.items():
            p = parts(held.payload, self.version)[1]
            if (evse == target and other != pid and p["chargingProfilePurpose"] == purpose
                    and p["stackLevel"] == prof["stackLevel"]):
                errs.append(f"profile {other} already holds {purpose} level {p['stackLevel']}")
        if errs:
            self.rejected.append(f"{self.name}: {errs}")
            return "Rejected"
        self.profiles[target, pid] = Held(payload, time.perf_counter())
        return "Accepted"

    def latest(self, evse: int, purpose: str) -> Held | None:
        found = [h for (e, _), h in self.profiles.items()
                 if e == evse and self.purpose(h.payload) == purpose]
        return max(found, key=lambda h: h.accepted_at, default=None)

    def end_tx(self, evse: int) -> None:
        self.tx.pop(evse, None)
        for key in [k for k, h in self.profiles.items()
                    if k[0] == evse and self.purpose(h.payload) == "TxProfile"]:
            del self.profiles[key]


class Sim201(ChargePoint201):
    def __init__(self, st: Station, ws: Any, hub: Hub) -> None:
        super().__init__(st.name, ws, response_timeout=PATIENCE_S)
        self.st, self.hub = st, hub

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any],
                                      **_: Any) -> Any:
        payload = snake_to_camel_case({"evse_id": evse_id, "charging_profile": charging_profile})
        status = self.st.check_and_hold(payload)
        await self.hub.notify()
        from ocpp.v201 import call_result
        return call_result.SetChargingProfile(status=status)


class Sim16(ChargePoint16):
    def __init__(self, st: Station, ws: Any, hub: Hub) -> None:
        super().__init__(st.name, ws, response_timeout=PATIENCE_S)
        self.st, self.hub = st, hub

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, connector_id: int,
                                      cs_charging_profiles: dict[str, Any], **_: Any) -> Any:
        payload = snake_to_camel_case({"connector_id": connector_id,
                                       "cs_charging_profiles": cs_charging_profiles})
        payload = _floats(payload)  # 1.6 limits arrive as Decimal (ocpp parses them exactly)
        status = self.st.check_and_hold(payload)
        await self.hub.notify()
        from ocpp.v16 import call_result
        return call_result.SetChargingProfile(status=status)


def _floats(value: Any) -> Any:
    import decimal

    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Link:
    """A live connection of a simulated charge point."""

    def __init__(self, st: Station, port: int, hub: Hub) -> None:
        self.st, self.port, self.hub = st, port, hub
        self.cp: Any = None
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        proto = "ocpp1.6" if self.st.version == "1.6" else "ocpp2.0.1"
        self.ws = await connect(f"ws://127.0.0.1:{self.port}/ocpp/{self.st.name}",
                                subprotocols=[proto])  # type: ignore[list-item]
        self.cp = (Sim16 if self.st.version == "1.6" else Sim201)(self.st, self.ws, self.hub)
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        with contextlib.suppress(Exception):
            await self.cp.start()

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def boot(self) -> None:
        if self.st.version == "1.6":
            r = await self.cp.call(call16.BootNotification(charge_point_model="Sim16",
                                                           charge_point_vendor="tests"))
            assert r.status == "Accepted"
            for c in self.st.evses:
                await self.cp.call(call16.StatusNotification(
                    connector_id=c, error_code="NoError", status="Available"))
        else:
            r = await self.cp.call(call201.BootNotification(
                charging_station={"model": "Sim201", "vendor_name": "tests"},
                reason="PowerUp"))
            assert r.status == "Accepted"
            for e in self.st.evses:
                await self.cp.call(call201.StatusNotification(
                    timestamp=_iso(datetime.now(UTC)), connector_status="Available",
                    evse_id=e, connector_id=1))

    async def status(self) -> None:
        """What a station sends after a reconnect (no reboot: its transactions go on)."""
        now = _iso(datetime.now(UTC))
        for e in self.st.evses:
            if self.st.version == "1.6":
                await self.cp.call(call16.StatusNotification(
                    connector_id=e, error_code="NoError", status="Charging", timestamp=now))
            else:
                await self.cp.call(call201.StatusNotification(
                    timestamp=now, connector_status="Occupied", evse_id=e, connector_id=1))

    async def start_tx(self, evse: int, tx_no: int) -> None:
        if self.st.version == "1.6":
            r = await self.cp.call(call16.StartTransaction(
                connector_id=evse, id_tag="TAG1", meter_start=1000,
                timestamp=_iso(datetime.now(UTC))))
            self.st.tx[evse] = str(r.transaction_id)
            return
        tx = f"{self.st.name}-tx{tx_no}"
        self.st.tx[evse] = tx
        await self.cp.call(call201.TransactionEvent(
            event_type="Started", timestamp=_iso(datetime.now(UTC)),
            trigger_reason="CablePluggedIn", seq_no=0,
            transaction_info={"transaction_id": tx, "charging_state": "EVConnected"},
            evse={"id": evse, "connector_id": 1}, number_of_phases_used=3,
            meter_value=[{"timestamp": _iso(datetime.now(UTC)), "sampled_value": [
                {"value": 5000.0, "context": "Transaction.Begin"}]}]))

    async def charging_needs(self, evse: int, hours: float, kwh: float) -> None:
        r = await self.cp.call(call201.NotifyEVChargingNeeds(
            evse_id=evse, charging_needs={
                "requested_energy_transfer": "AC_three_phase",
                "departure_time": _iso(datetime.now(UTC) + timedelta(hours=hours)),
                "ac_charging_parameters": {"energy_amount": int(kwh * 1000),
                                           "ev_min_current": 6, "ev_max_current": 32,
                                           "ev_max_voltage": 400}}))
        assert r.status == "Accepted"

    async def meter(self, evse: int, wh: float) -> None:
        now = _iso(datetime.now(UTC))
        if self.st.version == "1.6":
            await self.cp.call(call16.MeterValues(
                connector_id=evse, transaction_id=int(self.st.tx[evse]),
                meter_value=[{"timestamp": now, "sampled_value": [
                    {"value": str(int(wh)), "measurand": "Energy.Active.Import.Register",
                     "unit": "Wh"}]}]))
            return
        await self.cp.call(call201.TransactionEvent(
            event_type="Updated", timestamp=now, trigger_reason="MeterValuePeriodic", seq_no=1,
            transaction_info={"transaction_id": self.st.tx[evse]},
            meter_value=[{"timestamp": now, "sampled_value": [
                {"value": wh, "measurand": "Energy.Active.Import.Register"},
                {"value": 10.5, "measurand": "Current.Import", "phase": "L1"}]}]))

    async def stop_tx(self, evse: int) -> None:
        tx = self.st.tx[evse]
        now = _iso(datetime.now(UTC))
        if self.st.version == "1.6":
            await self.cp.call(call16.StopTransaction(meter_stop=9000, timestamp=now,
                                                      transaction_id=int(tx)))
        else:
            await self.cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=now, trigger_reason="EVDeparted", seq_no=2,
                transaction_info={"transaction_id": tx, "stopped_reason": "EVDisconnected"}))
        self.st.end_tx(evse)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(t: datetime) -> Timestamp:
    m = Timestamp()
    m.FromDatetime(t.replace(tzinfo=None))
    return m


# --- what the charge points hold, in kW ---------------------------------------------------------


def kw_at(payload: dict[str, Any], version: str, t: datetime) -> float | None:
    """The power a profile allows at ``t``: W / 1000, or A x V x phases / 1000 (the period's
    numberPhases, 3 if absent: what a 3-phase car may draw under an A limit)."""
    limit = limit_at(payload, version, t)
    if limit is None:
        return None
    _, _, schedules = parts(payload, version)
    sch = schedules[0]
    if sch["chargingRateUnit"] == "W":
        return float(limit) / 1000
    start = datetime.fromisoformat(sch["startSchedule"].replace("Z", "+00:00"))
    phases = 3
    for p in sch["chargingSchedulePeriod"]:
        if start + timedelta(seconds=p["startPeriod"]) <= t:
            phases = p.get("numberPhases", 3)
    return float(limit) * V * phases / 1000


def tx_profiles(stations: dict[str, Station]) -> list[tuple[Station, Held]]:
    out = []
    for st in stations.values():
        for evse in st.tx:
            held = st.latest(evse, "TxProfile")
            if held is not None:
                out.append((st, held))
    return out


def total_kw(stations: dict[str, Station], t: datetime) -> float:
    return sum(kw_at(h.payload, st.version, t) or 0.0 for st, h in tx_profiles(stations))


def window_times(stations: dict[str, Station], start: datetime, end: datetime) -> list[datetime]:
    """``start`` and every period edge of any held TxProfile inside [start, end)."""
    times = {start}
    for st, h in tx_profiles(stations):
        times |= {t for t in period_starts(h.payload, st.version) if start <= t < end}
    return sorted(times)


def held_tx_bound(st: Station, evse: int) -> bool:
    h = st.latest(evse, "TxProfile")
    return h is not None and str(parts(h.payload, st.version)[1]["transactionId"]) == st.tx[evse]


# --- the test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def optimizer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db: Path = tmp_path_factory.mktemp("bridge") / "e2e.db"
    srv = build_server(port=0, db_path=db, refresh=False)
    assert srv.wait_ready(120.0), "optimizer never became SERVING"
    yield srv
    srv.stop(1.0)


def test_bridge_end_to_end(optimizer_server: RunningServer,
                           record_property: Callable[[str, Any], None],
                           capsys: pytest.CaptureFixture[str]) -> None:
    latency = asyncio.run(asyncio.wait_for(scenario(optimizer_server.port), 120))
    with capsys.disabled():  # reported, never asserted
        print(f"\n[bridge e2e] curtailment event -> last charge point acceptance: "
              f"{latency * 1000:.1f} ms ({len(STATIONS)} charge points, {len(EVSES)} EVSEs)")
    record_property("event_to_last_acceptance_ms", round(latency * 1000, 1))


async def scenario(grpc_port: int) -> float:
    hub = Hub()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    csms = pb_grpc.ChargingOptimizerStub(channel)
    grid = pb_grpc.GridOperatorStub(channel)
    await csms.PutSite(site_request(), timeout=30)

    mapping = {("CP11", e.evse): e.connector for e in EVSES if e.version == "1.6"}
    bridge = Bridge(BridgeConfig(site_id=SITE, optimizer=f"127.0.0.1:{grpc_port}",
                                 mapping=mapping, response_timeout_s=PATIENCE_S))
    port = await bridge.start("127.0.0.1", 0)
    stations = {s: Station(s, next(e.version for e in EVSES if e.station == s),
                           [e.evse for e in EVSES if e.station == s]) for s in STATIONS}
    links = {s: Link(st, port, hub) for s, st in stations.items()}
    # Safety during roll-outs: after every profile any charge point accepts, the TxProfiles held
    # across all of them, at every period edge of the next two hours, fit the node. (Each plan
    # fits; a roll-out that raised one station before lowering another would not.)
    peak: list[tuple[float, datetime | None]] = [(0.0, None)]

    def probe() -> None:
        now = datetime.now(UTC)
        for t in window_times(stations, now, now + timedelta(hours=2)):
            peak[0] = max(peak[0], (total_kw(stations, t), t), key=lambda p: p[0])

    hub.probe = probe
    try:
        # 1. boot: every EVSE receives its fail-safe TxDefaultProfile; worst case fits the node
        await asyncio.gather(*(lk.open() for lk in links.values()))
        await asyncio.gather(*(lk.boot() for lk in links.values()))

        def failsafes() -> list[tuple[Station, Held]]:
            return [(st, h) for st in stations.values() for e in st.evses
                    if (h := st.latest(e, "TxDefaultProfile")) is not None]

        await hub.until(lambda: len(failsafes()) == len(EVSES), "fail-safe on every EVSE")
        now = datetime.now(UTC)
        fs_kw = [kw_at(h.payload, st.version, now + timedelta(minutes=1)) for st, h in failsafes()]
        assert all(v is not None and v > 0 for v in fs_kw), fs_kw
        # A limits: a 3-phase car draws the limit on each phase; W: the limit is the power
        assert sum(v for v in fs_kw if v is not None) <= NODE_KW + 1e-9, fs_kw
        for st, h in failsafes():
            prof = parts(h.payload, st.version)[1]
            assert prof["stackLevel"] == 0 and "validTo" not in prof

        # 2. transactions start (two cars tell their departure and energy over ISO 15118)
        for k, e in enumerate(EVSES):
            await links[e.station].start_tx(e.evse, k)
        await links["CP02"].charging_needs(1, hours=2.0, kwh=15.0)
        await links["CP10"].charging_needs(2, hours=3.0, kwh=25.0)
        await hub.until(lambda: all(held_tx_bound(stations[e.station], e.evse) for e in EVSES),
                        "a TxProfile bound to every transaction")
        before = total_kw(stations, datetime.now(UTC) + timedelta(minutes=5))
        assert before <= NODE_KW + 1e-9
        assert before > EVENT_KW + 10.0, f"the plan uses only {before} kW before the event"

        # 3. curtailment event: every charge point gets new profiles, all fitting the event
        t_submit = time.perf_counter()
        now = datetime.now(UTC)
        ev_start, ev_end = now - timedelta(minutes=1), now + timedelta(hours=1)
        await grid.SubmitEvent(pb.SubmitEventRequest(site_id=SITE, event=pb.CurtailmentEvent(
            id="dr-1", node="grid", start=_ts(ev_start), end=_ts(ev_end), limit_kw=EVENT_KW,
            modification=1)), timeout=30)

        def curtailed() -> bool:
            fresh = all(
                (h := st.latest(e, "TxProfile")) is not None and h.accepted_at > t_submit
                for st in stations.values() for e in st.tx
            )
            if not fresh:
                return False
            t0 = max(datetime.now(UTC), ev_start)
            return all(total_kw(stations, t) <= EVENT_KW + 1e-9
                       for t in window_times(stations, t0, ev_end))

        await hub.until(curtailed, f"every charge point curtailed to {EVENT_KW} kW")
        latency = max(h.accepted_at for _, h in tx_profiles(stations)) - t_submit
        t0 = datetime.now(UTC)
        times = window_times(stations, t0, ev_end)
        assert len(times) >= 1
        for t in times:  # the independent check, once more on the final state
            assert total_kw(stations, t) <= EVENT_KW + 1e-9, (t, total_kw(stations, t))
            for st, h in tx_profiles(stations):  # the renderer's reader agrees with ours
                assert applied_limit(h.payload, st.version, t) == limit_at(h.payload,
                                                                           st.version, t)
        for st in stations.values():
            assert any(at > t_submit for at, _ in st.received), f"{st.name} got nothing new"
        assert not [r for st in stations.values() for r in st.rejected]

        # 4. a charge point drops off; the event is cancelled; the others get higher limits at
        #    once, the dropped one as soon as it is back (a reconnect, not a reboot). Unless the
        #    new plan gives the dropped one less than it still holds (the optimizer does not know
        #    it is offline, and a charger keeps its profiles): then the others stay curtailed
        #    until it is back and lowered (or the bridge's lower_wait_s, 40 s, is up).
        await links["CP03"].close()
        await poll(lambda: bridge.stations["CP03"].cp is None, "the bridge sees CP03 gone")
        plans = bridge.plans_seen
        t_cancel = time.perf_counter()
        await grid.CancelEvent(pb.CancelEventRequest(site_id=SITE, event_id="dr-1"), timeout=30)
        others = [e for e in EVSES if e.station != "CP03"]

        def restored(evses: list[Evse]) -> bool:
            return all((h := stations[e.station].latest(e.evse, "TxProfile")) is not None
                       and h.accepted_at > t_cancel for e in evses)

        at = datetime.now(UTC) + timedelta(minutes=2)
        await poll(lambda: bridge.plans_seen > plans, "the cancel's plan at the bridge")
        if "CP03" in bridge.lowering:  # it holds more than the new plan gives it
            await asyncio.sleep(0.5)  # (time for a wrong raise; the probe would see it too)
            assert "CP03" in bridge.lowering
            assert total_kw(stations, at) <= EVENT_KW + 1e-9, "raised while CP03 holds more"
        else:
            # (the first of the two roll-out rounds may already be fresh and still low)
            await hub.until(lambda: restored(others) and total_kw(stations, at) > EVENT_KW + 10,
                            "higher limits after the cancel")
        await links["CP03"].open()
        await links["CP03"].status()
        await hub.until(lambda: restored(EVSES) and total_kw(stations, at) > EVENT_KW + 10.0,
                        "CP03 resynchronised after its reconnect, and higher limits")
        assert total_kw(stations, at) <= NODE_KW + 1e-9
        assert not [r for st in stations.values() for r in st.rejected]

        # 5. meter values reach the optimizer: energy delivered lowers what is still wanted
        await links["CP01"].meter(1, 5000.0 + 4000.0)  # 4 kWh since the start register
        await links["CP11"].meter(1, 1000.0 + 3000.0)  # 3 kWh since meterStart
        sid01 = f"CP01:{stations['CP01'].tx[1]}"
        sid11 = f"CP11:{stations['CP11'].tx[1]}"

        await until_plan(csms, lambda s: abs(s[sid01].requested_kwh - 26.0) < 1e-6
                         and abs(s[sid11].requested_kwh - 27.0) < 1e-6,
                         "energy delivered in the plan")
        got = await until_plan(csms, lambda s: True, "the plan")
        assert abs(got["CP02:CP02-tx1"].requested_kwh - 15.0) < 1e-6  # from charging needs

        assert peak[0][0] <= NODE_KW + 1e-9, f"held TxProfiles summed to {peak[0]} kW"
        assert peak[0][0] > EVENT_KW  # the probe saw the uncurtailed plans too
        # (a restarted bridge does not know what the stations hold, so it cannot order its
        # first roll-out: the probe's guarantee ends here)
        hub.probe = lambda: None

        # 6. the bridge restarts: stations reconnect to the new one, which adopts their running
        #    transactions from the plan and keeps them curtailed by the next event
        await bridge.stop()
        for lk in links.values():
            await lk.close()
        bridge = Bridge(BridgeConfig(site_id=SITE, optimizer=f"127.0.0.1:{grpc_port}",
                                     mapping=mapping, response_timeout_s=PATIENCE_S))
        port = await bridge.start("127.0.0.1", 0)
        t_restart = time.perf_counter()
        for lk in links.values():
            lk.port = port
            await lk.open()
            await lk.status()
        await hub.until(lambda: all(
            (h := stations[e.station].latest(e.evse, "TxProfile")) is not None
            and h.accepted_at > t_restart and held_tx_bound(stations[e.station], e.evse)
            for e in EVSES), "TxProfiles from the restarted bridge")
        t_submit2 = time.perf_counter()
        now = datetime.now(UTC)
        await grid.SubmitEvent(pb.SubmitEventRequest(site_id=SITE, event=pb.CurtailmentEvent(
            id="dr-2", node="grid", start=_ts(now), end=_ts(now + timedelta(hours=1)),
            limit_kw=60.0, modification=1)), timeout=30)

        def curtailed_again() -> bool:
            if not all((h := stations[e.station].latest(e.evse, "TxProfile")) is not None
                       and h.accepted_at > t_submit2 for e in EVSES):
                return False
            t0 = datetime.now(UTC)
            return all(total_kw(stations, t) <= 60.0 + 1e-9
                       for t in window_times(stations, t0, now + timedelta(hours=1)))

        await hub.until(curtailed_again, "curtailed to 60 kW through the restarted bridge")

        # 7. transactions end: their sessions leave the optimizer
        for e in EVSES:
            await links[e.station].stop_tx(e.evse)
        await until_plan(csms, lambda s: not s, "no sessions left")
        assert not [r for st in stations.values() for r in st.rejected]
    finally:
        for lk in links.values():
            with contextlib.suppress(Exception):
                await lk.close()
        await bridge.stop()
        await channel.close()
    return latency


async def poll(pred: Callable[[], bool], what: str, timeout: float = PATIENCE_S) -> None:
    """Wait for a condition on the bridge's state (not signalled through the hub)."""
    end = time.perf_counter() + timeout
    while not pred():
        if time.perf_counter() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


async def until_plan(csms: pb_grpc.ChargingOptimizerStub,
                     pred: Callable[[dict[str, pb.SessionResult]], bool], what: str,
                     timeout: float = PATIENCE_S, site: str = SITE) -> dict[str, pb.SessionResult]:
    """Follow the site's plans (WatchPlans: the current one, then every new one) until the
    plan's sessions satisfy ``pred``; returns them."""
    stream = csms.WatchPlans(pb.WatchPlansRequest(site_ids=[site]), timeout=timeout)
    last: dict[str, pb.SessionResult] = {}
    try:
        async for update in stream:
            last = {s.session: s for s in update.plan.sessions}
            with contextlib.suppress(KeyError):
                if pred(last):
                    return last
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    raise AssertionError(f"timed out waiting for: {what} (last: {sorted(last)})")


def test_bridge_recovers_missed_stops_and_its_own_restart(
    optimizer_server: RunningServer,
) -> None:
    asyncio.run(asyncio.wait_for(robustness(optimizer_server.port), 60))


async def robustness(grpc_port: int) -> None:
    """A transaction whose end the bridge never heard of is evicted by the next one on its
    connector; after a restart of the bridge a 1.6 station's meter values find its session."""
    site_id = "e2e-robust"
    hub = Hub()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    csms = pb_grpc.ChargingOptimizerStub(channel)
    req = pb.PutSiteRequest(
        site=pb.Site(id=site_id, nodes=[pb.Node(id="grid", power_limit_kw=30.0)],
                     connectors=[pb.Connector(id="R1-1", node="grid", max_current_a=32.0),
                                 pb.Connector(id="R2-1", node="grid", max_current_a=32.0)]),
        options=pb.Options(mode=pb.MODE_FAST),
        # connectors named "<station>-<evse>" (mapping rule 3), chargers without station ids
        ocpp=pb.OcppOptions(failsafe=True, chargers=[
            pb.ChargerCapabilities(connector="R1-1"),
            pb.ChargerCapabilities(connector="R2-1", ocpp_version="1.6", station_id="other")]))
    await csms.PutSite(req, timeout=30)
    cfg = BridgeConfig(site_id=site_id, optimizer=f"127.0.0.1:{grpc_port}",
                       response_timeout_s=PATIENCE_S)
    bridge = Bridge(cfg)
    port = await bridge.start("127.0.0.1", 0)
    r1, r2 = Station("R1", "2.0.1", [1]), Station("R2", "1.6", [1])
    links = [Link(r1, port, hub), Link(r2, port, hub)]

    async def sessions() -> set[str]:
        plan = (await csms.GetPlan(pb.GetPlanRequest(site_id=site_id), timeout=30)).plan
        return {s.session for s in plan.sessions}

    try:
        for lk in links:
            await lk.open()
            await lk.boot()
        await links[0].start_tx(1, 1)
        await hub.until(lambda: held_tx_bound(r1, 1), "TxProfile of R1's first transaction")
        first = r1.tx[1]
        # its Ended never reaches the bridge; a new car plugs in on the same EVSE
        r1.end_tx(1)
        await links[0].start_tx(1, 2)
        await hub.until(lambda: held_tx_bound(r1, 1), "TxProfile of R1's second transaction")
        await until_plan(csms, lambda s: set(s) == {f"R1:{r1.tx[1]}"},
                         "the stale session evicted", site=site_id)
        assert first != r1.tx[1]

        await links[1].start_tx(1, 0)
        await hub.until(lambda: held_tx_bound(r2, 1), "TxProfile of R2's transaction")
        await bridge.stop()
        for lk in links:
            await lk.close()
        bridge = Bridge(cfg)
        port = await bridge.start("127.0.0.1", 0)
        t_restart = time.perf_counter()
        links[1].port = port
        await links[1].open()
        await links[1].meter(1, 1500.0)  # a message about a transaction the bridge never saw
        await hub.until(lambda: (h := r2.latest(1, "TxProfile")) is not None
                        and h.accepted_at > t_restart, "R2's TxProfile after the restart")
        # (its TxProfile may come first: the plan names the transaction; the session is found
        # by a GetPlan queued behind the station's message)
        await poll(lambda: bridge.stations["R2"].txs[r2.tx[1]].connector == "R2-1",
                   "R2's transaction resumed as its session")
        await links[1].stop_tx(1)
        await until_plan(csms, lambda s: set(s) == {f"R1:{r1.tx[1]}"}, "R2's session stopped",
                         site=site_id)
        assert await sessions() == {f"R1:{r1.tx[1]}"}
        assert not r1.rejected and not r2.rejected
    finally:
        for lk in links:
            with contextlib.suppress(Exception):
                await lk.close()
        await bridge.stop()
        await channel.close()
