"""The Cross-Lingual Transfer Matrix from run results (DESIGN.md §1 and §6).

For a target t and a donor s, with P(D, t) the mean over seeds of the metric on t of a model
trained on D:

- self-gain  G_self(t) = P(a_t ∪ b_t, t) − P(a_t, t)
- cross-gain G(t, s)   = P(a_t ∪ a_s, t) − P(a_t, t)
- CLTM       M[t, s]   = G(t, s) / G_self(t)        rows = targets, columns = donors

Every finished seed counts; no seed is ever dropped because of its score. Undefined cells are NaN
and their reason is kept in :attr:`CLTMResult.reasons` and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cltm_sb.results import train_set_key

logger = logging.getLogger(__name__)

DEFAULT_MIN_SEEDS = 2
# A self-gain within this many standard errors of zero is flagged (not dropped).
FLAG_SE_MULTIPLE = 2.0


def single_key(target: str) -> str:
    """Train-set key of the single run a_t."""
    return train_set_key([{"locale": target, "subset": "a"}])


def self_key(target: str) -> str:
    """Train-set key of the self run a_t ∪ b_t."""
    return train_set_key([{"locale": target, "subset": "a"}, {"locale": target, "subset": "b"}])


def pair_key(target: str, donor: str) -> str:
    """Train-set key of the pair run a_t ∪ a_s (the same for both orders)."""
    return train_set_key([{"locale": target, "subset": "a"}, {"locale": donor, "subset": "a"}])


@dataclass
class CellStats:
    """Mean, between-seed variance and seed count of one P(D, t)."""

    mean: float
    var: float
    n: int

    @property
    def v(self) -> float:
        """Variance of the mean: var / n (NaN with fewer than two seeds)."""
        return self.var / self.n if self.n > 1 else float("nan")


@dataclass
class CLTMResult:
    """A CLTM with everything needed to judge it.

    Attributes:
        locales: languages in row/column order.
        matrix: M[t, s] (rows targets, columns donors), NaN where undefined.
        se: delta-method standard error of each entry (0 on a valid diagonal).
        relative: raw relative gain (P(a_t ∪ a_s, t) − P(a_t, t)) / P(a_t, t); the diagonal uses
            the self run.
        cross_gain: G(t, s); the diagonal holds G_self(t).
        n_seeds: seeds behind each entry (the pair run's or, on the diagonal, the self run's).
        gains: per target: single and self performance with SE and seed counts, self-gain and its
            SE, ``flagged`` (self-gain within 2 SE of zero) and ``valid`` (row defined).
        reasons: one dict {target, donor, reason} per NaN entry or row.
    """

    locales: list[str]
    matrix: pd.DataFrame
    se: pd.DataFrame
    relative: pd.DataFrame
    cross_gain: pd.DataFrame
    n_seeds: pd.DataFrame
    gains: pd.DataFrame
    reasons: list[dict[str, str]] = field(default_factory=list)

    @property
    def flagged_targets(self) -> list[str]:
        """Targets whose self-gain is within 2 SE of zero."""
        return [t for t in self.locales if bool(self.gains.loc[t, "flagged"])]


def performance_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per (train_key, eval_locale): mean, variance (ddof=1) and number of seeds of the metric."""
    grouped = table.groupby(["train_key", "eval_locale"])["value"]
    # "var" is pandas' vectorised variance (ddof=1, NaN for one seed); a Python lambda per group
    # took ~0.2 s at 44 languages.
    stats = grouped.agg(mean="mean", var="var", n="count")
    return stats


def infer_locales(table: pd.DataFrame) -> list[str]:
    """Languages that appear as evaluated locales of single, self or pair runs, sorted."""
    return sorted(set(table["eval_locale"]))


def ratio_se(num: float, den: float, v_num_only: float, v_self: float, v_single: float) -> float:
    """Delta-method standard error of (P_ts − P_t) / (P_tt − P_t).

    With v_x the variance of the mean P_x (between-seed variance / seeds):
    Var(num) = v_ts + v_t, Var(den) = v_tt + v_t, Cov(num, den) = v_t, and
    Var(R) ≈ Var(num)/den² + num²·Var(den)/den⁴ − 2·num·Cov/den³.

    Assumed: the three means P_ts, P_tt and P_t are independent of each other (they come from
    different trainings), so the only covariance between numerator and denominator is the shared
    P_t. Seeds that are shared across the runs could correlate them; that is ignored, as in the
    authors' formula.
    """
    var_num = v_num_only + v_single
    var_den = v_self + v_single
    cov = v_single
    var = var_num / den**2 + num**2 * var_den / den**4 - 2 * num * cov / den**3
    return float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")


def reason_matrix(reasons: Sequence[Mapping[str, str]], codes: Sequence[str]) -> np.ndarray:
    """[target, donor] reason of each NaN cell of :attr:`CLTMResult.reasons` in ``codes`` order
    ("" elsewhere); a row's reason (donor ``*``) fills the whole row, the diagonal included."""
    index = {c: k for k, c in enumerate(codes)}
    out = np.full((len(codes), len(codes)), "", dtype=object)
    for r in reasons:
        i = index.get(r["target"])
        if i is None:
            continue
        if r["donor"] == "*":
            out[i, :] = r["reason"]
        elif r["donor"] in index:
            out[i, index[r["donor"]]] = r["reason"]
    return out


def usable_run(cell: CellStats | None, min_seeds: int) -> bool:
    """Whether a run's P(D, t) enters the matrix: at least ``min_seeds`` finished seeds."""
    return cell is not None and cell.n >= min_seeds and np.isfinite(cell.mean)


