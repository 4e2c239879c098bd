"""Render the report's blocks as Markdown (images beside it) or as one self-contained HTML page.

The HTML page opens from disk with no server and no network: images are inlined as base64 PNGs
and the little JavaScript it has (sortable tables, the heatmap's hover box, a check that every
image loaded) is written here and inlined. Without JavaScript the page still reads: the heatmap
cells carry their hover text in ``title`` and their numbers in ``data-*`` attributes.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cltm_sb.report import style
from cltm_sb.report.document import Block, CellTable, Forest, cell_hover

# --------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table, numbers right-aligned."""
    numeric = [bool(rows) and all(_is_number(row[k]) for row in rows) for k in range(len(header))]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "".join("---:|" if num else "---|" for num in numeric))
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(blocks: Sequence[Block], base: Path) -> str:
    """Markdown with images referenced by paths relative to ``base``."""
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            lines += ["#" * block.level + " " + block.content, ""]
        elif block.kind == "text":
            lines += [block.content, ""]
        elif block.kind == "list":
            lines += [f"- {item}" for item in block.content] + [""]
        elif block.kind == "table":
            header, rows = block.content
            lines += markdown_table(header, rows) + [""]
        elif block.kind == "image":
            name, path = block.content
            lines += [f"![{name}]({os.path.relpath(path, base).replace(os.sep, '/')})", ""]
        elif block.kind == "forest" and block.content.image is not None:
            path = os.path.relpath(block.content.image, base).replace(os.sep, "/")
            lines += [f"![{block.content.title}]({path})", ""]
        # toc and heatmap are for the HTML page; Markdown viewers list headings and show the PNG
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# HTML

_NUMBER = re.compile(r"^[\[(]?[−\-+]?(\d|\.\d)")


def _is_number(text: str) -> bool:
    """Numbers, intervals and n/a align right (a column of them reads by its decimal point)."""
    text = str(text).strip()
    return bool(_NUMBER.match(text)) or text == "n/a"


def slug(text: str) -> str:
    """An id for a heading: lower case, words joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222;
       line-height: 1.4; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #999; font-size: 0.8em; }
table.sortable th[aria-sort="ascending"]::after { content: " \\2191"; color: #222; }
table.sortable th[aria-sort="descending"]::after { content: " \\2193"; color: #222; }
ul.answers li { margin: 0.3em 0; }
nav.toc { border: 1px solid #ddd; background: #fafafa; padding: 0.4em 1em; display: inline-block; }
nav.toc ul { margin: 0.2em 0; padding-left: 1.2em; }
img { max-width: 100%; }
.broken { color: #b00; font-weight: bold; }
.heatmap-wrap { overflow-x: auto; margin: 0.5em 0 1em; }
table.heatmap { border-collapse: collapse; font-size: 0.72em; margin: 0; }
table.heatmap th { background: none; border: none; padding: 0 0.3em; font-weight: normal;
                   white-space: nowrap; }
table.heatmap thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left;
                         padding: 0.3em 0; }
table.heatmap td { border: 1px solid #fff; padding: 0; width: 3.4em; height: 2.1em;
                   text-align: center; vertical-align: middle; font-variant-numeric: tabular-nums; }
table.heatmap.dense td { width: 1.1em; height: 1.1em; font-size: 0; }
table.heatmap td.ns { background-image: repeating-linear-gradient(45deg, rgba(60,60,60,.45) 0 1px,
                      transparent 1px 6px); }
table.heatmap td.na { background-image: repeating-linear-gradient(45deg, #bbb 0 1px, transparent 1px 5px),
                      repeating-linear-gradient(-45deg, #bbb 0 1px, transparent 1px 5px); color: #666; }
table.heatmap td.diag { background: #a6a6a6; }
table.heatmap td:hover { outline: 2px solid #000; }
.strip { display: inline-block; width: 0.7em; height: 1.6em; vertical-align: middle; }
table.heatmap.dense .strip { height: 0.9em; }
#cell-tip { position: fixed; display: none; background: #fff; border: 1px solid #444;
            padding: 0.3em 0.6em; font-size: 0.85em; pointer-events: none; z-index: 10;
            box-shadow: 0 1px 4px rgba(0,0,0,.3); max-width: 32em; }
.legend span.key { display: inline-block; width: 1.4em; height: 1em; vertical-align: middle;
                   border: 1px solid #999; margin: 0 0.3em 0 1em; }
"""

