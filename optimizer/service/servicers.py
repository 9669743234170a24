"""The gRPC servicers: ChargingOptimizer (CSMS-facing) and GridOperator (DSO-facing).

Each handler parses its request and calls into :class:`~optimizer.service.core.Core` (shared
state, locks, would-be checks); request-only checks are in :mod:`optimizer.service.request`,
the path mapping below in :mod:`optimizer.service.field_paths`.

Rules every handler follows, and why:

- Validate before touching the store, and validate the *would-be* state: for a mutation of a
  stored site the handler reads the site's current ``Problem``, applies the change in memory and
  runs ``validate`` on the result, so references (connector, node) and overlaps with stored
  sessions are checked by the same code that guards the solver. Only then is the change written.
  Read-validate-write runs under a per-site lock so two concurrent mutations cannot each pass
  validation against a state the other is about to change.
- Violation paths are reported relative to the request. Paths into the would-be problem map as:

  ====================  ===================================  ===============================
  RPC                   would-be problem path                request path
  ====================  ===================================  ===============================
  PutSite               ``site.*``, ``options.*``            unchanged (wire option names)
  StartSession          ``sessions[new].*``                  ``session.*``
                        ``sessions[k].arrival`` overlapping  ``session.departure`` (the new
                        the new session                      stay runs into a stored one)
                        ``sessions`` (count, size)           ``session``
  UpdateSession         ``sessions[i].departure`` etc.       ``departure``, ``energy_*_kwh``,
                                                             ``measured_current_a``
                        ``sessions[k].arrival`` overlap      ``departure``
  SubmitEvent           ``signals.events[new].*``            ``event.*``
  SetCapacityForecast   ``signals.capacity[o+k].*``          ``capacity[k].*``
  SetPrices             ``signals.prices[k].*`` (carbon)     ``prices[k].*`` (``carbon[k].*``)
  ====================  ===================================  ===============================

  A violation that lies in *stored* state only (e.g. PutSite removing a node a stored event
  names) is FAILED_PRECONDITION with a ``PreconditionFailure`` naming the stored object, because
  the request itself is well formed.
- Status codes: ValidationError -> INVALID_ARGUMENT (+BadRequest); unknown site/session/event ->
  NOT_FOUND (+ResourceInfo); duplicate session -> ALREADY_EXISTS (+ResourceInfo); stale event
  modification, conflict with stored sessions -> FAILED_PRECONDITION (+PreconditionFailure);
  Optimize or WatchPlans slots all taken -> RESOURCE_EXHAUSTED (+QuotaFailure); deadline already
  past -> DEADLINE_EXCEEDED; anything else -> INTERNAL, logged with an incident id.
- SetPrices: protobuf cannot tell an absent repeated field from an empty one, so an empty
  ``prices`` (or ``carbon``) leaves that series as stored; a request with both empty clears both.
- OCPP: ``OptimizeRequest.ocpp`` and ``PutSiteRequest.ocpp`` are checked by
  ``optimizer.ocpp.options`` against the request's (would-be) site and sessions, with paths such
  as ``ocpp.chargers[2].ocpp_version`` (INVALID_ARGUMENT), before anything is solved or stored.
  A site's options are stored with it; ``StartSessionRequest.transaction_id`` must suit the
  OCPP version of the session's charger, and PutSite may not reconfigure a charger so that a
  stored transaction id no longer fits (FAILED_PRECONDITION). Plans then carry the rendered
  profiles (``Plan.ocpp_profiles``; what cannot be rendered is a plan warning).
- ListSessions: the stored active sessions as StartSession/UpdateSession left them (read-only,
  no lock: one read transaction); unknown site -> NOT_FOUND like GetSite.
- GetPlan: a site whose first plan is still being computed waits for it (up to the deadline or
  ``ServiceConfig.get_plan_wait_s``); if there is still none, FAILED_PRECONDITION (type
  PLAN_NOT_READY, with the planner's last error if planning failed).
- GetCompliance / GetFlexibility (reports for the grid operator, computed by
  ``optimizer.core.grid_reports``): read-only. They plan the stored state afresh (a fresh plan
  and a counterfactual one without the event; today's plan and one plan per flexibility level)
  with the same solve function as the planner, so they never depend on a plan that is being
  replaced. Unknown site, node or event (cancelled counts as unknown) -> NOT_FOUND naming only
  what the request named; a bad window or level -> INVALID_ARGUMENT (+BadRequest). They share
  the Optimize slots (RESOURCE_EXHAUSTED when all are taken) and CPU turns, and split the
  client's remaining deadline evenly between the solves still to run (each solve's budget is
  ``min(options.time_limit, remaining / solves left)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc

from ..api.convert import (
    _Errors,
    _time,
    options_from_proto,
    options_to_proto,
    plan_to_proto,
    session_from_proto,
    session_to_proto,
    site_from_proto,
    site_to_proto,
)
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core.model import Problem, Session, Signals
from ..core.validate import validate_site
from ..ocpp.options import options_from_message
from .core import Core, ServiceConfig, SolveFn, _check_stored_transactions, _check_transaction
from .errors import (
    ServiceError,
    already_exists,
    deserializer,
    exhausted,
    failed_precondition,
    invalid_field,
    not_found,
    serialize,
    stream,
    unary,
)
from .field_paths import (
    _mapper_put_site,
    _mapper_start_session,
    _mapper_update_session,
    _Names,
)
from .grid_servicer import GridOperatorService
from .planner import attach_ocpp
from .request import _check_id, _now, ocpp_from_optimize, problem_from_optimize
from .store import NotFound

__all__ = [
    "CHARGING_SERVICE",
    "GRID_SERVICE",
    "ChargingOptimizerService",
    "Core",
    "GridOperatorService",
    "ServiceConfig",
    "SolveFn",
    "ocpp_from_optimize",
    "problem_from_optimize",
    "register",
]

CHARGING_SERVICE = "smartcharging.v1.ChargingOptimizer"
GRID_SERVICE = "smartcharging.v1.GridOperator"


# --- ChargingOptimizer -------------------------------------------------------------------------


class ChargingOptimizerService:
    """CSMS-facing RPCs. Method names are the proto's, so handlers register by reflection."""

    def __init__(self, core: Core) -> None:
        self.c = core

    def Optimize(self, req: pb.OptimizeRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        with c.solving(context, "Optimize"):
            problem = problem_from_optimize(req, c.limits)
            ocpp = ocpp_from_optimize(req, problem)
            budget = c.budget(context, problem.options.time_limit_s)
            plan = c.solve(problem, time_limit_s=budget)
            msg = plan_to_proto(plan, problem.site.id)
            attach_ocpp(msg, problem, plan, ocpp)
        msg.computed_at.GetCurrentTime()
        return pb.OptimizeResponse(plan=msg)

    def PutSite(self, req: pb.PutSiteRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        if not req.HasField("site"):
            raise invalid_field("site", "required")
        err = _Errors()
        site = site_from_proto(req.site, err)
        options = options_from_proto(req.options, err)
        err.raise_if_any()
        validate_site(site, c.limits)
        ocpp = req.ocpp if req.HasField("ocpp") else None
        chargers = (
            options_from_message(ocpp, site, stored=True).chargers if ocpp is not None else {}
        )
        now = _now()
        with c.site_lock(site.id):
            try:
                stored: Problem | None = c.store.problem(site.id, now)
            except NotFound:
                stored = None
            would = Problem(
                site=site,
                sessions=stored.sessions if stored else (),
                now=now,
                signals=stored.signals if stored else Signals(),
                options=options,
            )
            c.check_would_be(would, _mapper_put_site, _Names(would, {}))
            if stored is not None and chargers:
                _check_stored_transactions(c.store.transaction_ids(site.id), stored, chargers)
            try:
                created = c.store.put_site(site, options, ocpp)
            except ValueError as exc:  # sessions on connectors the new site lacks
                raise failed_precondition(
                    "ACTIVE_SESSIONS", [("site.connectors", str(exc))], str(exc)
                ) from None
        c.planner.touch(site.id)
        return pb.PutSiteResponse(created=created)

    def GetSite(self, req: pb.GetSiteRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        try:
            site, options = c.store.get_site(req.site_id)
            ocpp = c.store.get_ocpp(req.site_id)
        except NotFound:
            raise not_found("site", req.site_id, f"site {req.site_id!r} not found") from None
        return pb.GetSiteResponse(site=site_to_proto(site), options=options_to_proto(options),
                                  ocpp=ocpp)

    def ListSites(self, req: pb.ListSitesRequest, context: grpc.ServicerContext) -> Any:
        return pb.ListSitesResponse(site_ids=self.c.store.list_sites())

    def DeleteSite(self, req: pb.DeleteSiteRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        with c.site_lock(req.site_id):
            try:
                c.store.delete_site(req.site_id)
            except NotFound:
                raise not_found("site", req.site_id, f"site {req.site_id!r} not found") from None
        c.planner.forget(req.site_id)
        return pb.DeleteSiteResponse()

    def StartSession(self, req: pb.StartSessionRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        if not req.HasField("session"):
            raise invalid_field("session", "required")
        err = _Errors()
        session = session_from_proto(req.session, "session", err)
        err.raise_if_any()
        _check_id("session.id", session.id, c.limits)
        tx = req.transaction_id if req.HasField("transaction_id") else None
        if tx is not None:
            _check_id("transaction_id", tx, c.limits)
        with c.site_lock(req.site_id):
            stored = c.stored_problem(req.site_id)
            if tx is not None:
                _check_transaction(c.store.get_ocpp(req.site_id), stored, session, tx)
            if any(s.id == session.id for s in stored.sessions):
                raise already_exists(
                    "session",
                    session.id,
                    f"session {session.id!r} is already active on site {req.site_id!r}",
                )
            n = len(stored.sessions)
            would = replace(stored, sessions=(*stored.sessions, session))
            c.check_would_be(
                would, _mapper_start_session(n), _Names(would, {f"sessions[{n}]": "session"})
            )
            c.store.add_session(req.site_id, session, tx)
        c.planner.touch(req.site_id)
        return pb.StartSessionResponse()

    def UpdateSession(self, req: pb.UpdateSessionRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        _check_id("session_id", req.session_id, c.limits)
        err = _Errors()
        changes: dict[str, Any] = {}
        if req.HasField("departure"):
            changes["departure"] = _time(req, "departure", "", err)
        for name in ("energy_delivered_kwh", "energy_requested_kwh", "measured_current_a"):
            if req.HasField(name):
                changes[name] = getattr(req, name)
        err.raise_if_any()
        with c.site_lock(req.site_id):
            stored = c.stored_problem(req.site_id)
            idx = next((k for k, s in enumerate(stored.sessions) if s.id == req.session_id), None)
            if idx is None:
                raise not_found(
                    "session",
                    req.session_id,
                    f"session {req.session_id!r} is not active on site {req.site_id!r}",
                )
            if not changes:
                return pb.UpdateSessionResponse()
            updated: Session = replace(stored.sessions[idx], **changes)
            sessions = list(stored.sessions)
            sessions[idx] = updated
            would = replace(stored, sessions=tuple(sessions))
            c.check_would_be(
                would,
                _mapper_update_session(idx),
                _Names(would, {f"sessions[{idx}]": "this session"}),
            )
            c.store.replace_session(req.site_id, updated)
        c.planner.touch(req.site_id)
        return pb.UpdateSessionResponse()

    def StopSession(self, req: pb.StopSessionRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        _check_id("session_id", req.session_id, c.limits)
        with c.site_lock(req.site_id):
            try:
                c.store.remove_session(req.site_id, req.session_id)
            except NotFound as exc:
                if str(exc).startswith("site "):
                    raise not_found("site", req.site_id, str(exc)) from None
                raise not_found("session", req.session_id, str(exc)) from None
        c.planner.touch(req.site_id)
        return pb.StopSessionResponse()

    def ListSessions(self, req: pb.ListSessionsRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        try:
            sessions = c.store.sessions(req.site_id)
        except NotFound:
            raise not_found("site", req.site_id, f"site {req.site_id!r} not found") from None
        return pb.ListSessionsResponse(sessions=[session_to_proto(s) for s in sessions])

    def GetPlan(self, req: pb.GetPlanRequest, context: grpc.ServicerContext) -> Any:
        c = self.c
        _check_id("site_id", req.site_id, c.limits)
        plan = c.planner.current(req.site_id)
        if plan is not None:
            return pb.GetPlanResponse(plan=plan)
        try:
            c.store.get_site(req.site_id)
        except NotFound:
            raise not_found("site", req.site_id, f"site {req.site_id!r} not found") from None
        c.planner.touch_if_unknown(req.site_id)
        wait = c.budget(context, c.cfg.get_plan_wait_s)
        plan, error = c.planner.wait_plan(req.site_id, wait)
        if plan is None:
            why = error or "the first plan is still being computed; retry shortly"
            raise failed_precondition(
                "PLAN_NOT_READY",
                [("site_id", why)],
                f"site {req.site_id!r} has no plan yet: {why}",
            )
        return pb.GetPlanResponse(plan=plan)

    def WatchPlans(
        self, req: pb.WatchPlansRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        c = self.c
        if len(req.site_ids) > c.cfg.max_watch_sites:
            raise invalid_field(
                "site_ids", f"{len(req.site_ids)} sites; at most {c.cfg.max_watch_sites}"
            )
        for k, sid in enumerate(req.site_ids):
            _check_id(f"site_ids[{k}]", sid, c.limits)
        sites: frozenset[str] | None = frozenset(req.site_ids) if req.site_ids else None
        if sites is not None:
            known = set(c.store.list_sites())
            missing = [s for s in req.site_ids if s not in known]
            if missing:
                raise not_found("site", missing[0], f"site {missing[0]!r} not found")
        if c.planner.stopping:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        if not c._watch_slots.acquire(blocking=False):
            raise exhausted(
                "WatchPlans", f"{c.cfg.max_watchers} WatchPlans streams are already open"
            )
        sub = c.planner.subscribe(sites)
        try:
            context.add_callback(sub.close)  # client gone or deadline: wake the loop below
            while context.is_active():
                batch = sub.take(timeout=5.0)
                if batch is None:
                    return  # server shutting down (or client gone): end the stream with OK
                yield from batch
        finally:
            c.planner.unsubscribe(sub)
            c._watch_slots.release()


# --- registration ------------------------------------------------------------------------------


def _register(server: grpc.Server, impl: object, full_name: str, max_bytes: int) -> None:
    """Register handlers with our own deserializer (size cap, no INTERNAL for bad bytes) and
    the error-mapping wrappers."""
    desc = pb.DESCRIPTOR.services_by_name[full_name.rsplit(".", 1)[1]]
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in desc.methods:
        req_cls = getattr(pb, m.input_type.name)
        fn = getattr(impl, m.name)
        parse = deserializer(req_cls, max_bytes)
        if m.server_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(
                stream(fn), request_deserializer=parse, response_serializer=serialize
            )
        else:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                unary(fn), request_deserializer=parse, response_serializer=serialize
            )
    server.add_registered_method_handlers(full_name, handlers)  # type: ignore[attr-defined]


def register(server: grpc.Server, core: Core) -> None:
    """Add both services to ``server``."""
    _register(server, ChargingOptimizerService(core), CHARGING_SERVICE, core.cfg.max_request_bytes)
    _register(server, GridOperatorService(core), GRID_SERVICE, core.cfg.max_request_bytes)
