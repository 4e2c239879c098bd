"""Benchmark (Honest statistics II): formal tests, best-donor sets, two-grid comparison, interval rule.

    python bench/bench_statistics_ii.py --quick     # few experiments (~1 min)
    python bench/bench_statistics_ii.py             # DESIGN.md §9 budget (~15 min on 2 cores)
    python bench/bench_statistics_ii.py --lost-seeds 0.3 --experiments 400  # comparison, lost seeds

Every experiment simulates grids from a known truth (cltm_sb.analysis.simulate) and runs the real
analysis (cltm_sb.analysis.uncertainty, cltm_sb.analysis.compare, cltm_sb.analysis.interval).

- Formal tests: false-positive rate at level 5% under each test's null (simulate.null_truth:
  M = J for agnostic; the symmetrised truth; the truth with each donor column replaced by its
  mean), target at most 6%; power against the truths themselves and against the half-way
  truths null + (truth − null)/2.
- Best-donor set: among valid unflagged simulated targets, the share whose true best donor is
  in_best_set (target at least 90%); the mean set size and the mean p_best of the true best.
- Comparison: two independent grids from two different truths of one kind (seeds 0 and 1 of
  the generator); coverage of the true difference of each diagnostic (on the rows each grid's
  estimator used) and of each compared cell (an unbounded cell interval counts as covering; its
  share is printed), target 92-98.5% at 10 seeds and at least 90% at 5; and the false-positive
  rate of the cells' Welch test at level 5% between two independent grids of the same truth
  (every true difference 0; pooled over the cells with a p-value), target at most 6%. With
  --lost-seeds P (comparison only) every run of each grid loses each seed with probability P
  (simulate.lose_seeds) on the headline settings (bench_calibration.lost_seed_settings).
- Interval rule: learning curves with no true gain (or a true relative gain equal to the
  required one), seed effect shared by the N and 2N runs of a seed (share ρ); the share of
  languages that qualify (nominal Φ(−2) = 2.3%, target at most 3.3%), old rule (unpaired SE,
  z >= 2) beside the new (paired t).

Judging (DESIGN.md §9): headline settings (L = 6, 16 × 5, 10 seeds × both truths at ρ = 0.3,
ρ_p = 0.5, z = 10, shared pair runs) get 400 experiments, the one-factor variations 100; a target
is met when it lies inside the 95% Monte-Carlo interval of the measured rate (Wilson for one
outcome per experiment; per-experiment rates ± 1.96 SE where an experiment gives several).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timezone
from multiprocessing import Pool

import numpy as np
import pandas as pd
from bench_calibration import Setting, lost_seed_settings, wilson
from scipy import stats

from cltm_sb.analysis import diagnostics as diag
from cltm_sb.analysis.compare import compare_uncertainty
from cltm_sb.analysis.interval import gain_table
from cltm_sb.analysis.simulate import (
    PROTOCOL_PER_CELL,
    Truth,
    lose_seeds,
    make_truth,
    null_truth,
    simulate_grid,
)
from cltm_sb.analysis.uncertainty import (
    SeedArrays,
    analyze_arrays,
    donor_ranks,
    formal_tests,
    point_estimate,
)

TESTS = ("agnostic", "symmetric", "equal_profiles")
COMPARED = ("rfd", "asymmetry", "row_cosine", "intra_family_positive")


def settings(quick: bool) -> list[Setting]:
    """Headline settings (400 experiments) and one-factor variations around them (100)."""
    out = []
    for truth in ("near-agnostic", "structured"):
        for L in (6, 16):
            for n in (5, 10):
                head = Setting(truth, L, n, experiments=40 if quick else 400)
                out.append(head)
                changes = (
                    [{"z": 3.0}]
                    if quick
                    else [
                        {"rho": 0.0},
                        {"rho": 0.6},
                        {"rho_pair": 0.0},
                        {"z": 3.0},
                        {"protocol": PROTOCOL_PER_CELL},
                    ]
                )
                for change in changes:
                    out.append(replace(head, experiments=20 if quick else 100, **change))
    return out


def _seed(label: str, rep: int) -> int:
    return zlib.crc32(f"{label}|{rep}".encode())


def _arrays(truth: Truth, setting: Setting, seed: int) -> SeedArrays:
    grid = simulate_grid(truth, setting.n_seeds, setting.noise(), setting.protocol, seed=seed)
    if setting.lost:
        grid = lose_seeds(grid, setting.lost, seed=seed)
    return SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)


def _halfway(truth: Truth, hypothesis: str) -> Truth:
    null = null_truth(truth, hypothesis)
    m = null.matrix + 0.5 * (truth.matrix - null.matrix)
    return Truth(truth.locales, truth.families, m, f"{truth.name} half-way ({hypothesis})")


def run_tests(setting: Setting, reps: range) -> list[dict]:
    """p-values of each test under its null (false positives) and under alternatives (power)."""
    base = make_truth(setting.truth, setting.n_languages)
    out = []
    for rep in reps:
        o: dict = {"null": {}, "power": {}, "power_half": {}}
        for h in TESTS:
            # agnostic's null is J whatever the truth: run it on the structured rows only once.
            if h == "agnostic" and setting.truth != "structured":
                continue
            truth = null_truth(base, h)
            arrays = _arrays(truth, setting, _seed(f"null {h} {setting.label}", rep))
            o["null"][h] = formal_tests(arrays, point_estimate(arrays))[h].p_value
        arrays = _arrays(base, setting, _seed(f"alt {setting.label}", rep))
        for h, t in formal_tests(arrays, point_estimate(arrays)).items():
            o["power"][h] = t.p_value
        for h in TESTS:
            truth = _halfway(base, h)
            arrays = _arrays(truth, setting, _seed(f"half {h} {setting.label}", rep))
            o["power_half"][h] = formal_tests(arrays, point_estimate(arrays))[h].p_value
        out.append(o)
    return out


def run_donors(setting: Setting, reps: range) -> list[dict]:
    """Best-set coverage of the true best donor, per simulated grid."""
    truth = make_truth(setting.truth, setting.n_languages)
    m = truth.matrix.copy()
    np.fill_diagonal(m, -np.inf)
    best = m.argmax(axis=1)
    out = []
    for rep in reps:
        arrays = _arrays(truth, setting, _seed(f"donors {setting.label}", rep))
        point = point_estimate(arrays)
        ranks = donor_ranks(arrays, point)
        rows = point.valid_rows & ~point.flagged
        idx = np.flatnonzero(rows & np.isfinite(ranks.p_best[np.arange(len(best)), best]))
        if idx.size == 0:
            continue
        out.append(
            {
                "covered": float(np.mean(ranks.in_best_set[idx, best[idx]])),
                "size": float(np.mean(ranks.in_best_set[idx].sum(axis=1))),
                "p_true_best": float(np.mean(ranks.p_best[idx, best[idx]])),
                "rank_covered": float(np.mean(ranks.rank_lower[idx, best[idx]] <= 1)),
                "targets": int(idx.size),
            }
        )
    return out


def _used_truth(truth: Truth, rows: np.ndarray) -> dict[str, float]:
    m = np.where(rows[:, None], truth.matrix, np.nan)
    return {
        "rfd": diag.rfd(m),
        "asymmetry": diag.relative_asymmetry(m),
        "row_cosine": diag.row_cosine(m),
        "intra_family_positive": diag.intra_family_positive(m, truth.families),
    }


def run_compare(setting: Setting, reps: range) -> list[dict]:
    """Coverage of the true differences between two independent grids (truths of one kind)."""
    truth_a = make_truth(setting.truth, setting.n_languages, seed=0)
    truth_b = make_truth(setting.truth, setting.n_languages, seed=1)
    true_diff = truth_a.matrix - truth_b.matrix
    out = []
    for rep in reps:
        res = []
        for truth, tag in ((truth_a, "A"), (truth_b, "B")):
            arrays = _arrays(truth, setting, _seed(f"compare {tag} {setting.label}", rep))
            res.append(analyze_arrays(arrays, truth.families, donor_draws=0))
        comparison = compare_uncertainty(res[0], res[1])
        used = [r.point.valid_rows & ~r.point.flagged for r in res]
        ta, tb = _used_truth(truth_a, used[0]), _used_truth(truth_b, used[1])
        o: dict = {"diag": {}}
        for name in COMPARED:
            d = comparison.diagnostics[name]
            truth_value = ta[name] - tb[name]
            o["diag"][name] = (
                None if d.lower is None else bool(d.lower <= truth_value <= d.upper),
                None if d.lower is None else d.upper - d.lower,
            )
        cells = comparison.cells.dropna(subset=["difference"])
        if len(cells):
            loc = {c: i for i, c in enumerate(truth_a.locales)}
            i = cells["target"].map(loc).to_numpy()
            j = cells["donor"].map(loc).to_numpy()
            tv = true_diff[i, j]
            lo = cells["lower"].to_numpy(dtype=float)
            hi = cells["upper"].to_numpy(dtype=float)
            bounded = np.isfinite(lo) & np.isfinite(hi)
            covered = np.where(bounded, (lo <= tv) & (tv <= hi), True)
            o["cells"] = {
                "covered": float(covered.mean()),
                "bounded": float(bounded.mean()),
                "width": float(np.median((hi - lo)[bounded])) if bounded.any() else float("nan"),
            }
        o["null"] = _null_false_positives(truth_a, setting, res[0], rep)
        out.append(o)
    return out


def _null_false_positives(truth: Truth, setting: Setting, res_a, rep: int) -> dict:
    """Share of cells whose Welch p-value is below 5% between ``res_a`` and a second grid of the
    same truth (every true difference is 0)."""
    arrays = _arrays(truth, setting, _seed(f"compare A2 {setting.label}", rep))
    res_b = analyze_arrays(arrays, truth.families, donor_draws=0)
    p = compare_uncertainty(res_a, res_b).cells["p_value"].to_numpy(dtype=float)
    p = p[np.isfinite(p)]
    return {"rate": float(np.mean(p < 0.05)) if p.size else float("nan"), "n": int(p.size)}


# ---- learning-curve interval rule -------------------------------------------------------------


def curve_null(
    n_seeds: int, rho: float, languages: int, relative: float, seed: int
) -> pd.DataFrame:
    """Per-seed P(N), P(2N) of ``languages`` languages with true P(2N) = (1 + relative)·P(N)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.8, languages)
    sigma = rng.uniform(0.005, 0.02, languages)
    u = rng.standard_normal((n_seeds, languages))
    rows = []
    for role, mean in (("n", base), ("2n", base * (1 + relative))):
        e = rng.standard_normal((n_seeds, languages))
        values = mean + sigma * (math.sqrt(rho) * u + math.sqrt(1 - rho) * e)
        for k in range(n_seeds):
            for l_ in range(languages):
                rows.append(
                    (f"x{l_:03d}", 100, role, 100 if role == "n" else 200, k, values[k, l_])
                )
    return pd.DataFrame(rows, columns=["locale", "n", "role", "size", "seed", "value"])


