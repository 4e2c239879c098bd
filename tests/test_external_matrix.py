"""Matrices without run records: non-square diagnostics, ``cltm report --matrix``, ``cltm compare``
with matrices, and grids that remember the families file they were planned with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from grid_fakes import make_prepared

from cltm_sb.analysis.diagnostics import diagnose, read_matrix_csv
from cltm_sb.analysis.external import SUPPLIED_SE_LABEL, load_matrix
from cltm_sb.cli import main
from cltm_sb.languages import default_registry

from helpers import known_grid, write_records

# 4 targets, 3 donors: es is only evaluated; en, de, fr are both target and donor.
NON_SQUARE = ",en,de,fr\nen,1,0.5,0.2\nde,0.4,1,-0.1\nfr,0.3,,1\nes,0.6,0.2,0.1\n"
NON_SQUARE_SE = ",en,de,fr\nen,0,0.1,0.1\nde,0.1,0,0.2\nfr,0.1,,0\nes,0.1,0.1,0.1\n"


@pytest.fixture
def matrix_files(tmp_path: Path) -> tuple[Path, Path]:
    m, se = tmp_path / "m.csv", tmp_path / "se.csv"
    m.write_text(NON_SQUARE)
    se.write_text(NON_SQUARE_SE)
    return m, se


def test_non_square_diagnostics_by_hand(matrix_files) -> None:
    m = read_matrix_csv(matrix_files[0], square=False)
    d = diagnose(m, families=default_registry().families(["en", "de", "fr", "es"]))
    assert (d["n_languages"], d["n_targets"], d["n_donors"]) == (4, 4, 3)
    square = np.array([[1, 0.5, 0.2], [0.4, 1, -0.1], [0.3, np.nan, 1]])
    # asymmetry and reciprocity+ on en, de, fr only (pairs with both entries finite)
    both = np.isfinite(square) & np.isfinite(square.T)
    expected = np.sqrt(np.sum((square - square.T)[both] ** 2)) / np.sqrt(np.sum(square[both] ** 2))
    assert d["asymmetry"] == pytest.approx(expected)
    # en-de (.5/.4) and en-fr (.2/.3) are positive both ways; de-fr has no fr→de entry
    assert d["reciprocity_positive"] == pytest.approx(1.0)
    assert d["languages_used"]["asymmetry"] == {
        "targets": ["en", "de", "fr"],
        "donors": ["en", "de", "fr"],
    }
    assert d["languages_used"]["rfd"] == {
        "targets": ["en", "de", "fr", "es"],
        "donors": ["en", "de", "fr"],
    }
    # the others use every cell: 8 off-diagonal finite cells (fr→de missing), es's three included
    off = [0.5, 0.2, 0.4, -0.1, 0.3, 0.6, 0.2, 0.1]
    assert d["prop_positive"] == pytest.approx(7 / 8)
    assert d["rms_offdiag"] == pytest.approx(np.sqrt(np.mean(np.square(off))))
    cells = np.array([1, 0.5, 0.2, 0.4, 1, -0.1, 0.3, 1, 0.6, 0.2, 0.1])
    assert d["rfd"] == pytest.approx(np.sqrt(np.mean((cells - 1) ** 2)))
    assert d["excluded"]["entries"] == [["fr", "de"]]


def test_reciprocity_by_hand() -> None:
    m = pd.DataFrame([[1, 0.5, 0.2], [0.4, 1, -0.1], [0.3, 0.5, 1]], index=["en", "de", "fr"],
                     columns=["en", "de", "fr"])  # fmt: skip
    wide = m.assign(it=[0.1, 0.1, 0.1])  # an extra donor leaves the square-only diagnostics alone
    for key in ("asymmetry", "reciprocity_positive"):
        assert diagnose(wide)[key] == pytest.approx(diagnose(m)[key]), key
    assert diagnose(m)["reciprocity_positive"] == pytest.approx(2 / 3)  # en-de, en-fr; not de-fr


def test_square_only_diagnostics_need_two_shared_languages() -> None:
    m = pd.DataFrame([[0.5, 0.2], [0.1, 0.3]], index=["en", "de"], columns=["fr", "es"])
    d = diagnose(m)
    assert d["asymmetry"] is not None and np.isnan(d["asymmetry"])
    assert "0 language(s) are both target and donor" in d["undefined"]["asymmetry"]
    assert np.isfinite(d["rfd"]) and d["prop_positive"] == 1.0


def test_a_square_matrix_in_another_column_order_is_aligned() -> None:
    m = pd.DataFrame([[1, 0.5], [-0.2, 1]], index=["en", "de"], columns=["en", "de"])
    shuffled = m[["de", "en"]]
    assert diagnose(shuffled)["asymmetry"] == pytest.approx(diagnose(m)["asymmetry"])


def test_analyze_a_non_square_matrix_with_se(matrix_files, capsys) -> None:
    m, se = matrix_files
    assert main(["analyze", str(m), "--se", str(se), "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert (report["n_languages"], report["n_targets"], report["n_donors"]) == (4, 4, 3)
    assert report["se_median"] == pytest.approx(0.1)
    assert (
        "se_median" not in report["undefined"] and "warning" not in out.err
    )  # SE diagonal 0: fine
    assert main(["analyze", str(m)]) == 0
    text = capsys.readouterr().out
    assert "donors: 3 (en, de, fr)" in text
    assert "asymmetry and reciprocity+ use the 3 languages that are both target and donor" in text


def test_report_of_a_matrix_with_supplied_se(matrix_files, tmp_path, capsys) -> None:
    m, se = matrix_files
    out = tmp_path / "rep"
    assert main(["report", "--matrix", str(m), "--se", str(se), "-o", str(out)]) == 0
    for name in ("report.html", "report.md", "cltm.csv", "cltm_se.csv", "diagnostics.json",
                 "intervals.json", "donors.csv", "table1.csv", "cltm.png", "cltm.pdf"):  # fmt: skip
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    assert "from the supplied SE, cells assumed independent" in md
    assert "3 languages both target and donor" in md and "4 targets × 3 donors" in md
    assert "| median SE of entries (supplied) | 0.100 |" in md
    donors = pd.read_csv(out / "donors.csv")
    row = donors[(donors["target"] == "es") & (donors["donor"] == "en")].iloc[0]
    assert row["lower"] == pytest.approx(0.6 - 1.959964 * 0.1, abs=1e-5)
    assert row["interval"] == SUPPLIED_SE_LABEL and row["rank"] == 1
    intervals = json.loads((out / "intervals.json").read_text())
    assert all(d["lower"] is None for d in intervals["diagnostics"].values())
    assert intervals["cells"]["method"] == SUPPLIED_SE_LABEL


def test_report_of_a_matrix_without_se_prints_no_interval(matrix_files, tmp_path) -> None:
    out = tmp_path / "rep"
    assert main(["report", "--matrix", str(matrix_files[0]), "-o", str(out), "--no-heatmap"]) == 0
    donors = pd.read_csv(out / "donors.csv")
    assert donors["lower"].isna().all() and donors["upper"].isna().all()
    assert "n/a: no SE supplied" in (out / "report.md").read_text()


def test_report_needs_a_grid_or_a_matrix(tmp_path, capsys) -> None:
    assert main(["report", "-o", str(tmp_path / "r")]) == 2
    assert "give a grid folder or --matrix" in capsys.readouterr().err
    m = tmp_path / "m.csv"
    m.write_text(NON_SQUARE)
    assert main(["report", "--matrix", str(m), "--subset", "paper", "-o", str(tmp_path / "r")]) == 2
    assert "--subset: options of a grid's report, not of --matrix" in capsys.readouterr().err


def test_compare_two_matrices_with_supplied_ses(matrix_files, tmp_path) -> None:
    m, se = matrix_files
    other, other_se = tmp_path / "b.csv", tmp_path / "b_se.csv"
    other.write_text(",en,de,fr,it\nen,1,0.1,0.2,0\nde,0.2,1,0.1,0\nfr,0.3,0.3,1,0\nit,0,0,0,1\n")
    other_se.write_text(
        ",en,de,fr,it\nen,0,0.1,0.1,0\nde,0.1,0,0.1,0\nfr,0.1,0.1,0,0\nit,0,0,0,0\n"
    )
    out = tmp_path / "cmp"
    args = ["compare", str(m), str(other), "--se-a", str(se), "--se-b", str(other_se), "-o", str(out),
            "--labels", "theirs,ours"]  # fmt: skip
    assert main(args) == 0
    diff = read_matrix_csv(out / "difference.csv", square=False, unit_diagonal=False)
    assert list(diff.index) == ["en", "de", "fr"] and list(diff.columns) == ["en", "de", "fr"]
    assert diff.loc["en", "de"] == pytest.approx(0.4)
    dse = read_matrix_csv(out / "difference_se.csv", unit_diagonal=False)
    assert dse.loc["en", "de"] == pytest.approx(np.sqrt(0.02), abs=1e-5)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["theirs"]["diagnostics"]["n_donors"] == 3
    assert summary["difference"]["intervals"] == "from the supplied SE, cells assumed independent"
    assert "from the supplied SE, cells assumed independent" in (out / "compare.md").read_text()
    assert summary["difference"]["se"].startswith("theirs: from the supplied SE")  # the labels, not file names
    assert "; ours: from the supplied SE" in summary["difference"]["se"]


def test_compare_a_grid_with_a_published_matrix(matrix_files, tmp_path) -> None:
    grid = write_records(tmp_path / "grid", known_grid())
    out = tmp_path / "cmp"
    assert main(["compare", str(grid), str(matrix_files[0]), "-o", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["difference"]["targets"] == ["en", "es", "fr"]
    assert summary["difference"]["intervals"] is None  # the grid's delta-method SE is no interval
    diff = read_matrix_csv(out / "difference.csv", square=False, unit_diagonal=False)
    assert diff.loc["fr", "en"] == pytest.approx(0.5 - 0.3)


def test_load_matrix_refuses_se_with_other_labels(tmp_path) -> None:
    m, se = tmp_path / "m.csv", tmp_path / "se.csv"
    m.write_text(",en,de\nen,1,0.5\nde,0.2,1\n")
    se.write_text(",en,fr\nen,0,0.1\nde,0.1,0\n")
    with pytest.raises(
        ValueError, match="do not have the matrix's labels.*only in the standard errors fr"
    ):
        load_matrix(m, default_registry(), se)


def test_non_square_heatmap_file(matrix_files, tmp_path, capsys) -> None:
    out = tmp_path / "h.png"
    assert main(["heatmap", str(matrix_files[0]), "-o", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".pdf").is_file()
    # A format it does not write is refused rather than silently written as PNG and PDF.
    assert main(["heatmap", str(matrix_files[0]), "-o", str(tmp_path / "fig.svg")]) == 2
    assert "name a .png file" in capsys.readouterr().err and not list(tmp_path.glob("fig.*"))


# ---------------------------------------------------------------------------- plans keep families
RUNNER = "grid_fakes:run_fake"


def test_a_plan_keeps_its_families_file_for_every_later_command(tmp_path, capsys) -> None:
    data = make_prepared(tmp_path / "prep", ["qaa", "qab"])
    families = tmp_path / "fam.csv"
    families.write_text("code,name,family\nqaa,Aa,Fam A\nqab,Ab,Fam A\n")
    grid = tmp_path / "grid"
    plan = ["plan", "--data", str(data), "--task", "gr", "--locales", "qaa,qab", "--seeds", "1-3",
            "--runner", RUNNER, "-o", str(grid)]  # fmt: skip
    assert main([*plan, "--families", str(families)]) == 0
    assert (grid / "families.csv").read_text() == families.read_text()
    assert main(["run", str(grid), "--executor", "inprocess"]) == 0
    families.unlink()  # later commands need no --families: the grid has its own copy
    assert main(["report", str(grid), "-o", str(tmp_path / "rep"), "--no-heatmap"]) == 0
    assert (
        main(["matrix", str(grid), "--task", "gr", "-o", str(tmp_path / "mat"), "--no-heatmap"])
        == 0
    )
    assert main(["compare", str(grid), str(grid), "-o", str(tmp_path / "cmp")]) == 0
    capsys.readouterr()


def test_a_families_file_that_misses_a_locale_refuses_the_plan(tmp_path, capsys) -> None:
    data = make_prepared(tmp_path / "prep", ["qaa", "qab"])
    families = tmp_path / "fam.csv"
    families.write_text("code,name,family\nqaa,Aa,Fam A\n")
    plan = ["plan", "--data", str(data), "--task", "gr", "--locales", "qaa,qab", "--runner", RUNNER,
            "-o", str(tmp_path / "grid"), "--families", str(families)]  # fmt: skip
    assert main(plan) == 2
    assert "unknown language code(s) qab" in capsys.readouterr().err
    assert not (tmp_path / "grid" / "plan.json").exists()


def test_donors_csv_says_why_a_cell_of_a_matrix_has_no_value_or_interval(tmp_path) -> None:
    # An empty cell of the matrix, or of the SE file beside a value, was an empty row in
    # donors.csv with no reason (a grid's donors.csv gives one).
    m, se = tmp_path / "m.csv", tmp_path / "se.csv"
    m.write_text(",en,de,fr\nen,1,0.5,\nde,0.4,1,-0.1\nfr,0.3,0.2,1\n")
    se.write_text(",en,de,fr\nen,0,0.1,0.1\nde,,0,0.2\nfr,0.1,0.1,0\n")
    out = tmp_path / "rep"
    assert main(["report", "--matrix", str(m), "--se", str(se), "-o", str(out), "--no-heatmap"]) == 0
    donors = pd.read_csv(out / "donors.csv", keep_default_na=False).set_index(["target", "donor"])
    assert "no value" in donors.loc[("en", "fr"), "reason"]
    assert "no interval" in donors.loc[("de", "en"), "reason"] and donors.loc[("de", "en"), "lower"] == ""
    assert donors.loc[("fr", "en"), "reason"] == ""


def test_se_of_entries_leaves_out_the_se_of_a_cell_without_value(tmp_path, capsys) -> None:
    # The median / mean SE "of entries" counted the SE file's value for a cell the matrix lacks.
    m, se = tmp_path / "m.csv", tmp_path / "se.csv"
    m.write_text(",en,de,fr\nen,1,0.5,\nde,0.4,1,-0.1\nfr,0.3,0.2,1\n")
    se.write_text(",en,de,fr\nen,0,0.1,9\nde,0.1,0,0.1\nfr,0.1,0.1,0\n")
    assert main(["analyze", str(m), "--se", str(se), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["se_median"] == pytest.approx(0.1) and report["se_mean"] == pytest.approx(0.1)
