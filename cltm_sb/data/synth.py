"""A toy multilingual corpus in the Common Voice 22.0 layout, made by a source-filter synthesiser.

The model (see the README section "The toy corpus"):

- Source: a glottal pulse train whose pitch follows an utterance contour, with jitter, shimmer,
  spectral tilt and aspiration noise. Gender sets the pitch range, the same in every language
  (female 165-255 Hz, male 85-150 Hz), and shifts the vocal-tract length a little.
- Age: a decade (Common Voice's `age` values); with ``age_cues`` its band sets the speaking rate,
  a mid-band gain, breathiness and a vocal tremor (:data:`AGE_CUES`).
- Speaker: own mean pitch, vocal-tract length (scales every formant), breathiness, tilt, pitch
  range and speaking rate, so that speakers can be told apart.
- Filter: a cascade of second-order formant resonators per phone (vowels, nasals); fricatives and
  bursts are shaped noise.
- Language: own vowel and consonant inventory, syllable shapes, rhythm (syllable rate, vowel
  length) and stress/intonation pattern. Languages of a family share most of their inventory and
  prosody, so transfer within a family is more plausible than across families.

Everything is deterministic for a seed: each clip has its own generator derived from
(seed, language, speaker, clip).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from cltm_sb.data import DataError
from cltm_sb.io import atomic_write, atomic_write_text

SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 32000  # Common Voice serves 32 kHz MP3s
CLIP_COLUMNS = (
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
)  # fmt: skip
EMPTY_TABLES = {
    "other.tsv": CLIP_COLUMNS,
    "reported.tsv": ("sentence_id", "sentence", "locale", "reason"),
    "unvalidated_sentences.tsv": ("sentence_id", "sentence", "sentence_domain", "source", "is_used", "clips_count"),
}  # fmt: skip
FAMILY_NAMES = ("Toy-Northern", "Toy-Southern", "Toy-Eastern", "Toy-Western", "Toy-Central", "Toy-Insular")
LANGUAGE_STEMS = ("Arvic", "Belan", "Corish", "Dunic", "Eskar", "Falin", "Gorvic", "Hestan", "Ilmar", "Jorun", "Kessic", "Lunar")
AGES = ("teens", "twenties", "thirties", "fourties", "fifties", "sixties")
# In a corpus made with age_cues, age leaves its own traces (the same in every language), so that
# the age task (bands of cltm_sb.data.age) is learnable: per band a speaking-rate factor,
# a gain in dB on the mid bands (600-1600 Hz of EQ_BANDS_HZ), extra breathiness and a vocal
# tremor (relative depth of a 5.5 Hz pitch modulation).
AGE_CUES = {
    "under30": {"rate": 1.15, "mid_db": 18.0, "breath": -0.03, "tremor": 0.0},
    "30to49": {"rate": 1.0, "mid_db": 0.0, "breath": 0.0, "tremor": 0.0},
    "50plus": {"rate": 0.85, "mid_db": -18.0, "breath": 0.1, "tremor": 0.05},
}
MID_BANDS = (2, 3, 4)
# Ages go round this cycle by speaker pair (one female, one male speaker per step): every age is
# as frequent, and any three consecutive pairs span the three bands, so a small test set holds each.
AGE_CYCLE = ("teens", "thirties", "fifties", "twenties", "fourties", "sixties")
TREMOR_HZ = 5.5
PITCH_RANGE = {"female": (165.0, 255.0), "male": (85.0, 150.0)}
# Voice quality also differs by gender (the same in every language): breathier voices with a
# steeper source roll-off for female speakers, so that gender leaves a spectral trace too.
BREATHINESS = {"female": (0.15, 0.35), "male": (0.01, 0.15)}
SOURCE_TILT = {"female": (0.3, 0.6), "male": (0.55, 0.85)}
# A speaker's timbre: a fixed gain curve over these bands (spread in dB), like a vocal tract
# and a microphone that never change between the speaker's clips.
EQ_BANDS_HZ = (150.0, 300.0, 600.0, 1000.0, 1600.0, 2500.0, 4000.0, 6500.0)
EQ_SPREAD_DB = 8.0
# ... around a gender-specific mean curve (brighter female voices), the same in every language.
GENDER_EQ_DB = {
    "female": (-6.0, -6.0, -3.0, 0.0, 3.0, 6.0, 9.0, 9.0),
    "male": (6.0, 6.0, 3.0, 0.0, -3.0, -6.0, -9.0, -9.0),
}
# Vowel space (F1, F2, F3 in Hz for a reference vocal tract) from which inventories are drawn.
VOWEL_SPACE = (
    (280, 2250, 2900), (400, 2000, 2600), (550, 1800, 2500), (700, 1700, 2500), (750, 1300, 2450),
    (600, 1000, 2400), (450, 850, 2350), (320, 800, 2300), (300, 1600, 2200), (500, 1400, 2450),
    (650, 1150, 2500), (350, 1900, 2400),
)  # fmt: skip
# Consonants: (kind, centre frequency in Hz).
CONSONANT_SPACE = (
    ("fric", 6500), ("fric", 4500), ("fric", 3000), ("fric", 1800), ("stop", 3500), ("stop", 1500),
    ("stop", 800), ("stop", 2500), ("nasal", 250), ("nasal", 350), ("approx", 600), ("approx", 1200),
)  # fmt: skip


@dataclass(frozen=True)
class ToyLanguage:
    """Phonology and prosody of one made-up language."""

    code: str
    name: str
    family: str
    vowels: tuple[tuple[float, float, float], ...]
    consonants: tuple[tuple[str, float], ...]
    syllable_rate: float  # syllables per second
    coda_prob: float  # probability of a closed syllable (CVC)
    vowel_share: float  # share of a syllable taken by its vowel
    stress: str  # "initial", "final" or "tone"
    declination: float  # relative pitch fall over an utterance


@dataclass(frozen=True)
class ToySpeaker:
    """Voice of one made-up speaker."""

    client_id: str
    gender: str
    age: str
    f0: float
    f0_range: float
    vtl: float  # formant scale: > 1 for a shorter vocal tract
    breathiness: float
    tilt: float  # one-pole low-pass coefficient of the source
    rate: float
    formant_jitter: tuple[float, float, float]
    eq_db: tuple[float, ...]  # the speaker's fixed spectral colouring (timbre), per band
    tremor: float = 0.0  # relative depth of a TREMOR_HZ pitch modulation (older voices)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def make_languages(n_languages: int, seed: int) -> list[ToyLanguage]:
    """``n_languages`` languages in families of two (``qaa``, ``qab``, ``qba``, ...)."""
    if not 1 <= n_languages <= 2 * len(FAMILY_NAMES):
        raise DataError(f"n_languages must be between 1 and {2 * len(FAMILY_NAMES)}, got {n_languages}")
    languages = []
    for index in range(n_languages):
        fam, member = divmod(index, 2)
        frng = _rng(seed, "family", fam)
        vowel_ids = np.sort(frng.choice(len(VOWEL_SPACE), size=6, replace=False))
        cons_ids = np.sort(frng.choice(len(CONSONANT_SPACE), size=7, replace=False))
        f_rate, f_coda = frng.uniform(3.6, 6.2), frng.uniform(0.0, 0.7)
        f_share, f_stress = frng.uniform(0.45, 0.7), ("initial", "final", "tone")[fam % 3]
        lrng = _rng(seed, "language", fam, member)
        # A member keeps most of its family's inventory: one vowel and one consonant swapped.
        vowels = [np.array(VOWEL_SPACE[i], float) for i in vowel_ids]
        vowels[int(lrng.integers(len(vowels)))] = np.array(VOWEL_SPACE[int(lrng.integers(len(VOWEL_SPACE)))], float)
        vowels = [tuple(v * lrng.uniform(0.93, 1.07, size=3)) for v in vowels]
        consonants = [CONSONANT_SPACE[i] for i in cons_ids]
        consonants[int(lrng.integers(len(consonants)))] = CONSONANT_SPACE[int(lrng.integers(len(CONSONANT_SPACE)))]
        languages.append(
            ToyLanguage(
                code=f"q{chr(ord('a') + fam)}{chr(ord('a') + member)}",
                name=LANGUAGE_STEMS[index % len(LANGUAGE_STEMS)] + ("" if index < len(LANGUAGE_STEMS) else f" {index}"),
                family=FAMILY_NAMES[fam],
                vowels=tuple(vowels),
                consonants=tuple(consonants),
                syllable_rate=float(f_rate * lrng.uniform(0.92, 1.08)),
                coda_prob=float(np.clip(f_coda + lrng.uniform(-0.1, 0.1), 0, 0.9)),
                vowel_share=float(f_share),
                stress=f_stress,
                declination=float(lrng.uniform(0.05, 0.25)),
            )
        )
    return languages


def make_speaker(seed: int, locale: str, index: int, gender: str, age_cues: bool = False) -> ToySpeaker:
    """A speaker's voice; the pitch range depends on gender only; with ``age_cues``, the age band
    adds :data:`AGE_CUES` (off: the voice is exactly that of a corpus made before age cues)."""
    from cltm_sb.data.age import age_band

    rng = _rng(seed, "speaker", locale, index)
    low, high = PITCH_RANGE[gender]
    client_id = hashlib.sha512(f"toy:{seed}:{locale}:{index}".encode()).hexdigest()
    rng.integers(len(AGES))  # once the age; drawn still, so that every later draw stays as it was
    age = AGE_CYCLE[(index // 2) % len(AGE_CYCLE)]
    f0 = float(rng.uniform(low, high))
    f0_range = float(rng.uniform(0.08, 0.3))
    vtl = float(rng.normal(1.18 if gender == "female" else 1.0, 0.06))
    breathiness = float(rng.uniform(*BREATHINESS[gender]))
    tilt = float(rng.uniform(*SOURCE_TILT[gender]))
    rate = float(rng.uniform(0.85, 1.15))
    jitter = tuple(float(v) for v in rng.uniform(0.88, 1.12, size=3))
    eq_db = [float(v) for v in rng.normal(GENDER_EQ_DB[gender], EQ_SPREAD_DB)]
    # Applied after every draw, so the draws stay as they were; the middle band changes nothing.
    cues = AGE_CUES[(age_band(age) if age_cues else None) or "30to49"]
    for band in MID_BANDS:
        eq_db[band] += cues["mid_db"]
    return ToySpeaker(
        client_id=client_id,
        gender=gender,
        age=age,
        f0=f0,
        f0_range=f0_range,
        vtl=vtl,
        breathiness=max(0.0, breathiness + cues["breath"]),
        tilt=tilt,
        rate=rate * cues["rate"],
        formant_jitter=jitter,
        eq_db=tuple(eq_db),
        tremor=cues["tremor"],
    )


def _colour(x: np.ndarray, eq_db: Sequence[float]) -> np.ndarray:
    """Apply a smooth gain curve (dB at :data:`EQ_BANDS_HZ`, log-frequency interpolation)."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    gain_db = np.interp(np.log(np.maximum(freqs, 50.0)), np.log(EQ_BANDS_HZ), eq_db)
    return np.fft.irfft(spectrum * 10 ** (gain_db / 20), n=len(x))


