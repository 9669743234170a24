"""Durable store: round trips, reopen, identity rules, atomic failures, kill -9, threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.core.model import (
    ROTATIONS,
    CapacityLimit,
    Connector,
    CurtailmentEvent,
    Mode,
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
from optimizer.service.store import (
    SCHEMA_VERSION,
    AlreadyExists,
    NotFound,
    StaleModification,
    Store,
)

from ..paths import REPO

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
TABLES = ("schema_version", "sites", "sessions", "events", "capacity", "series")


# --- builders ------------------------------------------------------------------------------------


def make_site(site_id: str = "s1", connectors: tuple[str, ...] = ("c1", "c2")) -> Site:
    return Site(
        site_id,
        nodes=(
            Node("grid", power_limit_kw=100.0, phase_limit_a=(160.0, 160.0, 160.0),
                 phasor_limits=(PhasorLimit("primary", (0.25, 0.0, -0.25), 40.0),)),
            Node("panel", parent="grid", phase_limit_a=(63.0, 63.0, 63.0), voltage_v=240.0),
        ),
        connectors=tuple(
            Connector(cid, "panel", max_current_a=32.0) for cid in connectors
        ),
    )


def rich_site(site_id: str = "rich") -> Site:
    """Every optional field set to a non-default value."""
    return Site(
        site_id,
        nodes=(
            Node("grid", power_limit_kw=250.5, phase_limit_a=(400.0, 390.0, 380.0),
                 phasor_limits=(PhasorLimit("xfmr", (0.25, 0.0, -0.25), 55.5),
                                PhasorLimit("n", (1.0, 1.0, 1.0), 80.0)),
                 voltage_v=277.0),
            Node("p1", parent="grid"),
            Node("p2", parent="grid", power_limit_kw=22.0),
        ),
        connectors=(
            Connector("a", "p1", max_current_a=32.0, min_current_a=8.0, current_step_a=1.0,
                      phases=1, phase_rotation="L2L3L1", voltage_v=240.0),
            Connector("b", "p2", max_current_a=48.0, allowed_currents_a=(6.0, 10.0, 16.0),
                      wiring=Wiring.DELTA, phase_rotation="L3L1L2", voltage_v=208.0,
                      phase_angle_deg=-90.0, current_step_a=0.0),
        ),
    )


def make_session(sid: str, connector: str = "c1", arrival: datetime = T0, **kw: Any) -> Session:
    return Session(sid, connector, arrival, arrival + timedelta(hours=8), 20.0, **kw)


def make_event(eid: str, modification: int = 0, limit_kw: float | None = 50.0,
               start: datetime = T0, node: str = "grid", **kw: Any) -> CurtailmentEvent:
    return CurtailmentEvent(eid, node, start, start + timedelta(hours=2), limit_kw=limit_kw,
                            modification=modification, **kw)


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read by an independent connection (sees only committed data)."""
    conn = sqlite3.connect(path)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in TABLES}
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path) -> Any:
    s = Store(path)
    s.put_site(make_site(), Options())
    yield s
    s.close()


# --- file, schema, pragmas ---------------------------------------------------------------------


def test_new_file_has_schema_wal_and_durable_pragmas(path: Path) -> None:
    with Store(path) as s:
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    raw.close()
    Store(path).close()  # reopening does not add a second version row
    assert dump(path)["schema_version"] == [(SCHEMA_VERSION,)]


def test_unknown_schema_version_is_refused(path: Path) -> None:
    Store(path).close()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(RuntimeError, match="schema version"):
        Store(path)


