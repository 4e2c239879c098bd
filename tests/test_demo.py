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
    # the grids keep the toy corpus's families: comparing them needs no --families
    assert main(["compare", str(out / "grids" / "gr"), str(out / "grids" / "sv"), "-o", str(tmp_path / "cmp")]) == 0


def test_demo_adds_the_age_task_when_asked(tmp_path: Path, toy_corpus: Path) -> None:
    """`cltm demo --tasks age`: the age task prepared (bands), planned, run and reported; the
    training replaced by the fake runner and the corpus the session's, so that this checks the
    wiring in seconds."""
    import shutil

    from cltm_sb.demo import DEFAULT_TASKS, demo_folders, run_demo

    assert DEFAULT_TASKS == ("gr", "sv")  # the default demo stays within its time
    with pytest.raises(ValueError, match=r"demo tasks \['emotion'\]: choose among gr, sv, age"):
        run_demo(tmp_path / "x", quick=True, tasks=["emotion"])
    out = tmp_path / "demo"
    for corpus in ("corpus", "corpus_age"):  # the demo reuses a corpus it finds
        shutil.copytree(toy_corpus, demo_folders(out)[corpus])
    report = run_demo(out, quick=True, workers=1, progress=False, runner="grid_fakes:run_fake", tasks=["age"])
    text = report.read_text(encoding="utf-8")
    assert "## Age-group recognition (age, metric macro_f1)" in text and "## Gender" not in text
    header = (out / "prepared" / "age" / "qaa" / "a.csv").read_text().splitlines()[0]
    assert header.endswith(",age_band")
    info = json.loads((out / "prepared" / "age" / "prepare.json").read_text())
    assert info["n"] == 6 and info["task"] == "age"
    assert (out / "age" / "cltm.csv").is_file()


def test_demo_refuses_a_folder_of_the_other_mode(tmp_path: Path, toy_corpus: Path) -> None:
    """A full demo in a --quick demo's folder once reused the quick corpus and data, trained the
    full grid and stopped at the analysis with 'records mix configurations ... pass --config-hash'
    (an option the demo lacks); now it stops at once and says what to do."""
    import shutil

    from cltm_sb.demo import demo_folders, run_demo

    out = tmp_path / "demo"
    shutil.copytree(toy_corpus, demo_folders(out)["corpus"])
    run_demo(out, quick=True, workers=1, progress=False, runner="grid_fakes:run_fake", tasks=["gr"])
    plan = (out / "grids" / "gr" / "plan.json").read_text()
    with pytest.raises(ValueError, match=r"holds a quick demo .* run `cltm demo` with --quick again"):
        run_demo(out, quick=False, workers=1, progress=False, runner="grid_fakes:run_fake", tasks=["gr"])
    assert (out / "grids" / "gr" / "plan.json").read_text() == plan  # nothing re-planned
    run_demo(out, quick=True, workers=1, progress=False, runner="grid_fakes:run_fake", tasks=["gr"])


def test_an_unreadable_demo_marker_is_rewritten(tmp_path: Path) -> None:
    from cltm_sb.demo import _check_mode

    (tmp_path / "demo.json").write_text("{")  # cut short
    _check_mode(tmp_path, quick=True)
    assert json.loads((tmp_path / "demo.json").read_text()) == {"mode": "quick"}
    with pytest.raises(ValueError, match="holds a quick demo"):
        _check_mode(tmp_path, quick=False)
