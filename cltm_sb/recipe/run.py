"""The SpeechBrain-shaped main every run uses: one recipe trained, evaluated per locale, recorded.

:func:`run_recipe` is the grid's run function and what the recipe command line
(:func:`main`, ``recipes/<task>/train.py``) calls: compose and check the hparams
(:mod:`cltm_sb.recipe.hparams`), prepare the output folder (resume, finished, ``--overwrite``:
:mod:`cltm_sb.recipe.checkpoints`), load the YAML, fit the task's Brain
(:mod:`cltm_sb.recipe.brains`) on the data pipeline (:mod:`cltm_sb.recipe.data`), evaluate and
write the record. :func:`check_config` and :func:`config_hash_for` are what ``cltm plan`` asks
before anything runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cltm_sb
from cltm_sb.data import DataError
from cltm_sb.data.manifests import TRIAL_COLUMNS, find_data_root, prepared_draw
from cltm_sb.environment import torchaudio_problem
from cltm_sb.io import atomic_write, atomic_write_text, holding, try_lock
from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.checkpoints import (
    clear_run_files,
    folder_state,
    prune_checkpoints,
)
from cltm_sb.recipe.checks import PRECISIONS, check_hparams
from cltm_sb.recipe.data import (
    check_label_column,
    data_hash_of,
    label_origin,
    make_dataset,
    read_csv_rows,
    read_manifests,
    require_files,
)
from cltm_sb.recipe.encoder_source import (
    check_checkpoint_sizes,
    check_encoder_source,
    check_layer_keys,
)
from cltm_sb.recipe.encoders import FbankECAPA, HFSSLEncoder, encoder_identity
from cltm_sb.recipe.hparams import (
    compose_hparams,
    hparams_dir,
    key_origins,
    plain_defaults,
    resolve_plain,
    resolved_text,
)
from cltm_sb.recipe.overrides import as_path_list, parse_override_text
from cltm_sb.recipe.run_files import (
    CHECKPOINT_DIR,
    HPARAMS_FILE,
    LOG_FILE,
    RECORD_FILE,
    embeddings_file,
    has_checkpoint,
    scores_file,
)
from cltm_sb.results import (
    OPERATIONAL_KEYS,
    PER_RUN_KEYS,
    Evaluation,
    RunRecord,
    config_hash,
    write_record,
)
from cltm_sb.tasks import Task, TaskError, get_task

logger = logging.getLogger(__name__)

LIST_KEYS = ("train_csv", "test_csv", "trials_csv")
#: The ``encoder_model`` node of an encoder that loads a HuggingFace checkpoint (checked before a
#: run), also in its spelling before the move into cltm_sb.recipe.
HF_ENCODER_TAGS = (
    f"!new:{HFSSLEncoder.__module__}.{HFSSLEncoder.__qualname__}",
    f"!new:cltm_sb.encoders.{HFSSLEncoder.__qualname__}",
)
#: ECAPA returns one "layer" (its embedding), whatever its size: no checkpoint to read it from.
ECAPA_ENCODER_TAGS = (
    f"!new:{FbankECAPA.__module__}.{FbankECAPA.__qualname__}",
    f"!new:cltm_sb.encoders.{FbankECAPA.__qualname__}",
)


# ------------------------------------------------------------------------------------ helpers


def _choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if value not in valid:
        raise RecipeError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` becomes bf16/fp16 on CUDA (where supported) and fp32 elsewhere; fp16 not on CPU."""
    _choice("precision", precision, PRECISIONS)
    if precision == "fp16" and str(device).startswith("cpu"):
        # Else SpeechBrain's ValueError, a traceback once the output folder is made.
        raise RecipeError("precision=fp16 does not run on CPU (SpeechBrain refuses it); use bf16, fp32 or auto")
    if precision != "auto":
        return precision
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


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
        # The run's own INFO lines (epochs, heartbeats) reach the file whatever the caller's
        # logging level is; restored afterwards.
        self.package = logging.getLogger("cltm_sb")
        self.level = self.package.level
        if self.package.getEffectiveLevel() > logging.INFO:
            self.package.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()
        self.package.setLevel(self.level)


