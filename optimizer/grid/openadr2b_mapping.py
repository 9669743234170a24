"""OpenADR 2.0b events (as ``openleadr`` parses them) -> the core's :class:`GridSignal`.

Pure: no I/O, no ``openleadr`` import, so every hostile payload can be tested on plain dicts. The
mapping table and the policy live in the module docstring of :mod:`optimizer.grid.openadr2b`;
this module is its one implementation. Anything it cannot map raises :class:`Unmappable` with a
reason meant for the VTN's operator (it becomes the optOut's ``responseDescription``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..core.grid_signal import (
    MAX_INTERVALS,
    MAX_KW,
    MAX_SPAN,
    GridSignal,
    Measure,
    SignalInterval,
)

#: ``GridSignal.source``: event ``E`` interval ``k`` is stored as ``openadr2b:E#k``.
SOURCE = "openadr2b"

#: Default SIMPLE level -> share of the node's limit (level 0 = normal operation, no limit).
DEFAULT_SIMPLE_LEVELS: dict[int, float] = {1: 0.75, 2: 0.5, 3: 0.25}

SIMPLE_NAMES = ("SIMPLE", "simple")
LOAD_CONTROL = "LOAD_CONTROL"
CAPACITY = "x-loadControlCapacity"
SETPOINT = "x-loadControlSetpoint"
#: Signals that carry prices, not dispatch: ignored next to a load signal, never acted on.
PRICE_NAMES = ("ELECTRICITY_PRICE", "ENERGY_PRICE", "DEMAND_CHARGE")

#: siScaleCode -> factor (OpenADR 2.0b, EMIX siscale).
SI_SCALE = {"p": 1e-12, "n": 1e-9, "micro": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1,
            "none": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
#: itemUnits a setpoint may use, as W per unit (before the scale).
POWER_UNITS = {"W": 1.0, "kW": 1e3}
POWER_ITEMS = ("powerReal", "customUnit")


class Unmappable(Exception):
    """The event cannot be turned into a limit the site can promise to keep; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EventKey:
    """What identifies one version of an event."""

    event_id: str
    modification: int
    status: str
    test: bool


def parse_simple_levels(text: str | Mapping[Any, Any]) -> dict[int, float]:
    """``"1=0.75,2=0.5,3=0.25"`` (or a mapping) -> ``{1: 0.75, ...}``; ValueError says what's bad.

    Level 0 is always "no curtailment" and may not be remapped.
    """
    items: list[tuple[Any, Any]]
    if isinstance(text, str):
        items = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"simple level {part!r}: expected LEVEL=SHARE")
            k, _, v = part.partition("=")
            items.append((k.strip(), v.strip()))
    else:
        items = list(text.items())
    out: dict[int, float] = {}
    for k, v in items:
        try:
            level, share = int(k), float(v)
        except (TypeError, ValueError):
            raise ValueError(
                f"simple level {k!r}={v!r}: expected an integer level and a share") from None
        if level < 1:
            raise ValueError(f"simple level {level}: levels start at 1 (0 means no curtailment)")
        if not (math.isfinite(share) and 0.0 <= share <= 1.0):
            raise ValueError(f"simple level {level}: share must be in [0, 1], got {v!r}")
        out[level] = share
    if not out:
        raise ValueError("simple levels: at least one LEVEL=SHARE")
    return out


