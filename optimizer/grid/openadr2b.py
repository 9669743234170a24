"""OpenADR 2.0b VEN: a DSO's VTN curtails a site through the optimizer (``openleadr`` client).

How a DSO connects
------------------
The site operator runs one process next to the optimizer service and gives the DSO the VEN name::

    python -m optimizer.grid.openadr2b --vtn https://vtn.example/OpenADR2/Simple/2.0b \\
        --ven-name depot-7 --site depot-7 --node grid [--optimizer 127.0.0.1:50051] \\
        [--simple-levels 1=0.75,2=0.5,3=0.25] [--poll-s N] [--cert C --key K --ca-file CA] \\
        [--config FILE]

It registers with the VTN (``oadrCreatePartyRegistration``, HTTP pull), offers two TELEMETRY_USAGE
reports (planned and measured import), polls (every ``--poll-s`` seconds, else the VTN's
``oadrRequestedOadrPollFreq``) and turns every event into limits on node ``--node`` of site
``--site`` through :class:`~optimizer.grid.link.GridLink` (the adapters' one way into the service).
``--config`` reads the same keys (``vtn``, ``ven_name``, ``site``, ``node``, ``optimizer``,
``simple_levels``, ``poll_s``, ``ven_id``, ``cert``, ``key``, ``passphrase``, ``ca_file``,
``vtn_fingerprint``) from a JSON or TOML file, from its ``openadr2b`` section if it has one; flags
override the file.

Mapping (OpenADR 2.0b -> the product's event model)
---------------------------------------------------
=============================================  ==============================================
OpenADR 2.0b                                   Optimizer
=============================================  ==============================================
``eventID``                                    ``GridSignal.id``; interval k is the stored
                                               event ``openadr2b:<eventID>#k``
``modificationNumber``                         ``GridSignal.modification`` (higher supersedes;
                                               a lower one than held is refused: optOut)
``LOAD_CONTROL`` / ``x-loadControlCapacity``   ``Measure.SHARE``: fraction in [0, 1] of the
                                               node's limit (power limit, else phase limits x
                                               voltage)
``LOAD_CONTROL`` / ``x-loadControlSetpoint``   ``Measure.LIMIT_KW``: payload x itemBase
                                               (``powerReal`` W, or ``customUnit`` W/kW, times
                                               ``siScaleCode``); no itemBase: kW
``SIMPLE`` / ``level`` 0, 1, 2, 3              0: no limit (interval dropped); n: ``Measure.SHARE``
                                               ``--simple-levels`` (default 1=0.75, 2=0.5, 3=0.25)
interval k (``duration``, ``dtstart`` if any)  ``SignalInterval``: own dtstart, else activePeriod
                                               dtstart + durations of the intervals before it
``tolerance/startafter`` (randomised start)    not randomised: limits apply from the earliest
                                               possible start; the last interval (and any before a
                                               gap) is held ``startafter`` longer, so the limit
                                               covers every start the window allows
eventStatus far / near / active                apply now (the planner plans ahead)
eventStatus cancelled                          ``GridLink.cancel``: every held interval ends
eventStatus completed                          nothing (held intervals end by themselves)
``testEvent`` true                             nothing applied, optIn (communication test)
=============================================  ==============================================

Opt policy: the optimizer can always lower cars down to 0 A, so every event it can map is
complied with: the VEN answers optIn, and only after ``GridLink.apply`` returned, i.e. once the
service committed the limits to its database (openleadr sends the ``oadrCreatedEvent`` when the
handler returns). It answers optOut when it cannot promise compliance: an unsupported signal or
unit, NaN/negative/out-of-range payloads, overlapping intervals, a share on a node without a limit,
a modification older than the one held, or a service still unreachable after ``apply_timeout_s``.
An optOut changes nothing stored (a refused modification leaves the previous one in force), with
one exception: a service that refuses or fails part-way through a multi-interval event (e.g. its
per-site event limit) leaves the intervals already submitted at the new modification, which may
be looser than the old one; the VTN's next modification or cancellation settles it (see
:meth:`GridLink.apply`; an atomic multi-interval submit is a known gap). openleadr repeats an
answer for a modification it has answered, so an optOut for an unreachable service is retried by
the VTN's next modification or a VEN restart (which re-reads every event). The reason goes in the
eventResponse's ``responseDescription`` (openleadr's handler API has no field for it; see
:class:`_Client`) and in the log. Price signals next to a load signal are ignored; an event with
nothing but prices is an optOut.

Reports: two TELEMETRY_USAGE reports, resource id = site, ``powerReal`` in kW
(``siScaleCode`` k), sampled every 1 s to 1 h as the VTN asks (each its own
reportSpecifierID, so the VTN may request either or both):

- ``<site>:<node>:planned`` (rID ``<site>:<node>:planned_kw``), readingType Projected: the
  node's planned import at each sample, from the plan's connector profiles. Samples are skipped
  while the site has no plan.
- ``<site>:<node>:measured`` (rID ``<site>:<node>:measured_kw``), readingType Summed (the sum of
  several chargers' readings; "Direct Read" means a monotonic register in OpenADR): the node's
  measured import, the sum over the sessions below the node that have a
  ``Session.measured_current_a`` (as the CSMS last set it with ``UpdateSession``; read with
  ``ListSessions`` at each sample) of measured A x kW per A. It is the sum of what was
  reported: sessions without a measurement add nothing, and while no session below the node has
  one the sample is skipped (as the planned report does without a plan).

:mod:`~optimizer.grid.openadr2b_telemetry` says how both figures are computed (kW per A of each
connector, the phases counted).

Not supported: LOAD_DISPATCH, BID_*, CHARGE_STATE, ``x-loadControlLevelOffset`` /
``x-loadControlPercentOffset``, more than one LOAD_CONTROL (or SIMPLE) signal per event,
open-ended events (duration 0), event targets (every event the VTN sends this VEN applies to
``--node``), ramp-up/recovery periods, the push (HTTP server) transport, XMPP, oadrCreateOpt
availability schedules, a measured import of loads other than the sessions' cars.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import tomllib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from xml.sax.saxutils import escape

import grpc
from openleadr import OpenADRClient, enums, objects

from .link import GridLink, SignalRefused
from .openadr2b_mapping import (
    DEFAULT_SIMPLE_LEVELS,
    SOURCE,
    Unmappable,
    event_key,
    map_event,
    parse_simple_levels,
)
from .openadr2b_telemetry import PlanWatch

log = logging.getLogger("optimizer.grid.openadr2b")

OPT_IN = "optIn"
OPT_OUT = "optOut"
#: gRPC codes worth retrying: the service restarts or is busy, the signal itself is fine.
TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED)
MAX_REASON = 500
MAX_REASONS = 1000
T = TypeVar("T")


# --- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VenConfig:
    """Everything the VEN needs; the CLI flags and the config file's keys have these names."""

    vtn: str
    ven_name: str
    site: str
    node: str
    optimizer: str = "127.0.0.1:50051"
    simple_levels: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_SIMPLE_LEVELS))
    poll_s: float | None = None  # None: the VTN's requested poll frequency
    ven_id: str | None = None
    cert: str | None = None
    key: str | None = None
    passphrase: str | None = None
    ca_file: str | None = None
    vtn_fingerprint: str | None = None
    apply_timeout_s: float = 10.0  # retrying an unreachable service before opting out
    report_min_s: float = 1.0  # shortest report sampling interval offered


