"""The bridge's link to the optimizer: gRPC calls retried while it is unavailable, each
station's queue of calls run in arrival order, and the site's (station, EVSE) -> connector
mapping read from it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from .config import SUBPROTOCOLS, BridgeConfig, log
from .state import _Station

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED}


class _OptimizerLink:
    """The optimizer side of the bridge, which the sessions, the roll-out and the WebSocket
    server (``Bridge``) build on; also the stations and the warnings said once."""

    def __init__(self, config: BridgeConfig) -> None:
        self.cfg = config
        self.stations: dict[str, _Station] = {}
        self._channel: grpc.aio.Channel | None = None  # opened by Bridge.start()
        self._csms: pb_grpc.ChargingOptimizerStub | None = None
        self._site: pb.Site | None = None
        self._ocpp: pb.OcppOptions | None = None
        self._site_read = 0.0
        self._forward: dict[tuple[str, str, int], str] = {}  # (version, station, evse) -> conn
        self._reverse: dict[str, dict[str, int]] = {}  # connector -> {station: evse}
        self._warned: set[str] = set()

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

    async def _rpc_or_log(self, method: Any, request: Any, failure: str, session: str, *,
                          level: int = logging.WARNING,
                          quiet: grpc.StatusCode | None = None) -> bool:
        """``_rpc`` for a call whose failure the bridge can only log: ``failure % session``,
        then the status (not for a ``quiet`` one). Returns whether the call succeeded."""
        try:
            await self._rpc(method, request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != quiet:
                log.log(level, failure + ": %s %s", session, exc.code().name, exc.details())
            return False
        return True

    # --- the site's mapping ----------------------------------------------------------------

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
        """(version, station, EVSE) -> connector by the rules of the package docstring."""
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

    def connector_for(self, st: _Station, evse: int) -> str | None:
        return self._forward.get((st.version, st.id, evse))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)
