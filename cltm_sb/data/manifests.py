"""SpeechBrain CSV manifests and verification trial lists: rows, reading, writing, validation.

A manifest has the header ``ID,duration,wav,spk_id,gender,locale,subset``; ``wav`` is
``$data_root/<path in the audio cache>`` and ``data_root`` is given in the folder's
``prepare.json``. A trial list has the header ``enrol_ID,test_ID,label``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cltm_sb.data import DataError, DataIOError
from cltm_sb.io import atomic_write_text, holding, lock_holder, try_lock

MANIFEST_COLUMNS = ("ID", "duration", "wav", "spk_id", "gender", "locale", "subset")
TRIAL_COLUMNS = ("enrol_ID", "test_ID", "label")
# A trial list is <locale>/trials.csv, beside the test.csv whose IDs it pairs.
TRIALS_FILE = "trials.csv"
GENDERS = ("female", "male")
SUBSETS = ("a", "b", "test")
DATA_ROOT_PREFIX = "$data_root/"


@dataclass(frozen=True)
class ManifestRow:
    """One utterance of a manifest."""

    ID: str
    duration: float
    wav: str
    spk_id: str
    gender: str
    locale: str
    subset: str
    # Extra label columns after the standard ones, as (column, value) pairs (e.g. age_band).
    labels: tuple[tuple[str, str], ...] = ()

    def values(self) -> list[str]:
        """The row as CSV fields, in column order."""
        return [
            self.ID, f"{self.duration:.3f}", self.wav, self.spk_id, self.gender, self.locale,
            self.subset, *(value for _, value in self.labels),
        ]  # fmt: skip


@dataclass(frozen=True)
class Trial:
    """One verification trial: two utterance IDs and 1 (same speaker) or 0."""

    enrol_ID: str
    test_ID: str
    label: int


def _csv_text(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> Path:
    """Atomically write a manifest, rows sorted by ID (byte-identical for the same rows).

    The rows' extra label columns (the same in every row) follow the standard ones.
    """
    ordered = sorted(rows, key=lambda r: r.ID)
    extra = tuple(name for name, _ in ordered[0].labels) if ordered else ()
    if any(tuple(name for name, _ in r.labels) != extra for r in ordered):
        raise ValueError(f"{path}: rows with different label columns")
    return atomic_write_text(path, _csv_text(MANIFEST_COLUMNS + extra, (r.values() for r in ordered)))


def write_trials(path: str | os.PathLike, trials: Iterable[Trial]) -> Path:
    """Atomically write a trial list in the given order."""
    rows = ((t.enrol_ID, t.test_ID, str(t.label)) for t in trials)
    return atomic_write_text(path, _csv_text(TRIAL_COLUMNS, rows))


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a manifest; raises ValueError naming the file and line if it is malformed."""
    problems = validate_manifest(path, check_files=False)
    if problems:
        raise ValueError(f"{path}: invalid manifest: " + "; ".join(problems[:5]))
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [
            ManifestRow(r["ID"], float(r["duration"]), r["wav"], r["spk_id"], r["gender"],
                        r["locale"], r["subset"])
            for r in reader
        ]  # fmt: skip


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """Read a trial list."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != TRIAL_COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(TRIAL_COLUMNS)}")
        return [Trial(r["enrol_ID"], r["test_ID"], int(r["label"])) for r in reader]


PREPARE_FILE = "prepare.json"
# Held (fcntl.flock) for the whole of one `cltm prepare`: a second prepare into the folder is
# refused instead of interleaving its manifests with the first one's.
PREPARE_LOCK_FILE = ".prepare.lock"
# Written when a prepare starts, removed only after prepare.json is written: a folder holding it
# was left half-written (or is being written) and its prepare.json certifies nothing.
UNFINISHED_FILE = "prepare.unfinished"


class PrepareBusy(DataError):
    """Another ``cltm prepare`` holds the output folder's lock."""


