"""The committed example files are what optimizer.data.examples builds, and each one is valid."""

from __future__ import annotations

import pytest

from optimizer.api.convert import problem_from_request, read_request_json
from optimizer.data.examples import EXAMPLES, example_json

from ..paths import EXAMPLES_DIR


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_committed_example_matches_generator(name: str) -> None:
    committed = (EXAMPLES_DIR / f"{name}.json").read_text()
    assert committed == example_json(name), "stale: run python -m optimizer.data.examples examples"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_round_trips_through_protobuf_json(name: str) -> None:
    problem = problem_from_request(read_request_json(example_json(name)))
    assert problem == EXAMPLES[name]()


def test_caltech_day_is_the_real_busiest_day() -> None:
    p = EXAMPLES["caltech-day-50kw"]()
    assert len(p.sessions) == 53 and len(p.site.connectors) == 54
    # derated to 50 kW: secondary 50000/3/120 A, primary 50000/3/277 A
    root = p.site.nodes[0]
    assert root.phase_limit_a == (138.889, 138.889, 138.889)
    assert {pl.limit_a for pl in root.phasor_limits} == {60.168}
