"""The RETIRED percentile seed bootstrap (formerly cltm_sb/analysis/bootstrap.py), for benchmarks only.

Kept so that the "before" columns of bench/bench_calibration.py and bench/bench_analysis_speed.py
can be run again; the tool no longer uses or prints it: its intervals covered 26-92% for the
diagnostics and 82-91% for the cells (bench/RESULTS.md, "Calibration of intervals").

Seed bootstrap of a CLTM and its diagnostics.

One replicate draws as many seed labels as there are seeds, with replacement, from the seeds in
the table, and keeps for every (train set, evaluated locale) the rows of those seeds: the same
draw for every run, so runs that share a seed stay paired (a pair run and the single run of its
target are correlated through their seed). A seed drawn twice counts twice (it is relabelled so
that the two copies are two seeds). The CLTM is rebuilt with :func:`cltm_sb.analysis.matrix.build_cltm`,
so the NaN rules of DESIGN.md §6 apply per replicate (a seed missing for a run just leaves that
run with fewer seeds), and every diagnostic is recomputed with :func:`cltm_sb.analysis.diagnostics.diagnose`.
Intervals are percentiles of the replicates where the statistic is defined.

Below :data:`MIN_BOOTSTRAP_SEEDS` seeds a bootstrap says little, so every interval is NaN ("n/a").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.diagnostics import DIAGNOSTICS, diagnose
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, CLTMResult, build_cltm, infer_locales

MIN_BOOTSTRAP_SEEDS = 5
DEFAULT_REPLICATES = 1000
DEFAULT_LEVEL = 0.95
# Scalar diagnostics that get an interval (keys of diagnose()).
DIAGNOSTIC_KEYS = tuple(d.key for d in DIAGNOSTICS)


@dataclass
class BootstrapResult:
    """Point estimates, percentile intervals and the replicates behind them.

    Attributes:
        point: diagnostics of the full table (the estimates the intervals belong to).
        lower, upper: interval ends per diagnostic (NaN when unavailable).
        n_defined: replicates in which each diagnostic was defined.
        matrix_lower, matrix_upper: interval of every CLTM entry.
        gain_lower, gain_upper: interval of every self-gain (indexed by locale).
        replicates: one row per replicate, one column per diagnostic.
        seeds: the seeds drawn from.
        n_replicates, level, rng_seed: how the intervals were made.
        note: why there are no intervals, when there are none.
        extra: ``gain_n_defined``, replicates in which each self-gain was defined.
    """

    point: dict[str, Any]
    lower: dict[str, float]
    upper: dict[str, float]
    n_defined: dict[str, int]
    matrix_lower: pd.DataFrame
    matrix_upper: pd.DataFrame
    gain_lower: pd.Series
    gain_upper: pd.Series
    replicates: pd.DataFrame
    seeds: list[int]
    n_replicates: int
    level: float
    rng_seed: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """Whether intervals were computed (enough seeds)."""
        return not self.note

    def interval(self, key: str) -> tuple[float, float]:
        """(lower, upper) of one diagnostic."""
        return self.lower.get(key, float("nan")), self.upper.get(key, float("nan"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of the scalar intervals."""
        return {
            "n_replicates": self.n_replicates,
            "level": self.level,
            "rng_seed": self.rng_seed,
            "seeds": self.seeds,
            "note": self.note,
            "intervals": {
                k: {
                    "point": self.point.get(k),
                    "lower": self.lower[k],
                    "upper": self.upper[k],
                    "n_defined": self.n_defined[k],
                }
                for k in DIAGNOSTIC_KEYS
            },
        }


@contextmanager
def _quiet_matrix_warnings() -> Iterator[None]:
    """Hide the per-cell NaN warnings of build_cltm while replicates are built."""
    target = logging.getLogger("cltm_sb.analysis.matrix")

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def resample_seeds(table: pd.DataFrame, drawn: Sequence[int]) -> pd.DataFrame:
    """The table of one replicate: for each drawn seed (in order), every row of that seed.

    The k-th drawn seed is relabelled ``k`` so that a seed drawn twice counts as two seeds.
    """
    by_seed = {int(s): part for s, part in table.groupby("seed")}
    parts = []
    for k, seed in enumerate(drawn):
        part = by_seed.get(int(seed))
        if part is not None:
            parts.append(part.assign(seed=k))
    if not parts:
        return table.iloc[0:0]
    return pd.concat(parts, ignore_index=True)


def _percentiles(values: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - level) / 2.0
    with np.errstate(all="ignore"), _ignore_all_nan():
        lo = np.nanquantile(values, alpha, axis=axis)
        hi = np.nanquantile(values, 1.0 - alpha, axis=axis)
    return lo, hi


