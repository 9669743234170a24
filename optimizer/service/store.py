"""Durable state of the stateful service: sites, active sessions and grid signals, in SQLite.

Every entity is stored as the protobuf binary of its API form (the ``optimizer.api.convert``
converters), so the stored schema cannot drift from what clients send; a few plain columns
(ids, sort keys, a cancelled flag) exist only to look rows up and order them.

Durability: WAL with ``synchronous=FULL`` and one transaction per mutation, committed before the
call returns, so an acknowledged mutation survives ``kill -9`` (and, with FULL, power loss).
Writes start with ``BEGIN IMMEDIATE`` so a read-check-write (event modification order, duplicate
session ids) is atomic even against a second process on the same file.

Threads: one connection (``check_same_thread=False``) guarded by one ``threading.Lock``. SQLite
serialises writers anyway, the service's state is small, and a single connection means no
per-thread connection lifetime to manage in a gRPC thread pool; reads queue behind writes, which
is fine at this scale.

The store enforces identity and referential rules only (site exists, session ids unique per site,
sessions only on connectors the site has, event modification order); value rules are the caller's
(``optimizer.core.validate``). A call that raises leaves the database as it was.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from google.protobuf.message import Message

from ..api.convert import (
    _Errors,
    event_from_proto,
    event_to_proto,
    options_from_proto,
    options_to_proto,
    session_from_proto,
    session_to_proto,
    signals_from_proto,
    signals_to_proto,
    site_from_proto,
    site_to_proto,
)
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core.model import (
    CapacityLimit,
    CurtailmentEvent,
    Options,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
)

#: Bump with a migration in ``_MIGRATIONS`` whenever a table changes.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sites (
    id TEXT PRIMARY KEY,
    site BLOB NOT NULL,                 -- smartcharging.v1.Site
    options BLOB NOT NULL,              -- smartcharging.v1.Options
    ocpp BLOB                           -- smartcharging.v1.OcppOptions, NULL: none (v2)
);
CREATE TABLE IF NOT EXISTS sessions (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    connector TEXT NOT NULL,            -- copy of body.connector, checked by put_site
    arrival_us INTEGER NOT NULL,        -- sort key: body.arrival in microseconds since the epoch
    body BLOB NOT NULL,                 -- smartcharging.v1.Session
    transaction_id TEXT,                -- the OCPP transaction id, NULL: none (v2)
    PRIMARY KEY (site_id, id)
);
CREATE TABLE IF NOT EXISTS events (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    start_us INTEGER NOT NULL,          -- sort key: body.start in microseconds since the epoch
    cancelled INTEGER NOT NULL DEFAULT 0,  -- 1: tombstone keeping the cancelled modification
    body BLOB NOT NULL,                 -- smartcharging.v1.CurtailmentEvent
    PRIMARY KEY (site_id, id)
);
CREATE TABLE IF NOT EXISTS capacity (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    body BLOB NOT NULL,                 -- smartcharging.v1.Signals holding only `capacity`
    PRIMARY KEY (site_id, node)
);
CREATE TABLE IF NOT EXISTS series (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('prices', 'carbon')),
    body BLOB NOT NULL,                 -- smartcharging.v1.Signals holding only `kind`
    PRIMARY KEY (site_id, kind)
);
"""

#: version -> statements that bring a file of that version to the next one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE sites ADD COLUMN ocpp BLOB",
        "ALTER TABLE sessions ADD COLUMN transaction_id TEXT",
    ),
}

EventOutcome = Literal["APPLIED", "UNCHANGED"]
_M = TypeVar("_M", bound=Message)


class NotFound(LookupError):
    """The site, session or event named does not exist (gRPC NOT_FOUND)."""


class AlreadyExists(ValueError):
    """A session with that id is already active on the site (gRPC ALREADY_EXISTS)."""


class StaleModification(ValueError):
    """An event submission that an equal or higher stored modification overrides (ABORTED or
    FAILED_PRECONDITION, the caller's choice)."""


class StoreCorrupt(RuntimeError):
    """A stored row no longer decodes: the file was damaged or written by incompatible code."""


