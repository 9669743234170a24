"""gRPC service benchmarks against a server in its own process (so client and server do not share
a GIL). Goals on a 2-core machine:

- Optimize, 50-connector site, 8 concurrent clients: p50 <= 2 ms, >= 1,500 RPC/s.
- SubmitEvent -> new plan received on WatchPlans, 1,000-connector site: <= 100 ms.
- Process start -> health SERVING (numba cache warm).

Run ``python -m benchmarks.bench_grpc`` to print the numbers, or
``python -m pytest benchmarks/bench_grpc.py --benchmark-only`` for pytest-benchmark tables.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from optimizer.api.convert import request_from_problem
from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.api.smartcharging.v1 import smartcharging_pb2_grpc as pb_grpc
from optimizer.core.model import Mode, Problem
from optimizer.service.store import Store

from .workloads import tree_problem

REPO = Path(__file__).resolve().parents[1]
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]
#: ``BENCH_SMOKE=1``: the same code on a 50-connector stored site with short runs (CI).
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BIG_N = 50 if SMOKE else 1000
LOAD_SECONDS = 0.5 if SMOKE else 5.0


# --- server process ------------------------------------------------------------------------------


class ServerProcess:
    """``python -m optimizer.service.server`` on a free port; ``serving_s`` = Popen -> SERVING."""

    def __init__(self, db: Path, log: Path) -> None:
        t0 = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "optimizer.service.server", "--port", "0", "--db", str(db),
             "--no-example", "--grace", "1"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        )
        self.port = self._port()
        self.target = f"127.0.0.1:{self.port}"
        self._wait_serving()
        self.serving_s = time.perf_counter() - t0

    def _port(self) -> int:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            m = re.search(r"listening on [\d.]+:(\d+)", self.log.read_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.002)
        raise RuntimeError("no port")

    def _wait_serving(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            end = time.monotonic() + 120
            while time.monotonic() < end:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.002)
        raise RuntimeError("never SERVING")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=60)


# --- workloads -----------------------------------------------------------------------------------


def shifted(problem: Problem, now: datetime) -> Problem:
    """The workload moved so that its ``now`` is ``now`` (stored sites plan at wall time)."""
    d = now - problem.now
    return replace(
        problem,
        now=now,
        sessions=tuple(replace(s, arrival=s.arrival + d, departure=s.departure + d)
                       for s in problem.sessions),
        signals=replace(problem.signals, prices=tuple(
            replace(p, start=p.start + d, end=p.end + d) for p in problem.signals.prices)),
    )


def optimize_request(n: int = 50) -> pb.OptimizeRequest:
    p = tree_problem(n, 96, seed=1)
    p = replace(p, options=replace(p.options, mode=Mode.FAST))
    return request_from_problem(p)


def seed_big_site(db: Path, n: int = BIG_N) -> str:
    """A stored site with ``n`` connectors and sessions (1,000 unless smoke), written straight into
    the store (the benchmark measures re-planning, not 1,000 StartSession calls)."""
    p = shifted(tree_problem(n, 96, seed=2), datetime.now(UTC))
    p = replace(p, options=replace(p.options, mode=Mode.FAST))
    with Store(db) as store:
        store.put_site(p.site, p.options)
        for s in p.sessions:
            store.add_session(p.site.id, s)
    return p.site.id


# --- measurements --------------------------------------------------------------------------------


def optimize_load(target: str, request: pb.OptimizeRequest, clients: int = 8,
                  seconds: float = 5.0) -> dict[str, float]:
    """``clients`` threads, one channel each, calling Optimize back to back."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def run(k: int) -> None:
        with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
            stub = pb_grpc.ChargingOptimizerStub(ch)
            stub.Optimize(request, timeout=30)  # connect and warm
            start.wait()
            end = time.perf_counter() + seconds
            while (t0 := time.perf_counter()) < end:
                try:
                    stub.Optimize(request, timeout=30)
                except grpc.RpcError as err:
                    errors.append(err.code().name)
                    continue
                latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(x for xs in latencies for x in xs)
    return {
        "clients": clients,
        "calls": len(lat),
        "errors": len(errors),
        "rpc_per_s": len(lat) / wall,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
    }


