"""End-to-end recipe runs on a toy corpus with the tiny HuBERT (and ECAPA-TDNN), on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from recipe_toy import make_prepared

from cltm_sb.recipe.run import (
    RecipeError,
    available,
    compose_hparams,
    config_hash_for,
    hparams_dir,
    main,
    make_dataset,
    read_manifests,
    run_recipe,
)
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
    with pytest.raises(RecipeError, match="already holds a run"):
        run_recipe("gr", _overrides(prepared, "gr", tmp_path / "run", tiny_folder))


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
        rows = read_manifests([prepared / locale / "test.csv"])
        data = make_dataset(rows, str(prepared.parent / "audio"),
                            "gender", classes)
        with data.output_keys_as(["id", "label", "gender"]):
            for i in range(len(data)):
                item = data[i]
                assert item["label"] == classes.index(item["gender"])
    rows = read_manifests([prepared / "xa" / "test.csv"])
    with pytest.raises(RecipeError, match="not in the label map"):
        make_dataset(rows, "x", "gender", ["female"])


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
