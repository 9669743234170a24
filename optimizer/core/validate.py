"""Input validation: reject what the optimizer cannot plan safely, naming every bad field.

``compile_problem`` trusts its input (known references, an acyclic tree, finite numbers, aware
times), so everything a client sends passes through ``validate`` first. Each rule guards one such
assumption or a physical sanity bound; the reason text says which. Paths use the protobuf field
names (``sessions[3].departure``, ``site.nodes[2].phase_limit_a[1]``) so a gRPC client sees the
field it sent; options use the domain names (``options.slot_minutes``), which
``optimizer.api.convert`` maps to the wire names.

Validation never raises anything but ``ValidationError``, whatever the values and their types
(NaN, infinities, a ``str`` where a float belongs, ``None`` where a value is required).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from .compile import slot_edges
from .model import (
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

__all__ = [
    "MAX_CURRENT_A",
    "MAX_ENERGY_KWH",
    "MAX_MAGNITUDE",
    "FieldViolation",
    "Limits",
    "ValidationError",
    "validate",
    "validate_site",
]

#: Largest per-phase current of a connector or vehicle: no AC charging hardware comes close, so a
#: bigger number is a unit mistake (mA for A).
MAX_CURRENT_A = 1000.0
#: Finest current grid (A) other than 0 (= continuous): chargers resolve 0.1 A at best, and a
#: finer step only makes the grid arithmetic (current / step) overflow.
MIN_CURRENT_STEP_A = 0.01
#: Voltage range (V): IEC 60449 band II, low-voltage AC mains, where every EV charger lives. The
#: floor also keeps kW per A (voltage / 1000) from underflowing to 0, which compile divides by.
MIN_VOLTAGE_V = 50.0
MAX_VOLTAGE_V = 1000.0
#: Largest energy of one session (kWh): above the biggest vehicle batteries (heavy trucks carry
#: ~900 kWh), so a bigger number is a unit mistake (Wh for kWh: 60 kWh sent as 60000).
MAX_ENERGY_KWH = 1000.0
#: Largest session priority: weights are relative, and a bigger spread only ruins LP scaling.
MAX_PRIORITY = 1000.0
#: Bound on the magnitude of any other number (limits, prices, weights, coefficients): far above
#: anything physical, yet products and sums of such values stay finite and well inside HiGHS's
#: 1e20 "infinity", so a huge value cannot turn into inf or an unbounded LP downstream.
MAX_MAGNITUDE = 1e9
MAX_HORIZON_HOURS = 168.0  # one week: signals and departures are not known further ahead
MAX_TIME_LIMIT_S = 600.0  # a request holds a worker; ten minutes is already a batch job
SLOT_MINUTES = (1, 60)
POLYGON_SIDES = (8, 256)  # below 8 the LP's phasor polygon is too coarse; above 256 only slower
MAX_MODIFICATION = 2**64 - 1  # proto uint64

_REAL = (int, float, np.integer, np.floating)
_INT = (int, np.integer)


@dataclass(frozen=True)
class FieldViolation:
    """One bad field, shaped like ``google.rpc.BadRequest.FieldViolation``."""

    field: str  # path in the request, e.g. "sessions[3].departure"
    description: str  # why it is rejected


class ValidationError(ValueError):
    """A request the optimizer refuses, with every violation found (gRPC: INVALID_ARGUMENT)."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        super().__init__(self.violations)

    def __str__(self) -> str:
        return "\n".join(f"{v.field}: {v.description}" for v in self.violations)


@dataclass(frozen=True)
class Limits:
    """Size bounds per request: each keeps one request's memory and solve time bounded.

    A request over any size bound is rejected with only the size violations, without looking at
    its elements: validating a million entries would itself be the denial of service.
    """

    #: Nodes: compile walks every node for every capacity entry and event.
    max_nodes: int = 10_000
    #: Connectors: one profile each in the plan.
    max_connectors: int = 50_000
    #: Sessions: one row of every [sessions x slots] array.
    max_sessions: int = 50_000
    #: Slots (horizon / slot length, as ``compile.slot_edges`` cuts them): one column of every
    #: array and LP variable block.
    max_slots: int = 2_000
    #: Curtailment events: each one is applied to every slot of its node.
    max_events: int = 10_000
    #: Capacity, price and carbon entries together: each is averaged over every slot.
    max_signal_entries: int = 100_000
    #: sessions x slots, and limit rows x slots: the size of the dense arrays the solvers hold
    #: (20M float64 cells are 160 MB per array).
    max_cells: int = 20_000_000
    #: Levels below the root: compile walks each session's connector up to the root, and every
    #: level adds the session to more limit rows (a 10,000-deep chain is O(sessions x nodes)).
    max_tree_depth: int = 64
    #: Phasor limits per node: each adds one or more limit rows.
    max_phasor_limits: int = 32
    #: Allowed currents per connector: they are copied per session into the level table.
    max_allowed_currents: int = 1_000
    #: Characters of an id or name: they are echoed in plans, warnings and error details.
    max_id_length: int = 256


