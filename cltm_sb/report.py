"""The report of a finished grid: Markdown and a self-contained HTML page, and a two-grid comparison.

:func:`cltm_sb.analysis.grid_analysis.analyze_grid` computes a grid's analysis once;
:func:`write_report` writes from it the matrix files of ``cltm matrix``, ``intervals.json``,
``donors.csv``, ``report.md`` (images beside it) and ``report.html`` (images inlined as base64
PNGs, so the page opens from disk without a server). :func:`write_comparison` sets two grids side
by side. Nothing here computes a statistic: it lays out what the analysis computed.

The page holds, in order: what was analysed (task, seeds, protocol, which variability the
intervals include), the heatmaps, the paper's Table 1 diagnostics (the headline estimate with its
calibrated 95% interval or the reason there is none, beside the paper's plug-in value), the §4.4
stability figures, self-gains, the top pairs, and for each target a ranked list of donors ("which
languages should I add for X?") with intervals and BH-controlled verdicts.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.diagnostics import (
    STABILITY,
    TABLE1,
    diagnostics_in,
    write_matrix_csv,
)
from cltm_sb.analysis.grid_analysis import GridAnalysis
from cltm_sb.analysis.summary import (
    DELTA_SE_NOTE,
    MATRIX_NOTES,
    format_value,
    write_matrix_folder,
)
from cltm_sb.analysis.uncertainty import (
    NO_VERDICT_FLAGGED,
    VARIABILITY,
    VARIABILITY_NOTE,
    DiagnosticInterval,
)
from cltm_sb.io import atomic_write, atomic_write_json, atomic_write_text
from cltm_sb.languages import PAPER_SUBSET, LanguageRegistry
from cltm_sb.plots import plot_heatmap

PLUGIN_LABEL = "plug-in (paper's Table 1)"


def donor_ranking(analysis: GridAnalysis, target: str) -> pd.DataFrame:
    """Donors of ``target`` ranked by M[target, donor] (NaN last): the rows of donors.csv."""
    donors = analysis.donors
    return donors[donors["target"] == target].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Document model: a list of blocks rendered to Markdown or HTML


@dataclass
class _Block:
    kind: str  # heading, text, table, image
    content: Any
    level: int = 2


_num = format_value


def _interval(lo: float | None, hi: float | None, percent: bool = False) -> str:
    """``[lo, hi]``, or ``n/a`` where either end is missing."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{_num(lo, percent)}, {_num(hi, percent)}]"


def diagnostic_interval_text(d: DiagnosticInterval, percent: bool) -> str:
    """The calibrated interval, or ``n/a: reason`` where there is none."""
    if d.lower is None or d.upper is None:
        return f"n/a: {d.reason}" if d.reason else "n/a"
    return _interval(d.lower, d.upper, percent)


def _table1_rows(analysis: GridAnalysis) -> list[list[str]]:
    rows = []
    for spec in diagnostics_in(TABLE1):
        d = analysis.uncertainty.diagnostics[spec.key]
        pct = spec.fraction
        paper = f"{_num(spec.paper[0], pct)} / {_num(spec.paper[1], pct)}" if spec.paper else ""
        note = (
            f"protocol: {analysis.protocol}"
            if spec.key in ("asymmetry", "reciprocity_positive")
            else ""
        )
        rows.append(
            [
                spec.label,
                _num(d.point, pct),
                diagnostic_interval_text(d, pct),
                _num(d.plugin, pct),
                paper,
                note,
            ]
        )
    return rows


def _methods_text(analysis: GridAnalysis) -> str:
    """Which variability the intervals include, and how each Table 1 estimate was made."""
    res = analysis.uncertainty
    methods = "; ".join(
        f"{spec.label}: {res.diagnostics[spec.key].method}" for spec in diagnostics_in(TABLE1)
    )
    return (
        f"{res.level:.0%} intervals, variability: {VARIABILITY} ({len(res.seeds)} seeds: "
        f"{', '.join(map(str, res.seeds))}). {VARIABILITY_NOTE} Estimate: bias-corrected where "
        f"the method says so, else the plug-in; the {PLUGIN_LABEL} column is the estimator of the "
        f"paper's Table 1, for comparison. Where no interval is calibrated it is n/a with the "
        f"reason. Methods: {methods}."
    )


