"""``optimizer`` command line: solve a problem file (and render its OCPP profiles), serve the
gRPC API, run the reference OCPP bridge or a grid protocol adapter, write the examples."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .core.model import Mode


def _load_request(path: str | None, example: str | None):  # type: ignore[no-untyped-def]
    from .api.convert import read_request_json
    from .data.examples import DEFAULT, example_json

    if path is not None:
        return read_request_json(Path(path).read_text())
    return read_request_json(example_json(example or DEFAULT))


def cmd_solve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from google.protobuf import json_format

    from .api.convert import plan_to_proto, problem_from_request
    from .core.solve import PlanCheckError, solve
    from .core.validate import ValidationError

    try:
        req = _load_request(args.problem, args.example)
        problem = problem_from_request(req)
    except json_format.ParseError as exc:
        print(f"error: {args.problem}: not a valid Optimize request: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print("error: invalid problem:", file=sys.stderr)
        for v in exc.violations:
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 2
    if args.mode:
        problem = replace(problem, options=replace(problem.options, mode=Mode(args.mode)))
    if args.time_limit is not None:
        problem = replace(problem, options=replace(problem.options, time_limit_s=args.time_limit))
    ocpp = None
    if args.ocpp:
        try:
            ocpp = _ocpp_options(req, problem, args)
        except ValidationError as exc:
            print("error: invalid OCPP options:", file=sys.stderr)
            for v in exc.violations:
                print(f"  {v.field}: {v.description}", file=sys.stderr)
            return 2
    try:
        plan = solve(problem)
        status = 0
    except PlanCheckError as exc:  # a bug: show the evidence, never a silently clamped plan
        plan, status = exc.plan, 3
    if ocpp is not None and status != 0:
        # Never print charger commands from a rejected plan: only the evidence.
        print("error: the checker rejected the plan; no OCPP payloads rendered:", file=sys.stderr)
        for bad in plan.violations:
            print(f"  {bad.kind} {bad.subject}: {bad.message}", file=sys.stderr)
    elif ocpp is not None:
        print(render_ocpp_json(problem, plan, ocpp))
    elif args.json:
        msg = plan_to_proto(plan, problem.site.id)
        print(json_format.MessageToJson(msg, indent=2, always_print_fields_with_no_presence=True))
    else:
        print(render_table(problem, plan))
    return status


def _ocpp_options(req, problem, args):  # type: ignore[no-untyped-def]
    """The request's OCPP options if it has chargers; else every connector as its own station
    (EVSE / connector 1) speaking ``--ocpp`` with ``--rate-unit`` and ``--max-periods``, with
    made-up transaction ids for the cars present now (1.6: 1, 2, ...; 2.x: the session id, or
    ``tx-N`` if longer than 36 characters), plan TxDefaultProfiles and fail-safe profiles."""
    from .ocpp import ChargerCapabilities
    from .ocpp.options import OcppOptions, options_from_message

    if req.HasField("ocpp") and len(req.ocpp.chargers):
        return options_from_message(req.ocpp, problem.site, problem.sessions)
    version = args.ocpp
    caps = {
        c.id: ChargerCapabilities(
            ocpp_version=version,
            rate_unit=args.rate_unit,
            max_periods=args.max_periods,
            station_id=c.id,
        )
        for c in problem.site.connectors
    }
    tx: dict[str, str] = {}
    taken: set[str] = set()
    for s in sorted(problem.sessions, key=lambda s: (s.arrival, s.id)):
        if s.connector in taken or not s.arrival <= problem.now < s.departure:
            continue
        taken.add(s.connector)
        k = len(tx) + 1
        tx[s.id] = str(k) if version == "1.6" else (s.id if len(s.id) <= 36 else f"tx-{k}")
    return OcppOptions(chargers=caps, transaction_ids=tx, failsafe=True, tx_default=True)


def render_ocpp_json(problem, plan, options) -> str:  # type: ignore[no-untyped-def]
    """The plan's SetChargingProfile payloads as a JSON list (warnings go to stderr)."""
    import json

    from .ocpp.options import render_all

    rendered, warnings = render_all(problem, plan, options)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return json.dumps(
        [
            {
                "connector": r.connector,
                "station": r.station,
                "ocppVersion": r.ocpp_version,
                "kind": str(r.kind),
                "session": r.session,
                "action": r.action,
                "payload": r.payload,
                "warnings": list(r.warnings),
            }
            for r in rendered
        ],
        indent=2,
    )