def validate(problem: Problem, limits: Limits = Limits()) -> None:
    """Check a whole request; raise ``ValidationError`` listing every violation found."""
    ck = _Check(limits)
    ck.sizes(problem)
    if ck.out:
        raise ValidationError(ck.out)
    if not isinstance(problem, Problem):
        raise ValidationError([FieldViolation("problem", _expected("a Problem", problem))])
    site = ck.site(problem.site, "site")
    sessions = ck.sessions(problem.sessions, site)
    ck.signals(problem.signals, site)
    now = ck.aware("now", problem.now)
    ck.options(problem, now, sessions, site)
    if ck.out:
        raise ValidationError(ck.out)


def validate_site(site: Site, limits: Limits = Limits()) -> None:
    """Check a site on its own (a registry stores sites without sessions); paths start ``site.``."""
    ck = _Check(limits)
    ck.site_sizes(site)
    if not ck.out:
        ck.site(site, "site")
    if ck.out:
        raise ValidationError(ck.out)


# --- internals ---------------------------------------------------------------------------------


@dataclass
class _SiteIndex:
    """What later checks need from the site. ``None`` maps: the list was unreadable."""

    nodes: dict[str, Node] | None
    connectors: dict[str, Connector] | None
    parent_of: dict[str, str | None]
    acyclic: bool


@dataclass(frozen=True)
class _Stay:
    index: int
    id: str
    connector: str
    arrival: datetime
    departure: datetime


def _g(x: float) -> str:
    return f"{x:g}"


def _expected(what: str, value: object) -> str:
    return f"must be {what}, got {type(value).__name__}"


def _seq_len(value: object) -> int | None:
    return len(value) if isinstance(value, tuple | list) else None


