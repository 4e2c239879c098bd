"""Benchmark: coverage, width and bias of every interval the analysis prints, on simulated grids.

    python bench/bench_calibration.py --quick            # a few settings, few experiments (~1 min)
    python bench/bench_calibration.py                    # DESIGN.md §9 settings (~10 min on 2 cores)
    python bench/bench_calibration.py --before-only ...  # only the old (bench/legacy_bootstrap.py) intervals
    python bench/bench_calibration.py --lost-seeds 0.1,0.3 --experiments 400  # runs lost seeds (~2 min)

Each experiment simulates a grid from a known true CLTM (cltm_sb.analysis.simulate) and runs the
real analysis (cltm_sb.analysis.uncertainty.analyze_uncertainty on the tidy table). "Before" runs
the old code paths on the same kind of grids: bench/legacy_bootstrap.bootstrap_cltm (percentile seed
bootstrap) for the diagnostics and cells, and M ± 1.96·cltm_sb.analysis.matrix.ratio_se (build_cltm's SE).

Judging (DESIGN.md §9): coverage of a 95% interval must be 92-98.5% at 10 seeds and >= 90% at 5
(and at 3, or n/a); a target is met when it lies inside the 95% Monte-Carlo interval of the rate.
Diagnostics: one interval per experiment, Wilson MC interval. Cells: pooled over the off-diagonal
cells of valid unflagged rows, MC interval from the spread of per-experiment rates (cells of one
grid are correlated); an unbounded Fieller interval counts as covering and its share is printed.
A cell with no interval at all is left out of the coverage and counts as not printed; the
cells whose three runs share fewer than two seeds (only with --lost-seeds) are also shown apart. The self-gain interval is pooled over targets like the cells.
With --lost-seeds every run of a simulated grid loses each seed independently with that
probability (simulate.lose_seeds), as failed runs do; the other settings are complete grids.
The truth of a corrected diagnostic is the true matrix's value on the cells the estimator used
(rows of unflagged targets; a grid whose runs lost seeds can also lack a cell of such a row); the
plug-in's bias is against the full true matrix's value.
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
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from multiprocessing import Pool

import numpy as np

from cltm_sb.analysis.simulate import (
    PROTOCOL_PER_CELL,
    PROTOCOL_SHARED,
    NoiseModel,
    grid_to_table,
    lose_seeds,
    make_truth,
    simulate_grid,
    simulate_table,
)
from cltm_sb.analysis.uncertainty import analyze_uncertainty, plug_in_diagnostics

# Options passed to analyze_uncertainty (the defaults unless --min-row-z explores them).
ANALYSIS_OPTIONS: dict = {}
DIAGS = (
    "rfd",
    "asymmetry",
    "row_cosine",
    "intra_family_positive",
    "prop_positive",
    "reciprocity_positive",
)
SHARING_FEW = "cells whose 3 runs share < 2 seeds"


@dataclass(frozen=True)
class Setting:
    truth: str
    n_languages: int
    n_seeds: int
    rho: float = 0.3
    rho_pair: float = 0.5
    z: float = 10.0
    protocol: str = PROTOCOL_SHARED
    experiments: int = 100
    lost: float = 0.0  # probability that a run lost a given seed

    @property
    def label(self) -> str:
        t = "GR-like" if self.truth == "near-agnostic" else "SV-like"
        # Complete grids keep their label: it seeds their experiments (_seed).
        lost = f" lost={self.lost:g}" if self.lost else ""
        return (
            f"{t} L={self.n_languages} n={self.n_seeds} ρ={self.rho:g} ρp={self.rho_pair:g} "
            f"z={self.z:g} {self.protocol}{lost}"
        )

    @property
    def headline(self) -> bool:
        return (
            self.n_seeds in (5, 10)
            and self.rho == 0.3
            and self.rho_pair == 0.5
            and self.z == 10
            and self.protocol == PROTOCOL_SHARED
            and not self.lost
        )

    def noise(self) -> NoiseModel:
        return NoiseModel(rho=self.rho, rho_pair=self.rho_pair, z_self=self.z)


def settings(
    quick: bool, headline_only: bool = False, experiments: int | None = None
) -> list[Setting]:
    """Headline settings (400 experiments) and one-factor variations around them (100)."""
    out = []
    base_n = (5, 10) if quick else (3, 5, 10)
    for truth in ("near-agnostic", "structured"):
        for L in (6, 16):
            for n in base_n:
                head = Setting(truth, L, n)
                count = experiments or (40 if quick else (400 if head.headline else 100))
                out.append(replace(head, experiments=count))
                if headline_only:
                    continue
                if quick:
                    out.append(replace(head, z=3.0, experiments=experiments or 40))
                    continue
                for change in (
                    {"rho": 0.0},
                    {"rho": 0.6},
                    {"rho_pair": 0.0},
                    {"z": 3.0},
                    {"protocol": PROTOCOL_PER_CELL},
                ):
                    out.append(replace(head, experiments=experiments or 100, **change))
    return out


def lost_seed_settings(
    shares: list[float], experiments: int | None = None, languages: tuple[int, ...] = (6, 16)
) -> list[Setting]:
    """Headline noise on grids whose runs lost seeds: both truths, 5 and 10 seeds (200 each)."""
    return [
        Setting(truth, L, n, lost=share, experiments=experiments or 200)
        for truth in ("near-agnostic", "structured")
        for L in languages
        for n in (5, 10)
        for share in shares
    ]


def _seed(setting: Setting, rep: int) -> int:
    return zlib.crc32(f"{setting.label}|{rep}".encode())


def run_after(setting: Setting, reps: range) -> list[dict]:
    """The new analysis on ``reps`` experiments of one setting: one dict of outcomes each."""
    truth = make_truth(setting.truth, setting.n_languages)
    noise = setting.noise()
    true_m = truth.matrix
    true_full = plug_in_diagnostics(true_m, truth.families)
    off = ~np.eye(setting.n_languages, dtype=bool)
    out = []
    for rep in reps:
        grid = simulate_grid(truth, setting.n_seeds, noise, setting.protocol, seed=_seed(setting, rep))
        if setting.lost:
            grid = lose_seeds(grid, setting.lost, seed=_seed(setting, rep))
        table = grid_to_table(grid)
        res = analyze_uncertainty(
            table, locales=truth.locales, families=truth.families, **ANALYSIS_OPTIONS
        )
        p = res.point
        rows = p.valid_rows & ~p.flagged
        # The cells the estimator used: a grid whose runs lost seeds can lack a cell of a used row.
        used = p.entries & rows[:, None]
        true_used = plug_in_diagnostics(np.where(used, true_m, np.nan), truth.families)
        o: dict = {"diag": {}, "cells": {}}
        for name in DIAGS:
            d = res.diagnostics[name]
            o["diag"][name] = {
                "truth_used": true_used[name],
                "truth_full": true_full[name],
                "point": d.point,
                "plugin": d.plugin,
                "lower": d.lower,
                "upper": d.upper,
            }
        for label, mask in (("cells", rows), ("flagged cells", p.flagged)):
            sel = mask[:, None] & off & p.entries
            o["cells"].update(
                _coverage(label, sel, res.cell_lower, res.cell_upper, p.matrix, true_m)
            )
        # Runs that lost seeds: the cells whose three runs share fewer than two seeds, apart.
        sel = rows[:, None] & off & p.entries & (res.cells.n < 2)
        o["cells"].update(
            _coverage(SHARING_FEW, sel, res.cell_lower, res.cell_upper, p.matrix, true_m)
        )
        gain = grid.profiles["self_gain"]
        o["cells"].update(
            _coverage(
                "self-gain", np.isfinite(p.self_gain), res.gain_lower, res.gain_upper,
                p.self_gain, gain,
            )
        )
        # Verdicts: a helps/hurts whose sign is wrong is a false discovery (no true zero here).
        called = np.isin(res.verdicts, ["helps", "hurts"])
        wrong = called & (np.sign(p.matrix) != np.sign(true_m))
        o["verdicts"] = {"called": int(called.sum()), "wrong": int(wrong.sum())}
        out.append(o)
    return out


def _coverage(
    label: str, sel: np.ndarray, lower: np.ndarray, upper: np.ndarray, point: np.ndarray,
    truth: np.ndarray,
) -> dict[str, dict]:
    """One grid's coverage of ``truth`` by the intervals of the selected entries (an infinite
    bound covers; an entry without an interval, NaN, is left out and counts as not printed)."""
    has = sel & ~np.isnan(lower)
    if not has.any():
        return {}
    lo, hi, tv = lower[has], upper[has], truth[has]
    bounded = np.isfinite(lo) & np.isfinite(hi)
    return {
        label: {
            "covered": float(np.mean((lo <= tv) & (tv <= hi))),
            "bounded": float(bounded.sum() / sel.sum()),
            "widths": (hi - lo)[bounded].tolist(),
            "bias": float(np.mean(point[sel] - truth[sel])),
            "n": int(has.sum()),
        }
    }


def run_before(setting: Setting, reps: range, replicates: int) -> list[dict]:
    """The old analysis: legacy_bootstrap.py percentile intervals and build_cltm's ±1.96·SE cells."""
    from legacy_bootstrap import bootstrap_cltm  # bench/: the retired percentile bootstrap

    from cltm_sb.analysis.matrix import build_cltm

    truth = make_truth(setting.truth, setting.n_languages)
    noise = setting.noise()
    true_m = truth.matrix
    true_full = plug_in_diagnostics(true_m, truth.families)
    off = ~np.eye(setting.n_languages, dtype=bool)
    out = []
    for rep in reps:
        table = simulate_table(
            truth, setting.n_seeds, noise, setting.protocol, seed=_seed(setting, rep)
        )
        full = build_cltm(table, locales=truth.locales)
        boot = bootstrap_cltm(
            table,
            locales=truth.locales,
            families=truth.families,
            n_replicates=replicates,
            rng_seed=rep,
            full=full,
        )
        o: dict = {"diag": {}, "cells": {}}
        for name in DIAGS:
            lo, hi = boot.interval(name)
            o["diag"][name] = {
                "truth_used": true_full[name],
                "truth_full": true_full[name],
                "point": boot.point[name],
                "plugin": boot.point[name],
                "lower": lo if np.isfinite(lo) else None,
                "upper": hi if np.isfinite(hi) else None,
            }
        rows = full.gains["valid"].to_numpy(bool) & ~full.gains["flagged"].to_numpy(bool)
        sel = rows[:, None] & off & np.isfinite(full.matrix.to_numpy())
        m, se = full.matrix.to_numpy()[sel], full.se.to_numpy()[sel]
        tv = true_m[sel]
        for label, (lo, hi) in (
            ("cells ±1.96·ratio_se", (m - 1.96 * se, m + 1.96 * se)),
            (
                "cells bootstrap",
                (boot.matrix_lower.to_numpy()[sel], boot.matrix_upper.to_numpy()[sel]),
            ),
        ):
            ok = np.isfinite(lo) & np.isfinite(hi)
            o["cells"][label] = {
                "covered": float(np.mean((lo <= tv) & (tv <= hi))),
                "bounded": float(np.mean(ok)),
                "widths": (hi - lo)[ok].tolist(),
                "bias": float(np.mean(m - tv)),
                "n": int(sel.sum()),
            }
        out.append(o)
    return out


