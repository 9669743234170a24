"""The gRPC service: servicers, the planner that keeps each site's plan current, the mapping of
errors to gRPC status codes, the SQLite store and the server process.

The public names below are imported on first use, not with the package: importing the package
eagerly would load ``server`` before ``python -m optimizer.service.server`` runs it (runpy then
warns), and would make a plain ``import optimizer.service.store`` pull in grpc's health and
reflection services.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import ServiceConfig
    from .server import RunningServer, build_server, serve
    from .store import Store

__all__ = ["RunningServer", "ServiceConfig", "Store", "build_server", "serve"]

_HOME = {
    "RunningServer": ".server",
    "ServiceConfig": ".core",
    "Store": ".store",
    "build_server": ".server",
    "serve": ".server",
}


def __getattr__(name: str) -> Any:
    """Resolve a public name on first access (PEP 562)."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home, __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
