"""The plan: counts, stable ids, the plan file, per-run paths."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.grid.layout import RUN_MARKER, PlanError, RunPaths
from cltm_sb.grid.plan import load_plan, make_plan, plan_runs, run_id_for, trainings_per_seed

from helpers import assert_golden

LOCALES = ["de", "en", "es", "fr", "it", "pl"]
GOLDEN = Path(__file__).parent / "golden" / "plan_gr_en_es_fr.json"
RUNNER = "grid_fakes:run_fake"


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("per_cell", [False, True])
def test_plan_counts(n: int, per_cell: bool) -> None:
    seeds = [42, 43]
    runs = plan_runs("gr", LOCALES[:n], seeds, "cfg", one_run_per_cell=per_cell)
    expected = n * (n + 1) if per_cell else n * (n + 3) // 2
    assert trainings_per_seed(n, per_cell) == expected
    assert len(runs) == expected * len(seeds)
    kinds = Counter(r.kind for r in runs)
    assert kinds["single"] == kinds["self"] == n * len(seeds)
    # every ordered cell (t, s) is evaluated exactly once per seed
    cells = Counter(
        (loc, tuple(sorted(x for x, _ in r.train)), r.seed)
        for r in runs
        if r.kind == "pair"
        for loc in r.eval_locales
    )
    assert len(cells) == n * (n - 1) * len(seeds)
    assert set(cells.values()) == {1}
    assert len({r.run_id for r in runs}) == len(runs)


def test_sharing_ratio_at_six() -> None:
    assert trainings_per_seed(6, True) / trainings_per_seed(6) == pytest.approx(42 / 27)


def test_one_run_per_cell_orders_target_first_and_ids_differ() -> None:
    runs = [r for r in plan_runs("gr", ["en", "es"], [1], "cfg", one_run_per_cell=True) if r.kind == "pair"]
    assert [(r.train, r.eval_locales) for r in runs] == [
        ((("en", "a"), ("es", "a")), ("en",)),
        ((("es", "a"), ("en", "a")), ("es",)),
    ]
    assert runs[0].run_id.startswith("pair-en+es-on-en-s1-")
    assert runs[1].run_id.startswith("pair-es+en-on-es-s1-")


def test_shared_pair_is_evaluated_on_both() -> None:
    pair = [r for r in plan_runs("sv", ["es", "en"], [7], "cfg") if r.kind == "pair"]
    assert len(pair) == 1 and set(pair[0].eval_locales) == {"en", "es"}
    assert pair[0].run_id.startswith("pair-en+es-s7-")


def test_targets_and_donors_limit_the_grid() -> None:
    runs = plan_runs("gr", LOCALES, [1], "cfg", targets=["pl"])
    assert Counter(r.kind for r in runs) == {"single": 1, "self": 1, "pair": 5}
    assert all(r.eval_locales == ("pl",) for r in runs)
    runs = plan_runs("gr", LOCALES[:3], [1], "cfg", targets=["de"], donors=["en"])
    assert [r.kind for r in runs] == ["single", "self", "pair"]
    with pytest.raises(PlanError, match=r"--targets \['xx'\] are not among --locales"):
        plan_runs("gr", LOCALES, [1], "cfg", targets=["xx"])


def test_donor_sets_add_multi_runs() -> None:
    runs = plan_runs("gr", ["en", "es", "fr"], [1], "cfg", donor_sets=[["es", "fr"]])
    multi = [r for r in runs if r.kind == "multi"]
    assert [(r.train, r.eval_locales) for r in multi] == [
        ((("en", "a"), ("es", "a"), ("fr", "a")), ("en",))
    ]
    with pytest.raises(PlanError, match="two or more donors"):
        plan_runs("gr", ["en", "es"], [1], "cfg", donor_sets=[["es"]])


def test_ids_depend_on_content_only() -> None:
    a = run_id_for("gr", "pair", [("es", "a"), ("en", "a")], ["en", "es"], 42, "cfg")
    b = run_id_for("gr", "pair", [("en", "a"), ("es", "a")], ["es", "en"], 42, "cfg")
    assert a == b
    assert a != run_id_for("gr", "pair", [("en", "a"), ("es", "a")], ["en", "es"], 43, "cfg")
    assert a != run_id_for("gr", "pair", [("en", "a"), ("es", "a")], ["en", "es"], 42, "cfg2")
    assert a != run_id_for("sv", "pair", [("en", "a"), ("es", "a")], ["en", "es"], 42, "cfg")


def test_ids_stable_across_invocations() -> None:
    code = (
        "from cltm_sb.grid.plan import plan_runs; "
        "print(' '.join(r.run_id for r in plan_runs('gr', ['en','es','fr'], [42, 43], 'cfg')))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in (0, 1, 2)
    }
    assert len(outs) == 1
    here = " ".join(r.run_id for r in plan_runs("gr", ["en", "es", "fr"], [42, 43], "cfg"))
    assert outs == {here + "\n"}


def _golden_view(plan_file: Path, data: Path) -> str:
    text = plan_file.read_text(encoding="utf-8")
    return text.replace(json.dumps(str(data))[1:-1], "<DATA>")


def test_plan_file_golden(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en", "es", "fr"])
    plan = make_plan(
        tmp_path / "plan", data, "gr", ["en", "es", "fr"], [42], overrides={"preset": "toy"},
        runner=RUNNER,
    )
    plan.save()
    got = _golden_view(plan.plan_file, data)
    assert_golden(GOLDEN, got)


def test_plan_roundtrip_in_a_weird_folder(tmp_path: Path) -> None:
    weird = tmp_path / "a b'; echo \"c\" $HOME" / "pl an"
    data = make_prepared(weird / "prep ared", ["en", "es"])
    plan = make_plan(weird / "plan", data, "sv", ["en", "es"], [1, 2], runner=RUNNER)
    plan.save()
    loaded = load_plan(weird / "plan")
    assert loaded.to_dict() == plan.to_dict()
    assert load_plan(plan.plan_file).runs == plan.runs
    overrides = loaded.run_overrides(loaded.runs[-1])
    assert overrides["trials_csv"] == [str(data.resolve() / loc / "trials.csv") for loc in ("en", "es")]
    assert overrides["output_folder"] == str(weird / "plan" / "runs" / loaded.runs[-1].run_id)
    assert overrides["data_root"] == str((data / "audio").resolve())


def test_plan_names_missing_manifests(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en"])
    with pytest.raises(PlanError, match=r"missing manifests .*es.a\.csv"):
        make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    with pytest.raises(FileNotFoundError, match="cltm prepare"):
        make_plan(tmp_path / "plan", tmp_path / "nowhere", "gr", ["en"], [1], runner=RUNNER)
    with pytest.raises(PlanError, match="cannot import no_such_module"):
        make_plan(tmp_path / "plan", data, "gr", ["en"], [1], runner="no_such_module:run")


def test_run_paths_delete_only_marked_folders(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "plan", "single-en-s1-abc")
    assert paths.run_dir == tmp_path / "plan" / "runs" / "single-en-s1-abc"
    assert paths.record == tmp_path / "plan" / "records" / "single-en-s1-abc.json"
    assert paths.log == tmp_path / "plan" / "logs" / "single-en-s1-abc.log"
    paths.fresh_run_dir()
    (paths.run_dir / "half.ckpt").write_text("x")
    (paths.record.parent / ".single-en-s1-abc.json.x1.tmp").write_text("{")
    paths.fresh_run_dir()
    assert sorted(p.name for p in paths.run_dir.iterdir()) == [RUN_MARKER]
    assert not list(paths.record.parent.iterdir())
    paths.marker.unlink()
    with pytest.raises(PlanError, match="not made by the grid"):
        paths.fresh_run_dir()
    assert paths.run_dir.is_dir()


def test_cli_plan_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cltm_sb.cli import main

    data = make_prepared(tmp_path / "prep", LOCALES)
    rc = main(["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(LOCALES),
               "--seeds", "42-43", "-o", str(tmp_path / "p"), "--runner", RUNNER,
               "--time-per-run", "10"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "54 trainings" in out
    assert "27 with pair sharing, 42 with one run per cell (x1.56 more)" in out
    assert "estimated time with 1 worker(s)" in out
    # another configuration in the same folder is refused
    rc = main(["plan", "--data", str(data), "--task", "gr", "--locales", "en,es", "-o",
               str(tmp_path / "p"), "--runner", RUNNER, "--override", "lr=0.1"])
    assert rc == 2
    assert "--force" in capsys.readouterr().err


def test_cli_plan_time_estimate_says_where_its_time_comes_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --time-per-run was printed as "measured", and records in the folder silently replaced it.
    from cltm_sb.cli import main
    from cltm_sb.grid.executors.core import InProcessExecutor

    data = make_prepared(tmp_path / "prep", LOCALES[:2])
    args = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(LOCALES[:2]), "--seeds", "42",
            "-o", str(tmp_path / "p"), "--runner", RUNNER]
    assert main([*args, "--time-per-run", "10"]) == 0
    assert "(10.0 s per training subset, given by --time-per-run)" in capsys.readouterr().out
    InProcessExecutor().run(load_plan(tmp_path / "p"), progress=False)  # records whose runs take ~0 s
    assert main([*args, "--time-per-run", "10"]) == 0
    assert "(10.0 s per training subset, given by --time-per-run)" in capsys.readouterr().out
    assert main(args) == 0
    assert "s per training subset, measured on the records in" in capsys.readouterr().out


@pytest.mark.parametrize("broken", ['{"format": "cltm-plan", "version": 1, "task": "g', "null", '{"format": "cltm-plan", "version": 7}'])
def test_unreadable_plan_names_the_way_out_that_works(tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str) -> None:
    # A truncated plan.json said "make it again with `cltm plan`", which refused the same file
    # again (it reads the plan it would replace); a JSON null was a traceback.
    from cltm_sb.cli import main

    data = make_prepared(tmp_path / "prep", LOCALES[:2])
    out = tmp_path / "p"
    out.mkdir()
    (out / "plan.json").write_text(broken)
    assert main(["status", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--force" in err and str(out) in err
    args = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(LOCALES[:2]), "-o", str(out),
            "--runner", RUNNER]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0  # the way out it names works
    assert main(["status", str(out)]) == 0
