"""A grid's analysis, computed once (DESIGN.md §3): records → table → CLTM → diagnostics → uncertainty.

Every command that reads a grid (``cltm matrix``, ``cltm report``, ``cltm compare``,
``cltm geometry``) loads it through :func:`load_grid`, so one set of filters decides which runs
count. :func:`analyze_grid` builds the matrix and diagnoses it once, then runs the calibrated
uncertainty core on the same table; the report and the comparison only read the
:class:`GridAnalysis` it returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cltm_sb.analysis.diagnostics import diagnose
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, CLTMResult, build_cltm
from cltm_sb.grid.layout import GridLayout, PlanError
from cltm_sb.languages import LanguageRegistry, load_registry
from cltm_sb.results import RecordTable, load_records
from cltm_sb.tasks import TaskError, check_task_name, get_task

if TYPE_CHECKING:  # the core imports scipy.stats (~0.6 s), which cltm matrix does not need
    from cltm_sb.analysis.uncertainty import UncertaintyResult

# Runs that make a CLTM; learning-curve and other runs in the same folder are left out.
CLTM_KINDS = ("single", "self", "pair")
PROTOCOL_SHARED = "shared pair runs"
PROTOCOL_PER_CELL = "one run per cell"


@dataclass
class GridData:
    """One task and configuration of a grid, as the analysis reads it.

    Attributes:
        source: the folder given (a plan folder or a folder of records).
        task: the task analysed.
        records: every record of the folder, with the failed and ``--debug`` bookkeeping.
        table: evaluations of the task's single, self and pair runs (one configuration).
        locales: languages and their order.
        families: their families (same order); None when loaded without a registry.
    """

    source: Path
    task: str
    records: RecordTable
    table: pd.DataFrame
    locales: list[str]
    families: list[str] | None

    def describe(self) -> tuple[str, str]:
        """(metric, title) of the task: from the plan's declaration, the task table, or else
        (a task of one's own analysed from its records alone) the records' metric and its name."""
        declaration = _plan_declaration(self.source, self.task)
        if declaration is not None:
            spec = get_task(declaration)
            return spec.cltm_metric, spec.title
        try:
            spec = get_task(self.task)
        except TaskError:
            metrics = sorted(set(self.table["metric"]))
            return ", ".join(metrics), self.task
        return spec.cltm_metric, spec.title

    def metadata(self, min_seeds: int) -> dict[str, Any]:
        """What a matrix was built from: task, hashes, seeds, records, failed and --debug runs."""
        metric, title = self.describe()
        records = self.records
        return {
            "task": self.task,
            "metric": metric,
            "title": f"{title} CLTM",
            "config_hash": str(self.table["config_hash"].iloc[0]),
            "data_hash": str(self.table["data_hash"].iloc[0]),
            "seeds": sorted(int(s) for s in self.table["seed"].unique()),
            "n_records": records.n_records,
            "n_failed_runs": records.n_failed,
            "failed_runs": [
                {"run_id": r.run_id, "error": r.error, "log": r.log_path} for r in records.failed
            ],
            "n_debug_runs": records.n_debug,  # --debug runs: skipped like failed ones
            "min_seeds": min_seeds,
            **_budget_note(self.source),
        }


def _budget_note(folder: Path) -> dict[str, str]:
    """``{"budget_note": ...}`` for a budgeted grid (the report warns with it), else ``{}``: its
    measured pairs' figures are not the whole matrix's."""
    from cltm_sb.grid.budget_record import partial_budget

    try:
        plan = GridLayout(folder).plan_fields()
    except PlanError:
        return {}
    budget = partial_budget((plan or {}).get("budget"))
    if not budget:
        return {}
    return {"budget_note": f"{budget}: every figure here is over the measured cells alone, not the CLTM's "
                           "(`cltm complete` gives the full matrix's estimates)"}


def _plan_declaration(folder: Path, task: str) -> dict[str, Any] | None:
    """The task declaration the plan in ``folder`` stores, when it is of ``task``."""
    try:
        plan = GridLayout(folder).plan_fields()
    except PlanError:
        return None
    declaration = (plan or {}).get("task_declaration")
    return declaration if isinstance(declaration, dict) and declaration.get("name") == task else None


def grid_registry(
    folder: str | os.PathLike, families_csv: str | os.PathLike | None = None
) -> LanguageRegistry:
    """The languages of a grid: ``families_csv`` when given, else the families file the grid was
    planned with (:attr:`GridLayout.families_file`), else the built-in registry."""
    if families_csv is None:
        kept = GridLayout(folder).families_file
        families_csv = kept if kept.is_file() else None
    return load_registry(families_csv)


def _plan_task(folder: Path) -> str | None:
    try:
        plan = GridLayout(folder).plan_fields()
    except PlanError:
        return None
    return plan.get("task") if plan else None


def load_grid(
    folder: str | os.PathLike,
    registry: LanguageRegistry | None,
    task: str | None = None,
    locales: Sequence[str] | None = None,
    config_hash: str | None = None,
    data_hash: str | None = None,
) -> GridData:
    """Load a grid's records and select one task's single, self and pair runs.

    ``task`` defaults to the plan's task or, without a plan, the only task in the records;
    ``locales`` to every evaluated language, sorted. With a registry, unknown language codes
    are an error that names them; without one (``cltm geometry`` needs no families) they are
    not checked.
    """
    folder = Path(folder)
    records = load_records(folder)
    tasks = sorted(set(records.table["task"]))
    task = task or _plan_task(folder) or (tasks[0] if len(tasks) == 1 else None)
    if task is None and not tasks:
        raise ValueError(f"{folder}: no finished runs ({records.n_records} records, {records.n_failed} failed); "
                         "run the grid first, or give the folder that holds its records")
    if task is None:
        raise ValueError(f"{folder}: records of several tasks ({', '.join(tasks)}); pass --task")
    check_task_name(task)
    table = records.select(task, config_hash=config_hash, data_hash=data_hash)
    table = table[table["kind"].isin(CLTM_KINDS)].reset_index(drop=True)
    if table.empty:
        raise ValueError(
            f"{folder}: no finished {task} single/self/pair runs ({records.n_records} records, "
            f"{records.n_failed} failed); run the grid first"
        )
    codes = list(locales) if locales else sorted(set(table["eval_locale"]))
    families = registry.families(codes) if registry is not None else None
    return GridData(folder, task, records, table, codes, families)


def build_and_diagnose(
    data: GridData, min_seeds: int = DEFAULT_MIN_SEEDS
) -> tuple[CLTMResult, dict[str, Any]]:
    """The CLTM of a loaded grid and its plug-in diagnostics (the paper's estimators), once."""
    result = build_cltm(data.table, locales=data.locales, min_seeds=min_seeds)
    report = diagnose(result.matrix, families=data.families, se=result.se, gains=result.gains)
    report["nan_reasons"] = result.reasons
    return result, report


def detect_protocol(folder: str | os.PathLike, pair_evaluations: Sequence[int]) -> tuple[str, str]:
    """(protocol, where it came from): ``plan.json``'s ``one_run_per_cell``, else the records.

    Without a plan, pair runs evaluated on both languages mean shared runs; pair runs that all
    evaluate one language mean one run per cell.
    """
    layout = GridLayout(folder)
    plan = layout.plan_fields()
    if plan is not None:
        protocol = PROTOCOL_PER_CELL if plan.get("one_run_per_cell") else PROTOCOL_SHARED
        return protocol, layout.plan_file.name
    if not pair_evaluations:
        return "unknown (no pair runs)", "records"
    shared = any(n > 1 for n in pair_evaluations)
    return (PROTOCOL_SHARED if shared else PROTOCOL_PER_CELL), "inferred from the records"


@dataclass
class GridAnalysis:
    """Everything the report shows about one grid, computed once.

    Attributes:
        result: the CLTM with the paper's delta-method SEs (``cltm_se.csv``), gains and NaN reasons.
        diagnostics: :func:`~cltm_sb.analysis.diagnostics.diagnose` of ``result`` (plug-in values).
        uncertainty: the calibrated core: bias-corrected diagnostics with intervals, Fieller
            intervals and BH verdicts of the cells, self-gain intervals.
    """

    source: Path
    task: str
    metric: str
    title: str
    result: CLTMResult
    diagnostics: dict[str, Any]
    uncertainty: UncertaintyResult
    families: list[str] | None
    protocol: str
    protocol_source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def locales(self) -> list[str]:
        return self.result.locales

    @cached_property
    def donors(self) -> pd.DataFrame:
        """donors.csv: per target, donors ranked by M (NaN last) with interval, verdict and q-value.

        Computed once and shared by the report and donors.csv: read it, do not modify it.
        """
        table = self.uncertainty.donors_table()
        order = {t: i for i, t in enumerate(self.locales)}
        table = table.assign(_target=table["target"].map(order)).sort_values(
            ["_target", "value"], ascending=[True, False], na_position="last", kind="stable"
        )
        table = table.drop(columns="_target").reset_index(drop=True)
        table.insert(0, "rank", table.groupby("target", sort=False).cumcount() + 1)
        return table


def analyze_loaded(
    data: GridData, min_seeds: int = DEFAULT_MIN_SEEDS, level: float | None = None
) -> GridAnalysis:
    """:func:`analyze_grid` on a grid already loaded."""
    from cltm_sb.analysis.uncertainty import (
        DEFAULT_LEVEL,
        analyze_uncertainty,
        name_undefined_reasons,
    )

    result, diagnostics = build_and_diagnose(data, min_seeds)
    uncertainty = analyze_uncertainty(
        data.table,
        locales=data.locales,
        families=data.families,
        min_seeds=min_seeds,
        level=DEFAULT_LEVEL if level is None else level,
        plugins=diagnostics,
    )
    uncertainty.verdict_reasons = name_undefined_reasons(uncertainty.verdict_reasons, data.locales, result.reasons)
    pair_evals = [
        len(r.evaluations)
        for r in data.records.records
        if r.status == "ok" and r.kind == "pair" and r.task == data.task
    ]
    protocol, protocol_source = detect_protocol(data.source, pair_evals)
    metric, title = data.describe()
    return GridAnalysis(
        data.source,
        data.task,
        metric,
        f"{title} CLTM",
        result,
        diagnostics,
        uncertainty,
        data.families,
        protocol,
        protocol_source,
        data.metadata(min_seeds),
    )


def analyze_grid(
    folder: str | os.PathLike,
    registry: LanguageRegistry,
    task: str | None = None,
    locales: Sequence[str] | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    level: float | None = None,
    config_hash: str | None = None,
    data_hash: str | None = None,
) -> GridAnalysis:
    """Load a grid and compute everything the report shows (see :func:`load_grid` for the defaults).

    ``level``: of the intervals, default the uncertainty core's (95%).
    """
    data = load_grid(folder, registry, task, locales, config_hash, data_hash)
    return analyze_loaded(data, min_seeds, level)
