"""Bad data is refused before any training: `cltm plan` and `cltm validate` name the file, the row
and what to do; the data side turns disk and layout faults into one named error each."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from grid_fakes import make_prepared

import cltm_sb.data.common_voice as cv
from cltm_sb.cli import main
from cltm_sb.data import DataError, DataIOError
from cltm_sb.data.checks import AUDIO_SAMPLE, DataCheckError, check_data
from cltm_sb.data.manifests import UNFINISHED_FILE
from cltm_sb.grid.plan import make_plan

RUNNER = "grid_fakes:run_fake"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------- plan-time checks
def _edit(path: Path, line: int, column: int, value: str) -> None:
    """Set one field of one line (1-based, header = line 1) of a CSV without quoting."""
    lines = path.read_text().splitlines()
    fields = lines[line - 1].split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


def _audio(data: Path, uid: str) -> Path:
    return data / "audio" / uid.split("_")[0] / f"{uid}.wav"


def _drop_subset_column(data: Path) -> None:
    path = data / "en" / "a.csv"
    path.write_text("".join(",".join(line.split(",")[:6]) + "\n" for line in path.read_text().splitlines()))


# name -> (task, how to break the data, what the one-line error must say)
FAULTS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "header_missing_column": (
        "gr", _drop_subset_column,
        r"en/a\.csv: header is ID,duration,wav,spk_id,gender,locale, missing subset; expected "
        r"ID,duration,wav,spk_id,gender,locale,subset \(manifest; label columns may follow\)",
    ),
    "zero_duration": (
        "gr", lambda d: _edit(d / "en" / "a.csv", 2, 1, "0.000"),
        r"en/a\.csv, line 2: duration '0\.000' is not a positive number of seconds",
    ),
    "duration_not_a_number": (
        "gr", lambda d: _edit(d / "en" / "b.csv", 3, 1, "1.5s"),
        r"en/b\.csv, line 3: duration '1\.5s' is not a positive number of seconds",
    ),
    "corrupt_test_audio": (
        "gr", lambda d: _audio(d, "en_test1").write_bytes(b"RIFF garbage" * 10),
        r"en/test\.csv, line 3 \(ID en_test1\): audio .*en_test1\.wav cannot be read as audio",
    ),
    "empty_test_audio": (
        "gr", lambda d: _audio(d, "es_test3").write_bytes(b""),
        r"es/test\.csv, line 5 \(ID es_test3\): audio .*es_test3\.wav is an empty file \(0 bytes\)",
    ),
    "8khz_training_audio": (
        "gr", lambda d: sf.write(_audio(d, "es_b1"), np.zeros(400, np.float32), 8000),
        r"es/b\.csv, line 3 \(ID es_b1\): audio .*es_b1\.wav is 8000 Hz with 1 channel\(s\); "
        r"expected 16000 Hz mono; prepare the data again",
    ),
    "0_frame_training_audio": (
        "gr", lambda d: sf.write(_audio(d, "en_a0"), np.zeros(0, np.float32), 16000),
        r"en/a\.csv, line 2 \(ID en_a0\): audio .*en_a0\.wav holds no audio samples \(0 frames\)",
    ),
    "unknown_trial_id": (
        "sv", lambda d: _edit(d / "es" / "trials.csv", 3, 1, "es_nope"),
        r"es/trials\.csv, line 3: 'es_nope' is not in .*es/test\.csv; the trial list and the test "
        r"manifest must come from one `cltm prepare`",
    ),
    "speaker_in_a_and_test": (
        "gr", lambda d: _edit(d / "en" / "a.csv", 3, 3, "en_test_m"),
        r"en/a\.csv, line 3 \(ID en_a1\): speaker 'en_test_m' is also in the test set at "
        r".*en/test\.csv, line 4 \(ID en_test2\)",
    ),
    "speaker_in_a_and_b": (
        "gr", lambda d: _edit(d / "es" / "b.csv", 2, 3, "es_a_f"),
        r"es/a\.csv, line 2 \(ID es_a0\): speaker 'es_a_f' is in both training subsets a and b of "
        r"'es' \(also at .*es/b\.csv, line 2 \(ID es_b0\)\)",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_plan_refuses_bad_data_and_validate_reports_it(fault: str, tmp_path: Path, capsys) -> None:
    task, damage, message = FAULTS[fault]
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    out = tmp_path / "plan"
    plan_args = ["plan", "--data", str(data), "--task", task, "--locales", "en,es", "--seeds", "1",
                 "--out", str(out), "--runner", RUNNER]  # fmt: skip
    assert main(plan_args) == 0  # the intact data plans
    (out / "plan.json").unlink()
    capsys.readouterr()
    damage(data)

    assert main(plan_args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("cltm plan: error: ") and re.search(message, err), err
    assert not (out / "plan.json").exists()

    assert main(["validate", str(data)]) == 1
    assert re.search(message, capsys.readouterr().out)


def test_one_line_counts_the_other_problems_and_names_validate(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    for uid in ("en_test0", "en_test1", "es_test0"):
        _audio(data, uid).write_bytes(b"")
    with pytest.raises(DataCheckError) as caught:
        make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    assert len(caught.value.problems) == 3 and isinstance(caught.value, ValueError)
    assert str(caught.value).endswith(f"(and 2 more: `cltm validate {data.resolve()}` lists them all)")


def test_training_audio_is_sampled_and_full_reads_every_clip(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en"])
    manifest = data / "en" / "a.csv"
    rows = [f"en_x{i},0.050,$data_root/en/en_x{i}.wav,en_x{i},female,en,a" for i in range(5 * AUDIO_SAMPLE)]
    for i in range(5 * AUDIO_SAMPLE):
        sf.write(_audio(data, f"en_x{i}"), np.zeros(800, np.float32), 16000)
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    sf.write(_audio(data, "en_x3"), np.zeros(400, np.float32), 8000)  # between two sampled rows
    files = [manifest, data / "en" / "test.csv"]
    assert check_data(files) == []
    assert check_data(files) == []  # the same sample every time
    problems = check_data(files, full=True)
    assert len(problems) == 1 and "line 5 (ID en_x3)" in problems[0] and "8000 Hz" in problems[0]


def test_extra_label_columns_pass_and_trial_lists_go_by_header(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en"])
    for name in ("a.csv", "b.csv", "test.csv"):
        path = data / "en" / name
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0] + ",age_band"] + [line + ",twenties" for line in lines[1:]]) + "\n")
    shutil.copy(data / "en" / "trials.csv", data / "en" / "pairs.csv")  # another name: its header says
    assert check_data([data]) == []
    (data / "en" / "b.csv").write_text((data / "en" / "trials.csv").read_text())
    assert check_data([data / "en" / "b.csv"])[0].startswith(f"{data / 'en' / 'b.csv'}: header is enrol_ID")


def test_validate_reads_a_relative_folder_of_own_manifests_as_plan_does(tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    own = make_prepared(tmp_path / "own", ["en"])
    (own / "prepare.json").unlink()  # own data: $data_root/ is the folder itself
    for wav in (own / "audio" / "en").iterdir():
        wav.rename(own / "en" / wav.name)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "own"]) == 0, capsys.readouterr().out  # not own/own/en/...
    assert make_plan(tmp_path / "plan", "own", "gr", ["en"], [1], runner=RUNNER).data_root == str(own)


def test_validate_refuses_what_plan_refuses_of_a_folder(tmp_path: Path, capsys) -> None:
    failed = tmp_path / "x3"  # what a `cltm prepare` killed before writing leaves: only its lock
    failed.mkdir()
    (failed / ".prepare.lock").write_text("")
    plan_args = ["plan", "--data", str(failed), "--task", "gr", "--locales", "en", "--seeds", "1",
                 "--out", str(tmp_path / "plan"), "--runner", RUNNER]  # fmt: skip
    assert main(plan_args) == 2
    refused = capsys.readouterr().err.removeprefix("cltm plan: error: ").strip()
    assert main(["validate", str(failed)]) == 1
    assert capsys.readouterr().out.strip() == refused
    assert refused.startswith(f"{failed}: neither prepare.json nor <locale>/<subset>.csv manifests found; ")

    data = make_prepared(tmp_path / "prep", ["en"])
    (data / UNFINISHED_FILE).write_text("")  # a prepare still running, or killed
    assert main(["validate", str(data)]) == 1
    assert "did not finish" in capsys.readouterr().out


def test_a_corrupt_cache_clip_of_a_real_preparation_is_named(toy_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    cv.prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, out, progress=False)
    line, wav = 3, (out / "qaa" / "test.csv").read_text().splitlines()[2].split(",")[2]
    audio = out / "audio" / wav.removeprefix("$data_root/")
    audio.write_bytes(audio.read_bytes()[:20])  # a truncated header (the cache is not certified)
    with pytest.raises(DataCheckError, match=rf"qaa/test\.csv, line {line} \(ID .*\): audio {audio} "):
        make_plan(tmp_path / "plan", out, "gr", ["qaa"], [1], runner=RUNNER)
    assert not (tmp_path / "plan" / "plan.json").exists()


# ---------------------------------------------------------------------------- the data side
@pytest.fixture
def one_locale(toy_corpus: Path, tmp_path: Path) -> Path:
    """A private copy of one toy locale (the session corpus must stay intact)."""
    root = tmp_path / "cv"
    shutil.copytree(toy_corpus / "qaa", root / "qaa")
    return root


def _prepare(root: Path, out: Path, **kwargs) -> dict:
    return cv.prepare_common_voice(root, ["qaa"], "gr", 8, out, progress=False, **kwargs)


def test_unreadable_tsv_is_named(one_locale: Path, tmp_path: Path) -> None:
    table = one_locale / "qaa" / "validated.tsv"
    table.unlink()
    table.mkdir()  # unreadable even for root, unlike chmod 000
    with pytest.raises(DataIOError, match=rf"^{table}: cannot read \(Is a directory\); make it a readable file"):
        _prepare(one_locale, tmp_path / "out")
    assert not (tmp_path / "out" / "prepare.json").exists()


@pytest.mark.skipif(AS_ROOT, reason="chmod does not stop root from reading")
def test_tsv_without_read_permission_is_named(one_locale: Path, tmp_path: Path) -> None:
    table = one_locale / "qaa" / "test.tsv"
    table.chmod(0)
    try:
        with pytest.raises(DataIOError, match=rf"^{table}: cannot read \(Permission denied\)"):
            _prepare(one_locale, tmp_path / "out")
    finally:
        table.chmod(0o644)


def _no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")] if folder.exists() else True


def test_read_only_output_folder_is_named(one_locale: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"

    def read_only(path, rows):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(cv, "write_manifest", read_only)
    with pytest.raises(DataIOError) as caught:
        _prepare(one_locale, out)
    assert str(caught.value) == (
        f"{out}: cannot write the prepared manifests (Read-only file system): the file system is "
        "read-only; free space there or choose another --out"
    )
    assert not (out / "prepare.json").exists() and (out / "prepare.unfinished").exists()
    assert _no_temporary_files(out)


@pytest.mark.skipif(AS_ROOT, reason="chmod does not stop root from writing")
def test_output_folder_without_write_permission_is_named(one_locale: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(DataIOError, match=rf"^{out}: cannot write the prepared manifests .*: permission denied"):
            _prepare(one_locale, out)
    finally:
        out.chmod(0o755)
    assert list(out.iterdir()) == []


def test_full_disk_in_the_audio_cache_is_named(one_locale: Path, tmp_path: Path, monkeypatch) -> None:
    """libsndfile says only "System error." when the disk is full: the folder says the rest."""
    out, cache = tmp_path / "out", tmp_path / "cache"

    def disk_full(*args, **kwargs):
        raise sf.LibsndfileError(2)  # SF_ERR_SYSTEM, what a full disk gives

    monkeypatch.setattr(sf, "write", disk_full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0))
    with pytest.raises(DataIOError) as caught:
        _prepare(one_locale, out, cache_dir=cache)
    assert str(caught.value) == (
        f"{cache}: cannot write the decoded audio cache (libsndfile: System error.): the disk is "
        "full (0 MiB free); free space there, or pass --cache-dir on a writable disk with room for "
        "the clips"
    )
    assert not (out / "prepare.json").exists() and _no_temporary_files(cache)
    assert not list(cache.rglob("*.wav"))


def test_missing_clips_folder_is_named(one_locale: Path, tmp_path: Path) -> None:
    clips = one_locale / "qaa" / "clips"
    shutil.rmtree(clips)
    with pytest.raises(DataError, match=rf"locale 'qaa': {clips} is missing .*extract the locale's archive"):
        _prepare(one_locale, tmp_path / "out")
    with pytest.raises(DataError, match="clips is missing"):
        cv.report_common_voice(one_locale, ["qaa"], "gr")


def test_non_numeric_clip_duration_is_named_and_measured(one_locale: Path, tmp_path: Path, caplog) -> None:
    table = one_locale / "qaa" / "clip_durations.tsv"
    lines = table.read_text().splitlines()
    clip = lines[1].split("\t")[0]
    lines[1] = f"{clip}\tabc"
    table.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="cltm_sb.data.cv_tables"):
        _prepare(one_locale, tmp_path / "out")
    assert f"{table}, line 2: duration[ms] 'abc' is not a number (1 such row(s))" in caplog.text
    assert check_data([tmp_path / "out"]) == []