# --------------------------------------------------------------------------------- the runner
def _compose(
    task: str | Task, overrides: Mapping[str, Any] | None, hparams_file: str | os.PathLike | None
) -> tuple[Any, dict, str, Path]:
    """The task, the overrides (manifest keys as lists), the composed YAML text and the task YAML."""
    spec = get_task(task)
    if not spec.packaged:
        raise RecipeError(
            f"task {spec.name!r} ({spec.source or 'declared'}) runs a recipe of its own "
            f"({spec.script or spec.function}), not a packaged one; a grid runs it through "
            "cltm_sb.recipe.user (cltm plan chooses it)"
        )
    overrides = dict(overrides or {})
    for key in LIST_KEYS:
        if key in overrides:
            overrides[key] = as_path_list(overrides[key])
    hparams_file = Path(hparams_file) if hparams_file else hparams_dir() / f"{spec.recipe}.yaml"
    text = compose_hparams(hparams_file, overrides, spec.recipe)
    # The declaration is the one place of the label column and classes; an explicit override wins.
    overrides = {**spec.hparams_overrides(set(plain_defaults(text))), **overrides}
    return spec, overrides, text, hparams_file


def _stand_ins(text: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Values for the per-run keys the caller left unset (manifests, seed, output folder, ...)."""
    return {
        key: (["per-run-stand-in"] if key in LIST_KEYS else "per-run-stand-in")
        for key in PER_RUN_KEYS & set(plain_defaults(text))
        if key not in overrides and not key.startswith("__")
    }


#: The metrics a packaged recipe reports per locale: a classifier's, or a verification's (trials).
CLASSIFIER_METRICS = ("accuracy", "loss", "macro_f1")
VERIFICATION_METRICS = ("auc", "eer", "min_dcf")


def check_metric(spec: Task) -> None:
    """Refuse a task whose declared metric its packaged recipe never reports, before training
    (found only at evaluation, every run of a grid would train first and then fail)."""
    reported = VERIFICATION_METRICS if spec.trials else CLASSIFIER_METRICS
    if spec.metric not in reported:
        raise RecipeError(
            f"task {spec.name!r} ({spec.source or 'its declaration'}) declares metric {spec.metric!r}, "
            f"which the packaged recipe {spec.recipe!r} does not report; set metric to one of {', '.join(reported)}"
        )


def _check_config(
    config: Mapping[str, Any],
    text: str,
    overrides: Mapping[str, Any],
    hparams_file: Path,
    *,
    plan_time: bool,
    embeds: bool,
    skip: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Every hparam value against its rule, then the encoder: before any model loads or trains.

    ``embeds``: the task embeds utterances for verification (``embed_layers`` is used).
    """
    origins = key_origins(text, hparams_file)

    def origin(key: str) -> str:
        return "given as an override" if key in overrides else f"set in {origins.get(key, hparams_file)}"

    defaults = plain_defaults(text)
    check_hparams({k: v for k, v in config.items() if k not in skip}, defaults, origin)
    _check_encoder(config, origin, plan_time=plan_time, embeds=embeds)


def _check_encoder(
    config: Mapping[str, Any], origin: Callable[[str], str], *, plan_time: bool, embeds: bool
) -> None:
    """A HuggingFace encoder's checkpoint is there to load and fits encoder_dim and embed_layers.

    The arguments are those the YAML gives the encoder (``source``, ``revision``, ``save_path``),
    whatever its keys are called; an encoder trained from scratch (ECAPA) has none to check.
    """
    for node in config.values():
        if isinstance(node, Mapping) and node.get("tag") in ECAPA_ENCODER_TAGS:
            # Else a pool_layers above 1 fails with a traceback once training has started.
            check_layer_keys(1, "of the encoder FbankECAPA (one embedding per clip)", config, origin, embeds=embeds)
        if not (isinstance(node, Mapping) and node.get("tag") in HF_ENCODER_TAGS):
            continue
        args = node.get("value") if isinstance(node.get("value"), Mapping) else {}
        source = _source_value(args.get("source"))
        if source is None:
            continue  # given positionally: the load itself will say what is wrong
        config_json = check_encoder_source(
            source, args.get("revision"), args.get("save_path"), need_cached=plan_time
        )
        if config_json is not None:  # None: a hub id the run will download
            check_checkpoint_sizes(config_json, config, origin, embeds=embeds)


def check_config(
    task: str | Task, overrides: Mapping[str, Any] | None = None, hparams_file: str | Path | None = None
) -> None:
    """Refuse a configuration that cannot train, before any training: what ``cltm plan`` calls.

    The composed YAML is resolved without loading any model; every hparam value is checked
    against :data:`cltm_sb.recipe.checks.HPARAM_RULES`, then the encoder's checkpoint (a local
    folder that loads, or a hub id in the local cache) and ``embed_layers`` against its layers.
    Per-run keys the caller left unset get stand-ins and are not checked. Raises
    :class:`RecipeError` (a ValueError) naming the key or file and what to do.
    """
    spec, overrides, text, path = _compose(task, overrides, hparams_file)
    stand_ins = _stand_ins(text, overrides)
    config = resolve_plain(text, {**stand_ins, **overrides})
    check_metric(spec)
    _check_config(config, text, overrides, path, plan_time=True, embeds=spec.trials, skip=set(stand_ins))


def config_hash_for(
    task: str | Task, overrides: Mapping[str, Any] | None = None, hparams_file: str | Path | None = None
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
    task: str | Task,
    overrides: dict | None = None,
    hparams_file: str | Path | None = None,
    *,
    run_id: str | None = None,
    kind: str = "single",
    record_path: str | Path | None = None,
    run_opts: dict | None = None,
    in_grid: bool = False,
    overwrite: bool = False,
    experiment_directory: bool = False,
) -> RunRecord | None:
    """Train one model, evaluate it on each test locale and write its result record.

    The steps of a SpeechBrain recipe: compose and check the hparams, prepare the output folder,
    load the YAML (objects built, seed set), fit with the YAML's checkpointer, evaluate, record.
    What the output folder already holds decides what a call does
    (:func:`cltm_sb.recipe.checkpoints.folder_state`): a finished run is not run again (its record
    is returned; ``overwrite`` redoes it), a run with a checkpoint resumes from it, and a start
    that trained nothing starts again. Under ``torchrun`` every process trains (DDP) and only the
    main process evaluates and records; the others return None.

    Arguments:
        task: a task name (``gr``, ``sv``, ``age``, ...), declaration path or :class:`Task`
            whose recipe is a packaged one.
        overrides: hparams overrides: ``train_csv`` (path or list: their union is trained on),
            ``test_csv`` (list, one per evaluated locale), ``trials_csv`` (sv, aligned with
            ``test_csv``), ``data_root``, ``seed``, ``output_folder``, ``encoder``, ``preset``
            and any other YAML key. Unknown keys raise.
        hparams_file: task YAML; ``None`` is the packaged ``hparams/<recipe>.yaml``.
        run_id: name of the run in the record and in errors (default: the output folder's name).
        kind: ``single``, ``self``, ``pair``, ``multi`` or ``curve`` (recorded).
        record_path: where to write the record (default ``<output_folder>/record.json``).
        run_opts: SpeechBrain run options (``device``, ``precision``, ``noprogressbar``, ...);
            the progress bar is on only when stderr is a terminal (else a heartbeat line is logged).
        in_grid: a grid's executor calls: it writes the returned record to
            ``<plan>/records/<run_id>.json`` and keeps the run's log in ``<plan>/logs/``, so this
            run writes neither a record nor its own ``log.txt``.
        overwrite: remove what an earlier run left in the output folder and start afresh.
        experiment_directory: make SpeechBrain's experiment directory (``log.txt`` through
            SpeechBrain's logging set-up, ``env.log``, a copy of the running script), as the
            command line does; otherwise only this run's own ``log.txt``.

    Returns:
        The record (written atomically unless ``in_grid``). Failures raise; nothing is recorded
        then.
    """
    import speechbrain as sb
    from speechbrain.utils.distributed import ddp_barrier, if_main_process

    start = time.perf_counter()
    if (run_opts or {}).get("test_only"):
        # SpeechBrain's fit then returns at once, without recovering a checkpoint: the untrained
        # model was evaluated and recorded as the run, and a resumable run's checkpoint pruned.
        raise RecipeError(
            "--test_only is not supported: a run trains, then evaluates. Rerun the command without it: "
            "a finished run prints its record, a started one resumes from its checkpoint"
        )
    spec, overrides, text, path = _compose(task, overrides, hparams_file)
    run_opts, overrides = _yaml_run_options(run_opts, overrides, text)
    config = resolve_plain(text, overrides)
    check_metric(spec)
    _check_config(config, text, overrides, path, plan_time=False, embeds=spec.trials)

    train_csv, test_csv = as_path_list(config["train_csv"]), as_path_list(config["test_csv"])
    if not train_csv or not test_csv:
        raise RecipeError("set train_csv and test_csv (paths of manifests)")
    trials_csv = as_path_list(config["trials_csv"]) if spec.trials else []
    if spec.trials and len(trials_csv) != len(test_csv):
        raise RecipeError(
            f"trials_csv must list one trials file per test_csv ({len(test_csv)}), "
            f"got {len(trials_csv)}"
        )
    output_folder = Path(str(config["output_folder"]))
    record_file = Path(record_path) if record_path else output_folder / RECORD_FILE
    run_id = run_id or output_folder.name

    # Before any training: refuses a prepared folder left unfinished or edited since prepare.
    require_files([*train_csv, *test_csv, *trials_csv])
    data_hash = data_hash_of([*train_csv, *test_csv, *trials_csv])
    draw, draw_hash = prepared_draw(Path(train_csv[0]).resolve().parent.parent, data_hash)
    data_root = config["data_root"] or find_data_root(train_csv[0])
    data_root = None if data_root is None else str(data_root)
    train_rows = read_manifests(train_csv, data_root)
    label_key = str(config["label_key"])
    classes = config["label_classes"]
    check_label_column([*train_csv, *test_csv], label_key, label_origin(spec, label_key),
                       None if classes is None else [str(c) for c in classes])
    derived: dict[str, Any] = {"data_root": data_root}
    if config["label_classes"] is None:  # e.g. speakers: sorted training labels
        derived["label_classes"] = sorted({str(row[label_key]) for row in train_rows.values()})
    final_overrides = {**overrides, **derived}
    world_size = _world_size()
    # The effective batch is batch_size x world_size: another configuration; so are the
    # SpeechBrain run options that change the training (given ones only: old hashes stay).
    training_opts = {k: v for k, v in (run_opts or {}).items() if k in TRAINING_RUN_OPTIONS}
    setup = {**training_opts, **({"world_size": world_size} if world_size > 1 else {})}
    hparams_text = _with_setup(resolved_text(text, final_overrides), setup)

    # Held until the record is written: the grid's executor holds the run's own lock instead.
    with contextlib.nullcontext() if in_grid else _folder_lock(output_folder):
        state = _prepare_folder(output_folder, record_file, hparams_text, overwrite=overwrite, in_grid=in_grid)
        if state == "finished":
            from cltm_sb.results import read_record

            if not if_main_process():  # under torchrun every process printed the record
                return None
            logger.info("%s: this run finished before; its record is %s (--overwrite to redo it)", output_folder, record_file)
            return read_record(record_file)
        ddp_barrier()  # every process has looked at the folder before the main one writes
        if if_main_process():
            output_folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(output_folder / HPARAMS_FILE, hparams_text)
        if experiment_directory:
            # SpeechBrain's logging set-up (log.txt), env.log (pip freeze: about 0.6 s, so grid runs,
            # whose record holds the versions, skip it) and a copy of the running script; the main
            # process writes, and every process waits for it.
            sb.create_experiment_directory(str(output_folder), save_env_desc=not in_grid)
        else:
            ddp_barrier()
        if state == "resumable":
            logger.info("%s: resuming from the last checkpoint in %s", run_id, output_folder / CHECKPOINT_DIR)

        from hyperpyyaml import load_hyperpyyaml

        plain_log = in_grid or experiment_directory or not if_main_process()
        with contextlib.nullcontext() if plain_log else _RunLog(output_folder / LOG_FILE):
            hp = load_hyperpyyaml(text, final_overrides)  # seeds every random source first
            # After loading: a hub checkpoint fetched now is in the cache the identity reads.
            identity = encoder_identity_of(hp)
            cfg_hash = config_hash({**config, **setup}, identity)
            record = _train_and_evaluate(
                spec, hp, run_id, train_rows, test_csv, trials_csv, output_folder, run_opts, data_root
            )
            if record is not None:
                prune_checkpoints(hp, output_folder, str(hp["keep_checkpoints"]))
        if record is None:  # not the main process of a DDP run
            return None

        seed = int(hp["seed"])
        encoder = hp["modules"]["encoder"]
        extra = {
            "encoder_config": encoder.config_summary() if hasattr(encoder, "config_summary") else {},
            "preset": config.get("preset"),  # a YAML without a preset loads as it is
            "n_train": len(train_rows),
            "n_train_seconds": round(sum(float(r["duration"]) for r in train_rows.values()), 3),
            "n_classes": len(hp["label_classes"]),
            "output_folder": str(output_folder),
            "world_size": world_size,
            **training_opts,
            "resumed": state == "resumable",
        }
        for key in RECORDED_KEYS:
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
            draw=draw,
            draw_hash=draw_hash,
        )
        if not in_grid:  # in a grid the executor is the one writer of the record
            write_record(result, record_file)
        return result


