"""What the OpenADR 2.0b VEN reports: the node's planned and measured import
(:mod:`optimizer.grid.node_load` says how both are computed).

:class:`PlanWatch` keeps one ``WatchPlans`` stream open (re-opened with back-off when the service
restarts) and the site's connectors, so the planned report's callback never waits on the
network; the measured figure is one ``ListSessions`` call per sample (bounded by a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from ..api.convert import site_from_proto
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from .node_load import NodeLoad, current_at, measured_kw, planned_kw

__all__ = ["NodeLoad", "PlanWatch", "current_at", "measured_kw", "planned_kw"]

log = logging.getLogger("optimizer.grid.openadr2b")


class PlanWatch:
    """The site's latest plan, kept current from ``WatchPlans``; ``None`` while there is none
    (no plan yet, withdrawn after a failed re-plan, the service unreachable)."""

    def __init__(self, channel: grpc.aio.Channel, site_id: str, node: str) -> None:
        self.site_id = site_id
        self.node = node
        self.plan: pb.Plan | None = None
        self.load: NodeLoad | None = None
        self.listeners: list[Callable[[pb.Plan | None], None]] = []
        self._csms = pb_grpc.ChargingOptimizerStub(channel)
        self._task: asyncio.Task[None] | None = None
        self._sessions_failing = False
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def planned_kw(self, t: datetime | None = None) -> float | None:
        """The node's planned import now (or at ``t``); None without a plan."""
        if self.plan is None or self.load is None:
            return None
        return planned_kw(self.plan, self.load, t or datetime.now(UTC))

    async def measured_kw(self, timeout_s: float = 2.0) -> float | None:
        """The node's measured import now (one ``ListSessions``); None while no session below
        the node has a measurement, before the site's connectors are known, or when the service
        does not answer within ``timeout_s``."""
        load = self.load
        if load is None:
            return None
        try:
            resp = await self._csms.ListSessions(
                pb.ListSessionsRequest(site_id=self.site_id), timeout=timeout_s)
        except Exception as exc:  # RpcError, a closed channel: a sample must never raise
            if not self._sessions_failing:  # once per outage, not once per sample
                log.warning("ListSessions of %s failed: %s; measured samples skipped",
                            self.site_id, exc)
            self._sessions_failing = True
            return None
        if self._sessions_failing:
            log.info("ListSessions of %s answers again", self.site_id)
            self._sessions_failing = False
        return measured_kw(resp.sessions, load)

    async def _load_site(self) -> None:
        resp = await self._csms.GetSite(pb.GetSiteRequest(site_id=self.site_id), timeout=10)
        self.load = NodeLoad.of(site_from_proto(resp.site), self.node)

    def _set(self, plan: pb.Plan | None) -> None:
        self.plan = plan
        for fn in list(self.listeners):
            try:
                fn(plan)
            except Exception:  # a listener must not end the watch
                log.exception("plan listener failed")

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._load_site()
                stream = self._csms.WatchPlans(pb.WatchPlansRequest(site_ids=[self.site_id]))
                async for update in stream:
                    self.connected.set()
                    backoff = 0.1
                    if update.HasField("plan"):
                        known = self.load.kw_per_a if self.load else {}
                        if any(p.connector not in known for p in update.plan.profiles):
                            await self._load_site()  # the site changed: connectors added
                        self._set(update.plan)
                    else:
                        if update.withdrawn:
                            log.warning("plan withdrawn: %s", update.withdrawn)
                        self._set(None)
                log.warning("plan stream of %s ended; re-opening", self.site_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the service restarts, the site is deleted, ...
                log.warning("plan watch of %s: %s; retry in %.1f s", self.site_id, exc, backoff)
            self.connected.clear()
            self._set(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
