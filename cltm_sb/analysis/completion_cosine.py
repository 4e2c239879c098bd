"""Row cosine of a completed CLTM, with an interval from its audit pairs (issue 19).

Row cosine (the mean cosine between the rows of two targets) is not a total over pairs: it sums
products of two cells of one donor column in two rows, so the difference estimator of
:mod:`~cltm_sb.analysis.completion_audit` does not apply. What it needs is the joint behaviour of
the prediction errors, and that has structure: bench_budget's truths showed that the predicted
cells' errors share a donor part (a donor the model under- or over-rates moves its whole column)
and a target part, and that scattering the same errors at random over the predicted cells lowers
row cosine by 0.02-0.06 at 44 languages, while keeping those two parts brings it back to within
0.002 of the truth (bench/RESULTS.md).

So the errors are imputed, from the audit pairs alone (a random sample of the pairs the model
predicts; the core pairs' held-out errors are not: their target parts ran against the predicted
cells' ones): the audit pairs' standardised held-out errors (value − held-out prediction, over
the row scale) are split into donor and target random effects and a rest (:func:`error_effects`);
each imputation adds to every predicted cell a draw of its donor's and its target's effect (from
their posterior) and the rest of a random audit pair. Row cosine is averaged over the imputations.
Its variance is the imputations' spread (how the unknown errors could fall) plus a delete-a-group
jackknife over the audit pairs (how well the audit tells their distribution) plus a jackknife over
seeds (the measured values' noise, whose bias it also removes). Student's t with the groups'
degrees of freedom. A partial matrix's completion has no seeds: its noise part comes from normal
draws of the supplied standard errors instead (labelled so: not calibrated by cltm). Whether the
interval is printed is decided by its coverage in simulation (``bench/bench_budget.py --audit``;
:mod:`~cltm_sb.analysis.completion_audit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from cltm_sb.analysis.completion import MEASURED
from cltm_sb.analysis.completion_totals import held_out_predictions, pair_index
from cltm_sb.analysis.uncertainty import stack_row_cosine

Array = np.ndarray

# Imputations of the predicted cells' errors per estimate, and groups of audit pairs for the
# delete-a-group jackknife (its Monte Carlo part grows with groups / imputations).
IMPUTATIONS = 200
JACKKNIFE_GROUPS = 10
# Draws of the measurement noise from supplied standard errors (a partial matrix's completion).
NOISE_DRAWS = 20
# Backfitting rounds of the donor and target effects.
EFFECT_ITERATIONS = 10
# A variance component never shrinks below this (in squared standardised units): an effect
# estimated as absent still gets a little room.
_MIN_VARIANCE = 1e-6


@dataclass(frozen=True)
class ErrorEffects:
    """Donor and target random effects of standardised errors ``r[t, s] ≈ donor[s] + target[t] + rest``.

    Attributes:
        donor, target: posterior means (shrunk towards 0).
        donor_var, target_var: their posterior variances.
        rest: ``r`` minus both effects (NaN where ``r`` is).
    """

    donor: Array
    target: Array
    donor_var: Array
    target_var: Array
    rest: Array


def error_effects(residuals: Array, iterations: int = EFFECT_ITERATIONS) -> ErrorEffects:
    """Fit donor and target random effects to ``residuals`` [t, s] (NaN: none) by backfitting,
    with their variances by EM (each a mean of squared posterior mean plus posterior variance)."""
    r = np.asarray(residuals, dtype=float)
    seen = np.isfinite(r)
    values = np.where(seen, r, 0.0)
    per_donor, per_target = seen.sum(axis=0), seen.sum(axis=1)
    donor, target = np.zeros(r.shape[1]), np.zeros(r.shape[0])
    donor_var, target_var = np.zeros(r.shape[1]), np.zeros(r.shape[0])
    var_donor = var_target = 0.05
    for _ in range(iterations):
        rest = np.where(seen, values - donor[None, :] - target[:, None], 0.0)
        var_rest = max(float((rest**2).sum() / max(seen.sum(), 1)), _MIN_VARIANCE)
        k = var_rest / max(var_donor, _MIN_VARIANCE)
        donor = np.where(seen, values - target[:, None], 0.0).sum(axis=0) / (per_donor + k)
        donor_var = var_rest / (per_donor + k)
        k = var_rest / max(var_target, _MIN_VARIANCE)
        target = np.where(seen, values - donor[None, :], 0.0).sum(axis=1) / (per_target + k)
        target_var = var_rest / (per_target + k)
        var_donor = float(np.mean(donor**2 + donor_var))
        var_target = float(np.mean(target**2 + target_var))
    rest = np.where(seen, values - donor[None, :] - target[:, None], np.nan)
    return ErrorEffects(donor, target, donor_var, target_var, rest)


def audit_row_cosine(
    completion: object,
    audit: Array,
    seed_replicates: Array | None,
    level: float = 0.95,
    seed: int = 0,
    imputations: int = IMPUTATIONS,
    groups: int = JACKKNIFE_GROUPS,
    measured_se: Array | None = None,
) -> tuple[float, float, float]:
    """Row cosine of a completed matrix by imputing its predicted cells' errors from the audit
    pairs, with its interval: ``(point, lower, upper)`` (module docstring).

    Args:
        completion: a :class:`~cltm_sb.analysis.completion.Completion` with held-out errors.
        audit: [t, s] True on the audit pairs' cells.
        seed_replicates: [k, t, s] the measured matrix with each seed left out in turn: the
            measured values' noise by a jackknife.
        level: the interval's level.
        seed: the imputations' random numbers (the same in every replicate).
        imputations, groups: Monte Carlo size and jackknife groups.
        measured_se: [t, s] the measured cells' standard errors, used without ``seed_replicates``:
            the noise then comes from :data:`NOISE_DRAWS` normal draws of it (bias: their mean
            effect; variance: their spread).

    Raises ValueError with fewer audit pairs than ``groups``, or with neither 3 seed replicates
    nor standard errors.
    """
    m = completion.matrix
    n = m.shape[0]
    iu, ju, measured, defined = pair_index(completion)
    in_audit = np.asarray(audit, dtype=bool)[iu, ju] & measured & defined
    unmeasured = ~measured & defined
    a_rows, a_cols = iu[in_audit], ju[in_audit]
    p_rows, p_cols = iu[unmeasured], ju[unmeasured]
    n_audit, n_predicted = len(a_rows), len(p_rows)
    if n_audit < max(groups, 2):
        raise ValueError(f"{n_audit} measured audit pairs; row cosine's interval needs at least {max(groups, 2)}")
    by_seeds = seed_replicates is not None and len(seed_replicates) >= 3
    if not by_seeds and measured_se is None:
        raise ValueError("row cosine's interval needs the measured matrix without each seed (3 seeds or "
                         "more) or the measured cells' standard errors")
    rows_defined = completion.rows
    held = held_out_predictions(completion)
    scale = completion.scale
    rng = np.random.default_rng(seed)
    group = rng.permutation(n_audit) % groups
    pick = rng.random((imputations, n_predicted))
    swap = rng.random((imputations, n_predicted)) < 0.5
    z_donor, z_target = rng.standard_normal((2, imputations, n))

    def imputed(values: Array, keep: Array) -> Array:
        """Row cosine of each imputation, from the audit pairs in ``keep``."""
        rows, cols = a_rows[keep], a_cols[keep]
        residual = np.full((n, n), np.nan)
        residual[rows, cols] = (values[rows, cols] - held[rows, cols]) / scale[rows]
        residual[cols, rows] = (values[cols, rows] - held[cols, rows]) / scale[cols]
        fx = error_effects(residual)
        rest = np.nan_to_num(np.stack([fx.rest[rows, cols], fx.rest[cols, rows]], axis=1))
        drawn = rest[(pick * len(rows)).astype(int)]  # [imputation, predicted pair, 2]
        forward = np.where(swap, drawn[..., 1], drawn[..., 0])
        backward = np.where(swap, drawn[..., 0], drawn[..., 1])
        donor = fx.donor + np.sqrt(fx.donor_var) * z_donor
        target = fx.target + np.sqrt(fx.target_var) * z_target
        x = np.repeat(values[None], imputations, axis=0)
        x[:, p_rows, p_cols] = values[p_rows, p_cols] + scale[p_rows] * (
            forward + donor[:, p_cols] + target[:, p_rows])
        x[:, p_cols, p_rows] = values[p_cols, p_rows] + scale[p_cols] * (
            backward + donor[:, p_rows] + target[:, p_cols])
        return stack_row_cosine(x, rows_defined)

    everyone = np.ones(n_audit, dtype=bool)
    base = imputed(m, everyone)
    deleted = np.array([imputed(m, group != g).mean() for g in range(groups)])
    measured_cells = completion.sources == MEASURED
    if by_seeds:
        k = len(seed_replicates)
        noisy = np.array([
            imputed(np.where(measured_cells & np.isfinite(r), r, m), everyone).mean() for r in seed_replicates
        ])
        noise_variance = (k - 1) / k * float(((noisy - noisy.mean()) ** 2).sum())
        noise_bias = (k - 1) * (noisy.mean() - base.mean())
    else:
        # Noise added again to the measured cells moves row cosine as the noise already in them did.
        se = np.where(measured_cells & np.isfinite(measured_se), measured_se, 0.0)
        shifts = rng.standard_normal((NOISE_DRAWS, n, n)) * se
        noisy = np.array([imputed(m + shift, everyone).mean() for shift in shifts])
        noise_variance = float(noisy.var(ddof=1))
        noise_bias = noisy.mean() - base.mean()
    variance = (
        base.var(ddof=1) + (groups - 1) / groups * float(((deleted - deleted.mean()) ** 2).sum()) + noise_variance
    )
    point = float(base.mean() - noise_bias)
    half = float(stats.t.ppf(0.5 + level / 2, groups - 1)) * math.sqrt(variance)
    return point, point - half, point + half
