"""The ``Bridge``: the WebSocket side, the server the charge points connect to and the life of
each connection. The rest of it is in the classes it builds on, one responsibility each:
``_OptimizerLink`` (``link``), ``_Sessions`` (``sessions``), ``_RollOut`` (``rollout``); what
a connection's messages do is in ``handlers``."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse

import grpc
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from .config import SUBPROTOCOLS, BridgeConfig, log
from .handlers import _Csms16, _Csms201
from .rollout import _RollOut
from .state import _Station


class Bridge(_RollOut):
    """OCPP WebSocket server + optimizer client for one site. ``await start()``, ``await stop()``.

    Callbacks (``seen``, ``booted``, ``start_tx``, ...) run on the event loop from the handlers;
    they never block: optimizer calls go on the station's ordered work queue.
    """

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(config)
        self._server: Server | None = None
        self._watch_task: asyncio.Task[None] | None = None

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
                # a charger keeps its profiles offline: the roll-out waits for one that still
                # holds more than the plan gives it (up to lower_wait_s), not for one that does not
                if self._within_plan(st):
                    self._lowering_done(st.id)
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