@contextlib.contextmanager
def prepare_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``<folder>/.prepare.lock`` (a kernel lock) while one prepare writes the folder.

    The kernel drops the lock when its holder dies, so a killed prepare never blocks the next
    one (the :data:`UNFINISHED_FILE` it left says the folder needs preparing again). flock on NFS
    is emulated with POSIX locks by Linux (2.6.12 and later), so it also holds across nodes.
    A prepare that fails takes back what the lock made: the lock file, if it was new, and the
    folder (with the parents made for it), if nothing else was written into it.
    """
    folder = Path(folder)
    made = _missing_folders(folder)
    new_lock = not (folder / PREPARE_LOCK_FILE).exists()
    try:
        held = try_lock(folder / PREPARE_LOCK_FILE)
    except OSError:  # no flock here: as busy, the message says what to do
        held = lock_holder(folder / PREPARE_LOCK_FILE)
    if isinstance(held, str):
        raise PrepareBusy(
            f"{folder}: another `cltm prepare` ({held}) is writing into this folder; "
            "wait for it to finish or choose another --out"
        )
    with holding(held):
        try:
            yield
        except BaseException:
            # Still holding the lock: a prepare that opened the file meanwhile finds it gone
            # and locks a new one (try_lock), so removing it here lets no two prepares in.
            _take_back(folder / PREPARE_LOCK_FILE if new_lock else None, made)
            raise


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _take_back(lock: Path | None, made: list[Path]) -> None:
    """Remove a failed prepare's new lock file, then the folders it made that nothing else fills."""
    if lock is not None:
        lock.unlink(missing_ok=True)
    for path in made:
        try:
            path.rmdir()
        except OSError:  # holds what the prepare wrote (kept, marked unfinished) or another's files
            return


def mark_unfinished(folder: str | os.PathLike) -> Path:
    """Write ``<folder>/prepare.unfinished`` (before the first manifest is written)."""
    path = Path(folder) / UNFINISHED_FILE
    return atomic_write_text(path, f"cltm prepare started by pid {os.getpid()} on {socket.gethostname()}\n")


def mark_finished(folder: str | os.PathLike) -> None:
    """Remove the unfinished marker (only after ``prepare.json`` is written)."""
    (Path(folder) / UNFINISHED_FILE).unlink(missing_ok=True)


def file_stamp(path: str | os.PathLike) -> dict[str, int]:
    """Size and modification time (ns) of a file: the cheap test of "unchanged since"."""
    stat = Path(path).stat()
    return {"size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def certify_files(folder: str | os.PathLike, relpaths: Iterable[str]) -> dict[str, Any]:
    """The ``files`` (SHA-256 per manifest) and ``file_stamps`` entries of ``prepare.json``.

    ``data_hash`` is computed from ``files`` alone, so that the same content prepared twice (or
    copied elsewhere) keeps one hash; the stamps only let later checks skip re-hashing.
    """
    from cltm_sb.io import sha256_file

    folder = Path(folder)
    names = sorted(relpaths)
    return {
        "files": {name: sha256_file(folder / name) for name in names},
        "file_stamps": {name: file_stamp(folder / name) for name in names},
    }


def changed_manifests(folder: str | os.PathLike, info: Mapping[str, Any]) -> list[str]:
    """The problems of the manifests ``prepare.json`` lists: missing, or content changed.

    A file whose size and mtime are those recorded is taken as unchanged (cheap: one ``stat``);
    any other file is hashed again, so a touched but unchanged file still passes. A content
    change that keeps both the size and the mtime (e.g. an edit followed by ``touch -r``) is not
    seen: the stamps are a cache, not a proof. A ``prepare.json`` without stamps (written by an
    older cltm) gets every file hashed.
    """
    from cltm_sb.io import sha256_file

    folder = Path(folder)
    stamps = info.get("file_stamps") or {}
    problems = []
    where = folder / PREPARE_FILE
    for name, digest in sorted((info.get("files") or {}).items()):
        path = folder / name
        if not path.is_file():
            problems.append(
                f"{path} is missing (listed in {where}); run `cltm prepare` again or restore it"
            )
        elif file_stamp(path) != stamps.get(name) and sha256_file(path) != digest:
            problems.append(
                f"{path} changed after `cltm prepare` (its content no longer matches {where}); "
                "run `cltm prepare` again or restore it"
            )
    return problems


def check_prepared(folder: str | os.PathLike, info: Mapping[str, Any] | None) -> None:
    """Refuse a folder that an unfinished prepare left, or whose manifests changed since.

    Raises a :class:`DataError` that names the marker or the changed files and says what to do.
    A folder of own manifests (no ``prepare.json``, no marker) passes: its hash is of the content.
    """
    folder = Path(folder)
    marker = folder / UNFINISHED_FILE
    if marker.is_file():
        raise DataError(
            f"{marker} exists: a `cltm prepare` into {folder} did not finish (or is still "
            "running), so its manifests are not certified; run `cltm prepare` again with the "
            "same arguments"
        )
    problems = changed_manifests(folder, info) if info is not None else []
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError("; ".join(problems[:3]) + more)


def certified_files(folder: str | os.PathLike) -> set[Path] | None:
    """The manifests ``prepare.json`` certifies (None: no list, e.g. own or hand-made data)."""
    info = read_prepare_info(folder)
    if info is None or not info.get("files"):
        return None
    return {Path(folder) / name for name in info["files"]}


def read_prepare_info(folder: str | os.PathLike) -> dict | None:
    """The ``prepare.json`` of a prepared folder, or None where there is none.

    A file that is not valid JSON raises a ValueError that names it.
    """
    path = Path(folder) / PREPARE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); prepare the data again") from error


