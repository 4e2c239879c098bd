"""The checks of manifests and trial lists made before any training (`cltm plan`, `cltm validate`).

Bad data should fail in seconds at plan time, not after a grid has trained: a missing column, a
clip of zero seconds, a corrupt, empty or 8 kHz audio file, a trial naming an utterance the test
manifest lacks, a speaker both trained on and tested on. Every check is cheap, so that a plan of
44 languages is checked in seconds: one pass over each CSV, audio *headers* only (no decoding) for
every test clip and a fixed sample of each training manifest (every clip with ``full``), and set
operations for trial IDs and speakers. Each problem is one line naming the file, the row and what
is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cltm_sb.data import DataError
from cltm_sb.data.audio import cached_audio_problem
from cltm_sb.data.manifests import (
    DATA_ROOT_PREFIX,
    MANIFEST_COLUMNS,
    PREPARE_FILE,
    SUBSETS,
    TRIALS_FILE,
    CheckedFile,
    check_file,
    check_prepared,
    data_root_of,
    draw_folders,
    no_manifests_problem,
    read_prepare_info,
)

# Training clips per manifest whose audio header is read (spread over the file); test clips are
# all read, since one bad test clip fails a run only after its training.
AUDIO_SAMPLE = 20
# Header reads wait on the disk (libsndfile releases the GIL): a few threads hide the latency of
# a network file system.
PROBE_THREADS = 8
PROBE_CHUNK = 256  # clips per thread task, at least
TRAINING_SUBSETS = tuple(s for s in SUBSETS if s != "test")


class DataCheckError(DataError):
    """The data fails the checks made before training; ``problems`` holds every one of them."""

    def __init__(self, problems: Sequence[str], listing: str) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        super().__init__(self.problems[0] + (f" (and {more} more: {listing})" if more else ""))


@dataclass(frozen=True)
class _Row:
    """A well-formed manifest row and where it is."""

    path: Path
    line: int
    ID: str
    wav: str
    spk_id: str
    locale: str
    subset: str

    @property
    def where(self) -> str:
        return f"{self.path}, line {self.line} (ID {self.ID})"


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, Path | None]]:
    """Each file to check with the audio root it implies (None: its own ``prepare.json`` says).

    A folder stands for its ``<locale>/*.csv`` files and those of its data draws
    (``draw<k>/<locale>/*.csv``, as ``cltm plan --draws`` reads them); a folder without
    ``prepare.json`` is own data, whose ``$data_root/`` is the folder itself (as
    :func:`cltm_sb.grid.plan.read_prepared` plans it).
    """
    out: list[tuple[Path, Path | None]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            out.append((path, None))
            continue
        root = None if (path / PREPARE_FILE).is_file() else data_root_of(path, info={})
        for folder in [path, *draw_folders(path)]:
            own = None if (folder / PREPARE_FILE).is_file() else root
            out.extend((csv, own) for csv in sorted(folder.glob("*/*.csv")))
    return out


def _folder_problems(paths: Iterable[str | os.PathLike]) -> list[str]:
    """What ``cltm plan`` refuses of a data folder as a whole: no manifests at all (e.g. only
    the lock of a failed prepare), a prepare left unfinished, manifests edited since."""
    problems: list[str] = []
    for path in map(Path, paths):
        if not path.is_dir():
            continue
        empty = no_manifests_problem(path)
        if empty:
            problems.append(empty)
            continue
        for folder in [path, *draw_folders(path)]:
            try:
                check_prepared(folder, read_prepare_info(folder))
            except ValueError as error:  # DataError, or a prepare.json that is not JSON
                problems.append(str(error))
    return problems


def check_data(
    paths: Iterable[str | os.PathLike],
    data_root: str | os.PathLike | None = None,
    *,
    full: bool = False,
) -> list[str]:
    """Every problem of the given manifests and trial lists (folders stand for their CSVs).

    Args:
        paths: manifests, trial lists (``trials.csv``) or prepared folders.
        data_root: the folder ``$data_root/`` stands for; default: each file's ``prepare.json``.
        full: read the audio header of every clip, not only the test clips and a sample.

    Returns:
        One line per problem: header, rows (durations > 0, ...), audio (16 kHz mono, readable,
        not empty), trial IDs in the test manifest beside, speakers in both a training subset
        and a test set (or in both a and b of one locale of one draw), and of a folder: no
        manifests, a prepare left unfinished or manifests edited since (as ``cltm plan``).
    """
    paths = list(paths)
    files = expand_paths(paths)
    # Test manifests first, so that each trial list is checked against IDs already read.
    files.sort(key=lambda item: item[0].name == TRIALS_FILE)
    test_ids: dict[Path, set[str]] = {}
    checked: list[CheckedFile] = []
    for path, implied_root in files:
        kind = _expected_kind(path)
        root = data_root if data_root is not None else implied_root
        result = check_file(path, root, check_files=True, kind=kind, test_ids=test_ids)
        if result.kind == "manifest":
            test_ids[path] = {fields[0] for fields in result.rows if fields}
        checked.append(result)
    rows = [row for result in checked for row in _rows(result)]
    roots = {result.path: result.root for result in checked}
    problems = _folder_problems(paths)
    problems += [p for result in checked for p in result.problems]
    problems += _audio_problems(rows, roots, full)
    problems += _speaker_problems(rows)
    return problems


