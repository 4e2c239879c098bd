"""Power of a planned grid: what a CLTM with L languages and n seeds can detect (``cltm power``).

The noise model is the simulator's (:mod:`cltm_sb.analysis.simulate`): per target t a seed SD
σ_t and a self-gain G_t, a share ρ of the variance common to all runs of a seed on t, and a share
ρ_p of the rest common to the two evaluations of a shared pair run. What matters for power is
the self-gain over the seed SD, G/σ, which does not depend on the number of seeds; it is
estimated from pilot records (:func:`estimate_noise`) or given.

- Cells: the verdict on M[t, s] is a paired t-test of d_k = P_k(a_t ∪ a_s, t) − P_k(a_t, t), whose
  seed effect cancels: Var(d_k) = 2σ²(1 − ρ), so the test of M = 0 has the non-centrality
  M·(G/σ)·sqrt(n / (2(1 − ρ))) and its power is exact under Gaussian noise (non-central t). The
  smallest |M| detectable with the requested power, and the seeds needed for a given |M|, follow
  for the median target and for the weakest one (smallest G/σ). The tests are per cell at level
  α; BH over many cells needs a larger effect.
- Diagnostics: the calibrated estimators are simulated at the planned design (a generated truth
  with L languages, the estimated noise) and the spread of each headline estimate across
  simulated grids is its standard error. Two independent grids of this design (e.g. two tasks)
  differ detectably, at two-sided level α with the requested power, when the true difference is
  at least (z_{1−α/2} + z_{power})·sqrt(2)·SE.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from cltm_sb.analysis.simulate import (
    PROTOCOL_SHARED,
    NoiseModel,
    make_truth,
    simulate_grid,
)
from cltm_sb.analysis.uncertainty import (
    DIAGNOSTIC_NAMES,
    SeedArrays,
    _nan_moments,
    corrected_diagnostics,
    point_estimate,
)

DEFAULT_POWER = 0.8
DEFAULT_ALPHA = 0.05
DEFAULT_SIMULATIONS = 100
MAX_SEEDS = 200


@dataclass(frozen=True)
class PilotNoise:
    """The noise model in units that do not depend on the number of seeds.

    Attributes:
        gain_over_sigma: G_t / σ_t per usable target of the pilot (or one given value).
        rho, rho_pair: shares of the seed variance (see :class:`~cltm_sb.analysis.simulate.NoiseModel`).
        protocol: shared pair runs or one run per cell.
        single_range, gain_range: ranges of P(a_t, t) and G_self(t) for the simulated truths.
        source: where the numbers came from.
    """

    gain_over_sigma: tuple[float, ...]
    rho: float
    rho_pair: float
    protocol: str = PROTOCOL_SHARED
    single_range: tuple[float, float] = (0.6, 0.8)
    gain_range: tuple[float, float] = (0.05, 0.15)
    source: str = "given"

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.gain_over_sigma))

    @property
    def weakest_ratio(self) -> float:
        return float(np.min(self.gain_over_sigma))

    def z_self(self, n_seeds: int) -> float:
        """The simulator's z (self-gain over its naive SE) of the median target at ``n_seeds``."""
        return self.median_ratio * math.sqrt(n_seeds / 2.0)

    def noise_model(self, n_seeds: int) -> NoiseModel:
        return NoiseModel(
            rho=self.rho,
            rho_pair=self.rho_pair,
            z_self=self.z_self(n_seeds),
            single_range=self.single_range,
            gain_range=self.gain_range,
        )

    @classmethod
    def from_z(
        cls,
        z_self: float,
        n_seeds: int,
        rho: float,
        rho_pair: float,
        protocol: str = PROTOCOL_SHARED,
    ) -> PilotNoise:
        """A noise model given as the simulator's arguments (z at ``n_seeds`` seeds)."""
        if z_self <= 0 or n_seeds < 2:
            raise ValueError(
                f"z must be positive and seeds at least 2, got z={z_self}, seeds={n_seeds}"
            )
        ratio = z_self / math.sqrt(n_seeds / 2.0)
        NoiseModel(rho=rho, rho_pair=rho_pair, z_self=z_self)  # validates the shares
        return cls((ratio,), rho, rho_pair, protocol, source="given")