# Inlined script: sortable tables, the heatmap's hover box, and a check that every image loaded
# (visible to the reader; the count is recorded on <body> for tests).
_SCRIPT = """
function cltmSortKey(cell) {
  var text = (cell.getAttribute('data-sort') || cell.textContent).trim();
  var number = parseFloat(text.replace(/\\u2212/g, '-').replace(/^[\\[(]/, ''));
  return isNaN(number) ? {num: false, text: text.toLowerCase()} : {num: true, value: number};
}
function cltmSort(th) {
  var table = th.closest('table'), body = table.tBodies[0];
  var column = Array.prototype.indexOf.call(th.parentNode.children, th);
  var ascending = th.getAttribute('aria-sort') !== 'ascending';
  Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute('aria-sort'); });
  th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (ra, rb) {
    var a = cltmSortKey(ra.cells[column]), b = cltmSortKey(rb.cells[column]);
    if (a.num !== b.num) { return a.num ? -1 : 1; }  // numbers first, n/a and words last
    var order = a.num ? a.value - b.value : a.text.localeCompare(b.text);
    return ascending ? order : -order;
  });
  rows.forEach(function (row) { body.appendChild(row); });
}
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('table.sortable th').forEach(function (th) {
    th.addEventListener('click', function () { cltmSort(th); });
  });
  var tip = document.getElementById('cell-tip');
  document.querySelectorAll('table.heatmap td[data-hover]').forEach(function (td) {
    td.addEventListener('mousemove', function (event) {
      tip.textContent = td.getAttribute('data-hover');
      tip.style.display = 'block';
      tip.style.left = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 4) + 'px';
      tip.style.top = (event.clientY + 14) + 'px';
    });
    td.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
});
window.addEventListener('load', function () {
  var images = document.images, ok = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { ok++; continue; }
    var note = document.createElement('span');
    note.className = 'broken';
    note.textContent = ' [image failed to load: ' + images[i].alt + ']';
    images[i].after(note);
  }
  document.body.setAttribute('data-images-loaded', ok + '/' + images.length);
});
"""


def _attr(value: float) -> str:
    """A number for a data-* attribute: full precision, empty where missing."""
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _heatmap_cell(cells: CellTable, i: int, j: int, dense: bool) -> str:
    esc = html.escape
    hover = cell_hover(cells, i, j)
    attrs = (
        f'data-target="{esc(cells.codes[i])}" data-donor="{esc(cells.codes[j])}" '
        f'data-value="{_attr(cells.value[i, j])}" data-lower="{_attr(cells.lower[i, j])}" '
        f'data-upper="{_attr(cells.upper[i, j])}" data-q="{_attr(cells.q[i, j])}" '
        f'data-seeds="{_attr(cells.n_seeds[i, j])}" data-hover="{esc(hover)}" title="{esc(hover)}"'
    )
    value = float(cells.value[i, j])
    if i == j and math.isfinite(value):
        return f'<td class="diag" {attrs}></td>'
    if not math.isfinite(value):  # an undefined row's diagonal too: it is not 1
        return f'<td class="na" {attrs}>{"" if dense else "n/a"}</td>'
    significant = bool(cells.significant[i, j])
    rgb = style.scale_rgb(value, faded=not significant)
    colour = "#fff" if style.is_dark(rgb) else "#222"
    css = "" if significant else ' class="ns"'
    text = "" if dense else html.escape(style.cell_text(value))
    return (
        f'<td{css} style="background-color:{style.hex_colour(rgb)};color:{colour}" {attrs}>'
        f"{text}</td>"
    )


