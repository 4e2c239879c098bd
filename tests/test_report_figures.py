"""The report's figures: uncertainty drawn, no overlapping text at any size, vector PDF, no global state."""

import subprocess
import sys

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from cltm_sb.languages import default_registry
from cltm_sb.report import style
from cltm_sb.report.figures import draw_forest, draw_heatmap, plot_forest, plot_heatmap


@pytest.fixture(scope="module")
def registry():
    return default_registry()


def _matrix(registry, n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A noisy n × n CLTM over real languages (long family names stress the legend) and a
    significance mask with about a third of the cells not significant."""
    codes = registry.codes[:n]
    rng = np.random.default_rng(seed)
    values = rng.normal(0.2, 0.9, (n, n))
    np.fill_diagonal(values, 1.0)
    values[0, -1] = -0.001  # prints as 0.00, never "-0.00"
    significant = rng.random((n, n)) > 0.35
    return (
        pd.DataFrame(values, index=codes, columns=codes),
        pd.DataFrame(significant, index=codes, columns=codes),
    )


def _texts(fig) -> list[tuple[str, np.ndarray]]:
    """(text, [x0, y0, x1, y1] in pixels) of every visible, non-empty text of the figure."""
    renderer = fig.canvas.get_renderer()
    out = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            out.append((text.get_text(), np.array([box.x0, box.y0, box.x1, box.y1])))
    return out


def _overlaps(texts: list[tuple[str, np.ndarray]]) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes intersect (by more than half a pixel: antialiasing slack)."""
    boxes = np.array([b for _, b in texts])
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    w = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
    h = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    hit = np.triu((w > 0.5) & (h > 0.5), k=1)
    return [(texts[i][0], texts[j][0]) for i, j in zip(*np.nonzero(hit))]


def _legend_and_colorbar_boxes(fig):
    renderer = fig.canvas.get_renderer()
    legends = [lg.get_window_extent(renderer) for lg in fig.legends]
    cbar = [ax for ax in fig.axes if ax.get_label() == "colorbar"][0].get_tightbbox(renderer)
    return legends, cbar


@pytest.mark.parametrize("n", [2, 6, 16, 44])
def test_heatmap_text_never_overlaps(registry, n):
    matrix, significant = _matrix(registry, n)
    with mpl.rc_context(style.rc()):
        fig = draw_heatmap(
            matrix, registry, title="Gender recognition CLTM", significant=significant
        )
        fig.draw_without_rendering()
        texts = _texts(fig)
        assert not _overlaps(texts), _overlaps(texts)[:5]
        legends, cbar = _legend_and_colorbar_boxes(fig)
        assert len(legends) == 2
        for legend in legends:
            assert not legend.overlaps(cbar), (legend, cbar)
        assert not legends[0].overlaps(legends[1])
        labels = [t for t, _ in texts]
        assert not any(t in ("-0.00", "\u22120.00") for t in labels)
        if n <= 30:  # values written in the cells
            assert "0.00" in labels
        assert any("not significant" in t for t in labels)  # the hatching's legend entry
        assert any("diagonal" in t for t in labels)
        ticks = [
            label
            for ax in fig.axes
            for label in ax.get_xticklabels() + ax.get_yticklabels()
            if label.get_text() in matrix.index
        ]
        assert len(ticks) == 2 * n  # codes on both axes (on the family strips)
        assert {mpl.colors.to_hex(t.get_color()) for t in ticks} == {style.TEXT_COLOR}


def test_heatmap_with_no_defined_row_says_why(registry):
    codes = registry.codes[:3]
    empty = pd.DataFrame(np.nan, index=codes, columns=codes)  # e.g. the demo's 2-seed SV grid
    reasons = {c: "fewer than 2 seeds of the self run (min_seeds = 2)" for c in codes}
    with mpl.rc_context(style.rc()):
        fig = draw_heatmap(empty, registry, title="Speaker verification CLTM", row_reasons=reasons)
        fig.draw_without_rendering()
        texts = _texts(fig)
        note = next(t for t in fig.axes[0].texts if t.get_text().startswith("No target"))
        box = note.get_bbox_patch().get_window_extent(fig.canvas.get_renderer())
    words = " ".join(t.replace("\n", " ") for t, _ in texts)
    assert "No target has a defined row: fewer than 2 seeds of the self run" in words
    assert not _overlaps(texts)
    # the note's box, not only its text, stays clear of the tick labels and the rest (it may
    # cover the cells' own "n/a": those lie inside the matrix)
    cells = fig.axes[0].get_window_extent()
    others = [
        b
        for t, b in texts
        if not t.startswith("No target")
        and not (cells.x0 <= b[0] and b[2] <= cells.x1 and cells.y0 <= b[1] and b[3] <= cells.y1)
    ]
    assert not any(
        box.x0 < b[2] and b[0] < box.x1 and box.y0 < b[3] and b[1] < box.y1 for b in others
    )


def test_heatmap_draws_an_undefined_rows_diagonal_as_undefined(registry):
    codes = registry.codes[:3]
    values = pd.DataFrame([[1.0, 0.5, -0.2], [np.nan] * 3, [0.3, 0.1, 1.0]], index=codes, columns=codes)
    with mpl.rc_context(style.rc()):
        fig = draw_heatmap(values, registry, title="CLTM")
        n_a = [t for t in fig.axes[0].texts if t.get_text() == "n/a"]
    # The row with G_self <= 0 has no M at all: its diagonal is n/a too, not the grey "1".
    assert len(n_a) == 3


def test_heatmap_files_png_and_vector_pdf_with_text_as_text(registry, tmp_path):
    matrix, significant = _matrix(registry, 5)
    written = plot_heatmap(matrix, registry, tmp_path / "h.png", significant=significant)
    assert [p.name for p in written] == ["h.png", "h.pdf"]
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = (tmp_path / "h.pdf").read_bytes()
    assert b"/FontFile2" in pdf  # TrueType fonts embedded: text stays text (pdf.fonttype 42)
    # cells are vector quads; the one raster image allowed is the colour bar's gradient
    assert pdf.count(b"/Subtype /Image") <= 1
    assert (
        mpl.rcParams["pdf.fonttype"] != 42 or mpl.rcParamsDefault["pdf.fonttype"] == 42
    )  # no leak


def test_forest_plot_sorted_with_unbounded_and_missing_intervals(tmp_path):
    donors = pd.DataFrame(
        {
            "donor": ["a", "b", "c", "d"],
            "value": [0.2, 0.9, -0.4, np.nan],
            "lower": [0.1, 0.7, np.nan, np.nan],
            "upper": [0.3, 1.1, np.nan, np.nan],
            "verdict": ["helps", "helps", "unclear", "n/a"],
        }
    )
    with mpl.rc_context(style.rc()):
        fig = draw_forest(donors, "Donors of x")
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "c", "d"]
        fig.draw_without_rendering()
        assert not _overlaps(_texts(fig))
    written = plot_forest(donors, tmp_path / "f.png", "Donors of x", pdf=True)
    assert [p.suffix for p in written] == [".png", ".pdf"]


def test_cell_text_never_prints_negative_zero():
    assert style.cell_text(-0.001) == "0.00"
    assert style.cell_text(-0.25) == "\u22120.25"
    assert style.cell_text(-12.345) == "\u221212.3"
    assert style.cell_text(float("nan")) == "n/a"


def test_importing_the_figures_changes_no_global_matplotlib_state():
    # dict.items reads the stored values: reading rcParams["backend"] would itself import pyplot
    code = (
        "import matplotlib, sys; before = dict(dict.items(matplotlib.rcParams)); "
        "import cltm_sb.report.figures, cltm_sb.report.write; "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
        "after = dict(dict.items(matplotlib.rcParams)); "
        "changed = [k for k in before if before[k] != after[k]]; "
        "assert not changed, changed"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
