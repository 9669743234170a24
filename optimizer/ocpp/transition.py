"""Rolling a new plan out across stations without overshooting in between: lower, then raise.

Why: every plan fits every limit, but stations accept their new profiles one at a time. If one
station is raised before another is lowered, the site briefly draws more than either plan allows.
So a CSMS sends, everywhere, first a profile that is at every instant at most both the held and the
new one where both apply (``interim``; or the new one itself when it only lowers,
``lowers_only``), waits for those, and only then the new profiles. While the first round is under
way every station holds its old profile or one below it (so the old plan's limits hold); during
the second, its interim or its new one, both at most the new plan (so the new plan's limits
hold).

Profiles here are absolute schedules on whole seconds, as ``render`` makes them. A period is "at
most" another when no line can carry more under it: no more phases (3 when unspecified), no more
current per phase (the limit in A; W / phases in W, at the EVSE's one voltage), and a single phase
on the same line. Profiles in different units are not compared (no interim).
"""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

from .render import _profile_schedule
from .schedule import rfc3339

__all__ = ["applies", "at_most", "interim", "lowers_only"]

Step = tuple[float, int | None, int | None]  # limit, numberPhases, phaseToUse
Segment = tuple[int, int | None, Step]  # [start, end) in epoch seconds (end None: open)


