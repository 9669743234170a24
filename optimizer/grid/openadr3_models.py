"""OpenADR 3.0.1 objects as strict pydantic models, and their one mapping onto a GridSignal.

Why our own models and not the ``openadr3`` package (PyPI 0.5.0, "OpenADR 3 Entity API
Library"): its raw models follow OpenADR 3.1 (``targets`` as a list of strings), so a 3.0.1
event's ``targets: [{"type": ..., "values": [...]}]`` fails validation; they are lax where a VEN
must be strict (``values: list[Any]``, ``"0"`` accepted as an interval id, ``start: "yesterday"``
and ``duration: "forever"`` accepted as strings); and its coerced layer fails with a bare
``KeyError``/pendulum ``ParserError`` carrying no field path, while pulling in httpx,
openapi-core, pendulum and pyyaml. The models here are written from the 3.0.1 OpenAPI schema
(``components/schemas``: program, event, interval, intervalPeriod, valuesMap,
eventPayloadDescriptor, reportDescriptor, report, objectID, dateTime, duration) in strict mode,
with bounds on every list, so a hostile VTN document is refused with the path of the first bad
field (``intervals[3].payloads[0].values[0]: ...``).

Timing rules (OpenADR 3.0.1 schema, 3.1.0 User Guide 7.3/7.4, which the 3.0.1 text defers to):
an interval's ``intervalPeriod`` overrides the event's; an interval without a start follows the
previous one; a start of ``0001-01-01`` on a later interval means "right after the previous
one"; ``P9999Y`` (or a duration that runs past year 9999) is an open end, and so is a missing or
``PT0S`` duration (the schema: "PT0S indicates instantaneous or infinity, depending on
payloadType"; a capacity limit cannot be instantaneous). Open ends and far-future intervals are
bounded to the adapter's window (see :func:`event_signal`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from ..core.grid_signal import MAX_INTERVALS, MAX_KW, GridSignal, Measure, SignalInterval
from ..core.validate import FieldViolation

SOURCE = "openadr3"
IMPORT_CAPACITY_LIMIT = "IMPORT_CAPACITY_LIMIT"
#: The Definition's enumeration name, and the name the 3.1.0 User Guide's example 8.10.2-1 uses.
SUBSCRIPTION_TYPES = ("IMPORT_CAPACITY_SUBSCRIPTION", "CAPACITY_SUBSCRIPTION")
#: kW per unit of an IMPORT_CAPACITY_LIMIT value; the enumeration (units.schema.yaml) has KW.
UNIT_KW = {"KW": 1.0, "W": 0.001, "MW": 1000.0}

MAX_LIST = 10_080  # intervals of an event (a week of minutes), events per page, ...
MAX_SMALL_LIST = 64  # payloads, descriptors, targets, values per valuesMap
MAX_STR = 128

ObjectID = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]*$", min_length=1,
                                            max_length=MAX_STR)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STR)]
Text = Annotated[str, StringConstraints(max_length=4096)]
DURATION_RE = re.compile(
    r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _duration(text: str) -> str:
    if DURATION_RE.match(text) is None:
        raise ValueError(f"not an ISO 8601 duration: {text[:40]!r}")
    return text


Duration = Annotated[str, StringConstraints(max_length=64), AfterValidator(_duration)]
DateTimeStr = Annotated[str, StringConstraints(min_length=1, max_length=64)]
#: "the beginning of time": now / right after the previous interval (User Guide 7.3).
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=False,
                              frozen=True)


class Point(_Model):
    x: float
    y: float


class ValuesMap(_Model):
    type: Name
    values: Annotated[list[float | int | bool | Text | Point], Field(max_length=MAX_SMALL_LIST)]


class IntervalPeriod(_Model):
    # The schema requires ``start``; the User Guide's own example 7.4-1 omits it on a later
    # interval ("follows the previous one"), so it is optional at the interval level.
    start: DateTimeStr | None = None
    duration: Duration | None = None
    randomize_start: Duration | None = Field(None, alias="randomizeStart")


class Interval(_Model):
    id: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    payloads: Annotated[list[ValuesMap], Field(max_length=MAX_SMALL_LIST)]


class EventPayloadDescriptor(_Model):
    object_type: Literal["EVENT_PAYLOAD_DESCRIPTOR"] | None = Field(None, alias="objectType")
    payload_type: Name = Field(alias="payloadType")
    units: Name | None = None
    currency: Name | None = None


class ReportPayloadDescriptor(_Model):
    object_type: Literal["REPORT_PAYLOAD_DESCRIPTOR"] = Field(alias="objectType")
    payload_type: Name = Field(alias="payloadType")
    reading_type: Name | None = Field(None, alias="readingType")
    units: Name | None = None


class ReportDescriptor(_Model):
    payload_type: Name = Field(alias="payloadType")
    reading_type: Name | None = Field(None, alias="readingType")
    units: Name | None = None


class ProgramDescription(_Model):
    url: Text = Field(alias="URL")


class Program(_Model):
    id: ObjectID | None = None
    created_date_time: DateTimeStr | None = Field(None, alias="createdDateTime")
    modification_date_time: DateTimeStr | None = Field(None, alias="modificationDateTime")
    object_type: Literal["PROGRAM"] | None = Field(None, alias="objectType")
    program_name: Name = Field(alias="programName")
    program_long_name: Text | None = Field(None, alias="programLongName")
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    payload_descriptors: Annotated[
        list[EventPayloadDescriptor | ReportPayloadDescriptor] | None,
        Field(max_length=MAX_SMALL_LIST)] = Field(None, alias="payloadDescriptors")
    # 3.0.1: a list of valuesMap; 3.1: a list of strings. Either is accepted, neither is used.
    targets: Annotated[list[ValuesMap | Name] | None, Field(max_length=MAX_SMALL_LIST)] = None


class Event(_Model):
    id: ObjectID | None = None
    created_date_time: DateTimeStr | None = Field(None, alias="createdDateTime")
    modification_date_time: DateTimeStr | None = Field(None, alias="modificationDateTime")
    object_type: Literal["EVENT"] | None = Field(None, alias="objectType")
    program_id: ObjectID = Field(alias="programID")
    event_name: Text | None = Field(None, alias="eventName")
    priority: Annotated[int, Field(ge=0)] | None = None
    targets: Annotated[list[ValuesMap | Name] | None, Field(max_length=MAX_SMALL_LIST)] = None
    report_descriptors: Annotated[list[ReportDescriptor] | None,
                                  Field(max_length=MAX_SMALL_LIST)] = Field(
        None, alias="reportDescriptors")
    payload_descriptors: Annotated[list[EventPayloadDescriptor] | None,
                                   Field(max_length=MAX_SMALL_LIST)] = Field(
        None, alias="payloadDescriptors")
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    intervals: Annotated[list[Interval], Field(max_length=MAX_LIST)]


def field_path(loc: Sequence[int | str]) -> str:
    """``("intervals", 3, "payloads")`` -> ``intervals[3].payloads`` (the wire names)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith(("function-", "list[", "union[")) and part not in (
                "float", "int", "bool", "str", "Point", "ValuesMap", "constrained-str",
                "EventPayloadDescriptor", "ReportPayloadDescriptor"):
            out += f".{part}" if out else part
    return out or "(document)"


