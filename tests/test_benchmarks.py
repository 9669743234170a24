"""CI smoke of the benchmark suite: the documented command, at its smallest sizes, must still run
and report sane figures (no timing asserts: CI machines vary, goals live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_suite_smoke_writes_tables_and_json(tmp_path: Path) -> None:
    md, js = tmp_path / "B.md", tmp_path / "b.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_suite", "--smoke", "--out", str(md),
         "--json", str(js)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(js.read_text())
    by = {b["fullname"].split("::")[-1]: b for b in data["benchmarks"]}
    for step in ("fast", "lp", "compile"):
        for case in ("tree-10x96", "caltech-53x144"):
            assert f"test_{step}[{case}]" in by
    # The fast path never beats the LP energy bound and, on these cases, gets within 2 % of it
    # (measured 99.7 % and 99.5 %); a broken kernel or bound lands outside.
    for case in ("tree-10x96", "caltech-53x144"):
        ex = by[f"test_fast[{case}]"]["extra_info"]
        assert 0.98 <= ex["quality"] <= 1.0 + 1e-6
        assert ex["fast_kwh"] <= ex["lp_bound_kwh"] * (1 + 1e-6)
        assert ex["fast_kwh"] <= ex["requested_kwh"] * (1 + 1e-9)
    lp_case = by["test_lp[caltech-53x144]"]["extra_info"]
    assert lp_case["lp_kwh"] <= by["test_fast[caltech-53x144]"]["extra_info"]["lp_bound_kwh"] * (
        1 + 1e-6
    )
    load = by["test_optimize_50_eight_clients"]["extra_info"]
    assert load["errors"] == 0 and load["calls"] > 0 and load["clients"] == 8
    assert by["test_event_to_plan"]["extra_info"]["connectors"] == 50
    assert by["test_start_to_serving"]["stats"]["rounds"] == 1
    text = md.read_text()
    assert "smoke run" in text and "| fast | caltech-53x144 | 53 | 144 |" in text
    assert "8 concurrent clients" in text and "WatchPlans" in text
