"""Calibrated uncertainty of a CLTM and its diagnostics (DESIGN.md §1, §6, §8).

Everything works on seed-aligned arrays: ``single[k, t]``, ``self_[k, t]`` and ``pair[k, t, s]``
hold seed k's value of a_t, a_t ∪ b_t and a_t ∪ a_s evaluated on t. Every resampled quantity is a
weighted mean over seeds, ``W @ Y`` for a weight matrix W (one row per replicate), so a
leave-one-seed-out jackknife is a single matrix product instead of rebuilding a table per replicate.

Why these methods (bench/bench_calibration.py measures them; bench/RESULTS.md has the numbers):

- Cells M[t, s]: all runs share the seeds, and a seed's effect on language t is common to the
  single, self and pair runs evaluated on t. Per-seed paired differences d_k = y_ts,k − y_t,k and
  g_k = y_tt,k − y_t,k cancel that effect, and their sample (co)variances carry whatever
  correlation is left. M = mean(d) / mean(g) is a ratio of two correlated normal means, for which
  Fieller's interval with a t_{n−1} quantile is exact; it is unbounded when the self-gain is not
  significant at that level (reported as such, never as a number). Where runs lost seeds, each
  run's mean is over its own seeds and the t quantile takes Satterthwaite's degrees of freedom.
- Verdicts: a paired t-test of mean(d) = 0 per cell, Benjamini–Hochberg q-values over the valid
  cells of unflagged targets; flagged targets get no verdict.
- RFD and asymmetry: noise inflates a squared norm by the variance of the noisy entries. Each
  cell is linearised per seed (jackknife pseudo-values of M, centred on M), and the squared norms
  are estimated by the unbiased U-statistic x̄ᵀAx̄ − tr(AS)/n, i.e. a variance subtraction with
  the seed-paired covariance S. S carries every correlation between cells (seed effects, mirror
  cells sharing a pair run), so the corrected asymmetry does not depend on the protocol. Its
  variance is estimated without bias from Wishart moments (a plain jackknife over-estimates the
  noise-only part, which made 10-seed intervals cover ~99%); the interval is ± t_{n−1}·SE on
  the squared scale (asymmetry² by the delta method for a ratio), mapped back by the square root.
- Row cosine and intra-family+ (not quadratic): leave-one-seed-out jackknife, bias-corrected
  estimate ± t_{n−1}·SE, withheld when the weakest used row's self-gain is below
  :data:`MIN_ROW_Z_FOR_DIAGNOSTICS` paired SEs.
- All corrected diagnostics need :data:`MIN_CORRECTION_SEEDS` seeds; below, only the plug-in.
  Where runs lost seeds, the jackknife moves each run on its own scale (:func:`jackknife_matrices`);
  the intervals need every used run to have finished :data:`MIN_CORRECTION_SEEDS` seeds, and row
  cosine's every seed (bench/RESULTS.md, "Cells with missing seeds").
- prop+ and reciprocity+ count signs: cells near 0 flip with noise, which biases the count by an
  unknown amount; a percentile seed bootstrap covered 95-96% with strong self-gains but 69% at
  z = 3 (SV-like, 16 languages), and no observable rule separates the two, so they get no interval.
- The paper's plug-in value of every diagnostic (on the matrix of ``build_cltm``, flagged rows
  included) is kept beside the headline value.
- Formal tests (``agnostic`` M = J, ``symmetric`` M = Mᵀ, ``equal_profiles`` M[t, s] = c_s):
  per-seed contrast vectors with mean 0 under the null (exact linear contrasts for M = J,
  contrasts of the seed-linearised cells otherwise) and a Box-type F test whose degrees of
  freedom come from the seed covariance (there are more contrasts than seeds, so no Hotelling
  test); a sign-flip permutation test would be exact but cannot reach p < 0.05 below 6 seeds.
- Donors: P(best) and rank intervals from an empirical-Bayes posterior of each target's pair
  means (the only runs that order the donors of a target), each over its finished seeds as in M,
  with the covariance of runs through the seeds they share; the best set is the smallest set of
  donors by decreasing P(best) reaching 0.95 (DESIGN.md §9).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cltm_sb.analysis import diagnostics as diag
from cltm_sb.analysis.matrix import (
    DEFAULT_MIN_SEEDS,
    FLAG_SE_MULTIPLE,
    pair_key,
    reason_matrix,
    self_key,
    single_key,
)

DEFAULT_LEVEL = 0.95
# Bias correction and diagnostic intervals: below this many seeds a leave-one-out estimate of
# the noise is too unstable (the calibration at 3 seeds misses 90%).
MIN_CORRECTION_SEEDS = 4
# Row cosine and intra-family+ intervals are printed only when every used row's self-gain is at
# least this many paired SEs above zero: with weaker rows the ratio M is too non-linear in the
# seed means for their jackknife (without it: 84% at z = 3, SV-like, 16 languages, 10 seeds; with
# 4: 5 of 7 printed at z = 3, 6 languages; with 5, every setting meets its target and z = 10
# grids still print 88-100% of the time). RFD and asymmetry hold their coverage at z = 3 without it.
MIN_ROW_Z_FOR_DIAGNOSTICS = 5.0
# Row cosine's jackknife interval on grids whose runs lost seeds covered 88% (SV-like truth, L = 6,
# 10 seeds, each run losing a seed with probability 0.1; 91.8% on complete grids): not printed there.
# The symmetric and equal-profile tests rest on the same plain jackknife: not run there either.
INCOMPLETE_RUNS_REASON = (
    "a used run finished {fewest} of the {n} {unit}s: {what} is calibrated only when every used run "
    "finished every {unit}{evidence}; `cltm run` retries the failed runs"
)


def incomplete_runs_reason(what: str, fewest: int, n: int, unit: str, evidence: str = "") -> str:
    """Why ``what`` (an interval, a test) is withheld on a grid where a used run lost seeds."""
    return INCOMPLETE_RUNS_REASON.format(what=what, fewest=fewest, n=n, unit=unit, evidence=evidence)


# The paper's Table 1 diagnostics, in the order of the one table (diagnostics.DIAGNOSTICS).
DIAGNOSTIC_NAMES = tuple(d.key for d in diag.diagnostics_in(diag.TABLE1))
NO_VERDICT_FLAGGED = "self-gain not above noise"
# A defined cell two of whose runs share fewer than two seeds: a covariance its variance needs is
# not estimated (PairedCells.estimable), so it has no interval, test or verdict.
NO_SHARED_SEEDS = (
    "no interval or test: two of its runs (single, self, pair) share fewer than 2 seeds; "
    "`cltm run` retries the failed runs"
)
# Which variability the intervals include, and the two sentences that say so (report, README,
# intervals.json): a paper quoting an interval needs to know what it leaves out.
VARIABILITY = "seed"
VARIABILITY_NOTE = (
    "The confidence intervals account for seed variability only: the spread of results across training "
    "seeds (head initialisation and data order), with runs that share a seed treated as paired. "
    "They do not account for which speakers were drawn into the training subsets, nor for the "
    "choice of the training size N."
)
# With several data draws (cltm prepare --draws, cltm plan --draws): DESIGN.md §8, §9.
VARIABILITY_DATA = "seed+data"
VARIABILITY_DATA_NOTE = (
    "The confidence intervals account for seed and data variability: the spread of results across "
    "training seeds and across {n_draws} independent draws of the speakers in the training subsets, "
    "with the draws as the independent units (each draw's seeds averaged; runs that share a draw "
    "treated as paired). They do not account for the choice of the training size N, nor for the "
    "test sets, which every draw shares."
)


def variability_of(n_draws: int) -> tuple[str, str]:
    """(variability, the sentences that say what it includes) for a grid of ``n_draws`` draws."""
    if n_draws > 1:
        return VARIABILITY_DATA, VARIABILITY_DATA_NOTE.format(n_draws=n_draws)
    return VARIABILITY, VARIABILITY_NOTE

Array = np.ndarray


# --------------------------------------------------------------------------------------------
# Seed-aligned arrays


@dataclass
class SeedArrays:
    """Per-seed values of one grid, NaN where a run or an evaluation is missing."""

    locales: list[str]
    seeds: list[int]
    single: Array  # [seed, target]
    self_: Array  # [seed, target]
    pair: Array  # [seed, target, donor], diagonal NaN
    # What one unit (row) is: a seed, or a data draw whose seeds are averaged (analysis.draws).
    unit: str = "seed"

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def stacked(self) -> Array:
        """[seed, column] with columns single (L), self (L), pair (L·L): one matrix for ``W @ Y``."""
        n = self.n_seeds
        return np.concatenate([self.single, self.self_, self.pair.reshape(n, -1)], axis=1)


def _key_index(locales: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """train_key -> (kind 0 single / 1 self / 2 pair, i, j) with i < j for pairs."""
    index: dict[str, tuple[int, int, int]] = {}
    for i, t in enumerate(locales):
        index[single_key(t)] = (0, i, -1)
        index[self_key(t)] = (1, i, -1)
        for j in range(i + 1, len(locales)):
            index[pair_key(t, locales[j])] = (2, i, j)
    return index


def seed_arrays(table: pd.DataFrame, locales: Sequence[str] | None = None) -> SeedArrays:
    """Seed-aligned arrays from a tidy table (``train_key, eval_locale, seed, value``).

    As in ``build_cltm``, only single and self runs evaluated on their own language and pair runs
    evaluated on one of their two languages are used; other rows are ignored.
    """
    locales = list(locales) if locales is not None else sorted(set(table["eval_locale"]))
    if not locales:
        raise ValueError("no evaluations to build a matrix from")
    if "draw" in table.columns and table["draw"].nunique() > 1:
        raise ValueError(
            "the records hold several data draws, whose runs share seeds: analyse them with "
            "analyze_uncertainty (draws as units) or select one draw"
        )
    seeds = sorted(int(s) for s in pd.unique(table["seed"]))
    n, L = len(seeds), len(locales)
    loc_index = {c: i for i, c in enumerate(locales)}
    seed_index = {s: k for k, s in enumerate(seeds)}
    keys = _key_index(locales)
    coded = table["train_key"].map(keys)
    known = coded.notna().to_numpy().copy()
    ev = table["eval_locale"].map(loc_index)
    known &= ev.notna().to_numpy()
    sub_codes = np.array(coded[known].tolist(), dtype=int).reshape(-1, 3)
    e = ev[known].to_numpy(dtype=int)
    k = table["seed"][known].map(lambda s: seed_index[int(s)]).to_numpy(dtype=int)
    v = table["value"][known].to_numpy(dtype=float)
    kind, a, b = sub_codes[:, 0], sub_codes[:, 1], sub_codes[:, 2]
    # Target = the evaluated language, donor = the other language of the pair.
    own = (kind < 2) & (e == a)
    on_pair = (kind == 2) & ((e == a) | (e == b))
    donor = np.where(e == a, b, a)
    flat = np.full((n, 2 * L + L * L), np.nan)
    col = np.where(kind == 0, a, np.where(kind == 1, L + a, 2 * L + e * L + donor))
    use = own | on_pair
    counts = np.zeros(flat.shape, dtype=int)
    np.add.at(counts, (k[use], col[use]), 1)
    if (counts > 1).any():
        kk, cc = np.argwhere(counts > 1)[0]
        raise ValueError(
            f"duplicate evaluation for seed {seeds[kk]} (column {cc}); the loader refuses these"
        )
    flat[k[use], col[use]] = v[use]
    return SeedArrays(
        locales=locales,
        seeds=seeds,
        single=flat[:, :L],
        self_=flat[:, L : 2 * L],
        pair=flat[:, 2 * L :].reshape(n, L, L),
    )


# --------------------------------------------------------------------------------------------
# Point estimates (equal to build_cltm) and weighted replicates


@dataclass
class PointEstimate:
    """The CLTM as ``build_cltm`` computes it, with its validity masks."""

    matrix: Array  # [t, s], NaN where undefined
    self_gain: Array  # [t]
    self_gain_se: Array  # naive SE of build_cltm (decides the 2-SE flag)
    valid_rows: Array  # bool [t]
    flagged: Array  # bool [t]: valid row whose self-gain is within 2 SE of zero
    entries: Array  # bool [t, s]: finite entries of ``matrix``
    n_seeds: Array  # [t, s] seeds behind each entry (self run on the diagonal)


def _nan_moments(x: Array) -> tuple[Array, Array, Array]:
    """Mean, variance (ddof=1, NaN below 2) and count over axis 0, ignoring NaN."""
    finite = np.isfinite(x)
    count = finite.sum(axis=0)
    total = np.where(finite, x, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        dev = np.where(finite, x - mean, 0.0)
        var = np.where(count > 1, (dev**2).sum(axis=0) / (count - 1), np.nan)
    return mean, var, count


def point_estimate(arrays: SeedArrays, min_seeds: int = DEFAULT_MIN_SEEDS) -> PointEstimate:
    """M[t, s] with the NaN rules of DESIGN.md §6 (same values as ``build_cltm``)."""
    m1, v1, n1 = _nan_moments(arrays.single)
    mself, vself, nself = _nan_moments(arrays.self_)
    mp, _, np_ = _nan_moments(arrays.pair)
    usable_single = (n1 >= min_seeds) & np.isfinite(m1)
    usable_self = (nself >= min_seeds) & np.isfinite(mself)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(usable_single & usable_self, mself - m1, np.nan)
        gain_se = np.sqrt(vself / nself + v1 / n1)
    gain_se = np.where(np.isfinite(gain), gain_se, np.nan)
    valid = np.isfinite(gain) & (gain > 0)
    flagged = valid & np.isfinite(gain_se) & (gain <= FLAG_SE_MULTIPLE * gain_se)
    usable_pair = (np_ >= min_seeds) & np.isfinite(mp)
    entries = valid[:, None] & usable_pair
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(entries, (mp - m1[:, None]) / gain[:, None], np.nan)
    idx = np.arange(len(arrays.locales))
    matrix[idx, idx] = np.where(valid, 1.0, np.nan)
    entries[idx, idx] = valid
    seeds = np_.astype(int)
    seeds[idx, idx] = nself
    return PointEstimate(matrix, gain, gain_se, valid, flagged, entries, seeds)


def weighted_matrices(arrays: SeedArrays, weights: Array, entries: Array) -> Array:
    """M for every row of ``weights`` ([replicate, seed]): [replicate, t, s], NaN off ``entries``.

    A replicate's P is the weighted mean of the seeds it has; a cell that loses all its seeds in a
    replicate is NaN there.
    """
    return _matrices_of_means(_weighted_means(arrays.stacked(), weights), len(arrays.locales), entries)


def _weighted_means(y: Array, weights: Array) -> Array:
    """[replicate, column]: each column's weighted mean over its finite seeds (``W @ Y``)."""
    finite = np.isfinite(y)
    sums = weights @ np.where(finite, y, 0.0)
    counts = weights @ finite.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _matrices_of_means(means: Array, L: int, entries: Array) -> Array:
    """M [replicate, t, s] from replicate means of the stacked columns (single, self, pair)."""
    single, self_ = means[:, :L], means[:, L : 2 * L]
    pair = means[:, 2 * L :].reshape(-1, L, L)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (pair - single[:, :, None]) / (self_ - single)[:, :, None]
    idx = np.arange(L)
    m[:, idx, idx] = 1.0
    return np.where(entries[None], m, np.nan)


