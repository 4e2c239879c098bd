"""The report's figures: CLTM heatmaps with their uncertainty, donor forest plots, learning curves.

Languages are ordered by family, then English name, with the family as a colour strip beside each
axis and dashed boxes around each family's block. The diverging colour map is fixed to
[-1.5, 1.5] (see :mod:`cltm_sb.report.style`) while annotations show the raw value. Cells that are
not significant (BH q ≥ α, or no interval) are faded and hatched; the diagonal, 1 by definition,
is drawn in a neutral grey. Every figure is built on a bare :class:`matplotlib.figure.Figure`
(no pyplot, no backend switch) inside ``rc_context(style.rc())``: importing this module changes no
global matplotlib state. Each figure is written as PNG and as a vector PDF whose text is text.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from cltm_sb.analysis.interval import IntervalChoice, curve_summary
from cltm_sb.languages import LanguageRegistry
from cltm_sb.report import style

# Heatmap geometry, in inches: cells shrink with L so that the matrix stays near MATRIX_SIZE, but
# never below what the tick labels need, and the matrix never below MIN_MATRIX (L = 2).
MATRIX_SIZE = 8.0
MAX_CELL = 0.5
MIN_CELL = 0.155
MIN_MATRIX = 2.2
STRIP = 0.13
GAP = 0.03
COLORBAR_WIDTH = 0.16
COLORBAR_GAP = 0.2
LEGEND_GAP = 0.15
MARGIN = 1.8  # room for tick labels and titles; bbox_inches="tight" trims what is not used
ANNOTATE_MAX = 30  # above this many languages the values no longer fit in the cells


def family_blocks(families: Sequence[str]) -> list[tuple[str, int, int]]:
    """Consecutive runs of the same family as (family, start, stop) with stop exclusive."""
    blocks: list[tuple[str, int, int]] = []
    for k, family in enumerate(families):
        if blocks and blocks[-1][0] == family:
            blocks[-1] = (family, blocks[-1][1], k + 1)
        else:
            blocks.append((family, k, k + 1))
    return blocks


def order_matrix(
    matrix: pd.DataFrame, registry: LanguageRegistry, locales: Sequence[str] | None = None
) -> pd.DataFrame:
    """Restrict ``matrix`` to ``locales`` (all by default) and order its targets and its donors by
    family, then name (a non-square matrix keeps its own targets and donors)."""
    rows = [str(c) for c in matrix.index]
    cols = [str(c) for c in matrix.columns]
    if locales is not None:
        missing = [c for c in locales if c not in rows and c not in cols]
        if missing:
            raise ValueError(f"language(s) {', '.join(missing)} are not in the matrix")
        rows = [c for c in locales if c in rows]
        cols = [c for c in locales if c in cols]
    frame = matrix.set_axis([str(c) for c in matrix.index], axis=0)
    frame = frame.set_axis([str(c) for c in matrix.columns], axis=1)
    return frame.loc[registry.order(rows), registry.order(cols)]


def new_figure(width: float, height: float) -> Figure:
    """A figure with its own Agg canvas: no pyplot, no global backend."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


@dataclass
class HeatmapLayout:
    """Sizes of one heatmap, in inches and points, chosen from the number of languages."""

    n: int
    cell: float
    tick_size: float
    annotation_size: float

    @classmethod
    def for_languages(cls, n: int) -> HeatmapLayout:
        cell = min(MAX_CELL, max(MIN_CELL, MATRIX_SIZE / max(n, 1), MIN_MATRIX / max(n, 1)))
        points = cell * 72
        # a tick label line is ~1.2 font sizes high: keep it inside its cell so labels never touch
        tick = min(style.FONT_SIZE, 0.78 * points)
        # "−0.00" is ~5 characters of ~0.6 em: keep it inside the cell's width
        annotation = min(8.0, points / 3.6)
        return cls(n, cell, tick, annotation)

    @property
    def matrix(self) -> float:
        return self.cell * self.n