class Store:
    """The service's durable state in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        conn = sqlite3.connect(
            os.fspath(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{os.fspath(path)}: cannot use WAL journaling (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            _init_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the file; later calls raise ``sqlite3.ProgrammingError``. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def _tx(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock: committed on return, rolled back on any exception."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise sqlite3.ProgrammingError("Store is closed")
            with conn:
                conn.execute(begin)
                yield conn

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a check then a write cannot interleave with
        # another process's writer, and there is no deadlock-prone lock upgrade.
        return self._tx("BEGIN IMMEDIATE")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        # A read transaction gives multi-query reads (problem()) one consistent WAL snapshot.
        return self._tx("BEGIN")

    # --- sites -----------------------------------------------------------------------------

    def put_site(self, site: Site, options: Options, ocpp: pb.OcppOptions | None = None) -> bool:
        """Create or replace a site (with its OCPP options, None: none); True if created.

        A replaced site keeps its sessions, events and signals. Replacing it with one that lacks
        a connector an active session is on is refused (ValueError naming those sessions), since
        the stored state would then describe a car plugged into nothing.
        """
        site_blob = site_to_proto(site).SerializeToString()
        options_blob = options_to_proto(options).SerializeToString()
        ocpp_blob = None if ocpp is None else ocpp.SerializeToString()
        known = {c.id for c in site.connectors}
        with self._write() as conn:
            exists = _site_exists(conn, site.id)
            if exists:
                orphans = [
                    f"{sid!r} (connector {cid!r})"
                    for sid, cid in conn.execute(
                        "SELECT id, connector FROM sessions WHERE site_id = ? "
                        "ORDER BY arrival_us, id",
                        (site.id,),
                    )
                    if cid not in known
                ]
                if orphans:
                    raise ValueError(
                        f"site {site.id!r}: the new site lacks the connector of active sessions "
                        f"{', '.join(orphans)}; stop those sessions first"
                    )
                # UPDATE, never INSERT OR REPLACE: REPLACE deletes the row and would cascade.
                conn.execute(
                    "UPDATE sites SET site = ?, options = ?, ocpp = ? WHERE id = ?",
                    (site_blob, options_blob, ocpp_blob, site.id),
                )
            else:
                conn.execute(
                    "INSERT INTO sites (id, site, options, ocpp) VALUES (?, ?, ?, ?)",
                    (site.id, site_blob, options_blob, ocpp_blob),
                )
        return not exists

    def get_site(self, site_id: str) -> tuple[Site, Options]:
        with self._read() as conn:
            return _load_site(conn, site_id)

    def get_ocpp(self, site_id: str) -> pb.OcppOptions | None:
        """The site's stored OCPP options (None: none stored)."""
        with self._read() as conn:
            return _load_ocpp(conn, site_id)

    def list_sites(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM sites ORDER BY id")]

    def delete_site(self, site_id: str) -> None:
        """Delete a site with its sessions, events (and tombstones), capacity and prices."""
        with self._write() as conn:
            if conn.execute("DELETE FROM sites WHERE id = ?", (site_id,)).rowcount == 0:
                raise NotFound(_no_site(site_id))

    # --- sessions --------------------------------------------------------------------------

    def add_session(
        self, site_id: str, session: Session, transaction_id: str | None = None
    ) -> None:
        """Start a session (with the CSMS's OCPP transaction id, if any); AlreadyExists if its
        id is active on the site. ``replace_session`` keeps the transaction id."""
        body, arrival_us = _session_row(session)
        with self._write() as conn:
            _check_connector(conn, site_id, session)
            if _session_row_exists(conn, site_id, session.id):
                raise AlreadyExists(
                    f"session {session.id!r} is already active on site {site_id!r}"
                )
            conn.execute(
                "INSERT INTO sessions (site_id, id, connector, arrival_us, body, transaction_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (site_id, session.id, session.connector, arrival_us, body, transaction_id),
            )

    def replace_session(self, site_id: str, session: Session) -> None:
        """Overwrite the active session with ``session.id`` (NotFound if there is none)."""
        body, arrival_us = _session_row(session)
        with self._write() as conn:
            _check_connector(conn, site_id, session)
            cur = conn.execute(
                "UPDATE sessions SET connector = ?, arrival_us = ?, body = ? "
                "WHERE site_id = ? AND id = ?",
                (session.connector, arrival_us, body, site_id, session.id),
            )
            if cur.rowcount == 0:
                raise NotFound(_no_session(site_id, session.id))

    def get_session(self, site_id: str, session_id: str) -> Session:
        with self._read() as conn:
            row = conn.execute(
                "SELECT body FROM sessions WHERE site_id = ? AND id = ?", (site_id, session_id)
            ).fetchone()
            if row is None:
                _require_site(conn, site_id)
                raise NotFound(_no_session(site_id, session_id))
            return _session_from_bytes(row[0])

    def remove_session(self, site_id: str, session_id: str) -> None:
        with self._write() as conn:
            cur = conn.execute(
                "DELETE FROM sessions WHERE site_id = ? AND id = ?", (site_id, session_id)
            )
            if cur.rowcount == 0:
                _require_site(conn, site_id)
                raise NotFound(_no_session(site_id, session_id))

    def sessions(self, site_id: str) -> tuple[Session, ...]:
        """Active sessions ordered by arrival, then id."""
        with self._read() as conn:
            return _load_sessions(conn, site_id)

    def transaction_ids(self, site_id: str) -> dict[str, str]:
        """Session id -> OCPP transaction id, for the active sessions that have one."""
        with self._read() as conn:
            return _load_transaction_ids(conn, site_id)

    # --- curtailment events ----------------------------------------------------------------

    def submit_event(self, site_id: str, event: CurtailmentEvent) -> EventOutcome:
        """Store a grid operator's event; "APPLIED" if new or superseding, "UNCHANGED" if this
        exact (id, modification, content) is already held, so operator retries are idempotent.

        StaleModification when a higher modification is held, when the same modification is
        held with different content (an operator must bump the modification to change an event),
        or when the event was cancelled at this modification or later (a delayed retry must not
        resurrect a cancelled curtailment).
        """
        body = event_to_proto(event).SerializeToString()
        new = _event_from_bytes(body)  # as it will read back: compares equal to stored content
        start_us = _micros(pb.CurtailmentEvent.FromString(body).start)
        with self._write() as conn:
            _require_site(conn, site_id)
            row = conn.execute(
                "SELECT body, cancelled FROM events WHERE site_id = ? AND id = ?",
                (site_id, event.id),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO events (site_id, id, start_us, body) VALUES (?, ?, ?, ?)",
                    (site_id, event.id, start_us, body),
                )
                return "APPLIED"
            old = _event_from_bytes(row[0])
            what = f"event {event.id!r} on site {site_id!r}"
            if row[1]:
                if new.modification <= old.modification:
                    raise StaleModification(
                        f"{what} was cancelled at modification {old.modification}; only a "
                        f"higher modification than that reinstates it, got {new.modification}"
                    )
            elif new.modification < old.modification:
                raise StaleModification(
                    f"{what}: modification {new.modification} is older than the stored "
                    f"modification {old.modification}"
                )
            elif new.modification == old.modification:
                if new == old:
                    return "UNCHANGED"
                raise StaleModification(
                    f"{what}: modification {new.modification} already holds different content; "
                    "send a higher modification to change the event"
                )
            conn.execute(
                "UPDATE events SET start_us = ?, cancelled = 0, body = ? "
                "WHERE site_id = ? AND id = ?",
                (start_us, body, site_id, event.id),
            )
            return "APPLIED"

    def cancel_event(self, site_id: str, event_id: str) -> None:
        """Cancel an active event. A tombstone keeps its modification so that a retried submit of
        it (or any older modification) is refused rather than bringing the curtailment back."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE events SET cancelled = 1 WHERE site_id = ? AND id = ? AND cancelled = 0",
                (site_id, event_id),
            )
            if cur.rowcount == 0:
                _require_site(conn, site_id)
                raise NotFound(f"event {event_id!r} is not active on site {site_id!r}")

    def events(self, site_id: str) -> tuple[CurtailmentEvent, ...]:
        """Active (not cancelled) events, latest modification of each, ordered by start, id."""
        with self._read() as conn:
            return _load_events(conn, site_id)

    # --- capacity forecasts, prices, carbon ------------------------------------------------

    def set_capacity(self, site_id: str, node: str, limits: tuple[CapacityLimit, ...]) -> None:
        """Replace the capacity forecast of one node (empty: the node has none).

        Every limit must name ``node``: the forecast is keyed by it, and a stray entry would
        otherwise survive the next replacement of its real node.
        """
        stray = sorted({c.node for c in limits if c.node != node})
        if stray:
            raise ValueError(
                f"capacity forecast for node {node!r} has entries for other nodes: "
                + ", ".join(repr(n) for n in stray)
            )
        body = signals_to_proto(Signals(capacity=tuple(limits))).SerializeToString()
        with self._write() as conn:
            _require_site(conn, site_id)
            if limits:
                conn.execute(
                    "INSERT INTO capacity (site_id, node, body) VALUES (?, ?, ?) "
                    "ON CONFLICT (site_id, node) DO UPDATE SET body = excluded.body",
                    (site_id, node, body),
                )
            else:
                conn.execute(
                    "DELETE FROM capacity WHERE site_id = ? AND node = ?", (site_id, node)
                )

    def set_prices(
        self,
        site_id: str,
        prices: tuple[TimeValue, ...] | None,
        carbon: tuple[TimeValue, ...] | None,
    ) -> None:
        """Replace prices and/or carbon intensities; None leaves that series as it is, an empty
        tuple clears it."""
        updates: list[tuple[str, bytes | None]] = []
        if prices is not None:
            updates.append(("prices", _series_blob(Signals(prices=tuple(prices)), prices)))
        if carbon is not None:
            updates.append(("carbon", _series_blob(Signals(carbon=tuple(carbon)), carbon)))
        with self._write() as conn:
            _require_site(conn, site_id)
            for kind, blob in updates:
                if blob is None:
                    conn.execute(
                        "DELETE FROM series WHERE site_id = ? AND kind = ?", (site_id, kind)
                    )
                else:
                    conn.execute(
                        "INSERT INTO series (site_id, kind, body) VALUES (?, ?, ?) "
                        "ON CONFLICT (site_id, kind) DO UPDATE SET body = excluded.body",
                        (site_id, kind, blob),
                    )

    def signals(self, site_id: str) -> Signals:
        """Capacity (by node, each forecast in the order given), prices, carbon, active events."""
        with self._read() as conn:
            return _load_signals(conn, site_id)

    def problem(self, site_id: str, now: datetime) -> Problem:
        """Everything needed to plan the site at ``now``, read from one consistent snapshot."""
        with self._read() as conn:
            return _load_problem(conn, site_id, now)

    def planning_state(
        self, site_id: str, now: datetime
    ) -> tuple[Problem, pb.OcppOptions | None, dict[str, str]]:
        """``problem`` plus the OCPP options and transaction ids, from one snapshot."""
        with self._read() as conn:
            problem = _load_problem(conn, site_id, now)
            return problem, _load_ocpp(conn, site_id), _load_transaction_ids(conn, site_id)


# --- schema ------------------------------------------------------------------------------------


def _init_schema(conn: sqlite3.Connection) -> None:
    """Create the tables once, in one transaction, so two processes opening a new file agree."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        if not rows:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            return
        version = rows[0][0]
        while len(rows) == 1 and version in _MIGRATIONS and version < SCHEMA_VERSION:
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
            conn.execute("UPDATE schema_version SET version = ?", (version,))
            rows = [(version,)]
        if len(rows) > 1 or rows[0][0] != SCHEMA_VERSION:
            found = ", ".join(str(r[0]) for r in rows)
            raise RuntimeError(
                f"database schema version {found} is not the supported version "
                f"{SCHEMA_VERSION}; no migration exists"
            )


# --- row helpers (callers hold the transaction) ------------------------------------------------


def _no_site(site_id: str) -> str:
    return f"site {site_id!r} not found"


def _no_session(site_id: str, session_id: str) -> str:
    return f"session {session_id!r} is not active on site {site_id!r}"


def _site_exists(conn: sqlite3.Connection, site_id: str) -> bool:
    return conn.execute("SELECT 1 FROM sites WHERE id = ?", (site_id,)).fetchone() is not None


def _require_site(conn: sqlite3.Connection, site_id: str) -> None:
    if not _site_exists(conn, site_id):
        raise NotFound(_no_site(site_id))


def _session_row_exists(conn: sqlite3.Connection, site_id: str, session_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sessions WHERE site_id = ? AND id = ?", (site_id, session_id)
    ).fetchone()
    return row is not None


def _check_connector(conn: sqlite3.Connection, site_id: str, session: Session) -> None:
    """NotFound without the site; ValueError for a connector the site lacks (the invariant
    put_site protects, so it must hold from the start)."""
    site, _ = _load_site(conn, site_id)
    if all(c.id != session.connector for c in site.connectors):
        raise ValueError(
            f"session {session.id!r}: site {site_id!r} has no connector {session.connector!r}"
        )


def _load_site(conn: sqlite3.Connection, site_id: str) -> tuple[Site, Options]:
    row = conn.execute("SELECT site, options FROM sites WHERE id = ?", (site_id,)).fetchone()
    if row is None:
        raise NotFound(_no_site(site_id))
    return _site_from_bytes(row[0]), _options_from_bytes(row[1])


def _load_ocpp(conn: sqlite3.Connection, site_id: str) -> pb.OcppOptions | None:
    row = conn.execute("SELECT ocpp FROM sites WHERE id = ?", (site_id,)).fetchone()
    if row is None:
        raise NotFound(_no_site(site_id))
    return None if row[0] is None else _parse(pb.OcppOptions, row[0], "OCPP options")


def _load_transaction_ids(conn: sqlite3.Connection, site_id: str) -> dict[str, str]:
    _require_site(conn, site_id)
    rows = conn.execute(
        "SELECT id, transaction_id FROM sessions WHERE site_id = ? AND transaction_id IS NOT NULL",
        (site_id,),
    )
    return {sid: tx for sid, tx in rows}


def _load_problem(conn: sqlite3.Connection, site_id: str, now: datetime) -> Problem:
    site, options = _load_site(conn, site_id)
    return Problem(
        site=site,
        sessions=_load_sessions(conn, site_id),
        now=now,
        signals=_load_signals(conn, site_id),
        options=options,
    )


def _load_sessions(conn: sqlite3.Connection, site_id: str) -> tuple[Session, ...]:
    _require_site(conn, site_id)
    rows = conn.execute(
        "SELECT body FROM sessions WHERE site_id = ? ORDER BY arrival_us, id", (site_id,)
    )
    return tuple(_session_from_bytes(r[0]) for r in rows)


def _load_events(conn: sqlite3.Connection, site_id: str) -> tuple[CurtailmentEvent, ...]:
    _require_site(conn, site_id)
    rows = conn.execute(
        "SELECT body FROM events WHERE site_id = ? AND cancelled = 0 ORDER BY start_us, id",
        (site_id,),
    )
    return tuple(_event_from_bytes(r[0]) for r in rows)


def _load_signals(conn: sqlite3.Connection, site_id: str) -> Signals:
    events = _load_events(conn, site_id)  # also raises NotFound for a missing site
    capacity: list[CapacityLimit] = []
    for (body,) in conn.execute(
        "SELECT body FROM capacity WHERE site_id = ? ORDER BY node", (site_id,)
    ):
        capacity.extend(_signals_from_bytes(body).capacity)
    series = dict(
        conn.execute("SELECT kind, body FROM series WHERE site_id = ?", (site_id,)).fetchall()
    )
    prices = _signals_from_bytes(series["prices"]).prices if "prices" in series else ()
    carbon = _signals_from_bytes(series["carbon"]).carbon if "carbon" in series else ()
    return Signals(capacity=tuple(capacity), prices=prices, carbon=carbon, events=events)


# --- encoding ----------------------------------------------------------------------------------


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
