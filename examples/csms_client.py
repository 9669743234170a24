"""A CSMS talking to the optimizer: register a site, start and update sessions, watch plans.

Run a server (``optimizer serve`` or ``python -m optimizer.service.server``), then::

    python examples/csms_client.py --target 127.0.0.1:50051

The site and the cars come from an example Optimize request in this folder (protobuf JSON,
``eu-3phase-rotated.json`` by default), shifted so the first car arrives now; without the file a
small two-connector site is built in code. Each new plan the server pushes is printed as the
current per-connector currents, which is what a CSMS would turn into OCPP SetChargingProfile.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent


def _ts(d: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(d)
    return t


def fallback_request() -> pb.OptimizeRequest:
    """Two 3-phase 32 A connectors under a 40 A grid connection, two cars."""
    now = datetime.now(UTC)
    site = pb.Site(
        id="demo-site",
        nodes=[pb.Node(id="grid", phase_limit_a=[40.0, 40.0, 40.0])],
        connectors=[pb.Connector(id=f"cp{k}", node="grid", max_current_a=32.0, phases=3)
                    for k in range(2)],
    )
    sessions = [
        pb.Session(id=f"car{k}", connector=f"cp{k}", arrival=_ts(now),
                   departure=_ts(now + timedelta(hours=4 + k)), energy_requested_kwh=30.0)
        for k in range(2)
    ]
    return pb.OptimizeRequest(site=site, sessions=sessions, now=_ts(now))


def load_request(path: Path) -> pb.OptimizeRequest:
    """The example file with its sessions moved so that the example's ``now`` becomes now."""
    if not path.exists():
        print(f"{path} not found; using a small site built in code")
        return fallback_request()
    req = json_format.Parse(path.read_text(), pb.OptimizeRequest())
    shift = datetime.now(UTC).replace(microsecond=0) - req.now.ToDatetime(tzinfo=UTC)
    for s in req.sessions:
        s.arrival.FromDatetime(s.arrival.ToDatetime(tzinfo=UTC) + shift)
        s.departure.FromDatetime(s.departure.ToDatetime(tzinfo=UTC) + shift)
    return req


def explain(err: grpc.RpcError) -> str:
    """Status code, message and each bad field of a refused call."""
    lines = [f"{err.code().name}: {err.details()}"]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for d in status.details if status else ():
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            lines += [f"  {v.field}: {v.description}" for v in br.field_violations]
    return "\n".join(lines)


def print_plan(update: pb.PlanUpdate) -> None:
    if not update.HasField("plan"):
        print(f"[{update.site_id}] site deleted")
        return
    plan = update.plan
    now = datetime.now(UTC)
    currents = []
    for prof in plan.profiles:
        value = 0.0
        for p in prof.points:
            if p.start.ToDatetime(tzinfo=UTC) <= now:
                value = p.current_a
        if prof.sessions:
            currents.append(f"{prof.connector}={value:.1f}A")
    got = sum(s.expected_kwh for s in plan.sessions)
    want = sum(s.requested_kwh for s in plan.sessions)
    print(f"[{update.site_id}] plan v{plan.version} by {plan.solver}: {got:.1f}/{want:.1f} kWh; "
          f"now {' '.join(currents) or 'idle'}")
    for w in plan.warnings[:3]:
        print(f"    warning: {w}")


def watch(stub: pb_grpc.ChargingOptimizerStub, site_id: str, stop: threading.Event) -> None:
    stream = stub.WatchPlans(pb.WatchPlansRequest(site_ids=[site_id]))
    stop_cb = threading.Thread(target=lambda: (stop.wait(), stream.cancel()), daemon=True)
    stop_cb.start()
    try:
        for update in stream:
            print_plan(update)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            print("watch ended:", explain(err))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051", help="server host:port")
    ap.add_argument("--example", type=Path, default=HERE / "eu-3phase-rotated.json",
                    help="Optimize request JSON to take the site and sessions from")
    ap.add_argument("--watch-seconds", type=float, default=3.0,
                    help="how long to keep printing plans at the end")
    args = ap.parse_args(argv)

    req = load_request(args.example)
    site_id = req.site.id
    channel = grpc.insecure_channel(args.target,
                                    options=[("grpc.max_receive_message_length", 64 << 20)])
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = pb_grpc.ChargingOptimizerStub(channel)
    try:
        created = stub.PutSite(pb.PutSiteRequest(site=req.site, options=req.options), timeout=10)
        print(f"site {site_id}: {'created' if created.created else 'replaced'}")
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(stub, site_id, stop), daemon=True)
        watcher.start()

        for s in req.sessions:
            try:
                stub.StartSession(pb.StartSessionRequest(site_id=site_id, session=s), timeout=10)
                print(f"started {s.id} on {s.connector}: {s.energy_requested_kwh:.1f} kWh")
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                print(f"{s.id} already active")
            time.sleep(0.05)

        if req.sessions:
            first = req.sessions[0]
            stub.UpdateSession(pb.UpdateSessionRequest(
                site_id=site_id, session_id=first.id, energy_delivered_kwh=2.5,
                measured_current_a=16.0), timeout=10)
            print(f"updated {first.id}: 2.5 kWh delivered")
            time.sleep(0.2)
            stub.StopSession(pb.StopSessionRequest(site_id=site_id, session_id=first.id),
                             timeout=10)
            print(f"stopped {first.id}")

        plan = stub.GetPlan(pb.GetPlanRequest(site_id=site_id), timeout=30).plan
        print(f"GetPlan: version {plan.version}, {len(plan.sessions)} sessions")
        time.sleep(args.watch_seconds)
        stop.set()
        watcher.join(5)
    except grpc.RpcError as err:
        print("error:", explain(err), file=sys.stderr)
        return 1
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
