"""Completing a partially measured CLTM, with calibrated predictive intervals (issue 19).

A budgeted grid measures the single and self runs of every language (the row scales) and only a
subset of the pairs; this module predicts the rest.

The model (fitted on the off-diagonal cells of the defined rows):

    M[t, s] ≈ c_t · (μ + a_t + b_s + B[family t, family s] + (U Vᵀ)[t, s])

- ``c_t`` is a row scale: every row is divided by its target's self-gain, so a target with a small
  self-gain has a whole row of large values. Scalings: ``none`` (1), ``row`` (the RMS of the row's
  measured cells, shrunk towards the median on the log scale) and ``gain`` (1/G_self(t), known
  from the single and self runs: the model then works on the cross-gain scale).
- ``a_t`` (target) and ``b_s`` (donor) effects and family-block effects ``B`` (one per pair of
  families; the within-family blocks share a family effect), ridge-shrunk towards 0;
- a low-rank interaction ``U Vᵀ`` (rank ≤ :data:`MAX_RANK`) fitted by alternating ridge regressions;
- optionally a neighbour term (:func:`neighbour_term`): the model's residuals of a target's and a
  donor's close partners (languages whose pair run measured a high transfer both ways), averaged.

Cross-validation over the measured pairs chooses the scaling, the shrinkage, the rank and then
whether to add the neighbour term (:func:`cross_validate`: a more complex model must beat a
simpler one by one SE).

Why this model: transfer is asymmetric (separate target and donor effects, and ``U`` ≠ ``V``),
concentrates inside families and depends on how close two families are (``B``), and the row
normalisation makes rows differ by a factor (``c_t``); a low-rank term captures whatever smooth
structure the languages share (e.g. a latent "distance") without assuming its form. Every
parameter is shrunk, because at a third of the pairs a row of 16 languages has only ~5 measured
cells.

Predictive intervals are calibrated for model error by cross-validation over the measured pairs
(both cells of a pair held out together, as the predicted cells of an unmeasured pair are): the
held-out errors divided by their row scale give an empirical distribution of standardised errors,
and a predicted cell's interval is its prediction ± c_t times the conformal quantile of their
absolute values, within- and across-family cells apart (Mondrian conformal). A measured cell keeps its measurement interval. Rows whose self-gain is not
positive (or not defined) stay undefined: they are never predicted.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.io import writes_output_folder
from cltm_sb.languages import LanguageRegistry

logger = logging.getLogger(__name__)

Array = np.ndarray

MEASURED = "measured"
PREDICTED = "predicted"
UNDEFINED = "undefined"
DEFAULT_LEVEL = 0.95
MAX_RANK = 3
CV_FOLDS = 5
# Interactions tried by cross-validation: (rank, ridge penalty of U and V in cells).
INTERACTIONS = ((0, 0.0), (1, 3.0), (2, 3.0), (3, 3.0), (3, 1.0))
WEAK_RIDGE = 0.05
# A group (within- / across-family cells) needs this many held-out errors for its own quantile
# and error distribution: below, a 95% conformal quantile does not exist.
MIN_GROUP_ERRORS = 19
SCALINGS = ("none", "row", "gain")
# Ridge priors of the target and donor effects tried by cross-validation, in cells: an effect
# estimated from k cells is shrunk by k / (k + ridge). Strong by default, because at a third of
# the pairs a row has few cells and each is noisy (8 beat 0.5 and 2, tied with 16-32, on
# bench_budget's structured truth); weak for data that the model describes exactly.
EFFECT_RIDGES = (8.0, 0.5)
# Ridge priors of the family-block effects tried by cross-validation, in cells: a block of two
# families may hold a single pair, but where transfer follows families the block is where most
# of the structure is (1 beat 4 and 16 on bench_budget's structured truth); without such
# structure (a near-agnostic matrix) weak shrinkage only fits noise.
BLOCK_RIDGES = (16.0, 1.0)
# Row-scale shrinkage on the log scale, in cells.
SCALE_PRIOR_CELLS = 3.0
ALS_ITERATIONS = 30
# Backfitting rounds between the additive effects and the distance term.
DISTANCE_ITERATIONS = 4
# Roughness penalties of the distance term tried by cross-validation.
DISTANCE_SMOOTHS = (1.0,)
# The neighbour term (:func:`neighbour_term`): a partner's weight is exp(SHARPNESS · (z − 2)), z the
# pair's measured transfer standardised over the measured pairs, so a pair 2 SD above the mean
# weighs 1 (sharpness 1-3 and priors 0.05-5 were within 0.02 RMSE/SD of each other on
# bench_budget's latent truth at L = 44; 2 and 0.2 among the best). The prior, in weight units,
# shrinks each cell's average of its neighbours' residuals towards 0 where the weights are small.
# Only pairs measured both ways define partners: a design of single cells (--one-run-per-cell)
# gets no term.
NEIGHBOUR_SHARPNESS = 2.0
NEIGHBOUR_PRIORS = (0.2,)
# Which estimator gives the point of each completed diagnostic: the one with the smallest
# worst-case median error against the truth over bench_budget's two structured truths (latent and
# phylo) at L = 16 and 44 (F = 0.3, `cltm design`, 20 experiments each; bench/RESULTS.md).
# Worst cases, plug-in / mean over draws / difference: asymmetry 0.151 / 0.091 / 0.079 (the
# plug-in on shrunk predictions loses the asymmetric part of the unmeasured pairs: 0.151 on the
# phylo truth at L = 44 where the difference estimator has 0.036); row cosine 0.243 / 0.227 / —;
# RFD 0.130 / 0.065 / 0.052; intra-family+ 0.273 / 0.083 / 0.088 (a tie: the difference estimator
# is kept, unbiased for randomly sampled pairs whatever the model); prop+ and reciprocity+ 0.044 /
# 0.017 / 0.029 and 0.025 / 0.017 / 0.025 (mean over draws).
DIFFERENCE_POINT = frozenset({"rfd", "asymmetry", "intra_family_positive"})
POINT_METHODS = {
    "difference": "completion: difference estimator over pairs (measured + predicted + the mean "
    "held-out residual of measured pairs)",
    "draws": "completion: mean over predictive draws of the predicted cells",
}
# Diagnostics whose model-based completion intervals bench_budget.py found calibrated
# (bench/RESULTS.md); the others are printed without an interval. None: neither the predictive
# draws nor the completion bootstrap (completion_intervals.py; 68-86% on the structured truth at
# L = 16, 100 experiments) reach 95% on both truths. Design-based intervals from an audit sample
# do (completion_audit.AUDIT_INTERVALS).
CALIBRATED_INTERVALS: tuple[str, ...] = ()
NOT_CALIBRATED = "no interval: its coverage with predicted cells is not calibrated (bench/RESULTS.md)"
# With an audit sample (cltm design --audit), completion_audit.AUDIT_INTERVALS get design-based
# intervals; without one they say how to get them.
NO_AUDIT = (
    "no interval: the design has no audit sample; `cltm design --audit` gives intervals to RFD, "
    "asymmetry, row cosine, prop+, reciprocity+ and intra-family+ (bench/RESULTS.md)"
)
# A seed jackknife of the measured values needs this many seeds.
MIN_REPLICATE_SEEDS = 3
COMPLETION_NOTE = (
    "Predicted cells come from a model fitted to the measured ones (target and donor effects, a "
    "family effect and a low-rank interaction, with shrinkage); their intervals are predictive "
    "intervals calibrated by cross-validation on the measured pairs. Diagnostic intervals include "
    "the prediction uncertainty of the predicted cells and the measurement uncertainty of the "
    "measured ones."
)


# --------------------------------------------------------------------------------------------
# Reading partial matrices


def _read_table(path: Path, what: str) -> pd.DataFrame:
    from cltm_sb.io import read_csv_text

    layout = (
        "the layout is a header ',code1,code2,...' and one row 'code,v1,v2,...' per target, an "
        "empty cell for a cell not measured"
    )
    return read_csv_text(path, what, layout, index_col=0)


def read_partial_matrix(path: str | os.PathLike, what: str = "partial matrix") -> pd.DataFrame:
    """A square CLTM CSV whose empty cells are cells not measured (NaN).

    A row whose diagonal is empty is an undefined row (self-gain not positive): it is never
    predicted. Errors name the file, the row and the column.
    """
    path = Path(path)
    raw = _read_table(path, what)
    rows, cols = list(raw.index), list(raw.columns)
    if sorted(rows) != sorted(cols) or len(set(rows)) != len(rows):
        raise ValueError(
            f"{path}: rows ({', '.join(rows)}) and columns ({', '.join(cols)}) must be the same "
            "languages, each once; a budgeted CLTM is square (empty cells = not measured)"
        )
    from cltm_sb.analysis.diagnostics import parse_cells

    raw = raw[rows]
    values = parse_cells(raw, path, "leave the cell empty if it was not measured")
    for i, j in zip(*np.nonzero(np.isinf(values))):
        raise ValueError(f"{path}: row {rows[i]!r}, column {rows[j]!r} is {raw.iat[i, j].strip()}; "
                         "use a number or empty")
    frame = pd.DataFrame(values, index=rows, columns=rows)
    frame.index.name, frame.columns.name = "target", "donor"
    return frame


# --------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class ModelConfig:
    """One candidate of the cross-validated choice: row scaling, interaction rank and ridge."""

    scaling: str
    rank: int = 0
    lam: float = 0.0
    effect_ridge: float = EFFECT_RIDGES[0]
    block_ridge: float = BLOCK_RIDGES[0]
    # Roughness penalty of the smooth function of the user's distances; None: no distance term.
    distance_smooth: float | None = None
    # Prior weight of the neighbour term (:func:`neighbour_term`); None: no neighbour term.
    neighbour_prior: float | None = None

    @property
    def complexity(self) -> int:
        """0-4: a row scaling, weak shrinkage, a distance term and a neighbour term each add one
        (see :func:`cross_validate`)."""
        weak = self.effect_ridge < EFFECT_RIDGES[0] or (self.rank > 0 and self.lam <= WEAK_RIDGE)
        return (int(self.scaling != "none") + int(weak) + int(self.distance_smooth is not None)
                + int(self.neighbour_prior is not None))


@dataclass
class _Fit:
    prediction: Array  # [t, s] on the M scale, NaN on undefined rows
    scale: Array  # [t]


def row_scales(m: Array, observed: Array, rows: Array) -> Array:
    """c_t: RMS of the row's observed off-diagonal cells, shrunk on the log scale to the median."""
    n = m.shape[0]
    count = observed.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.where(observed, m**2, 0.0).sum(axis=1) / count)
    ok = rows & (count > 0) & (rms > 0)
    if not ok.any():
        return np.ones(n)
    log_rms = np.log(np.where(ok, rms, 1.0))
    centre = float(np.median(log_rms[ok]))
    weight = np.where(ok, count / (count + SCALE_PRIOR_CELLS), 0.0)
    return np.exp(weight * log_rms + (1 - weight) * centre)


