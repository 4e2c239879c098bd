"""The report of a finished grid: Markdown and a self-contained HTML page, and a two-grid comparison.

:func:`analyze_grid` loads a grid (a plan folder or a folder of records), builds the CLTM, its
diagnostics and a seed bootstrap; :func:`write_report` writes the matrix files of ``cltm matrix``
plus ``report.md`` (images beside it) and ``report.html`` (images inlined as base64 PNGs, so the
page opens from disk without a server). :func:`write_comparison` sets two grids side by side.

The page holds, in order: what was analysed (task, seeds, protocol), the heatmaps, the paper's
Table 1 diagnostics with 95% seed-bootstrap intervals, the §4.4 stability figures, self-gains, the
top pairs, and for each target a ranked list of donors ("which languages should I add for X?").
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.bootstrap import (
    DEFAULT_REPLICATES,
    MIN_BOOTSTRAP_SEEDS,
    BootstrapResult,
    bootstrap_cltm,
)
from cltm_sb.analysis.diagnostics import diagnose, write_matrix_csv
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, CLTMResult, build_cltm
from cltm_sb.analysis.summary import (
    STABILITY_ROWS,
    TABLE1_ROWS,
    format_value,
    grid_metadata,
    write_matrix_folder,
)
from cltm_sb.grid.layout import GridLayout, PlanError
from cltm_sb.io import atomic_write, atomic_write_json, atomic_write_text
from cltm_sb.languages import PAPER_SUBSET, LanguageRegistry
from cltm_sb.plots import plot_heatmap
from cltm_sb.results import load_records
from cltm_sb.tasks import get_task

PROTOCOL_SHARED = "shared pair runs"
PROTOCOL_PER_CELL = "one run per cell"
# The paper's Table 1 (GR / SV), for reference beside the grid's own values.
PAPER_TABLE1 = {
    "rfd": (0.162, 2.970),
    "asymmetry": (0.175, 1.084),
    "prop_positive": (0.9997, 0.0893),
    "reciprocity_positive": (0.9993, 0.1691),
    "row_cosine": (0.990, 0.615),
    "intra_family_positive": (0.0498, 0.4168),
}

@dataclass
class GridAnalysis:
    """A grid's CLTM with diagnostics, bootstrap intervals and what it was made from."""

    source: Path
    task: str
    metric: str
    title: str
    result: CLTMResult
    diagnostics: dict[str, Any]
    bootstrap: BootstrapResult
    families: list[str]
    protocol: str
    protocol_source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def locales(self) -> list[str]:
        return self.result.locales


# --------------------------------------------------------------------------------------------
# Analysis


def detect_protocol(folder: str | os.PathLike, pair_evaluations: Sequence[int]) -> tuple[str, str]:
    """(protocol, where it came from): ``plan.json``'s ``one_run_per_cell``, else the records.

    Without a plan, pair runs evaluated on both languages mean shared runs; pair runs that all
    evaluate one language mean one run per cell.
    """
    layout = GridLayout(folder)
    plan = layout.plan_fields()
    if plan is not None:
        protocol = PROTOCOL_PER_CELL if plan.get("one_run_per_cell") else PROTOCOL_SHARED
        return protocol, layout.plan_file.name
    if not pair_evaluations:
        return "unknown (no pair runs)", "records"
    shared = any(n > 1 for n in pair_evaluations)
    return (PROTOCOL_SHARED if shared else PROTOCOL_PER_CELL), "inferred from the records"


def _plan_task(folder: Path) -> str | None:
    try:
        plan = GridLayout(folder).plan_fields()
    except PlanError:
        return None
    return plan.get("task") if plan else None


