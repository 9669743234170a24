"""Session checks: each session's fields, unique ids, known connectors, no overlapping stays.

Overlaps are checked per connector after every session is read, since a connector holds one car
at a time and overlapping stays would double its current.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..model import Session
from .base import (
    MAX_CURRENT_A,
    MAX_ENERGY_KWH,
    MAX_PRIORITY,
    _Check,
    _expected,
    _g,
    _show,
    _SiteIndex,
)


@dataclass(frozen=True)
class _Stay:
    index: int
    id: str
    connector: str
    arrival: datetime
    departure: datetime


class _SessionCheck(_Check):
    """The ``sessions`` section; returns the sessions that are ``Session`` objects."""

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
