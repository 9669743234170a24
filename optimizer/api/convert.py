"""Protobuf messages <-> domain model. Structural only: value rules live in
``optimizer.core.validate``.

What cannot even be represented in the domain (a missing timestamp, an out-of-range one, an
unknown enum number) is reported here as a field violation with the same path style, so a client
gets one kind of error whichever layer caught it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from ..core.grid_reports import EventCompliance, Flexibility
from ..core.model import (
    CapacityLimit,
    Connector,
    CurtailmentEvent,
    Mode,
    Node,
    Options,
    PhasorLimit,
    Problem,
    Session,
    Signals,
    Site,
    TimeValue,
    Wiring,
)
from ..core.plan import Plan, Violation
from ..core.validate import FieldViolation, ValidationError, validate
from .smartcharging.v1 import smartcharging_pb2 as pb

#: Domain option names -> the proto field a client set (validation speaks domain names).
OPTION_PATHS = {
    "options.slot_minutes": "options.slot_length",
    "options.horizon_hours": "options.horizon",
    "options.time_limit_s": "options.time_limit",
}

_MODES: dict[int, Mode] = {pb.MODE_UNSPECIFIED: Mode.AUTO, pb.MODE_FAST: Mode.FAST,
                           pb.MODE_LP: Mode.LP, pb.MODE_AUTO: Mode.AUTO}
_MODES_BACK = {Mode.FAST: pb.MODE_FAST, Mode.LP: pb.MODE_LP, Mode.AUTO: pb.MODE_AUTO}
_WIRING: dict[int, Wiring] = {pb.WIRING_UNSPECIFIED: Wiring.WYE, pb.WIRING_WYE: Wiring.WYE,
                              pb.WIRING_DELTA: Wiring.DELTA}
_WIRING_BACK = {Wiring.WYE: pb.WIRING_WYE, Wiring.DELTA: pb.WIRING_DELTA}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append(FieldViolation(path, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(tuple(self.items))


def _time(
    msg: Any, name: str, path: str, err: _Errors, default: datetime | None = None
) -> datetime:
    path = f"{path}.{name}" if path else name
    if not msg.HasField(name):
        if default is None:
            err.add(path, "required")
            return _EPOCH
        return default
    ts: Timestamp = getattr(msg, name)
    # Timestamp's valid range is years 1-9999; protobuf itself rejects beyond that on parse,
    # but a binary client can send anything.
    if not (-62135596800 <= ts.seconds <= 253402300799) or not (0 <= ts.nanos < 1_000_000_000):
        err.add(path, "timestamp out of range")
        return _EPOCH
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _minutes(msg: Any, name: str, default: float) -> float:
    if not msg.HasField(name):
        return default
    d: Duration = getattr(msg, name)
    return d.seconds / 60.0 + d.nanos / 60e9


def _whole_minutes(msg: Any, name: str, default: int) -> int | float:
    """Whole minutes as int; a fractional value stays float so validation can name it."""
    v = _minutes(msg, name, default)
    return int(v) if float(v).is_integer() else v


def _opt(msg: Any, name: str) -> float | None:
    return getattr(msg, name) if msg.HasField(name) else None


def _enum(value: int, table: dict[int, Any], path: str, err: _Errors) -> Any:
    if value not in table:
        err.add(path, f"unknown enum value {value}")
        return next(iter(table.values()))
    return table[value]


def site_from_proto(m: pb.Site, err: _Errors | None = None, path: str = "site") -> Site:
    own = err is None
    e = err or _Errors()
    nodes = tuple(
        Node(
            id=n.id,
            parent=n.parent or None,
            phase_limit_a=tuple(n.phase_limit_a) if len(n.phase_limit_a) else None,  # type: ignore[arg-type]
            power_limit_kw=_opt(n, "power_limit_kw"),
            phasor_limits=tuple(
                PhasorLimit(p.name, tuple(p.coefficients), p.limit_a)  # type: ignore[arg-type]
                for p in n.phasor_limits
            ),
            voltage_v=n.voltage_v if n.HasField("voltage_v") else 230.0,
        )
        for n in m.nodes
    )
    conns = tuple(
        Connector(
            id=c.id,
            node=c.node,
            max_current_a=c.max_current_a,
            min_current_a=c.min_current_a if c.HasField("min_current_a") else 6.0,
            current_step_a=c.current_step_a if c.HasField("current_step_a") else 0.1,
            allowed_currents_a=tuple(c.allowed_currents_a),
            phases=c.phases or 3,
            phase_rotation=c.phase_rotation or "L1L2L3",
            wiring=_enum(c.wiring, _WIRING, f"{path}.connectors[{k}].wiring", e),
            voltage_v=c.voltage_v if c.HasField("voltage_v") else 230.0,
            phase_angle_deg=_opt(c, "phase_angle_deg"),
        )
        for k, c in enumerate(m.connectors)
    )
    if own:
        e.raise_if_any()
    return Site(m.id, nodes, conns)


def session_from_proto(m: pb.Session, path: str, err: _Errors) -> Session:
    return Session(
        id=m.id,
        connector=m.connector,
        arrival=_time(m, "arrival", path, err),
        departure=_time(m, "departure", path, err),
        energy_requested_kwh=m.energy_requested_kwh,
        energy_delivered_kwh=m.energy_delivered_kwh,
        vehicle_max_current_a=_opt(m, "vehicle_max_current_a"),
        vehicle_min_current_a=_opt(m, "vehicle_min_current_a"),
        vehicle_max_power_kw=_opt(m, "vehicle_max_power_kw"),
        vehicle_phases=m.vehicle_phases or None,
        priority=m.priority if m.HasField("priority") else 1.0,
        measured_current_a=_opt(m, "measured_current_a"),
    )


def event_from_proto(m: pb.CurtailmentEvent, path: str, err: _Errors) -> CurtailmentEvent:
    return CurtailmentEvent(
        id=m.id,
        node=m.node,
        start=_time(m, "start", path, err),
        end=_time(m, "end", path, err),
        limit_kw=_opt(m, "limit_kw"),
        reduction_kw=_opt(m, "reduction_kw"),
        modification=m.modification,
    )


def capacity_from_proto(m: pb.CapacityLimit, path: str, err: _Errors) -> CapacityLimit:
    return CapacityLimit(
        node=m.node,
        start=_time(m, "start", path, err),
        end=_time(m, "end", path, err),
        limit_kw=_opt(m, "limit_kw"),
        phase_limit_a=tuple(m.phase_limit_a) if len(m.phase_limit_a) else None,  # type: ignore[arg-type]
    )


def values_from_proto(ms: Iterable[pb.TimeValue], path: str, err: _Errors) -> tuple[TimeValue, ...]:
    return tuple(
        TimeValue(_time(v, "start", f"{path}[{k}]", err), _time(v, "end", f"{path}[{k}]", err),
                  v.value)
        for k, v in enumerate(ms)
    )


def signals_from_proto(m: pb.Signals, err: _Errors, path: str = "signals") -> Signals:
    return Signals(
        capacity=tuple(capacity_from_proto(c, f"{path}.capacity[{k}]", err)
                       for k, c in enumerate(m.capacity)),
        prices=values_from_proto(m.prices, f"{path}.prices", err),
        carbon=values_from_proto(m.carbon, f"{path}.carbon", err),
        events=tuple(event_from_proto(ev, f"{path}.events[{k}]", err)
                     for k, ev in enumerate(m.events)),
    )


def options_from_proto(m: pb.Options, err: _Errors, path: str = "options") -> Options:
    d = Options()
    return Options(
        slot_minutes=_whole_minutes(m, "slot_length", d.slot_minutes),  # type: ignore[arg-type]
        horizon_hours=_minutes(m, "horizon", d.horizon_hours * 60) / 60.0,
        mode=_enum(m.mode, _MODES, f"{path}.mode", err),
        time_limit_s=_minutes(m, "time_limit", d.time_limit_s / 60) * 60.0,
        cost_weight=m.cost_weight if m.HasField("cost_weight") else d.cost_weight,
        carbon_weight=m.carbon_weight if m.HasField("carbon_weight") else d.carbon_weight,
        phasor_polygon_sides=m.phasor_polygon_sides or d.phasor_polygon_sides,
    )


def options_to_proto(o: Options) -> pb.Options:
    m = pb.Options(mode=_MODES_BACK[o.mode], phasor_polygon_sides=o.phasor_polygon_sides,
                   cost_weight=o.cost_weight, carbon_weight=o.carbon_weight)
    m.slot_length.FromTimedelta(timedelta(minutes=o.slot_minutes))
    m.horizon.FromTimedelta(timedelta(hours=o.horizon_hours))
    m.time_limit.FromTimedelta(timedelta(seconds=o.time_limit_s))
    return m


def problem_from_request(req: pb.OptimizeRequest, now: datetime | None = None) -> Problem:
    """Convert and validate an Optimize request; raises ValidationError with proto field paths."""
    err = _Errors()
    site = site_from_proto(req.site, err)
    sessions = tuple(session_from_proto(s, f"sessions[{k}]", err)
                     for k, s in enumerate(req.sessions))
    signals = signals_from_proto(req.signals, err)
    options = options_from_proto(req.options, err)
    t_now = _time(req, "now", "", err, default=now or datetime.now(UTC))
    err.raise_if_any()
    problem = Problem(site=site, sessions=sessions, now=t_now, signals=signals, options=options)
    validate_with_proto_paths(problem)
    return problem


def validate_with_proto_paths(problem: Problem) -> None:
    try:
        validate(problem)
    except ValidationError as exc:
        raise ValidationError(tuple(
            FieldViolation(_proto_path(v.field), v.description) for v in exc.violations
        )) from None


def _proto_path(path: str) -> str:
    for dom, wire in OPTION_PATHS.items():
        if path == dom or path.startswith(dom + "."):
            return wire + path[len(dom):]
    return path


def read_request_json(text: str) -> pb.OptimizeRequest:
    """Parse protobuf's canonical JSON form of an OptimizeRequest (the CLI's file format)."""
    return json_format.Parse(text, pb.OptimizeRequest())


# --- domain -> proto ---------------------------------------------------------------------------


def _ts(d: datetime) -> Timestamp:
    # Integer microseconds since the epoch: exact, and ~3x faster than Timestamp.FromDatetime.
    us = (d - _EPOCH) // timedelta(microseconds=1)
    return Timestamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000)


def site_to_proto(s: Site) -> pb.Site:
    return pb.Site(
        id=s.id,
        nodes=[
            pb.Node(id=n.id, parent=n.parent or "", phase_limit_a=list(n.phase_limit_a or ()),
                    power_limit_kw=n.power_limit_kw, voltage_v=n.voltage_v,
                    phasor_limits=[pb.PhasorLimit(name=p.name, coefficients=list(p.coefficients),
                                                  limit_a=p.limit_a) for p in n.phasor_limits])
            for n in s.nodes
        ],
        connectors=[
            pb.Connector(id=c.id, node=c.node, max_current_a=c.max_current_a,
                         min_current_a=c.min_current_a, current_step_a=c.current_step_a,
                         allowed_currents_a=list(c.allowed_currents_a), phases=c.phases,
                         phase_rotation=c.phase_rotation, wiring=_WIRING_BACK[c.wiring],
                         voltage_v=c.voltage_v, phase_angle_deg=c.phase_angle_deg)
            for c in s.connectors
        ],
    )


def session_to_proto(s: Session) -> pb.Session:
    return pb.Session(
        id=s.id, connector=s.connector, arrival=_ts(s.arrival), departure=_ts(s.departure),
        energy_requested_kwh=s.energy_requested_kwh, energy_delivered_kwh=s.energy_delivered_kwh,
        vehicle_max_current_a=s.vehicle_max_current_a,
        vehicle_min_current_a=s.vehicle_min_current_a,
        vehicle_max_power_kw=s.vehicle_max_power_kw, vehicle_phases=s.vehicle_phases or 0,
        priority=s.priority, measured_current_a=s.measured_current_a,
    )


def event_to_proto(e: CurtailmentEvent) -> pb.CurtailmentEvent:
    return pb.CurtailmentEvent(id=e.id, node=e.node, start=_ts(e.start), end=_ts(e.end),
                               limit_kw=e.limit_kw, reduction_kw=e.reduction_kw,
                               modification=e.modification)


def capacity_to_proto(c: CapacityLimit) -> pb.CapacityLimit:
    return pb.CapacityLimit(node=c.node, start=_ts(c.start), end=_ts(c.end),
                            limit_kw=c.limit_kw, phase_limit_a=list(c.phase_limit_a or ()))


def signals_to_proto(s: Signals) -> pb.Signals:
    return pb.Signals(
        capacity=[capacity_to_proto(c) for c in s.capacity],
        prices=[pb.TimeValue(start=_ts(v.start), end=_ts(v.end), value=v.value) for v in s.prices],
        carbon=[pb.TimeValue(start=_ts(v.start), end=_ts(v.end), value=v.value) for v in s.carbon],
        events=[event_to_proto(e) for e in s.events],
    )


def request_from_problem(p: Problem) -> pb.OptimizeRequest:
    return pb.OptimizeRequest(site=site_to_proto(p.site),
                              sessions=[session_to_proto(s) for s in p.sessions],
                              signals=signals_to_proto(p.signals), now=_ts(p.now),
                              options=options_to_proto(p.options))


def _violation_to_proto(v: Violation) -> pb.Violation:
    m = pb.Violation(kind=v.kind, subject=v.subject, value=v.value, limit=v.limit,
                     message=v.message)
    if v.start is not None:
        m.start.CopyFrom(_ts(v.start))
    if v.end is not None:
        m.end.CopyFrom(_ts(v.end))
    return m


def plan_to_proto(plan: Plan, site_id: str = "") -> pb.Plan:
    m = pb.Plan(
        site_id=site_id, start=_ts(plan.start), end=_ts(plan.end),
        profiles=[pb.ConnectorProfile(connector=p.connector, sessions=list(p.sessions),
                                      points=[pb.ChangePoint(start=_ts(c.start),
                                                             current_a=c.current_a)
                                              for c in p.points])
                  for p in plan.profiles],
        sessions=[pb.SessionResult(session=s.session, connector=s.connector,
                                   requested_kwh=s.requested_kwh, expected_kwh=s.expected_kwh,
                                   unmet_kwh=s.unmet_kwh) for s in plan.sessions],
        peaks=[pb.Peak(node=p.node, label=p.label, peak=p.peak, limit=p.limit, at=_ts(p.at))
               for p in plan.peaks],
        energy_cost=plan.energy_cost, carbon_kg=plan.carbon_kg, solver=plan.solver,
        mode=_MODES_BACK.get(Mode(plan.mode), pb.MODE_UNSPECIFIED) if plan.mode
        else pb.MODE_UNSPECIFIED,
        lp_bound_kwh=plan.lp_bound_kwh, gap=plan.gap, warnings=list(plan.warnings),
        violations=[_violation_to_proto(v) for v in plan.violations],
    )
    m.solve_time.FromTimedelta(timedelta(seconds=plan.solve_time_s))
    return m


# --- grid operator reports ---------------------------------------------------------------------


def compliance_to_proto(r: EventCompliance, site_id: str) -> pb.EventCompliance:
    """An event's compliance record (``optimizer.core.grid_reports``) as the API's message."""
    return pb.EventCompliance(
        site_id=site_id, event=event_to_proto(r.event), limit_kw=r.limit_kw,
        plan_start=_ts(r.plan_start), plan_end=_ts(r.plan_end),
        covered_from=_ts(r.covered_from), covered_until=_ts(r.covered_until),
        fully_covered=r.fully_covered,
        intervals=[pb.ComplianceInterval(start=_ts(i.start), end=_ts(i.end),
                                         import_kw=i.import_kw,
                                         phase_current_a=list(i.phase_a or ()),
                                         limit_kw=i.limit_kw, over_kw=i.over_kw,
                                         import_without_event_kw=i.import_without_kw)
                   for i in r.intervals],
        kwh_over=r.kwh_over, peak_import_kw=r.peak_import_kw, energy_kwh=r.energy_kwh,
        energy_without_event_kwh=r.energy_without_kwh,
        lowered=[pb.LoweredConnector(connector=c.connector, sessions=list(c.sessions),
                                     energy_kwh=c.energy_kwh,
                                     energy_without_event_kwh=c.energy_without_kwh,
                                     max_reduction_a=c.max_reduction_a)
                 for c in r.lowered],
        solver=r.solver, counterfactual_solver=r.counterfactual_solver,
    )


def flexibility_to_proto(f: Flexibility, site_id: str) -> pb.GetFlexibilityResponse:
    """A node's flexibility curve as the ``GetFlexibility`` answer."""
    return pb.GetFlexibilityResponse(
        site_id=site_id, node=f.node, start=_ts(f.start), end=_ts(f.end),
        plan_start=_ts(f.plan_start), plan_end=_ts(f.plan_end),
        covered_from=_ts(f.covered_from), covered_until=_ts(f.covered_until),
        baseline_peak_kw=f.baseline_peak_kw, baseline_unmet_kwh=f.baseline_unmet_kwh,
        baseline_sessions_short=f.baseline_sessions_short, min_feasible_kw=f.min_feasible_kw,
        levels=[pb.FlexibilityLevel(cap_kw=v.cap_kw, peak_kw=v.peak_kw, unmet_kwh=v.unmet_kwh,
                                    extra_unmet_kwh=v.extra_unmet_kwh,
                                    sessions_short=v.sessions_short, newly_short=v.newly_short,
                                    solver=v.solver)
                for v in f.levels],
    )


