"""Plan -> SetChargingProfile payloads, per charger's OCPP version and capabilities.

Which profiles, and why:

* ``TxProfile`` per session the CSMS has a transaction for: the plan's connector current over
  [plan start, departure) (capped at the plan end); after that the charger falls back to the
  TxDefaultProfile, so an overstaying car lands on the fail-safe, not on the next car's plan.
* ``TxDefaultProfile`` per connector from the plan (stack level above the fail-safe, ``validTo``
  = plan end): bounds any car, with or without a transaction, until the plan expires.
* fail-safe ``TxDefaultProfile`` per connector (lowest level, no end): see ``failsafe``.
* station max profile per charging station (connector / EVSE 0): the sum of the plan's
  connector limits, optionally capped by a given share of a site limit.

Plan profiles never carry ``validFrom``: valid on receipt, so a charger whose clock runs a few
seconds behind does not keep an older, higher profile meanwhile.

Limits in W need the number of phases the car draws on: W = A x V x phases (wye), A x V (delta,
line to line). A car of unknown phase count on a multi-phase wye connector is counted as 1-phase
(a 1-phase car given 3-phase watts would draw three times the planned current on its one phase),
with a warning; limits in A do not depend on the car and lose nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.model import Connector, Problem, Session, Wiring, phase_coefficients, used_phases
from ..core.plan import ConnectorProfile, Plan
from . import v16, v21, v201
from .capabilities import ChargerCapabilities, ProfileKind, RateUnit
from .failsafe import FallbackLimit, failsafe_currents
from .rules import payload_errors
from .schedule import (
    SECOND_US,
    Period,
    Schedule,
    Step,
    build_schedule,
    floor_tenths,
    from_us,
    to_us,
)

__all__ = [
    "RenderedProfile",
    "applied_limit",
    "render_failsafe",
    "render_plan",
    "render_station_max",
]


@dataclass(frozen=True)
class RenderedProfile:
    """One message for the CSMS to send: ``action`` with ``payload`` to the charger of
    ``connector`` (None for a station-level profile of ``station``)."""

    connector: str | None
    station: str
    ocpp_version: str
    kind: ProfileKind
    payload: dict[str, Any]
    session: str | None = None
    action: str = "SetChargingProfile"
    warnings: tuple[str, ...] = field(default=())


# --- reading a payload back: what the charger applies -----------------------------------------


def _profile_schedule(
    payload: dict[str, Any], version: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    if version == "1.6":
        return v16.profile_schedule(payload)
    if version == "2.0.1":
        return v201.profile_schedule(payload)
    if version == "2.1":
        return v21.profile_schedule(payload)
    raise ValueError(f"unknown OCPP version {version!r}")


def applied_limit(payload: dict[str, Any], version: str, at: datetime) -> float | None:
    """The limit this profile sets at ``at`` (in its unit), None where it sets none.

    Absolute schedules only (the only kind rendered here): outside validFrom/validTo, before
    startSchedule or from startSchedule + duration on, the profile does not apply.
    """
    prof, sch = _profile_schedule(payload, version)
    t = to_us(at)
    if "validFrom" in prof and t < to_us(datetime.fromisoformat(prof["validFrom"])):
        return None
    if "validTo" in prof and t >= to_us(datetime.fromisoformat(prof["validTo"])):
        return None
    off = t - to_us(datetime.fromisoformat(sch["startSchedule"]))
    if off < 0 or ("duration" in sch and off >= sch["duration"] * 1_000_000):
        return None
    cur: float | None = None
    for p in sch["chargingSchedulePeriod"]:
        if p["startPeriod"] * 1_000_000 > off:
            break
        cur = float(p["limit"])
    return cur


# --- building payloads ------------------------------------------------------------------------


def _payload(
    caps: ChargerCapabilities,
    kind: ProfileKind,
    schedule: Schedule,
    *,
    target: int,
    transaction_id: str | None = None,
    valid_to: datetime | None = None,
) -> dict[str, Any]:
    common: dict[str, Any] = dict(
        kind=kind,
        profile_id=caps.profile_id(kind),
        stack_level=caps.stack_level(kind),
        transaction_id=transaction_id,
        valid_to=valid_to,
    )
    if caps.ocpp_version == "1.6":
        return v16.set_charging_profile(schedule, connector_id=target, **common)
    if caps.ocpp_version == "2.0.1":
        return v201.set_charging_profile(schedule, evse_id=target, **common)
    offline = kind is not ProfileKind.FAILSAFE  # plan-derived: give way to the fail-safe
    return v21.set_charging_profile(
        schedule,
        evse_id=target,
        **common,
        max_offline_duration_s=caps.max_offline_duration_s if offline else None,
        invalid_after_offline=caps.invalid_after_offline if offline else None,
    )


def _target(caps: ChargerCapabilities) -> int:
    return caps.connector_id if caps.ocpp_version == "1.6" else caps.evse_id


def _finish(
    caps: ChargerCapabilities, payload: dict[str, Any], schedule: Schedule, warnings: list[str]
) -> tuple[str, ...]:
    """Refuse to hand out a payload a charger would reject; warn about 0 on chargers that
    reject it (raising it would allow more than the plan)."""
    errs = payload_errors(payload, caps.ocpp_version, max_periods=caps.max_periods)
    if errs:
        raise RuntimeError(f"rendered an invalid SetChargingProfile: {errs}")
    if not caps.zero_limit_ok and any(p.limit_tenths == 0 for p in schedule.periods):
        warnings.append(
            "profile holds a limit of 0, which this charger rejects: pause it by "
            "other means (stop / availability) or enable zero_limit_ok"
        )
    return tuple(dict.fromkeys(warnings))


def _phase_to_use(conn: Connector, caps: ChargerCapabilities) -> int | None:
    """phaseToUse = 1: the plan puts a 1-phase car on the connector's first phase (2.x only)."""
    ok = (
        caps.supports_phase_switching
        and caps.ocpp_version != "1.6"
        and conn.wiring is Wiring.WYE
        and conn.phases > 1
    )
    return 1 if ok else None


