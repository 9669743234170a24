"""OCPP 2.0.1 ``SetChargingProfileRequest`` payloads from a core ``Schedule``.

2.0.1 specifics: the target is ``evseId`` (0 = whole station, for the max profile), the profile
holds a *list* of schedules (we send one, with ``id`` = the profile id), ``transactionId`` is a
string (at most 36 characters), ``phaseToUse`` exists (only with ``numberPhases`` 1 on an EVSE
that can switch phases), and limits still carry at most one decimal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .capabilities import ProfileKind
from .schedule import Schedule, rfc3339

__all__ = ["ACTION", "VERSION", "profile_schedule", "purpose_name", "set_charging_profile"]

VERSION = "2.0.1"
ACTION = "SetChargingProfile"

_PURPOSE = {
    ProfileKind.TX: "TxProfile",
    ProfileKind.TX_DEFAULT: "TxDefaultProfile",
    ProfileKind.FAILSAFE: "TxDefaultProfile",
    ProfileKind.STATION_MAX: "ChargingStationMaxProfile",
}


def purpose_name(kind: ProfileKind) -> str:
    return _PURPOSE[kind]


def wire_transaction_id(value: str | int) -> str:
    text = str(value)
    if not 0 < len(text) <= 36:
        raise ValueError(f"OCPP 2.x transactionId must have 1-36 characters, got {text!r}")
    return text


def schedule_dict(s: Schedule, schedule_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {"id": schedule_id, "startSchedule": rfc3339(s.start)}
    if s.duration_s is not None:
        out["duration"] = s.duration_s
    out["chargingRateUnit"] = str(s.unit)
    periods = []
    for p in s.periods:
        d: dict[str, Any] = {"startPeriod": p.start_s, "limit": p.limit}
        if p.number_phases is not None:
            d["numberPhases"] = p.number_phases
        if p.phase_to_use is not None:
            if p.number_phases != 1:
                raise ValueError("phaseToUse only goes with numberPhases 1")
            d["phaseToUse"] = p.phase_to_use
        periods.append(d)
    out["chargingSchedulePeriod"] = periods
    return out


def profile_dict(
    schedule: Schedule,
    *,
    kind: ProfileKind,
    evse_id: int,
    profile_id: int,
    stack_level: int,
    transaction_id: str | int | None,
    valid_from: datetime | None,
    valid_to: datetime | None,
) -> dict[str, Any]:
    if (kind is ProfileKind.TX) != (transaction_id is not None):
        raise ValueError("a transactionId goes with a TxProfile and only with it")
    if kind is ProfileKind.STATION_MAX and evse_id != 0:
        raise ValueError("ChargingStationMaxProfile is set on evseId 0")
    if kind is ProfileKind.TX and evse_id == 0:
        raise ValueError("a TxProfile needs the EVSE of its transaction, not evseId 0")
    prof: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose_name(kind),
        "chargingProfileKind": "Absolute",
    }
    if valid_from is not None:
        prof["validFrom"] = rfc3339(valid_from)
    if valid_to is not None:
        prof["validTo"] = rfc3339(valid_to)
    if transaction_id is not None:
        prof["transactionId"] = wire_transaction_id(transaction_id)
    prof["chargingSchedule"] = [schedule_dict(schedule, profile_id)]
    return prof


def set_charging_profile(
    schedule: Schedule,
    *,
    kind: ProfileKind,
    evse_id: int,
    profile_id: int,
    stack_level: int,
    transaction_id: str | int | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
) -> dict[str, Any]:
    """The request payload; ``transaction_id`` only (and always) for a TxProfile."""
    return {
        "evseId": evse_id,
        "chargingProfile": profile_dict(
            schedule,
            kind=kind,
            evse_id=evse_id,
            profile_id=profile_id,
            stack_level=stack_level,
            transaction_id=transaction_id,
            valid_from=valid_from,
            valid_to=valid_to,
        ),
    }


def profile_schedule(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile, first schedule) of a payload, for reading it back."""
    prof = payload["chargingProfile"]
    return prof, prof["chargingSchedule"][0]
