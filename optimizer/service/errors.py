"""gRPC status mapping: the one place that decides which status code a failure becomes.

Why a module of its own: every handler must answer a client mistake with a precise status and a
machine-readable detail (``google.rpc.BadRequest`` for bad fields, ``ResourceInfo`` for a missing
or duplicate resource, ``PreconditionFailure`` for a conflict with stored state, ``QuotaFailure``
for a full server), and anything unexpected with INTERNAL plus a log line. Handlers raise; the
wrappers here (``unary``/``stream``) turn the exception into the status, outside the ``try`` so a
``context.abort`` is never swallowed by a broad ``except``.

Status size: details travel in the ``grpc-status-details-bin`` trailer and the message in
``grpc-message``; clients refuse trailers above ~8 KiB by default, so at most
``MAX_DETAIL_VIOLATIONS`` violations and ``MAX_MESSAGE_CHARS`` characters of message are sent (the
message says how many more there were).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..core.validate import FieldViolation, ValidationError
from .store import AlreadyExists, NotFound, StaleModification, StoreCorrupt

log = logging.getLogger("optimizer.service")

#: At most this many field violations travel in a BadRequest detail (trailer size, see above).
MAX_DETAIL_VIOLATIONS = 40
#: Longest status message; the first violations are listed, then "... and N more".
MAX_MESSAGE_CHARS = 1500
#: Longest description of one violation in the detail.
MAX_DESCRIPTION_CHARS = 300

_Req = TypeVar("_Req")


class ServiceError(Exception):
    """A failure with its final gRPC status code, message and typed details."""

    def __init__(
        self, code: grpc.StatusCode, message: str, details: Iterable[Message] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)


class BadPayload:
    """What the request deserializer returns instead of raising (grpcio would answer INTERNAL)."""

    def __init__(self, error: ServiceError) -> None:
        self.error = error


# --- constructors ------------------------------------------------------------------------------


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def invalid(violations: Iterable[FieldViolation], prefix: str = "invalid request") -> ServiceError:
    """INVALID_ARGUMENT with a BadRequest listing the fields; message ``path: reason; ...``."""
    vs = list(violations)
    shown = vs[:MAX_DETAIL_VIOLATIONS]
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=v.field, description=_clip(v.description, MAX_DESCRIPTION_CHARS)
            )
            for v in shown
        ]
    )
    parts: list[str] = []
    used = len(prefix) + 2
    for k, v in enumerate(vs):
        item = f"{v.field or '(request)'}: {v.description}"
        if used + len(item) + 2 > MAX_MESSAGE_CHARS - 40:
            parts.append(f"... and {len(vs) - k} more")
            break
        parts.append(item)
        used += len(item) + 2
    message = f"{prefix}: " + "; ".join(parts)
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message, [detail])


def invalid_field(field: str, description: str) -> ServiceError:
    return invalid([FieldViolation(field, description)])


def not_found(resource_type: str, name: str, message: str) -> ServiceError:
    info = error_details_pb2.ResourceInfo(
        resource_type=resource_type, resource_name=_clip(name, 300), description=message
    )
    return ServiceError(grpc.StatusCode.NOT_FOUND, message, [info])


def already_exists(resource_type: str, name: str, message: str) -> ServiceError:
    info = error_details_pb2.ResourceInfo(
        resource_type=resource_type, resource_name=_clip(name, 300), description=message
    )
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, message, [info])


def failed_precondition(kind: str, items: Iterable[tuple[str, str]], message: str) -> ServiceError:
    """FAILED_PRECONDITION: the request is well formed but conflicts with stored state.

    ``items`` are (subject, description): the subject is a request field path or the stored
    resource in the way.
    """
    pf = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=kind, subject=_clip(s, 300), description=_clip(d, MAX_DESCRIPTION_CHARS)
            )
            for s, d in list(items)[:MAX_DETAIL_VIOLATIONS]
        ]
    )
    return ServiceError(
        grpc.StatusCode.FAILED_PRECONDITION, _clip(message, MAX_MESSAGE_CHARS), [pf]
    )


def exhausted(subject: str, message: str) -> ServiceError:
    q = error_details_pb2.QuotaFailure(
        violations=[error_details_pb2.QuotaFailure.Violation(subject=subject, description=message)]
    )
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, [q])


def internal(what: str, exc: BaseException | None = None) -> ServiceError:
    """INTERNAL with an incident id that is also in the log line: a bug, never a client error."""
    incident = uuid.uuid4().hex[:12]
    if exc is not None:
        log.error("internal error %s in %s", incident, what, exc_info=exc)
    else:
        log.error("internal error %s in %s", incident, what)
    return ServiceError(
        grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the server log"
    )


# --- mapping -----------------------------------------------------------------------------------


def _not_found_from_store(exc: NotFound) -> ServiceError:
    """The store's messages start with the resource kind: "site 'x' not found", "session ..."."""
    text = str(exc.args[0]) if exc.args else str(exc)
    kind = text.split(" ", 1)[0] if text else "resource"
    name = text.split("'", 2)[1] if text.count("'") >= 2 else ""
    return not_found(kind, name, text)


