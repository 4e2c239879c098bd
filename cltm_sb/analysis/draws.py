"""Data draws in the analysis (DESIGN.md §8, §9): seed and data parts of the variance, draw-level units.

A grid planned with ``cltm plan --draws 0-2`` trains every run on each of several independent
draws of the a/b speakers (``cltm prepare --draws``) with the same seeds. Two sources of noise then
move a cell: the seed (head initialisation, data order) and the draw (which speakers are in a_t,
b_t and a_s). Runs of one draw share that draw's speakers, so they are not independent units: an
analysis that pooled all (draw, seed) runs as if they were seeds would shrink its intervals as
if the draw effect averaged out over seeds, which it does not.

- :func:`draw_unit_arrays`: the units are the draws. Each run's value is averaged over the seeds of
  its draw, and the draw means enter the seed-paired machinery of
  :mod:`cltm_sb.analysis.uncertainty` as its units. A draw mean varies by
  sigma²_data + sigma²_seed / n_seeds, which is exactly the variance of a draw's contribution to the
  grand mean, so every interval (Fieller per cell, U-statistics and jackknife for the diagnostics,
  the formal tests, donor ranks) widens by the data part without being told how big it is: the
  cluster bootstrap's "resample draws, keep their seeds" in closed form. The price is the degrees
  of freedom: D − 1 for D draws, however many seeds each has.
- :func:`seed_means`: the units are the seeds (analyses of one seed's noise): each seed's value is
  its mean over the draws.
- :func:`variance_components`: per cell, a one-way random-effects ANOVA of the per-seed
  cross-gain d = P(a_t ∪ a_s, t) − P(a_t, t) (diagonal: the self-gain) over draws, which splits its
  variance into the seed part (within draws) and the data part (between draws, above what the
  seeds explain; Searle's n0 for unequal seeds per draw, truncated at 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.uncertainty import SeedArrays, seed_arrays

Array = np.ndarray


def table_draws(table: pd.DataFrame) -> list[int]:
    """The data draws of a tidy table (a table without a ``draw`` column is draw 0)."""
    if "draw" not in table.columns or table.empty:
        return [0]
    return sorted(int(d) for d in pd.unique(table["draw"]))


def seed_means(table: pd.DataFrame, by: Sequence[str], values: str | Sequence[str]) -> pd.DataFrame:
    """One row per ``by`` group and seed: ``values`` averaged over that seed's data draws.

    For the analyses whose unit is the seed (`cltm interval`'s curve points, `cltm geometry`'s
    distances): a seed's runs on several draws are not more seeds, so SDs and SEs count seeds,
    not runs. With one draw the values are the runs' own.
    """
    return table.groupby([*by, "seed"], as_index=False, sort=False)[values].mean()


def _nanmean0(x: Array) -> Array:
    with warnings.catch_warnings():  # a run missing from every seed of a draw stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)


def per_draw_arrays(table: pd.DataFrame, locales: Sequence[str] | None = None) -> list[SeedArrays]:
    """One :class:`SeedArrays` per draw (same locales), in draw order."""
    locales = list(locales) if locales is not None else sorted(set(table["eval_locale"]))
    if "draw" not in table.columns:
        return [seed_arrays(table, locales)]
    return [seed_arrays(table[table["draw"] == d], locales) for d in table_draws(table)]


def draw_unit_arrays(table: pd.DataFrame, locales: Sequence[str] | None = None) -> SeedArrays:
    """Arrays whose units are the draws: each run's value averaged over the seeds of its draw."""
    parts = per_draw_arrays(table, locales)
    return SeedArrays(
        locales=parts[0].locales,
        seeds=table_draws(table),
        single=np.stack([_nanmean0(a.single) for a in parts]),
        self_=np.stack([_nanmean0(a.self_) for a in parts]),
        pair=np.stack([_nanmean0(a.pair) for a in parts]),
        unit="draw",
    )


