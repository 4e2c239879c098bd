"""One place for what every figure of the report shares: fonts, sizes, colours, number format, saving.

Figures apply :func:`rc` through ``matplotlib.rc_context`` while they draw and save, so importing
this module (or a figure module) changes no global matplotlib state.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cltm_sb.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# -- colours ------------------------------------------------------------------------------------

# The diverging colour map is fixed to [-COLOR_LIMIT, COLOR_LIMIT] so figures of different tasks
# compare by colour; annotations show the raw value even where the colour saturates.
COLOR_LIMIT = 1.5
COLORMAP = "RdBu"
TEXT_COLOR = "#222222"
MUTED_TEXT = "#555555"
DIAGONAL_COLOR = "#a6a6a6"  # the diagonal is 1 by definition: neutral, not on the scale
UNDEFINED_COLOR = "#ffffff"
UNDEFINED_HATCH_COLOR = "#b0b0b0"
# Predicted (not measured) cells of a budgeted CLTM: a thin dark outline, readable on any colour.
PREDICTED_EDGE_COLOR = "#202020"
PREDICTED_EDGE_WIDTH = 1.1
PREDICTED_HALO_COLOR = "#ffffff"
# Cells that are not significant are faded towards white by this share and hatched, so a noisy
# -5.99 ± 23.84 never looks as certain as a precise value of the same colour.
NOT_SIGNIFICANT_FADE = 0.55
NOT_SIGNIFICANT_HATCH = "////"
HATCH_COLOR = "#505050"
FAMILY_BOX_COLOR = "#222222"
# Families: categorical colours distinguishable from each other (Okabe–Ito first), shown as a
# strip beside each axis rather than as coloured tick labels.
FAMILY_COLORS = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999",
    "#393B79", "#637939", "#8C6D31", "#843C39", "#7B4173", "#5254A3", "#8CA252", "#BD9E39",
)  # fmt: skip
VERDICT_COLORS = {"helps": "#2166AC", "hurts": "#B2182B", "unclear": "#777777", "n/a": "#BBBBBB"}
LINE_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

# -- fonts and sizes ------------------------------------------------------------------------------

FONT_FAMILY = "DejaVu Sans"
FONT_SIZE = 9.0
TITLE_SIZE = 11.0
LEGEND_SIZE = 8.0
DPI = 150
# One forest plot per target goes into the HTML page: a lower resolution keeps a 44-language
# page small (the PDF, on request, is vector anyway).
FOREST_DPI = 100
FORMATS = (".png", ".pdf")


def rc() -> dict[str, Any]:
    """matplotlib settings of every figure (use with ``matplotlib.rc_context``)."""
    return {
        "font.family": FONT_FAMILY,
        "font.size": FONT_SIZE,
        "axes.titlesize": TITLE_SIZE,
        "axes.labelsize": FONT_SIZE,
        "axes.edgecolor": TEXT_COLOR,
        "axes.labelcolor": TEXT_COLOR,
        "text.color": TEXT_COLOR,
        "xtick.color": TEXT_COLOR,
        "ytick.color": TEXT_COLOR,
        "xtick.labelsize": FONT_SIZE,
        "ytick.labelsize": FONT_SIZE,
        "legend.fontsize": LEGEND_SIZE,
        "legend.title_fontsize": FONT_SIZE,
        "legend.frameon": False,
        "hatch.linewidth": 0.6,
        "pdf.fonttype": 42,  # TrueType: text in the PDF stays text (selectable, editable)
        "ps.fonttype": 42,
        "svg.fonttype": "none",
        "axes.unicode_minus": True,
    }


def cell_text(value: float) -> str:
    """A matrix entry as printed in a cell: two decimals below 10, never ``-0.00``, ``n/a`` if NaN."""
    if not math.isfinite(value):
        return "n/a"
    digits = 2 if abs(value) < 9.995 else (1 if abs(value) < 99.95 else 0)
    text = f"{value:.{digits}f}"
    if float(text) == 0.0:  # "-0.00" says nothing a reader can use
        text = text.lstrip("-")
    return text.replace("-", "\u2212")


def save_figure(
    fig: Figure, path: str | os.PathLike, pdf: bool = True, dpi: int = DPI
) -> list[Path]:
    """Save ``fig`` as PNG (and vector PDF) beside each other (``path``'s suffix is replaced)."""
    written = []
    base = Path(path)
    for suffix in FORMATS if pdf else FORMATS[:1]:
        written.append(
            atomic_write(
                base.with_suffix(suffix),
                lambda tmp, s=suffix: fig.savefig(tmp, format=s[1:], dpi=dpi, bbox_inches="tight"),
            )
        )
    return written


# matplotlib's "RdBu" is the linear interpolation of these ColorBrewer anchors (red = -1.5 ...
# blue = +1.5 here); the HTML heatmap uses them without importing matplotlib.
RDBU_ANCHORS = (
    "#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7",
    "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061",
)  # fmt: skip


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255)


def scale_rgb(value: float, faded: bool = False) -> tuple[float, float, float]:
    """The colour of a matrix value on the report's diverging scale (faded: not significant)."""
    x = (min(max(value, -COLOR_LIMIT), COLOR_LIMIT) + COLOR_LIMIT) / (2 * COLOR_LIMIT)
    k = min(int(x * (len(RDBU_ANCHORS) - 1)), len(RDBU_ANCHORS) - 2)
    w = x * (len(RDBU_ANCHORS) - 1) - k
    lo, hi = _rgb(RDBU_ANCHORS[k]), _rgb(RDBU_ANCHORS[k + 1])
    rgb = tuple((1 - w) * a + w * b for a, b in zip(lo, hi))
    if faded:
        rgb = tuple(c * (1 - NOT_SIGNIFICANT_FADE) + NOT_SIGNIFICANT_FADE for c in rgb)
    return rgb  # type: ignore[return-value]


def is_dark(rgb: tuple[float, float, float]) -> bool:
    """Whether white text reads better than dark text on ``rgb`` (relative luminance)."""
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45


def hex_colour(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)