def _additive(
    y: Array, observed: Array, blocks: Array, ridge: float, block_ridge: float, iterations: int = 4
) -> tuple[float, Array, Array, Array]:
    """μ, target effects a, donor effects b and family-block effects B by ridge backfitting.

    ``blocks[t, s]`` numbers the (family of t, family of s) block of each cell; the within-family
    blocks share one effect (the family effect f) plus a shrunk deviation per family, the blocks of
    two different families one shrunk effect each (how close the two families are).
    """
    n = y.shape[0]
    count = observed.sum()
    mu = float(np.where(observed, y, 0.0).sum() / count) if count else 0.0
    a, b = np.zeros(n), np.zeros(n)
    n_blocks = int(blocks.max()) + 1
    flat_blocks = blocks[observed]
    cells_per_block = np.bincount(flat_blocks, minlength=n_blocks)
    within = np.zeros(n_blocks, dtype=bool)
    within[np.unique(blocks[np.eye(n, dtype=bool)])] = True
    within_obs = observed & within[blocks]
    f = 0.0
    effect = np.zeros(n_blocks)
    for _ in range(iterations):
        block_term = f * within[blocks] + effect[blocks]
        r = np.where(observed, y - mu - b[None, :] - block_term, 0.0)
        a = r.sum(axis=1) / (observed.sum(axis=1) + ridge)
        r = np.where(observed, y - mu - a[:, None] - block_term, 0.0)
        b = r.sum(axis=0) / (observed.sum(axis=0) + ridge)
        base = y - mu - a[:, None] - b[None, :]
        if within_obs.any():
            f = float(np.where(within_obs, base - effect[blocks], 0.0).sum() / (within_obs.sum() + ridge))
        r = np.where(observed, base - f * within[blocks], 0.0)[observed]
        effect = np.bincount(flat_blocks, weights=r, minlength=n_blocks) / (
            cells_per_block + block_ridge
        )
        block_term = f * within[blocks] + effect[blocks]
        r = np.where(observed, y - a[:, None] - b[None, :] - block_term, 0.0)
        mu = float(r.sum() / count) if count else 0.0
    return mu, a, b, f * within[blocks] + effect[blocks]


def family_blocks(families: Sequence[str]) -> Array:
    """[t, s] index of the (family of t, family of s) block."""
    codes = {f: k for k, f in enumerate(dict.fromkeys(families))}
    idx = np.array([codes[f] for f in families])
    return idx[:, None] * len(codes) + idx[None, :]


def gain_scales(self_gain: Array, rows: Array) -> Array:
    """c_t = median self-gain / G_self(t): the model then works on the cross-gain scale."""
    g = np.asarray(self_gain, dtype=float)
    ok = rows & np.isfinite(g) & (g > 0)
    if not ok.any():
        return np.ones(g.size)
    return np.where(ok, float(np.median(g[ok])) / np.where(ok, g, 1.0), 1.0)


def model_scales(
    m: Array, observed: Array, rows: Array, scaling: str, self_gain: Array | None
) -> Array:
    """The row scales c_t of one scaling: ``none`` (1), ``row`` (RMS) or ``gain`` (1/self-gain)."""
    if scaling == "row":
        return row_scales(m, observed, rows)
    if scaling == "gain":
        if self_gain is None:
            raise ValueError("the 'gain' scaling needs the self-gains")
        return gain_scales(self_gain, rows)
    return np.ones(m.shape[0])


def _smooth_term(resid: Array, observed: Array, basis: Array, penalty: Array, smooth: float) -> Array:
    """[t, s] the penalised least-squares fit of ``resid`` on the distance basis (observed cells)."""
    x = basis[observed]
    k = basis.shape[-1]
    # A small ridge keeps the solve defined where knots have no observed cell nearby.
    coef = np.linalg.solve(x.T @ x + smooth * penalty + 1e-6 * np.eye(k), x.T @ resid[observed])
    return basis @ coef


def neighbour_term(y: Array, resid: Array, observed: Array, prior: float) -> Array:
    """[t, s] what t's and s's close partners say about the cell beyond the model.

    Transfer falls with how far apart two languages are (in the paper's matrices and in both
    of bench_budget's structured truths), so two languages whose pair run measured a high
    transfer both ways are close, and transfer alike to and from third languages. The term
    averages the model's residuals ``resid`` (observed cells, on the model's scale ``y``) of the
    cells (u, s) for t's partners u and (t, v) for s's partners v, weighted by how high each
    partner's measured pair is (:data:`NEIGHBOUR_SHARPNESS`), shrunk by ``prior``. Only pairs
    measured both ways (as a pair run measures them) define partners; a cell's own value never
    enters its term (no language is its own partner).
    """
    n = y.shape[0]
    both = observed & observed.T
    sym = (y + y.T) / 2
    values = sym[both]
    if values.size < 2 or float(np.std(values)) == 0.0:
        return np.zeros((n, n))
    z = (sym - values.mean()) / values.std()
    weight = np.where(both, np.exp(NEIGHBOUR_SHARPNESS * (np.where(both, z, 0.0) - 2.0)), 0.0)
    measured = observed.astype(float)
    resid = np.where(observed, resid, 0.0)
    # Σ_u w[t,u]·r[u,s] + Σ_v r[t,v]·w[v,s] over the same sums of the weights of measured cells.
    return (weight @ resid + resid @ weight) / (weight @ measured + measured @ weight + prior)