def jackknife_matrices(arrays: SeedArrays, entries: Array) -> Array:
    """Leave-one-seed-out M [seed, t, s], each run's mean moved on its own jackknife scale.

    Dropping seed k from a run that has m of the n seeds moves its mean by (ȳ − y_k)/(m − 1), but
    the jackknife over n seeds multiplies every move by n − 1 (variance) and sums n of them: such a
    run's noise was counted (n − 1)·m / (n·(m − 1)) times, in the SEs and in the bias corrections
    alike, and its lone seeds dominated both. Here the move is scaled by √(n·(m − 1) / ((n − 1)·m)),
    which makes both terms right for every run (exactly the plain jackknife when m = n), and a seed
    a run lacks leaves it unchanged, as before.
    """
    n = arrays.n_seeds
    y = arrays.stacked()
    plain = _weighted_means(y, jackknife_weights(n))
    count = np.isfinite(y).sum(axis=0)
    mean = _nan_moments(y)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.sqrt(n * (count - 1) / ((n - 1) * count))
        moved = mean + scale * (plain - mean)
    means = np.where(count == n, plain, moved)
    return _matrices_of_means(means, len(arrays.locales), entries)


def jackknife_weights(n_seeds: int) -> Array:
    """Leave-one-seed-out weights: row k drops seed k."""
    return 1.0 - np.eye(n_seeds)


def bootstrap_weights(n_seeds: int, n_resamples: int, rng: np.random.Generator) -> Array:
    """Seed-bootstrap weights: each row counts how often each seed was drawn (same draw for every run)."""
    draws = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    return np.stack([np.bincount(row, minlength=n_seeds) for row in draws]).astype(float)


# --------------------------------------------------------------------------------------------
# Cells: paired statistics, Fieller intervals, p-values, BH


@dataclass
class PairedCells:
    """Per-cell paired statistics over the seeds where pair, single and self all exist
    (:func:`paired_cells`), or over every finished seed (:func:`cell_statistics`); s_* / scale
    are the (co)variances of mean(d) and mean(g)."""

    d_mean: Array  # mean of d_k = y_ts,k − y_t,k
    g_mean: Array  # mean of g_k = y_tt,k − y_t,k (same seeds)
    s_dd: Array
    s_gg: Array
    s_dg: Array
    n: Array  # paired seeds per cell
    df: Array | None = None  # t degrees of freedom (None: n − 1, every seed shared)

    @property
    def dof(self) -> Array:
        """The t quantile's degrees of freedom: n − 1, or :func:`_variance_df` with missing seeds."""
        return self.n - 1 if self.df is None else self.df

    @property
    def scale(self) -> Array:
        """s_* / scale are the (co)variances of the two means: n, or 1 where the three runs share
        no seed (:func:`cell_statistics` estimates them from the seeds each pair of runs shares)."""
        return np.maximum(self.n, 1)

    @classmethod
    def from_mean_covariances(
        cls, d_mean: Array, g_mean: Array, var_d: Array, var_g: Array, cov_dg: Array, n: Array, df: Array
    ) -> PairedCells:
        """Cells given the (co)variances of the two means themselves, stored times :attr:`scale`."""
        cells = cls(d_mean, g_mean, var_d, var_g, cov_dg, n, df)
        cells.s_dd, cells.s_gg, cells.s_dg = cells.scale * var_d, cells.scale * var_g, cells.scale * cov_dg
        return cells

    @property
    def estimable(self) -> Array:
        """Cells with an interval and a test: finite mean and (co)variances, df above 0. Paired,
        that is n ≥ 2; over every finished seed, each pair of runs sharing at least two seeds."""
        finite = np.isfinite(self.d_mean) & np.isfinite(self.s_dd) & np.isfinite(self.s_gg)
        with np.errstate(invalid="ignore"):
            return finite & np.isfinite(self.s_dg) & (self.dof > 0)

    @property
    def se(self) -> Array:
        """Delta-method SE of mean(d)/mean(g) from the paired (co)variances."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.d_mean / self.g_mean
            var = (self.s_dd - 2 * r * self.s_dg + r**2 * self.s_gg) / (self.scale * self.g_mean**2)
        return np.sqrt(np.maximum(var, 0.0))


def paired_cells(arrays: SeedArrays) -> PairedCells:
    """d and g per seed and cell, their means and (co)variances (ddof=1)."""
    single = arrays.single[:, :, None]
    d = arrays.pair - single
    g = np.broadcast_to((arrays.self_ - arrays.single)[:, :, None], d.shape)
    both = np.isfinite(d) & np.isfinite(g)
    n = both.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dm = np.where(both, d, 0.0).sum(axis=0) / n
        gm = np.where(both, g, 0.0).sum(axis=0) / n
        dd, gg = np.where(both, d - dm, 0.0), np.where(both, g - gm, 0.0)
        denom = np.where(n > 1, n - 1, np.nan)
        return PairedCells(
            dm, gm, (dd**2).sum(0) / denom, (gg**2).sum(0) / denom, (dd * gg).sum(0) / denom, n
        )


def _overlap_covariance(x: Array, y: Array) -> tuple[Array, Array, Array, Array]:
    """(c_xy, n_xy, n_x, n_y): the sample covariance over the seeds where both are finite (axis 0;
    ddof=1, NaN below two), their number, and each one's number of finite seeds."""
    x, y = np.broadcast_arrays(x, y)
    n_x, n_y = np.isfinite(x).sum(axis=0), np.isfinite(y).sum(axis=0)
    both = np.isfinite(x) & np.isfinite(y)
    n_xy = both.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(both, x, 0.0).sum(axis=0) / n_xy
        my = np.where(both, y, 0.0).sum(axis=0) / n_xy
        c = np.where(both, (x - mx) * (y - my), 0.0).sum(axis=0) / np.where(n_xy > 1, n_xy - 1, np.nan)
    return c, n_xy, n_x, n_y