def test_closed_store_refuses_calls(path: Path) -> None:
    s = Store(path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(sqlite3.ProgrammingError):
        s.list_sites()


# --- round trips ---------------------------------------------------------------------------------


def test_every_entity_round_trips_and_survives_reopen(path: Path) -> None:
    site = rich_site()
    options = Options(slot_minutes=5, horizon_hours=36.5, mode=Mode.LP, time_limit_s=1.7,
                      cost_weight=0.3, carbon_weight=2.5,
                      phasor_polygon_sides=48)
    cest = timezone(timedelta(hours=2))
    sessions = (
        make_session("v2", "a", T0, energy_delivered_kwh=3.25, vehicle_max_current_a=16.0,
                     vehicle_min_current_a=7.0, vehicle_max_power_kw=7.4, vehicle_phases=1,
                     priority=2.5, measured_current_a=15.8),
        make_session("v1", "b", datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=cest)),
    )
    events = (
        make_event("dr-1", modification=3, limit_kw=None, reduction_kw=12.5),
        make_event("dr-0", modification=2**64 - 1, start=T0 - timedelta(hours=1), node="p2"),
    )
    capacity = (
        CapacityLimit("grid", T0, T0 + timedelta(hours=1), limit_kw=80.0),
        CapacityLimit("grid", T0 + timedelta(hours=1), T0 + timedelta(hours=2),
                      phase_limit_a=(100.0, 90.0, 80.0)),
    )
    capacity_p1 = (CapacityLimit("p1", T0, T0 + timedelta(hours=4), limit_kw=11.0),)
    prices = (TimeValue(T0, T0 + timedelta(hours=1), 0.31), TimeValue(T0, T0, -0.02))
    carbon = (TimeValue(T0, T0 + timedelta(days=1), 412.0),)

    with Store(path) as s:
        assert s.put_site(site, options) is True
        for sess in sessions:
            s.add_session(site.id, sess)
        for ev in events:
            assert s.submit_event(site.id, ev) == "APPLIED"
        s.set_capacity(site.id, "p1", capacity_p1)
        s.set_capacity(site.id, "grid", capacity)
        s.set_prices(site.id, prices, carbon)

    # v1 arrives at 10:00:00.123456+02:00 = 08:00:00.123456Z, just after v2: order by instant
    by_arrival = (sessions[0], sessions[1])
    expected_signals = Signals(capacity=capacity + capacity_p1, prices=prices, carbon=carbon,
                               events=(events[1], events[0]))
    for _ in range(2):  # the second pass reads a store opened afresh on the same file
        with Store(path) as s:
            assert s.list_sites() == [site.id]
            got_site, got_options = s.get_site(site.id)
            assert got_site == site
            assert got_options == options
            assert type(got_options.slot_minutes) is int  # not 5.0: stored Durations read exactly
            got_sessions = s.sessions(site.id)
            assert got_sessions == by_arrival
            assert s.get_session(site.id, "v2") == sessions[0]
            assert s.events(site.id) == (events[1], events[0])
            assert s.signals(site.id) == expected_signals
            assert s.problem(site.id, T0) == Problem(site, got_sessions, T0, expected_signals,
                                                     options)


_TZ = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5,
                                                                               minutes=-30))])
_TIMES = st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=_TZ)
_F = st.floats(allow_nan=False, width=64)
_OPT_F = st.none() | _F
_ID = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
_THREE = st.tuples(_F, _F, _F)


