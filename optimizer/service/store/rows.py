"""Reads and checks that ``Store`` methods compose inside one transaction.

Each helper takes the open connection of the caller's transaction, so a multi-query read
(``problem``) sees one snapshot and a check then write (``add_session``) cannot interleave with
another writer; none of them begins or commits anything.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ...api.smartcharging.v1 import smartcharging_pb2 as pb
from ...core.model import CapacityLimit, CurtailmentEvent, Options, Problem, Session, Signals, Site
from .codec import (
    _event_from_bytes,
    _options_from_bytes,
    _parse,
    _session_from_bytes,
    _signals_from_bytes,
    _site_from_bytes,
)
from .errors import NotFound


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
