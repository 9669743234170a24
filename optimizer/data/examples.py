"""Bundled example problems, built from code and the bundled Caltech ACN data.

``python -m optimizer.data.examples DIR`` writes them as protobuf JSON Optimize requests (the
files in examples/); a test keeps the committed files equal to what this module builds.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.model import (
    Connector,
    CurtailmentEvent,
    Node,
    Options,
    PhasorLimit,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
    Wiring,
)

CALTECH = "caltech_acn_2019_03"
_ROTATION = {"AB": "L1L2L3", "BC": "L2L3L1", "CA": "L3L1L2"}
#: Transformer primary conductor currents from the secondary line currents (delta-wye, 277 V
#: primary, 120/208 V secondary): primary A = 0.25 * (I_L1 - I_L3), and so on.
_PRIMARY = {"Primary A": (0.25, 0.0, -0.25), "Primary B": (-0.25, 0.25, 0.0),
            "Primary C": (0.0, -0.25, 0.25)}


def _data(name: str) -> Any:
    return resources.files("optimizer.data").joinpath(CALTECH, name)


def caltech_site(transformer_kw: float = 150.0) -> Site:
    """The Caltech ACN garage: 54 line-to-line EVSEs, two 80 A pods, a 150 kW transformer.

    Derating scales the transformer's secondary and primary limits as the published studies do
    (ACN-Sim's ``transformer_cap``): secondary kW*1000/3/120 A, primary kW*1000/3/277 A.
    """
    raw = json.loads(_data("site.json").read_text())
    secondary = round(transformer_kw * 1000 / 3 / 120, 3)
    primary = round(transformer_kw * 1000 / 3 / 277, 3)
    nodes = [Node("transformer", None, (secondary, secondary, secondary), None,
                  tuple(PhasorLimit(n, c, primary) for n, c in _PRIMARY.items()), 120.0)]
    pods = {}
    for con in raw["constraints"]:
        if con["kind"] == "sum":
            pod = con["name"].split()[0]  # "CC Pod" -> "CC"
            pods[pod] = con
            lim = float(con["limit_a"])
            nodes.append(Node(f"{pod}-pod", "transformer", (lim, lim, lim), voltage_v=120.0))
    types = raw["evse_types"]
    conns = []
    for st in raw["stations"]:
        t = types[st["evse_type"]]
        common: dict[str, Any] = dict(
            id=st["id"], node=f"{st['pod']}-pod" if st["pod"] else "transformer",
            max_current_a=32.0, phases=1, phase_rotation=_ROTATION[st["lines"]],
            wiring=Wiring.DELTA, voltage_v=float(raw["voltage_v"]),
            phase_angle_deg=float(st["phase_angle_deg"]),
        )
        if "allowed_current_a" in t:
            allowed = tuple(float(a) for a in t["allowed_current_a"])
            conns.append(Connector(**common, min_current_a=min(a for a in allowed if a > 0),
                                   current_step_a=0.0, allowed_currents_a=allowed))
        else:
            conns.append(Connector(**common, min_current_a=float(t["min_current_a"]),
                                   current_step_a=float(t["step_a"])))
    return Site(f"caltech-acn-{int(transformer_kw)}kw", tuple(nodes), tuple(conns))


def caltech_sessions(start: datetime, end: datetime) -> tuple[Session, ...]:
    """Real sessions arriving in [start, end); energy delivered in reality is the request."""
    out = []
    with _data("sessions.csv").open() as f:
        for row in csv.DictReader(f):
            arr = datetime.fromisoformat(row["arrival"])
            if not start <= arr < end:
                continue
            out.append(Session(
                id=row["session_id"], connector=row["station_id"], arrival=arr.astimezone(UTC),
                departure=datetime.fromisoformat(row["departure"]).astimezone(UTC),
                energy_requested_kwh=float(row["energy_requested_kwh"]),
                vehicle_max_power_kw=float(row["max_power_kw"]),
            ))
    return tuple(out)


def caltech_day(day: str = "2019-03-20", transformer_kw: float = 50.0) -> Problem:
    """One real day (the month's busiest) with the transformer derated: 53 cars, 144 slots."""
    start = datetime.fromisoformat(f"{day}T00:00:00-07:00")
    return Problem(
        site=caltech_site(transformer_kw),
        sessions=caltech_sessions(start, start + timedelta(days=1)),
        now=start.astimezone(UTC),
        options=Options(slot_minutes=10, horizon_hours=24.0),
    )


def _eu_site() -> Site:
    """A small European site: 3x63 A grid, two 3x32 A panels, 8 connectors on rotated phases."""
    rotations = ("L1L2L3", "L2L3L1", "L3L1L2", "L1L2L3")
    conns = tuple(
        Connector(f"cp{p}{k}", f"panel-{p}", 32.0, min_current_a=6.0, current_step_a=0.1,
                  phases=3, phase_rotation=rotations[k])
        for p in (1, 2) for k in range(4)
    )
    return Site("eu-depot", (
        Node("grid", None, (63.0, 63.0, 63.0), 40.0),
        Node("panel-1", "grid", (32.0, 32.0, 32.0)),
        Node("panel-2", "grid", (32.0, 32.0, 32.0)),
    ), conns)


_EU_NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def _eu_sessions() -> tuple[Session, ...]:
    h = timedelta(hours=1)
    spec = [  # connector, arrives (h from now), stays (h), kWh, vehicle phases, priority
        ("cp10", 0, 3, 18, 1, 1.0), ("cp11", 0, 5, 30, 3, 1.0), ("cp12", 0.5, 2, 10, 1, 1.0),
        ("cp13", 1, 14, 40, 3, 1.0), ("cp20", 0, 12, 22, 1, 1.0), ("cp21", 0.25, 4, 25, 3, 2.0),
        ("cp22", 2, 13, 35, 3, 1.0), ("cp23", 0, 1.5, 6, 1, 1.0),
    ]
    return tuple(
        Session(f"s{k}", conn, _EU_NOW + a * h, _EU_NOW + (a + stay) * h, float(kwh),
                vehicle_phases=ph, vehicle_max_current_a=32.0 if ph == 3 else 16.0, priority=pr)
        for k, (conn, a, stay, kwh, ph, pr) in enumerate(spec)
    )


def _tou_prices(now: datetime) -> tuple[TimeValue, ...]:
    """Day 0.30/kWh, evening peak 0.45, night 0.12 (per hour, for 36 h)."""
    out = []
    for k in range(36):
        t = now + timedelta(hours=k)
        hour = t.hour
        price = 0.12 if hour < 6 or hour >= 22 else 0.45 if 17 <= hour < 21 else 0.30
        out.append(TimeValue(t, t + timedelta(hours=1), price))
    return tuple(out)


def eu_three_phase() -> Problem:
    """European 3-phase site, 1-phase cars on rotated phases, time-of-use prices."""
    return Problem(_eu_site(), _eu_sessions(), _EU_NOW, Signals(prices=_tou_prices(_EU_NOW)),
                   Options(horizon_hours=24.0))


def curtailment() -> Problem:
    """The European site during a grid operator's curtailment: 11 kW cap 17:00-19:00 on the grid
    connection and a 10 kW reduction of panel-2 from 19:00 to 20:00."""
    ev = (
        CurtailmentEvent("dso-2026-11-24-01", "grid", _EU_NOW + timedelta(hours=1),
                         _EU_NOW + timedelta(hours=3), limit_kw=11.0, modification=1),
        CurtailmentEvent("dso-2026-11-24-02", "panel-2", _EU_NOW + timedelta(hours=3),
                         _EU_NOW + timedelta(hours=4), reduction_kw=10.0),
    )
    return Problem(_eu_site(), _eu_sessions(), _EU_NOW,
                   Signals(prices=_tou_prices(_EU_NOW), events=ev), Options(horizon_hours=24.0))


EXAMPLES: dict[str, Callable[[], Problem]] = {
    "eu-3phase-rotated": eu_three_phase,
    "caltech-day-50kw": caltech_day,
    "curtailment-event": curtailment,
}
DEFAULT = "caltech-day-50kw"


def example_json(name: str) -> str:
    from google.protobuf import json_format

    from ..api.convert import request_from_problem

    return json_format.MessageToJson(request_from_problem(EXAMPLES[name]()), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or ["examples"])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLES:
        (out / f"{name}.json").write_text(example_json(name))
        print(f"wrote {out / name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
