"""Embedding geometry of speaker verification (paper §4.3): centroid distances beside transfer.

Each pair run trained on a_t ∪ a_s keeps the embeddings of the test utterances of t and of s
(``embeddings_<locale>.npz``: ``ids`` and float16 L2-normalised ``emb``). Per run, the centroids of
t's and s's embeddings come from the same model, so their Euclidean and cosine distances are
defined; the distance of the pair is the mean of the per-seed distances (seeds train different
models, whose embedding spaces need not line up, so centroids are never averaged across models),
with its standard error across seeds. With several data draws a seed's distance is its mean over
the draws: the seed, not the run, is the unit.

The distances are set beside M[t, s], M[s, t] and their mean, and their association with transfer
is the Spearman correlation over all pairs. Pairs that share a language are not independent, so
the p-value comes from permuting language labels (a Mantel test), not from the usual formula.

Languages of one family are both closer in embedding space and better donors to each other, so a
distance-transfer correlation could be family membership alone. The partial Mantel test
(Smouse, Long & Sokal 1986) correlates distance and transfer controlling for a "different
family" matrix (0 same family, 1 not): the partial Spearman correlation
(r_dt − r_df·r_tf) / sqrt((1 − r_df²)(1 − r_tf²)), with a p-value from permuting the labels of the
distance matrix while transfer and family stay fixed.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from cltm_sb.analysis.draws import seed_means
from cltm_sb.grid.layout import GridLayout
from cltm_sb.recipe.run_files import embeddings_file
from cltm_sb.results import RunRecord

logger = logging.getLogger(__name__)

DEFAULT_PERMUTATIONS = 9999


class GeometryError(ValueError):
    """Embeddings that are missing or unusable; the message names the file and what to do."""


@dataclass
class MantelResult:
    """Spearman correlation between two symmetric matrices with a label-permutation p-value."""

    rho: float
    p_value: float
    n_pairs: int
    n_permutations: int
    statistic: str = "spearman"
    controlling_for: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GeometryResult:
    """Per-seed distances, the pair table and the correlations with transfer."""

    per_seed: pd.DataFrame
    pairs: pd.DataFrame
    correlation: dict[str, MantelResult] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)


def read_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, emb)`` of an embeddings file, ``emb`` as float64 of shape (n, dim)."""
    path = Path(path)
    if not path.is_file():
        raise GeometryError(
            f"{path}: embeddings file not found; rerun the SV run with save_embeddings: True"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, emb = data["ids"], data["emb"].astype(np.float64)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise GeometryError(
            f"{path}: truncated or not an embeddings file with arrays ids and emb ({error}); "
            "run that SV run again (delete its record so that `cltm run` redoes it)"
        ) from error
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[0] != len(ids):
        raise GeometryError(
            f"{path}: emb has shape {emb.shape} for {len(ids)} ids; expected (n_ids, dim), n_ids > 0"
        )
    if not np.isfinite(emb).all():
        raise GeometryError(f"{path}: embeddings contain NaN or inf")
    return ids, emb


def centroid(emb: np.ndarray) -> np.ndarray:
    """Mean of the embedding rows."""
    return np.asarray(emb, dtype=np.float64).mean(axis=0)


def euclidean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||a − b||₂."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − cos(a, b) (NaN for a zero vector)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(1.0 - np.dot(a, b) / norm) if norm > 0 else float("nan")


def embeddings_path(
    record: RunRecord, locale: str, plan_dir: str | os.PathLike | None
) -> Path | None:
    """Where the run kept ``locale``'s embeddings: in a plan, its own run folder
    ``<plan>/runs/<run_id>/embeddings_<locale>.npz`` (None if the file is not there); for records
    without their plan, the path the record names.

    The plan's folder wins over the recorded path, which is relative to where ``cltm run`` ran:
    for a copied or moved plan it may name the original grid's file, another grid's data.
    """
    if plan_dir is not None:
        own = embeddings_file(GridLayout(plan_dir).run(record.run_id).run_dir, locale)
        return own if own.is_file() else None
    recorded = None
    for evaluation in record.evaluations:
        if evaluation.locale == locale:
            recorded = evaluation.extra.get("embeddings")
    return Path(recorded) if recorded else None


def pair_distances(
    records: Iterable[RunRecord], plan_dir: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Per pair run (two languages, subsets a): the centroid distances of its two languages.

    Returns:
        (table, skipped): the table has columns run_id, t, s (t < s), seed, draw, euclidean,
        cosine, n_t, n_s; ``skipped`` lists pair runs without embeddings of both languages, with the
        reason (e.g. one run per cell, where each run embeds one language only).
    """
    rows, skipped = [], []
    for record in records:
        if record.status != "ok" or record.kind != "pair":
            continue
        locales = sorted({d["locale"] for d in record.train_set})
        if len(locales) != 2:
            continue
        paths = {loc: embeddings_path(record, loc, plan_dir) for loc in locales}
        lacking = [loc for loc, p in paths.items() if p is None]
        if lacking:
            skipped.append(
                {
                    "run_id": record.run_id,
                    "reason": f"no embeddings of {', '.join(lacking)} (the run did not embed them: "
                    "one run per cell embeds the target only, a task without speaker embeddings none; "
                    "or its embeddings_<locale>.npz was removed)",
                }
            )
            continue
        embedded = {loc: read_embeddings(p) for loc, p in paths.items()}
        t, s = locales
        c_t, c_s = centroid(embedded[t][1]), centroid(embedded[s][1])
        if c_t.shape != c_s.shape:
            raise GeometryError(
                f"run {record.run_id}: embeddings of {t} and {s} differ in size ({c_t.shape} vs {c_s.shape})"
            )
        rows.append(
            {
                "run_id": record.run_id,
                "t": t,
                "s": s,
                "seed": int(record.seed),
                "draw": int(record.draw),
                "euclidean": euclidean_distance(c_t, c_s),
                "cosine": cosine_distance(c_t, c_s),
                "n_t": len(embedded[t][0]),
                "n_s": len(embedded[s][0]),
            }
        )
    columns = ["run_id", "t", "s", "seed", "draw", "euclidean", "cosine", "n_t", "n_s"]
    return pd.DataFrame(rows, columns=columns), skipped


def _mean_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna()
    if values.empty:
        return float("nan"), float("nan")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def distance_table(per_seed: pd.DataFrame, matrix: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per unordered pair: mean distances with SE across seeds, beside M[t,s], M[s,t], mean.

    The unit is the seed: a seed's runs on several data draws (`cltm plan --draws`) count once,
    with their mean distance, as `cltm interval` counts them.
    Columns: t, s, n_seeds, euclidean, euclidean_se, cosine, cosine_se, m_ts, m_st, m_mean
    (``m_mean`` is NaN when either entry is), sorted by Euclidean distance.
    """
    rows = []
    for (t, s), part in seed_means(per_seed, ["t", "s"], ["euclidean", "cosine"]).groupby(["t", "s"]):
        e, e_se = _mean_se(part["euclidean"])
        c, c_se = _mean_se(part["cosine"])
        row = {
            "t": t,
            "s": s,
            "n_seeds": int(part["seed"].nunique()),
            "euclidean": e,
            "euclidean_se": e_se,
            "cosine": c,
            "cosine_se": c_se,
        }
        m_ts = m_st = float("nan")
        if matrix is not None and t in matrix.index and s in matrix.index:
            m_ts, m_st = float(matrix.loc[t, s]), float(matrix.loc[s, t])
        row.update(m_ts=m_ts, m_st=m_st, m_mean=(m_ts + m_st) / 2)
        rows.append(row)
    columns = [
        "t",
        "s",
        "n_seeds",
        "euclidean",
        "euclidean_se",
        "cosine",
        "cosine_se",
        "m_ts",
        "m_st",
        "m_mean",
    ]
    return (
        pd.DataFrame(rows, columns=columns)
        .sort_values("euclidean", kind="stable")
        .reset_index(drop=True)
    )


def pair_matrix(pairs: pd.DataFrame, column: str, locales: list[str] | None = None) -> pd.DataFrame:
    """A symmetric labelled matrix from a pair table column (NaN diagonal and missing pairs)."""
    locales = locales or sorted(set(pairs["t"]) | set(pairs["s"]))
    out = pd.DataFrame(np.nan, index=locales, columns=locales)
    for rec in pairs.itertuples(index=False):
        if rec.t in out.index and rec.s in out.index:
            out.loc[rec.t, rec.s] = out.loc[rec.s, rec.t] = getattr(rec, column)
    return out


def mantel_spearman(
    a: pd.DataFrame | np.ndarray,
    b: pd.DataFrame | np.ndarray,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> MantelResult:
    """Spearman correlation of the upper triangles of two symmetric matrices, with a Mantel p-value.

    The p-value is two-sided: (1 + #{|ρ_perm| ≥ |ρ|}) / (1 + permutations), where each permutation
    relabels the languages of ``a`` (rows and columns together). Pairs where either matrix is NaN
    are left out, in the observed and in every permuted statistic. Deterministic for a given seed.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(
            f"Mantel test needs two square matrices of one shape, got {x.shape} and {y.shape}"
        )
    n = x.shape[0]
    iu = np.triu_indices(n, k=1)

    def rho(xm: np.ndarray) -> tuple[float, int]:
        u, v = xm[iu], y[iu]
        keep = np.isfinite(u) & np.isfinite(v)
        if keep.sum() < 3 or np.ptp(u[keep]) == 0 or np.ptp(v[keep]) == 0:
            return float("nan"), int(keep.sum())
        return float(spearmanr(u[keep], v[keep]).statistic), int(keep.sum())

    observed, n_pairs = rho(x)
    if not np.isfinite(observed) or n < 3 or n_permutations <= 0:
        return MantelResult(observed, float("nan"), n_pairs, 0)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_permutations):
        order = rng.permutation(n)
        value, _ = rho(x[np.ix_(order, order)])
        if np.isfinite(value) and abs(value) >= abs(observed) - 1e-12:
            hits += 1
    return MantelResult(observed, (1 + hits) / (1 + n_permutations), n_pairs, n_permutations)


def family_matrix(families: Sequence[str]) -> np.ndarray:
    """1 where two languages belong to different families, 0 where they share one."""
    fam = np.asarray(families, dtype=object)
    return (fam[:, None] != fam[None, :]).astype(float)


def _partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Partial Spearman correlation of x and y given z (1-D arrays of the kept pairs)."""
    rx, ry, rz = rankdata(x), rankdata(y), rankdata(z)
    r = np.corrcoef(np.vstack([rx, ry, rz]))
    r_xy, r_xz, r_yz = r[0, 1], r[0, 2], r[1, 2]
    den = (1 - r_xz**2) * (1 - r_yz**2)
    return float((r_xy - r_xz * r_yz) / np.sqrt(den)) if den > 1e-12 else float("nan")


def partial_mantel_spearman(
    a: pd.DataFrame | np.ndarray,
    b: pd.DataFrame | np.ndarray,
    control: pd.DataFrame | np.ndarray,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    control_name: str = "control",
) -> MantelResult:
    """Partial Mantel test: Spearman correlation of ``a`` and ``b`` given ``control``.

    Upper triangles of three symmetric matrices over the pairs finite in all three; two-sided
    p-value (1 + #{|ρ_perm| ≥ |ρ|}) / (1 + permutations), each permutation relabelling the
    languages of ``a`` only (Smouse, Long & Sokal's method: ``b`` and ``control`` keep their
    joint structure). NaN, with a reason, when the control is constant over the pairs.
    """
    x, y, c = (np.asarray(m, dtype=float) for m in (a, b, control))
    if not (x.shape == y.shape == c.shape) or x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(
            f"partial Mantel test needs three square matrices of one shape, got {x.shape}, "
            f"{y.shape} and {c.shape}"
        )
    n = x.shape[0]
    iu = np.triu_indices(n, k=1)

    def rho(xm: np.ndarray) -> tuple[float, int, str]:
        u, v, w = xm[iu], y[iu], c[iu]
        keep = np.isfinite(u) & np.isfinite(v) & np.isfinite(w)
        if keep.sum() < 4:
            return float("nan"), int(keep.sum()), "fewer than 4 pairs"
        if np.ptp(w[keep]) == 0:
            return float("nan"), int(keep.sum()), f"{control_name} is constant over the pairs"
        if np.ptp(u[keep]) == 0 or np.ptp(v[keep]) == 0:
            return float("nan"), int(keep.sum()), "a matrix is constant over the pairs"
        return _partial_spearman(u[keep], v[keep], w[keep]), int(keep.sum()), ""

    observed, n_pairs, reason = rho(x)
    if not np.isfinite(observed) or n < 4 or n_permutations <= 0:
        return MantelResult(
            observed, float("nan"), n_pairs, 0, "partial spearman", control_name, reason
        )
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_permutations):
        order = rng.permutation(n)
        value, _, _ = rho(x[np.ix_(order, order)])
        if np.isfinite(value) and abs(value) >= abs(observed) - 1e-12:
            hits += 1
    return MantelResult(
        observed,
        (1 + hits) / (1 + n_permutations),
        n_pairs,
        n_permutations,
        "partial spearman",
        control_name,
    )


def _known_families(locales: Sequence[str]) -> list[str] | None:
    """Families of ``locales`` from the built-in registry, None when any code is unknown."""
    from cltm_sb.languages import default_registry

    registry = default_registry()
    if not all(code in registry for code in locales):
        return None
    return registry.families(list(locales))


def analyze_geometry(
    records: Iterable[RunRecord],
    matrix: pd.DataFrame | None = None,
    plan_dir: str | os.PathLike | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    families: Sequence[str] | None = None,
) -> GeometryResult:
    """Distances of every pair run, the pair table, and Spearman/Mantel correlations with transfer.

    ``correlation`` holds ``euclidean`` and ``cosine`` entries: distance against the mean transfer
    (M[t,s] + M[s,t]) / 2 over the pairs where both are defined; and, where the languages'
    families are known (``families`` in the matrix's order, else the built-in registry when it
    knows every code), ``euclidean_partial_family`` and ``cosine_partial_family``: the same
    correlation controlling for family membership (partial Mantel test).
    """
    per_seed, skipped = pair_distances(records, plan_dir)
    if per_seed.empty:
        reasons = (
            "; ".join(f"{s['run_id']}: {s['reason']}" for s in skipped[:3]) or "no ok pair runs"
        )
        raise GeometryError(
            f"{plan_dir or 'records'}: no pair run with embeddings of both languages ({reasons}); "
            "geometry needs SV pair runs of the shared protocol with save_embeddings: True"
        )
    for item in skipped:
        logger.warning("geometry: skipping run %s: %s", item["run_id"], item["reason"])
    pairs = distance_table(per_seed, matrix)
    correlation: dict[str, MantelResult] = {}
    if matrix is not None:
        locales = [str(c) for c in matrix.index]
        transfer = pair_matrix(pairs, "m_mean", locales)
        for column in ("euclidean", "cosine"):
            distance = pair_matrix(pairs, column, locales)
            correlation[column] = mantel_spearman(distance, transfer, n_permutations, seed)
        families = list(families) if families is not None else _known_families(locales)
        if families is not None:
            control = family_matrix(families)
            for column in ("euclidean", "cosine"):
                distance = pair_matrix(pairs, column, locales)
                correlation[f"{column}_partial_family"] = partial_mantel_spearman(
                    distance, transfer, control, n_permutations, seed, "language family"
                )
    return GeometryResult(per_seed=per_seed, pairs=pairs, correlation=correlation, skipped=skipped)
