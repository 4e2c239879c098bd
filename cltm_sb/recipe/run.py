"""Run one recipe (train, evaluate per locale, write the result record): the grid's entry point.

A task YAML (``hparams/gender.yaml`` or ``hparams/speaker.yaml``) names an encoder and a preset::

    encoder: mhubert147   # hparams/encoders/<name>.yaml, or a path to a YAML file
    preset: paper         # hparams/presets/<name>.yaml, or a path

:func:`compose_hparams` appends those two files to the task YAML (their top-level keys must be
disjoint), plus the preset's per-recipe part if it has one (``toy.speaker.yaml``), and the result
is loaded with ``load_hyperpyyaml`` and the overrides, so every key of these files can be
overridden the same way (``--lr=1e-4``, ``--encoder=tiny_hubert``).
A YAML without ``encoder``/``preset`` keys is loaded as it is.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cltm_sb
from cltm_sb.data.audio import normalize_waveform
from cltm_sb.data.manifests import (
    MANIFEST_COLUMNS,
    TRIAL_COLUMNS,
    find_data_root,
    prepared_data_hash,
)
from cltm_sb.environment import torchaudio_problem
from cltm_sb.io import atomic_write, atomic_write_text
from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.checks import KEEP_CHECKPOINTS, PRECISIONS, check_hparams
from cltm_sb.recipe.encoder_source import check_checkpoint_sizes, check_encoder_source
from cltm_sb.recipe.encoders import HFSSLEncoder, encoder_identity
from cltm_sb.recipe.overrides import parse_override_text
from cltm_sb.recipe.run_files import (
    CHECKPOINT_DIR,
    HPARAMS_FILE,
    LOG_FILE,
    RECORD_FILE,
    RUN_MARKERS,
    embeddings_file,
    scores_file,
)
from cltm_sb.results import PER_RUN_KEYS, Evaluation, RunRecord, config_hash, write_record
from cltm_sb.tasks import get_task

logger = logging.getLogger(__name__)

LIST_KEYS = ("train_csv", "test_csv", "trials_csv")
#: Marks where each file starts in the composed YAML text (:func:`key_origins` reads it).
FROM_MARK = "# ---- from "
#: The ``encoder_model`` node of an encoder that loads a HuggingFace checkpoint (checked before a run).
HF_ENCODER_TAG = f"!new:{HFSSLEncoder.__module__}.{HFSSLEncoder.__qualname__}"


# ----------------------------------------------------------------------------- YAML composition
def hparams_dir() -> Path:
    """Folder of the packaged YAML files (``cltm_sb/hparams``)."""
    return Path(__file__).resolve().parent.parent / "hparams"


def available(kind: str) -> list[str]:
    """Names of the packaged encoders (``kind="encoders"``) or presets (``"presets"``)."""
    return sorted(p.stem for p in (hparams_dir() / kind).glob("*.yaml") if "." not in p.stem)


def recipe_part(component: Path, hparams_file: str | os.PathLike) -> Path | None:
    """The optional per-recipe part of a preset: ``<preset>.<recipe>.yaml`` beside it.

    A preset holds what every recipe shares; what one recipe needs on its own (the toy preset's
    epochs and batch size differ between gender and speaker ID) lives in the part named after
    the recipe's YAML, e.g. ``toy.speaker.yaml``, composed whenever ``toy`` is.
    """
    part = component.with_name(f"{component.stem}.{Path(hparams_file).stem}{component.suffix}")
    return part if part.is_file() else None


def resolve_component(kind: str, value: str | os.PathLike) -> Path:
    """Path of an encoder or preset YAML given by packaged name or by path."""
    value = str(value)
    path = Path(value).expanduser()
    if value.endswith((".yaml", ".yml")) or os.sep in value:
        if not path.is_file():
            raise RecipeError(f"{kind[:-1]} YAML {value!r} not found")
        return path
    packaged = hparams_dir() / kind / f"{value}.yaml"
    if not packaged.is_file():
        raise RecipeError(
            f"unknown {kind[:-1]} {value!r}; valid: {', '.join(available(kind))}, "
            "or a path to a YAML file"
        )
    return packaged


def _yaml():
    from ruamel.yaml import YAML

    return YAML(typ="rt")


def _top_level(text: str) -> dict:
    return dict(_yaml().load(text) or {})


def _file_top_level(path: str | os.PathLike, text: str) -> dict:
    """The top-level keys of one YAML file; a syntax error names the file and the line.

    Each file is read on its own before composition: in the composed text the line of an error
    would point into the concatenation, not into the user's file.
    """
    from ruamel.yaml import YAMLError

    try:
        data = _yaml().load(text) or {}
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise RecipeError(f"{path}{line}: YAML syntax error ({problem}); fix the file") from None
    if not isinstance(data, Mapping):
        raise RecipeError(f"{path}: expected a mapping of keys (key: value lines), got a {type(data).__name__}")
    return dict(data)


def compose_hparams(hparams_file: str | os.PathLike, overrides: Mapping[str, Any]) -> str:
    """The task YAML followed by its encoder and preset YAML (chosen in YAML or in overrides).

    A preset's per-recipe part (:func:`recipe_part`) follows the preset.
    """
    hparams_file = Path(hparams_file)
    text = hparams_file.read_text(encoding="utf-8")
    top = _file_top_level(hparams_file, text)
    if "encoder" not in top and "preset" not in top:
        return text
    parts = [(str(hparams_file), text, set(top))]
    for key, kind in (("encoder", "encoders"), ("preset", "presets")):
        value = overrides.get(key, top.get(key))
        if value is None:
            raise RecipeError(f"{hparams_file}: set {key!r} (valid: {', '.join(available(kind))})")
        path = resolve_component(kind, value)
        for component in (path, recipe_part(path, hparams_file) if kind == "presets" else None):
            if component is not None:
                part = component.read_text(encoding="utf-8")
                parts.append((str(component), part, set(_file_top_level(component, part))))
    seen: dict[str, str] = {}
    for name, _, keys in parts:
        for key in keys:
            if key in seen:
                raise RecipeError(f"key {key!r} is defined in both {seen[key]} and {name}")
            seen[key] = name
    return "\n".join(f"{FROM_MARK}{name}\n{part}" for name, part, _ in parts)


def _plain_yaml(node: Any) -> Any:
    """ruamel round-trip nodes to plain data; tagged nodes become ``{"tag": ..., "value": ...}``."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, Mapping):
        value: Any = {str(k): _plain_yaml(v) for k, v in node.items()}
    elif isinstance(node, (list, tuple)):
        value = [_plain_yaml(v) for v in node]
    elif isinstance(node, bool) or node is None:
        value = node if node is None else bool(node)
    elif isinstance(node, (int, float, str)):
        value = _scalar(node)
    else:  # a tagged scalar such as !PLACEHOLDER
        value = str(getattr(node, "value", node))
    if tag and tag.startswith("!") and not tag.startswith("!!"):
        return {"tag": tag, "value": value}
    return value