def estimate_noise(arrays: SeedArrays, min_seeds: int = 2) -> PilotNoise:
    """The noise model of pilot runs (method of moments on the per-seed values).

    σ_t² is the mean of the seed variances of the single and self runs on t; ρ the covariance of
    the single and self runs of one seed on t over σ_t² (their shared seed effect), pooled over
    targets; ρ_p the correlation of the two evaluations of a shared pair run over (1 − ρ), pooled
    over pairs (with one run per cell, the mirror runs are independent and ρ_p comes out near 0,
    which the simulator treats alike).
    """
    n = arrays.n_seeds
    if n < 3:
        raise ValueError(f"the pilot has {n} seed(s); estimating seed noise needs at least 3")
    point = point_estimate(arrays, min_seeds)
    rows = point.valid_rows & ~point.flagged
    if not rows.any():
        raise ValueError(
            "no pilot target has a self-gain clearly above seed noise (all flagged or undefined)"
        )
    _, v_single, _ = _nan_moments(arrays.single)
    _, v_self, _ = _nan_moments(arrays.self_)
    sigma2 = (v_single + v_self) / 2
    single_c = arrays.single - np.nanmean(arrays.single, axis=0)
    self_c = arrays.self_ - np.nanmean(arrays.self_, axis=0)
    cov = np.nansum(single_c * self_c, axis=0) / (
        np.sum(np.isfinite(single_c * self_c), axis=0) - 1
    )
    rho = float(np.clip(np.nansum(cov[rows]) / np.nansum(sigma2[rows]), 0.0, 0.95))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the diagonal has no pair runs
        pair_c = arrays.pair - np.nanmean(arrays.pair, axis=0)
    mirror = np.triu(rows[:, None] & rows[None, :], k=1)
    products = pair_c * np.transpose(pair_c, (0, 2, 1))
    finite = np.isfinite(products) & mirror[None]
    rho_pair = 0.0
    if finite.any():
        count = finite.sum(axis=0)
        total = np.where(finite, products, 0).sum(axis=0)
        cov_pair = np.where(count > 1, total / np.maximum(count - 1, 1), np.nan)
        scale = np.sqrt(sigma2[:, None] * sigma2[None, :]) * (1 - rho)
        used = mirror & np.isfinite(cov_pair)
        if used.any():
            rho_pair = float(np.clip(np.sum(cov_pair[used]) / np.sum(scale[used]), 0.0, 1.0))
    ratio = point.self_gain[rows] / np.sqrt(sigma2[rows])
    single_mean = np.nanmean(arrays.single, axis=0)[rows]
    return PilotNoise(
        tuple(float(r) for r in ratio),
        rho,
        rho_pair,
        PROTOCOL_SHARED,
        (float(np.min(single_mean)), float(np.max(single_mean))),
        (float(np.min(point.self_gain[rows])), float(np.max(point.self_gain[rows]))),
        source=f"pilot: {len(arrays.locales)} languages, {n} seeds ({int(rows.sum())} usable targets)",
    )


def cell_power(
    effect: float, gain_over_sigma: float, rho: float, n_seeds: int, alpha: float = DEFAULT_ALPHA
) -> float:
    """Power of the two-sided paired t-test of M[t, s] = 0 when |M| = ``effect`` (non-central t)."""
    if n_seeds < 2:
        return float("nan")
    df = n_seeds - 1
    delta = abs(effect) * gain_over_sigma * math.sqrt(n_seeds / (2.0 * (1.0 - rho)))
    crit = stats.t.isf(alpha / 2, df)
    value = float(stats.nct.sf(crit, df, delta) + stats.nct.cdf(-crit, df, delta))
    # scipy's non-central t returns NaN far in the tail, where the power is 1 to machine precision.
    return value if np.isfinite(value) else 1.0


