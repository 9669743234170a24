"""Where a replay's inputs come from: sessions, the tariff and curtailment events.

Session files (the bundled Caltech month, CSV, ACN-Data JSON), the time-of-use tariff every
strategy is charged by, and ``--event`` specs. Apart from the replay loop because the scoring
and the report need the tariff and the timezone too, and none of it depends on a strategy.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from ..core.model import CurtailmentEvent, Session, TimeValue

#: Caltech's local standard time (the bundled month is March 2019, PST/PDT; days start 00:00 PST).
CALTECH_TZ = timezone(timedelta(hours=-8))


# --- input -----------------------------------------------------------------------------------


def _session(sid: str, station: str, arr: datetime, dep: datetime, kwh: float,
             max_kw: float | None) -> Session:
    return Session(id=sid, connector=station, arrival=arr.astimezone(UTC),
                   departure=dep.astimezone(UTC), energy_requested_kwh=kwh,
                   vehicle_max_power_kw=max_kw)


def parse_csv(text: str, default_max_kw: float | None = 6.6) -> tuple[Session, ...]:
    """session_id, station_id, arrival, departure, energy_requested_kwh[, max_power_kw]."""
    out = []
    for row in csv.DictReader(text.splitlines()):
        mx = row.get("max_power_kw") or None
        out.append(_session(row["session_id"], row["station_id"],
                            datetime.fromisoformat(row["arrival"]),
                            datetime.fromisoformat(row["departure"]),
                            float(row["energy_requested_kwh"]),
                            float(mx) if mx else default_max_kw))
    return tuple(out)


def parse_acn_json(text: str, default_max_kw: float | None = 6.6) -> tuple[Session, ...]:
    """ACN-Data API JSON (``{"_items": [...]}``, RFC 1123 dates).

    The request is the driver's last ``kWhRequested`` when given (what a CSMS would know), else
    what was really delivered (``kWhDelivered``), as ACN-Sim does without user input.
    """
    items = json.loads(text)
    items = items.get("_items", items) if isinstance(items, dict) else items
    out = []
    for it in items:
        if not it.get("disconnectTime"):
            continue
        req = None
        inputs = it.get("userInputs") or []
        if inputs and inputs[-1].get("kWhRequested") is not None:
            req = float(inputs[-1]["kWhRequested"])
        if req is None:
            req = float(it["kWhDelivered"])
        out.append(_session(str(it.get("sessionID") or it.get("_id")),
                            str(it.get("spaceID") or it.get("stationID")),
                            parsedate_to_datetime(it["connectionTime"]),
                            parsedate_to_datetime(it["disconnectTime"]), req, default_max_kw))
    return tuple(out)


def load_sessions(path: str | None) -> tuple[Session, ...]:
    """The bundled Caltech month (None), a CSV file or an ACN-Data JSON file."""
    if path is None:
        from ..data.examples import caltech_sessions

        t0 = datetime(2000, 1, 1, tzinfo=UTC)
        return caltech_sessions(t0, t0 + timedelta(days=365 * 50))
    text = Path(path).read_text()
    return parse_acn_json(text) if text.lstrip().startswith(("{", "[")) else parse_csv(text)


# --- tariff and events ------------------------------------------------------------------------


def tou_price(t: datetime, tz: timezone = CALTECH_TZ) -> float:
    """Time-of-use price per kWh by local hour: night 0.12, day 0.30, evening peak 0.45."""
    h = t.astimezone(tz).hour
    return 0.12 if h < 6 or h >= 22 else 0.45 if 17 <= h < 21 else 0.30


def tou_prices(start: datetime, hours: int) -> tuple[TimeValue, ...]:
    t0 = start.replace(minute=0, second=0, microsecond=0)
    return tuple(TimeValue(t0 + timedelta(hours=k), t0 + timedelta(hours=k + 1),
                           tou_price(t0 + timedelta(hours=k))) for k in range(hours + 2))


def parse_event(spec: str, node: str, k: int) -> CurtailmentEvent:
    """``START,END,KW`` (ISO datetimes, naive = UTC) -> an absolute import limit on ``node``."""
    a, b, kw = spec.split(",")
    s, e = datetime.fromisoformat(a), datetime.fromisoformat(b)
    s = s if s.tzinfo else s.replace(tzinfo=UTC)
    e = e if e.tzinfo else e.replace(tzinfo=UTC)
    return CurtailmentEvent(f"replay-event-{k}", node, s.astimezone(UTC), e.astimezone(UTC),
                            limit_kw=float(kw))
