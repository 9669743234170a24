"""The protocol-neutral grid signal: hand-computed mappings and every rejection named by path."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from optimizer.core.grid_signal import (
    MAX_INTERVALS,
    GridSignal,
    Measure,
    SignalInterval,
    interval_ids,
    signal_capacity,
    signal_events,
    validate_signal,
)
from optimizer.core.model import Node
from optimizer.core.validate import ValidationError

T0 = datetime(2026, 12, 4, 12, tzinfo=UTC)
H = timedelta(hours=1)
#: 3 x 32 A at 230 V: baseline 22.08 kW from the phase limits (no power limit).
PANEL = Node("panel", None, (32.0, 32.0, 32.0), None, (), 230.0)
GRID = Node("grid", None, None, 40.0)
NODES = {"panel": PANEL, "grid": GRID, "bare": Node("bare", None)}


def sig(measure: Measure, *values: float, node: str = "grid", **kw: object) -> GridSignal:
    ivs = tuple(SignalInterval(T0 + k * H, T0 + (k + 1) * H, v) for k, v in enumerate(values))
    return GridSignal(str(kw.pop("source", "openadr3")), str(kw.pop("id", "ev1")),
                      int(kw.pop("modification", 2)), node, measure, ivs, **kw)  # type: ignore[arg-type]


def paths(signal: GridSignal) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        validate_signal(signal, NODES)
    return [v.field for v in exc.value.violations]


def test_kw_limit_intervals_become_one_event_each() -> None:
    s = sig(Measure.LIMIT_KW, 25.0, 10.0)
    validate_signal(s, NODES)
    evs = signal_events(s, GRID)
    assert [e.id for e in evs] == ["openadr3:ev1#0", "openadr3:ev1#1"]
    assert [(e.limit_kw, e.reduction_kw) for e in evs] == [(25.0, None), (10.0, None)]
    assert [(e.start, e.end) for e in evs] == [(T0, T0 + H), (T0 + H, T0 + 2 * H)]
    assert {e.modification for e in evs} == {2} and {e.node for e in evs} == {"grid"}


def test_reduction_and_share_of_the_baseline() -> None:
    (red,) = signal_events(sig(Measure.REDUCTION_KW, 5.0), GRID)
    assert (red.limit_kw, red.reduction_kw) == (None, 5.0)
    (share,) = signal_events(sig(Measure.SHARE, 0.25, node="panel"), PANEL)
    assert share.limit_kw == pytest.approx(0.25 * 3 * 32 * 230 / 1000)  # 5.52 kW
    (g,) = signal_events(sig(Measure.SHARE, 0.5), GRID)
    assert g.limit_kw == 20.0


def test_phase_current_caps_only_the_named_phases() -> None:
    s = sig(Measure.PHASE_LIMIT_A, 20.0, 40.0, node="panel", phases=(1,))
    validate_signal(s, NODES)
    caps = signal_capacity(s, PANEL)
    assert [c.phase_limit_a for c in caps] == [(32.0, 20.0, 32.0), (32.0, 32.0, 32.0)]
    assert all(c.limit_kw is None for c in caps)
    with pytest.raises(ValueError, match="signal_capacity"):
        signal_events(s, PANEL)


def test_kw_signals_as_capacity_limits() -> None:
    caps = signal_capacity(sig(Measure.REDUCTION_KW, 15.0, 50.0), GRID)
    assert [c.limit_kw for c in caps] == [25.0, 0.0]


def test_interval_ids_name_the_dropped_tail() -> None:
    assert interval_ids("oscp", "g", 4, first=2) == ["oscp:g#2", "oscp:g#3"]


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        (sig(Measure.LIMIT_KW, math.nan), ["intervals[0].value"]),
        (sig(Measure.LIMIT_KW, -1.0), ["intervals[0].value"]),
        (sig(Measure.LIMIT_KW, math.inf), ["intervals[0].value"]),
        (sig(Measure.SHARE, 1.5), ["intervals[0].value"]),
        (sig(Measure.LIMIT_KW, 5.0, node="nowhere"), ["node"]),
        (sig(Measure.LIMIT_KW), ["intervals"]),
        (sig(Measure.LIMIT_KW, 5.0, id=""), ["id"]),
        (sig(Measure.LIMIT_KW, 5.0, source="open adr"), ["source"]),
        (sig(Measure.LIMIT_KW, 5.0, modification=-1), ["modification"]),
        (sig(Measure.REDUCTION_KW, 5.0, node="bare"), ["measure"]),
        (sig(Measure.PHASE_LIMIT_A, 5.0, node="grid"), ["measure"]),
        (sig(Measure.PHASE_LIMIT_A, 5.0, node="panel", phases=(0, 0)), ["phases"]),
        (sig(Measure.PHASE_LIMIT_A, 5.0, node="panel", phases=(3,)), ["phases"]),
    ],
)
def test_hostile_signals_are_named(signal: GridSignal, expected: list[str]) -> None:
    assert paths(signal) == expected


def test_overlapping_backwards_and_naive_intervals() -> None:
    ivs = (SignalInterval(T0, T0 + 2 * H, 1.0), SignalInterval(T0 + H, T0 + 3 * H, 1.0),
           SignalInterval(T0 + 4 * H, T0 + 4 * H, 1.0),
           SignalInterval(datetime(2026, 12, 4, 20), datetime(2026, 12, 4, 21), 1.0))
    s = GridSignal("oscp", "x", 0, "grid", Measure.LIMIT_KW, ivs)
    assert paths(s) == ["intervals[1].start", "intervals[2].end", "intervals[3]"]


def test_huge_documents_stop_at_the_count() -> None:
    iv = SignalInterval(T0, T0 + H, 1.0)
    s = GridSignal("oscp", "x", 0, "grid", Measure.LIMIT_KW, (iv,) * (MAX_INTERVALS + 1))
    assert paths(s) == ["intervals"]
