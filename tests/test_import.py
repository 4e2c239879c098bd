"""Importers of other studies' results (``cltm import``) and the language-code mapping.

Each fixture is written here from the documented schema: the Donors-and-Recipients release's
``results/transfer_results.csv`` and the generic long CSV ``target,donor,value[,se]``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cltm_sb.analysis.diagnostics import read_matrix_csv
from cltm_sb.analysis.importers import import_dr, import_long, normalise_by_own
from cltm_sb.cli import main
from cltm_sb.languages import AmbiguousCodeError, code_mapper, parse_code_map

# The release's columns, in its order (the importer reads them by name).
DR_HEADER = [
    "model_name", "model_size", "fine_tuned_dataset", "fine_tuned_language", "eval_dataset",
    "eval_language", "regime", "score_mean", "score_std", "delta_score_mean", "delta_score_std",
    "delta_score_norm_mean", "delta_score_norm_std", "n_seeds", "delta_score_se", "delta_score_norm_se",
]  # fmt: skip

# (fine-tuning language, eval language) -> (delta_score_norm_mean, delta_score_norm_se): ISO 639-3
# codes; eng and deu are fine-tuning languages, fra and spa only evaluated; deu's own Δ is negative.
DR_CELLS = {
    ("eng", "eng"): (10.0, 1.0), ("deu", "eng"): (5.0, 1.0),
    ("eng", "deu"): (2.0, 0.5), ("deu", "deu"): (-1.0, 0.5),
    ("eng", "fra"): (4.0, 1.0), ("deu", "fra"): (-2.0, 1.0),
    ("eng", "spa"): (3.0, 1.0),
}  # fmt: skip


def write_dr(path: Path, cells: dict = DR_CELLS, extra_rows: list[dict] | None = None) -> Path:
    """A transfer_results.csv: the cells of model m-1B on xnli -> xnli, plus distractor rows of
    another model and another evaluation dataset that the importer must leave out."""
    rows = []
    for (ft, ev), (mean, se) in cells.items():
        for model, eval_ds in (("m-1B", "xnli"), ("m-1B", "pawsx"), ("other-7B", "xnli")):
            shift = 0.0 if (model, eval_ds) == ("m-1B", "xnli") else 100.0
            rows.append(
                {
                    "model_name": model, "model_size": "1B", "fine_tuned_dataset": "xnli",
                    "fine_tuned_language": ft, "eval_dataset": eval_ds, "eval_language": ev,
                    "regime": "in-language" if ft == ev else "cross-lingual", "score_mean": 0.5,
                    "score_std": 0.01, "delta_score_mean": 0.01, "delta_score_std": 0.01,
                    "delta_score_norm_mean": mean + shift, "delta_score_norm_std": se * 3**0.5,
                    "n_seeds": 3, "delta_score_se": 0.01, "delta_score_norm_se": se,
                }
            )  # fmt: skip
    rows += extra_rows or []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=DR_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_dr_import_builds_delta_and_row_normalised_matrices(tmp_path: Path) -> None:
    imported = import_dr(write_dr(tmp_path / "t.csv"), "m-1B", "xnli", "xnli")
    delta = imported.values
    assert list(delta.index) == ["en", "de", "fr", "es"] and list(delta.columns) == ["en", "de"]
    assert delta.loc["fr", "en"] == 4.0 and delta.loc["de", "en"] == 2.0  # rows = eval language
    assert np.isnan(delta.loc["es", "de"])  # never fine-tuned on de and evaluated on es
    assert imported.se.loc["en", "de"] == 1.0
    cltm = imported.cltm
    assert cltm.loc["en", "en"] == 1.0 and cltm.loc["en", "de"] == pytest.approx(0.5)
    # de's own Δ is negative; fr and es are not fine-tuning languages: NaN rows with reasons
    assert cltm.loc[["de", "fr", "es"]].isna().all().all()
    reasons = {r["target"]: r["reason"] for r in imported.reasons}
    assert reasons["de"] == "own-language Δ = -1 <= 0"
    assert reasons["fr"] == "no own-language Δ: fr is not a donor"
    # delta-method SE of 5/10 with SEs 1 and 1: sqrt(1/100 + 25/10000)
    assert imported.cltm_se.loc["en", "de"] == pytest.approx(np.sqrt(0.01 + 0.0025))
    assert imported.cltm_se.loc["en", "en"] == 0.0
    assert imported.info["codes_mapped"] == {"eng": "en", "deu": "de", "fra": "fr", "spa": "es"}


def test_dr_se_falls_back_to_std_over_root_seeds(tmp_path: Path) -> None:
    path = write_dr(tmp_path / "t.csv")
    text = path.read_text().splitlines()
    header = text[0].split(",")
    k = header.index("delta_score_norm_se")
    rows = [",".join(c for j, c in enumerate(line.split(",")) if j != k) for line in text]
    path.write_text("\n".join(rows) + "\n")
    imported = import_dr(path, "m-1B", "xnli", "xnli")
    assert imported.se.loc["en", "de"] == pytest.approx(1.0)
    assert imported.info["se"] == "delta_score_norm_std / sqrt(n_seeds)"


def test_cli_import_dr_writes_the_documented_files(tmp_path: Path, capsys) -> None:
    source, out = write_dr(tmp_path / "t.csv"), tmp_path / "out"
    args = ["import", "dr", str(source), "--model", "m-1B", "--source-task", "xnli",
            "--eval-task", "xnli", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    for name in ("delta.csv", "delta_se.csv", "cltm.csv", "cltm_se.csv", "import.json"):
        assert (out / name).is_file(), name
    err = capsys.readouterr().err
    assert "row de is NaN: own-language Δ = -1 <= 0" in err and "cltm report --matrix" in err
    delta = read_matrix_csv(out / "delta.csv", square=False, unit_diagonal=False)
    assert delta.loc["fr", "de"] == -2.0
    info = json.loads((out / "import.json").read_text())
    assert info["model_name"] == "m-1B" and info["eval_dataset"] == "xnli"
    assert info["targets"] == ["en", "de", "fr", "es"] and info["donors"] == ["en", "de"]
    # and the imported matrix goes through the report as it is
    assert main(["report", "--matrix", str(out / "cltm.csv"), "--se", str(out / "cltm_se.csv"),
                 "-o", str(tmp_path / "rep"), "--no-heatmap"]) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("model", "source", "eval_task", "says"),
    [
        ("nope", "xnli", "xnli", "no rows of model 'nope'; models in the file: m-1B, other-7B"),
        (
            "m-1B",
            "xnli",
            "mlqa",
            "no rows fine-tuned on 'xnli' and evaluated on 'mlqa'.*xnli -> pawsx",
        ),
    ],
)
def test_dr_selection_that_matches_nothing_lists_what_there_is(
    tmp_path, model, source, eval_task, says
):
    with pytest.raises(ValueError, match=says):
        import_dr(write_dr(tmp_path / "t.csv"), model, source, eval_task)


def test_dr_duplicate_cell_and_missing_column_are_named(tmp_path: Path) -> None:
    dup = {
        "model_name": "m-1B", "fine_tuned_dataset": "xnli", "fine_tuned_language": "eng",
        "eval_dataset": "xnli", "eval_language": "eng", "delta_score_norm_mean": 1.0,
    }  # fmt: skip
    path = write_dr(tmp_path / "t.csv", extra_rows=[dup])
    with pytest.raises(ValueError, match=r"lines 2 and 23 both give target 'eng', donor 'eng'"):
        import_dr(path, "m-1B", "xnli", "xnli")
    bad = tmp_path / "bad.csv"
    bad.write_text("model_name,eval_language\nm,en\n")
    with pytest.raises(ValueError, match="missing column.*fine_tuned_dataset"):
        import_dr(bad, "m", "x", "y")


def test_long_csv_as_given_or_normalised(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        "target,donor,value,se\nen,en,1,0\nen,de,0.5,0.1\nde,de,1,0\nde,en,-0.2,0.1\nfr,en,0.3,\n"
    )
    plain = import_long(path)
    assert plain.cltm is plain.values and plain.values.loc["fr", "en"] == 0.3
    assert list(plain.values.columns) == ["en", "de"]
    assert np.isnan(plain.se.loc["fr", "en"])
    gains = tmp_path / "gains.csv"
    gains.write_text("target,donor,value\nen,en,4\nen,de,2\nde,de,0\nde,en,1\n")
    normalised = import_long(gains, normalise=True)
    assert normalised.cltm.loc["en", "de"] == 0.5 and normalised.se is None
    assert normalised.reasons == [
        {"target": "de", "donor": "*", "reason": "own-language value = 0 <= 0"}
    ]


def test_cli_import_long_writes_cltm_files(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text(
        "target,donor,value,se\neng,eng,1,0\neng,deu,0.5,0.1\ndeu,deu,1,0\ndeu,eng,0.2,0.1\n"
    )
    assert main(["import", "long", str(path), "-o", str(tmp_path / "out")]) == 0
    m = read_matrix_csv(tmp_path / "out" / "cltm.csv")
    assert m.loc["en", "de"] == 0.5 and not (tmp_path / "out" / "delta.csv").exists()


def test_cli_import_refuses_a_code_the_registry_lacks_before_writing(tmp_path: Path, capsys) -> None:
    path = tmp_path / "long.csv"
    path.write_text("target,donor,value\nen,en,1\nen,qaa,0.5\n")
    out = tmp_path / "out"
    assert main(["import", "long", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "long.csv" in err and "unknown language code(s) qaa" in err and "--families" in err
    assert not out.exists()
    families = tmp_path / "families.csv"
    families.write_text("code,name,family\nen,English,Germanic\nqaa,Private,Isolate\n")
    assert main(["import", "long", str(path), "-o", str(out), "--families", str(families)]) == 0


def test_long_csv_bad_number_is_named(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("target,donor,value\nen,de,abc\n")
    with pytest.raises(ValueError, match=r"long.csv, line 2, column value: 'abc' is not a number"):
        import_long(path)


def test_long_csv_negative_se_is_named(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("target,donor,value,se\nen,en,1,0\nen,de,0.5,-0.1\n")
    with pytest.raises(ValueError, match=r"long.csv, line 3 \(en, de\): the SE -0.1 is negative"):
        import_long(path)


def test_normalise_flags_an_own_value_within_two_se() -> None:
    import pandas as pd

    values = pd.DataFrame([[1.0, 0.5]], index=["en"], columns=["en", "de"])
    se = pd.DataFrame([[0.6, 0.1]], index=["en"], columns=["en", "de"])
    _, _, reasons, flagged = normalise_by_own(values, se)
    assert reasons == [] and flagged == ["en"]


# ---------------------------------------------------------------------------- language codes
@pytest.mark.parametrize(
    ("code", "cv"),
    [("eng", "en"), ("EN", "en"), ("swe", "sv-SE"), ("sv", "sv-SE"), ("ga", "ga-IE"),
     ("zh-cn", "zh-CN"), ("yue", "yue"), ("arb", "ar"), ("qaa", "qaa")],
)  # fmt: skip
def test_iso_639_1_639_3_and_common_voice_codes_map_to_common_voice(code: str, cv: str) -> None:
    assert code_mapper().to_cv(code) == cv


@pytest.mark.parametrize(("code", "first"), [("zh", "zh-CN"), ("ku", "ckb"), ("cmn", "zh-CN")])
def test_an_ambiguous_code_is_refused_with_the_fix_named(code: str, first: str) -> None:
    with pytest.raises(
        AmbiguousCodeError, match=rf"'{code}' is ambiguous.*pass --map {code}={first}"
    ):
        code_mapper().to_cv(code)
    assert code_mapper({code: first}).to_cv(code) == first


def test_a_code_the_families_file_knows_is_kept() -> None:
    assert code_mapper().to_cv("zh", known={"zh"}) == "zh"


def test_two_codes_of_one_locale_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'en' and 'eng' both mean 'en'"):
        code_mapper().map_codes(["en", "eng"])
    path = tmp_path / "long.csv"
    path.write_text("target,donor,value\nen,de,0.5\neng,de,0.4\n")
    with pytest.raises(ValueError, match="'en' and 'eng' in .*long.csv both mean 'en'"):
        import_long(path)


def test_parse_code_map() -> None:
    assert parse_code_map(["zh=zh-CN,ku=kmr", "pt=pt"]) == {"zh": "zh-CN", "ku": "kmr", "pt": "pt"}
    with pytest.raises(ValueError, match="expected CODE=CV_CODE"):
        parse_code_map(["zh"])


def test_cli_refuses_an_ambiguous_code_and_takes_the_map(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.csv"
    path.write_text(",en,zh\nen,1,0.5\nzh,0.2,1\n")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'zh'" in err and "ambiguous" in err and "--map zh=zh-CN" in err
    assert main(["analyze", str(path), "--map", "zh=zh-TW", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["languages"] == ["en", "zh-TW"]
    long = tmp_path / "long.csv"
    long.write_text("target,donor,value\nzh,en,0.5\n")
    assert main(["import", "long", str(long), "-o", str(tmp_path / "o")]) == 2
    assert "--map zh=zh-CN" in capsys.readouterr().err


def test_dr_short_or_long_row_is_named_by_line(tmp_path: Path) -> None:
    path = write_dr(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    for broken, says in (("m-1B,xnli", "line 3: 2 fields where the header has 16"),
                         (lines[2] + ",surplus", "line 3: 17 fields where the header has 16")):
        path.write_text("\n".join([lines[0], lines[1], broken, *lines[3:]]) + "\n")
        with pytest.raises(ValueError, match=says):
            import_dr(path, "m-1B", "xnli", "xnli")
