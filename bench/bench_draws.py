"""Benchmark: coverage of the intervals when data draws add variance (cltm prepare/plan --draws).

    python bench/bench_draws.py --quick      # 40 experiments per setting (~1 min, one process)
    python bench/bench_draws.py              # 200 experiments per setting (a few minutes)

Each experiment simulates a grid crossing D data draws with n seeds (cltm_sb.analysis.simulate:
``data_ratio`` = variance of a draw's effect on one evaluation over the seed variance, a share
``rho_data`` of it common to every run evaluated on the same language) and analyses it three ways:

- ``seed+data``: the tool's analysis of the whole grid (analyze_uncertainty on the table with its
  ``draw`` column: draws are the units, intervals.json says ``"variability": "seed+data"``);
- ``seed only, draws pooled``: the same runs analysed as if the D·n (draw, seed) runs were D·n
  independent seeds (what ignoring the draw column would do);
- ``seed only, one draw``: draw 0 alone with its n seeds (today's single-draw grid).

The truth is the true matrix (the mean over draws). Cells: coverage pooled over the off-diagonal
cells of valid unflagged rows, MC interval from the spread of per-experiment rates; an unbounded
Fieller interval counts as covering (its share is printed as "printed"). Diagnostics: one interval
per experiment, Wilson MC interval; the truth is the true matrix's value on the rows used.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from bench_calibration import wilson

from cltm_sb.analysis.simulate import NoiseModel, make_truth, simulate_draws_table
from cltm_sb.analysis.uncertainty import analyze_uncertainty, plug_in_diagnostics

DIAGS = ("rfd", "asymmetry", "row_cosine")
WAYS = ("seed+data", "seed only, draws pooled", "seed only, one draw")


@dataclass(frozen=True)
class Setting:
    truth: str
    n_draws: int
    n_seeds: int
    data_ratio: float
    n_languages: int = 6
    z: float = 10.0
    rho_data: float = 0.5

    @property
    def label(self) -> str:
        t = "GR-like" if self.truth == "near-agnostic" else "SV-like"
        return (
            f"{t} L={self.n_languages} D={self.n_draws} n={self.n_seeds} "
            f"data/seed var={self.data_ratio:g} ρd={self.rho_data:g} z={self.z:g}"
        )


def _tables(setting: Setting, rep: int) -> dict[str, object]:
    truth = make_truth(setting.truth, setting.n_languages)
    noise = NoiseModel(z_self=setting.z, data_ratio=setting.data_ratio, rho_data=setting.rho_data)
    seed = zlib.crc32(f"{setting.label}|{rep}".encode())
    table = simulate_draws_table(truth, setting.n_draws, setting.n_seeds, noise, seed=seed)
    pooled = table.assign(seed=table["seed"] + 1000 * table["draw"]).drop(columns="draw")
    one = table[table["draw"] == 0].drop(columns="draw").reset_index(drop=True)
    return {"seed+data": table, "seed only, draws pooled": pooled, "seed only, one draw": one}


def run(setting: Setting, experiments: int) -> dict[str, list[dict]]:
    truth = make_truth(setting.truth, setting.n_languages)
    off = ~np.eye(setting.n_languages, dtype=bool)
    out: dict[str, list[dict]] = {way: [] for way in WAYS}
    for rep in range(experiments):
        for way, table in _tables(setting, rep).items():
            res = analyze_uncertainty(table, locales=truth.locales, families=truth.families)
            p = res.point
            rows = p.valid_rows & ~p.flagged
            used = plug_in_diagnostics(np.where(rows[:, None], truth.matrix, np.nan), truth.families)
            sel = rows[:, None] & off & p.entries
            lo, hi, tv = res.cell_lower[sel], res.cell_upper[sel], truth.matrix[sel]
            o = {
                "variability": res.to_intervals_json()["variability"],
                "cells": float(np.mean((lo <= tv) & (tv <= hi))) if sel.any() else float("nan"),
                "bounded": float(np.mean(res.cell_bounded[sel])) if sel.any() else float("nan"),
                "widths": (hi - lo)[res.cell_bounded[sel]].tolist(),
                "diag": {},
            }
            for name in DIAGS:
                d = res.diagnostics[name]
                o["diag"][name] = (d.lower, d.upper, used[name])
            out[way].append(o)
    return out


def summarize(setting: Setting, way: str, outcomes: list[dict]) -> list[dict]:
    rows = []
    rates = np.array([o["cells"] for o in outcomes if np.isfinite(o["cells"])])
    half = 1.96 * float(rates.std(ddof=1)) / math.sqrt(len(rates)) if len(rates) > 1 else float("nan")
    widths = [w for o in outcomes for w in o["widths"]]
    rows.append({
        "setting": setting.label, "way": way, "variability": outcomes[0]["variability"],
        "interval": "cells (Fieller)", "n": len(rates), "coverage": float(rates.mean()),
        "mc_lo": float(rates.mean()) - half, "mc_hi": float(rates.mean()) + half,
        "printed": float(np.nanmean([o["bounded"] for o in outcomes])),
        "width": float(np.median(widths)) if widths else float("nan"),
    })  # fmt: skip
    for name in DIAGS:
        printed = [o["diag"][name] for o in outcomes if o["diag"][name][0] is not None]
        cov = [lo <= t <= hi for lo, hi, t in printed]
        lo, hi = wilson(sum(cov), len(cov))
        rows.append({
            "setting": setting.label, "way": way, "variability": outcomes[0]["variability"],
            "interval": name, "n": len(cov),
            "coverage": float(np.mean(cov)) if cov else float("nan"), "mc_lo": lo, "mc_hi": hi,
            "printed": len(printed) / len(outcomes),
            "width": float(np.median([h - lo_ for lo_, h, _ in printed])) if printed else float("nan"),
        })  # fmt: skip
    return rows


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}"


def markdown(rows: list[dict]) -> str:
    head = (
        "| setting | analysis | variability | interval | cov % | MC 95% | printed % | median width |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(
        f"| {r['setting']} | {r['way']} | {r['variability']} | {r['interval']} | {_pct(r['coverage'])} | "
        f"{_pct(r['mc_lo'])}–{_pct(r['mc_hi'])} | {_pct(r['printed'])} | "
        f"{'n/a' if not np.isfinite(r['width']) else format(r['width'], '.3f')} |"
        for r in rows
    )


def settings(quick: bool) -> list[Setting]:
    out = []
    for truth in ("structured", "near-agnostic"):
        for ratio in (1.0, 0.0):
            out.append(Setting(truth, 5, 4, ratio))
        if not quick:
            out.append(Setting(truth, 10, 3, 1.0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 experiments per setting")
    parser.add_argument("--experiments", type=int, default=None, help="experiments per setting")
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    args = parser.parse_args()
    experiments = args.experiments or (40 if args.quick else 200)
    t0 = time.time()
    rows = []
    for setting in settings(args.quick):
        outcomes = run(setting, experiments)
        for way in WAYS:
            rows.extend(summarize(setting, way, outcomes[way]))
    wall = time.time() - t0
    header = (
        f"machine: {platform.node()} ({platform.processor() or platform.machine()}, 1 process); "
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; python {sys.version.split()[0]}\n"
        f"command: python bench/bench_draws.py {' '.join(sys.argv[1:])}\n"
        f"wall time: {wall:.0f} s; {experiments} experiments per setting\n"
    )
    text = markdown(rows)
    print(header)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(header + "\n" + text + "\n")


if __name__ == "__main__":
    main()
