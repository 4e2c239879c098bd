"""A recipe of one's own in a grid: the run contract, the call, and ``metrics.json`` into a record.

A task declaration (:mod:`cltm_sb.tasks`) that names ``recipe: {script: train.py, hparams: x.yaml}``
is run as a SpeechBrain recipe is run::

    python train.py x.yaml --train_csv=[...] --test_csv=[...] --seed=42 \\
        --output_folder=<plan>/runs/<run_id> --data_root=<audio cache> [--trials_csv=[...]] \\
        [the plan's --override keys]

(``recipe: {function: "pkg.module:function"}`` is called in-process as
``function(overrides, hparams_file)`` with the same overrides.) The recipe trains on the union
of ``train_csv``, evaluates on each ``test_csv`` (one locale each; ``trials_csv`` lists their
trial lists when the task declares ``trials: true``) and writes ``<output_folder>/metrics.json``::

    {"evaluations": [{"locale": "en", "metric": "macro_f1", "value": 0.91, "n_items": 120}, ...]}

(further keys of an evaluation are kept in the record's ``extra``; a function may return this
mapping instead of writing the file). :func:`run_user_recipe` turns it into the run's record:
the value enters the CLTM as the declaration's transform says (``1 - eer`` for a lower-is-better
``eer``). The config hash covers the declaration, the recipe's files and the plan's overrides.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cltm_sb
from cltm_sb.io import sha256_file, stable_hash
from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.overrides import as_path_list
from cltm_sb.results import PER_RUN_KEYS, Evaluation, RunRecord
from cltm_sb.tasks import Task, get_task

logger = logging.getLogger(__name__)

#: The file a recipe of one's own writes into its output folder.
METRICS_FILE = "metrics.json"
#: Its output (stdout and stderr), kept beside it.
RECIPE_LOG = "recipe_log.txt"
EVALUATION_KEYS = ("locale", "metric", "value", "n_items")
#: The run contract's path keys; the script runs in its own folder, so they are made absolute.
PATH_KEYS = ("train_csv", "test_csv", "trials_csv", "output_folder", "data_root")


def _absolute(value: Any) -> str:
    # abspath, not resolve: a folder of symlinks keeps the names the user gave.
    return os.path.abspath(os.path.expanduser(str(value)))


def _names_a_path(value: str) -> bool:
    """An override value that is a relative path naming something from the caller's folder."""
    return os.sep in value and not os.path.isabs(value) and os.path.exists(value)


