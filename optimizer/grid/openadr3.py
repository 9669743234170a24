"""OpenADR 3.0.1 VEN: a DSO's VTN capacity limits become curtailment events on one site node.

How a DSO connects (one command, run by the site operator next to the optimizer service)::

    python -m optimizer.grid.openadr3 --vtn https://vtn.example/openadr3/3.0.1 \\
        --token-file vtn.token --site depot-7 --node grid --program GAC

(or ``--client-id ID --client-secret-file F [--token-url URL]`` for the VTN's OAuth2
client-credentials endpoint, default ``<vtn>/auth/token`` as the 3.0.1 ``securitySchemes`` say).
The VEN polls ``GET /programs`` and ``GET /events?programID=...`` (paged by ``skip``/``limit``,
50 a page, the schema's maximum) every ``--poll-s`` seconds with the bearer token, and submits
what it finds through :class:`~optimizer.grid.link.GridLink`, the adapters' one way into the
service.

Mapping (OpenADR 3.0.1 -> the product's event model):

==================================================  ============================================
OpenADR                                             optimizer
==================================================  ============================================
event ``id`` (in program ``id``)                    signal ``"{programID}.{eventID}"``, source
                                                    ``openadr3``; interval k = event
                                                    ``openadr3:{programID}.{eventID}#{k}``
``intervals[].payloads[]`` of type                  ``Measure.LIMIT_KW`` interval (kW cap on
``IMPORT_CAPACITY_LIMIT`` (one value)               ``--node``); units from the event's, else the
                                                    program's ``payloadDescriptors``: ``KW``
                                                    (default), ``W``, ``MW``; others refused
``intervalPeriod`` start + ISO 8601 duration        interval start/end; the event's
(interval's, else the event's)                      ``intervalPeriod`` is the default
``P9999Y``, ``PT0S`` or no duration (open end)      ends at the window's end (below)
``modificationDateTime`` (else ``createdDateTime``)  ``modification`` = epoch ms x 100000 + the
                                                    window's day number: monotonic in both
event no longer listed by the VTN                   its intervals cancelled (``CancelEvent``)
event whose ``eventName`` matches                   the GAC safe-mode limit: kept, applied only
``--safe-mode-event`` (default ``safe[ _-]?mode``)  in safe mode (below)
``IMPORT_CAPACITY_SUBSCRIPTION`` event              safe-mode limit when the program has no
                                                    safe-mode event (User Guide 8.10.1)
``POST /reports``                                   after each new event version, once a plan
                                                    planned from state read after the event
                                                    committed exists: the node's planned import per
                                                    event interval, payload ``DEMAND``, reading
                                                    type ``FORECAST``, units ``KW``
==================================================  ============================================

Bounded horizon: every interval is clipped to a window from today's UTC midnight to three days
later; open ends end there, intervals outside it are dropped (and picked up once the window
reaches them, which happens at UTC midnight; the window's day is part of the modification
number, so the re-clipped event supersedes the previous one). A VTN without
``modificationDateTime`` or ``createdDateTime`` gets the time the VEN first saw each version of
the event's content as its version.

Safe mode (the Dutch grid-aware-charging (GAC) profile, as far as its public traces go): GAC
programs MUST contain a safe-mode event (ElaadNL ``openadr3-client-gac-compliance``, Apache-2.0,
``gac20/gac21/gac22/event_gac_compliant.py``: "the requirement that a safe mode event MUST be
present in a program"); the OpenADR 3.1.0 User Guide 8.10.1 (Apache-2.0) says that when an
extended communications interruption exhausts the scheduled ``IMPORT_CAPACITY_LIMIT`` values the
VEN uses the ``IMPORT_CAPACITY_SUBSCRIPTION`` values as default limits. The GAC specification
text itself (how the safe-mode event is named, after how long it applies) was not reachable, so
these are this adapter's decisions: the safe-mode event is the program's event whose
``eventName`` matches ``--safe-mode-event``; when no poll has succeeded for ``--safe-after-s``
(default 300 s; failed polls are connection errors, time-outs, non-2xx answers and documents
that do not validate as a list), its limits (else the subscription's, else ``--safe-kw``) are
applied as the signal ``"{programID}.~safe-mode"`` over the window, on top of the events already
held (GAC programs have binding events; the planner takes the lower of overlapping limits). The
first successful poll cancels it.

Hostile VTN documents: responses over 8 MiB are refused before parsing; an event that does not
validate (strict types, objectID pattern, bounded lists, finite non-negative values, no
overlapping intervals, known units) is skipped with its field path logged and kept in
:attr:`Ven.rejected`; a version the VEN held before stays held (nothing is cancelled for an
invalid event). A program or events list that is not a JSON array fails the whole poll.

Not supported: subscriptions/webhooks and MQTT notifiers (polling only), ``targets`` filtering
(the VTN's own per-client filtering is relied on), ``randomizeStart``, multi-valued
``IMPORT_CAPACITY_LIMIT`` payloads, ``EXPORT_CAPACITY_LIMIT`` (the planner only limits import),
event ``priority``, report descriptors' ``startInterval``/``frequency``/``repeat`` (one report per
event version), VEN/resource registration (``POST /vens``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from ..api.convert import site_from_proto
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from ..core.grid_signal import GridSignal, Measure, SignalInterval
from ..core.validate import FieldViolation
from .link import GridLink, SignalRefused, violations_text
from .node_load import NodeLoad, mean_planned_kw
from .openadr3_http import (
    ClientCredentials,
    FileToken,
    TokenSource,
    VtnClient,
    VtnError,
)
from .openadr3_models import (
    IMPORT_CAPACITY_LIMIT,
    SOURCE,
    SUBSCRIPTION_TYPES,
    Event,
    Mapped,
    Program,
    Window,
    event_signal,
    modification,
    parse,
    signal_of,
)

log = logging.getLogger("optimizer.grid.openadr3")

SAFE_SUFFIX = "~safe-mode"  # "~" is outside the objectID pattern: no VTN id can collide
DEFAULT_SAFE_NAME = r"(?i)safe[ _-]?mode"


# --- planned import ----------------------------------------------------------------------------


def _ts(t: Any) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


# --- the VEN -----------------------------------------------------------------------------------


@dataclass
class _Report:
    program_id: str
    event_id: str
    modification: int
    intervals: tuple[SignalInterval, ...]
    interval_ids: tuple[int, ...]
    applied_at: datetime  # wall clock once committed: a plan read from state after it sees it
    attempts: int = 0


@dataclass
class _SafeSource:
    event: Event
    program: Program | None
    raw: object
    payload_types: tuple[str, ...]


@dataclass
class Ven:
    """Polls one VTN and keeps one site node's events in step with it (see the module doc)."""

    vtn: VtnClient
    link: GridLink
    channel: grpc.aio.Channel
    site: str
    node: str
    program: str | None = None
    safe_after_s: float = 300.0
    safe_mode_event: str = DEFAULT_SAFE_NAME
    safe_kw: float | None = None
    client_name: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    window_days: int = 3

    rejected: dict[str, str] = field(default_factory=dict, init=False)
    reports: list[dict[str, Any]] = field(default_factory=list, init=False)
    in_safe_mode: bool = field(default=False, init=False)
    last_ok: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._csms = pb_grpc.ChargingOptimizerStub(self.channel)
        self._grid = pb_grpc.GridOperatorStub(self.channel)
        self._safe_re = re.compile(self.safe_mode_event)
        self._applied: dict[str, int] = {}
        self._first_seen: dict[tuple[str, str], int] = {}
        self._programs: dict[str, Program] = {}
        self._safe: dict[str, _SafeSource] = {}
        self._sub: dict[str, _SafeSource] = {}
        self._safe_day: int | None = None
        self._safe_mods: dict[str, int] = {}  # never reuse a number, even if the clock steps
        self._pending: list[_Report] = []
        self._started = self.clock()

    # -- one poll --

    async def poll_once(self) -> bool:
        """Read the VTN once and reconcile; False when the VTN could not be used."""
        now = self.clock()
        window = Window.at(now, self.window_days)
        try:
            programs = await self._programs_now()
            listings = {pid: await self.vtn.get_all("/events", {"programID": pid})
                        for pid in programs}
        except (VtnError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("VTN poll failed: %s", exc)
            await self._maybe_safe_mode(now, window)
            return False
        self.last_ok = now
        held = await self._held()
        if self.in_safe_mode or any(s.endswith(SAFE_SUFFIX) for s in held):
            log.info("VTN reachable again: leaving safe mode")
            self.in_safe_mode, self._safe_day = False, None
        for pid, raws in listings.items():
            await self._reconcile(programs[pid], raws, window, now, held)
        if self.program is None:  # every program is ours: drop what vanished with its program
            for sid in held:
                if sid.split(".", 1)[0] not in programs or sid == SAFE_SUFFIX:
                    await self._cancel(sid)
        else:  # safe-mode signals ("~safe-mode" or "<program>.~safe-mode") end with the outage
            for sid in held:
                if sid == SAFE_SUFFIX or sid.endswith("." + SAFE_SUFFIX):
                    await self._cancel(sid)
        await self._send_reports()
        return True

    async def _programs_now(self) -> dict[str, Program]:
        out: dict[str, Program] = {}
        for k, raw in enumerate(await self.vtn.get_all("/programs")):
            prog, bad = parse(Program, raw)
            if prog is None or prog.id is None:
                why = violations_text(bad) or "id: a VTN program must carry its object id"
                log.warning("program [%d] refused: %s", k, why)
                continue
            if self.program is None or prog.program_name == self.program:
                out[prog.id] = prog
        if self.program is not None and not out:
            raise VtnError(f"program {self.program!r} is not listed")
        self._programs = out
        return out

    async def _held(self) -> set[str]:
        """Signal ids (``program.event``) of this source the service holds for the site."""
        try:
            resp = await self._grid.ListEvents(pb.ListEventsRequest(site_id=self.site),
                                               timeout=self.link.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise SignalRefused(f"{exc.code().name}: {exc.details()}", exc.code()) from exc
        pre = f"{SOURCE}:"
        return {e.id[len(pre):e.id.rindex("#")] for e in resp.events
                if e.id.startswith(pre) and "#" in e.id}

    async def _reconcile(self, program: Program, raws: list[Any], window: Window,
                         now: datetime, held: set[str]) -> None:
        assert program.id is not None
        pid = program.id
        keep: set[str] = set()
        for k, raw in enumerate(raws):
            rid = raw.get("id") if isinstance(raw, dict) else None
            label = rid if isinstance(rid, str) else f"events[{k}]"
            event, bad = parse(Event, raw)
            mapped: Mapped | None = None
            if event is not None and event.program_id != pid:
                bad = [FieldViolation("programID", f"{event.program_id!r}, asked for {pid!r}")]
            elif event is not None:
                mapped, bad = event_signal(event, program, window, (IMPORT_CAPACITY_LIMIT,), raw)
            if bad or event is None:
                self._reject(label, bad)
                if isinstance(rid, str):
                    keep.add(f"{pid}.{rid}")  # an invalid update never removes what is held
                continue
            sub, _ = event_signal(event, program, window, SUBSCRIPTION_TYPES, raw)
            if sub is not None:
                self._sub[pid] = _SafeSource(event, program, raw, SUBSCRIPTION_TYPES)
            if mapped is None:
                continue
            self.rejected.pop(mapped.event_id, None)
            if self._safe_re.search(mapped.name):
                self._safe[pid] = _SafeSource(event, program, raw, (IMPORT_CAPACITY_LIMIT,))
                continue
            sid = f"{pid}.{mapped.event_id}"
            if not mapped.intervals:
                continue  # nothing inside the window: held intervals of it are cancelled
            keep.add(sid)
            version = mapped.version_ms
            if version is None:
                version = self._first_seen.setdefault((mapped.event_id, mapped.digest),
                                                      int(now.timestamp() * 1000))
            mod = modification(version, window)
            if self._applied.get(sid) == mod and sid in held:
                continue
            try:
                done = await self.link.apply(signal_of(mapped, sid, mod, self.node))
            except SignalRefused as exc:
                self._reject(mapped.event_id, [FieldViolation("(service)", exc.reason)])
                continue
            self._applied[sid] = mod
            log.info("event %s modification %d: %d intervals%s", sid, mod,
                     len(done.submitted), "" if done.changed else " (unchanged)")
            self._pending = [r for r in self._pending if r.event_id != mapped.event_id]
            self._pending.append(_Report(pid, mapped.event_id, mod, mapped.intervals,
                                         mapped.interval_ids, datetime.now(UTC)))
        if not self.in_safe_mode:
            for sid in held:
                if sid.startswith(f"{pid}.") and sid not in keep:
                    await self._cancel(sid)

    def _reject(self, label: str, bad: list[FieldViolation]) -> None:
        text = violations_text(bad) or "refused"
        if self.rejected.get(label) != text:
            log.warning("event %s refused: %s", label, text)
        self.rejected[label] = text

    async def _cancel(self, sid: str) -> None:
        gone = await self.link.cancel(SOURCE, sid)
        self._applied.pop(sid, None)
        if gone:
            log.info("cancelled %s (%d intervals)", sid, len(gone))

    # -- safe mode --

    async def _maybe_safe_mode(self, now: datetime, window: Window) -> None:
        since = self.last_ok or self._started
        if (now - since).total_seconds() < self.safe_after_s:
            return
        if self.in_safe_mode and self._safe_day == window.day:
            return
        if not self.in_safe_mode:
            log.warning("no successful poll since %s: entering safe mode", since.isoformat())
        self.in_safe_mode, self._safe_day = True, window.day
        stamp = int(now.timestamp() * 1000)
        targets = list(self._programs) or [""]
        for pid in targets:
            ivs = self._safe_intervals(pid, window)
            if not ivs:
                log.error("safe mode: no safe-mode event, subscription or --safe-kw for "
                          "program %r; held events stay as they are", pid)
                continue
            sid = f"{pid}.{SAFE_SUFFIX}" if pid else SAFE_SUFFIX
            mod = max(modification(stamp, window), self._safe_mods.get(sid, -1) + 1)
            self._safe_mods[sid] = mod
            sig = GridSignal(SOURCE, sid, mod, self.node, Measure.LIMIT_KW, ivs)
            try:
                await self.link.apply(sig)
                log.warning("safe mode: %s applied (%s kW)", sid,
                            ", ".join(f"{iv.value:g}" for iv in ivs[:4]))
            except SignalRefused as exc:
                log.error("safe mode: %s refused: %s", sid, exc.reason)

    def _safe_intervals(self, pid: str, window: Window) -> tuple[SignalInterval, ...]:
        for src in (self._safe.get(pid), self._sub.get(pid)):
            if src is None:
                continue
            m, _ = event_signal(src.event, src.program, window, src.payload_types, src.raw)
            if m is not None and m.intervals:
                return m.intervals
        if self.safe_kw is not None:
            return (SignalInterval(window.lo, window.hi, self.safe_kw),)
        return ()

    # -- reports --

    async def _send_reports(self) -> None:
        if not self._pending:
            return
        try:
            plan = (await self._csms.GetPlan(pb.GetPlanRequest(site_id=self.site),
                                             timeout=5.0)).plan
            site = site_from_proto((await self._csms.GetSite(
                pb.GetSiteRequest(site_id=self.site), timeout=5.0)).site)
        except grpc.aio.AioRpcError as exc:
            log.info("reports wait for a plan: %s", exc.details())
            return
        try:
            load = NodeLoad.of(site, self.node)
        except KeyError as exc:  # the site was changed under us: the reports wait
            log.warning("reports wait: %s", exc)
            return
        left: list[_Report] = []
        for r in self._pending:
            if _ts(plan.start) < r.applied_at:  # planned from a state read before the event
                left.append(r)
                continue
            body = self._report_body(r, plan, load)
            try:
                await self.vtn.post("/reports", body)
                self.reports.append(body)
                log.info("report for %s.%s posted (%d intervals, plan %d)", r.program_id,
                         r.event_id, len(body["resources"][0]["intervals"]), plan.version)
            except (VtnError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                r.attempts += 1
                if r.attempts < 10:
                    left.append(r)
                log.warning("report for %s.%s not posted: %s", r.program_id, r.event_id, exc)
        self._pending = left

    def _report_body(self, r: _Report, plan: pb.Plan, load: NodeLoad) -> dict[str, Any]:
        intervals = []
        for iid, iv in zip(r.interval_ids, r.intervals, strict=True):
            kw = mean_planned_kw(plan, load, iv.start, iv.end)
            if kw is None:
                continue
            dur = int((iv.end - iv.start).total_seconds())
            intervals.append({
                "id": iid,
                "intervalPeriod": {"start": iv.start.isoformat().replace("+00:00", "Z"),
                                   "duration": f"PT{dur}S"},
                "payloads": [{"type": "DEMAND", "values": [round(kw, 3)]}],
            })
        return {
            "objectType": "REPORT",
            "programID": r.program_id,
            "eventID": r.event_id,
            "clientName": self.client_name or f"smartcharging-{self.site}",
            "reportName": f"planned import {self.site}/{self.node} plan {plan.version}",
            "payloadDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                                    "payloadType": "DEMAND", "readingType": "FORECAST",
                                    "units": "KW"}],
            "resources": [{"resourceName": self.node, "intervals": intervals}],
        }

    # -- loop --

    async def run(self, poll_s: float, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set; one poll's failure never ends the loop."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll_once()
            except SignalRefused as exc:
                log.error("optimizer service: %s", exc.reason)
            except Exception:  # keep polling: a bug in one poll must not drop the site
                log.exception("poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)


# --- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m optimizer.grid.openadr3",
                                description="OpenADR 3.0.1 VEN: VTN capacity limits become "
                                            "curtailment events on one site node.")
    p.add_argument("--vtn", required=True, help="VTN base URL (…/openadr3/3.0.1)")
    auth = p.add_mutually_exclusive_group(required=True)
    auth.add_argument("--token-file", type=Path, help="file holding the bearer token")
    auth.add_argument("--client-id", help="OAuth2 client id (client-credentials grant)")
    p.add_argument("--client-secret", help="OAuth2 client secret (prefer --client-secret-file)")
    p.add_argument("--client-secret-file", type=Path, help="file holding the client secret")
    p.add_argument("--token-url", help="token endpoint (default: <vtn>/auth/token)")
    p.add_argument("--scope", help="OAuth2 scope to request")
    p.add_argument("--site", required=True, help="optimizer site id")
    p.add_argument("--node", required=True, help="site node the limits apply to")
    p.add_argument("--program", help="programName to follow (default: every listed program)")
    p.add_argument("--poll-s", type=float, default=10.0, help="poll interval (default 10)")
    p.add_argument("--optimizer", default="127.0.0.1:50051", help="optimizer gRPC address")
    p.add_argument("--safe-after-s", type=float, default=300.0,
                   help="seconds without a successful poll before safe mode (default 300)")
    p.add_argument("--safe-mode-event", default=DEFAULT_SAFE_NAME,
                   help="regex on eventName that marks the safe-mode event")
    p.add_argument("--safe-kw", type=float, help="safe-mode kW when the VTN gave none")
    p.add_argument("--client-name", help="report clientName (default smartcharging-<site>)")
    p.add_argument("--once", action="store_true", help="poll once and exit (1 if it failed)")
    return p


async def _main(args: argparse.Namespace) -> int:
    tokens: TokenSource
    if args.token_file is not None:
        tokens = FileToken(args.token_file)
    else:
        secret = args.client_secret
        if args.client_secret_file is not None:
            secret = args.client_secret_file.read_text().strip()
        if not secret:
            log.error("--client-id needs --client-secret or --client-secret-file")
            return 2
        tokens = ClientCredentials(args.token_url or args.vtn.rstrip("/") + "/auth/token",
                                   args.client_id, secret, args.scope)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            grpc.aio.insecure_channel(args.optimizer) as channel:
        ven = Ven(VtnClient(args.vtn, tokens, session), GridLink(channel, args.site), channel,
                  args.site, args.node, args.program, args.safe_after_s, args.safe_mode_event,
                  args.safe_kw, args.client_name)
        if args.once:
            return 0 if await ven.poll_once() else 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await ven.run(args.poll_s, stop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.poll_s <= 0 or args.safe_after_s < 0:
        print("--poll-s must be > 0 and --safe-after-s >= 0", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
