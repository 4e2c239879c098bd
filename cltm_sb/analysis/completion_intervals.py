"""Intervals for the Table-1 diagnostics of a completed CLTM: a bootstrap of the whole completion.

Why not the predictive draws of :func:`~cltm_sb.analysis.completion.draw_matrices`: a diagnostic
sums over many predicted cells, and the errors of a completion are not independent from cell to
cell (a row, a donor or a pair of families that the model gets wrong is wrong in all its cells),
so independent draws give intervals far too narrow (1-16 of 20 covered, bench/RESULTS.md).

The method (a residual bootstrap of the completion procedure, basic-bootstrap intervals):

1. From the completion (:func:`pseudo_model`): posterior variances of the target, donor and
   family-block effects given the measured cells (variance components by moments), and the
   held-out errors of its cross-validation (standardised by the row scale, within- and
   across-family apart, with their means, their measurement-noise share removed).
2. Each of ``n_boot`` pseudo-truths (:func:`pseudo_truth`) keeps the measured cells (their noise
   shrunk away) and moves every predicted cell by its row scale times a drawn error: one shared
   part per row, per donor and per block (mirror blocks correlated), each variance scaled by a
   χ²_k/k draw, plus a cell error from a resample of the held-out errors (mirror cells
   correlated): the errors are correlated as a model's misfit is, and the uncertainty of their
   size is included.
3. The measured cells of the pseudo-truth are measured again: plus a normal noise with each
   cell's SE; the mirror cells of a pair run share ``pair_noise_correlation`` of it.
4. The pseudo-grid is completed with the SAME measured pattern and the estimator of the point
   (:func:`~cltm_sb.analysis.completion.completed_diagnostics`) is applied to it; the error of
   the estimator is its value minus the pseudo-truth's diagnostic.
5. Interval = point − the (1 − α/2, α/2) quantiles of that error. RFD and asymmetry work on the
   squared scale, where the noise bias is additive (E‖M + e‖² = ‖M‖² + ‖e‖²), then back.

The re-fits use the model config chosen on the real data (``configs`` can give others), so the
interval is conditional on that choice. Only the diagnostics that bench/bench_budget.py found
calibrated are printed with an interval (``CALIBRATED_INTERVALS`` in completion.py): as of
2026-12-01 none (bench/RESULTS.md: 68-86% coverage on the structured truth at L = 16, because the
completion's errors on predicted cells are more biased and more correlated than its
cross-validated errors on measured pairs show).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cltm_sb.analysis.completion import (
    MEASURED,
    PREDICTED,
    Completion,
    ModelConfig,
    _stack_diagnostics,
    complete_matrix,
    diagnostic_points,
    family_blocks,
    mirror_mix,
)

Array = np.ndarray

METHOD = "completion bootstrap: re-completion of pseudo-truths with resampled correlated errors (basic)"
DIAGNOSTICS = (
    "rfd",
    "asymmetry",
    "row_cosine",
    "prop_positive",
    "reciprocity_positive",
    "intra_family_positive",
)
SQUARED = frozenset({"rfd", "asymmetry"})
FRACTIONS = frozenset({"prop_positive", "reciprocity_positive", "intra_family_positive"})
# Fewer predictive draws than completed_diagnostics' 400 for the estimator inside each
# replicate: its Monte-Carlo noise (a mean over draws) is small next to the completion's error.
BOOT_DRAWS = 100
# Pseudo-truths per interval: ~3 s at L = 16, ~20 s at L = 44 (one model config per re-fit).
DEFAULT_BOOT = 100


@dataclass(frozen=True)
class BootstrapIntervals:
    """Per diagnostic (lower, upper), or None where fewer than 20 replicates were defined."""

    intervals: dict[str, tuple[float, float] | None]
    points: dict[str, float]
    method: str
    n_boot: int


def point_diagnostics(
    completion: Completion, families: Sequence[str] | None, n_draws: int, rng: np.random.Generator
) -> dict[str, float]:
    """The estimator of completed_diagnostics (:func:`~cltm_sb.analysis.completion.diagnostic_points`)."""
    return diagnostic_points(completion, families, n_draws, rng)


def _one_way(values: Array, groups: Array, n_groups: int) -> tuple[Array, Array, float, float, Array]:
    """One-way random-effects ANOVA by moments: the raw and the shrunk group means (shrunk by
    their reliability), the between-group variance τ², the within-group variance σ² and the
    group sizes."""
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    sums = np.bincount(groups, weights=values, minlength=n_groups)
    has = counts > 0
    means = np.where(has, sums / np.maximum(counts, 1.0), 0.0)
    dof = values.size - int(has.sum())
    if dof < 1 or has.sum() < 2:
        return means, np.zeros(n_groups), 0.0, float(np.var(values)) if values.size else 0.0, counts
    sigma2 = float(np.sum((values - means[groups]) ** 2) / dof)
    tau2 = max(float(np.var(means[has], ddof=1)) - sigma2 * float(np.mean(1.0 / counts[has])), 0.0)
    weight = tau2 / (tau2 + sigma2 / np.maximum(counts, 1.0)) if tau2 > 0 else np.zeros(n_groups)
    return means, np.where(has, weight * means, 0.0), tau2, sigma2, counts


def _mirror_blocks(n_families: int) -> Array:
    """Index of the (family s, family t) block of each (family t, family s) block."""
    k = np.arange(n_families * n_families)
    return (k % n_families) * n_families + k // n_families


@dataclass(frozen=True)
class _PseudoModel:
    """What the pseudo-truths are drawn from (all on the row-scaled scale)."""

    v_row: Array  # posterior variance of each target effect
    v_col: Array  # ... of each donor effect
    v_block: Array  # ... of each family-block effect
    block_rho: float  # correlation of the effects of blocks (F, G) and (G, F)
    n_families: int
    residual_within: Array  # cell errors (truth − prediction), measurement noise removed
    residual_across: Array
    measured_truth: Array  # [t, s] the measured cells with their noise shrunk away, NaN elsewhere
    dof: tuple[int, int, int] = (0, 0, 0)  # groups (less one) behind each variance component


def pseudo_model(completion: Completion, blocks: Array, n_families: int) -> _PseudoModel:
    """Estimate what the pseudo-truths are drawn from.

    - Effects: posterior variances τ²σ² / (kτ² + σ²) of the target, donor and family-block
      effects given the measured cells (τ² for an effect seen in no cell), with variance
      components by moments on the measured cells (rows, then donors, then blocks). Why:
      cross-validation holds out pairs whose row, donor and block stay measured in other pairs,
      so its errors miss what an unmeasured block (or a row with few cells) leaves unknown about
      all its cells at once; these shared errors dominate a diagnostic's error.
    - Cell errors: the held-out errors (with their within/across-family means: a design that
      measures within-family pairs leaves across-family cells that the model over-predicts),
      their spread around the mean shrunk so that the measurement noise (SE²) is not counted
      twice: the pseudo-grid is measured again with noise.
    - Measured cells: the measured value shrunk towards the held-out prediction by the same
      factor, so that measuring it again with noise gives the spread the real data have.
    """
    n = completion.matrix.shape[0]
    off = ~np.eye(n, dtype=bool)
    cells = (completion.sources == MEASURED) & off & completion.rows[:, None]
    n_blocks = int(blocks.max()) + 1
    held = completion.error_matrix if completion.error_matrix is not None else np.full((n, n), np.nan)
    held = np.where(cells, held, np.nan)
    within = completion.within_family if completion.within_family is not None else np.zeros((n, n), bool)
    se = completion.measured_se
    noise = (se / completion.scale[:, None]) ** 2 if se is not None else np.zeros((n, n))
    noise = np.where(np.isfinite(noise), noise, 0.0)
    errors = -held  # truth − prediction
    has_error = np.isfinite(errors)
    t_idx, s_idx = np.nonzero(cells)
    tau_a = tau_b = tau_k = sigma2 = 0.0
    n_a, n_b, n_k = np.zeros(n), np.zeros(n), np.zeros(n_blocks)
    raw = np.zeros(n_blocks)
    if t_idx.size >= 4:
        y = (completion.matrix / completion.scale[:, None])[cells]
        r = y - y.mean()
        _, row, tau_a, _, n_a = _one_way(r, t_idx, n)
        r = r - row[t_idx]
        _, col, tau_b, _, n_b = _one_way(r, s_idx, n)
        r = r - col[s_idx]
        raw, _, tau_k, sigma2, n_k = _one_way(r, blocks[cells], n_blocks)
    def posterior(tau2: float, k: Array) -> Array:
        return tau2 * sigma2 / (k * tau2 + sigma2) if tau2 > 0 and sigma2 > 0 else np.full(k.size, tau2)

    v_row, v_col, v_block = posterior(tau_a, n_a), posterior(tau_b, n_b), posterior(tau_k, n_k)
    predicted = completion.sources == PREDICTED
    pooled = errors[has_error] if has_error.any() else np.zeros(1)
    shrink = np.ones((n, n))
    pools = []
    for group in (within, ~within & off):
        sel = has_error & group
        if sel.sum() < 19:
            sel = has_error
        e = errors[sel] if sel.any() else pooled
        v_noise = float(noise[sel].mean()) if sel.any() else 0.0
        centre = float(e.mean())
        spread = float(np.mean((e - centre) ** 2))
        # The held-out errors give the size of a predicted cell's error (and the group's mean):
        # the shared parts drawn above take their share of it, the measurement noise none (the
        # pseudo-grid is measured again with noise).
        t_p, s_p = np.nonzero(predicted & group)
        v_shared = float(np.mean(v_row[t_p] + v_col[s_p] + v_block[blocks[t_p, s_p]])) if t_p.size else 0.0
        lam = math.sqrt(max(spread - v_noise - v_shared, 0.0) / spread) if spread > 0 else 1.0
        pools.append(centre + lam * (e - centre))
        with np.errstate(invalid="ignore", divide="ignore"):
            cell_lam = np.sqrt(np.clip(1.0 - noise / (spread + centre**2), 0.0, 1.0)) if spread > 0 else 1.0
        shrink = np.where(group, cell_lam, shrink)
    # measured value m = prediction + error·scale: move it (1 − shrink) of the way to the prediction.
    scaled_error = np.where(has_error, errors, 0.0) * completion.scale[:, None]
    measured_truth = np.where(cells, completion.matrix - (1.0 - shrink) * scaled_error, np.nan)

    # Transfer between two families is mostly symmetric: the mirror blocks' effects correlate.
    mirror = _mirror_blocks(n_families)
    both = (n_k > 0) & (n_k[mirror] > 0) & (np.arange(n_blocks) < mirror)
    rho = completion.pair_error_correlation
    if both.sum() >= 5 and np.std(raw[both]) > 0 and np.std(raw[mirror][both]) > 0:
        rho = float(np.clip(np.corrcoef(raw[both], raw[mirror][both])[0, 1], 0.0, 1.0))
    dof = tuple(max(int((k > 0).sum()) - 1, 0) for k in (n_a, n_b, n_k))
    return _PseudoModel(v_row, v_col, v_block, rho, n_families, pools[0], pools[1], measured_truth, dof)


def pseudo_truth(
    completion: Completion, model: _PseudoModel, blocks: Array, rng: np.random.Generator
) -> Array:
    """One plausible true matrix: predicted cells move by a drawn error (shared target, donor and
    block parts plus a resampled cell error), measured cells are their denoised values."""
    m = completion.matrix
    n = m.shape[0]
    within = completion.within_family if completion.within_family is not None else np.zeros((n, n), bool)
    f = model.n_families
    # within-family blocks (the diagonal) keep their own draw
    block_z = mirror_mix(rng.standard_normal((f, f)), model.block_rho, keep_diagonal=True).reshape(-1)
    # The variance components are estimated from a few rows, donors and blocks: each pseudo-truth
    # scales them by a χ²_k / k draw (k = the groups that estimated them, less one).
    def spread(v: Array, k: int) -> Array:
        return np.sqrt(v * (rng.chisquare(k) / k if k > 0 else 1.0))

    shared = (
        rng.normal(0.0, spread(model.v_row, model.dof[0]))[:, None]
        + rng.normal(0.0, spread(model.v_col, model.dof[1]))[None, :]
        + (spread(model.v_block, model.dof[2]) * block_z)[blocks]
    )
    # Each pseudo-truth draws from its own resample of the held-out errors: their size (and the
    # group's mean) is itself estimated from a few dozen cells, and a diagnostic's bias grows
    # with it (a norm by the errors' variance), so that uncertainty belongs in the interval.
    pool_within = rng.choice(model.residual_within, model.residual_within.size)
    pool_across = rng.choice(model.residual_across, model.residual_across.size)
    cell = np.where(within, rng.choice(pool_within, (n, n)), rng.choice(pool_across, (n, n)))
    # The two cells of an unmeasured pair err together (as in draw_matrices).
    cell = mirror_mix(cell, completion.pair_error_correlation, keep_diagonal=True)
    predicted = completion.sources == PREDICTED
    truth = np.where(predicted, m + (shared + cell) * completion.scale[:, None], m)
    return np.where(np.isfinite(model.measured_truth), model.measured_truth, truth)


def _measure(
    truth: Array, measured: Array, se: Array | None, rho: float, rng: np.random.Generator
) -> Array:
    """The pseudo-grid's measured matrix: the pseudo-truth plus measurement noise, NaN elsewhere."""
    n = truth.shape[0]
    out = np.where(measured, truth, np.nan)
    if se is None:
        return out
    z = mirror_mix(rng.standard_normal((n, n)), rho)
    noise = np.where(measured & np.isfinite(se), se * z, 0.0)
    return out + noise


