"""OSCP 2.0 Flexibility Provider receiver: a Capacity Provider's group capacity forecasts become
the capacity forecast of one site node.

How a DSO connects (one command, run by the site operator next to the optimizer service; the
DSO, as Capacity Provider, POSTs to ``http://HOST:PORT/oscp/fp/2.0/...`` with
``Authorization: Token <the token in F>``)::

    python -m optimizer.grid.oscp --listen 0.0.0.0:8330 --token-file fp.token \\
        --group transformer-12=depot-7:grid

Endpoints (OSCP 2.0, Flexibility Provider side): ``POST /oscp/fp/2.0/update_group_capacity_
forecast``, ``/handshake`` and ``/heartbeat``. Success is ``204 No Content`` with an empty body
(OSCP 2.0 transport rules); every request needs ``Authorization: Token <token>`` (401 when it
is missing or not of that form, 403 when the token is wrong, checked before the body is read)
and an ``X-Request-ID`` header (400 without). Errors are JSON ``{"message": "<path>: <reason>;
..."}``: 400 for a document that does not validate (``forecasted_blocks[3].unit: unknown unit
'MW' (...)``), 413 for a body over ``--max-body`` (default 1 MiB; refused from its
Content-Length before a byte is read, or when the streamed body passes the limit), 503 when the
optimizer service cannot be reached. A forecast is answered only after the service committed
it, so a 204 is never lost to a crash.

Mapping (OSCP -> the product's event model; the block mapping is in
:mod:`optimizer.grid.oscp_models`):

=========================================  ===================================================
OSCP                                       optimizer
=========================================  ===================================================
``group_id``                               ``--group GROUP=SITE:NODE``: the site node it caps
``CONSUMPTION`` forecast                   ``GridLink.set_capacity``: replaces the node's
                                           capacity forecast (kW or per-phase A limits)
``FALLBACK_CONSUMPTION`` forecast          validated and kept; applied by the fallback rule
``GENERATION``, ``FALLBACK_GENERATION``,   validated and acknowledged, not applied: the
``OPTIMUM``                                planner limits import only and takes no targets
``Heartbeat.offline_mode_at``              the link is alive until then
``Handshake.required_behaviour``           validated and kept (nothing is sent back)
=========================================  ===================================================

Fallback rule. OSCP 2.0: fallback capacities are the safe limits for an offline situation, the
loss of communication; a heartbeat's ``offline_mode_at`` is "a time in the future that
indicates when, in case no more heartbeat messages are received, it can be assumed the
receiving party is offline". This receiver holds a group's link alive until the later of the
last heartbeat's ``offline_mode_at`` and the end of the last ``CONSUMPTION`` forecast's last
block: a link that is lost while the last forecast still covers the present keeps that forecast
(OSCP 1.0's "backup capacity when the forecast runs out", and the brief this adapter was built
to). Past that moment the kept ``FALLBACK_CONSUMPTION`` forecast replaces the node's forecast,
re-anchored: its blocks are repeated with the pattern's own period (first start to last end,
so a one-day pattern keeps each block's time of day), shifted by whole periods to cover the
next ``--fallback-horizon-h`` (default 48) hours, and renewed when half of that is used up. A
new ``CONSUMPTION`` forecast ends the fallback (it replaces the node's forecast); a heartbeat
alone does not, since there is no valid forecast to return to. The OSCP 2.0 text on how
fallback blocks are re-anchored was not reachable (only the enumerations, message fields and
secondary descriptions were), so the periodic re-anchoring is this adapter's reading.

Not supported: Register / version negotiation (the token is exchanged out of band), anything
the Flexibility Provider sends (``HandshakeAcknowledge``, its own heartbeats, measurements,
``AdjustGroupCapacityForecast``, ``GroupCapacityComplianceError``), segmented messages
(``X-Segment-*``), the Capacity Optimizer role; kept fallbacks are in memory only (a restart
forgets them until the Capacity Provider resends).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from aiohttp import web
from pydantic import ValidationError

from .link import GridLink, SignalRefused, violations_text
from .oscp_models import (
    Block,
    Handshake,
    Heartbeat,
    RequiredBehaviour,
    UpdateGroupCapacityForecast,
    _Model,
    blocks_of,
    forecast_signal,
    reanchor,
    violations_of,
)

log = logging.getLogger("optimizer.grid.oscp")

BASE = "/oscp/fp/2.0"
MAX_BODY = 1 << 20
M = TypeVar("M", bound=_Model)


@dataclass
class Group:
    """One capacity group and what the receiver knows of it."""

    group_id: str
    site: str
    node: str
    forecast_until: datetime | None = None  # end of the last CONSUMPTION forecast
    fallback: list[Block] | None = None
    fallback_active: bool = False
    fallback_covers: datetime | None = None
    fallback_applied: datetime | None = None
    forecasts: int = 0


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Receiver:
    """The HTTP endpoints and the fallback watch; ``app`` is an aiohttp application."""

    token: str
    groups: dict[str, Group]
    channel: grpc.aio.Channel
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    check_s: float = 1.0
    max_body: int = MAX_BODY
    fallback_horizon: timedelta = timedelta(hours=48)

    online_until: datetime | None = field(default=None, init=False)
    required_behaviour: RequiredBehaviour | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.links = {g.site: GridLink(self.channel, g.site) for g in self.groups.values()}
        self.app = web.Application(client_max_size=self.max_body)
        self.app.add_routes([
            web.post(f"{BASE}/update_group_capacity_forecast", self._forecast),
            web.post(f"{BASE}/handshake", self._handshake),
            web.post(f"{BASE}/heartbeat", self._heartbeat),
        ])
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- request gate --

    async def _read(self, request: web.Request, model: type[M]) -> M:
        """Token, request id and size first, then the body; raises :class:`_Refused`."""
        auth = request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme != "Token" or not given.strip():
            raise _Refused(401, "Authorization: expected 'Token <token>'")
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise _Refused(403, "Authorization: unknown token")
        if not request.headers.get("X-Request-ID"):
            raise _Refused(400, "X-Request-ID: header is required")
        if request.content_length is not None and request.content_length > self.max_body:
            raise _Refused(413, f"body: {request.content_length} bytes; at most "
                                f"{self.max_body}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, f"body: more than {self.max_body} bytes") from None
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, "body: not a JSON document") from None
        try:
            return model.model_validate(doc)
        except ValidationError as exc:
            raise _Refused(400, violations_text(violations_of(exc))) from None

    async def _guard(self, request: web.Request, model: type[M],
                     then: Callable[[M], Any]) -> web.Response:
        try:
            msg = await self._read(request, model)
            await then(msg)
        except _Refused as exc:
            log.warning("%s %s refused (%d): %s", request.method, request.path, exc.status,
                        exc.message)
            return _error(exc.status, exc.message)
        return web.Response(status=204)

    # -- endpoints --

    async def _forecast(self, request: web.Request) -> web.Response:
        return await self._guard(request, UpdateGroupCapacityForecast, self.receive_forecast)

    async def _handshake(self, request: web.Request) -> web.Response:
        async def keep(msg: Handshake) -> None:
            self.required_behaviour = msg.required_behaviour
            log.info("handshake: %s", msg.required_behaviour)

        return await self._guard(request, Handshake, keep)

    async def _heartbeat(self, request: web.Request) -> web.Response:
        async def alive(msg: Heartbeat) -> None:
            self.online_until = msg.offline_mode_at

        return await self._guard(request, Heartbeat, alive)

    async def receive_forecast(self, fc: UpdateGroupCapacityForecast) -> None:
        """Validate ``fc`` against its node, then apply (CONSUMPTION) or keep (FALLBACK)."""
        group = self.groups.get(fc.group_id)
        if group is None:
            raise _Refused(400, f"group_id: unknown group {fc.group_id!r}")
        if fc.type not in ("CONSUMPTION", "FALLBACK_CONSUMPTION"):
            log.info("group %s: %s forecast acknowledged, not applied", group.group_id, fc.type)
            return
        link = self.links[group.site]
        node = await self._node(link, group)
        blocks = blocks_of(fc)
        signal, bad = forecast_signal(blocks, node, group.group_id)
        if signal is None:
            raise _Refused(400, violations_text(bad))
        async with self._lock:
            if fc.type == "FALLBACK_CONSUMPTION":
                group.fallback = blocks
                log.info("group %s: fallback of %d blocks kept", group.group_id, len(blocks))
                if group.fallback_active:
                    await self._apply_fallback(group, self.clock())
                return
            await self._set(link, signal)
            group.forecast_until = max(b.end for b in blocks)
            group.fallback_active, group.fallback_covers = False, None
            group.forecasts += 1
            log.info("group %s: forecast of %d blocks applied to %s/%s", group.group_id,
                     len(blocks), group.site, group.node)

    async def _node(self, link: GridLink, group: Group) -> Any:
        try:
            nodes = await link.nodes()
        except SignalRefused as exc:
            raise _Refused(503 if exc.code is grpc.StatusCode.UNAVAILABLE else 400,
                           f"optimizer: {exc.reason}") from None
        node = nodes.get(group.node)
        if node is None:
            raise _Refused(400, f"group_id: {group.group_id!r} maps to node {group.node!r}, "
                                f"which site {group.site!r} does not have")
        return node

    async def _set(self, link: GridLink, signal: Any) -> None:
        try:
            await link.set_capacity(signal)
        except SignalRefused as exc:
            status = 503 if exc.code in (grpc.StatusCode.UNAVAILABLE,
                                         grpc.StatusCode.DEADLINE_EXCEEDED) else 400
            raise _Refused(status, exc.reason) from None

    # -- fallback --

    def alive_until(self, group: Group) -> datetime | None:
        """Until when the link counts as alive for ``group`` (see the module's rule)."""
        times = [t for t in (self.online_until, group.forecast_until) if t is not None]
        return max(times) if times else None

    async def check_fallback(self) -> None:
        """Apply or renew each group's fallback once its link is lost (one watch tick)."""
        for group in self.groups.values():
            if not self._fallback_due(group, self.clock()):
                continue
            async with self._lock:
                # decided again under the lock: a forecast applied (and answered 204) while
                # this tick waited for the lock must not be overwritten by the fallback
                now = self.clock()
                if not self._fallback_due(group, now):
                    continue
                try:
                    await self._apply_fallback(group, now)
                except (_Refused, SignalRefused) as exc:
                    log.error("group %s: fallback not applied: %s", group.group_id, exc)

    def _fallback_due(self, group: Group, now: datetime) -> bool:
        if group.fallback is None:
            return False
        until = self.alive_until(group)
        if until is not None and now < until:
            return False
        if not group.fallback_active or group.fallback_covers is None \
                or group.fallback_applied is None:
            return True
        # renewed once half of what the last application covers is used up
        return now - group.fallback_applied >= (group.fallback_covers - group.fallback_applied) / 2

    async def _apply_fallback(self, group: Group, now: datetime) -> None:
        assert group.fallback is not None
        blocks = reanchor(group.fallback, now, self.fallback_horizon)
        link = self.links[group.site]
        signal, bad = forecast_signal(blocks, await self._node(link, group), group.group_id)
        if signal is None:
            raise _Refused(400, violations_text(bad))
        await self._set(link, signal)
        if not group.fallback_active:
            log.warning("group %s: link lost (alive until %s): fallback applied",
                        group.group_id, self.alive_until(group))
        # what the re-anchored blocks really reach (a pattern of very short blocks is cut at
        # the block limit before the horizon): renewal is planned from that
        covers = max(b.end for b in blocks) if blocks else now
        group.fallback_active, group.fallback_applied = True, now
        group.fallback_covers = min(covers, now + self.fallback_horizon)

    async def _watch_loop(self) -> None:
        while True:
            try:
                await self.check_fallback()
            except Exception:  # the watch must survive one bad tick
                log.exception("fallback check failed")
            await asyncio.sleep(self.check_s)

    # -- lifecycle --

    async def start(self, host: str, port: int) -> int:
        """Serve on host:port (0: any free port) and start the fallback watch; the port."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self._watch = asyncio.create_task(self._watch_loop())
        bound = self._runner.addresses[0][1]
        log.info("OSCP receiver on %s:%d", host, bound)
        return int(bound)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._runner is not None:
            await self._runner.cleanup()


# --- command line ------------------------------------------------------------------------------


def _group(text: str) -> Group:
    gid, eq, rest = text.partition("=")
    site, colon, node = rest.partition(":")
    if not (gid and eq and site and colon and node):
        raise argparse.ArgumentTypeError(f"expected GROUP=SITE:NODE, got {text!r}")
    return Group(gid, site, node)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m optimizer.grid.oscp",
                                description="OSCP 2.0 Flexibility Provider receiver: group "
                                            "capacity forecasts become node capacity "
                                            "forecasts.")
    p.add_argument("--listen", type=_listen, default=("127.0.0.1", 8330),
                   help="HOST:PORT to serve on (default 127.0.0.1:8330)")
    p.add_argument("--token-file", type=Path, required=True,
                   help="file holding the token the Capacity Provider sends")
    p.add_argument("--group", type=_group, action="append", required=True,
                   help="GROUP=SITE:NODE, once per capacity group")
    p.add_argument("--optimizer", default="127.0.0.1:50051", help="optimizer gRPC address")
    p.add_argument("--max-body", type=int, default=MAX_BODY, help="largest body in bytes")
    p.add_argument("--check-s", type=float, default=1.0, help="fallback check interval")
    p.add_argument("--fallback-horizon-h", type=float, default=48.0,
                   help="hours a re-anchored fallback covers (default 48)")
    return p


async def _main(args: argparse.Namespace) -> int:
    token = args.token_file.read_text().strip()
    if not token:
        log.error("token file %s is empty", args.token_file)
        return 2
    groups: dict[str, Group] = {}
    for g in args.group:
        if g.group_id in groups:
            log.error("group %r given twice", g.group_id)
            return 2
        groups[g.group_id] = g
    async with grpc.aio.insecure_channel(args.optimizer) as channel:
        rx = Receiver(token, groups, channel, check_s=args.check_s, max_body=args.max_body,
                      fallback_horizon=timedelta(hours=args.fallback_horizon_h))
        await rx.start(*args.listen)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await rx.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_body < 1024 or args.check_s <= 0 or args.fallback_horizon_h <= 0:
        print("--max-body >= 1024, --check-s > 0 and --fallback-horizon-h > 0 please",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
