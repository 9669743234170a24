"""Option checks, and the sizes that depend on them: slots, dense array cells, limit rows.

These run last: the slot count needs valid options and ``now``, and the cell estimates need the
sessions and the site index, so an oversized grid is refused before compile builds it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from ..compile import slot_edges
from ..model import Mode, Options, Problem, Session
from .base import (
    MAX_HORIZON_HOURS,
    MAX_TIME_LIMIT_S,
    POLYGON_SIDES,
    SLOT_MINUTES,
    _Check,
    _expected,
    _g,
    _show,
    _SiteIndex,
)


class _OptionCheck(_Check):
    """The ``options`` section, then the slot, cell and row bounds of ``Limits``."""

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
