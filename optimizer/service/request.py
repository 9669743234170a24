"""Checks and conversions of a request on its own, before any stored state is read.

``problem_from_optimize`` turns an Optimize request into a validated ``Problem`` (paths as the
client sent them), ``ocpp_from_optimize`` its OCPP options; ``_check_id`` is the id rule every
handler applies to the ids it is given. None of it needs the store or the servicers' state, so
it lives apart from both.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..api.convert import (
    _Errors,
    _proto_path,
    _time,
    options_from_proto,
    session_from_proto,
    signals_from_proto,
    site_from_proto,
)
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core.model import Problem
from ..core.validate import FieldViolation, Limits, ValidationError, validate
from ..ocpp.options import OcppOptions, options_from_message
from .errors import invalid_field


def _now() -> datetime:
    return datetime.now(UTC)


def _check_id(path: str, value: str, limits: Limits) -> None:
    """The same rule ``validate`` applies to ids: non-blank and of bounded length."""
    if not value.strip():
        raise invalid_field(path, "must not be empty")
    if len(value) > limits.max_id_length:
        raise invalid_field(path, f"longer than {limits.max_id_length} characters")


def _proto_sizes(req: pb.OptimizeRequest, limits: Limits) -> None:
    """``validate``'s size bounds, checked on the message before anything is converted."""
    out: list[FieldViolation] = []

    def size(path: str, n: int, limit: int, what: str) -> None:
        if n > limit:
            out.append(FieldViolation(path, f"{n} {what}; at most {limit} per request"))

    size("site.nodes", len(req.site.nodes), limits.max_nodes, "nodes")
    size("site.connectors", len(req.site.connectors), limits.max_connectors, "connectors")
    size("sessions", len(req.sessions), limits.max_sessions, "sessions")
    size("signals.events", len(req.signals.events), limits.max_events, "events")
    total = len(req.signals.capacity) + len(req.signals.prices) + len(req.signals.carbon)
    size("signals", total, limits.max_signal_entries, "capacity, price and carbon entries")
    if out:
        raise ValidationError(out)


def problem_from_optimize(req: pb.OptimizeRequest, limits: Limits) -> Problem:
    """Convert and validate an Optimize request with the server's limits (paths as sent)."""
    _proto_sizes(req, limits)
    err = _Errors()
    site = site_from_proto(req.site, err)
    sessions = tuple(
        session_from_proto(s, f"sessions[{k}]", err) for k, s in enumerate(req.sessions)
    )
    signals = signals_from_proto(req.signals, err)
    options = options_from_proto(req.options, err)
    now = _time(req, "now", "", err, default=_now())
    err.raise_if_any()
    problem = Problem(site=site, sessions=sessions, now=now, signals=signals, options=options)
    try:
        validate(problem, limits)
    except ValidationError as exc:
        raise ValidationError(
            FieldViolation(_proto_path(v.field), v.description) for v in exc.violations
        ) from None
    return problem


def ocpp_from_optimize(req: pb.OptimizeRequest, problem: Problem) -> OcppOptions | None:
    """The request's OCPP options checked against its site and sessions (None if absent)."""
    if not req.HasField("ocpp"):
        return None
    return options_from_message(req.ocpp, problem.site, problem.sessions)