REQUIRED = ("vtn", "ven_name", "site", "node")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The ``openadr2b`` section (or the whole file) of a JSON or TOML file, keys with ``_``."""
    p = Path(path)
    text = p.read_text()
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    elif p.suffix.lower() == ".toml":
        data = tomllib.loads(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = tomllib.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a table of settings")
    section = data.get("openadr2b", data)
    if not isinstance(section, dict):
        raise ValueError(f"{p}: [openadr2b] must be a table")
    return {k.replace("-", "_"): v for k, v in section.items()}


def make_config(values: Mapping[str, Any]) -> VenConfig:
    """A checked :class:`VenConfig` from loose values (file or flags); ValueError says what."""
    known = {f.name for f in fields(VenConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise ValueError("missing: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    v = {k: x for k, x in values.items() if x is not None}
    if "simple_levels" in v:
        v["simple_levels"] = parse_simple_levels(v["simple_levels"])
    for name in ("poll_s", "apply_timeout_s", "report_min_s"):
        if name in v:
            x = float(v[name])
            if not x > 0:
                raise ValueError(f"{name} must be positive, got {v[name]!r}")
            v[name] = x
    for name in ("vtn", "ven_name", "site", "node", "optimizer"):
        if name in v and not isinstance(v[name], str):
            raise ValueError(f"{name} must be a string")
    return VenConfig(**v)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m optimizer.grid.openadr2b",
        description="OpenADR 2.0b VEN: a DSO's events become limits on a site node.")
    p.add_argument("--vtn", help="VTN base URL, e.g. https://host/OpenADR2/Simple/2.0b")
    p.add_argument("--ven-name", help="this VEN's name, as registered with the DSO")
    p.add_argument("--site", help="site id in the optimizer (also the report's resource id)")
    p.add_argument("--node", help="node of the site that events limit")
    p.add_argument("--optimizer", help="optimizer gRPC address (default 127.0.0.1:50051)")
    p.add_argument("--simple-levels", help="SIMPLE level -> share of the node's limit "
                                           "(default 1=0.75,2=0.5,3=0.25; 0 = no limit)")
    p.add_argument("--poll-s", type=float, help="poll interval in s (default: the VTN's)")
    p.add_argument("--ven-id", help="VEN id, if the DSO assigned one out of band")
    p.add_argument("--cert", help="PEM client certificate (TLS and message signing)")
    p.add_argument("--key", help="PEM private key of --cert")
    p.add_argument("--passphrase", help="passphrase of --key")
    p.add_argument("--ca-file", help="PEM CA bundle to check the VTN's certificate")
    p.add_argument("--vtn-fingerprint", help="fingerprint of the VTN's signing certificate")
    p.add_argument("--config", help="JSON or TOML file with the same keys (flags override)")
    p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return p


def config_from_args(args: argparse.Namespace) -> VenConfig:
    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    for name in ("vtn", "ven_name", "site", "node", "optimizer", "simple_levels", "poll_s",
                 "ven_id", "cert", "key", "passphrase", "ca_file", "vtn_fingerprint"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return make_config(values)


# --- the VEN -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the VEN answered to one version of an event, and when (``time.perf_counter``)."""

    event_id: str
    modification: int
    status: str
    opt: str
    action: str  # applied | unchanged | cancelled | nothing | refused
    reason: str
    received: float
    decided: float