def render_heatmap(cells: CellTable) -> str:
    """The matrix as a table of cells, each carrying its numbers (``data-*``) and hover text."""
    esc = html.escape
    n = len(cells.codes)
    dense = n > 24  # values no longer fit: colours only, numbers on hover
    palette = style.FAMILY_COLORS
    family_colour = {
        f: palette[k % len(palette)] for k, f in enumerate(dict.fromkeys(cells.families))
    }
    strip = [
        f'<span class="strip" style="background:{family_colour[f]}" title="{esc(f)}"></span>'
        for f in cells.families
    ]
    head = "".join(
        f'<th scope="col" title="{esc(f)}">{esc(c)} {strip[k]}</th>'
        for k, (c, f) in enumerate(zip(cells.codes, cells.families))
    )
    rows = []
    for i, t in enumerate(cells.codes):
        tds = "".join(_heatmap_cell(cells, i, j, dense) for j in range(n))
        rows.append(
            f'<tr><th scope="row" title="{esc(cells.families[i])}">{esc(t)} {strip[i]}</th>{tds}</tr>'
        )
    legend = (
        '<p class="legend">rows: target t, columns: donor s (hover a cell for its value, '
        f"{1 - cells.alpha:.0%} interval, q-value and seeds)"
        f'<span class="key" style="background:#a6a6a6"></span>diagonal (M = 1)'
        '<span class="key" style="background-image:repeating-linear-gradient(45deg,'
        'rgba(60,60,60,.45) 0 1px,transparent 1px 6px)"></span>'
        f"not significant (BH q ≥ {cells.alpha:g} or no interval): faded, hatched"
        '<span class="key" style="background:#fff"></span>n/a</p>'
    )
    return (
        f'<div class="heatmap-wrap"><table class="heatmap{" dense" if dense else ""}">'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f"{legend}"
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(str(h))}</th>' for h in header)
    trs = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(str(c))}</td>'
            if _is_number(str(c))
            else f"<td>{esc(str(c))}</td>"
            for c in row
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>'


def _toc(blocks: Sequence[Block]) -> str:
    items = [
        f'<li><a href="#{slug(b.content)}">{html.escape(b.content)}</a></li>'
        for b in blocks
        if b.kind == "heading" and b.level == 2
    ]
    return f'<nav class="toc"><strong>Contents</strong><ul>{"".join(items)}</ul></nav>'


def render_html(blocks: Sequence[Block], title: str) -> str:
    """A self-contained HTML page: images inlined as base64 PNGs, no external resources."""
    esc = html.escape
    body: list[str] = []
    used: set[str] = set()
    for block in blocks:
        if block.kind == "heading":
            anchor = slug(block.content)
            while anchor in used:
                anchor += "-"
            used.add(anchor)
            body.append(f'<h{block.level} id="{anchor}">{esc(block.content)}</h{block.level}>')
        elif block.kind == "toc":
            body.append(_toc(blocks))
        elif block.kind == "text":
            body.append(f"<p>{esc(block.content)}</p>")
        elif block.kind == "list":
            body.append(
                '<ul class="answers">'
                + "".join(f"<li>{esc(s)}</li>" for s in block.content)
                + "</ul>"
            )
        elif block.kind == "table":
            body.append(_html_table(*block.content))
        elif block.kind == "heatmap":
            body.append(render_heatmap(block.content))
        elif block.kind == "forest":
            body.append(f"<figure>{forest_svg(block.content)}</figure>")
        elif block.kind == "image":
            name, path = block.content
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(name)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n<script>{_SCRIPT}</script>\n"
        '</head>\n<body>\n<div id="cell-tip" role="tooltip"></div>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# --------------------------------------------------------------------------------------------
# Donor forest plots as inline SVG: one per target, drawn here rather than by matplotlib so that a
# 44-language page needs no 44 raster images (and their seconds); colours and font from style.

MINUS = "\u2212"
_FOREST = {"width": 640, "left": 90, "right": 24, "top": 30, "row": 16, "bottom": 44}


def _nice_ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + k * step, 10) for k in range(int((hi - start) / step) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}".replace("-", MINUS)


