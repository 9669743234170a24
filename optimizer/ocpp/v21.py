"""OCPP 2.1 ``SetChargingProfileRequest`` payloads: the 2.0.1 shape plus the offline fields.

``maxOfflineDuration`` (s) and ``invalidAfterOfflineDuration`` say how long a profile stays valid
once the station has lost its CSMS; after that the station "reverts back to a valid profile with
a lower stack level". So they go on every *plan* profile (TxProfile, TxDefaultProfile and
station max from a plan), which then give way to the fail-safe TxDefaultProfile on the lowest
level. The fail-safe
itself carries neither field: absent means it stays valid while offline, which is its point.
Everything else 2.1 adds (``limit_L2/L3``, ``dischargeLimit``, ``setpoint``, ``operationMode``,
``Dynamic`` profiles) is optional and not used: ``operationMode`` absent means ``ChargingOnly``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from . import v201
from .capabilities import ProfileKind
from .schedule import Schedule

__all__ = ["ACTION", "VERSION", "profile_schedule", "purpose_name", "set_charging_profile"]

VERSION = "2.1"
ACTION = "SetChargingProfile"
purpose_name = v201.purpose_name
profile_schedule = v201.profile_schedule
wire_transaction_id = v201.wire_transaction_id


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
    max_offline_duration_s: int | None = None,
    invalid_after_offline: bool | None = None,
) -> dict[str, Any]:
    """The request payload; offline fields only when given (see the module docstring)."""
    prof = v201.profile_dict(
        schedule,
        kind=kind,
        evse_id=evse_id,
        profile_id=profile_id,
        stack_level=stack_level,
        transaction_id=transaction_id,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    if max_offline_duration_s is not None:
        prof["maxOfflineDuration"] = int(max_offline_duration_s)
        if invalid_after_offline is not None:
            prof["invalidAfterOfflineDuration"] = bool(invalid_after_offline)
    return {"evseId": evse_id, "chargingProfile": prof}
