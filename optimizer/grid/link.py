"""The grid adapters' one way into the service: a :class:`GridSignal` applied over gRPC.

Every protocol adapter (OpenADR 2.0b, OpenADR 3, OSCP) parses its payload into the core's
:class:`~optimizer.core.grid_signal.GridSignal` and hands it to a :class:`GridLink`, which
validates it against the site's stored tree, maps it with the core's one mapping and submits the
result through the ``GridOperator`` API like any grid operator would: one ``SubmitEvent`` per
interval, ``CancelEvent`` for intervals a modification dropped (found with ``ListEvents``, so a
restarted adapter needs no state of its own), ``SetCapacityForecast`` for forecasts. Each call
returns only once the service has committed it, so an adapter that acknowledges a signal after
``apply`` returns never acknowledges what a crash could lose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from ..api.convert import capacity_to_proto, event_to_proto, site_from_proto
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from ..core.grid_signal import (
    GridSignal,
    Measure,
    signal_capacity,
    signal_events,
    validate_signal,
)
from ..core.model import Node
from ..core.validate import FieldViolation, ValidationError

log = logging.getLogger("optimizer.grid")


class SignalRefused(Exception):
    """The service (or the signal's own validation) refused a signal; ``reason`` says why."""

    def __init__(self, reason: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Applied:
    """What one ``apply`` did: event ids submitted (and whether anything changed), ids cancelled."""

    submitted: tuple[str, ...]
    changed: bool
    cancelled: tuple[str, ...]


def _signal_key(source: str, signal_id: str) -> str:
    return f"{source}:{signal_id}"


def _of_signal(event_id: str, key: str) -> bool:
    """Whether an event id is an interval ``key#k`` of exactly this signal (ids may hold "#":
    signal "a" must not claim "a#1#0", interval 0 of signal "a#1")."""
    head, sep, k = event_id.rpartition("#")
    return bool(sep) and head == key and k.isdigit()


class GridLink:
    """Submits grid signals for one site through the service's gRPC API (``grpc.aio``)."""

    def __init__(self, channel: grpc.aio.Channel, site_id: str, timeout_s: float = 10.0) -> None:
        self.site_id = site_id
        self.timeout_s = timeout_s
        self._grid = pb_grpc.GridOperatorStub(channel)
        self._csms = pb_grpc.ChargingOptimizerStub(channel)

    async def nodes(self) -> dict[str, Node]:
        """The site's nodes as stored now (limits change; read them for every signal)."""
        resp = await self._call(self._csms.GetSite, pb.GetSiteRequest(site_id=self.site_id))
        return {n.id: n for n in site_from_proto(resp.site).nodes}

    async def apply(self, signal: GridSignal) -> Applied:
        """Validate, map and submit ``signal``; cancel intervals a modification dropped.

        Raises :class:`SignalRefused` when the signal is invalid for this site or the service
        refuses it (a stale modification, an unknown node). Intervals already held at this
        modification are no-ops, so a retried ``apply`` is idempotent. Not atomic across
        intervals: a refusal or failure part-way leaves the intervals already submitted at the
        new modification (what the grid asked for last) and the rest at the old one.
        """
        nodes = await self.nodes()
        try:
            validate_signal(signal, nodes)
        except ValidationError as exc:
            raise SignalRefused(str(exc).replace("\n", "; ")) from exc
        node = nodes[signal.node]
        if signal.measure is Measure.PHASE_LIMIT_A:
            raise SignalRefused("a per-phase current signal is a forecast: use set_capacity")
        events = signal_events(signal, node)
        changed = False
        for ev in events:
            resp = await self._call(self._grid.SubmitEvent, pb.SubmitEventRequest(
                site_id=self.site_id, event=event_to_proto(ev)))
            changed |= resp.outcome == "APPLIED"
        keep = {ev.id for ev in events}
        cancelled = await self._cancel_signal(_signal_key(signal.source, signal.id), keep)
        return Applied(tuple(ev.id for ev in events), changed or bool(cancelled), cancelled)

    async def cancel(self, source: str, signal_id: str) -> tuple[str, ...]:
        """Cancel every interval of a signal that is still active; the ids cancelled."""
        return await self._cancel_signal(_signal_key(source, signal_id), set())

    async def active(self, source: str, signal_id: str) -> list[str]:
        """Ids of the signal's intervals the service holds as active events."""
        resp = await self._call(self._grid.ListEvents, pb.ListEventsRequest(site_id=self.site_id))
        key = _signal_key(source, signal_id)
        return [e.id for e in resp.events if _of_signal(e.id, key)]

    async def set_capacity(self, signal: GridSignal) -> int:
        """Replace the node's capacity forecast with the signal's intervals; their number."""
        nodes = await self.nodes()
        try:
            validate_signal(signal, nodes)
        except ValidationError as exc:
            raise SignalRefused(str(exc).replace("\n", "; ")) from exc
        limits = signal_capacity(signal, nodes[signal.node])
        await self._call(self._grid.SetCapacityForecast, pb.SetCapacityForecastRequest(
            site_id=self.site_id, node=signal.node,
            capacity=[capacity_to_proto(c) for c in limits]))
        return len(limits)

    async def _cancel_signal(self, key: str, keep: set[str]) -> tuple[str, ...]:
        resp = await self._call(self._grid.ListEvents, pb.ListEventsRequest(site_id=self.site_id))
        done = []
        for e in resp.events:
            if _of_signal(e.id, key) and e.id not in keep:
                try:
                    await self._call(self._grid.CancelEvent, pb.CancelEventRequest(
                        site_id=self.site_id, event_id=e.id))
                except SignalRefused as exc:
                    if exc.code is not grpc.StatusCode.NOT_FOUND:  # cancelled meanwhile: fine
                        raise
                done.append(e.id)
        return tuple(done)

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable, req: object) -> Any:
        try:
            return await method(req, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise SignalRefused(f"{exc.code().name}: {exc.details()}", exc.code()) from exc


def violations_text(violations: list[FieldViolation]) -> str:
    """``path: reason; ...`` for an adapter's own payload errors (same style as the service)."""
    return "; ".join(f"{v.field}: {v.description}" for v in violations)
