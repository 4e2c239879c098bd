"""The task table: every task-specific choice, declared in YAML, shared by prepare, runs and analysis.

A task is declared, not coded (DESIGN.md §3, §9). A declaration is a small YAML file::

    name: age                     # short code used on the command line and in records
    title: Age-group recognition  # for plots and reports (default: the name)
    recipe: age                   # a packaged recipe (cltm_sb/hparams/<recipe>.yaml), or a mapping:
    #   recipe: {script: train.py, hparams: my_task.yaml}   # a recipe of one's own (subprocess)
    #   recipe: {function: "my_pkg.train:run", hparams: my_task.yaml}   # called in-process
    metric: macro_f1              # the metric the recipe reports per locale
    higher_is_better: true        # false: the CLTM uses transform(value) (default 1 - value)
    transform: one_minus          # optional: one_minus | negate | none
    label: {column: age_band, classes: [30to49, 50plus, under30]}  # manifest column, fixed classes
    balance: [age_band]           # columns balanced within each prepared subset (gender, age_band)
    trials: false                 # true: scored through <locale>/trials.csv beside test.csv
    clips_per_speaker: 1          # the default K of `cltm prepare`

Relative paths in ``recipe`` are read from the declaration's folder. The packaged declarations
(``gr``, ``sv``, ``age``) live in ``cltm_sb/resources/tasks/``; another package adds its own
through the entry-point group ``cltm_sb.tasks`` (an entry that loads to a :class:`Task`, a
mapping in the form above, or the path of such a YAML file); anything else is a YAML path
(``cltm plan --task my_task.yaml``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

#: The entry-point group through which another package declares tasks.
ENTRY_POINT_GROUP = "cltm_sb.tasks"
#: The columns ``cltm prepare`` can balance within a subset (from Common Voice's gender and age).
BALANCE_KEYS = ("gender", "age_band")
#: Declared transforms of a lower-is-better metric into the CLTM's more-is-better value.
TRANSFORMS = {"none": lambda x: x, "one_minus": lambda x: 1.0 - x, "negate": lambda x: -x}
_TRANSFORM_PREFIX = {"none": "", "one_minus": "1-", "negate": "-"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
_KEYS = {
    "name", "title", "recipe", "metric", "higher_is_better", "transform", "label", "balance",
    "trials", "clips_per_speaker",
}  # fmt: skip
_RECIPE_KEYS = {"script", "hparams", "function"}


class TaskError(ValueError):
    """A task declaration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Task:
    """A paralinguistic task of the CLTM (one declaration).

    Attributes:
        name: short code used on the command line and in records (``gr``, ``sv``, ``age``).
        title: human-readable title for plots and reports.
        metric: the metric the recipe reports (``macro_f1``, ``auc``, ``eer`` ...).
        clips_per_speaker: default K written to prepare.json.
        recipe: packaged recipe name (``cltm_sb/hparams/<recipe>.yaml``), or None.
        script: path of a recipe of one's own (``python script hparams --key=value ...``).
        function: ``module:function`` of one's own, called in-process.
        hparams: the YAML given to ``script`` or ``function`` (optional for ``function``).
        higher_is_better: whether more of ``metric`` is better.
        transform: how the metric enters the CLTM (``none``, ``one_minus``, ``negate``).
        label_key: the manifest column holding the label.
        label_classes: the fixed, sorted class list (None: the training labels, e.g. speakers).
        balance: manifest columns balanced within each prepared subset.
        trials: the test set is scored through ``trials.csv`` beside ``test.csv``.
        source: where it was declared (named in errors).
    """

    name: str
    title: str
    metric: str
    clips_per_speaker: int = 1
    recipe: str | None = None
    script: str | None = None
    function: str | None = None
    hparams: str | None = None
    higher_is_better: bool = True
    transform: str = "none"
    label_key: str | None = None
    label_classes: tuple[str, ...] | None = None
    balance: tuple[str, ...] = ("gender",)
    trials: bool = False
    source: str = field(default="", compare=False)

    @property
    def packaged(self) -> bool:
        """Whether the task runs with a packaged recipe (:func:`cltm_sb.recipe.run.run_recipe`)."""
        return self.recipe is not None

    @property
    def cltm_metric(self) -> str:
        """The name of the value that enters the CLTM (``auc``; ``1-eer`` for a transformed EER)."""
        return f"{_TRANSFORM_PREFIX[self.transform]}{self.metric}"

    def to_cltm(self, value: float) -> float:
        """The recipe's metric value as the CLTM's more-is-better value."""
        return float(TRANSFORMS[self.transform](float(value)))

    def to_dict(self) -> dict[str, Any]:
        """The declaration as plain data, paths absolute (what a plan stores; read back by
        :func:`task_from_mapping`)."""
        recipe: str | dict[str, str] = self.recipe or {
            key: value
            for key, value in (("script", self.script), ("function", self.function), ("hparams", self.hparams))
            if value is not None
        }
        label: dict[str, Any] = {} if self.label_key is None else {"column": self.label_key}
        if self.label_classes is not None:
            label["classes"] = list(self.label_classes)
        return {
            "name": self.name, "title": self.title, "recipe": recipe, "metric": self.metric,
            "higher_is_better": self.higher_is_better, "transform": self.transform, "label": label,
            "balance": list(self.balance), "trials": self.trials,
            "clips_per_speaker": self.clips_per_speaker,
        }  # fmt: skip

    def hparams_overrides(self, keys: set[str] | frozenset[str]) -> dict[str, Any]:
        """The label keys a packaged recipe's YAML takes from the declaration (those it has)."""
        out: dict[str, Any] = {}
        if self.label_key is not None and "label_key" in keys:
            out["label_key"] = self.label_key
        if self.label_classes is not None and "label_classes" in keys:
            out["label_classes"] = list(self.label_classes)
        return out


