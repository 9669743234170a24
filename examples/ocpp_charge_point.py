"""Simulated OCPP charge points for trying ``optimizer bridge`` end to end.

Three terminals::

    optimizer serve --port 50051
    python examples/ocpp_charge_point.py register --optimizer 127.0.0.1:50051 \\
        --site ocpp-demo --stations CP01 CP02 --evses 2 --grid-kw 40
    optimizer bridge --listen 127.0.0.1:9000 --optimizer 127.0.0.1:50051 --site ocpp-demo
    python examples/ocpp_charge_point.py run --url ws://127.0.0.1:9000/ocpp \\
        --stations CP01 CP02 --evses 2

``register`` stores a site with one 3-phase 32 A connector ``f"{station}-{evse}"`` per EVSE under
one grid node limited to ``--grid-kw``, and OCPP options naming each charger (station id, EVSE id,
version) with fail-safe profiles on. ``run`` connects each station (OCPP 2.0.1, or 1.6 with
``--version 1.6``), boots, starts a transaction on every EVSE, prints every SetChargingProfile it
receives (and accepts) and reports meter values every ``--meter-s`` seconds as if each car drew
its current limit. Ctrl-C ends the transactions and disconnects. Then try a curtailment:
``python examples/grid_operator_client.py`` against the same site, and watch the limits drop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

import grpc
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import connect

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc

V = 230.0


def _iso(t: datetime | None = None) -> str:
    return (t or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(args: argparse.Namespace) -> int:
    site = pb.Site(id=args.site, nodes=[pb.Node(id="grid", power_limit_kw=args.grid_kw)])
    ocpp = pb.OcppOptions(failsafe=True)
    for station in args.stations:
        for evse in range(1, args.evses + 1):
            cid = f"{station}-{evse}"
            site.connectors.add(id=cid, node="grid", max_current_a=32.0, phases=3)
            ch = ocpp.chargers.add(connector=cid, ocpp_version=args.version, station_id=station)
            if args.version == "1.6":
                ch.connector_id = evse
            else:
                ch.evse_id = evse
    options = pb.Options(mode=pb.MODE_AUTO)
    with grpc.insecure_channel(args.optimizer) as channel:
        created = pb_grpc.ChargingOptimizerStub(channel).PutSite(
            pb.PutSiteRequest(site=site, options=options, ocpp=ocpp), timeout=30).created
    print(f"site {args.site!r} {'created' if created else 'replaced'}: "
          f"{len(site.connectors)} connectors")
    return 0


class _Shared:
    """What one simulated station does, whatever its OCPP version."""

    station: str
    limits: dict[int, float]

    def show(self, evse: int, payload: dict[str, Any], version: str) -> None:
        prof = payload["csChargingProfiles" if version == "1.6" else "chargingProfile"]
        sch = prof["chargingSchedule"] if version == "1.6" else prof["chargingSchedule"][0]
        periods = sch["chargingSchedulePeriod"]
        shown = ", ".join(f"+{p['startPeriod'] // 60}min {float(p['limit']):g}"
                          for p in periods[:6])
        more = f" (+{len(periods) - 6} more)" if len(periods) > 6 else ""
        print(f"{self.station} EVSE {evse}: {prof['chargingProfilePurpose']} "
              f"level {prof['stackLevel']} {sch['chargingRateUnit']}: {shown}{more}", flush=True)
        if prof["chargingProfilePurpose"] == "TxProfile":
            self.limits[evse] = float(periods[0]["limit"])


class Station201(ChargePoint201, _Shared):
    def __init__(self, station: str, ws: Any) -> None:
        super().__init__(station, ws)
        self.station, self.limits = station, {}

    @on("SetChargingProfile")
    def on_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        payload = snake_to_camel_case({"evse_id": evse_id, "charging_profile": charging_profile})
        self.show(evse_id, payload, "2.0.1")
        return result201.SetChargingProfile(status="Accepted")


class Station16(ChargePoint16, _Shared):
    def __init__(self, station: str, ws: Any) -> None:
        super().__init__(station, ws)
        self.station, self.limits = station, {}

    @on("SetChargingProfile")
    def on_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any],
                   **_: Any) -> Any:
        payload = snake_to_camel_case({"connector_id": connector_id,
                                       "cs_charging_profiles": cs_charging_profiles})
        self.show(connector_id, payload, "1.6")
        return result16.SetChargingProfile(status="Accepted")


async def run_station(url: str, station: str, evses: int, version: str, meter_s: float,
                      stop: asyncio.Event) -> None:
    proto = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
    async with connect(f"{url.rstrip('/')}/{station}",
                       subprotocols=[proto]) as ws:  # type: ignore[list-item]
        cp: Any = (Station16 if version == "1.6" else Station201)(station, ws)
        serving = asyncio.create_task(cp.start())
        tx: dict[int, str] = {}
        energy = dict.fromkeys(range(1, evses + 1), 0.0)  # Wh
        if version == "1.6":
            await cp.call(call16.BootNotification(charge_point_model="sim",
                                                  charge_point_vendor="example"))
            for e in energy:
                r = await cp.call(call16.StartTransaction(connector_id=e, id_tag="DEMO",
                                                          meter_start=0, timestamp=_iso()))
                tx[e] = str(r.transaction_id)
        else:
            await cp.call(call201.BootNotification(
                charging_station={"model": "sim", "vendor_name": "example"}, reason="PowerUp"))
            for e in energy:
                tx[e] = f"{station}-{e}-{int(datetime.now(UTC).timestamp())}"
                await cp.call(call201.TransactionEvent(
                    event_type="Started", timestamp=_iso(), trigger_reason="CablePluggedIn",
                    seq_no=0, transaction_info={"transaction_id": tx[e]},
                    evse={"id": e, "connector_id": 1}, number_of_phases_used=3,
                    meter_value=[{"timestamp": _iso(), "sampled_value": [{"value": 0.0}]}]))
        print(f"{station}: transactions {sorted(tx.values())}", flush=True)
        seq = 1
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), meter_s)
            for e in energy:  # the car draws its limit (A, 3 phases) or nothing yet
                energy[e] += cp.limits.get(e, 0.0) * V * 3 * meter_s / 3600
                if version == "1.6":
                    await cp.call(call16.MeterValues(
                        connector_id=e, transaction_id=int(tx[e]), meter_value=[
                            {"timestamp": _iso(), "sampled_value": [
                                {"value": str(int(energy[e]))}]}]))
                else:
                    await cp.call(call201.TransactionEvent(
                        event_type="Updated", timestamp=_iso(), seq_no=seq,
                        trigger_reason="MeterValuePeriodic",
                        transaction_info={"transaction_id": tx[e]},
                        meter_value=[{"timestamp": _iso(), "sampled_value": [
                            {"value": round(energy[e], 1)}]}]))
            seq += 1
        for e in energy:
            if version == "1.6":
                await cp.call(call16.StopTransaction(meter_stop=int(energy[e]), timestamp=_iso(),
                                                     transaction_id=int(tx[e])))
            else:
                await cp.call(call201.TransactionEvent(
                    event_type="Ended", timestamp=_iso(), trigger_reason="StopAuthorized",
                    seq_no=seq, transaction_info={"transaction_id": tx[e]}))
        serving.cancel()


async def run_all(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        import signal

        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    await asyncio.gather(*(run_station(args.url, s, args.evses, args.version, args.meter_s, stop)
                           for s in args.stations))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("register", "run"):
        s = sub.add_parser(name)
        s.add_argument("--stations", nargs="+", default=["CP01", "CP02"])
        s.add_argument("--evses", type=int, default=1, help="EVSEs (1.6: connectors) each")
        s.add_argument("--version", choices=["2.0.1", "1.6"], default="2.0.1")
    r = sub.choices["register"]
    r.add_argument("--optimizer", default="127.0.0.1:50051")
    r.add_argument("--site", default="ocpp-demo")
    r.add_argument("--grid-kw", type=float, default=40.0)
    u = sub.choices["run"]
    u.add_argument("--url", default="ws://127.0.0.1:9000/ocpp")
    u.add_argument("--meter-s", type=float, default=10.0, help="seconds between meter values")
    u.add_argument("--duration", type=float, default=0.0, help="stop after this many s (0: never)")
    args = p.parse_args(argv)
    if args.command == "register":
        return register(args)
    asyncio.run(run_all(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