@st.composite
def _state(draw: st.DrawFn) -> tuple[Site, Options, list[Session], list[CurtailmentEvent],
                                     list[CapacityLimit], list[TimeValue], list[TimeValue]]:
    node_ids = draw(st.lists(_ID, min_size=1, max_size=4, unique=True))
    nodes = tuple(
        Node(nid, parent=draw(st.none() | _ID), phase_limit_a=draw(st.none() | _THREE),
             power_limit_kw=draw(_OPT_F), voltage_v=draw(_F),
             phasor_limits=tuple(PhasorLimit(draw(_ID), draw(_THREE), draw(_F))
                                 for _ in range(draw(st.integers(0, 2)))))
        for nid in node_ids
    )
    conn_ids = draw(st.lists(_ID, min_size=1, max_size=4, unique=True))
    connectors = tuple(
        Connector(cid, draw(st.sampled_from(node_ids)), max_current_a=draw(_F),
                  min_current_a=draw(_F), current_step_a=draw(_F),
                  allowed_currents_a=tuple(draw(st.lists(_F, max_size=3))),
                  phases=draw(st.sampled_from([1, 3])),
                  phase_rotation=draw(st.sampled_from(ROTATIONS)),
                  wiring=draw(st.sampled_from(Wiring)), voltage_v=draw(_F),
                  phase_angle_deg=draw(_OPT_F))
        for cid in conn_ids
    )
    options = Options(
        slot_minutes=draw(st.integers(1, 60)),
        horizon_hours=draw(st.integers(1, 7 * 24 * 60)) / 60,
        mode=draw(st.sampled_from(Mode)),
        time_limit_s=draw(st.integers(1, 600_000)) / 1000,
        cost_weight=draw(_F), carbon_weight=draw(_F),
        phasor_polygon_sides=draw(st.integers(3, 64)),
    )
    sessions = [
        Session(sid, draw(st.sampled_from(conn_ids)), draw(_TIMES), draw(_TIMES), draw(_F),
                draw(_F), draw(_OPT_F), draw(_OPT_F), draw(_OPT_F),
                draw(st.none() | st.sampled_from([1, 3])), draw(_F), draw(_OPT_F))
        for sid in draw(st.lists(_ID, max_size=5, unique=True))
    ]
    events = [
        CurtailmentEvent(eid, draw(st.sampled_from(node_ids)), draw(_TIMES), draw(_TIMES),
                         draw(_OPT_F), draw(_OPT_F), draw(st.integers(0, 2**64 - 1)))
        for eid in draw(st.lists(_ID, max_size=4, unique=True))
    ]
    capacity = [
        CapacityLimit(draw(st.sampled_from(node_ids)), draw(_TIMES), draw(_TIMES),
                      draw(_OPT_F), draw(st.none() | _THREE))
        for _ in range(draw(st.integers(0, 4)))
    ]
    values = st.lists(st.builds(TimeValue, _TIMES, _TIMES, _F), max_size=3)
    site = Site(draw(_ID), nodes, connectors)
    return site, options, sessions, events, capacity, draw(values), draw(values)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=_state())
def test_random_state_round_trips(tmp_path: Path, state: Any) -> None:
    site, options, sessions, events, capacity, prices, carbon = state
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    by_node: dict[str, list[CapacityLimit]] = defaultdict(list)
    for c in capacity:
        by_node[c.node].append(c)
    with Store(path) as s:
        assert s.put_site(site, options)
        for sess in sessions:
            s.add_session(site.id, sess)
        for ev in events:
            assert s.submit_event(site.id, ev) == "APPLIED"
            assert s.submit_event(site.id, ev) == "UNCHANGED"
        for node, limits in by_node.items():
            s.set_capacity(site.id, node, tuple(limits))
        s.set_prices(site.id, tuple(prices), tuple(carbon))
    with Store(path) as s:
        assert s.get_site(site.id) == (site, options)
        assert s.sessions(site.id) == tuple(sorted(sessions, key=lambda x: (x.arrival, x.id)))
        for sess in sessions:
            assert s.get_session(site.id, sess.id) == sess
        assert s.signals(site.id) == Signals(
            capacity=tuple(c for n in sorted(by_node) for c in by_node[n]),
            prices=tuple(prices), carbon=tuple(carbon),
            events=tuple(sorted(events, key=lambda e: (e.start, e.id))),
        )


# --- sites ---------------------------------------------------------------------------------------


def test_put_site_creates_then_replaces_keeping_state(store: Store) -> None:
    store.add_session("s1", make_session("car"))
    store.submit_event("s1", make_event("dr"))
    store.set_prices("s1", (TimeValue(T0, T0 + timedelta(hours=1), 0.2),), None)
    wider = replace(make_site(connectors=("c1", "c2", "c3")))
    assert store.put_site(wider, Options(slot_minutes=5)) is False
    assert store.get_site("s1") == (wider, Options(slot_minutes=5))
    assert [s.id for s in store.sessions("s1")] == ["car"]
    assert [e.id for e in store.events("s1")] == ["dr"]
    assert len(store.signals("s1").prices) == 1
    # dropping a connector nobody is plugged into is fine
    assert store.put_site(make_site(connectors=("c1",)), Options()) is False
    assert store.list_sites() == ["s1"]


