"""Validation primitives: the violation types, the size limits and the bounds, and ``_Check``.

``_Check`` collects violations and checks one scalar, string, time, window or tuple at a time,
returning the clean value or ``None``; the section checkers (site, sessions, signals, options)
build on it, so every section reports the same reasons for the same kind of bad value. The size
checks live here too: they run before any section, on lengths only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ..model import Connector, Node, Problem, Signals, Site

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


@dataclass
class _SiteIndex:
    """What later checks need from the site. ``None`` maps: the list was unreadable."""

    nodes: dict[str, Node] | None
    connectors: dict[str, Connector] | None
    parent_of: dict[str, str | None]
    acyclic: bool


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
