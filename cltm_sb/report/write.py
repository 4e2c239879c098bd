"""Write a grid's report folder, and the comparison of two grids.

:func:`cltm_sb.analysis.grid_analysis.analyze_grid` computes a grid's analysis once;
:func:`write_report` writes from it the matrix files of ``cltm matrix``, ``intervals.json``,
``donors.csv``, ``report.md`` (images beside it) and ``report.html`` (images inlined as base64
PNGs, so the page opens from disk without a server). :func:`write_comparison` sets two grids side
by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cltm_sb.analysis.diagnostics import write_matrix_csv
from cltm_sb.analysis.grid_analysis import GridAnalysis
from cltm_sb.analysis.summary import MATRIX_NOTES, write_matrix_folder
from cltm_sb.io import atomic_write, atomic_write_json, atomic_write_text
from cltm_sb.languages import PAPER_SUBSET, LanguageRegistry
from cltm_sb.report.document import comparison_blocks, difference, report_blocks
from cltm_sb.report.figures import plot_heatmap
from cltm_sb.report.render import render_html, render_markdown


def _subset_codes(analysis: GridAnalysis, subset: Sequence[str] | str | None) -> list[str] | None:
    if subset is None:
        return None
    if isinstance(subset, str):
        subset = (
            [c for c in PAPER_SUBSET if c in analysis.locales]
            if subset == "paper"
            else subset.split(",")
        )
    codes = list(subset)
    missing = [c for c in codes if c not in analysis.locales]
    if missing:
        raise ValueError(
            f"--subset: {', '.join(missing)} not in the grid's languages ({', '.join(analysis.locales)})"
        )
    if len(codes) < 2:
        raise ValueError(f"--subset needs at least two of the grid's languages, got {codes}")
    return codes


def write_report(
    analysis: GridAnalysis,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    subset: Sequence[str] | str | None = None,
    top_k: int = 5,
    heatmap: bool = True,
) -> dict[str, Path]:
    """Write the matrix files, heatmaps, ``intervals.json``, ``donors.csv``, ``report.md`` and ``report.html``.

    Args:
        subset: languages of a second, reduced heatmap (a list, a comma-separated string, or
            ``"paper"`` for the paper's 16 languages that the grid has).
        heatmap: draw the heatmaps (off: the numbers only, e.g. for timing).

    Returns:
        The main files written, by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    codes = _subset_codes(analysis, subset)  # a bad --subset fails before anything is written
    write_matrix_folder(
        analysis.result,
        analysis.diagnostics,
        registry,
        out,
        metadata=analysis.metadata,
        heatmap=heatmap,
    )
    images = {"CLTM, all languages": out / "cltm.png"} if heatmap else {}
    if codes and heatmap:
        plot_heatmap(
            analysis.result.matrix,
            registry,
            out / "cltm_subset.png",
            locales=codes,
            title=f"{analysis.title} (subset)",
            se=analysis.result.se,
        )
        images["CLTM, subset"] = out / "cltm_subset.png"
    intervals = atomic_write_json(out / "intervals.json", analysis.uncertainty.to_intervals_json())
    donors = analysis.donors
    atomic_write(
        out / "donors.csv", lambda tmp: donors.to_csv(tmp, index=False, float_format="%.6g")
    )
    blocks = report_blocks(analysis, registry, images, top_k=top_k)
    md = atomic_write_text(out / "report.md", render_markdown(blocks, out))
    page = atomic_write_text(out / "report.html", render_html(blocks, analysis.title))
    return {
        "markdown": md,
        "html": page,
        "donors": out / "donors.csv",
        "intervals": intervals,
        **images,
    }


def write_comparison(
    a: GridAnalysis,
    b: GridAnalysis,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    labels: tuple[str, str] = ("A", "B"),
) -> dict[str, Path]:
    """Write ``compare.md``, ``compare.html``, ``difference.csv`` and the difference heatmap."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    diff, se = difference(a, b)
    write_matrix_csv(diff, out / "difference.csv")
    write_matrix_csv(se, out / "difference_se.csv")
    plot_heatmap(diff, registry, out / "difference.png", title=f"{labels[0]} − {labels[1]}", se=se)
    images = {f"difference {labels[0]} − {labels[1]}": out / "difference.png"}
    summary = {
        label: {
            **g.metadata,
            "notes": MATRIX_NOTES,
            "diagnostics": g.diagnostics,
            "intervals": g.uncertainty.to_intervals_json(),
        }
        for label, g in zip(labels, (a, b))
    }
    atomic_write_json(out / "compare.json", summary)
    blocks = comparison_blocks(a, b, labels, images)
    md = atomic_write_text(out / "compare.md", render_markdown(blocks, out))
    page = atomic_write_text(
        out / "compare.html", render_html(blocks, f"{labels[0]} vs {labels[1]}")
    )
    return {"markdown": md, "html": page, "difference": out / "difference.csv"}
