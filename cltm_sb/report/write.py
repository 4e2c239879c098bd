"""Write a grid's report folder, and the comparison of two grids.

:func:`cltm_sb.analysis.grid_analysis.analyze_grid` computes a grid's analysis once;
:func:`write_report` writes from it the matrix files of ``cltm matrix``, ``intervals.json``,
``donors.csv``, the tables for a paper (``table1.csv``, ``table1.tex``, ``donors.tex``), the
figures (``cltm.png``/``.pdf`` with significance, ``forest/<target>.png``), ``report.md`` (images
beside it) and ``report.html`` (images inlined as base64 PNGs and an interactive heatmap, so the
page opens from disk without a server). :func:`write_comparison` sets two grids side
by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cltm_sb.analysis.compare import compare_uncertainty
from cltm_sb.analysis.diagnostics import write_matrix_csv
from cltm_sb.analysis.grid_analysis import GridAnalysis
from cltm_sb.analysis.summary import MATRIX_NOTES, write_matrix_folder
from cltm_sb.io import atomic_write, atomic_write_json, atomic_write_text, writes_output_folder
from cltm_sb.languages import PAPER_SUBSET, LanguageRegistry
from cltm_sb.report.document import (
    cell_table,
    comparison_blocks,
    difference,
    donors_latex,
    report_blocks,
    table1_frame,
    table1_latex,
)
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


def _row_reasons(analysis: GridAnalysis) -> dict[str, str]:
    """Why each undefined target's row is NaN (for a figure that would otherwise be empty)."""
    gains = analysis.result.gains
    return {
        t: str(gains.loc[t, "reason"]) for t in analysis.locales if not bool(gains.loc[t, "valid"])
    }


def draw_report_figures(
    analysis: GridAnalysis,
    registry: LanguageRegistry,
    out: Path,
    codes: Sequence[str] | None,
    forest_files: bool = False,
) -> tuple[dict[str, Path], dict[str, Path]]:
    """The heatmaps (with significance) and, with ``forest_files``, each target's donor forest
    plot as ``forest/<target>.png`` and ``.pdf`` (the HTML page draws its own).

    Returns (heatmap images by caption, forest PNGs by target).
    """
    from cltm_sb.report.figures import plot_forest, plot_heatmap  # matplotlib only when drawing

    cells = cell_table(analysis, registry)
    significant = cells.frame(cells.significant)
    common = {
        "significant": significant,
        "alpha": cells.alpha,
        "row_reasons": _row_reasons(analysis),
    }
    plot_heatmap(analysis.result.matrix, registry, out / "cltm.png", title=analysis.title, **common)
    images = {"CLTM, all languages": out / "cltm.png"}
    if codes:
        plot_heatmap(
            analysis.result.matrix,
            registry,
            out / "cltm_subset.png",
            locales=codes,
            title=f"{analysis.title} (subset)",
            **common,
        )
        images["CLTM, subset"] = out / "cltm_subset.png"
    forests = {}
    level = analysis.uncertainty.level
    # The HTML page draws the forest plots itself (inline SVG): files only on request.
    targets = zip(analysis.locales, analysis.result.gains["valid"]) if forest_files else ()
    for t, valid in targets:
        rows = analysis.donors[analysis.donors["target"] == t]
        if not bool(valid) or rows.empty:
            continue
        path = out / "forest" / f"{t}.png"
        path.parent.mkdir(exist_ok=True)
        plot_forest(rows, path, f"Donors of {t} ({registry.name(t)})", level, pdf=True)
        forests[t] = path
    return images, forests


def write_paper_tables(analysis: GridAnalysis, out: Path) -> dict[str, Path]:
    """table1.csv, table1.tex and donors.tex (booktabs) beside the report (DESIGN.md §9)."""
    table1 = table1_frame(analysis)
    return {
        "table1_csv": atomic_write(
            out / "table1.csv", lambda tmp: table1.to_csv(tmp, index=False, float_format="%.6g")
        ),
        "table1_tex": atomic_write_text(out / "table1.tex", table1_latex(analysis)),
        "donors_tex": atomic_write_text(out / "donors.tex", donors_latex(analysis)),
    }