def _cell_colours(
    values: np.ndarray, significant: np.ndarray | None, diagonal: np.ndarray
) -> tuple[np.ndarray, Normalize, mpl.colors.Colormap]:
    """RGBA per cell: the scale's colour, faded where not significant, neutral on the diagonal."""
    cmap = mpl.colormaps[style.COLORMAP]
    norm = Normalize(-style.COLOR_LIMIT, style.COLOR_LIMIT)
    rgba = cmap(norm(np.nan_to_num(values)))
    if significant is not None:
        fade = ~significant & np.isfinite(values)
        rgba[fade, :3] = (
            rgba[fade, :3] * (1 - style.NOT_SIGNIFICANT_FADE) + style.NOT_SIGNIFICANT_FADE
        )
    rgba[~np.isfinite(values)] = mpl.colors.to_rgba(style.UNDEFINED_COLOR)
    rgba[diagonal] = mpl.colors.to_rgba(style.DIAGONAL_COLOR)
    return rgba, norm, cmap


def _hatch(ax: mpl.axes.Axes, mask: np.ndarray, hatch: str, colour: str) -> None:
    """Hatch the cells of ``mask`` (one collection: fast for thousands of cells, vector in PDF)."""
    cells = [Rectangle((j - 0.5, i - 0.5), 1, 1) for i, j in zip(*np.nonzero(mask))]
    if cells:
        ax.add_collection(
            PatchCollection(
                cells, facecolor="none", edgecolor=colour, linewidth=0, hatch=hatch, zorder=2
            )
        )


def _outline(ax: mpl.axes.Axes, mask: np.ndarray) -> None:
    """Outline the cells of ``mask``, inset so that neighbours' outlines stay apart."""
    inset = 0.08
    cells = [
        Rectangle((j - 0.5 + inset, i - 0.5 + inset), 1 - 2 * inset, 1 - 2 * inset)
        for i, j in zip(*np.nonzero(mask))
    ]
    if cells:
        # A light halo under the dark line: the outline reads on dark and on light cells alike.
        for colour, width, label in (
            (style.PREDICTED_HALO_COLOR, 2.4 * style.PREDICTED_EDGE_WIDTH, "predicted halo"),
            (style.PREDICTED_EDGE_COLOR, style.PREDICTED_EDGE_WIDTH, "predicted"),
        ):
            ax.add_collection(
                PatchCollection(
                    cells, facecolor="none", edgecolor=colour, linewidth=width, zorder=3, label=label
                )
            )


def _annotate(
    ax: mpl.axes.Axes,
    values: np.ndarray,
    rgba: np.ndarray,
    se: np.ndarray | None,
    layout: HeatmapLayout,
    diagonal: np.ndarray,
) -> None:
    """Each off-diagonal cell's value (and its SE when given), light on dark cells."""
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if diagonal[i, j]:
                continue
            value = values[i, j]
            text = style.cell_text(value)
            if se is not None and np.isfinite(value) and np.isfinite(se[i, j]):
                text += f"\n±{style.cell_text(se[i, j])}"
            if style.is_dark(tuple(rgba[i, j, :3])):
                colour = "white"
            else:
                colour = style.TEXT_COLOR if np.isfinite(value) else style.MUTED_TEXT
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=layout.annotation_size * (0.85 if "\n" in text else 1.0),
                color=colour,
                zorder=3,
            )


def _family_strips(
    fig: Figure,
    ax: mpl.axes.Axes,
    axes: tuple[Sequence[str], Sequence[str]],
    families: tuple[Sequence[str], Sequence[str]],
    layout: HeatmapLayout,
) -> dict[str, str]:
    """Colour strips left of and below the matrix that carry the tick labels; family -> colour.

    ``axes``: (target codes, donor codes); ``families``: theirs, in the same orders.
    """
    (rows, cols), (row_fam, col_fam) = axes, families
    order = list(dict.fromkeys([*row_fam, *col_fam]))
    colour_of = {f: style.FAMILY_COLORS[k % len(style.FAMILY_COLORS)] for k, f in enumerate(order)}
    cmap = ListedColormap([colour_of[f] for f in order])
    row_index = np.array([order.index(f) for f in row_fam], dtype=float)
    col_index = np.array([order.index(f) for f in col_fam], dtype=float)
    x0, y0, w, h = ax.get_position().bounds
    fw, fh = fig.get_size_inches()
    row_edges = np.arange(len(rows) + 1) - 0.5
    col_edges = np.arange(len(cols) + 1) - 0.5
    left = fig.add_axes(((x0 * fw - GAP - STRIP) / fw, y0, STRIP / fw, h))
    left.pcolormesh(
        [0, 1], row_edges, row_index[:, None], cmap=cmap, vmin=-0.5, vmax=len(order) - 0.5
    )
    left.set_ylim(row_edges[-1], row_edges[0])
    left.set_xticks([])
    left.set_yticks(range(len(rows)), rows, fontsize=layout.tick_size)
    left.set_ylabel("target language t")
    bottom = fig.add_axes((x0, (y0 * fh - GAP - STRIP) / fh, w, STRIP / fh))
    bottom.pcolormesh(
        col_edges, [0, 1], col_index[None, :], cmap=cmap, vmin=-0.5, vmax=len(order) - 0.5
    )
    bottom.set_xlim(col_edges[0], col_edges[-1])
    bottom.set_yticks([])
    bottom.set_xticks(range(len(cols)), cols, rotation=90, fontsize=layout.tick_size)
    bottom.set_xlabel("donor language s")
    for strip in (left, bottom):
        strip.tick_params(length=0, pad=2)
        for spine in strip.spines.values():
            spine.set_linewidth(0.5)
    return colour_of