def _yaml_run_options(
    run_opts: Mapping[str, Any] | None, overrides: Mapping[str, Any], text: str
) -> tuple[dict, dict[str, Any]]:
    """Run options that are also keys of the YAML (``--max_grad_norm``, ``--precision``) as overrides.

    SpeechBrain parses them as run options, which its Brain prefers to the hparams: the run then
    trained with the option while its checks, hyperparams.yaml, record and configuration hash kept
    the YAML's value (``--max_grad_norm=-1`` even reversed the gradients unchecked). As overrides
    they are checked, hashed and recorded like ``--lr``; an explicit override wins. Operational
    keys (``ckpt_interval_minutes``) stay run options: they change no result.
    """
    opts = dict(run_opts or {})
    keys = set(plain_defaults(text)) - OPERATIONAL_KEYS
    moved = {key: opts.pop(key) for key in list(opts) if key in keys}
    return opts, {**moved, **overrides}


#: SpeechBrain run options (``--grad_accumulation_factor=4``) that change what a run trains: hashed
#: and recorded when given, else such a run shared the configuration of one trained without them.
TRAINING_RUN_OPTIONS = (
    "grad_accumulation_factor", "optimizer_step_limit", "remove_vector_weight_decay", "skip_nonfinite_grads",
)


#: Hparams copied into a record's ``extra`` (where the YAML has them) for reading records alone.
RECORDED_KEYS = (
    "lr", "weight_decay", "max_grad_norm", "batch_size", "number_of_epochs", "precision",
    "dynamic_batching", "layerdrop", "pool_layers", "embed_layers", "score_norm",
)


