"""The store's exceptions, one per outcome a caller maps to its own status code.

Below every other store module because the schema, row and codec code all raise them.
"""

from __future__ import annotations


class NotFound(LookupError):
    """The site, session or event named does not exist (gRPC NOT_FOUND)."""


class AlreadyExists(ValueError):
    """A session with that id is already active on the site (gRPC ALREADY_EXISTS)."""


class StaleModification(ValueError):
    """An event submission that an equal or higher stored modification overrides (ABORTED or
    FAILED_PRECONDITION, the caller's choice)."""


class StoreCorrupt(RuntimeError):
    """A stored row no longer decodes: the file was damaged or written by incompatible code."""
