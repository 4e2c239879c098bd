"""Eligible speakers and clips of one Common Voice locale: the training pool and the test pool.

Training pool: rows of ``validated.tsv`` whose speaker appears in neither ``dev.tsv`` nor
``test.tsv`` (so every clip of a training speaker, not only ``train.tsv``'s one clip per
sentence). Test pool: rows of the official ``test.tsv``. In both, a row needs a client_id, a usable
gender label, an existing clip file, and a speaker who is not found in another locale. Every row
that is left out is counted under its reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cltm_sb.data import DataError
from cltm_sb.data.age import age_band
from cltm_sb.data.cv_tables import (
    gender_drop_reason,
    list_clip_files,
    normalize_gender,
    read_clip_durations,
    read_tsv,
    warn_unknown_genders,
)

logger = logging.getLogger(__name__)

ROW_COLUMNS = ("client_id", "path", "gender")
REQUIRED_TABLES = ("validated.tsv", "test.tsv")


@dataclass(frozen=True)
class Speaker:
    """A speaker and their usable clips (file names in ``clips/``, sorted)."""

    client_id: str
    gender: str
    clips: tuple[str, ...]
    age_band: str = ""  # read for an age preparation only (cltm_sb.data.age)

    def group(self, keys: tuple[str, ...] = ("gender",)) -> str:
        """The balance group of the speaker over ``keys`` (cltm_sb.data.age.balance_values)."""
        return "/".join(self.gender if key == "gender" else self.age_band for key in keys)


@dataclass
class LocalePool:
    """What one locale offers: speakers of the training pool and of the test set."""

    locale: str
    locale_dir: Path
    train: dict[str, Speaker]
    test: dict[str, Speaker]
    durations: dict[str, float]
    dropped: dict[str, Counter] = field(default_factory=dict)

    def clip_path(self, clip: str) -> Path:
        """Absolute path of a clip file."""
        return self.locale_dir / "clips" / clip

    def speakers(
        self, part: str, gender: str, min_clips: int = 1, keys: tuple[str, ...] = ("gender",)
    ) -> list[Speaker]:
        """Speakers of ``part`` (train|test) in group ``gender`` over ``keys`` (by default their
        gender; ``keys=("age_band",)``: an age band) with at least ``min_clips`` clips."""
        pool = self.train if part == "train" else self.test
        return sorted(
            (s for s in pool.values() if s.group(keys) == gender and len(s.clips) >= min_clips),
            key=lambda s: s.client_id,
        )


def _usable_rows(
    frame: pd.DataFrame, where: str, clips: set[str], excluded: set[str], held_out: set[str]
) -> tuple[pd.DataFrame, Counter]:
    """Filter clip rows; return the kept rows (with a ``sex`` column) and drop counts by reason."""
    frame = frame.copy()
    paths = frame["path"].str.strip()
    with_ext = paths + ".mp3"
    frame["path"] = paths.where(paths.isin(clips) | ~with_ext.isin(clips), with_ext)
    frame["sex"] = frame["gender"].map(normalize_gender)
    warn_unknown_genders(frame["gender"], where)
    reason = pd.Series("", index=frame.index, dtype=object)

    def mark(mask: pd.Series, why: str) -> None:
        reason[(reason == "") & mask] = why

    mark(frame["client_id"].str.strip() == "", "client_id_missing")
    mark(frame["client_id"].isin(held_out), "speaker_in_dev_or_test")
    mark(frame["client_id"].isin(excluded), "speaker_in_several_locales")
    no_gender = frame["sex"].isna()
    mark(no_gender & (frame["gender"].str.strip() == ""), gender_drop_reason(""))
    mark(no_gender, gender_drop_reason("x"))
    if "age" in frame.columns:  # an age preparation: the band is needed as gender is
        frame["band"] = frame["age"].map(age_band)
        mark(frame["band"].isna() & (frame["age"].str.strip() == ""), "age_missing")
        mark(frame["band"].isna(), "age_unknown")
    mark(~frame["path"].isin(clips), "clip_missing")
    mark(frame["path"].duplicated(keep="first"), "duplicate_row")
    kept = frame[reason == ""]
    # A speaker whose rows carry both labels cannot be placed: drop all of their rows.
    mixed = kept.groupby("client_id")["sex"].nunique()
    mixed_ids = set(mixed[mixed > 1].index)
    if mixed_ids:
        mark(frame["client_id"].isin(mixed_ids), "speaker_gender_inconsistent")
        kept = frame[reason == ""]
    if "band" in frame.columns:  # a speaker whose rows fall in two bands cannot be placed either
        bands = kept.groupby("client_id")["band"].nunique()
        mark(frame["client_id"].isin(set(bands[bands > 1].index)), "speaker_age_inconsistent")
        kept = frame[reason == ""]
    return kept, Counter({k: int(v) for k, v in reason[reason != ""].value_counts().items()})


def _speakers(rows: pd.DataFrame) -> dict[str, Speaker]:
    speakers = {}
    for client_id, group in rows.groupby("client_id", sort=True):
        band = str(group["band"].iloc[0]) if "band" in group.columns else ""
        speakers[client_id] = Speaker(
            client_id, group["sex"].iloc[0], tuple(sorted(group["path"])), band
        )
    return speakers


def load_locale_pool(cv_root: Path, locale: str, excluded: set[str], need_age: bool = False) -> LocalePool:
    """Read one locale folder into its training and test pools.

    Args:
        cv_root: the Common Voice root (holding one folder per locale).
        locale: the locale code (folder name).
        excluded: client_ids to leave out (speakers found in several locales).
        need_age: read the ``age`` column too; rows without a known age are left out and counted
            (``age_missing``, ``age_unknown``), and speakers get their age band.
    """
    locale_dir = cv_root / locale
    if not locale_dir.is_dir():
        raise DataError(
            f"locale {locale!r}: folder {locale_dir} not found; check --cv-root and --locales"
        )
    for table in REQUIRED_TABLES:
        if not (locale_dir / table).exists():  # a folder in its place is named by read_tsv
            raise DataError(f"locale {locale!r}: {locale_dir / table} not found (Common Voice layout)")
    if not (locale_dir / "clips").is_dir():
        # Without it every clip counts as missing and the locale looks empty ("0 speakers").
        raise DataError(
            f"locale {locale!r}: {locale_dir / 'clips'} is missing (the folder of a Common Voice "
            "locale's audio files); extract the locale's archive fully or check --cv-root"
        )
    clips = list_clip_files(locale_dir / "clips")
    held_out: set[str] = set()
    for table in ("dev.tsv", "test.tsv"):
        if (locale_dir / table).exists():
            held_out.update(read_tsv(locale_dir / table, ("client_id",))["client_id"])
    held_out.discard("")
    columns = (*ROW_COLUMNS, "age") if need_age else ROW_COLUMNS
    validated = read_tsv(locale_dir / "validated.tsv", columns)
    test = read_tsv(locale_dir / "test.tsv", columns)
    train_rows, train_dropped = _usable_rows(
        validated, str(locale_dir / "validated.tsv"), clips, excluded, held_out
    )
    test_rows, test_dropped = _usable_rows(test, str(locale_dir / "test.tsv"), clips, excluded, set())
    for part, dropped in (("train", train_dropped), ("test", test_dropped)):
        if dropped:
            logger.info("%s %s pool: left out %s", locale, part, dict(sorted(dropped.items())))
    return LocalePool(
        locale=locale,
        locale_dir=locale_dir,
        train=_speakers(train_rows),
        test=_speakers(test_rows),
        durations=read_clip_durations(locale_dir),
        dropped={"train": train_dropped, "test": test_dropped},
    )
