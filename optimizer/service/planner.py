"""Background re-planning of stored sites and fan-out of new plans to WatchPlans subscribers.

Why a component of its own: a mutation RPC must return as soon as its change is durable, not
after a solve, and a burst of changes (50 cars reporting energy every second, a DSO sending a
series of events) must cost one solve, not fifty. So mutations only ``touch`` a site; worker
threads plan dirty sites from the store's latest state.

- Coalescing: a touched site becomes due ``coalesce_s`` after its first pending change (at once
  for grid limits: events, capacity); changes arriving meanwhile (or while it is being planned)
  fold into that one (next) re-plan.
- One site is never planned by two workers at once, so plans are published in the order their
  state was read, and the latest state always produces the latest plan.
- A ticker re-plans every site at its slot boundaries (epoch-aligned multiples of its slot
  length), so plans roll forward with time even when nothing changes.
- ``version`` strictly increases per site: ``max(previous + 1, unix time in microseconds)``, which
  keeps it increasing across restarts too (plans are not stored; they are recomputed on start).
- Subscribers never block the planner: each holds at most one pending update per site (the
  latest replaces an unsent one), so a slow reader costs memory bounded by the number of sites
  and skips intermediate plans instead of stalling everyone.
- A deleted site's subscribers get a ``PlanUpdate`` with only ``site_id`` set (no ``plan``); a
  site whose re-plan failed gets one with ``withdrawn`` set (the reason) and no plan.
- A site stored with OCPP options gets its chargers' SetChargingProfile payloads in every plan
  (``Plan.ocpp_profiles``), TxProfiles for the sessions started with a transaction id; what
  cannot be rendered is a plan warning, never a lost plan.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from ..api.convert import plan_to_proto, rendered_to_proto
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..core.model import Problem
from ..core.plan import Plan
from ..core.validate import Limits, ValidationError, validate
from ..ocpp.options import OcppOptions, options_from_message, render_all
from .store import NotFound, Store

log = logging.getLogger("optimizer.planner")

SolveFn = Callable[[Problem], Plan]


def attach_ocpp(
    msg: pb.Plan,
    problem: Problem,
    plan: Plan,
    options: OcppOptions | None,
    transaction_ids: dict[str, str] | None = None,
) -> None:
    """Render the plan's OCPP profiles into ``msg`` (``ocpp_profiles``, ``warnings``)."""
    if options is None or not options.chargers:
        return
    rendered, warnings = render_all(problem, plan, options, transaction_ids)
    msg.ocpp_profiles.extend(rendered_to_proto(r) for r in rendered)
    msg.warnings.extend(warnings)


def _stored_ocpp(sid: str, problem: Problem, m: pb.OcppOptions | None) -> OcppOptions | None:
    if m is None:
        return None
    try:
        return options_from_message(m, problem.site, stored=True)
    except ValidationError as exc:  # written by other code or limits; PutSite checks them
        log.warning("site %r: stored OCPP options unusable: %s", sid, exc)
        return None


@dataclass(eq=False)
class _SiteState:
    """What the planner knows of one site. Identity matters: a deleted and re-created site gets
    a new object, so a plan computed for the old one is never published for the new one."""

    plan: pb.Plan | None = None
    update: bytes | None = None  # serialized PlanUpdate of ``plan``: encoded once for all watchers
    version: int = 0
    slot_minutes: int = 15
    error: str | None = None
    attempts: int = 0  # finished planning attempts (success or failure)
    validated: bool = False  # stored state checked once since this process loaded it


class Subscription:
    """One WatchPlans stream: the latest unsent update per site, in order of arrival."""

    def __init__(self, sites: frozenset[str] | None) -> None:
        self.sites = sites
        self._pending: OrderedDict[str, bytes] = OrderedDict()
        self._cv = threading.Condition()
        self._closed = False

    def wants(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites

    def offer(self, site_id: str, update: bytes) -> None:
        """Queue an update, replacing an unsent one of the same site; never blocks on the reader."""
        with self._cv:
            if self._closed:
                return
            self._pending.pop(site_id, None)
            self._pending[site_id] = update
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self, timeout: float) -> list[bytes] | None:
        """Pending updates (maybe none after ``timeout``), or None once closed."""
        with self._cv:
            if not self._pending and not self._closed:
                self._cv.wait(timeout)
            if self._closed:
                return None
            out = list(self._pending.values())
            self._pending.clear()
            return out


@dataclass
class PlannerStats:
    """Counters for tests and logs."""

    plans: int = 0
    failures: int = 0
    touches: int = 0
    by_site: dict[str, int] = field(default_factory=dict)


