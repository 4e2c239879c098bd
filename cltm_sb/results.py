"""Result records: one JSON file per training run, and the loader that turns a folder of them
into a tidy table (DESIGN.md §6).

A record holds one evaluation per evaluated language: a pair run trained on a_t ∪ a_s is
evaluated on both t and s. The loader groups records by (task, config_hash, data_hash) so that a
matrix never mixes configurations, skips (and counts) failed runs, and refuses duplicates.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cltm_sb.grid.layout import GridLayout
from cltm_sb.io import OUTPUTS_MANIFEST, atomic_write_json, stable_hash
from cltm_sb.tasks import check_task_name

logger = logging.getLogger(__name__)

RECORD_VERSION = 1
# What a config_hash covers (DESIGN.md §6). 1: the resolved hparams minus per-run keys. 2 (since
# 2026-12-01): that plus the encoder's identity (weights SHA-256 or hub revision), so two
# checkpoints under one encoder name never share a configuration. Run ids derive from the
# config_hash, so a plan and its records carry the version they were made with; a record or plan
# without the field is of version 1.
IDENTITY_VERSION = 2
RUN_KINDS = ("single", "self", "pair", "multi", "curve")
STATUSES = ("ok", "failed")
# Keys of the resolved hparams that change from run to run without changing the configuration.
PER_RUN_KEYS = frozenset(
    {
        "seed",
        "train_csv",
        "test_csv",
        "trials_csv",
        "output_folder",
        "save_folder",
        "train_log",
        "data_root",
        "device",
        "record_path",
        "run_id",
        "kind",
        "__set_seed",
    }
)


class RecordError(ValueError):
    """A record or a folder of records that cannot be used as asked."""


@dataclass
class Evaluation:
    """The metric of one trained model on one language's test set."""

    locale: str
    metric: str
    value: float
    n_items: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord:
    """Everything known about one training run (DESIGN.md §6)."""

    run_id: str
    task: str
    kind: str
    train_set: list[dict[str, str]]
    seed: int
    status: str = "ok"
    evaluations: list[Evaluation] = field(default_factory=list)
    config_hash: str = ""
    data_hash: str = ""
    encoder: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    threads: int | None = None
    device: str = ""
    wall_time_s: float | None = None
    error: str | None = None
    log_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION
    identity_version: int = IDENTITY_VERSION
    # A SpeechBrain ``--debug`` run (a few batches): kept for inspection, never in a matrix.
    debug: bool = False
    # The data draw trained on (DESIGN.md §9): 0 is ``<prepared>/<locale>/``, k >= 1
    # ``<prepared>/draw<k>/<locale>/``; data_hash names the prepared data set (draw 0's hash, the same
    # for every draw) and draw_hash the draw itself ("" in records made before draws: draw 0's).
    draw: int = 0
    draw_hash: str = ""

    def __post_init__(self) -> None:
        check_task_name(self.task)  # a task of one's own need not be declared where records are read
        if self.kind not in RUN_KINDS:
            raise RecordError(f"run {self.run_id}: unknown kind {self.kind!r}; valid: {RUN_KINDS}")
        if self.status not in STATUSES:
            raise RecordError(f"run {self.run_id}: unknown status {self.status!r}; valid: {STATUSES}")
        self.train_set = normalize_train_set(self.train_set)
        self.evaluations = [
            e if isinstance(e, Evaluation) else Evaluation(**e) for e in self.evaluations
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Build a record from its dictionary form; unknown keys go to ``extra``."""
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        unknown = {k: v for k, v in data.items() if k not in known}
        if unknown:
            kwargs.setdefault("extra", {}).update(unknown)
        missing = {"run_id", "task", "kind", "train_set", "seed"} - set(kwargs)
        if missing:
            raise RecordError(f"record is missing the fields {sorted(missing)}")
        kwargs.setdefault("identity_version", 1)  # written before the field existed
        return cls(**kwargs)


def normalize_train_set(train_set: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Sorted, de-duplicated list of {locale, subset} dictionaries."""
    pairs = sorted({(str(item["locale"]), str(item["subset"])) for item in train_set})
    return [{"locale": locale, "subset": subset} for locale, subset in pairs]


def train_set_key(train_set: Iterable[Mapping[str, str]]) -> str:
    """A canonical string for a train set, e.g. ``en:a+es:a``."""
    return "+".join(f"{d['locale']}:{d['subset']}" for d in normalize_train_set(train_set))


#: Keys of the resolved hparams that say how a run is carried out, not what it trains: the
#: checkpointer and train logger (objects over per-run paths), how often they write, and the
#: recipe name (the record's task says it).
OPERATIONAL_KEYS = frozenset(
    {"recipe", "checkpointer", "train_logger", "ckpt_interval_minutes", "heartbeat_minutes"}
)


def config_hash(
    resolved_hparams: Mapping[str, Any], encoder_identity: Mapping[str, Any] | None = None
) -> str:
    """Hash of a configuration, ignoring the keys that change per run (seed, paths, device).

    With ``encoder_identity`` (:func:`cltm_sb.recipe.encoders.encoder_identity`) the hash is of identity
    version 2 (:data:`IDENTITY_VERSION`): the same hparams over other starting weights are another
    configuration. Without it, the hparams alone (version 1).
    """
    kept = _identity_spelling(
        _plain({k: v for k, v in resolved_hparams.items() if k not in PER_RUN_KEYS | OPERATIONAL_KEYS})
    )
    kept = _without_earlier_defaults(kept)
    if encoder_identity is None:
        return stable_hash(kept)
    return stable_hash({"hparams": kept, "encoder_identity": _plain(encoder_identity)})


def _earlier_defaults(kept: Mapping[str, Any]) -> dict[str, Any]:
    """Keys the YAMLs gained after identity version 2, at the values the code then used implicitly.

    The recipes' loader options, pooling depth and dynamic-batch sampler moved from Python into
    the YAMLs; at these values a configuration trains exactly as before, so it keeps its hash (a
    grid planned earlier stays one configuration). Any other value is hashed.
    """
    return {
        "pool_layers": 1,
        "train_dataloader_opts": {
            "batch_size": kept.get("batch_size"), "num_workers": kept.get("num_workers"), "shuffle": True,
        },
        "test_dataloader_opts": {"batch_size": kept.get("test_batch_size")},
        "dynamic_batch_sampler": {
            "batch_ordering": "random", "max_batch_length": kept.get("max_batch_seconds"),
            "num_buckets": kept.get("num_buckets"), "shuffle": True,
        },
    }


def _without_earlier_defaults(kept: dict[str, Any]) -> dict[str, Any]:
    """``kept`` less the keys at their :func:`_earlier_defaults` values."""
    earlier = _earlier_defaults(kept)
    return {k: v for k, v in kept.items() if not (k in earlier and v == earlier[k])}


#: YAML tags of the recipe blocks that moved into :mod:`cltm_sb.recipe`; hashed in their old spelling
#: so that the move changed no configuration identity (plans and records made before it still match).
_MOVED_TAG = re.compile(r"^(![a-z_]+:)cltm_sb\.recipe\.(encoders|heads|brains|verification)\.")


def _identity_spelling(value: Any) -> Any:
    """``!new:cltm_sb.recipe.encoders.X`` hashed as ``!new:cltm_sb.encoders.X`` (see :data:`_MOVED_TAG`)."""
    if isinstance(value, dict):
        return {k: _identity_spelling(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_identity_spelling(v) for v in value]
    if isinstance(value, str):
        return _MOVED_TAG.sub(r"\1cltm_sb.\2.", value)
    return value


def _plain(value: Any) -> Any:
    """Reduce hparams values to JSON-stable data (objects become their type and repr)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def write_record(record: RunRecord, path: str | os.PathLike) -> Path:
    """Write a record atomically: readers never see a partial file."""
    return atomic_write_json(path, record.to_dict())


def read_record(path: str | os.PathLike) -> RunRecord:
    """Read one record; a broken file raises a RecordError that names it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: not a valid run record ({error}); delete it and rerun") from error
    except OSError as error:
        raise RecordError(f"{path}: cannot read this run record ({error.strerror or error})") from error
    if not isinstance(data, dict):
        raise RecordError(
            f"{path}: not a valid run record (a JSON {type(data).__name__}, expected an object); "
            "delete it and rerun"
        )
    try:
        return RunRecord.from_dict(data)
    except (TypeError, KeyError, ValueError, AttributeError) as error:
        raise RecordError(f"{path}: not a valid run record ({error}); delete it and rerun") from error


TABLE_COLUMNS = [
    "run_id",
    "task",
    "kind",
    "train_key",
    "train_locales",
    "seed",
    "eval_locale",
    "metric",
    "value",
    "n_items",
    "config_hash",
    "data_hash",
    "draw",
]


@dataclass
class RecordTable:
    """Records loaded from a folder: the tidy table of ok evaluations plus bookkeeping."""

    table: pd.DataFrame
    n_records: int
    n_failed: int
    failed: list[RunRecord]
    records: list[RunRecord]
    debug: list[RunRecord] = field(default_factory=list)

    @property
    def n_debug(self) -> int:
        """Records of ``--debug`` runs: counted, never in the table."""
        return len(self.debug)

    @property
    def older_identity(self) -> list[RunRecord]:
        """Records whose config_hash is of an older identity version (read as they are)."""
        return [r for r in self.records if r.identity_version < IDENTITY_VERSION]

    @property
    def groups(self) -> list[tuple[str, str, str]]:
        """The distinct (task, config_hash, data_hash) groups among ok records."""
        cols = ["task", "config_hash", "data_hash"]
        return [tuple(row) for row in self.table[cols].drop_duplicates().itertuples(index=False)]

    def select(
        self, task: str, config_hash: str | None = None, data_hash: str | None = None
    ) -> pd.DataFrame:
        """Evaluations of one task and configuration.

        Without hashes, the folder must hold exactly one (config_hash, data_hash) group for the
        task; otherwise the error names the groups found so the user can choose. A task absent
        from records of other tasks raises and names them.
        """
        check_task_name(task)
        sub = self.table[self.table["task"] == task]
        others = sorted(set(self.table["task"]) - {task})
        if sub.empty and others:  # a mistyped task: an empty table would fail later as "no evaluations"
            raise RecordError(f"no records of task {task!r}; these records are of {', '.join(map(repr, others))}")
        if config_hash is not None:
            sub = sub[sub["config_hash"] == config_hash]
        if data_hash is not None:
            sub = sub[sub["data_hash"] == data_hash]
        pairs = sub[["config_hash", "data_hash"]].drop_duplicates()
        if len(pairs) > 1:
            listed = "; ".join(
                f"config_hash={c} data_hash={d} ({int(((sub.config_hash == c) & (sub.data_hash == d)).sum())} evaluations)"
                for c, d in pairs.itertuples(index=False)
            )
            raise RecordError(
                f"records of task {task!r} mix configurations: {listed}. A matrix needs one; "
                "pass --config-hash/--data-hash or move the other records to another folder."
            )
        return sub.reset_index(drop=True)


def records_to_table(
    records: Iterable[RunRecord], sources: Sequence[str | os.PathLike] | None = None
) -> pd.DataFrame:
    """Tidy table with one row per (ok run, evaluated language); duplicates are an error.

    A duplicate is the same (task, config, data, train set, evaluated locale, seed, data draw) twice: it would
    count one seed twice in a mean; the error names the files (``sources``, one per record) or the
    run ids. ``--debug`` runs (a few batches) are left out like failed ones.
    """
    records = list(records)
    rows = []
    for index, record in enumerate(records):
        if record.status != "ok" or record.debug:
            continue
        # train_set is normalised (sorted, unique) when a record is made: join it as it is.
        key = "+".join(f"{d['locale']}:{d['subset']}" for d in record.train_set)
        locales = sorted({d["locale"] for d in record.train_set})
        for evaluation in record.evaluations:
            rows.append(
                {
                    "run_id": record.run_id,
                    "task": record.task,
                    "kind": record.kind,
                    "train_key": key,
                    "train_locales": "+".join(locales),
                    "seed": int(record.seed),
                    "eval_locale": evaluation.locale,
                    "metric": evaluation.metric,
                    "value": float(evaluation.value) if evaluation.value is not None else float("nan"),
                    "n_items": int(evaluation.n_items),
                    "config_hash": record.config_hash,
                    "data_hash": record.data_hash,
                    "draw": int(record.draw),
                    "_record": index,
                }
            )
    table = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, "_record"])
    key = ["task", "config_hash", "data_hash", "train_key", "eval_locale", "seed", "draw"]
    dup = table[table.duplicated(key, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        indices = dup[(dup[key] == first[key]).all(axis=1)]["_record"]
        where = (
            "the records " + " and ".join(str(sources[i]) for i in indices)
            if sources is not None
            else f"runs {sorted(records[i].run_id for i in indices)}"
        )
        raise RecordError(
            f"duplicate result: train set {first.train_key}, evaluated on {first.eval_locale}, "
            f"seed {first.seed}{f', data draw {first.draw}' if first.draw else ''} appears in "
            f"{where}; keep one record and delete the others"
        )
    return table.drop(columns="_record")


def load_records(folder: str | os.PathLike) -> RecordTable:
    """Load every ``*.json`` record in ``folder`` (or in ``folder/records`` for a grid folder).

    Failed runs and ``--debug`` runs are counted and skipped (logged); temporary files of writes
    in progress (``.*.tmp``) are ignored. Records of an older identity version (their
    config_hash leaves out the encoder's weights) are read as they are, grouped by their own
    config_hash, and reported once.
    """
    folder = Path(folder)
    layout = GridLayout(folder)
    if layout.records_dir.is_dir():
        folder = layout.records_dir
    elif layout.plan_file.is_file():
        # A planned grid whose runs have not finished: its plan is not a record to delete.
        raise FileNotFoundError(
            f"{folder}: no finished runs yet (no {layout.records_dir.name}/ folder); "
            f"run `cltm run {folder}` first"
        )
    elif (folder / OUTPUTS_MANIFEST).is_file():
        # A report's (or another command's) output folder: its JSON files are not records either.
        raise FileNotFoundError(
            f"{folder}: an output folder of cltm (a report, matrix or completion), not a grid; give "
            "the grid folder (with records/) or the folder of run records"
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of run records")
    # Sorted by name as plain strings: comparing Path objects costs seconds on 10,000 records.
    names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith("."))
    paths = [folder / name for name in names]
    records = [read_record(p) for p in paths]
    failed = [r for r in records if r.status != "ok"]
    for record in failed:
        logger.warning(
            "skipping failed run %s (%s); log: %s", record.run_id, record.error, record.log_path
        )
    debug = [r for r in records if r.debug and r.status == "ok"]
    for record in debug:
        logger.warning(
            "skipping run %s: a --debug run (a few batches only), never part of a matrix",
            record.run_id,
        )
    table = RecordTable(
        table=records_to_table(records, sources=paths),
        n_records=len(records),
        n_failed=len(failed),
        failed=failed,
        records=records,
        debug=debug,
    )
    if table.older_identity:
        logger.info(
            "%s: %d record(s) of configuration identity version 1 (their config_hash leaves out "
            "the encoder's weights); read as they are, never grouped with version %d records",
            folder, len(table.older_identity), IDENTITY_VERSION,
        )  # fmt: skip
    return table