def event_key(event: Mapping[str, Any]) -> EventKey:
    """Id, modification number, status and test flag; Unmappable if the descriptor is broken."""
    desc = event.get("event_descriptor")
    if not isinstance(desc, Mapping):
        raise Unmappable("event has no eventDescriptor")
    eid = desc.get("event_id")
    if eid is None or str(eid) == "":
        raise Unmappable("event has no eventID")
    mod = desc.get("modification_number", 0)
    if isinstance(mod, bool) or not isinstance(mod, int) or mod < 0:
        raise Unmappable(f"modificationNumber must be a non-negative integer, got {mod!r}")
    status = str(desc.get("event_status") or "none")
    return EventKey(str(eid), mod, status, desc.get("test_event") is True)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unmappable(f"{where}: payload must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise Unmappable(f"{where}: payload must be finite, got {value!r}")
    if v < 0:
        raise Unmappable(f"{where}: payload must not be negative, got {v:g}")
    return v


def _watts_per_unit(signal: Mapping[str, Any]) -> float:
    """W per payload unit of a setpoint from its itemBase; kW when the signal has none."""
    m = signal.get("measurement")
    if m is None:
        return 1e3
    if not isinstance(m, Mapping):
        raise Unmappable(f"setpoint itemBase is not understood: {m!r}")
    name, unit = m.get("name"), m.get("unit")
    scale = m.get("scale") or "none"
    if name not in POWER_ITEMS or unit not in POWER_UNITS:
        raise Unmappable(f"setpoint in {name}/{unit}: only real power (W or kW) is supported")
    if scale not in SI_SCALE:
        raise Unmappable(f"setpoint siScaleCode {scale!r} is not an SI scale code")
    return POWER_UNITS[unit] * SI_SCALE[scale]


def _timeline(event: Mapping[str, Any], signal: Mapping[str, Any]) -> list[tuple[datetime,
                                                                                 datetime, Any]]:
    """(start, end, payload) per interval: an interval's own dtstart, else the active period's
    start plus the durations before it."""
    period = event.get("active_period")
    if not isinstance(period, Mapping) or not isinstance(period.get("dtstart"), datetime):
        raise Unmappable("event has no activePeriod dtstart")
    t = period["dtstart"]
    raw = signal.get("intervals")
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise Unmappable(f"signal {signal.get('signal_name')}: no intervals")
    if len(raw) > MAX_INTERVALS:
        raise Unmappable(f"{len(raw)} intervals: at most {MAX_INTERVALS}")
    if all(isinstance(iv, Mapping) and isinstance(iv.get("uid"), int) for iv in raw):
        raw = sorted(raw, key=lambda iv: iv["uid"])
    out = []
    for k, iv in enumerate(raw):
        if not isinstance(iv, Mapping):
            raise Unmappable(f"interval {k}: not an interval")
        start = iv.get("dtstart", t)
        dur = iv.get("duration")
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise Unmappable(f"interval {k}: dtstart must be a UTC date-time")
        if not isinstance(dur, timedelta) or dur <= timedelta(0):
            raise Unmappable(f"interval {k}: duration must be positive (open-ended intervals "
                             f"are not supported), got {dur!r}")
        out.append((start, start + dur, iv.get("signal_payload")))
        t = start + dur
    return out


def _startafter(event: Mapping[str, Any]) -> timedelta:
    tol = (event.get("active_period") or {}).get("tolerance")
    if not tol:
        return timedelta(0)
    after = tol.get("tolerate", tol).get("startafter") if isinstance(tol, Mapping) else None
    if after is None:
        return timedelta(0)
    if not isinstance(after, timedelta) or after < timedelta(0):
        raise Unmappable(f"tolerance startafter must be a non-negative duration, got {after!r}")
    return after


def _pick(signals: Sequence[Any]) -> Mapping[str, Any]:
    """The one signal to act on; Unmappable for a dispatch signal we cannot keep."""
    load, simple, other = [], [], []
    for s in signals:
        if not isinstance(s, Mapping):
            raise Unmappable("an eventSignal is not understood")
        name, typ = s.get("signal_name"), s.get("signal_type")
        if name == LOAD_CONTROL and typ in (CAPACITY, SETPOINT):
            load.append(s)
        elif name in SIMPLE_NAMES and typ == "level":
            simple.append(s)
        elif name in PRICE_NAMES:
            continue
        else:
            other.append(f"{name}/{typ}")
    if other:
        raise Unmappable(f"signal {', '.join(other)} is not supported (supported: SIMPLE/level, "
                         f"LOAD_CONTROL/{CAPACITY}, LOAD_CONTROL/{SETPOINT})")
    if len(load) > 1:
        raise Unmappable("more than one LOAD_CONTROL signal in one event is not supported")
    if load:
        return load[0]
    if len(simple) > 1:
        raise Unmappable("more than one SIMPLE signal in one event is not supported")
    if simple:
        return simple[0]
    raise Unmappable("no SIMPLE or LOAD_CONTROL signal: nothing to comply with (prices are not "
                     "acted on)")


def map_event(event: Mapping[str, Any], node: str,
              simple_levels: Mapping[int, float] = DEFAULT_SIMPLE_LEVELS) -> GridSignal | None:
    """The event's limit on ``node``; None when every interval is SIMPLE level 0 (no limit).

    Intervals keep their times (the limit applies from the earliest possible start); each is
    held until the next starts or, past the last, ``startafter`` longer, which covers any start
    the VTN's randomisation window allows. Raises :class:`Unmappable`.
    """
    key = event_key(event)
    raw = event.get("event_signals")
    if isinstance(raw, Mapping):  # openleadr nests them once more in some messages
        raw = raw.get("event_signals", [raw])
    if not isinstance(raw, list) or not raw:
        raise Unmappable("event has no eventSignals")
    signal = _pick(raw)
    name, typ = signal["signal_name"], signal["signal_type"]
    timeline = _timeline(event, signal)
    where = f"{name}/{typ}"
    kept: list[tuple[datetime, datetime, float]] = []
    if typ == "level":
        measure = Measure.SHARE
        for k, (s, e, v) in enumerate(timeline):
            level = _number(v, f"{where} interval {k}")
            if level != int(level) or (int(level) != 0 and int(level) not in simple_levels):
                raise Unmappable(f"{where} interval {k}: level {level:g} has no mapping "
                                 f"(configured: 0, {', '.join(map(str, sorted(simple_levels)))})")
            if int(level) != 0:
                kept.append((s, e, simple_levels[int(level)]))
    elif typ == CAPACITY:
        measure = Measure.SHARE
        for k, (s, e, v) in enumerate(timeline):
            share = _number(v, f"{where} interval {k}")
            if share > 1.0:
                raise Unmappable(f"{where} interval {k}: capacity is a fraction in [0, 1], "
                                 f"got {share:g}")
            kept.append((s, e, share))
    else:
        measure = Measure.LIMIT_KW
        kw_per_unit = _watts_per_unit(signal) / 1e3
        for k, (s, e, v) in enumerate(timeline):
            kw = _number(v, f"{where} interval {k}") * kw_per_unit
            if kw > MAX_KW:
                raise Unmappable(f"{where} interval {k}: {kw:g} kW is beyond any site")
            kept.append((s, e, kw))
    for k in range(1, len(timeline)):
        if timeline[k][0] < timeline[k - 1][1]:
            raise Unmappable(f"{where} interval {k} overlaps interval {k - 1}")
    if not kept:
        return None
    after = _startafter(event)
    intervals = []
    for k, (s, e, v) in enumerate(kept):
        nxt = kept[k + 1][0] if k + 1 < len(kept) else None
        end = e + after if nxt is None else max(e, min(e + after, nxt))
        if end - s > MAX_SPAN:
            raise Unmappable(f"{where}: an interval of {end - s} is longer than the "
                             f"{MAX_SPAN.days} days planned against")
        intervals.append(SignalInterval(s, end, v))
    return GridSignal(SOURCE, key.event_id, key.modification, node, measure, tuple(intervals))