def _show(value: object, width: int = 40) -> str:
    """A short repr for messages: a hostile value must not blow up the error text."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ is still just a bad value
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[: width - 3] + "..."


class _Check:
    """Collects violations; each check returns the clean value or ``None`` when it is bad."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.out: list[FieldViolation] = []

    def add(self, path: str, reason: str) -> None:
        self.out.append(FieldViolation(path, reason))

    # --- scalars ---------------------------------------------------------------------------

    def number(
        self,
        path: str,
        value: object,
        *,
        lo: float = -MAX_MAGNITUDE,
        lo_open: bool = False,
        hi: float = MAX_MAGNITUDE,
        optional: bool = False,
    ) -> float | None:
        """A finite real in [lo, hi] (or (lo, hi]); NaN and infinities are never valid."""
        if value is None:
            if not optional:
                self.add(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, _REAL):
            self.add(path, _expected("a number", value))
            return None
        try:
            x = float(value)
        except OverflowError:
            self.add(path, "must be finite, got an integer too large for a float")
            return None
        if not math.isfinite(x):
            self.add(path, f"must be finite, got {x}")
            return None
        if x < lo or (lo_open and x == lo):
            self.add(path, f"must be {'>' if lo_open else '>='} {_g(lo)}, got {_g(x)}")
            return None
        if x > hi:
            self.add(path, f"must be <= {_g(hi)}, got {_g(x)}")
            return None
        return x

    def integer(
        self, path: str, value: object, lo: int, hi: int, *, unit: str = "", optional: bool = False
    ) -> int | None:
        """An int in [lo, hi]. With ``unit``, a whole-valued float (from a Duration) is fine too."""
        if value is None:
            if not optional:
                self.add(path, "is required")
            return None
        if isinstance(value, bool):
            self.add(path, _expected("an integer", value))
            return None
        if isinstance(value, _INT):
            n = int(value)
        elif unit and isinstance(value, _REAL):
            x = float(value)
            if not math.isfinite(x):
                self.add(path, f"must be finite, got {x}")
                return None
            if not x.is_integer():
                self.add(path, f"must be a whole number of {unit}, got {_g(x)}")
                return None
            n = int(x)
        else:
            self.add(path, _expected("an integer", value))
            return None
        if not lo <= n <= hi:
            self.add(path, f"must be between {lo} and {hi}, got {n}")
            return None
        return n

    def phases(self, path: str, value: object, *, optional: bool = False) -> int | None:
        """1 or 3, as an int: compile feeds it to ``range``."""
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, _INT):
            self.add(path, _expected("an integer (1 or 3)", value))
            return None
        if value not in (1, 3):
            self.add(path, f"must be 1 or 3, got {_show(value)}")
            return None
        return int(value)

    def text(self, path: str, value: object) -> str | None:
        """A non-blank id or name of bounded length."""
        if not isinstance(value, str):
            self.add(path, _expected("a string", value))
            return None
        if not value.strip():
            self.add(path, "must not be empty")
            return None
        if len(value) > self.limits.max_id_length:
            self.add(path, f"longer than {self.limits.max_id_length} characters")
            return None
        return value

    def aware(self, path: str, value: object) -> datetime | None:
        """A timezone-aware datetime: a naive one means a different instant on every server."""
        if not isinstance(value, datetime):
            self.add(path, _expected("a datetime", value))
            return None
        try:
            offset = value.utcoffset()
        except (TypeError, ValueError) as exc:  # a broken tzinfo
            self.add(path, f"has an unusable time zone: {exc}")
            return None
        if offset is None:
            self.add(path, "must be timezone-aware (a naive datetime is ambiguous)")
            return None
        return value

    def window(
        self, path: str, start: object, end: object, a: str = "start", b: str = "end"
    ) -> tuple[datetime, datetime] | None:
        """Aware ``a`` < ``b``: a zero or negative interval is meaningless and divides by zero."""
        t0 = self.aware(f"{path}.{a}", start)
        t1 = self.aware(f"{path}.{b}", end)
        if t0 is None or t1 is None:
            return None
        if t1 < t0:
            self.add(f"{path}.{b}", f"{b} {t1.isoformat()} is before {a} {t0.isoformat()}")
            return None
        if t1 == t0:
            self.add(f"{path}.{b}", f"{b} is equal to {a} ({t0.isoformat()}): empty interval")
            return None
        return t0, t1

    def seq(self, path: str, value: object) -> tuple[object, ...] | None:
        if not isinstance(value, tuple | list):
            self.add(path, _expected("a tuple", value))
            return None
        return tuple(value)

    def triple(self, path: str, value: object, what: str) -> tuple[float, float, float] | None:
        """Three finite values >= 0 for L1, L2, L3."""
        items = self.seq(path, value)
        if items is None:
            return None
        if len(items) != 3:
            self.add(path, f"must have 3 values ({what}), got {len(items)}")
            return None
        a, b, c = (self.number(f"{path}[{k}]", v, lo=0.0) for k, v in enumerate(items))
        if a is None or b is None or c is None:
            return None
        return a, b, c

    # --- sizes -----------------------------------------------------------------------------

    def _size(self, path: str, value: object, limit: int, what: str) -> None:
        n = _seq_len(value)
        if n is not None and n > limit:
            self.add(path, f"{n} {what}; at most {limit} per request")

    def site_sizes(self, site: object) -> None:
        if isinstance(site, Site):
            self._size("site.nodes", site.nodes, self.limits.max_nodes, "nodes")
            self._size("site.connectors", site.connectors, self.limits.max_connectors, "connectors")

    def sizes(self, problem: object) -> None:
        """Cheap length checks done before anything is iterated."""
        if not isinstance(problem, Problem):
            return
        self.site_sizes(problem.site)
        self._size("sessions", problem.sessions, self.limits.max_sessions, "sessions")
        sig = problem.signals
        if isinstance(sig, Signals):
            self._size("signals.events", sig.events, self.limits.max_events, "events")
            lens = [_seq_len(x) for x in (sig.capacity, sig.prices, sig.carbon)]
            total = sum(n for n in lens if n is not None)
            if total > self.limits.max_signal_entries:
                self.add(
                    "signals",
                    f"{total} capacity, price and carbon entries; at most "
                    f"{self.limits.max_signal_entries} per request",
                )

    # --- site ------------------------------------------------------------------------------

    def site(self, site: object, path: str) -> _SiteIndex:
        if not isinstance(site, Site):
            self.add(path, _expected("a Site", site))
            return _SiteIndex(None, None, {}, False)
        self.text(f"{path}.id", site.id)
        found = self.nodes(site.nodes, f"{path}.nodes")
        nodes: dict[str, Node] | None = None
        parent_of: dict[str, str | None] = {}
        acyclic = False
        if found is not None:
            nodes, index = found
            parent_of, acyclic = self.tree(nodes, index, f"{path}.nodes")
        conns = self.connectors(site.connectors, f"{path}.connectors", nodes)
        return _SiteIndex(nodes, conns, parent_of, acyclic)

    def nodes(self, value: object, path: str) -> tuple[dict[str, Node], dict[str, int]] | None:
        """Nodes by id (first of duplicates) and their positions."""
        items = self.seq(path, value)
        if items is None:
            return None
        if not items:
            self.add(path, "at least one node (the grid connection) is required")
        first: dict[str, int] = {}
        found: dict[str, Node] = {}
        for i, n in enumerate(items):
            p = f"{path}[{i}]"
            if not isinstance(n, Node):
                self.add(p, _expected("a Node", n))
                continue
            nid = self.text(f"{p}.id", n.id)
            if nid is not None:
                if nid in first:
                    self.add(f"{p}.id", f"duplicate id {nid!r} (also {path}[{first[nid]}])")
                else:
                    first[nid] = i
                    found[nid] = n
        for i, n in enumerate(items):
            if isinstance(n, Node):
                self.node(n, f"{path}[{i}]", first)
        return found, first

    def node(self, n: Node, p: str, ids: dict[str, int]) -> None:
        if n.parent is not None:
            parent = self.text(f"{p}.parent", n.parent)
            if parent is not None and parent not in ids:
                self.add(f"{p}.parent", f"unknown node {parent!r}")
        if n.phase_limit_a is not None:
            self.triple(f"{p}.phase_limit_a", n.phase_limit_a, "L1, L2, L3")
        self.number(f"{p}.power_limit_kw", n.power_limit_kw, lo=0.0, optional=True)
        self.number(f"{p}.voltage_v", n.voltage_v, lo=MIN_VOLTAGE_V, hi=MAX_VOLTAGE_V)
        pls = self.seq(f"{p}.phasor_limits", n.phasor_limits)
        if pls is None:
            return
        if len(pls) > self.limits.max_phasor_limits:
            self.add(
                f"{p}.phasor_limits",
                f"{len(pls)} phasor limits; at most {self.limits.max_phasor_limits} per node",
            )
            return
        names: dict[str, int] = {}
        for k, pl in enumerate(pls):
            q = f"{p}.phasor_limits[{k}]"
            if not isinstance(pl, PhasorLimit):
                self.add(q, _expected("a PhasorLimit", pl))
                continue
            name = self.text(f"{q}.name", pl.name)
            if name is not None:
                if name in names:
                    self.add(
                        f"{q}.name", f"duplicate name {name!r} (also phasor_limits[{names[name]}])"
                    )
                else:
                    names[name] = k
            coef = self.seq(f"{q}.coefficients", pl.coefficients)
            if coef is not None:
                if len(coef) != 3:
                    self.add(
                        f"{q}.coefficients", f"must have 3 values (L1, L2, L3), got {len(coef)}"
                    )
                else:
                    cs = [self.number(f"{q}.coefficients[{j}]", c) for j, c in enumerate(coef)]
                    if all(c == 0.0 for c in cs):
                        self.add(f"{q}.coefficients", "all zero: the limit would constrain nothing")
            self.number(f"{q}.limit_a", pl.limit_a, lo=0.0)

    def tree(
        self, nodes: dict[str, Node], index: dict[str, int], path: str
    ) -> tuple[dict[str, str | None], bool]:
        """Exactly one root, no cycles, bounded depth: compile walks every connector to the root.

        Returns each node's parent (nodes with a bad parent left out) and whether it is acyclic.
        """
        parent_of: dict[str, str | None] = {}
        roots: list[str] = []
        for nid, n in nodes.items():
            if n.parent is None:
                roots.append(nid)
                parent_of[nid] = None
            elif isinstance(n.parent, str) and n.parent in nodes:
                parent_of[nid] = n.parent
        roots.sort(key=index.__getitem__)
        for extra in roots[1:]:
            first = f"{roots[0]!r} ({path}[{index[roots[0]]}])"
            self.add(
                f"{path}[{index[extra]}].parent",
                f"a second root: {extra!r} has no parent but {first} is already the root; "
                "a site has exactly one grid connection",
            )
        # Follow parent links from every node; a link back onto the current walk is a cycle.
        state: dict[str, int] = {}  # 1: on the current walk, 2: done
        acyclic = True
        for start in sorted(parent_of, key=index.__getitem__):
            walk: list[str] = []
            cur: str | None = start
            while cur is not None and cur in parent_of and cur not in state:
                state[cur] = 1
                walk.append(cur)
                cur = parent_of[cur]
            if cur is not None and state.get(cur) == 1:
                acyclic = False
                cyc = walk[walk.index(cur) :]
                k = min(range(len(cyc)), key=lambda j: index[cyc[j]])
                cyc = cyc[k:] + cyc[:k]
                self.add(
                    f"{path}[{index[cyc[0]]}].parent",
                    "cycle: " + " -> ".join([*cyc, cyc[0]]) + " (each arrow points to the parent)",
                )
            for x in walk:
                state[x] = 2
        if nodes and not roots:
            self.add(path, "no root: exactly one node (the grid connection) must have no parent")
        if acyclic:
            depth: dict[str, int] = {}
            deepest, worst = 0, ""
            for nid in parent_of:
                chain: list[str] = []
                cur = nid
                while cur is not None and cur in parent_of and cur not in depth:
                    chain.append(cur)
                    cur = parent_of[cur]
                d = depth[cur] if cur is not None and cur in depth else -1
                for x in reversed(chain):
                    d += 1
                    depth[x] = d
                if depth[nid] > deepest:
                    deepest, worst = depth[nid], nid
            if deepest > self.limits.max_tree_depth:
                self.add(
                    path,
                    f"the tree is {deepest} levels deep (node {worst!r}); at most "
                    f"{self.limits.max_tree_depth}",
                )
        return parent_of, acyclic

    def connectors(
        self, value: object, path: str, nodes: dict[str, Node] | None
    ) -> dict[str, Connector] | None:
        items = self.seq(path, value)
        if items is None:
            return None
        seen: dict[str, int] = {}
        found: dict[str, Connector] = {}
        for i, c in enumerate(items):
            p = f"{path}[{i}]"
            if not isinstance(c, Connector):
                self.add(p, _expected("a Connector", c))
                continue
            cid = self.text(f"{p}.id", c.id)
            if cid is not None:
                if cid in seen:
                    self.add(f"{p}.id", f"duplicate id {cid!r} (also {path}[{seen[cid]}])")
                elif nodes is not None and cid in nodes:
                    self.add(
                        f"{p}.id",
                        f"{cid!r} is also a node id; nodes and connectors share one namespace "
                        "in plans and reports",
                    )
                    seen[cid] = i
                    found[cid] = c
                else:
                    seen[cid] = i
                    found[cid] = c
            self.connector(c, p, nodes)
        return found

    def connector(self, c: Connector, p: str, nodes: dict[str, Node] | None) -> None:
        node = self.text(f"{p}.node", c.node)
        if node is not None and nodes is not None and node not in nodes:
            self.add(f"{p}.node", f"unknown node {node!r}")
        hi = self.number(
            f"{p}.max_current_a", c.max_current_a, lo=0.0, lo_open=True, hi=MAX_CURRENT_A
        )
        top = MAX_CURRENT_A if hi is None else hi
        lo = self.number(f"{p}.min_current_a", c.min_current_a, lo=0.0, hi=MAX_CURRENT_A)
        if lo is not None and hi is not None and lo > hi:
            self.add(f"{p}.min_current_a", f"must be <= max_current_a ({_g(hi)}), got {_g(lo)}")
        step = self.number(f"{p}.current_step_a", c.current_step_a, lo=0.0, hi=MAX_CURRENT_A)
        if step is not None and 0.0 < step < MIN_CURRENT_STEP_A:
            self.add(
                f"{p}.current_step_a",
                f"must be 0 (any current) or >= {_g(MIN_CURRENT_STEP_A)}, got {_g(step)}",
            )
        allowed = self.seq(f"{p}.allowed_currents_a", c.allowed_currents_a)
        if allowed is not None:
            if len(allowed) > self.limits.max_allowed_currents:
                self.add(
                    f"{p}.allowed_currents_a",
                    f"{len(allowed)} values; at most {self.limits.max_allowed_currents}",
                )
            else:
                where: dict[float, int] = {}
                for k, a in enumerate(allowed):
                    q = f"{p}.allowed_currents_a[{k}]"
                    v = self.number(q, a, lo=0.0, hi=MAX_CURRENT_A)
                    if v is None:
                        continue
                    if v > top:
                        self.add(q, f"must be <= max_current_a ({_g(top)}), got {_g(v)}")
                    elif v in where:
                        self.add(q, f"duplicate of allowed_currents_a[{where[v]}] ({_g(v)})")
                    else:
                        where[v] = k
        phases = self.phases(f"{p}.phases", c.phases)
        rot = c.phase_rotation
        if not isinstance(rot, str) or rot not in ROTATIONS:
            self.add(
                f"{p}.phase_rotation", f"must be one of {', '.join(ROTATIONS)}, got {_show(rot)}"
            )
        if not isinstance(c.wiring, Wiring):
            # Wiring is a str enum: a plain "delta" compares equal but compile tests identity.
            self.add(f"{p}.wiring", f"must be Wiring.WYE or Wiring.DELTA, got {_show(c.wiring)}")
        elif c.wiring is Wiring.DELTA and phases is not None and phases != 1:
            self.add(
                f"{p}.phases", f"DELTA wiring is one line-to-line branch: must be 1, got {phases}"
            )
        self.number(f"{p}.voltage_v", c.voltage_v, lo=MIN_VOLTAGE_V, hi=MAX_VOLTAGE_V)
        angle = self.number(
            f"{p}.phase_angle_deg", c.phase_angle_deg, lo=-360.0, hi=360.0, optional=True
        )
        if angle is not None and c.wiring is Wiring.WYE:
            self.add(f"{p}.phase_angle_deg", "only used with DELTA wiring; leave it unset for WYE")

    # --- sessions --------------------------------------------------------------------------

    def sessions(self, value: object, site: _SiteIndex) -> tuple[Session, ...]:
        items = self.seq("sessions", value)
        if items is None:
            return ()
        seen: dict[str, int] = {}
        stays: list[_Stay] = []
        good: list[Session] = []
        for i, s in enumerate(items):
            p = f"sessions[{i}]"
            if not isinstance(s, Session):
                self.add(p, _expected("a Session", s))
                continue
            good.append(s)
            sid = self.text(f"{p}.id", s.id)
            if sid is not None:
                if sid in seen:
                    self.add(f"{p}.id", f"duplicate id {sid!r} (also sessions[{seen[sid]}])")
                else:
                    seen[sid] = i
            conn = self.text(f"{p}.connector", s.connector)
            if conn is not None and site.connectors is not None and conn not in site.connectors:
                self.add(f"{p}.connector", f"unknown connector {conn!r}")
            win = self.window(p, s.arrival, s.departure, "arrival", "departure")
            if win is not None and conn is not None:
                stays.append(_Stay(i, s.id, conn, win[0], win[1]))
            self.number(
                f"{p}.energy_requested_kwh", s.energy_requested_kwh, lo=0.0, hi=MAX_ENERGY_KWH
            )
            self.number(
                f"{p}.energy_delivered_kwh", s.energy_delivered_kwh, lo=0.0, hi=MAX_ENERGY_KWH
            )
            vmax = self.number(
                f"{p}.vehicle_max_current_a",
                s.vehicle_max_current_a,
                lo=0.0,
                lo_open=True,
                hi=MAX_CURRENT_A,
                optional=True,
            )
            vmin = self.number(
                f"{p}.vehicle_min_current_a",
                s.vehicle_min_current_a,
                lo=0.0,
                lo_open=True,
                hi=MAX_CURRENT_A,
                optional=True,
            )
            if vmin is not None and vmax is not None and vmin > vmax:
                self.add(
                    f"{p}.vehicle_min_current_a",
                    f"must be <= vehicle_max_current_a ({_g(vmax)}), got {_g(vmin)}",
                )
            self.number(
                f"{p}.vehicle_max_power_kw",
                s.vehicle_max_power_kw,
                lo=0.0,
                lo_open=True,
                optional=True,
            )
            self.phases(f"{p}.vehicle_phases", s.vehicle_phases, optional=True)
            self.number(f"{p}.priority", s.priority, lo=0.0, lo_open=True, hi=MAX_PRIORITY)
            self.number(
                f"{p}.measured_current_a",
                s.measured_current_a,
                lo=0.0,
                hi=MAX_CURRENT_A,
                optional=True,
            )
        self.overlaps(stays)
        return tuple(good)

    def overlaps(self, stays: list[_Stay]) -> None:
        """One connector holds one car at a time: overlapping stays would double its current."""
        by_conn: dict[str, list[_Stay]] = {}
        for st in stays:
            by_conn.setdefault(st.connector, []).append(st)
        for conn, group in by_conn.items():
            group.sort(key=lambda st: (st.arrival, st.index))
            longest = group[0]
            for st in group[1:]:
                if st.arrival < longest.departure:
                    self.add(
                        f"sessions[{st.index}].arrival",
                        f"overlaps sessions[{longest.index}] ({_show(longest.id)}) on connector "
                        f"{conn!r}, plugged in until {longest.departure.isoformat()}",
                    )
                if st.departure > longest.departure:
                    longest = st

    # --- signals ---------------------------------------------------------------------------

    def signals(self, sig: object, site: _SiteIndex) -> None:
        if not isinstance(sig, Signals):
            self.add("signals", _expected("a Signals", sig))
            return
        caps = self.seq("signals.capacity", sig.capacity) or ()
        for i, c in enumerate(caps):
            p = f"signals.capacity[{i}]"
            if not isinstance(c, CapacityLimit):
                self.add(p, _expected("a CapacityLimit", c))
                continue
            self.node_ref(f"{p}.node", c.node, site)
            self.window(p, c.start, c.end)
            if (c.limit_kw is None) == (c.phase_limit_a is None):
                got = "neither" if c.limit_kw is None else "both"
                self.add(p, f"set exactly one of limit_kw and phase_limit_a, got {got}")
            self.number(f"{p}.limit_kw", c.limit_kw, lo=0.0, optional=True)
            if c.phase_limit_a is not None:
                self.triple(f"{p}.phase_limit_a", c.phase_limit_a, "L1, L2, L3")
        self.series("signals.prices", sig.prices, -MAX_MAGNITUDE)
        self.series("signals.carbon", sig.carbon, 0.0)
        self.events(sig.events, site)

    def node_ref(self, path: str, value: object, site: _SiteIndex) -> Node | None:
        nid = self.text(path, value)
        if nid is None or site.nodes is None:
            return None
        node = site.nodes.get(nid)
        if node is None:
            self.add(path, f"unknown node {nid!r}")
        return node

    def series(self, path: str, value: object, lo: float) -> None:
        """Prices (may be negative) or carbon (>= 0); compile adds overlapping entries up."""
        items = self.seq(path, value)
        if items is None:
            return
        spans: list[tuple[datetime, datetime, int]] = []
        for i, tv in enumerate(items):
            p = f"{path}[{i}]"
            if not isinstance(tv, TimeValue):
                self.add(p, _expected("a TimeValue", tv))
                continue
            win = self.window(p, tv.start, tv.end)
            self.number(f"{p}.value", tv.value, lo=lo)
            if win is not None:
                spans.append((win[0], win[1], i))
        spans.sort(key=lambda s: (s[0], s[2]))
        if not spans:
            return
        last = spans[0]
        for sp in spans[1:]:
            if sp[0] < last[1]:
                self.add(
                    f"{path}[{sp[2]}].start",
                    f"overlaps {path}[{last[2]}] (until {last[1].isoformat()}): "
                    "overlapping values would be added up",
                )
            if sp[1] > last[1]:
                last = sp

    def events(self, value: object, site: _SiteIndex) -> None:
        items = self.seq("signals.events", value)
        if items is None:
            return
        seen: dict[str, int] = {}
        for i, ev in enumerate(items):
            p = f"signals.events[{i}]"
            if not isinstance(ev, CurtailmentEvent):
                self.add(p, _expected("a CurtailmentEvent", ev))
                continue
            eid = self.text(f"{p}.id", ev.id)
            if eid is not None:
                if eid in seen:
                    self.add(
                        f"{p}.id",
                        f"duplicate id {eid!r} (also signals.events[{seen[eid]}]); send only "
                        "the latest modification of an event",
                    )
                else:
                    seen[eid] = i
            node = self.node_ref(f"{p}.node", ev.node, site)
            self.window(p, ev.start, ev.end)
            if (ev.limit_kw is None) == (ev.reduction_kw is None):
                got = "neither" if ev.limit_kw is None else "both"
                self.add(p, f"set exactly one of limit_kw and reduction_kw, got {got}")
            self.number(f"{p}.limit_kw", ev.limit_kw, lo=0.0, optional=True)
            red = self.number(f"{p}.reduction_kw", ev.reduction_kw, lo=0.0, optional=True)
            # Same test as compile.baseline_kw, without its arithmetic on unchecked values.
            if (
                red is not None
                and node is not None
                and (node.power_limit_kw is None and node.phase_limit_a is None)
            ):
                self.add(
                    f"{p}.reduction_kw",
                    f"node {node.id!r} has neither power_limit_kw nor phase_limit_a to reduce; "
                    "use limit_kw",
                )
            self.integer(f"{p}.modification", ev.modification, 0, MAX_MODIFICATION)

    # --- options and sizes that depend on them ---------------------------------------------

    def options(
        self,
        problem: Problem,
        now: datetime | None,
        sessions: tuple[Session, ...],
        site: _SiteIndex,
    ) -> None:
        o = problem.options
        if not isinstance(o, Options):
            self.add("options", _expected("an Options", o))
            return
        slot = self.integer("options.slot_minutes", o.slot_minutes, *SLOT_MINUTES, unit="minutes")
        hours = self.number(
            "options.horizon_hours", o.horizon_hours, lo=0.0, lo_open=True, hi=MAX_HORIZON_HOURS
        )
        if not isinstance(o.mode, Mode):
            self.add("options.mode", f"must be a Mode, got {_show(o.mode)}")
        self.number(
            "options.time_limit_s", o.time_limit_s, lo=0.0, lo_open=True, hi=MAX_TIME_LIMIT_S
        )
        self.number("options.cost_weight", o.cost_weight, lo=0.0)
        self.number("options.carbon_weight", o.carbon_weight, lo=0.0)
        self.integer("options.phasor_polygon_sides", o.phasor_polygon_sides, *POLYGON_SIDES)
        if slot is not None and hours is not None and hours * 60.0 < slot:
            # compile divides by slot lengths: a horizon of a few ulps gives a zero-length slot.
            self.add(
                "options.horizon_hours",
                f"must cover at least one slot ({slot} min), got {_g(hours * 60.0)} min",
            )
            return
        if now is None or slot is None or hours is None:
            return
        try:
            now + timedelta(hours=hours)
        except OverflowError:
            self.add("now", "now + horizon_hours is past the year 9999")
            return
        self.grid_size(problem, slot, hours, sessions, site)

    def grid_size(
        self,
        problem: Problem,
        slot: int,
        hours: float,
        sessions: tuple[Session, ...],
        site: _SiteIndex,
    ) -> None:
        """Slots as compile cuts them, then the dense array sizes they imply."""
        approx = hours * 60.0 / slot
        if approx > self.limits.max_slots + 2:  # too many by far: don't build the edges
            n_slots = math.floor(approx)
        else:
            n_slots = int(slot_edges(problem)[0].shape[0])
        if n_slots > self.limits.max_slots:
            self.add(
                "options.horizon_hours",
                f"{_g(hours)} h in {slot}-minute slots is {n_slots} slots; at most "
                f"{self.limits.max_slots} (use longer slots or a shorter horizon)",
            )
            return
        cells = len(sessions) * n_slots
        if cells > self.limits.max_cells:
            self.add(
                "sessions",
                f"{len(sessions)} sessions x {n_slots} slots = {cells} cells; at most "
                f"{self.limits.max_cells}",
            )
        rows = self.row_estimate(sessions, site)
        if rows * n_slots > self.limits.max_cells:
            self.add(
                "site.nodes",
                f"about {rows} limit rows x {n_slots} slots = {rows * n_slots} cells; at most "
                f"{self.limits.max_cells}",
            )

    def row_estimate(self, sessions: tuple[Session, ...], site: _SiteIndex) -> int:
        """Limit rows compile builds: 4 (3 phases + kW) plus phasor limits per loaded node."""
        if not site.acyclic or site.nodes is None or site.connectors is None:
            return 0
        loaded: set[str] = set()
        for s in sessions:
            c = site.connectors.get(s.connector) if isinstance(s.connector, str) else None
            cur: str | None = c.node if c is not None and isinstance(c.node, str) else None
            while cur is not None and cur in site.parent_of and cur not in loaded:
                loaded.add(cur)
                cur = site.parent_of[cur]
        rows = 0
        for nid in loaded:
            pls = site.nodes[nid].phasor_limits
            rows += 4 + (len(pls) if isinstance(pls, tuple | list) else 0)
        return rows
