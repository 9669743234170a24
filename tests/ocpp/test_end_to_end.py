"""Solver plans for the bundled examples, rendered for every version and unit."""

from __future__ import annotations

import pytest

from optimizer.core.solve import solve
from optimizer.data.examples import caltech_day, eu_three_phase
from optimizer.ocpp import VERSIONS, ChargerCapabilities, render_failsafe, render_plan

from .common import composite_unsafe, unsafe_instants
from .helpers import rule_errors, schema_errors


@pytest.fixture(scope="module", params=["eu", "caltech"])
def solved(request):
    problem = {"eu": eu_three_phase, "caltech": caltech_day}[request.param]()
    return problem, solve(problem)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("unit", ["A", "W"])
def test_solver_plans_render_valid_and_safe(solved, version: str, unit: str) -> None:
    problem, plan = solved
    caps = {
        c.id: ChargerCapabilities(
            version,
            unit,
            max_periods=6,
            evse_id=1 + k % 2,
            connector_id=1 + k % 2,
            supports_phase_switching=True,
            station_id=f"station-{k // 2}",
        )
        for k, c in enumerate(problem.site.connectors)
    }
    # the CSMS knows transactions of the cars present now: one per connector
    present = {s.connector: s for s in problem.sessions if s.arrival <= plan.start < s.departure}
    tx = {s.id: str(1000 + k) for k, s in enumerate(present.values())}
    out = (
        render_plan(problem, plan, caps, tx, station_max=True)
        + render_plan(problem, plan, caps, purpose="TxDefaultProfile")
        + render_failsafe(problem, caps)
    )
    assert len(out) >= len(tx) + 2 * len(caps)
    for r in out:
        assert schema_errors(r.payload, version) == []
        assert rule_errors(r.payload, version, 6) == []
    assert unsafe_instants(problem, plan, out) == []
    if unit == "A":  # what the charger composes from all three kinds never exceeds the plan
        assert composite_unsafe(problem, plan, out) == []
