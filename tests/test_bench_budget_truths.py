"""The benchmark truths of bench/bench_budget.py (issue 19): the phylogenetic-areal one."""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_budget():
    # bench_budget imports its sibling bench_calibration, so bench/ must be importable.
    sys.path.insert(0, str(BENCH))
    try:
        import bench_budget

        yield bench_budget
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("n", [16, 44])
def test_phylo_truth_is_deterministic_finite_with_unit_diagonal(bench_budget, n):
    a, b = bench_budget.phylo_truth(n, 3), bench_budget.phylo_truth(n, 3)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.families == b.families and len(set(a.families)) > 1
    assert np.isfinite(a.matrix).all()
    np.testing.assert_array_equal(np.diag(a.matrix), np.ones(n))
    assert not np.array_equal(a.matrix, bench_budget.phylo_truth(n, 4).matrix)


def test_phylo_truth_transfers_more_within_families(bench_budget):
    for seed in range(5):
        truth = bench_budget.make_truth("phylo", 44, seed, 10_000 + seed)
        assert truth.name == "phylogenetic-areal"
        fam = np.array(truth.families)
        off = ~np.eye(44, dtype=bool)
        same = fam[:, None] == fam[None]
        assert truth.matrix[off & same].mean() > truth.matrix[off & ~same].mean()


def test_phylo_rows_are_divided_by_the_self_gains(bench_budget):
    gains = np.linspace(0.05, 0.15, 16)
    scaled = bench_budget.phylo_truth(16, 2, gains).matrix
    doubled = bench_budget.phylo_truth(16, 2, 2 * gains).matrix
    off = ~np.eye(16, dtype=bool)
    np.testing.assert_allclose(scaled[off], 2 * doubled[off])
