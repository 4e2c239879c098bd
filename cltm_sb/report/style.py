"""One place for what every figure of the report shares: colours, limits and how files are saved."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cltm_sb.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The diverging colour map is fixed to [-COLOR_LIMIT, COLOR_LIMIT] so figures of different tasks
# compare by colour.
COLOR_LIMIT = 1.5
COLORMAP = "RdBu"
DPI = 150
FORMATS = (".png", ".pdf")


def save_figure(fig: Figure, path: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as PNG and PDF beside each other (``path``'s suffix is replaced)."""
    written = []
    base = Path(path)
    for suffix in FORMATS:
        written.append(
            atomic_write(
                base.with_suffix(suffix),
                lambda tmp, s=suffix: fig.savefig(tmp, format=s[1:], dpi=DPI, bbox_inches="tight"),
            )
        )
    return written