def _resonate(x: np.ndarray, freq: float, bandwidth: float, zi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Second-order resonator (unit gain at DC scaled out) with carried filter state."""
    freq = min(freq, 0.45 * SAMPLE_RATE)
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r]
    b = [1 - r]
    if zi is None:
        zi = np.zeros(2)
    return lfilter(b, a, x, zi=zi)


def synthesize_utterance(lang: ToyLanguage, speaker: ToySpeaker, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One clip (float32 at 16 kHz, 1.0-1.5 s) and its made-up sentence."""
    target = rng.uniform(1.0, 1.5)
    lead, tail = rng.uniform(0.05, 0.12), rng.uniform(0.05, 0.12)
    syll_dur = 1.0 / (lang.syllable_rate * speaker.rate)
    n_syll = max(2, int(round((target - lead - tail) / syll_dur)))
    phones: list[tuple[str, float, object]] = []  # (kind, seconds, parameter)
    words, word = [], ""
    for s in range(n_syll):
        d = syll_dur * rng.uniform(0.8, 1.2)
        cons = lang.consonants[int(rng.integers(len(lang.consonants)))]
        vowel_idx = int(rng.integers(len(lang.vowels)))
        coda = rng.random() < lang.coda_prob
        v_share = lang.vowel_share * (0.8 if coda else 1.0)
        phones.append((cons[0], d * (1 - v_share) * (0.5 if coda else 1.0), cons[1]))
        phones.append(("vowel", d * v_share, (vowel_idx, s)))
        word += "ptkbdgmnlrsfvhjw"[int(cons[1]) % 16] + "aeiouy"[vowel_idx % 6]
        if coda:
            c2 = lang.consonants[int(rng.integers(len(lang.consonants)))]
            phones.append((c2[0], d * (1 - v_share) * 0.5, c2[1]))
            word += "ptkbdgmnlrsfvhjw"[int(c2[1]) % 16]
        if rng.random() < 0.35 or s == n_syll - 1:
            words.append(word)
            word = ""
    sentence = " ".join(words).capitalize() + "."
    if rng.random() < 0.2:
        sentence = f'"{sentence}" she said'
    # Stretch the phones so that the clip lasts exactly the target duration.
    stretch = (target - lead - tail) / sum(p[1] for p in phones)
    phones = [(kind, seconds * stretch, param) for kind, seconds, param in phones]
    n_total = int(target * SAMPLE_RATE)
    # Pitch contour: declination, stress pattern, slow wobble, jitter.
    t = np.arange(n_total) / SAMPLE_RATE
    contour = 1.0 + speaker.f0_range * 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 6))
    contour *= 1.0 - lang.declination * t / max(t[-1], 1e-3)
    contour *= 1.0 + speaker.tremor * np.sin(2 * np.pi * TREMOR_HZ * t)  # no draw: other cues unchanged
    f0 = speaker.f0 * contour * (1 + 0.01 * rng.standard_normal(n_total).cumsum() / np.sqrt(np.arange(1, n_total + 1)))
    out = np.zeros(n_total)
    pos = int(lead * SAMPLE_RATE)
    states: list[np.ndarray | None] = [None, None, None]
    phase = 0.0
    for kind, seconds, param in phones:
        n = max(int(seconds * SAMPLE_RATE), 16)
        end = min(pos + n, n_total)
        n = end - pos
        if n <= 0:
            break
        ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.012 * SAMPLE_RATE))
        if kind in ("vowel", "nasal", "approx"):
            seg_f0 = f0[pos:end].copy()
            if kind == "vowel":
                idx, syll = param
                accent = {"initial": syll == 0, "final": syll == n_syll - 1, "tone": idx % 2 == 0}[lang.stress]
                seg_f0 *= 1.0 + (speaker.f0_range if accent else 0.0)
                formants = np.array(lang.vowels[idx])
                amp = 1.0 if accent else 0.75
            elif kind == "nasal":
                formants, amp = np.array([float(param), 1100.0, 2400.0]), 0.45
            else:
                formants, amp = np.array([float(param) * 0.6, float(param) * 1.8, 2600.0]), 0.6
            phases = phase + np.cumsum(seg_f0) / SAMPLE_RATE
            phase = float(phases[-1] % 1.0)
            pulses = (np.diff(np.floor(phases), prepend=np.floor(phases[0] - 1e-9)) > 0).astype(float)
            pulses *= 1 + 0.1 * rng.standard_normal(n)  # shimmer
            source = lfilter([1.0], [1.0, -speaker.tilt], pulses)
            source += speaker.breathiness * 0.3 * rng.standard_normal(n)
            signal = source
            for k in range(3):
                freq = formants[k] * speaker.vtl * speaker.formant_jitter[k]
                signal, states[k] = _resonate(signal, freq, 60 + 40 * k + 200 * speaker.breathiness, states[k])
            out[pos:end] += amp * signal * ramp
        else:
            noise = rng.standard_normal(n)
            if kind == "stop":
                burst = np.zeros(n)
                start = int(0.7 * n)
                burst[start:] = noise[start:] * np.exp(-np.arange(n - start) / (0.004 * SAMPLE_RATE))
                noise = burst
            shaped, _ = _resonate(noise, float(param) * speaker.vtl, 0.35 * float(param), None)
            out[pos:end] += (0.5 if kind == "fric" else 0.8) * shaped * ramp
        pos = end
    out = _colour(out, speaker.eq_db)
    out += 1e-3 * rng.standard_normal(n_total)  # room noise
    peak = np.max(np.abs(out)) or 1.0
    out *= rng.uniform(0.3, 0.8) / peak
    return out.astype(np.float32), sentence