#: Held (``flock``) by a standalone run's main process while it uses its output folder.
FOLDER_LOCK_FILE = ".run.lock"


@contextlib.contextmanager
def _folder_lock(output_folder: Path) -> Iterator[None]:
    """Hold ``<output_folder>/.run.lock`` on the main process while the run uses its folder.

    Two runs started in one folder (the same command in two terminals, or a rerun of a DDP run
    beside the workers a SIGKILLed torchrun left behind) both trained, deleted each other's
    checkpoints and wrote the record twice, or hung. The kernel drops the lock with its holder,
    so a killed run blocks nothing. A file system without flock runs unguarded (as before).
    """
    from speechbrain.utils.distributed import if_main_process

    if not if_main_process():
        yield
        return
    try:
        held = try_lock(output_folder / FOLDER_LOCK_FILE)
    except OSError as error:
        logger.warning("%s: cannot lock the folder (%s); two runs in it would not be stopped",
                       output_folder, error.strerror)
        yield
        return
    if isinstance(held, str):
        raise RecipeError(
            f"{output_folder} is in use by another run ({held}); wait for it to end or stop it "
            "(under torchrun: every worker), then run this command again"
        )
    with holding(held):
        yield


def _world_size() -> int:
    """Processes of a ``torchrun`` launch (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1")) if os.environ.get("RANK") is not None else 1


def _prepare_folder(output_folder: Path, record_file: Path, hparams_text: str, *, overwrite: bool,
                    in_grid: bool) -> str:
    """What this call does with the output folder: its :func:`folder_state` after ``overwrite``.

    A finished or resumable folder must hold the same resolved hparams as this call: resuming
    or reporting another configuration's run would be silently wrong.
    """
    from speechbrain.utils.distributed import ddp_barrier, if_main_process

    state = folder_state(output_folder)
    if record_file != output_folder / RECORD_FILE and record_file.is_file():
        state = "finished"
    if in_grid and state == "finished":  # the grid's executor decides what is done, not this file
        state = "resumable" if has_checkpoint(output_folder) else "started"
    if overwrite and state != "new":
        ddp_barrier()  # every process has looked before the main one clears
        if if_main_process():
            clear_run_files(output_folder)
            if record_file.is_file():
                record_file.unlink()
        ddp_barrier()
        return "new"
    if state in ("finished", "resumable"):
        earlier = output_folder / HPARAMS_FILE
        if not earlier.is_file() or _hparams_differ(earlier.read_text(encoding="utf-8"), hparams_text):
            if in_grid:  # a stale checkpoint of an earlier plan: train afresh
                logger.warning("%s: a checkpoint of another configuration; starting afresh", output_folder)
                if if_main_process():
                    clear_run_files(output_folder)
                ddp_barrier()
                return "new"
            raise RecipeError(
                f"{output_folder} holds a {'finished' if state == 'finished' else 'started'} run of "
                f"another configuration ({earlier} differs from this command's hparams); use another "
                "output_folder, or --overwrite to replace it"
            )
    return state


#: Starts the comment line of hyperparams.yaml that holds what else the configuration hash covers
#: (world size, training run options), so that reusing a folder compares it too: a started DDP
#: run resumed by one process (or a finished one reported) passed as this command's configuration.
SETUP_MARK = "# cltm run setup: "


def _with_setup(hparams_text: str, setup: Mapping[str, Any]) -> str:
    """``hparams_text`` with its :data:`SETUP_MARK` line when ``setup`` holds anything."""
    if not setup:
        return hparams_text
    body = hparams_text.rstrip("\n")
    return f"{body}\n{SETUP_MARK}{json.dumps(dict(setup), sort_keys=True)}\n"


def _setup_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.startswith(SETUP_MARK)), "")


def _hparams_differ(earlier: str, now: str) -> bool:
    """Whether two resolved hparams texts differ (comments aside, but for the run setup line)."""
    from cltm_sb.recipe.hparams import plain_defaults

    return plain_defaults(earlier) != plain_defaults(now) or _setup_line(earlier) != _setup_line(now)


def train_loader_options(hp: Mapping[str, Any], dataset) -> dict:
    """The YAML's ``train_dataloader_opts``; with ``dynamic_batching``, duration buckets
    (``dynamic_batch_sampler``) replace its ``batch_size`` and ``shuffle``."""
    options = dict(hp["train_dataloader_opts"])
    if hp["dynamic_batching"]:
        from speechbrain.dataio.sampler import DynamicBatchSampler

        options.pop("batch_size", None)
        options.pop("shuffle", None)
        options["batch_sampler"] = DynamicBatchSampler(
            dataset, length_func=lambda x: x["duration"], seed=int(hp["seed"]), **hp["dynamic_batch_sampler"]
        )
    return options


def _train_and_evaluate(
    task: Task,
    hp: dict,
    run_id: str,
    train_rows: dict,
    test_csv: list[str],
    trials_csv: list[str],
    output_folder: Path,
    run_opts: dict | None,
    data_root: str | None,
) -> dict | None:
    """Fit the task's Brain (every DDP process), then evaluate on each test manifest (main only)."""
    from speechbrain.utils.distributed import ddp_barrier, if_main_process

    # A progress bar on a terminal; in a log file, the Brain's heartbeat lines instead.
    opts = {"noprogressbar": not sys.stderr.isatty(), **(run_opts or {})}
    if float(opts.get("ckpt_interval_steps", 0)) > 0 and "ckpt_interval_minutes" not in opts:
        # SpeechBrain takes one of the two intervals: a step interval given replaces the YAML's minutes.
        opts["ckpt_interval_minutes"] = 0
    device = opts.get("device") or ("cuda:0" if torch.cuda.is_available() else "cpu")
    hp["precision"] = resolve_precision(str(opts.pop("precision", hp["precision"])), device)
    hp["eval_precision"] = hp["precision"]
    if hp["max_grad_norm"] is None:
        hp["max_grad_norm"] = float("inf")
    label_key, classes = str(hp["label_key"]), list(hp["label_classes"])
    train_set = make_dataset(train_rows, label_key, classes, hp["sample_rate"])
    brain = hp["brain_class"](
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts=opts,
        checkpointer=hp["checkpointer"],
        run_name=run_id,
        heartbeat_s=60.0 * float(hp["heartbeat_minutes"]),
        # Kept after evaluation only with keep_checkpoints: all; else never written.
        save_last_epoch=hp["keep_checkpoints"] == "all",
    )
    t0 = time.perf_counter()
    brain.fit(hp["epoch_counter"], train_set, train_loader_kwargs=train_loader_options(hp, train_set))
    train_time = time.perf_counter() - t0
    if not if_main_process():
        ddp_barrier()  # the main process evaluates meanwhile
        return None
    _unwrap_ddp(brain)
    evaluations = []
    for i, test_path in enumerate(test_csv):
        rows = read_manifests([test_path], data_root)
        locales = sorted({r["locale"] for r in rows.values()})
        if len(locales) != 1:
            raise RecipeError(f"{test_path}: a test manifest must hold one locale, found {locales}")
        if not task.trials:  # a label per utterance: classification metrics
            test_set = make_dataset(rows, label_key, classes, hp["sample_rate"])
            brain.evaluate(test_set, test_loader_kwargs=dict(hp["test_dataloader_opts"]))
            metrics = dict(brain.stage_metrics)
            n_items = metrics.pop("n_items")  # the test loss stays in extra: a finer check than F1
            if task.metric not in metrics:
                raise RecipeError(
                    f"task {task.name!r} declares metric {task.metric!r}; the classifier reports "
                    f"{sorted(k for k, v in metrics.items() if isinstance(v, float))}"
                )
            value = task.to_cltm(metrics.pop(task.metric))
            evaluations.append(Evaluation(locales[0], task.cltm_metric, value, n_items, metrics))
        else:
            evaluations.append(
                _evaluate_verification(
                    task, brain, hp, rows, locales[0], trials_csv[i], train_set, output_folder
                )
            )
    ddp_barrier()
    return {"evaluations": evaluations, "device": brain.device, "train_time_s": round(train_time, 3)}


