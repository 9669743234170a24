"""The bridge's settings and constants, and the logger all its modules share."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

#: One logger for the whole package, named as before the split.
log = logging.getLogger("optimizer.bridge")

#: WebSocket subprotocol -> OCPP version.
SUBPROTOCOLS = {"ocpp2.0.1": "2.0.1", "ocpp1.6": "1.6"}
#: The site's mapping is re-read at least this often (and whenever a plan's connectors change).
SITE_REFRESH_S = 60.0
#: A session departs no sooner than this from now (a transaction is planned, not stopped).
MIN_STAY = timedelta(minutes=15)


@dataclass
class BridgeConfig:
    """Everything the bridge needs; see the package docstring for the meaning of each."""

    site_id: str
    optimizer: str = "127.0.0.1:50051"
    #: (station, EVSE / 1.6 connector id) -> site connector id; overrides the other rules.
    mapping: dict[tuple[str, int], str] = field(default_factory=dict)
    default_stay: timedelta = timedelta(hours=8)
    default_energy_kwh: float = 30.0
    #: Energy delivered is reported once it grew this much since the last report (every report
    #: re-plans the site); the measured current rides along.
    min_update_kwh: float = 0.5
    heartbeat_s: int = 300
    #: Seconds a charge point has to answer a SetChargingProfile.
    response_timeout_s: float = 30.0
    #: Deadline of each gRPC call to the optimizer.
    rpc_timeout_s: float = 10.0
    #: Attempts of a gRPC call while the optimizer is unavailable (backoff 0.5 s doubling to 10 s).
    rpc_retries: int = 8
    #: How long raising profiles wait for every station to finish lowering (a station that does
    #: not answer must not freeze the site at its lowest); longer than a SetChargingProfile may
    #: take, so a slow but working station is waited for.
    lower_wait_s: float = 40.0
