"""The store's tables, its schema version and the migrations between versions.

Kept apart from ``Store`` so a schema change (bump ``SCHEMA_VERSION``, add a migration) is
reviewed in one place, next to the tables it changes.
"""

from __future__ import annotations

import sqlite3

#: Bump with a migration in ``_MIGRATIONS`` whenever a table changes.
SCHEMA_VERSION = 3

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
-- v3: security (optimizer.service.auth). Not tied to sites: a grant may name a site before it
-- exists, and principals outlive the sites they own.
CREATE TABLE IF NOT EXISTS principals (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('csms', 'grid_operator', 'admin')),
    created_us INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS grants (
    principal TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
    site_pattern TEXT NOT NULL,         -- a site id, or a prefix ending in '*'
    node TEXT NOT NULL DEFAULT '',      -- '': every node of the site (grid operators only)
    PRIMARY KEY (principal, site_pattern, node)
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,                -- public part of the bearer token
    principal TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
    hash BLOB NOT NULL,                 -- hash of the secret part (the secret is never stored)
    created_us INTEGER NOT NULL,
    expires_us INTEGER,                 -- NULL: does not expire
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us INTEGER NOT NULL,
    principal TEXT NOT NULL,
    method TEXT NOT NULL,               -- full gRPC method name
    site_id TEXT,
    target TEXT,                        -- event id, node, ... the action names
    outcome TEXT NOT NULL,              -- gRPC status code name
    detail TEXT
);
-- v3: history (optimizer.service.store.history). Kept after a site is deleted, until retention.
CREATE TABLE IF NOT EXISTS plan_history (
    site_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',    -- what triggered the plan (event id, session change, ...)
    body BLOB NOT NULL,                 -- smartcharging.v1.Plan
    PRIMARY KEY (site_id, created_us, version)
);
CREATE TABLE IF NOT EXISTS event_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    action TEXT NOT NULL,               -- 'submit' or 'cancel'
    principal TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL                  -- smartcharging.v1.CurtailmentEvent
);
CREATE TABLE IF NOT EXISTS session_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    action TEXT NOT NULL,               -- 'start', 'update' or 'stop'
    body BLOB NOT NULL                  -- smartcharging.v1.Session as it was after the action
);
CREATE INDEX IF NOT EXISTS event_history_site ON event_history (site_id, at_us);
CREATE INDEX IF NOT EXISTS session_history_site ON session_history (site_id, session_id, at_us);
-- v3: connectors whose station is unreachable, assumed to draw the limit they last held.
CREATE TABLE IF NOT EXISTS holds (
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    connector TEXT NOT NULL,
    body BLOB NOT NULL,                 -- smartcharging.v1.ConnectorHold
    PRIMARY KEY (site_id, connector)
);
"""

#: version -> statements that bring a file of that version to the next one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE sites ADD COLUMN ocpp BLOB",
        "ALTER TABLE sessions ADD COLUMN transaction_id TEXT",
    ),
    # v3 only adds tables, which _SCHEMA creates (IF NOT EXISTS) before migrating.
    2: (),
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
