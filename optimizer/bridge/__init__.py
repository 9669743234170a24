"""Reference OCPP bridge: OCPP 2.0.1 / 1.6J charge points <-> the optimizer's gRPC API.

A small CSMS front end for one site, usable as is for a small depot and meant to be read::

    optimizer bridge --listen 0.0.0.0:9000 --optimizer 127.0.0.1:50051 --site depot \\
        [--map CP01:1=c1 ...] [--default-stay-hours 8] [--default-energy-kwh 30]

Charge points connect to ``ws://HOST:PORT/<any prefix>/<station id>`` (the last path segment
is the station's OCPP identity) with the WebSocket subprotocol ``ocpp2.0.1`` or ``ocpp1.6``.
No TLS or authentication here: run it behind a TLS-terminating proxy on a trusted network.

What it does
------------
* ``BootNotification``: Accepted (heartbeat interval 300 s). The station then gets the fail-safe
  ``TxDefaultProfile`` of each of its EVSEs, so it stays within the site's limits on its own
  whatever happens to the link. The profiles come from the plan (``Plan.ocpp_profiles``): store
  the site with ``OcppOptions`` naming the chargers and ``failsafe: true``.
* 2.0.1 ``TransactionEvent`` Started / 1.6 ``StartTransaction``: ``StartSession`` with the
  transaction id, so every plan carries a ``TxProfile`` bound to it.
* 2.0.1 ``TransactionEvent`` Updated and 1.6 ``MeterValues``: ``UpdateSession`` with the energy
  delivered (``Energy.Active.Import.Register`` now minus at the start; Wh or kWh) once it grew
  by ``--min-update-kwh`` (0.5) since the last report, since every report re-plans the site,
  with the measured current (highest phase of ``Current.Import``). A transaction still running 15
  minutes before its session's departure gets it moved ``--default-stay-hours`` later (with its
  next meter values), so a car that outstays its estimate is not stopped by its plan.
* 2.0.1 ``NotifyEVChargingNeeds`` (ISO 15118 ``departureTime`` and ``energyAmount``):
  ``UpdateSession`` with them.
* 2.0.1 ``TransactionEvent`` Ended / 1.6 ``StopTransaction``: ``StopSession``.
* ``WatchPlans`` on the site: for every new plan each connected station is sent, one
  ``SetChargingProfile`` at a time, every profile of its EVSEs whose effect *from now on*
  differs from what it last accepted: the ``TxProfile`` of each active transaction, and the
  fail-safe, plan ``TxDefaultProfile`` and station max profiles if the site's options ask for
  them. A re-plan that changes nothing sends nothing. The roll-out is in two rounds across all
  stations so that none is raised while another still holds a higher old profile: first what
  only lowers (or an interim profile at most both the old and the new one), then, once every
  connected station holds what it was sent in that round, the rest. A station that is not
  connected keeps what it last accepted (chargers keep their profiles offline): if that is
  more than the new plan gives it, it has not lowered either, and is lowered first when it is
  back. A station that does not lower (a rejection, no answer, offline) is waited for
  ``--lower-wait`` seconds (40) from when it began lowering, renewed whenever it accepts a
  profile, not by later re-plans. A
  rejected profile is logged and retried only once it changes (or the station boots again).
  Profiles are never cleared: a TxProfile ends with its transaction, plan profiles expire
  (``validTo``) onto the fail-safe.

Station and EVSE <-> site connector
-----------------------------------
EVSE means the 2.0.1 ``evseId`` or the 1.6 ``connectorId``. The connector of (station, EVSE) is,
in this order of precedence:

1. ``--map STATION:EVSE=CONNECTOR``;
2. the charger in the site's ``OcppOptions`` with ``station_id`` STATION and ``evse_id`` (2.x) /
   ``connector_id`` (1.6) EVSE;
3. the site connector named ``f"{STATION}-{EVSE}"``.

Payload targets come from the charger capabilities: a profile whose ``evseId`` /
``connectorId`` or OCPP version disagrees with the live station is not sent (logged once). A
transaction on an EVSE that maps to no connector is accepted but not planned (logged).

Sessions
--------
Session id = ``f"{station}:{transaction id}"``: deterministic, so a restarted bridge picks up
running transactions again: a station's TxProfiles in the current plan name them (adopted when
the station reconnects), and a message about a transaction it does not know is matched to its
session in the plan (an "already exists" answer to StartSession counts as resumed). The energy
of a resumed transaction is not reported any more (its start register is lost with the old
process, a new base would under-count it); everything else works as before. When the charger
does not say, a session departs ``--default-stay-hours`` (8) after it starts (never less than 15
minutes from now) and asks for ``--default-energy-kwh`` (30); ``numberOfPhasesUsed`` 1 or 3 sets
the vehicle's phases, ``cableMaxCurrent`` its maximum current. A new session that overlaps a
stale one on its connector (a transaction whose end the bridge missed) stops the stale one and
retries once; a new transaction on an EVSE ends the one the bridge still had there. 1.6
transaction ids are assigned here: increasing integers seeded from the clock in tenths of a
second, so unique across restarts unless it started more than ten a second.

gRPC calls for one station run in the order its messages arrived; an unavailable optimizer is
retried with backoff (up to ``rpc_retries``). ``WatchPlans`` reconnects with backoff too.
Shutdown (SIGTERM / SIGINT) closes the WebSocket connections (1001 going away), the plan stream
and the channel; stored sessions stay, so a restarted bridge carries on.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import cli
from .cli import _host_port as _host_port
from .cli import _mapping as _mapping
from .cli import add_arguments, cmd_bridge, config_from_args, run
from .config import MIN_STAY, SITE_REFRESH_S, SUBPROTOCOLS, BridgeConfig
from .server import Bridge
from .state import Meter, effective, read_meter
from .state import _Station as _Station
from .state import _Tx as _Tx

# The private names above are re-exported for the tests, which reach into the parts.
__all__ = [
    "MIN_STAY",
    "SITE_REFRESH_S",
    "SUBPROTOCOLS",
    "Bridge",
    "BridgeConfig",
    "Meter",
    "add_arguments",
    "build_parser",
    "cmd_bridge",
    "config_from_args",
    "effective",
    "main",
    "read_meter",
    "run",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``optimizer bridge`` parser, with this package's docstring as its ``--help``."""
    return cli.build_parser(__doc__)


def main(argv: Sequence[str] | None = None) -> int:
    """``optimizer bridge``."""
    return cli.main(argv, __doc__)
