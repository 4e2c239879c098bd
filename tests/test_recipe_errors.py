"""User errors of a recipe run: one clear line that names the file and what to do, before or
instead of a bare torch/KeyError traceback (a damaged checkpoint, a missing label column, a
bad command line)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipe_toy import make_prepared

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.checkpoints import Checkpointer
from cltm_sb.recipe.hparams import hparams_dir
from cltm_sb.recipe.run import run_recipe, script_main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("toy"), speakers_per_gender=1, clips_per_speaker=1,
                         test_speakers_per_gender=1, seconds=0.2)


def test_a_damaged_checkpoint_names_its_folder_and_keeps_it(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "save", recoverables={"encoder": torch.nn.Linear(4, 2)})
    saved = checkpointer.save_checkpoint()
    damaged = saved.path / "encoder.ckpt"
    damaged.write_bytes(damaged.read_bytes()[:100])  # a save cut short by a full disk, a copy...
    expected = rf"checkpoint {re.escape(str(saved.path))} cannot be loaded \(RuntimeError: .*\); delete that folder"
    with pytest.raises(RecipeError, match=expected):
        checkpointer.recover_if_possible()
    assert damaged.is_file()  # the user's data stays: the message says what to delete


def test_a_label_column_missing_from_the_manifests_is_named_before_training(prepared: Path, tmp_path: Path) -> None:
    declaration = tmp_path / "pkcol.yaml"
    declaration.write_text(
        "name: pkcol\nrecipe: gender\nmetric: macro_f1\nlabel: {column: accent, classes: [a, b]}\n"
    )
    overrides = {
        "train_csv": [str(prepared / "xa" / "a.csv")], "test_csv": [str(prepared / "xa" / "test.csv")],
        "seed": 1, "output_folder": str(tmp_path / "run"), "encoder": "tiny_hubert", "preset": "toy",
        "tiny_hubert_folder": str(tmp_path / "tiny"),
    }
    with pytest.raises(RecipeError, match=r"xa/a\.csv: no column 'accent', the label column of task 'pkcol' "
                                          r"\(label\.column in .*pkcol\.yaml\)"):
        run_recipe(str(declaration), overrides)
    assert not (tmp_path / "run" / "save").exists()  # refused before anything trained


def test_a_mistyped_manifest_path_is_named(prepared: Path, tmp_path: Path) -> None:
    """A train_csv in a mistyped folder was hashed as a data set of its own: "the manifests come
    from two data sets, ... (data_hash ...)" (for /x.csv, every CSV one level below / was read)."""
    typo = tmp_path / "prepd" / "xa" / "a.csv"
    overrides = {
        "train_csv": [str(typo)], "test_csv": [str(prepared / "xa" / "test.csv")],
        "seed": 1, "output_folder": str(tmp_path / "run"), "encoder": "tiny_hubert", "preset": "toy",
        "tiny_hubert_folder": str(tmp_path / "tiny"),
    }
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(typo))}: file not found"):
        run_recipe("gr", overrides)


def _argv(prepared: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [str(hparams_dir() / "gender.yaml"), f"--train_csv=[{prepared / 'xa' / 'a.csv'}]",
            f"--test_csv=[{prepared / 'xa' / 'test.csv'}]", "--seed=1", f"--output_folder={tmp_path / 'run'}",
            "--encoder=tiny_hubert", "--preset=toy", f"--tiny_hubert_folder={tmp_path / 'tiny'}", *extra]


@pytest.mark.parametrize("extra, message", [
    ("--lrr=1e-3", "unknown hparams override(s) ['lrr']"),
    ("--preset=toyy", "unknown preset 'toyy'"),
])
def test_a_user_error_is_one_line_and_status_2(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: str, message: str
) -> None:
    assert script_main("gr", _argv(prepared, tmp_path, extra), prog="train.py") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"train.py: error: {message}") and err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(task: str, argv: list[str] | None = None) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("cltm_sb.recipe.run.main", broken)
    with pytest.raises(ZeroDivisionError):
        script_main("gr", [])


def test_the_recipe_script_exits_2_with_one_line(prepared: Path, tmp_path: Path) -> None:
    script = REPO / "recipes" / "gender" / "train.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}  # this tree's cltm_sb
    done = subprocess.run([sys.executable, str(script), *_argv(prepared, tmp_path, "--lrr=1e-3")],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"{script}: error: " + done.stderr.split(": error: ", 1)[1].strip()]
    assert "Traceback" not in done.stderr and "unknown hparams override(s) ['lrr']" in done.stderr


