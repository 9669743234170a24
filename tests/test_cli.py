"""The ``optimizer`` command line, run in process (``main``), output captured."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from optimizer.api.convert import problem_from_request, read_request_json
from optimizer.api.smartcharging.v1 import smartcharging_pb2 as pb
from optimizer.cli import main
from optimizer.core.model import Mode
from optimizer.core.solve import solve
from optimizer.ocpp import ProfileKind, RenderedProfile, applied_limit

from .ocpp.common import composite_unsafe, unsafe_instants
from .ocpp.helpers import rule_errors, schema_errors

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rendered(items: list[dict[str, Any]]) -> list[RenderedProfile]:
    return [RenderedProfile(d["connector"], d["station"], d["ocppVersion"], ProfileKind(d["kind"]),
                            d["payload"], d["session"]) for d in items]


def fast_plan(path: Path):  # type: ignore[no-untyped-def]
    """The plan the CLI computes with ``--mode fast`` (deterministic), computed here."""
    problem = problem_from_request(read_request_json(path.read_text()))
    problem = replace(problem, options=replace(problem.options, mode=Mode.FAST))
    return problem, solve(problem)


def test_solve_prints_a_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "solve", str(EXAMPLES / "eu-3phase-rotated.json"), "--mode", "fast")
    assert code == 0 and "checker: 0 violations" in out
    code, out, _ = run(capsys, "solve", str(EXAMPLES / "eu-3phase-rotated.json"), "--mode", "fast",
                       "--json")
    assert code == 0
    plan = json_format.Parse(out, pb.Plan())
    assert plan.profiles and not plan.ocpp_profiles


@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
@pytest.mark.parametrize("unit", ["A", "W"])
@pytest.mark.parametrize("example", ["eu-3phase-rotated", "curtailment-event"])
def test_solve_ocpp_prints_valid_payloads_within_the_plan(
    capsys: pytest.CaptureFixture[str], version: str, unit: str, example: str
) -> None:
    path = EXAMPLES / f"{example}.json"
    code, out, _ = run(capsys, "solve", str(path), "--mode", "fast", "--ocpp", version,
                       "--rate-unit", unit, "--max-periods", "6")
    assert code == 0
    items = json.loads(out)
    problem, plan = fast_plan(path)
    n = len(problem.site.connectors)
    kinds = [d["kind"] for d in items]
    assert kinds.count("failsafe") == n and kinds.count("TxDefaultProfile") == n
    assert kinds.count("TxProfile") >= 1
    for d in items:
        assert d["action"] == "SetChargingProfile" and d["ocppVersion"] == version
        assert schema_errors(d["payload"], version) == []  # the ocpp package's validator
        assert rule_errors(d["payload"], version, 6) == []
    got = rendered(items)
    assert unsafe_instants(problem, plan, got) == []  # never more than the plan, W or A
    if unit == "A":
        assert composite_unsafe(problem, plan, got) == []
        profiles = {p.connector: p for p in plan.profiles}
        for r in got:
            if r.kind is ProfileKind.TX:
                for point in profiles[r.connector].points:
                    limit = applied_limit(r.payload, version, point.start)
                    assert limit is None or limit <= point.current_a + 1e-9


def test_solve_ocpp_uses_the_request_options(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    req = read_request_json((EXAMPLES / "eu-3phase-rotated.json").read_text())
    first = req.sessions[0]
    req.ocpp.chargers.add(connector=first.connector, ocpp_version="1.6", station_id="depot",
                          connector_id=2, max_periods=3)
    req.ocpp.transaction_ids[first.id] = "77"
    req.ocpp.station_max = True
    path = tmp_path / "req.json"
    path.write_text(json_format.MessageToJson(req))
    code, out, _ = run(capsys, "solve", str(path), "--mode", "fast", "--ocpp", "2.0.1")
    assert code == 0
    items = json.loads(out)
    assert sorted(d["kind"] for d in items) == ["StationMaxProfile", "TxProfile"]
    tx = next(d for d in items if d["kind"] == "TxProfile")
    assert tx["ocppVersion"] == "1.6" and tx["session"] == first.id
    assert tx["payload"]["connectorId"] == 2
    assert tx["payload"]["csChargingProfiles"]["transactionId"] == 77
    assert len(tx["payload"]["csChargingProfiles"]["chargingSchedule"]
               ["chargingSchedulePeriod"]) <= 3
    for d in items:
        assert schema_errors(d["payload"], "1.6") == []


def test_solve_ocpp_reports_bad_options(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    req = read_request_json((EXAMPLES / "eu-3phase-rotated.json").read_text())
    req.ocpp.chargers.add(connector="nope", max_periods=0)
    path = tmp_path / "bad.json"
    path.write_text(json_format.MessageToJson(req))
    code, out, err = run(capsys, "solve", str(path), "--ocpp", "2.0.1")
    assert code == 2 and out == ""
    assert "ocpp.chargers[0].connector: unknown connector 'nope'" in err
    assert "ocpp.chargers[0].max_periods" in err


def test_max_periods_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["solve", "--ocpp", "2.0.1", "--max-periods", "0"])
    assert info.value.code == 2
    assert "at least 1" in capsys.readouterr().err


def test_bridge_command_has_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bridge", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--site" in out and "STATION:EVSE=CONNECTOR" in out
    with pytest.raises(SystemExit) as info:
        main(["bridge", "--site", "s", "--map", "nonsense"])
    assert info.value.code == 2
    assert "STATION:EVSE=CONNECTOR" in capsys.readouterr().err
