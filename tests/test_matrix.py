"""The CLTM from synthetic records with known P values."""

import numpy as np
import pytest

from cltm_sb.analysis.completion import grid_row_reasons
from cltm_sb.analysis.matrix import (
    CellStats,
    build_cltm,
    pair_key,
    ratio_se,
    row_undefined_reason,
    self_key,
    single_key,
)
from cltm_sb.analysis.simulate import make_truth, simulate_table
from cltm_sb.analysis.uncertainty import seed_arrays
from cltm_sb.results import load_records

from helpers import known_grid, make_record, write_records


@pytest.fixture
def result(tmp_path):
    table = load_records(write_records(tmp_path, known_grid())).select("gr")
    return build_cltm(table)


def test_known_entries(result):
    m = result.matrix
    assert m.loc["en", "en"] == 1.0
    assert m.loc["en", "es"] == pytest.approx(0.5)
    assert m.loc["fr", "en"] == pytest.approx(0.5)
    assert m.loc["fr", "es"] == pytest.approx(-0.5)
    assert result.gains.loc["en", "self_gain"] == pytest.approx(0.10)


def test_missing_pair_run_is_nan_with_reason(result):
    assert np.isnan(result.matrix.loc["en", "fr"])
    reasons = {(r["target"], r["donor"]): r["reason"] for r in result.reasons}
    assert "no finished pair (en ∪ fr) evaluated on en run" in reasons[("en", "fr")]


def test_non_positive_self_gain_makes_the_row_nan(result):
    assert result.matrix.loc["es"].isna().all()
    assert not result.gains.loc["es", "valid"]
    reasons = {(r["target"], r["donor"]): r["reason"] for r in result.reasons}
    assert "<= 0" in reasons[("es", "*")]
    # the column of es as a donor is still defined for other targets
    assert result.matrix.loc["en", "es"] == pytest.approx(0.5)


def test_relative_matrix(result):
    assert result.relative.loc["en", "es"] == pytest.approx((0.66 - 0.61) / 0.61)
    assert result.relative.loc["fr", "fr"] == pytest.approx((0.90 - 0.80) / 0.80)


def test_delta_method_se_from_per_seed_values(result):
    # v_single = v_self = var([.60, .62]) / 2 = 1e-4, v_pair = 0: Var(R) = 0.01 + 0.005 - 0.01
    assert result.se.loc["en", "es"] == pytest.approx(np.sqrt(0.005))
    assert result.se.loc["en", "en"] == 0.0
    assert ratio_se(0.05, 0.1, 0.0, 1e-4, 1e-4) == pytest.approx(np.sqrt(0.005))


def test_all_seeds_count_and_seed_counts_are_kept(tmp_path):
    records = known_grid() + [make_record([("en", "a")], {"en": 0.50}, seed=3)]
    result = build_cltm(load_records(write_records(tmp_path, records)).select("gr"))
    # the third single seed pulls P_single down to .5733..., nothing is dropped
    assert result.gains.loc["en", "p_single"] == pytest.approx((0.60 + 0.62 + 0.50) / 3)
    assert result.gains.loc["en", "n_single"] == 3


def test_fewer_seeds_than_min_seeds_is_nan(tmp_path):
    records = [r for r in known_grid() if not (r.seed == 2 and r.train_set[0]["locale"] == "fr" and len(r.train_set) == 1)]
    result = build_cltm(load_records(write_records(tmp_path, records)).select("gr"))
    assert result.matrix.loc["fr"].isna().all()
    assert "1 finished seed(s), fewer than min_seeds=2" in result.gains.loc["fr", "reason"]
    one_seed = build_cltm(load_records(write_records(tmp_path, records)).select("gr"), min_seeds=1)
    assert one_seed.matrix.loc["fr", "fr"] == 1.0


def test_self_gain_within_two_se_is_flagged_not_dropped(tmp_path):
    records = []
    for seed, (single, self_) in enumerate(((0.5, 0.60), (0.6, 0.52), (0.55, 0.60))):
        records.append(make_record([("en", "a")], {"en": single}, seed))
        records.append(make_record([("en", "a"), ("en", "b")], {"en": self_}, seed))
    result = build_cltm(load_records(write_records(tmp_path, records)).select("gr"))
    assert result.gains.loc["en", "self_gain"] > 0
    assert result.flagged_targets == ["en"]
    assert result.matrix.loc["en", "en"] == 1.0


def test_grid_row_reasons_and_build_cltm_give_each_undefined_row_one_reason(caplog):
    truth = make_truth("structured", 6)
    q = truth.locales
    table = simulate_table(truth, 4, seed=1)
    self_runs = table.train_key == self_key(q[2])
    table.loc[self_runs, "value"] = table.loc[table.train_key == single_key(q[2]), "value"].to_numpy() - 0.01
    drop = (
        ((table.train_key == single_key(q[0])) & (table.seed > table.seed.min()))  # one seed
        | ((table.train_key == self_key(q[1])) & (table.seed > table.seed.min()))
        | (table.train_key.str.contains(q[4]) & (table.train_key != pair_key(q[3], q[4])))  # budget
    )
    table = table[~drop].reset_index(drop=True)
    caplog.clear()
    reasons = grid_row_reasons(seed_arrays(table, q))
    assert caplog.text == ""  # no warning per unmeasured pair of a budgeted grid
    expected = {r["target"]: r["reason"] for r in build_cltm(table, q).reasons if r["donor"] == "*"}
    # q4 has no single run at all: seed arrays cannot tell it from one of 0 finished seeds, and
    # both are "no finished" run, in the same words.
    assert expected[q[4]] == "no finished single (a_t) run"
    assert reasons == expected and set(reasons) == {q[0], q[1], q[2], q[4]}
    assert reasons[q[2]].startswith("self-gain G_self = -0.01")
    assert row_undefined_reason(CellStats(0.5, 0.0, 3), None, 2) == "no finished self (a_t ∪ b_t) run"