def _cell_interval(analysis: GridAnalysis, i: int, j: int) -> str:
    """A cell's Fieller interval, or why there is none."""
    res = analysis.uncertainty
    if res.point.flagged[i]:
        return f"n/a: {res.verdict_reasons[i, j]}"
    if res.cell_bounded[i, j]:
        return _interval(float(res.cell_lower[i, j]), float(res.cell_upper[i, j]))
    if np.isinf(res.cell_lower[i, j]):  # Fieller's set is unbounded: no interval to print
        return f"unbounded (self-gain not significant at the {res.level:.0%} level)"
    return "n/a"


def _verdict(verdict: str, reason: str | None) -> str:
    return f"{verdict}: {reason}" if verdict == "n/a" and reason else verdict


def _verdict_summary(analysis: GridAnalysis) -> str:
    res = analysis.uncertainty
    called = res.verdicts[res.verdicts != "n/a"]
    counts = {v: int((called == v).sum()) for v in ("helps", "hurts", "unclear")}
    return (
        f"Verdicts (BH q ≤ {1 - res.level:.2g} over {called.size} cells of targets that are not "
        f"flagged): {counts['helps']} helps, {counts['hurts']} hurts, {counts['unclear']} unclear."
    )


def _se_count(analysis: GridAnalysis) -> str | None:
    """The paper's §4.4 count of entries beyond 2 delta-method SE (no multiplicity control)."""
    m = analysis.result.matrix.to_numpy(dtype=float)
    se = analysis.result.se.to_numpy(dtype=float)
    both = ~np.eye(len(analysis.locales), dtype=bool) & np.isfinite(m) & np.isfinite(se)
    if not both.any():
        return None
    beyond = int((np.abs(m[both]) > 2 * se[both]).sum())
    return (
        f"{beyond} of {int(both.sum())} off-diagonal entries exceed 2 SE in magnitude "
        f"(as in the paper §4.4; SE: {DELTA_SE_NOTE}; no multiplicity control, unlike the "
        "verdicts)."
    )


def _top_pairs(analysis: GridAnalysis, positive: bool, top_k: int) -> list[list[str]]:
    res = analysis.uncertainty
    m = res.point.matrix
    codes = analysis.locales
    cells = [
        (float(m[i, j]), i, j)
        for i in range(len(codes))
        for j in range(len(codes))
        if i != j and np.isfinite(m[i, j]) and (m[i, j] > 0 if positive else m[i, j] < 0)
    ]
    cells.sort(reverse=positive)
    return [
        [
            f"{codes[j]} → {codes[i]}",
            _num(value),
            _cell_interval(analysis, i, j),
            _num(res.q_values[i, j]),
            _verdict(str(res.verdicts[i, j]), str(res.verdict_reasons[i, j])),
        ]
        for value, i, j in cells[:top_k]
    ]


def _gain_rows(analysis: GridAnalysis, registry: LanguageRegistry) -> list[list[str]]:
    res, unc = analysis.result, analysis.uncertainty
    rows = []
    for k, t in enumerate(analysis.locales):
        g = res.gains.loc[t]
        status = "ok" if g["valid"] else f"row NaN: {g['reason']}"
        if g["valid"] and g["flagged"]:
            status = "flagged: within 2 SE of zero"
        rows.append(
            [
                t,
                registry.name(t),
                f"{_num(g['p_single'])} ± {_num(g['p_single_se'])} ({int(g['n_single'])})",
                f"{_num(g['p_self'])} ± {_num(g['p_self_se'])} ({int(g['n_self'])})",
                f"{_num(g['self_gain'])} ± {_num(g['self_gain_se'])}",
                _interval(float(unc.gain_lower[k]), float(unc.gain_upper[k])),
                status,
            ]
        )
    return rows


