"""Signal checks: capacity limits, price and carbon series, curtailment events, node references.

A series must not overlap itself (compile would add overlapping values up), and an event may only
reduce a node that has a limit to reduce.
"""

from __future__ import annotations

from datetime import datetime

from ..model import CapacityLimit, CurtailmentEvent, Node, Signals, TimeValue
from .base import MAX_MAGNITUDE, MAX_MODIFICATION, _Check, _expected, _SiteIndex


class _SignalCheck(_Check):
    """The ``signals`` section, with node references looked up in the site index."""

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
