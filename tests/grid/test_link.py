"""GridLink against a real server on a real port: signals become events, modifications replace
their intervals, cancellation ends them, and refused signals change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.grid_signal import GridSignal, Measure, SignalInterval
from optimizer.grid.link import GridLink, SignalRefused
from optimizer.service.server import RunningServer, build_server

from ..service.test_server import make_options, make_site

T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = build_server(port=0, db_path=tmp_path_factory.mktemp("link") / "db.sqlite",
                       refresh=False)
    assert srv.wait_ready(120)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        # grid node: 3 x 40 A at 230 V, a 27.6 kW baseline for shares
        pb_grpc.ChargingOptimizerStub(ch).PutSite(
            pb.PutSiteRequest(site=make_site("s1", 40.0), options=make_options()))
    yield srv
    srv.stop()


def signal(mod: int, *values: float, measure: Measure = Measure.LIMIT_KW,
           sid: str = "e1") -> GridSignal:
    ivs = tuple(SignalInterval(T0 + k * H, T0 + (k + 1) * H, v) for k, v in enumerate(values))
    return GridSignal("openadr3", sid, mod, "grid", measure, ivs)


def run(server: RunningServer, steps: object) -> object:
    async def go() -> object:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            return await steps(GridLink(ch, "s1"))  # type: ignore[operator]
    return asyncio.run(go())


def held(server: RunningServer) -> dict[str, tuple[float | None, float | None, int]]:
    return {e.id: (e.limit_kw, e.reduction_kw, e.modification) for e in server.store.events("s1")}


def test_intervals_modifications_and_cancel(server: RunningServer) -> None:
    async def steps(link: GridLink) -> None:
        a = await link.apply(signal(1, 20.0, 10.0, 15.0))
        assert a.submitted == ("openadr3:e1#0", "openadr3:e1#1", "openadr3:e1#2") and a.changed
        assert held(server) == {"openadr3:e1#0": (20.0, None, 1),
                                "openadr3:e1#1": (10.0, None, 1),
                                "openadr3:e1#2": (15.0, None, 1)}
        again = await link.apply(signal(1, 20.0, 10.0, 15.0))
        assert not again.changed and again.cancelled == ()
        b = await link.apply(signal(2, 0.5, measure=Measure.SHARE))
        assert b.cancelled == ("openadr3:e1#1", "openadr3:e1#2")
        assert held(server) == {"openadr3:e1#0": (pytest.approx(13.8), None, 2)}
        assert await link.active("openadr3", "e1") == ["openadr3:e1#0"]
        assert await link.cancel("openadr3", "e1") == ("openadr3:e1#0",)
        assert held(server) == {}

    run(server, steps)


def test_refused_signals_change_nothing(server: RunningServer) -> None:
    async def steps(link: GridLink) -> None:
        await link.apply(signal(5, 12.0, sid="e2"))
        before = held(server)
        with pytest.raises(SignalRefused, match="FAILED_PRECONDITION"):
            await link.apply(signal(4, 1.0, sid="e2"))  # older modification
        with pytest.raises(SignalRefused, match=r"intervals\[0\].value"):
            await link.apply(signal(6, float("nan"), sid="e2"))
        with pytest.raises(SignalRefused, match="node"):
            await link.apply(GridSignal("oscp", "e2", 7, "nowhere", Measure.LIMIT_KW,
                                        (SignalInterval(T0, T0 + H, 1.0),)))
        assert held(server) == before
        await link.cancel("openadr3", "e2")

    run(server, steps)


def test_capacity_forecast_replaces_the_node_forecast(server: RunningServer) -> None:
    async def steps(link: GridLink) -> None:
        s = GridSignal("oscp", "g1", 0, "grid", Measure.PHASE_LIMIT_A,
                       (SignalInterval(T0, T0 + H, 16.0), SignalInterval(T0 + H, T0 + 2 * H, 50.0)),
                       phases=(0, 2))
        assert await link.set_capacity(s) == 2
        caps = server.store.signals("s1").capacity
        assert [c.phase_limit_a for c in caps] == [(16.0, 40.0, 16.0), (40.0, 40.0, 40.0)]

    run(server, steps)


def test_unknown_site_is_refused(tmp_path: Path, server: RunningServer) -> None:
    async def steps(_: GridLink) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            with pytest.raises(SignalRefused, match="NOT_FOUND"):
                await GridLink(ch, "no-such-site").apply(signal(1, 1.0))

    run(server, steps)


def test_a_signal_never_claims_another_signals_intervals(server: RunningServer) -> None:
    """Ids may hold "#": signal "a" must leave "a#1"'s interval "openadr3:a#1#0" alone."""
    async def steps(link: GridLink) -> None:
        await link.apply(signal(1, 7.0, sid="a#1"))
        await link.apply(signal(1, 9.0, sid="a"))
        assert held(server) == {"openadr3:a#1#0": (7.0, None, 1), "openadr3:a#0": (9.0, None, 1)}
        assert await link.active("openadr3", "a") == ["openadr3:a#0"]
        assert await link.cancel("openadr3", "a") == ("openadr3:a#0",)
        assert held(server) == {"openadr3:a#1#0": (7.0, None, 1)}
        await link.cancel("openadr3", "a#1")

    run(server, steps)