def _scalar(node: int | float | str) -> int | float | str:
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return str(node)


def resolve_plain(text: str, overrides: Mapping[str, Any]) -> dict:
    """The configuration after overrides and ``!ref`` resolution, as plain data (no objects).

    Unknown override keys raise and list the valid ones.
    """
    from hyperpyyaml import resolve_references

    top = _top_level(text)
    keys = set(top)
    unknown = sorted(set(overrides) - keys)
    if unknown:
        raise RecipeError(
            f"unknown hparams override(s) {unknown}; valid keys: {', '.join(sorted(keys))}"
        )
    # hyperpyyaml would say "must be replaced", and only for a placeholder something refers to.
    unset = sorted(
        key for key, node in top.items()
        if getattr(getattr(node, "tag", None), "value", None) == "!PLACEHOLDER" and key not in overrides
    )
    if unset:
        raise RecipeError(f"{', '.join(unset)}: no value (!PLACEHOLDER in the YAML); give each as an override key=value")
    resolved = resolve_references(text, dict(overrides)).getvalue()
    return _plain_yaml(_yaml().load(resolved))


def key_origins(text: str, default: str | os.PathLike) -> dict[str, str]:
    """The file each top-level key of a composed text comes from (``default`` before any mark)."""
    data = _yaml().load(text) or {}
    marks = [
        (number, line[len(FROM_MARK):])
        for number, line in enumerate(text.splitlines())
        if line.startswith(FROM_MARK)
    ]
    return {
        str(key): next((name for start, name in reversed(marks) if start <= data.lc.key(key)[0]), str(default))
        for key in data
    }