def _mean_covariance(x: Array, y: Array) -> Array:
    """Cov(mean of x, mean of y), each mean over its own finite seeds (axis 0).

    With seed sets S_x, S_y and their overlap S_xy, Cov = |S_xy|·c_xy / (|S_x|·|S_y|), c_xy the
    sample covariance over the overlap (ddof=1; NaN below two shared seeds). With x = y it is
    var / n; with every seed shared it is c_xy / n, so sums of these are the paired variances.
    """
    c, n_xy, n_x, n_y = _overlap_covariance(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        return n_xy * c / (n_x * n_y)


def contrast_moments(
    later: Array, earlier: Array, ratio: float = 1.0
) -> tuple[Array, Array, Array, Array]:
    """Mean of ``later`` − ratio·mean of ``earlier``, each over its own finished seeds (axis 0),
    the variance of that contrast, the number of seeds both share and the degrees of freedom of
    the variance (Satterthwaite's, :func:`_variance_df`; n − 1 when every seed is shared).

    The variance combines each mean's variance with their covariance through the shared seeds
    (:func:`_mean_covariance`), so a seed missing from one run still counts in the other's mean;
    with every seed shared it is the paired variance of later_k − ratio·earlier_k over n.
    """
    mean = _nan_moments(later)[0] - ratio * _nan_moments(earlier)[0]
    var = (
        _mean_covariance(later, later) + ratio**2 * _mean_covariance(earlier, earlier)
        - 2 * ratio * _mean_covariance(later, earlier)
    )
    count = (np.isfinite(later) & np.isfinite(earlier)).sum(axis=0)
    runs = (earlier, later)
    weights = (np.full(np.shape(count), -ratio), np.ones(np.shape(count)))
    df = _clipped_df(_variance_df(runs, weights), count, runs)
    return mean, var, count, df


def _variance_df(runs: Sequence[Array], weights: Sequence[Array]) -> Array:
    """Satterthwaite degrees of freedom of the estimated Var(Σ_u w_u·mean(run_u)) (axis 0 = seeds).

    That estimate, Σ_uv w_u·w_v·|S_uv|·c_uv / (|S_u|·|S_v|) (see :func:`_mean_covariance`), is a
    quadratic form zᵀAz of the per-seed values whose block (u, v) is a_uv times the centring matrix
    of S_uv, a_uv = w_u·w_v·|S_uv| / (|S_u|·|S_v|·(|S_uv| − 1)). With seeds independent and Gaussian,
    Var(zᵀAz) = 2·tr((AΣ)²), Σ's blocks being the per-seed covariances c_uv times I, and
    tr(C_S·C_T) = k − k/|S| − k/|T| + k²/(|S|·|T|) for k = |S ∩ T|; df = 2·E² / Var with the c_uv
    plugged in. With every seed shared it is exactly n − 1 (the paired t). Runs that lost
    different seeds leave fewer seeds shared by all than each run has, and n_shared − 1 (what the
    t quantile used before) made the intervals too wide: 98.7% coverage at 10 seeds when each run
    lost a seed with probability 0.3 (bench/RESULTS.md, "Cells with missing seeds").
    """
    runs = np.broadcast_arrays(*runs)
    finite = [np.isfinite(r) for r in runs]
    n = runs[0].shape[0]
    counts = [f.sum(axis=0) for f in finite]
    if all(((c == 0) | (c == n)).all() for c in counts):
        # No run lost some of its seeds (a complete grid, NaN where a run is absent): n − 1 where
        # all runs exist (the paired variance, what _clipped_df would make of the loops below).
        return np.where(np.logical_and.reduce([c == n for c in counts]), n - 1.0, np.nan)
    m = len(runs)
    coef, cov, count = {}, {}, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for u in range(m):
            for v in range(m):
                c, n_uv, n_u, n_v = _overlap_covariance(runs[u], runs[v])
                coef[u, v] = weights[u] * weights[v] * n_uv / (n_u * n_v * (n_uv - 1))
                cov[u, v], count[u, v] = c, n_uv
        estimate = sum(coef[u, v] * (count[u, v] - 1) * cov[u, v] for u, v in coef)
        trace2 = 0.0
        for (u, v), (w, t) in itertools.product(coef, repeat=2):
            k = (finite[u] & finite[v] & finite[w] & finite[t]).sum(axis=0)
            tr_cc = k * (1 - 1 / count[u, v] - 1 / count[w, t]) + k**2 / (count[u, v] * count[w, t])
            trace2 = trace2 + coef[u, v] * coef[w, t] * cov[v, w] * cov[t, u] * tr_cc
        return estimate**2 / trace2


def _clipped_df(df: Array, shared: Array, runs: Sequence[Array]) -> Array:
    """``df`` kept between n_shared − 1 (the seeds every run has) and n_any − 1 (the seeds some
    run has): a plug-in covariance far from the truth can push Satterthwaite's value outside.
    Below two shared seeds the floor is −1 or 0, i.e. none: Satterthwaite's value stands."""
    n_any = np.logical_or.reduce(np.broadcast_arrays(*[np.isfinite(r) for r in runs])).sum(axis=0)
    df = np.where(np.isfinite(df), df, shared - 1)
    return np.clip(df, shared - 1, np.maximum(n_any - 1, shared - 1)).astype(float)


def cell_statistics(arrays: SeedArrays) -> PairedCells:
    """The cells' ratio statistics over every finished seed, as :class:`PairedCells`.

    ``d_mean``/``g_mean`` are P(a_t ∪ a_s) − P(a_t) and P(a_t ∪ b_t) − P(a_t) with each P the
    mean of all its finished seeds, so their ratio is the printed M (build_cltm). ``s_*`` / n are
    the variances and covariance of those two differences, with the covariance of runs through
    the seeds they share; ``n`` is the number of seeds all three runs share and ``df`` the t
    quantile's degrees of freedom (:func:`_variance_df`, n − 1 when every seed is shared). With
    every seed shared this is exactly :func:`paired_cells`. A cell whose three runs share fewer
    than two seeds still has its variance, interval and test when each two of them share at
    least two (bench/RESULTS.md, "Cells whose three runs share fewer than two seeds": they cover
    97-99%); with fewer, a covariance is not estimated and the cell has none. Over the shared seeds
    only, a failed run made the interval and verdict describe another ratio than M: a positive
    M could be printed beside an interval below 0 and the verdict "hurts".
    """
    single = arrays.single[:, :, None]
    self_ = arrays.self_[:, :, None]
    pair = arrays.pair
    with np.errstate(invalid="ignore"):
        d_mean = _nan_moments(pair)[0] - _nan_moments(single)[0]
        g_mean = np.broadcast_to(_nan_moments(self_)[0] - _nan_moments(single)[0], d_mean.shape)
    v_single = _mean_covariance(single, single)
    var_d = _mean_covariance(pair, pair) + v_single - 2 * _mean_covariance(pair, single)
    var_g = _mean_covariance(self_, self_) + v_single - 2 * _mean_covariance(self_, single)
    cov_dg = (
        _mean_covariance(pair, self_) - _mean_covariance(pair, single)
        - _mean_covariance(single, self_) + v_single
    )
    n = (np.isfinite(pair) & np.isfinite(single) & np.isfinite(self_)).sum(axis=0)
    var_g = np.broadcast_to(var_g, d_mean.shape)
    # One df per cell, that of d − M·g at the printed M, for both the interval and the test so
    # that they agree; d − M·g = pair − M·self − (1 − M)·single.
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = d_mean / g_mean
    runs = (single, self_, pair)
    df = _variance_df(runs, (ratio - 1, -ratio, np.ones_like(ratio)))
    # Rounding can leave a zero variance slightly negative.
    var_d, var_g = np.maximum(var_d, 0.0), np.maximum(var_g, 0.0)
    # Each (co)variance comes from the seeds its two runs share, so with lost seeds the pair can
    # imply |corr(d, g)| > 1, a negative Var(d − M·g): Fieller's set then missed M itself (an
    # interval [x, x] beside M, 4% of cells at 3 seeds with 20% lost) and the SE read 0. The
    # correlation is clipped to [−1, 1], the nearest valid covariance.
    with np.errstate(invalid="ignore"):
        bound = np.sqrt(var_d * var_g)
        cov_dg = np.where(np.isfinite(bound), np.clip(cov_dg, -bound, bound), cov_dg)
    return PairedCells.from_mean_covariances(d_mean, g_mean, var_d, var_g, cov_dg, n, _clipped_df(df, n, runs))


def fieller_interval(
    cells: PairedCells, level: float = DEFAULT_LEVEL
) -> tuple[Array, Array, Array]:
    """Fieller's interval for mean(d)/mean(g) with a t quantile of ``cells.dof`` (n − 1 paired).

    Returns (lower, upper, bounded). Where the self-gain is not significant at the t level the
    confidence set is unbounded: lower = −inf, upper = +inf, bounded False; NaN where the cell is
    not :attr:`PairedCells.estimable`.
    """
    # A df near 0 (runs sharing few seeds) gives a huge t quantile: the set is then unbounded
    # (a < 0), and the squares that overflow on the way only say so.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        q2 = stats.t.ppf(0.5 + level / 2, cells.dof) ** 2 / cells.scale
        a = cells.g_mean**2 - q2 * cells.s_gg
        b = cells.d_mean * cells.g_mean - q2 * cells.s_dg
        c = cells.d_mean**2 - q2 * cells.s_dd
        disc = np.sqrt(np.maximum(b**2 - a * c, 0.0))
        bounded = np.isfinite(a) & (a > 0)
        lower = np.where(bounded, (b - disc) / a, -np.inf)
        upper = np.where(bounded, (b + disc) / a, np.inf)
    undefined = ~cells.estimable
    lower[undefined] = np.nan
    upper[undefined] = np.nan
    return lower, upper, bounded & ~undefined


def paired_p_values(cells: PairedCells) -> Array:
    """Two-sided p-value of the paired t-test mean(d) = 0 (i.e. M[t, s] = 0) per cell."""
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(cells.s_dd / cells.scale)
        t = cells.d_mean / se
        p = 2 * stats.t.sf(np.abs(t), cells.dof)
    # A zero spread: the difference is exact, p is 0 unless the difference is 0 too.
    exact = np.isfinite(cells.d_mean) & (se == 0)
    p = np.where(exact, np.where(cells.d_mean == 0, 1.0, 0.0), p)
    return np.where(cells.estimable, p, np.nan)


def bh_q_values(p: Array) -> Array:
    """Benjamini–Hochberg q-values of the finite entries of ``p`` (NaN stays NaN)."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    values = p[finite]
    m = values.size
    if m == 0:
        return q
    order = np.argsort(values)
    scaled = values[order] * m / np.arange(1, m + 1)
    # q_(i) = min over j >= i of p_(j)·m/j: a running minimum from the largest p down.
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(scaled, 1.0)
    q[finite] = out
    return q


# --------------------------------------------------------------------------------------------
# Diagnostics on stacks of matrices [replicate, t, s]


def _off(L: int) -> Array:
    return ~np.eye(L, dtype=bool)


def stack_rfd_squared(m: Array) -> Array:
    """RFD² = mean((M − 1)²) over finite entries (diagonal included, as in diagnostics.rfd)."""
    finite = np.isfinite(m)
    dev = np.where(finite, (m - 1.0) ** 2, 0.0)
    return dev.sum(axis=(1, 2)) / finite.sum(axis=(1, 2))


def stack_asymmetry_squared(m: Array) -> Array:
    """(||M − Mᵀ||_F / ||M||_F)² over entries whose mirror is finite too."""
    mt = np.transpose(m, (0, 2, 1))
    both = np.isfinite(m) & np.isfinite(mt)
    num = np.where(both, (m - mt) ** 2, 0.0).sum(axis=(1, 2))
    den = np.where(both, m**2, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def stack_row_cosine(m: Array, rows: Array) -> Array:
    """Mean cosine over pairs of distinct ``rows``, each pair over the columns finite in both."""
    finite = np.isfinite(m)
    a = np.where(finite, m, 0.0)
    f = finite.astype(float)
    inner = a @ np.transpose(a, (0, 2, 1))
    sq = a**2
    norm_i = sq @ np.transpose(f, (0, 2, 1))  # [r, i, j] = Σ_c m_ic² over columns finite in j
    norm_j = np.transpose(norm_i, (0, 2, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = inner / np.sqrt(norm_i * norm_j)
    pairs = np.triu(rows[:, None] & rows[None, :], k=1)
    cos = np.where(pairs[None] & np.isfinite(cos) & (norm_i * norm_j > 0), cos, np.nan)
    with np.errstate(invalid="ignore"):
        count = np.isfinite(cos).sum(axis=(1, 2))
        return np.where(count > 0, np.nansum(cos, axis=(1, 2)) / np.maximum(count, 1), np.nan)


def stack_intra_family(m: Array, families: Sequence[str]) -> Array:
    """Share of the positive off-diagonal mass within families."""
    fam = np.asarray(families, dtype=object)
    same = fam[:, None] == fam[None, :]
    off = _off(m.shape[1])
    pos = np.where(np.isfinite(m) & off[None], np.maximum(m, 0.0), 0.0)
    total = pos.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.where(same[None], pos, 0.0).sum(axis=(1, 2)) / total, np.nan)


@dataclass
class DiagnosticInterval:
    """One diagnostic: headline value, interval (None when not calibrated), the paper's plug-in."""

    name: str
    point: float | None
    lower: float | None
    upper: float | None
    plugin: float | None
    method: str
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "lower": self.lower,
            "upper": self.upper,
            "plugin": self.plugin,
            "method": self.method,
            "reason": self.reason,
        }