def _watts_per_amp(conn: Connector, present: Sequence[Session], warnings: list[str]) -> float:
    """W per A of connector current that no car which may be present can exceed."""
    if conn.wiring is Wiring.DELTA or conn.phases == 1:
        return conn.voltage_v
    known = [used_phases(conn, s) for s in present if s.vehicle_phases is not None]
    if not present or len(known) < len(present):
        warnings.append(f"{conn.id}: vehicle phases unknown, limit in W assumes 1 phase")
        return conn.voltage_v
    return conn.voltage_v * min(known)


class _Current:
    """A connector profile read as a charger would: a point holds until the next; 0 before."""

    def __init__(self, profile: ConnectorProfile) -> None:
        pts = sorted(profile.points, key=lambda p: to_us(p.start))
        self._t = [to_us(p.start) for p in pts]
        self._a = [p.current_a for p in pts]

    def at(self, t_us: int) -> float:
        k = bisect.bisect_right(self._t, t_us)
        return self._a[k - 1] if k else 0.0


def _present(sessions: Sequence[Session], t_us: int) -> list[Session]:
    return [s for s in sessions if to_us(s.arrival) <= t_us < to_us(s.departure)]


def _connector_steps(
    conn: Connector,
    profile: ConnectorProfile,
    sessions: Sequence[Session],
    start_us: int,
    end_us: int,
    unit: RateUnit,
    *,
    fixed: bool,
    warnings: list[str],
) -> list[Step]:
    """The plan's current on one connector as steps in ``unit``.

    ``fixed``: every session in ``sessions`` is taken as present throughout (a TxProfile's car);
    otherwise the phases come from whichever session is present at each instant.
    """
    times = {start_us} | {to_us(p.start) for p in profile.points}
    if not fixed:
        times |= {to_us(s.arrival) for s in sessions} | {to_us(s.departure) for s in sessions}
    current = _Current(profile)
    steps = []
    for t in sorted(x for x in times if start_us <= x < end_us + SECOND_US):
        amps = current.at(t)
        present = list(sessions) if fixed else _present(sessions, t)
        label = min((used_phases(conn, s) for s in present), default=used_phases(conn, None))
        if unit is RateUnit.AMPS:
            steps.append(Step(from_us(t), amps, label, float(label)))
        else:
            w = _watts_per_amp(conn, present, warnings if amps > 0 else [])
            steps.append(Step(from_us(t), amps * w, label, 1.0))
    return steps


def _connector_schedule(
    conn: Connector,
    caps: ChargerCapabilities,
    profile: ConnectorProfile,
    sessions: Sequence[Session],
    start: datetime,
    end: datetime,
    *,
    fixed: bool,
    warnings: list[str],
) -> Schedule:
    s_us, e_us = to_us(start), to_us(end)
    steps = _connector_steps(
        conn, profile, sessions, s_us, e_us, caps.rate_unit, fixed=fixed, warnings=warnings
    )
    return build_schedule(
        steps,
        start,
        end,
        unit=caps.rate_unit,
        res_tenths=caps.resolution_tenths,
        min_limit_tenths=caps.min_limit_tenths,
        max_periods=caps.max_periods,
        phase_to_use=_phase_to_use(conn, caps),
    )


def _station_of(conn: Connector, caps: ChargerCapabilities) -> str:
    return caps.station_id if caps.station_id is not None else conn.node


def render_plan(
    problem: Problem,
    plan: Plan,
    capabilities: Mapping[str, ChargerCapabilities],
    transaction_ids: Mapping[str, str] | None = None,
    *,
    purpose: ProfileKind | str = ProfileKind.TX,
    station_max: bool = False,
    station_limits: Mapping[str, float] | None = None,
) -> list[RenderedProfile]:
    """SetChargingProfile payloads for every connector in ``capabilities``.

    ``purpose`` TxProfile: one per session with an id in ``transaction_ids`` (session id -> the
    CSMS's id of its *active* transaction, so at most one per connector); sessions without one
    get nothing (the TxDefaultProfiles cover them). Connectors missing from ``capabilities``
    are not rendered.
    ``purpose`` TxDefaultProfile: one per connector. ``station_max`` adds a station max profile
    per charging station (see ``render_station_max``).
    """
    kind = ProfileKind(purpose)
    if kind not in (ProfileKind.TX, ProfileKind.TX_DEFAULT):
        raise ValueError("purpose must be TxProfile or TxDefaultProfile")
    conns = {c.id: c for c in problem.site.connectors}
    profiles = {p.connector: p for p in plan.profiles}
    unknown = [c for c in capabilities if c not in conns]
    if unknown:
        raise ValueError(f"capabilities for unknown connectors: {unknown}")
    missing = [c for c in capabilities if c not in profiles]
    if missing:
        raise ValueError(f"plan has no profile for connectors: {missing}")
    tx_ids = transaction_ids or {}
    out: list[RenderedProfile] = []
    for cid, caps in capabilities.items():
        conn, prof = conns[cid], profiles[cid]
        sessions = [s for s in problem.sessions if s.connector == cid]
        station = _station_of(conn, caps)
        if kind is ProfileKind.TX_DEFAULT:
            warnings: list[str] = []
            sch = _connector_schedule(
                conn, caps, prof, sessions, plan.start, plan.end, fixed=False, warnings=warnings
            )
            payload = _payload(caps, kind, sch, target=_target(caps), valid_to=sch.end)
            out.append(
                RenderedProfile(
                    cid,
                    station,
                    caps.ocpp_version,
                    kind,
                    payload,
                    warnings=_finish(caps, payload, sch, warnings),
                )
            )
            continue
        with_tx = [s for s in sessions if s.id in tx_ids]
        if len(with_tx) > 1:
            # One active transaction per connector; TxProfiles share the connector's profile id.
            raise ValueError(
                f"{cid}: transaction ids for several sessions "
                f"{[s.id for s in with_tx]}; pass only the active one"
            )
        for s in with_tx:
            end = plan.end
            if plan.start < s.departure < plan.end:
                end = s.departure
            warnings = []
            sch = _connector_schedule(
                conn, caps, prof, [s], plan.start, end, fixed=True, warnings=warnings
            )
            payload = _payload(
                caps, kind, sch, target=_target(caps), transaction_id=tx_ids[s.id], valid_to=sch.end
            )
            out.append(
                RenderedProfile(
                    cid,
                    station,
                    caps.ocpp_version,
                    kind,
                    payload,
                    session=s.id,
                    warnings=_finish(caps, payload, sch, warnings),
                )
            )
    if station_max:
        out.extend(render_station_max(problem, plan, capabilities, limits=station_limits))
    return out


def render_station_max(
    problem: Problem,
    plan: Plan,
    capabilities: Mapping[str, ChargerCapabilities],
    *,
    limits: Mapping[str, float] | None = None,
) -> list[RenderedProfile]:
    """Per charging station a max profile: at each instant the sum of its connectors' plan.

    In A: the highest per-phase sum (a delta branch loads both its lines); in W: the summed power
    (each car at the phases it is planned on). ``limits`` (station -> value in the station's unit)
    caps it further, e.g. the station's share of a site limit. It never exceeds the plan's total.
    """
    conns = {c.id: c for c in problem.site.connectors}
    profiles = {p.connector: p for p in plan.profiles}
    groups: dict[str, list[str]] = {}
    for cid, caps in capabilities.items():
        groups.setdefault(_station_of(conns[cid], caps), []).append(cid)
    out = []
    s_us, e_us = to_us(plan.start), to_us(plan.end)
    for station, members in groups.items():
        caps = capabilities[members[0]]
        if any(
            capabilities[m].ocpp_version != caps.ocpp_version
            or capabilities[m].rate_unit != caps.rate_unit
            for m in members
        ):
            raise ValueError(f"station {station}: connectors disagree on OCPP version / unit")
        sess = {m: [s for s in problem.sessions if s.connector == m] for m in members}
        times = {s_us}
        for m in members:
            times |= {to_us(p.start) for p in profiles[m].points}
            times |= {to_us(s.arrival) for s in sess[m]} | {to_us(s.departure) for s in sess[m]}
        cap = None if limits is None or station not in limits else float(limits[station])
        current = {m: _Current(profiles[m]) for m in members}
        steps = []
        for t in sorted(x for x in times if s_us <= x < e_us + SECOND_US):
            total = _station_total(conns, current, sess, members, t, caps.rate_unit)
            steps.append(Step(from_us(t), total if cap is None else min(total, cap)))
        sch = build_schedule(
            steps,
            plan.start,
            plan.end,
            unit=caps.rate_unit,
            res_tenths=caps.resolution_tenths,
            min_limit_tenths=0,
            max_periods=caps.max_periods,
        )
        kind = ProfileKind.STATION_MAX
        payload = _payload(caps, kind, sch, target=0, valid_to=sch.end)
        out.append(
            RenderedProfile(
                None,
                station,
                caps.ocpp_version,
                kind,
                payload,
                warnings=_finish(caps, payload, sch, []),
            )
        )
    return out


def _station_total(
    conns: Mapping[str, Connector],
    current: Mapping[str, _Current],
    sess: Mapping[str, list[Session]],
    members: Sequence[str],
    t: int,
    unit: RateUnit,
) -> float:
    """The plan's station load at ``t``: highest per-phase sum (A) or summed power (W)."""
    per_phase = [0.0, 0.0, 0.0]
    watts = 0.0
    for m in members:
        conn, amps = conns[m], current[m].at(t)
        if amps <= 0:
            continue
        present = _present(sess[m], t)
        s = present[0] if len(present) == 1 else None
        for p, c in enumerate(phase_coefficients(conn, s)):
            per_phase[p] += abs(c) * amps
        watts += amps * conn.voltage_v * used_phases(conn, s)
    return max(per_phase) if unit is RateUnit.AMPS else watts


def render_failsafe(
    problem: Problem,
    capabilities: Mapping[str, ChargerCapabilities],
    *,
    fallback: Mapping[str, FallbackLimit] | None = None,
    currents: Mapping[str, float] | None = None,
) -> list[RenderedProfile]:
    """Per connector in ``capabilities`` a TxDefaultProfile at its fail-safe current.

    Constant, from ``problem.now`` on, no duration, no ``validTo`` and (2.1) no offline fields:
    it must hold for any car, for as long as the link is down. ``currents`` overrides the
    computed ``failsafe_currents(problem, fallback)``.
    """
    amps = dict(currents) if currents is not None else failsafe_currents(problem, fallback)
    conns = {c.id: c for c in problem.site.connectors}
    start = from_us(to_us(problem.now) // 1_000_000 * 1_000_000)
    out = []
    for cid, caps in capabilities.items():
        conn = conns[cid]
        warnings: list[str] = []
        label = used_phases(conn, None)
        if caps.rate_unit is RateUnit.AMPS:
            value = amps[cid]
        else:
            value = amps[cid] * _watts_per_amp(conn, [], warnings if amps[cid] > 0 else [])
        tenths = floor_tenths(value, caps.resolution_tenths)
        if 0 < tenths < caps.min_limit_tenths:
            tenths = 0
        sch = Schedule(start, None, caps.rate_unit, (Period(0, tenths, label, None),))
        kind = ProfileKind.FAILSAFE
        payload = _payload(caps, kind, sch, target=_target(caps))
        out.append(
            RenderedProfile(
                cid,
                _station_of(conn, caps),
                caps.ocpp_version,
                kind,
                payload,
                warnings=_finish(caps, payload, sch, warnings),
            )
        )
    return out
