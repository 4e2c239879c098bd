"""Speaker verification: cosine scoring, score normalisation and the metrics (pure functions).

AUC comes from sklearn (SpeechBrain has none). EER and minDCF follow SpeechBrain's definitions
(``speechbrain.utils.metric_stats.EER`` / ``minDCF``: a trial is rejected when its score is <= the
threshold, thresholds are the observed scores) but run on sorted scores in O(n log n) time and
O(n) memory, so that large trial lists fit; minDCF is normalised by the cost of the best
trivial system, min(c_miss·p, c_fa·(1−p)). Tests check both against SpeechBrain and sklearn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SCORE_NORMS = ("none", "z", "s")


def cosine_scores(
    embeddings: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
    enrol_ids: Sequence[str],
    test_ids: Sequence[str],
) -> np.ndarray:
    """Cosine similarity of each (enrol, test) trial.

    Arguments:
        embeddings: ``(ids, array)`` or a mapping id -> vector (need not be normalised).
        enrol_ids, test_ids: the trials, aligned.

    Example:
        >>> emb = (["a", "b"], np.array([[1.0, 0.0], [1.0, 1.0]]))
        >>> cosine_scores(emb, ["a"], ["b"]).round(4).tolist()
        [0.7071]
    """
    ids, matrix = _as_matrix(embeddings)
    index = {u: i for i, u in enumerate(ids)}
    missing = sorted({u for u in (*enrol_ids, *test_ids) if u not in index})
    if missing:
        raise KeyError(
            f"{len(missing)} trial utterances have no embedding (first: {missing[:5]}); "
            "the trials file does not match the test manifest"
        )
    unit = _l2(matrix)
    e = unit[[index[u] for u in enrol_ids]]
    t = unit[[index[u] for u in test_ids]]
    return np.einsum("ij,ij->i", e, t)


def normalize_scores(
    scores: np.ndarray,
    enrol: np.ndarray,
    test: np.ndarray,
    cohort: np.ndarray,
    method: str = "none",
    top_k: int | None = None,
) -> np.ndarray:
    """Normalise trial scores against a cohort of embeddings.

    Arguments:
        scores: raw cosine scores of the trials ``(n,)``.
        enrol, test: the trials' embeddings ``(n, dim)``.
        cohort: cohort embeddings ``(m, dim)`` (e.g. the training utterances).
        method: ``none`` (raw), ``z`` (by the enrolment side's cohort statistics) or ``s``
            (symmetric: mean of the z-norm of both sides).
        top_k: use only the k highest cohort scores of each side (adaptive norm); None: all.
    """
    if method not in SCORE_NORMS:
        raise ValueError(f"unknown score_norm {method!r}; valid: {', '.join(SCORE_NORMS)}")
    if top_k is not None and top_k < 1:  # else the mean of no cohort scores: every score NaN
        raise ValueError(f"top_k must be >= 1 or None (the whole cohort), got {top_k}")
    if method == "none":
        return np.asarray(scores, dtype=np.float64)
    cohort = _l2(cohort)

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = _l2(x) @ cohort.T
        if top_k is not None and top_k < s.shape[1]:
            s = -np.sort(-s, axis=1)[:, :top_k]
        return s.mean(axis=1), s.std(axis=1) + 1e-8

    mu_e, sd_e = stats(enrol)
    z = (scores - mu_e) / sd_e
    if method == "z":
        return z
    mu_t, sd_t = stats(test)
    return 0.5 * (z + (scores - mu_t) / sd_t)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (sklearn); labels are 1 (same speaker) and 0."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels).astype(int), np.asarray(scores, dtype=float)))


def _error_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every distinct score used as threshold."""
    pos = np.sort(np.asarray(pos, dtype=np.float64))
    neg = np.sort(np.asarray(neg, dtype=np.float64))
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(
            f"verification metrics need target and non-target trials; got {len(pos)} "
            f"targets and {len(neg)} non-targets"
        )
    thresholds = np.unique(np.concatenate([pos, neg]))
    p_miss = np.searchsorted(pos, thresholds, side="right") / len(pos)
    p_fa = (len(neg) - np.searchsorted(neg, thresholds, side="right")) / len(neg)
    return thresholds, p_miss, p_fa


def eer(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold, as SpeechBrain's ``EER`` defines them.

    Example:
        >>> eer(np.array([0.6, 0.7, 0.8, 0.5]), np.array([0.4, 0.3, 0.2, 0.1]))[0]
        0.0
    """
    thresholds, p_miss, p_fa = _error_rates(pos, neg)
    i = int(np.argmin(np.abs(p_fa - p_miss)))
    return float((p_fa[i] + p_miss[i]) / 2), float(thresholds[i])


def min_dcf(
    pos: np.ndarray,
    neg: np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    normalize: bool = True,
) -> tuple[float, float]:
    """Minimum detection cost and its threshold; normalised by default.

    ``normalize=False`` gives SpeechBrain's ``minDCF`` value (not normalised). ``p_target`` is a
    prior in (0, 1) and the costs are > 0; other values raise.
    """
    # Else p_target 0 or 1 (or a zero cost) divides by zero, and 1.5 gives a number that means nothing.
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"min_dcf: p_target must be in (0, 1) (a prior), got {p_target}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"min_dcf: c_miss and c_fa must be > 0, got c_miss={c_miss}, c_fa={c_fa}")
    thresholds, p_miss, p_fa = _error_rates(pos, neg)
    c_det = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    i = int(np.argmin(c_det))
    value = float(c_det[i])
    if normalize:
        value /= min(c_miss * p_target, c_fa * (1 - p_target))
    return value, float(thresholds[i])


def verification_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> dict:
    """AUC, EER and normalised minDCF of a trial list, with its counts."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if scores.shape != labels.shape:  # else numpy's "boolean index did not match" below
        raise ValueError(f"one label per score: got {len(scores)} scores and {len(labels)} labels")
    bad = set(np.unique(labels)) - {0, 1}
    if bad:
        raise ValueError(f"trial labels must be 0 or 1; found {sorted(bad)}")
    pos, neg = scores[labels == 1], scores[labels == 0]
    eer_value, eer_threshold = eer(pos, neg)
    dcf_value, _ = min_dcf(pos, neg, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    return {
        "auc": roc_auc(scores, labels),
        "eer": eer_value,
        "eer_threshold": eer_threshold,
        "min_dcf": dcf_value,
        "n_trials": int(len(scores)),
        "n_target": int(len(pos)),
        "n_nontarget": int(len(neg)),
    }


def _as_matrix(
    embeddings: Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray],
) -> tuple[list[str], np.ndarray]:
    if isinstance(embeddings, Mapping):
        ids = list(embeddings)
        return ids, np.stack([np.asarray(embeddings[u]) for u in ids])
    ids, matrix = embeddings
    return list(ids), np.asarray(matrix)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
