"""The recipe's data pipeline: manifests into SpeechBrain ``DynamicItemDataset`` objects.

Manifests are SpeechBrain CSV files (``ID,duration,wav,spk_id,gender,locale,subset``) read with
SpeechBrain's own ``load_data_csv`` (``$data_root`` in the ``wav`` column is replaced as
``DynamicItemDataset.from_csv(replacements=...)`` does); a train set may be the union of several
manifests. Audio is read with ``speechbrain.dataio.dataio.read_audio`` and normalised once here
(:func:`cltm_sb.data.audio.normalize_waveform`); the encoders never normalise again.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cltm_sb.data.audio import normalize_waveform
from cltm_sb.data.manifests import MANIFEST_COLUMNS, prepared_data_hash
from cltm_sb.recipe import RecipeError

if TYPE_CHECKING:
    from cltm_sb.tasks import Task


def read_csv_rows(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file (trials); missing columns raise and name the file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise RecipeError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        return list(reader)


def _check_columns(path: Path) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise RecipeError(f"{path}: missing column(s) {missing}; found {header}")


def label_origin(task: Task, label_key: str) -> str:
    """Where a label column came from, for an error: the task's declaration or the hparams."""
    if task.label_key == label_key:
        return f"task {task.name!r} (label.column in {task.source or 'its declaration'})"
    return "the hparams' label_key"


def check_label_column(
    paths: Sequence[str | os.PathLike],
    label_key: str,
    declared_by: str = "label_key",
    classes: Sequence[str] | None = None,
) -> None:
    """Each manifest has the label column and, with ``classes``, no other label (before anything
    trains); else one line naming the manifest, the column and where it was declared
    (``declared_by``)."""
    for path in map(Path, paths):
        if not path.is_file():
            raise RecipeError(f"{path}: manifest not found")
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            if label_key not in header:
                raise RecipeError(
                    f"{path}: no column {label_key!r}, the label column of {declared_by}; found {header}: "
                    f"add the column to the manifests (`cltm prepare --task` writes it) or correct {declared_by}"
                )
            if classes is None:
                continue
            column = header.index(label_key)
            unknown = sorted({row[column] for row in reader if len(row) > column} - set(map(str, classes)))
        if unknown:
            raise RecipeError(
                f"{path}: {label_key} value(s) {', '.join(map(repr, unknown[:5]))} are not among the classes "
                f"{list(classes)} of {declared_by}; list every value of the column as a class (or correct them)"
            )


def read_manifests(
    paths: str | os.PathLike | Sequence[str | os.PathLike], data_root: str | os.PathLike | None = None
) -> dict[str, dict[str, Any]]:
    """Union of manifests keyed by ID (SpeechBrain's ``load_data_csv``, ``$data_root`` replaced).

    ``paths``: one manifest or a list of them. An ID in two manifests raises and names both; a
    ``$data_root`` path without a ``data_root`` raises and says where to find one. ``duration``
    is a float, as SpeechBrain reads it.
    """
    from speechbrain.dataio.dataio import load_data_csv

    if isinstance(paths, (str, os.PathLike)):  # else a path is read as its characters ("/: not found")
        paths = [paths]
    replacements = {} if data_root is None else {"data_root": str(data_root)}
    data: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise RecipeError(f"{path}: manifest not found")
        _check_columns(path)
        try:
            rows = load_data_csv(path, replacements)
        except KeyError as error:  # SpeechBrain: "... requires replacements which were not supplied"
            raise RecipeError(
                f"{path}: {str(error.args[0]).rstrip('.')}; pass data_root=... (the prepared folder's prepare.json has it)"
            ) from None
        except ValueError as error:  # SpeechBrain: "Duplicate id: X"
            raise RecipeError(f"{path}: {error}") from None
        for uid, row in rows.items():
            if uid in data:
                raise RecipeError(f"utterance {uid} appears in both {origin[uid]} and {path}")
            data[uid], origin[uid] = row, str(path)
    if not data:
        raise RecipeError(f"no utterances in {[str(p) for p in paths]}")
    return data