def _job(args: tuple) -> tuple[Setting, str, list[dict]]:
    setting, which, reps, replicates, options = args
    ANALYSIS_OPTIONS.update(options)
    if which == "after":
        return setting, which, run_after(setting, reps)
    return setting, which, run_before(setting, reps, replicates)


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return centre - half, centre + half


def target_met(n_seeds: int, lo: float, hi: float) -> str:
    """Whether the target lies inside the MC interval [lo, hi] of the measured coverage."""
    if not np.isfinite(lo):
        return "n/a"
    if n_seeds >= 10:
        return "yes" if hi >= 0.92 and lo <= 0.985 else "NO"
    return "yes" if hi >= 0.90 else "NO"


def summarize(setting: Setting, which: str, outcomes: list[dict]) -> list[dict]:
    """One row per interval: coverage, MC interval, share printed, median width, biases."""
    rows = []
    E = len(outcomes)
    for name in DIAGS:
        ds = [o["diag"][name] for o in outcomes]
        printed = [d for d in ds if d["lower"] is not None and d["upper"] is not None]
        cov = [d["lower"] <= d["truth_used"] <= d["upper"] for d in printed]
        lo, hi = wilson(sum(cov), len(cov))
        pts = [
            d["point"] - d["truth_used"]
            for d in ds
            if d["point"] is not None and np.isfinite(d["truth_used"])
        ]
        plug = [
            d["plugin"] - d["truth_full"]
            for d in ds
            if d["plugin"] is not None and np.isfinite(d["truth_full"])
        ]
        rows.append(
            {
                "setting": setting.label,
                "which": which,
                "interval": name,
                "experiments": E,
                "printed": len(printed) / E if E else float("nan"),
                "coverage": float(np.mean(cov)) if cov else float("nan"),
                "mc_lo": lo,
                "mc_hi": hi,
                "width": float(np.median([d["upper"] - d["lower"] for d in printed]))
                if printed
                else float("nan"),
                "bias": float(np.mean(pts)) if pts else float("nan"),
                "bias_plugin": float(np.mean(plug)) if plug else float("nan"),
                "truth": float(np.mean([d["truth_used"] for d in ds])),
                "met": target_met(setting.n_seeds, lo, hi) if cov else "n/a",
            }
        )
    labels = sorted({k for o in outcomes for k in o["cells"]})
    for label in labels:
        cs = [o["cells"][label] for o in outcomes if label in o["cells"]]
        rates = np.array([c["covered"] for c in cs])
        mean = float(rates.mean())
        half = (
            1.96 * float(rates.std(ddof=1)) / math.sqrt(len(rates))
            if len(rates) > 1
            else float("nan")
        )
        widths = [w for c in cs for w in c["widths"]]
        rows.append(
            {
                "setting": setting.label,
                "which": which,
                "interval": label,
                "experiments": len(cs),
                "printed": float(np.mean([c["bounded"] for c in cs])),
                "coverage": mean,
                "mc_lo": mean - half,
                "mc_hi": mean + half,
                "width": float(np.median(widths)) if widths else float("nan"),
                "bias": float(np.mean([c["bias"] for c in cs])),
                "bias_plugin": float("nan"),
                "truth": float("nan"),
                "met": target_met(setting.n_seeds, mean - half, mean + half),
            }
        )
    if which == "after":
        called = sum(o["verdicts"]["called"] for o in outcomes)
        wrong = sum(o["verdicts"]["wrong"] for o in outcomes)
        rows.append(
            {
                "setting": setting.label,
                "which": which,
                "interval": "verdicts: wrong-sign share",
                "experiments": E,
                "printed": float("nan"),
                "coverage": wrong / called if called else float("nan"),
                "mc_lo": float("nan"),
                "mc_hi": float("nan"),
                "width": float("nan"),
                "bias": float("nan"),
                "bias_plugin": float("nan"),
                "truth": float("nan"),
                "met": "",
            }
        )
    return rows