def _unwrap_ddp(brain) -> None:
    """Evaluate with the plain modules: a DDP module's forward may wait for the other processes."""
    from torch.nn.parallel import DistributedDataParallel

    for name, module in list(brain.modules.items()):
        if isinstance(module, DistributedDataParallel):
            brain.modules[name] = module.module


def _evaluate_verification(
    task: Task, brain, hp: dict, rows: dict, locale: str, trials_path: str, train_set, output_folder: Path
) -> Evaluation:
    """Embed the test utterances, score the trials, write embeddings and scores."""
    from cltm_sb.recipe import verification as V

    test_set = make_dataset(rows, sample_rate=hp["sample_rate"])
    ids, emb = brain.embed_dataset(test_set)
    trials = read_csv_rows(trials_path, TRIAL_COLUMNS)
    if not trials:
        raise RecipeError(f"{trials_path}: no trials")
    enrol = [t["enrol_ID"] for t in trials]
    test = [t["test_ID"] for t in trials]
    labels = np.array([int(t["label"]) for t in trials])
    scores = V.cosine_scores((ids, emb), enrol, test)
    norm = _choice("score_norm", hp["score_norm"], V.SCORE_NORMS)
    if norm != "none":
        index = {u: j for j, u in enumerate(ids)}
        _, cohort = brain.embed_dataset(train_set)
        scores = V.normalize_scores(
            scores,
            emb[[index[u] for u in enrol]],
            emb[[index[u] for u in test]],
            cohort,
            norm,
            hp["cohort_top_k"],
        )
    metrics = V.verification_metrics(
        scores, labels, hp["dcf_p_target"], hp["dcf_c_miss"], hp["dcf_c_fa"]
    )
    emb_path = embeddings_file(output_folder, locale)
    if hp["save_embeddings"]:

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=np.array(ids, dtype=str), emb=emb.astype(np.float16))

        atomic_write(emb_path, write_npz)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*TRIAL_COLUMNS, "score"])
    writer.writerows(zip(enrol, test, labels.tolist(), [f"{s:.6f}" for s in scores]))
    scores_path = atomic_write_text(scores_file(output_folder, locale), buffer.getvalue())
    # The declared metric (auc, or eer / min_dcf with their transform), as the classifier does.
    raw = metrics[task.metric] if task.transform != "none" else metrics.pop(task.metric)
    metrics["score_norm"] = norm
    metrics["scores"] = str(scores_path)
    if hp["save_embeddings"]:
        metrics["embeddings"] = str(emb_path)
    return Evaluation(locale, task.cltm_metric, task.to_cltm(raw), len(ids), metrics)