def _num(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _without_interval(
    name: str, point: float | None, plugin: float | None, method: str, reason: str
) -> DiagnosticInterval:
    """A diagnostic printed without an interval, and why."""
    return DiagnosticInterval(name, point, None, None, plugin, method, reason)


def jackknife(full: float, leave_out: Array) -> tuple[float, float]:
    """Bias-corrected estimate (mean of pseudo-values) and its SE from leave-one-out values."""
    n = leave_out.size
    if n < 2 or not np.isfinite(full) or not np.all(np.isfinite(leave_out)):
        return float("nan"), float("nan")
    pseudo = n * full - (n - 1) * leave_out
    return float(pseudo.mean()), float(pseudo.std(ddof=1) / np.sqrt(n))


def cell_pseudo_values(
    arrays: SeedArrays, matrix: Array, entries: Array, m_loo: Array | None = None
) -> Array:
    """Per-seed linearised cells [seed, t, s]: jackknife pseudo-values of M, centred on M.

    Their mean is M and their covariance / n is the jackknife covariance of M over seeds, so the
    pairing of runs through seeds and through shared pair runs is kept in the cross-covariances.
    ``m_loo``: the leave-one-seed-out matrices (default: the plain jackknife's).
    """
    n = arrays.n_seeds
    if m_loo is None:
        m_loo = weighted_matrices(arrays, jackknife_weights(n), entries)
    pseudo = n * matrix[None] - (n - 1) * m_loo
    return np.where(entries[None], matrix[None] + pseudo - pseudo.mean(axis=0), np.nan)


@dataclass
class QuadraticForm:
    """An unbiased estimate of μᵀAμ from per-seed vectors x_k (mean μ) and its variance."""

    value: float
    variance: float


def quadratic_u(x: Array, apply_a: Callable[[Array], Array]) -> QuadraticForm:
    """U-statistic x̄ᵀAx̄ − tr(AS)/n and an unbiased estimate of its variance (normal x).

    ``x``: [seed, ...] per-seed vectors (0 where unused); ``apply_a`` applies the symmetric A to
    arrays of that shape (batched over the first axis). With Σ the per-seed covariance,
    Var = 4 μᵀAΣAμ / n + 2 tr((AΣ)²) / (n(n−1)); tr((AΣ)²) and μᵀAΣAμ are estimated without
    bias from the sample covariance S (Wishart moments). A plain jackknife of the squared norm
    over-estimates the noise-only term (Efron–Stein), which made these intervals too wide.
    """
    n = x.shape[0]
    nu = n - 1
    xbar = x.mean(axis=0)
    xc = x - xbar
    a_xbar = apply_a(xbar[None])[0]
    a_xc = apply_a(xc)
    flat_c, flat_ac = xc.reshape(n, -1), a_xc.reshape(n, -1)
    gram = flat_c @ flat_ac.T  # K_kl = <x_k − x̄, A (x_l − x̄)>
    gram = (gram + gram.T) / 2
    tr_as = np.trace(gram) / nu
    value = float(xbar.ravel() @ a_xbar.ravel() - tr_as / n)
    t1 = float(np.sum(gram * gram)) / nu**2  # tr(ASAS)
    tr_a_sigma_sq = (t1 - tr_as**2 / nu) * nu**2 / ((nu + 2) * (nu - 1)) if nu > 1 else float("nan")
    proj = flat_c @ a_xbar.ravel()
    quad = float(proj @ proj) / nu - tr_a_sigma_sq / n  # μᵀAΣAμ
    # Both are non-negative quantities: keep the positive parts, so that the variance is never
    # negative when the truth sits near the noise floor (where the unbiased estimates can be).
    tr_a_sigma_sq, quad = max(tr_a_sigma_sq, 0.0), max(quad, 0.0)
    variance = 4 * quad / n + 2 * tr_a_sigma_sq / (n * (n - 1))
    return QuadraticForm(value, float(variance))


def _rfd_squared_u(x: Array, entries: Array) -> tuple[float, float]:
    """Unbiased RFD² = mean over used entries of (M − 1)², and its variance."""
    count = entries.sum()
    y = np.where(entries[None], x - 1.0, 0.0)
    form = quadratic_u(y, lambda v: np.where(entries[None], v, 0.0) / count)
    return form.value, form.variance


def _asymmetry_squared_u(x: Array, entries: Array) -> tuple[float, float]:
    """Unbiased ||M − Mᵀ||² and ||M||² over mirrored entries; their ratio and its variance."""
    both = entries & entries.T
    y = np.where(both[None], x, 0.0)

    def a_num(v: Array) -> Array:
        # Σ_(t,s) (v_ts − v_st)² = vᵀAv with Av = 2(v − vᵀ) on mirrored entries.
        return np.where(both[None], 2.0 * (v - np.transpose(v, (0, 2, 1))), 0.0)

    def a_den(v: Array) -> Array:
        return np.where(both[None], v, 0.0)

    num, den = quadratic_u(y, a_num), quadratic_u(y, a_den)
    if not den.value > 0:
        return float("nan"), float("nan")
    ratio = num.value / den.value
    # Delta method: Var(N/D) ≈ Var(N − R·D) / D², N − R·D is the quadratic form A_N − R·A_D.
    lin = quadratic_u(y, lambda v: a_num(v) - ratio * a_den(v))
    return ratio, lin.variance / den.value**2


# (name, statistic on a stack, clip range of the result): jackknife-corrected, interval ± t·SE
_Jackknifed = tuple[str, Callable[[Array], Array], tuple[float, float]]


def _jackknifed_specs(rows: Array, families: Sequence[str] | None) -> list[_Jackknifed]:
    specs: list[_Jackknifed] = [
        ("row_cosine", lambda m: stack_row_cosine(m, rows), (-1.0, 1.0)),
    ]
    if families:
        specs.append(
            ("intra_family_positive", lambda m: stack_intra_family(m, families), (0.0, 1.0))
        )
    return specs


def plug_in_diagnostics(matrix: Array, families: Sequence[str] | None) -> dict[str, float]:
    """The paper's plug-in value of each Table-1 diagnostic (intra-family+ NaN without families)."""
    return {
        "rfd": diag.rfd(matrix),
        "asymmetry": diag.relative_asymmetry(matrix),
        "row_cosine": diag.row_cosine(matrix),
        "prop_positive": diag.prop_positive(matrix),
        "reciprocity_positive": diag.reciprocity_positive(matrix),
        "intra_family_positive": diag.intra_family_positive(matrix, families)
        if families
        else float("nan"),
    }


def self_gain_interval(arrays: SeedArrays, level: float = DEFAULT_LEVEL) -> tuple[Array, Array]:
    """t interval of G_self(t) = P(a_t ∪ b_t) − P(a_t): t_{n−1}, n the seeds, when both runs have
    every seed, else Satterthwaite's degrees of freedom (:func:`_variance_df`).

    With every seed shared it is the paired interval of g_k = y_tt,k − y_t,k: the seed effect
    shared by the single and self runs cancels (the naive SE of build_cltm, which adds the two
    variances, is kept for the 2-SE flag of DESIGN.md §6). Each P is the mean of all its finished
    seeds, as in the printed G_self, with the covariance of the shared seeds: over the shared
    seeds only, a failed run centred the interval on another gain than the one printed.
    """
    mean, var, count, df = contrast_moments(arrays.self_, arrays.single)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.5 + level / 2, df) * np.sqrt(np.maximum(var, 0.0))
    half = np.where(count > 1, half, np.nan)
    return mean - half, mean + half


