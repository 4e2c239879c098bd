"""Diagnostics on matrices small enough to compute by hand, plus invariances."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cltm_sb.analysis import diagnostics as d


def labelled(values, codes=None):
    values = np.asarray(values, dtype=float)
    codes = codes or [f"l{k}" for k in range(len(values))]
    return pd.DataFrame(values, index=codes, columns=codes)


M2 = np.array([[1.0, 0.5], [-0.5, 1.0]])
M3 = np.array([[1.0, 2.0, -1.0], [0.5, 1.0, 0.0], [1.0, -2.0, 1.0]])
FAM3 = ["X", "X", "Y"]


def test_two_by_two_by_hand():
    assert d.rfd(M2) == pytest.approx(np.sqrt(0.625))
    assert d.relative_asymmetry(M2) == pytest.approx(np.sqrt(0.8))
    assert d.row_cosine(M2) == pytest.approx(0.0)
    assert d.prop_positive(M2) == 0.5
    assert d.reciprocity_positive(M2) == 0.0
    assert d.intra_family_positive(M2, ["A", "A"]) == 1.0
    assert d.intra_family_positive(M2, ["A", "B"]) == 0.0


def test_three_by_three_with_families_by_hand():
    assert d.rfd(M3) == pytest.approx(np.sqrt(15.25 / 9))
    assert d.relative_asymmetry(M3) == pytest.approx(np.sqrt(20.5 / 13.25))
    assert d.prop_positive(M3) == pytest.approx(0.5)
    assert d.reciprocity_positive(M3) == pytest.approx(1 / 3)
    assert d.intra_family_positive(M3, FAM3) == pytest.approx(2.5 / 3.5)
    expected_cos = (2.5 / np.sqrt(7.5) - 4 / 6 - 1.5 / np.sqrt(7.5)) / 3
    assert d.row_cosine(M3) == pytest.approx(expected_cos)
    assert d.rms_offdiag(M3) == pytest.approx(np.sqrt(10.25 / 6))


def test_all_ones_is_the_agnostic_ideal():
    ones = np.ones((5, 5))
    assert d.rfd(ones) == 0
    assert d.relative_asymmetry(ones) == 0
    assert d.row_cosine(ones) == pytest.approx(1.0)
    assert d.prop_positive(ones) == 1
    assert d.reciprocity_positive(ones) == 1


def test_symmetric_matrix_has_zero_asymmetry():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    sym = a + a.T
    np.fill_diagonal(sym, 1)
    assert d.relative_asymmetry(sym) == pytest.approx(0.0)


def test_reciprocity_never_exceeds_prop_positive():
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = rng.normal(size=(7, 7))
        assert d.reciprocity_positive(m) <= d.prop_positive(m) + 1e-12 or d.prop_positive(m) == 0


finite_matrices = st.integers(min_value=2, max_value=6).flatmap(
    lambda n: arrays(float, (n, n), elements=st.floats(-3, 3, allow_nan=False, width=32))
)


@settings(max_examples=60, deadline=None)
@given(finite_matrices, st.randoms(use_true_random=False))
def test_diagnostics_invariant_under_consistent_permutation(m, rnd):
    n = m.shape[0]
    np.fill_diagonal(m, 1.0)
    perm = list(range(n))
    rnd.shuffle(perm)
    p = m[np.ix_(perm, perm)]
    families = [f"f{k % 2}" for k in range(n)]
    permuted_families = [families[k] for k in perm]
    for fn in (d.rfd, d.relative_asymmetry, d.prop_positive, d.reciprocity_positive, d.rms_offdiag):
        np.testing.assert_allclose(fn(p), fn(m), rtol=1e-9, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(d.row_cosine(p), d.row_cosine(m), rtol=1e-9, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(
        d.intra_family_positive(p, permuted_families),
        d.intra_family_positive(m, families),
        rtol=1e-9,
        equal_nan=True,
    )


@settings(max_examples=40, deadline=None)
@given(finite_matrices)
def test_rfd_matches_frobenius_formula_without_nan(m):
    n = m.shape[0]
    assert d.rfd(m) == pytest.approx(np.linalg.norm(m - np.ones((n, n))) / n, abs=1e-9)
    for fn in (d.prop_positive, d.reciprocity_positive):
        assert 0.0 <= fn(m) <= 1.0


def test_nan_rows_and_entries_are_skipped_and_listed():
    m = np.array([[1.0, 0.5, np.nan], [np.nan, np.nan, np.nan], [0.2, -0.4, 1.0]])
    report = d.diagnose(labelled(m, ["a", "b", "c"]), families=["F", "F", "G"])
    assert report["excluded"]["rows"] == ["b"]
    assert report["excluded"]["entries"] == [["a", "c"]]
    # RFD over the finite entries only: (0, -0.5, -0.8, -1.4, 0) squared
    assert report["rfd"] == pytest.approx(np.sqrt((0.25 + 0.64 + 1.96) / 5))
    assert report["prop_positive"] == pytest.approx(2 / 3)
    # (a, b) has no finite mirror, (a, c) is NaN: no pair is finite both ways
    assert np.isnan(report["reciprocity_positive"])
    assert report["n_valid_offdiag"] == 3


def test_diagnose_reports_top_pairs_and_per_language_transfer():
    report = d.diagnose(labelled(M3, ["x", "y", "z"]), families=FAM3, top_k=2)
    assert [(p["donor"], p["target"]) for p in report["top_positive"]] == [("y", "x"), ("x", "z")]
    assert [p["value"] for p in report["top_negative"]] == [-2.0, -1.0]
    per = {row["locale"]: row for row in report["per_language"]}
    assert per["x"]["incoming_positive"] == 0.5  # row x: 2 (+), -1 (-)
    assert per["x"]["outgoing_positive"] == 1.0  # column x: 0.5, 1
    assert per["y"]["outgoing_positive"] == 0.5  # column y: 2, -2


def write(tmp_path, text, name="m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_matrix_csv_roundtrip(tmp_path):
    frame = labelled(M3, ["en", "es", "fr"])
    path = tmp_path / "m.csv"
    d.write_matrix_csv(frame, path)
    back = d.read_matrix_csv(path)
    np.testing.assert_allclose(back.to_numpy(), M3)
    assert list(back.index) == ["en", "es", "fr"]


def test_read_matrix_csv_rejects_non_square(tmp_path):
    path = write(tmp_path, ",en,es\nen,1,0.5\nes,0.2,1\nfr,0.1,0.1\n")
    with pytest.raises(ValueError, match="not square.*3 rows, 2 columns"):
        d.read_matrix_csv(path)


def test_read_matrix_csv_rejects_label_mismatch(tmp_path):
    path = write(tmp_path, ",en,es\nen,1,0.5\nfr,0.2,1\n")
    with pytest.raises(ValueError, match="only in rows: fr; only in the header: es"):
        d.read_matrix_csv(path)


def test_read_matrix_csv_rejects_non_numeric_cell(tmp_path):
    path = write(tmp_path, ",en,es\nen,1,abc\nes,0.2,1\n")
    with pytest.raises(ValueError, match="row 'en', column 'es': 'abc' is not a number"):
        d.read_matrix_csv(path)


def test_read_matrix_csv_warns_on_diagonal_not_one(tmp_path):
    path = write(tmp_path, ",en,es\nen,0.9,0.5\nes,0.2,1\n")
    with pytest.warns(UserWarning, match="diagonal entry of 'en' is 0.9"):
        d.read_matrix_csv(path)


def test_read_matrix_csv_accepts_empty_cells_as_nan(tmp_path):
    path = write(tmp_path, ",en,es\nen,,\nes,0.2,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = d.read_matrix_csv(path)
    assert np.isnan(m.loc["en"]).all()


def test_diagnose_refuses_infinity_and_explains_undefined_values() -> None:
    labels = ["en", "es"]
    broken = pd.DataFrame([[1.0, np.inf], [0.5, 1.0]], index=labels, columns=labels)
    with pytest.raises(ValueError, match=r"row 'en', column 'es' is inf"):
        d.diagnose(broken)
    diagonal_only = pd.DataFrame([[1.0, np.nan], [np.nan, 1.0]], index=labels, columns=labels)
    report = d.diagnose(diagonal_only, families=["A", "A"])
    assert np.isnan(report["rfd"]) and np.isnan(report["asymmetry"])
    assert report["undefined"]["asymmetry"] == "no off-diagonal entry whose mirror entry is finite too"
    assert report["undefined"]["intra_family_positive"] == "no finite off-diagonal entry"


def test_a_matrix_without_self_gains_says_why_they_are_n_a() -> None:
    labels = ["en", "es"]
    report = d.diagnose(pd.DataFrame([[1.0, 0.2], [0.5, 1.0]], index=labels, columns=labels))
    # cltm analyze printed "min self-gain n/a" with no reason under "undefined".
    assert np.isnan(report["self_gain_min"]) and np.isnan(report["self_gain_median"])
    assert "no self-gains given" in report["undefined"]["self_gain_min"]
    assert "no self-gains given" in report["undefined"]["self_gain_median"]
    with_gains = d.diagnose(
        pd.DataFrame([[1.0, 0.2], [0.5, 1.0]], index=labels, columns=labels),
        gains=pd.DataFrame({"self_gain": [0.1, 0.2], "flagged": [False, False]}, index=labels),
    )
    assert "self_gain_min" not in with_gains["undefined"]
