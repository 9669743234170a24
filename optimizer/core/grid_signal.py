"""Grid signals in protocol-neutral terms, and the one place they become the planner's limits.

OpenADR 2.0b and 3, OSCP and the project's own gRPC API all say the same few things: "from
``start`` to ``end`` this node may import at most X kW", "... X kW less than usual", "... a share
of its capacity" or "... X A on these phases", per interval, under an id and a modification
number. Protocol adapters (``optimizer.grid``) parse their own payloads into a
:class:`GridSignal`; :func:`signal_events` and :func:`signal_capacity` turn it into the core's
:class:`~optimizer.core.model.CurtailmentEvent` / :class:`~optimizer.core.model.CapacityLimit`,
which the planner already honours. Nothing here knows a protocol.

Ids: interval ``k`` of signal ``id`` from ``source`` is the event ``"{source}:{id}#{k}"``, so
signals from different protocols never collide and a modification that drops intervals knows which
events to cancel (:func:`interval_ids`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from .compile import baseline_kw
from .model import CapacityLimit, CurtailmentEvent, Node
from .validate import FieldViolation, ValidationError

#: More intervals than a week of 1-minute slots is not a demand-response event but an attack.
MAX_INTERVALS = 10_080
#: A signal further out than this is not planned against yet (the planner's horizon is shorter).
MAX_SPAN = timedelta(days=31)
MAX_KW = 1e6
MAX_A = 1e5
MAX_ID_LEN = 200


class Measure(StrEnum):
    """What an interval's value means."""

    LIMIT_KW = "limit_kw"  # absolute import cap in kW
    REDUCTION_KW = "reduction_kw"  # kW below the node's baseline capacity
    SHARE = "share"  # fraction in [0, 1] of the node's baseline capacity
    PHASE_LIMIT_A = "phase_limit_a"  # amperes on each of ``phases``


@dataclass(frozen=True)
class SignalInterval:
    start: datetime
    end: datetime
    value: float


@dataclass(frozen=True)
class GridSignal:
    """One demand-response signal on one node, as every protocol can express it.

    ``phases`` (0-based site phases) only matters for :attr:`Measure.PHASE_LIMIT_A`.
    """

    source: str
    id: str
    modification: int
    node: str
    measure: Measure
    intervals: tuple[SignalInterval, ...]
    phases: tuple[int, ...] = (0, 1, 2)


def interval_ids(source: str, signal_id: str, count: int, first: int = 0) -> list[str]:
    """Event ids of intervals ``first`` .. ``count - 1`` of a signal."""
    return [f"{source}:{signal_id}#{k}" for k in range(first, count)]


