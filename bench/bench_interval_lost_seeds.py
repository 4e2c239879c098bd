"""Benchmark: `cltm interval`'s rule on learning curves whose runs lost seeds (false qualification).

Curves with no true gain (bench_statistics_ii.curve_null: the N and 2N runs of a seed share a seed
effect of share ρ), then every (language, run, seed) value is dropped with probability P. Reports
the share of languages that qualify at z = 2 (nominal Φ(−2) = 2.3%; target ≤ 3.3%, as in
bench/RESULTS.md "Interval rule") among those that get a z, and how many get one.
``--unguarded`` sets interval.MIN_SEEDS_UNSHARED to 0: what the test gives below it.

    python bench/bench_interval_lost_seeds.py [--unguarded]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from bench_calibration import wilson
from bench_statistics_ii import curve_null

from cltm_sb.analysis import interval
from cltm_sb.analysis.interval import gain_table


def false_qualification(n_seeds: int, lost: float, rho: float, tables: int = 20) -> tuple[int, int, int]:
    """(qualified, with a z, languages) over ``tables`` tables of 100 gainless languages."""
    qualified = tested = total = 0
    for rep in range(tables):
        table = curve_null(n_seeds, rho, 100, 0.0, 1000 * rep + n_seeds)
        rng = np.random.default_rng(rep)
        table = table[rng.random(len(table)) >= lost]
        gains = gain_table(table)
        has_z = gains["z"].notna()
        qualified += int(((gains["gain"] > 0) & (gains["z"] >= 2.0))[has_z].sum())
        tested += int(has_z.sum())
        total += len(gains)
    return qualified, tested, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unguarded", action="store_true", help="give a z below MIN_SEEDS_UNSHARED too")
    args = parser.parse_args(argv)
    if args.unguarded:
        interval.MIN_SEEDS_UNSHARED = 0
    print("| seeds | lost | ρ | languages with a z | qualified % | Wilson 95% | met (≤ 3.3%) |")
    print("|---|---|---|---|---|---|---|")
    for n_seeds in (3, 5, 10):
        for lost in (0.1, 0.3):
            for rho in (0.0, 0.3, 0.6):
                k, n, total = false_qualification(n_seeds, lost, rho)
                lo, hi = wilson(k, n) if n else (float("nan"), float("nan"))
                rate = f"{100 * k / n:.1f}" if n else "n/a"
                met = "n/a" if not n else ("yes" if lo <= 0.033 else "NO")
                print(f"| {n_seeds} | {lost} | {rho} | {n} of {total} | {rate} | {100 * lo:.1f}–{100 * hi:.1f} | {met} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