def violations_of(exc: ValidationError, prefix: str = "") -> list[FieldViolation]:
    """One violation per distinct path; unions report their first branch's reason only."""
    seen: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        path = field_path(err["loc"])
        path = f"{prefix}.{path}" if prefix and path != "(document)" else (prefix or path)
        msg = str(err["msg"]).removeprefix("Value error, ")
        seen.setdefault(path, msg)
    return [FieldViolation(p, m) for p, m in seen.items()]


def parse(model: type[_Model], obj: object, prefix: str = "") -> tuple[Any, list[FieldViolation]]:
    """Validate ``obj`` (already decoded JSON) as ``model``; (instance or None, violations)."""
    try:
        return model.model_validate(obj), []
    except ValidationError as exc:
        return None, violations_of(exc, prefix)


# --- times -------------------------------------------------------------------------------------


def parse_datetime(text: str) -> datetime:
    """RFC 3339 with a zone; ``0001-01-01`` (no zone) is :data:`BEGINNING`. Raises ValueError."""
    if text in ("0001-01-01", "0001-01-01T00:00:00"):
        return BEGINNING
    if "T" not in text and "t" not in text:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"date-time without a time zone: {text!r}")
    return dt.astimezone(UTC)


def _add_months(dt: datetime, months: int) -> datetime:
    y, m = divmod(dt.month - 1 + months, 12)
    year = dt.year + y
    if year > 9999:
        raise OverflowError
    day = min(dt.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28,
                       31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m])
    return dt.replace(year=year, month=m + 1, day=day)