def _paired_gains(arrays: SeedArrays) -> Array:
    """[seed, t, s]: d = pair − single off the diagonal, the self-gain g on it."""
    gains = arrays.pair - arrays.single[:, :, None]
    idx = np.arange(len(arrays.locales))
    gains[:, idx, idx] = arrays.self_ - arrays.single
    return gains


@dataclass
class VarianceComponents:
    """Seed and data parts of each cell's per-run variance (diagonal: the self-gain)."""

    locales: list[str]
    draws: list[int]
    seed_var: Array  # [t, s] within-draw variance (one seed's spread)
    data_var: Array  # [t, s] between-draw variance component, >= 0
    n_draws: Array  # [t, s] draws with at least one seed of the cell
    n0: Array  # [t, s] seeds per draw (Searle's n0 when they differ)

    @property
    def data_share(self) -> Array:
        """data / (seed + data): the share of one run's variance that a new draw would bring."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.data_var / (self.data_var + self.seed_var)

    def table(self) -> pd.DataFrame:
        """One row per cell: target, donor, seed_var, data_var, data_share, draws, seeds_per_draw."""
        rows = [
            {
                "target": t,
                "donor": s,
                "seed_var": self.seed_var[i, j],
                "data_var": self.data_var[i, j],
                "data_share": self.data_share[i, j],
                "draws": int(self.n_draws[i, j]),
                "seeds_per_draw": self.n0[i, j],
            }
            for i, t in enumerate(self.locales)
            for j, s in enumerate(self.locales)
        ]
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """Medians over the off-diagonal cells (cross-gains) and the diagonal (self-gains)."""
        L = len(self.locales)
        off, diag = ~np.eye(L, dtype=bool), np.eye(L, dtype=bool)

        def median(x: Array, mask: Array) -> float | None:
            values = x[mask & np.isfinite(x)]
            return float(np.median(values)) if values.size else None

        return {
            "method": "one-way random-effects ANOVA over draws of the per-seed cross-gain "
            "(diagonal: self-gain); data part truncated at 0",
            "n_draws": len(self.draws),
            "cross_gain": {
                "seed_var_median": median(self.seed_var, off),
                "data_var_median": median(self.data_var, off),
                "data_share_median": median(self.data_share, off),
            },
            "self_gain": {
                "seed_var_median": median(self.seed_var, diag),
                "data_var_median": median(self.data_var, diag),
                "data_share_median": median(self.data_share, diag),
            },
        }


def variance_components(table: pd.DataFrame, locales: Sequence[str] | None = None) -> VarianceComponents:
    """Split each cell's variance into a seed part and a data part (see the module docstring).

    Needs at least two draws with a seed each, and a second seed in some draw, for a cell to get
    numbers; other cells are NaN.
    """
    parts = per_draw_arrays(table, locales)
    gains = [_paired_gains(a) for a in parts]
    counts = np.stack([np.isfinite(g).sum(axis=0) for g in gains])  # [draw, t, s]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.stack([_nanmean0(g) for g in gains])
        within = np.stack([np.nansum((g - m) ** 2, axis=0) for g, m in zip(gains, means, strict=True)])
        total = counts.sum(axis=0)
        present = (counts > 0).sum(axis=0)
        grand = np.nansum(np.where(counts > 0, means * counts, 0.0), axis=0) / total
        msw = within.sum(axis=0) / (total - present)
        between = np.where(counts > 0, counts * (means - grand) ** 2, 0.0).sum(axis=0)
        msb = between / (present - 1)
        n0 = (total - (counts**2).sum(axis=0) / total) / (present - 1)
        data = np.maximum((msb - msw) / n0, 0.0)
    usable = (present >= 2) & (total - present >= 1)
    return VarianceComponents(
        locales=parts[0].locales,
        draws=table_draws(table),
        seed_var=np.where(usable, msw, np.nan),
        data_var=np.where(usable, data, np.nan),
        n_draws=present,
        n0=np.where(usable, n0, np.nan),
    )
