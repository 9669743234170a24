"""Independent readers and checks for rendered payloads (no code shared with optimizer.ocpp)."""

from __future__ import annotations

import decimal
import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from ocpp.messages import get_validator

ACTION = "SetChargingProfile"


def schema_errors(payload: dict[str, Any], version: str) -> list[str]:
    """The ocpp package's validator; 1.6 parses numbers as Decimal, as ocpp itself does when it
    sends (with floats ``multipleOf 0.1`` rejects 16.2)."""
    if version == "1.6":
        validator = get_validator(2, ACTION, version, parse_float=decimal.Decimal)
        limit_schema = validator.schema["properties"]["csChargingProfiles"]["properties"][
            "chargingSchedule"
        ]["properties"]["chargingSchedulePeriod"]["items"]["properties"]["limit"]
        assert isinstance(limit_schema["multipleOf"], decimal.Decimal), "float-cached validator"
        doc = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    else:
        validator = get_validator(2, ACTION, version)
        doc = json.loads(json.dumps(payload))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def parts(payload: dict[str, Any], version: str) -> tuple[int, dict[str, Any], list[dict]]:
    if version == "1.6":
        prof = payload["csChargingProfiles"]
        return payload["connectorId"], prof, [prof["chargingSchedule"]]
    prof = payload["chargingProfile"]
    return payload["evseId"], prof, prof["chargingSchedule"]


def rule_errors(payload: dict[str, Any], version: str, max_periods: int) -> list[str]:
    """What chargers enforce beyond the schema."""
    errs = []
    _, prof, schedules = parts(payload, version)
    if ("transactionId" in prof) != (prof["chargingProfilePurpose"] == "TxProfile"):
        errs.append("transactionId only (and always) on TxProfile")
    if version == "1.6" and "transactionId" in prof and not isinstance(prof["transactionId"], int):
        errs.append("1.6 transactionId is an int")
    if version != "1.6" and "transactionId" in prof and not isinstance(prof["transactionId"], str):
        errs.append("2.x transactionId is a string")
    for sch in schedules:
        if prof["chargingProfileKind"] == "Absolute" and "startSchedule" not in sch:
            errs.append("Absolute without startSchedule")
        if "startSchedule" in sch and not sch["startSchedule"].endswith("Z"):
            errs.append("startSchedule not UTC 'Z'")
        periods = sch["chargingSchedulePeriod"]
        starts = [p["startPeriod"] for p in periods]
        if starts[0] != 0:
            errs.append("first startPeriod not 0")
        if any(b <= a for a, b in itertools.pairwise(starts)):
            errs.append("startPeriod not increasing")
        if len(periods) > max_periods:
            errs.append(f"{len(periods)} periods > {max_periods}")
        for p in periods:
            if decimal.Decimal(repr(p["limit"])).as_tuple().exponent < -1:
                errs.append(f"limit {p['limit']!r} has more than one decimal")
            if p["limit"] < 0:
                errs.append("negative limit")
            if "phaseToUse" in p and p.get("numberPhases") != 1:
                errs.append("phaseToUse without numberPhases 1")
            if version == "1.6" and "phaseToUse" in p:
                errs.append("phaseToUse in 1.6")
    return errs


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def limit_at(payload: dict[str, Any], version: str, at: datetime) -> float | None:
    """What a charger applies from this one profile at ``at`` (None: nothing)."""
    _, prof, schedules = parts(payload, version)
    if "validFrom" in prof and at < parse(prof["validFrom"]):
        return None
    if "validTo" in prof and at >= parse(prof["validTo"]):
        return None
    sch = schedules[0]
    start = parse(sch["startSchedule"])
    if at < start:
        return None
    if "duration" in sch and at >= start + timedelta(seconds=sch["duration"]):
        return None
    value = None
    for p in sch["chargingSchedulePeriod"]:
        if start + timedelta(seconds=p["startPeriod"]) <= at:
            value = p["limit"]
    return value


def period_starts(payload: dict[str, Any], version: str) -> list[datetime]:
    _, _, schedules = parts(payload, version)
    start = parse(schedules[0]["startSchedule"])
    out = [
        start + timedelta(seconds=p["startPeriod"]) for p in schedules[0]["chargingSchedulePeriod"]
    ]
    if "duration" in schedules[0]:
        out.append(start + timedelta(seconds=schedules[0]["duration"]))
    return out
