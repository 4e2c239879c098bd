"""Three or more grids side by side (``cltm compare GR SV AGE``): the same diagnostics per grid,
and every pair of grids compared as ``cltm compare A B`` does (difference matrix and intervals).

Each grid's values come from its own analysis (computed once, :mod:`cltm_sb.analysis.grid_analysis`);
nothing is recomputed here. The intervals are each grid's calibrated ones (seeds only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cltm_sb.analysis.diagnostics import DIAGNOSTICS
from cltm_sb.analysis.grid_analysis import GridAnalysis
from cltm_sb.analysis.summary import format_value
from cltm_sb.io import atomic_write, atomic_write_text, writes_output_folder
from cltm_sb.languages import LanguageRegistry
from cltm_sb.report.document import PLUGIN_LABEL, diagnostic_interval_text

SIDE_BY_SIDE_CSV = "side_by_side.csv"
SIDE_BY_SIDE_MD = "side_by_side.md"


def pair_folder(label_a: str, label_b: str) -> str:
    """The sub-folder of one pair's comparison (``GR_vs_SV``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{label_a}_vs_{label_b}")


def side_by_side_frame(analyses: Sequence[GridAnalysis], labels: Sequence[str]) -> pd.DataFrame:
    """One row per (grid, diagnostic): estimate, calibrated interval, plug-in value.

    Plus the grid's task, metric, languages, seeds and the smallest self-gain, so that a
    diagnostic is read beside what it was computed from.
    """
    rows = []
    for label, analysis in zip(labels, analyses, strict=True):
        estimates = analysis.uncertainty.diagnostics
        gains = analysis.result.gains
        common = {
            "grid": label, "task": analysis.task, "metric": analysis.metric,
            "n_languages": len(analysis.locales), "n_seeds": len(analysis.uncertainty.seeds),
            "min_self_gain": float(gains["self_gain"].min()) if len(gains) else float("nan"),
            "n_flagged_targets": len(analysis.result.flagged_targets),
        }  # fmt: skip
        for d in DIAGNOSTICS:
            e = estimates.get(d.key)
            rows.append({
                **common, "diagnostic": d.key, "label": d.label,
                "estimate": None if e is None else e.point,
                "lower": None if e is None else e.lower, "upper": None if e is None else e.upper,
                "plugin": analysis.diagnostics.get(d.key),
            })  # fmt: skip
    return pd.DataFrame(rows)


def side_by_side_markdown(analyses: Sequence[GridAnalysis], labels: Sequence[str]) -> str:
    """The diagnostics table: one row per diagnostic, one column group per grid."""
    level = f"{analyses[0].uncertainty.level:.0%}"
    lines = [
        f"# {' vs '.join(labels)}", "",
        "Each grid's own analysis: estimate [" + level + " interval, seeds only]; "
        f"{PLUGIN_LABEL} in parentheses. Pairwise difference matrices are in the sub-folders.", "",
        "| | " + " | ".join(f"{lab} ({a.task}, {a.metric})" for lab, a in zip(labels, analyses)) + " |",
        "|---|" + "---|" * len(analyses),
        "| languages × seeds | " + " | ".join(
            f"{len(a.locales)} × {len(a.uncertainty.seeds)}" for a in analyses) + " |",
        "| smallest self-gain | " + " | ".join(
            format_value(float(a.result.gains["self_gain"].min())) for a in analyses) + " |",
    ]  # fmt: skip
    reasons: dict[str, list[str]] = {}  # why an interval is n/a: said once, under the table
    for d in DIAGNOSTICS:
        cells = []
        for label, a in zip(labels, analyses):
            e = a.uncertainty.diagnostics.get(d.key)
            plugin = format_value(a.diagnostics.get(d.key), d.fraction)
            if e is None:
                cells.append(f"({plugin})")
                continue
            if e.lower is None or e.upper is None:
                reasons.setdefault(e.reason or "not computed", []).append(f"{d.label} ({label})")
                interval = "[n/a]"
            else:
                interval = diagnostic_interval_text(e, d.fraction)
            cells.append(f"{format_value(e.point, d.fraction)} {interval} ({plugin})")
        lines.append(f"| {d.label} | " + " | ".join(cells) + " |")
    if reasons:
        lines += ["", "Intervals not given:"]
        lines += [f"- {', '.join(where)}: {reason}" for reason, where in reasons.items()]
    lines += ["", *(f"- [{a} vs {b}]({pair_folder(a, b)}/compare.md)" for a, b in _pairs(labels))]
    return "\n".join(lines) + "\n"


def _pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]


@writes_output_folder("out_dir", "compare")
def write_side_by_side(
    analyses: Sequence[GridAnalysis],
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    labels: Sequence[str],
) -> dict[str, Path]:
    """Write ``side_by_side.csv`` and ``.md`` and, per pair of grids, ``<A>_vs_<B>/`` as
    :func:`cltm_sb.report.write.write_comparison` writes it."""
    from cltm_sb.report.write import write_comparison

    if len(analyses) < 2 or len(labels) != len(analyses) or len(set(labels)) != len(labels):
        raise ValueError(f"give one distinct label per grid ({len(analyses)} grids), got {list(labels)}")
    out = Path(out_dir)  # the staging folder of writes_output_folder
    index = dict(zip(labels, analyses))
    for a, b in _pairs(labels):
        write_comparison(index[a], index[b], registry, out / pair_folder(a, b), labels=(a, b))
    frame = side_by_side_frame(analyses, labels)
    csv = atomic_write(out / SIDE_BY_SIDE_CSV, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
    md = atomic_write_text(out / SIDE_BY_SIDE_MD, side_by_side_markdown(analyses, labels))
    return {"csv": csv, "markdown": md}