def test_put_site_refuses_to_orphan_sessions(store: Store, path: Path) -> None:
    store.add_session("s1", make_session("car-a", "c1"))
    store.add_session("s1", make_session("car-b", "c2"))
    before = dump(path)
    with pytest.raises(ValueError, match=r"'car-b' \(connector 'c2'\)") as info:
        store.put_site(make_site(connectors=("c1", "c9")), Options(slot_minutes=5))
    assert "car-a" not in str(info.value)
    assert dump(path) == before
    assert store.get_site("s1") == (make_site(), Options())


def test_list_sites_sorted(path: Path) -> None:
    with Store(path) as s:
        assert s.list_sites() == []
        for sid in ("b", "a", "c"):
            s.put_site(make_site(sid), Options())
        assert s.list_sites() == ["a", "b", "c"]


def test_delete_site_cascades_and_leaves_others(store: Store, path: Path) -> None:
    store.put_site(make_site("other"), Options())
    for sid in ("s1", "other"):
        store.add_session(sid, make_session("car"))
        store.submit_event(sid, make_event("dr", modification=4))
        store.submit_event(sid, make_event("gone", modification=1))
        store.cancel_event(sid, "gone")  # a tombstone row, must cascade too
        store.set_capacity(sid, "grid", (CapacityLimit("grid", T0, T0 + timedelta(hours=1),
                                                       limit_kw=9.0),))
        store.set_prices(sid, (TimeValue(T0, T0 + timedelta(hours=1), 0.2),),
                         (TimeValue(T0, T0 + timedelta(hours=1), 300.0),))
    store.delete_site("s1")
    rows = dump(path)
    assert [r[0] for r in rows["sites"]] == ["other"]
    for table in ("sessions", "events", "capacity", "series"):
        assert rows[table] and {r[0] for r in rows[table]} == {"other"}
    with pytest.raises(NotFound):
        store.get_site("s1")
    # a re-created site starts empty: old sessions, events and tombstones are gone
    assert store.put_site(make_site(), Options()) is True
    assert store.sessions("s1") == ()
    assert store.signals("s1") == Signals()
    assert store.submit_event("s1", make_event("gone", modification=0)) == "APPLIED"


# --- not found / already exists leave the file unchanged ----------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_site("nope"),
        lambda s: s.delete_site("nope"),
        lambda s: s.add_session("nope", make_session("x")),
        lambda s: s.replace_session("nope", make_session("car")),
        lambda s: s.replace_session("s1", make_session("nope")),
        lambda s: s.get_session("nope", "car"),
        lambda s: s.get_session("s1", "nope"),
        lambda s: s.remove_session("nope", "car"),
        lambda s: s.remove_session("s1", "nope"),
        lambda s: s.sessions("nope"),
        lambda s: s.submit_event("nope", make_event("dr")),
        lambda s: s.cancel_event("nope", "dr"),
        lambda s: s.cancel_event("s1", "nope"),
        lambda s: s.events("nope"),
        lambda s: s.set_capacity("nope", "grid", ()),
        lambda s: s.set_prices("nope", (), None),
        lambda s: s.signals("nope"),
        lambda s: s.problem("nope", T0),
    ],
)
def test_not_found_leaves_state_unchanged(store: Store, path: Path, call: Any) -> None:
    store.add_session("s1", make_session("car"))
    store.submit_event("s1", make_event("dr"))
    before = dump(path)
    with pytest.raises(NotFound, match="not"):
        call(store)
    assert dump(path) == before


def test_duplicate_session_is_refused_and_keeps_the_first(store: Store, path: Path) -> None:
    first = make_session("car", energy_delivered_kwh=1.0)
    store.add_session("s1", first)
    before = dump(path)
    with pytest.raises(AlreadyExists, match="'car' is already active on site 's1'"):
        store.add_session("s1", make_session("car", "c2", energy_delivered_kwh=9.0))
    assert dump(path) == before
    assert store.get_session("s1", "car") == first
    # the same id on another site is a different session
    store.put_site(make_site("s2"), Options())
    store.add_session("s2", make_session("car"))


def test_session_on_unknown_connector_is_refused(store: Store, path: Path) -> None:
    store.add_session("s1", make_session("car"))
    before = dump(path)
    with pytest.raises(ValueError, match="no connector 'c9'"):
        store.add_session("s1", make_session("other", "c9"))
    with pytest.raises(ValueError, match="no connector 'c9'"):
        store.replace_session("s1", make_session("car", "c9"))
    assert dump(path) == before


