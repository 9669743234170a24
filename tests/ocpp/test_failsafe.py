"""Fail-safe currents: every node stays within its static limits whatever the cars do.

The checks here recompute node loads with plain complex arithmetic from the site description
(phase angles, rotations, delta branch angles), sharing nothing with ``optimizer.ocpp.failsafe``.
"""

from __future__ import annotations

import cmath
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.core.model import Connector, Node, PhasorLimit, Problem, Site, Wiring
from optimizer.data.examples import caltech_site, eu_three_phase
from optimizer.ocpp import (
    VERSIONS,
    ChargerCapabilities,
    FallbackLimit,
    ProfileKind,
    failsafe_currents,
    render_failsafe,
)

from .common import NOW
from .helpers import parts, rule_errors, schema_errors

ANGLE = {"L1": 0.0, "L2": -120.0, "L3": 120.0}
IDX = {"L1": 0, "L2": 1, "L3": 2}


def draws(conn: Connector) -> list[list[complex]]:
    """Independent draws (per A) as currents on L1..L3: each wye phase alone, a delta branch."""
    lines = [conn.phase_rotation[k : k + 2] for k in (0, 2, 4)]
    if conn.wiring is Wiring.DELTA:
        a, b = lines[0], lines[1]
        if conn.phase_angle_deg is not None:
            ang = conn.phase_angle_deg
        else:  # line-to-line voltage a-b leads the a phase voltage by 30 degrees
            ang = math.degrees(
                cmath.phase(
                    cmath.rect(1, math.radians(ANGLE[a])) - cmath.rect(1, math.radians(ANGLE[b]))
                )
            )
        v = [0j, 0j, 0j]
        v[IDX[a]] += cmath.rect(1, math.radians(ang))
        v[IDX[b]] -= cmath.rect(1, math.radians(ang))
        return [v]
    out = []
    for ln in lines[: conn.phases]:
        v = [0j, 0j, 0j]
        v[IDX[ln]] = cmath.rect(1, math.radians(ANGLE[ln]))
        out.append(v)
    return out


def below(site: Site, node: str) -> list[Connector]:
    parent = {n.id: n.parent for n in site.nodes}
    out = []
    for c in site.connectors:
        n: str | None = c.node
        while n is not None and n != node:
            n = parent[n]
        if n == node:
            out.append(c)
    return out


def quantities(site: Site, node: Node, currents: dict[str, float], fallback=None):
    """(label, limit, [(complex per-A coefficient, upper A)] per draw) for one node."""
    fb = (fallback or {}).get(node.id)
    items = [(d, currents[c.id], c.voltage_v) for c in below(site, node.id) for d in draws(c)]
    out = []
    phase = list(node.phase_limit_a) if node.phase_limit_a else [None] * 3
    if fb is not None and fb.phase_limit_a is not None:
        phase = [
            b if a is None else min(a, b) for a, b in zip(phase, fb.phase_limit_a, strict=True)
        ]
    for p in range(3):
        if phase[p] is not None:
            out.append((f"L{p + 1}", phase[p], [(d[p], u) for d, u, _ in items]))
    kw = node.power_limit_kw
    if fb is not None and fb.power_limit_kw is not None:
        kw = fb.power_limit_kw if kw is None else min(kw, fb.power_limit_kw)
    if kw is not None:
        out.append(("kW", kw, [(complex(v / 1000), u) for _, u, v in items]))
    for pl in node.phasor_limits:
        out.append(
            (
                pl.name,
                pl.limit_a,
                [(sum(pl.coefficients[p] * d[p] for p in range(3)), u) for d, u, _ in items],
            )
        )
    return out


def full_draw(terms) -> float:
    return abs(sum(c * u for c, u in terms))


def sampled_worst(terms, n: int = 3600) -> float:
    """max over directions of sum u * max(0, projection): the box maximum, sampled (<= exact)."""
    return max(
        sum(u * max(0.0, (c * cmath.rect(1, -2 * math.pi * k / n)).real) for c, u in terms)
        for k in range(n)
    )


def brute_worst(terms) -> float:
    return max(
        abs(sum(c * u for (c, u), on in zip(terms, pick, strict=True) if on))
        for pick in itertools.product([0, 1], repeat=len(terms))
    )


