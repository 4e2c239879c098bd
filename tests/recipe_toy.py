"""A small toy corpus for the recipe tests, written in the prepared-folder layout.

Used until (and beside) the shared ``prepared_gr`` / ``prepared_sv`` fixtures: a few 16 kHz WAVs
per locale, voices from harmonics of a speaker-specific pitch shaped by a speaker-specific
formant, so that gender and speaker identity are learnable in seconds.
"""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
HEADER = ["ID", "duration", "wav", "spk_id", "gender", "locale", "subset"]


def _voice(rng: np.random.Generator, f0: float, formant: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0_track = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    phase = 2 * np.pi * np.cumsum(f0_track) / SR
    wav = np.zeros_like(t)
    for h in range(1, 12):
        freq = h * f0
        wav += np.exp(-(((freq - formant) / 600.0) ** 2)) * np.sin(h * phase) / h
    wav += 0.05 * rng.standard_normal(len(t))
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def make_prepared(
    root: Path,
    locales: tuple[str, ...] = ("xa", "xb"),
    speakers_per_gender: int = 4,
    clips_per_speaker: int = 4,
    test_speakers_per_gender: int = 3,
    seconds: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write ``<root>/prepared/{prepare.json, <locale>/{a,b,test}.csv, trials.csv}`` + audio."""
    rng = np.random.default_rng(seed)
    audio, prepared = root / "audio", root / "prepared"
    info = {"data_root": str(audio), "data_hash": f"toy-{seed}", "locales": list(locales)}
    prepared.mkdir(parents=True, exist_ok=True)
    (prepared / "prepare.json").write_text(json.dumps(info), encoding="utf-8")
    for li, locale in enumerate(locales):
        (audio / locale).mkdir(parents=True, exist_ok=True)
        shift = 1.0 + 0.15 * li  # each locale has its own formant range
        subsets = {"a": speakers_per_gender, "b": speakers_per_gender, "test": test_speakers_per_gender}
        test_rows = []
        for subset, n_spk in subsets.items():
            rows = []
            for gender in ("female", "male"):
                for s in range(n_spk):
                    spk = f"{locale}_{subset}_{gender[0]}{s}"
                    base = rng.uniform(170, 250) if gender == "female" else rng.uniform(85, 140)
                    formant = rng.uniform(600, 1400) * shift * (1.5 if gender == "female" else 1.0)
                    for c in range(clips_per_speaker):
                        uid = f"{spk}_{c}"
                        dur = seconds * rng.uniform(0.9, 1.1)
                        wav = _voice(rng, base * rng.uniform(0.97, 1.03), formant, dur)
                        sf.write(audio / locale / f"{uid}.wav", wav, SR)
                        rows.append([uid, f"{len(wav) / SR:.3f}", f"$data_root/{locale}/{uid}.wav",
                                     spk, gender, locale, subset])
            _write(prepared / locale / f"{subset}.csv", HEADER, rows)
            if subset == "test":
                test_rows = rows
        _write(prepared / locale / "trials.csv", ["enrol_ID", "test_ID", "label"], _trials(test_rows))
    return prepared


def _trials(rows: list[list[str]]) -> list[list]:
    trials = []
    for a, b in combinations(rows, 2):
        same = a[3] == b[3]
        if same or a[4] == b[4]:
            trials.append([a[0], b[0], int(same)])
    pos = [t for t in trials if t[2] == 1]
    neg = [t for t in trials if t[2] == 0][: len(pos)]
    return pos + neg


def _write(path: Path, header: list[str], rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
