"""``optimizer`` command line: solve a problem file, serve the gRPC API, write the examples."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .model import Mode


def _load_request(path: str | None, example: str | None):  # type: ignore[no-untyped-def]
    from .api.convert import read_request_json
    from .examples import DEFAULT, example_json

    if path is not None:
        return read_request_json(Path(path).read_text())
    return read_request_json(example_json(example or DEFAULT))


def cmd_solve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from google.protobuf import json_format

    from .api.convert import plan_to_proto, problem_from_request
    from .solve import PlanCheckError, solve
    from .validate import ValidationError

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
    try:
        plan = solve(problem)
        status = 0
    except PlanCheckError as exc:  # a bug: show the evidence, never a silently clamped plan
        plan, status = exc.plan, 3
    if args.json:
        msg = plan_to_proto(plan, problem.site.id)
        print(json_format.MessageToJson(msg, indent=2, always_print_fields_with_no_presence=True))
    else:
        print(render_table(problem, plan))
    return status


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
    from .server import serve

    serve(host=args.host, port=args.port, db_path=args.db, example_site=not args.no_example)
    return 0


def cmd_examples(args: argparse.Namespace) -> int:
    from .examples import main

    return main([args.dir])


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
    s.set_defaults(func=cmd_solve)

    v = sub.add_parser("serve", help="run the gRPC service")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=50051)
    v.add_argument("--db", default="optimizer.db", help="SQLite file (WAL)")
    v.add_argument("--no-example", action="store_true", help="do not load the example site")
    v.set_defaults(func=cmd_serve)

    e = sub.add_parser("examples", help="write the bundled examples as JSON files")
    e.add_argument("dir", nargs="?", default="examples")
    e.set_defaults(func=cmd_examples)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
