"""Synthetic and real workloads for the benchmarks: deterministic for a given seed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from optimizer.core.model import (
    Connector,
    Node,
    Options,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
)
from optimizer.data.examples import caltech_day

NOW = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2")


def tree_problem(n_cars: int, n_slots: int, seed: int = 0, *, congestion: float = 0.35) -> Problem:
    """A 3-level, 3-phase tree: grid > panels > chargers (2 connectors each) > connectors.

    40 % of the cars are 1-phase on rotated phases; every node is sized at ``congestion`` of the
    sum of what is below it (panels and grid), so the limits bind. 24 h horizon split into
    ``n_slots`` slots (96 -> 15 min, 288 -> 5 min); time-of-use prices.
    """
    rng = np.random.default_rng(seed)
    n_chargers = (n_cars + 1) // 2
    n_panels = max(1, n_chargers // 50)
    per_panel_a = 32.0 * 2 * (n_chargers / n_panels) * congestion
    nodes = [Node("grid", None, (per_panel_a * n_panels * 0.8,) * 3)]  # type: ignore[arg-type]
    nodes += [Node(f"p{k}", "grid", (per_panel_a,) * 3) for k in range(n_panels)]  # type: ignore[arg-type]
    nodes += [Node(f"ch{k}", f"p{k % n_panels}", (32.0, 32.0, 32.0)) for k in range(n_chargers)]
    conns = [Connector(f"c{k}", f"ch{k // 2}", 32.0, current_step_a=0.1, phases=3,
                       phase_rotation=ROTATIONS[k % 3]) for k in range(n_cars)]
    slot_min = 24 * 60 / n_slots
    sessions = []
    for k in range(n_cars):
        arr = rng.uniform(0, 16)
        stay = rng.uniform(1, 10)
        one_phase = rng.random() < 0.4
        kwh = rng.uniform(5, 40) * (0.4 if one_phase else 1.0)
        sessions.append(Session(
            f"s{k}", f"c{k}", NOW + timedelta(hours=arr), NOW + timedelta(hours=arr + stay), kwh,
            vehicle_phases=1 if one_phase else 3, vehicle_max_current_a=16.0 if one_phase else 32.0,
            priority=2.0 if rng.random() < 0.1 else 1.0))
    prices = tuple(TimeValue(NOW + timedelta(hours=h), NOW + timedelta(hours=h + 1),
                             0.12 if h < 6 or h >= 22 else 0.40 if 17 <= h < 21 else 0.25)
                   for h in range(24))
    return Problem(Site(f"tree-{n_cars}", tuple(nodes), tuple(conns)), tuple(sessions), NOW,
                   Signals(prices=prices), Options(slot_minutes=int(slot_min), horizon_hours=24.0))


def caltech_problem() -> Problem:
    """The Caltech garage, its busiest real day, transformer derated to 50 kW: 53 cars x 144."""
    return caltech_day()
