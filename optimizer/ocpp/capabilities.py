"""What one charger (connector / EVSE) accepts, as stated by the caller.

Nothing here is discovered over the wire: the CSMS knows each charger's OCPP version and its
configuration keys (1.6 ``ChargingScheduleMaxPeriods``, ``ChargingScheduleAllowedChargingRateUnit``;
2.x ``SmartChargingCtrlr.PeriodsPerSchedule``, ``RateUnit``, ``ACPhaseSwitchingSupported``) and
passes them in, so rendering stays a pure function of (problem, plan, capabilities).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KIND_OFFSET",
    "VERSIONS",
    "ChargerCapabilities",
    "ProfileKind",
    "RateUnit",
    "resolution_tenths",
]

#: OCPP versions rendered here, spelled as ``ocpp.messages.get_validator`` wants them.
VERSIONS = ("1.6", "2.0.1", "2.1")


class RateUnit(StrEnum):
    AMPS = "A"
    WATTS = "W"


class ProfileKind(StrEnum):
    """What a rendered profile is for; each version maps it to its purpose name."""

    TX = "TxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    FAILSAFE = "failsafe"  # a TxDefaultProfile on its own, lower stack level
    STATION_MAX = "StationMaxProfile"  # ChargePointMaxProfile (1.6) / ChargingStationMaxProfile


#: Profile id = ``profile_id_base + 10 * connector_or_evse_id + KIND_OFFSET[kind]``. Stable ids
#: matter: re-sending an id *replaces* that profile (1.6, 2.x K01.FR.05), whereas a second
#: TxProfile with a new id on the same stack level is rejected (2.x K01.FR.06).
KIND_OFFSET = {
    ProfileKind.FAILSAFE: 1,
    ProfileKind.TX_DEFAULT: 2,
    ProfileKind.TX: 3,
    ProfileKind.STATION_MAX: 4,
}


def resolution_tenths(step: float) -> int:
    """A limit step as an integer number of 0.1 units; OCPP limits carry at most one decimal."""
    tenths = round(step * 10)
    if not math.isfinite(step) or tenths < 1 or abs(step * 10 - tenths) > 1e-6:
        raise ValueError(f"limit_resolution {step!r} must be a positive multiple of 0.1")
    return tenths


@dataclass(frozen=True)
class ChargerCapabilities:
    """One connector's charger as the CSMS configured it.

    ``limit_resolution`` and ``min_limit`` are in ``rate_unit``. ``min_limit`` is the smallest
    non-zero limit the charger accepts (planned values below it are lowered to 0, never raised).
    ``zero_limit_ok=False`` marks chargers that reject a limit of 0: the renderer keeps 0 anyway
    (raising it would allow more than the plan) and warns, so the CSMS must pause such a charger
    by other means (1.6 ``RemoteStopTransaction`` / ``ChangeAvailability``, 2.x
    ``RequestStopTransaction``).

    ``station_id`` groups connectors into one charging station for station max profiles
    (default: the connector's node in the site tree). ``max_offline_duration_s`` and
    ``invalid_after_offline`` go on 2.1 plan profiles so that a charger cut off from its CSMS
    falls back to the fail-safe TxDefaultProfile (lower stack level) after that many seconds.
    """

    ocpp_version: str = "2.0.1"
    rate_unit: RateUnit = RateUnit.AMPS
    max_periods: int = 24
    limit_resolution: float = 0.1
    min_limit: float = 0.0
    zero_limit_ok: bool = True
    supports_phase_switching: bool = False
    evse_id: int = 1
    connector_id: int = 1
    station_id: str | None = None
    profile_id_base: int = 1000
    stack_level_failsafe: int = 0
    stack_level_tx_default: int = 1
    stack_level_tx: int = 1
    stack_level_station_max: int = 1
    max_offline_duration_s: int | None = 300
    invalid_after_offline: bool | None = True

    def __post_init__(self) -> None:
        if self.ocpp_version not in VERSIONS:
            raise ValueError(f"ocpp_version {self.ocpp_version!r} not one of {VERSIONS}")
        object.__setattr__(self, "rate_unit", RateUnit(self.rate_unit))
        resolution_tenths(self.limit_resolution)
        if self.max_periods < 1:
            raise ValueError("max_periods must be at least 1")
        if not (math.isfinite(self.min_limit) and self.min_limit >= 0):
            raise ValueError("min_limit must be finite and >= 0")
        if self.evse_id < 1 or self.connector_id < 1:
            raise ValueError("evse_id and connector_id start at 1 (0 is the whole station)")
        levels = (
            self.stack_level_failsafe,
            self.stack_level_tx_default,
            self.stack_level_tx,
            self.stack_level_station_max,
        )
        if min(levels) < 0:
            raise ValueError("stack levels start at 0")
        if self.stack_level_tx_default <= self.stack_level_failsafe:
            # Same purpose on the same level would replace (1.6) or clash with (2.x) the
            # fail-safe; above it, an expired plan profile reveals the fail-safe underneath.
            raise ValueError("stack_level_tx_default must be above stack_level_failsafe")
        if self.max_offline_duration_s is not None and self.max_offline_duration_s < 0:
            raise ValueError("max_offline_duration_s must be >= 0")

    @property
    def resolution_tenths(self) -> int:
        return resolution_tenths(self.limit_resolution)

    @property
    def min_limit_tenths(self) -> int:
        """``min_limit`` in 0.1 units, rounded up: a value below the true minimum stays below."""
        return math.ceil(self.min_limit * 10 - 1e-9)

    def profile_id(self, kind: ProfileKind) -> int:
        slot = (
            0
            if kind is ProfileKind.STATION_MAX
            else (self.connector_id if self.ocpp_version == "1.6" else self.evse_id)
        )
        return self.profile_id_base + 10 * slot + KIND_OFFSET[kind]

    def stack_level(self, kind: ProfileKind) -> int:
        return {
            ProfileKind.FAILSAFE: self.stack_level_failsafe,
            ProfileKind.TX_DEFAULT: self.stack_level_tx_default,
            ProfileKind.TX: self.stack_level_tx,
            ProfileKind.STATION_MAX: self.stack_level_station_max,
        }[kind]
