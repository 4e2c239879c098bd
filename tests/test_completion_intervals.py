"""The completion bootstrap's intervals for the diagnostics of a completed CLTM (issue 19).

Calibration itself is proved by bench/bench_budget.py (--interval-method bootstrap); these tests
pin the structure, reproducibility and a quick coverage check that breaks with the method.
"""

import math

import numpy as np
import pytest

from cltm_sb.analysis.completion import complete_matrix, completed_diagnostics
from cltm_sb.analysis.completion_intervals import (
    DIAGNOSTICS,
    FRACTIONS,
    METHOD,
    bootstrap_intervals,
    mirror_noise_correlation,
)

FAMILIES = ["A", "A", "A", "B", "B", "B", "C", "C", "C", "D"]


def additive(n: int, seed: int, spread: float = 0.5) -> np.ndarray:
    """M = 1 + a_t + b_s + family block: the completion model's own class, diagonal 1."""
    rng = np.random.default_rng(seed)
    fam = np.array([FAMILIES[i % len(FAMILIES)] for i in range(n)])
    a, b = rng.normal(0, spread, n), rng.normal(0, spread, n)
    m = 1.0 + a[:, None] + b[None, :] + spread * (fam[:, None] == fam[None, :])
    np.fill_diagonal(m, 1.0)
    return m


def measured_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    keep = [pairs[k] for k in rng.permutation(len(pairs))[: math.ceil(fraction * len(pairs))]]
    mask = np.eye(n, dtype=bool)
    for i, j in keep:
        mask[i, j] = mask[j, i] = True
    return mask


def noisy_completion(truth: np.ndarray, se: float, seed: int, fraction: float = 0.5):
    n = truth.shape[0]
    rng = np.random.default_rng([seed, 7])
    mask = measured_mask(n, fraction, seed)
    observed = np.where(mask, truth + rng.normal(0, se, truth.shape), np.nan)
    np.fill_diagonal(observed, 1.0)
    se_matrix = np.where(mask & ~np.eye(n, dtype=bool), se, np.nan)
    return complete_matrix(observed, families=FAMILIES[:n], se=se_matrix, seed=seed)


def test_intervals_have_the_right_structure_and_are_reproducible():
    comp = noisy_completion(additive(10, 0), 0.1, 0)
    first = bootstrap_intervals(comp, FAMILIES, n_boot=20, seed=3)
    again = bootstrap_intervals(comp, FAMILIES, n_boot=20, seed=3)
    other = bootstrap_intervals(comp, FAMILIES, n_boot=20, seed=4)
    assert first == again
    assert first.intervals != other.intervals
    assert set(first.intervals) == set(DIAGNOSTICS) and first.method == METHOD and first.n_boot == 20
    for name, bounds in first.intervals.items():
        assert bounds is not None, name
        lower, upper = bounds
        assert lower <= upper, name
        if name in FRACTIONS:
            assert 0.0 <= lower <= upper <= 1.0
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_intervals(comp, FAMILIES, n_boot=5)


def test_completed_diagnostics_takes_enabled_intervals_from_the_bootstrap():
    comp = noisy_completion(additive(10, 1), 0.1, 1)
    out = completed_diagnostics(comp, FAMILIES, n_draws=50, seed=2, intervals=["rfd"], n_boot=20)
    assert out["rfd"]["lower"] <= out["rfd"]["point"] <= out["rfd"]["upper"]
    assert "bootstrap" in out["rfd"]["method"] and "20 pseudo-truths" in out["rfd"]["method"]
    # the others are printed without an interval, saying why
    assert out["asymmetry"]["lower"] is None and out["asymmetry"]["reason"]


def test_intervals_cover_the_true_rfd_of_a_noisy_additive_matrix_in_most_replications():
    # The model's own class, measured with known noise: the interval must cover in most
    # replications (the method is NOT calibrated, bench/RESULTS.md: this only catches a broken
    # bootstrap).
    truth = additive(10, 5, spread=0.15)
    true_rfd = float(np.sqrt(np.mean((truth - 1.0) ** 2)))
    covered, widths = [], []
    for rep in range(14):
        comp = noisy_completion(truth, 0.12, 100 + rep)
        result = bootstrap_intervals(comp, FAMILIES, n_boot=20, seed=rep)
        lower, upper = result.intervals["rfd"]
        covered.append(lower <= true_rfd <= upper)
        widths.append(upper - lower)
    assert sum(covered) >= 9, covered
    assert 0.0 < float(np.median(widths)) < 0.5 * true_rfd


def test_mirror_noise_correlation_of_shared_pair_runs():
    from cltm_sb.analysis.simulate import NoiseModel, near_agnostic_truth, simulate_grid
    from cltm_sb.analysis.uncertainty import SeedArrays

    truth = near_agnostic_truth(8, 0)
    grid = simulate_grid(truth, 10, NoiseModel(rho=0.3, rho_pair=0.9, z_self=10.0), seed=1)
    arrays = SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)
    rho = mirror_noise_correlation(arrays)
    assert -1.0 <= rho <= 1.0
    # no pair measured both ways: nothing to estimate
    empty = SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, np.full_like(grid.pair, np.nan))
    assert mirror_noise_correlation(empty) == 0.0