def absolute_paths(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides with every path made absolute against the caller's folder (the script runs
    in its own folder, where a relative path would name another file)."""
    out = dict(overrides)
    for key, value in out.items():
        if key in PATH_KEYS and isinstance(value, (list, tuple)):
            out[key] = [_absolute(v) for v in value]
        elif (key in PATH_KEYS and value not in (None, "")) or (isinstance(value, str) and _names_a_path(value)):
            out[key] = _absolute(value)
    return out


def command_line(task: Task, overrides: Mapping[str, Any], hparams_file: str | None) -> list[str]:
    """``python train.py hparams.yaml --key=value ...`` (lists and values written as JSON, which
    SpeechBrain's override parser reads as YAML)."""
    if task.script is None:
        raise RecipeError(f"task {task.name!r} declares no recipe script")
    args = [sys.executable, _absolute(task.script), str(hparams_file or task.hparams)]
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args.append(f"--{key}={text}")
    return args


def check_config(task: str | Task, overrides: Mapping[str, Any] | None = None,
                 hparams_file: str | os.PathLike | None = None) -> None:
    """What ``cltm plan`` asks before it writes a plan: the recipe's files are there."""
    spec = get_task(task)
    if spec.packaged:
        raise RecipeError(f"task {spec.name!r} has a packaged recipe: run it with cltm_sb.recipe.run")
    hparams = hparams_file or spec.hparams
    if spec.script is not None and (hparams is None or not Path(hparams).is_file()):
        raise RecipeError(f"task {spec.name!r}: hparams file {hparams} not found")


def config_hash_for(task: str | Task, overrides: Mapping[str, Any] | None = None,
                    hparams_file: str | os.PathLike | None = None) -> str:
    """The configuration of a recipe of one's own: its declaration, the contents of its script and
    hparams files and the overrides that are not per run (seed, manifests, output folder)."""
    spec = get_task(task)
    hparams = hparams_file or spec.hparams
    content = {
        "task": spec.to_dict() | {"recipe": None},  # the files' contents, not their paths
        "script": sha256_file(spec.script) if spec.script else None,
        "function": spec.function,
        "hparams": sha256_file(hparams) if hparams else None,
        "overrides": {k: v for k, v in sorted((overrides or {}).items()) if k not in PER_RUN_KEYS},
    }
    return stable_hash(content)


def read_metrics(path: Path, task: Task, test_locales: Sequence[str]) -> list[Evaluation]:
    """The evaluations of ``metrics.json``, checked against the run contract; values as the CLTM
    takes them (the declared transform applied; the recipe's own value kept in ``extra``)."""
    if not path.is_file():
        raise RecipeError(f"the recipe wrote no {path}; it must write {{\"evaluations\": [...]}} there")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RecipeError(f"{path}: not valid JSON ({error})") from error
    return evaluations_from(data, task, test_locales, str(path))


def evaluations_from(data: Any, task: Task, test_locales: Sequence[str], where: str) -> list[Evaluation]:
    """:func:`read_metrics` on a mapping already read (what a declared function returns)."""
    items = data.get("evaluations") if isinstance(data, Mapping) else None
    if not isinstance(items, list) or not items:
        raise RecipeError(f"{where}: expected {{\"evaluations\": [{{{', '.join(EVALUATION_KEYS)}}}, ...]}}")
    out = []
    for i, item in enumerate(items):
        at = f"{where}, evaluations[{i}]"
        missing = [k for k in EVALUATION_KEYS if not isinstance(item, Mapping) or k not in item]
        if missing:
            raise RecipeError(f"{at}: missing {missing}")
        if item["metric"] != task.metric:
            raise RecipeError(f"{at}: metric {item['metric']!r}, but task {task.name!r} declares {task.metric!r}")
        try:
            value, n_items = float(item["value"]), int(item["n_items"])
        except (TypeError, ValueError):
            raise RecipeError(f"{at}: value and n_items must be numbers, got {item['value']!r}, {item['n_items']!r}") from None
        if not math.isfinite(value):
            raise RecipeError(f"{at}: value {value} is not finite")
        if item["locale"] not in test_locales:
            raise RecipeError(f"{at}: locale {item['locale']!r} is not among the test locales {list(test_locales)}")
        extra = {k: v for k, v in item.items() if k not in EVALUATION_KEYS}
        if task.transform != "none":
            extra[task.metric] = value
        out.append(Evaluation(str(item["locale"]), task.cltm_metric, task.to_cltm(value), n_items, extra))
    return out


def _train_set(train_csv: Sequence[str]) -> list[dict[str, str]]:
    """The train set from the manifests' locale and subset columns (first row of each)."""
    import csv

    out = []
    for path in train_csv:
        with open(path, newline="", encoding="utf-8") as handle:
            row = next(csv.DictReader(handle), None)
        if row is None:
            raise RecipeError(f"{path}: an empty manifest")
        out.append({"locale": row["locale"], "subset": row["subset"]})
    return out


def _test_locales(test_csv: Sequence[str]) -> list[str]:
    return [entry["locale"] for entry in _train_set(test_csv)]


def run_user_recipe(
    task: str | Task,
    overrides: dict | None = None,
    hparams_file: str | os.PathLike | None = None,
    *,
    run_id: str | None = None,
    kind: str = "single",
    run_opts: dict | None = None,
    in_grid: bool = False,
    **_: Any,
) -> RunRecord:
    """Run a recipe of one's own once (a subprocess, or its declared function) and return the
    record made from its ``metrics.json`` (the runner a plan of such a task uses)."""
    from cltm_sb.grid.plan import import_object
    from cltm_sb.recipe.data import check_label_column, data_hash_of, label_origin, require_files

    spec = get_task(task)
    overrides = dict(overrides or {})
    for key in ("train_csv", "test_csv", "output_folder"):
        if not overrides.get(key):
            raise RecipeError(f"task {spec.name!r}: the run needs {key}")
    train_csv, test_csv = as_path_list(overrides["train_csv"]), as_path_list(overrides["test_csv"])
    overrides["train_csv"], overrides["test_csv"] = train_csv, test_csv
    if "trials_csv" in overrides:
        overrides["trials_csv"] = as_path_list(overrides["trials_csv"])
    require_files([*train_csv, *test_csv])
    data_hash = data_hash_of([*train_csv, *test_csv])  # refuses mixed data sets before the recipe starts
    if spec.label_key is not None:  # the declared label column, before the recipe starts
        check_label_column([*train_csv, *test_csv], spec.label_key, label_origin(spec, spec.label_key))
    output = Path(str(overrides["output_folder"]))
    output.mkdir(parents=True, exist_ok=True)
    metrics_path = output / METRICS_FILE
    if metrics_path.is_file():  # a stale file of an earlier attempt must not pass for this one's
        metrics_path.unlink()
    hparams = str(hparams_file or spec.hparams) if (hparams_file or spec.hparams) else None
    start = time.perf_counter()
    device = str((run_opts or {}).get("device", "cpu"))
    if spec.script is not None:
        args = command_line(spec, absolute_paths(overrides), hparams and _absolute(hparams))
        env = {**os.environ, "CLTM_DEVICE": device}
        logger.info("run %s: %s", run_id or output.name, " ".join(args))
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=Path(_absolute(spec.script)).parent, check=False)
        (output / RECIPE_LOG).write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RecipeError(
                f"the recipe {spec.script} exited with status {done.returncode} (its output is in "
                f"{output / RECIPE_LOG}); last lines:\n{tail}"
            )
        evaluations = read_metrics(metrics_path, spec, _test_locales(test_csv))
    else:
        function = import_object(str(spec.function))
        returned = function(overrides, hparams)
        if returned is None:
            evaluations = read_metrics(metrics_path, spec, _test_locales(test_csv))
        else:
            evaluations = evaluations_from(returned, spec, _test_locales(test_csv), f"{spec.function}()")
    return RunRecord(
        run_id=run_id or output.name,
        task=spec.name,
        kind=kind,
        train_set=_train_set(train_csv),
        seed=int(overrides.get("seed", 0)),
        evaluations=evaluations,
        config_hash=config_hash_for(spec, overrides, hparams),
        data_hash=data_hash,
        encoder={"source": spec.script or spec.function},
        code_version=cltm_sb.__version__,
        device=device,
        wall_time_s=round(time.perf_counter() - start, 3),
        extra={"recipe": spec.script or spec.function, "hparams": hparams, "output_folder": str(output)},
    )