def forest_svg(forest: Forest) -> str:
    """One target's donors, best first: M with its interval, lines at 0 and 1, hover text."""
    esc = html.escape
    g = _FOREST
    rows = forest.rows
    n = max(len(rows), 1)
    values = [float(v) for v in rows["value"]]
    bounds = [float(x) for x in (*rows["lower"], *rows["upper"], *values)]
    finite = [x for x in bounds if math.isfinite(x)]
    lo = min([-0.25, *finite])
    hi = max([1.25, *finite])
    pad = 0.04 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    plot_w = g["width"] - g["left"] - g["right"]
    height = g["top"] + n * g["row"] + g["bottom"]
    bottom = g["top"] + n * g["row"]

    def x(v: float) -> float:
        return g["left"] + (v - lo) / (hi - lo) * plot_w

    parts = [
        f'<svg class="forest" xmlns="http://www.w3.org/2000/svg" width="{g["width"]}" '
        f'height="{height}" viewBox="0 0 {g["width"]} {height}" role="img" '
        f'aria-label="{esc(forest.title)}" font-family="{esc(style.FONT_FAMILY)}, sans-serif" '
        f'font-size="11" fill="{style.TEXT_COLOR}">',
        f'<text x="{g["left"]}" y="18" font-size="13">{esc(forest.title)}</text>',
    ]
    legend_x = g["width"] - g["right"] - 70 * len(style.VERDICT_COLORS)
    for k, (verdict, colour) in enumerate(style.VERDICT_COLORS.items()):
        lx = legend_x + 70 * k
        parts.append(
            f'<circle cx="{lx}" cy="14" r="3.5" fill="{colour}"/>'
            f'<text x="{lx + 7}" y="18">{esc(verdict)}</text>'
        )
    for tick in _nice_ticks(lo, hi):
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{g["top"]}" y2="{bottom}" stroke="#eee"/>'
            f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle">'
            f"{_tick_text(tick)}</text>"
        )
    for ref, dash in ((0.0, ""), (1.0, ' stroke-dasharray="4 3"')):
        parts.append(
            f'<line x1="{x(ref):.1f}" x2="{x(ref):.1f}" y1="{g["top"]}" y2="{bottom}" '
            f'stroke="{style.MUTED_TEXT}"{dash}/>'
        )
    parts.append(
        f'<text x="{g["left"] + plot_w / 2:.1f}" y="{bottom + 34}" text-anchor="middle">'
        f"M[target, donor] with its {forest.level:.0%} interval (1 = as much as own data)</text>"
    )
    for k, r in enumerate(rows.itertuples()):
        y = g["top"] + (k + 0.5) * g["row"]
        colour = style.VERDICT_COLORS.get(str(r.verdict), style.VERDICT_COLORS["n/a"])
        value, lower, upper = float(r.value), float(r.lower), float(r.upper)
        hover = forest.hover[k]
        mark = ""
        if math.isfinite(value):
            if math.isfinite(lower) and math.isfinite(upper):
                mark = (
                    f'<line x1="{x(lower):.1f}" x2="{x(upper):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{colour}" stroke-width="2"/>'
                )
            else:  # Fieller's set is unbounded: the interval runs off both edges
                mark = (
                    f'<line x1="{g["left"]}" x2="{g["left"] + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="{colour}" stroke-dasharray="1 3"/>'
                )
            mark += f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>'
        else:
            mark = f'<text x="{g["left"] + 4}" y="{y + 4:.1f}" fill="{style.MUTED_TEXT}">n/a</text>'
        parts.append(
            f'<g class="donor" data-donor="{esc(str(r.donor))}" data-value="{_attr(value)}" '
            f'data-lower="{_attr(lower)}" data-upper="{_attr(upper)}"><title>{esc(hover)}</title>'
            f'<rect x="0" y="{y - g["row"] / 2:.1f}" width="{g["width"]}" height="{g["row"]}" '
            f'fill="transparent"/>'
            f'<text x="{g["left"] - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(str(r.donor))}</text>'
            f"{mark}</g>"
        )
    parts.append("</svg>")
    return "".join(parts)
