"""Balanced speaker/clip draws and verification trials, deterministic for (seed, locale).

Every random choice uses its own generator derived from a hash of (seed, locale, purpose, ...),
so a locale's draw never depends on which other locales are prepared, and a speaker's clip choice
never depends on the other speakers.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cltm_sb.data import DataError
from cltm_sb.data.manifests import GENDERS, ManifestRow, Trial
from cltm_sb.data.pools import Speaker


def derive_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a hash of ``parts`` (stable across platforms and Python runs)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def speakers_per_subset(n: int, k: int, groups: int = 2, per: str = "gender") -> int:
    """N/K, checking that N is a positive multiple of groups x K (as many speakers per group,
    e.g. half per gender; a third per age band)."""
    if k < 1:
        raise DataError(f"clips per speaker must be at least 1, got {k}")
    step = groups * k
    if n < step or n % step:
        nearest = max(step, int(round(n / step)) * step)
        share = "half the speakers" if groups == 2 else f"1/{groups} of the speakers"
        raise DataError(
            f"N={n} is not a multiple of {groups}*K={step} (K={k} clips per speaker, {share} "
            f"per {per}); the nearest valid N is {nearest}"
        )
    return n // k


def max_supported_n(eligible_per_gender: Sequence[int], k: int) -> int:
    """Largest N that a locale with these eligible speaker counts (per gender) supports."""
    per_gender = min(eligible_per_gender) if eligible_per_gender else 0
    # a and b each need S/g speakers per group (g groups: 2 genders, 3 age bands), so
    # S <= (g/2) x the speakers of the scarcest group.
    return len(eligible_per_gender) * k * (per_gender // 2)


@dataclass
class SpeakerDraw:
    """A drawn training speaker: the K clips in use and the clips left for redraws."""

    speaker: Speaker
    subset: str
    chosen: list[str]
    spare: list[str]
    group: str = ""  # its balance group (a gender, an age band); "": its gender


@dataclass
class TrainingDraw:
    """The a/b speakers of one locale and, per gender, the unused speakers (for replacements)."""

    speakers: list[SpeakerDraw]
    spare_speakers: dict[str, list[Speaker]] = field(default_factory=dict)


def draw_seed(seed: int, draw: int = 0) -> tuple[object, ...]:
    """The leading parts of every generator of data draw ``draw``.

    Draw 0 is seeded by the seed alone, as before draws existed, so its manifests stay
    byte-identical whatever other draws are made; draw k >= 1 adds ``("draw", k)``, which makes it
    independent of draw 0 and of the other draws under the same balance rules.
    """
    if draw < 0:
        raise DataError(f"data draws are numbered from 0, got {draw}")
    return (seed,) if draw == 0 else (seed, "draw", int(draw))


def draw_speaker_clips(
    speaker: Speaker, k: int, seed: int, locale: str, subset: str, draw: int = 0
) -> SpeakerDraw:
    """Choose K clips of ``speaker`` at random; the rest, in random order, are redraw candidates."""
    rng = derive_rng(*draw_seed(seed, draw), locale, "clips", speaker.client_id)
    order = rng.permutation(len(speaker.clips))
    clips = [speaker.clips[i] for i in order]
    return SpeakerDraw(speaker, subset, clips[:k], clips[k:])


def draw_training(
    by_gender: dict[str, list[Speaker]], n: int, k: int, seed: int, locale: str, draw: int = 0
) -> TrainingDraw:
    """Draw disjoint subsets a and b: N/(2K) speakers per gender each, K clips per speaker.

    ``by_gender`` holds, per gender, the eligible speakers (at least K clips), sorted by id.
    ``draw`` numbers independent draws under the same rules (:func:`draw_seed`).
    """
    groups = list(by_gender) if set(by_gender) != set(GENDERS) else list(GENDERS)
    per = "gender" if groups == list(GENDERS) else "balance group"
    half = speakers_per_subset(n, k, len(groups), per) // len(groups)
    result = TrainingDraw(speakers=[])
    for gender in groups:  # a gender, or another balance group (age bands: cltm_sb.data.age)
        candidates = by_gender[gender]
        if len(candidates) < 2 * half:
            raise DataError(f"locale {locale!r}: {len(candidates)} {gender} speakers, need {2 * half}")
        order = derive_rng(*draw_seed(seed, draw), locale, "speakers", gender).permutation(len(candidates))
        shuffled = [candidates[i] for i in order]
        for index, speaker in enumerate(shuffled[: 2 * half]):
            subset = "a" if index < half else "b"
            result.speakers.append(draw_speaker_clips(speaker, k, seed, locale, subset, draw))
            result.speakers[-1].group = gender
        result.spare_speakers[gender] = shuffled[2 * half :]
    return result


def make_trials(
    rows: Sequence[ManifestRow], cap_per_speaker: int, seed: int, locale: str
) -> tuple[list[Trial], Counter]:
    """Verification trials over test utterances.

    Positives: all within-speaker pairs, at most ``cap_per_speaker`` per speaker (a random
    subset when there are more). Negatives: for each speaker, as many pairs as its positives,
    enrolment from that speaker and test from another speaker of the same gender, no pair twice.
    The list is shuffled. Returns the trials and counts of what could not be used.
    """
    by_speaker: dict[str, list[ManifestRow]] = {}
    for row in sorted(rows, key=lambda r: r.ID):
        by_speaker.setdefault(row.spk_id, []).append(row)
    skipped: Counter = Counter()
    trials: list[Trial] = []
    for gender in GENDERS:
        speakers = sorted(s for s, utts in by_speaker.items() if utts[0].gender == gender)
        if len(speakers) < 2:
            skipped["test_speakers_alone_in_gender"] += len(speakers)
            continue
        used: set[tuple[str, str]] = set()
        for spk in speakers:
            utts = by_speaker[spk]
            pairs = list(itertools.combinations(range(len(utts)), 2))
            if not pairs:
                skipped["test_speakers_with_one_clip"] += 1
                continue
            rng = derive_rng(seed, locale, "trials", spk)
            if len(pairs) > cap_per_speaker:
                keep = np.sort(rng.choice(len(pairs), size=cap_per_speaker, replace=False))
                pairs = [pairs[i] for i in keep]
            for i, j in pairs:
                trials.append(Trial(utts[i].ID, utts[j].ID, 1))
            others = [u for s in speakers if s != spk for u in by_speaker[s]]
            wanted, attempts = len(pairs), 0
            while wanted and attempts < 20 * len(pairs) + 100:
                attempts += 1
                enrol = utts[int(rng.integers(len(utts)))].ID
                test = others[int(rng.integers(len(others)))].ID
                key = (min(enrol, test), max(enrol, test))
                if key in used:
                    continue
                used.add(key)
                trials.append(Trial(enrol, test, 0))
                wanted -= 1
            if wanted:
                skipped["negatives_short"] += wanted
    order = derive_rng(seed, locale, "trial-order").permutation(len(trials))
    return [trials[i] for i in order], skipped