@dataclass(frozen=True)
class CorpusSize:
    """Speakers and clips per locale of the toy corpus."""

    train_speakers_per_gender: int = 24
    train_clips_per_speaker: int = 5
    test_speakers_per_gender: int = 6
    test_clips_per_speaker: int = 6
    dev_speakers_per_gender: int = 2
    dev_clips_per_speaker: int = 3
    unlabelled_speakers: int = 2  # speakers without a gender label (left out by prepare)


def _encode_mp3(samples: np.ndarray) -> bytes:
    from scipy.signal import resample_poly

    up = resample_poly(samples, OUTPUT_SAMPLE_RATE // SAMPLE_RATE, 1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(up, -1, 1), OUTPUT_SAMPLE_RATE, format="MP3")
    return buffer.getvalue()


def _write_tsv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    lines = ["\t".join(columns)] + ["\t".join(str(r.get(c, "")) for c in columns) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _synthesize_locale(out_dir: str, seed: int, lang: ToyLanguage, size: CorpusSize, age_cues: bool = False) -> None:
    """Write one locale folder: clips/*.mp3 and the TSVs."""
    folder = Path(out_dir) / lang.code
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    parts = [("train", size.train_speakers_per_gender, size.train_clips_per_speaker),
             ("dev", size.dev_speakers_per_gender, size.dev_clips_per_speaker),
             ("test", size.test_speakers_per_gender, size.test_clips_per_speaker)]  # fmt: skip
    tables: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    durations, sentences = [], []
    clip_no = 0
    plan = [(part, g, n_clips) for part, n_spk, n_clips in parts for _ in range(n_spk) for g in ("female", "male")]
    plan += [("train", "", size.train_clips_per_speaker)] * size.unlabelled_speakers
    for index, (part, gender, n_clips) in enumerate(plan):
        speaker = make_speaker(seed, lang.code, index, gender or ("female", "male")[index % 2], age_cues)
        for c in range(n_clips):
            rng = _rng(seed, "clip", lang.code, index, c)
            samples, sentence = synthesize_utterance(lang, speaker, rng)
            name = f"common_voice_{lang.code}_{seed}{clip_no:06d}.mp3"
            data = _encode_mp3(samples)
            atomic_write(folder / "clips" / name, lambda tmp, data=data: tmp.write_bytes(data))
            sentence_id = hashlib.sha256(sentence.encode()).hexdigest()
            tables[part].append({
                "client_id": speaker.client_id, "path": name, "sentence_id": sentence_id,
                "sentence": sentence, "sentence_domain": "", "up_votes": 2, "down_votes": 0,
                "age": speaker.age if gender else "", "gender": f"{gender}_{'feminine' if gender == 'female' else 'masculine'}" if gender else "",
                "accents": "", "variant": "", "locale": lang.code, "segment": "",
            })  # fmt: skip
            durations.append({"clip": name, "duration[ms]": int(round(1000 * len(samples) / SAMPLE_RATE))})
            sentences.append({"sentence_id": sentence_id, "sentence": sentence, "sentence_domain": "", "source": "toy", "is_used": 1, "clips_count": 1})
            clip_no += 1
    validated = tables["train"] + tables["dev"] + tables["test"]
    for name, rows in (("validated", validated), ("train", tables["train"]), ("dev", tables["dev"]),
                       ("test", tables["test"]), ("invalidated", [])):  # fmt: skip
        _write_tsv(folder / f"{name}.tsv", CLIP_COLUMNS, rows)
    for name, columns in EMPTY_TABLES.items():
        _write_tsv(folder / name, columns, [])
    _write_tsv(folder / "clip_durations.tsv", ("clip", "duration[ms]"), durations)
    _write_tsv(folder / "validated_sentences.tsv", EMPTY_TABLES["unvalidated_sentences.tsv"], sentences)


def synthesize_corpus(
    out_dir: str | os.PathLike,
    seed: int = 0,
    n_languages: int = 6,
    size: CorpusSize | None = None,
    workers: int = 1,
    age_cues: bool = False,
) -> Path:
    """Write the toy corpus (Common Voice 22.0 layout) and ``families.csv`` into ``out_dir``.

    Args:
        out_dir: destination; ``<out>/<locale>/`` per language, plus ``<out>/families.csv``.
        seed: the corpus is a deterministic function of the seed (and the size).
        n_languages: languages, in families of two (1-12).
        size: speakers and clips per locale (default: enough for the demo).
        workers: processes (one language each).
        age_cues: voices carry :data:`AGE_CUES` (the age task's corpus). Off by default: those
            cues blur the gender cue the ``toy`` preset's GR self-gains were tuned on
            (bench/RESULTS.md), and without them every clip is as it was before age cues existed.

    Returns the output folder.
    """
    size = size or CorpusSize()
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    languages = make_languages(int(n_languages), int(seed))
    if workers > 1 and len(languages) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_synthesize_locale, [str(out)] * len(languages), [int(seed)] * len(languages), languages,
                          [size] * len(languages), [age_cues] * len(languages)))  # fmt: skip
    else:
        for lang in languages:
            _synthesize_locale(str(out), int(seed), lang, size, age_cues)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("code", "name", "family"))
    writer.writerows((lang.code, lang.name, lang.family) for lang in languages)
    atomic_write_text(out / "families.csv", buffer.getvalue())
    return out
