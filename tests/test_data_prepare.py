"""`cltm prepare` on the toy corpus: balance, disjointness, determinism, idempotence, the cache."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from cltm_sb.data import DataError
from cltm_sb.data.common_voice import prepare_common_voice, report_common_voice
from cltm_sb.data.manifests import MANIFEST_COLUMNS, read_trials, validate_manifest

from helpers import TOY_GR_N, TOY_SV_K, TOY_SV_N


def _read(folder: Path, locale: str, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / locale / name, dtype={"spk_id": str, "ID": str})


def _check_training_subsets(folder: Path, locale: str, n: int, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    a, b = _read(folder, locale, "a.csv"), _read(folder, locale, "b.csv")
    for name, frame in (("a", a), ("b", b)):
        assert list(frame.columns) == list(MANIFEST_COLUMNS)
        assert len(frame) == n, name
        assert (frame["subset"] == name).all() and (frame["locale"] == locale).all()
        per_speaker = frame.groupby("spk_id").size()
        assert (per_speaker == k).all(), "every speaker has exactly K clips"
        speakers = frame.drop_duplicates("spk_id")
        assert Counter(speakers["gender"]) == {"female": n // k // 2, "male": n // k // 2}
        assert Counter(frame["gender"]) == {"female": n // 2, "male": n // 2}
        assert frame["ID"].is_unique
    assert not set(a["spk_id"]) & set(b["spk_id"]), "a and b share a speaker"
    assert not set(a["ID"]) & set(b["ID"])
    return a, b


def _all_manifest_ids(folder: Path, locales: list[str]) -> list[str]:
    return [i for loc in locales for name in ("a.csv", "b.csv", "test.csv") for i in _read(folder, loc, name)["ID"]]


def test_gr_subsets_are_balanced_and_disjoint(prepared_gr: Path, toy_locales: list[str], toy_corpus: Path):
    info = json.loads((prepared_gr / "prepare.json").read_text())
    assert info["task"] == "gr" and info["n"] == TOY_GR_N and info["clips_per_speaker"] == 1
    speakers_by_locale = {}
    for locale in toy_locales:
        a, b = _check_training_subsets(prepared_gr, locale, TOY_GR_N, 1)
        test = _read(prepared_gr, locale, "test.csv")
        official = pd.read_csv(toy_corpus / locale / "test.tsv", sep="\t", quoting=3, dtype=str, keep_default_na=False)
        usable = official[official["gender"].isin(["female_feminine", "male_masculine"])]
        assert sorted(test["ID"]) == sorted(f"{locale}_{Path(p).stem}" for p in usable["path"])
        assert len(test) >= 40 and set(test["gender"]) == {"female", "male"}
        train_speakers = set(a["spk_id"]) | set(b["spk_id"])
        assert not train_speakers & set(test["spk_id"]), "a/b and test share a speaker"
        dev = pd.read_csv(toy_corpus / locale / "dev.tsv", sep="\t", quoting=3, dtype=str)
        assert not train_speakers & set(dev["client_id"])
        speakers_by_locale[locale] = train_speakers | set(test["spk_id"])
        counts = info["counts"][locale]
        assert counts["dropped_rows"]["train"]["gender_missing"] > 0
        assert counts["dropped_rows"]["train"]["speaker_in_dev_or_test"] > 0
    locales = list(speakers_by_locale)
    for i, first in enumerate(locales):
        for second in locales[i + 1 :]:
            assert not speakers_by_locale[first] & speakers_by_locale[second]
    ids = _all_manifest_ids(prepared_gr, toy_locales)
    assert len(ids) == len(set(ids)), "IDs are unique across locales"
    assert all(i.startswith(tuple(f"{loc}_" for loc in toy_locales)) for i in ids)


def test_sv_subsets_and_trials(prepared_sv: Path, toy_locales: list[str]):
    info = json.loads((prepared_sv / "prepare.json").read_text())
    assert info["clips_per_speaker"] == TOY_SV_K
    for locale in toy_locales:
        a, b = _check_training_subsets(prepared_sv, locale, TOY_SV_N, TOY_SV_K)
        test = _read(prepared_sv, locale, "test.csv")
        trials = pd.read_csv(prepared_sv / locale / "trials.csv", dtype=str)
        assert list(trials.columns) == ["enrol_ID", "test_ID", "label"]
        assert not (set(a["spk_id"]) | set(b["spk_id"])) & set(test["spk_id"])
        assert test["spk_id"].nunique() >= 8
        used = set(trials["enrol_ID"]) | set(trials["test_ID"])
        assert used == set(test["ID"]), "test.csv holds exactly the utterances of the trials"
        spk = dict(zip(test["ID"], test["spk_id"], strict=True))
        gender = dict(zip(test["ID"], test["gender"], strict=True))
        labels = trials["label"].astype(int)
        same = [spk[e] == spk[t] for e, t in zip(trials["enrol_ID"], trials["test_ID"], strict=True)]
        assert list(labels) == [int(s) for s in same]
        assert (labels == 1).sum() == (labels == 0).sum() > 0
        for e, t in zip(trials["enrol_ID"], trials["test_ID"], strict=True):
            assert gender[e] == gender[t], "negatives pair speakers of the same gender"
        pairs = {tuple(sorted(p)) for p in zip(trials["enrol_ID"], trials["test_ID"], strict=True)}
        assert len(pairs) == len(trials)
        assert not validate_manifest(prepared_sv / locale / "trials.csv")
        # the library's reader gives the same trials, labels as integers
        read = read_trials(prepared_sv / locale / "trials.csv")
        assert [(t.enrol_ID, t.test_ID, t.label) for t in read] == list(
            zip(trials["enrol_ID"], trials["test_ID"], labels, strict=True)
        )
        for name in ("a.csv", "b.csv", "test.csv"):
            assert validate_manifest(prepared_sv / locale / name) == []


def test_trials_cap_per_speaker(toy_corpus: Path, tmp_path: Path):
    info = prepare_common_voice(toy_corpus, ["qaa"], "sv", 16, tmp_path, clips_per_speaker=4,
                                trials_per_speaker=2, progress=False)  # fmt: skip
    trials = pd.read_csv(tmp_path / "qaa" / "trials.csv", dtype=str)
    test = _read(tmp_path, "qaa", "test.csv")
    spk = dict(zip(test["ID"], test["spk_id"], strict=True))
    positives = trials[trials["label"] == "1"]
    assert positives["enrol_ID"].map(spk).value_counts().max() <= 2
    assert info["counts"]["qaa"]["trials"]["positive"] == info["counts"]["qaa"]["trials"]["negative"]


def test_same_seed_same_bytes_other_seed_other_subsets(toy_corpus: Path, prepared_gr: Path, tmp_path: Path):
    again = tmp_path / "again"
    info = prepare_common_voice(toy_corpus, ["qaa"], "gr", TOY_GR_N, again, seed=0, progress=False)
    # wav paths are relative to $data_root, so the bytes match the fixture despite another cache.
    for name in ("a.csv", "b.csv", "test.csv"):
        assert (again / "qaa" / name).read_bytes() == (prepared_gr / "qaa" / name).read_bytes()
    other = prepare_common_voice(toy_corpus, ["qaa"], "gr", TOY_GR_N, tmp_path / "s1", seed=1, progress=False)
    assert set(_read(tmp_path / "s1", "qaa", "a.csv")["ID"]) != set(_read(again, "qaa", "a.csv")["ID"])
    assert other["data_hash"] != info["data_hash"]


def test_adding_a_locale_leaves_the_others_byte_identical(toy_corpus: Path, tmp_path: Path):
    one = prepare_common_voice(toy_corpus, ["qab"], "sv", 16, tmp_path / "one", clips_per_speaker=4, progress=False)
    two = prepare_common_voice(toy_corpus, ["qba", "qab"], "sv", 16, tmp_path / "two", clips_per_speaker=4,
                               cache_dir=tmp_path / "one" / "audio", progress=False)  # fmt: skip
    for name in ("a.csv", "b.csv", "test.csv", "trials.csv"):
        assert (tmp_path / "one" / "qab" / name).read_bytes() == (tmp_path / "two" / "qab" / name).read_bytes()
    assert one["files"]["qab/a.csv"] == two["files"]["qab/a.csv"]
    assert two["cache"].get("hit", 0) > 0, "the shared cache was reused"


def test_rerun_is_noop_and_other_arguments_are_refused(toy_corpus: Path, tmp_path: Path):
    first = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path, progress=False)
    stamp = (tmp_path / "prepare.json").stat().st_mtime_ns
    again = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path, progress=False)
    assert again == first and (tmp_path / "prepare.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="other arguments.*n: 8 -> 16"):
        prepare_common_voice(toy_corpus, ["qaa"], "gr", 16, tmp_path, progress=False)


def test_corrupt_cache_entry_is_rebuilt_and_unfinished_run_resumes(toy_corpus: Path, tmp_path: Path):
    first = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path, progress=False)
    assert first["cache"] == {"built": first["counts"]["qaa"]["a"]["clips"] * 2 + first["counts"]["qaa"]["test"]["clips"]}
    wav = _read(tmp_path, "qaa", "a.csv")["wav"].iloc[0].replace("$data_root/", "")
    path = Path(first["data_root"]) / wav
    path.write_bytes(path.read_bytes()[:100])  # truncated
    second = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path, progress=False)
    assert second["cache"]["rebuilt"] == 1 and second["data_hash"] == first["data_hash"]
    import speechbrain as sb

    assert sb.dataio.dataio.read_audio(str(path)).shape[0] > 16000 * 0.9
    # A folder without prepare.json is an unfinished run: preparing again reuses the cache.
    (tmp_path / "prepare.json").unlink()
    third = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path, progress=False)
    assert set(third["cache"]) == {"hit"} and third["data_hash"] == first["data_hash"]


def test_request_errors_name_the_problem(toy_corpus: Path, tmp_path: Path):
    with pytest.raises(DataError, match="nearest valid N is 16"):
        prepare_common_voice(toy_corpus, ["qaa"], "sv", 18, tmp_path, clips_per_speaker=4, progress=False)
    with pytest.raises(DataError, match=r"locale 'qaa' cannot supply N=80.*16 female and 16 male.*largest N it supports is 64"):
        prepare_common_voice(toy_corpus, ["qaa"], "sv", 80, tmp_path, clips_per_speaker=4, progress=False)
    with pytest.raises(DataError, match="locale 'nope'"):
        prepare_common_voice(toy_corpus, ["nope"], "gr", 8, tmp_path, progress=False)
    assert not (tmp_path / "prepare.json").exists()


def test_a_failed_prepare_leaves_nothing_it_created(toy_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    from cltm_sb.cli import main

    def prepare(out: Path, n: int) -> int:
        return main(["prepare", "--cv-root", str(toy_corpus), "--locales", "qaa", "--task", "sv",
                     "--clips-per-speaker", "4", "--n", str(n), "--out", str(out), "--quiet"])  # fmt: skip

    # More speakers than qaa has: the folder (and the parent made for it) once stayed, holding
    # only .prepare.lock.
    assert prepare(tmp_path / "new" / "prep", 80) == 2
    assert "largest N it supports is 64" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(empty, 80) == 2
    assert empty.is_dir() and not any(empty.iterdir())
    # A finished preparation refusing other arguments stays as it was, its lock file kept (the
    # lock line names the last prepare: rewritten, as by every prepare that takes the lock).
    done = tmp_path / "done"
    assert prepare(done, 8) == 0

    def state() -> dict[Path, int | None]:
        return {p: None if p.name == ".prepare.lock" else p.stat().st_mtime_ns for p in done.rglob("*")}

    before = state()
    assert prepare(done, 16) == 2
    assert state() == before and (done / ".prepare.lock").is_file()


def test_report_lists_every_locale(toy_corpus: Path, toy_locales: list[str]):
    table = report_common_voice(toy_corpus, None, "sv", clips_per_speaker=4)
    assert list(table["locale"]) == toy_locales
    assert (table["max_n"] == 64).all() and (table["eligible_speakers_female"] == 16).all()
    assert table["test_ok"].all()


def test_cli_prepare_and_validate(toy_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    from cltm_sb.cli import main

    out = tmp_path / "cli"
    assert main(["prepare", "--cv-root", str(toy_corpus), "--locales", "qaa", "--task", "gr", "--n", "8",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert "data_hash" in capsys.readouterr().out
    assert main(["validate", str(out / "qaa" / "a.csv"), str(out / "qaa" / "test.csv")]) == 0
    assert main(["prepare", "--cv-root", str(toy_corpus), "--task", "gr", "--report"]) == 0
    assert "max_n" in capsys.readouterr().out
    assert main(["prepare", "--cv-root", str(toy_corpus), "--locales", "qaa", "--task", "gr", "--n", "7",
                 "--out", str(tmp_path / "bad")]) == 2  # fmt: skip
    assert "nearest valid N is 8" in capsys.readouterr().err
    shutil.rmtree(out / "audio")
    assert main(["validate", str(out / "qaa" / "a.csv")]) == 1
