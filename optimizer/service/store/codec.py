"""Rows to model objects and back: the protobuf binary each entity is stored as.

Stored bytes come from the same converters the API uses (``optimizer.api.convert``), so a row
that no longer decodes or converts is a damaged file (``StoreCorrupt``), never a caller error.
Pure functions on bytes: no connection, no transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message

from ...api.convert import (
    _Errors,
    event_from_proto,
    options_from_proto,
    session_from_proto,
    session_to_proto,
    signals_from_proto,
    signals_to_proto,
    site_from_proto,
)
from ...api.smartcharging.v1 import smartcharging_pb2 as pb
from ...core.model import CurtailmentEvent, Options, Session, Signals, Site, TimeValue
from .errors import StoreCorrupt

_M = TypeVar("_M", bound=Message)


def _micros(ts: Any) -> int:
    """Sort key of a protobuf Timestamp (what the converters decode the datetime from)."""
    return int(ts.seconds) * 1_000_000 + int(ts.nanos) // 1000


def _session_row(session: Session) -> tuple[bytes, int]:
    m = session_to_proto(session)
    return m.SerializeToString(), _micros(m.arrival)


def _series_blob(signals: Signals, values: Sequence[TimeValue]) -> bytes | None:
    return signals_to_proto(signals).SerializeToString() if values else None


def _parse(cls: type[_M], data: bytes, what: str) -> _M:
    try:
        return cls.FromString(data)
    except Exception as exc:  # DecodeError and friends: a damaged row, not a caller error
        raise StoreCorrupt(f"stored {what} does not decode: {exc}") from exc


def _decoded(err: _Errors, what: str) -> None:
    if err.items:
        raise StoreCorrupt(f"stored {what} does not convert: {err.items}")


def _site_from_bytes(data: bytes) -> Site:
    err = _Errors()
    site = site_from_proto(_parse(pb.Site, data, "site"), err)
    _decoded(err, "site")
    return site


def _session_from_bytes(data: bytes) -> Session:
    err = _Errors()
    session = session_from_proto(_parse(pb.Session, data, "session"), "session", err)
    _decoded(err, "session")
    return session


def _event_from_bytes(data: bytes) -> CurtailmentEvent:
    err = _Errors()
    event = event_from_proto(_parse(pb.CurtailmentEvent, data, "event"), "event", err)
    _decoded(err, "event")
    return event


def _signals_from_bytes(data: bytes) -> Signals:
    err = _Errors()
    signals = signals_from_proto(_parse(pb.Signals, data, "signals"), err)
    _decoded(err, "signals")
    return signals


def _options_from_bytes(data: bytes) -> Options:
    """``options_from_proto``, then the Duration fields recomputed exactly.

    The converter goes through float minutes, so 1.7 s reads back as 1.7000000000000002 and
    whole minutes come back as floats; a store must give back what it was given (to the
    microsecond a Duration built from a timedelta holds).
    """
    m = _parse(pb.Options, data, "options")
    err = _Errors()
    o = options_from_proto(m, err)
    _decoded(err, "options")

    def minutes(name: str, default: float) -> Any:  # int when whole, as Options declares
        if not m.HasField(name):
            return default
        value = getattr(m, name).ToTimedelta() / timedelta(minutes=1)
        return int(value) if value.is_integer() else value

    return replace(
        o,
        slot_minutes=minutes("slot_length", o.slot_minutes),
        horizon_hours=m.horizon.ToTimedelta() / timedelta(hours=1)
        if m.HasField("horizon")
        else o.horizon_hours,
        time_limit_s=m.time_limit.ToTimedelta().total_seconds()
        if m.HasField("time_limit")
        else o.time_limit_s,
    )
