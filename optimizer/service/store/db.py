"""The ``Store`` class: one SQLite connection, its transactions and every mutation.

See :mod:`optimizer.service.store` for the durability and threading rules it keeps; the reads
it composes are in ``rows``, the encoding in ``codec``, the tables in ``schema``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Literal

from ...api.convert import event_to_proto, options_to_proto, signals_to_proto, site_to_proto
from ...api.smartcharging.v1 import smartcharging_pb2 as pb
from ...core.model import (
    CapacityLimit,
    CurtailmentEvent,
    Options,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
)
from .codec import _event_from_bytes, _micros, _series_blob, _session_from_bytes, _session_row
from .errors import AlreadyExists, NotFound, StaleModification
from .rows import (
    _check_connector,
    _load_events,
    _load_ocpp,
    _load_problem,
    _load_sessions,
    _load_signals,
    _load_site,
    _load_transaction_ids,
    _no_session,
    _no_site,
    _require_site,
    _session_row_exists,
    _site_exists,
)
from .schema import _init_schema

EventOutcome = Literal["APPLIED", "UNCHANGED"]


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
