"""Nothing mixes silently: one prepare per folder, certified manifests, the encoder in the
configuration, old plans and --debug runs kept apart."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from grid_fakes import make_prepared

import cltm_sb.data.common_voice as cv
from cltm_sb.data import DataError
from cltm_sb.data.manifests import UNFINISHED_FILE, PrepareBusy, prepare_lock
from cltm_sb.grid.executors.core import InProcessExecutor
from cltm_sb.grid.layout import PlanError
from cltm_sb.grid.plan import load_plan, make_plan
from cltm_sb.grid.status import plan_status
from cltm_sb.recipe.encoders import encoder_identity
from cltm_sb.recipe.run import config_hash_for, data_hash_of, run_recipe
from cltm_sb.results import IDENTITY_VERSION, RunRecord, load_records, read_record, write_record

from helpers import make_record, write_records

RUNNER = "grid_fakes:run_fake"
HEADER = "ID,duration,wav,spk_id,gender,locale,subset\n"


def _prepare(corpus: Path, out: Path) -> dict:
    return cv.prepare_common_voice(corpus, ["qaa"], "gr", 8, out, progress=False)


def _plan(data: Path, out: Path):
    return make_plan(out, data, "gr", ["qaa"], [1], runner=RUNNER)


# ---------------------------------------------------------------------------- one prepare per folder
HOLD_LOCK = """
import sys
from cltm_sb.data.manifests import prepare_lock
with prepare_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_concurrent_prepare_into_one_folder_is_refused(toy_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PrepareBusy, match=rf"{out}: another `cltm prepare` \(pid {holder.pid} on .*\)"):
            _prepare(toy_corpus, out)
        assert not (out / "prepare.json").exists() and not (out / "qaa").exists()
    finally:
        holder.communicate("\n", timeout=30)
    assert _prepare(toy_corpus, out)["n"] == 8  # the kernel dropped the lock with its holder