# ------------------------------------------------------------------------------------- data
def read_csv_rows(path: str | os.PathLike, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file; missing columns raise and name the file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: manifest not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise RecipeError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        return list(reader)


def read_manifests(paths: Sequence[str | os.PathLike]) -> dict[str, dict[str, str]]:
    """Union of manifests keyed by ID; an ID in two manifests raises and names both."""
    data: dict[str, dict[str, str]] = {}
    origin: dict[str, str] = {}
    for path in paths:
        for row in read_csv_rows(path, MANIFEST_COLUMNS):
            uid = row["ID"]
            if uid in data:
                raise RecipeError(f"utterance {uid} appears in both {origin[uid]} and {path}")
            data[uid], origin[uid] = row, str(path)
    if not data:
        raise RecipeError(f"no utterances in {[str(p) for p in paths]}")
    return data


def data_hash_of(manifests: Sequence[str | os.PathLike]) -> str:
    """The data hash of the prepared folder holding the manifests (``<prepared>/<locale>/a.csv``).

    The same value the grid puts in its plan: ``prepare.json``'s hash, else a hash of the
    folder's manifests.
    """
    return prepared_data_hash(Path(manifests[0]).resolve().parent.parent)


def load_audio(path: str, sample_rate: int = 16000) -> torch.Tensor:
    """Read a WAV/FLAC file (mono, downmixed if needed) at ``sample_rate``; normalised."""
    import soundfile

    try:
        wav, sr = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as error:
        raise RecipeError(f"cannot read audio {path}: {error}") from error
    if sr != sample_rate:
        raise RecipeError(f"{path}: sample rate {sr}, expected {sample_rate}; run `cltm prepare`")
    return normalize_waveform(torch.from_numpy(wav.mean(axis=1)))


def make_dataset(
    rows: Mapping[str, Mapping[str, str]],
    data_root: str | None,
    label_key: str | None = None,
    label_classes: Sequence[str] | None = None,
    sample_rate: int = 16000,
):
    """A ``DynamicItemDataset`` with outputs ``id``, ``sig`` and (with a label key) ``label``."""
    import speechbrain as sb

    data = {}
    for uid, row in rows.items():
        wav = row["wav"]
        if "$data_root" in wav:
            if data_root is None:
                raise RecipeError(
                    f"utterance {uid}: wav {wav!r} uses $data_root; pass data_root=... "
                    "(the prepared folder's prepare.json has it)"
                )
            wav = wav.replace("$data_root", str(data_root))
        data[uid] = {**row, "wav": wav, "duration": float(row["duration"])}
    dataset = sb.dataio.dataset.DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav: str) -> torch.Tensor:
        return load_audio(wav, sample_rate)

    dataset.add_dynamic_item(audio_pipeline)
    keys = ["id", "sig"]
    if label_key is not None:
        index = {name: i for i, name in enumerate(label_classes or [])}
        unknown = sorted({row[label_key] for row in data.values()} - set(index))
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


# ------------------------------------------------------------------------------------ helpers
def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    return [str(v) for v in value]


