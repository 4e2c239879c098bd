"""Learning-curve figure of the dynamic training interval (paper §2.2, Figure 1 style)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cltm_sb.analysis.interval import IntervalChoice, curve_summary  # noqa: E402
from cltm_sb.io import atomic_write  # noqa: E402


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
    written = []
    for suffix in (".png", ".pdf"):
        target = Path(path).with_suffix(suffix)
        written.append(
            atomic_write(
                target,
                lambda tmp, s=suffix: fig.savefig(tmp, format=s[1:], dpi=150, bbox_inches="tight"),
            )
        )
    plt.close(fig)
    return written
