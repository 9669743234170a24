"""Markdown + PNG report of a replay: what an engineer reads before trusting a strategy.

Plots (matplotlib, Agg): site load against its limits and events over the busiest day, delivered
vs requested per session, solve-time histogram. One section per transformer rating.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .data import CALTECH_TZ
from .metrics import Config, DayResult, Score, exact_loads, table


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_load(path: Path, results: dict[str, list[DayResult]], cfg: Config, day: int) -> None:
    """Worst transformer phase current (exact magnitude) vs its limit over one day."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    lim_drawn = False
    for name, rs in results.items():
        if day >= len(rs):
            continue
        r = rs[day]
        loads, _ = exact_loads(r, cfg)
        ph = [(m, lim) for n, m, lim in loads if n.startswith(cfg.site.nodes[0].id + " L")]
        worst = np.max([m for m, _ in ph], axis=0)
        t = [datetime.fromtimestamp(x, UTC).astimezone(CALTECH_TZ) for x in r.times]
        ax.step(t[:-1], worst, where="post", label=name)
        if not lim_drawn:
            ax.step(t[:-1], np.min([lim for _, lim in ph], axis=0), where="post", color="k",
                    ls="--", label="phase limit")
            lim_drawn = True
    for e in cfg.events:
        ax.axvspan(e.start.astimezone(CALTECH_TZ), e.end.astimezone(CALTECH_TZ), color="red",
                   alpha=0.12, label=f"event {e.limit_kw:g} kW")
    ax.set_ylabel("highest transformer phase current (A)")
    ax.set_xlabel("local time (UTC-8)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_sessions(path: Path, results: dict[str, list[DayResult]]) -> None:
    """Delivered vs requested energy per session (all replayed days)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 6))
    top = 1.0
    for name, rs in results.items():
        req = np.concatenate([[s.energy_requested_kwh for s in r.sessions] for r in rs])
        got = np.concatenate([r.delivered_kwh for r in rs])
        ax.scatter(req, got, s=8, alpha=0.5, label=name)
        top = max(top, float(req.max(initial=0)))
    ax.plot([0, top], [0, top], "k--", lw=1, label="delivered = requested")
    ax.set_xlabel("requested kWh")
    ax.set_ylabel("delivered kWh")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_solve(path: Path, scores: dict[str, Score]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    data = {n: np.array(s.solve_s) * 1e3 for n, s in scores.items() if s.solve_s}
    lo = max(1e-3, min(float(v.min()) for v in data.values()))
    hi = max(float(v.max()) for v in data.values())
    bins = np.logspace(np.log10(lo), np.log10(hi * 1.01), 40)
    for n, v in data.items():
        ax.hist(v, bins=bins, alpha=0.5, label=n)
    ax.set_xscale("log")
    ax.set_xlabel("time per plan (ms): compile + solve + check")
    ax.set_ylabel("plans")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(out: Path, runs: list[tuple[float, Config, dict[str, Score],
                                             dict[str, list[DayResult]], list[float]]],
                 meta: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    md = ["# Replay report", "",
          f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
          f"`python -m optimizer.sim.replay {' '.join(meta['argv'])}`.", "",
          f"Start {meta['start']}, {meta['days']} day(s)"
          + (f"; lp/auto on {meta['lp_days']} day(s) (time limit {meta['lp_time_limit_s']} s "
             "per plan)" if meta.get("lp_days") else "")
          + f". Slot {meta['slot_minutes']} min, taper above 80 %: {meta['taper']}, "
          f"time-of-use tariff: {meta['tariff']}, events: {meta['events'] or 'none'}.", "",
          (f"Days ran in {meta['workers']} worker processes (`--workers`), so solve times are "
           "per process with the others busy too. " if meta.get("workers", 1) > 1 else "")
          + "Every strategy is re-run at each arrival, departure and slot boundary with only what "
          "is known then; cars draw min(allowed, own max, taper). Violations are counted on the "
          "*applied* currents with exact phasor magnitudes, per (node, phase/phasor limit) and "
          "step. The offline optimum is one outer-polygon LP per day with perfect knowledge and "
          "no taper: an upper bound, which uncontrolled charging can exceed only by breaking "
          "limits.", ""]
    for kw, cfg, scores, results, _optimum in runs:
        tag = f"{kw:g}kw"
        common = min(len(rs) for rs in results.values())  # days every strategy replayed
        busiest = int(np.argmax([len(r.sessions) for r in next(iter(results.values()))[:common]]))
        plot_load(out / f"load-{tag}.png", results, cfg, busiest)
        plot_sessions(out / f"sessions-{tag}.png", results)
        plot_solve(out / f"solve-{tag}.png", scores)
        day = next(iter(results.values()))[busiest].day.astimezone(CALTECH_TZ)
        md += [f"## Transformer {kw:g} kW", "", table(scores), "",
               f"Site load on the busiest replayed day ({day:%Y-%m-%d}):", "",
               f"![load](load-{tag}.png)", "", f"![sessions](sessions-{tag}.png) "
               f"![solve times](solve-{tag}.png)", ""]
    path = out / "README.md"
    path.write_text("\n".join(md))
    return path
