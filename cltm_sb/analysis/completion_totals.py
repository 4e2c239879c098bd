"""Table-1 diagnostics of a completed CLTM by the difference estimator of survey sampling (issue 19).

RFD, asymmetry, prop+, reciprocity+ and intra-family+ are functions of totals over the pairs of
languages: a sum of (M − 1)², of (M[t,s] − M[s,t])², of M², a count of positive cells, of pairs
positive both ways, the positive mass within and across families. A budgeted grid measures a
sample of the pairs; the rest are predicted by the completion model, whose predictions are
shrunk, so a plug-in on the completed matrix is biased (sparse positive cells are predicted as
negative, norms shrink).

The difference estimator removes most of that bias without trusting the model: each total is

    measured pairs' values + predicted pairs' values + (unmeasured pairs) × mean over measured
    pairs of (value − value of the held-out prediction)

within each stratum (pairs inside one family, pairs across families: the design samples them at
different rates). The held-out predictions are the completion's cross-validated ones (both cells
of a pair held out together, as for an unmeasured pair). When the measured pairs are a random
sample within each stratum the estimator is unbiased whatever the model. Squared measured values
are debiased by their standard errors (noise inflates them).

Used for the points of :data:`DIFFERENCE_POINT` in
:func:`~cltm_sb.analysis.completion.completed_diagnostics`, where it beat the mean over predictive
draws in bench_budget.py. Its delta-method interval (the variance of a mean of residuals under
sampling without replacement) covered the true value in only 60-90% of simulated grids in
development (structured and near-agnostic truths, L = 16 and 44): the residuals of the measured
pairs understate the errors shared by the predicted cells, as for the bootstrap of
:mod:`~cltm_sb.analysis.completion_intervals`. So no interval is computed here; a design with an
audit sample of random pairs gets design-based ones (:mod:`~cltm_sb.analysis.completion_audit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cltm_sb.analysis.completion import MEASURED, Completion

Array = np.ndarray

# Per unordered pair (i < j), totals of: (M − 1)², (M[i,j] − M[j,i])² (both cells), M², cells > 0,
# pairs > 0 both ways, positive mass.
FEATURES = ("sq_dev", "sq_asym", "sq", "positive", "both_positive", "positive_mass")
SUM_DIAGNOSTICS = ("rfd", "asymmetry", "prop_positive", "reciprocity_positive", "intra_family_positive")
# Below this many measured pairs, a stratum's mean residual is the pooled one.
MIN_STRATUM_PAIRS = 8


def pair_features(a: Array, b: Array, se_a: Array | None = None, se_b: Array | None = None) -> Array:
    """[..., 6] the :data:`FEATURES` of pairs with cells ``a`` = M[i,j] and ``b`` = M[j,i] (NaN: no cell).

    With standard errors, squares are debiased (E[x²] = μ² + se²).
    """
    fa, fb = np.isfinite(a), np.isfinite(b)
    za, zb = np.where(fa, a, 0.0), np.where(fb, b, 0.0)
    va = np.where(fa & np.isfinite(se_a), se_a**2, 0.0) if se_a is not None else 0.0
    vb = np.where(fb & np.isfinite(se_b), se_b**2, 0.0) if se_b is not None else 0.0
    both = fa & fb
    return np.stack(
        [
            np.where(fa, (za - 1) ** 2 - va, 0.0) + np.where(fb, (zb - 1) ** 2 - vb, 0.0),
            np.where(both, 2 * ((za - zb) ** 2 - va - vb), 0.0),
            np.where(fa, za**2 - va, 0.0) + np.where(fb, zb**2 - vb, 0.0),
            (fa & (za > 0)).astype(float) + (fb & (zb > 0)).astype(float),
            (both & (za > 0) & (zb > 0)).astype(float),
            np.maximum(za, 0.0) * fa + np.maximum(zb, 0.0) * fb,
        ],
        axis=-1,
    )


def pair_index(completion: Completion) -> tuple[Array, Array, Array, Array]:
    """The pairs i < j of a completion: ``iu``, ``ju``, whether each pair has a measured cell and
    whether it has a defined one."""
    m, sources = completion.matrix, completion.sources
    iu, ju = np.triu_indices(m.shape[0], k=1)
    measured = (sources[iu, ju] == MEASURED) | (sources[ju, iu] == MEASURED)
    defined = np.isfinite(m[iu, ju]) | np.isfinite(m[ju, iu])
    return iu, ju, measured, defined


def held_out_predictions(completion: Completion) -> Array:
    """[t, s] the cross-validated prediction of each measured cell (NaN elsewhere)."""
    if completion.error_matrix is None:
        raise ValueError("this completion has no held-out errors")
    return completion.matrix + completion.error_matrix * completion.scale[:, None]


def difference_estimates(completion: Completion, families: Sequence[str] | None = None) -> dict[str, float]:
    """``{diagnostic: value}`` of :data:`SUM_DIAGNOSTICS` from difference-estimated totals (NaN:
    undefined; intra-family+ needs ``families``)."""
    m = completion.matrix
    n = m.shape[0]
    iu, ju, measured_pair, defined_pair = pair_index(completion)
    sources = completion.sources
    se = completion.measured_se
    value = pair_features(m[iu, ju], m[ju, iu], *((se[iu, ju], se[ju, iu]) if se is not None else ()))
    held = held_out_predictions(completion)
    # A measured pair's held-out twin: its cells as the model predicts them with the pair held out.
    held_a = np.where(sources[iu, ju] == MEASURED, held[iu, ju], m[iu, ju])
    held_b = np.where(sources[ju, iu] == MEASURED, held[ju, iu], m[ju, iu])
    residual = value - pair_features(held_a, held_b)
    fam = np.asarray(families if families is not None else ["-"] * n, dtype=object)
    within = fam[iu] == fam[ju]
    pooled = residual[measured_pair & defined_pair]
    totals = {}
    for name, stratum in (("within", within), ("across", ~within)):
        total = value[stratum & defined_pair].sum(axis=0)
        n_unmeasured = int((stratum & defined_pair & ~measured_pair).sum())
        res = residual[stratum & defined_pair & measured_pair]
        if res.shape[0] < MIN_STRATUM_PAIRS:
            res = pooled
        if n_unmeasured and res.shape[0]:
            total = total + n_unmeasured * res.mean(axis=0)
        totals[name] = total
    sq_dev, sq_asym, sq, positive, both, mass = totals["within"] + totals["across"]
    finite = np.isfinite(m)
    off = ~np.eye(n, dtype=bool)
    n_cells, n_diagonal, n_off = int(finite.sum()), int((finite & ~off).sum()), int((finite & off).sum())
    n_both = int((np.isfinite(m[iu, ju]) & np.isfinite(m[ju, iu])).sum())
    nan = math.nan
    return {
        "rfd": math.sqrt(max(sq_dev, 0.0) / n_cells) if n_off else nan,
        "asymmetry": math.sqrt(max(sq_asym, 0.0) / (sq + n_diagonal)) if n_both and sq + n_diagonal > 0 else nan,
        "prop_positive": positive / n_off if n_off else nan,
        "reciprocity_positive": both / n_both if n_both else nan,
        "intra_family_positive": (
            float(min(max(totals["within"][-1] / mass, 0.0), 1.0)) if families is not None and mass > 0 else nan
        ),
    }
