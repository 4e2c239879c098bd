"""Render the report's blocks as Markdown (images beside it) or as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

from cltm_sb.report.document import Block


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block], base: Path) -> str:
    """Markdown with images referenced by paths relative to ``base``."""
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            lines += ["#" * block.level + " " + block.content, ""]
        elif block.kind == "text":
            lines += [block.content, ""]
        elif block.kind == "table":
            header, rows = block.content
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif block.kind == "image":
            name, path = block.content
            lines += [f"![{name}]({os.path.relpath(path, base).replace(os.sep, '/')})", ""]
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
.broken { color: #b00; font-weight: bold; }
"""

# Marks images that did not load (visible to the reader) and records the count on <body>.
_IMAGE_CHECK = """
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


def render_html(blocks: Sequence[Block], title: str) -> str:
    """A self-contained HTML page: images inlined as base64 PNGs, no external resources."""
    esc = html.escape
    body: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            body.append(f"<h{block.level}>{esc(block.content)}</h{block.level}>")
        elif block.kind == "text":
            body.append(f"<p>{esc(block.content)}</p>")
        elif block.kind == "table":
            header, rows = block.content
            head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
            trs = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        elif block.kind == "image":
            name, path = block.content
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(name)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n<script>{_IMAGE_CHECK}</script>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