def add_duration(start: datetime, text: str) -> datetime | None:
    """``start`` + ISO 8601 ``text`` (calendar years and months); None for an open end.

    Open: ``P9999Y`` and anything else that runs past year 9999, and ``PT0S``/zero. Raises
    ValueError for a negative duration.
    """
    m = DURATION_RE.match(text)
    if m is None:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    neg, years, months, days, dw, hours, minutes, seconds = m.groups()
    if neg:
        raise ValueError(f"a negative duration: {text!r}")
    y, mo = int(years or 0), int(months or 0)
    if y >= 9999:
        return None
    delta = timedelta(days=int(days or 0) * (7 if dw == "W" else 1), hours=int(hours or 0),
                      minutes=int(minutes or 0), seconds=float(seconds or 0))
    if y == 0 and mo == 0 and delta == timedelta(0):
        return None
    try:
        return _add_months(start, 12 * y + mo) + delta
    except (OverflowError, ValueError):
        return None


# --- event -> signal ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The span an adapter plans for: open ends end at ``hi``, intervals outside are dropped.

    Anchored to UTC midnight (``day`` = days since 1970-01-01) so that the clipped content of an
    event only changes once a day, which :func:`modification` folds into the version number.
    """

    lo: datetime
    hi: datetime
    day: int

    @staticmethod
    def at(now: datetime, days: int = 3) -> Window:
        lo = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return Window(lo, lo + timedelta(days=days), (lo - datetime(1970, 1, 1, tzinfo=UTC)).days)


@dataclass(frozen=True)
class Mapped:
    """An event's capacity-limit intervals inside a window, with the OpenADR interval ids."""

    event_id: str
    program_id: str
    name: str
    version_ms: int | None  # modificationDateTime (else createdDateTime) in epoch ms
    digest: str  # of the event as received, for VTNs that do not provision a version
    intervals: tuple[SignalInterval, ...]
    interval_ids: tuple[int, ...]


def event_digest(raw: object) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _units(event: Event, program: Program | None, payload_type: str,
           bad: list[FieldViolation]) -> float:
    for where, descs in (("payloadDescriptors", event.payload_descriptors),
                         ("program.payloadDescriptors",
                          program.payload_descriptors if program else None)):
        for k, d in enumerate(descs or ()):
            if isinstance(d, EventPayloadDescriptor) and d.payload_type == payload_type:
                unit = d.units or "KW"
                if unit not in UNIT_KW:
                    bad.append(FieldViolation(
                        f"{where}[{k}].units",
                        f"unknown unit {unit!r} for {payload_type} (known: "
                        f"{', '.join(UNIT_KW)})"))
                    return 1.0
                return UNIT_KW[unit]
    return 1.0  # the User Guide (8.10.1): capacity limits are "in units of kW"


def _timing(event: Event, bad: list[FieldViolation]
            ) -> list[tuple[datetime, datetime | None, bool]] | None:
    """(start, end or None for open, start given explicitly) per interval."""
    ep = event.interval_period
    try:
        ev_start = parse_datetime(ep.start) if ep and ep.start else None
    except ValueError as exc:
        bad.append(FieldViolation("intervalPeriod.start", str(exc)))
        return None
    ev_dur = ep.duration if ep else None
    out: list[tuple[datetime, datetime | None, bool]] = []
    prev_end: datetime | None = None
    for k, iv in enumerate(event.intervals):
        p = f"intervals[{k}].intervalPeriod"
        ip = iv.interval_period
        explicit = False
        try:
            start = parse_datetime(ip.start) if ip and ip.start else None
        except ValueError as exc:
            bad.append(FieldViolation(f"{p}.start", str(exc)))
            return None
        if start is not None and start != BEGINNING:
            explicit = True
        elif k == 0:
            start = ev_start if ev_start is not None else start
        else:
            if prev_end is None:
                bad.append(FieldViolation(
                    f"{p}.start", "follows an open-ended interval but gives no start"))
                return None
            start = prev_end
        if start is None:
            bad.append(FieldViolation(
                p if ip else f"intervals[{k}]",
                "no start: neither the interval nor the event has an intervalPeriod.start"))
            return None
        dur = ip.duration if ip and ip.duration is not None else ev_dur
        try:
            end = add_duration(start, dur) if dur is not None else None
        except ValueError as exc:
            bad.append(FieldViolation(f"{p}.duration" if ip and ip.duration else
                                      "intervalPeriod.duration", str(exc)))
            return None
        out.append((start, end, explicit))
        prev_end = end
    return out