class Planner:
    """Keeps every stored site's current plan and pushes new ones to subscribers."""

    def __init__(
        self,
        store: Store,
        solve_fn: SolveFn,
        *,
        limits: Limits | None = None,
        coalesce_s: float = 0.01,
        workers: int = 2,
        refresh: bool = True,
    ) -> None:
        self._store = store
        self._solve = solve_fn
        self._limits = limits or Limits()
        self._coalesce_s = coalesce_s
        self._n_workers = max(1, workers)
        self._refresh = refresh
        self._cv = threading.Condition()
        self._states: dict[str, _SiteState] = {}
        self._due: dict[str, float] = {}  # site -> monotonic time it may be planned
        self._running: set[str] = set()
        self._subs: set[Subscription] = set()
        self._stop = threading.Event()
        self._subs_closed = False
        self._threads: list[threading.Thread] = []
        self.stats = PlannerStats()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, site_ids: Iterable[str] = ()) -> None:
        """Start the workers and schedule a plan for each given (stored) site."""
        for k in range(self._n_workers):
            t = threading.Thread(target=self._work, name=f"planner-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        if self._refresh:
            t = threading.Thread(target=self._tick, name="planner-ticker", daemon=True)
            t.start()
            self._threads.append(t)
        for sid in site_ids:
            self.touch(sid)

    def close(self, timeout: float = 5.0) -> None:
        """End every subscription (their streams return), then stop the workers."""
        self.close_subscriptions()
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def close_subscriptions(self) -> None:
        """End every WatchPlans stream now (graceful shutdown) and refuse new ones."""
        with self._cv:
            self._subs_closed = True
            subs = list(self._subs)
            self._subs.clear()
            self._cv.notify_all()
        for sub in subs:
            sub.close()

    @property
    def stopping(self) -> bool:
        """True once subscriptions are closed: the server is shutting down."""
        return self._subs_closed

    # --- changes ---------------------------------------------------------------------------

    def touch(self, site_id: str, *, urgent: bool = False) -> None:
        """The site's stored state changed: plan it again soon (coalesced), or at once if
        ``urgent`` (a grid limit changed: the site must follow it as fast as it can)."""
        with self._cv:
            self.stats.touches += 1
            st = self._states.get(site_id)
            if st is None:
                self._states[site_id] = _SiteState()
            elif st.plan is None:
                st.error = None  # GetPlan waits for this new attempt, not the old failure
            due = time.monotonic() + (0.0 if urgent else self._coalesce_s)
            if due < self._due.get(site_id, float("inf")):
                self._due[site_id] = due
                self._cv.notify_all()  # workers and settled() waiters share the condition

    def touch_if_unknown(self, site_id: str) -> None:
        """Plan a stored site the planner has not seen (written by another process)."""
        with self._cv:
            known = site_id in self._states
        if not known:
            self.touch(site_id)

    def forget(self, site_id: str) -> None:
        """The site was deleted: drop its plan and tell its watchers (an update without plan)."""
        with self._cv:
            self._states.pop(site_id, None)
            self._due.pop(site_id, None)
            update = pb.PlanUpdate(site_id=site_id).SerializeToString()
            for sub in self._subs:
                if sub.wants(site_id):
                    sub.offer(site_id, update)
            self._cv.notify_all()

    # --- reading ---------------------------------------------------------------------------

    def current(self, site_id: str) -> pb.Plan | None:
        with self._cv:
            st = self._states.get(site_id)
            return st.plan if st is not None else None

    def wait_plan(self, site_id: str, timeout: float) -> tuple[pb.Plan | None, str | None]:
        """The site's plan, waiting up to ``timeout`` for the first one; else (None, last error).

        Waits only while a first plan is still coming: once an attempt failed, the error is
        returned at once rather than waiting for a retry that may fail the same way.
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                st = self._states.get(site_id)
                if st is None:
                    return None, None
                if st.plan is not None:
                    return st.plan, None
                if st.error is not None:
                    return None, st.error
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None, None
                self._cv.wait(left)

    def settled(self, site_id: str, timeout: float) -> bool:
        """Wait until no re-plan of the site is due or running: its plan reflects every change
        made before the call. False if that did not happen within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while site_id in self._due or site_id in self._running:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._cv.wait(left)
            return True

    def subscribe(self, sites: frozenset[str] | None) -> Subscription:
        """Register a subscriber and queue the current plan of each of its sites, atomically
        with registration, so no plan published in between is missed."""
        sub = Subscription(sites)
        with self._cv:
            if self._subs_closed:
                sub.close()
                return sub
            for sid, st in self._states.items():
                if st.update is not None and sub.wants(sid):
                    sub.offer(sid, st.update)
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._cv:
            self._subs.discard(sub)
        sub.close()

    @property
    def subscribers(self) -> int:
        with self._cv:
            return len(self._subs)

    # --- workers ---------------------------------------------------------------------------

    def _next_due(self) -> tuple[str, _SiteState] | None:
        """Block until a site is due and not being planned; None when stopping."""
        with self._cv:
            while not self._stop.is_set():
                now = time.monotonic()
                best: str | None = None
                best_t = float("inf")
                for sid, t in self._due.items():
                    if sid not in self._running and t < best_t:
                        best, best_t = sid, t
                if best is None:
                    self._cv.wait(1.0)
                    continue
                if best_t > now:
                    self._cv.wait(best_t - now)
                    continue
                del self._due[best]
                st = self._states.get(best)
                if st is None:
                    continue
                self._running.add(best)
                return best, st
        return None

    def _work(self) -> None:
        while True:
            picked = self._next_due()
            if picked is None:
                return
            sid, st = picked
            try:
                self._plan_site(sid, st)
            except Exception:  # never let a worker die: log, and drop the plan (see _failed)
                log.exception("planning site %r failed unexpectedly", sid)
                self._failed(sid, st, "internal error while planning; see the server log")
            finally:
                with self._cv:
                    self._running.discard(sid)
                    self._cv.notify_all()

    def _failed(self, sid: str, st: _SiteState, error: str) -> None:
        """The site changed and no plan for its new state exists: the previous plan may ignore
        a limit that was just added (a curtailment event), so it is not served any more; GetPlan
        answers FAILED_PRECONDITION with this error and watchers get a ``withdrawn`` update
        (new watchers too) until a re-plan succeeds."""
        with self._cv:
            if self._states.get(sid) is not st:
                return  # deleted meanwhile; forget() already told the watchers
            st.plan = None
            st.error = error
            st.attempts += 1
            self.stats.failures += 1
            st.update = pb.PlanUpdate(site_id=sid, withdrawn=error).SerializeToString()
            for sub in self._subs:
                if sub.wants(sid):
                    sub.offer(sid, st.update)
            self._cv.notify_all()

    def _plan_site(self, sid: str, st: _SiteState) -> None:
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        try:
            problem, ocpp_msg, tx_ids = self._store.planning_state(sid, now)
        except NotFound:
            return  # deleted meanwhile; forget() already told the watchers
        if not st.validated:
            # Every write was validated (as the would-be state) before it was stored, so only
            # what this process did not write needs checking: the state it found in the file at
            # start (written by older code, or under other limits). Later plans of the site skip
            # it (~10 ms for 1,000 sessions); only ``now`` differs, which can shift the slot
            # count by one, harmless to the solver.
            try:
                validate(problem, self._limits)
            except ValidationError as exc:
                log.warning("site %r cannot be planned: %s", sid, exc)
                self._failed(sid, st, f"stored state cannot be planned: {exc}")
                return
            st.validated = True
        t1 = time.perf_counter()
        try:
            plan = self._solve(problem)
        except Exception as exc:
            log.error("site %r: solve failed", sid, exc_info=exc)
            self._failed(sid, st, f"planning failed ({type(exc).__name__}); see the server log")
            return
        t2 = time.perf_counter()
        msg = plan_to_proto(plan, sid)
        attach_ocpp(msg, problem, plan, _stored_ocpp(sid, problem, ocpp_msg), tx_ids)
        with self._cv:
            if self._states.get(sid) is not st:
                return  # deleted (and maybe re-created) while solving: this plan is obsolete
            version = max(st.version + 1, time.time_ns() // 1000)
            msg.version = version
            ts = Timestamp()
            ts.GetCurrentTime()
            msg.computed_at.CopyFrom(ts)
            update = pb.PlanUpdate(site_id=sid, plan=msg).SerializeToString()
            st.plan, st.update, st.version = msg, update, version
            st.slot_minutes = int(problem.options.slot_minutes)
            st.error = None
            st.attempts += 1
            self.stats.plans += 1
            self.stats.by_site[sid] = self.stats.by_site.get(sid, 0) + 1
            for sub in self._subs:
                if sub.wants(sid):
                    sub.offer(sid, update)
            self._cv.notify_all()
        log.debug("site %r v%d: read %.1f ms, solve %.1f ms, encode %.1f ms", sid, version,
                  (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3)

    def _tick(self) -> None:
        """At every minute boundary, re-plan the sites whose slot boundary it is."""
        while not self._stop.is_set():
            now = time.time()
            nxt = (int(now // 60) + 1) * 60
            if self._stop.wait(nxt - now + 0.001):
                return
            minute = int(time.time() // 60)
            with self._cv:
                due = [
                    sid
                    for sid, st in self._states.items()
                    if st.slot_minutes > 0 and minute % st.slot_minutes == 0
                ]
            for sid in due:
                self.touch(sid)