def test_sessions_ordered_replaced_and_removed(store: Store) -> None:
    late = make_session("a", arrival=T0 + timedelta(hours=1))
    early_b = make_session("b", arrival=T0)
    early_a = make_session("a2", arrival=T0)
    for sess in (late, early_b, early_a):
        store.add_session("s1", sess)
    assert [s.id for s in store.sessions("s1")] == ["a2", "b", "a"]
    moved = replace(late, arrival=T0 - timedelta(hours=1), connector="c2", priority=3.0)
    store.replace_session("s1", moved)
    assert store.sessions("s1") == (moved, early_a, early_b)
    store.remove_session("s1", "a")
    assert store.sessions("s1") == (early_a, early_b)
    store.add_session("s1", late)  # a stopped session's id may start again
    assert store.get_session("s1", "a") == late


# --- events --------------------------------------------------------------------------------------


def test_event_modification_rules(store: Store, path: Path) -> None:
    v1 = make_event("dr", modification=1, limit_kw=40.0)
    assert store.submit_event("s1", v1) == "APPLIED"
    assert store.submit_event("s1", v1) == "UNCHANGED"
    # the same instant written in another time zone is the same content
    same = replace(v1, start=v1.start.astimezone(timezone(timedelta(hours=3))))
    assert store.submit_event("s1", same) == "UNCHANGED"

    v3 = make_event("dr", modification=3, limit_kw=None, reduction_kw=10.0)
    assert store.submit_event("s1", v3) == "APPLIED"
    assert store.events("s1") == (v3,)

    before = dump(path)
    with pytest.raises(StaleModification, match="modification 2 is older than the stored "
                                                "modification 3"):
        store.submit_event("s1", make_event("dr", modification=2))
    with pytest.raises(StaleModification, match="modification 3 already holds different"):
        store.submit_event("s1", replace(v3, reduction_kw=11.0))
    assert dump(path) == before
    assert store.events("s1") == (v3,)


def test_cancelled_event_is_not_resurrected_by_a_retry(store: Store, path: Path) -> None:
    v2 = make_event("dr", modification=2)
    store.submit_event("s1", v2)
    store.cancel_event("s1", "dr")
    assert store.events("s1") == ()
    assert store.signals("s1").events == ()
    before = dump(path)
    for late in (v2, make_event("dr", modification=1)):
        with pytest.raises(StaleModification, match="cancelled at modification 2"):
            store.submit_event("s1", late)
    with pytest.raises(NotFound):
        store.cancel_event("s1", "dr")
    assert dump(path) == before
    v5 = make_event("dr", modification=5, limit_kw=20.0)
    assert store.submit_event("s1", v5) == "APPLIED"
    assert store.events("s1") == (v5,)


def test_events_ordered_by_start_then_id(store: Store) -> None:
    evs = [make_event("z", start=T0), make_event("b", start=T0 + timedelta(hours=1)),
           make_event("a", start=T0)]
    for ev in evs:
        store.submit_event("s1", ev)
    assert [e.id for e in store.events("s1")] == ["a", "z", "b"]
    # a superseding modification that moves the event moves it in the order too
    store.submit_event("s1", make_event("b", modification=1, start=T0 - timedelta(hours=1)))
    assert [e.id for e in store.events("s1")] == ["b", "a", "z"]


# --- signals -------------------------------------------------------------------------------------


def test_capacity_is_replaced_per_node(store: Store, path: Path) -> None:
    g1 = (CapacityLimit("grid", T0, T0 + timedelta(hours=1), limit_kw=50.0),)
    g2 = (CapacityLimit("grid", T0, T0 + timedelta(hours=2), limit_kw=60.0),
          CapacityLimit("grid", T0 + timedelta(hours=2), T0 + timedelta(hours=3),
                        phase_limit_a=(10.0, 20.0, 30.0)))
    p = (CapacityLimit("panel", T0, T0 + timedelta(hours=1), limit_kw=5.0),)
    store.set_capacity("s1", "grid", g1)
    store.set_capacity("s1", "panel", p)
    store.set_capacity("s1", "grid", g2)
    assert store.signals("s1").capacity == g2 + p
    store.set_capacity("s1", "grid", ())
    assert store.signals("s1").capacity == p
    before = dump(path)
    with pytest.raises(ValueError, match="other nodes: 'grid'"):
        store.set_capacity("s1", "panel", p + g1)
    assert dump(path) == before