def _row_z(arrays: SeedArrays) -> Array:
    """Self-gain over its paired SE (t statistic of g_k) per target."""
    g = arrays.self_ - arrays.single
    mean, var, count = _nan_moments(g)
    with np.errstate(invalid="ignore", divide="ignore"):
        return mean / np.sqrt(var / count)


def _interval_reason(se: float, z_min: float, min_row_z: float) -> str:
    """Why a computed interval is withheld ("" when it is printed)."""
    if not np.isfinite(se):
        return "a seed is the only one of some run: no leave-one-out estimate"
    if not z_min >= min_row_z:
        return (
            f"weakest used self-gain is {z_min:.1f} paired SEs above 0 (< {min_row_z:g}): the "
            "ratio M is too non-linear there for a calibrated interval"
        )
    return ""


def _fewest_run_seeds(arrays: SeedArrays, entries: Array) -> int:
    """The fewest finished seeds of a run behind the used ``entries`` (single, self and pair runs)."""
    rows = entries.any(axis=1)
    off = entries & _off(len(rows))
    counts = [
        np.isfinite(arrays.single).sum(axis=0)[rows],
        np.isfinite(arrays.self_).sum(axis=0)[rows],
        np.isfinite(arrays.pair).sum(axis=0)[off],
    ]
    return min((int(c.min()) for c in counts if c.size), default=arrays.n_seeds)


def _fewest_seeds_reason(fewest: int, arrays: SeedArrays) -> str:
    """Why the diagnostics' intervals are withheld when a used run finished too few seeds ("" if not)."""
    if fewest >= MIN_CORRECTION_SEEDS:
        return ""
    return (
        f"a used run finished only {fewest} of the {arrays.n_seeds} {arrays.unit}s: the intervals "
        f"are calibrated when every used run finished at least {MIN_CORRECTION_SEEDS} "
        "(bench/RESULTS.md, \"Cells with missing seeds\"); `cltm run` retries the failed runs"
    )


def _undefined_reason(name: str, matrix: Array, families: Sequence[str] | None) -> str:
    """Why a diagnostic is undefined on the used rows' matrix, as diagnostics.json says it (the
    report printed "undefined on the used rows" where diagnostics.json said why)."""
    return diag.undefined_reasons(matrix, families).get(name, "undefined on the used rows")


def corrected_diagnostics(
    arrays: SeedArrays,
    point: PointEstimate,
    families: Sequence[str] | None = None,
    level: float = DEFAULT_LEVEL,
    min_row_z: float = MIN_ROW_Z_FOR_DIAGNOSTICS,
    plugins: Mapping[str, float] | None = None,
) -> dict[str, DiagnosticInterval]:
    """Bias-corrected diagnostics with calibrated intervals, and the paper's plug-in values.

    RFD and asymmetry: unbiased U-statistics of their squares on per-seed linearised cells, with
    an unbiased variance, interval ± t_{n−1}·SE on the squared scale, mapped back by the square
    root. Row cosine and intra-family+: leave-one-seed-out jackknife (bias-corrected estimate,
    ± t_{n−1}·SE). The corrected values use the valid rows of unflagged targets (a flagged row's
    ratio is too noisy to correct); the plug-in uses every valid row, as the paper does. Where a
    used run finished fewer than :data:`MIN_CORRECTION_SEEDS` seeds no interval is printed, and
    row cosine's only where every used run finished every seed (the calibrated patterns).
    """
    # The caller's plug-in values (diagnose() of the same matrix) keep diagnostics.json and
    # intervals.json equal by construction and spare a second pass over the matrix.
    plug = (
        {name: plugins[name] for name in DIAGNOSTIC_NAMES}
        if plugins is not None
        else plug_in_diagnostics(point.matrix, families)
    )
    n = arrays.n_seeds
    rows = point.valid_rows & ~point.flagged
    entries = point.entries & rows[:, None]
    used_note = ""
    if point.flagged.any():
        left = [c for c, f in zip(arrays.locales, point.flagged) if f]
        used_note = f" (rows of flagged targets {', '.join(left)} left out)"
    out: dict[str, DiagnosticInterval] = {}
    for name in ("prop_positive", "reciprocity_positive"):
        out[name] = _without_interval(
            name,
            _num(plug[name]),
            _num(plug[name]),
            "plug-in",
            "a count of signs is biased by cells near 0 (their sign flips with seed noise), and "
            "how many there are is not known: a seed-bootstrap interval covered 69% in a "
            "simulated SV-like grid (16 languages, 10 seeds, self-gain z = 3)",
        )
    corrected = ["rfd", "asymmetry", "row_cosine"] + (["intra_family_positive"] if families else [])
    if not families:
        out["intra_family_positive"] = _without_interval(
            "intra_family_positive", None, None, "plug-in", "no language families given"
        )
    if n < MIN_CORRECTION_SEEDS:
        for name in corrected:
            out[name] = _without_interval(
                name,
                _num(plug[name]),
                _num(plug[name]),
                "plug-in",
                f"{n} {arrays.unit}(s): bias correction and intervals need at least {MIN_CORRECTION_SEEDS}; "
                "the plug-in value is biased upward by seed noise (row cosine: downward)",
            )
        return out
    q = float(stats.t.ppf(0.5 + level / 2, n - 1))
    fewest = _fewest_run_seeds(arrays, entries)
    seeds_reason = _fewest_seeds_reason(fewest, arrays)
    z_min = float(np.nanmin(_row_z(arrays)[rows])) if rows.any() else float("nan")
    matrix = np.where(entries, point.matrix, np.nan)
    # Runs that lost seeds move on their own jackknife scale (jackknife_matrices); the formal tests
    # keep the plain jackknife until they are calibrated on such grids.
    m_loo = jackknife_matrices(arrays, entries)
    x = cell_pseudo_values(arrays, matrix, entries, m_loo)
    x0 = np.where(np.isfinite(x), x, 0.0)
    squared = {
        # Without an off-diagonal entry (one language) the diagonal's zeros are no evidence of M = J.
        "rfd": _rfd_squared_u(x0, entries) if (entries & _off(len(rows))).any() else (float("nan"), float("nan")),
        "asymmetry": _asymmetry_squared_u(x0, entries)
        if (entries & entries.T & _off(len(rows))).any()
        else (float("nan"), float("nan")),
    }
    for name, (est, var) in squared.items():
        se = math.sqrt(var) if var > 0 else float("nan")
        if not np.isfinite(est):
            out[name] = _without_interval(
                name,
                None,
                _num(plug[name]),
                "unbiased U-statistic of the square",
                _undefined_reason(name, matrix, families) + used_note,
            )
            continue
        reason = "" if np.isfinite(se) else "no positive variance estimate"
        if not np.all(np.isfinite(x[:, entries])):
            reason = "a seed is the only one of some run: no leave-one-out estimate"
        reason = reason or seeds_reason
        lower = upper = None
        if not reason:
            lower, upper = math.sqrt(max(est - q * se, 0.0)), math.sqrt(max(est + q * se, 0.0))
        out[name] = DiagnosticInterval(
            name,
            math.sqrt(max(est, 0.0)),
            lower,
            upper,
            _num(plug[name]),
            "unbiased U-statistic of the square over seed-linearised cells; interval "
            "± t_{n-1}·SE on the squared scale" + used_note,
            reason,
            extra={"se": se, "squared_scale": True, "estimate_raw": est},
        )
    m_full = matrix[None]
    for name, fn, (lo_clip, hi_clip) in _jackknifed_specs(rows, families):
        est, se = jackknife(float(fn(m_full)[0]), fn(m_loo))
        if not np.isfinite(est):
            out[name] = _without_interval(
                name,
                None,
                _num(plug[name]),
                "jackknife bias-corrected over seeds",
                _undefined_reason(name, matrix, families) + used_note,
            )
            continue
        reason = _interval_reason(se, z_min, min_row_z) or seeds_reason
        if not reason and fewest < n:
            reason = incomplete_runs_reason(
                "this jackknife interval", fewest, n, arrays.unit,
                " (it covered 88% where runs lost seeds, bench/RESULTS.md)",
            )
        lower = upper = None
        if not reason:
            lower = float(np.clip(est - q * se, lo_clip, hi_clip))
            upper = float(np.clip(est + q * se, lo_clip, hi_clip))
        reason = reason or WITHHELD_INTERVALS.get(name, "")
        if reason:
            lower = upper = None
        out[name] = DiagnosticInterval(
            name,
            float(np.clip(est, lo_clip, hi_clip)),
            lower,
            upper,
            _num(plug[name]),
            # A withheld interval has no method to name: the method says what the point is.
            "jackknife bias-corrected over seeds"
            + ("" if name in WITHHELD_INTERVALS else "; interval ± t_{n-1}·SE")
            + used_note,
            reason,
            extra={"se": se, "squared_scale": False, "estimate_raw": est},
        )
    return {name: out[name] for name in DIAGNOSTIC_NAMES}