def render_table(problem, plan) -> str:  # type: ignore[no-untyped-def]
    """A human-readable summary: totals, per-session energy and profile, peaks, warnings."""
    req = sum(s.requested_kwh for s in plan.sessions)
    got = sum(s.expected_kwh for s in plan.sessions)
    lines = [
        f"site {problem.site.id}  {plan.start:%Y-%m-%d %H:%M} -> {plan.end:%Y-%m-%d %H:%M} UTC",
        f"solver {plan.solver} (mode {plan.mode}) in {plan.solve_time_s * 1000:.1f} ms; "
        f"delivered {got:.2f} of {req:.2f} kWh"
        + (f"; LP bound {plan.lp_bound_kwh:.2f} kWh, gap {plan.gap:.2%}"
           if plan.lp_bound_kwh is not None and plan.gap is not None else "")
        + f"; cost {plan.energy_cost:.2f}; {plan.carbon_kg:.2f} kg CO2",
        f"checker: {len(plan.violations)} violations",
        "",
        f"{'connector':<12} {'session':<14} {'want kWh':>8} {'plan kWh':>8} {'unmet':>6}  "
        "profile (UTC, A)",
    ]
    by_conn = {s.session: s for s in plan.sessions}
    for prof in plan.profiles:
        if not prof.sessions:
            continue
        pts = ", ".join(f"{p.start:%H:%M} {p.current_a:g}" for p in prof.points)
        for k, sid in enumerate(prof.sessions):
            r = by_conn[sid]
            lines.append(f"{prof.connector if k == 0 else '':<12} {sid[:14]:<14} "
                         f"{r.requested_kwh:8.2f} {r.expected_kwh:8.2f} {r.unmet_kwh:6.2f}  "
                         + (pts if k == 0 else ""))
    lines += ["", f"{'node':<14} {'limit':<10} {'peak':>8} {'of':>8}  at"]
    for pk in plan.peaks:
        lines.append(f"{pk.node:<14} {pk.label:<10} {pk.peak:8.2f} {pk.limit:8.2f}  "
                     f"{pk.at:%H:%M}")
    if plan.warnings:
        lines += ["", "warnings:", *(f"  {w}" for w in plan.warnings)]
    for v in plan.violations:
        lines.append(f"VIOLATION {v.kind} {v.subject}: {v.message}")
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    from .service.server import serve

    serve(host=args.host, port=args.port, db_path=args.db, example_site=not args.no_example)
    return 0


def cmd_bridge(argv: Sequence[str]) -> int:
    from .bridge import main as bridge_main

    return bridge_main(argv)


def cmd_examples(args: argparse.Namespace) -> int:
    from .data.examples import main

    return main([args.dir])


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optimizer", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("solve", help="plan one problem (protobuf JSON OptimizeRequest)")
    s.add_argument("problem", nargs="?", help="OptimizeRequest JSON file; default: an example")
    s.add_argument("--example", help="bundled example name instead of a file "
                   "(eu-3phase-rotated, caltech-day-50kw, curtailment-event)")
    s.add_argument("--mode", choices=[m.value for m in Mode])
    s.add_argument("--time-limit", type=float, help="solver budget in seconds")
    s.add_argument("--json", action="store_true", help="print the plan as protobuf JSON")
    s.add_argument("--ocpp", choices=["1.6", "2.0.1", "2.1"],
                   help="print the plan as OCPP SetChargingProfile payloads (JSON list): the "
                   "request's ocpp options if it has chargers, else every connector with this "
                   "version (TxProfiles, plan TxDefaultProfiles, fail-safe profiles)")
    s.add_argument("--rate-unit", choices=["A", "W"], default="A",
                   help="with --ocpp and no ocpp options in the request: the limit unit")
    s.add_argument("--max-periods", type=_positive_int, default=24,
                   help="with --ocpp and no ocpp options in the request: periods per schedule")
    s.set_defaults(func=cmd_solve)

    v = sub.add_parser("serve", help="run the gRPC service")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=50051)
    v.add_argument("--db", default="optimizer.db", help="SQLite file (WAL)")
    v.add_argument("--no-example", action="store_true", help="do not load the example site")
    v.set_defaults(func=cmd_serve)

    # Its options live in optimizer.bridge (``optimizer bridge --help``); parsed there so that
    # the other commands do not import the OCPP and WebSocket stacks.
    sub.add_parser("bridge", add_help=False,
                       help="reference OCPP 2.0.1 / 1.6 bridge to a running service "
                       "(optimizer bridge --help)")
    for name, (_, text) in _DELEGATED.items():
        sub.add_parser(name, add_help=False, help=f"{text} (optimizer {name} --help)")
    sub.add_parser("replay", add_help=False,
                   help="replay real sessions against strategies and write a report "
                   "(optimizer replay --help)")

    e = sub.add_parser("examples", help="write the bundled examples as JSON files")
    e.add_argument("dir", nargs="?", default="examples")
    e.set_defaults(func=cmd_examples)
    return p


#: Commands whose options live in their own module (parsed there, so that the other commands
#: do not import the protocol stacks): name -> (module, help).
_DELEGATED = {
    "ven": ("optimizer.grid.openadr2b", "OpenADR 2.0b VEN: a VTN's events onto a site's node"),
    "ven3": ("optimizer.grid.openadr3", "OpenADR 3 VEN: polls a VTN's programs and events"),
    "oscp": ("optimizer.grid.oscp", "OSCP 2.0 receiver of group capacity forecasts"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in _DELEGATED:
        import importlib

        module = importlib.import_module(_DELEGATED[argv[0]][0])
        return int(module.main(argv[1:]))
    if argv[:1] == ["bridge"]:
        return cmd_bridge(argv[1:])
    if argv[:1] == ["replay"]:
        from .sim.replay import main as replay_main

        return replay_main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