def map_exception(exc: Exception, what: str) -> ServiceError:
    """Every exception a handler can raise -> the status a client sees."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ValidationError):
        return invalid(exc.violations)
    if isinstance(exc, NotFound):
        return _not_found_from_store(exc)
    if isinstance(exc, AlreadyExists):
        text = str(exc)
        name = text.split("'", 2)[1] if text.count("'") >= 2 else ""
        return already_exists("session", name, text)
    if isinstance(exc, StaleModification):
        return failed_precondition(
            "STALE_MODIFICATION", [("event.modification", str(exc))], str(exc)
        )
    if isinstance(exc, StoreCorrupt):
        return internal(what, exc)
    if isinstance(exc, sqlite3.OperationalError):
        # "database is locked" after the busy timeout: transient, a retry may succeed.
        log.warning("%s: database unavailable: %s", what, exc)
        return ServiceError(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
    return internal(what, exc)


def to_grpc_status(err: ServiceError) -> grpc.Status:
    st = status_pb2.Status(code=err.code.value[0], message=_clip(err.message, MAX_MESSAGE_CHARS))
    for d in err.details:
        a = any_pb2.Any()
        a.Pack(d)
        st.details.append(a)
    return rpc_status.to_status(st)


def _abort(context: grpc.ServicerContext, err: ServiceError) -> None:
    context.abort_with_status(to_grpc_status(err))


# --- handler wrappers --------------------------------------------------------------------------


def unary(
    fn: Callable[[Any, grpc.ServicerContext], Any],
) -> Callable[[Any, grpc.ServicerContext], Any]:
    """Wrap a unary handler: bad payloads and exceptions become statuses."""
    name = getattr(fn, "__qualname__", "handler")

    @functools.wraps(fn)
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, BadPayload):
            err = request.error
        else:
            try:
                return fn(request, context)
            except Exception as exc:  # mapped: never a bare stack trace to the client
                err = map_exception(exc, name)
        _abort(context, err)
        return None  # unreachable: abort raises

    return handler


def stream(
    fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    """Wrap a server-streaming handler the same way; a generator that returns ends with OK."""
    name = getattr(fn, "__qualname__", "handler")

    @functools.wraps(fn)
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if isinstance(request, BadPayload):
            err = request.error
        else:
            try:
                yield from fn(request, context)
                return
            except Exception as exc:
                err = map_exception(exc, name)
        _abort(context, err)

    return handler


def deserializer(cls: type[Message], max_bytes: int) -> Callable[[bytes], Any]:
    """Parse a request, or a ``BadPayload`` for one too big or not decodable.

    grpcio answers INTERNAL ("Exception deserializing request!") when a deserializer raises,
    which would blame the server for a client's bytes.
    """
    full_name = cls.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        if len(data) > max_bytes:
            return BadPayload(
                invalid_field(
                    "", f"request is {len(data)} bytes; at most {max_bytes} bytes per request"
                )
            )
        try:
            return cls.FromString(data)
        except Exception as exc:  # DecodeError, invalid UTF-8, recursion depth
            return BadPayload(invalid_field("", f"not a valid {full_name}: {_clip(str(exc), 200)}"))

    return parse


def serialize(message: Message | bytes) -> bytes:
    """Response serializer that also passes bytes through (a plan serialized once for all
    watchers)."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()
