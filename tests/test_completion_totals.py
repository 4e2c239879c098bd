"""The difference estimator of a completed CLTM's diagnostics (cltm_sb.analysis.completion_totals)."""

import numpy as np

from cltm_sb.analysis import diagnostics as diag
from cltm_sb.analysis.completion import complete_matrix
from cltm_sb.analysis.completion_totals import difference_estimates, pair_features
from cltm_sb.analysis.designs import random_pairs


def sparse_positive_truth(n: int = 16, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Positive transfer inside families; across them mostly negative with rare large positive
    cells: what a shrunk prediction misses, so a plug-in overstates intra-family+."""
    rng = np.random.default_rng(seed)
    families = [f"F{i // 4}" for i in range(n)]
    fam = np.asarray(families)
    m = np.where(fam[:, None] == fam[None, :], rng.normal(1.0, 0.2, (n, n)), rng.normal(-1.0, 0.3, (n, n)))
    spikes = (rng.random((n, n)) < 0.1) & (fam[:, None] != fam[None, :])
    m = np.where(spikes, rng.uniform(1.5, 3.0, (n, n)), m)
    np.fill_diagonal(m, 1.0)
    return m, families


def test_pair_features_count_both_cells_and_debias_squares():
    a, b = np.array([2.0, -1.0, np.nan]), np.array([0.5, -2.0, 3.0])
    features = pair_features(a, b, np.array([0.1, 0.1, 0.1]), np.array([0.0, 0.0, 0.0]))
    assert np.allclose(features[0], [(1 - 0.01) + 0.25, 2 * (2.25 - 0.01), (4 - 0.01) + 0.25, 2, 1, 2.5])
    assert np.allclose(features[1][3:], [0, 0, 0])
    assert np.allclose(features[2], [4.0, 0.0, 9.0, 1, 0, 3.0])  # one cell only: no mirror terms


def test_difference_estimator_is_nearly_unbiased_where_the_plug_in_is_not():
    truth, families = sparse_positive_truth()
    codes = [f"q{i:02d}" for i in range(len(families))]
    true_value = diag.intra_family_positive(truth, families)
    true_prop = diag.prop_positive(truth)
    estimates, plug_ins, props = [], [], []
    for design in range(30):
        pairs = random_pairs(codes, 0.4, seed=design)
        index = {c: i for i, c in enumerate(codes)}
        mask = np.eye(len(codes), dtype=bool)
        for a, b in pairs:
            mask[index[a], index[b]] = mask[index[b], index[a]] = True
        completion = complete_matrix(np.where(mask, truth, np.nan), families=families, locales=codes, seed=design)
        values = difference_estimates(completion, families)
        estimates.append(values["intra_family_positive"])
        props.append(values["prop_positive"])
        plug_ins.append(diag.intra_family_positive(completion.matrix, families))
    # Unbiased over random designs whatever the model; the plug-in on shrunk predictions is not.
    assert abs(np.mean(estimates) - true_value) < 0.03
    assert abs(np.mean(plug_ins) - true_value) > 2 * abs(np.mean(estimates) - true_value)
    assert abs(np.mean(props) - true_prop) < 0.02


def test_intra_family_needs_families():
    truth, families = sparse_positive_truth(8)
    mask = np.ones_like(truth, dtype=bool)
    mask[0, 1] = mask[1, 0] = False
    completion = complete_matrix(np.where(mask, truth, np.nan), families=families)
    assert np.isnan(difference_estimates(completion, None)["intra_family_positive"])
    assert np.isfinite(difference_estimates(completion, families)["rfd"])


def test_asymmetry_point_is_the_difference_estimate_which_keeps_the_unmeasured_pairs_asymmetry():
    from cltm_sb.analysis.completion import completed_diagnostics

    truth, families = sparse_positive_truth()
    rng = np.random.default_rng(7)
    # An asymmetric part no other cell predicts: the model's predictions of an unmeasured pair lose
    # it, so the plug-in on the completed matrix understates the asymmetry.
    skew = rng.normal(0.0, 0.6, truth.shape)
    truth = truth + skew - skew.T
    np.fill_diagonal(truth, 1.0)
    codes = [f"q{i:02d}" for i in range(len(families))]
    index = {c: i for i, c in enumerate(codes)}
    true_value = diag.relative_asymmetry(truth)
    estimates, plug_ins = [], []
    for design in range(20):
        mask = np.eye(len(codes), dtype=bool)
        for a, b in random_pairs(codes, 0.4, seed=design):
            mask[index[a], index[b]] = mask[index[b], index[a]] = True
        completion = complete_matrix(np.where(mask, truth, np.nan), families=families, locales=codes, seed=design)
        entry = completed_diagnostics(completion, families, n_draws=20, seed=design)["asymmetry"]
        assert entry["method"].startswith("completion: difference estimator")
        assert entry["point"] == difference_estimates(completion, families)["asymmetry"]
        estimates.append(entry["point"])
        plug_ins.append(diag.relative_asymmetry(completion.matrix))
    assert abs(np.mean(estimates) - true_value) < 0.1 * true_value
    assert abs(np.mean(plug_ins) - true_value) > 2 * abs(np.mean(estimates) - true_value)