# ------------------------------------------------------------------------------ command line
def main(task: str, argv: Sequence[str] | None = None) -> RunRecord | None:
    """``python recipes/<task>/train.py hparams/<task>.yaml --key=value ...`` (or under torchrun).

    SpeechBrain's recipe main: parse the arguments, start DDP when torchrun launched the
    processes, then :func:`run_recipe` with SpeechBrain's experiment directory. ``--overwrite``
    redoes a finished run. Returns the record (None on the non-main DDP processes).
    """
    problem = torchaudio_problem()
    if problem:
        raise SystemExit(f"error: {problem}")
    argv = list(argv if argv is not None else sys.argv[1:])
    overwrite = "--overwrite" in argv
    argv = [a for a in argv if a != "--overwrite"]
    hparams_file, run_opts, overrides = parse_command_line(argv)
    if os.environ.get("RANK") is not None:  # torchrun: one process group for the whole run
        from speechbrain.utils.distributed import ddp_init_group

        ddp_init_group({"distributed_backend": "nccl" if torch.cuda.is_available() else "gloo", **run_opts})
    try:
        return run_recipe(task, overrides, hparams_file, run_opts=run_opts, overwrite=overwrite,
                          experiment_directory=True)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


#: What a recipe script reports as one line (the input is wrong), not as a traceback (a bug).
#: DataError: a prepared folder left unfinished or edited since `cltm prepare` (check_prepared).
USER_ERRORS: tuple[type[BaseException], ...] = (RecipeError, TaskError, DataError, FileNotFoundError)


