"""OCPP 1.6J ``SetChargingProfile`` payloads from a core ``Schedule``.

1.6 specifics: the target is ``connectorId`` (0 = whole charge point, for the max profile),
``transactionId`` is an integer, ``limit`` and ``minChargingRate`` are multiples of 0.1 (the
schema says so; chargers reject 16.25), and there is no ``phaseToUse``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .capabilities import ProfileKind
from .schedule import Schedule, rfc3339

__all__ = ["ACTION", "VERSION", "profile_schedule", "purpose_name", "set_charging_profile"]

VERSION = "1.6"
ACTION = "SetChargingProfile"

_PURPOSE = {
    ProfileKind.TX: "TxProfile",
    ProfileKind.TX_DEFAULT: "TxDefaultProfile",
    ProfileKind.FAILSAFE: "TxDefaultProfile",
    ProfileKind.STATION_MAX: "ChargePointMaxProfile",
}


def purpose_name(kind: ProfileKind) -> str:
    return _PURPOSE[kind]


def wire_transaction_id(value: str | int) -> int:
    """1.6 transaction ids are integers; the CSMS hands them to us as text."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"OCPP 1.6 transactionId must be an integer, got {value!r}") from None


def _schedule(s: Schedule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.duration_s is not None:
        out["duration"] = s.duration_s
    out["startSchedule"] = rfc3339(s.start)
    out["chargingRateUnit"] = str(s.unit)
    periods = []
    for p in s.periods:
        d: dict[str, Any] = {"startPeriod": p.start_s, "limit": p.limit}
        if p.number_phases is not None:
            d["numberPhases"] = p.number_phases
        periods.append(d)
    out["chargingSchedulePeriod"] = periods
    return out


def set_charging_profile(
    schedule: Schedule,
    *,
    kind: ProfileKind,
    connector_id: int,
    profile_id: int,
    stack_level: int,
    transaction_id: str | int | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> dict[str, Any]:
    """The request payload; ``transaction_id`` only (and always) for a TxProfile."""
    if (kind is ProfileKind.TX) != (transaction_id is not None):
        raise ValueError("a transactionId goes with a TxProfile and only with it")
    if kind is ProfileKind.STATION_MAX and connector_id != 0:
        raise ValueError("ChargePointMaxProfile is set on connectorId 0")
    prof: dict[str, Any] = {"chargingProfileId": profile_id}
    if transaction_id is not None:
        prof["transactionId"] = wire_transaction_id(transaction_id)
    prof["stackLevel"] = stack_level
    prof["chargingProfilePurpose"] = purpose_name(kind)
    prof["chargingProfileKind"] = "Absolute"
    if valid_from is not None:
        prof["validFrom"] = rfc3339(valid_from)
    if valid_to is not None:
        prof["validTo"] = rfc3339(valid_to)
    prof["chargingSchedule"] = _schedule(schedule)
    return {"connectorId": connector_id, "csChargingProfiles": prof}


def profile_schedule(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile, schedule) of a payload, for reading it back."""
    prof = payload["csChargingProfiles"]
    return prof, prof["chargingSchedule"]
