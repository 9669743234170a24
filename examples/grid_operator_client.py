"""A grid operator (DSO) talking to the optimizer: submit, supersede and cancel a curtailment.

Run a server with the example site (``optimizer serve``), then::

    python examples/grid_operator_client.py --target 127.0.0.1:50051 --site eu-depot

Shows the event rules: a retry of the same (id, modification) is a no-op (UNCHANGED), a higher
modification supersedes, a lower one is refused (FAILED_PRECONDITION), and a cancelled event
stays cancelled for its modification.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc


def _ts(d: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(d)
    return t


def explain(err: grpc.RpcError) -> str:
    lines = [f"{err.code().name}: {err.details()}"]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for d in status.details if status else ():
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            lines += [f"  {v.field}: {v.description}" for v in br.field_violations]
        elif d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            d.Unpack(pf)
            lines += [f"  {v.type} {v.subject}: {v.description}" for v in pf.violations]
    return "\n".join(lines)


def list_events(stub: pb_grpc.GridOperatorStub, site: str) -> None:
    events = stub.ListEvents(pb.ListEventsRequest(site_id=site), timeout=10).events
    if not events:
        print("  (no active events)")
    for e in events:
        kind = f"limit {e.limit_kw:g} kW" if e.HasField("limit_kw") else \
            f"reduction {e.reduction_kw:g} kW"
        print(f"  {e.id} mod {e.modification} on {e.node}: {kind} "
              f"{e.start.ToDatetime():%H:%M}-{e.end.ToDatetime():%H:%M} UTC")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:50051", help="server host:port")
    ap.add_argument("--site", default="eu-depot", help="site id")
    ap.add_argument("--node", default="grid", help="node whose import is capped")
    ap.add_argument("--limit-kw", type=float, default=11.0)
    ap.add_argument("--hours", type=float, default=2.0)
    args = ap.parse_args(argv)

    channel = grpc.insecure_channel(args.target)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = pb_grpc.GridOperatorStub(channel)
    now = datetime.now(UTC).replace(microsecond=0)
    event_id = f"dso-demo-{now:%Y%m%dT%H%M%S}"

    def submit(limit_kw: float, modification: int) -> None:
        ev = pb.CurtailmentEvent(id=event_id, node=args.node, start=_ts(now),
                                 end=_ts(now + timedelta(hours=args.hours)), limit_kw=limit_kw,
                                 modification=modification)
        try:
            out = stub.SubmitEvent(pb.SubmitEventRequest(site_id=args.site, event=ev), timeout=10)
            print(f"submit {event_id} mod {modification} ({limit_kw:g} kW): {out.outcome}")
        except grpc.RpcError as err:
            print(f"submit {event_id} mod {modification} refused: {explain(err)}")

    try:
        submit(args.limit_kw, 1)
        submit(args.limit_kw, 1)  # a retry: UNCHANGED
        submit(args.limit_kw * 0.5, 2)  # supersedes
        submit(args.limit_kw, 1)  # older: refused
        print("events:")
        list_events(stub, args.site)
        stub.CancelEvent(pb.CancelEventRequest(site_id=args.site, event_id=event_id), timeout=10)
        print(f"cancelled {event_id}")
        print("events:")
        list_events(stub, args.site)
    except grpc.RpcError as err:
        print("error:", explain(err), file=sys.stderr)
        return 1
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