@writes_output_folder("out_dir", "report")
def write_report(
    analysis: GridAnalysis,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    subset: Sequence[str] | str | None = None,
    top_k: int = 5,
    heatmap: bool = True,
    forest_pdf: bool = False,
) -> dict[str, Path]:
    """Write the matrix files, figures, ``intervals.json``, ``donors.csv``, the paper tables,
    ``report.md`` and ``report.html``.

    Args:
        subset: languages of a second, reduced heatmap (a list, a comma-separated string, or
            ``"paper"`` for the paper's 16 languages that the grid has).
        heatmap: draw the figures (off: the numbers only, e.g. for timing; the HTML page keeps
            its interactive heatmap, which needs no figure).
        forest_pdf: also write each target's donor forest plot as files
            (``forest/<target>.pdf``, vector, and ``.png``); the HTML page always shows them.

    Returns:
        The main files written, by name.
    """
    out = Path(out_dir)  # the staging folder of writes_output_folder
    codes = _subset_codes(analysis, subset)  # a bad --subset fails before anything is written
    write_matrix_folder(
        analysis.result,
        analysis.diagnostics,
        registry,
        out,
        metadata=analysis.metadata,
        heatmap=False,  # drawn below, with the significance the matrix folder does not know
    )
    images: dict[str, Path] = {}
    forests: dict[str, Path] = {}
    if heatmap:
        images, forests = draw_report_figures(analysis, registry, out, codes, forest_pdf)
    intervals = atomic_write_json(out / "intervals.json", analysis.uncertainty.to_intervals_json())
    donors = analysis.donors
    atomic_write(
        out / "donors.csv", lambda tmp: donors.to_csv(tmp, index=False, float_format="%.6g")
    )
    tables = write_paper_tables(analysis, out)
    blocks = report_blocks(analysis, registry, images, top_k=top_k, forests=forests)
    md = atomic_write_text(out / "report.md", render_markdown(blocks, out))
    page = atomic_write_text(out / "report.html", render_html(blocks, analysis.title))
    return {
        "markdown": md,
        "html": page,
        "donors": out / "donors.csv",
        "intervals": intervals,
        **tables,
        **images,
    }


@writes_output_folder("out_dir", "compare")
def write_comparison(
    a: GridAnalysis,
    b: GridAnalysis,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    labels: tuple[str, str] = ("A", "B"),
) -> dict[str, Path]:
    """Write ``compare.md``, ``compare.html``, ``difference.csv`` and the difference heatmap."""
    out = Path(out_dir)  # the staging folder of writes_output_folder
    from cltm_sb.report.figures import plot_heatmap

    diff, se = difference(a, b)
    write_matrix_csv(diff, out / "difference.csv")
    write_matrix_csv(se, out / "difference_se.csv")
    plot_heatmap(
        diff,
        registry,
        out / "difference.png",
        title=f"{labels[0]} − {labels[1]}",
        se=se,
        colorbar_label=f"M({labels[0]}) − M({labels[1]}) (colour clipped to ±1.5)",
        diagonal_label="diagonal (1 − 1 = 0 by definition)",
    )
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
    # Intervals for the differences: each grid resampled on its own (independent experiments).
    comparison = compare_uncertainty(a.uncertainty, b.uncertainty)
    summary["difference"] = comparison.to_dict()
    atomic_write_json(out / "compare.json", summary)
    blocks = comparison_blocks(a, b, labels, images, comparison)
    md = atomic_write_text(out / "compare.md", render_markdown(blocks, out))
    page = atomic_write_text(
        out / "compare.html", render_html(blocks, f"{labels[0]} vs {labels[1]}")
    )
    return {"markdown": md, "html": page, "difference": out / "difference.csv"}