def event_signal(event: Event, program: Program | None, window: Window,
                 payload_types: tuple[str, ...] = (IMPORT_CAPACITY_LIMIT,),
                 raw: object = None) -> tuple[Mapped | None, list[FieldViolation]]:
    """The event's limits of ``payload_types`` in kW, clipped to ``window``.

    (None, []) when the event carries no such payload (not ours); (None, violations) when it
    is malformed. GAC (ElaadNL openadr3-client-gac-compliance) asks for exactly one value per
    payload; more is refused rather than guessed at.
    """
    bad: list[FieldViolation] = []
    hits = [(k, j) for k, iv in enumerate(event.intervals)
            for j, pl in enumerate(iv.payloads) if pl.type in payload_types]
    if not hits:
        return None, []
    scale = _units(event, program, next(t for t in payload_types if any(
        event.intervals[k].payloads[j].type == t for k, j in hits)), bad)
    timing = _timing(event, bad)
    if bad or timing is None:
        return None, bad
    # An open interval followed by an explicitly started one ends where that one starts.
    spans: list[tuple[datetime, datetime | None]] = []
    for k, (start, end, _) in enumerate(timing):
        if end is None and k + 1 < len(timing) and timing[k + 1][2]:
            end = timing[k + 1][0]
        spans.append((start, end))
    picked: list[tuple[int, int, datetime, datetime, float]] = []
    for k, iv in enumerate(event.intervals):
        mine = [(j, pl) for j, pl in enumerate(iv.payloads) if pl.type in payload_types]
        if not mine:
            continue
        if len(mine) > 1:
            bad.append(FieldViolation(f"intervals[{k}].payloads[{mine[1][0]}]",
                                      f"a second {mine[1][1].type} payload in one interval"))
            continue
        j, pl = mine[0]
        p = f"intervals[{k}].payloads[{j}].values"
        if len(pl.values) != 1:
            bad.append(FieldViolation(p, f"must hold exactly one value, got {len(pl.values)}"))
            continue
        v = pl.values[0]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            bad.append(FieldViolation(f"{p}[0]", f"must be a finite number, got {v!r}"))
            continue
        kw = float(v) * scale
        if not 0.0 <= kw <= MAX_KW:
            bad.append(FieldViolation(f"{p}[0]", f"must be between 0 and {MAX_KW:g} kW, got "
                                                 f"{kw:g} kW"))
            continue
        start, end = spans[k]
        picked.append((k, iv.id, start, end if end is not None else window.hi, kw))
    prev: tuple[int, datetime] | None = None
    for k, _, start, end, _ in picked:
        if end <= start:
            bad.append(FieldViolation(f"intervals[{k}].intervalPeriod",
                                      "ends before it starts"))
        if prev is not None and start < prev[1]:
            bad.append(FieldViolation(f"intervals[{k}].intervalPeriod.start",
                                      f"overlaps intervals[{prev[0]}]"))
        prev = (k, end)
    if bad:
        return None, bad
    ivs: list[SignalInterval] = []
    ids: list[int] = []
    for _, iid, start, end, kw in picked:
        s, e = max(start, window.lo), min(end, window.hi)
        if e > s:
            ivs.append(SignalInterval(s, e, kw))
            ids.append(iid)
    if len(ivs) > MAX_INTERVALS:
        return None, [FieldViolation("intervals", f"{len(ivs)} limit intervals in the next "
                                                   f"{(window.hi - window.lo).days} days; at "
                                                   f"most {MAX_INTERVALS}")]
    version = None
    if event.modification_date_time is not None:
        try:
            version = int(parse_datetime(event.modification_date_time).timestamp() * 1000)
        except ValueError as exc:
            return None, [FieldViolation("modificationDateTime", str(exc))]
    elif event.created_date_time is not None:
        # Only a fallback: the User Guide's own examples carry "17:15:16" here.
        try:
            version = int(parse_datetime(event.created_date_time).timestamp() * 1000)
        except ValueError:
            version = None
    if event.id is None:
        return None, [FieldViolation("id", "a VTN event must carry its object id")]
    return Mapped(event.id, event.program_id, event.event_name or "", version,
                  event_digest(raw if raw is not None else event.model_dump(by_alias=True)),
                  tuple(ivs), tuple(ids)), []


def modification(version_ms: int, window: Window) -> int:
    """Monotonic: a newer VTN version or a later window day gives a larger number (< 2^63)."""
    return version_ms * 100_000 + window.day % 100_000


def signal_of(mapped: Mapped, signal_id: str, modification_no: int, node: str) -> GridSignal:
    return GridSignal(SOURCE, signal_id, modification_no, node, Measure.LIMIT_KW,
                      mapped.intervals)
