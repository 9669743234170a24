"""OCPP options of a request or a stored site: checked with field paths, then rendered per plan.

``OcppOptions`` (the API message ``smartcharging.v1.OcppOptions``) says which connectors have an
OCPP charger and what each accepts, which sessions have a CSMS transaction, and which extra
profiles to render (station max, fail-safe, plan TxDefaultProfiles). ``options_from_message``
reads the message (duck-typed: anything with the message's fields and ``HasField`` works, so this
package does not depend on the generated API) and reports every mistake as a
``FieldViolation`` with the request's path (``ocpp.chargers[2].ocpp_version``), the way
``optimizer.core.validate`` does for the rest of a request. The core knows nothing of OCPP; this
module only reads the core's ``Site`` and ``Session``.

``render_all`` turns a plan into every payload the options ask for. It never fails a plan: a
connector whose profile cannot be rendered (e.g. a stored 2.x transaction id after the charger
was reconfigured as 1.6) is left out with a warning, and the other connectors still get theirs.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.model import Problem, Session, Site
from ..core.plan import Plan
from ..core.validate import FieldViolation, ValidationError
from .capabilities import VERSIONS, ChargerCapabilities, ProfileKind, RateUnit
from .failsafe import FallbackLimit, failsafe_currents
from .render import RenderedProfile, render_failsafe, render_plan, render_station_max

__all__ = [
    "MAX_PERIODS",
    "OcppOptions",
    "check_transaction_id",
    "options_from_message",
    "plain_payload",
    "render_all",
]

log = logging.getLogger("optimizer.ocpp")

#: Periods per schedule: the 2.x schemas allow at most 1024; no charger takes more.
MAX_PERIODS = 1024
#: OCPP ids (profile ids, stack levels, EVSE / connector ids) are 32-bit signed integers.
_INT32_MAX = 2**31 - 1
#: proto enum number -> unit (0 = unspecified = A).
_RATE_UNITS = {0: RateUnit.AMPS, 1: RateUnit.AMPS, 2: RateUnit.WATTS}
_DEFAULTS = ChargerCapabilities()


@dataclass(frozen=True)
class OcppOptions:
    """Validated OCPP options: ``chargers`` maps connector id -> capabilities, in request order."""

    chargers: Mapping[str, ChargerCapabilities] = field(default_factory=dict)
    transaction_ids: Mapping[str, str] = field(default_factory=dict)
    station_max: bool = False
    failsafe: bool = False
    tx_default: bool = False
    fallback: Mapping[str, FallbackLimit] = field(default_factory=dict)


# --- validation --------------------------------------------------------------------------------


def check_transaction_id(caps: ChargerCapabilities, tx: str) -> str | None:
    """Why ``tx`` cannot be this charger's transaction id, or None if it can."""
    if caps.ocpp_version == "1.6":
        try:
            value = int(tx.strip())
        except ValueError:
            return f"OCPP 1.6 transaction ids are integers (charger of {caps.ocpp_version}), " \
                   f"got {tx!r}"
        if not -(2**31) <= value <= _INT32_MAX:
            return f"OCPP 1.6 transaction id {value} does not fit a 32-bit integer"
        return None
    if not 0 < len(tx) <= 36:
        return f"OCPP {caps.ocpp_version} transaction ids have 1-36 characters, got {len(tx)}"
    return None


def _opt(m: Any, name: str) -> Any:
    return getattr(m, name) if m.HasField(name) else None


class _Reader:
    def __init__(self) -> None:
        self.out: list[FieldViolation] = []

    def add(self, path: str, reason: str) -> None:
        self.out.append(FieldViolation(path, reason))

    def int_at_least(self, m: Any, name: str, path: str, lo: int, default: int) -> int:
        value = _opt(m, name)
        if value is None:
            return default
        if not lo <= value <= _INT32_MAX:
            self.add(f"{path}.{name}", f"must be at least {lo}, got {value}")
            return default
        return int(value)