def describe_run(cell: CellStats | None, what: str, min_seeds: int) -> str:
    """Why a run's P(D, t) does not enter the matrix (``what``: the run, e.g. ``single (a_t)``)."""
    if cell is None or cell.n == 0:  # absent, or every seed failed (seed arrays cannot tell)
        return f"no finished {what} run"
    return f"{what} run has {cell.n} finished seed(s), fewer than min_seeds={min_seeds}"


def row_undefined_reason(single: CellStats | None, self_run: CellStats | None, min_seeds: int) -> str:
    """Why target t's CLTM row is undefined ("" when it is defined), from its single run a_t and
    self run a_t ∪ b_t evaluated on t (None: no such run): too few seeds, or G_self <= 0."""
    for cell, what in ((single, "single (a_t)"), (self_run, "self (a_t ∪ b_t)")):
        if not usable_run(cell, min_seeds):
            return describe_run(cell, what, min_seeds)
    g_self = self_run.mean - single.mean  # type: ignore[union-attr]  # both usable above
    return f"self-gain G_self = {g_self:.4g} <= 0" if g_self <= 0 else ""


def build_cltm(
    table: pd.DataFrame,
    locales: Sequence[str] | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> CLTMResult:
    """Build the CLTM from a tidy table of evaluations of ONE task and configuration.

    Args:
        table: rows with at least ``train_key``, ``eval_locale``, ``seed`` and ``value`` (as from
            :meth:`cltm_sb.results.RecordTable.select`). Train sets other than single, self and
            pair runs (e.g. several donors) are ignored here.
        locales: languages and their order; default: every evaluated locale, sorted.
        min_seeds: P(D, t) with fewer finished seeds is NaN.
    """
    locales = list(locales) if locales is not None else infer_locales(table)
    if not locales:
        raise ValueError("no evaluations to build a matrix from")
    # One dictionary instead of a .loc per cell: L² lookups of a MultiIndex cost ~0.3 s at L = 44.
    stats = {
        key: CellStats(float(mean), float(var), int(n))
        for key, mean, var, n in performance_table(table).itertuples(name=None)
    }
    reasons: list[dict[str, str]] = []

    def lookup(key: str, locale: str) -> CellStats | None:
        return stats.get((key, locale))

    def usable(cell: CellStats | None) -> bool:
        return usable_run(cell, min_seeds)

    n = len(locales)
    shape = (n, n)
    m = np.full(shape, np.nan)
    se = np.full(shape, np.nan)
    rel = np.full(shape, np.nan)
    cross = np.full(shape, np.nan)
    seeds = np.zeros(shape, dtype=int)
    gain_rows = []
    for i, t in enumerate(locales):
        single, self_run = lookup(single_key(t), t), lookup(self_key(t), t)
        row = {
            "locale": t,
            "p_single": single.mean if single else np.nan,
            "p_single_se": np.sqrt(single.v) if single else np.nan,
            "n_single": single.n if single else 0,
            "p_self": self_run.mean if self_run else np.nan,
            "p_self_se": np.sqrt(self_run.v) if self_run else np.nan,
            "n_self": self_run.n if self_run else 0,
        }
        row_reason = row_undefined_reason(single, self_run, min_seeds) or None
        measured = usable(single) and usable(self_run)
        g_self = self_run.mean - single.mean if measured else np.nan
        g_self_se = np.sqrt(self_run.v + single.v) if measured else np.nan
        row["self_gain"], row["self_gain_se"] = g_self, g_self_se
        row["flagged"] = bool(
            measured and np.isfinite(g_self_se) and g_self <= FLAG_SE_MULTIPLE * g_self_se
        )
        row["valid"] = row_reason is None
        row["reason"] = row_reason or ""
        gain_rows.append(row)
        if row_reason is not None:
            reasons.append({"target": t, "donor": "*", "reason": row_reason})
            logger.warning("CLTM row of target %s is NaN: %s", t, row_reason)
        if usable(single) and usable(self_run):
            rel[i, i] = (self_run.mean - single.mean) / single.mean
            cross[i, i] = self_run.mean - single.mean
        if self_run is not None:
            seeds[i, i] = self_run.n
        if row_reason is None:
            m[i, i], se[i, i] = 1.0, 0.0
        for j, s in enumerate(locales):
            if i == j:
                continue
            pair = lookup(pair_key(t, s), t)
            seeds[i, j] = pair.n if pair else 0
            if not usable(pair) or not usable(single):
                if row_reason is None:
                    reason = describe_run(pair, f"pair ({t} ∪ {s}) evaluated on {t}", min_seeds)
                    reasons.append({"target": t, "donor": s, "reason": reason})
                    logger.warning("CLTM[%s, %s] is NaN: %s", t, s, reason)
                continue
            gain = pair.mean - single.mean
            cross[i, j] = gain
            rel[i, j] = gain / single.mean
            if row_reason is None:
                m[i, j] = gain / g_self
                se[i, j] = ratio_se(gain, g_self, pair.v, self_run.v, single.v)

    def frame(values: np.ndarray) -> pd.DataFrame:
        out = pd.DataFrame(values, index=list(locales), columns=list(locales))
        out.index.name, out.columns.name = "target", "donor"
        return out

    gains = pd.DataFrame(gain_rows).set_index("locale")
    return CLTMResult(
        locales=list(locales),
        matrix=frame(m),
        se=frame(se),
        relative=frame(rel),
        cross_gain=frame(cross),
        n_seeds=frame(seeds),
        gains=gains,
        reasons=reasons,
    )