def require_files(paths: Sequence[str | os.PathLike]) -> None:
    """Each path is a file; else one line naming the first that is not.

    Run before :func:`data_hash_of`: a mistyped path's folder would be hashed as a data set of its
    own ("the manifests come from two data sets"; for ``/x.csv``, every CSV one level below ``/``).
    """
    for path in paths:
        if not Path(path).is_file():
            raise RecipeError(f"{path}: file not found; train_csv, test_csv and trials_csv name files of a prepared folder")


def data_hash_of(manifests: Sequence[str | os.PathLike]) -> str:
    """The data hash of the prepared folder holding the manifests (``<prepared>/<locale>/a.csv``).

    The same value the grid puts in its plan: ``prepare.json``'s hash, else a hash of the
    folder's manifests. Every folder the manifests come from is checked, and all must hold one
    data set (a draw folder shares its data set's hash): a record names one data hash, so a test
    set taken from another prepared folder would pass for that hash's own.
    """
    hashes: dict[Path, str] = {}  # folder -> its data hash, in the order the manifests name them
    for manifest in manifests:
        folder = Path(manifest).resolve().parent.parent
        if folder not in hashes:
            hashes[folder] = prepared_data_hash(folder)
    (folder, digest), *others = hashes.items()
    for other, other_digest in others:
        if other_digest != digest:
            raise RecipeError(
                f"the manifests come from two data sets, {folder} (data_hash {digest}) and {other} "
                f"(data_hash {other_digest}); a run's record names one: take train_csv, test_csv "
                "and trials_csv from one prepared folder"
            )
    return digest


def load_audio(path: str, sample_rate: int = 16000) -> torch.Tensor:
    """Read a WAV/FLAC file with SpeechBrain's ``read_audio`` (downmixed to mono); normalised."""
    from speechbrain.dataio.dataio import read_audio, read_audio_info

    if not os.path.isfile(path):  # the reader would say only "System error"
        raise RecipeError(
            f"audio file {path} not found; check data_root (it replaces $data_root in the manifests' "
            "wav column; default: the prepared folder's prepare.json)"
        )
    try:
        rate = read_audio_info(path).sample_rate
        wav = read_audio(path)
    except Exception as error:
        raise RecipeError(f"cannot read audio {path}: {error}") from error
    if rate != sample_rate:
        raise RecipeError(f"{path}: sample rate {rate}, expected {sample_rate}; run `cltm prepare`")
    if wav.dim() == 2:  # (samples, channels)
        wav = wav.mean(dim=1)
    return normalize_waveform(wav)


def make_dataset(
    rows: Mapping[str, Mapping[str, Any]],
    label_key: str | None = None,
    label_classes: Sequence[str] | None = None,
    sample_rate: int = 16000,
):
    """A ``DynamicItemDataset`` with outputs ``id``, ``sig`` and (with a label key) ``label``.

    ``rows`` come from :func:`read_manifests` (paths already resolved). The label map is fixed
    (``label_classes``, e.g. sorted), never numbered by first appearance, so that a label has the
    same index in every language.
    """
    import speechbrain as sb

    dataset = sb.dataio.dataset.DynamicItemDataset({uid: dict(row) for uid, row in rows.items()})

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav: str) -> torch.Tensor:
        return load_audio(wav, sample_rate)

    dataset.add_dynamic_item(audio_pipeline)
    keys = ["id", "sig"]
    if label_key is not None:
        if not label_classes:  # else every value would be "not in the label map []"
            raise RecipeError(
                f"make_dataset: label_key {label_key!r} needs label_classes, the fixed list of its "
                "values (e.g. sorted), so that a label has the same index in every language"
            )
        index = {name: i for i, name in enumerate(label_classes)}
        lacking = next((uid for uid, row in rows.items() if label_key not in row), None)
        if lacking is not None:  # a bare KeyError would name neither the column's role nor the row
            raise RecipeError(f"utterance {lacking}: no label column {label_key!r} (label_key) in its manifest")
        unknown = sorted({str(row[label_key]) for row in rows.values()} - set(index))
        if unknown:
            raise RecipeError(
                f"{label_key} value(s) {unknown[:5]} are not in the label map {list(index)[:10]}"
            )

        @sb.utils.data_pipeline.takes(label_key)
        @sb.utils.data_pipeline.provides("label")
        def label_pipeline(value: str) -> int:
            return index[value]

        dataset.add_dynamic_item(label_pipeline)
        keys.append("label")
    dataset.set_output_keys(keys)
    return dataset
