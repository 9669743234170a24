"""Plans -> charging profiles: follow the site's plans (``WatchPlans``) and roll each out to the
connected stations in two rounds, so that none is raised while another still holds a higher
old profile: first what only lowers, everywhere; then, once every station holds that (or has
had ``lower_wait_s`` to), the rest. Only profiles whose effect from now on differs from what a
station holds are sent.

A station that cannot be sent anything (disconnected, or connected but not heard from yet) still
holds what it last accepted: a charger keeps its profiles while offline. So it counts as lowered
only if that is at most what the new plan gives it; otherwise it is waited for like a station
that does not answer, and lowered first when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import grpc
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.exceptions import ConnectionClosed

from ..api.convert import ocpp_payload
from ..api.smartcharging.v1 import smartcharging_pb2 as pb
from ..ocpp.transition import applies, at_most, interim, lowers_only
from .config import SITE_REFRESH_S, BridgeConfig, log
from .sessions import _Sessions
from .state import _now, _Station, _Tx, effective

#: Profile kinds as the plan names them, for logs.
_KIND_NAMES = {
    pb.OCPP_PROFILE_KIND_TX: "TxProfile",
    pb.OCPP_PROFILE_KIND_TX_DEFAULT: "TxDefaultProfile",
    pb.OCPP_PROFILE_KIND_FAILSAFE: "fail-safe",
    pb.OCPP_PROFILE_KIND_STATION_MAX: "station max",
}


class _RollOut(_Sessions):
    """The current plan, indexed by station, and the roll-out of it: one sync loop a station,
    the rounds tied together by the set of stations still lowering."""

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(config)
        self._stopping = False  # set by Bridge.stop(): the plan stream is not reconnected
        self._plan: pb.Plan | None = None
        #: station -> [(profile, payload)] of the current plan
        self._by_station: dict[str, list[tuple[pb.OcppProfile, dict[str, Any]]]] = {}
        self.plans_seen = 0
        # roll-out of the current plan (``_round`` counts plans): stations still lowering, and
        # since when each has been (kept across plans, so re-plans cannot extend the wait)
        self._round = 0
        self._to_lower: set[str] = set()
        self._lowering_since: dict[str, float] = {}
        self._lowered = asyncio.Event()
        self._lowered.set()

    # --- the site's plans -----------------------------------------------------------------

    async def _watch(self) -> None:
        """Follow the site's plans for as long as the bridge runs."""
        assert self._csms is not None
        delay = 0.5
        while not self._stopping:
            try:
                if self._site is None:
                    await self._refresh_site()
                stream = self._csms.WatchPlans(pb.WatchPlansRequest(site_ids=[self.cfg.site_id]))
                async for update in stream:
                    delay = 0.5
                    if update.withdrawn:
                        # Stations keep their last profiles (which expire onto the fail-safe);
                        # nothing better to send until the optimizer plans again.
                        log.error("site %r: the optimizer withdrew its plan: %s",
                                  self.cfg.site_id, update.withdrawn)
                        continue
                    if not update.HasField("plan"):
                        log.warning("site %r was deleted", self.cfg.site_id)
                        continue
                    await self._on_plan(update.plan)
                log.info("plan stream ended (optimizer restarting?); reconnecting")
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("plan stream: %s %s; reconnecting in %.1f s", exc.code().name,
                            exc.details(), delay)
            except Exception:
                log.exception("plan stream failed; reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _on_plan(self, plan: pb.Plan) -> None:
        if self._plan is not None and plan.version <= self._plan.version:
            return
        conns = {p.connector for p in plan.profiles}
        assert self._site is not None
        if conns != {c.id for c in self._site.connectors} or (
            time.monotonic() - self._site_read > SITE_REFRESH_S
        ):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._refresh_site()
        by_station: dict[str, list[tuple[pb.OcppProfile, dict[str, Any]]]] = {}
        for prof in plan.ocpp_profiles:
            # a connector may map from several station ids (--map, station_id, its name):
            # whichever of them is connected gets it
            stations = self._reverse.get(prof.connector, {}) if prof.connector else {
                prof.station: 0}
            if not stations:
                continue
            payload = ocpp_payload(prof)
            for station in stations:
                by_station.setdefault(station, []).append((prof, payload))
        self._plan, self._by_station = plan, by_station
        self.plans_seen += 1
        for w in plan.warnings:
            if w.startswith("ocpp:"):
                self._warn_once(w, f"plan: {w}")
        self._roll_out()

    # --- the roll-out, in two rounds ------------------------------------------------------

    @property
    def lowering(self) -> frozenset[str]:
        """Stations the current roll-out still waits for before it raises the others."""
        return frozenset(self._to_lower)

    def _roll_out(self) -> None:
        """Start a roll-out of the current plan: every station lowers, then raises. Lowering
        includes a station the bridge cannot reach that still holds more than its new profiles:
        it keeps drawing that until it is back."""
        self._round += 1
        self._to_lower = {st.id for st in self.stations.values()
                          if (st.cp is not None and st.ready) or not self._within_plan(st)}
        now = time.monotonic()
        self._lowering_since = {sid: self._lowering_since.get(sid, now)
                                for sid in self._to_lower}
        self._lowered = asyncio.Event()
        if not self._to_lower:
            self._lowered.set()
        for st in self.stations.values():
            st.dirty.set()

    def _lowering_wait(self) -> float:
        """Seconds until every station still lowering has had ``lower_wait_s`` since it began
        (a station that accepts a lowering profile begins anew: it is making progress)."""
        since = [self._lowering_since.get(s, 0.0) for s in self._to_lower]
        return max(0.0, max(since, default=0.0) + self.cfg.lower_wait_s - time.monotonic())

    def _lowering_done(self, station_id: str, round_: int | None = None) -> None:
        """``station_id`` lowered for the current plan (a round of an older plan does not
        count), or cannot be sent anything and holds nothing above it (``_within_plan``)."""
        if round_ is not None and round_ != self._round:
            return
        self._to_lower.discard(station_id)
        self._lowering_since.pop(station_id, None)
        if not self._to_lower:
            self._lowered.set()

    def _within_plan(self, st: _Station) -> bool:
        """True if nothing the station holds allows more, from now on, than the current plan
        gives it: it has nothing to lower. What decides, for a station that cannot be sent
        anything, whether the others may be raised without waiting for it."""
        now = _now()
        try:
            desired = self._desired(st)
        except Exception:  # never lose a roll-out over it: wait for the station (bounded)
            log.exception("%s: cannot compare its profiles with the plan", st.id)
            return False
        for key, payload in desired:
            held = st.held.get(key)
            if held is not None and not at_most(held, payload, st.version, now):
                return False
        return True

    def _desired(self, st: _Station) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """(key, payload) of every profile the station should hold under the current plan."""
        out = []
        self._adopt(st)
        active = {(t.evse, t.tx_id) for t in st.txs.values()}
        version = st.version
        for prof, payload in self._by_station.get(st.id, ()):
            if prof.ocpp_version != version:
                self._warn_once(f"version {st.id}", f"{st.id}: speaks OCPP {st.version}, the "
                                f"site configures {prof.ocpp_version}; profiles not sent")
                continue
            target = payload["connectorId"] if version == "1.6" else payload["evseId"]
            if prof.connector:
                evse = self._reverse[prof.connector][st.id]
                if target != evse:
                    self._warn_once(f"target {prof.connector}",
                                    f"{st.id}: connector {prof.connector!r} is EVSE {evse} "
                                    f"but its charger renders target {target}; set its "
                                    "evse_id / connector_id; profiles not sent")
                    continue
            if prof.kind == pb.OCPP_PROFILE_KIND_TX:
                body = payload["csChargingProfiles" if version == "1.6" else "chargingProfile"]
                if (target, str(body.get("transactionId"))) not in active:
                    continue  # ended, or not started here: a charger would reject it
            pid = (payload["csChargingProfiles"]["chargingProfileId"] if version == "1.6"
                   else payload["chargingProfile"]["id"])
            out.append(((prof.kind, target, pid), payload))
        # fail-safe first: it is what protects the site if the link drops midway
        out.sort(key=lambda kp: kp[0][0] != pb.OCPP_PROFILE_KIND_FAILSAFE)
        return out

    def _adopt(self, st: _Station) -> None:
        """After a restart of the bridge, take the transactions of a station's TxProfiles in the
        plan (session ``f"{station}:{tx}"``) as active again, so their profiles keep flowing
        without waiting for the station's next message about them."""
        for prof, payload in self._by_station.get(st.id, ()):
            if prof.kind != pb.OCPP_PROFILE_KIND_TX or not prof.session.startswith(f"{st.id}:"):
                continue
            tx_id = prof.session[len(st.id) + 1:]
            if tx_id in st.txs or tx_id in st.ended:
                continue
            body = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
            if str(body.get("transactionId")) != tx_id:
                continue
            evse = payload.get("connectorId", payload.get("evseId", 0))
            st.txs[tx_id] = _Tx(tx_id, evse, prof.connector, prof.session, started=True,
                                resumed=True)
            log.info("%s: transaction %s adopted from the plan (session %r)", st.id, tx_id,
                     prof.session)

    async def _sync_loop(self, st: _Station) -> None:
        """Bring the station's profiles in line with the plan whenever either changes.

        In two rounds across all stations (``optimizer.ocpp.transition``): first what only lowers
        (a first fail-safe, profiles at most the held ones, interims below both), then, once
        every connected station holds its first round (or has had ``lower_wait_s`` to), the
        rest. So no station is raised while another still holds a higher old profile.
        """
        while True:
            await st.dirty.wait()
            st.dirty.clear()
            try:
                await self._sync(st)
            except asyncio.CancelledError:
                raise
            except Exception:  # never lose a station's sync loop: log, and wait for the next
                log.exception("%s: profile sync failed", st.id)

    async def _sync(self, st: _Station) -> None:
        lowered, round_ = self._lowered, self._round
        if st.cp is None or not st.ready:
            # it keeps what it holds: the others wait for it if that is more than its new plan
            if self._within_plan(st):
                self._lowering_done(st.id)
            return  # seen() / booted() set dirty again
        now = _now()
        first: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        later: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        stuck = False  # a held profile that cannot be lowered safely in round 1
        for key, payload in self._desired(st):
            held = st.held.get(key)
            if held is not None and not applies(held, st.version, now):
                held = None  # expired: the station is on its fallback already
            if held is None and key[0] == pb.OCPP_PROFILE_KIND_FAILSAFE:
                first.append((key, payload))  # a first limit where there was none
            elif held is None:
                later.append((key, payload))  # what it would lower is unknown
            elif lowers_only(held, payload, st.version, now):
                first.append((key, payload))
            else:
                mid = interim(held, payload, st.version, now)
                if mid is None:
                    stuck = True  # other units or a gap: nothing to send below both
                else:
                    first.append((key, mid))
                later.append((key, payload))
        done, all_held = await self._send_round(st, first, lowering=True)
        if not done:
            return  # a newer plan or a reconnect: this round does not count
        if all_held and not stuck:  # a rejected or unanswered lowering keeps others waiting
            self._lowering_done(st.id, round_)
        if not later:
            return
        while not lowered.is_set() and (wait := self._lowering_wait()) > 0:
            waits = [asyncio.ensure_future(st.dirty.wait()),
                     asyncio.ensure_future(lowered.wait())]
            try:
                await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if st.dirty.is_set():
                return  # a newer plan: its own rounds
        if not lowered.is_set():
            log.warning("%s: raising although %s did not lower within %.0f s", st.id,
                        ", ".join(sorted(self._to_lower)), self.cfg.lower_wait_s)
        await self._send_round(st, later)

    async def _send_round(self, st: _Station, profiles: list[tuple[tuple[Any, ...],
                                                                    dict[str, Any]]],
                          *, lowering: bool = False) -> tuple[bool, bool]:
        """Send each profile whose effect differs from what the station holds. Returns (not cut
        short by a newer plan or a reconnect, the station holds every one of them)."""
        cp = st.cp
        if cp is None:
            return False, False
        now = _now()
        sent = accepted = 0
        complete = held_all = True
        for key, payload in profiles:
            if st.dirty.is_set():
                complete = False
                break  # a newer plan (or a reconnect) arrived: start over with it
            want = effective(payload, st.version, now)
            held = st.held.get(key)
            if held is not None and effective(held, st.version, now) == want:
                continue
            failed = st.failed.get(key)
            if failed is not None and effective(failed, st.version, now) == want:
                held_all = False
                continue  # rejected as it is; retried once it changes
            if key[0] == pb.OCPP_PROFILE_KIND_TX and not any(
                t.evse == key[1] and t.tx_id == want[5] for t in st.txs.values()
            ):
                continue  # its transaction ended while this round was sending
            sent += 1
            try:
                status = await self._send(cp, st.version, payload)
            except ConnectionClosed:
                complete = False
                break  # reconnect -> seen() -> sync again
            except Exception as exc:  # CallError, timeout, schema violation
                log.warning("%s: SetChargingProfile %s failed: %s", st.id,
                            _KIND_NAMES.get(key[0], key[0]), exc)
                st.failed[key] = payload
                held_all = False
                continue
            if status == "Accepted":
                accepted += 1
                st.held[key] = payload
                st.failed.pop(key, None)
                if lowering and st.id in self._lowering_since:
                    self._lowering_since[st.id] = time.monotonic()  # progress: wait on
            else:
                log.warning("%s: %s for EVSE %s %s", st.id, _KIND_NAMES.get(key[0], key[0]),
                            key[1], status)
                st.failed[key] = payload
                held_all = False
        if sent:
            version = self._plan.version if self._plan is not None else 0
            log.info("%s: plan v%d: %d of %d profiles accepted", st.id, version, accepted, sent)
        return complete, held_all and complete

    async def _send(self, cp: Any, version: str, payload: dict[str, Any]) -> str:
        if version == "1.6":
            req: Any = call16.SetChargingProfile(connector_id=payload["connectorId"],
                                                 cs_charging_profiles=payload["csChargingProfiles"])
        else:
            req = call201.SetChargingProfile(evse_id=payload["evseId"],
                                             charging_profile=payload["chargingProfile"])
        res = await cp.call(req, suppress=False)
        return str(res.status)
