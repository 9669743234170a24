"""The CSMS side of a station's connection: answer each OCPP message at once and hand what it
means for the optimizer to the ``Bridge`` (whose callbacks never block).

What both versions do is written once, in ``_Csms``; ``_Csms201`` and ``_Csms16`` only map their
version's message fields and name its result classes. The ``ocpp`` package routes by looking
the decorated handlers' names up on the instance (``ocpp.routing.create_route_map``), so the
handlers a version class inherits from ``_Csms`` are routed like its own.
"""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import Any, ClassVar, Protocol

from ocpp.charge_point import ChargePoint
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection

from .config import BridgeConfig, log
from .state import Meter, _iso, _now, _parse_time, _Station, read_meter


class _Bridge(Protocol):
    """What the handlers use of the ``Bridge``: its settings and its callbacks, which never
    block. A protocol, so that the handlers need not import the server that creates them."""

    cfg: BridgeConfig

    def seen(self, st: _Station) -> None: ...

    def booted(self, st: _Station) -> None: ...

    def next_tx_id(self) -> int: ...

    def start_tx(self, st: _Station, tx_id: str, evse: int, at: datetime | None, meter: Meter,
                 phases: int | None, cable_max_a: int | None) -> None: ...

    def resume_tx(self, st: _Station, tx_id: str, evse: int | None) -> None: ...

    def update_tx(self, st: _Station, tx_id: str, meter: Meter) -> None: ...

    def end_tx(self, st: _Station, tx_id: str, meter: Meter) -> None: ...

    def charging_needs(self, st: _Station, evse: int, needs: dict[str, Any]) -> None: ...


class _Csms(ChargePoint):
    """Handlers for a station of either version: answer at once, queue the optimizer calls in
    order."""

    #: The version's ``call_result`` module: the answers both versions share have the same
    #: class names in each.
    results: ClassVar[ModuleType]
    #: The field of an Authorize answer that holds the token's status.
    id_info_field: ClassVar[str]

    def __init__(self, st: _Station, ws: ServerConnection, bridge: _Bridge) -> None:
        super().__init__(st.id, ws, response_timeout=bridge.cfg.response_timeout_s)
        self.st, self.bridge = st, bridge

    def _boot_accepted(self) -> Any:
        """Accept a booting station: what it says differs by version, the answer does not."""
        return self.results.BootNotification(current_time=_iso(_now()),
                                             interval=self.bridge.cfg.heartbeat_s,
                                             status="Accepted")

    @after("BootNotification")
    def after_boot(self, **_: Any) -> None:
        self.bridge.booted(self.st)

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return self.results.Heartbeat(current_time=_iso(_now()))

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return self.results.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> Any:
        self.bridge.seen(self.st)
        return self.results.Authorize(**{self.id_info_field: {"status": "Accepted"}})

    @on("MeterValues")
    def on_meter_values(self, meter_value: list[dict[str, Any]] | None = None,
                        transaction_id: int | None = None, connector_id: int | None = None,
                        **_: Any) -> Any:
        """Outside a transaction: nothing to plan. Only 1.6 names a transaction here (2.0.1
        reports a transaction's meter values in its TransactionEvents)."""
        self.bridge.seen(self.st)
        if transaction_id is not None:
            self._tx_meter(str(transaction_id), connector_id, read_meter(meter_value))
        return self.results.MeterValues()

    def _tx_meter(self, tx_id: str, evse: int | None, meter: Meter) -> None:
        """Meter values of a running transaction. One the bridge does not know is resumed: the
        bridge restarted during the transaction."""
        if tx_id in self.st.txs:
            self.bridge.update_tx(self.st, tx_id, meter)
        else:
            self.bridge.resume_tx(self.st, tx_id, evse)


class _Csms201(_Csms, ChargePoint201):
    """A 2.0.1 station: transactions in TransactionEvents, ISO 15118 charging needs."""

    results = result201
    id_info_field = "id_token_info"

    @on("BootNotification")
    def on_boot(self, charging_station: dict[str, Any], reason: str, **_: Any) -> Any:
        log.info("%s: boot (%s, %s %s)", self.id, reason, charging_station.get("vendor_name"),
                 charging_station.get("model"))
        return self._boot_accepted()

    @on("NotifyReport")
    def on_notify_report(self, **_: Any) -> Any:
        return result201.NotifyReport()

    @on("SecurityEventNotification")
    def on_security_event(self, **_: Any) -> Any:
        return result201.SecurityEventNotification()

    @on("NotifyEVChargingNeeds")
    def on_needs(self, charging_needs: dict[str, Any], evse_id: int, **_: Any) -> Any:
        self.bridge.seen(self.st)
        self.bridge.charging_needs(self.st, evse_id, charging_needs)
        return result201.NotifyEVChargingNeeds(status="Accepted")

    @on("TransactionEvent")
    def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        number_of_phases_used: int | None = None,
        cable_max_current: int | None = None,
        **_: Any,
    ) -> Any:
        self.bridge.seen(self.st)
        tx_id = str(transaction_info["transaction_id"])
        meter = read_meter(meter_value)
        known = self.st.txs.get(tx_id)
        evse_id = (evse or {}).get("id", known.evse if known else None)
        if event_type == "Ended":
            self.bridge.end_tx(self.st, tx_id, meter)
        elif known is None and event_type == "Started" and evse_id is not None:
            self.bridge.start_tx(self.st, tx_id, int(evse_id), _parse_time(timestamp),
                                 meter, number_of_phases_used, cable_max_current)
        else:
            self._tx_meter(tx_id, None if evse_id is None else int(evse_id), meter)
        return result201.TransactionEvent()


class _Csms16(_Csms, ChargePoint16):
    """A 1.6J charge point: Start/StopTransaction, with transaction ids assigned here."""

    results = result16
    id_info_field = "id_tag_info"

    @on("BootNotification")
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **_: Any) -> Any:
        log.info("%s: boot (%s %s)", self.id, charge_point_vendor, charge_point_model)
        return self._boot_accepted()

    @on("StartTransaction")
    def on_start(self, connector_id: int, meter_start: int, timestamp: str, **_: Any) -> Any:
        self.bridge.seen(self.st)
        tx_id = str(self.bridge.next_tx_id())
        self.bridge.start_tx(self.st, tx_id, connector_id, _parse_time(timestamp),
                             Meter(float(meter_start)), None, None)
        return result16.StartTransaction(transaction_id=int(tx_id),
                                         id_tag_info={"status": "Accepted"})

    @on("StopTransaction")
    def on_stop(self, meter_stop: int, transaction_id: int, **_: Any) -> Any:
        self.bridge.seen(self.st)
        self.bridge.end_tx(self.st, str(transaction_id), Meter(float(meter_stop)))
        return result16.StopTransaction()
