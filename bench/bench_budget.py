"""Benchmark: a budgeted CLTM (issue 19): measure a fraction of the pairs, complete the rest.

    python bench/bench_budget.py --languages 16 --experiments 20                          # ~3 min, 1 core
    python bench/bench_budget.py --languages 44 --experiments 20 --truths structured      # ~5 min
    python bench/bench_budget.py --languages 44 --experiments 10 --truths near-agnostic   # ~2 min

Each experiment simulates the FULL noisy grid with the simulation behind `cltm simulate`
(cltm_sb.analysis.simulate.simulate_grid: 10 seeds, ρ = 0.3, ρ_p = 0.5, z = 10, shared pair
runs; DESIGN.md §9), keeps the single and self runs and the pair runs of a design, and completes
the matrix with cltm_sb.analysis.completion (what `cltm complete` runs). Designs: ``random``
(uniform pairs), ``design`` (`cltm design`) and ``active`` (`cltm design` at 60% of the budget,
then two rounds of `cltm design --next K` up to the budget).

Truths:
- ``structured``: NOT the completion model's class (its constants were set, before any completion
  was scored on it, so that at L = 44 its Table-1 values are SV-like: prop+ ~12%, intra-family+
  ~47%, row cosine ~0.5, RFD ~2.7). Languages are points in a 3-d latent space,
  grouped by family (families of 1-5); transfer is a nonlinear function of distance (a positive
  bump near 0, a saturating penalty with distance), plus an asymmetric term (a smooth function of
  a latent "resource" difference, damped by distance) and idiosyncratic cell noise; each row is
  divided by a lognormal self-gain (row scales). SV-like: sparse positive transfer inside families.
- ``near-agnostic``: cltm_sb.analysis.simulate.near_agnostic_truth (GR-like: every entry near 1,
  independent deviations: no structure to predict).

Metrics (medians over experiments; issue 19's targets on the structured truth at budget 0.3):
predicted-cell RMSE against the truth over the SD of the true off-diagonal entries (≤ 0.40);
coverage of the 95% predictive intervals of predicted cells (≥ 90%, DESIGN.md §9); each Table-1
diagnostic of the completed matrix against the TRUE matrix's value (relative error ≤ 10%, fractions
absolute ≤ 0.03), with the full grid's plug-in error beside it; the share of targets whose true
best donor is in the predicted top 3 (≥ 80%).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np

from cltm_sb.analysis.completion import (
    PREDICTED,
    best_donors,
    complete_seed_arrays,
    completed_diagnostics,
)
from cltm_sb.analysis.designs import design_pairs, n_units, next_pairs, random_pairs
from cltm_sb.analysis.simulate import (
    NoiseModel,
    Truth,
    language_profiles,
    near_agnostic_truth,
    simulate_grid,
)
from cltm_sb.analysis.uncertainty import SeedArrays, point_estimate

DIAGS = ("rfd", "asymmetry", "row_cosine", "prop_positive", "reciprocity_positive", "intra_family_positive")
FRACTIONS = {"prop_positive", "reciprocity_positive", "intra_family_positive"}
NOISE = NoiseModel(rho=0.3, rho_pair=0.5, z_self=10.0)
N_SEEDS = 10


def latent_truth(n: int, seed: int, self_gain: np.ndarray | None = None) -> Truth:
    """The structured truth (see the module docstring).

    ``self_gain``: the self-gains the simulation will draw (rows are cross-gains divided by
    them, as in a real grid); default: lognormal ones.
    """
    rng = np.random.default_rng([seed, 1919])
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 6)))
    sizes[-1] -= sum(sizes) - n
    families = [f"F{k}" for k, size in enumerate(sizes) for _ in range(size)]
    centres = rng.normal(0.0, 1.2, (len(sizes), 3))
    points = np.concatenate([centres[k] + rng.normal(0.0, 0.45, (size, 3)) for k, size in enumerate(sizes)])
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    transfer = 1.6 * np.exp(-((dist / 1.2) ** 2)) - 1.0 * np.tanh(dist / 2.0)
    resource = rng.normal(0.0, 1.0, n)
    transfer += 0.4 * np.tanh(resource[None, :] - resource[:, None]) * np.exp(-dist / 3.0)
    transfer += rng.normal(0.0, 0.12, (n, n))
    if self_gain is None:
        self_gain = np.exp(rng.normal(np.log(0.1), 0.4, n))
    # Cross-gains of 0.15 x transfer over self-gains of 0.05-0.15: |M| ~ 1-3 x |transfer|.
    m = 0.15 * transfer / np.asarray(self_gain)[:, None]
    np.fill_diagonal(m, 1.0)
    return Truth([f"q{i:02d}" for i in range(n)], families, m, "structured (latent)")


def make_truth(kind: str, n: int, seed: int, sim_seed: int) -> Truth:
    """The truth of one experiment; the structured one is scaled by the simulation's self-gains."""
    if kind != "structured":
        return near_agnostic_truth(n, seed)
    codes = [f"q{i:02d}" for i in range(n)]
    # language_profiles is the simulation's first draw: the same generator gives the same gains.
    profile = language_profiles(Truth(codes, codes, np.eye(n)), N_SEEDS, NOISE, np.random.default_rng(sim_seed))
    return latent_truth(n, seed, profile["self_gain"])