def fit_model(
    m: Array,
    observed: Array,
    rows: Array,
    blocks: Array,
    config: ModelConfig,
    self_gain: Array | None = None,
    basis: tuple[Array, Array] | None = None,
) -> _Fit:
    """Fit the completion model to the ``observed`` cells of ``m`` and predict every cell.

    ``basis``: the distance basis and its penalty (:func:`~cltm_sb.analysis.distances.smooth_basis`),
    used when ``config.distance_smooth`` is set.
    """
    n = m.shape[0]
    observed = observed & rows[:, None] & ~np.eye(n, dtype=bool)
    scale = model_scales(m, observed, rows, config.scaling, self_gain)
    y = np.where(observed, m / scale[:, None], 0.0)
    rank = config.rank
    rng = np.random.default_rng(0)  # a fixed start: the same data give the same fit
    u = 0.1 * rng.standard_normal((n, rank))
    v = 0.1 * rng.standard_normal((n, rank))
    weight = observed.astype(float)
    ridge = config.lam * np.eye(rank)
    low = np.zeros((n, n))
    smooth = np.zeros((n, n))
    use_distance = config.distance_smooth is not None and basis is not None and basis[0].shape[-1] > 0

    def effects(offset: Array) -> tuple[float, Array, Array, Array, Array]:
        """Additive effects and the distance term given the interaction ``offset`` (backfitting)."""
        mu, a, b, block = _additive(y - offset - smooth, observed, blocks, config.effect_ridge, config.block_ridge)
        if not use_distance:
            return mu, a, b, block, smooth
        term = smooth
        for _ in range(DISTANCE_ITERATIONS):
            term = _smooth_term(y - offset - (mu + a[:, None] + b[None, :] + block), observed,
                                basis[0], basis[1], config.distance_smooth)
            mu, a, b, block = _additive(y - offset - term, observed, blocks, config.effect_ridge,
                                        config.block_ridge)
        return mu, a, b, block, term

    mu, a, b, block, smooth = effects(low)
    for _ in range(ALS_ITERATIONS if rank else 0):
        # Alternating ridge regressions: each row of U (then V) is one small r x r solve.
        resid = np.where(observed, y - (mu + a[:, None] + b[None, :] + block + smooth), 0.0)
        gram = np.einsum("ts,sk,sl->tkl", weight, v, v) + ridge
        u = np.linalg.solve(gram, (resid @ v)[..., None])[..., 0]
        gram = np.einsum("ts,tk,tl->skl", weight, u, u) + ridge
        v = np.linalg.solve(gram, (resid.T @ u)[..., None])[..., 0]
        new = u @ v.T
        change = np.sum((new - low) ** 2) / max(np.sum(new**2), 1e-12)
        low = new
        mu, a, b, block, smooth = effects(low)
        if change < 1e-5:
            break
    additive = mu + a[:, None] + b[None, :] + block + smooth
    if config.neighbour_prior is not None:
        additive = additive + neighbour_term(y, y - additive - low, observed, config.neighbour_prior)
    pred = (additive + low) * scale[:, None]
    pred[~rows] = np.nan
    return _Fit(pred, scale)


def pair_units(observed: Array) -> list[list[tuple[int, int]]]:
    """Measured cells grouped by unordered pair (a pair run measures both of its cells)."""
    n = observed.shape[0]
    units = []
    for i in range(n):
        for j in range(i + 1, n):
            cells = [(t, s) for t, s in ((i, j), (j, i)) if observed[t, s]]
            if cells:
                units.append(cells)
    return units


