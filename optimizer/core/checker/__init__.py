"""Independent checker: is a ``Plan`` safe and honest for a ``Problem``?

It re-derives every rule from the domain model and shares no code with the compiler or the
solvers (only the documented electrical facts of ``model``: ``phase_coefficients``, ``kw_per_amp``),
so that a bug there shows up here as a violation instead of being repeated. It reads profiles
exactly as a charger would and works on *elementary segments* (the union of every change point,
arrival, departure and signal window edge), so a limit or a stay that starts mid-slot is checked
exactly where it starts, not rounded to a slot.

Conventions (documented so a reader can tell a checker decision from a bug):

* times are handled as integer microseconds since the epoch, so edges compare exactly;
* a car draws its connector's current while one of its sessions is present (``[arrival,
  departure)``); an absent car draws nothing;
* limits use a tolerance of ``1e-6`` relative (absolute ``1e-6`` for limits below 1);
* a NaN current is reported as ``connector_bounds`` and counted as 0 in node sums;
* a negative limit (a reduction larger than the baseline) is treated as 0: drawing nothing is
  always allowed;
* a higher ``modification`` of a curtailment event supersedes lower ones of the same ``id``.

Speed without a second set of rules: a plan has a few change points per connector, the horizon
thousands of segments, so currents are kept as pieces (constant stretches) and every rule is
first *screened* on pieces: the per-connector and per-session rules exactly (they are
elementwise), the node sums with a margin far above any rounding. The plain per-segment rules
then run only for the rows and nodes a screen flags, so they alone decide what is reported.

Layout: ``timeline`` (segments, pieces and the shared data), ``screens`` (the vectorised tests on
pieces), ``rules`` (the exact per-segment rules), ``phasor`` (partial-draw geometry). The
functions here run each screen and then the rules where it flags; they call the screens by their
names in this package, looked up at call time, so a test can replace a screen here and force
every rule to run per segment.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np

from ..model import CapacityLimit, Connector, CurtailmentEvent, Problem
from ..plan import Plan, Violation
from .phasor import box_max_magnitude as box_max_magnitude
from .rules import PARTIAL as PARTIAL
from .rules import (
    _chain,
    _close,
    _connector_rows,
    _const_limits,
    _Delivered,
    _effective_events,
    _node_limits,
    _node_rules,
    _remaining,
    _structure,
    _vehicle_rules,
)
from .screens import (
    _connector_screen,
    _node_screen,
    _outside_screen,
    _surely_close,
    _vehicle_screen,
)
from .timeline import (
    ENERGY_TOL,
    REL_TOL,
    ZERO_A,
    _Clock,
    _Loads,
    _loads,
    _points,
    _profile_steps,
    _ranges,
    _Report,
    _Segments,
    _segments,
    _Steps,
    _Targets,
)
from .timeline import _us as _us

__all__ = ["box_max_magnitude", "check"]


def check(problem: Problem, plan: Plan) -> list[Violation]:
    """Every violation of ``plan`` against ``problem`` (empty = safe and consistent)."""
    conns = {c.id: c for c in problem.site.connectors}
    sessions = {s.id: s for s in problem.sessions}
    malformed: list[Violation] = []
    clock = _Clock()
    pts = _points(plan, clock)
    profiles = _structure(problem, plan, conns, sessions, pts, malformed)
    stays = np.asarray(
        [clock[t] for s in problem.sessions for t in (s.arrival, s.departure)], dtype=np.int64
    ).reshape(-1, 2)
    seg = _segments(problem, plan, pts, stays, clock)
    rep = _Report(seg)
    rep.items.extend(malformed)

    prof_ids = sorted(profiles)
    y = _profile_steps([profiles[c] for c in prof_ids], plan, pts, seg)
    row_of = {cid: r for r, cid in enumerate(prof_ids)}

    loads = _loads(problem, seg, y, row_of, conns, stays)
    _connector_checks(rep, y, [conns[c] for c in prof_ids], prof_ids)
    _outside_stay(rep, y, prof_ids, loads)
    _vehicle_checks(rep, loads)
    delivered = _energy_checks(rep, loads, seg)
    _energy_report(rep, plan, loads, delivered, seg)
    _node_checks(rep, problem, loads, seg)
    return rep.items


def _connector_checks(rep: _Report, y: _Steps, cs: list[Connector], ids: list[str]) -> None:
    """Bounds, minimum, discrete set and grid: what the charger itself accepts."""
    if not cs:
        return
    rows = _connector_screen(y, cs)
    if rows:
        _connector_rows(rep, y.dense(rows), [cs[i] for i in rows], [ids[i] for i in rows])


def _outside_stay(rep: _Report, y: _Steps, ids: list[str], loads: _Loads) -> None:
    """Current on a connector while no car of the problem is plugged into it."""
    if not ids:
        return
    rows = _outside_screen(y, loads)
    if not rows:
        return
    yy = y.dense(rows)
    occupied = np.zeros(yy.shape, dtype=np.bool_)
    pos = {row: n for n, row in enumerate(rows)}
    for s in np.flatnonzero(np.isin(loads.rows, rows)).tolist():
        occupied[pos[int(loads.rows[s])]] |= loads.present([s])[0]
    bad = (np.abs(yy) > ZERO_A) & ~occupied
    rep.matrix(
        "outside_stay",
        [ids[row] for row in rows],
        bad,
        yy,
        np.zeros((1, 1)),
        "connector {subject}: {value:.6g} A while no session's car is present",
        severity=np.abs(yy),
    )


def _vehicle_checks(rep: _Report, loads: _Loads) -> None:
    """A present car's own limits: max current, max power, min current."""
    if not loads.sessions:
        return
    flagged = _vehicle_screen(loads)
    if not flagged:
        return
    xs = loads.x.dense(flagged)
    pres = loads.present(flagged)
    for n, ii in enumerate(flagged):
        _vehicle_rules(rep, loads, ii, xs[n], pres[n])


