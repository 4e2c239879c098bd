"""Verification metrics against SpeechBrain and sklearn, cosine scoring and score norms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from speechbrain.utils.metric_stats import EER, minDCF

from cltm_sb.recipe import verification as V


def _random_scores(seed: int, n_pos: int = 150, n_neg: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    pos = rng.normal(1.0, 1.0, n_pos)
    neg = rng.normal(0.0, 1.0, n_neg)
    if ties:
        pos, neg = np.round(pos, 1), np.round(neg, 1)
    return pos.astype(np.float32), neg.astype(np.float32)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_eer_and_min_dcf_match_speechbrain(seed: int, ties: bool) -> None:
    pos, neg = _random_scores(seed, ties=ties)
    sb_eer, sb_thr = EER(torch.from_numpy(pos), torch.from_numpy(neg))
    ours, thr = V.eer(pos, neg)
    assert ours == pytest.approx(sb_eer, abs=1e-6)
    for p_target in (0.01, 0.05, 0.5):
        sb_dcf, _ = minDCF(torch.from_numpy(pos), torch.from_numpy(neg), p_target=p_target)
        raw, _ = V.min_dcf(pos, neg, p_target=p_target, normalize=False)
        norm, _ = V.min_dcf(pos, neg, p_target=p_target)
        assert raw == pytest.approx(sb_dcf, abs=1e-6)
        assert norm == pytest.approx(sb_dcf / min(p_target, 1 - p_target), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_eer_agree_with_sklearn(seed: int) -> None:
    pos, neg = _random_scores(seed)
    scores = np.concatenate([pos, neg])
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    metrics = V.verification_metrics(scores, labels)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, scores))
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = np.argmin(np.abs(fnr - fpr))
    # The ROC's crossing and the threshold sweep agree up to one trial's step.
    assert metrics["eer"] == pytest.approx((fpr[i] + fnr[i]) / 2, abs=1.5 / len(pos))
    assert (metrics["n_target"], metrics["n_nontarget"]) == (len(pos), len(neg))
    assert 0 <= metrics["min_dcf"] <= 1


def test_perfect_and_inverted_separation() -> None:
    pos, neg = np.array([0.9, 0.8]), np.array([0.1, 0.2])
    assert V.eer(pos, neg)[0] == 0.0 and V.min_dcf(pos, neg)[0] == 0.0
    assert V.verification_metrics(np.r_[neg, pos], [1, 1, 0, 0])["auc"] == 0.0


def test_large_trial_list_is_fast_and_bounded() -> None:
    pos, neg = _random_scores(5, n_pos=50_000, n_neg=200_000)
    value, _ = V.min_dcf(pos, neg)
    assert 0 < value <= 1


def test_metrics_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        V.verification_metrics([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="non-targets"):
        V.eer(np.array([0.1]), np.array([]))


def test_cosine_scores_and_missing_ids() -> None:
    ids = ["a", "b", "c"]
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    scores = V.cosine_scores((ids, emb), ["a", "a"], ["b", "c"])
    np.testing.assert_allclose(scores, [1.0, 0.0], atol=1e-12)
    same = V.cosine_scores(dict(zip(ids, emb)), ["a"], ["b"])
    np.testing.assert_allclose(same, [1.0])
    with pytest.raises(KeyError, match="no embedding"):
        V.cosine_scores((ids, emb), ["a"], ["zz"])


def test_score_norms() -> None:
    rng = np.random.default_rng(0)
    enrol, test, cohort = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=(20, 4))
    raw = V.cosine_scores((list("abcde") + list("vwxyz"), np.r_[enrol, test]), list("abcde"), list("vwxyz"))
    np.testing.assert_array_equal(V.normalize_scores(raw, enrol, test, cohort, "none"), raw)
    z = V.normalize_scores(raw, enrol, test, cohort, "z")
    s = V.normalize_scores(raw, enrol, test, cohort, "s")
    unit = cohort / np.linalg.norm(cohort, axis=1, keepdims=True)
    ce = (enrol / np.linalg.norm(enrol, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_allclose(z, (raw - ce.mean(1)) / (ce.std(1) + 1e-8))
    assert s.shape == raw.shape and not np.allclose(s, z)
    top = V.normalize_scores(raw, enrol, test, cohort, "s", top_k=5)
    assert not np.allclose(top, s)
    with pytest.raises(ValueError, match="none, z, s"):
        V.normalize_scores(raw, enrol, test, cohort, "t")


@pytest.mark.parametrize("kwargs", [{"p_target": 0.0}, {"p_target": 1.0}, {"p_target": 1.5}, {"c_fa": 0.0}])
def test_min_dcf_refuses_an_operating_point_outside_its_range(kwargs: dict) -> None:
    """p_target 0 or 1 (or a zero cost) was a bare ZeroDivisionError, and 1.5 a meaningless number."""
    pos, neg = np.array([0.9, 0.8, 0.4]), np.array([0.1, 0.5, 0.3])
    with pytest.raises(ValueError, match=r"min_dcf: (p_target must be in \(0, 1\)|c_miss and c_fa must be > 0)"):
        V.min_dcf(pos, neg, **kwargs)


def test_score_norm_refuses_top_k_below_one() -> None:
    """top_k=0 normalised by the statistics of no cohort scores: every score came back NaN."""
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        V.normalize_scores(np.array([0.5]), np.ones((1, 2)), np.ones((1, 2)), np.ones((3, 2)), "s", top_k=0)


def test_scores_and_labels_of_different_lengths_are_named() -> None:
    """3 scores and 2 labels raised numpy's "boolean index did not match indexed array"."""
    with pytest.raises(ValueError, match="got 3 scores and 2 labels"):
        V.verification_metrics(np.array([0.9, 0.1, 0.2]), np.array([1, 0]))
