"""Is a SetChargingProfile payload acceptable? The JSON schema plus the rules chargers enforce.

The schema check uses the ``ocpp`` package's own validators (imported lazily, so the rendering
core does not need it). For 1.6 it parses numbers as ``Decimal`` as ``ocpp`` does when it sends:
with floats, ``multipleOf 0.1`` rejects 16.2 (16.2 / 0.1 = 161.99999999999997).
"""

from __future__ import annotations

import decimal
import itertools
import json
from datetime import datetime
from typing import Any

from .capabilities import VERSIONS

__all__ = ["payload_errors", "schema_errors"]

_ACTION = "SetChargingProfile"


def _validator_16() -> Any:
    from ocpp.messages import get_validator

    v = get_validator(2, _ACTION, "1.6", parse_float=decimal.Decimal)
    mult = v.schema["properties"]["csChargingProfiles"]["properties"]["chargingSchedule"][
        "properties"
    ]["chargingSchedulePeriod"]["items"]["properties"]["limit"]["multipleOf"]
    if isinstance(mult, decimal.Decimal):
        return v
    # ocpp caches validators by name only; someone asked first with floats. Build our own.
    from pathlib import Path

    import ocpp
    from jsonschema import Draft4Validator

    path = Path(ocpp.__file__).parent / "v16" / "schemas" / f"{_ACTION}.json"
    return Draft4Validator(
        json.loads(path.read_text(encoding="utf-8-sig"), parse_float=decimal.Decimal)
    )


def schema_errors(payload: dict[str, Any], version: str) -> list[str]:
    """Schema violations of a request payload, as messages with their JSON path."""
    if version not in VERSIONS:
        raise ValueError(f"unknown OCPP version {version!r}")
    if version == "1.6":
        validator = _validator_16()
        doc = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    else:
        from ocpp.messages import get_validator

        validator = get_validator(2, _ACTION, version)
        doc = json.loads(json.dumps(payload))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def _one_decimal(x: Any) -> bool:
    """At most one digit after the point, judged on the shortest repr (what JSON carries)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    if isinstance(x, int):
        return True
    exponent = decimal.Decimal(repr(x)).as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -1


def payload_errors(
    payload: dict[str, Any], version: str, *, max_periods: int | None = None
) -> list[str]:
    """Schema errors plus what the schemas miss (first startPeriod 0 and increasing,
    startSchedule for Absolute only, at most one decimal, period count, phaseToUse only with
    numberPhases 1, transactionId only on a TxProfile, the right connector / EVSE for the purpose).
    """
    errs = schema_errors(payload, version)
    if errs:
        return errs
    if version == "1.6":
        target, prof = payload["connectorId"], payload["csChargingProfiles"]
        schedules = [prof["chargingSchedule"]]
        station_purpose = "ChargePointMaxProfile"
    else:
        target, prof = payload["evseId"], payload["chargingProfile"]
        schedules = prof["chargingSchedule"]
        station_purpose = "ChargingStationMaxProfile"
    purpose, kind = prof["chargingProfilePurpose"], prof["chargingProfileKind"]
    if ("transactionId" in prof) != (purpose == "TxProfile"):
        errs.append("transactionId must be present on a TxProfile and only there")
    if purpose == "TxProfile" and target == 0:
        errs.append("a TxProfile cannot target connector / EVSE 0")
    if purpose == station_purpose and target != 0:
        errs.append(f"{station_purpose} must target connector / EVSE 0")
    if (
        "validFrom" in prof
        and "validTo" in prof
        and _time(prof["validFrom"]) >= _time(prof["validTo"])
    ):
        errs.append("validFrom must precede validTo")
    for k, sch in enumerate(schedules):
        where = f"chargingSchedule[{k}]"
        if kind in ("Absolute", "Recurring") and "startSchedule" not in sch:
            errs.append(f"{where}: {kind} needs startSchedule")
        if kind == "Relative" and "startSchedule" in sch:
            errs.append(f"{where}: Relative must not have startSchedule")
        if "duration" in sch and sch["duration"] <= 0:
            errs.append(f"{where}: duration must be positive")
        periods = sch["chargingSchedulePeriod"]
        if max_periods is not None and len(periods) > max_periods:
            errs.append(f"{where}: {len(periods)} periods, charger takes {max_periods}")
        starts = [p["startPeriod"] for p in periods]
        if starts[0] != 0:
            errs.append(f"{where}: first startPeriod must be 0")
        if any(b <= a for a, b in itertools.pairwise(starts)):
            errs.append(f"{where}: startPeriod must increase strictly")
        if "duration" in sch and starts[-1] >= sch["duration"]:
            errs.append(f"{where}: a period starts after the schedule ends")
        for j, p in enumerate(periods):
            lim = p.get("limit")
            if lim is not None and (lim < 0 or not _one_decimal(lim)):
                errs.append(
                    f"{where}.period[{j}]: limit {lim!r} is negative or has more than one decimal"
                )
            if "phaseToUse" in p and p.get("numberPhases") != 1:
                errs.append(f"{where}.period[{j}]: phaseToUse only with numberPhases 1")
            if "numberPhases" in p and not 1 <= p["numberPhases"] <= 3:
                errs.append(f"{where}.period[{j}]: numberPhases must be 1-3")
            if "phaseToUse" in p and not 1 <= p["phaseToUse"] <= 3:
                errs.append(f"{where}.period[{j}]: phaseToUse must be 1-3")
    return errs


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