def _legends(
    fig: Figure,
    diagonal_label: str,
    anchor_x: float,
    top: float,
    colour_of: Mapping[str, str],
    significant: bool,
    alpha: float,
    any_undefined: bool,
    any_predicted: bool = False,
) -> None:
    """The cell legend, then the family legend under it, left-aligned at ``anchor_x`` (figure px)."""
    renderer = fig.canvas.get_renderer()
    cells = [Patch(facecolor=style.DIAGONAL_COLOR, label=diagonal_label)]
    if significant:
        cells.append(
            Patch(
                facecolor="#f4f4f4",
                edgecolor=style.HATCH_COLOR,
                hatch=style.NOT_SIGNIFICANT_HATCH,
                linewidth=0,
                label=f"not significant (BH q ≥ {alpha:g} or no interval):\nfaded and hatched",
            )
        )
    if any_undefined:
        cells.append(
            Patch(
                facecolor=style.UNDEFINED_COLOR,
                edgecolor=style.UNDEFINED_HATCH_COLOR,
                hatch="xx",
                linewidth=0.5,
                label="undefined (n/a)",
            )
        )
    if any_predicted:
        cells.append(
            Patch(
                facecolor="none",
                edgecolor=style.PREDICTED_EDGE_COLOR,
                linewidth=style.PREDICTED_EDGE_WIDTH,
                label="predicted, not measured (outlined)",
            )
        )
    fw, fh = fig.get_size_inches() * fig.dpi
    first = fig.legend(
        handles=cells,
        title="cells",
        loc="upper left",
        bbox_to_anchor=(anchor_x / fw, top / fh),
        alignment="left",
    )
    below = first.get_window_extent(renderer).y0
    fig.legend(
        handles=[Patch(facecolor=c, label=f) for f, c in colour_of.items()],
        title="family (strips beside the axes)",
        loc="upper left",
        bbox_to_anchor=(anchor_x / fw, (below - 6) / fh),
        alignment="left",
    )


def _no_row_note(
    ax: mpl.axes.Axes,
    values: np.ndarray,
    row_reasons: Mapping[str, str] | None,
    layout: HeatmapLayout,
    off: np.ndarray,
) -> None:
    """Say on the figure why it is empty when no target has a defined row."""
    if np.isfinite(values[off]).any():
        return
    reasons = list(dict.fromkeys(r for r in (row_reasons or {}).values() if r))
    if not reasons:
        why = "see gains.csv for each target's reason"
    elif len(reasons) <= 2:
        why = "; ".join(reasons)
    else:
        why = f"{reasons[0]}; and {len(reasons) - 1} other reasons (see gains.csv)"
    size = style.LEGEND_SIZE
    # wrap to the matrix's width (an average glyph is ~0.6 em), inside the box's padding
    width = max(12, int(0.85 * layout.matrix * 72 / (0.6 * size)))
    ax.text(
        0.5,
        0.5,
        textwrap.fill(f"No target has a defined row: {why}", width=width),
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=size,
        color=style.TEXT_COLOR,
        bbox={"facecolor": "white", "edgecolor": style.MUTED_TEXT, "boxstyle": "round,pad=0.3"},
        zorder=5,
    )


