"""Decoding, resampling, normalisation, the audio cache, manifest validation and the toy corpus."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from cltm_sb.data.audio import AudioCache, AudioDecodeError, decode_clip, normalize_waveform
from cltm_sb.data.manifests import validate_manifest
from cltm_sb.data.synth import CorpusSize, make_speaker, synthesize_corpus


@pytest.mark.parametrize(("sr", "channels"), [(48000, 1), (44100, 2), (32000, 1), (16000, 1)])
def test_decode_clip_gives_16k_mono(tmp_path: Path, sr: int, channels: int):
    t = np.arange(sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "clip.mp3"
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, sr, format="MP3")
    y = decode_clip(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) < 16000 * 0.08
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * 16000 / len(y) == pytest.approx(440, abs=5)


def test_decode_clip_rejects_garbage(tmp_path: Path):
    path = tmp_path / "bad.mp3"
    path.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioDecodeError, match="bad.mp3"):
        decode_clip(path)


def test_normalize_waveform_and_silence():
    x = torch.randn(2, 1000) * 3 + 1
    y = normalize_waveform(x)
    assert torch.allclose(y.mean(-1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.std(-1, unbiased=False), torch.ones(2), atol=1e-4)
    assert torch.isfinite(normalize_waveform(torch.zeros(100))).all()


def test_cache_builds_hits_and_rebuilds(tmp_path: Path):
    source = tmp_path / "src.mp3"
    sf.write(source, np.zeros(32000, np.float32) + 0.1 * np.sin(np.arange(32000)), 32000, format="MP3")
    cache = AudioCache(tmp_path / "cache")
    first = cache.ensure("xx", source)
    assert first.status == "built" and first.relpath.startswith("xx/src_")
    assert cache.ensure("xx", source).status == "hit"
    (cache.root / first.relpath).write_bytes(b"RIFF")
    assert cache.ensure("xx", source).status == "rebuilt"
    cache.sidecar(first.relpath).unlink()
    assert cache.ensure("xx", source).status == "rebuilt"
    import speechbrain as sb

    audio = sb.dataio.dataio.read_audio(str(cache.root / first.relpath))
    assert audio.shape == (first.frames,)


def test_validate_manifest_reports_problems(tmp_path: Path):
    bad = tmp_path / "m.csv"
    bad.write_text(
        "ID,duration,wav,spk_id,gender,locale,subset\n"
        "x1,1.0,$data_root/a.wav,s,female,xx,a\n"
        "x1,-1,/abs/b.wav,,other,xx,c\n",
        encoding="utf-8",
    )
    problems = validate_manifest(bad, data_root=tmp_path)
    text = "\n".join(problems)
    for part in ("already used on line 2", "duration", "must start with $data_root/", "empty spk_id",
                 "gender 'other'", "subset 'c'", "a.wav not found"):  # fmt: skip
        assert part in text, part
    wrong = tmp_path / "w.csv"
    wrong.write_text("id,path\n", encoding="utf-8")
    assert "expected ID,duration" in validate_manifest(wrong)[0]


def test_toy_corpus_layout_and_voices(toy_corpus: Path, toy_locales: list[str]):
    families = pd.read_csv(toy_corpus / "families.csv")
    assert list(families.columns) == ["code", "name", "family"] and list(families["code"]) == toy_locales
    assert families["family"].nunique() == 2
    folder = toy_corpus / toy_locales[0]
    tables = {n: pd.read_csv(folder / f"{n}.tsv", sep="\t", quoting=3, dtype=str, keep_default_na=False)
              for n in ("validated", "train", "dev", "test")}  # fmt: skip
    assert list(tables["test"].columns)[:4] == ["client_id", "path", "sentence_id", "sentence"]
    speakers = {n: set(t["client_id"]) for n, t in tables.items()}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    assert (tables["validated"]["sentence"].str.contains('"')).any()
    durations = pd.read_csv(folder / "clip_durations.tsv", sep="\t")
    assert durations["duration[ms]"].between(900, 1700).all()
    for index in range(20):  # gender sets the pitch range, the same in every language
        for locale in toy_locales:
            assert make_speaker(0, locale, index, "female").f0 > 160 > make_speaker(0, locale, index, "male").f0
    assert sf.info(folder / "clips" / tables["test"]["path"].iloc[0]).samplerate == 32000


def test_toy_corpus_is_deterministic(tmp_path: Path):
    size = CorpusSize(train_speakers_per_gender=1, train_clips_per_speaker=1, test_speakers_per_gender=1,
                      test_clips_per_speaker=1, dev_speakers_per_gender=1, dev_clips_per_speaker=1,
                      unlabelled_speakers=0)  # fmt: skip

    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
        return h.hexdigest()

    a = digest(synthesize_corpus(tmp_path / "a", seed=3, n_languages=2, size=size))
    b = digest(synthesize_corpus(tmp_path / "b", seed=3, n_languages=2, size=size))
    c = digest(synthesize_corpus(tmp_path / "c", seed=4, n_languages=2, size=size))
    assert a == b != c
