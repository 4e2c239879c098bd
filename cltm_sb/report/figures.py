"""The report's figures: CLTM heatmaps in the paper's style and learning curves (paper §2.2).

Languages are ordered by family, then English name; the diverging colour map is fixed to
[-1.5, 1.5] so figures of different tasks compare by colour, while annotations show the raw values
with two decimals (e.g. -11.57) even where the colour saturates. Dashed boxes mark families.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from cltm_sb.analysis.interval import IntervalChoice, curve_summary  # noqa: E402
from cltm_sb.languages import LanguageRegistry  # noqa: E402
from cltm_sb.report.style import COLOR_LIMIT, COLORMAP, save_figure  # noqa: E402


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
    """Restrict ``matrix`` to ``locales`` (all by default) and order them by family, then name."""
    codes = list(locales) if locales is not None else [str(c) for c in matrix.index]
    missing = [c for c in codes if c not in matrix.index]
    if missing:
        raise ValueError(f"language(s) {', '.join(missing)} are not in the matrix")
    ordered = registry.order(codes)
    return matrix.loc[ordered, ordered]


def plot_heatmap(
    matrix: pd.DataFrame,
    registry: LanguageRegistry,
    path: str | os.PathLike,
    locales: Sequence[str] | None = None,
    title: str | None = None,
    se: pd.DataFrame | None = None,
    annotate: bool | None = None,
) -> list[Path]:
    """Draw the CLTM heatmap and save it as PNG and PDF beside each other.

    Args:
        matrix: CLTM with targets as rows and donors as columns.
        registry: names and families of the languages.
        path: output file; its suffix is replaced by ``.png`` and ``.pdf``.
        locales: optional subset (e.g. :data:`cltm_sb.languages.PAPER_SUBSET`).
        title: figure title.
        se: optional standard errors, shown under each value when given.
        annotate: write values in the cells (default: when there are at most 30 languages).

    Returns:
        The paths written.
    """
    ordered = order_matrix(matrix, registry, locales)
    codes = list(ordered.index)
    n = len(codes)
    values = ordered.to_numpy(dtype=float)
    families = registry.families(codes)
    annotate = n <= 30 if annotate is None else annotate

    size = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size + 2.5, size))
    cmap = plt.get_cmap(COLORMAP).with_extremes(bad="#d9d9d9")
    # One quad per cell, centred on integer coordinates like imshow's pixels: imshow resamples
    # the image to the output resolution on every draw (~4 s of the 5 s a 44-language PNG + PDF
    # took), a mesh draws n² quads and stays vector in the PDF.
    edges = np.arange(n + 1) - 0.5
    image = ax.pcolormesh(
        edges, edges, np.ma.masked_invalid(values), cmap=cmap, vmin=-COLOR_LIMIT, vmax=COLOR_LIMIT
    )
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(edges[-1], edges[0])  # first target on top, as in the paper
    ax.set_aspect("equal")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="CLTM (colour clipped to ±1.5)")
    ax.set_xticks(range(n), codes, rotation=90)
    ax.set_yticks(range(n), codes)
    ax.set_xlabel("donor language s")
    ax.set_ylabel("target language t")
    if title:
        ax.set_title(title)

    if annotate:
        fontsize = max(4.0, min(9.0, 120.0 / n))
        se_values = se.loc[codes, codes].to_numpy(dtype=float) if se is not None else None
        for i in range(n):
            for j in range(n):
                value = values[i, j]
                text = "n/a" if not np.isfinite(value) else f"{value:.2f}"
                if se_values is not None and np.isfinite(value) and i != j:
                    text += f"\n±{se_values[i, j]:.2f}"
                dark = np.isfinite(value) and abs(value) > 0.9 * COLOR_LIMIT
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if dark else "black",
                )

    palette = plt.get_cmap("tab20")
    blocks = family_blocks(families)
    handles = []
    for k, (family, start, stop) in enumerate(blocks):
        colour = palette(k % palette.N)
        ax.add_patch(
            Rectangle(
                (start - 0.5, start - 0.5),
                stop - start,
                stop - start,
                fill=False,
                linestyle="--",
                linewidth=1.2,
                edgecolor="black",
            )
        )
        for tick in range(start, stop):
            ax.get_xticklabels()[tick].set_color(colour)
            ax.get_yticklabels()[tick].set_color(colour)
        handles.append(Patch(facecolor=colour, label=family))
    ax.legend(
        handles=handles,
        title="family",
        loc="upper left",
        bbox_to_anchor=(1.22, 1.0),
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    fig.tight_layout()

    written = save_figure(fig, path)
    plt.close(fig)
    return written


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
    summary = curve_summary(curves)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    palette = plt.get_cmap("tab10")
    for k, (locale, part) in enumerate(summary.groupby("locale")):
        colour = palette(k % palette.N)
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
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    written = save_figure(fig, path)
    plt.close(fig)
    return written
