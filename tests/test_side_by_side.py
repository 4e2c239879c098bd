"""`cltm compare` of three grids (GR, SV and age): the same diagnostics side by side, every pair."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_report import grid_records

from cltm_sb.analysis.diagnostics import DIAGNOSTICS
from cltm_sb.cli import main

from helpers import write_records


def test_compare_three_task_grids_side_by_side(tmp_path: Path, capsys) -> None:
    grids = [
        write_records(tmp_path / task / "records", grid_records(n_seeds=4, scale=scale, task=task))
        for task, scale in (("gr", 1.0), ("sv", 0.5), ("age", 0.8))
    ]
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, grids), "-o", str(out), "--labels", "GR,SV,AGE"]) == 0
    assert str(out / "side_by_side.md") in capsys.readouterr().out
    frame = pd.read_csv(out / "side_by_side.csv")
    assert list(frame["grid"].unique()) == ["GR", "SV", "AGE"]
    assert list(frame["task"].unique()) == ["gr", "sv", "age"]
    # The age grid's metric is its declaration's, read from the task table (records alone here).
    assert frame.groupby("grid")["metric"].first().to_dict() == {"AGE": "macro_f1", "GR": "macro_f1", "SV": "auc"}
    assert len(frame) == 3 * len(DIAGNOSTICS) and frame["plugin"].notna().any()
    page = (out / "side_by_side.md").read_text()
    assert "| RFD" in page or DIAGNOSTICS[0].label in page
    assert "GR (gr, macro_f1) | SV (sv, auc) | AGE (age, macro_f1)" in page
    assert "[[" not in page and "]]" not in page  # one pair of brackets around an interval
    for pair in ("GR_vs_SV", "GR_vs_AGE", "SV_vs_AGE"):
        assert (out / pair / "compare.md").is_file() and (out / pair / "difference.csv").is_file()
        assert f"]({pair}/compare.md)" in page


def test_three_way_compare_with_a_matrix_csv_says_what_it_takes(tmp_path: Path, capsys) -> None:
    # A matrix CSV among three was read as a grid: "m.csv: no such folder of run records".
    grids = [
        write_records(tmp_path / task / "records", grid_records(n_seeds=4, task=task)) for task in ("gr", "sv")
    ]
    matrix = tmp_path / "m.csv"
    matrix.write_text(",en,es\nen,1,0.5\nes,0.2,1\n")
    assert main(["compare", *map(str, grids), str(matrix), "-o", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert "m.csv: a matrix CSV is compared with one other grid or matrix" in err
