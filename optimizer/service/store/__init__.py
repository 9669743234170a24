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

Layout: ``db`` holds the ``Store`` class (connections, transactions, the mutations), ``schema``
the tables and their migrations, ``rows`` the reads a transaction composes, ``codec`` the
protobuf (de)serialisation of rows, ``errors`` the exceptions callers map to status codes.
"""

from __future__ import annotations

from .db import EventOutcome, Store
from .errors import AlreadyExists, NotFound, StaleModification, StoreCorrupt
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyExists",
    "EventOutcome",
    "NotFound",
    "StaleModification",
    "Store",
    "StoreCorrupt",
]
