"""ListSessions over gRPC against a real server (loopback port, real SQLite file).

What a wrong implementation gets wrong: the measured current and delivered energy an
UpdateSession stored, a stopped session still listed, another site's sessions listed, a
measurement invented for a session that never had one, and an unknown site answered with an
empty list instead of NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.service.server import RunningServer, build_server

from .test_server import PATIENCE_S, make_options, make_session, make_site, now_utc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("list_sessions") / "service.db"
    srv = build_server(port=0, db_path=db, refresh=False)
    assert srv.wait_ready(PATIENCE_S), "server never became SERVING"
    yield srv
    srv.stop(1.0)


@pytest.fixture(scope="module")
def csms(server: RunningServer) -> Iterator[pb_grpc.ChargingOptimizerStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield pb_grpc.ChargingOptimizerStub(ch)


def put(csms: pb_grpc.ChargingOptimizerStub, site_id: str, n: int = 3) -> None:
    csms.PutSite(pb.PutSiteRequest(site=make_site(site_id, 40.0, n), options=make_options()),
                 timeout=30)


def start(csms: pb_grpc.ChargingOptimizerStub, site_id: str, session: pb.Session) -> None:
    csms.StartSession(pb.StartSessionRequest(site_id=site_id, session=session), timeout=10)


def listed(csms: pb_grpc.ChargingOptimizerStub, site_id: str) -> list[pb.Session]:
    return list(csms.ListSessions(pb.ListSessionsRequest(site_id=site_id), timeout=10).sessions)


def as_stored(s: pb.Session, **changes: float) -> pb.Session:
    """``s`` as the service gives it back: priority explicit (default 1), ``changes`` set."""
    out = pb.Session()
    out.CopyFrom(s)
    if not out.HasField("priority"):
        out.priority = 1.0
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def resource_types(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = []
    for d in status.details:
        if d.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            ri = error_details_pb2.ResourceInfo()
            d.Unpack(ri)
            out.append(ri.resource_type)
    return out


def test_lists_what_start_and_update_stored(csms: pb_grpc.ChargingOptimizerStub) -> None:
    put(csms, "ls-a")
    put(csms, "ls-b")
    t0 = now_utc()
    a1 = make_session("a1", "c0", t0, kwh=30.0)
    a2 = make_session("a2", "c1", t0 + timedelta(minutes=5), kwh=20.0)
    a3 = make_session("a3", "c2", t0 - timedelta(minutes=10), kwh=12.0)
    a3.vehicle_max_current_a = 16.0
    a3.priority = 2.5
    b1 = make_session("b1", "c0", t0, kwh=40.0)
    for s in (a1, a2, a3):
        start(csms, "ls-a", s)
    start(csms, "ls-b", b1)
    assert listed(csms, "ls-a") == [as_stored(a3), as_stored(a1), as_stored(a2)]  # by arrival

    csms.UpdateSession(pb.UpdateSessionRequest(site_id="ls-a", session_id="a1",
                                               measured_current_a=17.25,
                                               energy_delivered_kwh=3.5), timeout=10)
    csms.UpdateSession(pb.UpdateSessionRequest(site_id="ls-a", session_id="a2",
                                               measured_current_a=9.0), timeout=10)
    csms.StopSession(pb.StopSessionRequest(site_id="ls-a", session_id="a2"), timeout=10)
    # an update that sets only the delivered energy keeps the stored measurement
    csms.UpdateSession(pb.UpdateSessionRequest(site_id="ls-a", session_id="a1",
                                               energy_delivered_kwh=4.0), timeout=10)

    got = listed(csms, "ls-a")
    assert [s.id for s in got] == ["a3", "a1"]  # a2 stopped: gone; b1 is another site's
    assert got[1].HasField("measured_current_a") and got[1].measured_current_a == 17.25
    assert got[1].energy_delivered_kwh == 4.0
    assert got[1] == as_stored(a1, measured_current_a=17.25, energy_delivered_kwh=4.0)
    assert not got[0].HasField("measured_current_a")  # never measured: absent, not 0
    assert got[0] == as_stored(a3)
    assert got[0].priority == 2.5 and got[0].vehicle_max_current_a == 16.0

    assert listed(csms, "ls-b") == [as_stored(b1)]


def test_site_without_sessions_is_an_empty_list(csms: pb_grpc.ChargingOptimizerStub) -> None:
    put(csms, "ls-empty")
    assert listed(csms, "ls-empty") == []


def test_unknown_or_deleted_site_is_not_found(csms: pb_grpc.ChargingOptimizerStub) -> None:
    put(csms, "ls-gone")
    start(csms, "ls-gone", make_session("g1", "c0", now_utc()))
    csms.DeleteSite(pb.DeleteSiteRequest(site_id="ls-gone"), timeout=10)
    for site_id in ("ls-nowhere", "ls-gone"):
        with pytest.raises(grpc.RpcError) as err:
            listed(csms, site_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert resource_types(err.value) == ["site"]
        assert site_id in (err.value.details() or "")


def test_empty_site_id_is_invalid_argument(csms: pb_grpc.ChargingOptimizerStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        listed(csms, "")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
