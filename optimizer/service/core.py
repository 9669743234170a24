"""The service's shared state and the rules every mutation goes through.

``Core`` is what both servicers hold: the store, the planner, the solve function, the limits of
``ServiceConfig``, the per-site locks that make read-validate-write atomic, the Optimize and
WatchPlans slots, the solver budget cut to the client's deadline, and ``check_would_be``, which
validates the state a mutation would create and reports violations relative to the request (or
as a conflict with stored state). The OCPP transaction-id checks against stored state are here
too. The servicers only parse requests and call into it.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from ..api.convert import _proto_path
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core.model import Problem, Session
from ..core.plan import Plan
from ..core.validate import FieldViolation, Limits, ValidationError, validate
from ..ocpp.options import check_transaction_id, options_from_message
from .errors import (
    ServiceError,
    exhausted,
    failed_precondition,
    invalid,
    invalid_field,
    not_found,
)
from .field_paths import Mapper, _Names
from .planner import Planner
from .request import _now
from .store import NotFound, Store

SolveFn = Callable[..., Plan]

#: Stripes of per-site locks: bounded memory whatever site ids clients invent.
_LOCK_STRIPES = 64


@dataclass(frozen=True)
class ServiceConfig:
    """Per-server limits. Each bounds what one client can make the server hold or do."""

    #: Size bounds per request (sessions, slots, ids...): ``optimizer.core.validate.Limits``.
    limits: Limits = field(default_factory=Limits)
    #: Largest request accepted (INVALID_ARGUMENT above it). The transport refuses messages of
    #: twice this size outright (RESOURCE_EXHAUSTED from grpc itself) so a huge one is not even
    #: read into memory.
    max_request_bytes: int = 16 * 1024 * 1024
    #: Optimize calls solving at once; more are refused with RESOURCE_EXHAUSTED, not queued,
    #: so a client's retry policy (not an invisible queue) decides what waits.
    max_concurrent_optimize: int = 16
    #: Optimize calls computing at once (the rest of the admitted ones wait their turn, within
    #: their deadline); 0 = one per CPU core.
    solve_threads: int = 0
    #: Open WatchPlans streams. Each holds a server thread for its lifetime.
    max_watchers: int = 32
    #: Sites named in one WatchPlans request.
    max_watch_sites: int = 1_000
    #: Subtracted from a client's remaining deadline to get the solver's budget: the time to
    #: build, check and send the plan after the solver stops.
    deadline_margin_s: float = 0.05
    #: How long GetPlan waits for a site's first plan.
    get_plan_wait_s: float = 10.0



class Core:
    """State and rules shared by both servicers."""

    def __init__(
        self, store: Store, planner: Planner, solve_fn: SolveFn, config: ServiceConfig
    ) -> None:
        self.store = store
        self.planner = planner
        self.solve = solve_fn
        self.cfg = config
        self.limits = config.limits
        self._optimize_slots = threading.BoundedSemaphore(config.max_concurrent_optimize)
        self._cpu_slots = threading.BoundedSemaphore(config.solve_threads or os.cpu_count() or 2)
        self._watch_slots = threading.BoundedSemaphore(config.max_watchers)
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def site_lock(self, site_id: str) -> threading.Lock:
        return self._locks[zlib.crc32(site_id.encode("utf-8", "surrogatepass")) % _LOCK_STRIPES]

    def budget(self, context: grpc.ServicerContext, default: float) -> float:
        """Solver seconds: the option, cut to the client's remaining deadline minus a margin."""
        remaining = context.time_remaining()
        if remaining is None or remaining > 1e7:  # no deadline set
            return default
        left = remaining - self.cfg.deadline_margin_s
        if left <= 0:
            raise self.deadline_error(remaining)
        return min(default, left)

    @contextmanager
    def solving(self, context: grpc.ServicerContext, what: str) -> Iterator[None]:
        """Admission for solver work (Optimize and the DSO reports): an Optimize slot or
        RESOURCE_EXHAUSTED at once, then a CPU turn within the caller's deadline. The work is
        mostly Python under the GIL, and more runnable solves than cores only adds switching
        (measured: 8 at once gave half the throughput of 2 at once)."""
        self.budget(context, 0.0)  # DEADLINE_EXCEEDED at once if it is already too close
        if not self._optimize_slots.acquire(blocking=False):
            raise exhausted(
                what,
                f"{self.cfg.max_concurrent_optimize} solving calls are already running; retry "
                "with backoff",
            )
        try:
            wait = context.time_remaining()
            if not self._cpu_slots.acquire(timeout=None if wait is None or wait > 1e7 else wait):
                raise self.deadline_error(0.0)
            try:
                yield
            finally:
                self._cpu_slots.release()
        finally:
            self._optimize_slots.release()

    def deadline_error(self, remaining: float) -> ServiceError:
        return ServiceError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"deadline too close to plan: {max(remaining, 0.0) * 1000:.0f} ms left, "
            f"need more than {self.cfg.deadline_margin_s * 1000:.0f} ms",
        )

    def stored_problem(self, site_id: str) -> Problem:
        try:
            return self.store.problem(site_id, _now())
        except NotFound:
            raise not_found("site", site_id, f"site {site_id!r} not found") from None

    def stored_signals_problem(self, site_id: str) -> Problem:
        """The stored site, options and signals, without sessions: what signal changes are
        validated against. No signal rule looks at sessions, and a site's sessions are most of
        its state (reading and re-validating 1,000 of them costs ~25 ms per event)."""
        try:
            site, options = self.store.get_site(site_id)
            signals = self.store.signals(site_id)
        except NotFound:
            raise not_found("site", site_id, f"site {site_id!r} not found") from None
        return Problem(site=site, sessions=(), now=_now(), signals=signals, options=options)

    def check_would_be(self, problem: Problem, mapper: Mapper, names: _Names) -> None:
        """Validate the state a mutation would create; raise with request-relative paths."""
        try:
            validate(problem, self.limits)
        except ValidationError as exc:
            mine: list[FieldViolation] = []
            theirs: list[tuple[str, str]] = []
            for v in exc.violations:
                path = _proto_path(v.field)
                mapped = mapper(path, v.description)
                if mapped is None:
                    theirs.append((names.subject(path), names.text(v.description)))
                elif names.is_stored(path):
                    mine.append(FieldViolation(mapped,
                                               names.describe_for_request(path, v.description)))
                else:
                    mine.append(FieldViolation(mapped, names.text(v.description)))
            if mine:
                raise invalid(mine) from None
            raise failed_precondition(
                "STORED_STATE_CONFLICT",
                theirs,
                "the change conflicts with stored state: "
                + "; ".join(f"{s}: {d}" for s, d in theirs[:5]),
            ) from None