def cross_validate(
    m: Array,
    observed: Array,
    rows: Array,
    blocks: Array,
    configs: Sequence[ModelConfig],
    folds: int,
    rng: np.random.Generator,
    self_gain: Array | None = None,
    basis: tuple[Array, Array] | None = None,
) -> tuple[ModelConfig, Array]:
    """The chosen config and its held-out predictions.

    Configs are grouped by :attr:`ModelConfig.complexity`; the best of the simplest group is kept
    unless the best of a more complex group beats it by more than one SE (of the paired
    difference of squared errors, cell by cell). With noisy cells and little structure (a
    near-agnostic matrix) the held-out errors are all close and noise alone would pick an
    over-fitted model (RMSE/SD 1.24 instead of 1.11 at L = 16), while a matrix that a more complex
    model describes well beats the simpler ones by far.
    """
    units = pair_units(observed)
    order = rng.permutation(len(units))
    fold_of = np.empty(len(units), dtype=int)
    fold_of[order] = np.arange(len(units)) % max(folds, 1)
    errors, helds = [], []
    for config in configs:
        held = np.full(m.shape, np.nan)
        for k in range(folds):
            mask = observed.copy()
            cells = [c for u, fk in zip(units, fold_of) if fk == k for c in u]
            if not cells:
                continue
            idx = tuple(np.asarray(cells).T)
            mask[idx] = False
            held[idx] = fit_model(m, mask, rows, blocks, config, self_gain=self_gain, basis=basis).prediction[idx]
        errors.append(((held - m)[observed]) ** 2)
        helds.append(held)
    means = np.array([np.nanmean(e) for e in errors])
    levels = np.array([c.complexity for c in configs])
    current = -1
    for level in sorted(set(levels)):
        at = np.flatnonzero(levels == level)
        best = int(at[np.nanargmin(means[at])])
        if current < 0:
            current = best
            continue
        diff = errors[current] - errors[best]
        diff = diff[np.isfinite(diff)]
        se = float(np.std(diff, ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else 0.0
        if means[current] - means[best] > se:
            current = best
    return configs[current], helds[current]


def min_conformal_scores(level: float) -> int:
    """The fewest scores with a split-conformal quantile at ``level`` (:func:`conformal_quantile`;
    19 at 95%, 99 at 99%): below, a predictive interval is unbounded."""
    return math.ceil(level / (1 - level) - 1e-9)


def conformal_quantile(scores: Array, level: float) -> float:
    """The ⌈(n + 1)·level⌉-th smallest score (split-conformal quantile; inf when too few)."""
    scores = np.sort(scores[np.isfinite(scores)])
    k = math.ceil((scores.size + 1) * level)
    return float(scores[k - 1]) if 0 < k <= scores.size else math.inf


# --------------------------------------------------------------------------------------------
# The result


@dataclass
class Completion:
    """A completed CLTM: values, intervals, sources and what calibrated them."""

    locales: list[str]
    matrix: Array  # measured cells kept, the rest predicted; NaN on undefined rows
    lower: Array
    upper: Array
    sources: Array  # object [t, s]: measured / predicted / undefined
    predictive_sd: Array  # [t, s] on predicted cells (NaN elsewhere)
    config: ModelConfig
    quantile: float  # standardised error quantile at ``level`` (all measured cells)
    standardised_errors: Array  # held-out errors / row scale, one per measured cell
    scale: Array
    level: float = DEFAULT_LEVEL
    cell_quantile: Array | None = None  # [t, s] the quantile of the cell's group (within/across family)
    pair_error_correlation: float = 0.0  # of the held-out errors of a pair's two cells
    error_matrix: Array | None = None  # [t, s] held-out standardised error of measured cells, else NaN
    within_family: Array | None = None  # [t, s] both languages in one family (off-diagonal)
    measured_se: Array | None = None
    measured_interval_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # [t, s] the audit pairs' cells (cltm design --audit): design-based diagnostic intervals.
    audit: Array | None = None
    # [t, s] the core design's pairs' cells, when pairs were measured after it (--next rounds).
    core: Array | None = None
    # [k, t, s] the measured matrix with each seed left out in turn (a grid's completion).
    seed_replicates: Array | None = None

    @property
    def rows(self) -> Array:
        """Defined rows (self-gain positive): the only ones completed."""
        return np.diag(self.sources) != UNDEFINED

    def frame(self, values: Array) -> pd.DataFrame:
        out = pd.DataFrame(values, index=self.locales, columns=self.locales)
        out.index.name, out.columns.name = "target", "donor"
        return out

    @property
    def budget(self) -> float:
        """Measured fraction of the off-diagonal cells of defined rows."""
        n = len(self.locales)
        off = ~np.eye(n, dtype=bool)
        defined = off & (self.sources != UNDEFINED)
        return float((self.sources[defined] == MEASURED).mean()) if defined.any() else float("nan")


def complete_matrix(
    matrix: Array | pd.DataFrame,
    families: Sequence[str] | None = None,
    se: Array | pd.DataFrame | None = None,
    level: float = DEFAULT_LEVEL,
    valid_rows: Array | None = None,
    locales: Sequence[str] | None = None,
    seed: int = 0,
    measured_lower: Array | None = None,
    measured_upper: Array | None = None,
    configs: Sequence[ModelConfig] | None = None,
    self_gain: Array | None = None,
    distances: Mapping[str, Array] | None = None,
) -> Completion:
    """Complete a partial CLTM (NaN = not measured).

    Args:
        matrix: square, rows targets, columns donors; the diagonal of a defined row is 1.
        families: per language (matrix order); without them there is no family effect.
        se: measurement standard errors of the measured cells (for their intervals).
        valid_rows: rows whose self-gain is positive; default: rows with a finite diagonal.
        measured_lower, measured_upper: measurement intervals of measured cells (e.g. Fieller's),
            which take precedence over ``value ± z·se``.
        configs: candidate models for cross-validation (default: two stages, the scaling and
            effect shrinkage with the additive model, then the interaction).
        self_gain: G_self per target (from the single and self runs, always measured): lets
            cross-validation choose the cross-gain scale, where rows differ only by 1/G_self.
        distances: ``{name: [n, n] distances}`` between the languages (e.g. typological, from
            :func:`~cltm_sb.analysis.distances.read_distances`): cross-validation may add a smooth
            function of each to the model.
    """
    if isinstance(matrix, pd.DataFrame):
        locales = locales or [str(c) for c in matrix.index]
    m = np.asarray(matrix, dtype=float)
    n = m.shape[0]
    if m.ndim != 2 or m.shape[1] != n:
        raise ValueError(f"a CLTM to complete must be square, got shape {m.shape}")
    locales = list(locales) if locales is not None else [f"L{i}" for i in range(n)]
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    off = ~np.eye(n, dtype=bool)
    rows = np.isfinite(np.diag(m)) if valid_rows is None else np.asarray(valid_rows, dtype=bool)
    observed = np.isfinite(m) & off & rows[:, None]
    if rows.sum() < 2 or observed.sum() < 4:
        raise ValueError(
            f"too little to complete: {int(rows.sum())} defined rows, {int(observed.sum())} measured "
            "off-diagonal cells; measure more pairs"
        )
    # Without families every language is in one family: no family effect beyond the mean.
    fam = np.asarray(families if families is not None else ["-"] * n, dtype=object)
    if fam.size != n:
        raise ValueError(f"{fam.size} families given for {n} languages")
    blocks = family_blocks(list(fam))
    rng = np.random.default_rng(seed)
    folds = min(CV_FOLDS, max(2, len(pair_units(observed)) // 2))
    basis = None
    if distances:
        from cltm_sb.analysis.distances import smooth_basis

        basis = smooth_basis({k: np.asarray(v, dtype=float) for k, v in distances.items()}, observed)
    smooths: list[float | None] = [None] + (list(DISTANCE_SMOOTHS) if basis is not None else [])
    if configs:
        config, held = cross_validate(m, observed, rows, blocks, list(configs), folds, rng, self_gain, basis)
    else:
        # Two stages (cheaper than the full product): the scaling with the additive model,
        # then the interaction on that scaling; each list from simple to complex.
        scalings = [s for s in SCALINGS if s != "gain" or self_gain is not None]
        stage1 = [
            ModelConfig(s, effect_ridge=r, block_ridge=b, distance_smooth=d)
            for d in smooths
            for r in EFFECT_RIDGES
            for b in BLOCK_RIDGES
            for s in scalings
        ]
        config, held = cross_validate(m, observed, rows, blocks, stage1, folds, rng, self_gain, basis)
        d = config.distance_smooth
        stage2 = [
            ModelConfig(config.scaling, r, lam, config.effect_ridge, config.block_ridge, d)
            for r, lam in INTERACTIONS
        ]
        # Last, the least shrunk model: a matrix of exactly this form (effects plus a low-rank
        # interaction, little noise) is recovered only without the strong shrinkage that stage 1
        # prefers when the interaction is left out.
        stage2 += [
            ModelConfig(config.scaling, rank, WEAK_RIDGE, EFFECT_RIDGES[-1], BLOCK_RIDGES[-1], d)
            for rank in range(1, MAX_RANK + 1)
        ]
        config, held = cross_validate(m, observed, rows, blocks, stage2, folds, rng, self_gain, basis)
        # Last, the neighbour term on the chosen model (one more level of complexity).
        if NEIGHBOUR_PRIORS:
            stage3 = [config] + [replace(config, neighbour_prior=p) for p in NEIGHBOUR_PRIORS]
            config, held = cross_validate(m, observed, rows, blocks, stage3, folds, rng, self_gain, basis)
    fit = fit_model(m, observed, rows, blocks, config, self_gain=self_gain, basis=basis)
    # Errors grow with the row's scale: standardise by the chosen model's scale (by the RMS
    # scale when the model has none, so that rows of large values get wider intervals anyway).
    scale = fit.scale if config.scaling != "none" else row_scales(m, observed, rows)
    std_all = (held - m) / scale[:, None]
    std_err = std_all[observed]
    # Mondrian conformal: within-family and across-family cells get their own quantile (their
    # errors differ several-fold), the pooled one where a group has too few measured cells.
    within = np.asarray(fam[:, None] == fam[None, :]) & off
    q_pooled = conformal_quantile(np.abs(std_err), level)
    q_cell = np.full((n, n), q_pooled)
    for group in (within, ~within & off):
        q_group = conformal_quantile(np.abs(std_all[observed & group]), level)
        if math.isfinite(q_group):
            q_cell[group] = q_group
    q = q_pooled

    completed = np.where(observed, m, fit.prediction)
    sources = np.full((n, n), PREDICTED, dtype=object)
    sources[observed] = MEASURED
    sources[~rows, :] = UNDEFINED
    idx = np.arange(n)
    sources[idx[rows], idx[rows]] = MEASURED
    completed[idx[rows], idx[rows]] = 1.0
    completed[~rows] = np.nan
    predicted = sources == PREDICTED
    half = q_cell * scale[:, None]
    lower = np.where(predicted, completed - half, np.nan)
    upper = np.where(predicted, completed + half, np.nan)
    z = _normal_quantile(0.5 + level / 2)
    sd = np.where(predicted, half / z, np.nan)
    se_arr = None if se is None else np.asarray(se, dtype=float)
    note = ""
    measured = observed
    if measured_lower is not None and measured_upper is not None:
        lower = np.where(measured, measured_lower, lower)
        upper = np.where(measured, measured_upper, upper)
        note = "measured cells: Fieller intervals over seeds (calibrated by cltm)"
    elif se_arr is not None:
        lower = np.where(measured, m - z * se_arr, lower)
        upper = np.where(measured, m + z * se_arr, upper)
        note = "measured cells: from the supplied SE, not calibrated by cltm"
    else:
        note = "measured cells: no standard errors given, so no interval"
    lower[idx[rows], idx[rows]] = upper[idx[rows], idx[rows]] = 1.0
    return Completion(
        locales=locales,
        matrix=completed,
        lower=lower,
        upper=upper,
        sources=sources,
        predictive_sd=sd,
        config=config,
        quantile=q,
        standardised_errors=std_err,
        scale=scale,
        level=level,
        cell_quantile=q_cell,
        pair_error_correlation=_pair_correlation(std_all, observed),
        error_matrix=np.where(observed, std_all, np.nan),
        within_family=within,
        measured_se=se_arr,
        measured_interval_note=note,
        extra={
            "families": list(fam) if families is not None else None,
            "cv_folds": folds,
            "distances": sorted(distances) if distances else [],
        },
    )


def _pair_correlation(errors: Array, observed: Array) -> float:
    """Correlation of the held-out errors of M[t, s] and M[s, t] over pairs measured both ways."""
    both = np.triu(observed & observed.T, k=1)
    x, y = errors[both], errors.T[both]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return 0.0
    return float(np.clip(np.corrcoef(x[ok], y[ok])[0, 1], 0.0, 1.0))


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


# --------------------------------------------------------------------------------------------
# Diagnostics of a completed matrix, with the prediction uncertainty


def mirror_mix(z: Array, rho: float, keep_diagonal: bool = False) -> Array:
    """Independent draws ``z`` [..., n, n] made into errors whose mirror cells correlate ``rho``:
    the lower cell is rho·(its mirror) + sqrt(1 − rho²)·(its own draw); the diagonal is 0, or
    ``z``'s own draw with ``keep_diagonal``."""
    upper = np.triu(z, k=1)
    mixed = upper + rho * np.swapaxes(upper, -1, -2) + math.sqrt(max(1 - rho**2, 0.0)) * np.tril(z, k=-1)
    if keep_diagonal:
        mixed = mixed + np.triu(np.tril(z))
    return mixed


def draw_matrices(
    completion: Completion, n_draws: int, rng: np.random.Generator, measured_noise: bool = True
) -> Array:
    """[draw, t, s]: plausible matrices around the completion.

    A predicted cell moves by its row scale times minus a held-out error drawn from its group
    (within- or across-family cells; all cells when a group has fewer than 19): the empirical
    distribution with its sign, because errors are skewed (a sparse positive cell among negative
    ones is under-predicted, never over-predicted). A measured cell moves by its SE times a
    standard normal (not at all without SE).
    """
    m = completion.matrix
    n = m.shape[0]
    predicted = completion.sources == PREDICTED
    held = completion.error_matrix
    measured_cells = np.isfinite(held) if held is not None else np.zeros((n, n), dtype=bool)
    pooled = held[measured_cells] if held is not None else np.zeros(0)
    if pooled.size == 0:
        pooled = np.zeros(1)
    within = completion.within_family if completion.within_family is not None else np.zeros((n, n), bool)
    draws = np.repeat(m[None], n_draws, axis=0)
    picks = np.zeros((n_draws, n, n))
    for group in (within, ~within):
        errors = held[measured_cells & group] if held is not None else np.zeros(0)
        source = errors if errors.size >= MIN_GROUP_ERRORS else pooled
        picks[:, group] = -rng.choice(source, size=(n_draws, int(group.sum())))
    # The two cells of an unmeasured pair err together (held-out pairs show how much): their
    # errors are mixed as rho·e1 + sqrt(1 − rho²)·e2, upper triangle driving the lower.
    picks = mirror_mix(picks, completion.pair_error_correlation)
    draws += np.where(predicted[None], picks * completion.scale[None, :, None], 0.0)
    se = completion.measured_se
    if se is not None and measured_noise:
        measured = (completion.sources == MEASURED) & ~np.eye(n, dtype=bool) & np.isfinite(se)
        noise = rng.standard_normal((n_draws, n, n)) * np.where(measured, se, 0.0)[None]
        draws += noise
    return draws


def _stack_diagnostics(stack: Array, rows: Array, families: Sequence[str] | None) -> dict[str, Array]:
    from cltm_sb.analysis import uncertainty as unc

    n = stack.shape[1]
    off = ~np.eye(n, dtype=bool)
    finite = np.isfinite(stack) & off[None]
    pos = np.where(finite, stack > 0, False)
    count = finite.sum(axis=(1, 2))
    mirror = np.isfinite(stack) & np.isfinite(np.transpose(stack, (0, 2, 1))) & np.triu(off)[None]
    recip = pos & np.transpose(pos, (0, 2, 1)) & mirror
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "rfd": np.sqrt(unc.stack_rfd_squared(stack)),
            "asymmetry": np.sqrt(unc.stack_asymmetry_squared(stack)),
            "prop_positive": pos.sum(axis=(1, 2)) / count,
            "reciprocity_positive": recip.sum(axis=(1, 2)) / mirror.sum(axis=(1, 2)),
            "row_cosine": unc.stack_row_cosine(stack, rows),
        }
    out["intra_family_positive"] = (
        unc.stack_intra_family(stack, families) if families else np.full(stack.shape[0], np.nan)
    )
    return out


def point_method(name: str, completion: Completion) -> str:
    """Which estimator gives the point of diagnostic ``name``: a key of :data:`POINT_METHODS`."""
    if name in DIFFERENCE_POINT and completion.error_matrix is not None:
        return "difference"
    return "draws"


def diagnostic_points(
    completion: Completion, families: Sequence[str] | None, n_draws: int, rng: np.random.Generator
) -> dict[str, float]:
    """The point of each Table-1 diagnostic of a completed matrix (:func:`point_method` says which
    estimator: the mean over predictive draws with the measured cells fixed, or the difference
    estimator)."""
    rows = completion.rows
    expected = _stack_diagnostics(draw_matrices(completion, n_draws, rng, measured_noise=False), rows, families)
    difference: dict[str, float] = {}
    if completion.error_matrix is not None:
        from cltm_sb.analysis.completion_totals import difference_estimates

        difference = difference_estimates(completion, families)
    out = {}
    for name, values in expected.items():
        if point_method(name, completion) == "difference":
            out[name] = difference[name]
        else:
            values = values[np.isfinite(values)]
            out[name] = float(values.mean()) if values.size else float("nan")
    return out


def completed_diagnostics(
    completion: Completion,
    families: Sequence[str] | None = None,
    n_draws: int = 400,
    seed: int = 0,
    plugins: dict[str, float] | None = None,
    intervals: Sequence[str] | None = None,
    method: str = "bootstrap",
    n_boot: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Table-1 diagnostics of the completed matrix, with the prediction uncertainty.

    The point is the mean of the diagnostic over :func:`draw_matrices` with the measured cells
    fixed: the expected value under the predictive distribution of the predicted cells. A plug-in
    on the completed matrix would be biased, because predictions are shrunk (towards block means,
    so sparse positive cells are lost and norms shrink); :func:`point_method` names the
    diagnostics whose point is the difference estimator instead. The spread comes from draws that also
    move the measured cells by their SE: lower/upper = point + the draws' quantiles minus their
    mean. Only diagnostics named in ``intervals`` get an interval (default:
    :data:`CALIBRATED_INTERVALS`, those bench_budget.py found calibrated); the others say why not.
    Entries follow intervals.json (point, lower, upper, plugin, method, reason); ``plugin`` is the
    plug-in value of the measured cells alone unless ``plugins`` gives others. ``method``:
    ``bootstrap`` (default) takes the intervals from
    :func:`~cltm_sb.analysis.completion_intervals.bootstrap_intervals` (``n_boot`` re-completions),
    ``draws`` from the spread of the predictive draws (not calibrated: kept for the benchmark).
    """
    rng = np.random.default_rng(seed)
    rows = completion.rows
    points = diagnostic_points(completion, families, n_draws, rng)
    allowed = set(CALIBRATED_INTERVALS if intervals is None else intervals)
    # The draws' spread is needed only for intervals by the draws method (none by default).
    spread = (
        _stack_diagnostics(draw_matrices(completion, n_draws, rng), rows, families)
        if method == "draws" and allowed
        else {}
    )
    measured_only = np.where(completion.sources == MEASURED, completion.matrix, np.nan)
    plug = plugins or {
        k: float(v[0]) for k, v in _stack_diagnostics(measured_only[None], rows, families).items()
    }
    alpha = 1 - completion.level
    out: dict[str, dict[str, Any]] = {}
    from cltm_sb.analysis.completion_audit import (
        AUDIT_INTERVALS,
        RECENTRED,
        interval_reason,
        recentre_share,
    )

    audit, audit_reason = _audit_result(completion, families, seed) if intervals is None else (None, "")
    boot = None
    if method == "bootstrap" and allowed & set(points):
        from cltm_sb.analysis.completion_intervals import DEFAULT_BOOT, bootstrap_intervals

        boot = bootstrap_intervals(completion, families, n_boot=n_boot or DEFAULT_BOOT, seed=seed, points=points)
    for name, p in points.items():
        values = spread.get(name, np.zeros(0))
        values = values[np.isfinite(values)]
        entry: dict[str, Any] = {
            "point": _num(p),
            "lower": None,
            "upper": None,
            "plugin": _num(plug.get(name, float("nan"))),
            "method": POINT_METHODS[point_method(name, completion)],
            "reason": "",
        }
        if not math.isfinite(p):
            entry["reason"] = "undefined on the completed matrix"
        elif name in AUDIT_INTERVALS and intervals is None:
            if audit is None:
                entry["reason"] = audit_reason
            elif reason := interval_reason(name, audit):
                entry["reason"] = reason
            elif name in RECENTRED:
                entry["lower"], entry["upper"] = recentre_share(p, *audit.estimates[name])
                entry["method"] = f"{entry['method']}; {audit.method} (its logit-scale width, about this point)"
            else:
                entry["point"], entry["lower"], entry["upper"] = (float(x) for x in audit.estimates[name])
                entry["method"] = audit.method_of(name)
        elif name not in allowed:
            entry["reason"] = NOT_CALIBRATED
        elif boot is not None:
            bounds = boot.intervals.get(name)
            entry["method"] = f"completion: {boot.method}, {boot.n_boot} pseudo-truths"
            if bounds is None:
                entry["reason"] = "too few defined bootstrap replicates"
            else:
                entry["lower"], entry["upper"] = bounds
        elif values.size < 20:
            entry["reason"] = "too few defined draws"
        else:
            lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2]) - values.mean()
            lower, upper = p + lo, p + hi
            if name in ("prop_positive", "reciprocity_positive", "intra_family_positive"):
                lower, upper = max(lower, 0.0), min(upper, 1.0)
            entry["lower"], entry["upper"] = float(lower), float(upper)
        out[name] = entry
    return out


def _audit_result(completion: Completion, families: Sequence[str] | None, seed: int = 0) -> tuple[Any, str]:
    """The design-based estimates of a completion with an audit, or None and why not."""
    from cltm_sb.analysis.completion_audit import audit_intervals

    if completion.audit is None:
        return None, NO_AUDIT
    if "seed_units" in completion.extra and completion.seed_replicates is None:
        return None, f"no interval: the audit's noise jackknife needs at least {MIN_REPLICATE_SEEDS} seeds"
    try:
        return audit_intervals(completion, families, completion.audit, completion.seed_replicates,
                               completion.level, core=completion.core, seed=seed, printable_only=True), ""
    except ValueError as err:
        return None, f"no interval: {err}"


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def best_donor_probabilities(completion: Completion, n_draws: int = 400, seed: int = 0) -> Array:
    """[t, s] P(donor s is target t's best) under the completion's predictive draws (NaN on the
    diagonal and undefined rows).

    Predicted cells are shrunk towards their block and row means, so the largest point prediction
    is a poor guess of the best donor: a cell with a wide interval may well be the best. Ranking by
    P(best) put the true best donor in the top 3 more often than ranking by value (bench_budget.py,
    structured truth, F = 0.3, `cltm design`: 84% vs 81% of targets at L = 16, 78% vs 74% at L = 44).
    """
    n = len(completion.locales)
    off = ~np.eye(n, dtype=bool)
    draws = draw_matrices(completion, n_draws, np.random.default_rng([seed, 31]))
    draws = np.where(off[None] & np.isfinite(draws), draws, -np.inf)
    winners = np.argmax(draws, axis=2)  # [draw, t]
    counts = np.zeros((n, n))
    np.add.at(counts, (np.broadcast_to(np.arange(n), winners.shape), winners), 1.0)
    p_best = counts / n_draws
    p_best[~off] = np.nan
    p_best[~completion.rows] = np.nan
    return p_best


def donor_ranking(completion: Completion, p_best: Array) -> list[list[int]]:
    """Per target, every donor in the order of donors.csv: by P(best), then (donors that won as
    many draws, often none) by value; [] for an undefined row."""
    n = len(completion.locales)
    value = np.nan_to_num(completion.matrix, nan=-np.inf)
    return [
        sorted((s for s in range(n) if s != t), key=lambda s: (-p_best[t, s], -value[t, s]))
        if completion.rows[t] else []
        for t in range(n)
    ]


def donor_table(completion: Completion, p_best: Array) -> pd.DataFrame:
    """donors.csv of a completion: per target, donors ranked by P(best), then by value.

    Columns: target, donor, rank, value, lower, upper, source, p_best, in_best_set (the smallest
    set of donors whose P(best) sums to at least 0.95).
    """
    from cltm_sb.analysis.uncertainty import best_set

    rows = []
    ranking = donor_ranking(completion, p_best)
    for t in np.flatnonzero(completion.rows):
        in_set = best_set(p_best[t])
        for rank, s in enumerate(ranking[t], start=1):
            rows.append(
                {
                    "target": completion.locales[t],
                    "donor": completion.locales[s],
                    "rank": rank,
                    "value": completion.matrix[t, s],
                    "lower": completion.lower[t, s],
                    "upper": completion.upper[t, s],
                    "source": completion.sources[t, s],
                    "p_best": p_best[t, s],
                    "in_best_set": bool(in_set[s]),
                }
            )
    columns = ["target", "donor", "rank", "value", "lower", "upper", "source", "p_best", "in_best_set"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# From a grid folder or a partial matrix CSV, and onto disk


@dataclass
class CompletionRun:
    """What ``cltm complete`` computed: the completion, its diagnostics and where it came from."""

    completion: Completion
    diagnostics: dict[str, dict[str, Any]]
    source: str
    n_seeds: int | None
    families: list[str] | None
    # The grid's budget block (plan.json, cltm_sb.grid.budget_record): the design behind it.
    design: dict[str, Any] | None = None
    # The code,name,family CSV the families came from (None: the built-in registry).
    families_file: str | None = None

    def to_intervals_json(self) -> dict[str, Any]:
        """intervals.json in the schema of ``cltm report``, plus a ``completion`` block."""
        c = self.completion
        n = len(c.locales)
        off = ~np.eye(n, dtype=bool)
        counts = {k: int(((c.sources == k) & off).sum()) for k in (MEASURED, PREDICTED, UNDEFINED)}
        return {
            "level": c.level,
            "variability": "seed+prediction" if self.n_seeds else "supplied SE+prediction",
            "variability_note": COMPLETION_NOTE,
            "n_seeds": self.n_seeds,
            "diagnostics": self.diagnostics,
            "tests": {},
            "cells": {
                "method": f"{c.measured_interval_note}; predicted cells: cross-validated "
                "conformal predictive intervals (within- and across-family errors apart; unbounded "
                f"where too few measured cells were held out for its level: fewer than "
                f"{min_conformal_scores(c.level)} at {100 * c.level:g}%)"
            },
            "completion": {
                "source": self.source,
                "budget": c.budget,
                "cells": counts,
                "model": {
                    "scaling": c.config.scaling,
                    "rank": c.config.rank,
                    "ridge": c.config.lam,
                    "cv_folds": c.extra.get("cv_folds"),
                    "distances": c.extra.get("distances", []),
                    "distance_term": c.config.distance_smooth is not None,
                    "neighbour_term": c.config.neighbour_prior is not None,
                },
                "standardised_error_quantile": _num(c.quantile),
                "pair_error_correlation": c.pair_error_correlation,
                **({"design": self.design} if self.design is not None else {}),
            },
        }


def complete_seed_arrays(
    arrays: Any,
    families: Sequence[str],
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    distances: Mapping[str, Array] | None = None,
    audit_pairs: Sequence[tuple[str, str]] | None = None,
    core_pairs: Sequence[tuple[str, str]] | None = None,
) -> Completion:
    """The completion of a grid's runs (:class:`~cltm_sb.analysis.uncertainty.SeedArrays`, NaN
    where a pair was not run): measured cells keep their Fieller interval over seeds.
    ``distances``: as in :func:`complete_matrix`. ``audit_pairs``: the design's audit (``cltm
    design --audit``); the completion then keeps the leave-one-seed-out matrices its
    design-based intervals need. ``core_pairs``: the design's core pairs, when more pairs were
    measured after it (:func:`~cltm_sb.analysis.completion_audit.audit_intervals`)."""
    from cltm_sb.analysis.uncertainty import (
        cell_statistics,
        fieller_interval,
        jackknife_matrices,
        point_estimate,
    )

    point = point_estimate(arrays)
    # Every finished seed, as `cltm matrix` prints the cell (paired over the seeds all three runs
    # share, a run's failed seed made the interval describe another ratio than the point).
    cells = cell_statistics(arrays)
    lo, hi, bounded = fieller_interval(cells, level)
    # An unbounded Fieller interval (self-gain not significant) is (−inf, inf), never a number.
    lo, hi = np.where(bounded, lo, -np.inf), np.where(bounded, hi, np.inf)
    completion = complete_matrix(
        point.matrix,
        families=families,
        se=np.where(point.entries, cells.se, np.nan),
        level=level,
        valid_rows=point.valid_rows,
        locales=arrays.locales,
        seed=seed,
        measured_lower=lo,
        measured_upper=hi,
        self_gain=point.self_gain,
        distances=distances,
    )
    if audit_pairs is not None:
        from cltm_sb.analysis.completion_audit import audit_mask

        completion.audit = audit_mask(completion.locales, audit_pairs)
        if core_pairs is not None:
            completion.core = audit_mask(completion.locales, core_pairs, "core pair")
        k = arrays.n_seeds
        # The statistics module's seed jackknife, each run on its own scale (a run that lost seeds
        # counts its noise once): a weak row keeps its leave-one-out values (its noise), even where
        # one seed's absence leaves its self-gain at or below 0.
        completion.seed_replicates = (
            jackknife_matrices(arrays, point.entries) if k >= MIN_REPLICATE_SEEDS else None
        )
        completion.extra["seed_units"] = k
    return completion


def grid_row_reasons(arrays: Any, min_seeds: int | None = None) -> dict[str, str]:
    """Why each undefined row of a grid's matrix is undefined (the reasons ``cltm matrix`` logs):
    {target: reason} for the rows the completion can neither use nor predict."""
    from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, CellStats, row_undefined_reason
    from cltm_sb.analysis.uncertainty import _nan_moments

    min_seeds = DEFAULT_MIN_SEEDS if min_seeds is None else min_seeds
    # Each run's seeds as build_cltm counts them (a run without a finished seed, absent or failed,
    # is "no finished" run in both).
    runs = [_nan_moments(arrays.single), _nan_moments(arrays.self_)]
    stats = [[CellStats(float(m), float(v), int(n)) for m, v, n in zip(*run)] for run in runs]
    reasons = {}
    for code, single, self_run in zip(arrays.locales, *stats):
        reason = row_undefined_reason(single, self_run, min_seeds)
        if reason:
            reasons[code] = reason
    return reasons


def partial_row_reasons(frame: pd.DataFrame) -> dict[str, str]:
    """Why each row of a partial matrix CSV with an empty diagonal is undefined, naming the
    measured cells it leaves out (a row whose diagonal was left empty by mistake loses them)."""
    reasons = {}
    values = frame.to_numpy(dtype=float)
    for i, code in enumerate(frame.index):
        if np.isfinite(values[i, i]):
            continue
        measured = bool(np.isfinite(np.delete(values[i], i)).any())
        reasons[str(code)] = "empty diagonal (self-gain not positive)" + (
            ", so its measured cells are left out; write 1 on the diagonal of a row whose self-gain "
            "is positive" if measured else "")
    return reasons


def check_unit_diagonal(frame: pd.DataFrame, source: str | os.PathLike) -> None:
    """A CLTM's diagonal is 1 (or empty for an undefined row): anything else is another matrix
    (gains, scores), whose completion would be read as transfer."""
    values = frame.to_numpy(dtype=float)
    for i, code in enumerate(frame.index):
        value = values[i, i]
        if np.isfinite(value) and not math.isclose(value, 1.0, abs_tol=1e-6):
            raise ValueError(
                f"{source}: row {code!r} has {value:g} on the diagonal; a CLTM's diagonal is 1 (each "
                "row divided by its self-gain), or empty for a row whose self-gain is not positive. "
                "Raw gains become a CLTM with `cltm import long --normalise`"
            )


def check_defined_rows(reasons: Mapping[str, str], n: int, source: str | os.PathLike) -> None:
    """Log why each undefined row is undefined; with fewer than two defined rows, an error that
    says why (not only "measure more pairs": one seed, or a CSV without its diagonal, do that too)."""
    for code, reason in reasons.items():
        logger.warning("%s: row %s is undefined (never predicted): %s", source, code, reason)
    if n - len(reasons) < 2:
        by_reason: dict[str, list[str]] = {}
        for code, reason in reasons.items():
            by_reason.setdefault(reason, []).append(code)
        why = "; ".join(f"{', '.join(codes)}: {reason}" for reason, codes in by_reason.items())
        raise ValueError(f"{source}: too little to complete: {n - len(reasons)} of {n} rows are defined ({why})")


def complete_source(
    source: str | os.PathLike,
    families_csv: str | os.PathLike | None = None,
    se_csv: str | os.PathLike | None = None,
    task: str | None = None,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    n_draws: int = 400,
    distances_csv: str | os.PathLike | None = None,
    design_csv: str | os.PathLike | None = None,
) -> CompletionRun:
    """Complete a grid folder (its finished runs) or a partial matrix CSV (empty = not measured).

    Families come from ``families_csv`` (``code,name,family``), else, for a grid, the families
    file it was planned with, else the built-in registry; an unknown code is an error that names
    it. From a grid, measured cells get Fieller intervals over seeds and every row's self-gain is
    known; from a CSV, a row with an empty diagonal is
    undefined and ``se_csv`` (same layout) gives the measured cells' SE. ``distances_csv``:
    distances between the languages (:func:`~cltm_sb.analysis.distances.read_distances`), a
    covariate the model may use. ``design_csv``: the pairs.csv of ``cltm design --audit``, whose
    audit pairs give the diagnostics design-based intervals (a grid planned with ``--audit`` or
    with such a file records them in plan.json and needs no ``design_csv``).
    """
    from cltm_sb.analysis.completion_audit import audit_mask
    from cltm_sb.analysis.designs import read_pair_roles
    from cltm_sb.analysis.distances import read_distances
    from cltm_sb.languages import load_registry

    core_pairs = audit_pairs = None
    if design_csv is not None:
        core_pairs, audit_pairs = read_pair_roles(design_csv)
        if not audit_pairs:
            raise ValueError(f"{design_csv}: no audit pairs (a role column with 'audit'); "
                             "make the design with `cltm design --audit A`")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; give a grid folder or a partial matrix CSV (empty = not measured)")
    design = None
    if path.is_dir() and se_csv is not None:
        raise ValueError(f"{se_csv}: --se goes with a partial matrix CSV; a grid's cells get their "
                         f"intervals from its seeds (drop --se, or complete a CSV instead of {path})")
    if path.is_dir():
        from cltm_sb.analysis.grid_analysis import grid_registry, load_grid
        from cltm_sb.analysis.uncertainty import seed_arrays
        from cltm_sb.grid.layout import GridLayout

        # A budgeted grid's plan.json says which design chose its pairs, and its audit.
        design = (GridLayout(path).plan_fields() or {}).get("budget")
        if audit_pairs is None and design and design.get("audit_units"):
            audit_pairs = [tuple(unit.split(",", 1)) for unit in design["audit_units"]]
            core_units = design.get("core_units")
            core_pairs = [tuple(unit.split(",", 1)) for unit in core_units] if core_units else None

        # Without --families, the families the grid was planned with (as `cltm matrix` reads it).
        data = load_grid(path, grid_registry(path, families_csv), task=task)
        kept = GridLayout(path).families_file
        families_file = families_csv or (kept if kept.is_file() else None)
        arrays = seed_arrays(data.table, data.locales)
        check_defined_rows(grid_row_reasons(arrays), len(arrays.locales), path)
        families = data.families
        distances = read_distances(distances_csv, arrays.locales) if distances_csv else None
        completion = complete_seed_arrays(arrays, families, level=level, seed=seed, distances=distances,
                                          audit_pairs=audit_pairs, core_pairs=core_pairs)
        n_seeds: int | None = arrays.n_seeds
    else:
        frame = read_partial_matrix(path)
        codes = [str(c) for c in frame.index]
        check_unit_diagonal(frame, path)
        check_defined_rows(partial_row_reasons(frame), len(codes), path)
        families = load_registry(families_csv).families(codes)
        families_file = families_csv
        se = None
        if se_csv is not None:
            from cltm_sb.analysis.diagnostics import standard_errors_for

            se = standard_errors_for(frame, read_partial_matrix(se_csv, "SE matrix"), se_csv).to_numpy()
            se = np.where(np.eye(len(codes), dtype=bool), 0.0, se)
        distances = read_distances(distances_csv, codes) if distances_csv else None
        completion = complete_matrix(frame, families=families, se=se, level=level, seed=seed,
                                     distances=distances)
        if audit_pairs is not None:
            # Only --design gives a matrix CSV its audit: errors name that file.
            completion.audit = audit_mask(completion.locales, audit_pairs, f"{design_csv}: audit pair")
            completion.core = audit_mask(completion.locales, core_pairs, f"{design_csv}: core pair")
        n_seeds = None
    diagnostics = completed_diagnostics(completion, families, n_draws=n_draws, seed=seed) if n_draws else {}
    return CompletionRun(completion, diagnostics, str(path), n_seeds, families, design,
                         str(families_file) if families_file is not None else None)


@writes_output_folder("out", "complete")
def write_completion(run: CompletionRun, out: str | os.PathLike, seed: int = 0) -> list[Path]:
    """Write completed.csv, lower.csv, upper.csv, sources.csv, donors.csv (ranked by P(best),
    :func:`donor_table`) and intervals.json into ``out``, and a copy of the families CSV the
    completion used as families.csv (where ``cltm report --matrix ... --sources`` finds it).

    Infinite bounds (a measured cell whose Fieller interval is unbounded) and undefined rows are
    written as empty cells.
    """
    from cltm_sb.analysis.diagnostics import write_matrix_csv
    from cltm_sb.io import atomic_write_json, atomic_write_text

    out = Path(out)  # the staging folder of writes_output_folder
    c = run.completion
    written = []
    for name, values in (("completed", c.matrix), ("lower", c.lower), ("upper", c.upper)):
        finite = np.where(np.isfinite(values), values, np.nan)
        written.append(write_matrix_csv(c.frame(finite), out / f"{name}.csv"))
    sources = c.frame(c.sources)
    sources.index.name = sources.columns.name = None
    written.append(atomic_write_text(out / "sources.csv", sources.to_csv()))
    donors = donor_table(c, best_donor_probabilities(c, seed=seed))
    written.append(atomic_write_text(out / "donors.csv", donors.to_csv(index=False, float_format="%.6g")))
    written.append(atomic_write_json(out / "intervals.json", run.to_intervals_json()))
    if run.families_file is not None:
        text = Path(run.families_file).read_text(encoding="utf-8")
        written.append(atomic_write_text(out / "families.csv", text))
    return written


def observed_completion(
    source: str | os.PathLike,
    families_csv: str | os.PathLike | None = None,
    task: str | None = None,
    distances_csv: str | os.PathLike | None = None,
) -> Completion:
    """The completion of a grid or partial CSV, without its diagnostics (for the active design)."""
    return complete_source(source, families_csv, task=task, n_draws=0, distances_csv=distances_csv).completion


def read_completion_donors(
    path: str | os.PathLike,
    registry: LanguageRegistry | None = None,
    code_map: Mapping[str, str] | None = None,
) -> pd.DataFrame | None:
    """The ``p_best`` and ``in_best_set`` of a completion's donors.csv (:func:`donor_table`), with
    its cell intervals ``lower`` and ``upper`` where the file has them, codes mapped as
    :func:`read_sources` maps them; None when ``path`` is missing or is not such a file."""
    path = Path(path)
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype={"target": str, "donor": str})
    if not {"target", "donor", "p_best", "in_best_set"} <= set(frame.columns):
        return None
    if registry is not None:
        from cltm_sb.languages import code_mapper

        mapper = code_mapper(code_map)
        for column in ("target", "donor"):
            frame[column] = mapper.map_codes(list(frame[column]), registry, f" ({column}s of {path})")
    frame["in_best_set"] = frame["in_best_set"].astype(str).str.lower() == "true"
    bounds = ["lower", "upper"] if {"lower", "upper"} <= set(frame.columns) else []
    return frame[["target", "donor", "p_best", "in_best_set", *bounds]]


def read_completion_intervals(path: str | os.PathLike, n_languages: int | None = None) -> dict[str, Any] | None:
    """A completion's intervals.json (:meth:`CompletionRun.to_intervals_json`): its ``level``, its
    Table-1 entries under ``diagnostics`` (point, lower, upper, plugin, method, reason) and how its
    cell intervals were made under ``cells``; None when ``path`` is missing or is not a
    completion's. With ``n_languages``, a file written for a matrix of another size is an error
    that names it (it is not this matrix's completion)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not readable as JSON ({err}); rerun `cltm complete` to rewrite it") from err
    if not isinstance(data, dict) or not isinstance(data.get("completion"), dict):
        return None
    diagnostics = data.get("diagnostics")
    if not isinstance(diagnostics, dict):
        raise ValueError(f"{path}: a completion's intervals.json without diagnostics; rerun `cltm complete`")
    cells = data["completion"].get("cells") or {}
    if n_languages is not None and cells:
        n_cells = sum(int(v) for v in cells.values())
        if n_cells != n_languages * (n_languages - 1):
            raise ValueError(
                f"{path}: written for a matrix with {n_cells} off-diagonal cells, not this one's "
                f"{n_languages * (n_languages - 1)}; pass the sources.csv of the same `cltm complete` run"
            )
    return data


def read_sources(
    path: str | os.PathLike,
    registry: LanguageRegistry | None = None,
    code_map: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """A ``sources.csv`` of :func:`write_completion` (targets as rows, donors as columns; each cell
    ``measured``, ``predicted`` or ``undefined``), its codes mapped as :func:`load_matrix` maps a
    matrix's (``code_map``: the user's ``--map``)."""
    from cltm_sb.analysis.external import rename_codes
    from cltm_sb.languages import code_mapper

    path = Path(path)
    try:
        frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read a sources CSV ({error})") from error
    frame.index = frame.index.astype(str)
    frame.columns = frame.columns.astype(str)
    known = {MEASURED, PREDICTED, UNDEFINED}
    for target, row in frame.iterrows():
        bad = sorted({str(v) for v in row if str(v) not in known} - {""})
        if bad:
            raise ValueError(
                f"{path}, row {target}: cells {bad} are not one of {sorted(known)} "
                "(a sources.csv written by `cltm complete`)"
            )
    if registry is not None:
        frame = rename_codes(frame, code_mapper(code_map), registry, str(path))
    return frame