def report_blocks(
    analysis: GridAnalysis, registry: LanguageRegistry, images: dict[str, Path], top_k: int = 5
) -> list[_Block]:
    """The content of the report, independent of the output format."""
    a, res, d = analysis, analysis.result, analysis.diagnostics
    unc = analysis.uncertainty
    meta = a.metadata
    blocks = [_Block("heading", f"{a.title}: report", 1)]
    blocks.append(
        _Block(
            "table",
            (
                ["", ""],
                [
                    ["source", str(a.source)],
                    ["task / metric", f"{a.task} / {a.metric}"],
                    ["languages", f"{len(a.locales)}: {', '.join(a.locales)}"],
                    ["seeds", f"{len(meta['seeds'])}: {', '.join(map(str, meta['seeds']))}"],
                    ["protocol", f"{a.protocol} ({a.protocol_source})"],
                    [
                        "records",
                        f"{meta['n_records']} ({meta['n_failed_runs']} failed, "
                        f"{meta.get('n_debug_runs', 0)} --debug, skipped)",
                    ],
                    ["config / data hash", f"{meta['config_hash']} / {meta['data_hash']}"],
                    ["min seeds per P", str(meta["min_seeds"])],
                    ["intervals", f"{unc.level:.0%}, variability: {VARIABILITY} (seeds only)"],
                ],
            ),
        )
    )
    if images:
        blocks.append(_Block("heading", "Heatmap"))
        for name, path in images.items():
            blocks.append(_Block("image", (name, path)))
    blocks.append(_Block("heading", "Diagnostics (paper Table 1)"))
    blocks.append(
        _Block(
            "table",
            (
                [
                    "metric",
                    "estimate",
                    f"{unc.level:.0%} interval",
                    PLUGIN_LABEL,
                    "paper GR / SV",
                    "note",
                ],
                _table1_rows(a),
            ),
        )
    )
    blocks.append(_Block("text", _methods_text(a)))
    excluded = d.get("excluded", {})
    if excluded.get("rows") or excluded.get("entries"):
        blocks.append(
            _Block(
                "text",
                f"Left out of the diagnostics: rows {', '.join(excluded['rows']) or '-'}; "
                f"{len(excluded['entries'])} NaN entries (reasons below).",
            )
        )
    blocks.append(_Block("heading", "Stability (paper §4.4)"))
    blocks.append(
        _Block(
            "table",
            (
                ["figure", "value (plug-in)"],
                [[s.label, _num(d.get(s.key), s.fraction)] for s in diagnostics_in(STABILITY)],
            ),
        )
    )
    se_count = _se_count(a)
    if se_count:
        blocks.append(_Block("text", se_count))
    blocks.append(_Block("text", _verdict_summary(a)))

    blocks.append(_Block("heading", "Self-gains"))
    blocks.append(
        _Block(
            "table",
            (
                [
                    "code",
                    "language",
                    "P(a) ± SE (seeds)",
                    "P(a ∪ b) ± SE (seeds)",
                    "G_self ± SE (for the 2-SE flag)",
                    f"{unc.level:.0%} interval (paired over seeds)",
                    "status",
                ],
                _gain_rows(a, registry),
            ),
        )
    )

    blocks.append(_Block("heading", "Top pairs"))
    header = ["donor → target", "M", f"{unc.level:.0%} interval", "q", "verdict"]
    for positive, title in ((True, "Most positive"), (False, "Most negative")):
        rows = _top_pairs(a, positive, top_k)
        blocks.append(_Block("heading", title, 3))
        blocks.append(_Block("table", (header, rows)) if rows else _Block("text", "none"))

    blocks.append(_Block("heading", "Which languages should I add? Donors per target"))
    blocks.append(
        _Block(
            "text",
            "Donors ranked by M[target, donor] (the donor's a-subset adds this share of the "
            f"target's own self-gain). Interval: Fieller's {unc.level:.0%} interval of the ratio "
            "over seed-paired differences (unbounded where the self-gain is not significant). "
            f"Verdict: helps / hurts when the paired test of M = 0 has a Benjamini–Hochberg "
            f"q ≤ {1 - unc.level:.2g} over all cells of the targets that are not flagged, unclear "
            f"otherwise; flagged targets get no verdict ({NO_VERDICT_FLAGGED}).",
        )
    )
    donors = a.donors
    for k, t in enumerate(a.locales):
        blocks.append(_Block("heading", f"{t} ({registry.name(t)})", 3))
        if not bool(res.gains.loc[t, "valid"]):
            blocks.append(_Block("text", f"n/a: {res.gains.loc[t, 'reason']}"))
            continue
        ranking = donors[donors["target"] == t]
        j_of = {c: j for j, c in enumerate(a.locales)}
        rows = [
            [
                str(r.rank),
                f"{r.donor} ({registry.name(r.donor)})",
                _num(r.value),
                _cell_interval(a, k, j_of[r.donor]),
                _num(r.q_value),
                _verdict(r.verdict, r.reason),
            ]
            for r in ranking.itertuples()
        ]
        blocks.append(
            _Block(
                "table", (["rank", "donor", "M", f"{unc.level:.0%} interval", "q", "verdict"], rows)
            )
        )
    if res.reasons:
        blocks.append(_Block("heading", "Undefined entries"))
        blocks.append(
            _Block(
                "table",
                (
                    ["target", "donor", "reason"],
                    [[r["target"], r["donor"], r["reason"]] for r in res.reasons],
                ),
            )
        )
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[_Block], base: Path) -> str:
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


