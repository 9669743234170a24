"""Reference OCPP bridge: OCPP 2.0.1 / 1.6J charge points <-> the optimizer's gRPC API.

A small CSMS front end for one site, usable as is for a small depot and meant to be read::

    optimizer bridge --listen 0.0.0.0:9000 --optimizer 127.0.0.1:50051 --site depot \\
        [--map CP01:1=c1 ...] [--default-stay-hours 8] [--default-energy-kwh 30]

Charge points connect to ``ws://HOST:PORT/<any prefix>/<station id>`` (the last path segment
is the station's OCPP identity) with the WebSocket subprotocol ``ocpp2.0.1`` or ``ocpp1.6``.
No TLS or authentication here: run it behind a TLS-terminating proxy on a trusted network.

What it does
------------
* ``BootNotification``: Accepted (heartbeat interval 300 s). The station then gets the fail-safe
  ``TxDefaultProfile`` of each of its EVSEs, so it stays within the site's limits on its own
  whatever happens to the link. The profiles come from the plan (``Plan.ocpp_profiles``): store
  the site with ``OcppOptions`` naming the chargers and ``failsafe: true``.
* 2.0.1 ``TransactionEvent`` Started / 1.6 ``StartTransaction``: ``StartSession`` with the
  transaction id, so every plan carries a ``TxProfile`` bound to it.
* 2.0.1 ``TransactionEvent`` Updated and 1.6 ``MeterValues``: ``UpdateSession`` with the energy
  delivered (``Energy.Active.Import.Register`` now minus at the start; Wh or kWh) once it grew
  by ``--min-update-kwh`` (0.5) since the last report, since every report re-plans the site,
  with the measured current (highest phase of ``Current.Import``). A transaction still running 15
  minutes before its session's departure gets it moved ``--default-stay-hours`` later (with its
  next meter values), so a car that outstays its estimate is not stopped by its plan.
* 2.0.1 ``NotifyEVChargingNeeds`` (ISO 15118 ``departureTime`` and ``energyAmount``):
  ``UpdateSession`` with them.
* 2.0.1 ``TransactionEvent`` Ended / 1.6 ``StopTransaction``: ``StopSession``.
* ``WatchPlans`` on the site: for every new plan each connected station is sent, one
  ``SetChargingProfile`` at a time, every profile of its EVSEs whose effect *from now on*
  differs from what it last accepted: the ``TxProfile`` of each active transaction, and the
  fail-safe, plan ``TxDefaultProfile`` and station max profiles if the site's options ask for
  them. A re-plan that changes nothing sends nothing. The roll-out is in two rounds across all
  stations so that none is raised while another still holds a higher old profile: first what
  only lowers (or an interim profile at most both the old and the new one), then, once every
  connected station holds what it was sent in that round, the rest. A station that does not
  (a rejection, no answer) is waited for ``--lower-wait`` seconds (40) from when it began
  lowering, renewed whenever it accepts a profile, not by later re-plans. A
  rejected profile is logged and retried only once it changes (or the station boots again).
  Profiles are never cleared: a TxProfile ends with its transaction, plan profiles expire
  (``validTo``) onto the fail-safe.

Station and EVSE <-> site connector
-----------------------------------
EVSE means the 2.0.1 ``evseId`` or the 1.6 ``connectorId``. The connector of (station, EVSE) is,
in this order of precedence:

1. ``--map STATION:EVSE=CONNECTOR``;
2. the charger in the site's ``OcppOptions`` with ``station_id`` STATION and ``evse_id`` (2.x) /
   ``connector_id`` (1.6) EVSE;
3. the site connector named ``f"{STATION}-{EVSE}"``.

Payload targets come from the charger capabilities: a profile whose ``evseId`` /
``connectorId`` or OCPP version disagrees with the live station is not sent (logged once). A
transaction on an EVSE that maps to no connector is accepted but not planned (logged).

Sessions
--------
Session id = ``f"{station}:{transaction id}"``: deterministic, so a restarted bridge picks up
running transactions again: a station's TxProfiles in the current plan name them (adopted when
the station reconnects), and a message about a transaction it does not know is matched to its
session in the plan (an "already exists" answer to StartSession counts as resumed). The energy
of a resumed transaction is not reported any more (its start register is lost with the old
process, a new base would under-count it); everything else works as before. When the charger
does not say, a session departs ``--default-stay-hours`` (8) after it starts (never less than 15
minutes from now) and asks for ``--default-energy-kwh`` (30); ``numberOfPhasesUsed`` 1 or 3 sets
the vehicle's phases, ``cableMaxCurrent`` its maximum current. A new session that overlaps a
stale one on its connector (a transaction whose end the bridge missed) stops the stale one and
retries once; a new transaction on an EVSE ends the one the bridge still had there. 1.6
transaction ids are assigned here: increasing integers seeded from the clock in tenths of a
second, so unique across restarts unless it started more than ten a second.

gRPC calls for one station run in the order its messages arrived; an unavailable optimizer is
retried with backoff (up to ``rpc_retries``). ``WatchPlans`` reconnects with backoff too.
Shutdown (SIGTERM / SIGINT) closes the WebSocket connections (1001 going away), the plan stream
and the channel; stored sessions stay, so a restarted bridge carries on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..api.convert import ocpp_payload
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from ..ocpp import v16, v201
from ..ocpp.transition import applies, interim, lowers_only

log = logging.getLogger("optimizer.bridge")

SUBPROTOCOLS = {"ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}
#: Profile kinds as the plan names them, for logs.
_KIND_NAMES = {
    pb.OCPP_PROFILE_KIND_TX: "TxProfile",
    pb.OCPP_PROFILE_KIND_TX_DEFAULT: "TxDefaultProfile",
    pb.OCPP_PROFILE_KIND_FAILSAFE: "fail-safe",
    pb.OCPP_PROFILE_KIND_STATION_MAX: "station max",
}
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED}
#: The site's mapping is re-read at least this often (and whenever a plan's connectors change).
SITE_REFRESH_S = 60.0
MIN_STAY = timedelta(minutes=15)


@dataclass
class BridgeConfig:
    """Everything the bridge needs; see the module docstring for the meaning of each."""

    site_id: str
    optimizer: str = "127.0.0.1:50051"
    #: (station, EVSE / 1.6 connector id) -> site connector id; overrides the other rules.
    mapping: dict[tuple[str, int], str] = field(default_factory=dict)
    default_stay: timedelta = timedelta(hours=8)
    default_energy_kwh: float = 30.0
    #: Energy delivered is reported once it grew this much since the last report (every report
    #: re-plans the site); the measured current rides along.
    min_update_kwh: float = 0.5
    heartbeat_s: int = 300
    #: Seconds a charge point has to answer a SetChargingProfile.
    response_timeout_s: float = 30.0
    #: Deadline of each gRPC call to the optimizer.
    rpc_timeout_s: float = 10.0
    #: Attempts of a gRPC call while the optimizer is unavailable (backoff 0.5 s doubling to 10 s).
    rpc_retries: int = 8
    #: How long raising profiles wait for every station to finish lowering (a station that does
    #: not answer must not freeze the site at its lowest); longer than a SetChargingProfile may
    #: take, so a slow but working station is waited for.
    lower_wait_s: float = 40.0


# --- reading OCPP payloads -----------------------------------------------------------------------


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(t: datetime) -> Timestamp:
    m = Timestamp()
    m.FromDatetime(t.astimezone(UTC).replace(tzinfo=None))
    return m


@dataclass(frozen=True)
class Meter:
    """What one MeterValues list says: the energy register (Wh) and the highest phase current."""

    energy_wh: float | None = None
    current_a: float | None = None


def read_meter(meter_values: Sequence[dict[str, Any]] | None) -> Meter:
    """Latest energy register (Wh) and current (A) in a snake_cased OCPP 1.6 / 2.0.1 list of
    meter values (as the ``ocpp`` package hands them to handlers)."""
    energy: float | None = None
    current: float | None = None
    items = sorted(meter_values or (), key=lambda mv: str(mv.get("timestamp", "")))
    for mv in items:
        currents = []
        for sv in mv.get("sampled_value", ()):
            measurand = sv.get("measurand", "Energy.Active.Import.Register")
            try:
                value = float(sv["value"])
            except (KeyError, TypeError, ValueError):
                continue
            if "unit_of_measure" in sv:  # 2.0.1
                unit = sv["unit_of_measure"].get("unit", "Wh")
                value *= 10 ** int(sv["unit_of_measure"].get("multiplier", 0))
            else:
                unit = sv.get("unit", "Wh")
            if measurand == "Energy.Active.Import.Register" and not sv.get("phase"):
                energy = value * 1000 if unit == "kWh" else value
            elif measurand == "Current.Import":
                currents.append(value)
        if currents:
            current = max(currents)
    return Meter(energy, current)


def effective(payload: dict[str, Any], version: str, now: datetime) -> tuple[Any, ...]:
    """What a profile does from ``now`` on: two profiles with equal results limit the station
    the same way from now on (a re-plan that only moved the schedule start is no change)."""
    target = payload["connectorId"] if version == "1.6" else payload["evseId"]
    prof, sch = (v16 if version == "1.6" else v201).profile_schedule(payload)
    start = _parse_time(sch.get("startSchedule")) or now
    ends = []
    if "duration" in sch:
        ends.append(start + timedelta(seconds=sch["duration"]))
    if "validTo" in prof:
        ends.append(_parse_time(prof["validTo"]) or now)
    end = min(ends) if ends else None
    head = (
        target,
        prof.get("id", prof.get("chargingProfileId")),
        prof["stackLevel"],
        prof["chargingProfilePurpose"],
        prof["chargingProfileKind"],
        str(prof.get("transactionId", "")),
        sch["chargingRateUnit"],
        end if end is None or end > now else "expired",
        prof.get("validFrom"),
        prof.get("maxOfflineDuration"),
        prof.get("invalidAfterOfflineDuration"),
    )
    periods = sch["chargingSchedulePeriod"]
    steps: list[tuple[Any, ...]] = []
    for k, p in enumerate(periods):
        p_start = start + timedelta(seconds=p["startPeriod"])
        p_end = (
            start + timedelta(seconds=periods[k + 1]["startPeriod"])
            if k + 1 < len(periods)
            else end
        )
        if p_end is not None and p_end <= now:
            continue
        step = (float(p["limit"]), p.get("numberPhases"), p.get("phaseToUse"))
        if steps and steps[-1][1:] == step:
            continue
        steps.append((max(p_start, now), *step))
    return head + tuple(steps)


# --- state ---------------------------------------------------------------------------------------


@dataclass
class _Tx:
    """An active transaction of a station."""

    tx_id: str
    evse: int
    connector: str | None
    session: str
    meter_start_wh: float | None = None
    reported_kwh: float = 0.0  # energy delivered last sent to the optimizer
    departure: datetime | None = None  # the session's departure as last sent
    started: bool = False  # StartSession succeeded (or the session already existed)
    #: Picked up again after a restart of the bridge: its start register is unknown, so its
    #: energy is not reported (a new base would under-count what was delivered).
    resumed: bool = False


@dataclass
class _Station:
    """One charging station; survives its reconnects (not a restart of the bridge)."""

    id: str
    version: str
    cp: Any = None  # the live ChargePoint, None while disconnected
    ready: bool = False  # booted, or sent anything since it connected
    txs: dict[str, _Tx] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)  # transactions ended since the bridge started
    held: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    failed: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)  # rejected
    needs: dict[int, dict[str, Any]] = field(default_factory=dict)  # EVSE -> charging needs
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    work: asyncio.Queue[Callable[[], Awaitable[None]]] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


# --- the CSMS side of each connection -------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class _Csms201(ChargePoint201):
    """Handlers for a 2.0.1 station: answer at once, queue the optimizer calls in order."""

    def __init__(self, st: _Station, ws: ServerConnection, bridge: Bridge) -> None:
        super().__init__(st.id, ws, response_timeout=bridge.cfg.response_timeout_s)
        self.st, self.bridge = st, bridge

    @on("BootNotification")
    def on_boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        log.info("%s: boot (%s, %s %s)", self.id, reason, charging_station.get("vendor_name"),
                 charging_station.get("model"))
        return result201.BootNotification(current_time=_iso(_now()),
                                          interval=self.bridge.cfg.heartbeat_s, status="Accepted")

    @after("BootNotification")
    def after_boot(self, **_: Any) -> None:
        self.bridge.booted(self.st)

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result201.Heartbeat(current_time=_iso(_now()))

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result201.MeterValues()  # outside transactions: nothing to plan

    @on("NotifyReport")
    def on_notify_report(self, **_: Any) -> Any:
        return result201.NotifyReport()

    @on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> Any:
        return result201.SecurityEventNotification()

    @on("NotifyEVChargingNeeds")
    def on_needs(self, charging_needs: dict[str, Any], evse_id: int, **_: Any) -> Any:
        self.bridge.seen(self.st)
        self.bridge.charging_needs(self.st, evse_id, charging_needs)
        return result201.NotifyEVChargingNeeds(status="Accepted")

    @on("TransactionEvent")
    def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        number_of_phases_used: int | None = None,
        cable_max_current: int | None = None,
        **_: Any,
    ) -> Any:
        self.bridge.seen(self.st)
        tx_id = str(transaction_info["transaction_id"])
        meter = read_meter(meter_value)
        known = self.st.txs.get(tx_id)
        evse_id = (evse or {}).get("id", known.evse if known else None)
        if event_type == "Ended":
            self.bridge.end_tx(self.st, tx_id, meter)
        elif known is None and event_type == "Started" and evse_id is not None:
            self.bridge.start_tx(self.st, tx_id, int(evse_id), _parse_time(timestamp),
                                 meter, number_of_phases_used, cable_max_current)
        elif known is None:  # the bridge restarted during the transaction
            self.bridge.resume_tx(self.st, tx_id, None if evse_id is None else int(evse_id))
        else:
            self.bridge.update_tx(self.st, tx_id, meter)
        return result201.TransactionEvent()


class _Csms16(ChargePoint16):
    """Handlers for a 1.6J charge point."""

    def __init__(self, st: _Station, ws: ServerConnection, bridge: Bridge) -> None:
        super().__init__(st.id, ws, response_timeout=bridge.cfg.response_timeout_s)
        self.st, self.bridge = st, bridge

    @on("BootNotification")
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        log.info("%s: boot (%s %s)", self.id, charge_point_vendor, charge_point_model)
        return result16.BootNotification(current_time=_iso(_now()),
                                         interval=self.bridge.cfg.heartbeat_s, status="Accepted")

    @after("BootNotification")
    def after_boot(self, **_: Any) -> None:
        self.bridge.booted(self.st)

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result16.Heartbeat(current_time=_iso(_now()))

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return result16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def on_start(self, connector_id: int, meter_start: int, timestamp: str, **_: Any) -> Any:
        self.bridge.seen(self.st)
        tx_id = str(self.bridge.next_tx_id())
        self.bridge.start_tx(self.st, tx_id, connector_id, _parse_time(timestamp),
                             Meter(float(meter_start)), None, None)
        return result16.StartTransaction(transaction_id=int(tx_id),
                                         id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                        transaction_id: int | None = None, **_: Any) -> Any:
        self.bridge.seen(self.st)
        if transaction_id is not None:
            tx_id = str(transaction_id)
            meter = read_meter(meter_value)
            if tx_id in self.st.txs:
                self.bridge.update_tx(self.st, tx_id, meter)
            else:  # the bridge restarted during the transaction: resume it
                self.bridge.resume_tx(self.st, tx_id, connector_id)
        return result16.MeterValues()

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, transaction_id: int, **_: Any) -> Any:
        self.bridge.seen(self.st)
        self.bridge.end_tx(self.st, str(transaction_id), Meter(float(meter_stop)))
        return result16.StopTransaction()


# --- the bridge ----------------------------------------------------------------------------------


class Bridge:
    """OCPP WebSocket server + optimizer client for one site. ``await start()``, ``await stop()``.

    Callbacks (``seen``, ``booted``, ``start_tx``, ...) run on the event loop from the handlers;
    they never block: optimizer calls go on the station's ordered work queue.
    """

    def __init__(self, config: BridgeConfig) -> None:
        self.cfg = config
        self.stations: dict[str, _Station] = {}
        self._server: Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._csms: pb_grpc.ChargingOptimizerStub | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._plan: pb.Plan | None = None
        #: station -> [(profile, payload)] of the current plan
        self._by_station: dict[str, list[tuple[pb.OcppProfile, dict[str, Any]]]] = {}
        self._site: pb.Site | None = None
        self._ocpp: pb.OcppOptions | None = None
        self._site_read = 0.0
        self._forward: dict[tuple[str, str, int], str] = {}  # (version, station, evse) -> conn
        self._reverse: dict[str, dict[str, int]] = {}  # connector -> {station: evse}
        self._warned: set[str] = set()
        self._tx_counter = itertools.count(int(time.time() * 10) % 2_000_000_000)
        self._stopping = False
        self.plans_seen = 0
        # roll-out of the current plan (``_round`` counts plans): stations still lowering, and
        # since when each has been (kept across plans, so re-plans cannot extend the wait)
        self._round = 0
        self._to_lower: set[str] = set()
        self._lowering_since: dict[str, float] = {}
        self._lowered = asyncio.Event()
        self._lowered.set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 9000) -> int:
        """Open the optimizer channel, load the site, listen; returns the bound port."""
        self._channel = grpc.aio.insecure_channel(
            self.cfg.optimizer, options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self._csms = pb_grpc.ChargingOptimizerStub(self._channel)
        try:
            await self._refresh_site()
        except grpc.aio.AioRpcError as exc:
            log.warning("site %r not readable yet (%s); retrying in the background",
                        self.cfg.site_id, exc.code().name)
        self._server = await serve(
            self._handler, host, port, subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
            ping_interval=30, ping_timeout=30,
        )
        bound = self._server.sockets[0].getsockname()[1]
        self._watch_task = asyncio.create_task(self._watch(), name="watch-plans")
        log.info("listening on ws://%s:%d/<station id> for site %r (optimizer %s)", host, bound,
                 self.cfg.site_id, self.cfg.optimizer)
        return int(bound)

    async def stop(self) -> None:
        """Close every connection (1001), the plan stream and the channel. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()  # closes open connections with 1001 going away
            await self._server.wait_closed()
        tasks = [t for st in self.stations.values() for t in st.tasks]
        if self._watch_task is not None:
            tasks.append(self._watch_task)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
        log.info("stopped")

    # --- connections ----------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        path = urllib.parse.urlparse(ws.request.path if ws.request else "").path
        station_id = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1])
        version = SUBPROTOCOLS.get(ws.subprotocol or "")
        if not station_id or version is None:
            log.warning("refusing connection to %r (subprotocol %r)", path, ws.subprotocol)
            await ws.close(1008, "station id in the URL path and an OCPP subprotocol required")
            return
        st = self.stations.get(station_id)
        if st is None or st.version != version:
            if st is not None:  # the station was re-provisioned with another version
                for t in st.tasks:
                    t.cancel()
            st = self.stations[station_id] = _Station(station_id, version)
            st.tasks = [
                asyncio.create_task(self._work_loop(st), name=f"work-{station_id}"),
                asyncio.create_task(self._sync_loop(st), name=f"sync-{station_id}"),
            ]
        old = st.cp
        cp = (_Csms201 if version == "2.0.1" else _Csms16)(st, ws, self)
        st.cp, st.ready = cp, False
        st.failed.clear()  # a new connection is a reason to try rejected or timed-out ones again
        if old is not None:  # a second connection replaces the first
            log.info("%s: new connection replaces the old one", station_id)
            with contextlib.suppress(Exception):
                await old._connection.close(1000, "replaced by a new connection")
        log.info("%s: connected (OCPP %s) from %s", station_id, version, ws.remote_address)
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            if st.cp is cp:
                st.cp, st.ready = None, False
                self._lowering_done(st.id)  # nobody waits for a station that is gone
            log.info("%s: disconnected", station_id)

    def seen(self, st: _Station) -> None:
        """Any message from a station means it was accepted before: it may get profiles."""
        if not st.ready:
            st.ready = True
            st.dirty.set()

    def booted(self, st: _Station) -> None:
        """A (re)booted station: send everything again, fail-safe first."""
        st.held.clear()
        st.failed.clear()
        st.ready = True
        st.dirty.set()

    # --- transactions -> sessions ----------------------------------------------------------

    def next_tx_id(self) -> int:
        return next(self._tx_counter)

    def connector_for(self, st: _Station, evse: int) -> str | None:
        return self._forward.get((st.version, st.id, evse))

    def start_tx(
        self,
        st: _Station,
        tx_id: str,
        evse: int,
        at: datetime | None,
        meter: Meter,
        phases: int | None,
        cable_max_a: int | None,
    ) -> None:
        for old in [t for t in st.txs.values() if t.evse == evse and t.tx_id != tx_id]:
            log.warning("%s: transaction %s on EVSE %d replaces %s, whose end was missed",
                        st.id, tx_id, evse, old.tx_id)
            self.end_tx(st, old.tx_id, Meter())
        conn = self.connector_for(st, evse)
        tx = _Tx(tx_id, evse, conn, f"{st.id}:{tx_id}", meter.energy_wh)
        st.txs[tx_id] = tx
        if conn is None:
            self._warn_once(f"unmapped {st.id} {evse}",
                            f"{st.id}: EVSE {evse} maps to no connector of site "
                            f"{self.cfg.site_id!r}; its transactions are not planned "
                            "(see --map)")
            return
        now = _now()
        arrival = min(at, now) if at is not None else now
        departure = max(arrival + self.cfg.default_stay, now + MIN_STAY)
        tx.departure = departure
        session = pb.Session(
            id=tx.session, connector=conn, arrival=_ts(arrival), departure=_ts(departure),
            energy_requested_kwh=self.cfg.default_energy_kwh,
        )
        if phases in (1, 3):
            session.vehicle_phases = phases
        if cable_max_a:
            session.vehicle_max_current_a = float(cable_max_a)
        req = pb.StartSessionRequest(site_id=self.cfg.site_id, session=session,
                                     transaction_id=tx_id)
        needs = st.needs.pop(evse, None)

        async def run() -> None:
            await self._start_session(tx, req)
            if needs is not None and tx.started:
                await self._apply_needs(tx, needs)

        log.info("%s: transaction %s started on EVSE %d -> session %r on %r", st.id, tx_id, evse,
                 tx.session, conn)
        st.work.put_nowait(run)

    async def _start_session(self, tx: _Tx, req: pb.StartSessionRequest) -> None:
        assert self._csms is not None
        try:
            await self._rpc(self._csms.StartSession, req)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                tx.started = True  # resumed after a restart of the bridge
                return
            overlap = exc.code() == grpc.StatusCode.INVALID_ARGUMENT and (
                "session.arrival" in (exc.details() or "")
                or "session.departure" in (exc.details() or "")
            )
            if not overlap or not await self._evict_stale(tx):
                log.error("StartSession %r failed: %s %s", tx.session, exc.code().name,
                          exc.details())
                return
            try:
                await self._rpc(self._csms.StartSession, req)
            except grpc.aio.AioRpcError as exc2:
                log.error("StartSession %r failed: %s %s", tx.session, exc2.code().name,
                          exc2.details())
                return
        tx.started = True

    async def _evict_stale(self, tx: _Tx) -> bool:
        """Stop sessions on the transaction's connector that no live transaction owns."""
        assert self._csms is not None
        live = {t.session for s in self.stations.values() for t in s.txs.values()}
        plan = (await self._rpc(self._csms.GetPlan,
                                pb.GetPlanRequest(site_id=self.cfg.site_id))).plan
        stale = [r.session for r in plan.sessions
                 if r.connector == tx.connector and r.session not in live]
        for sid in stale:
            log.warning("stopping stale session %r on %r (its end was missed)", sid,
                        tx.connector)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._rpc(self._csms.StopSession,
                                pb.StopSessionRequest(site_id=self.cfg.site_id, session_id=sid))
        return bool(stale)

    def resume_tx(self, st: _Station, tx_id: str, evse: int | None) -> None:
        """A transaction this bridge does not know (it restarted meanwhile): find its session
        (``f"{station}:{tx}"``) in the plan; if there is none, start one if the EVSE is known."""
        tx = _Tx(tx_id, evse or 0, None, f"{st.id}:{tx_id}", resumed=True)
        st.txs[tx_id] = tx  # later messages of it wait in the queue behind this lookup

        async def run() -> None:
            assert self._csms is not None
            plan = (await self._rpc(self._csms.GetPlan,
                                    pb.GetPlanRequest(site_id=self.cfg.site_id))).plan
            found = next((r for r in plan.sessions if r.session == tx.session), None)
            if found is not None:
                tx.connector, tx.started = found.connector, True
                tx.evse = self._reverse.get(found.connector, {}).get(st.id, tx.evse)
                log.info("%s: transaction %s resumed as session %r", st.id, tx_id, tx.session)
                st.dirty.set()
                return
            if evse is None:
                log.warning("%s: unknown transaction %s without an EVSE; not planned", st.id,
                            tx_id)
                return
            del st.txs[tx_id]
            self.start_tx(st, tx_id, evse, None, Meter(), None, None)
            st.txs[tx_id].resumed = True

        st.work.put_nowait(run)

    def _adopt(self, st: _Station) -> None:
        """After a restart of the bridge, take the transactions of a station's TxProfiles in the
        plan (session ``f"{station}:{tx}"``) as active again, so their profiles keep flowing
        without waiting for the station's next message about them."""
        for prof, payload in self._by_station.get(st.id, ()):
            if prof.kind != pb.OCPP_PROFILE_KIND_TX or not prof.session.startswith(f"{st.id}:"):
                continue
            tx_id = prof.session[len(st.id) + 1:]
            if tx_id in st.txs or tx_id in st.ended:
                continue
            body = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
            if str(body.get("transactionId")) != tx_id:
                continue
            evse = payload.get("connectorId", payload.get("evseId", 0))
            st.txs[tx_id] = _Tx(tx_id, evse, prof.connector, prof.session, started=True,
                                resumed=True)
            log.info("%s: transaction %s adopted from the plan (session %r)", st.id, tx_id,
                     prof.session)

    def update_tx(self, st: _Station, tx_id: str, meter: Meter) -> None:
        tx = st.txs.get(tx_id)
        if tx is None or tx.connector is None:
            return  # not planned
        req = pb.UpdateSessionRequest(site_id=self.cfg.site_id, session_id=tx.session)
        now = _now()
        if tx.departure is not None and tx.departure - now < MIN_STAY:
            # still plugged in at its departure: a plan would stop it there
            tx.departure = now + self.cfg.default_stay
            req.departure.CopyFrom(_ts(tx.departure))
            log.info("%s: transaction %s outstays its departure; moved to %s", st.id, tx_id,
                     _iso(tx.departure))
        if tx.resumed:
            pass  # its start register is unknown: no energy reports
        elif tx.meter_start_wh is None:
            tx.meter_start_wh = meter.energy_wh  # the first register seen counts as the start
        elif meter.energy_wh is not None:
            delivered = max(0.0, (meter.energy_wh - tx.meter_start_wh) / 1000)
            if delivered - tx.reported_kwh >= self.cfg.min_update_kwh:
                tx.reported_kwh = delivered
                req.energy_delivered_kwh = delivered
                if meter.current_a is not None and meter.current_a >= 0:
                    req.measured_current_a = meter.current_a
        if not (req.HasField("departure") or req.HasField("energy_delivered_kwh")):
            return

        async def run() -> None:
            assert self._csms is not None
            if not tx.started or tx.connector is None:
                return
            try:
                await self._rpc(self._csms.UpdateSession, req)
            except grpc.aio.AioRpcError as exc:
                log.warning("UpdateSession %r failed: %s %s", tx.session, exc.code().name,
                            exc.details())

        st.work.put_nowait(run)

    def charging_needs(self, st: _Station, evse: int, needs: dict[str, Any]) -> None:
        """ISO 15118 departure time and energy amount of the car on ``evse``."""
        tx = next((t for t in st.txs.values() if t.evse == evse), None)
        if tx is None:
            st.needs[evse] = needs  # applied when its transaction starts
            return

        async def run() -> None:
            if tx.started:
                await self._apply_needs(tx, needs)

        st.work.put_nowait(run)

    async def _apply_needs(self, tx: _Tx, needs: dict[str, Any]) -> None:
        assert self._csms is not None
        req = pb.UpdateSessionRequest(site_id=self.cfg.site_id, session_id=tx.session)
        departure = _parse_time(needs.get("departure_time"))
        if departure is not None:
            tx.departure = max(departure, _now() + timedelta(minutes=1))
            req.departure.CopyFrom(_ts(tx.departure))
        for params in ("ac_charging_parameters", "dc_charging_parameters"):
            amount = (needs.get(params) or {}).get("energy_amount")
            if amount is not None:
                req.energy_requested_kwh = float(amount) / 1000
        if not (req.HasField("departure") or req.HasField("energy_requested_kwh")):
            return
        try:
            await self._rpc(self._csms.UpdateSession, req)
        except grpc.aio.AioRpcError as exc:
            log.warning("charging needs of %r refused: %s %s", tx.session, exc.code().name,
                        exc.details())

    def end_tx(self, st: _Station, tx_id: str, meter: Meter) -> None:
        st.ended.add(tx_id)
        tx = st.txs.pop(tx_id, None)
        if tx is None:  # unknown here (the bridge restarted): its session may still exist
            tx = _Tx(tx_id, 0, "", f"{st.id}:{tx_id}")
        # The station drops a TxProfile when its transaction ends.
        for key in [k for k in st.held if k[0] == pb.OCPP_PROFILE_KIND_TX and k[1] == tx.evse]:
            del st.held[key]
        log.info("%s: transaction %s ended", st.id, tx_id)
        if tx.connector is None and not tx.resumed:
            return

        async def run() -> None:
            assert self._csms is not None
            try:
                await self._rpc(self._csms.StopSession, pb.StopSessionRequest(
                    site_id=self.cfg.site_id, session_id=tx.session))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    log.warning("StopSession %r failed: %s %s", tx.session, exc.code().name,
                                exc.details())

        st.work.put_nowait(run)

    async def _work_loop(self, st: _Station) -> None:
        """Run a station's optimizer calls one after the other, in arrival order."""
        while True:
            job = await st.work.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: optimizer call failed", st.id)

    async def _rpc(self, method: Any, request: Any) -> Any:
        delay = 0.5
        for attempt in range(self.cfg.rpc_retries):
            try:
                return await method(request, timeout=self.cfg.rpc_timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRYABLE or attempt + 1 == self.cfg.rpc_retries:
                    raise
                log.warning("optimizer %s (%s); retrying in %.1f s", exc.code().name,
                            exc.details(), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    # --- plans -> profiles -----------------------------------------------------------------

    async def _refresh_site(self) -> None:
        assert self._csms is not None
        got = await self._csms.GetSite(pb.GetSiteRequest(site_id=self.cfg.site_id),
                                       timeout=self.cfg.rpc_timeout_s)
        self._site = got.site
        self._ocpp = got.ocpp if got.HasField("ocpp") else None
        self._site_read = time.monotonic()
        self._build_mapping()
        if self._ocpp is None or not self._ocpp.chargers:
            self._warn_once("no chargers", f"site {self.cfg.site_id!r} has no OCPP chargers in "
                            "its OcppOptions: plans carry no profiles to send")
        elif not self._ocpp.failsafe:
            self._warn_once("no failsafe", f"site {self.cfg.site_id!r}: OcppOptions.failsafe is "
                            "off: booting stations get no fail-safe profile")

    def _build_mapping(self) -> None:
        """(version, station, EVSE) -> connector by the rules of the module docstring."""
        assert self._site is not None
        known = {c.id for c in self._site.connectors}
        forward: dict[tuple[str, str, int], str] = {}
        for c in self._site.connectors:  # rule 3: "<station>-<evse>"
            station, _, evse = c.id.rpartition("-")
            if station and evse.isdigit() and int(evse) > 0:
                for version in SUBPROTOCOLS.values():
                    forward[version, station, int(evse)] = c.id
        for ch in self._ocpp.chargers if self._ocpp is not None else ():  # rule 2
            if ch.station_id and ch.connector in known:
                version = "1.6" if ch.ocpp_version == "1.6" else "2.0.1"
                evse = ch.connector_id if version == "1.6" else ch.evse_id
                forward[version, ch.station_id, evse or 1] = ch.connector
        for (station, evse), conn in self.cfg.mapping.items():  # rule 1
            if conn not in known:
                self._warn_once(f"map {conn}", f"--map {station}:{evse}={conn}: site "
                                f"{self.cfg.site_id!r} has no connector {conn!r}")
                continue
            for version in SUBPROTOCOLS.values():
                forward[version, station, evse] = conn
        self._forward = forward
        reverse: dict[str, dict[str, int]] = {}
        for (_, station, evse), conn in forward.items():
            reverse.setdefault(conn, {})[station] = evse
        self._reverse = reverse
        for st in self.stations.values():  # transactions that started before the site was read
            for tx in st.txs.values():
                if tx.connector is None and self.connector_for(st, tx.evse) is not None:
                    log.info("%s: EVSE %d now maps to %r", st.id, tx.evse,
                             self.connector_for(st, tx.evse))

    async def _watch(self) -> None:
        """Follow the site's plans for as long as the bridge runs."""
        assert self._csms is not None
        delay = 0.5
        while not self._stopping:
            try:
                if self._site is None:
                    await self._refresh_site()
                stream = self._csms.WatchPlans(pb.WatchPlansRequest(site_ids=[self.cfg.site_id]))
                async for update in stream:
                    delay = 0.5
                    if update.withdrawn:
                        # Stations keep their last profiles (which expire onto the fail-safe);
                        # nothing better to send until the optimizer plans again.
                        log.error("site %r: the optimizer withdrew its plan: %s",
                                  self.cfg.site_id, update.withdrawn)
                        continue
                    if not update.HasField("plan"):
                        log.warning("site %r was deleted", self.cfg.site_id)
                        continue
                    await self._on_plan(update.plan)
                log.info("plan stream ended (optimizer restarting?); reconnecting")
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("plan stream: %s %s; reconnecting in %.1f s", exc.code().name,
                            exc.details(), delay)
            except Exception:
                log.exception("plan stream failed; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _on_plan(self, plan: pb.Plan) -> None:
        if self._plan is not None and plan.version <= self._plan.version:
            return
        conns = {p.connector for p in plan.profiles}
        assert self._site is not None
        if conns != {c.id for c in self._site.connectors} or (
            time.monotonic() - self._site_read > SITE_REFRESH_S
        ):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._refresh_site()
        by_station: dict[str, list[tuple[pb.OcppProfile, dict[str, Any]]]] = {}
        for prof in plan.ocpp_profiles:
            # a connector may map from several station ids (--map, station_id, its name):
            # whichever of them is connected gets it
            stations = self._reverse.get(prof.connector, {}) if prof.connector else {
                prof.station: 0}
            if not stations:
                continue
            payload = ocpp_payload(prof)
            for station in stations:
                by_station.setdefault(station, []).append((prof, payload))
        self._plan, self._by_station = plan, by_station
        self.plans_seen += 1
        for w in plan.warnings:
            if w.startswith("ocpp:"):
                self._warn_once(w, f"plan: {w}")
        self._roll_out()

    def _roll_out(self) -> None:
        """Start a roll-out of the current plan: every connected station lowers, then raises."""
        self._round += 1
        self._to_lower = {st.id for st in self.stations.values() if st.cp is not None
                          and st.ready}
        now = time.monotonic()
        self._lowering_since = {sid: self._lowering_since.get(sid, now)
                                for sid in self._to_lower}
        self._lowered = asyncio.Event()
        if not self._to_lower:
            self._lowered.set()
        for st in self.stations.values():
            st.dirty.set()

    def _lowering_wait(self) -> float:
        """Seconds until every station still lowering has had ``lower_wait_s`` since it began
        (a station that accepts a lowering profile begins anew: it is making progress)."""
        since = [self._lowering_since.get(s, 0.0) for s in self._to_lower]
        return max(0.0, max(since, default=0.0) + self.cfg.lower_wait_s - time.monotonic())

    def _lowering_done(self, station_id: str, round_: int | None = None) -> None:
        """``station_id`` lowered for the current plan (a round of an older plan does not
        count), or is gone."""
        if round_ is not None and round_ != self._round:
            return
        self._to_lower.discard(station_id)
        self._lowering_since.pop(station_id, None)
        if not self._to_lower:
            self._lowered.set()

    def _desired(self, st: _Station) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """(key, payload) of every profile the station should hold under the current plan."""
        out = []
        self._adopt(st)
        active = {(t.evse, t.tx_id) for t in st.txs.values()}
        version = st.version
        for prof, payload in self._by_station.get(st.id, ()):
            if prof.ocpp_version != version:
                self._warn_once(f"version {st.id}", f"{st.id}: speaks OCPP {st.version}, the "
                                f"site configures {prof.ocpp_version}; profiles not sent")
                continue
            target = payload["connectorId"] if version == "1.6" else payload["evseId"]
            if prof.connector:
                evse = self._reverse[prof.connector][st.id]
                if target != evse:
                    self._warn_once(f"target {prof.connector}",
                                    f"{st.id}: connector {prof.connector!r} is EVSE {evse} "
                                    f"but its charger renders target {target}; set its "
                                    "evse_id / connector_id; profiles not sent")
                    continue
            if prof.kind == pb.OCPP_PROFILE_KIND_TX:
                body = payload["csChargingProfiles" if version == "1.6" else "chargingProfile"]
                if (target, str(body.get("transactionId"))) not in active:
                    continue  # ended, or not started here: a charger would reject it
            pid = (payload["csChargingProfiles"]["chargingProfileId"] if version == "1.6"
                   else payload["chargingProfile"]["id"])
            out.append(((prof.kind, target, pid), payload))
        # fail-safe first: it is what protects the site if the link drops midway
        out.sort(key=lambda kp: kp[0][0] != pb.OCPP_PROFILE_KIND_FAILSAFE)
        return out

    async def _sync_loop(self, st: _Station) -> None:
        """Bring the station's profiles in line with the plan whenever either changes.

        In two rounds across all stations (``optimizer.ocpp.transition``): first what only lowers
        (a first fail-safe, profiles at most the held ones, interims below both), then, once
        every connected station holds its first round (or has had ``lower_wait_s`` to), the
        rest. So no station is raised while another still holds a higher old profile.
        """
        while True:
            await st.dirty.wait()
            st.dirty.clear()
            try:
                await self._sync(st)
            except asyncio.CancelledError:
                raise
            except Exception:  # never lose a station's sync loop: log, and wait for the next
                log.exception("%s: profile sync failed", st.id)

    async def _sync(self, st: _Station) -> None:
        lowered, round_ = self._lowered, self._round
        if st.cp is None or not st.ready:
            self._lowering_done(st.id)
            return  # seen() / booted() set dirty again
        now = _now()
        first: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        later: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        stuck = False  # a held profile that cannot be lowered safely in round 1
        for key, payload in self._desired(st):
            held = st.held.get(key)
            if held is not None and not applies(held, st.version, now):
                held = None  # expired: the station is on its fallback already
            if held is None and key[0] == pb.OCPP_PROFILE_KIND_FAILSAFE:
                first.append((key, payload))  # a first limit where there was none
            elif held is None:
                later.append((key, payload))  # what it would lower is unknown
            elif lowers_only(held, payload, st.version, now):
                first.append((key, payload))
            else:
                mid = interim(held, payload, st.version, now)
                if mid is None:
                    stuck = True  # other units or a gap: nothing to send below both
                else:
                    first.append((key, mid))
                later.append((key, payload))
        done, all_held = await self._send_round(st, first, lowering=True)
        if not done:
            return  # a newer plan or a reconnect: this round does not count
        if all_held and not stuck:  # a rejected or unanswered lowering keeps others waiting
            self._lowering_done(st.id, round_)
        if not later:
            return
        while not lowered.is_set() and (wait := self._lowering_wait()) > 0:
            waits = [asyncio.ensure_future(st.dirty.wait()),
                     asyncio.ensure_future(lowered.wait())]
            try:
                await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if st.dirty.is_set():
                return  # a newer plan: its own rounds
        if not lowered.is_set():
            log.warning("%s: raising although %s did not lower within %.0f s", st.id,
                        ", ".join(sorted(self._to_lower)), self.cfg.lower_wait_s)
        await self._send_round(st, later)

    async def _send_round(self, st: _Station, profiles: list[tuple[tuple[Any, ...],
                                                                    dict[str, Any]]],
                          *, lowering: bool = False) -> tuple[bool, bool]:
        """Send each profile whose effect differs from what the station holds. Returns (not cut
        short by a newer plan or a reconnect, the station holds every one of them)."""
        cp = st.cp
        if cp is None:
            return False, False
        now = _now()
        sent = accepted = 0
        complete = held_all = True
        for key, payload in profiles:
            if st.dirty.is_set():
                complete = False
                break  # a newer plan (or a reconnect) arrived: start over with it
            want = effective(payload, st.version, now)
            held = st.held.get(key)
            if held is not None and effective(held, st.version, now) == want:
                continue
            failed = st.failed.get(key)
            if failed is not None and effective(failed, st.version, now) == want:
                held_all = False
                continue  # rejected as it is; retried once it changes
            if key[0] == pb.OCPP_PROFILE_KIND_TX and not any(
                t.evse == key[1] and t.tx_id == want[5] for t in st.txs.values()
            ):
                continue  # its transaction ended while this round was sending
            sent += 1
            try:
                status = await self._send(cp, st.version, payload)
            except ConnectionClosed:
                complete = False
                break  # reconnect -> seen() -> sync again
            except Exception as exc:  # CallError, timeout, schema violation
                log.warning("%s: SetChargingProfile %s failed: %s", st.id,
                            _KIND_NAMES.get(key[0], key[0]), exc)
                st.failed[key] = payload
                held_all = False
                continue
            if status == "Accepted":
                accepted += 1
                st.held[key] = payload
                st.failed.pop(key, None)
                if lowering and st.id in self._lowering_since:
                    self._lowering_since[st.id] = time.monotonic()  # progress: wait on
            else:
                log.warning("%s: %s for EVSE %s %s", st.id, _KIND_NAMES.get(key[0], key[0]),
                            key[1], status)
                st.failed[key] = payload
                held_all = False
        if sent:
            version = self._plan.version if self._plan is not None else 0
            log.info("%s: plan v%d: %d of %d profiles accepted", st.id, version, accepted, sent)
        return complete, held_all and complete

    async def _send(self, cp: Any, version: str, payload: dict[str, Any]) -> str:
        if version == "1.6":
            req: Any = call16.SetChargingProfile(connector_id=payload["connectorId"],
                                                 cs_charging_profiles=payload["csChargingProfiles"])
        else:
            req = call201.SetChargingProfile(evse_id=payload["evseId"],
                                             charging_profile=payload["chargingProfile"])
        res = await cp.call(req, suppress=False)
        return str(res.status)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)


# --- command line --------------------------------------------------------------------------------


def _host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def _mapping(text: str) -> tuple[tuple[str, int], str]:
    left, sep, conn = text.partition("=")
    station, sep2, evse = left.rpartition(":")
    if not (sep and sep2 and station and conn and evse.isdigit() and int(evse) > 0):
        raise argparse.ArgumentTypeError(f"expected STATION:EVSE=CONNECTOR, got {text!r}")
    return (station, int(evse)), conn


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9000),
                   help="HOST:PORT for charge points (ws://HOST:PORT/.../STATION_ID)")
    p.add_argument("--optimizer", default="127.0.0.1:50051", help="optimizer gRPC HOST:PORT")
    p.add_argument("--site", required=True, help="stored site id the charge points belong to")
    p.add_argument("--map", type=_mapping, action="append", default=[],
                   metavar="STATION:EVSE=CONNECTOR",
                   help="connector of a station's EVSE (1.6: connectorId); repeatable")
    p.add_argument("--default-stay-hours", type=float, default=8.0,
                   help="departure of a session whose car does not say (hours after start)")
    p.add_argument("--default-energy-kwh", type=float, default=30.0,
                   help="energy requested by a session whose car does not say")
    p.add_argument("--min-update-kwh", type=float, default=0.5,
                   help="report energy delivered once it grew this much (each report re-plans)")
    p.add_argument("--lower-wait", type=float, default=40.0, metavar="SECONDS",
                   help="how long raising profiles wait for all stations to finish lowering")
    p.add_argument("-v", "--verbose", action="store_true", help="log every OCPP message")


def config_from_args(args: argparse.Namespace) -> BridgeConfig:
    return BridgeConfig(
        site_id=args.site,
        optimizer=args.optimizer,
        mapping=dict(args.map),
        default_stay=timedelta(hours=args.default_stay_hours),
        default_energy_kwh=args.default_energy_kwh,
        min_update_kwh=args.min_update_kwh,
        lower_wait_s=args.lower_wait,
    )


async def run(config: BridgeConfig, host: str, port: int) -> None:
    """Serve until SIGTERM / SIGINT, then shut down gracefully."""
    bridge = Bridge(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await bridge.start(host, port)
        print(f"bridge: listening on {host}:{bound}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await bridge.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optimizer bridge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return cmd_bridge(build_parser().parse_args(argv))


def cmd_bridge(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ocpp").setLevel(logging.INFO if args.verbose else logging.WARNING)
    host, port = args.listen
    asyncio.run(run(config_from_args(args), host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
