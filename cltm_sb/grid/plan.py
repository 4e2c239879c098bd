"""The CLTM grid: which training runs a matrix needs, their stable ids, and where each run's files go.

A plan is plain data saved as ``<plan_dir>/plan.json`` (never pickle). For a target t and a donor s
the CLTM needs three kinds of runs per seed (DESIGN.md §1):

- ``single``: trained on a_t, evaluated on t;
- ``self``:   trained on a_t ∪ b_t, evaluated on t;
- ``pair``:   trained on a_t ∪ a_s, evaluated on t (cell M[t, s]) and, by default, on s as well
  (cell M[s, t]): L(L+3)/2 trainings per seed instead of the L(L+1) of one training per cell.

``one_run_per_cell=True`` gives the authors' protocol: one pair run per ordered (t, s), the union
ordered target first, evaluated on t only. ``donor_sets`` adds ``multi`` runs a_t ∪ a_s1 ∪ a_s2 ...
to check a ranked donor list by training on it.

:class:`cltm_sb.grid.layout.GridLayout` owns every file name of the grid folder.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cltm_sb.data.checks import require_valid_data
from cltm_sb.data.manifests import (
    PREPARE_FILE,
    TRIALS_FILE,
    certified_files,
    data_root_of,
    draw_folder,
    draw_hashes,
    no_manifests_problem,
    prepared_data_hash,
    read_prepare_info,
)
from cltm_sb.grid.layout import PLAN_FILE, GridLayout, PlanError, RunPaths
from cltm_sb.io import atomic_write_json, atomic_write_text, stable_hash
from cltm_sb.results import IDENTITY_VERSION
from cltm_sb.tasks import Task, check_task_name, get_packaged_task, get_task, task_from_mapping

logger = logging.getLogger(__name__)

PLAN_FORMAT = "cltm-plan"
PLAN_VERSION = 1
DEFAULT_RUNNER = "cltm_sb.recipe.run:run_recipe"
#: The default runner's path before it moved into cltm_sb.recipe: plans written then still run.
_MOVED_RUNNERS = {"cltm_sb.runner:run_recipe": DEFAULT_RUNNER}
#: The runner of a task whose recipe is the user's own (a script or a declared function).
USER_RUNNER = "cltm_sb.recipe.user:run_user_recipe"
#: The hparams the plan sets for each run (:meth:`Plan.run_overrides`) and the option that chooses
#: them: an override of one would be silently replaced, so it is refused and points there.
PLAN_SET_KEYS = {
    "seed": "--seeds (e.g. --seeds 42-51)",
    "train_csv": "--locales (and --targets, --donors, --donor-sets)",
    "test_csv": "--locales (and --targets)",
    "trials_csv": "--locales (trials.csv beside each test.csv)",
    "data_root": "--data (its prepare.json)",
    "output_folder": "--out (each run gets <out>/runs/<run_id>)",
}


# --------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid: a pure description, enough to run it anywhere.

    Attributes:
        run_id: stable id derived from the content (see :func:`run_id_for`).
        task: task code (``gr``, ``sv``).
        kind: ``single``, ``self``, ``pair`` or ``multi``.
        train: (locale, subset) pairs in training order (target first).
        eval_locales: languages the trained model is evaluated on.
        seed: random seed.
        config_hash: hash of the configuration (hparams minus per-run keys).
        draw: the data draw it trains on (0: ``<data>/<locale>/``; k: ``<data>/draw<k>/<locale>/``).
    """

    run_id: str
    task: str
    kind: str
    train: tuple[tuple[str, str], ...]
    eval_locales: tuple[str, ...]
    seed: int
    config_hash: str
    draw: int = 0

    @property
    def train_set(self) -> list[dict[str, str]]:
        """The train set in the records' form (list of {locale, subset}, training order)."""
        return [{"locale": loc, "subset": sub} for loc, sub in self.train]

    @property
    def target(self) -> str:
        """The first training language (the target of a single/self/multi run)."""
        return self.train[0][0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (the task and config hash live in the plan)."""
        out = {
            "run_id": self.run_id,
            "kind": self.kind,
            "train": [list(pair) for pair in self.train],
            "eval_locales": list(self.eval_locales),
            "seed": self.seed,
        }
        if self.draw:  # draw 0 is written as before draws existed
            out["draw"] = self.draw
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], task: str, config_hash: str) -> RunSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            run_id=str(data["run_id"]),
            task=task,
            kind=str(data["kind"]),
            train=tuple((str(a), str(b)) for a, b in data["train"]),
            eval_locales=tuple(str(x) for x in data["eval_locales"]),
            seed=int(data["seed"]),
            config_hash=config_hash,
            draw=int(data.get("draw", 0)),
        )


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def run_id_for(
    task: str,
    kind: str,
    train: Sequence[tuple[str, str]],
    eval_locales: Sequence[str],
    seed: int,
    config_hash: str,
    ordered: bool = False,
    draw: int = 0,
) -> str:
    """Stable id of a run: a readable prefix plus a content hash.

    The hash covers the task, the train set (sorted, or in training order when ``ordered`` — the
    one-run-per-cell protocol, where the two mirror runs differ in data order), the evaluated
    locales, the seed and the config hash. Example: ``pair-en+es-s42-1a2b3c4d5e6f``. A data draw
    k >= 1 enters the hash and the prefix (``pair-en+es-s42-d1-...``); draw 0 keeps the ids of plans
    made before draws existed.
    """
    train_key = [list(p) for p in train] if ordered else sorted([list(p) for p in train])
    content = {
        "task": task,
        "train": train_key,
        "ordered": bool(ordered),
        "eval": sorted(eval_locales),
        "seed": int(seed),
        "config_hash": config_hash,
    }
    if draw:
        content["draw"] = int(draw)
    locales: list[str] = []
    for loc, _ in train:
        if loc not in locales:
            locales.append(loc)
    shown = locales if ordered else sorted(locales)
    prefix = f"{kind}-{'+'.join(shown)}"
    if ordered and kind == "pair":
        prefix += f"-on-{'+'.join(eval_locales)}"
    shown_draw = f"-d{int(draw)}" if draw else ""
    return _safe(f"{prefix}-s{int(seed)}{shown_draw}-{stable_hash(content, length=12)}")


def trainings_per_seed(n_languages: int, one_run_per_cell: bool = False) -> int:
    """Trainings per seed of a full grid: L(L+3)/2 with pair sharing, L(L+1) without."""
    n = n_languages
    return n * (n + 1) if one_run_per_cell else n * (n + 3) // 2


def _pair_filter(pairs: Iterable[tuple[str, str]] | None, locales: Sequence[str], ordered: bool) -> set | None:
    """The wanted pair runs: frozensets (shared pairs) or (target, donor) tuples (one per cell)."""
    if pairs is None:
        return None
    wanted: set = set()
    for a, b in pairs:
        unknown = [c for c in (a, b) if c not in locales]
        if unknown:
            raise PlanError(f"pair {a},{b}: {unknown} not among --locales {list(locales)}")
        wanted.add((a, b) if ordered else frozenset((a, b)))
    return wanted


def plan_runs(
    task: str,
    locales: Sequence[str],
    seeds: Sequence[int],
    config_hash: str,
    *,
    one_run_per_cell: bool = False,
    targets: Sequence[str] | None = None,
    donors: Sequence[str] | None = None,
    donor_sets: Sequence[Sequence[str]] = (),
    draws: Sequence[int] = (0,),
    pairs: Iterable[tuple[str, str]] | None = None,
) -> list[RunSpec]:
    """The runs of a grid (pure: no files are read).

    ``pairs`` (a budgeted grid, ``cltm design``): only these pair runs, unordered pairs with pair
    sharing, (target, donor) cells with ``one_run_per_cell``.

    Every run is made once per (data draw, seed) of ``draws`` x ``seeds``.

    ``targets`` (rows) and ``donors`` (columns) default to every locale. Single and self runs are
    needed for the targets only. With pair sharing, the pair {t, s} is trained once and evaluated
    on each of t and s whose cell is wanted (t a target and s a donor, or the reverse).
    """
    task = task.name if isinstance(task, Task) else check_task_name(task)
    locales = list(dict.fromkeys(locales))
    if not locales:
        raise PlanError("no languages: pass --locales")
    if not seeds:
        raise PlanError("no seeds: pass --seeds")
    if len(set(seeds)) != len(seeds):
        raise PlanError(f"seeds repeat: {list(seeds)}")
    if not draws or len(set(draws)) != len(draws) or min(draws) < 0:
        raise PlanError(f"--draws {list(draws)}: give distinct draw numbers from 0 (e.g. --draws 0-2)")
    targets = list(dict.fromkeys(targets)) if targets else list(locales)
    donors = list(dict.fromkeys(donors)) if donors else list(locales)
    for name, chosen in (("targets", targets), ("donors", donors)):
        unknown = [c for c in chosen if c not in locales]
        if unknown:
            raise PlanError(f"--{name} {unknown} are not among --locales {locales}")
    sets: list[tuple[str, ...]] = []
    for donor_set in donor_sets:
        clean = tuple(dict.fromkeys(donor_set))
        unknown = [c for c in clean if c not in locales]
        if unknown:
            raise PlanError(f"--donor-sets {list(donor_set)}: {unknown} not among --locales {locales}")
        if len(clean) < 2:
            raise PlanError(f"--donor-sets {list(donor_set)}: a donor set needs two or more donors")
        sets.append(clean)

    wanted = _pair_filter(pairs, locales, one_run_per_cell)
    runs: list[RunSpec] = []

    def add(kind: str, train: list[tuple[str, str]], evals: list[str], seed: int, ordered: bool) -> None:
        run_id = run_id_for(task, kind, train, evals, seed, config_hash, ordered=ordered, draw=draw)
        runs.append(RunSpec(run_id, task, kind, tuple(train), tuple(evals), int(seed), config_hash, int(draw)))

    for draw, seed in itertools.product(draws, seeds):  # noqa: B007 - add() reads draw
        for t in targets:
            add("single", [(t, "a")], [t], seed, False)
            add("self", [(t, "a"), (t, "b")], [t], seed, False)
        if one_run_per_cell:
            for t in targets:
                for s in donors:
                    if s != t and (wanted is None or (t, s) in wanted):
                        add("pair", [(t, "a"), (s, "a")], [t], seed, True)
        else:
            for i, x in enumerate(locales):
                for y in locales[i + 1 :]:
                    if wanted is not None and frozenset((x, y)) not in wanted:
                        continue
                    evals = []
                    if x in targets and y in donors:
                        evals.append(x)
                    if y in targets and x in donors:
                        evals.append(y)
                    if evals:
                        first = evals[0]
                        other = y if first == x else x
                        add("pair", [(first, "a"), (other, "a")], evals, seed, False)
        for t in targets:
            for donor_set in sets:
                if t in donor_set:
                    continue
                train = [(t, "a")] + [(s, "a") for s in donor_set]
                add("multi", train, [t], seed, one_run_per_cell)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):  # pragma: no cover - would be a bug in the id
        raise PlanError("two runs of the plan share an id")
    return runs


# --------------------------------------------------------------------------------------------
# Plan


@dataclass
class Plan:
    """A grid of runs over one prepared data folder, task and configuration."""

    plan_dir: Path
    task: str
    data_dir: str
    data_hash: str
    data_root: str
    hparams_file: str | None
    overrides: dict[str, Any]
    config_hash: str
    seeds: list[int]
    locales: list[str]
    targets: list[str]
    donors: list[str]
    donor_sets: list[list[str]] = field(default_factory=list)
    one_run_per_cell: bool = False
    runner: str = DEFAULT_RUNNER
    runs: list[RunSpec] = field(default_factory=list)
    # What config_hash covers (cltm_sb.results.IDENTITY_VERSION); a plan.json without it is of 1.
    identity_version: int = IDENTITY_VERSION
    # The declaration of a task of one's own (cltm_sb.tasks), so that it runs and is analysed from
    # the plan alone; None: the packaged task of that name.
    task_declaration: dict[str, Any] | None = None
    # Data draws crossed with the seeds (DESIGN.md §9) and each draw's hash ("0": data_hash).
    draws: list[int] = field(default_factory=lambda: [0])
    draw_hashes: dict[str, str] = field(default_factory=dict)
    # A budgeted grid's record of its pairs (cltm_sb.grid.budget_record): the design or
    # pairs files, the planned fraction and the earlier budgets; None: a grid never budgeted.
    budget: dict[str, Any] | None = None

    @property
    def task_spec(self) -> Task:
        """The plan's :class:`~cltm_sb.tasks.Task`."""
        if self.task_declaration is not None:
            return task_from_mapping(self.task_declaration, f"{self.plan_file} (task_declaration)")
        return get_task(self.task)

    @property
    def runner_task(self) -> str | Task:
        """What the runner is called with: a packaged task's name, else the declaration itself."""
        spec = self.task_spec
        return self.task if spec.packaged and spec == get_packaged_task(self.task) else spec

    @property
    def layout(self) -> GridLayout:
        """The names of the plan's folder."""
        return GridLayout(self.plan_dir)

    @property
    def plan_file(self) -> Path:
        return self.layout.plan_file

    @property
    def records_dir(self) -> Path:
        return self.layout.records_dir

    def paths(self, run: RunSpec | str) -> RunPaths:
        """The :class:`RunPaths` of a run (or run id)."""
        return self.layout.run(run if isinstance(run, str) else run.run_id)

    def run(self, run_id: str) -> RunSpec:
        """The run called ``run_id``."""
        for spec in self.runs:
            if spec.run_id == run_id:
                return spec
        raise PlanError(f"{self.plan_file}: no run {run_id!r}")

    @property
    def n_trainings(self) -> int:
        return len(self.runs)

    def manifest(self, locale: str, subset: str, draw: int = 0) -> Path:
        """``<data_dir>/<locale>/<subset>.csv`` (draw k >= 1: ``<data_dir>/draw<k>/<locale>/...``)."""
        return draw_folder(self.data_dir, draw) / locale / f"{subset}.csv"

    def trials(self, locale: str, draw: int = 0) -> Path:
        """``<data_dir>/<locale>/trials.csv`` (draw k >= 1: under ``<data_dir>/draw<k>/``)."""
        return draw_folder(self.data_dir, draw) / locale / "trials.csv"

    def draw_hash(self, draw: int) -> str:
        """The hash of data draw ``draw`` (draw 0: the plan's data hash)."""
        return self.draw_hashes.get(str(draw)) or self.data_hash

    def needed_files(self) -> list[Path]:
        """Every manifest (and trial list) the plan's runs read."""
        files: dict[Path, None] = {}
        trials = self.task_spec.trials
        for spec in self.runs:
            for loc, sub in spec.train:
                files[self.manifest(loc, sub, spec.draw)] = None
            for loc in spec.eval_locales:
                files[self.manifest(loc, "test", spec.draw)] = None
                if trials:
                    files[self.trials(loc, spec.draw)] = None
        return list(files)

    def run_overrides(self, spec: RunSpec) -> dict[str, Any]:
        """The hparams overrides of one run: the plan's own plus manifests, seed and folder."""
        out = dict(self.overrides)
        out["train_csv"] = [str(self.manifest(loc, sub, spec.draw)) for loc, sub in spec.train]
        out["test_csv"] = [str(self.manifest(loc, "test", spec.draw)) for loc in spec.eval_locales]
        if self.task_spec.trials:
            out["trials_csv"] = [str(self.trials(loc, spec.draw)) for loc in spec.eval_locales]
        out["data_root"] = self.data_root
        out["seed"] = spec.seed
        out["output_folder"] = str(self.paths(spec).run_dir)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``plan.json`` (the folder itself is not stored)."""
        out = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "task": self.task,
            "data_dir": self.data_dir,
            "data_hash": self.data_hash,
            "data_root": self.data_root,
            "hparams_file": self.hparams_file,
            "overrides": self.overrides,
            "config_hash": self.config_hash,
            "identity_version": self.identity_version,
            # A task of one's own only: a packaged task's declaration is the package's.
            **({"task_declaration": self.task_declaration} if self.task_declaration is not None else {}),
            "seeds": list(self.seeds),
            "locales": list(self.locales),
            "targets": list(self.targets),
            "donors": list(self.donors),
            "donor_sets": [list(s) for s in self.donor_sets],
            "one_run_per_cell": self.one_run_per_cell,
            "runner": self.runner,
            # A budgeted grid only: plans of every pair are written as before budgets existed.
            **({"budget": self.budget} if self.budget is not None else {}),
            "n_trainings": self.n_trainings,
            "runs": [r.to_dict() for r in self.runs],
        }
        if self.draws != [0]:  # one draw: plan.json as before draws existed
            out["draws"], out["draw_hashes"] = list(self.draws), dict(self.draw_hashes)
        return out

    def save(self, families: str | os.PathLike | None = None) -> Path:
        """Write ``<plan_dir>/plan.json`` atomically; with ``families`` (a ``code,name,family``
        CSV that lists the plan's locales) first copy it into the grid folder, where every later
        command that reads the grid finds it without ``--families``."""
        if families is not None:
            from cltm_sb.languages import read_registry_csv

            read_registry_csv(families).check(self.locales)
            text = Path(families).read_text(encoding="utf-8")
            atomic_write_text(self.layout.families_file, text)
        return atomic_write_json(self.plan_file, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], plan_dir: str | os.PathLike) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise PlanError(f"{plan_dir}: not a cltm plan (format {data.get('format')!r})")
        if data.get("version") != PLAN_VERSION:
            raise PlanError(
                f"{plan_dir}: plan version {data.get('version')} (this cltm reads {PLAN_VERSION}); "
                f"make the plan again: `cltm plan ... -o {plan_dir} --force` (its records stay)"
            )
        task, chash = str(data["task"]), str(data["config_hash"])
        return cls(
            plan_dir=Path(plan_dir),
            task=task,
            data_dir=str(data["data_dir"]),
            data_hash=str(data["data_hash"]),
            data_root=str(data["data_root"]),
            hparams_file=data.get("hparams_file"),
            overrides=dict(data.get("overrides") or {}),
            config_hash=chash,
            seeds=[int(s) for s in data["seeds"]],
            locales=[str(x) for x in data["locales"]],
            targets=[str(x) for x in data["targets"]],
            donors=[str(x) for x in data["donors"]],
            donor_sets=[[str(x) for x in s] for s in data.get("donor_sets") or []],
            one_run_per_cell=bool(data.get("one_run_per_cell", False)),
            runner=_MOVED_RUNNERS.get(str(data.get("runner")), str(data.get("runner") or DEFAULT_RUNNER)),
            runs=[RunSpec.from_dict(r, task, chash) for r in data["runs"]],
            identity_version=int(data.get("identity_version", 1)),
            task_declaration=data.get("task_declaration"),
            draws=[int(d) for d in data.get("draws") or [0]],
            draw_hashes={str(k): str(v) for k, v in (data.get("draw_hashes") or {}).items()},
            budget=data.get("budget"),
        )

    def identity_note(self) -> str | None:
        """One line for ``cltm status`` about a plan of an older identity version (else None)."""
        if self.identity_version >= IDENTITY_VERSION:
            return None
        return (
            f"this plan and its records are of configuration identity version {self.identity_version} "
            f"(config_hash without the encoder's weights; this cltm records version {IDENTITY_VERSION}): "
            "its records are read as they are; `cltm run` will not add to it (re-plan with "
            "`cltm plan ... --force` to retrain under the new identity)"
        )

    def require_current_config(self) -> None:
        """Refuse to train under a configuration that is no longer the plan's (:class:`PlanError`).

        The runner's ``config_hash_for`` hashes the hparams file, plan.json's overrides and the
        encoder's identity now, without training, so that an edit since ``cltm plan`` fails at once
        rather than after each run has trained in full.
        """
        now = str(config_hash_function(self.runner)(self.runner_task, self.overrides, self.hparams_file))
        if now != self.config_hash:
            raise PlanError(config_changed(self, now, "the configuration's"))

    def require_current_data(self) -> None:
        """Refuse to train on data that is no longer the plan's (:class:`PlanError`).

        Every run records the data hash of the manifests it reads, and a record of other data
        than the plan's never counts as done: without this check each ``cltm run`` would train
        every run in full again after the manifests changed (own data: any edit of a CSV).
        """
        data_dir = Path(self.data_dir)
        if not data_dir.is_dir():
            raise PlanError(
                f"{self.plan_file}: its prepared data folder {data_dir} is gone; restore it, or make "
                "the plan again on another one (`cltm plan --data ... --force`)"
            )
        try:
            now = prepared_data_hash(data_dir)
            draws = draw_hashes(data_dir, self.draws, now) if self.draws != [0] else {}
        except ValueError as error:
            raise PlanError(f"{self.plan_file}: its data cannot be used: {error}") from error
        changed = [(0, now, self.data_hash)] if now != self.data_hash else []
        changed += [(d, h, self.draw_hash(d)) for d, h in draws.items() if d and h != self.draw_hash(d)]
        if changed:
            draw, found, planned = changed[0]
            where = draw_folder(data_dir, draw)
            raise PlanError(
                f"{where}: its data hash is {found}, not the plan's {planned}: its manifests (or "
                f"{PREPARE_FILE}) changed since `cltm plan`, and no run on them would count for "
                f"{self.plan_file}; nothing was run. Restore them, or make the plan again "
                "(`cltm plan ... --force`: runs of the new data train again)"
            )

    def require_current_identity(self, n_unfinished: int) -> None:
        """Refuse to run an old plan's unfinished runs: say what keeping and retraining mean.

        A plan of an older identity version has a config_hash that today's runner no longer
        computes (it adds the encoder's identity), so a run would be recorded under another
        configuration. Neither silently retraining everything nor silently mixing is right: the
        user chooses.
        """
        if self.identity_version >= IDENTITY_VERSION:
            return
        raise PlanError(
            f"{self.plan_file}: this plan and its records are of configuration identity version "
            f"{self.identity_version} (their config_hash leaves out the encoder's weights); this "
            f"cltm records version {IDENTITY_VERSION}, so its {n_unfinished} unfinished run(s) "
            "would not belong to this plan. Nothing was run. Either keep the finished records as "
            "they are (`cltm status`, `cltm matrix` and `cltm report` read them), or re-plan and "
            f"retrain the whole grid: `cltm plan ... -o {self.plan_dir} --force` with the same "
            "arguments (new run ids; the old records stay in records/, reported as version "
            f"{self.identity_version})"
        )


def config_changed(plan: Plan, found: str, whose: str) -> str:
    """The one line that says ``found`` (``whose`` config hash) is not the plan's and what to do."""
    hparams = plan.hparams_file or "the task's packaged hparams"
    return (
        f"{plan.plan_file}: {whose} config hash {found} is not the plan's {plan.config_hash}: the "
        f"hparams ({hparams}), the overrides in plan.json or the encoder's weights changed since "
        "`cltm plan` (or the runner's config_hash_for disagrees with it); restore them, or make "
        "the plan again (`cltm plan ... --force`)"
    )


def check_replace(old: Plan, new: Plan) -> None:
    """Refuse to replace ``old`` by a plan of another task, configuration or data (``--force`` does).

    An old plan of an earlier identity version always differs in config_hash; the message says so
    rather than suggesting the hparams changed.
    """
    if old.identity_version < new.identity_version:
        raise PlanError(
            f"{old.plan_file} holds a plan of configuration identity version {old.identity_version} "
            f"(its config_hash leaves out the encoder's weights); pass --force to re-plan it under "
            f"version {new.identity_version} (every run trains again under a new id; the old records "
            "stay in records/ and are still read as they are), or choose another --out folder"
        )
    if (old.task, old.config_hash, old.data_hash) != (new.task, new.config_hash, new.data_hash):
        raise PlanError(
            f"{old.plan_file} holds a plan of another task, configuration or data set; "
            "choose another --out folder, or pass --force to replace it (old records stay)"
        )
    if old.one_run_per_cell != new.one_run_per_cell:
        # The same cells under other run ids: trained twice, and the two records of one cell make
        # the grid's matrix a duplicate that `cltm matrix` and `cltm complete` refuse.
        was = "with one run per cell" if old.one_run_per_cell else "with shared pair runs"
        flag = "pass --one-run-per-cell as before" if old.one_run_per_cell else "drop --one-run-per-cell"
        raise PlanError(
            f"{old.plan_file} was planned {was}; re-planning it with the other protocol would train its "
            f"finished cells again and leave two records of each: {flag}, or choose another --out folder"
        )
    kept = {spec.run_id for spec in new.runs}
    dropped = [spec.run_id for spec in old.runs if spec.run_id not in kept and old.paths(spec).record.is_file()]
    if dropped:
        # Their records would still be read as measured while plan.json no longer lists them.
        raise PlanError(
            f"{old.plan_file}: the new plan leaves out {len(dropped)} finished run(s) of the old one "
            f"({', '.join(dropped[:3])}{', ...' if len(dropped) > 3 else ''}); a grid grows, it does not "
            "shrink: plan them too (e.g. `--pairs old.csv --pairs more.csv`, the same --seeds and "
            "--locales), choose another --out folder, or pass --force (their records stay and are read)"
        )


def load_plan(path: str | os.PathLike) -> Plan:
    """Read a plan from its folder or from its ``plan.json``."""
    path = Path(path)
    plan_file = path if path.is_file() else path / PLAN_FILE
    if not plan_file.is_file():
        raise FileNotFoundError(f"{plan_file}: no plan here; make one with `cltm plan`")
    # `--force`: without it `cltm plan` reads the plan it would replace, and refuses it again.
    again = f"make it again: `cltm plan ... -o {plan_file.parent} --force` with its arguments (its records stay)"
    try:
        data = json.loads(plan_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return Plan.from_dict(data, plan_file.parent)
    except PlanError:
        raise
    except (ValueError, KeyError, TypeError) as error:  # a truncated or hand-edited file
        raise PlanError(f"{plan_file}: not a valid plan ({type(error).__name__}: {error}); {again}") from error


def import_object(path: str) -> Any:
    """Import ``"package.module:attribute"``; the error names the path and what is wrong."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise PlanError(f"runner {path!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise PlanError(f"runner {path!r}: cannot import {module_name} ({error})") from error
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PlanError(f"runner {path!r}: {module_name} has no {attr!r}") from None


def config_hash_function(runner: str) -> Callable[..., str]:
    """``config_hash_for(task, overrides, hparams_file)`` from the runner's module."""
    return import_object(f"{runner.partition(':')[0]}:config_hash_for")


def config_check_function(runner: str) -> Callable[..., Any] | None:
    """``check_config(task, overrides, hparams_file)`` from the runner's module, if it has one.

    It refuses a configuration that cannot train (``cltm_sb.recipe.run.check_config``); a runner of
    the user's may leave it out.
    """
    name = runner.partition(":")[0]
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        raise PlanError(f"runner {runner!r}: cannot import {name} ({error})") from error
    return getattr(module, "check_config", None)


def refuse_plan_set_keys(overrides: Mapping[str, Any]) -> None:
    """An override of a key the plan sets per run (:data:`PLAN_SET_KEYS`) names its option."""
    for key, option in PLAN_SET_KEYS.items():
        if key in overrides:
            raise PlanError(f"--override {key}=...: the plan sets {key} for each run; use {option}")


def read_prepared(data_dir: str | os.PathLike) -> tuple[str, str]:
    """(data_hash, data_root) of a prepared folder, from its ``prepare.json``.

    A folder of manifests without ``prepare.json`` (own data) gets a hash of its CSV files and
    its own path as data root. A folder that an unfinished ``cltm prepare`` left, or whose
    manifests changed since ``prepare.json`` was written, is a :class:`PlanError` naming the file.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such prepared data folder; run `cltm prepare` first")
    try:
        info = read_prepare_info(data_dir)
        data_hash = prepared_data_hash(data_dir)
    except ValueError as error:
        raise PlanError(str(error)) from error
    if info is None:
        empty = no_manifests_problem(data_dir)
        if empty:
            raise PlanError(empty)
        logger.warning("%s has no %s: hashing its manifests instead", data_dir, PREPARE_FILE)
    return data_hash, str(data_root_of(data_dir, info))


def check_prepared_balance(data_dir: Path, spec: Task) -> None:
    """Refuse data prepared for a task whose subsets are not balanced as ``spec`` needs.

    Age-band manifests keep their gender column, so a GR grid on them would train and evaluate
    without complaint on subsets that are not gender-balanced. Data of a task that balances the
    same columns (GR on SV data) and own data without a known task pass.
    """
    prepared_task = (read_prepare_info(data_dir) or {}).get("task")
    if not prepared_task or prepared_task == spec.name:
        return
    try:
        prepared = get_task(str(prepared_task))
    except ValueError:  # a task declared by a YAML the plan cannot see: nothing to compare
        return
    lacking = [column for column in spec.balance if column not in prepared.balance]
    if lacking:
        raise PlanError(
            f"{data_dir} was prepared for task {prepared.name!r} (subsets balanced by "
            f"{', '.join(prepared.balance)}); task {spec.name!r} needs them balanced by "
            f"{', '.join(lacking)}: prepare a folder with `cltm prepare --task {spec.name}`"
        )


def make_plan(
    plan_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    task: str,
    locales: Sequence[str],
    seeds: Sequence[int],
    *,
    hparams_file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    one_run_per_cell: bool = False,
    targets: Sequence[str] | None = None,
    donors: Sequence[str] | None = None,
    donor_sets: Iterable[Sequence[str]] = (),
    runner: str = DEFAULT_RUNNER,
    config_hash: str | None = None,
    check_files: bool = True,
    draws: Sequence[int] = (0,),
    pairs: Iterable[tuple[str, str]] | None = None,
) -> Plan:
    """Build the plan of a grid (not saved: call :meth:`Plan.save`).

    ``draws`` are the data draws of ``data_dir`` (``cltm prepare --draws``) crossed with the seeds.

    The config hash comes from the runner's ``config_hash_for(task, overrides, hparams_file)``
    unless given. With ``check_files`` every manifest the runs need must exist and pass
    :func:`cltm_sb.data.checks.check_data` (a :class:`~cltm_sb.data.checks.DataCheckError` if not).
    """
    spec = get_task(task)
    if not spec.packaged and runner == DEFAULT_RUNNER:  # a recipe of the user's own
        runner = USER_RUNNER
        hparams_file = hparams_file or spec.hparams
    task = spec.name
    runner_task: str | Task = task if spec == get_packaged_task(task) else spec
    data_path = Path(data_dir).resolve()
    data_hash, data_root = read_prepared(data_path)
    check_prepared_balance(data_path, spec)
    try:
        hashes = draw_hashes(data_path, draws, data_hash) if list(draws) != [0] else {}
    except ValueError as error:
        raise PlanError(str(error)) from error
    overrides = dict(overrides or {})
    refuse_plan_set_keys(overrides)
    hparams = str(Path(hparams_file).resolve()) if hparams_file else None
    check = config_check_function(runner)
    if check is not None:  # every hparam value and the encoder, before the plan is written
        check(runner_task, overrides, hparams)
    if config_hash is None:
        config_hash = str(config_hash_function(runner)(runner_task, overrides, hparams))
    donor_sets = [list(s) for s in donor_sets]
    runs = plan_runs(
        task,
        locales,
        seeds,
        config_hash,
        one_run_per_cell=one_run_per_cell,
        targets=targets,
        donors=donors,
        donor_sets=donor_sets,
        draws=[int(d) for d in draws],
        pairs=pairs,
    )
    plan = Plan(
        plan_dir=Path(plan_dir),
        task=task,
        data_dir=str(data_path),
        data_hash=data_hash,
        data_root=data_root,
        hparams_file=hparams,
        overrides=overrides,
        config_hash=config_hash,
        seeds=[int(s) for s in seeds],
        locales=list(dict.fromkeys(locales)),
        targets=list(dict.fromkeys(targets or locales)),
        donors=list(dict.fromkeys(donors or locales)),
        donor_sets=donor_sets,
        one_run_per_cell=one_run_per_cell,
        runner=runner,
        runs=runs,
        task_declaration=None if runner_task == task else spec.to_dict(),
        draws=[int(d) for d in draws],
        draw_hashes={str(d): h for d, h in hashes.items()},
    )
    if check_files:
        missing = [str(p) for p in plan.needed_files() if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise PlanError(
                f"{data_path}: missing manifests {shown}; prepare these languages with "
                "`cltm prepare` or leave them out of --locales"
            )
        certified = certified_files(data_path)
        for draw in plan.draws:  # each draw's prepare.json certifies its own manifests
            if draw and certified is not None:
                certified |= certified_files(draw_folder(data_path, draw)) or set()
        foreign = [str(p) for p in plan.needed_files() if certified is not None and p not in certified]
        if foreign:
            raise PlanError(
                f"{foreign[0]} is not among the manifests {data_path / PREPARE_FILE} certifies "
                "(added by hand after `cltm prepare`?); prepare that language with `cltm prepare` "
                "or leave it out of --locales"
            )
        # Bad rows, audio, trial IDs or speakers fail here, in seconds, not after training.
        listing = f"`cltm validate {data_path}` lists them all"
        require_valid_data(plan.needed_files(), plan.data_root, listing)
        if spec.label_key is not None:  # a declared label column the manifests lack fails every run
            from cltm_sb.recipe.data import check_label_column, label_origin

            manifests = [p for p in plan.needed_files() if p.name != TRIALS_FILE]
            try:
                check_label_column(manifests, spec.label_key, label_origin(spec, spec.label_key),
                                   spec.label_classes)
            except ValueError as error:
                raise PlanError(str(error)) from None
    return plan
