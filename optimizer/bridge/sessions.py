"""Transactions -> the optimizer's sessions: StartSession when a transaction starts (and
resuming the ones a restarted bridge finds running), UpdateSession with energy, departure and
charging needs, StopSession when it ends. Each call goes on the station's ordered queue."""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import grpc

from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from .config import MIN_STAY, BridgeConfig, log
from .link import _OptimizerLink
from .state import Meter, _iso, _now, _parse_time, _Station, _ts, _Tx


class _Sessions(_OptimizerLink):
    """The stations' transactions as sessions ``f"{station}:{transaction id}"``; the callbacks
    the handlers call return at once and queue the optimizer calls."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(config)
        self._tx_counter = itertools.count(int(time.time() * 10) % 2_000_000_000)

    def next_tx_id(self) -> int:
        return next(self._tx_counter)

    def start_tx(
        self,
        st: _Station,
        tx_id: str,
        evse: int,
        at: datetime | None,
        meter: Meter,
        phases: int | None,
        cable_max_a: int | None,
    ) -> None:
        for old in [t for t in st.txs.values() if t.evse == evse and t.tx_id != tx_id]:
            log.warning("%s: transaction %s on EVSE %d replaces %s, whose end was missed",
                        st.id, tx_id, evse, old.tx_id)
            self.end_tx(st, old.tx_id, Meter())
        conn = self.connector_for(st, evse)
        tx = _Tx(tx_id, evse, conn, f"{st.id}:{tx_id}", meter.energy_wh)
        st.txs[tx_id] = tx
        if conn is None:
            self._warn_once(f"unmapped {st.id} {evse}",
                            f"{st.id}: EVSE {evse} maps to no connector of site "
                            f"{self.cfg.site_id!r}; its transactions are not planned "
                            "(see --map)")
            return
        now = _now()
        arrival = min(at, now) if at is not None else now
        departure = max(arrival + self.cfg.default_stay, now + MIN_STAY)
        tx.departure = departure
        session = pb.Session(
            id=tx.session, connector=conn, arrival=_ts(arrival), departure=_ts(departure),
            energy_requested_kwh=self.cfg.default_energy_kwh,
        )
        if phases in (1, 3):
            session.vehicle_phases = phases
        if cable_max_a:
            session.vehicle_max_current_a = float(cable_max_a)
        req = pb.StartSessionRequest(site_id=self.cfg.site_id, session=session,
                                     transaction_id=tx_id)
        needs = st.needs.pop(evse, None)

        async def run() -> None:
            await self._start_session(tx, req)
            if needs is not None and tx.started:
                await self._apply_needs(tx, needs)

        log.info("%s: transaction %s started on EVSE %d -> session %r on %r", st.id, tx_id, evse,
                 tx.session, conn)
        st.work.put_nowait(run)

    async def _start_session(self, tx: _Tx, req: pb.StartSessionRequest) -> None:
        assert self._csms is not None
        try:
            await self._rpc(self._csms.StartSession, req)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                tx.started = True  # resumed after a restart of the bridge
                return
            overlap = exc.code() == grpc.StatusCode.INVALID_ARGUMENT and (
                "session.arrival" in (exc.details() or "")
                or "session.departure" in (exc.details() or "")
            )
            if not overlap or not await self._evict_stale(tx):
                log.error("StartSession %r failed: %s %s", tx.session, exc.code().name,
                          exc.details())
                return
            if not await self._rpc_or_log(self._csms.StartSession, req,
                                          "StartSession %r failed", tx.session,
                                          level=logging.ERROR):
                return
        tx.started = True

    async def _evict_stale(self, tx: _Tx) -> bool:
        """Stop sessions on the transaction's connector that no live transaction owns."""
        assert self._csms is not None
        live = {t.session for s in self.stations.values() for t in s.txs.values()}
        plan = (await self._rpc(self._csms.GetPlan,
                                pb.GetPlanRequest(site_id=self.cfg.site_id))).plan
        stale = [r.session for r in plan.sessions
                 if r.connector == tx.connector and r.session not in live]
        for sid in stale:
            log.warning("stopping stale session %r on %r (its end was missed)", sid,
                        tx.connector)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._rpc(self._csms.StopSession,
                                pb.StopSessionRequest(site_id=self.cfg.site_id, session_id=sid))
        return bool(stale)

    def resume_tx(self, st: _Station, tx_id: str, evse: int | None) -> None:
        """A transaction this bridge does not know (it restarted meanwhile): find its session
        (``f"{station}:{tx}"``) in the plan; if there is none, start one if the EVSE is known."""
        tx = _Tx(tx_id, evse or 0, None, f"{st.id}:{tx_id}", resumed=True)
        st.txs[tx_id] = tx  # later messages of it wait in the queue behind this lookup

        async def run() -> None:
            assert self._csms is not None
            plan = (await self._rpc(self._csms.GetPlan,
                                    pb.GetPlanRequest(site_id=self.cfg.site_id))).plan
            found = next((r for r in plan.sessions if r.session == tx.session), None)
            if found is not None:
                tx.connector, tx.started = found.connector, True
                tx.evse = self._reverse.get(found.connector, {}).get(st.id, tx.evse)
                log.info("%s: transaction %s resumed as session %r", st.id, tx_id, tx.session)
                st.dirty.set()
                return
            if evse is None:
                log.warning("%s: unknown transaction %s without an EVSE; not planned", st.id,
                            tx_id)
                return
            del st.txs[tx_id]
            self.start_tx(st, tx_id, evse, None, Meter(), None, None)
            st.txs[tx_id].resumed = True

        st.work.put_nowait(run)

    def update_tx(self, st: _Station, tx_id: str, meter: Meter) -> None:
        tx = st.txs.get(tx_id)
        if tx is None or tx.connector is None:
            return  # not planned
        req = pb.UpdateSessionRequest(site_id=self.cfg.site_id, session_id=tx.session)
        now = _now()
        if tx.departure is not None and tx.departure - now < MIN_STAY:
            # still plugged in at its departure: a plan would stop it there
            tx.departure = now + self.cfg.default_stay
            req.departure.CopyFrom(_ts(tx.departure))
            log.info("%s: transaction %s outstays its departure; moved to %s", st.id, tx_id,
                     _iso(tx.departure))
        if tx.resumed:
            pass  # its start register is unknown: no energy reports
        elif tx.meter_start_wh is None:
            tx.meter_start_wh = meter.energy_wh  # the first register seen counts as the start
        elif meter.energy_wh is not None:
            delivered = max(0.0, (meter.energy_wh - tx.meter_start_wh) / 1000)
            if delivered - tx.reported_kwh >= self.cfg.min_update_kwh:
                tx.reported_kwh = delivered
                req.energy_delivered_kwh = delivered
                if meter.current_a is not None and meter.current_a >= 0:
                    req.measured_current_a = meter.current_a
        if not (req.HasField("departure") or req.HasField("energy_delivered_kwh")):
            return

        async def run() -> None:
            assert self._csms is not None
            if not tx.started or tx.connector is None:
                return
            await self._rpc_or_log(self._csms.UpdateSession, req, "UpdateSession %r failed",
                                   tx.session)

        st.work.put_nowait(run)

    def charging_needs(self, st: _Station, evse: int, needs: dict[str, Any]) -> None:
        """ISO 15118 departure time and energy amount of the car on ``evse``."""
        tx = next((t for t in st.txs.values() if t.evse == evse), None)
        if tx is None:
            st.needs[evse] = needs  # applied when its transaction starts
            return

        async def run() -> None:
            if tx.started:
                await self._apply_needs(tx, needs)

        st.work.put_nowait(run)

    async def _apply_needs(self, tx: _Tx, needs: dict[str, Any]) -> None:
        assert self._csms is not None
        req = pb.UpdateSessionRequest(site_id=self.cfg.site_id, session_id=tx.session)
        departure = _parse_time(needs.get("departure_time"))
        if departure is not None:
            tx.departure = max(departure, _now() + timedelta(minutes=1))
            req.departure.CopyFrom(_ts(tx.departure))
        for params in ("ac_charging_parameters", "dc_charging_parameters"):
            amount = (needs.get(params) or {}).get("energy_amount")
            if amount is not None:
                req.energy_requested_kwh = float(amount) / 1000
        if not (req.HasField("departure") or req.HasField("energy_requested_kwh")):
            return
        await self._rpc_or_log(self._csms.UpdateSession, req, "charging needs of %r refused",
                               tx.session)

    def end_tx(self, st: _Station, tx_id: str, meter: Meter) -> None:
        st.ended.add(tx_id)
        tx = st.txs.pop(tx_id, None)
        if tx is None:  # unknown here (the bridge restarted): its session may still exist
            tx = _Tx(tx_id, 0, "", f"{st.id}:{tx_id}")
        # The station drops a TxProfile when its transaction ends.
        for key in [k for k in st.held if k[0] == pb.OCPP_PROFILE_KIND_TX and k[1] == tx.evse]:
            del st.held[key]
        log.info("%s: transaction %s ended", st.id, tx_id)
        if tx.connector is None and not tx.resumed:
            return

        async def run() -> None:
            assert self._csms is not None
            req = pb.StopSessionRequest(site_id=self.cfg.site_id, session_id=tx.session)
            await self._rpc_or_log(self._csms.StopSession, req, "StopSession %r failed",
                                   tx.session, quiet=grpc.StatusCode.NOT_FOUND)

        st.work.put_nowait(run)
