"""Seed bootstrap: joint draws, NaN rules per replicate, intervals that cover the estimate and shrink."""

import numpy as np
import pandas as pd
import pytest

from cltm_sb.analysis.bootstrap import DIAGNOSTIC_KEYS, bootstrap_cltm, resample_seeds
from cltm_sb.analysis.matrix import pair_key, self_key, single_key

LOCALES = ["l0", "l1", "l2", "l3"]
FAMILIES = ["A", "A", "B", "B"]
# True transfer: positive within a family, mixed across.
TRUE_M = np.array(
    [
        [1.0, 0.8, -0.4, 0.2],
        [0.6, 1.0, 0.3, -0.5],
        [-0.2, 0.4, 1.0, 0.9],
        [0.1, -0.3, 0.7, 1.0],
    ]
)


def synthetic_table(n_seeds: int, noise: float = 0.01, rng_seed: int = 0, drop=()) -> pd.DataFrame:
    """Per-seed values with P_single 0.6, P_self 0.7 and P_pair = 0.6 + 0.1 M; ``drop``: (key, locale, seed)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in range(n_seeds):
        for i, t in enumerate(LOCALES):
            rows.append((single_key(t), t, seed, 0.6 + rng.normal(0, noise)))
            rows.append((self_key(t), t, seed, 0.7 + rng.normal(0, noise)))
            for j, s in enumerate(LOCALES):
                if i != j:
                    rows.append(
                        (pair_key(t, s), t, seed, 0.6 + 0.1 * TRUE_M[i, j] + rng.normal(0, noise))
                    )
    table = pd.DataFrame(rows, columns=["train_key", "eval_locale", "seed", "value"])
    for key, locale, seed in drop:
        table = table[
            ~((table.train_key == key) & (table.eval_locale == locale) & (table.seed == seed))
        ]
    return table.reset_index(drop=True)


SMOOTH = ("rfd", "asymmetry", "row_cosine", "rms_offdiag", "se_mean", "self_gain_median")


def test_intervals_contain_the_point_estimate():
    boot = bootstrap_cltm(synthetic_table(10), families=FAMILIES, n_replicates=300, rng_seed=1)
    assert boot.available
    for key in SMOOTH:
        lo, hi = boot.interval(key)
        assert lo <= boot.point[key] <= hi, key
    ml, mu, m = boot.matrix_lower.to_numpy(), boot.matrix_upper.to_numpy(), boot.point
    assert np.all(ml <= mu)
    # every matrix entry's interval contains the entry of the full data
    from cltm_sb.analysis.matrix import build_cltm

    full = build_cltm(synthetic_table(10)).matrix.to_numpy()
    assert np.all((ml - 1e-12 <= full) & (full <= mu + 1e-12))
    assert m["prop_positive"] == pytest.approx(8 / 12)


def test_intervals_shrink_with_more_seeds():
    few = bootstrap_cltm(
        synthetic_table(6, rng_seed=2), families=FAMILIES, n_replicates=300, rng_seed=1
    )
    many = bootstrap_cltm(
        synthetic_table(60, rng_seed=2), families=FAMILIES, n_replicates=300, rng_seed=1
    )
    for key in ("rfd", "asymmetry", "row_cosine", "rms_offdiag"):
        width_few = np.subtract(*few.interval(key)[::-1])
        width_many = np.subtract(*many.interval(key)[::-1])
        assert width_many < 0.6 * width_few, key
    width = (many.matrix_upper - many.matrix_lower).to_numpy()
    width_few = (few.matrix_upper - few.matrix_lower).to_numpy()
    assert np.nanmedian(width) < np.nanmedian(width_few)


def test_deterministic_for_a_given_seed():
    table = synthetic_table(6)
    a = bootstrap_cltm(table, n_replicates=50, rng_seed=7)
    b = bootstrap_cltm(table, n_replicates=50, rng_seed=7)
    c = bootstrap_cltm(table, n_replicates=50, rng_seed=8)
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    assert not a.replicates.equals(c.replicates)


def test_below_five_seeds_every_interval_is_na():
    boot = bootstrap_cltm(synthetic_table(4), families=FAMILIES, n_replicates=100)
    assert not boot.available
    assert "4 seed(s)" in boot.note
    assert all(np.isnan(boot.lower[k]) and np.isnan(boot.upper[k]) for k in DIAGNOSTIC_KEYS)
    assert boot.matrix_lower.isna().all().all()
    assert boot.point["rfd"] == pytest.approx(
        boot.point["rfd"]
    )  # the estimate itself is still there


def test_one_draw_of_seed_labels_is_shared_by_every_run():
    table = synthetic_table(3, drop=[(pair_key("l0", "l1"), "l0", 2)])
    sample = resample_seeds(table, [2, 2, 0])
    # every run gets the rows of seed 2 twice and seed 0 once, relabelled 0, 1, 2
    single = sample[(sample.train_key == single_key("l0"))]
    original = table[(table.train_key == single_key("l0"))].set_index("seed")["value"]
    assert list(single["value"]) == [original[2], original[2], original[0]]
    assert sorted(single["seed"]) == [0, 1, 2]
    # the run that lacks seed 2 keeps only the seed-0 draw
    pair = sample[(sample.train_key == pair_key("l0", "l1")) & (sample.eval_locale == "l0")]
    assert list(pair["seed"]) == [2]


def test_nan_rules_apply_per_replicate():
    # l3 has its self run for seed 0 only: undefined in the full data (1 seed < min_seeds 2), defined
    # in the replicates that draw seed 0 at least twice (probability 1 - (5/6)^6 - (5/6)^5 ≈ 0.26).
    drop = [(self_key("l3"), "l3", s) for s in range(1, 6)]
    boot = bootstrap_cltm(synthetic_table(6, drop=drop), n_replicates=200, rng_seed=0)
    assert "l3" in boot.point["excluded"]["rows"]
    defined = boot.extra["gain_n_defined"]["l3"]
    assert 0.12 * 200 < defined < 0.42 * 200
    assert defined < boot.extra["gain_n_defined"]["l0"] == 200
    assert np.isfinite(boot.gain_lower["l3"])
    # the diagnostics stay defined in every replicate, from the rows that are valid there
    assert boot.n_defined["rfd"] == 200
