"""The DSO-facing gRPC servicer: ``GridOperator`` (events, forecasts, prices, and the reports
a grid operator reads: compliance per event and a node's flexibility).

The rules every handler follows (validate the would-be state, path mapping, status codes) are
those of :mod:`optimizer.service.servicers`, which registers this servicer next to the CSMS one.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import grpc

from ..api.convert import (
    _Errors,
    _time,
    capacity_from_proto,
    compliance_to_proto,
    event_from_proto,
    event_to_proto,
    flexibility_to_proto,
    values_from_proto,
)
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core import grid_reports
from ..core.model import Problem
from ..core.validate import FieldViolation, ValidationError, validate
from .core import Core
from .errors import (
    failed_precondition,
    invalid,
    invalid_field,
    not_found,
)
from .field_paths import (
    _mapper_capacity,
    _mapper_event,
    _mapper_prices,
    _Names,
)
from .request import _check_id
from .store import NotFound

# --- GridOperator ------------------------------------------------------------------------------


class GridOperatorService:
    """Grid-operator RPCs: curtailment events, capacity forecasts, prices."""

    def __init__(self, core: Core) -> None:
        self.c = core

    def SubmitEvent(self, req: pb.SubmitEventRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        if not req.HasField("event"):
            raise invalid_field("event", "required")
        err = _Errors()
        event = event_from_proto(req.event, "event", err)
        err.raise_if_any()
        _check_id("event.id", event.id, c.limits)
        with c.site_lock(req.site_id):
            stored = c.stored_signals_problem(req.site_id)
            events = list(stored.signals.events)
            idx = next((k for k, e in enumerate(events) if e.id == event.id), None)
            if idx is None:
                idx = len(events)
                events.append(event)
            else:
                events[idx] = event
            would = replace(stored, signals=replace(stored.signals, events=tuple(events)))
            c.check_would_be(
                would, _mapper_event(idx), _Names(would, {f"signals.events[{idx}]": "event"})
            )
            outcome = c.store.submit_event(req.site_id, event)
        if outcome == "APPLIED":
            c.planner.touch(req.site_id, urgent=True)
        return pb.SubmitEventResponse(outcome=outcome)

    def CancelEvent(self, req: pb.CancelEventRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        _check_id("event_id", req.event_id, c.limits)
        with c.site_lock(req.site_id):
            try:
                c.store.cancel_event(req.site_id, req.event_id)
            except NotFound as exc:
                if str(exc).startswith("site "):
                    raise not_found("site", req.site_id, str(exc)) from None
                raise not_found("event", req.event_id, str(exc)) from None
        c.planner.touch(req.site_id, urgent=True)
        return pb.CancelEventResponse()

    def ListEvents(self, req: pb.ListEventsRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        try:
            events = c.store.events(req.site_id)
        except NotFound:
            raise not_found("site", req.site_id, f"site {req.site_id!r} not found") from None
        return pb.ListEventsResponse(events=[event_to_proto(e) for e in events])

    def SetCapacityForecast(
        self, req: pb.SetCapacityForecastRequest, context: grpc.ServicerContext
    ) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        _check_id("node", req.node, c.limits)
        bad = [
            FieldViolation(
                f"capacity[{k}].node",
                f"must equal node {req.node!r} (one forecast per request), got {cap.node!r}",
            )
            for k, cap in enumerate(req.capacity)
            if cap.node != req.node
        ]
        if bad:
            raise invalid(bad)
        if len(req.capacity) > c.limits.max_signal_entries:
            raise invalid_field(
                "capacity", f"{len(req.capacity)} entries; at most {c.limits.max_signal_entries}"
            )
        err = _Errors()
        limits = tuple(
            capacity_from_proto(cap, f"capacity[{k}]", err) for k, cap in enumerate(req.capacity)
        )
        err.raise_if_any()
        with c.site_lock(req.site_id):
            stored = c.stored_signals_problem(req.site_id)
            if all(n.id != req.node for n in stored.site.nodes):
                raise invalid_field("node", f"unknown node {req.node!r}")
            others = tuple(x for x in stored.signals.capacity if x.node != req.node)
            would = replace(stored, signals=replace(stored.signals, capacity=others + limits))
            o = len(others)
            c.check_would_be(
                would,
                _mapper_capacity(o),
                _Names(
                    would,
                    {f"signals.capacity[{o + k}]": f"capacity[{k}]" for k in range(len(limits))},
                ),
            )
            c.store.set_capacity(req.site_id, req.node, limits)
        c.planner.touch(req.site_id, urgent=True)
        return pb.SetCapacityForecastResponse()

    def SetPrices(self, req: pb.SetPricesRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        total = len(req.prices) + len(req.carbon)
        if total > c.limits.max_signal_entries:
            raise invalid_field(
                "prices", f"{total} price and carbon entries; at most {c.limits.max_signal_entries}"
            )
        err = _Errors()
        prices = values_from_proto(req.prices, "prices", err)
        carbon = values_from_proto(req.carbon, "carbon", err)
        err.raise_if_any()
        clear_both = not prices and not carbon
        new_prices = prices if prices or clear_both else None
        new_carbon = carbon if carbon or clear_both else None
        with c.site_lock(req.site_id):
            stored = c.stored_signals_problem(req.site_id)
            sig = stored.signals
            would = replace(
                stored,
                signals=replace(
                    sig,
                    prices=sig.prices if new_prices is None else new_prices,
                    carbon=sig.carbon if new_carbon is None else new_carbon,
                ),
            )
            new = {f"signals.prices[{k}]": f"prices[{k}]" for k in range(len(prices))}
            new |= {f"signals.carbon[{k}]": f"carbon[{k}]" for k in range(len(carbon))}
            c.check_would_be(would, _mapper_prices(bool(prices), bool(carbon)), _Names(would, new))
            c.store.set_prices(req.site_id, new_prices, new_carbon)
        c.planner.touch(req.site_id)
        return pb.SetPricesResponse()

    # --- reports (read-only: nothing stored changes) -------------------------------------------

    def GetCompliance(self, req: pb.GetComplianceRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        _check_id("event_id", req.event_id, c.limits)
        problem = self._plannable(req.site_id)
        if grid_reports.find_event(problem, req.event_id) is None:
            raise not_found(
                "event",
                req.event_id,
                f"event {req.event_id!r} is not active on site {req.site_id!r}",
            )
        counterfactual = grid_reports.without_event(problem, req.event_id)
        with c.solving(context, "GetCompliance"):
            plan = c.solve(problem, time_limit_s=self._share(context, problem, 2))
            without = c.solve(counterfactual, time_limit_s=self._share(context, problem, 1))
        record = grid_reports.event_compliance(problem, plan, req.event_id, without)
        return pb.GetComplianceResponse(compliance=compliance_to_proto(record, req.site_id))

    def GetFlexibility(self, req: pb.GetFlexibilityRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        _check_id("node", req.node, c.limits)
        err = _Errors()
        start = _time(req, "start", "", err)
        end = _time(req, "end", "", err)
        err.raise_if_any()
        # the count is checked before the values are copied: a million levels is refused as such
        bad = grid_reports.check_window(start, end) + grid_reports.check_levels(req.levels_kw)
        if bad:
            raise invalid(bad)
        levels = list(req.levels_kw)
        problem = self._plannable(req.site_id)
        if all(n.id != req.node for n in problem.site.nodes):
            raise not_found(
                "node", req.node, f"node {req.node!r} not found on site {req.site_id!r}"
            )

        def solve(p: Problem, solves_left: int) -> Any:
            return c.solve(p, time_limit_s=self._share(context, p, solves_left))

        with c.solving(context, "GetFlexibility"):
            curve = grid_reports.flexibility(problem, req.node, start, end, levels or None, solve)
        return flexibility_to_proto(curve, req.site_id)

    def _plannable(self, site_id: str) -> Problem:
        """The stored state as the planner would solve it now (NOT_FOUND for an unknown site).

        Validated again because a report must not solve what the planner refuses (state written
        by older code or under other limits): that is FAILED_PRECONDITION, not a crash."""
        problem = self.c.stored_problem(site_id)
        try:
            validate(problem, self.c.limits)
        except ValidationError as exc:
            raise failed_precondition(
                "STORED_STATE_INVALID",
                [(f"site {site_id!r}", "stored state cannot be planned")],
                f"site {site_id!r}: stored state cannot be planned: {exc}",
            ) from None
        return problem

    def _share(self, context: grpc.ServicerContext, problem: Problem, solves_left: int) -> float:
        """One solve's budget: the site's time limit, at most an even share of the deadline."""
        left = self.c.budget(context, math.inf)  # DEADLINE_EXCEEDED when too close
        return min(problem.options.time_limit_s, left / max(1, solves_left))