def _energy_checks(rep: _Report, loads: _Loads, seg: _Segments) -> _Delivered:
    """Energy each session gets while present; more than it still wants is a violation."""
    dl = _Delivered(loads, seg)
    if not loads.sessions:
        return dl
    want = dl.want
    limit = want + ENERGY_TOL + REL_TOL * want
    maybe = np.flatnonzero(~(dl.kwh <= limit - dl.margin))
    dl.exact(maybe)
    for i in maybe.tolist():
        s = loads.sessions[i]
        want_i = _remaining(s)
        delivered = float(dl.kwh[i])
        if not delivered > want_i + ENERGY_TOL + REL_TOL * want_i:  # NaN: connector_bounds
            continue
        per_seg, cum = dl.cum[i]
        over = np.flatnonzero(~(cum <= want_i + ENERGY_TOL))
        a = int(over[0]) if over.size else 0
        drawn = np.flatnonzero(per_seg != 0)
        b = int(drawn[-1]) if drawn.size else seg.n - 1
        rep.add(
            "energy_above_request",
            s.id,
            seg.time(int(seg.start[a])),
            seg.time(int(seg.end[max(a, b)])),
            delivered,
            want_i,
            f"session {s.id}: the profile delivers {delivered:.6g} kWh, it still wants "
            f"{want_i:.6g} kWh (exceeded from {seg.time(int(seg.start[a])).isoformat()})",
        )
    return dl


def _energy_report(
    rep: _Report, plan: Plan, loads: _Loads, delivered: _Delivered, seg: _Segments
) -> None:
    """The plan's own per-session figures must match what its profiles deliver.

    Screened for all results at once; the results that are not surely right (and the sessions
    missing a result that surely get nothing) are then checked one by one.
    """
    index = {s.id: i for i, s in enumerate(loads.sessions)}

    def stay(i: int) -> tuple[datetime | None, datetime | None]:
        a, b = int(loads.first[i]), int(loads.stop[i])
        if a >= b:
            return None, None
        return seg.time(int(seg.start[a])), seg.time(int(seg.end[b - 1]))

    results = plan.sessions
    at = [index.get(res.session, -1) for res in results]
    known = [r for r, i in enumerate(at) if i >= 0]
    fine = np.zeros(len(results), dtype=np.bool_)
    if known:
        ss = loads.sessions
        ii = np.asarray([at[r] for r in known], dtype=np.int64)
        figures = np.asarray(
            [
                f
                for res in (results[r] for r in known)
                for f in (res.requested_kwh, res.expected_kwh, res.unmet_kwh)
            ],
            dtype=np.float64,
        ).reshape(-1, 3)
        req, exp, unmet = figures.T
        d = req - exp
        ok = np.asarray([results[r].connector == ss[at[r]].connector for r in known])
        ok &= _surely_close(req, delivered.want[ii])
        ok &= _surely_close(unmet, np.where(d > 0.0, d, 0.0))
        ok &= _surely_close(exp, delivered.kwh[ii], delivered.margin[ii])
        fine[known] = ok
    fine_list = fine.tolist()
    seen: set[str] = set()
    for r, res in enumerate(results):
        sid = res.session
        i = at[r]
        if i < 0:
            rep.add(
                "energy_report",
                sid,
                None,
                None,
                res.expected_kwh,
                0.0,
                f"result for unknown session {sid!r}",
            )
            continue
        if fine_list[r] and sid not in seen:
            seen.add(sid)
            continue
        t0, t1 = stay(i)
        if sid in seen:
            rep.add("energy_report", sid, t0, t1, 2, 1, f"session {sid} has more than one result")
        seen.add(sid)
        s = loads.sessions[i]
        if res.connector != s.connector:
            rep.add(
                "energy_report",
                sid,
                t0,
                t1,
                0.0,
                0.0,
                f"result of session {sid} names connector {res.connector}, it is on {s.connector}",
            )
        want_i = _remaining(s)
        got = delivered[i]
        checks = (
            ("requested_kwh", res.requested_kwh, want_i, "still wanted at plan start"),
            ("expected_kwh", res.expected_kwh, got, "delivered by the profile"),
            (
                "unmet_kwh",
                res.unmet_kwh,
                max(0.0, res.requested_kwh - res.expected_kwh),
                "requested - expected",
            ),
        )
        for name, value, truth, why in checks:
            if not _close(value, truth):
                rep.add(
                    "energy_report",
                    sid,
                    t0,
                    t1,
                    float(value),
                    float(truth),
                    f"session {sid}: {name} = {value:.6g} kWh, but {why} is {truth:.6g} kWh",
                )
    missing = [i for i, s in enumerate(loads.sessions) if s.id not in seen]
    if not missing:
        return
    m = np.asarray(missing, dtype=np.int64)
    nothing = _surely_close(delivered.kwh[m], np.zeros(m.shape[0]), delivered.margin[m])
    for i in m[~nothing].tolist():
        s = loads.sessions[i]
        if not _close(delivered[i], 0.0):
            t0, t1 = stay(i)
            rep.add(
                "energy_report",
                s.id,
                t0,
                t1,
                0.0,
                delivered[i],
                f"session {s.id} gets {delivered[i]:.6g} kWh but the plan has no result for it",
            )