def test_cli_names_the_busy_folder_in_one_line(toy_corpus: Path, tmp_path: Path, capsys) -> None:
    from cltm_sb.cli import main

    out = tmp_path / "prep"
    with prepare_lock(out):  # another open file description: refused like another process
        rc = main(["prepare", "--cv-root", str(toy_corpus), "--locales", "qaa", "--task", "gr",
                   "--n", "8", "--out", str(out), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(out) in err and f"pid {os.getpid()}" in err


def test_interrupted_prepare_leaves_a_marker_that_plan_refuses(
    toy_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "prep"
    _prepare(toy_corpus, out)
    # Prepare again after an edit (so not a no-op) and die half-way, as a killed prepare would.
    (out / "qaa" / "a.csv").write_text(HEADER)
    real = cv._prepare_locale

    def dies(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(cv, "_prepare_locale", dies)
    with pytest.raises(KeyboardInterrupt):
        _prepare(toy_corpus, out)
    assert (out / UNFINISHED_FILE).is_file() and (out / "prepare.json").is_file()
    with pytest.raises(PlanError, match=rf"{out / UNFINISHED_FILE} exists.*run `cltm prepare` again"):
        _plan(out, tmp_path / "plan")
    with pytest.raises(DataError, match="prepare.unfinished"):  # runs refuse it too
        data_hash_of([out / "qaa" / "a.csv"])
    monkeypatch.setattr(cv, "_prepare_locale", real)
    _prepare(toy_corpus, out)  # same arguments: completes (not a no-op despite intact files)
    assert not (out / UNFINISHED_FILE).exists()
    assert _plan(out, tmp_path / "plan").n_trainings == 2  # single and self


# ---------------------------------------------------------------------------- certified manifests
def test_edited_manifest_is_refused_at_plan_and_run_time(toy_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    info = _prepare(toy_corpus, out)
    assert set(info["file_stamps"]) == set(info["files"]) == {"qaa/a.csv", "qaa/b.csv", "qaa/test.csv"}
    plan = _plan(out, tmp_path / "plan")
    assert plan.data_hash == info["data_hash"]
    manifest = out / "qaa" / "a.csv"
    os.utime(manifest, ns=(1, 1))  # touched, content unchanged: still the same data
    assert _plan(out, tmp_path / "plan").data_hash == info["data_hash"]
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:-1]))  # one clip fewer
    message = (
        rf"{manifest} changed after `cltm prepare` \(its content no longer matches .*prepare.json\); "
        "run `cltm prepare` again or restore it"
    )
    with pytest.raises(PlanError, match=message):
        _plan(out, tmp_path / "plan")
    with pytest.raises(DataError, match=message):
        run_recipe("gr", {"train_csv": [str(manifest)], "test_csv": [str(out / "qaa" / "test.csv")],
                          "seed": 1, "output_folder": str(tmp_path / "run"), "encoder": "tiny_hubert",
                          "preset": "toy"})  # fmt: skip
    assert not (tmp_path / "run" / "record.json").exists()
    manifest.write_text("".join(lines))  # restored: accepted again
    assert _plan(out, tmp_path / "plan").data_hash == info["data_hash"]
    (out / "qaa" / "b.csv").unlink()
    with pytest.raises(PlanError, match=r"b\.csv is missing"):
        _plan(out, tmp_path / "plan")


def test_hand_added_manifest_is_not_certified(toy_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    _prepare(toy_corpus, out)
    (out / "zz").mkdir()
    for name in ("a.csv", "b.csv", "test.csv"):
        (out / "zz" / name).write_text(HEADER)
    with pytest.raises(PlanError, match=r"zz.a\.csv is not among the manifests .*prepare.json certifies"):
        make_plan(tmp_path / "plan", out, "gr", ["qaa", "zz"], [1], runner=RUNNER)


def test_own_manifests_still_plan(tmp_path: Path) -> None:
    data = _own_data(tmp_path / "own")
    plan = make_plan(tmp_path / "plan", data, "gr", ["xa", "xb"], [1], runner=RUNNER)
    assert plan.data_root == str(data.resolve())
    manifest = data / "xa" / "a.csv"
    manifest.write_text(manifest.read_text().replace(",0.1,", ",0.09,"))  # own data: the hash follows the content
    assert make_plan(tmp_path / "plan", data, "gr", ["xa", "xb"], [1], runner=RUNNER).data_hash != plan.data_hash


def _own_data(folder: Path, locales: tuple[str, ...] = ("xa", "xb")) -> Path:
    """A folder of own manifests (no prepare.json): its data hash is its CSVs' content."""
    import numpy as np
    import soundfile as sf

    for locale in locales:
        (folder / locale).mkdir(parents=True)
        for subset in ("a", "b", "test"):
            sf.write(folder / f"{locale}{subset}.wav", np.zeros(1600, np.float32), 16000)
            (folder / locale / f"{subset}.csv").write_text(
                HEADER + f"{locale}_{subset}1,0.1,$data_root/{locale}{subset}.wav,{locale}{subset},"
                f"female,{locale},{subset}\n"
            )
    return folder


def test_data_changed_after_plan_is_refused_not_retrained_forever(tmp_path: Path, capsys) -> None:
    """Each run records its manifests' data hash; a record of other data never counts as done, so
    after an edit every `cltm run` trained every run in full again, reporting them finished."""
    from cltm_sb.cli import main

    data = _own_data(tmp_path / "own")
    plan = make_plan(tmp_path / "plan", data, "gr", ["xa", "xb"], [1], runner="grid_fakes:run_fake_hashing")
    plan.save()
    manifest = data / "xb" / "a.csv"
    original = manifest.read_text()
    manifest.write_text(original.replace(",0.1,", ",0.09,"))  # edited after `cltm plan`
    with pytest.raises(PlanError, match=rf"{data}: its data hash is \w+, not the plan's {plan.data_hash}.*"
                                        r"changed since `cltm plan`.*nothing was run"):
        InProcessExecutor().run(plan, progress=False)
    assert not plan.records_dir.exists()
    assert main(["run", str(plan.plan_dir), "--executor", "inprocess", "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err
    manifest.write_text(original)  # restored: runs, and every run is done
    assert InProcessExecutor().run(plan, progress=False).n_ok == plan.n_trainings
    assert {s.state for s in plan_status(plan)} == {"done"}


def test_status_says_when_run_would_refuse_the_plan(tmp_path: Path, capsys) -> None:
    """`cltm status` showed such a plan's runs as merely pending; `cltm run` then refused it."""
    from cltm_sb.cli import main

    data = _own_data(tmp_path / "own")
    plan = make_plan(tmp_path / "plan", data, "gr", ["xa", "xb"], [1], runner="grid_fakes:run_fake_hashing")
    plan.save()
    assert main(["status", str(plan.plan_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["blocked"] is None
    manifest = data / "xb" / "a.csv"
    original = manifest.read_text()
    manifest.write_text(original.replace(",0.1,", ",0.09,"))
    assert main(["status", str(plan.plan_dir)]) == 0
    out = capsys.readouterr().out
    assert f"BLOCKED: `cltm run` will refuse this plan: {data}: its data hash" in out and "--force" in out
    manifest.write_text(original)
    raw = json.loads(plan.plan_file.read_text())
    raw["overrides"]["lr"] = 0.1  # plan.json edited by hand
    plan.plan_file.write_text(json.dumps(raw))
    assert main(["status", str(plan.plan_dir), "--json"]) == 0
    assert "config hash" in json.loads(capsys.readouterr().out)["blocked"]


def test_run_of_other_data_than_the_plan_is_failed_not_ok(tmp_path: Path, monkeypatch) -> None:
    """Data that changes while a run trains (after the grid's check): a failed record that says so."""
    from cltm_sb.grid.plan import Plan

    data = _own_data(tmp_path / "own")
    plan = make_plan(tmp_path / "plan", data, "gr", ["xa", "xb"], [1], runner="grid_fakes:run_fake_hashing")
    plan.save()
    (data / "xa" / "b.csv").write_text((data / "xa" / "b.csv").read_text().replace(",0.1,", ",0.09,"))
    monkeypatch.setattr(Plan, "require_current_data", lambda self: None, raising=False)
    report = InProcessExecutor().run(plan, progress=False)
    assert report.n_ok == 0 and len(report.failed) == plan.n_trainings
    assert f"not the plan's {plan.data_hash}" in report.failed[0].error


# ---------------------------------------------------------------------------- the encoder's identity
def _checkpoint(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_other_weights_under_one_encoder_name_are_another_configuration(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "ckpt", b"weights one")
    overrides = {"encoder": "hf_ssl", "encoder_source": str(folder), "encoder_dim": 48, "preset": "toy"}
    first = config_hash_for("gr", overrides)
    assert config_hash_for("gr", overrides) == first
    os.utime(folder / "model.safetensors", ns=(5, 5))  # same bytes, other mtime: same configuration
    assert config_hash_for("gr", overrides) == first
    _checkpoint(folder, b"weights two")  # fine-tuned further, same folder and name
    assert config_hash_for("gr", overrides) != first
    assert encoder_identity(folder)["weights_sha256"] == hashlib.sha256(b"weights two").hexdigest()


def test_hub_identity_is_the_revision_else_the_cached_main_else_the_id(tmp_path: Path) -> None:
    commit, other = "a" * 40, "b" * 40
    assert encoder_identity("org/model", None, tmp_path) == {"hub_id": "org/model", "revision": None}
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(commit)
    (refs / "v1").write_text(other)
    assert encoder_identity("org/model", None, tmp_path)["revision"] == commit
    assert encoder_identity("org/model", "v1", tmp_path)["revision"] == other
    assert encoder_identity("org/model", "c" * 40, tmp_path)["revision"] == "c" * 40
    assert encoder_identity("speechbrain ECAPA (from scratch)") == {"source": "speechbrain ECAPA (from scratch)"}


# ---------------------------------------------------------------------------- old identity version
def _old_plan(tmp_path: Path):
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    plan.save()
    raw = json.loads(plan.plan_file.read_text())
    del raw["identity_version"]  # as written before the field existed
    plan.plan_file.write_text(json.dumps(raw))
    return data, load_plan(plan.plan_dir)


def _finish(plan, drop: tuple[str, ...] = ()) -> None:
    """An ok record for every run of the plan (what a finished grid holds), without ``drop``."""
    for spec in plan.runs:
        record = make_record(list(spec.train), dict.fromkeys(spec.eval_locales, 0.7), spec.seed,
                             config_hash=plan.config_hash, data_hash=plan.data_hash, run_id=spec.run_id)
        raw = {k: v for k, v in record.to_dict().items() if k not in drop}
        plan.paths(spec).record.parent.mkdir(parents=True, exist_ok=True)
        plan.paths(spec).record.write_text(json.dumps(raw))


def test_old_identity_plan_is_not_run_silently(tmp_path: Path, capsys) -> None:
    from cltm_sb.cli import main

    data, plan = _old_plan(tmp_path)
    assert plan.identity_version == 1 < IDENTITY_VERSION
    with pytest.raises(PlanError, match=r"plan.json: this plan and its records are of configuration identity version 1"):
        InProcessExecutor().run(plan, progress=False)
    assert not plan.records_dir.exists(), "nothing ran"
    assert main(["run", str(plan.plan_dir), "--executor", "inprocess", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Nothing was run" in err and "--force" in err and str(plan.plan_file) in err
    assert main(["status", str(plan.plan_dir)]) == 0
    assert "identity version 1" in capsys.readouterr().out
    args = ["plan", "--data", str(data), "--task", "gr", "--locales", "en,es", "--seeds", "1",
            "-o", str(plan.plan_dir), "--runner", RUNNER]  # fmt: skip
    assert main(args) == 2
    assert "identity version 1" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert load_plan(plan.plan_dir).identity_version == IDENTITY_VERSION


def test_finished_old_plan_and_its_records_stay_readable(tmp_path: Path, caplog) -> None:
    data, plan = _old_plan(tmp_path)
    _finish(plan, drop=("identity_version",))  # records written before the field existed
    assert InProcessExecutor().run(plan, progress=False).n_runs == 0  # nothing to do: no refusal
    assert {s.state for s in plan_status(plan)} == {"done"}
    with caplog.at_level("INFO"):
        records = load_records(plan.plan_dir)
    assert len(records.older_identity) == len(plan.runs) and len(records.table) == 6  # pair: 2
    assert "identity version 1" in caplog.text


# ---------------------------------------------------------------------------- --debug runs
def test_debug_record_is_never_counted(tmp_path: Path) -> None:
    records = [make_record([("en", "a")], {"en": 0.6}, seed) for seed in (1, 2)]
    debug = make_record([("en", "a")], {"en": 0.9}, 3)
    debug.debug = True
    loaded = load_records(write_records(tmp_path / "records", [*records, debug]))
    assert loaded.n_debug == 1 and loaded.n_failed == 0 and loaded.n_records == 3
    assert sorted(loaded.table["seed"]) == [1, 2]
    assert RunRecord.from_dict(debug.to_dict()).debug is True


def test_debug_record_does_not_finish_a_grid_run(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [1], runner=RUNNER)
    plan.save()
    _finish(plan)
    path = plan.paths(plan.runs[0]).record
    record = read_record(path)
    record.debug = True
    write_record(record, path)
    states = {s.spec.run_id: s.state for s in plan_status(plan)}
    assert states[plan.runs[0].run_id] == "pending" and states[plan.runs[1].run_id] == "done"


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_speechbrain_debug_run_is_marked(tmp_path: Path) -> None:
    from recipe_toy import make_prepared as make_toy

    prepared = make_toy(tmp_path / "toy", speakers_per_gender=2, clips_per_speaker=2)
    overrides = {
        "train_csv": [str(prepared / "xa" / "a.csv")], "test_csv": [str(prepared / "xa" / "test.csv")],
        "seed": 1, "output_folder": str(tmp_path / "run"), "encoder": "tiny_hubert", "preset": "toy",
        "tiny_hubert_folder": str(tmp_path / "tiny"),
    }  # fmt: skip
    record = run_recipe("gr", overrides, run_opts={"debug": True, "device": "cpu"})
    assert record.debug is True and read_record(tmp_path / "run" / "record.json").debug is True
    assert record.identity_version == IDENTITY_VERSION
    assert record.encoder["weights_sha256"] == encoder_identity(tmp_path / "tiny")["weights_sha256"]
    planned = {k: v for k, v in overrides.items() if k not in ("train_csv", "test_csv", "seed", "output_folder")}
    assert config_hash_for("gr", planned) == record.config_hash
