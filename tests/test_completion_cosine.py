"""Row cosine of a completed CLTM from its audit pairs: imputed errors with donor and target parts (issue 19)."""

import numpy as np
import pytest

from cltm_sb.analysis.completion import MEASURED, PREDICTED, UNDEFINED, Completion, ModelConfig
from cltm_sb.analysis.completion_cosine import audit_row_cosine, error_effects
from cltm_sb.analysis.diagnostics import row_cosine


def test_error_effects_recover_planted_donor_and_target_parts():
    rng = np.random.default_rng(0)
    n = 40
    donor, target = rng.normal(0, 0.5, n), rng.normal(0, 0.3, n)
    residuals = donor[None, :] + target[:, None] + rng.normal(0, 0.2, (n, n))
    residuals[rng.random((n, n)) < 0.5] = np.nan
    fit = error_effects(residuals)
    assert np.corrcoef(fit.donor, donor)[0, 1] > 0.95 and np.corrcoef(fit.target, target)[0, 1] > 0.9
    # shrunk, not inflated, and the rest is what is left
    assert np.std(fit.donor) <= np.std(donor) and np.nanstd(fit.rest) == pytest.approx(0.2, abs=0.05)
    assert (fit.donor_var > 0).all() and (fit.target_var > 0).all()
    # no structure: effects shrink to about nothing
    flat = error_effects(np.where(np.isnan(residuals), np.nan, rng.normal(0, 1.0, (n, n))))
    assert np.std(flat.donor) < 0.15 and np.std(flat.target) < 0.15


def _completion(truth: np.ndarray, predicted_pairs: list, audit_pairs: list, prediction: np.ndarray,
                held_out: np.ndarray, replicates: np.ndarray) -> Completion:
    """A completion whose predictions and held-out predictions are given (the model aside)."""
    n = truth.shape[0]
    sources = np.full((n, n), MEASURED, dtype=object)
    for a, b in predicted_pairs:
        sources[a, b] = sources[b, a] = PREDICTED
    matrix = np.where(sources == PREDICTED, prediction, truth)
    scale = np.ones(n)
    audit = np.zeros((n, n), dtype=bool)
    for a, b in audit_pairs:
        audit[a, b] = audit[b, a] = True
    errors = np.where(sources == MEASURED, (held_out - matrix) / scale[:, None], np.nan)
    np.fill_diagonal(errors, np.nan)
    return Completion(
        locales=[f"q{i:02d}" for i in range(n)], matrix=matrix, lower=matrix, upper=matrix, sources=sources,
        predictive_sd=np.full((n, n), np.nan), config=ModelConfig("none"), quantile=1.0,
        standardised_errors=errors[np.isfinite(errors)], scale=scale, error_matrix=errors, audit=audit,
        seed_replicates=replicates,
    )


def test_imputed_donor_parts_recover_the_row_cosine_that_scattered_errors_lose():
    """Predictions that under-rate some donors in every row (the errors' donor part) and an audit
    that sees them: the imputation puts each donor's part back in its whole column."""
    rng = np.random.default_rng(1)
    n = 30
    base = rng.normal(0, 1, (n, n))
    donor_part = rng.normal(0, 1.0, n)
    truth = base + donor_part[None, :]
    np.fill_diagonal(truth, 1.0)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    order = rng.permutation(len(pairs))
    predicted = [pairs[i] for i in order[: len(pairs) // 2]]
    audit = [pairs[i] for i in order[len(pairs) // 2:]]
    # the model sees no donor part: its predictions and held-out predictions lack it, plus noise
    miss = truth - donor_part[None, :] + rng.normal(0, 0.3, (n, n))
    completion = _completion(truth, predicted, audit, miss, miss, np.repeat(truth[None], 3, axis=0))
    assert abs(row_cosine(completion.matrix) - row_cosine(truth)) > 0.2
    point, lower, upper = audit_row_cosine(completion, completion.audit, completion.seed_replicates, seed=1)
    true_value = row_cosine(truth)
    assert abs(point - true_value) < 0.25 * abs(row_cosine(completion.matrix) - true_value)
    assert lower < point < upper


def _exact_completion(seed: int, n: int = 20) -> tuple[np.ndarray, Completion]:
    """A random truth, every other pair predicted exactly and the rest audited, noise-free seeds."""
    truth = np.random.default_rng(seed).normal(0, 1, (n, n))
    np.fill_diagonal(truth, 1.0)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    return truth, _completion(truth, pairs[::2], pairs[1::2], truth, truth, np.repeat(truth[None], 4, axis=0))


def test_exact_predictions_and_no_noise_give_the_completed_matrix_row_cosine():
    truth, completion = _exact_completion(2)
    point, lower, upper = audit_row_cosine(completion, completion.audit, completion.seed_replicates)
    assert point == pytest.approx(row_cosine(truth), abs=1e-5)
    assert upper - lower < 1e-3  # only the variance floor of an effect estimated as absent


def test_row_cosine_needs_enough_audit_pairs_and_seed_replicates():
    truth = np.eye(12) + 0.1
    pairs = [(a, b) for a in range(12) for b in range(a + 1, 12)]
    completion = _completion(truth, pairs[9:], pairs[:9], truth, truth, np.repeat(truth[None], 3, axis=0))
    with pytest.raises(ValueError, match="9 measured audit pairs; row cosine's interval needs at least 10"):
        audit_row_cosine(completion, completion.audit, completion.seed_replicates)
    completion = _completion(truth, pairs[20:], pairs[:20], truth, truth, np.repeat(truth[None], 2, axis=0))
    with pytest.raises(ValueError, match="3 seeds or more"):
        audit_row_cosine(completion, completion.audit, completion.seed_replicates)


def test_supplied_standard_errors_remove_the_noise_bias_of_the_measured_cells():
    """A partial matrix has no seeds: noise drawn from its SE corrects the downward pull that the
    measured cells' noise has on row cosine (and widens the interval)."""
    rng = np.random.default_rng(3)
    n, se = 30, 0.6
    truth = rng.normal(0, 1, (n, n)) + rng.normal(0, 1.0, n)[None, :]
    np.fill_diagonal(truth, 1.0)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    order = rng.permutation(len(pairs))
    predicted = [pairs[i] for i in order[: len(pairs) // 3]]
    audit = [pairs[i] for i in order[len(pairs) // 3:]]
    observed = truth + rng.normal(0, se, (n, n))
    np.fill_diagonal(observed, 1.0)
    completion = _completion(observed, predicted, audit, truth, truth, None)
    completion.measured_se = np.full((n, n), se)
    point, lower, upper = audit_row_cosine(completion, completion.audit, None,
                                           measured_se=completion.measured_se, seed=3)
    uncorrected = row_cosine(completion.matrix)
    assert uncorrected < row_cosine(truth) - 0.02  # the noise pulls it down ...
    assert abs(point - row_cosine(truth)) < 0.5 * abs(uncorrected - row_cosine(truth))  # ... the draws undo it
    assert lower < point < upper


def test_undefined_rows_stay_out_of_the_imputation_and_the_cosine():
    _, completion = _exact_completion(4)
    # target 3's self-gain is not positive: its row is undefined (never predicted), its column is not
    completion.matrix[3, :] = np.nan
    completion.sources[3, :] = UNDEFINED
    completion.error_matrix[3, :] = np.nan
    point, lower, upper = audit_row_cosine(completion, completion.audit, completion.seed_replicates)
    assert point == pytest.approx(row_cosine(completion.matrix), abs=1e-5)
    assert np.isfinite([lower, upper]).all()
