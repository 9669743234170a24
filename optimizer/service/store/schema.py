"""The store's tables, its schema version and the migrations between versions.

Kept apart from ``Store`` so a schema change (bump ``SCHEMA_VERSION``, add a migration) is
reviewed in one place, next to the tables it changes.
"""

from __future__ import annotations

import sqlite3

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