def _ts(d: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(d)
    return t


class EventToPlan:
    """SubmitEvent, then wait for the next plan on an open WatchPlans stream."""

    def __init__(self, target: str, site_id: str) -> None:
        self.ch = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.site_id = site_id
        self.grid = pb_grpc.GridOperatorStub(self.ch)
        self.stream = pb_grpc.ChargingOptimizerStub(self.ch).WatchPlans(
            pb.WatchPlansRequest(site_ids=[site_id]))
        self.version = next(self.stream).plan.version
        self.k = 0
        self.now = datetime.now(UTC)

    def once(self) -> float:
        self.k += 1
        ev = pb.CurtailmentEvent(
            id="bench", node="grid", start=_ts(self.now), end=_ts(self.now + timedelta(hours=4)),
            limit_kw=150.0 + 10 * (self.k % 5), modification=self.k)
        t0 = time.perf_counter()
        self.grid.SubmitEvent(pb.SubmitEventRequest(site_id=self.site_id, event=ev), timeout=30)
        while True:
            update = next(self.stream)
            if update.plan.version > self.version:
                self.version = update.plan.version
                return time.perf_counter() - t0

    def close(self) -> None:
        self.stream.cancel()
        self.ch.close()


def summary(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {"n": len(s), "p50_ms": statistics.median(s) * 1000,
            "p90_ms": s[min(len(s) - 1, int(len(s) * 0.9))] * 1000, "max_ms": s[-1] * 1000}


# --- pytest-benchmark ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture(scope="module")
def server(tmp_dir: Path) -> Iterator[ServerProcess]:
    seed_big_site(tmp_dir / "bench.db")
    srv = ServerProcess(tmp_dir / "bench.db", tmp_dir / "bench.log")
    yield srv
    srv.stop()


def test_optimize_50_single_client(benchmark: Any, server: ServerProcess) -> None:
    req = optimize_request(50)
    with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as ch:
        stub = pb_grpc.ChargingOptimizerStub(ch)
        plan = benchmark(stub.Optimize, req, timeout=30).plan
    assert len(plan.profiles) == 50


def test_optimize_50_eight_clients(benchmark: Any, server: ServerProcess) -> None:
    out = benchmark.pedantic(optimize_load, args=(server.target, optimize_request(50)),
                             kwargs={"seconds": LOAD_SECONDS}, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    assert out["errors"] == 0


def test_event_to_plan(benchmark: Any, server: ServerProcess) -> None:
    e2p = EventToPlan(server.target, f"tree-{BIG_N}")
    benchmark.extra_info["connectors"] = BIG_N
    try:
        benchmark.pedantic(e2p.once, rounds=3 if SMOKE else 20, iterations=1, warmup_rounds=2)
    finally:
        e2p.close()


def test_start_to_serving(benchmark: Any, tmp_dir: Path) -> None:
    def start() -> float:
        srv = ServerProcess(tmp_dir / "start.db", tmp_dir / "start.log")
        srv.stop()
        return srv.serving_s

    benchmark.pedantic(start, rounds=1 if SMOKE else 3, iterations=1)


# --- __main__ ------------------------------------------------------------------------------------


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        site_id = seed_big_site(tmp / "bench.db")
        print(f"seeded 1,000 connectors, 1,000 sessions in {time.perf_counter() - t0:.1f} s")
        starts = []
        for k in range(3):
            s = ServerProcess(tmp / f"start{k}.db", tmp / f"start{k}.log")
            starts.append(s.serving_s)
            s.stop()
        print(f"process start -> SERVING: {', '.join(f'{x:.2f}' for x in starts)} s")

        srv = ServerProcess(tmp / "bench.db", tmp / "bench.log")
        print(f"start -> SERVING with the 1,000-connector site stored: {srv.serving_s:.2f} s")
        try:
            req = optimize_request(50)
            with grpc.insecure_channel(srv.target, options=CHANNEL_OPTIONS) as ch:
                stub = pb_grpc.ChargingOptimizerStub(ch)
                lat = []
                for _ in range(300):
                    t = time.perf_counter()
                    stub.Optimize(req, timeout=30)
                    lat.append(time.perf_counter() - t)
            s1 = summary(lat[50:])
            print(f"Optimize 50 connectors x 96 slots, 1 client: p50 {s1['p50_ms']:.2f} ms, "
                  f"p90 {s1['p90_ms']:.2f} ms")
            for clients in (1, 8):
                out = optimize_load(srv.target, req, clients=clients, seconds=5.0)
                print(f"Optimize 50 connectors, {clients} concurrent clients: "
                      f"p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, "
                      f"{out['rpc_per_s']:.0f} RPC/s, {out['errors']} errors")

            e2p = EventToPlan(srv.target, site_id)
            try:
                for _ in range(3):
                    e2p.once()
                s2 = summary([e2p.once() for _ in range(30)])
            finally:
                e2p.close()
            print(f"SubmitEvent -> new plan on WatchPlans, 1,000 connectors: "
                  f"p50 {s2['p50_ms']:.1f} ms, p90 {s2['p90_ms']:.1f} ms, "
                  f"max {s2['max_ms']:.1f} ms")
        finally:
            code = srv.stop()
            print(f"server exit code {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