def table1(m: np.ndarray, families: list[str]) -> dict[str, float]:
    from cltm_sb.analysis import diagnostics as diag

    return {
        "rfd": diag.rfd(m),
        "asymmetry": diag.relative_asymmetry(m),
        "row_cosine": diag.row_cosine(m),
        "prop_positive": diag.prop_positive(m),
        "reciprocity_positive": diag.reciprocity_positive(m),
        "intra_family_positive": diag.intra_family_positive(m, families),
    }


def error(name: str, value: float, truth: float) -> float:
    return abs(value - truth) if name in FRACTIONS else abs(value - truth) / abs(truth)


def masked_arrays(arrays: SeedArrays, measured: np.ndarray) -> SeedArrays:
    pair = np.where(measured[None], arrays.pair, np.nan)
    return SeedArrays(arrays.locales, arrays.seeds, arrays.single, arrays.self_, pair)


def pair_mask(codes: list[str], pairs: list[tuple[str, str]]) -> np.ndarray:
    index = {c: i for i, c in enumerate(codes)}
    mask = np.zeros((len(codes), len(codes)), dtype=bool)
    for a, b in pairs:
        mask[index[a], index[b]] = mask[index[b], index[a]] = True
    return mask


def complete_from(arrays: SeedArrays, measured: np.ndarray, families: list[str], seed: int):
    """What `cltm complete` computes from a grid holding only the ``measured`` pairs."""
    return complete_seed_arrays(masked_arrays(arrays, measured), families, seed=seed)