def analyze_grid(
    folder: str | os.PathLike,
    registry: LanguageRegistry,
    task: str | None = None,
    locales: Sequence[str] | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
    n_replicates: int = DEFAULT_REPLICATES,
    rng_seed: int = 0,
    config_hash: str | None = None,
    data_hash: str | None = None,
) -> GridAnalysis:
    """Load a grid's records and compute everything the report shows.

    ``task`` defaults to the plan's task or, without a plan, the only task in the records.
    """
    folder = Path(folder)
    records = load_records(folder)
    tasks = sorted(set(records.table["task"]))
    task = task or _plan_task(folder) or (tasks[0] if len(tasks) == 1 else None)
    if task is None:
        raise ValueError(
            f"{folder}: records of several tasks ({', '.join(tasks) or 'none'}); pass --task"
        )
    spec = get_task(task)
    table = records.select(task, config_hash=config_hash, data_hash=data_hash)
    table = table[table["kind"].isin(["single", "self", "pair"])]
    if table.empty:
        raise ValueError(
            f"{folder}: no finished {task} single/self/pair runs ({records.n_records} records, "
            f"{records.n_failed} failed); run the grid first"
        )
    codes = list(locales) if locales else sorted(set(table["eval_locale"]))
    registry.check(codes)
    families = registry.families(codes)
    result = build_cltm(table, locales=codes, min_seeds=min_seeds)
    diagnostics = diagnose(result.matrix, families=families, se=result.se, gains=result.gains)
    diagnostics["nan_reasons"] = result.reasons
    boot = bootstrap_cltm(
        table,
        locales=codes,
        families=families,
        n_replicates=n_replicates,
        rng_seed=rng_seed,
        min_seeds=min_seeds,
        full=result,
    )
    pair_evals = [
        len(r.evaluations)
        for r in records.records
        if r.status == "ok" and r.kind == "pair" and r.task == task
    ]
    protocol, protocol_source = detect_protocol(folder, pair_evals)
    metadata = grid_metadata(task, table, records, min_seeds)
    return GridAnalysis(
        folder,
        task,
        spec.metric,
        f"{spec.title} CLTM",
        result,
        diagnostics,
        boot,
        families,
        protocol,
        protocol_source,
        metadata,
    )