def packaged_tasks_dir() -> Path:
    """Folder of the packaged declarations (``cltm_sb/resources/tasks``)."""
    return Path(__file__).resolve().parent / "resources" / "tasks"


def _fail(where: str, message: str) -> TaskError:
    return TaskError(f"{where}: {message}")


def _text(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _fail(where, f"{key} must be a non-empty text, got {value!r}")
    return value


def _path(value: Any, key: str, base: Path | None, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"recipe.{key} must be a path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise _fail(where, f"recipe.{key} {value!r}: file {path} not found")
    return str(path.resolve())


def task_from_mapping(data: Mapping[str, Any], where: str = "task declaration", base: str | os.PathLike | None = None) -> Task:
    """Check a declaration (the YAML's mapping) and return its :class:`Task`.

    ``base`` is the folder relative recipe paths are read from (the YAML's). Every problem raises
    a :class:`TaskError` that names ``where``, the key and what is valid.
    """
    if not isinstance(data, Mapping):
        raise _fail(where, f"expected a mapping of keys (name: ..., metric: ...), got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; valid keys: {', '.join(sorted(_KEYS))}")
    for key in ("name", "metric", "recipe"):
        if data.get(key) in (None, ""):
            raise _fail(where, f"set {key!r}")
    name = str(data["name"])
    if not _NAME.match(name):
        raise _fail(where, f"name {name!r} must start with a letter and hold only letters, digits, _ or - (40 at most)")
    metric = _text(data, "metric", where)
    title = _text(data, "title", where, name)
    base_dir = None if base is None else Path(base)
    recipe, script, function, hparams = _recipe(data["recipe"], where, base_dir)
    higher = data.get("higher_is_better", True)
    if not isinstance(higher, bool):
        raise _fail(where, f"higher_is_better must be true or false, got {higher!r}")
    transform = data.get("transform", "none" if higher else "one_minus")
    if transform not in TRANSFORMS:
        raise _fail(where, f"transform {transform!r}; valid: {', '.join(TRANSFORMS)}")
    if not higher and transform == "none":
        raise _fail(where, "a lower-is-better metric needs a transform (one_minus or negate) so that gains stay 'more is better'")
    label = data.get("label") or {}
    if not isinstance(label, Mapping) or set(map(str, label)) - {"column", "classes"}:
        raise _fail(where, f"label must be a mapping with 'column' and optional 'classes', got {label!r}")
    label_key = label.get("column")
    if label_key is not None and (not isinstance(label_key, str) or not label_key):
        raise _fail(where, f"label.column must be a column name, got {label_key!r}")
    classes = label.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
            raise _fail(where, f"label.classes must list two or more distinct classes, got {classes!r}")
        classes = tuple(str(c) for c in classes)
        if list(classes) != sorted(classes):
            raise _fail(where, f"label.classes must be sorted ({sorted(classes)}): every locale maps labels in sorted order")
    balance = data.get("balance", ["gender"])
    if isinstance(balance, str):
        balance = [balance]
    if not isinstance(balance, list) or not balance:
        raise _fail(where, f"balance must list one or more columns, got {balance!r}")
    trials = data.get("trials", False)
    if not isinstance(trials, bool):
        raise _fail(where, f"trials must be true or false, got {trials!r}")
    k = data.get("clips_per_speaker", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise _fail(where, f"clips_per_speaker must be a whole number of at least 1, got {k!r}")
    return Task(
        name=name, title=str(title), metric=str(metric), clips_per_speaker=k, recipe=recipe,
        script=script, function=function, hparams=hparams, higher_is_better=higher,
        transform=str(transform), label_key=label_key, label_classes=classes,
        balance=tuple(str(b) for b in balance), trials=trials, source=where,
    )  # fmt: skip


def _recipe(value: Any, where: str, base: Path | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(packaged recipe, script, function, hparams) of a declaration's ``recipe``."""
    if isinstance(value, str):
        from cltm_sb.recipe.hparams import hparams_dir

        if not (hparams_dir() / f"{value}.yaml").is_file():
            packaged = sorted(p.stem for p in hparams_dir().glob("*.yaml"))
            raise _fail(
                where,
                f"recipe {value!r} is not a packaged recipe ({', '.join(packaged)}); give a recipe of "
                "your own as recipe: {script: train.py, hparams: my.yaml} or {function: 'module:function'}",
            )
        return value, None, None, None
    if not isinstance(value, Mapping) or set(map(str, value)) - _RECIPE_KEYS:
        raise _fail(where, f"recipe must be a packaged name or a mapping of {sorted(_RECIPE_KEYS)}, got {value!r}")
    if ("script" in value) == ("function" in value):
        raise _fail(where, "recipe needs exactly one of 'script' (a train.py) and 'function' ('module:function')")
    script = _path(value["script"], "script", base, where) if "script" in value else None
    hparams = None if value.get("hparams") is None else _path(value["hparams"], "hparams", base, where)
    if script is not None:
        if hparams is None:
            raise _fail(where, "recipe.script needs recipe.hparams (the YAML given to it)")
        return None, script, None, hparams
    function = value["function"]
    if not isinstance(function, str) or function.count(":") != 1 or not all(function.split(":")):
        raise _fail(where, f"recipe.function must be 'package.module:function', got {function!r}")
    return None, None, function, hparams


def load_task_file(path: str | os.PathLike) -> Task:
    """Read and check a declaration YAML; errors name the file (and the line of a syntax error)."""
    from cltm_sb.recipe import RecipeError
    from cltm_sb.recipe.hparams import file_top_level

    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(f"task declaration {path} not found")
    try:
        data = file_top_level(path)
    except RecipeError as error:
        raise TaskError(str(error)) from None
    return task_from_mapping(_plain(data), str(path), path.resolve().parent)


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


@cache
def _packaged() -> dict[str, Task]:
    tasks = {}
    for path in sorted(packaged_tasks_dir().glob("*.yaml")):
        task = load_task_file(path)
        tasks[task.name] = task
    return tasks


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """The packaged tasks and those other packages declare (entry points), sorted."""
    return sorted(set(_packaged()) | set(_entry_points()))


def _from_entry_point(name: str, entry: Any) -> Task:
    where = f"entry point {name!r} of group {ENTRY_POINT_GROUP} ({entry.value})"
    try:
        loaded = entry.load()
    except Exception as error:  # noqa: BLE001 - any import failure is the package's, named here
        raise TaskError(f"{where}: cannot load ({type(error).__name__}: {error})") from error
    if isinstance(loaded, Task):
        task = loaded
    elif isinstance(loaded, Mapping):
        task = task_from_mapping(loaded, where)
    elif isinstance(loaded, (str, os.PathLike)):
        task = load_task_file(loaded)
    else:
        raise TaskError(f"{where}: loads a {type(loaded).__name__}; expected a Task, a mapping or a YAML path")
    if task.name != name:
        raise TaskError(f"{where}: declares task {task.name!r}, not {name!r}")
    return task


def is_task_file(value: str) -> bool:
    """Whether a ``--task`` value is a declaration file rather than a name."""
    return value.endswith((".yaml", ".yml")) or os.sep in value


def get_task(task: str | Task | Mapping[str, Any]) -> Task:
    """The task ``task`` names: a packaged one, an entry point's, or a declaration YAML's path.

    A :class:`Task` is returned as it is and a mapping is checked as a declaration (a plan's
    stored one). An unknown name raises a :class:`TaskError` (a ValueError) listing the valid ones.
    """
    if isinstance(task, Task):
        return task
    if isinstance(task, Mapping):
        return task_from_mapping(task)
    name = str(task)
    if is_task_file(name):
        return load_task_file(name)
    if name in _packaged():
        return _packaged()[name]
    entries = _entry_points()
    if name in entries:
        return _from_entry_point(name, entries[name])
    raise TaskError(
        f"unknown task {name!r}; valid tasks: {', '.join(task_names())}, or the path of a task "
        "declaration YAML (see the README, 'Tasks of your own')"
    )


def check_task_name(name: str) -> str:
    """A record's task name: any declared name (the declaration itself need not be at hand)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TaskError(f"task name {name!r} must start with a letter and hold only letters, digits, _ or -")
    return name


#: The help of every ``--task`` option (checked by the library, so a declaration file works too).
TASK_HELP = "task: gr, sv, age, a task another package declares, or the path of a task declaration YAML"


def get_packaged_task(name: str) -> Task | None:
    """The packaged task called ``name`` (None if there is none)."""
    return _packaged().get(name)
