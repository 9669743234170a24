"""OpenADR 2.0b: event created on the VTN -> new plan streamed on WatchPlans.

A real ``openleadr`` VTN and the VEN (``OptimizerVEN``, as ``python -m optimizer.grid.openadr2b``
runs it) share an asyncio loop in this process; the optimizer runs in its own process with a
stored site of 50 or 1,000 connectors (``benchmarks.workloads.tree_problem``, as in
``bench_grpc``). Per event, three clocks (one ``perf_counter``, one process):

- created: ``add_event`` on the VTN;
- received: the VEN's event handler starts (after the poll that fetched it);
- streamed: the first plan with a newer version arrives on a ``WatchPlans`` stream.

"VTN -> VEN" is bounded by the poll interval (uniform in [0, poll] plus HTTP and parsing);
"VEN -> plan" is what the adapter and the service add beyond the protocol's polling (mapping,
GetSite, SubmitEvent, re-plan, stream). Goal: VEN -> plan p95 < 100 ms. Each event is a
LOAD_CONTROL capacity share (0.5 / 0.6 / 0.7 of the grid node) over the next 4 h, cancelled (and
its re-plan awaited) before the next, so every event meets the same plan. A random wait before
each event spreads its creation over the poll phase. The last column sends the same limits
straight to ``SubmitEvent`` on the same server (the VEN still watching): the service's own part,
so VEN -> plan minus that is the adapter's; "VEN received -> SubmitEvent sent" measures the
adapter's part directly (mapping, GridLink's GetSite and validation).

Run ``python -m benchmarks.bench_openadr2b [--events 50] [--sizes 50,1000] [--poll-s 1.0]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from optimizer.api.convert import site_from_proto
from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.compile import baseline_kw
from optimizer.grid.openadr2b import OPT_IN, Decision, OptimizerVEN, VenConfig
from tests.grid.test_openadr2b import VTN, Loop

from .bench_grpc import CHANNEL_OPTIONS, ServerProcess, seed_big_site

PATIENCE_S = 60.0


class Versions:
    """A WatchPlans stream read by a thread: (perf_counter, version) of every plan."""

    def __init__(self, target: str, site_id: str) -> None:
        self.ch = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stream = pb_grpc.ChargingOptimizerStub(self.ch).WatchPlans(
            pb.WatchPlansRequest(site_ids=[site_id]))
        self.seen: list[tuple[float, int]] = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for update in self.stream:
                if update.HasField("plan"):
                    with self.cv:
                        self.seen.append((time.perf_counter(), update.plan.version))
                        self.cv.notify_all()
        except grpc.RpcError:
            pass

    def latest(self) -> int:
        with self.cv:
            self.cv.wait_for(lambda: bool(self.seen), PATIENCE_S)
            return self.seen[-1][1]

    def after(self, version: int) -> tuple[float, int]:
        """When the first plan newer than ``version`` arrived."""
        with self.cv:
            ok = self.cv.wait_for(lambda: self.seen[-1][1] > version, PATIENCE_S)
            if not ok:
                raise RuntimeError(f"no plan after version {version}")
            return next(s for s in self.seen if s[1] > version)

    def close(self) -> None:
        self.stream.cancel()
        self.ch.close()


def share(k: int) -> float:
    return 0.5 + 0.1 * (k % 3)


def _ts(d: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(d)
    return t


def service_alone(target: str, site: str, events: int, poll_s: float, versions: Versions,
                  rng: random.Random) -> list[float]:
    """The same events (the share mapped to kW on the grid node) straight into SubmitEvent on
    the same server, the VEN still connected and watching: SubmitEvent -> plan streamed."""
    out = []
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
        grid = pb_grpc.GridOperatorStub(ch)
        resp = pb_grpc.ChargingOptimizerStub(ch).GetSite(pb.GetSiteRequest(site_id=site))
        base = baseline_kw(next(n for n in site_from_proto(resp.site).nodes if n.id == "grid"))
        assert base is not None
        for k in range(events + 2):
            v0 = versions.latest()
            time.sleep(rng.uniform(0, poll_s))
            now = datetime.now(UTC).replace(microsecond=0)
            ev = pb.CurtailmentEvent(id=f"direct-{k}", node="grid", start=_ts(now),
                                     end=_ts(now + timedelta(hours=4)),
                                     limit_kw=round(share(k) * base, 6))
            t0 = time.perf_counter()
            grid.SubmitEvent(pb.SubmitEventRequest(site_id=site, event=ev), timeout=30)
            streamed, version = versions.after(v0)
            if k >= 2:
                out.append(streamed - t0)
            grid.CancelEvent(pb.CancelEventRequest(site_id=site, event_id=ev.id), timeout=30)
            versions.after(version)
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def run_size(loop: Loop, vtn: VTN, n: int, events: int, poll_s: float, tmp: Path
             ) -> dict[str, float]:
    db = tmp / f"oadr-{n}.db"
    site = seed_big_site(db, n)
    srv = ServerProcess(db, tmp / f"oadr-{n}.log")
    ven = OptimizerVEN(VenConfig(vtn=vtn.url, ven_name=f"bench{n}", site=site, node="grid",
                                 optimizer=srv.target, poll_s=poll_s))
    got: dict[tuple[str, int], Decision] = {}
    ven.listeners.append(lambda d: got.__setitem__((d.event_id, d.modification), d))
    versions = Versions(srv.target, site)
    total, receive, beyond, adapter = [], [], [], []
    sent: dict[str, float] = {}
    try:
        loop.run(ven.start(), PATIENCE_S)
        # benchmark-only probe: when the VEN's GridLink hands the event to the service
        assert ven.link is not None
        stub = ven.link._grid
        submit = stub.SubmitEvent

        def probe(req: pb.SubmitEventRequest, **kw: object) -> object:
            sent.setdefault(req.event.id, time.perf_counter())
            return submit(req, **kw)
        stub.SubmitEvent = probe
        ven_id = f"ven-bench{n}"
        rng = random.Random(n)
        for k in range(events + 2):  # the first two warm the path
            eid = f"b{n}-{k}"
            v0 = versions.latest()
            time.sleep(rng.uniform(0, poll_s))
            now = datetime.now(UTC).replace(microsecond=0)
            created = time.perf_counter()
            vtn.add_event(ven_id, eid, "LOAD_CONTROL", "x-loadControlCapacity",
                          [{"dtstart": now, "duration": timedelta(hours=4),
                            "signal_payload": share(k)}])
            streamed, version = versions.after(v0)
            if vtn.wait_opt(eid) != OPT_IN:
                raise RuntimeError(f"{eid}: {ven.reasons}")
            d = got[(eid, 0)]
            if k >= 2:
                total.append(streamed - created)
                receive.append(d.received - created)
                beyond.append(streamed - d.received)
                adapter.append(sent[f"openadr2b:{eid}#0"] - d.received)
            vtn.cancel(ven_id, eid)
            vtn.wait_opt(eid, 2)
            versions.after(version)  # the cancellation's re-plan, before the next event
        service = service_alone(srv.target, site, events, poll_s, versions, rng)
    finally:
        versions.close()
        loop.run(ven.stop(), PATIENCE_S)
        srv.stop()
    ms = 1000.0
    return {"connectors": n, "events": len(total), "poll_s": poll_s,
            "total_p50": statistics.median(total) * ms, "total_p95": pct(total, 0.95) * ms,
            "recv_p50": statistics.median(receive) * ms, "recv_p95": pct(receive, 0.95) * ms,
            "beyond_p50": statistics.median(beyond) * ms, "beyond_p95": pct(beyond, 0.95) * ms,
            "beyond_max": max(beyond) * ms,
            "adapter_p50": statistics.median(adapter) * ms,
            "adapter_p95": pct(adapter, 0.95) * ms,
            "service_p50": statistics.median(service) * ms,
            "service_p95": pct(service, 0.95) * ms}


def table(rows: list[dict[str, float]]) -> str:
    out = ["| connectors | poll | events | VTN event -> plan streamed p50 / p95 | "
           "VTN -> VEN received p50 / p95 | VEN received -> plan streamed p50 / p95 (max) | "
           "of which VEN received -> SubmitEvent sent p50 / p95 | "
           "service alone: SubmitEvent -> plan p50 / p95 |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['connectors']:,} | {r['poll_s']:g} s | {r['events']} | "
                   f"{r['total_p50']:.0f} / {r['total_p95']:.0f} ms | "
                   f"{r['recv_p50']:.0f} / {r['recv_p95']:.0f} ms | "
                   f"{r['beyond_p50']:.1f} / {r['beyond_p95']:.1f} ms "
                   f"({r['beyond_max']:.1f}) | "
                   f"{r['adapter_p50']:.1f} / {r['adapter_p95']:.1f} ms | "
                   f"{r['service_p50']:.1f} / {r['service_p95']:.1f} ms |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_openadr2b")
    p.add_argument("--events", type=int, default=50)
    p.add_argument("--sizes", default="50,1000")
    p.add_argument("--poll-s", type=float, default=1.0)
    args = p.parse_args(argv)
    loop = Loop()
    vtn = VTN(loop)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as d:
            for n in (int(x) for x in args.sizes.split(",")):
                rows.append(run_size(loop, vtn, n, args.events, args.poll_s, Path(d)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        vtn.close()
        loop.close()
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
