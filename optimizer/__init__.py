"""Demand-response smart charging optimizer: safe per-connector charging profiles for EV sites.

The public API is the pure core: describe a site and its sessions with the domain model, call
:func:`solve`, get a checked :class:`Plan`. Adapters live in their own packages:
``optimizer.service`` (gRPC server and store), ``optimizer.ocpp`` (OCPP profiles),
``optimizer.bridge`` (OCPP charge points), ``optimizer.sim`` (replay and reports),
``optimizer.api`` (protobuf). Names load on first use, so ``import optimizer`` stays cheap for
adapters that need only part of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.checker import check
    from .core.model import (
        CapacityLimit,
        Connector,
        CurtailmentEvent,
        Mode,
        Node,
        Options,
        PhasorLimit,
        Problem,
        Session,
        Signals,
        Site,
        TimeValue,
        Wiring,
    )
    from .core.plan import ChangePoint, ConnectorProfile, Peak, Plan, SessionResult, Violation
    from .core.solve import PlanCheckError, solve, warmup
    from .core.validate import FieldViolation, Limits, ValidationError, validate

_WHERE = {
    **dict.fromkeys(
        ("CapacityLimit", "Connector", "CurtailmentEvent", "Mode", "Node", "Options",
         "PhasorLimit", "Problem", "Session", "Signals", "Site", "TimeValue", "Wiring"),
        "core.model"),
    **dict.fromkeys(("ChangePoint", "ConnectorProfile", "Peak", "Plan", "SessionResult",
                     "Violation"), "core.plan"),
    **dict.fromkeys(("FieldViolation", "Limits", "ValidationError", "validate"),
                    "core.validate"),
    **dict.fromkeys(("PlanCheckError", "solve", "warmup"), "core.solve"),
    "check": "core.checker",
}

__all__ = [
    "CapacityLimit", "ChangePoint", "Connector", "ConnectorProfile", "CurtailmentEvent",
    "FieldViolation", "Limits", "Mode", "Node", "Options", "Peak", "PhasorLimit", "Plan",
    "PlanCheckError", "Problem", "Session", "SessionResult", "Signals", "Site", "TimeValue",
    "ValidationError", "Violation", "Wiring", "check", "solve", "validate", "warmup",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'optimizer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
