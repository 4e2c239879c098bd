"""End-to-end recipe runs on a toy corpus with the tiny HuBERT (and ECAPA-TDNN), on CPU."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from recipe_toy import make_prepared

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.data import make_dataset, read_manifests
from cltm_sb.recipe.hparams import available, compose_hparams, hparams_dir
from cltm_sb.recipe.run import config_hash_for, main, run_recipe
from cltm_sb.recipe.run_files import has_checkpoint
from cltm_sb.results import read_record

pytestmark = pytest.mark.slow
ECAPA_SMALL = {
    "encoder": "ecapa",
    "ecapa_channels": [32, 32, 32, 32, 96],
    "ecapa_attention_channels": 16,
    "ecapa_n_mels": 40,
    "encoder_dim": 48,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("toy"), speakers_per_gender=6, clips_per_speaker=3)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("cache") / "tiny_hubert")


def _overrides(prepared: Path, task: str, out: Path, tiny: str | None, **extra) -> dict:
    ov = {
        "train_csv": [str(prepared / "xa" / "a.csv")],
        "test_csv": [str(prepared / "xa" / "test.csv"), str(prepared / "xb" / "test.csv")],
        "seed": 42,
        "output_folder": str(out),
        "encoder": "tiny_hubert",
        "preset": "toy",
    }
    if tiny is not None:
        ov["tiny_hubert_folder"] = tiny
    if task == "sv":
        ov["trials_csv"] = [str(prepared / loc / "trials.csv") for loc in ("xa", "xb")]
    ov.update(extra)
    return ov


def test_gender_end_to_end(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    record = run_recipe("gr", _overrides(prepared, "gr", tmp_path / "run", tiny_folder),
                        run_id="gr-xa-42")
    assert [e.locale for e in record.evaluations] == ["xa", "xb"]
    for e in record.evaluations:
        assert e.metric == "macro_f1" and e.n_items == 18
        assert e.value > 0.6  # chance is 0.5
        assert set(e.extra["recall"]) == {"female", "male"}
    assert record.train_set == [{"locale": "xa", "subset": "a"}]
    assert record.data_hash == "toy-0" and record.encoder["weights_sha256"]
    assert record.extra["lr"] == 0.0005 and record.extra["encoder_config"]["layerdrop"] == 0.0
    per_run = {"train_csv", "test_csv", "seed", "output_folder"}
    planned = {k: v for k, v in _overrides(prepared, "gr", tmp_path, tiny_folder).items() if k not in per_run}
    assert config_hash_for("gr", planned) == record.config_hash  # what the grid checks on resume
    again = read_record(tmp_path / "run" / "record.json")
    assert again.to_dict() == record.to_dict()
    assert not (tmp_path / "run" / "save").exists()  # no checkpoints kept by default
    # Rerunning a finished run does nothing and gives its record; another configuration in the
    # same folder is refused.
    assert run_recipe("gr", _overrides(prepared, "gr", tmp_path / "run", tiny_folder),
                      run_id="gr-xa-42").to_dict() == record.to_dict()
    with pytest.raises(RecipeError, match="another configuration"):
        run_recipe("gr", _overrides(prepared, "gr", tmp_path / "run", tiny_folder, lr=0.001))


def test_speaker_end_to_end_and_keep_head(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    out = tmp_path / "sv"
    ov = _overrides(prepared, "sv", out, tiny_folder, keep_checkpoints="head",
                    train_csv=[str(prepared / "xa" / "a.csv"), str(prepared / "xa" / "b.csv")])
    record = run_recipe("sv", ov, kind="self", record_path=tmp_path / "records" / "r.json")
    assert record.train_set == [{"locale": "xa", "subset": "a"}, {"locale": "xa", "subset": "b"}]
    assert record.extra["n_classes"] == 24 and record.kind == "self"
    ev = {e.locale: e for e in record.evaluations}
    assert ev["xa"].metric == "auc" and ev["xa"].value > 0.7
    assert 0 <= ev["xa"].extra["eer"] < 0.5 and ev["xa"].extra["n_trials"] == 36
    with np.load(ev["xb"].extra["embeddings"]) as npz:
        assert npz["emb"].dtype == np.float16 and len(npz["ids"]) == 18
    assert (out / "scores_xb.csv").read_text().startswith("enrol_ID,test_ID,label,score\n")
    assert (out / "save" / "head.ckpt").is_file()
    assert read_record(tmp_path / "records" / "r.json").run_id == "sv"


def test_ecapa_baseline_end_to_end(prepared: Path, tmp_path: Path) -> None:
    record = run_recipe("gr", _overrides(prepared, "gr", tmp_path / "ecapa", None, **ECAPA_SMALL))
    assert record.encoder["source"].startswith("speechbrain.lobes")
    assert all(e.value > 0.6 for e in record.evaluations)
    sv = run_recipe("sv", _overrides(prepared, "sv", tmp_path / "ecapa_sv", None, **ECAPA_SMALL))
    assert sv.evaluations[0].value > 0.6


def test_same_seed_same_metrics_other_seed_differs(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> list[float]:
        ov = _overrides(prepared, "sv", tmp_path / name, tiny_folder, seed=seed, number_of_epochs=1)
        return [e.value for e in run_recipe("sv", ov).evaluations]

    first, second, other = run(42, "a"), run(42, "b"), run(43, "c")
    assert first == second
    assert first != other


def test_config_hash_ignores_per_run_keys(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    a = run_recipe("gr", _overrides(prepared, "gr", tmp_path / "a", tiny_folder, seed=1,
                                    number_of_epochs=1))
    b = run_recipe("gr", _overrides(prepared, "gr", tmp_path / "b", tiny_folder, seed=2,
                                    number_of_epochs=1,
                                    train_csv=[str(prepared / "xb" / "a.csv")]))
    assert a.config_hash == b.config_hash
    c_ov = _overrides(prepared, "gr", tmp_path / "c", tiny_folder, number_of_epochs=2)
    c = run_recipe("gr", c_ov)
    assert c.config_hash != a.config_hash


def test_label_map_is_fixed_across_languages(prepared: Path) -> None:
    """Training on one language and testing on another uses the same label indices."""
    classes = ["female", "male"]
    for locale in ("xa", "xb"):
        rows = read_manifests([prepared / locale / "test.csv"], str(prepared.parent / "audio"))
        data = make_dataset(rows, "gender", classes)
        with data.output_keys_as(["id", "label", "gender"]):
            for i in range(len(data)):
                item = data[i]
                assert item["label"] == classes.index(item["gender"])
    rows = read_manifests([prepared / "xa" / "test.csv"], "x")
    with pytest.raises(RecipeError, match="not in the label map"):
        make_dataset(rows, "gender", ["female"])
    with pytest.raises(RecipeError, match=r"test.csv: .*data_root"):
        read_manifests([prepared / "xa" / "test.csv"])


def test_options_are_closed_sets(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    assert {"mhubert147", "tiny_hubert", "hf_ssl", "ecapa"} <= set(available("encoders"))
    assert {"paper", "fast", "toy"} <= set(available("presets"))
    base = _overrides(prepared, "sv", tmp_path / "x", tiny_folder)
    with pytest.raises(RecipeError, match="valid: ecapa, hf_ssl"):
        run_recipe("sv", {**base, "encoder": "nope"})
    with pytest.raises(RecipeError, match="unknown hparams override"):
        run_recipe("sv", {**base, "bogus": 1})
    with pytest.raises(RecipeError, match="keep_checkpoints"):
        run_recipe("sv", {**base, "keep_checkpoints": "some"})
    with pytest.raises(RecipeError, match="max_grad_norm"):
        run_recipe("sv", {**base, "max_grad_norm": -1, "output_folder": str(tmp_path / "y")})
    with pytest.raises(RecipeError, match="trials_csv"):
        run_recipe("sv", {**base, "trials_csv": base["trials_csv"][:1]})
    with pytest.raises(ValueError, match="unknown task"):
        run_recipe("xx", base)


def test_paper_preset_is_one_adamw_group() -> None:
    text = compose_hparams(hparams_dir() / "gender.yaml", {"encoder": "tiny_hubert", "preset": "paper"})
    assert "lr: 0.00001" in text and "batch_size: 1" in text and "precision: fp32" in text
    assert text.count("opt_class:") == 1


def test_preset_recipe_parts_are_composed_per_recipe(tmp_path: Path) -> None:
    assert not any("." in name for name in available("presets"))
    tiny = {"encoder": "tiny_hubert", "preset": "toy"}
    gender = compose_hparams(hparams_dir() / "gender.yaml", tiny)
    speaker = compose_hparams(hparams_dir() / "speaker.yaml", tiny)
    assert "from " + str(hparams_dir() / "presets" / "toy.gender.yaml") in gender
    assert "from " + str(hparams_dir() / "presets" / "toy.speaker.yaml") not in gender
    assert "number_of_epochs: 6" in gender and "number_of_epochs: 12" in speaker
    assert gender.count("lr: 0.0005") == speaker.count("lr: 0.0005") == 1
    # A user's preset given by path gets its sibling part too; a clash names both files.
    (tmp_path / "mine.yaml").write_text((hparams_dir() / "presets" / "toy.yaml").read_text())
    (tmp_path / "mine.speaker.yaml").write_text("number_of_epochs: 2\nbatch_size: 2\n")
    assert "number_of_epochs: 2" in compose_hparams(
        hparams_dir() / "speaker.yaml", {**tiny, "preset": str(tmp_path / "mine.yaml")}
    )
    assert "number_of_epochs" not in compose_hparams(
        hparams_dir() / "gender.yaml", {**tiny, "preset": str(tmp_path / "mine.yaml")}
    ).split("mine.yaml")[-1]
    (tmp_path / "mine.speaker.yaml").write_text("lr: 0.1\n")
    with pytest.raises(RecipeError, match="mine.speaker.yaml"):
        compose_hparams(hparams_dir() / "speaker.yaml", {**tiny, "preset": str(tmp_path / "mine.yaml")})


def test_command_line_main(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    argv = [
        str(hparams_dir() / "gender.yaml"),
        f"--train_csv=[{prepared / 'xa' / 'a.csv'}]",
        f"--test_csv=[{prepared / 'xa' / 'test.csv'}]",
        "--seed=3", f"--output_folder={tmp_path / 'cli'}", "--encoder=tiny_hubert",
        "--preset=toy", f"--tiny_hubert_folder={tiny_folder}", "--number_of_epochs=1",
        "--device=cpu",
    ]
    record = main("gr", argv)
    assert record.seed == 3 and record.device == "cpu"
    assert (tmp_path / "cli" / "hyperparams.yaml").is_file()


def test_yaml_values_of_run_options_parse_on_the_command_line() -> None:
    """SpeechBrain's parser owns --max_grad_norm and --precision and refused null and auto."""
    from cltm_sb.recipe.run import parse_command_line

    _, run_opts, overrides = parse_command_line(
        ["h.yaml", "--max_grad_norm=null", "--precision", "auto", "--lr=1e-4", "--device=cpu"]
    )
    assert overrides == {"lr": 1e-4, "max_grad_norm": None, "precision": "auto"}
    assert run_opts == {"device": "cpu"}
    assert parse_command_line(["h.yaml", "--max_grad_norm", "0.5"])[2] == {"max_grad_norm": 0.5}
    with pytest.raises(RecipeError, match="--precision needs a value"):
        parse_command_line(["h.yaml", "--precision"])