def draw_heatmap(
    matrix: pd.DataFrame,
    registry: LanguageRegistry,
    locales: Sequence[str] | None = None,
    title: str | None = None,
    se: pd.DataFrame | None = None,
    annotate: bool | None = None,
    significant: pd.DataFrame | None = None,
    alpha: float = 0.05,
    row_reasons: Mapping[str, str] | None = None,
    colorbar_label: str = "CLTM (colour clipped to ±1.5)",
    diagonal_label: str = "diagonal (M = 1 by definition)",
    predicted: pd.DataFrame | None = None,
) -> Figure:
    """The CLTM heatmap as a figure (:func:`plot_heatmap` saves it).

    Args:
        matrix: CLTM with targets as rows and donors as columns.
        registry: names and families of the languages.
        locales: optional subset (e.g. :data:`cltm_sb.languages.PAPER_SUBSET`).
        title: figure title.
        se: optional standard errors, shown under each value when given.
        annotate: write values in the cells (default: when there are at most 30 languages).
        significant: per cell, True where the cell's verdict is significant (BH q < ``alpha``
            with an interval); the others are faded and hatched. None: no significance drawn.
        alpha: the level the legend names.
        row_reasons: per target, why its row is undefined (said on the figure when no row is).
        colorbar_label, diagonal_label: what the colour bar and the diagonal's legend entry say.
        predicted: per cell, True where the value is predicted, not measured (a budgeted CLTM,
            ``cltm complete``): those cells are outlined.
    """
    ordered = order_matrix(matrix, registry, locales)
    rows = [str(c) for c in ordered.index]
    cols = [str(c) for c in ordered.columns]
    n_rows, n_cols = len(rows), len(cols)
    values = ordered.to_numpy(dtype=float)
    sig = significant.loc[rows, cols].to_numpy(dtype=bool) if significant is not None else None
    # A non-square matrix (other targets than donors): the diagonal is where the two codes agree.
    diagonal = np.asarray(rows, dtype=object)[:, None] == np.asarray(cols, dtype=object)[None, :]
    # An undefined row's diagonal (G_self <= 0) is NaN, not 1: drawn as undefined, not grey.
    diagonal &= np.isfinite(values)
    off = ~diagonal
    layout = HeatmapLayout.for_languages(max(n_rows, n_cols))
    annotate = max(n_rows, n_cols) <= ANNOTATE_MAX if annotate is None else annotate

    width, height = layout.cell * n_cols, layout.cell * n_rows
    size = height  # the colour bar is as tall as the matrix
    fig = new_figure(MARGIN + width + COLORBAR_GAP + COLORBAR_WIDTH + 4.0, 2 * MARGIN + height)
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((MARGIN / fw, MARGIN / fh, width / fw, height / fh))
    rgba, norm, cmap = _cell_colours(values, sig, diagonal)
    row_edges = np.arange(n_rows + 1) - 0.5
    col_edges = np.arange(n_cols + 1) - 0.5
    # One quad per cell (vector in the PDF; imshow would resample an image on every draw).
    mesh = ax.pcolormesh(col_edges, row_edges, np.zeros((n_rows, n_cols)), zorder=1)
    mesh.set_array(None)
    mesh.set_facecolor(rgba.reshape(-1, 4))
    ax.set_xlim(col_edges[0], col_edges[-1])
    ax.set_ylim(row_edges[-1], row_edges[0])  # first target on top, as in the paper
    ax.set_xticks([])
    ax.set_yticks([])
    undefined = ~np.isfinite(values) & off
    _hatch(ax, undefined, "xx", style.UNDEFINED_HATCH_COLOR)
    if sig is not None:
        _hatch(
            ax,
            ~sig & np.isfinite(values) & off,
            style.NOT_SIGNIFICANT_HATCH,
            style.HATCH_COLOR,
        )
    defined = np.isfinite(values[off]).any()
    if annotate and defined:  # with no defined row, the note below says more than n cells of n/a
        se_values = se.loc[rows, cols].to_numpy(dtype=float) if se is not None else None
        _annotate(ax, values, rgba, se_values, layout, diagonal)
    outlined = (
        predicted.reindex(index=rows, columns=cols).fillna(False).to_numpy(dtype=bool) & off
        if predicted is not None
        else np.zeros_like(off)
    )
    _outline(ax, outlined)
    row_fam, col_fam = registry.families(rows), registry.families(cols)
    # Dashed boxes where a family's targets meet its donors (the diagonal blocks when square).
    for family, r0, r1 in family_blocks(row_fam):
        for other, c0, c1 in family_blocks(col_fam):
            if other != family:
                continue
            ax.add_patch(
                Rectangle(
                    (c0 - 0.5, r0 - 0.5),
                    c1 - c0,
                    r1 - r0,
                    fill=False,
                    linestyle="--",
                    linewidth=1.0,
                    edgecolor=style.FAMILY_BOX_COLOR,
                    zorder=4,
                )
            )
    colour_of = _family_strips(fig, ax, (rows, cols), (row_fam, col_fam), layout)
    _no_row_note(ax, values, row_reasons, layout, off)

    cax = fig.add_axes(
        ((MARGIN + width + COLORBAR_GAP) / fw, MARGIN / fh, COLORBAR_WIDTH / fw, height / fh),
        label="colorbar",
    )
    limit = style.COLOR_LIMIT
    ticks = np.linspace(-limit, limit, 7 if size >= 3.5 else 3)  # fixed: no tick outside the bar
    if size < 3.5 and " (" in colorbar_label:  # a long label on a short bar: two lines
        colorbar_label = colorbar_label.replace(" (", "\n(", 1)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, label=colorbar_label, ticks=ticks)
    # The legends start right of the colour bar's drawn extent (ticks and label included), so
    # they cannot overlap it at any L.
    renderer = fig.canvas.get_renderer()
    bar = cax.get_tightbbox(renderer)
    right = bar.x1 + LEGEND_GAP * fig.dpi
    top = ax.get_window_extent(renderer).y1
    if title:  # above the matrix and the colour bar's label, which is taller than a small matrix
        fig.text(
            (ax.get_window_extent(renderer).x0 + ax.get_window_extent(renderer).x1)
            / 2
            / fig.bbox.width,
            (max(top, bar.y1) + 6 / 72 * fig.dpi) / fig.bbox.height,
            title,
            ha="center",
            va="bottom",
            fontsize=style.TITLE_SIZE,
        )
    _legends(
        fig, diagonal_label, right, top, colour_of, sig is not None, alpha, bool(undefined.any()),
        bool(outlined.any()),
    )
    return fig


