"""Reading Common Voice TSVs: clip tables, gender vocabularies, clip durations, locale folders.

Common Voice TSVs are never quoted, and sentences hold raw (sometimes unbalanced) double quotes,
so every table is read with quoting off (``csv.QUOTE_NONE``) and columns are taken by header name,
never by position (columns were added between releases).
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from cltm_sb.data import DataError, DataIOError

logger = logging.getLogger(__name__)

# Tables whose rows are clips with a client_id (train/dev/test are subsets of validated).
CLIP_TABLES = ("validated.tsv", "invalidated.tsv", "other.tsv", "train.tsv", "dev.tsv", "test.tsv")
# Gender vocabulary: 17.0 and later, then the older one. Anything else is unusable.
GENDER_MAP = {
    "female_feminine": "female",
    "male_masculine": "male",
    "female": "female",
    "male": "male",
}
UNUSABLE_GENDERS = frozenset(
    {"transgender", "non-binary", "do_not_wish_to_say", "intersex", "other"}
)


def read_tsv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read the named columns of a Common Voice TSV as strings (empty cells stay ``""``)."""
    try:
        frame = pd.read_csv(
            path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
            na_filter=False, usecols=lambda name: name in columns, engine="c",
        )  # fmt: skip
    except pd.errors.EmptyDataError:  # a 0-byte table: no rows (only this case, see below)
        return pd.DataFrame({c: pd.Series(dtype=str) for c in columns})
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse as a Common Voice TSV ({error})") from error
    except OSError as error:  # no permission, a folder in its place: the machine, not the data
        raise DataIOError(
            f"{path}: cannot read ({error.strerror or error}); make it a readable file "
            "(e.g. `chmod a+r` it, or extract the Common Voice archive again)"
        ) from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:  # a header without them (commas for tabs, renamed columns) is not an empty table
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} in its header line; a Common Voice "
            "clip table is tab-separated with named columns (extract the archive again or fix the header)"
        )
    return frame[list(columns)]


def normalize_gender(value: str) -> str | None:
    """``female``/``male`` for the usable labels of both vocabularies, else ``None``."""
    return GENDER_MAP.get(value.strip().lower())


def gender_drop_reason(value: str) -> str:
    """Why a row with an unusable gender label is dropped."""
    return "gender_missing" if not value.strip() else "gender_unusable"


def warn_unknown_genders(values: pd.Series, where: str) -> None:
    """Log once per table the gender values that neither vocabulary knows."""
    lowered = values.str.strip().str.lower()
    unknown = lowered[(lowered != "") & ~lowered.isin(GENDER_MAP) & ~lowered.isin(UNUSABLE_GENDERS)]
    if len(unknown):
        shown = ", ".join(f"{v!r} ({n})" for v, n in Counter(unknown).most_common(5))
        logger.warning("%s: unknown gender value(s) treated as unusable: %s", where, shown)


def read_clip_durations(locale_dir: Path) -> dict[str, float]:
    """Clip durations in seconds from ``clip_durations.tsv`` (``clip``, ``duration[ms]``), if any."""
    path = locale_dir / "clip_durations.tsv"
    if not path.is_file():
        return {}
    frame = read_tsv(path, ("clip", "duration[ms]"))
    durations = pd.to_numeric(frame["duration[ms]"], errors="coerce") / 1000.0
    bad = durations.isna()
    if bad.any():
        first = int(bad.to_numpy().argmax())
        logger.warning(
            "%s, line %d: duration[ms] %r is not a number (%d such row(s)); those clips' "
            "durations are read from their audio instead",
            path, first + 2, frame["duration[ms]"].iloc[first], int(bad.sum()),
        )  # fmt: skip
    return {clip: float(d) for clip, d in zip(frame["clip"], durations, strict=True) if d > 0}


def list_clip_files(clips_dir: Path) -> set[str]:
    """Names of the files in a locale's ``clips/`` folder (one directory scan)."""
    if not clips_dir.is_dir():
        return set()
    with os.scandir(clips_dir) as entries:
        return {entry.name for entry in entries}


def list_locale_dirs(cv_root: Path) -> list[Path]:
    """Every locale folder under ``cv_root`` (a folder holding at least one clip table)."""
    return sorted(
        p for p in cv_root.iterdir() if p.is_dir() and any((p / t).is_file() for t in CLIP_TABLES)
    )


def read_client_ids(locale_dir: Path) -> set[str]:
    """Every client_id of a locale's clip tables (only that column is read)."""
    ids: set[str] = set()
    for table in CLIP_TABLES:
        path = locale_dir / table
        if path.is_file():
            ids.update(read_tsv(path, ("client_id",))["client_id"])
    ids.discard("")
    return ids


def speakers_in_several_locales(cv_root: Path) -> dict[str, list[str]]:
    """client_id -> locales, for every client_id found in more than one locale under ``cv_root``."""
    seen: dict[str, list[str]] = {}
    for locale_dir in list_locale_dirs(cv_root):
        for client in read_client_ids(locale_dir):
            seen.setdefault(client, []).append(locale_dir.name)
    return {client: locales for client, locales in seen.items() if len(locales) > 1}
