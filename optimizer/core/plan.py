"""The answer: per-connector profiles as change points, per-session energy, peaks, warnings.

Data only here; ``build_plan`` (in ``solve``) turns a current matrix into a ``Plan``. The checker
reads ``Plan.profiles`` exactly as a charger would: a current holds from its point's ``start``
until the next point (the last one until ``Plan.end``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ChangePoint:
    start: datetime
    current_a: float


@dataclass(frozen=True)
class ConnectorProfile:
    """A connector's current over the horizon; 0 whenever no planned session's car is present."""

    connector: str
    sessions: tuple[str, ...]
    points: tuple[ChangePoint, ...]


@dataclass(frozen=True)
class SessionResult:
    session: str
    connector: str
    requested_kwh: float  # still wanted at plan start (requested - delivered)
    expected_kwh: float  # what the plan delivers within the horizon
    unmet_kwh: float


@dataclass(frozen=True)
class Peak:
    """Highest load of one limited quantity of a node over the horizon (A or kW)."""

    node: str
    label: str  # L1, L2, L3, kW or a phasor limit's name
    peak: float
    limit: float  # the limit in force in the slot where the peak occurs
    at: datetime


@dataclass(frozen=True)
class Violation:
    """One broken rule, as found by the independent checker."""

    kind: str  # node_limit, connector_bounds, vehicle_bounds, min_current, discrete_set,
    #            grid_step, outside_stay, energy_above_request, energy_report, malformed_profile
    subject: str  # node / connector / session id
    start: datetime | None
    end: datetime | None
    value: float
    limit: float
    message: str


@dataclass(frozen=True)
class Plan:
    start: datetime
    end: datetime
    profiles: tuple[ConnectorProfile, ...]
    sessions: tuple[SessionResult, ...]
    peaks: tuple[Peak, ...] = ()
    energy_cost: float = 0.0
    carbon_kg: float = 0.0
    solver: str = ""
    mode: str = ""
    solve_time_s: float = 0.0
    lp_bound_kwh: float | None = None
    gap: float | None = None  # 1 - delivered / lp_bound
    warnings: tuple[str, ...] = ()
    violations: tuple[Violation, ...] = field(default=())
