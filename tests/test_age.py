"""The age-group task's data: bands from Common Voice's age column, balanced per subset."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from cltm_sb.data import DataError
from cltm_sb.data.age import BANDS, age_band, balance_values
from cltm_sb.data.common_voice import prepare_common_voice, report_common_voice
from cltm_sb.data.synth import AGE_CUES, make_speaker


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_bands_of_common_voice_ages() -> None:
    assert BANDS == ("30to49", "50plus", "under30")
    assert [age_band(a) for a in ("teens", "twenties", "thirties", "fourties", "forties", "fifties", "nineties")] == [
        "under30", "under30", "30to49", "30to49", "30to49", "50plus", "50plus",
    ]  # fmt: skip
    assert age_band("") is None and age_band("unknown") is None
    assert balance_values(["gender"]) == ["female", "male"]
    assert balance_values(["gender", "age_band"])[:2] == ["female/30to49", "female/50plus"]


def test_toy_voices_carry_age_cues_and_keep_their_other_draws() -> None:
    young = [make_speaker(0, "qaa", i, "female", age_cues=True) for i in range(0, 12, 2)]
    bands = Counter(age_band(s.age) for s in young)
    assert bands == {"under30": 2, "30to49": 2, "50plus": 2}  # ages go round: every band as often
    old = next(s for s in young if age_band(s.age) == "50plus")
    assert old.tremor == AGE_CUES["50plus"]["tremor"] > 0
    # The age cues are applied after every draw: pitch (gender's cue) is drawn as before.
    assert all(165.0 <= s.f0 <= 255.0 for s in young)
    # Without age cues (the default corpus) a voice is what it was before they existed.
    plain = make_speaker(0, "qaa", 4, "female")
    assert plain.tremor == 0.0 and plain.eq_db != old.eq_db and plain.f0 == old.f0


@pytest.fixture(scope="module")
def prepared_age(toy_corpus: Path, toy_locales: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared_age")
    info = prepare_common_voice(toy_corpus, toy_locales, "age", 12, out, seed=0, progress=False)
    return out, info


def test_prepare_age_balances_bands_within_each_subset(prepared_age: tuple[Path, dict], toy_locales: list[str]) -> None:
    out, info = prepared_age
    assert info["task"] == "age" and info["clips_per_speaker"] == 1
    for locale in toy_locales:
        speakers: dict[str, set[str]] = {}
        for subset in ("a", "b", "test"):
            rows = _rows(out / locale / f"{subset}.csv")
            assert list(rows[0])[-1] == "age_band"  # the label column after the standard ones
            speakers[subset] = {r["spk_id"] for r in rows}
            if subset != "test":
                assert Counter(r["age_band"] for r in rows) == {band: 4 for band in BANDS}
            else:
                assert set(r["age_band"] for r in rows) == set(BANDS)
            counts = info["counts"][locale][subset]
            assert all(counts[f"{band}_clips"] >= 1 for band in BANDS)
        assert not speakers["a"] & speakers["b"] and not (speakers["a"] | speakers["b"]) & speakers["test"]
    assert not (out / toy_locales[0] / "trials.csv").exists()


def test_gr_manifests_keep_the_standard_header(prepared_gr: Path, toy_locales: list[str]) -> None:
    header = (prepared_gr / toy_locales[0] / "a.csv").read_text().splitlines()[0]
    assert header == "ID,duration,wav,spk_id,gender,locale,subset"


def test_rows_without_age_are_counted_and_left_out(toy_corpus: Path, tmp_path: Path) -> None:
    """A Common Voice folder whose validated.tsv lacks the age of some rows (and has an odd one)."""
    cv = tmp_path / "cv"
    shutil.copytree(toy_corpus / "qaa", cv / "qaa")
    table = cv / "qaa" / "validated.tsv"
    lines = table.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    age, gender = header.index("age"), header.index("gender")
    changed = Counter()
    for i, line in enumerate(lines[1:], start=1):
        fields = line.split("\t")
        if fields[gender] and i % 7 == 0:
            fields[age] = "" if i % 2 else "centenarian"
            changed["age_missing" if i % 2 else "age_unknown"] += 1
            lines[i] = "\t".join(fields)
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = prepare_common_voice(cv, ["qaa"], "age", 6, tmp_path / "out", seed=0, progress=False)
    dropped = info["counts"]["qaa"]["dropped_rows"]["train"]
    test_dropped = info["counts"]["qaa"]["dropped_rows"]["test"]
    # Rows of dev/test speakers are counted under that reason first; the rest under the age's.
    assert dropped["age_missing"] + test_dropped.get("age_missing", 0) >= 1
    assert dropped.get("age_unknown", 0) + test_dropped.get("age_unknown", 0) >= 1
    assert dropped["age_missing"] <= changed["age_missing"]
    # The speakers with a mix of known and missing ages keep their aged rows; every row written has a band.
    for subset in ("a", "b", "test"):
        assert all(r["age_band"] in BANDS for r in _rows(tmp_path / "out" / "qaa" / f"{subset}.csv"))
    report = report_common_voice(cv, ["qaa"], "age")
    assert {f"eligible_speakers_{band}" for band in BANDS} <= set(report.columns)


def test_age_n_must_be_a_multiple_of_bands_times_k(toy_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"N=8 is not a multiple of 3\*K=3 .*1/3 of the speakers per age_band\); the nearest valid N is 9"):
        prepare_common_voice(toy_corpus, ["qaa"], "age", 8, tmp_path / "out", progress=False)


@pytest.mark.slow
def test_the_age_recipe_trains_on_its_bands(prepared_age: tuple[Path, dict], toy_locales: list[str], tmp_path: Path) -> None:
    """hparams/age.yaml with the generic classifier Brain: labels and classes from the declaration."""
    from cltm_sb.recipe.run import run_recipe

    out, _ = prepared_age
    a, b = toy_locales[:2]
    overrides = {
        "train_csv": [str(out / a / "a.csv")], "test_csv": [str(out / a / "test.csv"), str(out / b / "test.csv")],
        "seed": 42, "output_folder": str(tmp_path / "run"), "encoder": "tiny_hubert", "preset": "toy",
        "tiny_hubert_folder": str(tmp_path / "tiny"), "number_of_epochs": 1,
    }  # fmt: skip
    record = run_recipe("age", overrides, run_id="age-run")
    assert record.task == "age" and [e.locale for e in record.evaluations] == [a, b]
    for evaluation in record.evaluations:
        assert evaluation.metric == "macro_f1" and 0 <= evaluation.value <= 1 and evaluation.n_items == 40
        assert set(evaluation.extra["recall"]) == set(BANDS)
    assert record.extra["n_classes"] == 3 and record.extra["n_train"] == 12


def test_a_gr_plan_refuses_data_prepared_for_age(prepared_age: tuple[Path, dict], toy_locales: list[str], tmp_path: Path) -> None:
    """Age manifests keep a gender column: a GR grid on them was planned (and would have trained)
    on subsets balanced by age band, not by gender."""
    from cltm_sb.grid.plan import PlanError, make_plan

    out, _ = prepared_age
    with pytest.raises(PlanError, match=r"prepared for task 'age' \(subsets balanced by age_band\); task 'gr' needs them balanced by gender: prepare a folder with `cltm prepare --task gr`"):
        make_plan(tmp_path / "plan", out, "gr", toy_locales[:2], [42, 43], runner="grid_fakes:run_fake")
    plan = make_plan(tmp_path / "plan", out, "age", toy_locales[:2], [42, 43], runner="grid_fakes:run_fake")
    assert plan.task == "age"
