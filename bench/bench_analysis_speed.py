"""Benchmark: time of the array-based uncertainty core on a 44-language, 10-seed grid.

    python bench/bench_analysis_speed.py [--languages 44] [--seeds 10] [--resamples 1000]

Simulates the grid as run records (shared pair runs: 10 × (44 + 44 + 946) = 10,340 records),
turns them into the tidy table with the real loader function, then times:
- analyze_uncertainty: every number the tool prints (cells, q-values, verdicts, corrected
  diagnostics with intervals; the jackknife needs one replicate per seed);
- a 1,000-resample seed bootstrap of the matrix and the diagnostics through the same weight-matrix
  path (cltm_sb.analysis.uncertainty.bootstrap_weights + weighted_matrices + stack_*), to show
  the capacity the issue asks for even though the calibrated intervals do not need it;
- for comparison, one replicate of the old bootstrap path (bench/legacy_bootstrap.py: build_cltm + diagnose on a
  resampled table), times the resamples;
- the commands as a user runs them (a fresh ``python -m cltm_sb.cli`` process each, imports
  included), on the grid written by ``cltm simulate``'s library function into a temporary folder
  and read back through the real record loader: ``cltm report --no-heatmap`` (every number of the
  report: matrix files, intervals.json, donors.csv, report.md/html), ``cltm report`` with its
  heatmap, ``cltm matrix`` and ``cltm matrix --no-heatmap``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from cltm_sb.analysis import uncertainty as unc
    from cltm_sb.analysis.simulate import make_truth, simulate_records
    from cltm_sb.results import records_to_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", type=int, default=44)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--skip-old", action="store_true")
    parser.add_argument("--skip-commands", action="store_true")
    args = parser.parse_args()

    truth = make_truth("structured", args.languages)
    records = simulate_records(truth, args.seeds, seed=0)
    t0 = time.perf_counter()
    table = records_to_table(records)
    t_table = time.perf_counter() - t0

    t0 = time.perf_counter()
    res = unc.analyze_uncertainty(table, locales=truth.locales, families=truth.families)
    donors = res.donors_table()
    intervals = res.to_intervals_json()
    t_core = time.perf_counter() - t0

    t0 = time.perf_counter()
    arrays = unc.seed_arrays(table, truth.locales)
    point = unc.point_estimate(arrays)
    weights = unc.bootstrap_weights(arrays.n_seeds, args.resamples, np.random.default_rng(0))
    boot = unc.weighted_matrices(arrays, weights, point.entries)
    rows = point.valid_rows & ~point.flagged
    stats = [
        unc.stack_rfd_squared(boot),
        unc.stack_asymmetry_squared(boot),
        unc.stack_row_cosine(boot, rows),
        unc.stack_intra_family(boot, truth.families),
    ]
    np.nanquantile(boot, [0.025, 0.975], axis=0)
    t_boot = time.perf_counter() - t0

    t_old = float("nan")
    if not args.skip_old:
        from legacy_bootstrap import resample_seeds  # bench/: the retired bootstrap

        from cltm_sb.analysis.diagnostics import diagnose
        from cltm_sb.analysis.matrix import build_cltm

        t0 = time.perf_counter()
        drawn = np.random.default_rng(0).choice(sorted(table["seed"].unique()), size=args.seeds)
        sample = resample_seeds(table, drawn)
        result = build_cltm(sample, locales=truth.locales)
        diagnose(result.matrix, families=truth.families, se=result.se, gains=result.gains)
        t_old = (time.perf_counter() - t0) * args.resamples

    print(
        f"machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} cores); numpy {np.__version__}"
    )
    print(
        f"grid: {args.languages} languages, {args.seeds} seeds, {len(records)} records, {len(table)} evaluations"
    )
    print(f"records -> table (loader function): {t_table:.2f} s")
    print(
        f"analyze_uncertainty + donors table + intervals.json: {t_core:.2f} s "
        f"({len(donors)} donor rows, {len(intervals['diagnostics'])} diagnostics)"
    )
    print(
        f"seed bootstrap, {args.resamples} resamples, matrix + 4 diagnostics + cell percentiles: {t_boot:.2f} s"
    )
    print(
        f"old path (build_cltm + diagnose per replicate), extrapolated to {args.resamples}: {t_old:.0f} s"
    )
    assert all(np.isfinite(s).any() for s in stats)
    if not args.skip_commands:
        time_commands(truth, args.seeds)


def _timed(command: list[str]) -> float:
    """Wall time of one ``cltm`` command in a fresh process (what a user waits for)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cltm_sb.cli", *command], check=True, capture_output=True)
    return time.perf_counter() - t0


def time_commands(truth, n_seeds: int) -> None:
    """cltm report and cltm matrix on the simulated grid, written to and read from disk."""
    from cltm_sb.analysis.simulate import write_simulated_grid

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        grid = write_simulated_grid(Path(tmp) / "grid", truth, n_seeds, seed=0)
        t_write = time.perf_counter() - t0
        fam = ["--families", str(grid / "families.csv")]
        out = Path(tmp)
        timings = {
            "cltm report --no-heatmap (numbers only)": _timed(
                ["report", str(grid), "-o", str(out / "r1"), "--no-heatmap", *fam]
            ),
            "cltm report (with heatmap)": _timed(
                ["report", str(grid), "-o", str(out / "r2"), *fam]
            ),
            "cltm matrix (with heatmap)": _timed(
                ["matrix", str(grid), "--task", "gr", "-o", str(out / "m1"), *fam]
            ),
            "cltm matrix --no-heatmap": _timed(
                ["matrix", str(grid), "--task", "gr", "-o", str(out / "m2"), "--no-heatmap", *fam]
            ),
        }
    print(f"cltm simulate's writer, {len(list(truth.locales))} languages: {t_write:.2f} s")
    for name, seconds in timings.items():
        print(f"{name}: {seconds:.2f} s (fresh process, imports included)")


if __name__ == "__main__":
    main()