def cell_detectable(
    gain_over_sigma: float,
    rho: float,
    n_seeds: int,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> float:
    """The smallest |M[t, s]| the cell test detects with ``power``."""
    if n_seeds < 2:
        return float("nan")
    high = 1.0
    while cell_power(high, gain_over_sigma, rho, n_seeds, alpha) < power:
        high *= 2  # power grows with |M|: double until the bracket holds the answer
    return float(
        optimize.brentq(
            lambda m: cell_power(m, gain_over_sigma, rho, n_seeds, alpha) - power, 0.0, high
        )
    )


def seeds_needed(
    effect: float,
    gain_over_sigma: float,
    rho: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> int | None:
    """The fewest seeds whose cell test detects |M| = ``effect`` with ``power`` (None above 200)."""
    for n in range(2, MAX_SEEDS + 1):
        if cell_power(effect, gain_over_sigma, rho, n, alpha) >= power:
            return n
    return None


@dataclass
class PowerResult:
    """What a planned grid can detect (see the module docstring)."""

    n_languages: int
    n_seeds: int
    alpha: float
    power: float
    noise: PilotNoise
    truth: str
    cell_detectable: dict[str, float]
    diagnostic_se: dict[str, float | None]
    diagnostic_detectable: dict[str, float | None]
    diagnostic_printed: dict[str, float]
    effect: float | None = None
    seeds_for_effect: dict[str, int | None] = field(default_factory=dict)
    simulations: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["noise"]["z_self_at_planned_seeds"] = self.noise.z_self(self.n_seeds)
        return out


def diagnostic_spread(
    noise: PilotNoise, n_languages: int, n_seeds: int, truth: str, simulations: int, seed: int = 0
) -> tuple[dict[str, float | None], dict[str, float]]:
    """SD of each headline diagnostic over simulated grids of the design, and the share printed."""
    true = make_truth(truth, n_languages)
    model = noise.noise_model(n_seeds)
    values: dict[str, list[float]] = {name: [] for name in DIAGNOSTIC_NAMES}
    printed: dict[str, int] = {name: 0 for name in DIAGNOSTIC_NAMES}
    for rep in range(simulations):
        grid = simulate_grid(true, n_seeds, model, noise.protocol, seed=seed * 100_003 + rep)
        arrays = SeedArrays(true.locales, grid.seeds, grid.single, grid.self_, grid.pair)
        point = point_estimate(arrays)
        diagnostics = corrected_diagnostics(arrays, point, true.families)
        for name, d in diagnostics.items():
            if d.point is not None:
                values[name].append(d.point)
            if d.lower is not None:
                printed[name] += 1
    spread = {
        name: (float(np.std(v, ddof=1)) if len(v) > 2 else None) for name, v in values.items()
    }
    return spread, {name: printed[name] / max(simulations, 1) for name in DIAGNOSTIC_NAMES}


def plan_power(
    noise: PilotNoise,
    n_languages: int,
    n_seeds: int,
    effect: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    truth: str = "structured",
    simulations: int = DEFAULT_SIMULATIONS,
    seed: int = 0,
) -> PowerResult:
    """Detectable cell and diagnostic effects of a planned grid, and seeds needed for ``effect``."""
    if n_languages < 2 or n_seeds < 2:
        raise ValueError(
            f"a planned grid needs at least 2 languages and 2 seeds, got {n_languages} and {n_seeds}"
        )
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    targets = {"median target": noise.median_ratio, "weakest target": noise.weakest_ratio}
    cells = {k: cell_detectable(r, noise.rho, n_seeds, alpha, power) for k, r in targets.items()}
    se, printed = diagnostic_spread(noise, n_languages, n_seeds, truth, simulations, seed)
    factor = (stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) * math.sqrt(2.0)
    # A comparison needs calibrated intervals in both grids: none for prop+ and reciprocity+,
    # and none where the design mostly withholds them.
    detectable = {
        name: (factor * s if s is not None and printed[name] >= 0.5 else None)
        for name, s in se.items()
    }
    needed = (
        {k: seeds_needed(effect, r, noise.rho, alpha, power) for k, r in targets.items()}
        if effect is not None
        else {}
    )
    return PowerResult(
        n_languages,
        n_seeds,
        alpha,
        power,
        noise,
        truth,
        cells,
        se,
        detectable,
        printed,
        effect,
        needed,
        simulations,
    )
