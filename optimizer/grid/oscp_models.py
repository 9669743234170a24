"""OSCP 2.0 messages the Flexibility Provider receives, as strict pydantic models, and the one
mapping of a capacity forecast onto a :class:`~optimizer.core.grid_signal.GridSignal`.

Field names and enumerations are the OSCP 2.0 ones (``UpdateGroupCapacityForecast``:
``group_id``, ``type``, ``forecasted_blocks``; ``ForecastedBlock``: ``capacity``, ``phase``,
``unit``, ``start_time``, ``end_time``; ``Heartbeat.offline_mode_at``;
``Handshake.required_behaviour``), as the OSCP 2.0 JSON schemas are reproduced by public
implementations (pyoscp, SolarNetwork's generated ``oscp.v20`` classes, the Stainless
``oscp-sdk``). The forecast types are ``CONSUMPTION``, ``GENERATION``, ``FALLBACK_CONSUMPTION``,
``FALLBACK_GENERATION`` and ``OPTIMUM``.

Mapping (one forecast maps onto one measure; mixing kinds is refused):

=============================================  ===============================================
ForecastedBlock                                GridSignal
=============================================  ===============================================
unit ``A``, phase ``ONE``/``TWO``/``THREE``    ``PHASE_LIMIT_A`` on L1/L2/L3
unit ``A``, phase ``ALL`` or ``UNKNOWN``       ``PHASE_LIMIT_A`` on all three phases
unit ``KW`` / ``W`` (/1000), ``ALL``/``UNKNOWN``  ``LIMIT_KW``
unit ``KW`` / ``W``, one phase                 ``PHASE_LIMIT_A`` on that phase: W / the node's
                                               line-to-neutral voltage
unit ``KWH`` / ``WH``                          as ``KW``/``W`` of the block's mean power
                                               (energy / block length): a budget that cannot
                                               be shifted inside the block (conservative)
blocks of one [start, end) window              merged: the lowest value, on every phase named
                                               in the forecast (conservative: the core's
                                               per-phase signal carries one value an interval)
=============================================  ===============================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from ..core.grid_signal import MAX_A, MAX_INTERVALS, MAX_KW, MAX_SPAN, GridSignal, Measure
from ..core.grid_signal import SignalInterval as Interval
from ..core.model import Node
from ..core.validate import FieldViolation

SOURCE = "oscp"
PHASES: dict[str, tuple[int, ...]] = {"ONE": (0,), "TWO": (1,), "THREE": (2,),
                                      "ALL": (0, 1, 2), "UNKNOWN": (0, 1, 2)}
UNITS = ("A", "W", "KW", "WH", "KWH")
FORECAST_TYPES = ("CONSUMPTION", "GENERATION", "FALLBACK_CONSUMPTION", "FALLBACK_GENERATION",
                  "OPTIMUM")
MEASUREMENT_CONFIGURATIONS = ("CONTINUOUS", "INTERMITTENT")
#: A week of 5-minute blocks; more is not a forecast but an attack.
MAX_BLOCKS = 2016


def _enum(name: str, allowed: Sequence[str]) -> AfterValidator:
    def check(v: str) -> str:
        if v not in allowed:
            raise ValueError(f"unknown {name} {v[:40]!r} (one of {', '.join(allowed)})")
        return v

    return AfterValidator(check)


def parse_time(v: object) -> object:
    """RFC 3339 with an explicit zone (OSCP 2.0 datatypes), as an aware UTC datetime."""
    if not isinstance(v, str):
        return v  # strict validation names the wrong type
    if "T" not in v.upper() or len(v) > 64:
        raise ValueError(f"not an RFC 3339 date-time: {v[:40]!r}")
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"not an RFC 3339 date-time: {v[:40]!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"date-time without a time zone: {v[:40]!r}")
    return dt.astimezone(UTC)


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v!r}")
    if v < 0:
        raise ValueError(f"must not be negative, got {v:g}")
    return v


Time = Annotated[datetime, BeforeValidator(parse_time)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ForecastedBlock(_Model):
    capacity: Annotated[float, AfterValidator(_finite)]
    phase: Annotated[str, _enum("phase", tuple(PHASES))]
    unit: Annotated[str, _enum("unit", UNITS)]
    start_time: Time
    end_time: Time


class UpdateGroupCapacityForecast(_Model):
    group_id: Text
    type: Annotated[str, _enum("type", FORECAST_TYPES)]
    forecasted_blocks: Annotated[list[ForecastedBlock], Field(min_length=1,
                                                              max_length=MAX_BLOCKS)]


class RequiredBehaviour(_Model):
    heartbeat_interval: Annotated[float, Field(ge=1)] | None = None
    measurement_configuration: Annotated[
        list[Annotated[str, _enum("measurement configuration", MEASUREMENT_CONFIGURATIONS)]],
        Field(max_length=2)] = []


class Handshake(_Model):
    required_behaviour: RequiredBehaviour


class Heartbeat(_Model):
    offline_mode_at: Time


def violations_of(exc: ValidationError) -> list[FieldViolation]:
    """``forecasted_blocks[3].unit: unknown unit 'MW' (...)``, one per path."""
    seen: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        path = ""
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not part.startswith(("function-", "list[")):
                path += f".{part}" if path else part
        msg = str(err["msg"]).removeprefix("Value error, ")
        seen.setdefault(path or "(body)", msg)
    return [FieldViolation(p, m) for p, m in seen.items()]


# --- forecast -> signal ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A block as the mapping needs it (also the shape re-anchored fallback copies take)."""

    index: int  # position in forecasted_blocks, for error paths
    start: datetime
    end: datetime
    capacity: float
    unit: str
    phase: str