def _charger(m: Any, path: str, rd: _Reader) -> ChargerCapabilities | None:
    """One ChargerCapabilities message -> capabilities; None (with violations) if unusable."""
    n0 = len(rd.out)
    version = m.ocpp_version or _DEFAULTS.ocpp_version
    if version not in VERSIONS:
        rd.add(f"{path}.ocpp_version", f"must be 1.6, 2.0.1 or 2.1, got {m.ocpp_version!r}")
    unit = _RATE_UNITS.get(m.rate_unit)
    if unit is None:
        rd.add(f"{path}.rate_unit", f"unknown enum value {m.rate_unit}")
    max_periods = rd.int_at_least(m, "max_periods", path, 1, _DEFAULTS.max_periods)
    if max_periods > MAX_PERIODS:
        rd.add(f"{path}.max_periods", f"at most {MAX_PERIODS} (the OCPP 2.x schema bound), "
                                      f"got {max_periods}")
    resolution = _opt(m, "limit_resolution")
    if resolution is None:
        resolution = _DEFAULTS.limit_resolution
    elif not (math.isfinite(resolution) and resolution > 0):
        rd.add(f"{path}.limit_resolution", f"must be > 0 (A or W), got {resolution!r}")
    elif abs(resolution * 10 - round(resolution * 10)) > 1e-6:
        rd.add(f"{path}.limit_resolution",
               f"must be a multiple of 0.1 (OCPP limits carry one decimal; 1.6 rejects more), "
               f"got {resolution!r}")
    min_limit = _opt(m, "min_limit")
    if min_limit is None:
        min_limit = _DEFAULTS.min_limit
    elif not (math.isfinite(min_limit) and min_limit >= 0):
        rd.add(f"{path}.min_limit", f"must be finite and >= 0 (A or W), got {min_limit!r}")
    evse_id = rd.int_at_least(m, "evse_id", path, 1, _DEFAULTS.evse_id)
    connector_id = rd.int_at_least(m, "connector_id", path, 1, _DEFAULTS.connector_id)
    base = rd.int_at_least(m, "profile_id_base", path, 0, _DEFAULTS.profile_id_base)
    slot = connector_id if version == "1.6" else evse_id
    if base + 10 * slot + 4 > _INT32_MAX:
        rd.add(f"{path}.profile_id_base",
               f"profile ids (base + 10 x {slot} + 4) must fit a 32-bit integer")
    levels = {
        name: rd.int_at_least(m, name, path, 0, getattr(_DEFAULTS, name))
        for name in (
            "stack_level_failsafe",
            "stack_level_tx_default",
            "stack_level_tx",
            "stack_level_station_max",
        )
    }
    if levels["stack_level_tx_default"] <= levels["stack_level_failsafe"]:
        rd.add(f"{path}.stack_level_tx_default",
               f"must be above stack_level_failsafe ({levels['stack_level_failsafe']}): an "
               "expired plan profile must reveal the fail-safe underneath, not replace it")
    offline: int | None = rd.int_at_least(
        m, "max_offline_duration_s", path, 0, _DEFAULTS.max_offline_duration_s or 300
    )
    if m.no_offline_limit:
        if m.HasField("max_offline_duration_s"):
            rd.add(f"{path}.no_offline_limit", "contradicts max_offline_duration_s; set one")
        offline = None
    invalid_after = _opt(m, "invalid_after_offline")
    if len(rd.out) > n0:
        return None
    try:
        return ChargerCapabilities(
            ocpp_version=version,
            rate_unit=unit or RateUnit.AMPS,
            max_periods=max_periods,
            limit_resolution=float(resolution),
            min_limit=float(min_limit),
            zero_limit_ok=True if _opt(m, "zero_limit_ok") is None else bool(m.zero_limit_ok),
            supports_phase_switching=bool(m.supports_phase_switching),
            evse_id=evse_id,
            connector_id=connector_id,
            station_id=m.station_id or None,
            profile_id_base=base,
            max_offline_duration_s=offline,
            invalid_after_offline=(
                _DEFAULTS.invalid_after_offline if invalid_after is None else bool(invalid_after)
            ),
            **levels,
        )
    except ValueError as exc:  # a rule checked above should have caught it; name the charger
        rd.add(path, str(exc))
        return None


def _fallback(m: Any, path: str, rd: _Reader) -> FallbackLimit | None:
    n0 = len(rd.out)
    phase = tuple(m.phase_limit_a)
    if phase and len(phase) != 3:
        rd.add(f"{path}.phase_limit_a", f"must have 3 values (A per phase), got {len(phase)}")
    for k, v in enumerate(phase):
        if not (math.isfinite(v) and v >= 0):
            rd.add(f"{path}.phase_limit_a[{k}]", f"must be finite and >= 0 (A), got {v!r}")
    kw = _opt(m, "power_limit_kw")
    if kw is not None and not (math.isfinite(kw) and kw >= 0):
        rd.add(f"{path}.power_limit_kw", f"must be finite and >= 0 (kW), got {kw!r}")
    if len(rd.out) > n0:
        return None
    return FallbackLimit(phase if phase else None, kw)  # type: ignore[arg-type]


