"""Turn a folder of run records into the matrix folder that ``cltm matrix`` writes."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.diagnostics import diagnose, write_matrix_csv
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, CLTMResult, build_cltm
from cltm_sb.io import atomic_write, atomic_write_json
from cltm_sb.languages import LanguageRegistry
from cltm_sb.plots import plot_heatmap
from cltm_sb.results import RecordTable, load_records
from cltm_sb.tasks import get_task

logger = logging.getLogger(__name__)

MATRIX_FILES = ("cltm.csv", "cltm_se.csv", "relative.csv", "gains.csv", "diagnostics.json")

# (key in the diagnostics dictionary, label, shown as a percentage): the paper's Table 1 ...
TABLE1_ROWS = (
    ("rfd", "RFD (relative Frobenius deviation)", False),
    ("asymmetry", "relative asymmetry", False),
    ("prop_positive", "prop+", True),
    ("reciprocity_positive", "reciprocity+", True),
    ("row_cosine", "average row cosine", False),
    ("intra_family_positive", "intra-family+", True),
)
# ... and the stability figures of its §4.4.
STABILITY_ROWS = (
    ("se_median", "median SE of entries", False),
    ("se_mean", "mean SE of entries", False),
    ("rms_offdiag", "RMS of off-diagonal entries", False),
    ("self_gain_min", "min self-gain", False),
    ("self_gain_median", "median self-gain", False),
)
DIAGNOSTIC_ROWS = TABLE1_ROWS + STABILITY_ROWS


def format_value(value: Any, percent: bool = False, digits: int = 3) -> str:
    """A number for tables: ``n/a`` for missing or NaN, percentages with two decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not percent:
        return str(value)
    return f"{100 * float(value):.2f}%" if percent else f"{float(value):.{digits}f}"


def grid_metadata(task: str, table: pd.DataFrame, records: RecordTable, min_seeds: int) -> dict[str, Any]:
    """What a matrix was built from: task, hashes, seeds, records, failed and --debug runs."""
    spec = get_task(task)
    return {
        "task": task,
        "metric": spec.metric,
        "title": f"{spec.title} CLTM",
        "config_hash": str(table["config_hash"].iloc[0]),
        "data_hash": str(table["data_hash"].iloc[0]),
        "seeds": sorted(int(s) for s in table["seed"].unique()),
        "n_records": records.n_records,
        "n_failed_runs": records.n_failed,
        "failed_runs": [{"run_id": r.run_id, "error": r.error, "log": r.log_path} for r in records.failed],
        "n_debug_runs": records.n_debug,  # --debug runs: skipped like failed ones
        "min_seeds": min_seeds,
    }


def diagnose_result(result: CLTMResult, registry: LanguageRegistry) -> dict[str, Any]:
    """Diagnostics of a built CLTM, with the reasons for its NaN entries."""
    report = diagnose(
        result.matrix,
        families=registry.families(result.locales),
        se=result.se,
        gains=result.gains,
    )
    report["nan_reasons"] = result.reasons
    return report


def write_matrix_folder(
    result: CLTMResult,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    heatmap: bool = True,
) -> dict[str, Any]:
    """Write cltm.csv, cltm_se.csv, relative.csv, gains.csv, diagnostics.json (and cltm.png/pdf).

    Returns the diagnostics dictionary that was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_matrix_csv(result.matrix, out / "cltm.csv")
    write_matrix_csv(result.se, out / "cltm_se.csv")
    write_matrix_csv(result.relative, out / "relative.csv")
    write_matrix_csv(result.n_seeds, out / "n_seeds.csv")
    atomic_write(out / "gains.csv", lambda tmp: result.gains.to_csv(tmp, float_format="%.6g"))
    report = {**(metadata or {}), **diagnose_result(result, registry)}
    atomic_write_json(out / "diagnostics.json", report)
    if heatmap:
        title = (metadata or {}).get("title")
        plot_heatmap(result.matrix, registry, out / "cltm.png", title=title, se=result.se)
    return report


def matrix_from_records(
    records_dir: str | os.PathLike,
    task: str,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    config_hash: str | None = None,
    data_hash: str | None = None,
    locales: list[str] | None = None,
    heatmap: bool = True,
) -> tuple[CLTMResult, dict[str, Any]]:
    """Load records, build the CLTM of one task and configuration, and write its folder."""
    get_task(task)
    records = load_records(records_dir)
    table = records.select(task, config_hash=config_hash, data_hash=data_hash)
    if table.empty:
        raise ValueError(
            f"{records_dir}: no finished {task} runs ({records.n_records} records, "
            f"{records.n_failed} failed)"
        )
    codes = locales or sorted(set(table["eval_locale"]))
    registry.check(codes)
    result = build_cltm(table, locales=codes, min_seeds=min_seeds)
    metadata = grid_metadata(task, table, records, min_seeds)
    report = write_matrix_folder(result, registry, out_dir, metadata=metadata, heatmap=heatmap)
    return result, report