def test_prices_none_leaves_empty_clears(store: Store) -> None:
    prices = (TimeValue(T0, T0 + timedelta(hours=1), 0.25),)
    carbon = (TimeValue(T0, T0 + timedelta(hours=1), 350.0),)
    store.set_prices("s1", prices, carbon)
    new_prices = (TimeValue(T0, T0 + timedelta(hours=1), 0.5),)
    store.set_prices("s1", new_prices, None)
    assert store.signals("s1") == Signals(prices=new_prices, carbon=carbon)
    store.set_prices("s1", None, ())
    assert store.signals("s1") == Signals(prices=new_prices)
    store.set_prices("s1", None, None)
    assert store.signals("s1") == Signals(prices=new_prices)
    store.set_prices("s1", (), None)
    assert store.signals("s1") == Signals()


# --- durability and concurrency ------------------------------------------------------------------

_WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from optimizer.core.model import CurtailmentEvent
from optimizer.service.store import Store

store = Store(sys.argv[1])
t0 = datetime(2024, 3, 1, tzinfo=UTC)
for i in range(1_000_000):
    eid = f"e{i}"
    store.submit_event("s1", CurtailmentEvent(eid, "grid", t0, t0 + timedelta(hours=1),
                                              limit_kw=float(i)))
    print(eid, flush=True)  # acknowledged only once the call has returned
"""


def test_acknowledged_events_survive_sigkill(path: Path) -> None:
    with Store(path) as s:
        s.put_site(make_site(), Options())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: list[str] = []
    try:
        assert proc.stdout is not None
        while len(acked) < 150:
            line = proc.stdout.readline()
            assert line.endswith("\n"), f"writer died early: {proc.stderr.read()}"  # type: ignore[union-attr]
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-way, not finished
    acked += [line for line in rest.split("\n")[:-1] if line]  # complete lines only
    assert acked == [f"e{i}" for i in range(len(acked))]

    with Store(path) as s:
        stored = [e.id for e in s.events("s1")]
    # every acknowledged event is there; at most the one in flight at the kill also made it
    assert sorted(stored, key=lambda e: int(e[1:])) == [
        f"e{i}" for i in range(len(stored))
    ]
    assert len(acked) <= len(stored) <= len(acked) + 1


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []
    outcomes: list[str] = []

    def writer(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                store.add_session("s1", make_session(f"t{k}-{i}", ("c1", "c2")[i % 2],
                                                     T0 + timedelta(minutes=i)))
                store.submit_event("s1", make_event(f"t{k}-{i}"))
                # all threads race on one event; modifications are distinct across threads
                try:
                    outcomes.append(store.submit_event(
                        "s1", make_event("shared", modification=i * threads + k)))
                except StaleModification:
                    outcomes.append("STALE")
                store.problem("s1", T0)  # readers interleave with writers
        except BaseException as exc:  # surfaced below, a thread cannot fail the test itself
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    for t in pool:
        t.join()
    assert errors == []
    expected = {f"t{k}-{i}" for k in range(threads) for i in range(per_thread)}
    assert {s.id for s in store.sessions("s1")} == expected
    events = {e.id: e for e in store.events("s1")}
    assert set(events) == expected | {"shared"}
    assert events["shared"].modification == threads * per_thread - 1
    assert "APPLIED" in outcomes and "UNCHANGED" not in outcomes
    assert len(outcomes) == threads * per_thread


def test_two_stores_on_one_file_see_each_others_writes(path: Path) -> None:
    with Store(path) as a, Store(path) as b:
        a.put_site(make_site(), Options())
        b.add_session("s1", make_session("car"))
        with pytest.raises(AlreadyExists):
            a.add_session("s1", make_session("car"))
        assert a.sessions("s1") == b.sessions("s1") == (make_session("car"),)