def test_a_task_of_ones_own_is_refused_before_its_script_starts(prepared: Path, tmp_path: Path) -> None:
    from cltm_sb.recipe.user import run_user_recipe
    from cltm_sb.tasks import get_task

    (tmp_path / "train.py").write_text("raise SystemExit('the script must not start')\n")
    (tmp_path / "h.yaml").write_text("seed: 0\n")
    (tmp_path / "own.yaml").write_text(
        "name: own\nrecipe: {script: train.py, hparams: h.yaml}\nmetric: macro_f1\n"
        "label: {column: accent, classes: [a, b]}\n"
    )
    overrides = {"train_csv": [str(prepared / "xa" / "a.csv")], "test_csv": [str(prepared / "xa" / "test.csv")],
                 "seed": 1, "output_folder": str(tmp_path / "run")}
    with pytest.raises(RecipeError, match=r"xa/a\.csv: no column 'accent', the label column of task 'own'"):
        run_user_recipe(get_task(str(tmp_path / "own.yaml")), overrides)


def test_plan_refuses_a_declared_label_column_the_manifests_lack(prepared: Path, tmp_path: Path, capsys) -> None:
    from cltm_sb.cli import main

    declaration = tmp_path / "pkcol.yaml"
    declaration.write_text(
        "name: pkcol\nrecipe: gender\nmetric: macro_f1\nlabel: {column: accent, classes: [a, b]}\n"
    )
    locales = sorted(p.name for p in prepared.iterdir() if (p / "a.csv").is_file())[:2]
    status = main(["plan", "--data", str(prepared), "--task", str(declaration), "--locales", ",".join(locales),
                   "--seeds", "1", "--override", "encoder=tiny_hubert", "--override", "preset=toy",
                   "--override", f"tiny_hubert_folder={tmp_path / 'tiny'}", "-o", str(tmp_path / "plan")])
    assert status == 2
    assert "a.csv: no column 'accent', the label column of task 'pkcol'" in capsys.readouterr().err
    assert not (tmp_path / "plan" / "plan.json").exists()  # every run would have failed