def _s(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _segments(payload: dict[str, Any], version: str, now_s: int) -> tuple[str, list[Segment]]:
    """The profile's periods from ``now_s`` on, where it applies at all."""
    prof, sch = _profile_schedule(payload, version)
    start = _s(sch["startSchedule"]) if "startSchedule" in sch else now_s
    ends = [start + int(sch["duration"])] if "duration" in sch else []
    if "validTo" in prof:
        ends.append(_s(prof["validTo"]))
    end = min(ends) if ends else None
    lo = max(now_s, _s(prof["validFrom"])) if "validFrom" in prof else now_s
    periods = sch["chargingSchedulePeriod"]
    out: list[Segment] = []
    for k, p in enumerate(periods):
        a = start + int(p["startPeriod"])
        b = start + int(periods[k + 1]["startPeriod"]) if k + 1 < len(periods) else end
        if b is not None and end is not None:
            b = min(b, end)
        a = max(a, lo)
        if b is not None and b <= a:
            continue
        out.append((a, b, (float(p["limit"]), p.get("numberPhases"), p.get("phaseToUse"))))
    return str(sch["chargingRateUnit"]), out


def _phases(step: Step) -> int:
    return step[1] or 3


def _per_phase(step: Step, unit: str) -> float:
    """Current per phase in the unit's terms (W per phase: the voltage is the EVSE's, shared)."""
    return step[0] if unit == "A" else step[0] / _phases(step)


def _at_most(a: Step, b: Step, unit: str) -> bool:
    """``a`` lets no line carry more than ``b`` does: no more phases, no more per phase, and a
    single phase on the same line (a 1-phase step without ``phaseToUse`` is the car's phase)."""
    if a[0] <= 0:
        return True  # nothing on any line
    if _phases(a) > _phases(b) or _per_phase(a, unit) > _per_phase(b, unit) + 1e-9:
        return False
    return not (_phases(a) == _phases(b) == 1 and a[2] != b[2])


def _lower(a: Step, b: Step, unit: str) -> Step:
    """A step at most both ``a`` and ``b``: the fewer phases, the lower current per phase."""
    if _at_most(a, b, unit):
        return a
    if _at_most(b, a, unit):
        return b
    phases = min(_phases(a), _phases(b))
    per = min(_per_phase(a, unit), _per_phase(b, unit))
    one = [st for st in (a, b) if _phases(st) == 1]
    if phases == 1 and len(one) == 2:  # two different single lines: nothing fits both
        return (0.0, a[1], a[2])
    limit = per if unit == "A" else math.floor(per * phases * 10 + 1e-6) / 10
    return (limit, phases, one[0][2] if one else None)


def _at(segs: list[Segment], a: int) -> Step | None:
    for s, e, step in segs:
        if s <= a and (e is None or a < e):
            return step
    return None


def _cuts(*lists: list[Segment]) -> list[int]:
    return sorted({t for segs in lists for s, e, _ in segs for t in (s, e) if t is not None})


def applies(payload: dict[str, Any], version: str, now: datetime) -> bool:
    """True if the profile still sets a limit at some instant from ``now`` on."""
    return bool(_segments(payload, version, int(now.timestamp()))[1])


def lowers_only(held: dict[str, Any], new: dict[str, Any], version: str, now: datetime) -> bool:
    """True if ``new`` allows at most what ``held`` allows at every instant from ``now`` on
    (and nowhere where ``held`` sets no limit): it can be sent before the others are lowered."""
    now_s = int(now.timestamp())
    unit_h, h = _segments(held, version, now_s)
    unit_n, n = _segments(new, version, now_s)
    if unit_h != unit_n:
        return False
    cuts = _cuts(h, n)
    for k, a in enumerate([now_s, *cuts]):
        if a < now_s or (k and a == now_s):
            continue
        sh, sn = _at(h, a), _at(n, a)
        if sh is None and sn is None:
            continue
        if sh is None or sn is None or not _at_most(sn, sh, unit_n):
            return False
    return True


def at_most(a: dict[str, Any], b: dict[str, Any], version: str, now: datetime) -> bool:
    """True if ``a`` allows at most what ``b`` allows at every instant from ``now`` on where ``a``
    sets a limit (so ``b`` must set one there too; where ``a`` sets none it is not compared).
    For a station that cannot be sent anything (offline): is what it still holds, ``a``, within
    its new profile ``b``, so that the others may be raised to the new plan?"""
    now_s = int(now.timestamp())
    unit_a, sa = _segments(a, version, now_s)
    if not sa:
        return True
    unit_b, sb = _segments(b, version, now_s)
    if unit_a != unit_b:
        return False
    for k, t in enumerate([now_s, *_cuts(sa, sb)]):
        if t < now_s or (k and t == now_s):
            continue
        x = _at(sa, t)
        if x is None:
            continue
        y = _at(sb, t)
        if y is None or not _at_most(x, y, unit_a):
            return False
    return True


def interim(
    held: dict[str, Any], new: dict[str, Any], version: str, now: datetime,
    max_periods: int | None = None,
) -> dict[str, Any] | None:
    """``new`` with its schedule replaced by a step at most both ``held`` and ``new`` at every
    instant from ``now`` (whole second) while ``held`` applies (``held`` alone where ``new`` sets
    nothing), in at most ``max_periods`` periods (default: as many as the longer of the two had;
    adjacent ones merge into a step at most both). None if the units differ or ``held`` sets
    nothing from now on or has a gap.
    """
    now_s = int(now.timestamp())
    unit_h, h = _segments(held, version, now_s)
    unit_n, n = _segments(new, version, now_s)
    if unit_h != unit_n or not h:
        return None
    # The interim lives as long as ``held`` would have (after that the same fallback applies);
    # where ``new`` sets nothing, it keeps ``held``'s limit.
    end = h[-1][1]
    steps: list[tuple[int, Step]] = []
    for a in [now_s, *(t for t in _cuts(h, n) if t > now_s)]:
        if end is not None and a >= end:
            break
        sh, sn = _at(h, a), _at(n, a)
        if sh is None:
            return None  # a gap in the held profile: nothing is below it there
        step = sh if sn is None else _lower(sn, sh, unit_n)
        if not steps or steps[-1][1] != step:
            steps.append((a, step))
    if max_periods is None:  # what this charger took before, or was rendered for
        max_periods = max(len(_profile_schedule(p, version)[1]["chargingSchedulePeriod"])
                          for p in (held, new))
    while len(steps) > max(max_periods, 1):
        # merge the neighbours closest in current, at a step at most both
        k = min(range(len(steps) - 1), key=lambda j: abs(
            _per_phase(steps[j][1], unit_n) - _per_phase(steps[j + 1][1], unit_n)))
        steps[k:k + 2] = [(steps[k][0], _lower(steps[k][1], steps[k + 1][1], unit_n))]
    out = copy.deepcopy(new)
    prof, sch = _profile_schedule(out, version)
    prof.pop("validFrom", None)  # the schedule's start and duration say it all
    prof.pop("validTo", None)
    sch["startSchedule"] = rfc3339(datetime.fromtimestamp(now_s, UTC))
    periods = []
    for a, (lim, phases, phase) in steps:
        p: dict[str, Any] = {"startPeriod": a - now_s, "limit": lim}
        if phases is not None:
            p["numberPhases"] = phases
        if phase is not None:
            p["phaseToUse"] = phase
        periods.append(p)
    sch["chargingSchedulePeriod"] = periods
    if end is None:
        sch.pop("duration", None)
    else:
        sch["duration"] = end - now_s
    return out
