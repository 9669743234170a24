"""Protocol-agnostic core: a step function of limits -> a schedule a charger accepts.

The one promise: the schedule never allows more than the input at any instant. Every
transformation below can only lower a value:

* limits are floored to the charger's resolution (kept as integer tenths, so 16.2 is published
  as ``16.2`` and never as ``16.200000000000003``);
* a value below the charger's smallest non-zero limit becomes 0;
* ``startPeriod`` is whole seconds, so a second that contains a change takes the *lowest* value
  within it (a decrease at 10.5 s starts at 10 s, an increase at 20.5 s at 21 s);
* too many periods are merged, a merged period taking the lowest limit it covers; the merge that
  loses the least energy goes first (greedy).

``number_phases`` of a merged period is the *largest* of what it covers. With limits in W that is
what keeps it safe (a charger told 1 phase at W would put all of W on one phase); with limits in A
any label is safe, and the largest keeps a 3-phase car at its planned per-phase current.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from .capabilities import RateUnit

__all__ = [
    "Period",
    "Schedule",
    "Step",
    "build_schedule",
    "floor_tenths",
    "from_us",
    "merge_periods",
    "rfc3339",
    "to_us",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
SECOND_US = 1_000_000
#: Values within this many resolution steps below a grid point count as on it (float noise such
#: as 16.199999999999999); at 0.1 A that is 1e-10 A, far below anything a meter sees.
SNAP = 1e-9


def to_us(t: datetime) -> int:
    """Exact integer microseconds since the epoch (naive times are read as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + us * _US


def rfc3339(t: datetime) -> str:
    """RFC 3339 UTC with 'Z'; whole seconds (schedules here start on whole seconds)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_tenths(value: float, res_tenths: int) -> int:
    """Largest multiple of the resolution (in 0.1 units) not above ``value``; NaN or < 0 -> 0."""
    if math.isnan(value) or value <= 0:
        return 0
    if math.isinf(value):
        raise ValueError("an infinite limit cannot be rendered")
    return math.floor(value * 10 / res_tenths + SNAP) * res_tenths


@dataclass(frozen=True)
class Step:
    """From ``start`` on (until the next step) at most ``limit`` (A or W) on ``number_phases``.

    ``weight`` turns a limit into power for the merge heuristic (phases for A, 1 for W).
    """

    start: datetime
    limit: float
    number_phases: int | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Period:
    start_s: int
    limit_tenths: int
    number_phases: int | None = None
    phase_to_use: int | None = None

    @property
    def limit(self) -> float:
        """The published value: int / 10 is the float nearest the decimal (16.2, not 16.19..)."""
        return self.limit_tenths / 10


@dataclass(frozen=True)
class Schedule:
    """An absolute schedule: ``periods[k]`` holds from ``start + start_s`` to the next one, the
    last until ``start + duration_s`` (for ever when ``duration_s`` is None)."""

    start: datetime
    duration_s: int | None
    unit: RateUnit
    periods: tuple[Period, ...]

    @property
    def end(self) -> datetime | None:
        return None if self.duration_s is None else self.start + timedelta(seconds=self.duration_s)

    def limit_at(self, at: datetime) -> float | None:
        """The limit in force at ``at``, None outside the schedule."""
        off = to_us(at) - to_us(self.start)
        if off < 0 or (self.duration_s is not None and off >= self.duration_s * SECOND_US):
            return None
        cur = None
        for p in self.periods:
            if p.start_s * SECOND_US <= off:
                cur = p.limit
            else:
                break
        return cur


def _max_phases(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


#: Exact (dynamic-programming) merging while periods^2 x max_periods stays below this; beyond,
#: the greedy pair merge (chargers with 1000+ periods rarely need merging at all).
DP_BUDGET = 30_000_000


def _coalesce(
    groups: list[tuple[int, int, int | None, float]], duration_s: int
) -> list[tuple[int, int, int, int | None, float]]:
    """(start, limit, phases, weight) -> (start, end, limit, phases, weight x duration), with
    neighbours of equal limit and phases joined (no loss)."""
    out: list[tuple[int, int, int, int | None, float]] = []
    for k, (s, lim, ph, w) in enumerate(groups):
        e = groups[k + 1][0] if k + 1 < len(groups) else duration_s
        if out and out[-1][2] == lim and out[-1][3] == ph:
            s0, _, _, _, w0 = out[-1]
            out[-1] = (s0, e, lim, ph, w0 + (e - s) * w)
        else:
            out.append((s, e, lim, ph, (e - s) * w))
    return out


def merge_periods(
    periods: Sequence[tuple[int, int, int | None, float]], duration_s: int, max_periods: int
) -> list[tuple[int, int, int | None]]:
    """(start_s, limit_tenths, phases, weight) -> at most ``max_periods`` (start_s, limit, phases).

    Neighbours with the same limit and phases are joined first (no loss). If there are still too
    many, consecutive periods are grouped so that the energy lost (each group at its lowest
    limit, weighted by duration x weight) is least: exactly by dynamic programming when that is
    cheap, else greedily, merging the adjacent pair that loses least, again and again.
    """
    segs = _coalesce(list(periods), duration_s)
    if len(segs) <= max_periods:
        return [(s, lim, ph) for s, _, lim, ph, _ in segs]
    if len(segs) ** 2 * max_periods <= DP_BUDGET:
        cuts = _optimal_cuts(segs, max_periods)
    else:
        cuts = _greedy_cuts(segs, max_periods)
    out: list[tuple[int, int, int | None]] = []
    for a, b in itertools.pairwise(cuts):
        lim = min(segs[k][2] for k in range(a, b))
        ph: int | None = None
        for k in range(a, b):
            ph = _max_phases(ph, segs[k][3])
        if out and out[-1][1] == lim and out[-1][2] == ph:
            continue
        out.append((segs[a][0], lim, ph))
    return out


def _optimal_cuts(segs: Sequence[tuple[int, int, int, int | None, float]], k_max: int) -> list[int]:
    """Group boundaries (indices, 0 .. n) of the least-loss split into exactly ``k_max`` groups.

    loss(i, j) = sum of weight x limit over segs[i:j] - min limit x sum of weight; ``best[k, j]``
    = least loss of segs[:j] in k groups. O(k n^2) in numpy.
    """
    n = len(segs)
    lim = np.asarray([s[2] for s in segs], dtype=np.float64)
    w = np.asarray([s[4] for s in segs], dtype=np.float64)
    e_pre = np.concatenate([[0.0], np.cumsum(lim * w)])
    w_pre = np.concatenate([[0.0], np.cumsum(w)])
    cost = np.full((n + 1, n + 1), np.inf)
    for i in range(n):
        run_min = np.minimum.accumulate(lim[i:])  # min of segs[i:j] for j = i+1 .. n
        ends = np.arange(i + 1, n + 1)
        cost[i, i + 1 :] = (e_pre[ends] - e_pre[i]) - run_min * (w_pre[ends] - w_pre[i])
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    back = np.zeros((k_max + 1, n + 1), dtype=np.int64)
    for k in range(1, k_max + 1):
        cand = best[:, None] + cost
        back[k] = np.argmin(cand, axis=0)
        best = cand[back[k], np.arange(n + 1)]
    cuts = [n]
    j = n
    for k in range(k_max, 0, -1):
        j = int(back[k, j])
        cuts.append(j)
    return cuts[::-1]


def _greedy_cuts(segs: Sequence[tuple[int, int, int, int | None, float]], k_max: int) -> list[int]:
    """Group boundaries after merging, again and again, the adjacent pair that loses least."""
    n = len(segs)
    low = [s[2] for s in segs]  # group (keyed by its first index) -> lowest limit
    wt = [s[4] for s in segs]
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    ver = [0] * n
    heap: list[tuple[float, int, int, int]] = []

    def push(i: int) -> None:
        j = nxt[i]
        if j < n:
            m = min(low[i], low[j])
            loss = low[i] * wt[i] + low[j] * wt[j] - m * (wt[i] + wt[j])
            heapq.heappush(heap, (loss, i, ver[i], ver[j]))

    for i in range(n):
        push(i)
    alive = n
    while alive > k_max and heap:
        _, i, vi, vj = heapq.heappop(heap)
        j = nxt[i]
        if ver[i] != vi or j >= n or ver[j] != vj:
            continue
        low[i] = min(low[i], low[j])
        wt[i] += wt[j]
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        ver[i] += 1
        ver[j] = -1
        alive -= 1
        push(i)
        if prv[i] >= 0:
            push(prv[i])
    cuts = [i for i in range(n) if ver[i] >= 0]
    return [*cuts, n]


def build_schedule(
    steps: Sequence[Step],
    start: datetime,
    end: datetime,
    *,
    unit: RateUnit,
    res_tenths: int = 1,
    min_limit_tenths: int = 0,
    max_periods: int = 1024,
    phase_to_use: int | None = None,
) -> Schedule:
    """Render the step function over [start, end) as a schedule on whole seconds.

    The schedule starts at ``start`` floored to the second and lasts until ``end`` ceiled; the
    value at ``start`` also covers that fraction of a second before it. The second that holds
    ``end`` takes the lowest value in it, so pass the steps just after ``end`` too (a car leaving
    at 10.5 s: the 0 that follows must rule from 10 s). Before the first step the limit is 0.
    ``phase_to_use`` is set on periods of exactly 1 phase (the caller decides whether the
    charger can switch phases).
    """
    s_us, e_us = to_us(start), to_us(end)
    if e_us <= s_us:
        raise ValueError("empty schedule window")
    t0 = s_us // SECOND_US * SECOND_US
    dur = -(-(e_us - t0) // SECOND_US)
    steps = sorted(steps, key=lambda st: to_us(st.start))

    # Elementary segments [a, b) in us from t0, each one value: integer tenths after flooring.
    cuts = sorted(
        {0, dur * SECOND_US}
        | {to_us(st.start) - t0 for st in steps if s_us < to_us(st.start) < t0 + dur * SECOND_US}
    )
    segs: list[tuple[int, int, int, int | None, float]] = []
    k = -1
    for a, b in itertools.pairwise(cuts):
        t = max(a + t0, s_us)
        while k + 1 < len(steps) and to_us(steps[k + 1].start) <= t:
            k += 1
        if k < 0:
            lim, ph, w = 0, None, 1.0
        else:
            st = steps[k]
            lim = floor_tenths(st.limit, res_tenths)
            ph, w = st.number_phases, st.weight
        if 0 < lim < min_limit_tenths:
            lim = 0
        segs.append((a, b, lim, ph, w))

    # Whole seconds: every second that holds a cut becomes its own interval with the lowest value.
    bounds = sorted(
        {0} | {a // SECOND_US for a, *_ in segs} | {-(-a // SECOND_US) for a, *_ in segs}
    )
    bounds = [b for b in bounds if b < dur]
    periods: list[tuple[int, int, int | None, float]] = []
    j = 0
    for idx, b0 in enumerate(bounds):
        b1 = bounds[idx + 1] if idx + 1 < len(bounds) else dur
        lo, hi = b0 * SECOND_US, b1 * SECOND_US
        while segs[j][1] <= lo:
            j += 1
        lim, ph, w = segs[j][2], segs[j][3], segs[j][4]
        m = j + 1
        while m < len(segs) and segs[m][0] < hi:
            lim = min(lim, segs[m][2])
            ph = _max_phases(ph, segs[m][3])
            w = max(w, segs[m][4])
            m += 1
        periods.append((b0, lim, ph, w))

    merged = merge_periods(periods, dur, max_periods)
    out = tuple(
        Period(s, lim, ph, phase_to_use if ph == 1 and phase_to_use is not None else None)
        for s, lim, ph in merged
    )
    return Schedule(from_us(t0), dur, unit, out)