class _ValuedReports(asyncio.Queue):  # type: ignore[type-arg]
    """openleadr's outgoing report queue, minus reports that carry no interval."""

    async def put(self, item: Any) -> None:
        if getattr(item, "intervals", None):
            await super().put(item)


class _Client(OpenADRClient):  # type: ignore[misc]
    """openleadr's client with two additions its API lacks.

    - The VEN's own poll interval (openleadr sends durations in whole seconds, so a VTN cannot
      ask for less than 1 s, and a site may want to poll faster than the DSO's default).
    - The optOut reason in the eventResponse's ``responseDescription``: ``on_event`` can only
      return 'optIn'/'optOut' and openleadr writes "OK" there; we fill it in as the message is
      built (``_create_message`` is the one place openleadr renders every outgoing message).
    - No report without a value: openleadr sends a report whose every sample was skipped (no
      plan yet, no measured session) with no intervals, which openleadr's own VTN answers with
      HTTP 500; such a report is dropped before it is queued.
    """

    def __init__(self, *args: Any, poll_s: float | None, reasons: Mapping[tuple[str, int], str],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poll_s = poll_s
        inner: Callable[..., Any] = self._create_message  # type: ignore[has-type]

        def create(message_type: str, **payload: Any) -> Any:
            if message_type == "oadrCreatedEvent":
                for r in payload.get("event_responses") or ():
                    why = reasons.get((str(r.get("event_id")), r.get("modification_number")))
                    if r.get("opt_type") == OPT_OUT and why:
                        r["response_description"] = escape(why[:MAX_REASON])
            return inner(message_type, **payload)

        self._create_message = create
        self.pending_reports = _ValuedReports()

    async def create_party_registration(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().create_party_registration(*args, **kwargs)
        if self.registration_id and self._poll_s:
            self.poll_frequency = timedelta(seconds=self._poll_s)
        return result


class OptimizerVEN:
    """One VEN for one node of one site: events in through openleadr, limits out through
    :class:`GridLink`, planned and measured import back as reports. ``await start()`` /
    ``await stop()``."""

    def __init__(self, config: VenConfig) -> None:
        self.config = config
        self.decisions: deque[Decision] = deque(maxlen=1000)
        self.listeners: list[Callable[[Decision], None]] = []
        self.reasons: dict[tuple[str, int], str] = {}
        self.client: _Client | None = None
        self.channel: grpc.aio.Channel | None = None
        self.link: GridLink | None = None
        self.plans: PlanWatch | None = None
        self._lock = asyncio.Lock()
        self._register_task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    # -- lifecycle --

    async def connect(self) -> None:
        """Open the optimizer channel, check site and node, start watching plans."""
        cfg = self.config
        self.channel = grpc.aio.insecure_channel(
            cfg.optimizer, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.link = GridLink(self.channel, cfg.site)
        nodes = await self._retrying(self.link.nodes)
        if cfg.node not in nodes:
            raise SignalRefused(f"site {cfg.site!r} has no node {cfg.node!r} "
                                f"(nodes: {', '.join(sorted(nodes))})")
        self.plans = PlanWatch(self.channel, cfg.site, cfg.node)
        self.plans.start()

    async def start(self) -> None:
        """Connect to the optimizer, then register with the VTN (retried until it answers)."""
        await self.connect()
        self._register_task = asyncio.get_running_loop().create_task(self._register())
        await self.registered.wait()

    async def stop(self) -> None:
        if self._register_task is not None:
            self._register_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._register_task
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.stop()
            self.client = None
        if self.plans is not None:
            await self.plans.stop()
        if self.channel is not None:
            await self.channel.close()
            self.channel = None

    def _new_client(self) -> _Client:
        cfg = self.config
        c = _Client(ven_name=cfg.ven_name, vtn_url=cfg.vtn, ven_id=cfg.ven_id, cert=cfg.cert,
                    key=cfg.key, passphrase=cfg.passphrase, ca_file=cfg.ca_file,
                    vtn_fingerprint=cfg.vtn_fingerprint, show_fingerprint=False,
                    poll_s=cfg.poll_s, reasons=self.reasons)
        c.add_handler("on_event", self.handle_event)
        c.add_handler("on_update_event", self.handle_event)
        tag = f"{cfg.site}:{cfg.node}"
        # Two reports of one data point each, not one report of two: openleadr buffers an
        # incremental report until it holds exactly (data points x samples) values, so a report
        # whose points skip samples independently could overshoot that count and never be sent.
        reports: tuple[tuple[str, str, Callable[[], Any]], ...] = (
            ("planned", enums.READING_TYPE.PROJECTED, self._report_planned),
            ("measured", enums.READING_TYPE.SUMMED, self._report_measured),
        )
        for what, reading_type, callback in reports:
            c.add_report(
                callback=callback, resource_id=cfg.site,
                measurement=replace(enums.MEASUREMENTS.POWER_REAL, scale="k"),  # a copy:
                scale="k", unit="W",  # openleadr sets the scale on the object, an enum member
                report_specifier_id=f"{tag}:{what}", r_id=f"{tag}:{what}_kw",
                report_name=enums.REPORT_NAME.TELEMETRY_USAGE,
                reading_type=reading_type, report_type=enums.REPORT_TYPE.USAGE,
                report_duration=timedelta(hours=1),
                sampling_rate=objects.SamplingRate(
                    min_period=timedelta(seconds=cfg.report_min_s),
                    max_period=timedelta(hours=1), on_change=False))
        return c

    async def _register(self) -> None:
        backoff = 0.5
        while True:
            client = self._new_client()
            try:
                await client.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # openleadr raises on some empty or odd answers
                log.warning("registration with %s failed: %s", self.config.vtn, exc)
            if client.registration_id:
                self.client = client
                log.info("registered with %s as venID %s; polling every %s", self.config.vtn,
                         client.ven_id, client.poll_frequency)
                self.registered.set()
                return
            with contextlib.suppress(Exception):
                await client.stop()
            log.warning("VTN %s did not register us; retry in %.1f s", self.config.vtn, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)

    # -- events --

    async def handle_event(self, event: dict[str, Any]) -> str:
        """openleadr's on_event / on_update_event: 'optIn' or 'optOut', after the service
        committed (or refused) what the event asks. Never raises: openleadr would opt out of
        every event in the message."""
        received = time.perf_counter()
        async with self._lock:
            try:
                key = event_key(event)
            except Unmappable as exc:
                log.warning("optOut of a malformed event: %s", exc.reason)
                return OPT_OUT
            try:
                opt, action, reason = await self._decide(event)
            except Exception as exc:
                log.exception("event %s: unexpected error", key.event_id)
                opt, action, reason = OPT_OUT, "refused", f"internal error: {exc}"
            if opt == OPT_OUT:
                if len(self.reasons) >= MAX_REASONS:  # oldest first: dicts keep order
                    del self.reasons[next(iter(self.reasons))]
                self.reasons[(key.event_id, key.modification)] = reason
                log.warning("optOut of event %s modification %d: %s", key.event_id,
                            key.modification, reason)
            else:
                log.info("optIn to event %s modification %d (%s): %s", key.event_id,
                         key.modification, key.status, action)
            d = Decision(key.event_id, key.modification, key.status, opt, action, reason,
                         received, time.perf_counter())
            self.decisions.append(d)
            for fn in list(self.listeners):
                with contextlib.suppress(Exception):
                    fn(d)
            return opt

    async def _decide(self, event: Mapping[str, Any]) -> tuple[str, str, str]:
        assert self.link is not None, "connect() first"
        link = self.link
        key = event_key(event)
        if key.status == enums.EVENT_STATUS.CANCELLED:
            try:
                done = await self._retrying(lambda: link.cancel(SOURCE, key.event_id))
            except SignalRefused as exc:  # held limits stay: the safe side
                log.error("cancel of event %s failed, its limits stay: %s", key.event_id,
                          exc.reason)
                return OPT_IN, "refused", exc.reason
            return OPT_IN, "cancelled", f"{len(done)} interval(s) ended"
        if key.status == enums.EVENT_STATUS.COMPLETED:
            return OPT_IN, "nothing", "completed"
        if key.test:
            return OPT_IN, "nothing", "test event"
        try:
            sig = map_event(event, self.config.node, self.config.simple_levels)
        except Unmappable as exc:
            return OPT_OUT, "refused", exc.reason
        try:
            if sig is None:
                await self._retrying(lambda: link.cancel(SOURCE, key.event_id))
                return OPT_IN, "nothing", "every interval is SIMPLE level 0"
            applied = await self._retrying(lambda: link.apply(sig))
        except SignalRefused as exc:
            return OPT_OUT, "refused", exc.reason
        return OPT_IN, "applied" if applied.changed else "unchanged", ""

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` again while the service is unreachable, up to ``apply_timeout_s``."""
        end = time.monotonic() + self.config.apply_timeout_s
        wait = 0.05
        while True:
            try:
                return await call()
            except SignalRefused as exc:
                if exc.code not in TRANSIENT or time.monotonic() + wait > end:
                    raise
                log.warning("optimizer: %s; retrying", exc.reason)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 1.0)

    # -- reports --

    def _report_planned(self) -> list[tuple[datetime, float]]:
        """One sample: (now, planned kW at the node); none while the site has no plan."""
        now = datetime.now(UTC)
        kw = self.plans.planned_kw(now) if self.plans is not None else None
        return [] if kw is None else [(now, round(kw, 3))]

    async def _report_measured(self) -> list[tuple[datetime, float]]:
        """One sample: (now, measured kW at the node); none while no session below the node
        has a measured current (or the service does not answer)."""
        now = datetime.now(UTC)
        kw = await self.plans.measured_kw() if self.plans is not None else None
        return [] if kw is None else [(now, round(kw, 3))]


# --- CLI -----------------------------------------------------------------------------------------


async def serve(config: VenConfig, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); 0 on a clean stop, 1 if the site is unusable."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    ven = OptimizerVEN(config)
    try:
        starting = loop.create_task(ven.start())
        stopping = loop.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await stopping
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, SignalRefused):
                await starting
    except SignalRefused as exc:
        log.error("cannot serve site %s: %s", config.site, exc.reason)
        return 1
    finally:
        await ven.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    level = logging.getLevelName(str(args.log_level).upper())
    if not isinstance(level, int):
        print(f"{parser.prog}: error: unknown --log-level {args.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # openleadr logs every poll at INFO (and forces its logger to INFO): only its warnings
    logging.getLogger("openleadr").setLevel(max(level, logging.WARNING))
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
