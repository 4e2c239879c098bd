"""`cltm demo --quick` end to end: toy corpus, both grids, matrices and report (a couple of minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cltm_sb.analysis.summary import MATRIX_FILES


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = pytest.importorskip("cltm_sb.recipe.run", reason="cltm_sb.recipe.run (the recipe runner) is missing")
    if not hasattr(runner, "config_hash_for"):
        pytest.skip("cltm_sb.recipe.run.config_hash_for is missing: the grid cannot hash a configuration")
    from cltm_sb.cli import main

    out = tmp_path / "demo out"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    assert str(out / "report.md") in capsys.readouterr().out
    report = (out / "report.md").read_text(encoding="utf-8")
    for task in ("gr", "sv"):
        for name in (*MATRIX_FILES, "cltm_se.csv", "cltm.png", "report.html", "donors.csv"):
            assert (out / task / name).is_file(), f"{task}/{name} missing"
        assert f"]({task}/cltm.png)" in report and f"]({task}/report.html)" in report
        diag = json.loads((out / task / "diagnostics.json").read_text())
        assert diag["n_failed_runs"] == 0 and diag["seeds"] == [42, 43]
        records = list((out / "grids" / task / "records").glob("*.json"))
        assert len(records) == 2 * 9  # 3 languages: L(L+3)/2 = 9 trainings per seed
    # a second call reuses everything: no run is trained again
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "grids").rglob("records/*.json")}
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "grids").rglob("records/*.json")}