def plot_heatmap(
    matrix: pd.DataFrame,
    registry: LanguageRegistry,
    path: str | os.PathLike,
    **options: Any,
) -> list[Path]:
    """Draw the CLTM heatmap (:func:`draw_heatmap`, same options) and save it as PNG and PDF.

    ``path``'s suffix is replaced by ``.png`` and ``.pdf``; returns the paths written.
    """
    with mpl.rc_context(style.rc()):
        return style.save_figure(draw_heatmap(matrix, registry, **options), path)


# --------------------------------------------------------------------------------------------
# Donor forest plot


def draw_forest(donors: pd.DataFrame, title: str, level: float = 0.95) -> Figure:
    """M[t, s] of one target's donors with their intervals, best first.

    ``donors``: rows of donors.csv for one target (columns donor, value, lower, upper, verdict);
    a missing bound means the interval is unbounded (drawn as a dotted line to the edge).
    """
    rows = donors.sort_values("value", ascending=False, na_position="last", kind="stable")
    rows = rows.reset_index(drop=True)
    n = len(rows)
    values = rows["value"].to_numpy(dtype=float)
    lower = rows["lower"].to_numpy(dtype=float)
    upper = rows["upper"].to_numpy(dtype=float)
    finite = np.concatenate([values, lower, upper])
    finite = finite[np.isfinite(finite)]
    lo = min(-0.25, float(finite.min()) if finite.size else 0.0)
    hi = max(1.25, float(finite.max()) if finite.size else 1.0)
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    fig = new_figure(5.2, 0.9 + 0.22 * max(n, 1) + 0.4)
    ax = fig.add_axes(
        (0.22, 0.9 / fig.get_figheight(), 0.74, 0.22 * max(n, 1) / fig.get_figheight())
    )
    ax.axvline(0, color=style.MUTED_TEXT, linewidth=0.8, zorder=0)
    ax.axvline(1, color=style.MUTED_TEXT, linewidth=0.8, linestyle="--", zorder=0)
    # One collection per kind of mark, not two artists per donor: a 44-language report draws
    # 44 of these figures.
    colours = [
        style.VERDICT_COLORS.get(str(v), style.VERDICT_COLORS["n/a"]) for v in rows["verdict"]
    ]
    y = np.arange(n, dtype=float)
    shown = np.isfinite(values)
    bounded = shown & np.isfinite(lower) & np.isfinite(upper)
    unbounded = shown & ~bounded  # Fieller's set is unbounded: the interval runs off both edges
    ax.add_collection(
        LineCollection(
            [((lower[k], y[k]), (upper[k], y[k])) for k in np.nonzero(bounded)[0]],
            colors=[colours[k] for k in np.nonzero(bounded)[0]],
            linewidths=1.4,
            capstyle="butt",
        )
    )
    ax.add_collection(
        LineCollection(
            [((lo, y[k]), (hi, y[k])) for k in np.nonzero(unbounded)[0]],
            colors=[colours[k] for k in np.nonzero(unbounded)[0]],
            linewidths=0.8,
            linestyles=":",
        )
    )
    ax.scatter(
        values[shown], y[shown], s=16, c=[colours[k] for k in np.nonzero(shown)[0]], zorder=3
    )
    for k in np.nonzero(~shown)[0]:
        ax.text(lo + pad, k, "n/a", va="center", fontsize=style.LEGEND_SIZE, color=style.MUTED_TEXT)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(n), [str(d) for d in rows["donor"]])
    ax.set_xlabel(f"M[target, donor] with its {level:.0%} interval (1 = as much as own data)")
    ax.set_title(title, loc="left")
    handles = [
        mpl.lines.Line2D([], [], color=c, marker="o", markersize=4, label=v)
        for v, c in style.VERDICT_COLORS.items()
        if v in set(rows["verdict"].astype(str))
    ]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="verdict")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def plot_forest(
    donors: pd.DataFrame,
    path: str | os.PathLike,
    title: str,
    level: float = 0.95,
    pdf: bool = False,
) -> list[Path]:
    """Save :func:`draw_forest` as PNG (and PDF with ``pdf``)."""
    with mpl.rc_context(style.rc()):
        return style.save_figure(
            draw_forest(donors, title, level), path, pdf=pdf, dpi=style.FOREST_DPI
        )