def _node_checks(rep: _Report, problem: Problem, loads: _Loads, seg: _Segments) -> None:
    """Every node limit at the planned currents, and at the worst partial draw.

    All nodes are screened at once (``_node_screen``); flagged ones get the per-segment rule.
    """
    site = problem.site.nodes
    nodes = {n.id: n for n in site}
    if not loads.sessions or not nodes:
        return
    # (node, session below it) pairs: a connector's node and its ancestors, every site node
    # with such an id
    same_id: dict[str, list[int]] = defaultdict(list)
    for j, node in enumerate(site):
        same_id[node.id].append(j)
    start_of: dict[str | None, int] = {}
    start = np.asarray([start_of.setdefault(c.node, len(start_of)) for c in loads.conn])
    chains = [[j for nid in _chain(sid, nodes) for j in same_id[nid]] for sid in start_of]
    cptr = np.zeros(len(chains) + 1, dtype=np.int64)
    np.cumsum([len(ch) for ch in chains], out=cptr[1:])
    cnodes = np.asarray([j for ch in chains for j in ch], dtype=np.int64)
    mem_i, pos = _ranges(cptr[start], cptr[start + 1])
    mem_t = cnodes[pos]
    count = np.bincount(mem_t, minlength=len(site))
    if not mem_t.size:
        return
    loaded = np.flatnonzero(count).tolist()  # only these are checked, as nodes, at all
    const = np.full((len(site), 4), np.inf)
    const[loaded] = np.asarray(
        [f for t in loaded for f in _const_limits(site[t])], dtype=np.float64
    ).reshape(-1, 4)
    events = _effective_events(problem.signals.events)
    caps_of: dict[str, list[CapacityLimit]] = defaultdict(list)
    events_of: dict[str, list[CurtailmentEvent]] = defaultdict(list)
    for cap in problem.signals.capacity:
        caps_of[cap.node].append(cap)
    for ev in events:
        events_of[ev.node].append(ev)
    limits = {
        t: _node_limits(site[t], seg, caps_of[site[t].id], events_of[site[t].id])
        for t in loaded
        if site[t].id in caps_of or site[t].id in events_of
    }
    targets = _Targets(site, mem_t, mem_i, count, np.maximum(const, 0.0), limits)
    xv = loads.x.v
    if np.isnan(xv).any():
        xv = np.nan_to_num(xv, nan=0.0)
    nonneg = not (xv < 0).any()  # then planned currents = box corners: reuse the sums
    flagged = _node_screen(targets, loads, xv, nonneg, seg)
    for t in np.flatnonzero(flagged & (count > 0)).tolist():
        lim = limits.get(t) or _node_limits(site[t], seg, [], [])
        _node_rules(rep, site[t], targets.below(t), lim, loads, nonneg)