def test_a_finished_ddp_run_is_reported_by_the_main_process_only(
    prepared: Path, tiny_folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rerunning a finished run under torchrun printed its record once per process."""
    import speechbrain.utils.distributed as distributed

    ov = _overrides(prepared, "gr", tmp_path / "done", tiny_folder, number_of_epochs=1)
    ov["test_csv"] = ov["test_csv"][:1]
    assert run_recipe("gr", ov, run_opts={"device": "cpu"}) is not None
    assert run_recipe("gr", ov, run_opts={"device": "cpu"}) is not None  # the main process
    monkeypatch.setattr(distributed, "if_main_process", lambda: False)  # another rank
    assert run_recipe("gr", ov, run_opts={"device": "cpu"}) is None


def test_test_only_is_refused_before_anything_is_written(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    """SpeechBrain's --test_only skips fit (and its checkpoint recovery): the untrained model was
    evaluated and recorded as the run, and a started run's checkpoint deleted."""
    argv = [
        str(hparams_dir() / "gender.yaml"),
        f"--train_csv=[{prepared / 'xa' / 'a.csv'}]", f"--test_csv=[{prepared / 'xa' / 'test.csv'}]",
        "--seed=3", "--encoder=tiny_hubert", "--preset=toy", f"--tiny_hubert_folder={tiny_folder}",
        "--number_of_epochs=1", "--device=cpu", f"--output_folder={tmp_path / 'eval'}", "--test_only",
    ]  # fmt: skip
    with pytest.raises(RecipeError, match="--test_only is not supported"):
        main("gr", argv)
    assert not (tmp_path / "eval").exists()


def test_fp16_on_cpu_is_a_user_error() -> None:
    """SpeechBrain refuses fp16 on CPU with a ValueError: a traceback, not the recipe's error line."""
    from cltm_sb.recipe.run import resolve_precision

    with pytest.raises(RecipeError, match="fp16 does not run on CPU"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("auto", "cpu") == "fp32"


def test_run_options_that_are_yaml_keys_are_checked_hashed_and_recorded(
    prepared: Path, tiny_folder: str, tmp_path: Path
) -> None:
    """SpeechBrain parses --max_grad_norm / --precision as run options, which its Brain prefers to
    the hparams: the run trained with them while checks, record and hash kept the YAML's value."""
    argv = [
        str(hparams_dir() / "gender.yaml"),
        f"--train_csv=[{prepared / 'xa' / 'a.csv'}]", f"--test_csv=[{prepared / 'xa' / 'test.csv'}]",
        "--seed=3", "--encoder=tiny_hubert", "--preset=toy", f"--tiny_hubert_folder={tiny_folder}",
        "--number_of_epochs=1", "--device=cpu",
    ]  # fmt: skip
    with pytest.raises(RecipeError, match="max_grad_norm"):  # would reverse the gradients
        main("gr", [*argv, f"--output_folder={tmp_path / 'neg'}", "--max_grad_norm=-1"])
    assert not (tmp_path / "neg").exists()
    record = main("gr", [*argv, f"--output_folder={tmp_path / 'half'}", "--max_grad_norm=0.5"])
    assert record.extra["max_grad_norm"] == 0.5
    assert "max_grad_norm: 0.5" in (tmp_path / "half" / "hyperparams.yaml").read_text()
    planned = {"encoder": "tiny_hubert", "preset": "toy", "tiny_hubert_folder": tiny_folder, "number_of_epochs": 1}
    assert record.config_hash == config_hash_for("gr", {**planned, "max_grad_norm": 0.5})
    assert record.config_hash != config_hash_for("gr", planned)
    # A run option that changes the training (here the effective batch) is another configuration.
    accumulated = main("gr", [*argv, f"--output_folder={tmp_path / 'acc'}", "--grad_accumulation_factor=2"])
    assert accumulated.extra["grad_accumulation_factor"] == 2
    assert accumulated.config_hash != config_hash_for("gr", planned)
    # Its folder holds another configuration's run for the same command without the option.
    with pytest.raises(RecipeError, match="another configuration"):
        main("gr", [*argv, f"--output_folder={tmp_path / 'acc'}"])
    assert main("gr", [*argv, f"--output_folder={tmp_path / 'acc'}", "--grad_accumulation_factor=2"]) == accumulated


# ------------------------------------------------------------------- YAML composition, resume, DDP
REPO = Path(__file__).resolve().parent.parent


def test_task_yamls_load_on_their_own_and_hold_their_named_parts(tiny_folder: str, tmp_path: Path) -> None:
    """A task YAML is complete: load_hyperpyyaml alone builds it, and its inline values are those
    of the preset and the encoder it names (one fact, two copies, kept equal here)."""
    from hyperpyyaml import load_hyperpyyaml

    from cltm_sb.recipe.encoders import build_tiny_hubert
    from cltm_sb.recipe.hparams import file_top_level, plain_defaults

    for name in ("gender", "speaker"):
        path = hparams_dir() / f"{name}.yaml"
        top = plain_defaults(path.read_text())
        assert top["recipe"] == name
        for kind, folder in (("preset", "presets"), ("encoder", "encoders")):
            part = plain_defaults((hparams_dir() / folder / f"{top[kind]}.yaml").read_text())
            assert {k: top[k] for k in part} == part, f"{name}.yaml differs from {kind} {top[kind]}"
        placeholders = {"train_csv": ["a.csv"], "test_csv": ["t.csv"], "trials_csv": ["x.csv"],
                        "output_folder": str(tmp_path / name), "encoder_source": str(build_tiny_hubert(tiny_folder)),
                        "encoder_dim": 48, "label_classes": ["s1", "s2"]}  # fmt: skip
        with open(path, encoding="utf-8") as handle:
            hp = load_hyperpyyaml(handle, {k: v for k, v in placeholders.items() if k in file_top_level(path)})
        assert hp["modules"]["head"].n_classes == 2 and hp["checkpointer"] is not None


def test_yaml_keys_and_the_keys_the_code_reads_match() -> None:
    """Like SpeechBrain's tests/consistency/test_yaml.py: every key of the packaged YAMLs is read
    by the recipe code, referenced by another key or a SpeechBrain run option, and every key the
    code reads is defined by a YAML (no ``hp.get`` defaults)."""
    import re

    from speechbrain.utils.run_opts import RunOptions

    from cltm_sb.recipe.hparams import COMPONENT_KINDS, file_top_level

    src = "".join((REPO / "cltm_sb" / "recipe" / f"{m}.py").read_text() for m in ("run", "brains", "data"))
    reads = set(re.findall(r'(?:hp|config)\["(\w+)"\](?!\s*=[^=])', src))
    reads |= set(re.findall(r"self\.hparams\.(\w+)", src)) | set(re.findall(r'(?:hp|config)\.get\("(\w+)"', src))
    reads |= set(re.findall(r'self\._hparam\("(\w+)"', src))  # a Brain's checked reads
    files = [hparams_dir() / "gender.yaml", hparams_dir() / "speaker.yaml", *sorted(hparams_dir().glob("*/*.yaml"))]
    defined = set().union(*(file_top_level(f) for f in files))
    referenced = set(re.findall(r"<(\w+)", "".join(f.read_text() for f in files)))
    composition = {key for key, _ in COMPONENT_KINDS} | {"recipe"}  # read by cltm_sb.recipe.hparams
    assert reads - defined == set(), "the code reads keys no YAML defines"
    unused = defined - reads - referenced - composition - set(RunOptions().as_dict())
    assert {k for k in unused if not k.startswith("__")} == set(), "YAML keys nothing reads"


def test_a_renamed_copy_runs_with_its_preset_and_a_failed_start_does_not_block(
    prepared: Path, tiny_folder: str, tmp_path: Path
) -> None:
    mine = tmp_path / "elsewhere" / "my_gender.yaml"
    mine.parent.mkdir()
    mine.write_text(
        (hparams_dir() / "gender.yaml").read_text().replace("head_dropout: 0.0", "head_dropout: 0.25")
    )
    text = compose_hparams(mine, {"encoder": "tiny_hubert", "preset": "toy"}, "gender")
    assert "from " + str(hparams_dir() / "presets" / "toy.gender.yaml") in text  # found by `recipe: gender`
    with pytest.raises(RecipeError, match="recipe: gender, but it is run by the speaker recipe"):
        compose_hparams(mine, {"preset": "toy"}, "speaker")
    out = tmp_path / "run"
    out.mkdir()
    (out / "hyperparams.yaml").write_text("a failed start: nothing trained\n")
    record = run_recipe("gr", _overrides(prepared, "gr", out, tiny_folder, number_of_epochs=1,
                                         heartbeat_minutes=1e-6), mine)
    assert record.extra["number_of_epochs"] == 1 and "head_dropout: 0.25" in (out / "hyperparams.yaml").read_text()
    assert (out / "train_log.txt").read_text().count("epoch: ") == 1
    # No terminal here: no progress bar, a heartbeat line in the log instead.
    assert re.search(r"heartbeat: epoch 1/1 step \d+/\d+ loss \d\.\d{4} elapsed 0:00:\d\d ETA 0:00:\d\d",
                     (out / "log.txt").read_text())


def test_the_train_logger_is_the_one_the_yaml_declares(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    """A YAML that swaps FileTrainLogger for another logger class (TensorBoard's, W&B's, one's own)
    gets one log_stats call per epoch from that class, and no train_log.txt."""
    from helpers import CountingTrainLogger

    mine = tmp_path / "logged_gender.yaml"
    text = (hparams_dir() / "gender.yaml").read_text()
    assert "!new:speechbrain.utils.train_logger.FileTrainLogger" in text
    mine.write_text(text.replace("!new:speechbrain.utils.train_logger.FileTrainLogger", "!new:helpers.CountingTrainLogger"))
    CountingTrainLogger.logged.clear()
    out = tmp_path / "run"
    run_recipe("gr", _overrides(prepared, "gr", out, tiny_folder, number_of_epochs=2), mine)
    assert [entry["meta"].get("epoch") for entry in CountingTrainLogger.logged if entry["train"]] == [1, 2]
    assert not (out / "train_log.txt").exists()


def _train_command(prepared: Path, tiny: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO / "recipes" / "gender" / "train.py"), str(hparams_dir() / "gender.yaml"),
        f"--train_csv=[{prepared / 'xa' / 'a.csv'},{prepared / 'xa' / 'b.csv'}]",
        f"--test_csv=[{prepared / 'xa' / 'test.csv'}]", "--encoder=tiny_hubert", "--preset=toy",
        f"--tiny_hubert_folder={tiny}", "--seed=5", "--number_of_epochs=3", "--batch_size=2",
        f"--output_folder={out}", "--device=cpu", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("when", ["epoch_end", "within_epoch"])
def test_a_killed_run_resumes_to_the_same_metrics(prepared: Path, tiny_folder: str, tmp_path: Path,
                                                  when: str) -> None:
    """SIGTERM after the first epoch's checkpoint (or after a checkpoint within the first epoch),
    rerun: it resumes from the checkpoint, logs each epoch once and ends with the metrics of an
    uninterrupted run, test loss included, to the last digit (CPU, one thread)."""
    out = tmp_path / "killed"
    within = ["--ckpt_interval_steps=4"] if when == "within_epoch" else []
    proc = subprocess.Popen(_train_command(prepared, tiny_folder, out, *within), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    train_log = out / "train_log.txt"

    def saved() -> bool:
        if when == "within_epoch":  # a complete checkpoint (a save in progress is not one)
            return has_checkpoint(out)
        return train_log.is_file() and train_log.read_text().count("epoch: ") >= 1

    while not saved():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert not train_log.is_file() or train_log.read_text().count("epoch: ") < 3, "the run finished first"
    resumed = subprocess.run(_train_command(prepared, tiny_folder, out, *within), env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the last checkpoint" in (out / "log.txt").read_text()
    epochs = [line.split(" - ")[0] for line in train_log.read_text().splitlines()]
    assert epochs == ["epoch: 1", "epoch: 2", "epoch: 3"]
    record = read_record(out / "record.json")
    assert record.extra["resumed"] is True and not (out / "save").exists()
    # The uninterrupted run, in this process with one thread as well.
    ov = {"train_csv": [str(prepared / "xa" / "a.csv"), str(prepared / "xa" / "b.csv")],
          "test_csv": [str(prepared / "xa" / "test.csv")], "encoder": "tiny_hubert", "preset": "toy",
          "tiny_hubert_folder": tiny_folder, "seed": 5, "number_of_epochs": 3, "batch_size": 2,
          "output_folder": str(tmp_path / "whole")}  # fmt: skip
    whole = run_recipe("gr", ov, run_opts={"device": "cpu"})
    assert [e.value for e in record.evaluations] == [e.value for e in whole.evaluations]
    assert record.evaluations[0].extra == whole.evaluations[0].extra
    # Rerunning the finished run gives its record and trains nothing; --overwrite redoes it.
    argv = _train_command(prepared, tiny_folder, out)[2:]
    assert main("gr", argv).to_dict() == record.to_dict()
    assert main("gr", [*argv, "--overwrite", "--number_of_epochs=1"]).extra["number_of_epochs"] == 1
    assert train_log.read_text().count("epoch: ") == 1


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_two_cpu_processes_write_one_record(prepared: Path, tiny_folder: str, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    command = [torchrun, "--nproc_per_node=2", "--master_port=29731", *_train_command(prepared, tiny_folder, out)[1:],
               "--distributed_backend=gloo", "--number_of_epochs=1"]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_record(out / "record.json")
    assert record.extra["world_size"] == 2 and len(record.evaluations) == 1
    assert done.stdout.count('"run_id"') == 1  # printed by the main process only
    assert (out / "train_log.txt").read_text().count("epoch: ") == 1
    # The world size (the effective batch) is part of the configuration.
    planned = {"encoder": "tiny_hubert", "preset": "toy", "tiny_hubert_folder": tiny_folder,
               "number_of_epochs": 1, "batch_size": 2}  # fmt: skip
    assert record.config_hash != config_hash_for("gr", planned)


def test_a_save_killed_halfway_is_never_resumed_from(tmp_path: Path) -> None:
    """The recipe's Checkpointer writes into a partial folder and renames it when complete."""
    import torch

    from cltm_sb.recipe.checkpoints import Checkpointer

    layer = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(tmp_path / "save", recoverables={"layer": layer})
    first = checkpointer.save_checkpoint()
    (tmp_path / "save" / "CKPT+partial-save").mkdir()  # a save killed before its files were written
    (tmp_path / "save" / "CKPT+partial-save" / "CKPT.yaml").write_text("unixtime: 9999999999\n")
    assert [c.path for c in checkpointer.list_checkpoints()] == [first.path]
    assert checkpointer.recover_if_possible().path == first.path
    second = checkpointer.save_checkpoint()
    assert second.path.name.startswith("CKPT+2") and (second.path / "layer.ckpt").is_file()
    assert not (tmp_path / "save" / "CKPT+partial-save").exists()