def prepared_data_hash(folder: str | os.PathLike) -> str:
    """The data hash of a prepared folder: ``prepare.json``'s, else a hash of its manifests.

    A folder of own manifests (``<locale>/<subset>.csv``, no ``prepare.json``) is hashed by the
    contents of those CSV files, so every run and plan over it agrees on one hash. A prepared
    folder is checked first (:func:`check_prepared`): its hash holds only while its manifests
    are the ones ``prepare.json`` lists, so a plan (and every run, which asks here too) refuses
    a folder left unfinished or edited since.
    """
    from cltm_sb.io import sha256_file, stable_hash

    folder = Path(folder)
    info = read_prepare_info(folder)
    check_prepared(folder, info)
    if info is not None:
        unhashed = ("data_root", "file_stamps")  # where and when, not what
        return str(info.get("data_hash") or stable_hash({k: v for k, v in info.items() if k not in unhashed}))
    csvs = sorted(folder.glob("*/*.csv"))
    return stable_hash({str(p.relative_to(folder)): sha256_file(p) for p in csvs})


#: Draw k >= 1 of a prepared folder lives in ``<prepared>/draw<k>/`` (DESIGN.md §9).
DRAW_PREFIX = "draw"


def draw_folder(data_dir: str | os.PathLike, draw: int) -> Path:
    """Where data draw ``draw`` of a prepared folder lives: the folder itself for draw 0."""
    return Path(data_dir) if int(draw) == 0 else Path(data_dir) / f"{DRAW_PREFIX}{int(draw)}"


def draw_folders(folder: str | os.PathLike) -> list[Path]:
    """The data draws k >= 1 that ``cltm prepare --draws`` wrote into ``folder``, by k."""
    folder = Path(folder)
    found = [
        (int(sub.name[len(DRAW_PREFIX) :]), sub)
        for sub in folder.glob(f"{DRAW_PREFIX}*")
        if sub.name[len(DRAW_PREFIX) :].isdigit() and sub.is_dir()
    ]
    return [sub for _, sub in sorted(found)]


def draw_hashes(data_dir: str | os.PathLike, draws: Iterable[int], data_hash: str) -> dict[int, str]:
    """The draw hash of each of ``draws`` of a prepared folder whose data hash is ``data_hash``.

    Each draw k >= 1 must be a finished, unchanged preparation of the same data set (its
    ``prepare.json`` names draw k and ``data_hash``); the error names the folder and the
    ``cltm prepare --draws`` that makes it.
    """
    data_dir = Path(data_dir)
    out: dict[int, str] = {}
    for draw in sorted({int(d) for d in draws}):
        folder = draw_folder(data_dir, draw)
        if draw == 0:
            out[0] = data_hash
            continue
        info = read_prepare_info(folder) if folder.is_dir() else None
        if info is None or int(info.get("draw", -1)) != draw or info.get("data_hash") != data_hash:
            raise DataError(
                f"{folder}: no data draw {draw} of {data_dir} (no prepare.json of that draw and "
                f"data set there); run `cltm prepare` with the same arguments and --draws {draw + 1}"
            )
        check_prepared(folder, info)
        out[draw] = str(info["draw_hash"])
    return out


def prepared_draw(folder: str | os.PathLike, data_hash: str) -> tuple[int, str]:
    """(draw, draw_hash) of a prepared folder (DESIGN.md §9).

    A draw k >= 1 folder (``<prepared>/draw<k>``) names both in its ``prepare.json``; any other
    folder is draw 0, whose draw hash is its ``data_hash``.
    """
    info = read_prepare_info(folder) or {}
    return int(info.get("draw", 0)), str(info.get("draw_hash") or data_hash)