def _check_transaction(
    ocpp: pb.OcppOptions | None, stored: Problem, session: Session, tx: str
) -> None:
    """A transaction id must suit the OCPP version of the session's charger (if it has one)."""
    if ocpp is None:
        return
    try:
        chargers = options_from_message(ocpp, stored.site, stored=True).chargers
    except ValidationError:
        return  # stored options no longer fit (cannot happen: PutSite checks them together)
    caps = chargers.get(session.connector)
    why = None if caps is None else check_transaction_id(caps, tx)
    if why is not None:
        raise invalid_field("transaction_id", why)


def _check_stored_transactions(
    tx_ids: dict[str, str], stored: Problem, chargers: Any
) -> None:
    """PutSite must not reconfigure a charger so that a stored transaction id no longer fits."""
    bad = []
    for s in stored.sessions:
        caps = chargers.get(s.connector)
        if s.id in tx_ids and caps is not None:
            why = check_transaction_id(caps, tx_ids[s.id])
            if why is not None:
                bad.append((f"stored session {s.id!r}.transaction_id", why))
    if bad:
        raise failed_precondition(
            "STORED_STATE_CONFLICT", bad,
            "the OCPP options conflict with stored state: "
            + "; ".join(f"{s}: {d}" for s, d in bad[:5]),
        )
