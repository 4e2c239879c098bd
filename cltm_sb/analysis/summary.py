"""Turn a folder of run records into the matrix folder that ``cltm matrix`` writes."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from cltm_sb.analysis.diagnostics import write_matrix_csv
from cltm_sb.analysis.grid_analysis import build_and_diagnose, load_grid
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, CLTMResult
from cltm_sb.io import atomic_write, atomic_write_json, writes_output_folder
from cltm_sb.languages import LanguageRegistry

logger = logging.getLogger(__name__)

MATRIX_FILES = ("cltm.csv", "cltm_se.csv", "relative.csv", "gains.csv", "diagnostics.json")
# What the numbers of diagnostics.json are, written beside them (DESIGN.md §8: the paper's
# plug-in values stay, labelled; the calibrated ones live in intervals.json).
DELTA_SE_NOTE = "delta method, runs assumed independent, as in the paper §4.4"
MATRIX_NOTES = {
    "diagnostics": "plug-in values (the paper's Table 1 estimators); the bias-corrected estimates "
    "and their calibrated 95% intervals are in intervals.json (cltm report)",
    "cltm_se": f"cltm_se.csv and se_median/se_mean: {DELTA_SE_NOTE} (not a calibrated interval)",
}


def format_value(value: Any, percent: bool = False, digits: int = 3) -> str:
    """A number for tables: ``n/a`` for missing or NaN, percentages with two decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not percent:
        return str(value)
    return f"{100 * float(value):.2f}%" if percent else f"{float(value):.{digits}f}"


@writes_output_folder("out_dir", "matrix")
def write_matrix_folder(
    result: CLTMResult,
    diagnostics: dict[str, Any],
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    heatmap: bool = True,
) -> dict[str, Any]:
    """Write cltm.csv, cltm_se.csv, relative.csv, n_seeds.csv, gains.csv, diagnostics.json (and cltm.png/pdf).

    ``diagnostics`` is the diagnosis of ``result`` already made (it is written, not recomputed).
    Returns the dictionary written to diagnostics.json.
    """
    out = Path(out_dir)  # the staging folder of writes_output_folder
    write_matrix_csv(result.matrix, out / "cltm.csv")
    write_matrix_csv(result.se, out / "cltm_se.csv")
    write_matrix_csv(result.relative, out / "relative.csv")
    write_matrix_csv(result.n_seeds, out / "n_seeds.csv")
    atomic_write(out / "gains.csv", lambda tmp: result.gains.to_csv(tmp, float_format="%.6g"))
    report = {**(metadata or {}), "notes": MATRIX_NOTES, **diagnostics}
    atomic_write_json(out / "diagnostics.json", report)
    if heatmap:
        # matplotlib: ~0.6 s of import, only when drawing
        from cltm_sb.report.figures import plot_heatmap

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
    data = load_grid(records_dir, registry, task, locales, config_hash, data_hash)
    result, diagnostics = build_and_diagnose(data, min_seeds)
    report = write_matrix_folder(
        result, diagnostics, registry, out_dir, metadata=data.metadata(min_seeds), heatmap=heatmap
    )
    return result, report