def donor_ranking(analysis: GridAnalysis, target: str) -> pd.DataFrame:
    """Donors of ``target`` ranked by M[target, donor], with SE, 95% interval and a verdict.

    The interval is the bootstrap's when there are enough seeds, else M ± 1.96·SE (delta method,
    column ``interval_kind`` says which). Verdict: ``helps`` (interval above 0), ``hurts`` (below
    0), ``unclear``; ``n/a`` for an undefined entry (the reason is in the NaN list).
    """
    result, boot = analysis.result, analysis.bootstrap
    rows = []
    for donor in result.locales:
        if donor == target:
            continue
        value, se = float(result.matrix.loc[target, donor]), float(result.se.loc[target, donor])
        if boot.available:
            lo, hi, kind = (
                float(boot.matrix_lower.loc[target, donor]),
                float(boot.matrix_upper.loc[target, donor]),
                "bootstrap",
            )
        else:
            lo, hi, kind = value - 1.96 * se, value + 1.96 * se, "±1.96 SE"
        if not math.isfinite(value):
            verdict = "n/a"
        elif math.isfinite(lo) and lo > 0:
            verdict = "helps"
        elif math.isfinite(hi) and hi < 0:
            verdict = "hurts"
        else:
            verdict = "unclear"
        rows.append(
            {
                "target": target,
                "donor": donor,
                "value": value,
                "se": se,
                "lower": lo,
                "upper": hi,
                "interval_kind": kind,
                "verdict": verdict,
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=["target", "donor", "value", "se", "lower", "upper", "interval_kind", "verdict"],
    )
    frame = frame.sort_values(
        "value", ascending=False, na_position="last", kind="stable"
    ).reset_index(drop=True)
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


# --------------------------------------------------------------------------------------------
# Document model: a list of blocks rendered to Markdown or HTML


@dataclass
class _Block:
    kind: str  # heading, text, table, image
    content: Any
    level: int = 2


_num = format_value


def _interval(lo: float, hi: float, percent: bool = False) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"[{_num(lo, percent)}, {_num(hi, percent)}]"


def _diagnostic_rows(
    analysis: GridAnalysis, rows: Sequence[tuple[str, str, bool]], paper: bool
) -> list[list[str]]:
    out = []
    boot = analysis.bootstrap
    for key, label, pct in rows:
        row = [label, _num(analysis.diagnostics.get(key), pct), _interval(*boot.interval(key), pct)]
        if paper:
            ref = PAPER_TABLE1.get(key)
            row.append(f"{_num(ref[0], pct)} / {_num(ref[1], pct)}" if ref else "")
            note = ""
            if key in ("asymmetry", "reciprocity_positive"):
                note = f"protocol: {analysis.protocol}"
            row.append(note)
        out.append(row)
    return out


def _bootstrap_note(boot: BootstrapResult) -> str:
    if not boot.available:
        return f"95% intervals: n/a ({boot.note})."
    return (
        f"95% intervals: seed bootstrap, {boot.n_replicates} replicates over seeds "
        f"{', '.join(map(str, boot.seeds))} (one joint draw of seed labels per replicate, rng seed "
        f"{boot.rng_seed}; percentile intervals; NaN rules applied per replicate)."
    )


def report_blocks(
    analysis: GridAnalysis, registry: LanguageRegistry, images: dict[str, Path], top_k: int = 5
) -> list[_Block]:
    """The content of the report, independent of the output format."""
    a, res, d = analysis, analysis.result, analysis.diagnostics
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
                    ["records", f"{meta['n_records']} ({meta['n_failed_runs']} failed, "
                                f"{meta.get('n_debug_runs', 0)} --debug, skipped)"],
                    ["config / data hash", f"{meta['config_hash']} / {meta['data_hash']}"],
                    ["min seeds per P", str(meta["min_seeds"])],
                ],
            ),
        )
    )
    blocks.append(_Block("heading", "Heatmap"))
    for name, path in images.items():
        blocks.append(_Block("image", (name, path)))
    blocks.append(_Block("heading", "Diagnostics (paper Table 1)"))
    blocks.append(
        _Block(
            "table",
            (
                ["metric", "value", "95% interval", "paper GR / SV", "note"],
                _diagnostic_rows(a, TABLE1_ROWS, paper=True),
            ),
        )
    )
    blocks.append(
        _Block(
            "text",
            _bootstrap_note(a.bootstrap)
            + (
                f" Shown as n/a below {MIN_BOOTSTRAP_SEEDS} seeds." if a.bootstrap.available else ""
            ),
        )
    )
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
            (["figure", "value", "95% interval"], _diagnostic_rows(a, STABILITY_ROWS, paper=False)),
        )
    )
    off = ~np.eye(len(a.locales), dtype=bool)
    m, se = res.matrix.to_numpy(dtype=float), res.se.to_numpy(dtype=float)
    both = off & np.isfinite(m) & np.isfinite(se)
    if both.any():
        beyond = int((np.abs(m[both]) > 2 * se[both]).sum())
        blocks.append(
            _Block(
                "text",
                f"{beyond} of {int(both.sum())} off-diagonal entries exceed 2 SE in magnitude.",
            )
        )

    blocks.append(_Block("heading", "Self-gains"))
    gain_rows = []
    for t in a.locales:
        g = res.gains.loc[t]
        status = "ok" if g["valid"] else f"row NaN: {g['reason']}"
        if g["valid"] and g["flagged"]:
            status = "flagged: within 2 SE of zero"
        gain_rows.append(
            [
                t,
                registry.name(t),
                f"{_num(g['p_single'])} ± {_num(g['p_single_se'])} ({int(g['n_single'])})",
                f"{_num(g['p_self'])} ± {_num(g['p_self_se'])} ({int(g['n_self'])})",
                f"{_num(g['self_gain'])} ± {_num(g['self_gain_se'])}",
                _interval(float(a.bootstrap.gain_lower[t]), float(a.bootstrap.gain_upper[t])),
                status,
            ]
        )
    blocks.append(
        _Block(
            "table",
            (
                [
                    "code",
                    "language",
                    "P(a) ± SE (seeds)",
                    "P(a ∪ b) ± SE (seeds)",
                    "G_self ± SE",
                    "95% interval",
                    "status",
                ],
                gain_rows,
            ),
        )
    )

    blocks.append(_Block("heading", "Top pairs"))
    for key, title in (("top_positive", "Most positive"), ("top_negative", "Most negative")):
        pairs = sorted(
            (
                {"target": a.locales[i], "donor": a.locales[j], "value": m[i, j], "se": se[i, j]}
                for i in range(len(a.locales))
                for j in range(len(a.locales))
                if off[i, j] and np.isfinite(m[i, j])
            ),
            key=lambda p: p["value"],
            reverse=(key == "top_positive"),
        )
        pairs = [
            p for p in pairs if (p["value"] > 0) == (key == "top_positive") and p["value"] != 0
        ][:top_k]
        rows = [
            [
                f"{p['donor']} → {p['target']}",
                _num(p["value"]),
                _num(p["se"]),
                _interval(
                    float(a.bootstrap.matrix_lower.loc[p["target"], p["donor"]]),
                    float(a.bootstrap.matrix_upper.loc[p["target"], p["donor"]]),
                ),
            ]
            for p in pairs
        ]
        blocks.append(_Block("heading", title, 3))
        blocks.append(
            _Block("table", (["donor → target", "M", "SE", "95% interval"], rows))
            if rows
            else _Block("text", "none")
        )

    blocks.append(_Block("heading", "Which languages should I add? Donors per target"))
    blocks.append(
        _Block(
            "text",
            "Donors ranked by M[target, donor] (the donor's a-subset adds this share of the "
            "target's own self-gain). Verdict: helps / hurts when the 95% interval excludes 0.",
        )
    )
    for t in a.locales:
        ranking = donor_ranking(a, t)
        blocks.append(_Block("heading", f"{t} ({registry.name(t)})", 3))
        if not bool(res.gains.loc[t, "valid"]):
            blocks.append(_Block("text", f"n/a: {res.gains.loc[t, 'reason']}"))
            continue
        rows = [
            [
                str(r.rank),
                f"{r.donor} ({registry.name(r.donor)})",
                _num(r.value),
                _num(r.se),
                _interval(r.lower, r.upper),
                r.interval_kind,
                r.verdict,
            ]
            for r in ranking.itertuples()
        ]
        blocks.append(
            _Block(
                "table", (["rank", "donor", "M", "SE", "95% interval", "interval from", "verdict"], rows)
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
) -> dict[str, Path]:
    """Write the matrix files, heatmaps, ``bootstrap.json``, ``donors.csv``, ``report.md`` and ``report.html``.

    Args:
        subset: languages of a second, reduced heatmap (a list, a comma-separated string, or
            ``"paper"`` for the paper's 16 languages that the grid has).

    Returns:
        The main files written, by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {**analysis.metadata, "bootstrap": analysis.bootstrap.to_dict()}
    write_matrix_folder(analysis.result, registry, out, metadata=metadata, heatmap=True)
    images = {"CLTM, all languages": out / "cltm.png"}
    codes = _subset_codes(analysis, subset)
    if codes:
        plot_heatmap(
            analysis.result.matrix,
            registry,
            out / "cltm_subset.png",
            locales=codes,
            title=f"{analysis.title} (subset)",
            se=analysis.result.se,
        )
        images["CLTM, subset"] = out / "cltm_subset.png"
    atomic_write_json(out / "bootstrap.json", analysis.bootstrap.to_dict())
    donors = pd.concat([donor_ranking(analysis, t) for t in analysis.locales], ignore_index=True)
    atomic_write(
        out / "donors.csv", lambda tmp: donors.to_csv(tmp, index=False, float_format="%.6g")
    )
    blocks = report_blocks(analysis, registry, images, top_k=top_k)
    md = atomic_write_text(out / "report.md", render_markdown(blocks, out))
    page = atomic_write_text(out / "report.html", render_html(blocks, analysis.title))
    return {"markdown": md, "html": page, "donors": out / "donors.csv", **images}


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
    blocks.append(_Block("heading", "Diagnostics"))
    rows = []
    for key, label, pct in TABLE1_ROWS + STABILITY_ROWS:
        rows.append(
            [
                label,
                _num(a.diagnostics.get(key), pct),
                _interval(*a.bootstrap.interval(key), pct),
                _num(b.diagnostics.get(key), pct),
                _interval(*b.bootstrap.interval(key), pct),
            ]
        )
    blocks.append(_Block("table", (["metric", la, "95% interval", lb, "95% interval"], rows)))
    blocks.append(
        _Block("text", f"{la}: {_bootstrap_note(a.bootstrap)} {lb}: {_bootstrap_note(b.bootstrap)}")
    )
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
            "Entries are M_A − M_B ± sqrt(SE_A² + SE_B²) (delta-method SEs; the two grids "
            "are assumed independent).",
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
        labels[0]: {**a.metadata, "diagnostics": a.diagnostics, "bootstrap": a.bootstrap.to_dict()},
        labels[1]: {**b.metadata, "diagnostics": b.diagnostics, "bootstrap": b.bootstrap.to_dict()},
    }
    atomic_write_json(out / "compare.json", summary)
    blocks = comparison_blocks(a, b, labels, images)
    md = atomic_write_text(out / "compare.md", render_markdown(blocks, out))
    page = atomic_write_text(
        out / "compare.html", render_html(blocks, f"{labels[0]} vs {labels[1]}")
    )
    return {"markdown": md, "html": page, "difference": out / "difference.csv"}
