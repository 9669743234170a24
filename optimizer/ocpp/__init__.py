"""OCPP charging-profile rendering: a plan -> SetChargingProfile payloads chargers accept.

Layout follows the ``ocpp`` package: a protocol-agnostic core (``capabilities``, ``schedule``,
``failsafe``) and one module per OCPP version (``v16``, ``v201``, ``v21``) that only shapes
payloads. Nothing here opens a socket; the CSMS sends the payloads (``RenderedProfile.action`` +
``payload``) over its own connection. ``rules`` checks payloads against the ``ocpp`` package's
JSON schemas and the rules chargers enforce beyond them; ``render`` refuses to return a payload
that fails it.
"""

from __future__ import annotations

from .capabilities import VERSIONS, ChargerCapabilities, ProfileKind, RateUnit
from .failsafe import FallbackLimit, Load, failsafe_currents, worst_case_loads
from .render import (
    RenderedProfile,
    applied_limit,
    render_failsafe,
    render_plan,
    render_station_max,
)
from .rules import payload_errors, schema_errors
from .schedule import Period, Schedule, Step, build_schedule

__all__ = [
    "VERSIONS",
    "ChargerCapabilities",
    "FallbackLimit",
    "Load",
    "Period",
    "ProfileKind",
    "RateUnit",
    "RenderedProfile",
    "Schedule",
    "Step",
    "applied_limit",
    "build_schedule",
    "failsafe_currents",
    "payload_errors",
    "render_failsafe",
    "render_plan",
    "render_station_max",
    "schema_errors",
    "worst_case_loads",
]