def bootstrap_intervals(
    completion: Completion,
    families: Sequence[str] | None = None,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    points: Mapping[str, float] | None = None,
    configs: Sequence[ModelConfig] | None = None,
    pair_noise_correlation: float = 0.0,
    n_draws: int = BOOT_DRAWS,
    distances: Mapping[str, Array] | None = None,
) -> BootstrapIntervals:
    """Basic-bootstrap intervals of the completed matrix's Table-1 diagnostics (module docstring).

    Args:
        completion: the completion of the real data (its held-out errors drive the pseudo-truths).
        families: per language, for the family blocks and intra-family+.
        n_boot: pseudo-truths (each one completion: ~0.1 s at L = 16 with one config).
        points: the point estimates the intervals are built around (default: the estimator of
            :func:`point_diagnostics` with ``n_draws`` draws).
        configs: models for the re-fits (default: the one chosen on the real data).
        pair_noise_correlation: correlation of the measurement noise of a pair run's two cells.
        distances: the language distances the completion was given (its distance term is
            re-fitted with them; without them a re-fit has no distance term).
    """
    if n_boot < 20:
        raise ValueError(f"n_boot must be at least 20 for a 95% interval, got {n_boot}")
    rng = np.random.default_rng([seed, 1919])
    n = completion.matrix.shape[0]
    rows = completion.rows
    off = ~np.eye(n, dtype=bool)
    measured = (completion.sources == MEASURED) & off & rows[:, None]
    fam = list(families) if families is not None else None
    blocks = family_blocks(fam if fam is not None else ["-"] * n)
    model = pseudo_model(completion, blocks, len(dict.fromkeys(fam if fam is not None else ["-"])))
    config = completion.config
    self_gain = 1.0 / completion.scale if config.scaling == "gain" else None
    use = list(configs) if configs else [config]
    if points is None:
        points = point_diagnostics(completion, fam, n_draws, rng)
    se = completion.measured_se
    errors: dict[str, list[float]] = {name: [] for name in DIAGNOSTICS}
    for _ in range(n_boot):
        truth = pseudo_truth(completion, model, blocks, rng)
        observed = _measure(truth, measured, se, pair_noise_correlation, rng)
        np.fill_diagonal(observed, np.where(rows, 1.0, np.nan))
        redo = complete_matrix(
            observed,
            families=fam,
            se=se,
            level=completion.level,
            valid_rows=rows,
            seed=int(rng.integers(2**31)),
            configs=use,
            self_gain=self_gain,
            **({"distances": distances} if distances else {}),
        )
        estimate = point_diagnostics(redo, fam, n_draws, rng)
        true_values = {k: float(v[0]) for k, v in _stack_diagnostics(truth[None], rows, fam).items()}
        for name in DIAGNOSTICS:
            est, tru = estimate[name], true_values[name]
            if name in SQUARED:
                est, tru = est * est, tru * tru
            errors[name].append(est - tru)
    alpha = 1 - completion.level
    intervals: dict[str, tuple[float, float] | None] = {}
    for name in DIAGNOSTICS:
        err = np.asarray(errors[name])
        err = err[np.isfinite(err)]
        p = points.get(name, math.nan)
        if err.size < 20 or not math.isfinite(p):
            intervals[name] = None
            continue
        lo_q, hi_q = np.quantile(err, [alpha / 2, 1 - alpha / 2])
        if name in SQUARED:
            lower = math.sqrt(max(p * p - hi_q, 0.0))
            upper = math.sqrt(max(p * p - lo_q, 0.0))
        else:
            lower, upper = p - hi_q, p - lo_q
        if name in FRACTIONS:
            lower, upper = max(lower, 0.0), min(upper, 1.0)
        intervals[name] = (float(lower), float(upper))
    return BootstrapIntervals(intervals, dict(points), METHOD, n_boot)



def mirror_noise_correlation(arrays: object) -> float:
    """Correlation of the seed-to-seed noise of M[t, s] and M[s, t] (a pair run's two cells),
    pooled over the pairs measured both ways; 0 with fewer than 5 such pairs or 3 seeds.

    ``arrays``: :class:`~cltm_sb.analysis.uncertainty.SeedArrays` of a grid.
    """
    from cltm_sb.analysis.uncertainty import paired_cells

    cells = paired_cells(arrays)  # type: ignore[arg-type]
    d = arrays.pair - arrays.single[:, :, None]  # type: ignore[attr-defined]
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = (d - cells.d_mean[None]) / cells.g_mean[None]
    n = dev.shape[1]
    both = np.triu(np.isfinite(cells.d_mean) & np.isfinite(cells.d_mean.T), k=1) & (cells.n >= 3)
    if both.sum() < 5:
        return 0.0
    x, y = dev[:, both], np.transpose(dev, (0, 2, 1))[:, both]
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 10 or np.std(x) == 0 or np.std(y) == 0 or n < 2:
        return 0.0
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
