"""What the VEN reports: the node's planned import, from the plans the service streams, and its
measured import, from the currents the CSMS reported.

The service's plan gives a current per connector over time (``Plan.profiles``: change points, A
per phase). The node's planned import at ``t`` is the sum over the connectors below the node
(its own and its descendants') of ``current(t) x kW per A``, with the core's
:func:`~optimizer.core.model.kw_per_amp`: WYE ``voltage x phases``, DELTA ``line-to-line
voltage`` (one branch). The plan does not say how many phases each car draws on, so a 1-phase
car on a 3-phase connector counts as 3-phase: the figure is an upper bound then, exact for the
usual 3-phase cars. It is the EV load the plan schedules; other loads behind the node are not
known to the optimizer.

The node's measured import is the sum over the active sessions (``ListSessions``) on connectors
below the node that have a ``measured_current_a`` of ``measured A x kW per A``, by the same
:func:`~optimizer.core.model.kw_per_amp`, given the session (so a car known to draw on fewer
phases than its connector counts with those). It is the sum of what was reported, as last
reported (the service keeps no time of measurement): a session without a measurement adds
nothing and is not estimated; with no measured session at all there is no figure.

:class:`PlanWatch` keeps one ``WatchPlans`` stream open (re-opened with back-off when the service
restarts) and the site's connectors, so the planned report's callback never waits on the
network; the measured figure is one ``ListSessions`` call per sample (bounded by a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from ..api.convert import _Errors, session_from_proto, site_from_proto
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from ..core.model import Connector, Site, kw_per_amp

log = logging.getLogger("optimizer.grid.openadr2b")


@dataclass(frozen=True)
class NodeLoad:
    """kW per A (and the connector itself) of every connector below one node."""

    node: str
    kw_per_a: dict[str, float]
    connectors: dict[str, Connector] = field(default_factory=dict)

    @classmethod
    def of(cls, site: Site, node: str) -> NodeLoad:
        parent = {n.id: n.parent for n in site.nodes}
        if node not in parent:
            raise KeyError(f"site {site.id!r} has no node {node!r}")

        def below(n: str | None) -> bool:
            seen = set()
            while n is not None and n not in seen:
                if n == node:
                    return True
                seen.add(n)
                n = parent.get(n)
            return False

        conns = {c.id: c for c in site.connectors if below(c.node)}
        return cls(node, {k: kw_per_amp(c, None) for k, c in conns.items()}, conns)


def _t(ts: object) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined, no-any-return]


def current_at(profile: pb.ConnectorProfile, t: datetime) -> float:
    """A per phase a profile holds at ``t`` (0 before its first point)."""
    value = 0.0
    for p in profile.points:
        if _t(p.start) > t:
            break
        value = p.current_a
    return value


def planned_kw(plan: pb.Plan, load: NodeLoad, t: datetime) -> float:
    """The node's planned import at ``t`` in kW (0 past the plan's end)."""
    if plan.HasField("end") and t >= _t(plan.end):
        return 0.0
    return sum(current_at(p, t) * load.kw_per_a[p.connector] for p in plan.profiles
               if p.connector in load.kw_per_a)


def measured_kw(sessions: Iterable[pb.Session], load: NodeLoad) -> float | None:
    """The node's measured import in kW: measured A x kW per A summed over the sessions below
    the node that have a measurement; None when none of them has one."""
    total: float | None = None
    for s in sessions:
        conn = load.connectors.get(s.connector)
        if conn is None or not s.HasField("measured_current_a"):
            continue
        session = session_from_proto(s, "session", _Errors())  # only vehicle_phases is used
        total = (total or 0.0) + s.measured_current_a * kw_per_amp(conn, session)
    return total


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
