"""Rolling a new plan out across stations without overshooting in between: lower, then raise.

Why: every plan fits every limit, but stations accept their new profiles one at a time. If one
station is raised before another is lowered, the site briefly draws more than either plan allows.
So a CSMS sends, everywhere, first a profile that is at every instant at most both the held and the
new one where both apply (``interim``; or the new one itself when it only lowers,
``lowers_only``), waits for those, and only then the new profiles. While the first round is under
way every station holds its old profile or one below it (so the old plan's limits hold); during
the second, its interim or its new one, both at most the new plan (so the new plan's limits
hold).

Profiles here are absolute schedules on whole seconds, as ``render`` makes them. "At most" compares
what a period allows in total: limit x phases for amperes (3 phases when unspecified), the limit
for watts; profiles in different units are not compared (no interim).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from .render import _profile_schedule
from .schedule import rfc3339

__all__ = ["interim", "lowers_only"]

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


def _total(step: Step, unit: str) -> float:
    return step[0] * (step[1] or 3) if unit == "A" else step[0]


def _at(segs: list[Segment], a: int) -> Step | None:
    for s, e, step in segs:
        if s <= a and (e is None or a < e):
            return step
    return None


def _cuts(*lists: list[Segment]) -> list[int]:
    return sorted({t for segs in lists for s, e, _ in segs for t in (s, e) if t is not None})


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
        if sh is None or sn is None or _total(sn, unit_n) > _total(sh, unit_h) + 1e-9:
            return False
    return True


def interim(
    held: dict[str, Any], new: dict[str, Any], version: str, now: datetime,
    max_periods: int | None = None,
) -> dict[str, Any] | None:
    """``new`` with its schedule replaced by the lower of ``held`` and ``new`` at every instant
    from ``now`` (whole second) while ``held`` applies (``held`` alone where ``new`` sets
    nothing), in at most ``max_periods`` periods (adjacent ones merge at their lower value).
    None if the units differ or ``held`` sets nothing from now on or has a gap.
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
        step = sn if sn is not None and _total(sn, unit_n) <= _total(sh, unit_h) else sh
        if not steps or steps[-1][1] != step:
            steps.append((a, step))
    limit = max_periods or len(steps)
    while len(steps) > max(limit, 1):
        # merge the neighbours closest in value, at the lower of the two
        k = min(range(len(steps) - 1),
                key=lambda j: abs(_total(steps[j][1], unit_n) - _total(steps[j + 1][1], unit_n)))
        low = min(steps[k][1], steps[k + 1][1], key=lambda st: _total(st, unit_n))
        steps[k:k + 2] = [(steps[k][0], low)]
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