def validate_signal(signal: GridSignal, nodes: dict[str, Node]) -> None:
    """Raise :class:`ValidationError` naming every bad field (``intervals[2].value: ...``)."""
    bad: list[FieldViolation] = []

    def add(path: str, reason: str) -> None:
        bad.append(FieldViolation(path, reason))

    if not signal.source or not signal.source.isidentifier():
        add("source", "must be a short protocol name (letters, digits, _)")
    if not signal.id or len(signal.id) > MAX_ID_LEN or not signal.id.isprintable():
        add("id", f"must be 1 to {MAX_ID_LEN} printable characters")
    if not 0 <= signal.modification < 2**63:
        add("modification", "must be an integer from 0 to 2^63-1")
    node = nodes.get(signal.node)
    if node is None:
        add("node", f"unknown node {signal.node!r}")
    if not signal.intervals:
        add("intervals", "must hold at least one interval")
    if len(signal.intervals) > MAX_INTERVALS:
        add("intervals", f"at most {MAX_INTERVALS} intervals, got {len(signal.intervals)}")
        raise ValidationError(bad)
    if signal.measure is Measure.PHASE_LIMIT_A and (
        not signal.phases or len(set(signal.phases)) != len(signal.phases)
        or any(p not in (0, 1, 2) for p in signal.phases)
    ):
        add("phases", "must name distinct phases among L1, L2, L3")
    hi = {Measure.SHARE: 1.0, Measure.PHASE_LIMIT_A: MAX_A}.get(signal.measure, MAX_KW)
    for k, iv in enumerate(signal.intervals):
        p = f"intervals[{k}]"
        if iv.start.tzinfo is None or iv.end.tzinfo is None:
            add(p, "start and end must carry a time zone")
            continue
        if not iv.end > iv.start:
            add(f"{p}.end", "must be after start")
        elif iv.end - iv.start > MAX_SPAN:
            add(f"{p}.end", f"an interval may span at most {MAX_SPAN.days} days")
        if not (isinstance(iv.value, int | float) and math.isfinite(iv.value)):
            add(f"{p}.value", f"must be a finite number, got {iv.value!r}")
        elif not 0.0 <= iv.value <= hi:
            add(f"{p}.value", f"must be between 0 and {hi:g}, got {iv.value:g}")
        prev = signal.intervals[k - 1] if k else None
        if prev is not None and prev.end.tzinfo is not None and prev.end > iv.start:
            add(f"{p}.start", "overlaps the previous interval (intervals must be in time order)")
    if node is not None and signal.measure in (Measure.REDUCTION_KW, Measure.SHARE) \
            and baseline_kw(node) is None:
        add("measure", f"node {signal.node!r} has no power or phase limit to take a "
                       f"{signal.measure.value} from")
    if node is not None and signal.measure is Measure.PHASE_LIMIT_A and node.phase_limit_a is None:
        add("measure", f"node {signal.node!r} has no phase limits; a per-phase limit on only some "
                       "phases needs the others")
    if bad:
        raise ValidationError(bad)


def signal_events(signal: GridSignal, node: Node) -> tuple[CurtailmentEvent, ...]:
    """One curtailment event per interval (kW, reduction and share measures)."""
    if signal.measure is Measure.PHASE_LIMIT_A:
        raise ValueError("a per-phase current limit is a capacity limit: use signal_capacity")
    base = baseline_kw(node)
    ids = interval_ids(signal.source, signal.id, len(signal.intervals))
    out = []
    for eid, iv in zip(ids, signal.intervals, strict=True):
        limit = reduction = None
        if signal.measure is Measure.LIMIT_KW:
            limit = float(iv.value)
        elif signal.measure is Measure.REDUCTION_KW:
            reduction = float(iv.value)
        else:
            assert base is not None, "validate_signal first"
            limit = math.floor(float(iv.value) * base * 1e6) / 1e6  # never above the share
        out.append(CurtailmentEvent(eid, signal.node, iv.start, iv.end, limit, reduction,
                                    signal.modification))
    return tuple(out)


def signal_capacity(signal: GridSignal, node: Node) -> tuple[CapacityLimit, ...]:
    """Capacity limits for a per-phase current signal; unnamed phases keep the node's own limit.

    Other measures map too (kW caps as ``limit_kw``), for protocols that send forecasts rather
    than events.
    """
    out = []
    for iv in signal.intervals:
        if signal.measure is Measure.PHASE_LIMIT_A:
            assert node.phase_limit_a is not None, "validate_signal first"
            own = node.phase_limit_a
            phases = tuple(min(float(iv.value), own[p]) if p in signal.phases else own[p]
                           for p in range(3))
            out.append(CapacityLimit(signal.node, iv.start, iv.end, phase_limit_a=(
                phases[0], phases[1], phases[2])))
        else:
            (ev,) = signal_events(
                GridSignal(signal.source, signal.id, signal.modification, signal.node,
                           signal.measure, (iv,)), node)
            base = baseline_kw(node)
            kw = ev.limit_kw if ev.limit_kw is not None else max(
                0.0, (base or 0.0) - (ev.reduction_kw or 0.0))
            out.append(CapacityLimit(signal.node, iv.start, iv.end, limit_kw=kw))
    return tuple(out)