# --------------------------------------------------------------------------------------------
# Learning curves (paper §2.2, Figure 1 style)


def plot_learning_curves(
    curves: pd.DataFrame,
    path: str | os.PathLike,
    choice: IntervalChoice | None = None,
    title: str | None = None,
    metric: str = "metric",
) -> list[Path]:
    """Mean P(N) per language with a ±1 SD seed band, the a ∪ b points at 2N, and the chosen interval.

    Args:
        curves: the tidy curve table (see :mod:`cltm_sb.analysis.interval`).
        path: output file; PNG and PDF are written beside each other.
        choice: the recommended interval, shaded as [N, 2N].
        title: figure title.
        metric: y-axis label.

    Returns:
        The paths written.
    """
    with mpl.rc_context(style.rc()):
        fig = _draw_learning_curves(curve_summary(curves), choice, title, metric)
        return style.save_figure(fig, path)


def _draw_learning_curves(
    summary: pd.DataFrame, choice: IntervalChoice | None, title: str | None, metric: str
) -> Figure:
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    for k, (locale, part) in enumerate(summary.groupby("locale")):
        colour = style.LINE_COLORS[k % len(style.LINE_COLORS)]
        single = part[part["role"] == "n"].sort_values("size")
        if not single.empty:
            sd = single["sd"].fillna(0.0).to_numpy()
            x, y = single["size"].to_numpy(dtype=float), single["mean"].to_numpy()
            ax.plot(x, y, "-o", color=colour, label=f"{locale}: a (N)", markersize=4)
            ax.fill_between(x, y - sd, y + sd, color=colour, alpha=0.18, linewidth=0)
        double = part[part["role"] == "2n"].sort_values("size")
        if not double.empty:
            ax.errorbar(
                double["size"].to_numpy(dtype=float),
                double["mean"].to_numpy(),
                yerr=double["sd"].fillna(0.0).to_numpy(),
                fmt="s",
                mfc="none",
                color=colour,
                markersize=5,
                capsize=2,
                label=f"{locale}: a ∪ b (2N)",
            )
    if choice is not None:
        ax.axvspan(
            choice.n,
            2 * choice.n,
            color="grey",
            alpha=0.15,
            zorder=0,
            label=f"chosen interval [{choice.n}, {2 * choice.n}] (min z = {choice.min_z:.1f})",
        )
    sizes = np.unique(summary["size"].to_numpy(dtype=float))
    if sizes.size > 1 and sizes.min() > 0:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{int(s)}" for s in sizes])
    ax.set_xlabel("training clips per language")
    ax.set_ylabel(f"{metric} (mean over seeds, band ±1 SD)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig
