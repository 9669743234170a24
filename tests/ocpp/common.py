"""Small builders and the independent safety check shared by the OCPP tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from optimizer.core.model import Connector, Node, Problem, Session, Site, Wiring
from optimizer.core.plan import ChangePoint, ConnectorProfile, Plan
from optimizer.ocpp import ProfileKind, RenderedProfile

from .helpers import limit_at, parts, period_starts

NOW = datetime(2026, 3, 2, 8, 7, tzinfo=UTC)


def problem_of(
    connectors: Sequence[Connector], sessions: Sequence[Session], now: datetime = NOW
) -> Problem:
    return Problem(Site("s", (Node("n"),), tuple(connectors)), tuple(sessions), now)


def plan_of(
    profiles: dict[str, Sequence[tuple[float, float]]], start: datetime = NOW, hours: float = 4.0
) -> Plan:
    """profiles: connector -> [(seconds from start, current A)]."""
    return Plan(
        start,
        start + timedelta(hours=hours),
        tuple(
            ConnectorProfile(
                cid, (), tuple(ChangePoint(start + timedelta(seconds=s), a) for s, a in pts)
            )
            for cid, pts in profiles.items()
        ),
        (),
    )


def plan_value(profile: ConnectorProfile, at: datetime) -> float:
    value = 0.0
    for p in profile.points:
        if p.start <= at:
            value = p.current_a
    return value


def least_phases(conn: Connector, session: Session | None) -> int:
    """The fewest phases a car that may be there draws on: a W limit must be safe for it."""
    if conn.wiring is Wiring.DELTA or conn.phases == 1:
        return 1
    if session is None or session.vehicle_phases is None:
        return 1
    return min(conn.phases, session.vehicle_phases)


def unsafe_instants(problem: Problem, plan: Plan, rendered: Sequence[RenderedProfile]) -> list[str]:
    """Every instant where a plan profile allows more (in A, for the car that may be there)
    than the plan; checked at every edge of either step function. Fail-safe profiles are
    skipped: they rule only where no plan profile does (see ``composite_unsafe``)."""
    conns = {c.id: c for c in problem.site.connectors}
    profiles = {p.connector: p for p in plan.profiles}
    sessions = {s.id: s for s in problem.sessions}
    bad = []
    for r in rendered:
        if r.connector is None or r.kind is ProfileKind.FAILSAFE:
            continue
        conn, prof = conns[r.connector], profiles[r.connector]
        here = [s for s in problem.sessions if s.connector == conn.id]
        tx = sessions[r.session] if r.session else None
        unit = (
            r.payload["csChargingProfiles"]["chargingSchedule"]
            if r.ocpp_version == "1.6"
            else r.payload["chargingProfile"]["chargingSchedule"][0]
        )["chargingRateUnit"]
        times = {
            plan.start,
            *(p.start for p in prof.points),
            *(s.arrival for s in here),
            *(s.departure for s in here),
            *period_starts(r.payload, r.ocpp_version),
        }
        for t in sorted(x for x in times if plan.start <= x < plan.end):
            applied = limit_at(r.payload, r.ocpp_version, t)
            if applied is None:
                if tx is None or t < tx.departure:
                    bad.append(f"{r.connector} {t}: no limit inside the plan window")
                continue
            if unit == "A":
                amps = applied
            else:
                present = [tx] if tx else [s for s in here if s.arrival <= t < s.departure]
                ph = min((least_phases(conn, s) for s in present), default=1)
                amps = applied / (conn.voltage_v * ph)
            if amps > plan_value(prof, t) + 1e-9:
                bad.append(f"{r.connector} {t}: {amps} A > plan {plan_value(prof, t)} A")
    return bad


def composite_unsafe(
    problem: Problem, plan: Plan, rendered: Sequence[RenderedProfile]
) -> list[str]:
    """Where the limit a charger composes (a valid TxProfile wins, else the valid
    TxDefaultProfile on the highest stack level) exceeds the plan (A profiles only)."""
    profiles = {p.connector: p for p in plan.profiles}
    bad = []
    for cid, prof in profiles.items():
        mine = [r for r in rendered if r.connector == cid]
        if not mine:
            continue
        times = {
            plan.start,
            *(p.start for p in prof.points),
            *(t for r in mine for t in period_starts(r.payload, r.ocpp_version)),
        }
        for t in sorted(x for x in times if plan.start <= x < plan.end):
            tx = [limit_at(r.payload, r.ocpp_version, t) for r in mine if r.kind is ProfileKind.TX]
            tx = [v for v in tx if v is not None]
            if tx:
                value = min(tx)
            else:
                levels = []
                for r in mine:
                    if r.kind in (ProfileKind.TX_DEFAULT, ProfileKind.FAILSAFE):
                        v = limit_at(r.payload, r.ocpp_version, t)
                        _, pr_, _ = parts(r.payload, r.ocpp_version)
                        if v is not None:
                            levels.append((pr_["stackLevel"], v))
                if not levels:
                    bad.append(f"{cid} {t}: no limit at all")
                    continue
                value = max(levels)[1]
            if value > plan_value(prof, t) + 1e-9:
                bad.append(f"{cid} {t}: composite {value} A > plan {plan_value(prof, t)} A")
    return bad