def data_root_of(data_dir: str | os.PathLike, info: Mapping[str, Any] | None = None) -> Path:
    """The folder ``$data_root`` stands for in the manifests of ``data_dir``.

    ``prepare.json``'s ``data_root`` (relative to ``data_dir`` when relative) for a prepared
    folder; the folder itself for a folder of one's own manifests (no ``prepare.json``).
    ``info`` is the folder's prepare.json when the caller has already read it.
    """
    data_dir = Path(data_dir)
    if info is None:
        info = read_prepare_info(data_dir)
    given = (info or {}).get("data_root")
    if not given:  # own manifests: the folder itself (joining a relative folder to itself doubles it)
        return data_dir.resolve()
    root = Path(given)
    return (root if root.is_absolute() else data_dir / root).resolve()


def no_manifests_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` holds no data (``cltm plan`` and ``cltm validate`` refuse it), or None.

    A folder without ``prepare.json`` must hold ``<locale>/<subset>.csv`` manifests of one's own,
    e.g. not only the ``.prepare.lock`` of a ``cltm prepare`` that was killed before writing.
    """
    folder = Path(folder)
    if (folder / PREPARE_FILE).is_file() or any(folder.glob("*/*.csv")):
        return None
    return (
        f"{folder}: neither {PREPARE_FILE} nor <locale>/<subset>.csv manifests found; run "
        "`cltm prepare` into it (again, if one failed) or give a folder of <locale>/<subset>.csv files"
    )


def find_data_root(manifest: str | os.PathLike) -> Path | None:
    """The ``data_root`` of the prepared folder holding ``manifest`` (its parent or grandparent)."""
    for folder in list(Path(manifest).resolve().parents)[:2]:
        try:
            info = read_prepare_info(folder)
        except ValueError:
            return None
        if info is not None:
            return data_root_of(folder, info)
    return None


def validate_manifest(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None, check_files: bool = True
) -> list[str]:
    """Check a manifest (or a trial list, recognised by its header); return the problems found.

    Each problem names the line and what is wrong. With ``check_files``, ``$data_root`` is taken
    from ``data_root`` or from the ``prepare.json`` of the folder holding the manifest, and every
    audio file must exist. A trial list is checked against the ``test.csv`` beside it.
    """
    return check_file(path, data_root, check_files).problems


@dataclass(frozen=True)
class CheckedFile:
    """A manifest or trial list read once by :func:`check_file`, with the problems of its rows.

    Attributes:
        path: the file.
        kind: ``manifest``, ``trials``, or ``""`` when it could not be read as either.
        rows: its data rows (the header left out) as CSV fields; row ``i`` is on line ``i + 2``.
        problems: one line each, naming the file, the line and what is wrong.
        root: the folder its ``$data_root/`` paths resolve against (None: not known).
    """

    path: Path
    kind: str
    rows: list[list[str]]
    problems: list[str]
    root: Path | None = None


COLUMNS_OF = {"manifest": MANIFEST_COLUMNS, "trials": TRIAL_COLUMNS}


def _read_rows(path: Path) -> list[list[str]]:
    """Every CSV row of ``path``, header included; a file the disk refuses is a DataIOError."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason}); save it as UTF-8 CSV") from error
    except OSError as error:
        raise DataIOError(
            f"{path}: cannot read ({error.strerror or error}); make it a readable file"
        ) from error


def _header_problem(path: Path, header: tuple[str, ...], kind: str | None) -> str:
    kinds = [kind] if kind else list(COLUMNS_OF)
    notes = {"manifest": "manifest; label columns may follow", "trials": "trials"}
    expected = " or ".join(f"{','.join(COLUMNS_OF[k])} ({notes[k]})" for k in kinds)
    missing = [c for c in COLUMNS_OF[kinds[0]] if c not in header] if kind else []
    lacking = f", missing {','.join(missing)}" if missing else ""
    return (
        f"{path}: header is {','.join(header) or '(empty)'}{lacking}; expected {expected}; fix "
        "its first line, or prepare the data again with `cltm prepare`"
    )


def check_file(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    check_files: bool = True,
    *,
    kind: str | None = None,
    test_ids: dict[Path, set[str]] | None = None,
) -> CheckedFile:
    """Read a manifest or a trial list once and check its header and every row.

    ``kind`` (``manifest`` or ``trials``) is what the caller needs the file to be; without it,
    the header decides. ``test_ids`` maps test manifests already read to their IDs, so that a
    trial list is checked against the ``test.csv`` beside it without reading that again.
    Audio files are only checked to exist here (see :mod:`cltm_sb.data.checks` for more).
    """
    path = Path(path)
    if not path.is_file():
        return CheckedFile(path, "", [], [f"{path}: file not found"])
    try:
        rows = _read_rows(path)
    except DataError as error:  # one bad file is one problem; the others are still checked
        return CheckedFile(path, "", [], [str(error)])
    if not rows:
        return CheckedFile(path, "", [], [_header_problem(path, (), kind or "manifest")])
    header = tuple(rows[0])
    # A manifest may carry extra label columns after its own (DESIGN §9, e.g. age_band).
    found = next((k for k, columns in COLUMNS_OF.items() if header[: len(columns)] == columns), "")
    if found == "trials" and header != TRIAL_COLUMNS:
        found = ""
    if not found or (kind and found != kind):
        return CheckedFile(path, "", [], [_header_problem(path, header, kind)])
    if found == "trials":
        return CheckedFile(path, found, rows[1:], _validate_trials(path, rows, test_ids))
    problems: list[str] = []
    root = Path(data_root) if data_root else (find_data_root(path) if check_files else None)
    if check_files and root is None:
        problems.append(f"{path}: no prepare.json beside it and no data root given: audio files not checked")
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path}, line {line}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} fields, expected {len(header)}")
            continue
        rid, duration, wav, spk, gender, locale, subset = row[: len(MANIFEST_COLUMNS)]
        if not rid:
            problems.append(f"{where}: empty ID")
        elif rid in seen:
            problems.append(f"{where}: ID {rid!r} already used on line {seen[rid]}")
        else:
            seen[rid] = line
        try:
            value = float(duration)
            if not math.isfinite(value) or value <= 0:
                raise ValueError
        except ValueError:
            problems.append(
                f"{where}: duration {duration!r} is not a positive number of seconds; write the "
                "clip's length (e.g. 3.25) or drop the row (a clip of no audio trains on nothing)"
            )
        if not wav.startswith(DATA_ROOT_PREFIX):
            problems.append(f"{where}: wav {wav!r} must start with {DATA_ROOT_PREFIX}")
        elif check_files and root is not None and not os.path.isfile(os.path.join(root, wav[len(DATA_ROOT_PREFIX):])):
            # os.path, not pathlib: this runs once per clip of a whole grid's manifests
            problems.append(f"{where}: audio file {root / wav[len(DATA_ROOT_PREFIX):]} not found")
        if not spk:
            problems.append(f"{where}: empty spk_id")
        if gender not in GENDERS:
            problems.append(f"{where}: gender {gender!r} is not one of {', '.join(GENDERS)}")
        if not locale:
            problems.append(f"{where}: empty locale")
        if subset not in SUBSETS:
            problems.append(f"{where}: subset {subset!r} is not one of {', '.join(SUBSETS)}")
    if len(rows) == 1:
        problems.append(f"{path}: no rows")
    return CheckedFile(path, found, rows[1:], problems, root)


def _validate_trials(
    path: Path, rows: list[list[str]], test_ids: dict[Path, set[str]] | None = None
) -> list[str]:
    problems: list[str] = []
    test_csv = path.with_name("test.csv")
    ids: set[str] | None = (test_ids or {}).get(test_csv)
    if ids is None and test_csv.is_file():
        ids = {row[0] for row in _read_rows(test_csv)[1:] if row}
    elif ids is None:
        problems.append(f"{path}: no test.csv beside it: trial IDs not checked")
    seen: set[tuple[str, str]] = set()
    labels = {"0": 0, "1": 0}
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path}, line {line}"
        if len(row) != 3:
            problems.append(f"{where}: {len(row)} fields, expected 3")
            continue
        enrol, test, label = row
        if label not in labels:
            problems.append(f"{where}: label {label!r} must be 0 or 1")
        else:
            labels[label] += 1
        if enrol == test:
            problems.append(f"{where}: enrol and test are the same utterance {enrol!r}")
        if ids is not None:
            for uid in (enrol, test):
                if uid not in ids:
                    problems.append(
                        f"{where}: {uid!r} is not in {test_csv}; the trial list and the test "
                        "manifest must come from one `cltm prepare` (prepare again, or drop the trial)"
                    )
        key = (min(enrol, test), max(enrol, test))
        if key in seen:
            problems.append(f"{where}: pair {enrol},{test} listed twice")
        seen.add(key)
    if not labels["0"] or not labels["1"]:
        problems.append(f"{path}: needs both positive (1) and negative (0) trials, found {labels}")
    return problems
