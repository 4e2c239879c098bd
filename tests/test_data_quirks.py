"""Hand-made Common Voice TSVs with the format's quirks, each with its expected behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from cltm_sb.data.common_voice import prepare_common_voice
from cltm_sb.data.cv_tables import speakers_in_several_locales
from cltm_sb.data.pools import load_locale_pool
from cltm_sb.data.sampling import draw_training

HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
          "age", "gender", "accents", "variant", "locale", "segment"]  # fmt: skip


def _mp3(path: Path, sr: int = 32000, channels: int = 1, seconds: float = 1.0, freq: float = 200.0) -> None:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    data = np.stack([x, -x], axis=1) if channels == 2 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr, format="MP3")


def _tsv(path: Path, rows: list[dict], columns: list[str] = HEADER) -> None:
    lines = ["\t".join(columns)] + ["\t".join(str(r.get(c, "")) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _row(client: str, clip: str, gender: str, sentence: str = 'He said "hi', age: str = "twenties") -> dict:
    return {"client_id": client, "path": clip, "sentence_id": "s", "sentence": sentence,
            "age": age, "gender": gender, "up_votes": 2, "down_votes": 0}  # fmt: skip


def _locale(root: Path, locale: str, train: list[dict], test: list[dict], dev: list[dict] = (),
            audio: dict[str, dict] | None = None, columns: list[str] = HEADER) -> None:  # fmt: skip
    folder = root / locale
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for row in [*train, *test, *dev]:
        spec = (audio or {}).get(row["path"], {})
        if spec.get("missing"):
            continue
        if spec.get("corrupt"):
            (folder / "clips" / row["path"]).write_bytes(b"ID3\x03\x00\x00\x00garbage" * 20)
        else:
            _mp3(folder / "clips" / row["path"], **{k: v for k, v in spec.items() if k in ("sr", "channels")})
    _tsv(folder / "validated.tsv", [*train, *dev, *test], columns)
    _tsv(folder / "train.tsv", list(train), columns)
    _tsv(folder / "dev.tsv", list(dev), columns)
    _tsv(folder / "test.tsv", list(test), columns)
    _tsv(folder / "clip_durations.tsv",
         [{"clip": r["path"], "duration[ms]": 1000} for r in [*train, *test] if "stereo" not in r["path"]],
         ["clip", "duration[ms]"])  # fmt: skip


@pytest.fixture(scope="module")
def quirky_cv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quirky_cv")
    audio = {"xx_c1_0.mp3": {"corrupt": True}, "xx_c2_0.mp3": {"corrupt": True},
             "xx_gone.mp3": {"missing": True}, "xx_stereo.mp3": {"sr": 44100, "channels": 2},
             "xx_f9_0.mp3": {"sr": 48000}}  # fmt: skip
    train = [_row(f"f{i}", f"xx_f{i}_0.mp3", "female_feminine") for i in range(1, 4)]
    train += [_row(f"m{i}", f"xx_m{i}_0.mp3", "male" if i <= 2 else "male_masculine") for i in range(1, 5)]
    train += [
        _row("c1", "xx_c1_0.mp3", "female_feminine"),  # only clip is corrupt
        _row("c2", "xx_c2_0.mp3", "female_feminine"), _row("c2", "xx_c2_1.mp3", "female_feminine"),
        _row("nolabel", "xx_nolabel.mp3", "", age=""),
        _row("nb", "xx_nb.mp3", "non-binary"),
        _row("m1", "xx_gone.mp3", "male"),
        _row("shared", "xx_shared.mp3", "female"),
        _row("shared_unselected", "xx_shared2.mp3", "male"),
        _row("f9", "xx_f9_0.mp3", "female", sentence='"'),
    ]  # fmt: skip
    test = [_row("tf", "xx_stereo.mp3", "female_feminine"), _row("tf", "xx_tf_1.mp3", "female"),
            _row("tm", "xx_tm_0.mp3", "male"), _row("tm", "xx_tm_1.mp3", "male_masculine"),
            _row("tx", "xx_tx_0.mp3", "")]  # fmt: skip
    _locale(root, "xx", train, test, dev=[_row("dv", "xx_dv.mp3", "male")], audio=audio)
    yy_train = [_row(f"yf{i}", f"yy_f{i}.mp3", "female") for i in range(4)]
    yy_train += [_row(f"ym{i}", f"yy_m{i}.mp3", "male") for i in range(4)]
    yy_train += [_row("shared", "yy_shared.mp3", "female")]
    yy_test = [_row("ytf", "yy_tf.mp3", "female"), _row("ytm", "yy_tm.mp3", "male")]
    _locale(root, "yy", yy_train, yy_test, columns=list(reversed(HEADER)))  # columns by name
    (root / "zz").mkdir()
    _tsv(root / "zz" / "other.tsv", [_row("shared_unselected", "zz_1.mp3", "male")])
    return root


def test_speakers_in_several_locales_include_unselected_folders(quirky_cv: Path):
    assert speakers_in_several_locales(quirky_cv) == {"shared": ["xx", "yy"], "shared_unselected": ["xx", "zz"]}


def test_rows_are_dropped_with_their_reason(quirky_cv: Path):
    pool = load_locale_pool(quirky_cv, "xx", {"shared", "shared_unselected"})
    assert pool.dropped["train"] == {
        "gender_missing": 1, "gender_unusable": 1, "clip_missing": 1, "speaker_in_several_locales": 2,
        "speaker_in_dev_or_test": 5 + 1,
    }  # fmt: skip
    assert pool.dropped["test"] == {"gender_missing": 1}
    assert pool.train["m1"].gender == "male" and pool.train["m1"].clips == ("xx_m1_0.mp3",)
    assert pool.train["f9"].gender == "female"  # old vocabulary; a lone quote in the sentence


def _seed_with_redraws(quirky_cv: Path) -> int:
    """A seed whose draw takes c1 (only a corrupt clip) and starts c2 on its corrupt clip."""
    pool = load_locale_pool(quirky_cv, "xx", {"shared", "shared_unselected"})
    by_gender = {g: pool.speakers("train", g) for g in ("female", "male")}
    for seed in range(200):
        draw = draw_training(by_gender, 4, 1, seed, "xx")
        chosen = {d.speaker.client_id: d.chosen[0] for d in draw.speakers}
        if chosen.get("c2") == "xx_c2_0.mp3" and "c1" in chosen:
            return seed
    raise AssertionError("no suitable seed")


def test_prepare_redraws_corrupt_clips_and_decodes_any_rate(quirky_cv: Path, tmp_path: Path):
    seed = _seed_with_redraws(quirky_cv)
    info = prepare_common_voice(quirky_cv, ["xx", "yy"], "gr", 4, tmp_path, seed=seed, progress=False)
    decoding = info["counts"]["xx"]["decoding"]
    assert decoding["decode_failed"] == 2 and decoding["redraws"] == 1 and decoding["speakers_replaced"] == 1
    training = pd.concat(pd.read_csv(tmp_path / "xx" / f"{s}.csv", dtype=str) for s in ("a", "b"))
    assert "xx_xx_c2_1" in set(training["ID"]) and "c1" not in set(training["spk_id"])
    assert not {"shared", "shared_unselected", "nolabel", "nb"} & set(training["spk_id"])
    assert len(training) == 8 and (training.groupby("gender").size() == 4).all()
    test = pd.read_csv(tmp_path / "xx" / "test.csv", dtype=str).set_index("ID")
    assert sorted(test.index) == ["xx_xx_stereo", "xx_xx_tf_1", "xx_xx_tm_0", "xx_xx_tm_1"]
    # 44.1 kHz stereo: not in clip_durations.tsv, so its duration comes from the header.
    assert float(test.loc["xx_xx_stereo", "duration"]) == pytest.approx(1.0, abs=0.06)
    wav = Path(info["data_root"]) / test.loc["xx_xx_stereo", "wav"].replace("$data_root/", "")
    samples, sr = sf.read(wav)
    assert sr == 16000 and samples.ndim == 1 and abs(len(samples) - 16000) < 16000 * 0.06
    yy = pd.read_csv(tmp_path / "yy" / "a.csv", dtype=str)
    assert "shared" not in set(yy["spk_id"]) and len(yy) == 4
    assert json.loads((tmp_path / "prepare.json").read_text())["cross_locale_speakers"] == 2


def test_locale_that_cannot_meet_the_request_is_named(quirky_cv: Path, tmp_path: Path):
    from cltm_sb.data import DataError

    with pytest.raises(DataError, match=r"locale 'yy' cannot supply N=6 .*4 female and 4 male.*largest N it supports is 4"):
        prepare_common_voice(quirky_cv, ["yy"], "gr", 6, tmp_path, progress=False)
    with pytest.raises(DataError, match="locale 'yy': its test.tsv lacks two same-gender speakers"):
        prepare_common_voice(quirky_cv, ["yy"], "sv", 4, tmp_path, clips_per_speaker=1, progress=False)


def test_table_whose_header_lacks_the_columns_is_refused_not_read_as_empty(tmp_path: Path):
    from cltm_sb.data import DataError

    rows = [_row("f1", "xx_f1.mp3", "female"), _row("m1", "xx_m1.mp3", "male")]
    _locale(tmp_path, "xx", rows, [_row("tf", "xx_tf.mp3", "female")], dev=[_row("dv", "xx_dv.mp3", "male")])
    dev = tmp_path / "xx" / "dev.tsv"
    dev.write_text(dev.read_text(encoding="utf-8").replace("\t", ","), encoding="utf-8")  # saved as CSV
    # Read as an empty table, the dev speaker "dv" used to join the training pool without a word.
    with pytest.raises(DataError, match=r"xx/dev\.tsv: missing column\(s\) client_id in its header line; .*tab-separated"):
        load_locale_pool(tmp_path, "xx", set())
    dev.write_bytes(b"")  # a 0-byte table is an empty one
    assert "dv" in load_locale_pool(tmp_path, "xx", set()).train
