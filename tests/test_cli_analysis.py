"""``cltm analyze``, ``cltm matrix`` and ``cltm heatmap`` as a user runs them."""

import json
from pathlib import Path

import pytest

from cltm_sb.cli import main
from cltm_sb.languages import default_registry, read_registry_csv

from helpers import known_grid, write_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example_cltm.csv"
CONTRACT_KEYS = {
    "n_languages", "rfd", "asymmetry", "row_cosine", "prop_positive",
    "reciprocity_positive", "intra_family_positive",
}  # fmt: skip


def test_analyze_json_follows_the_contract(capsys):
    assert main(["analyze", str(EXAMPLE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= CONTRACT_KEYS
    assert report["n_languages"] == 16
    for key in CONTRACT_KEYS - {"n_languages", "rfd", "asymmetry", "row_cosine"}:
        assert 0.0 <= report[key] <= 1.0


def test_analyze_writes_null_for_nan(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text(",en,es\nen,1,\nes,,1\n")
    assert main(["analyze", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prop_positive"] is None
    assert report["excluded"]["entries"] == [["en", "es"], ["es", "en"]]


def test_analyze_without_off_diagonal_entries_gives_no_fake_zeros(tmp_path, capsys):
    """Only the diagonal is finite: RFD and asymmetry are undefined (null with a reason), not 0."""
    path = tmp_path / "m.csv"
    path.write_text(",en,es,fr\nen,1,,\nes,,1,\nfr,,,1\n")
    assert main(["analyze", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("rfd", "asymmetry", "row_cosine", "prop_positive", "reciprocity_positive"):
        assert report[key] is None, key
        assert report["undefined"][key], key
    assert report["undefined"]["rfd"] == "no finite off-diagonal entry"
    assert main(["analyze", str(path)]) == 0
    assert "undefined: rfd (no finite off-diagonal entry)" in capsys.readouterr().out


def test_analyze_lists_nothing_undefined_for_a_full_matrix(capsys):
    assert main(["analyze", str(EXAMPLE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # a bare matrix has no SE and no self-gain
    assert set(report["undefined"]) == {"se_median", "se_mean", "self_gain_min", "self_gain_median"}


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity"])
def test_an_infinite_entry_is_an_error_naming_the_cell(tmp_path, capsys, cell):
    path = tmp_path / "m.csv"
    path.write_text(f",en,es\nen,1,0.5\nes,{cell},1\n")
    assert main(["analyze", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "row 'es', column 'en'" in err and "finite" in err


@pytest.mark.parametrize(
    ("content", "says"), [(b"", "the file is empty"), (b",en\n\xff\xfe,1\n", "not UTF-8 text (line 2, byte 4)")]
)
def test_an_empty_or_non_utf8_matrix_is_named(tmp_path, capsys, content, says):
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cltm analyze: error: {path}: {says}") and "\n" not in err


def test_analyze_human_table(capsys):
    assert main(["analyze", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "reciprocity+" in out and "%" in out


def test_analyze_unknown_codes_name_them(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text(",en,xx1\nen,1,0.5\nxx1,0.5,1\n")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "xx1" in err and "--families" in err
    assert main(["heatmap", str(path), "-o", str(tmp_path / "h.png")]) == 2
    assert "unknown language code(s) xx1 (" in capsys.readouterr().err  # a row's and a column's label: once


def test_analyze_with_own_families(tmp_path, capsys):
    families = tmp_path / "fam.csv"
    families.write_text("code,name,family\nxx1,Lang One,Fam A\nxx2,Lang Two,Fam A\n")
    path = tmp_path / "m.csv"
    path.write_text(",xx1,xx2\nxx1,1,0.5\nxx2,0.25,1\n")
    assert main(["analyze", str(path), "--families", str(families), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intra_family_positive"] == 1.0


def test_malformed_matrix_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text(",en,es\nen,1,x\nes,0.5,1\n")
    assert main(["analyze", str(path)]) == 2
    assert "row 'en', column 'es': 'x' is not a number" in capsys.readouterr().err


def test_matrix_command_writes_the_folder(tmp_path, capsys):
    records = write_records(tmp_path / "grid" / "records", known_grid())
    out = tmp_path / "out"
    assert main(["matrix", str(records.parent), "--task", "gr", "-o", str(out)]) == 0
    for name in ("cltm.csv", "cltm_se.csv", "relative.csv", "gains.csv", "diagnostics.json", "cltm.png", "cltm.pdf"):
        assert (out / name).is_file(), name
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["task"] == "gr" and report["metric"] == "macro_f1"
    assert report["seeds"] == [1, 2]
    assert report["excluded"]["rows"] == ["es"]
    assert any(r["target"] == "en" and r["donor"] == "fr" for r in report["nan_reasons"])


def test_heatmap_subset_png_and_pdf(tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["heatmap", str(EXAMPLE), "-o", str(out), "--locales", "en,de,fr,es"]) == 0
    assert out.stat().st_size > 1000 and out.with_suffix(".pdf").is_file()


def test_registry_covers_the_paper_languages():
    registry = default_registry()
    paper = ["kab", "ar", "eo", "ta", "hy-AM", "cy", "nl", "en", "de", "sv-SE", "bn", "ur", "ckb", "kmr", "fa", "ca", "fr", "gl", "it", "pt", "ro", "es", "be", "cs", "pl", "ru", "uk", "ka", "th", "eu", "lg", "rw", "sw", "ab", "yue", "zh-CN", "zh-HK", "zh-TW", "ky", "tr", "ug", "uz", "hu", "mhr", "mt", "id", "lt", "lv", "fy-NL", "dv", "sl", "ja", "mn", "et"]
    assert len(paper) == 54
    registry.check(paper)
    assert registry.family("es") == "Indo-European (Romance)"
    assert registry.family("hy-AM") == "Indo-European"
    assert registry.order(["es", "ar", "ca"]) == ["ar", "ca", "es"]


def test_registry_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "fam.csv"
    path.write_text("code,name,family\nxx1,,Fam\n")
    with pytest.raises(ValueError, match="line 2"):
        read_registry_csv(path)


def test_a_families_csv_from_a_spreadsheet_is_read(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte-order mark; spaces after the commas are common too.
    path = tmp_path / "fam.csv"
    path.write_bytes("\ufeffcode, name, family\r\nxx1, One, Fam\r\nxx2, Two, Fam\r\n".encode())
    registry = read_registry_csv(path)
    assert registry.family("xx1") == "Fam" and registry.family("xx2") == "Fam"


def test_heatmap_se_must_have_the_matrix_languages_and_be_non_negative(tmp_path, capsys):
    lines = EXAMPLE.read_text().splitlines()
    short = tmp_path / "se_short.csv"
    short.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n")
    assert main(["heatmap", str(EXAMPLE), "-o", str(tmp_path / "h.png"), "--se", str(short)]) == 2
    assert "se_short.csv: the standard errors do not have the matrix's labels" in capsys.readouterr().err
    negative = tmp_path / "se_neg.csv"
    cells = [line.split(",") for line in lines]
    cells[1][2] = "-0.1"
    negative.write_text("\n".join(",".join(row) for row in cells) + "\n")
    for command in (["heatmap", str(EXAMPLE), "-o", str(tmp_path / "h.png")], ["analyze", str(EXAMPLE)]):
        assert main([*command, "--se", str(negative)]) == 2
        err = capsys.readouterr().err
        assert f"se_neg.csv: the standard error of row {cells[1][0]}, column {cells[0][2]} is negative" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["report", "GRID", "-o", "OUT", "--locales", "q00,q00,q01"], "q00 given more than once"),
        (["report", "GRID", "-o", "OUT", "--top", "-2"], "a whole number >= 1 is needed, got '-2'"),
        (["simulate", "-o", "OUT", "--draws", "0"], "a whole number >= 1 is needed, got '0'"),
        (["simulate", "-o", "OUT", "--languages", "1"], "a whole number >= 2 is needed, got '1'"),
        (["power", "--languages", "8", "--seeds", "5", "--effect", "-0.5"], "a number above 0 is needed"),
        (["power", "--languages", "8", "--seeds", "5", "--simulations", "1"], "a whole number >= 2"),
        (["design", "--next", "0", "--observed", "GRID", "-o", "OUT"], "a whole number >= 1 is needed, got '0'"),
        (["compare", "GRID", "GRID", "-o", "OUT", "--labels", "X,X"], "X given more than once"),
        (["demo", "--out", "OUT", "--workers", "0"], "a whole number >= 1 is needed, got '0'"),
        (["run", "GRID", "--workers", "-2"], "a whole number >= 1 is needed, got '-2'"),
    ],
)
def test_meaningless_numbers_and_repeated_names_are_refused(tmp_path, capsys, argv, says):
    grid = write_records(tmp_path / "grid" / "records", known_grid()).parent
    out = tmp_path / "out"
    argv = [{"GRID": str(grid), "OUT": str(out)}.get(a, a) for a in argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own refusal
        status = exit_.code
    assert status == 2
    assert says in capsys.readouterr().err
    assert not out.exists()


def test_an_empty_folder_is_said_to_hold_no_runs(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["power", str(empty), "--languages", "8", "--seeds", "5"]) == 2
    err = capsys.readouterr().err
    assert "no finished runs (0 records" in err and "pass --task" not in err


def test_heatmap_reads_codes_as_analyze_does(tmp_path, capsys):
    """ISO 639-3 and upper-case codes, which `cltm analyze` maps to Common Voice codes, were
    refused by `cltm heatmap` as unknown languages; --locales is mapped the same way."""
    lines = EXAMPLE.read_text().splitlines()
    renamed = {"en": "ENG", "de": "deu", "zh-CN": "ZH-CN"}
    cells = [line.split(",") for line in lines]
    cells[0] = [renamed.get(c, c) for c in cells[0]]
    for row in cells[1:]:
        row[0] = renamed.get(row[0], row[0])
    path = tmp_path / "m.csv"
    path.write_text("\n".join(",".join(row) for row in cells) + "\n")
    assert main(["analyze", str(path)]) == 0
    out = tmp_path / "h.png"
    assert main(["heatmap", str(path), "-o", str(out), "--locales", "eng,de,zh-cn"]) == 0, capsys.readouterr().err
    assert out.is_file() and out.with_suffix(".pdf").is_file()


def test_heatmap_locales_paper_is_the_papers_subset(tmp_path, capsys):
    # The help offered "the paper's 16 languages" but 'paper' was read as a language code.
    out = tmp_path / "h.png"
    assert main(["heatmap", str(EXAMPLE), "-o", str(out), "--locales", "paper"]) == 0, capsys.readouterr().err
    assert out.is_file()


def test_an_unknown_code_error_points_at_the_families_file_given(tmp_path, capsys):
    # With --families given, the error told the user to "pass --families FILE.csv ... that lists
    # them", and said nothing of a code spelt in another case (EN in the file, en in the matrix).
    matrix = tmp_path / "m.csv"
    matrix.write_text(",en,de\nen,1,0.5\nde,0.2,1\n")
    families = tmp_path / "fam.csv"
    families.write_text("code,name,family\nEN,English,Germanic\n")
    assert main(["analyze", str(matrix), "--families", str(families)]) == 2
    err = capsys.readouterr().err
    assert f"unknown language code(s) en, de (registry: {families}); add them to {families}" in err
    assert "spells en as EN: codes must match in case" in err and "pass --families" not in err