# --- OCPP profiles -------------------------------------------------------------------------------

_KINDS = {"TxProfile": pb.OCPP_PROFILE_KIND_TX, "TxDefaultProfile": pb.OCPP_PROFILE_KIND_TX_DEFAULT,
          "failsafe": pb.OCPP_PROFILE_KIND_FAILSAFE,
          "StationMaxProfile": pb.OCPP_PROFILE_KIND_STATION_MAX}


def rendered_to_proto(r: Any) -> pb.OcppProfile:
    """An ``optimizer.ocpp.RenderedProfile`` as the API's ``OcppProfile``."""
    m = pb.OcppProfile(connector=r.connector or "", station=r.station,
                       ocpp_version=r.ocpp_version, kind=_KINDS[str(r.kind)], action=r.action,
                       session=r.session or "", warnings=list(r.warnings))
    m.payload.update(r.payload)
    return m


def ocpp_payload(m: pb.OcppProfile) -> dict[str, Any]:
    """An ``OcppProfile``'s payload as the JSON-ready dict to send (ids as integers again)."""
    from ..ocpp.options import plain_payload

    return plain_payload(json_format.MessageToDict(m.payload))  # type: ignore[no-any-return]


def plan_to_json(plan: Plan, site_id: str = "") -> str:
    return json_format.MessageToJson(plan_to_proto(plan, site_id), indent=2)