def options_from_message(
    m: Any,
    site: Site,
    sessions: Sequence[Session] | None = None,
    *,
    path: str = "ocpp",
    stored: bool = False,
) -> OcppOptions:
    """Check an ``OcppOptions`` message against ``site`` (and the request's ``sessions``).

    ``stored=True``: options kept with a site (PutSite), which take no transaction ids.
    Raises ``ValidationError`` listing every violation, with paths under ``path``.
    """
    rd = _Reader()
    conns = {c.id: c for c in site.connectors}
    nodes = {n.id for n in site.nodes}
    # Cheap size bounds first: each item is unique per connector / session / node.
    if len(m.chargers) > len(conns):
        rd.add(f"{path}.chargers", f"{len(m.chargers)} chargers for {len(conns)} connectors; "
                                   "at most one per connector")
    n_sessions = len(sessions or ())
    if len(m.transaction_ids) > n_sessions and not stored:
        rd.add(f"{path}.transaction_ids", f"{len(m.transaction_ids)} transaction ids for "
                                          f"{n_sessions} sessions; at most one per session")
    if len(m.fallback) > len(nodes):
        rd.add(f"{path}.fallback", f"{len(m.fallback)} fallback limits for {len(nodes)} nodes; "
                                   "at most one per node")
    if rd.out:
        raise ValidationError(rd.out)
    chargers: dict[str, ChargerCapabilities] = {}
    seen: dict[str, int] = {}
    targets: dict[tuple[str, int], int] = {}  # (station, evse / connector id) -> charger index
    station_of: dict[str, tuple[int, ChargerCapabilities]] = {}
    for k, cm in enumerate(m.chargers):
        where = f"{path}.chargers[{k}]"
        cid = cm.connector
        if not cid:
            rd.add(f"{where}.connector", "required: the site connector this charger serves")
        elif cid not in conns:
            rd.add(f"{where}.connector", f"unknown connector {cid!r}")
        elif cid in seen:
            rd.add(f"{where}.connector", f"connector {cid!r} already has chargers[{seen[cid]}]")
        else:
            seen[cid] = k
        caps = _charger(cm, where, rd)
        if caps is None or cid not in conns or seen.get(cid) != k:
            continue
        station = caps.station_id if caps.station_id is not None else conns[cid].node
        slot = caps.connector_id if caps.ocpp_version == "1.6" else caps.evse_id
        field_name = "connector_id" if caps.ocpp_version == "1.6" else "evse_id"
        if (station, slot) in targets:
            rd.add(f"{where}.{field_name}",
                   f"{field_name} {slot} of station {station!r} is already "
                   f"chargers[{targets[station, slot]}]: targets and profile ids would clash "
                   "(set station_id and distinct evse_id / connector_id)")
        else:
            targets[station, slot] = k
        first = station_of.setdefault(station, (k, caps))
        if first[1].ocpp_version != caps.ocpp_version:
            rd.add(f"{where}.ocpp_version",
                   f"station {station!r} speaks {first[1].ocpp_version} "
                   f"(chargers[{first[0]}]); one station has one OCPP version")
        elif m.station_max and first[1].rate_unit != caps.rate_unit:
            rd.add(f"{where}.rate_unit",
                   f"station {station!r} uses {first[1].rate_unit} (chargers[{first[0]}]); a "
                   "station max profile needs one unit per station")
        chargers[cid] = caps

    tx_ids: dict[str, str] = {}
    if stored and len(m.transaction_ids):
        rd.add(f"{path}.transaction_ids",
               "not stored with a site: pass StartSessionRequest.transaction_id per session")
    elif len(m.transaction_ids):
        by_id = {s.id: s for s in sessions or ()}
        tx_on: dict[str, str] = {}  # connector -> session holding a transaction id
        for sid in sorted(m.transaction_ids):
            tx = m.transaction_ids[sid]
            where = f"{path}.transaction_ids[{sid}]"
            s = by_id.get(sid)
            if s is None:
                rd.add(where, f"unknown session {sid!r}")
                continue
            caps = chargers.get(s.connector)
            if caps is None:
                if s.connector not in seen:
                    rd.add(where, f"session {sid!r} is on connector {s.connector!r}, which has "
                                  f"no charger in {path}.chargers")
                continue
            why = check_transaction_id(caps, tx)
            if why is not None:
                rd.add(where, why)
                continue
            if s.connector in tx_on:
                rd.add(where, f"session {tx_on[s.connector]!r} on the same connector "
                              f"{s.connector!r} has a transaction id too; pass only the active "
                              "transaction of each connector")
                continue
            tx_on[s.connector] = sid
            tx_ids[sid] = tx

    fallback: dict[str, FallbackLimit] = {}
    for k, fm in enumerate(m.fallback):
        where = f"{path}.fallback[{k}]"
        if fm.node not in nodes:
            rd.add(f"{where}.node", f"unknown node {fm.node!r}")
            continue
        if fm.node in fallback:
            rd.add(f"{where}.node", f"node {fm.node!r} already has a fallback limit")
            continue
        fb = _fallback(fm, where, rd)
        if fb is not None:
            fallback[fm.node] = fb
    if rd.out:
        raise ValidationError(rd.out)
    return OcppOptions(
        chargers=chargers,
        transaction_ids=tx_ids,
        station_max=bool(m.station_max),
        failsafe=bool(m.failsafe),
        tx_default=bool(getattr(m, "tx_default", False)),
        fallback=fallback,
    )