# --------------------------------------------------------------------------------------------
# Formal tests of the whole matrix: agnostic (M = J), symmetric (M = Mᵀ), equal donor profiles

# Intervals that met their targets on the benchmark's truths but failed on another one: not printed
# (DESIGN.md §8) until they are calibrated on every truth; the estimate stays.
WITHHELD_INTERVALS = {
    "intra_family_positive": (
        "not calibrated for every structured truth: the jackknife interval covered 96% on one "
        "simulated SV-like truth but 74% on another (400 grids each, bench/RESULTS.md)"
    ),
}

# Names and null hypotheses of the tests in intervals.json.
TEST_NULLS = {
    "agnostic": "M = J: every donor helps every target as much as the target's own b_t",
    "symmetric": "M = Mᵀ: transfer from s to t equals transfer from t to s",
    "equal_profiles": "M[t, s] = c_s: each donor's transfer is the same for every target",
}
# The F approximation's f needs unbiased moments leaving one seed out (ν >= 2 there).
MIN_TEST_SEEDS = 4
TEST_METHOD = (
    "Box-type F test of per-seed contrasts: T = n·|mean|² / tr(S) ~ F(f, (n−1)·f), f = tr(Σ)²/tr(Σ²) "
    "from unbiased Wishart moments of the seed covariance, jackknife bias-corrected (a "
    "repeated-measures F test with a Huynh–Feldt-type correction; valid with more contrasts than seeds)"
)


@dataclass
class FormalTest:
    """One test of a hypothesis about the whole matrix (None where it cannot be computed)."""

    name: str
    statistic: float | None
    p_value: float | None
    method: str
    null: str
    df: tuple[float, float] | None = None
    n_contrasts: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "method": self.method,
            "null": self.null,
            "df": list(self.df) if self.df is not None else None,
            "n_contrasts": self.n_contrasts,
            "reason": self.reason,
        }


def _box_f(raw_gram: Array, p: int) -> float:
    """Box's f = tr(Σ)²/tr(Σ²) from the seeds' raw Gram matrix y yᵀ, by unbiased Wishart moments."""
    n = raw_gram.shape[0]
    nu = n - 1
    centre = np.eye(n) - 1.0 / n
    gram = centre @ raw_gram @ centre  # K_kl = <y_k − ȳ, y_l − ȳ>
    tr_s = float(np.trace(gram)) / nu
    tr_s2 = float(np.sum(gram * gram)) / nu**2
    tr_sigma2 = (tr_s2 - tr_s**2 / nu) * nu**2 / ((nu + 2) * (nu - 1))
    tr_sigma_sq = tr_s**2 - 2 * tr_sigma2 / nu
    return tr_sigma_sq / tr_sigma2 if tr_sigma2 > 0 and tr_sigma_sq > 0 else float(p)


def box_f_test(y: Array, rank: int | None = None) -> tuple[float, float, float, float]:
    """F test of mean zero for per-seed contrast vectors ``y`` [seed, contrast]; (T, p, f, ν).

    Seeds are independent, contrasts within a seed are correlated in any way (seed effects,
    shared runs). Under H0, n·|ȳ|² and tr(S) both have mean tr(Σ) and are approximately
    c·χ²_f and c·χ²_{νf}/ν with Box's f = tr(Σ)²/tr(Σ²); ȳ and S are independent, so T is
    approximately F(f, νf). f is a ratio of unbiased Wishart-moment estimates, bias-corrected
    by a leave-one-seed-out jackknife: the plug-in on S (rank <= n − 1) caps f at n − 1 (the
    test then rejects 0-2% at 5%), and the plain ratio over-estimates f with few seeds (8-10%
    at 5 seeds); the jackknifed ratio keeps 3-6.6% from 5 to 10 seeds on Gaussian contrasts with
    row-block correlations 0 to 0.9. ``rank``: free dimensions of the contrasts (f <= rank).
    Needs at least 4 seeds (the leave-one-out estimate needs ν >= 2).
    """
    n, p = y.shape
    nu = n - 1
    top = float(rank if rank is not None else p)
    ybar = y.mean(axis=0)
    raw = y @ y.T
    tr_s = float(np.trace(raw) - n * (ybar @ ybar)) / nu
    f_full = _box_f(raw, p)
    keep = ~np.eye(n, dtype=bool)
    f_loo = [_box_f(raw[np.ix_(keep[k], keep[k])], p) for k in range(n)]
    f = float(np.clip(n * f_full - (n - 1) * float(np.mean(f_loo)), 1.0, top))
    if not tr_s > 0:
        return float("nan"), float("nan"), f, float(nu)
    statistic = n * float(ybar @ ybar) / tr_s
    return statistic, float(stats.f.sf(statistic, f, nu * f)), f, float(nu)


def _complete_columns(y: Array) -> Array:
    """Contrasts observed in every seed (a test needs the same seeds behind every contrast)."""
    return y[:, np.all(np.isfinite(y), axis=0)]


