"""Bad input is caught before any training, in one line that names the key or file and what to do.

Override values are typed once for both command lines (``cltm plan --override`` and the recipe's
``--key=value``); every hparam value is checked against one table; YAML files, override tags and
the encoder's checkpoint are checked at plan time and before a run trains. Offline throughout:
the hub is never asked (HF_HUB_OFFLINE, an empty temporary HF_HOME).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from recipe_toy import make_prepared

from cltm_sb.cli import main as cli_main
from cltm_sb.commands.grid import parse_overrides
from cltm_sb.recipe.encoders import build_tiny_hubert
from cltm_sb.recipe.run import RecipeError, hparams_dir, main, parse_command_line, run_recipe

GENDER_YAML = str(hparams_dir() / "gender.yaml")
TOY = ("encoder=tiny_hubert", "preset=toy")


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hubert(tmp_path_factory.mktemp("encoders") / "tiny")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("toy"), speakers_per_gender=2, clips_per_speaker=2,
                         test_speakers_per_gender=1, seconds=0.5)  # fmt: skip


def _plan(prepared: Path, out: Path, *overrides: str, options: tuple[str, ...] = ()) -> int:
    args = ["plan", "--data", str(prepared), "--task", "gr", "--locales", "xa,xb", "--seeds", "1",
            "-o", str(out), *options]  # fmt: skip
    for override in overrides:
        args += ["--override", override]
    return cli_main(args)


def _refused(capsys: pytest.CaptureFixture, code: int, out: Path, *fragments: str) -> str:
    """Exit 2, one error line holding every fragment, and nothing written under ``out``."""
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cltm plan: error:")]
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0]
    assert not out.exists(), "nothing half-written"
    return lines[0]


def _toy(tiny: Path, *extra: str) -> tuple[str, ...]:
    return (*TOY, f"tiny_hubert_folder={tiny}", *extra)


# ------------------------------------------------------------------------------ override values
SPELLINGS = [("1e-4", 1e-4), ("1E-4", 1e-4), ("1.0e+10", 1e10), ("1.0e10", 1e10), (".5", 0.5),
             ("5.", 5.0), ("-3", -3), ("0x10", 16)]  # fmt: skip


@pytest.mark.parametrize(("text", "value"), SPELLINGS)
def test_number_spellings_parse_on_both_command_lines(text: str, value: float) -> None:
    planned = parse_overrides([f"lr={text}"])["lr"]
    _, _, recipe = parse_command_line([GENDER_YAML, f"--lr={text}"])
    for parsed in (planned, recipe["lr"]):
        assert parsed == value and type(parsed) is type(value)


def test_plan_keeps_a_spelled_number_a_number(prepared: Path, tiny: Path, tmp_path: Path) -> None:
    import json

    assert _plan(prepared, tmp_path / "plan", *_toy(tiny, "lr=1e-4")) == 0
    assert json.loads((tmp_path / "plan" / "plan.json").read_text())["overrides"]["lr"] == 1e-4


@pytest.mark.parametrize("text", ["inf", "nan", ".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_on_both_command_lines(
    text: str, prepared: Path, tiny: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_toy(tiny, f"lr={text}")), out, "lr=", "given as an override",
             "lr must be a finite number > 0")  # fmt: skip
    run = tmp_path / "run"
    argv = [GENDER_YAML, f"--train_csv=[{prepared / 'xa' / 'a.csv'}]", f"--test_csv=[{prepared / 'xa' / 'test.csv'}]",
            f"--output_folder={run}", *(f"--{o}" for o in _toy(tiny)), f"--lr={text}"]  # fmt: skip
    with pytest.raises(RecipeError, match=r"^lr=.*finite number"):
        main("gr", argv)
    assert not run.exists(), "refused before the run's folder was made"


@pytest.mark.parametrize("text", ["!!python/object:os.system", "!new:os.system", "[1, !ref <seed>]"])
def test_a_tag_in_an_override_is_refused(text: str, prepared: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_toy(tiny, f"lr={text}")), out, "override lr", "YAML tag", "plain value")
    with pytest.raises(RecipeError, match="override lr: the YAML tag"):
        parse_command_line([GENDER_YAML, f"--lr={text}"])


# ------------------------------------------------------------------------------ hparam rules
@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("lr=-1", ["lr=-1", "lr must be a finite number > 0"]),
        ("batch_size=-3", ["batch_size=-3", "batch_size must be an integer >= 1"]),
        ("precision=fp8", ["precision='fp8'", "one of fp32, fp16, bf16, auto"]),
        ("number_of_epochs=0", ["number_of_epochs=0", "number_of_epochs must be an integer >= 1"]),
        ("keep_checkpoints=some", ["keep_checkpoints='some'", "one of none, head, all"]),
        ("max_grad_norm=-1", ["max_grad_norm=-1", "or null (no clipping)"]),
        ("pool_layers=9", ["pool_layers=9", "3 hidden states", "at most 3"]),
        ("encoder_dim=64", ["encoder_dim=64", "hidden_size 48", "encoder_dim=48"]),
        # SpeechBrain's DynamicBatchSampler failed with an IndexError at the run's start.
        ("dynamic_batching=true", ["max_batch_seconds=0", "with dynamic_batching true", "must be > 0"]),
    ],
)
def test_bad_values_are_refused_at_plan_time(
    override: str, fragments: list[str], prepared: Path, tiny: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_toy(tiny, override)), out, *fragments)


def test_embed_layers_is_checked_only_for_a_task_that_embeds(tiny: Path) -> None:
    from cltm_sb.recipe.run import check_config

    overrides = parse_overrides(list(_toy(tiny, "embed_layers=9")))
    check_config("gr", overrides)  # gender never embeds: a shallow encoder keeps the default
    with pytest.raises(RecipeError, match=r"embed_layers=9 \(given as an override\).*3 hidden states"):
        check_config("sv", overrides)


def test_a_bad_value_in_a_user_preset_names_the_file(prepared: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text((hparams_dir() / "presets" / "toy.yaml").read_text().replace("lr: 0.0005", "lr: -0.5"))
    shutil.copy(hparams_dir() / "presets" / "toy.gender.yaml", tmp_path / "mine.gender.yaml")
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, "encoder=tiny_hubert", f"preset={preset}", f"tiny_hubert_folder={tiny}"),
             out, "lr=-0.5", f"set in {preset}")  # fmt: skip


def test_seed_override_points_to_seeds(prepared: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_toy(tiny, "seed=7")), out, "seed", "--seeds")


def test_a_value_left_unset_is_named(prepared: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, "encoder=hf_ssl", "preset=toy"), out,
             "encoder_dim, encoder_source: no value (!PLACEHOLDER", "override key=value")  # fmt: skip


def test_unknown_key_is_still_refused(prepared: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_toy(tiny, "bogus=1")), out, "unknown hparams override", "bogus")


# ------------------------------------------------------------------------------ YAML files
@pytest.mark.parametrize("kind", ["preset", "encoder", "hparams"])
def test_yaml_syntax_error_names_the_file_and_line(
    kind: str, prepared: Path, tiny: Path, tmp_path: Path, capsys
) -> None:
    sources = {"preset": hparams_dir() / "presets" / "toy.yaml",
               "encoder": hparams_dir() / "encoders" / "tiny_hubert.yaml", "hparams": Path(GENDER_YAML)}  # fmt: skip
    broken = tmp_path / f"broken_{kind}.yaml"
    broken.write_text(sources[kind].read_text() + "\nbatch: [1, 2\n")
    overrides = [f"{key}={broken if key == kind else value}" for key, value in (("encoder", "tiny_hubert"), ("preset", "toy"))]
    options = ("--hparams", str(broken)) if kind == "hparams" else ()
    code = _plan(prepared, tmp_path / "plan", *overrides, f"tiny_hubert_folder={tiny}", options=options)
    _refused(capsys, code, tmp_path / "plan", str(broken), "line", "YAML syntax error", "fix the file")


# ------------------------------------------------------------------------------ the encoder
def _hf(folder: Path | str) -> tuple[str, ...]:
    return ("encoder=hf_ssl", f"encoder_source={folder}", "encoder_dim=48", "preset=toy")


def test_empty_encoder_folder_is_named(prepared: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_hf(folder)), out, f"encoder folder {folder}", "no config.json",
             "save_pretrained")  # fmt: skip
    run = tmp_path / "run"  # the same check at the start of a run
    with pytest.raises(RecipeError, match="no config.json"):
        run_recipe("gr", {"train_csv": [str(prepared / "xa" / "a.csv")], "test_csv": [str(prepared / "xa" / "test.csv")],
                          "seed": 1, "output_folder": str(run),
                          **dict(o.split("=", 1) for o in _hf(folder)), "encoder_dim": 48})  # fmt: skip
    assert not run.exists()


def test_truncated_safetensors_are_named(prepared: Path, tiny: Path, tmp_path: Path, capsys) -> None:
    folder = Path(shutil.copytree(tiny, tmp_path / "cut"))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, *_hf(folder)), out, f"{weights}: truncated or damaged weights",
             "save_pretrained")  # fmt: skip


def test_uncached_hub_id_says_how_to_get_it(
    prepared: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))  # read at import time
    out = tmp_path / "plan"
    _refused(capsys, _plan(prepared, out, "encoder=mhubert147", "preset=paper"), out,
             "utter-project/mHuBERT-147 is not in the HuggingFace cache", str(home / "hub"), "offline",
             "huggingface-cli download utter-project/mHuBERT-147", "encoder_source=/path/to/folder")  # fmt: skip


def test_layer_keys_above_ecapas_one_output_are_refused_before_training() -> None:
    """--encoder=ecapa --pool_layers=2 passed the checks and raised a LayerAverage traceback
    once training had started (only HuggingFace checkpoints had their layers counted)."""
    from cltm_sb.recipe.run import check_config

    check_config("gr", {"encoder": "ecapa", "embed_layers": 2})  # gender never embeds
    with pytest.raises(RecipeError, match=r"pool_layers=2 \(given as an override\).*FbankECAPA.*at most 1"):
        check_config("gr", {"encoder": "ecapa", "pool_layers": 2})
    with pytest.raises(RecipeError, match=r"embed_layers=2 \(given as an override\).*at most 1"):
        check_config("sv", {"encoder": "ecapa", "embed_layers": 2})