def _expected_kind(path: Path) -> str | None:
    """What a file must be by its name (``trials.csv``, ``a.csv``...); None: its header says."""
    if path.name == TRIALS_FILE:
        return "trials"
    return "manifest" if path.suffix == ".csv" and path.stem in SUBSETS else None


def require_valid_data(
    paths: Iterable[str | os.PathLike],
    data_root: str | os.PathLike | None,
    listing: str,
    *,
    full: bool = False,
) -> None:
    """Raise :class:`DataCheckError` (its message: the first problem, the count and ``listing``,
    e.g. the command that lists them all) if :func:`check_data` finds any problem."""
    problems = check_data(paths, data_root, full=full)
    if problems:
        raise DataCheckError(problems, listing)


def _rows(result: CheckedFile) -> list[_Row]:
    """The well-formed rows of a manifest (malformed ones are already among its problems)."""
    if result.kind != "manifest":
        return []
    return [
        _Row(result.path, index + 2, fields[0], fields[2], fields[3], fields[5], fields[6])
        for index, fields in enumerate(result.rows)
        if len(fields) >= len(MANIFEST_COLUMNS)  # other rows are among its problems already
    ]


def _audio_to_probe(rows: Sequence[_Row], full: bool) -> list[_Row]:
    """Every test row, and of each file's other rows all (``full``) or an even spread."""
    by_file: dict[Path, list[_Row]] = {}
    chosen: list[_Row] = []
    for row in rows:
        if row.wav.startswith(DATA_ROOT_PREFIX):
            if row.subset == "test" or full:
                chosen.append(row)
            else:
                by_file.setdefault(row.path, []).append(row)
    for training in by_file.values():
        step = max(1, len(training) // AUDIO_SAMPLE)  # deterministic: same rows every time
        chosen.extend(training[::step][:AUDIO_SAMPLE])
    return chosen


def _probe_chunk(paths: Sequence[str]) -> list[str | None]:
    return [cached_audio_problem(path) for path in paths]


def _probe(paths: Sequence[str]) -> list[str | None]:
    """:func:`cached_audio_problem` of each path, in order, over a few threads."""
    # Chunks by hand: a thread pool ignores map's chunksize, and one future per clip costs more
    # than the header read itself.
    size = max(PROBE_CHUNK, -(-len(paths) // PROBE_THREADS))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    if len(chunks) < 2:
        return _probe_chunk(paths)
    with ThreadPoolExecutor(min(PROBE_THREADS, len(chunks))) as pool:
        return [problem for chunk in pool.map(_probe_chunk, chunks) for problem in chunk]


def _audio_problems(rows: Sequence[_Row], roots: dict[Path, Path | None], full: bool) -> list[str]:
    # Plain strings: pathlib's joins cost as much as the header reads at 10^5 clips.
    targets = [
        (row, os.path.join(roots[row.path], row.wav[len(DATA_ROOT_PREFIX) :]))
        for row in _audio_to_probe(rows, full)
        if roots[row.path] is not None
    ]
    found = _probe([audio for _, audio in targets])
    return [
        f"{row.where}: audio {audio} {problem}; prepare the data again (`cltm prepare` rebuilds "
        "the 16 kHz cache) or drop the row"
        for (row, audio), problem in zip(targets, found, strict=True)
        if problem is not None
    ]


def _speaker_problems(rows: Sequence[_Row]) -> list[str]:
    """A speaker trained on and tested on, or in both training subsets of one locale of one draw.

    The test sets are the same in every draw, so a test speaker is a leak in any draw's training
    subsets; a and b are drawn independently per draw, so only one draw's a and b must be disjoint.
    """
    tested: dict[str, _Row] = {}
    # (draw folder, speaker, locale, subset) -> first row
    trained: dict[tuple[Path, str, str, str], _Row] = {}
    draws: dict[Path, Path] = {}  # manifest -> its draw folder (the folder of its <locale>/)
    for row in rows:
        if not row.spk_id:
            continue
        if row.subset == "test":
            tested.setdefault(row.spk_id, row)
        elif row.subset in TRAINING_SUBSETS:
            if row.path not in draws:
                draws[row.path] = row.path.resolve().parent.parent
            trained.setdefault((draws[row.path], row.spk_id, row.locale, row.subset), row)
    problems = []
    for (draw, speaker, locale, subset), row in trained.items():
        test_row = tested.get(speaker)
        if test_row is not None:
            problems.append(
                f"{row.where}: speaker {speaker!r} is also in the test set at {test_row.where}; "
                "a model trained on a test speaker scores too high: remove the speaker from one "
                "of the two files, or prepare the data again"
            )
        other = trained.get((draw, speaker, locale, "b")) if subset == "a" else None
        if other is not None:
            problems.append(
                f"{row.where}: speaker {speaker!r} is in both training subsets a and b of "
                f"{locale!r} (also at {other.where}); a and b must be speaker-disjoint: remove the "
                "speaker from one of them, or prepare the data again"
            )
    return problems
