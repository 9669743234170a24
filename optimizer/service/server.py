"""The gRPC server: ChargingOptimizer + GridOperator, health, reflection, graceful shutdown.

Lifecycle, and why in this order:

1. Open the SQLite store, bind the port, start serving: clients can connect at once, and health
   says NOT_SERVING for "", both services (so a load balancer sends nothing yet).
2. A background thread compiles every numba kernel (``solve.warmup``; the first compile takes
   seconds and would otherwise land on the first unlucky request), then starts the planner,
   which re-plans every stored site (plans are not stored; after ``kill -9`` they are
   recomputed), then sets health SERVING.
3. On SIGTERM/SIGINT: health NOT_SERVING (balancers drain), WatchPlans streams end cleanly (their
   generators return: clients see OK and reconnect elsewhere), the server stops accepting and
   gives in-flight calls ``grace_s`` to finish, then the planner and the store close. The
   process exits with status 0.

Message sizes: requests above ``ServiceConfig.max_request_bytes`` (16 MiB) are refused with
INVALID_ARGUMENT and a BadRequest detail; the transport drops anything above twice that with
RESOURCE_EXHAUSTED before reading it. Responses may be up to ``MAX_SEND_BYTES`` (64 MiB) so a
plan for a large site fits; clients must raise their default 4 MiB receive limit
(``grpc.max_receive_message_length``) for sites of more than a few thousand connectors.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .planner import Planner
from .servicers import CHARGING_SERVICE, GRID_SERVICE, Core, ServiceConfig, SolveFn, register
from .store import Store

log = logging.getLogger("optimizer.service.server")

#: Largest response (a plan for a large site).
MAX_SEND_BYTES = 64 * 1024 * 1024
#: Services whose health is reported; "" is the whole server.
HEALTH_NAMES = ("", CHARGING_SERVICE, GRID_SERVICE)


@dataclass
class RunningServer:
    """A started server: its port, the pieces tests poke at, and a graceful ``stop``."""

    server: grpc.Server
    port: int
    store: Store
    planner: Planner
    health: health.HealthServicer
    ready: threading.Event
    _stopped: bool = field(default=False, repr=False)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once warmup finished and health reports SERVING."""
        return self.ready.wait(timeout)

    def stop(self, grace_s: float = 5.0) -> None:
        """Graceful shutdown (see the module docstring); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.health.enter_graceful_shutdown()
        self.planner.close_subscriptions()
        self.server.stop(grace_s).wait()
        self.planner.close()
        self.store.close()


def _default_solve() -> tuple[SolveFn, Callable[[], float]]:
    from ..core.solve import solve, warmup

    return solve, warmup


def _ensure_example_site(store: Store) -> None:
    """Register the example European depot (no sessions) if absent, so a fresh server has
    something to show; the example clients add sessions."""
    from ..data.examples import eu_three_phase
    from .store import NotFound

    problem = eu_three_phase()
    try:
        store.get_site(problem.site.id)
    except NotFound:
        store.put_site(problem.site, problem.options)
        log.info("registered example site %r", problem.site.id)


def build_server(
    host: str = "127.0.0.1",
    port: int = 0,
    db_path: str | os.PathLike[str] = "optimizer.db",
    *,
    example_site: bool = False,
    config: ServiceConfig | None = None,
    max_workers: int = 64,
    planner_workers: int = 2,
    coalesce_s: float = 0.01,
    refresh: bool = True,
    solve_fn: SolveFn | None = None,
    warmup_fn: Callable[[], float] | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> RunningServer:
    """Build, bind and start a server; warmup and planning start in the background.

    ``port=0`` picks a free port (``RunningServer.port``). ``refresh=False`` turns off the
    re-plan at slot boundaries (tests that compare plan versions). ``max_workers`` bounds the
    threads serving RPCs; each open WatchPlans stream holds one, hence
    ``ServiceConfig.max_watchers`` stays well below it.
    """
    cfg = config or ServiceConfig()
    if solve_fn is None or warmup_fn is None:
        default_solve, default_warmup = _default_solve()
        solve_fn = solve_fn or default_solve
        warmup_fn = warmup_fn or default_warmup
    store = Store(db_path)
    try:
        if example_site:
            _ensure_example_site(store)
        planner = Planner(
            store,
            solve_fn,
            limits=cfg.limits,
            coalesce_s=coalesce_s,
            workers=planner_workers,
            refresh=refresh,
        )
        core = Core(store, planner, solve_fn, cfg)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
            options=[
                ("grpc.max_receive_message_length", 2 * cfg.max_request_bytes),
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                # Two servers must never share a port by accident (Linux defaults to reuse).
                ("grpc.so_reuseport", 0),
                # Find dead WatchPlans clients: their threads are released when pings fail.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
            # Beyond this many RPCs in progress or queued, grpc answers RESOURCE_EXHAUSTED itself.
            maximum_concurrent_rpcs=max_workers * 4,
            interceptors=tuple(interceptors),
        )
        register(server, core)
        health_servicer = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=2),
        )
        for name in HEALTH_NAMES:
            health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (CHARGING_SERVICE, GRID_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        bound = server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise RuntimeError(f"cannot bind {host}:{port}")
        server.start()
    except BaseException:
        store.close()
        raise
    ready = threading.Event()
    running = RunningServer(server, bound, store, planner, health_servicer, ready)

    def warm() -> None:
        try:
            seconds = warmup_fn()
            log.info("kernels warm in %.2f s", seconds)
            planner.start(store.list_sites())
        except Exception:
            log.exception("warmup failed; staying NOT_SERVING")
            return
        if running._stopped:
            return
        for name in HEALTH_NAMES:
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        ready.set()

    threading.Thread(target=warm, name="warmup", daemon=True).start()
    return running


def serve(
    host: str = "127.0.0.1",
    port: int = 50051,
    db_path: str | os.PathLike[str] = "optimizer.db",
    example_site: bool = True,
    *,
    grace_s: float = 5.0,
    config: ServiceConfig | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully and return."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    t0 = time.perf_counter()
    running = build_server(host, port, db_path, example_site=example_site, config=config)
    # A parseable line for scripts and tests (port 0 picks a free one).
    print(f"optimizer: listening on {host}:{running.port}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            if running.ready.is_set() and t0:
                log.info("SERVING after %.2f s", time.perf_counter() - t0)
                t0 = 0.0
    finally:
        log.info("shutting down (grace %.1f s)", grace_s)
        running.stop(grace_s)
        for s, h in old.items():
            signal.signal(s, h)
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m optimizer.service.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    p.add_argument("--db", default="optimizer.db", help="SQLite file (WAL)")
    p.add_argument("--no-example", action="store_true", help="do not register the example site")
    p.add_argument("--grace", type=float, default=5.0, help="seconds for in-flight calls on stop")
    p.add_argument("--solve-threads", type=int, default=0,
                   help="Optimize calls computing at once; 0 = one per core")
    args = p.parse_args(argv)
    serve(args.host, args.port, args.db, not args.no_example, grace_s=args.grace,
          config=ServiceConfig(solve_threads=args.solve_threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