def blocks_of(fc: UpdateGroupCapacityForecast) -> list[Block]:
    return [Block(k, b.start_time, b.end_time, b.capacity, b.unit, b.phase)
            for k, b in enumerate(fc.forecasted_blocks)]


def forecast_signal(blocks: Sequence[Block], node: Node, signal_id: str
                    ) -> tuple[GridSignal | None, list[FieldViolation]]:
    """One GridSignal for a forecast's blocks on ``node`` (see the module's table)."""
    bad: list[FieldViolation] = []
    kinds: list[tuple[Block, Measure, float, tuple[int, ...]]] = []
    for b in blocks:
        p = f"forecasted_blocks[{b.index}]"
        if not b.end > b.start:
            bad.append(FieldViolation(f"{p}.end_time", "must be after start_time"))
            continue
        if b.end - b.start > MAX_SPAN:
            bad.append(FieldViolation(f"{p}.end_time",
                                      f"a block may span at most {MAX_SPAN.days} days"))
            continue
        hours = (b.end - b.start).total_seconds() / 3600
        if b.unit == "A":
            measure, value, phases = Measure.PHASE_LIMIT_A, b.capacity, PHASES[b.phase]
        else:
            kw = {"W": 1e-3, "KW": 1.0, "WH": 1e-3 / hours, "KWH": 1.0 / hours}[b.unit] \
                * b.capacity
            if b.phase in ("ALL", "UNKNOWN"):
                measure, value, phases = Measure.LIMIT_KW, kw, (0, 1, 2)
            else:
                measure, value = Measure.PHASE_LIMIT_A, kw * 1000 / node.voltage_v
                phases = PHASES[b.phase]
        hi = MAX_A if measure is Measure.PHASE_LIMIT_A else MAX_KW
        if value > hi:
            bad.append(FieldViolation(f"{p}.capacity", f"{b.capacity:g} {b.unit} is beyond "
                                                       f"any grid connection"))
            continue
        kinds.append((b, measure, value, phases))
    if bad:
        return None, bad
    measure = kinds[0][1]
    for b, m, _, _ in kinds:
        if m is not measure:
            first = kinds[0][0]
            bad.append(FieldViolation(
                f"forecasted_blocks[{b.index}].unit",
                f"{b.unit!r} on {b.phase} mixes per-phase current and total power with "
                f"forecasted_blocks[{first.index}] ({first.unit!r} on {first.phase}); one "
                f"forecast must be one kind"))
            return None, bad
    windows: dict[tuple[datetime, datetime], list[tuple[Block, float, tuple[int, ...]]]] = {}
    for b, _, value, phases in kinds:
        windows.setdefault((b.start, b.end), []).append((b, value, phases))
    order = sorted(windows)
    reach: tuple[datetime, Block] | None = None  # the latest end so far and its block
    for s, e in order:
        first = windows[(s, e)][0][0]
        if reach is not None and s < reach[0]:
            bad.append(FieldViolation(f"forecasted_blocks[{first.index}].start_time",
                                      f"overlaps forecasted_blocks[{reach[1].index}]"))
        if reach is None or e > reach[0]:
            reach = (e, first)
    if len(order) > MAX_INTERVALS:
        bad.append(FieldViolation("forecasted_blocks",
                                  f"{len(order)} time windows; at most {MAX_INTERVALS}"))
    if bad:
        return None, bad
    union = tuple(sorted({p for _, _, ph in (x for w in windows.values() for x in w)
                          for p in ph}))
    ivs = tuple(Interval(s, e, min(v for _, v, _ in windows[(s, e)])) for s, e in order)
    return GridSignal(SOURCE, signal_id, 0, node.id, measure, ivs, phases=union), []


def reanchor(blocks: Sequence[Block], now: datetime, horizon: timedelta) -> list[Block]:
    """Fallback blocks repeated with their own period so that they cover [now, now + horizon).

    The period is the pattern's span (first start to last end); copies are shifted by whole
    periods, so a pattern of one day keeps each block's time of day. Copies that ended before
    ``now`` are dropped; at most :data:`MAX_INTERVALS` blocks come back.
    """
    t0 = min(b.start for b in blocks)
    t1 = max(b.end for b in blocks)
    period = t1 - t0
    k = math.floor((now - t0) / period)
    out: list[Block] = []
    shift = k * period
    while t0 + shift < now + horizon and len(out) < MAX_INTERVALS:
        for b in blocks:
            s, e = b.start + shift, b.end + shift
            if e > now and s < now + horizon:
                out.append(Block(b.index, s, e, b.capacity, b.unit, b.phase))
        shift += period
    return out[:MAX_INTERVALS]