# --- rendering ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _failsafe_cached(
    site: Site, fallback: tuple[tuple[str, FallbackLimit], ...]
) -> Mapping[str, float]:
    """Fail-safe currents depend on the site and the fallback limits only: computed once per
    site version, not once per plan."""
    return failsafe_currents(site, dict(fallback))


def _active_transactions(
    problem: Problem, plan: Plan, transaction_ids: Mapping[str, str], warnings: list[str]
) -> dict[str, str]:
    """At most one transaction per connector: the session present at the plan start, else the
    earliest arrival (stale ids of other sessions are ignored with a warning)."""
    by_conn: dict[str, list[Session]] = {}
    for s in problem.sessions:
        if s.id in transaction_ids:
            by_conn.setdefault(s.connector, []).append(s)
    out: dict[str, str] = {}
    for cid, group in by_conn.items():
        group.sort(key=lambda s: (not (s.arrival <= plan.start < s.departure), s.arrival, s.id))
        out[group[0].id] = transaction_ids[group[0].id]
        if len(group) > 1:
            warnings.append(
                f"ocpp: connector {cid!r}: transaction ids for sessions "
                f"{[s.id for s in group]}; TxProfile only for {group[0].id!r}"
            )
    return out


def _guarded(what: str, warnings: list[str], fn: Any, *args: Any, **kw: Any) -> list[Any]:
    try:
        return list(fn(*args, **kw))
    except ValueError as exc:
        warnings.append(f"ocpp: {what}: {exc}")
    except Exception as exc:  # a rendering bug: never publish a payload a charger would reject
        log.exception("rendering %s failed", what)
        warnings.append(f"ocpp: {what}: not rendered ({type(exc).__name__}); see the log")
    return []


def render_all(
    problem: Problem,
    plan: Plan,
    options: OcppOptions,
    transaction_ids: Mapping[str, str] | None = None,
) -> tuple[list[RenderedProfile], list[str]]:
    """Every payload ``options`` asks for: TxProfiles (sessions with a transaction id; the
    ``transaction_ids`` given override ``options.transaction_ids``), plan TxDefaultProfiles,
    station max profiles, fail-safe profiles. Returns (profiles, warnings about what could not
    be rendered); a profile's own warnings stay on it (``RenderedProfile.warnings``)."""
    warnings: list[str] = []
    caps = dict(options.chargers)
    if not caps:
        return [], warnings
    tx_all = dict(options.transaction_ids)
    tx_all.update(transaction_ids or {})
    tx = _active_transactions(problem, plan, tx_all, warnings)
    out: list[RenderedProfile] = []

    def per_connector(purpose: ProfileKind, ids: Mapping[str, str] | None) -> None:
        # All at once (fast); if anything fails, connector by connector so that one bad
        # connector costs only its own profile.
        w: list[str] = []
        got = _guarded("profiles", w, render_plan, problem, plan, caps, ids, purpose=purpose)
        if not w:
            out.extend(got)
            return
        for cid, c in caps.items():
            out.extend(
                _guarded(f"connector {cid!r} {purpose}", warnings, render_plan, problem, plan,
                         {cid: c}, ids, purpose=purpose)
            )

    if tx:
        per_connector(ProfileKind.TX, tx)
    if options.tx_default:
        per_connector(ProfileKind.TX_DEFAULT, None)
    if options.station_max:
        out.extend(_guarded("station max profiles", warnings, render_station_max, problem, plan,
                            caps))
    if options.failsafe:
        fb = tuple(sorted(options.fallback.items()))
        currents = _guarded(
            "fail-safe currents", warnings, lambda: [_failsafe_cached(problem.site, fb)]
        )
        if currents:
            out.extend(_guarded("fail-safe profiles", warnings, render_failsafe, problem, caps,
                                currents=currents[0]))
    return out, list(dict.fromkeys(warnings))


def plain_payload(value: Any) -> Any:
    """A payload read back from a ``google.protobuf.Struct`` (every number a double) with
    integral numbers as ints again: OCPP ids and 1.6 transaction ids must be JSON integers."""
    if isinstance(value, dict):
        return {k: plain_payload(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_payload(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