def test_an_unfinished_prepared_folder_is_one_line_and_status_2(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    copy = tmp_path / "prep"
    shutil.copytree(prepared, copy)
    (copy / "prepare.unfinished").write_text("cltm prepare started by pid 1\n")  # a killed prepare
    # It used to end in a DataError traceback (exit 1) instead of the recipe's one error line.
    assert script_main("gr", _argv(copy, tmp_path), prog="train.py") == 2
    err = capsys.readouterr().err  # after the tiny encoder's one-off build bar
    last = err.strip().splitlines()[-1]
    assert last.startswith("train.py: error: ") and "prepare.unfinished exists" in last
    assert "Traceback" not in err


def test_a_metric_the_packaged_recipe_does_not_report_is_refused_before_training(tmp_path: Path) -> None:
    from cltm_sb.recipe.run import check_config

    declaration = tmp_path / "typo.yaml"
    declaration.write_text("name: typo\nrecipe: gender\nmetric: macro-f1\n")
    # cltm plan used to accept it; every run then trained and failed at evaluation.
    with pytest.raises(RecipeError, match=r"declares metric 'macro-f1', which the packaged recipe 'gender' does "
                                          r"not report; set metric to one of accuracy, loss, macro_f1"):
        check_config(str(declaration), {"encoder": "tiny_hubert", "preset": "toy"})


def test_a_verification_task_records_its_declared_metric(tmp_path: Path) -> None:
    prepared = make_prepared(tmp_path / "toy", locales=("xa",), speakers_per_gender=1, clips_per_speaker=2,
                             test_speakers_per_gender=2, seconds=0.2)
    declaration = tmp_path / "sveer.yaml"
    declaration.write_text("name: sveer\nrecipe: speaker\nmetric: eer\nhigher_is_better: false\n"
                           "label: {column: spk_id}\ntrials: true\nclips_per_speaker: 2\n")
    overrides = {
        "train_csv": [str(prepared / "xa" / "a.csv")], "test_csv": [str(prepared / "xa" / "test.csv")],
        "trials_csv": [str(prepared / "xa" / "trials.csv")], "seed": 1, "output_folder": str(tmp_path / "run"),
        "encoder": "tiny_hubert", "preset": "toy", "tiny_hubert_folder": str(tmp_path / "tiny"),
        "number_of_epochs": 1,
    }
    (evaluation,) = run_recipe(str(declaration), overrides).evaluations
    # It used to be the AUC, recorded as "auc" whatever the task declared.
    assert evaluation.metric == "1-eer" and evaluation.value == pytest.approx(1.0 - evaluation.extra["eer"])
    assert "auc" in evaluation.extra


def test_plan_refuses_label_values_outside_the_declared_classes(prepared: Path, tmp_path: Path, capsys) -> None:
    from cltm_sb.cli import main

    declaration = tmp_path / "fm.yaml"
    declaration.write_text("name: fm\nrecipe: gender\nmetric: macro_f1\nlabel: {column: gender, classes: [f, m]}\n")
    locales = sorted(p.name for p in prepared.iterdir() if (p / "a.csv").is_file())[:2]
    status = main(["plan", "--data", str(prepared), "--task", str(declaration), "--locales", ",".join(locales),
                   "--seeds", "1", "--override", "encoder=tiny_hubert", "--override", "preset=toy",
                   "--override", f"tiny_hubert_folder={tmp_path / 'tiny'}", "-o", str(tmp_path / "plan")])
    assert status == 2
    err = capsys.readouterr().err
    assert "a.csv: gender value(s) 'female', 'male' are not among the classes ['f', 'm'] of task 'fm'" in err
    assert not (tmp_path / "plan" / "plan.json").exists()


def test_a_second_run_in_a_folder_in_use_is_one_line_and_touches_nothing(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Two runs in one output folder both trained, deleting each other's checkpoints and writing
    the record twice (a DDP rerun beside the workers of a SIGKILLed torchrun hung instead)."""
    import fcntl

    folder = tmp_path / "run"
    folder.mkdir()
    with open(folder / ".run.lock", "a+", encoding="utf-8") as held:  # a live run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on node7\n")
        held.flush()
        assert script_main("gr", _argv(prepared, tmp_path), prog="train.py") == 2
        fcntl.flock(held, fcntl.LOCK_UN)
    err = capsys.readouterr().err.splitlines()[-1]  # after the tiny encoder's build progress
    assert err == f"train.py: error: {folder} is in use by another run (pid 4242 on node7); wait for it to end " \
                  "or stop it (under torchrun: every worker), then run this command again"
    assert sorted(p.name for p in folder.iterdir()) == [".run.lock"]  # nothing of this run was written
    assert script_main("gr", _argv(prepared, tmp_path), prog="train.py") == 0  # a lock left behind holds nothing
    assert (folder / "record.json").is_file()


def _save_twice_under_ddp(rank: int, folder: str, port: int) -> None:
    """One process of a 2-process gloo group: two epoch-end saves keeping one checkpoint, the
    main process renaming late (a slow disk), as in a DDP run of the recipe."""
    import time

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    original = Checkpointer._new_checkpoint_dirpath

    def late(self: Checkpointer) -> Path:
        time.sleep(0.5)
        return original(self)

    Checkpointer._new_checkpoint_dirpath = late
    checkpointer = Checkpointer(Path(folder), recoverables={"head": torch.nn.Linear(2, 2)})
    for epoch in range(3):
        checkpointer.save_and_keep_only(meta={"epoch": epoch}, num_to_keep=1)
    torch.distributed.destroy_process_group()


def test_ddp_checkpoint_saves_do_not_hang(tmp_path: Path) -> None:
    """The main process renamed a saved checkpoint after the others had listed the folder: it
    deleted the older one (a collective) while they waited at a barrier, and DDP hung."""
    import multiprocessing
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_twice_under_ddp, args=(rank, str(tmp_path / "save"), port))
               for rank in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=90)
    hung = [w for w in workers if w.is_alive()]
    for worker in hung:
        worker.kill()
        worker.join()
    assert not hung, "the DDP saves hung"
    assert [w.exitcode for w in workers] == [0, 0]
    assert len([p for p in (tmp_path / "save").iterdir() if p.name.startswith("CKPT+")]) == 1