def experiment(kind: str, n: int, budget: float, designs: list[str], exp: int, draws: int) -> dict:
    truth = make_truth(kind, n, exp, 10_000 + exp)
    grid = simulate_grid(truth, N_SEEDS, NOISE, seed=10_000 + exp)
    codes, fams = truth.locales, truth.families
    arrays = SeedArrays(codes, grid.seeds, grid.single, grid.self_, grid.pair)
    full = point_estimate(arrays)
    true_m = truth.matrix
    off = ~np.eye(n, dtype=bool)
    true_diag = table1(true_m, fams)
    full_diag = table1(full.matrix, fams)
    sd_true = float(np.std(true_m[off]))
    true_best = [int(np.argmax(np.where(off[t], true_m[t], -np.inf))) for t in range(n)]
    out: dict = {"full": {d: error(d, full_diag[d], true_diag[d]) for d in DIAGS}}
    for design in designs:
        t0 = time.perf_counter()
        if design == "random":
            pairs = random_pairs(codes, budget, seed=exp)
        elif design == "design":
            pairs = design_pairs(codes, budget, fams, seed=exp)
        else:  # active: 60% by design, then two rounds of --next K
            target = n_units(n, budget)
            pairs = design_pairs(codes, 0.6 * budget, fams, seed=exp)
            for round_ in range(2):
                k = math.ceil((target - len(pairs)) / (2 - round_))
                if k <= 0:
                    break
                comp = complete_from(arrays, pair_mask(codes, pairs), fams, seed=exp)
                pairs = pairs + next_pairs(comp, k)
        comp = complete_from(arrays, pair_mask(codes, pairs), fams, seed=exp)
        predicted = comp.sources == PREDICTED
        err = comp.matrix[predicted] - true_m[predicted]
        covered = (comp.lower[predicted] <= true_m[predicted]) & (true_m[predicted] <= comp.upper[predicted])
        ints = completed_diagnostics(comp, fams, n_draws=draws, seed=exp, intervals=DIAGS)
        cdiag = {d: ints[d]["point"] if ints[d]["point"] is not None else math.nan for d in DIAGS}
        rows = comp.rows
        top3 = best_donors(comp.matrix, rows, 3)
        hit = [true_best[t] in top3[t] for t in range(n) if rows[t]]
        res = {
            "rmse_ratio": float(np.sqrt(np.mean(err**2)) / sd_true),
            "coverage": float(np.mean(covered)),
            "width_ratio": float(np.mean(comp.upper[predicted] - comp.lower[predicted]) / sd_true),
            "top3": float(np.mean(hit)),
            "top1": float(np.mean([true_best[t] == top3[t][0] for t in range(n) if rows[t]])),
            "diag": {d: error(d, cdiag[d], true_diag[d]) for d in DIAGS},
            "config": f"{comp.config.scaling}/e{comp.config.effect_ridge:g}/b{comp.config.block_ridge:g}/r{comp.config.rank}/{comp.config.lam:g}",
            "seconds": time.perf_counter() - t0,
            "n_pairs": len(pairs),
        }
        if draws:
            res["diag_cover"] = {
                d: (ints[d]["lower"] is not None and ints[d]["lower"] <= true_diag[d] <= ints[d]["upper"])
                for d in DIAGS
            }
        out[design] = res
    return out


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", type=int, nargs="+", default=[16])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 0.3, 0.5])
    parser.add_argument("--truths", nargs="+", default=["structured", "near-agnostic"])
    parser.add_argument("--designs", nargs="+", default=["random", "design", "active"])
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--draws", type=int, default=200, help="predictive draws for the diagnostics")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"# bench_budget  {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one process")
    print(f"command: python bench/bench_budget.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"simulation: {N_SEEDS} seeds, rho={NOISE.rho}, rho_p={NOISE.rho_pair}, z={NOISE.z_self}, "
          "shared pair runs; medians over experiments\n")
    header = ("| truth | L | F | design | RMSE/SD | coverage | width/SD | top-3 | top-1 | "
              + " | ".join(DIAGS) + " | s/run | model |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for kind in args.truths:
        for n in args.languages:
            for budget in args.budgets:
                results = [experiment(kind, n, budget, args.designs, e, args.draws)
                           for e in range(args.experiments)]
                full = {d: float(np.median([r["full"][d] for r in results])) for d in DIAGS}
                print(f"| {kind} | {n} | full grid | plug-in | | | | | | "
                      + " | ".join(f"{full[d]:.3f}" for d in DIAGS) + " | | |")
                for design in args.designs:
                    rs = [r[design] for r in results]

                    def med(key: str, rs=rs) -> float:
                        return float(np.median([r[key] for r in rs]))

                    diag_med = {d: float(np.median([r["diag"][d] for r in rs])) for d in DIAGS}
                    models = defaultdict(int)
                    for r in rs:
                        models[r["config"]] += 1
                    top_model = max(models, key=models.get)
                    print(f"| {kind} | {n} | {budget:g} | {design} | {med('rmse_ratio'):.3f} | "
                          f"{med('coverage'):.3f} | {med('width_ratio'):.2f} | {med('top3'):.3f} | "
                          f"{med('top1'):.3f} | " + " | ".join(f"{diag_med[d]:.3f}" for d in DIAGS)
                          + f" | {med('seconds'):.2f} | {top_model} |")
                    if args.draws:  # always: the diagnostics need the draws
                        cover = {d: sum(r["diag_cover"][d] for r in rs) for d in DIAGS}
                        print(f"|  |  |  | ↳ diagnostic 95% interval coverage ({len(rs)} exp.) | | | | | | "
                              + " | ".join(f"{cover[d]}/{len(rs)}" for d in DIAGS) + " | | |")
                sys.stdout.flush()
    print(f"\nexperiments per setting: {args.experiments}; diagnostics columns: relative error "
          "against the TRUE matrix's value (fractions: absolute error); 'full grid' = plug-in of "
          f"the fully measured grid. Wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