def run_interval(args: tuple) -> dict:
    n_seeds, rho, relative, experiments = args
    qualified_new = qualified_old = total = 0
    per_table = 100
    for rep in range(max(1, experiments // per_table)):
        table = curve_null(n_seeds, rho, per_table, relative, _seed(f"curve {args}", rep))
        gains = gain_table(table, min_relative_gain=relative)
        new = (gains["gain"] > 0) & (gains["z"] >= 2.0)
        # The old rule tested a plain gain: at relative > 0 it is judged against r = 0.
        old = (gains["gain"] > 0) & (gains["z_unpaired"] >= 2.0)
        qualified_new += int(new.sum())
        qualified_old += int(old.sum()) if relative == 0 else 0
        total += len(gains)
    return {
        "n_seeds": n_seeds,
        "rho": rho,
        "relative": relative,
        "total": total,
        "new": qualified_new,
        "old": qualified_old if relative == 0 else None,
    }


# ---- summaries --------------------------------------------------------------------------------


def mean_ci(rates: list[float]) -> tuple[float, float, float]:
    a = np.asarray(rates, dtype=float)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    half = 1.96 * a.std(ddof=1) / math.sqrt(a.size) if a.size > 1 else float("nan")
    return float(a.mean()), float(a.mean() - half), float(a.mean() + half)


def pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def coverage_met(n_seeds: int, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return "n/a"
    if n_seeds >= 10:
        return "yes" if hi >= 0.92 and lo <= 0.985 else "NO"
    return "yes" if hi >= 0.90 else "NO"


def summarize_tests(results: dict[Setting, list[dict]]) -> str:
    lines = [
        "| setting | test | false positives % (level 5%) | MC 95% | met (≤ 6%) | printed % | power vs truth % | power vs half-way % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    worst: dict[str, tuple[float, str]] = {}
    for setting, outcomes in results.items():
        for h in TESTS:
            ps = [o["null"].get(h, "skip") for o in outcomes]
            if all(p == "skip" for p in ps):
                continue
            got = [p for p in ps if p is not None and p != "skip"]
            k = sum(p < 0.05 for p in got)
            lo, hi = wilson(k, len(got))
            rate = k / len(got) if got else float("nan")
            met = "n/a" if not got else ("yes" if lo <= 0.06 else "NO")
            pw = [o["power"].get(h) for o in outcomes]
            pw = [p for p in pw if p is not None]
            ph = [o["power_half"].get(h) for o in outcomes]
            ph = [p for p in ph if p is not None]
            power = np.mean([p < 0.05 for p in pw]) if pw else float("nan")
            half = np.mean([p < 0.05 for p in ph]) if ph else float("nan")
            lines.append(
                f"| {setting.label} | {h} | {pct(rate)} | {pct(lo)}–{pct(hi)} | {met} | "
                f"{pct(len(got) / len(ps))} | {pct(power)} | {pct(half)} |"
            )
            if got and (h not in worst or rate > worst[h][0]):
                worst[h] = (rate, f"{pct(rate)} ({pct(lo)}–{pct(hi)}; {setting.label})")
    lines.append("")
    lines.append(
        "Highest false-positive rate per test: "
        + "; ".join(f"{h}: {w[1]}" for h, w in worst.items())
    )
    return "\n".join(lines)


def summarize_donors(results: dict[Setting, list[dict]]) -> str:
    lines = [
        "| setting | true best in best set % | MC 95% | met (≥ 90%) | mean set size | mean p_best of the true best | true best's rank interval starts at 1 % |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, outcomes in results.items():
        mean, lo, hi = mean_ci([o["covered"] for o in outcomes])
        met = "n/a" if not np.isfinite(lo) else ("yes" if hi >= 0.90 else "NO")
        lines.append(
            f"| {setting.label} | {pct(mean)} | {pct(lo)}–{pct(hi)} | {met} | "
            f"{np.mean([o['size'] for o in outcomes]):.2f} | {np.mean([o['p_true_best'] for o in outcomes]):.2f} | "
            f"{pct(np.mean([o['rank_covered'] for o in outcomes]))} |"
        )
    return "\n".join(lines)


def summarize_compare(results: dict[Setting, list[dict]]) -> str:
    lines = [
        "| setting | difference of | coverage % | MC 95% | met | printed % | median width |",
        "|---|---|---|---|---|---|---|",
    ]
    null_lines = [
        "| setting | cells' Welch test: false positives % (level 5%) | MC 95% | met (≤ 6%) | cells with a p-value per grid pair |",
        "|---|---|---|---|---|",
    ]
    for setting, outcomes in results.items():
        for name in COMPARED:
            got = [o["diag"][name] for o in outcomes if o["diag"][name][0] is not None]
            k = sum(c for c, _ in got)
            lo, hi = wilson(k, len(got))
            rate = k / len(got) if got else float("nan")
            width = float(np.median([w for _, w in got])) if got else float("nan")
            lines.append(
                f"| {setting.label} | {name} | {pct(rate)} | {pct(lo)}–{pct(hi)} | "
                f"{coverage_met(setting.n_seeds, lo, hi) if got else 'n/a'} | {pct(len(got) / len(outcomes))} | {width:.3f} |"
            )
        cells = [o["cells"] for o in outcomes if "cells" in o]
        mean, lo, hi = mean_ci([c["covered"] for c in cells])
        lines.append(
            f"| {setting.label} | cells | {pct(mean)} | {pct(lo)}–{pct(hi)} | "
            f"{coverage_met(setting.n_seeds, lo, hi)} | {pct(np.mean([c['bounded'] for c in cells]))} | "
            f"{np.nanmedian([c['width'] for c in cells]):.3f} |"
        )
        nulls = [o["null"] for o in outcomes if o["null"]["n"]]
        rate, lo, hi = mean_ci([c["rate"] for c in nulls])
        met = "n/a" if not np.isfinite(lo) else ("yes" if lo <= 0.06 else "NO")
        null_lines.append(
            f"| {setting.label} | {pct(rate)} | {pct(lo)}–{pct(hi)} | {met} | "
            f"{np.mean([c['n'] for c in nulls]):.1f} |"
        )
    return "\n".join(lines + [""] + null_lines)


def summarize_interval(rows: list[dict]) -> str:
    nominal = stats.norm.sf(2.0)
    lines = [
        f"| seeds | ρ | required relative gain (= the truth) | languages | new: qualified % | MC 95% | met (≤ {100 * nominal + 1:.1f}%) | old rule: qualified % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = wilson(r["new"], r["total"])
        met = "yes" if lo <= nominal + 0.01 else "NO"
        old = pct(r["old"] / r["total"]) if r["old"] is not None else "–"
        lines.append(
            f"| {r['n_seeds']} | {r['rho']:g} | {r['relative']:g} | {r['total']} | "
            f"{pct(r['new'] / r['total'])} | {pct(lo)}–{pct(hi)} | {met} | {old} |"
        )
    return "\n".join(lines)


def _ordered(results: dict[Setting, list[dict]]) -> dict[Setting, list[dict]]:
    """Settings by truth, L, seeds, headline first."""

    def key(item: tuple[Setting, list[dict]]) -> tuple:
        s = item[0]
        return (s.truth, s.n_languages, s.n_seeds, not s.headline, s.label)

    return dict(sorted(results.items(), key=key))


def _job(args: tuple) -> tuple[str, Setting, list[dict]]:
    kind, setting, reps = args
    fn = {"tests": run_tests, "donors": run_donors, "compare": run_compare}[kind]
    return kind, setting, fn(setting, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few experiments")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--only", choices=("tests", "donors", "compare", "interval"), action="append"
    )
    parser.add_argument("--out", help="also write the Markdown here")
    parser.add_argument(
        "--lost-seeds",
        help="comma-separated shares: the comparison only, on headline grids whose runs lost seeds",
    )
    parser.add_argument("--experiments", type=int, help="experiments per --lost-seeds setting")
    args = parser.parse_args()
    kinds = args.only or ["tests", "donors", "compare", "interval"]
    if args.lost_seeds:
        kinds = ["compare"]
        shares = [float(x) for x in args.lost_seeds.split(",")]
        chosen = lost_seed_settings(shares, args.experiments)
    else:
        chosen = settings(args.quick)
    t0 = time.time()
    jobs = []
    chunk = 50
    for setting in chosen:
        for kind in kinds:
            if kind == "interval":
                continue
            for start in range(0, setting.experiments, chunk):
                jobs.append((kind, setting, range(start, min(start + chunk, setting.experiments))))
    collected: dict[str, dict[Setting, list[dict]]] = defaultdict(lambda: defaultdict(list))
    interval_jobs = []
    if "interval" in kinds:
        per = 400 if args.quick else 4000
        for n_seeds in (2, 3, 5, 10):
            for rho in (0.0, 0.3, 0.6):
                for relative in (0.0, 0.02):
                    interval_jobs.append((n_seeds, rho, relative, per))
    with Pool(args.workers) as pool:
        for kind, setting, outcomes in pool.imap_unordered(_job, jobs):
            collected[kind][setting].extend(outcomes)
        interval_rows = pool.map(run_interval, interval_jobs)
    wall = time.time() - t0
    parts = [
        f"machine: {platform.node()} ({platform.processor() or platform.machine()}, {args.workers} worker(s)); "
        f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; python {sys.version.split()[0]}",
        f"command: python bench/bench_statistics_ii.py {' '.join(sys.argv[1:])}",
        f"wall time: {wall:.0f} s",
    ]
    if "tests" in collected:
        parts += ["", "### Formal tests", "", summarize_tests(_ordered(collected["tests"]))]
    if "donors" in collected:
        parts += ["", "### Best-donor set", "", summarize_donors(_ordered(collected["donors"]))]
    if "compare" in collected:
        parts += [
            "",
            "### Two-grid comparison",
            "",
            summarize_compare(_ordered(collected["compare"])),
        ]
    if interval_jobs:
        parts += [
            "",
            "### Interval rule (false qualification)",
            "",
            summarize_interval(interval_rows),
        ]
    text = "\n".join(parts)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
