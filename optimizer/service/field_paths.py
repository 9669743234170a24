"""Field paths of the would-be problem, mapped back to the request that caused them.

A mutation is validated by running ``validate`` on the problem it would create, so violations
come back with paths into that problem (``sessions[4].departure``). The client sent something
else (``session.departure``), and stored items it never named need describing by id. Each RPC
has a ``Mapper`` built here (the table in :mod:`optimizer.service.servicers` lists them) and a
``_Names`` describing the new item as the request names it; kept apart from the servicers
because it is pure string work with no state, store or gRPC.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..core.model import Problem

_ITEM = re.compile(
    r"^(sessions|signals\.events|signals\.capacity|signals\.prices|signals\.carbon)\[(\d+)\](.*)$"
)
_REF = re.compile(
    r"(sessions|signals\.events|signals\.capacity|signals\.prices|signals\.carbon)\[(\d+)\]"
)
_SAME_ID = re.compile(r"('[^']*') \(\1\)")

#: A would-be path and its description -> the request path, or None if it lies in stored state.
Mapper = Callable[[str, str], str | None]


class _Names:
    """Describes would-be problem items for messages: the new one as the request names it,
    stored ones by their id."""

    def __init__(self, problem: Problem, new: dict[str, str]) -> None:
        self.problem = problem
        self.new = new  # e.g. {"sessions[4]": "session"}

    def stored(self, coll: str, idx: int) -> str:
        p, sig = self.problem, self.problem.signals
        try:
            if coll == "sessions":
                return f"stored session {p.sessions[idx].id!r}"
            if coll == "signals.events":
                return f"stored event {sig.events[idx].id!r}"
            if coll == "signals.capacity":
                return f"stored capacity entry of node {sig.capacity[idx].node!r}"
            if coll == "signals.prices":
                return f"stored prices[{idx}]"
            return f"stored carbon[{idx}]"
        except IndexError:
            return f"{coll}[{idx}]"

    def text(self, desc: str) -> str:
        def sub(m: re.Match[str]) -> str:
            key = m.group(0)
            return self.new.get(key) or self.stored(m.group(1), int(m.group(2)))

        # "stored session 's1' ('s1')": validate already names the id after the index.
        return _SAME_ID.sub(r"\1", _REF.sub(sub, desc))

    def is_stored(self, path: str) -> bool:
        m = _ITEM.match(path)
        return m is not None and f"{m.group(1)}[{m.group(2)}]" not in self.new

    def describe_for_request(self, path: str, desc: str) -> str:
        """A violation found on a stored item but caused by the request (an overlap the new
        or changed stay creates): say which stored item is in the way."""
        m = _ITEM.match(path)
        if m is not None and m.group(1) == "sessions":
            s = self.problem.sessions[int(m.group(2))]
            return (f"the stay would overlap stored session {s.id!r} on connector "
                    f"{s.connector!r}, which arrives {s.arrival.isoformat()}")
        return self.text(desc)

    def subject(self, path: str) -> str:
        m = _ITEM.match(path)
        if m is None:
            return path
        return self.stored(m.group(1), int(m.group(2))) + m.group(3)



def _item(path: str) -> tuple[str, int, str] | None:
    m = _ITEM.match(path)
    return None if m is None else (m.group(1), int(m.group(2)), m.group(3))


def _mapper_start_session(n: int) -> Mapper:
    def m(path: str, desc: str) -> str | None:
        it = _item(path)
        if it is not None and it[0] == "sessions":
            if it[1] == n:
                return "session" + it[2]
            if it[2] == ".arrival" and f"sessions[{n}]" in desc:
                return "session.departure"
            return None
        return "session" if path == "sessions" else None

    return m


_UPDATE_FIELDS = {
    ".departure": "departure",
    ".energy_delivered_kwh": "energy_delivered_kwh",
    ".energy_requested_kwh": "energy_requested_kwh",
    ".measured_current_a": "measured_current_a",
}


def _mapper_update_session(i: int) -> Mapper:
    def m(path: str, desc: str) -> str | None:
        it = _item(path)
        if it is None or it[0] != "sessions":
            return None
        if it[1] == i:
            return _UPDATE_FIELDS.get(it[2])
        if it[2] == ".arrival" and f"sessions[{i}]" in desc:
            return "departure"
        return None

    return m


def _mapper_event(e: int) -> Mapper:
    def m(path: str, desc: str) -> str | None:
        it = _item(path)
        if it is not None and it[0] == "signals.events" and it[1] == e:
            return "event" + it[2]
        return "event" if path == "signals.events" else None

    return m


def _mapper_capacity(offset: int) -> Mapper:
    def m(path: str, desc: str) -> str | None:
        it = _item(path)
        if it is not None and it[0] == "signals.capacity" and it[1] >= offset:
            return f"capacity[{it[1] - offset}]{it[2]}"
        return "capacity" if path == "signals" else None

    return m


def _mapper_prices(prices: bool, carbon: bool) -> Mapper:
    def m(path: str, desc: str) -> str | None:
        it = _item(path)
        if it is not None and it[0] == "signals.prices" and prices:
            return f"prices[{it[1]}]{it[2]}"
        if it is not None and it[0] == "signals.carbon" and carbon:
            return f"carbon[{it[1]}]{it[2]}"
        return ("prices" if prices else "carbon") if path == "signals" else None

    return m


def _mapper_put_site(path: str, desc: str) -> str | None:
    return path if path.startswith(("site.", "options.")) or path in ("site", "options") else None