def assert_safe(site: Site, cur: dict[str, float], fallback=None, exhaustive: bool = False):
    for c in site.connectors:
        assert 0.0 <= cur[c.id] <= c.max_current_a
        if cur[c.id] > 0:
            if c.allowed_currents_a:
                assert cur[c.id] in c.allowed_currents_a
            else:
                assert cur[c.id] >= c.min_current_a
                if c.current_step_a > 0:
                    k = (cur[c.id] - c.min_current_a) / c.current_step_a
                    assert abs(k - round(k)) < 1e-6
    for node in site.nodes:
        for label, limit, terms in quantities(site, node, cur, fallback):
            terms = [(c, u) for c, u in terms if abs(c) > 1e-12 and u > 0]
            if not terms:
                continue
            assert full_draw(terms) <= limit, (node.id, label)
            assert sampled_worst(terms) <= limit, (node.id, label)
            if exhaustive and len(terms) <= 14:
                assert brute_worst(terms) <= limit, (node.id, label)


def eu_rotated_site() -> Site:
    """3x40 A grid with 22 kW, a 3x25 A panel of 1-phase connectors on rotated phases and a
    3x32 A panel of 3-phase connectors."""
    rot = ["L1L2L3", "L2L3L1", "L3L1L2"]
    conns = [
        Connector(f"p{k}", "panel-1", 32.0, phases=1, phase_rotation=rot[k % 3]) for k in range(5)
    ]
    conns += [
        Connector(f"t{k}", "panel-2", 32.0, phases=3, phase_rotation=rot[k % 3]) for k in range(3)
    ]
    return Site(
        "eu",
        (
            Node("grid", None, (40.0, 40.0, 40.0), 22.0),
            Node("panel-1", "grid", (25.0, 25.0, 25.0)),
            Node("panel-2", "grid", (32.0, 32.0, 32.0)),
        ),
        tuple(conns),
    )


def test_eu_rotated_one_phase_connectors() -> None:
    site = eu_rotated_site()
    cur = failsafe_currents(site)
    assert_safe(site, cur, exhaustive=True)
    assert all(v > 0 for v in cur.values())  # everyone gets something here
    # kW is the binding limit: 11 phase-draws x 230 V x u <= 22 kW
    assert sum(cur[c.id] * 230 * c.phases for c in site.connectors) <= 22000
    assert sum(cur[c.id] * 230 * c.phases for c in site.connectors) > 22000 * 0.9


def test_eu_example_site() -> None:
    site = eu_three_phase().site
    cur = failsafe_currents(site)
    assert_safe(site, cur)
    assert min(cur.values()) >= 6.0


@pytest.mark.parametrize("kw", [50.0, 150.0])
def test_caltech_delta_site_with_phasor_limits(kw: float) -> None:
    site = caltech_site(kw)
    cur = failsafe_currents(site)
    assert_safe(site, cur)
    charging = sum(1 for v in cur.values() if v > 0)
    # 50 kW: the equal share (~4 A) is below the minimum, yet cars still get their minimum
    assert charging >= (10 if kw == 50.0 else len(site.connectors))


def test_fallback_limit_tightens() -> None:
    site = eu_rotated_site()
    fb = {"grid": FallbackLimit(power_limit_kw=11.0), "panel-2": FallbackLimit((10.0, 20, 20))}
    cur = failsafe_currents(site, fb)
    assert_safe(site, cur, fallback=fb, exhaustive=True)
    assert sum(cur[c.id] * 230 * c.phases for c in site.connectors) <= 11000
    assert max(cur[f"t{k}"] for k in range(3)) <= 10.0
    with pytest.raises(ValueError):
        failsafe_currents(site, {"nope": FallbackLimit(power_limit_kw=1.0)})


