"""Hypothesis strategies: random but valid sites, sessions and grid signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from optimizer.core.model import (
    ROTATIONS,
    CapacityLimit,
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

NOW = datetime(2026, 3, 2, 8, 7, tzinfo=UTC)


@st.composite
def problems(draw: st.DrawFn, max_connectors: int = 8, delta: bool = True,
             min_limit: float = 0.0) -> Problem:
    """A random tree (1-3 levels), wye and delta connectors, sessions, events and prices.

    ``min_limit`` (A) keeps every limit above a car's minimum current, so that the continuous LP
    bound is a fair yardstick (below 6 A no real plan can deliver what the relaxation can).
    """
    kw_min = min_limit * 0.23
    n_nodes = draw(st.integers(1, 4))
    nodes = []
    for k in range(n_nodes):
        parent = None if k == 0 else f"n{draw(st.integers(0, k - 1))}"
        lim = draw(st.one_of(st.none(), st.tuples(*[st.floats(min_limit, 120)] * 3)))
        kw = draw(st.one_of(st.none(), st.floats(kw_min, 80)))
        phasors = ()
        if delta and draw(st.booleans()):
            phasors = (PhasorLimit("primary", (0.25, 0.0, -0.25),
                                   draw(st.floats(max(5.0, min_limit / 2), 60))),)
        nodes.append(Node(f"n{k}", parent, lim, kw, phasors))
    n_conn = draw(st.integers(1, max_connectors))
    conns = []
    for k in range(n_conn):
        node = f"n{draw(st.integers(0, n_nodes - 1))}"
        is_delta = delta and draw(st.booleans())
        discrete = draw(st.booleans())
        common = dict(id=f"c{k}", node=node, max_current_a=32.0,
                      phase_rotation=draw(st.sampled_from(ROTATIONS)))
        if is_delta:
            common.update(wiring=Wiring.DELTA, phases=1, voltage_v=208.0)
        else:
            common.update(phases=draw(st.sampled_from([1, 3])), voltage_v=230.0)
        if discrete:
            conns.append(Connector(**common, min_current_a=8.0,  # type: ignore[arg-type]
                                   allowed_currents_a=(8.0, 16.0, 24.0, 32.0)))
        else:
            conns.append(Connector(**common, min_current_a=6.0,  # type: ignore[arg-type]
                                   current_step_a=draw(st.sampled_from([0.0, 0.1, 1.0]))))
    sessions = []
    for k, c in enumerate(conns):
        if not draw(st.booleans()):
            continue
        arr = draw(st.integers(-120, 300))
        stay = draw(st.integers(10, 600))
        sessions.append(Session(
            f"s{k}", c.id, NOW + timedelta(minutes=arr), NOW + timedelta(minutes=arr + stay),
            draw(st.floats(0, 60)), vehicle_phases=draw(st.sampled_from([None, 1, 3])),
            vehicle_max_current_a=draw(st.one_of(st.none(), st.floats(6, 32))),
            priority=draw(st.sampled_from([1.0, 1.0, 2.0, 0.5])),
        ))
    events = []
    for k in range(draw(st.integers(0, 2))):
        a = draw(st.integers(0, 400))
        node = f"n{draw(st.integers(0, n_nodes - 1))}"
        events.append(CurtailmentEvent(f"e{k}", node, NOW + timedelta(minutes=a),
                                       NOW + timedelta(minutes=a + draw(st.integers(5, 240))),
                                       limit_kw=draw(st.floats(kw_min, 40))))
    caps = []
    if draw(st.booleans()):
        a = draw(st.integers(0, 400))
        caps.append(CapacityLimit("n0", NOW + timedelta(minutes=a),
                                  NOW + timedelta(minutes=a + 120),
                                  phase_limit_a=draw(st.tuples(*[st.floats(min_limit, 60)] * 3))))
    prices = tuple(TimeValue(NOW + timedelta(hours=h), NOW + timedelta(hours=h + 1),
                             draw(st.floats(-0.05, 0.6))) for h in range(12))
    slot = draw(st.sampled_from([5, 15, 30, 60]))
    return Problem(Site("rnd", tuple(nodes), tuple(conns)), tuple(sessions), NOW,
                   Signals(capacity=tuple(caps), prices=prices, events=tuple(events)),
                   Options(slot_minutes=slot, horizon_hours=12.0))