@contextmanager
def _ignore_all_nan() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def bootstrap_cltm(
    table: pd.DataFrame,
    locales: Sequence[str] | None = None,
    families: Sequence[str] | None = None,
    n_replicates: int = DEFAULT_REPLICATES,
    level: float = DEFAULT_LEVEL,
    rng_seed: int = 0,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    min_bootstrap_seeds: int = MIN_BOOTSTRAP_SEEDS,
    full: CLTMResult | None = None,
) -> BootstrapResult:
    """Percentile intervals of the CLTM entries, self-gains and diagnostics by a seed bootstrap.

    Args:
        table: tidy evaluations of one task and configuration (as for ``build_cltm``).
        locales: languages and their order (default: every evaluated locale).
        families: family per language (for intra-family+).
        n_replicates: bootstrap replicates.
        level: interval coverage (0.95 → 2.5th and 97.5th percentiles).
        rng_seed: seed of the draws; the same seed gives the same intervals.
        min_seeds: the matrix's own ``min_seeds`` (NaN rules), applied per replicate.
        min_bootstrap_seeds: fewer seeds than this give NaN intervals with a note.
        full: the matrix already built from ``table`` with these locales and ``min_seeds``
            (saves building it, and logging its NaN reasons, a second time).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    locales = list(locales) if locales is not None else infer_locales(table)
    if full is None:
        full = build_cltm(table, locales=locales, min_seeds=min_seeds)
    point = diagnose(full.matrix, families=families, se=full.se, gains=full.gains)
    seeds = sorted(int(s) for s in table["seed"].unique())
    n = len(locales)
    nan_matrix = np.full((n, n), np.nan)
    note = ""
    if len(seeds) < min_bootstrap_seeds:
        note = f"{len(seeds)} seed(s): intervals need at least {min_bootstrap_seeds}"
    elif n_replicates < 1:
        note = "no bootstrap replicates requested"

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=list(locales), columns=list(locales))

    if note:
        nan = {k: float("nan") for k in DIAGNOSTIC_KEYS}
        return BootstrapResult(
            point=point,
            lower=dict(nan),
            upper=dict(nan),
            n_defined={k: 0 for k in DIAGNOSTIC_KEYS},
            matrix_lower=frame(nan_matrix),
            matrix_upper=frame(nan_matrix.copy()),
            gain_lower=pd.Series(np.nan, index=list(locales)),
            gain_upper=pd.Series(np.nan, index=list(locales)),
            replicates=pd.DataFrame(columns=list(DIAGNOSTIC_KEYS)),
            seeds=seeds,
            n_replicates=0,
            level=level,
            rng_seed=rng_seed,
            note=note,
        )

    rng = np.random.default_rng(rng_seed)
    stats = np.full((n_replicates, len(DIAGNOSTIC_KEYS)), np.nan)
    matrices = np.full((n_replicates, n, n), np.nan)
    gains = np.full((n_replicates, n), np.nan)
    with _quiet_matrix_warnings():
        for r in range(n_replicates):
            drawn = rng.choice(seeds, size=len(seeds), replace=True)
            sample = resample_seeds(table, drawn)
            result = build_cltm(sample, locales=locales, min_seeds=min_seeds)
            report = diagnose(result.matrix, families=families, se=result.se, gains=result.gains)
            stats[r] = [report[k] for k in DIAGNOSTIC_KEYS]
            matrices[r] = result.matrix.to_numpy(dtype=float)
            gains[r] = result.gains["self_gain"].reindex(locales).to_numpy(dtype=float)

    lo, hi = _percentiles(stats, level)
    m_lo, m_hi = _percentiles(matrices, level)
    g_lo, g_hi = _percentiles(gains, level)
    defined = np.isfinite(stats).sum(axis=0)
    return BootstrapResult(
        point=point,
        lower={k: float(v) for k, v in zip(DIAGNOSTIC_KEYS, lo)},
        upper={k: float(v) for k, v in zip(DIAGNOSTIC_KEYS, hi)},
        n_defined={k: int(v) for k, v in zip(DIAGNOSTIC_KEYS, defined)},
        matrix_lower=frame(m_lo),
        matrix_upper=frame(m_hi),
        gain_lower=pd.Series(g_lo, index=list(locales)),
        gain_upper=pd.Series(g_hi, index=list(locales)),
        replicates=pd.DataFrame(stats, columns=list(DIAGNOSTIC_KEYS)),
        seeds=seeds,
        n_replicates=n_replicates,
        level=level,
        rng_seed=rng_seed,
        extra={"gain_n_defined": dict(zip(locales, np.isfinite(gains).sum(axis=0).tolist()))},
    )