def agnostic_contrasts(arrays: SeedArrays, point: PointEstimate, rows: Array) -> Array:
    """(y_ts,k − y_tt,k) / G_t per seed and off cell of ``rows``: mean 0 exactly when M = J.

    M[t, s] = 1 means P(a_t ∪ a_s, t) = P(a_t ∪ b_t, t), a linear hypothesis, so the contrast is
    exact (no ratio to linearise); dividing by the self-gain only puts rows on M's scale.
    """
    L = len(arrays.locales)
    use = point.entries & _off(L) & rows[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        e = (arrays.pair - arrays.self_[:, :, None]) / point.self_gain[None, :, None]
    return _complete_columns(e[:, use])


def symmetric_contrasts(x: Array, entries: Array) -> Array:
    """x_ts,k − x_st,k for t < s with both cells used (x: seed-linearised cells)."""
    both = np.triu(entries & entries.T, k=1)
    return _complete_columns(x[:, both] - np.transpose(x, (0, 2, 1))[:, both])


def profile_contrasts(x: Array, entries: Array) -> tuple[Array, int]:
    """Per donor column, each used cell minus the column's mean over its used targets.

    Returns the contrasts and their rank (a column of m cells centred on its mean has m − 1).
    """
    parts, rank = [], 0
    complete = entries & np.all(np.isfinite(x), axis=0)
    for s in range(entries.shape[1]):
        col = complete[:, s].copy()
        col[s] = False
        if col.sum() < 2:
            continue
        values = x[:, col, s]
        parts.append(values - values.mean(axis=1, keepdims=True))
        rank += int(col.sum()) - 1
    if not parts:
        return np.zeros((x.shape[0], 0)), 0
    return np.concatenate(parts, axis=1), rank


def _run_test(name: str, y: Array, rank: int, method: str) -> FormalTest:
    """The F test on contrasts with ``rank`` free dimensions (a column-centred block loses one)."""
    if y.shape[1] == 0 or rank < 1:
        return FormalTest(name, None, None, method, TEST_NULLS[name], reason="no usable cells")
    statistic, p, f, nu = box_f_test(y, rank)
    if not np.isfinite(statistic):
        return FormalTest(
            name, None, None, method, TEST_NULLS[name], reason="no seed spread in the contrasts"
        )
    return FormalTest(name, statistic, p, method, TEST_NULLS[name], (f, nu * f), rank)


def formal_tests(
    arrays: SeedArrays, point: PointEstimate, min_row_z: float = MIN_ROW_Z_FOR_DIAGNOSTICS
) -> dict[str, FormalTest]:
    """The three tests on the valid rows of unflagged targets (as the corrected diagnostics).

    ``agnostic`` is exact under Gaussian seed noise (a linear hypothesis). ``symmetric`` and
    ``equal_profiles`` concern ratios and use the seed-linearised cells of the diagnostics, so
    they need :data:`MIN_CORRECTION_SEEDS` seeds, like row cosine a weakest used self-gain of
    at least ``min_row_z`` paired SEs, and, like row cosine's interval, every used run finished.
    """
    n = arrays.n_seeds
    rows = point.valid_rows & ~point.flagged
    entries = point.entries & rows[:, None]
    out: dict[str, FormalTest] = {}
    if n < MIN_TEST_SEEDS:
        for name in TEST_NULLS:
            out[name] = FormalTest(
                name,
                None,
                None,
                TEST_METHOD,
                TEST_NULLS[name],
                reason=f"{n} {arrays.unit}(s): the test needs at least {MIN_TEST_SEEDS}",
            )
        return out
    y = agnostic_contrasts(arrays, point, rows)
    out["agnostic"] = _run_test(
        "agnostic",
        y,
        y.shape[1],
        TEST_METHOD + "; contrasts (P(a_t ∪ a_s) − P(a_t ∪ b_t)) / G_t, exact",
    )
    linear_method = TEST_METHOD + "; contrasts of seed-linearised cells (jackknife pseudo-values)"
    reason = ""
    if n < MIN_CORRECTION_SEEDS:
        reason = f"{n} {arrays.unit}(s): linearising the ratios needs at least {MIN_CORRECTION_SEEDS}"
    else:
        z_min = float(np.nanmin(_row_z(arrays)[rows])) if rows.any() else float("nan")
        reason = _interval_reason(0.0, z_min, min_row_z)
    fewest = _fewest_run_seeds(arrays, entries)
    if not reason and fewest < n:
        # Their pseudo-values come from the plain jackknife over the grid's seeds, which counts a
        # run that lost seeds more than once (see jackknife_matrices); not calibrated there.
        reason = incomplete_runs_reason("this test", fewest, n, arrays.unit)
    if reason:
        for name in ("symmetric", "equal_profiles"):
            out[name] = FormalTest(name, None, None, linear_method, TEST_NULLS[name], reason=reason)
        return out
    matrix = np.where(entries, point.matrix, np.nan)
    x = cell_pseudo_values(arrays, matrix, entries)
    y = symmetric_contrasts(x, entries & _off(len(rows)))
    out["symmetric"] = _run_test("symmetric", y, y.shape[1], linear_method)
    y, rank = profile_contrasts(x, entries & _off(len(rows)))
    out["equal_profiles"] = _run_test("equal_profiles", y, rank, linear_method)
    return out


# --------------------------------------------------------------------------------------------
# Donors: P(best) and rank intervals per target

DONOR_DRAWS = 4000
BEST_SET_MASS = 0.95
NO_P_BEST = "no P(best)"


@dataclass
class DonorRanks:
    """Per target (row) and donor (column): P(best), a rank interval and the 95% best set."""

    p_best: Array  # [t, s], NaN where not computed
    rank_lower: Array
    rank_upper: Array
    in_best_set: Array  # bool [t, s]
    # [t, s] what donors.csv says beside a P(best): the seeds it rests on when not every seed
    # finished, or why a valid target has none; "" elsewhere.
    notes: Array = field(default_factory=lambda: np.zeros((0, 0), dtype=object))


def best_set(p_best: Array, mass: float = BEST_SET_MASS) -> Array:
    """The smallest set of donors, by decreasing p_best, whose p_best sums to at least ``mass``."""
    p = np.where(np.isfinite(p_best), p_best, -1.0)
    order = np.argsort(-p, kind="stable")
    cumulative = np.cumsum(np.maximum(p[order], 0.0))
    # Donors before the first one that reaches the mass, and that one (float slack: 1e-9).
    k = int(np.searchsorted(cumulative, mass - 1e-9)) + 1
    chosen = np.zeros(p.shape, dtype=bool)
    chosen[order[: min(k, int(np.isfinite(p_best).sum()))]] = True
    return chosen


def _fewest_shared(values: Array) -> tuple[int, int, int]:
    """(seeds, a, b): the fewest seeds two columns of ``values`` (a = b: one column) finish together."""
    finite = np.isfinite(values).astype(int)
    shared = finite.T @ finite
    a, b = np.unravel_index(int(np.argmin(shared)), shared.shape)
    return int(shared[a, b]), int(a), int(b)


def _donor_noise(values: Array) -> tuple[Array, Array]:
    """Means of one target's pair runs over each run's finished seeds, as in the printed M, and
    the noise variances of those means.

    ``values[k, j]``: seed k of donor j's pair run on the target, NaN where it did not finish;
    every two donors share at least two seeds. The variances come from the covariance of the
    means (:func:`_mean_covariance`: runs paired through the seeds they share), centred on the
    row average, which removes the seed effect common to every run evaluated on the target,
    × m/(m−1) for the centring. With every seed finished this is the per-seed residual
    variance / n, as before. Over the seeds where all donors finished only, P(best) could rank
    the donors against the printed M, from as few as two seeds.
    """
    m = values.shape[1]
    cov = _mean_covariance(values[:, :, None], values[:, None, :])
    centre = np.eye(m) - 1.0 / m
    se2 = np.maximum(np.diag(centre @ cov @ centre), 0.0) * m / (m - 1)
    return _nan_moments(values)[0], se2


def _seed_notes(arrays: SeedArrays, t: int, donors: Array) -> list[str]:
    """Per donor of target t, ``pair run finished 3 of 10 seeds`` where it did not finish all."""
    n = np.isfinite(arrays.pair[:, t, donors]).sum(axis=0)
    total, unit = arrays.n_seeds, arrays.unit
    return [f"pair run finished {k} of {total} {unit}s" if k < total else "" for k in n]


def _unshared_note(arrays: SeedArrays, t: int, a: int, b: int) -> str:
    """Why target t has no P(best): donors a and b's pair runs on t share fewer than two seeds."""
    code, unit = arrays.locales, arrays.unit
    if a == b:
        return f"{NO_P_BEST}: the pair run of {code[a]} on {code[t]} finished fewer than 2 {unit}s"
    return f"{NO_P_BEST}: the pair runs of {code[a]} and {code[b]} on {code[t]} share fewer than 2 {unit}s"


def donor_ranks(
    arrays: SeedArrays,
    point: PointEstimate,
    level: float = DEFAULT_LEVEL,
    n_draws: int = DONOR_DRAWS,
    seed: int = 0,
) -> DonorRanks:
    """P(donor is the best) and rank intervals from the paired per-seed model of each row.

    With G_self(t) > 0, M[t, ·] orders the donors as the pair means P(a_t ∪ a_s, t) do: the
    single run and the self-gain shift and scale the row alike. So the ranking needs only the
    pair runs evaluated on t, each averaged over its finished seeds as in M; their noise comes
    from :func:`_donor_noise`, so that donors may differ in noise. The draws come from the
    empirical-Bayes posterior of the donors' means (normal prior around their average with a
    spread estimated by moments, t errors per donor with its run's finished seeds − 1 degrees
    of freedom); P(best) is the share of draws a donor wins, and the rank interval the
    central ``level`` range of its rank (1 = best). Flagged and undefined rows get NaN, and so
    do rows where two donors' pair runs share fewer than two seeds (``notes`` says so).
    Deterministic for a given ``seed``.
    """
    L = len(arrays.locales)
    p_best = np.full((L, L), np.nan)
    lower, upper = np.full((L, L), np.nan), np.full((L, L), np.nan)
    in_set = np.zeros((L, L), dtype=bool)
    notes = np.full((L, L), "", dtype=object)
    rng = np.random.default_rng(seed)
    rows = point.valid_rows & ~point.flagged
    alpha = (1.0 - level) / 2
    for t in np.flatnonzero(rows):
        donors = np.flatnonzero(point.entries[t] & (np.arange(L) != t))
        if donors.size == 0:
            continue
        m = donors.size
        if m == 1:
            p_best[t, donors], lower[t, donors], upper[t, donors] = 1.0, 1.0, 1.0
            in_set[t, donors] = True
            continue
        values = arrays.pair[:, t, donors]
        n, a, b = _fewest_shared(values)
        if n < 2:
            notes[t, donors] = _unshared_note(arrays, t, donors[a], donors[b])
            continue
        notes[t, donors] = _seed_notes(arrays, t, donors)
        means, se2 = _donor_noise(values)
        # Each donor's t has its own run's finished seeds − 1 degrees of freedom.
        df = np.isfinite(values).sum(axis=0) - 1
        # Empirical-Bayes shrinkage of the donors' means toward their average (normal prior of
        # spread τ², by moments): without it, near-tied donors give the observed leader too
        # much P(best) (the winner's curse), and the best set missed the true best in 18% of
        # near-agnostic targets at z = 3. A common shift does not change ranks, so the
        # average's own uncertainty is left out. τ² is kept above 1% of the mean SE² so that
        # exact ties (τ² = 0) still spread P(best) over the donors.
        tau2 = max(float(np.var(means, ddof=1)) - float(se2.mean()), 0.01 * float(se2.mean()))
        shrink = tau2 / (tau2 + se2)
        centre = means.mean()
        post = centre + shrink * (means - centre)
        draws = post + np.sqrt(shrink * se2) * rng.standard_t(df, size=(n_draws, m))
        # Rank (1 = best) = 1 + number of donors ahead in the draw; ties have probability 0.
        rank = 1 + (draws[:, None, :] > draws[:, :, None]).sum(axis=2)
        # counts[r, j]: draws where donor j has rank r + 1; quantiles from its cumulative share.
        counts = np.bincount(((rank - 1) * m + np.arange(m)).ravel(), minlength=m * m)
        counts = counts.reshape(m, m)
        share = np.cumsum(counts, axis=0) / n_draws
        p_best[t, donors] = share[0]
        lower[t, donors] = 1 + (share < alpha - 1e-12).sum(axis=0)
        upper[t, donors] = 1 + (share < 1.0 - alpha - 1e-12).sum(axis=0)
        in_set[t, donors] = best_set(p_best[t, donors])
    return DonorRanks(p_best, lower, upper, in_set, notes)


# --------------------------------------------------------------------------------------------
# The result object


@dataclass
class UncertaintyResult:
    """Everything the report needs about uncertainty, computed once."""

    locales: list[str]
    seeds: list[int]
    level: float
    point: PointEstimate
    cells: PairedCells
    cell_lower: Array
    cell_upper: Array
    cell_bounded: Array
    se_paired: Array
    p_values: Array
    q_values: Array
    verdicts: Array  # object [t, s]: helps / hurts / unclear / n/a
    verdict_reasons: Array  # object [t, s]
    diagnostics: dict[str, DiagnosticInterval]
    gain_lower: Array = field(default_factory=lambda: np.zeros(0))  # [t], paired t interval
    gain_upper: Array = field(default_factory=lambda: np.zeros(0))
    tests: dict[str, FormalTest] = field(default_factory=dict)
    donor_ranks: DonorRanks | None = None
    # Data draws (analysis.draws): with more than one, the units above are draws, ``seeds`` are the
    # seeds run within them, and ``variance`` splits each cell's variance into seed and data parts.
    draws: list[int] = field(default_factory=lambda: [0])
    variance: Any = None  # analysis.draws.VarianceComponents when draws > 1

    @property
    def variability(self) -> str:
        """``seed``, or ``seed+data`` with more than one data draw."""
        return variability_of(len(self.draws))[0]

    @property
    def variability_note(self) -> str:
        """The sentences a paper can quote about what the intervals include."""
        return variability_of(len(self.draws))[1]

    @property
    def matrix(self) -> pd.DataFrame:
        return self._frame(self.point.matrix)

    def _frame(self, values: Array) -> pd.DataFrame:
        out = pd.DataFrame(values, index=self.locales, columns=self.locales)
        out.index.name, out.columns.name = "target", "donor"
        return out

    def to_intervals_json(self) -> dict[str, Any]:
        """The intervals.json contract: level, variability and one entry per diagnostic."""
        out = {
            "level": self.level,
            "variability": self.variability,
            "variability_note": self.variability_note,
            "n_seeds": len(self.seeds),
            "diagnostics": {name: d.to_dict() for name, d in self.diagnostics.items()},
            "tests": {name: t.to_dict() for name, t in self.tests.items()},
        }
        if len(self.draws) > 1:
            out["draws"] = list(self.draws)
            out["n_draws"] = len(self.draws)
            if self.variance is not None:
                out["variance_components"] = self.variance.summary()
        return out

    def donors_table(self) -> pd.DataFrame:
        """donors.csv: one row per off-diagonal cell (target, donor, value, lower, upper, verdict, q_value,
        p_best, rank_lower, rank_upper, in_best_set).

        An unbounded Fieller interval (self-gain not significant at the t level) is written as
        empty lower/upper, never as a number. p_best and the rank interval (1 = best) are empty
        for flagged and undefined targets; in_best_set marks the smallest set of donors, by
        decreasing p_best, whose p_best sums to at least 0.95 (DESIGN.md §9). ``reason`` also
        says when a donor's pair run did not finish every seed (its M and P(best) use the seeds
        it finished) or why a target has no P(best).
        """
        ranks = self.donor_ranks
        rows = []
        for i, t in enumerate(self.locales):
            for j, s in enumerate(self.locales):
                if i == j:
                    continue
                bounded = bool(self.cell_bounded[i, j]) and not bool(self.point.flagged[i])
                rows.append(
                    {
                        "target": t,
                        "donor": s,
                        "value": _num(self.point.matrix[i, j]),
                        "lower": _num(self.cell_lower[i, j]) if bounded else None,
                        "upper": _num(self.cell_upper[i, j]) if bounded else None,
                        "verdict": self.verdicts[i, j],
                        "q_value": _num(self.q_values[i, j]),
                        "reason": _joined(self.verdict_reasons[i, j], ranks.notes[i, j] if ranks else ""),
                        "p_best": _num(ranks.p_best[i, j]) if ranks else None,
                        "rank_lower": _rank(ranks.rank_lower[i, j]) if ranks else None,
                        "rank_upper": _rank(ranks.rank_upper[i, j]) if ranks else None,
                        "in_best_set": bool(ranks.in_best_set[i, j]) if ranks else False,
                    }
                )
        columns = ["target", "donor", "value", "lower", "upper", "verdict", "q_value", "reason"]
        columns += ["p_best", "rank_lower", "rank_upper", "in_best_set"]
        table = pd.DataFrame(rows, columns=columns)
        # Integer ranks with empty cells for undefined rows (not 3.0 / NaN in donors.csv).
        for name in ("rank_lower", "rank_upper"):
            table[name] = table[name].astype("Int64")
        return table


def _joined(*parts: str) -> str:
    """The non-empty parts, joined by "; "."""
    return "; ".join(p for p in parts if p)


def _rank(x: float) -> int | None:
    return int(x) if np.isfinite(x) else None


UNDEFINED_ROW = "row undefined (see the NaN reasons)"
UNDEFINED_CELL = "cell undefined (see the NaN reasons)"


def cell_verdicts(
    point: PointEstimate, cells: PairedCells, alpha: float
) -> tuple[Array, Array, Array, Array]:
    """p-values, BH q-values over the cells of valid unflagged rows, verdicts and their reasons."""
    L = point.matrix.shape[0]
    p = paired_p_values(cells)
    eligible = (
        point.entries & _off(L) & (point.valid_rows & ~point.flagged)[:, None] & np.isfinite(p)
    )
    q = bh_q_values(np.where(eligible, p, np.nan))
    verdicts = np.full((L, L), "n/a", dtype=object)
    reasons = np.full((L, L), "", dtype=object)
    significant = eligible & (q <= alpha)
    verdicts[eligible] = "unclear"
    verdicts[significant & (cells.d_mean > 0)] = "helps"
    verdicts[significant & (cells.d_mean < 0)] = "hurts"
    reasons[point.flagged[:, None] & _off(L)] = NO_VERDICT_FLAGGED
    reasons[~point.valid_rows[:, None] & _off(L)] = UNDEFINED_ROW
    missing = point.valid_rows[:, None] & ~point.entries & _off(L)
    reasons[missing] = UNDEFINED_CELL
    tested_rows = (point.valid_rows & ~point.flagged)[:, None]
    reasons[point.entries & _off(L) & tested_rows & ~cells.estimable] = NO_SHARED_SEEDS
    return p, q, verdicts, reasons


def name_undefined_reasons(
    verdict_reasons: Array, locales: Sequence[str], nan_reasons: Sequence[Mapping[str, str]]
) -> Array:
    """``verdict_reasons`` with each undefined row or cell given its own reason (the matrix's NaN
    reasons, donor ``*`` for a whole row) instead of a pointer to them: donors.csv stands alone."""
    named = reason_matrix(nan_reasons, locales)
    out = verdict_reasons.copy()
    for i, j in zip(*np.nonzero(np.isin(out, (UNDEFINED_ROW, UNDEFINED_CELL)) & (named != ""))):
        out[i, j] = f"{out[i, j].split(' (')[0]}: {named[i, j]}"
    return out


def analyze_uncertainty(
    table: pd.DataFrame,
    locales: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    level: float = DEFAULT_LEVEL,
    min_row_z: float = MIN_ROW_Z_FOR_DIAGNOSTICS,
    plugins: Mapping[str, float] | None = None,
) -> UncertaintyResult:
    """Cells with Fieller intervals and BH verdicts, diagnostics bias-corrected with intervals.

    Args:
        table: tidy evaluations of one task and configuration (``RecordTable.select``).
        locales: languages and their order (default: every evaluated locale, sorted).
        families: family per language (matrix order), for intra-family+.
        min_seeds: NaN rule of ``build_cltm``.
        level: interval level; verdicts use BH at 1 − level.
        plugins: the paper's plug-in diagnostics of this table's matrix (``diagnose`` of the
            ``build_cltm`` result with these locales and ``min_seeds``), if already computed.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    from cltm_sb.analysis import draws as data_draws  # imports this module

    drawn = data_draws.table_draws(table)
    if len(drawn) == 1:
        return analyze_arrays(seed_arrays(table, locales), families, min_seeds, level, min_row_z, plugins)
    # Several data draws: the draws are the units (their seeds averaged), which widens every
    # interval by the data part of the variance (analysis.draws explains why).
    result = analyze_arrays(
        data_draws.draw_unit_arrays(table, locales), families, min_seeds, level, min_row_z, plugins
    )
    result.seeds = sorted(int(s) for s in pd.unique(table["seed"]))
    result.draws = drawn
    result.variance = data_draws.variance_components(table, result.locales)
    return result


def analyze_arrays(
    arrays: SeedArrays,
    families: Sequence[str] | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    level: float = DEFAULT_LEVEL,
    min_row_z: float = MIN_ROW_Z_FOR_DIAGNOSTICS,
    plugins: Mapping[str, float] | None = None,
    donor_draws: int = DONOR_DRAWS,
) -> UncertaintyResult:
    """:func:`analyze_uncertainty` on arrays already built (``donor_draws`` 0: no donor ranks)."""
    point = point_estimate(arrays, min_seeds)
    cells = cell_statistics(arrays)
    lower, upper, bounded = fieller_interval(cells, level)
    off = _off(len(arrays.locales))
    keep = point.entries & off
    lower, upper = np.where(keep, lower, np.nan), np.where(keep, upper, np.nan)
    bounded = bounded & keep
    p, q, verdicts, reasons = cell_verdicts(point, cells, 1.0 - level)
    gain_lower, gain_upper = self_gain_interval(arrays, level)
    return UncertaintyResult(
        locales=arrays.locales,
        seeds=arrays.seeds,
        level=level,
        point=point,
        cells=cells,
        cell_lower=lower,
        cell_upper=upper,
        cell_bounded=bounded,
        se_paired=np.where(keep, cells.se, np.nan),
        p_values=np.where(keep, p, np.nan),
        q_values=q,
        verdicts=verdicts,
        verdict_reasons=reasons,
        diagnostics=corrected_diagnostics(arrays, point, families, level, min_row_z, plugins),
        gain_lower=gain_lower,
        gain_upper=gain_upper,
        tests=formal_tests(arrays, point, min_row_z),
        donor_ranks=donor_ranks(arrays, point, level, donor_draws) if donor_draws > 0 else None,
    )