def fmt(x: float, pct: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{100 * x:.1f}" if pct else f"{x:+.3f}" if abs(x) < 10 else f"{x:.3g}"


def markdown(rows: list[dict]) -> str:
    head = (
        "| setting | | interval | cov % | MC 95% | met | printed % | median width | bias | bias plug-in |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['which']} | {r['interval']} | {fmt(r['coverage'], True)} | "
            f"{fmt(r['mc_lo'], True)}–{fmt(r['mc_hi'], True)} | {r['met']} | {fmt(r['printed'], True)} | "
            f"{fmt(r['width']).lstrip('+')} | {fmt(r['bias'])} | {fmt(r['bias_plugin'])} |"
        )
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few settings and experiments")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--before-experiments",
        type=int,
        default=None,
        help="experiments per 'before' setting (default 100, quick 20)",
    )
    parser.add_argument("--before-replicates", type=int, default=200)
    parser.add_argument("--no-before", action="store_true")
    parser.add_argument("--before-only", action="store_true")
    parser.add_argument("--out", default=None, help="also write the Markdown table here")
    parser.add_argument("--headline-only", action="store_true", help="only the headline settings")
    parser.add_argument(
        "--experiments", type=int, default=None, help="override experiments per setting"
    )
    parser.add_argument(
        "--lost-seeds",
        default=None,
        metavar="P[,P...]",
        help="instead: grids whose runs each lose every seed with probability P (no 'before')",
    )
    parser.add_argument(
        "--languages",
        default="6,16",
        help="with --lost-seeds: numbers of languages (default 6,16)",
    )
    parser.add_argument(
        "--min-row-z",
        type=float,
        default=None,
        help="explore another threshold of the weakest-row rule (default: the tool's)",
    )
    args = parser.parse_args()

    chunk = 50
    jobs = []
    options = {} if args.min_row_z is None else {"min_row_z": args.min_row_z}
    if args.lost_seeds:
        chosen = lost_seed_settings(
            [float(x) for x in args.lost_seeds.split(",")],
            args.experiments,
            tuple(int(x) for x in args.languages.split(",")),
        )
        args.no_before, args.before_only = True, False
    else:
        chosen = settings(args.quick, args.headline_only, args.experiments)
    if not args.before_only:
        for s in chosen:
            for start in range(0, s.experiments, chunk):
                jobs.append(
                    (s, "after", range(start, min(start + chunk, s.experiments)), 0, options)
                )
    if not args.no_before:
        n_before = args.before_experiments or (20 if args.quick else 100)
        for truth in ("near-agnostic", "structured"):
            for n in (5, 10):
                s = Setting(truth, 6, n, experiments=n_before)
                for start in range(0, n_before, 10):
                    jobs.append(
                        (
                            s,
                            "before",
                            range(start, min(start + 10, n_before)),
                            args.before_replicates,
                            options,
                        )
                    )
    t0 = time.time()
    collected: dict[tuple[Setting, str], list[dict]] = defaultdict(list)
    with Pool(max(1, args.workers)) as pool:
        for setting, which, outcomes in pool.imap_unordered(_job, jobs):
            collected[(setting, which)].extend(outcomes)
    wall = time.time() - t0
    order = sorted(
        collected,
        key=lambda k: (
            k[0].truth,
            k[0].n_languages,
            -k[0].headline,
            k[0].n_seeds,
            k[0].label,
            k[1] != "before",
        ),
    )
    rows = [r for key in order for r in summarize(key[0], key[1], collected[key])]
    text = markdown(rows)
    header = (
        f"machine: {platform.node()} ({platform.processor() or platform.machine()}, {args.workers} "
        f"worker(s)); date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; python {sys.version.split()[0]}\n"
        f"command: python bench/bench_calibration.py {' '.join(sys.argv[1:])}\n"
        f"wall time: {wall:.0f} s; before: bootstrap {args.before_replicates} replicates\n"
    )
    print(header)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(header + "\n" + text + "\n")
            fh.write("\n<!-- settings: " + "; ".join(str(asdict(k[0])) for k in order) + " -->\n")


if __name__ == "__main__":
    main()