def _choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise RecipeError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` becomes bf16/fp16 on CUDA (where supported) and fp32 elsewhere."""
    _choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def _train_loader_kwargs(hp: Mapping[str, Any], dataset, seed: int) -> dict:
    """Plain shuffled batches, or duration buckets with ``dynamic_batching``."""
    kwargs: dict[str, Any] = {"num_workers": int(hp.get("num_workers", 0))}
    if hp.get("dynamic_batching", False):
        from speechbrain.dataio.sampler import DynamicBatchSampler

        kwargs["batch_sampler"] = DynamicBatchSampler(
            dataset,
            max_batch_length=float(hp["max_batch_seconds"]),
            num_buckets=int(hp["num_buckets"]),
            length_func=lambda x: x["duration"],
            shuffle=True,
            batch_ordering="random",
            seed=seed,
        )
    else:
        kwargs.update(batch_size=int(hp["batch_size"]), shuffle=True)
    return kwargs


def encoder_identity_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder identity of a configuration, the same at plan time and at run time.

    ``config`` is the plain resolved configuration (plan time), where ``encoder_source`` may
    still be an ``!apply:`` node (the tiny HuBERT is built by one), or the loaded hparams (run
    time), where it is the folder or hub id itself.
    """
    source = _source_value(config.get("encoder_source"))
    return encoder_identity(source, config.get("encoder_revision"), config.get("encoder_save_path"))


def _source_value(source: Any) -> Any:
    """An encoder source; one that ``!apply:`` makes (the tiny HuBERT) evaluated as the run will."""
    if isinstance(source, Mapping) and str(source.get("tag", "")).startswith("!apply:"):
        return _applied(source)
    return source


def _applied(node: Mapping[str, Any]) -> Any:
    """Evaluate a plain ``{"tag": "!apply:f", "value": args}`` node as hyperpyyaml does at run time."""
    import json

    from hyperpyyaml import load_hyperpyyaml

    return load_hyperpyyaml(f"value: {node['tag']} {json.dumps(node['value'])}\n")["value"]


def _encoder_info(hp: Mapping[str, Any], encoder: torch.nn.Module, identity: Mapping[str, Any]) -> dict:
    """The record's ``encoder``: name, source and the identity that entered the config hash."""
    source = str(hp.get("encoder_source", type(encoder).__name__))
    info: dict[str, Any] = {"name": str(hp.get("encoder", "")), "source": source, **identity}
    model = getattr(encoder, "model", None)
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    if commit:  # what transformers says it loaded (a hub checkpoint)
        info["loaded_commit"] = commit
    return info


class _RunLog:
    """Copies log messages of the run into ``<output_folder>/log.txt`` while it runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def __enter__(self) -> _RunLog:
        logging.getLogger().addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


# --------------------------------------------------------------------------------- the runner
def _compose(
    task: str, overrides: Mapping[str, Any] | None, hparams_file: str | os.PathLike | None
) -> tuple[Any, dict, str, Path]:
    """The task, the overrides (manifest keys as lists), the composed YAML text and the task YAML."""
    spec = get_task(task)
    overrides = dict(overrides or {})
    for key in LIST_KEYS:
        if key in overrides:
            overrides[key] = _as_list(overrides[key])
    hparams_file = Path(hparams_file) if hparams_file else hparams_dir() / f"{spec.recipe}.yaml"
    return spec, overrides, compose_hparams(hparams_file, overrides), hparams_file


def _stand_ins(text: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Values for the per-run keys the caller left unset (manifests, seed, output folder, ...)."""
    return {
        key: (["per-run-stand-in"] if key in LIST_KEYS else "per-run-stand-in")
        for key in PER_RUN_KEYS & set(_top_level(text))
        if key not in overrides and not key.startswith("__")
    }


def _check_config(
    config: Mapping[str, Any],
    text: str,
    overrides: Mapping[str, Any],
    hparams_file: Path,
    *,
    plan_time: bool,
    skip: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Every hparam value against its rule, then the encoder: before any model loads or trains."""
    origins = key_origins(text, hparams_file)

    def origin(key: str) -> str:
        return "given as an override" if key in overrides else f"set in {origins.get(key, hparams_file)}"

    defaults = _plain_yaml(_yaml().load(text) or {})
    check_hparams({k: v for k, v in config.items() if k not in skip}, defaults, origin)
    _check_encoder(config, origin, plan_time=plan_time)


def _check_encoder(config: Mapping[str, Any], origin: Callable[[str], str], *, plan_time: bool) -> None:
    """A HuggingFace encoder's checkpoint is there to load and fits encoder_dim and embed_layers.

    The arguments are those the YAML gives the encoder (``source``, ``revision``, ``save_path``),
    whatever its keys are called; an encoder trained from scratch (ECAPA) has none to check.
    """
    for node in config.values():
        if not (isinstance(node, Mapping) and node.get("tag") == HF_ENCODER_TAG):
            continue
        args = node.get("value") if isinstance(node.get("value"), Mapping) else {}
        source = _source_value(args.get("source"))
        if source is None:
            continue  # given positionally: the load itself will say what is wrong
        config_json = check_encoder_source(
            source, args.get("revision"), args.get("save_path"), need_cached=plan_time
        )
        if config_json is not None:  # None: a hub id the run will download
            check_checkpoint_sizes(config_json, config, origin)


def check_config(
    task: str, overrides: Mapping[str, Any] | None = None, hparams_file: str | Path | None = None
) -> None:
    """Refuse a configuration that cannot train, before any training: what ``cltm plan`` calls.

    The composed YAML is resolved without loading any model; every hparam value is checked
    against :data:`cltm_sb.recipe.checks.HPARAM_RULES`, then the encoder's checkpoint (a local
    folder that loads, or a hub id in the local cache) and ``embed_layers`` against its layers.
    Per-run keys the caller left unset get stand-ins and are not checked. Raises
    :class:`RecipeError` (a ValueError) naming the key or file and what to do.
    """
    _, overrides, text, path = _compose(task, overrides, hparams_file)
    stand_ins = _stand_ins(text, overrides)
    config = resolve_plain(text, {**stand_ins, **overrides})
    _check_config(config, text, overrides, path, plan_time=True, skip=set(stand_ins))


def config_hash_for(
    task: str, overrides: Mapping[str, Any] | None = None, hparams_file: str | Path | None = None
) -> str:
    """The ``config_hash`` that :func:`run_recipe` will record for these overrides.

    Computed without data or training: per-run keys the caller left unset (manifests, seed,
    output folder, ...) get stand-in values, which the hash ignores anyway. The encoder's identity
    (:func:`encoder_identity_of`) is part of it: a local folder's weights are hashed (once per
    process), a hub id is looked up in the local cache (nothing is downloaded), and a source made
    by ``!apply:`` is evaluated as the run will (the tiny HuBERT is built once into its cache).
    """
    _, overrides, text, _ = _compose(task, overrides, hparams_file)
    resolved = resolve_plain(text, {**_stand_ins(text, overrides), **overrides})
    return config_hash(resolved, encoder_identity_of(resolved))


def run_recipe(
    task: str,
    overrides: dict | None = None,
    hparams_file: str | Path | None = None,
    *,
    run_id: str | None = None,
    kind: str = "single",
    record_path: str | Path | None = None,
    run_opts: dict | None = None,
    in_grid: bool = False,
) -> RunRecord:
    """Train one model, evaluate it on each test locale and write its result record.

    Arguments:
        task: ``gr`` or ``sv``.
        overrides: hparams overrides: ``train_csv`` (path or list: their union is trained on),
            ``test_csv`` (list, one per evaluated locale), ``trials_csv`` (sv, aligned with
            ``test_csv``), ``data_root``, ``seed``, ``output_folder``, ``encoder``, ``preset``
            and any other YAML key. Unknown keys raise.
        hparams_file: task YAML; ``None`` is the packaged ``hparams/<recipe>.yaml``.
        run_id: name of the run in the record and in errors (default: the output folder's name).
        kind: ``single``, ``self``, ``pair``, ``multi`` or ``curve`` (recorded).
        record_path: where to write the record (default ``<output_folder>/record.json``).
        run_opts: SpeechBrain run options (``device``, ``precision``, ``noprogressbar``, ...).
        in_grid: a grid's executor calls: it writes the returned record to
            ``<plan>/records/<run_id>.json`` and keeps the run's log in ``<plan>/logs/``, so this
            run writes neither a record nor its own ``log.txt``.

    Returns:
        The record (written atomically unless ``in_grid``). Failures raise; nothing is recorded
        then.
    """
    start = time.perf_counter()
    spec, overrides, text, path = _compose(task, overrides, hparams_file)
    config = resolve_plain(text, overrides)
    _check_config(config, text, overrides, path, plan_time=False)

    train_csv, test_csv = _as_list(config.get("train_csv")), _as_list(config.get("test_csv"))
    if not train_csv or not test_csv:
        raise RecipeError("set train_csv and test_csv (paths of manifests)")
    trials_csv = _as_list(config.get("trials_csv")) if spec.name == "sv" else []
    if spec.name == "sv" and len(trials_csv) != len(test_csv):
        raise RecipeError(
            f"trials_csv must list one trials file per test_csv ({len(test_csv)}), "
            f"got {len(trials_csv)}"
        )
    keep = _choice("keep_checkpoints", config.get("keep_checkpoints", "none"), KEEP_CHECKPOINTS)
    output_folder = Path(str(config["output_folder"]))
    used = [m for m in RUN_MARKERS if (output_folder / m).exists()]
    if used:
        raise RecipeError(
            f"{output_folder} already holds a run ({', '.join(used)}); every run needs its own "
            "output_folder"
        )
    run_id = run_id or output_folder.name

    train_rows = read_manifests(train_csv)
    # Before any training: refuses a prepared folder left unfinished or edited since prepare.
    data_hash = data_hash_of(train_csv)
    data_root = config.get("data_root") or find_data_root(train_csv[0])
    data_root = None if data_root is None else str(data_root)
    label_key = str(config["label_key"])
    derived: dict[str, Any] = {"data_root": data_root}
    if config.get("label_classes") is None:  # e.g. speakers: sorted training labels
        derived["label_classes"] = sorted({row[label_key] for row in train_rows.values()})

    from hyperpyyaml import load_hyperpyyaml

    output_folder.mkdir(parents=True, exist_ok=True)
    final_overrides = {**overrides, **derived}
    atomic_write_text(
        output_folder / HPARAMS_FILE,
        _resolved_text(text, final_overrides),
    )
    with contextlib.nullcontext() if in_grid else _RunLog(output_folder / LOG_FILE):
        hp = load_hyperpyyaml(text, final_overrides)  # seeds every random source first
        # After loading: a hub checkpoint fetched now is in the cache the identity reads.
        identity = encoder_identity_of(hp)
        cfg_hash = config_hash(config, identity)
        record = _train_and_evaluate(
            spec.name, hp, run_id, train_rows, test_csv, trials_csv, output_folder, run_opts
        )
        if keep != "none":
            _save_checkpoint(hp, output_folder / CHECKPOINT_DIR, keep)

    seed = int(hp["seed"])
    encoder = hp["modules"]["encoder"]
    extra = {
        "encoder_config": encoder.config_summary() if hasattr(encoder, "config_summary") else {},
        "preset": config.get("preset"),
        "n_train": len(train_rows),
        "n_train_seconds": round(sum(float(r["duration"]) for r in train_rows.values()), 3),
        "n_classes": len(hp["label_classes"]),
        "output_folder": str(output_folder),
    }
    for key in ("lr", "weight_decay", "max_grad_norm", "batch_size", "number_of_epochs",
                "precision", "dynamic_batching", "layerdrop", "embed_layers", "score_norm"):
        if key in hp:
            extra[key] = hp[key]
    result = RunRecord(
        run_id=run_id,
        task=spec.name,
        kind=kind,
        train_set=[{"locale": r["locale"], "subset": r["subset"]} for r in train_rows.values()],
        seed=seed,
        evaluations=record["evaluations"],
        config_hash=cfg_hash,
        data_hash=data_hash,
        encoder=_encoder_info(hp, encoder, identity),
        code_version=cltm_sb.__version__,
        threads=torch.get_num_threads(),
        device=str(record["device"]),
        wall_time_s=round(time.perf_counter() - start, 3),
        log_path=None if in_grid else str(output_folder / LOG_FILE),
        extra={**extra, "train_time_s": record["train_time_s"]},
        debug=bool((run_opts or {}).get("debug", False)),  # SpeechBrain's --debug: a few batches
    )
    if not in_grid:  # in a grid the executor is the one writer of the record
        write_record(result, record_path or output_folder / RECORD_FILE)
    return result


def _resolved_text(text: str, overrides: Mapping[str, Any]) -> str:
    from hyperpyyaml import resolve_references

    return resolve_references(text, dict(overrides)).getvalue()


def _train_and_evaluate(
    task: str,
    hp: dict,
    run_id: str,
    train_rows: dict,
    test_csv: list[str],
    trials_csv: list[str],
    output_folder: Path,
    run_opts: dict | None,
) -> dict:
    """Fit the task's Brain, then evaluate on each test manifest."""
    opts = {"noprogressbar": True, **(run_opts or {})}
    device = opts.get("device") or ("cuda:0" if torch.cuda.is_available() else "cpu")
    hp["precision"] = resolve_precision(str(opts.pop("precision", hp.get("precision", "fp32"))), device)
    hp["eval_precision"] = hp["precision"]
    max_norm = hp.get("max_grad_norm")
    if max_norm is None:
        hp["max_grad_norm"] = float("inf")
    elif float(max_norm) <= 0:
        raise RecipeError(
            f"max_grad_norm must be > 0 (null disables clipping), got {max_norm}: SpeechBrain "
            "would reverse the gradients with a negative value"
        )
    label_key, classes = str(hp["label_key"]), list(hp["label_classes"])
    train_set = make_dataset(train_rows, hp["data_root"], label_key, classes, hp["sample_rate"])
    brain = hp["brain_class"](
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts=opts,
        checkpointer=None,
        run_name=run_id,
    )
    t0 = time.perf_counter()
    brain.fit(
        hp["epoch_counter"],
        train_set,
        train_loader_kwargs=_train_loader_kwargs(hp, train_set, int(hp["seed"])),
    )
    train_time = time.perf_counter() - t0
    evaluations = []
    for i, test_path in enumerate(test_csv):
        rows = read_manifests([test_path])
        locales = sorted({r["locale"] for r in rows.values()})
        if len(locales) != 1:
            raise RecipeError(f"{test_path}: a test manifest must hold one locale, found {locales}")
        if task == "gr":
            test_set = make_dataset(rows, hp["data_root"], label_key, classes, hp["sample_rate"])
            brain.evaluate(test_set, test_loader_kwargs={"batch_size": int(hp["test_batch_size"])})
            metrics = dict(brain.stage_metrics)
            n_items = metrics.pop("n_items")
            metrics.pop("loss", None)
            value = metrics.pop("macro_f1")
            evaluations.append(Evaluation(locales[0], "macro_f1", value, n_items, metrics))
        else:
            evaluations.append(
                _evaluate_verification(
                    brain, hp, rows, locales[0], trials_csv[i], train_set, output_folder
                )
            )
    return {"evaluations": evaluations, "device": brain.device, "train_time_s": round(train_time, 3)}


def _evaluate_verification(
    brain, hp: dict, rows: dict, locale: str, trials_path: str, train_set, output_folder: Path
) -> Evaluation:
    """Embed the test utterances, score the trials, write embeddings and scores."""
    from cltm_sb.recipe import verification as V

    test_set = make_dataset(rows, hp["data_root"], sample_rate=hp["sample_rate"])
    ids, emb = brain.embed_dataset(test_set)
    trials = read_csv_rows(trials_path, TRIAL_COLUMNS)
    if not trials:
        raise RecipeError(f"{trials_path}: no trials")
    enrol = [t["enrol_ID"] for t in trials]
    test = [t["test_ID"] for t in trials]
    labels = np.array([int(t["label"]) for t in trials])
    scores = V.cosine_scores((ids, emb), enrol, test)
    norm = _choice("score_norm", hp.get("score_norm", "none"), V.SCORE_NORMS)
    if norm != "none":
        index = {u: j for j, u in enumerate(ids)}
        _, cohort = brain.embed_dataset(train_set)
        scores = V.normalize_scores(
            scores,
            emb[[index[u] for u in enrol]],
            emb[[index[u] for u in test]],
            cohort,
            norm,
            hp.get("cohort_top_k"),
        )
    metrics = V.verification_metrics(
        scores, labels, hp["dcf_p_target"], hp["dcf_c_miss"], hp["dcf_c_fa"]
    )
    emb_path = embeddings_file(output_folder, locale)
    if hp.get("save_embeddings", True):

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=np.array(ids, dtype=str), emb=emb.astype(np.float16))

        atomic_write(emb_path, write_npz)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*TRIAL_COLUMNS, "score"])
    writer.writerows(zip(enrol, test, labels.tolist(), [f"{s:.6f}" for s in scores]))
    scores_path = atomic_write_text(scores_file(output_folder, locale), buffer.getvalue())
    value = metrics.pop("auc")
    metrics["score_norm"] = norm
    metrics["scores"] = str(scores_path)
    if hp.get("save_embeddings", True):
        metrics["embeddings"] = str(emb_path)
    return Evaluation(locale, "auc", value, len(ids), metrics)


def _save_checkpoint(hp: Mapping[str, Any], folder: Path, keep: str) -> None:
    """Keep the head only (``head.ckpt``) or every module (a SpeechBrain checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    if keep == "head":
        atomic_write(folder / "head.ckpt", lambda p: torch.save(hp["modules"]["head"].state_dict(), p))
    else:
        from speechbrain.utils.checkpoints import Checkpointer

        Checkpointer(folder, recoverables=dict(hp["modules"])).save_checkpoint()


# ------------------------------------------------------------------------------ command line
def main(task: str, argv: Sequence[str] | None = None) -> RunRecord:
    """``python recipes/<task>/train.py hparams/<task>.yaml --key=value ...``."""
    problem = torchaudio_problem()
    if problem:
        raise SystemExit(f"error: {problem}")
    hparams_file, run_opts, overrides = parse_command_line(argv)
    return run_recipe(task, overrides, hparams_file, run_opts=run_opts)


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[str, dict, dict[str, Any]]:
    """(hparams file, run options given, overrides) of ``train.py hparams.yaml --key=value ...``.

    SpeechBrain parses the run options; the overrides are typed by
    :func:`cltm_sb.recipe.overrides.parse_override_text`, as ``cltm plan --override`` values are.
    """
    import speechbrain as sb

    argv = list(argv if argv is not None else sys.argv[1:])
    hparams_file, run_opts, overrides_text = sb.parse_arguments(argv)
    overrides = parse_override_text(overrides_text) if overrides_text else {}
    explicit = {k: v for k, v in run_opts.items() if k in _explicit_run_opts(argv)}
    return hparams_file, explicit, overrides


def _explicit_run_opts(argv: Sequence[str] | None) -> set[str]:
    """Run options given on the command line (``--device=cpu`` -> ``device``)."""
    names = set()
    for arg in argv if argv is not None else sys.argv[1:]:
        if arg.startswith("--"):
            names.add(arg[2:].split("=", 1)[0])
    return names