def script_main(task: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """What ``recipes/<task>/train.py`` runs: :func:`main`, then the record printed as JSON.

    A user error (:data:`USER_ERRORS`: a bad override, preset or manifest, a damaged checkpoint)
    prints ``<prog>: error: <message>`` on stderr and returns 2, as ``cltm`` does; any other
    exception is a bug and keeps its traceback. Returns the exit status.
    """
    prog = prog or sys.argv[0]
    try:
        record = main(task, argv)
    except USER_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if record is not None:  # under torchrun only the main process has the record
        print(json.dumps(record.to_dict(), indent=2, default=str))
    return 0


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[str, dict, dict[str, Any]]:
    """(hparams file, run options given, overrides) of ``train.py hparams.yaml --key=value ...``.

    SpeechBrain parses the run options (only those given on the command line are returned:
    ``RunOptions.overridden_args``, so that a YAML's own run options, e.g.
    ``ckpt_interval_minutes``, are not replaced by defaults); the overrides are typed by
    :func:`cltm_sb.recipe.overrides.parse_override_text`, as ``cltm plan --override`` values are.
    """
    from speechbrain.utils.run_opts import RunOptions

    argv, taken = _take_yaml_run_options(list(argv if argv is not None else sys.argv[1:]))
    hparams_file, run_opts, overrides_text = RunOptions.from_command_line_args(argv)
    overrides = parse_override_text(overrides_text) if overrides_text else {}
    explicit = {k: run_opts[k] for k in run_opts.overridden_args}
    return hparams_file, explicit, {**overrides, **taken}


#: SpeechBrain run options that the task YAMLs hold as hparams. SpeechBrain's parser refused their
#: documented YAML values (``--max_grad_norm=null``: "invalid float value", ``--precision=auto``):
#: they are read as overrides instead, typed as every other ``--key=value``.
YAML_RUN_OPTIONS = ("max_grad_norm", "precision")


def _take_yaml_run_options(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` without the :data:`YAML_RUN_OPTIONS` (``--key=value`` or ``--key value``), and those."""
    from cltm_sb.recipe.overrides import parse_override

    rest: list[str] = []
    taken: dict[str, Any] = {}
    args = iter(argv)
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if key not in YAML_RUN_OPTIONS:
            rest.append(arg)
            continue
        if not sep:
            value = next(args, None)
            if value is None:
                raise RecipeError(f"--{key} needs a value (--{key}=VALUE)")
        taken[key] = parse_override(key, value)
    return rest, taken
