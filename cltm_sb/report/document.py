"""The content of the report and of the two-grid comparison, independent of the output format.

:func:`report_blocks` turns a :class:`~cltm_sb.analysis.grid_analysis.GridAnalysis` into a list
of :class:`Block` (headings, text, tables, images) that :mod:`cltm_sb.report.render` writes as
Markdown or HTML. Nothing here computes a statistic: it lays out what the analysis computed.

The page holds, in order: what was analysed (task, seeds, protocol, which variability the
intervals include), the heatmaps, the paper's Table 1 diagnostics (the headline estimate with its
calibrated 95% interval or the reason there is none, beside the paper's plug-in value), the §4.4
stability figures, self-gains, the top pairs, and for each target a ranked list of donors ("which
languages should I add for X?") with intervals and BH-controlled verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.diagnostics import STABILITY, TABLE1, diagnostics_in
from cltm_sb.analysis.grid_analysis import GridAnalysis
from cltm_sb.analysis.summary import DELTA_SE_NOTE, format_value
from cltm_sb.analysis.uncertainty import (
    NO_VERDICT_FLAGGED,
    VARIABILITY,
    VARIABILITY_NOTE,
    DiagnosticInterval,
)
from cltm_sb.languages import LanguageRegistry

PLUGIN_LABEL = "plug-in (paper's Table 1)"


def donor_ranking(analysis: GridAnalysis, target: str) -> pd.DataFrame:
    """Donors of ``target`` ranked by M[target, donor] (NaN last): the rows of donors.csv."""
    donors = analysis.donors
    return donors[donors["target"] == target].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Document model: a list of blocks that render.py writes as Markdown or HTML


@dataclass
class Block:
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
) -> list[Block]:
    """The content of the report, independent of the output format."""
    a, res, d = analysis, analysis.result, analysis.diagnostics
    unc = analysis.uncertainty
    meta = a.metadata
    blocks = [Block("heading", f"{a.title}: report", 1)]
    blocks.append(
        Block(
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
        blocks.append(Block("heading", "Heatmap"))
        for name, path in images.items():
            blocks.append(Block("image", (name, path)))
    blocks.append(Block("heading", "Diagnostics (paper Table 1)"))
    blocks.append(
        Block(
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
    blocks.append(Block("text", _methods_text(a)))
    excluded = d.get("excluded", {})
    if excluded.get("rows") or excluded.get("entries"):
        blocks.append(
            Block(
                "text",
                f"Left out of the diagnostics: rows {', '.join(excluded['rows']) or '-'}; "
                f"{len(excluded['entries'])} NaN entries (reasons below).",
            )
        )
    blocks.append(Block("heading", "Stability (paper §4.4)"))
    blocks.append(
        Block(
            "table",
            (
                ["figure", "value (plug-in)"],
                [[s.label, _num(d.get(s.key), s.fraction)] for s in diagnostics_in(STABILITY)],
            ),
        )
    )
    se_count = _se_count(a)
    if se_count:
        blocks.append(Block("text", se_count))
    blocks.append(Block("text", _verdict_summary(a)))

    blocks.append(Block("heading", "Self-gains"))
    blocks.append(
        Block(
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

    blocks.append(Block("heading", "Top pairs"))
    header = ["donor → target", "M", f"{unc.level:.0%} interval", "q", "verdict"]
    for positive, title in ((True, "Most positive"), (False, "Most negative")):
        rows = _top_pairs(a, positive, top_k)
        blocks.append(Block("heading", title, 3))
        blocks.append(Block("table", (header, rows)) if rows else Block("text", "none"))

    blocks.append(Block("heading", "Which languages should I add? Donors per target"))
    blocks.append(
        Block(
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
        blocks.append(Block("heading", f"{t} ({registry.name(t)})", 3))
        if not bool(res.gains.loc[t, "valid"]):
            blocks.append(Block("text", f"n/a: {res.gains.loc[t, 'reason']}"))
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
            Block(
                "table", (["rank", "donor", "M", f"{unc.level:.0%} interval", "q", "verdict"], rows)
            )
        )
    if res.reasons:
        blocks.append(Block("heading", "Undefined entries"))
        blocks.append(
            Block(
                "table",
                (
                    ["target", "donor", "reason"],
                    [[r["target"], r["donor"], r["reason"]] for r in res.reasons],
                ),
            )
        )
    return blocks


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
) -> list[Block]:
    """Content of the comparison page."""
    la, lb = labels
    blocks = [Block("heading", f"Comparison: {la} vs {lb}", 1)]
    blocks.append(
        Block(
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
    blocks.append(Block("heading", "Diagnostics (paper Table 1)"))
    level = f"{a.uncertainty.level:.0%} interval"
    blocks.append(
        Block(
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
        Block(
            "text",
            "Each grid's interval is its own (variability: "
            f"{VARIABILITY}); the difference is of the estimates only: an interval for it needs "
            f"both grids' seeds and is not computed here. {la}: {_methods_text(a)} "
            f"{lb}: {_methods_text(b)}",
        )
    )
    blocks.append(Block("heading", "Stability (paper §4.4)"))
    rows = [
        [
            spec.label,
            _num(a.diagnostics.get(spec.key), spec.fraction),
            _num(b.diagnostics.get(spec.key), spec.fraction),
            _num(_minus(a.diagnostics.get(spec.key), b.diagnostics.get(spec.key)), spec.fraction),
        ]
        for spec in diagnostics_in(STABILITY)
    ]
    blocks.append(Block("table", (["figure (plug-in)", la, lb, f"{la} − {lb}"], rows)))
    blocks.append(Block("heading", f"Difference matrix {la} − {lb}"))
    for name, path in images.items():
        blocks.append(Block("image", (name, path)))
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
    blocks.append(Block("table", (["target \\ donor"] + codes, rows)))
    blocks.append(
        Block(
            "text",
            "Entries are M_A − M_B ± sqrt(SE_A² + SE_B²), SEs by the "
            f"{DELTA_SE_NOTE}, the two grids assumed independent: a standard error for "
            "orientation, not a calibrated interval.",
        )
    )
    return blocks
