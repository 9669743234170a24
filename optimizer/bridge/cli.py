"""``optimizer bridge``: its options, and running a bridge until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta

from .config import BridgeConfig, log
from .server import Bridge


def _host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or default_host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def _mapping(text: str) -> tuple[tuple[str, int], str]:
    left, sep, conn = text.partition("=")
    station, sep2, evse = left.rpartition(":")
    if not (sep and sep2 and station and conn and evse.isdigit() and int(evse) > 0):
        raise argparse.ArgumentTypeError(f"expected STATION:EVSE=CONNECTOR, got {text!r}")
    return (station, int(evse)), conn


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9000),
                   help="HOST:PORT for charge points (ws://HOST:PORT/.../STATION_ID)")
    p.add_argument("--optimizer", default="127.0.0.1:50051", help="optimizer gRPC HOST:PORT")
    p.add_argument("--site", required=True, help="stored site id the charge points belong to")
    p.add_argument("--map", type=_mapping, action="append", default=[],
                   metavar="STATION:EVSE=CONNECTOR",
                   help="connector of a station's EVSE (1.6: connectorId); repeatable")
    p.add_argument("--default-stay-hours", type=float, default=8.0,
                   help="departure of a session whose car does not say (hours after start)")
    p.add_argument("--default-energy-kwh", type=float, default=30.0,
                   help="energy requested by a session whose car does not say")
    p.add_argument("--min-update-kwh", type=float, default=0.5,
                   help="report energy delivered once it grew this much (each report re-plans)")
    p.add_argument("--lower-wait", type=float, default=40.0, metavar="SECONDS",
                   help="how long raising profiles wait for all stations to finish lowering")
    p.add_argument("-v", "--verbose", action="store_true", help="log every OCPP message")


def config_from_args(args: argparse.Namespace) -> BridgeConfig:
    return BridgeConfig(
        site_id=args.site,
        optimizer=args.optimizer,
        mapping=dict(args.map),
        default_stay=timedelta(hours=args.default_stay_hours),
        default_energy_kwh=args.default_energy_kwh,
        min_update_kwh=args.min_update_kwh,
        lower_wait_s=args.lower_wait,
    )


async def run(config: BridgeConfig, host: str, port: int) -> None:
    """Serve until SIGTERM / SIGINT, then shut down gracefully."""
    bridge = Bridge(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await bridge.start(host, port)
        print(f"bridge: listening on {host}:{bound}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await bridge.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def build_parser(description: str | None) -> argparse.ArgumentParser:
    """``description``: the user documentation, which is the package's docstring; the package
    passes it in (``optimizer.bridge.build_parser``) as this module must not import it back."""
    p = argparse.ArgumentParser(prog="optimizer bridge", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None, description: str | None) -> int:
    return cmd_bridge(build_parser(description).parse_args(argv))


def cmd_bridge(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ocpp").setLevel(logging.INFO if args.verbose else logging.WARNING)
    host, port = args.listen
    asyncio.run(run(config_from_args(args), host, port))
    return 0