def render_html(blocks: Sequence[_Block], title: str) -> str:
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


# --------------------------------------------------------------------------------------------
# Two grids side by side


def difference(a: GridAnalysis, b: GridAnalysis) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(A − B, its SE) over the languages both grids have, the SE assuming independent grids."""
    common = [c for c in a.locales if c in b.locales]
    if len(common) < 2:
        raise ValueError(
            f"the grids share {len(common)} language(s) ({', '.join(common) or 'none'}); need two or more"
        )
    diff = a.result.matrix.loc[common, common] - b.result.matrix.loc[common, common]
    se = np.sqrt(a.result.se.loc[common, common] ** 2 + b.result.se.loc[common, common] ** 2)
    return diff, se


def _minus(x: float | None, y: float | None) -> float | None:
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return x - y


def _comparison_rows(a: GridAnalysis, b: GridAnalysis) -> list[list[str]]:
    """Per Table 1 diagnostic: each grid's estimate and interval, and the difference of estimates."""
    rows = []
    for spec in diagnostics_in(TABLE1):
        da, db = a.uncertainty.diagnostics[spec.key], b.uncertainty.diagnostics[spec.key]
        pct = spec.fraction
        rows.append(
            [
                spec.label,
                _num(da.point, pct),
                diagnostic_interval_text(da, pct),
                _num(db.point, pct),
                diagnostic_interval_text(db, pct),
                _num(_minus(da.point, db.point), pct),
            ]
        )
    return rows


def comparison_blocks(
    a: GridAnalysis, b: GridAnalysis, labels: tuple[str, str], images: dict[str, Path]
) -> list[_Block]:
    """Content of the comparison page."""
    la, lb = labels
    blocks = [_Block("heading", f"Comparison: {la} vs {lb}", 1)]
    blocks.append(
        _Block(
            "table",
            (
                ["", la, lb],
                [
                    ["source", str(a.source), str(b.source)],
                    ["task / metric", f"{a.task} / {a.metric}", f"{b.task} / {b.metric}"],
                    ["languages", str(len(a.locales)), str(len(b.locales))],
                    ["seeds", str(len(a.metadata["seeds"])), str(len(b.metadata["seeds"]))],
                    ["protocol", a.protocol, b.protocol],
                ],
            ),
        )
    )
    blocks.append(_Block("heading", "Diagnostics (paper Table 1)"))
    level = f"{a.uncertainty.level:.0%} interval"
    blocks.append(
        _Block(
            "table",
            (
                [
                    "metric",
                    f"{la} estimate",
                    level,
                    f"{lb} estimate",
                    level,
                    f"{la} − {lb} (estimates)",
                ],
                _comparison_rows(a, b),
            ),
        )
    )
    blocks.append(
        _Block(
            "text",
            "Each grid's interval is its own (variability: "
            f"{VARIABILITY}); the difference is of the estimates only: an interval for it needs "
            f"both grids' seeds and is not computed here. {la}: {_methods_text(a)} "
            f"{lb}: {_methods_text(b)}",
        )
    )
    blocks.append(_Block("heading", "Stability (paper §4.4)"))
    rows = [
        [
            spec.label,
            _num(a.diagnostics.get(spec.key), spec.fraction),
            _num(b.diagnostics.get(spec.key), spec.fraction),
            _num(_minus(a.diagnostics.get(spec.key), b.diagnostics.get(spec.key)), spec.fraction),
        ]
        for spec in diagnostics_in(STABILITY)
    ]
    blocks.append(_Block("table", (["figure (plug-in)", la, lb, f"{la} − {lb}"], rows)))
    blocks.append(_Block("heading", f"Difference matrix {la} − {lb}"))
    for name, path in images.items():
        blocks.append(_Block("image", (name, path)))
    diff, se = difference(a, b)
    codes = list(diff.index)
    rows = [
        [t]
        + [
            f"{_num(diff.loc[t, s], digits=2)} ± {_num(se.loc[t, s], digits=2)}" if t != s else "-"
            for s in codes
        ]
        for t in codes
    ]
    blocks.append(_Block("table", (["target \\ donor"] + codes, rows)))
    blocks.append(
        _Block(
            "text",
            "Entries are M_A − M_B ± sqrt(SE_A² + SE_B²), SEs by the "
            f"{DELTA_SE_NOTE}, the two grids assumed independent: a standard error for "
            "orientation, not a calibrated interval.",
        )
    )
    return blocks


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
