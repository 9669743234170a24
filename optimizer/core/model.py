"""Domain model: what a CSMS knows about a site at one moment.

Plain frozen dataclasses, no behaviour beyond derived electrical facts. Field names match the
protobuf API (``protos/smartcharging/v1``) so that validation errors name the same field paths a
client sent (``sessions[3].departure``). Times are timezone-aware ``datetime``; currents in A,
power in kW, energy in kWh.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

PHASES = ("L1", "L2", "L3")
#: Angle of each site phase's line-to-neutral voltage (and of a unity-power-factor current on it).
PHASE_ANGLE_DEG = (0.0, -120.0, 120.0)
#: Angle of a line-to-line branch current for the standard branch (first line, second line).
BRANCH_ANGLE_DEG = {(0, 1): 30.0, (1, 2): -90.0, (2, 0): 150.0}
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L2L1L3", "L3L2L1")


class Wiring(StrEnum):
    """How a connector is connected: line-to-neutral (Europe) or line-to-line (North America)."""

    WYE = "wye"
    DELTA = "delta"


class Mode(StrEnum):
    FAST = "fast"
    LP = "lp"
    AUTO = "auto"


@dataclass(frozen=True)
class PhasorLimit:
    """A conductor limit |c1*I_L1 + c2*I_L2 + c3*I_L3| <= limit_a over a node's phase phasors.

    Models what a per-phase limit cannot, e.g. the primary side of a delta-wye transformer:
    primary A = 0.25 * (I_L1 - I_L3) of the secondary line currents.
    """

    name: str
    coefficients: tuple[float, float, float]
    limit_a: float


@dataclass(frozen=True)
class Node:
    """A point of the electrical tree that has limits: grid connection, transformer, panel, charger.

    ``phase_limit_a`` bounds the magnitude of each phase's phasor current of everything below;
    ``power_limit_kw`` bounds the summed power (``voltage_v`` is the line-to-neutral voltage used to
    turn a kW reduction into context for A-only nodes).
    """

    id: str
    parent: str | None = None
    phase_limit_a: tuple[float, float, float] | None = None
    power_limit_kw: float | None = None
    phasor_limits: tuple[PhasorLimit, ...] = ()
    voltage_v: float = 230.0


@dataclass(frozen=True)
class Connector:
    """One outlet a car plugs into; always hangs below a node (its charger).

    A current is either 0 or in [min_current_a, max_current_a] on the grid
    ``min + k*current_step_a`` (step 0 = any value), unless ``allowed_currents_a`` lists the only
    values it takes.
    ``phase_rotation`` says which site phase each of the connector's phases lands on; for DELTA
    wiring the single branch runs between the first two (``L1L2L3`` = L1-L2) at
    ``phase_angle_deg`` (default: the standard angle of that branch).
    """

    id: str
    node: str
    max_current_a: float
    min_current_a: float = 6.0
    current_step_a: float = 0.1
    allowed_currents_a: tuple[float, ...] = ()
    phases: int = 3
    phase_rotation: str = "L1L2L3"
    wiring: Wiring = Wiring.WYE
    voltage_v: float = 230.0
    phase_angle_deg: float | None = None


@dataclass(frozen=True)
class Site:
    id: str
    nodes: tuple[Node, ...]
    connectors: tuple[Connector, ...]


@dataclass(frozen=True)
class Session:
    """A car plugged into a connector, with what its driver asked for."""

    id: str
    connector: str
    arrival: datetime
    departure: datetime
    energy_requested_kwh: float
    energy_delivered_kwh: float = 0.0
    vehicle_max_current_a: float | None = None
    vehicle_min_current_a: float | None = None
    vehicle_max_power_kw: float | None = None
    vehicle_phases: int | None = None
    priority: float = 1.0
    measured_current_a: float | None = None


@dataclass(frozen=True)
class CapacityLimit:
    """A time-bounded import limit on a node (capacity envelope / forecast)."""

    node: str
    start: datetime
    end: datetime
    limit_kw: float | None = None
    phase_limit_a: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class TimeValue:
    """A value holding over [start, end): a price per kWh or a carbon intensity in g/kWh."""

    start: datetime
    end: datetime
    value: float


@dataclass(frozen=True)
class CurtailmentEvent:
    """A grid operator's demand-response event on a node.

    Either an absolute import limit (``limit_kw``) or a reduction (``reduction_kw``) of the node's
    baseline capacity. The service keeps one event per ``id``: a higher ``modification``
    supersedes a lower one; within one request ids are unique.
    """

    id: str
    node: str
    start: datetime
    end: datetime
    limit_kw: float | None = None
    reduction_kw: float | None = None
    modification: int = 0


@dataclass(frozen=True)
class Signals:
    capacity: tuple[CapacityLimit, ...] = ()
    prices: tuple[TimeValue, ...] = ()
    carbon: tuple[TimeValue, ...] = ()
    events: tuple[CurtailmentEvent, ...] = ()


@dataclass(frozen=True)
class Options:
    """How to plan. Weights are relative; energy delivery always dominates cost and carbon."""

    slot_minutes: int = 15
    horizon_hours: float = 24.0
    mode: Mode = Mode.AUTO
    time_limit_s: float = 5.0
    cost_weight: float = 1.0
    carbon_weight: float = 0.0
    phasor_polygon_sides: int = 24


@dataclass(frozen=True)
class Problem:
    site: Site
    sessions: tuple[Session, ...]
    now: datetime
    signals: Signals = field(default_factory=Signals)
    options: Options = field(default_factory=Options)

    @property
    def horizon_end(self) -> datetime:
        return self.now + timedelta(hours=self.options.horizon_hours)


# --- derived electrical facts, shared by the compiler and documented for users -----------------


def used_phases(connector: Connector, session: Session | None) -> int:
    """Phases a car really draws on: the fewer of the connector's and the vehicle's."""
    if connector.wiring is Wiring.DELTA:
        return 1
    if session is not None and session.vehicle_phases is not None:
        return min(connector.phases, session.vehicle_phases)
    return connector.phases


def phase_coefficients(connector: Connector, session: Session | None) -> tuple[complex, ...]:
    """Phasor current on site phases L1..L3 per ampere of connector current."""
    rot = [PHASES.index(connector.phase_rotation[k : k + 2]) for k in (0, 2, 4)]
    coef = [0j, 0j, 0j]
    if connector.wiring is Wiring.DELTA:
        a, b = rot[0], rot[1]
        if connector.phase_angle_deg is not None:
            angle = connector.phase_angle_deg
        elif (a, b) in BRANCH_ANGLE_DEG:
            angle = BRANCH_ANGLE_DEG[(a, b)]
        else:
            angle = BRANCH_ANGLE_DEG[(b, a)] + 180.0
        phasor = cmath.rect(1.0, math.radians(angle))
        coef[a] += phasor
        coef[b] -= phasor
    else:
        for k in range(used_phases(connector, session)):
            coef[rot[k]] += cmath.rect(1.0, math.radians(PHASE_ANGLE_DEG[rot[k]]))
    return tuple(coef)


def kw_per_amp(connector: Connector, session: Session | None) -> float:
    """Power drawn per ampere of connector current, in kW."""
    if connector.wiring is Wiring.DELTA:
        return connector.voltage_v / 1000.0
    return connector.voltage_v * used_phases(connector, session) / 1000.0
