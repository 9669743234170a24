"""A node's EV import as the service's plans and sessions say it, for every grid adapter's reports.

The service's plan gives a current per connector over time (``Plan.profiles``: change points, A
per phase). The node's planned import at ``t`` is the sum over the connectors below the node
(its own and its descendants') of ``current(t) x kW per A``, with the core's
:func:`~optimizer.core.model.kw_per_amp`: WYE ``voltage x phases``, DELTA ``line-to-line
voltage`` (one branch). The plan does not say how many phases each car draws on, so a 1-phase
car on a 3-phase connector counts as 3-phase: the figure is an upper bound then, exact for the
usual 3-phase cars. It is the EV load the plan schedules; other loads behind the node are not
known to the optimizer.

The node's measured import is the sum over the active sessions (``ListSessions``) on connectors
below the node that have a ``measured_current_a`` of ``measured A x kW per A``, given the
session (so a car known to draw on fewer phases than its connector counts with those). It is
the sum of what was reported, as last reported: a session without a measurement adds nothing
and is not estimated; with no measured session at all there is no figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..api.convert import _Errors, session_from_proto
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core.model import Connector, Site, kw_per_amp


@dataclass(frozen=True)
class NodeLoad:
    """kW per A (and the connector itself) of every connector below one node."""

    node: str
    kw_per_a: dict[str, float]
    connectors: dict[str, Connector] = field(default_factory=dict)

    @classmethod
    def of(cls, site: Site, node: str) -> NodeLoad:
        parent = {n.id: n.parent for n in site.nodes}
        if node not in parent:
            raise KeyError(f"site {site.id!r} has no node {node!r}")

        def below(n: str | None) -> bool:
            seen = set()
            while n is not None and n not in seen:
                if n == node:
                    return True
                seen.add(n)
                n = parent.get(n)
            return False

        conns = {c.id: c for c in site.connectors if below(c.node)}
        return cls(node, {k: kw_per_amp(c, None) for k, c in conns.items()}, conns)


def _t(ts: object) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)  # type: ignore[attr-defined, no-any-return]


def current_at(profile: pb.ConnectorProfile, t: datetime) -> float:
    """A per phase a profile holds at ``t`` (0 before its first point)."""
    value = 0.0
    for p in profile.points:
        if _t(p.start) > t:
            break
        value = p.current_a
    return value


def planned_kw(plan: pb.Plan, load: NodeLoad, t: datetime) -> float:
    """The node's planned import at ``t`` in kW (0 past the plan's end)."""
    if plan.HasField("end") and t >= _t(plan.end):
        return 0.0
    return sum(current_at(p, t) * load.kw_per_a[p.connector] for p in plan.profiles
               if p.connector in load.kw_per_a)


def measured_kw(sessions: Iterable[pb.Session], load: NodeLoad) -> float | None:
    """The node's measured import in kW: measured A x kW per A summed over the sessions below
    the node that have a measurement; None when none of them has one."""
    total: float | None = None
    for s in sessions:
        conn = load.connectors.get(s.connector)
        if conn is None or not s.HasField("measured_current_a"):
            continue
        session = session_from_proto(s, "session", _Errors())  # only vehicle_phases is used
        total = (total or 0.0) + s.measured_current_a * kw_per_amp(conn, session)
    return total


def mean_planned_kw(plan: pb.Plan, load: NodeLoad, a: datetime, b: datetime) -> float | None:
    """The node's mean planned import over [a, b) in kW, over the part of it inside the plan's
    [start, end); None when the plan does not reach it."""
    lo, hi = max(a, _t(plan.start)), min(b, _t(plan.end))
    if hi <= lo:
        return None
    kwh = 0.0
    for prof in plan.profiles:
        k = load.kw_per_a.get(prof.connector)
        if k is None:
            continue
        pts = [(_t(p.start), p.current_a) for p in prof.points]
        for i, (s, amps) in enumerate(pts):
            e = pts[i + 1][0] if i + 1 < len(pts) else hi
            s2, e2 = max(s, lo), min(e, hi)
            if e2 > s2:
                kwh += amps * k * (e2 - s2).total_seconds() / 3600
    return kwh / ((hi - lo).total_seconds() / 3600)