def test_partial_draw_can_be_worse_than_full_draw() -> None:
    """Two branches 150 degrees apart on L1 largely cancel at full draw; one car alone (the
    other paused or drawing less) loads L1 with its whole current. That must fit too."""
    conns = (
        Connector(
            "a", "n", 32.0, phases=1, wiring=Wiring.DELTA, voltage_v=208.0, phase_angle_deg=30.0
        ),
        Connector(
            "b", "n", 32.0, phases=1, wiring=Wiring.DELTA, voltage_v=208.0, phase_angle_deg=180.0
        ),
    )
    site = Site("x", (Node("n", None, (20.0, 200.0, 200.0)),), conns)
    cur = failsafe_currents(site)
    assert_safe(site, cur, exhaustive=True)
    assert max(cur.values()) <= 20.0  # full draw alone would allow ~38 A each


def test_zero_limit_node_gives_zero() -> None:
    site = Site("z", (Node("n", None, (0.0, 0.0, 0.0)),), (Connector("c", "n", 32.0),))
    assert failsafe_currents(site) == {"c": 0.0}


@st.composite
def sites(draw: st.DrawFn) -> Site:
    nodes = [
        Node(
            "n0",
            None,
            draw(st.one_of(st.none(), st.tuples(*[st.floats(0, 80)] * 3))),
            draw(st.one_of(st.none(), st.floats(0, 50))),
            (PhasorLimit("primary", (0.25, 0.0, -0.25), draw(st.floats(1, 30))),)
            if draw(st.booleans())
            else (),
        )
    ]
    for k in range(1, draw(st.integers(1, 3))):
        nodes.append(
            Node(
                f"n{k}", f"n{draw(st.integers(0, k - 1))}", draw(st.tuples(*[st.floats(0, 60)] * 3))
            )
        )
    conns = []
    for k in range(draw(st.integers(1, 6))):
        common = dict(
            id=f"c{k}",
            node=f"n{draw(st.integers(0, len(nodes) - 1))}",
            max_current_a=draw(st.sampled_from([16.0, 32.0])),
            phase_rotation=draw(st.sampled_from(["L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2"])),
        )
        kind = draw(st.sampled_from(["wye1", "wye3", "delta", "delta-angle"]))
        if kind.startswith("delta"):
            common.update(wiring=Wiring.DELTA, phases=1, voltage_v=208.0)
            if kind == "delta-angle":
                common.update(phase_angle_deg=draw(st.floats(-180, 180)))
        else:
            common.update(phases=1 if kind == "wye1" else 3)
        if draw(st.booleans()):
            conns.append(
                Connector(**common, min_current_a=8.0, allowed_currents_a=(0.0, 8.0, 16.0))
            )
        else:
            conns.append(Connector(**common, current_step_a=draw(st.sampled_from([0.0, 0.1, 1]))))
    return Site("h", tuple(nodes), tuple(conns))


@settings(max_examples=150, deadline=None)
@given(sites())
def test_random_sites_are_safe_in_every_vertex(site: Site) -> None:
    assert_safe(site, failsafe_currents(site), exhaustive=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("unit", ["A", "W"])
def test_render_failsafe_profiles(version: str, unit: str) -> None:
    site = eu_rotated_site()
    problem = Problem(site, (), NOW)
    caps = {
        c.id: ChargerCapabilities(version, unit, evse_id=k + 1, connector_id=k + 1)
        for k, c in enumerate(site.connectors)
    }
    cur = failsafe_currents(site)
    out = render_failsafe(problem, caps)
    assert len(out) == len(site.connectors)
    for r in out:
        assert schema_errors(r.payload, version) == []
        assert rule_errors(r.payload, version, 1) == []
        _, prof, (sch,) = parts(r.payload, version)
        assert r.kind is ProfileKind.FAILSAFE
        assert prof["chargingProfilePurpose"] == "TxDefaultProfile"
        assert prof["stackLevel"] == 0
        assert "validTo" not in prof and "duration" not in sch
        assert "maxOfflineDuration" not in prof  # must stay valid while offline
        (period,) = sch["chargingSchedulePeriod"]
        conn = next(c for c in site.connectors if c.id == r.connector)
        # W: a car of unknown phase count may be 1-phase, so W = A x V (x 1)
        allowed_a = period["limit"] / (1 if unit == "A" else conn.voltage_v)
        assert allowed_a <= cur[conn.id] + 1e-9
        assert allowed_a >= cur[conn.id] - 0.1 - 1e-9
        if unit == "W" and conn.phases == 3:
            assert r.warnings
