"""A station's session state, and reading what it says: times, meter values, and what a
charging profile does from now on (so that only profiles that change something are sent)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ..ocpp import v16, v201

# --- reading OCPP payloads -----------------------------------------------------------------------


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(t: datetime) -> Timestamp:
    m = Timestamp()
    m.FromDatetime(t.astimezone(UTC).replace(tzinfo=None))
    return m


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Meter:
    """What one MeterValues list says: the energy register (Wh) and the highest phase current."""

    energy_wh: float | None = None
    current_a: float | None = None


def read_meter(meter_values: Sequence[dict[str, Any]] | None) -> Meter:
    """Latest energy register (Wh) and current (A) in a snake_cased OCPP 1.6 / 2.0.1 list of
    meter values (as the ``ocpp`` package hands them to handlers)."""
    energy: float | None = None
    current: float | None = None
    items = sorted(meter_values or (), key=lambda mv: str(mv.get("timestamp", "")))
    for mv in items:
        currents = []
        for sv in mv.get("sampled_value", ()):
            measurand = sv.get("measurand", "Energy.Active.Import.Register")
            try:
                value = float(sv["value"])
            except (KeyError, TypeError, ValueError):
                continue
            if "unit_of_measure" in sv:  # 2.0.1
                unit = sv["unit_of_measure"].get("unit", "Wh")
                value *= 10 ** int(sv["unit_of_measure"].get("multiplier", 0))
            else:
                unit = sv.get("unit", "Wh")
            if measurand == "Energy.Active.Import.Register" and not sv.get("phase"):
                energy = value * 1000 if unit == "kWh" else value
            elif measurand == "Current.Import":
                currents.append(value)
        if currents:
            current = max(currents)
    return Meter(energy, current)


def effective(payload: dict[str, Any], version: str, now: datetime) -> tuple[Any, ...]:
    """What a profile does from ``now`` on: two profiles with equal results limit the station
    the same way from now on (a re-plan that only moved the schedule start is no change)."""
    target = payload["connectorId"] if version == "1.6" else payload["evseId"]
    prof, sch = (v16 if version == "1.6" else v201).profile_schedule(payload)
    start = _parse_time(sch.get("startSchedule")) or now
    ends = []
    if "duration" in sch:
        ends.append(start + timedelta(seconds=sch["duration"]))
    if "validTo" in prof:
        ends.append(_parse_time(prof["validTo"]) or now)
    end = min(ends) if ends else None
    head = (
        target,
        prof.get("id", prof.get("chargingProfileId")),
        prof["stackLevel"],
        prof["chargingProfilePurpose"],
        prof["chargingProfileKind"],
        str(prof.get("transactionId", "")),
        sch["chargingRateUnit"],
        end if end is None or end > now else "expired",
        prof.get("validFrom"),
        prof.get("maxOfflineDuration"),
        prof.get("invalidAfterOfflineDuration"),
    )
    periods = sch["chargingSchedulePeriod"]
    steps: list[tuple[Any, ...]] = []
    for k, p in enumerate(periods):
        p_start = start + timedelta(seconds=p["startPeriod"])
        p_end = (
            start + timedelta(seconds=periods[k + 1]["startPeriod"])
            if k + 1 < len(periods)
            else end
        )
        if p_end is not None and p_end <= now:
            continue
        step = (float(p["limit"]), p.get("numberPhases"), p.get("phaseToUse"))
        if steps and steps[-1][1:] == step:
            continue
        steps.append((max(p_start, now), *step))
    return head + tuple(steps)


# --- state ---------------------------------------------------------------------------------------


@dataclass
class _Tx:
    """An active transaction of a station."""

    tx_id: str
    evse: int
    connector: str | None
    session: str
    meter_start_wh: float | None = None
    reported_kwh: float = 0.0  # energy delivered last sent to the optimizer
    departure: datetime | None = None  # the session's departure as last sent
    started: bool = False  # StartSession succeeded (or the session already existed)
    #: Picked up again after a restart of the bridge: its start register is unknown, so its
    #: energy is not reported (a new base would under-count what was delivered).
    resumed: bool = False


@dataclass
class _Station:
    """One charging station; survives its reconnects (not a restart of the bridge)."""

    id: str
    version: str
    cp: Any = None  # the live ChargePoint, None while disconnected
    ready: bool = False  # booted, or sent anything since it connected
    txs: dict[str, _Tx] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)  # transactions ended since the bridge started
    held: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    failed: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)  # rejected
    needs: dict[int, dict[str, Any]] = field(default_factory=dict)  # EVSE -> charging needs
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    work: asyncio.Queue[Callable[[], Awaitable[None]]] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
