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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.compare import METHOD_CELL, METHOD_DIAGNOSTIC, ComparisonResult
from cltm_sb.analysis.diagnostics import STABILITY, TABLE1, diagnostics_in
from cltm_sb.analysis.grid_analysis import GridAnalysis
from cltm_sb.analysis.matrix import reason_matrix
from cltm_sb.analysis.summary import DELTA_SE_NOTE, format_value
from cltm_sb.analysis.uncertainty import (
    NO_P_BEST,
    NO_VERDICT_FLAGGED,
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
    """One piece of the report.

    ``kind``: heading (content: text), text, list (sentences), table ((header, rows)), image
    ((name, path)), heatmap (a :class:`CellTable`: interactive in HTML, left out of Markdown),
    forest (a :class:`Forest`: inline SVG in HTML, its PNG in Markdown where one was drawn) or
    toc (where HTML puts its table of contents).
    """

    kind: str
    content: Any
    level: int = 2


def _num(value: Any, percent: bool = False, digits: int = 3) -> str:
    """:func:`format_value`, without the sign of a value that prints as zero (no "-0.000")."""
    text = format_value(value, percent, digits)
    if text.startswith("-") and not any(c in "123456789" for c in text):
        text = text[1:]
    return text


def _rank_interval(row: Any) -> str:
    """``lo–hi`` of a donors.csv row's rank interval (1 = best), ``n/a`` where there is none."""
    lo, hi = getattr(row, "rank_lower", None), getattr(row, "rank_upper", None)
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "n/a"
    return str(int(lo)) if int(lo) == int(hi) else f"{int(lo)}–{int(hi)}"


# NaN entries named in the report's sentence (target←donor); diagnostics.json lists them all.
MAX_NAMED_ENTRIES = 12


def excluded_blocks(diagnostics: dict[str, Any], note: str = "") -> list[Block]:
    """The sentence naming the rows and NaN entries left out of the diagnostics (none if none)."""
    excluded = diagnostics.get("excluded", {})
    if not (excluded.get("rows") or excluded.get("entries")):
        return []
    entries = [f"{target}←{donor}" for target, donor in excluded.get("entries", [])]
    named = ", ".join(entries[:MAX_NAMED_ENTRIES])
    if len(entries) > MAX_NAMED_ENTRIES:
        named += f" and {len(entries) - MAX_NAMED_ENTRIES} more (diagnostics.json lists them)"
    return [
        Block(
            "text",
            f"Left out of the diagnostics: rows {', '.join(excluded['rows']) or '-'}; "
            f"{len(entries)} NaN entries{': ' + named if entries else ''}{note}.",
        )
    ]


def _p_best(row: Any) -> str:
    """P(donor is the best) of a donors.csv row, ``n/a`` where there is none."""
    value = getattr(row, "p_best", None)
    return "n/a" if value is None or pd.isna(value) else _num(value, digits=2)


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


def _units_text(res: Any) -> str:
    """``5 seeds``, or ``3 data draws x 5 seeds`` when the grid crosses draws with seeds."""
    seeds = f"{len(res.seeds)} seeds"
    return f"{len(res.draws)} data draws x {seeds}" if len(res.draws) > 1 else seeds


def _methods_text(analysis: GridAnalysis) -> str:
    """Which variability the intervals include, and how each Table 1 estimate was made."""
    res = analysis.uncertainty
    methods = "; ".join(
        f"{spec.label}: {res.diagnostics[spec.key].method}" for spec in diagnostics_in(TABLE1)
    )
    return (
        f"{res.level:.0%} intervals, variability: {res.variability} ({_units_text(res)}: "
        f"{', '.join(map(str, res.seeds))}). {res.variability_note} Estimate: bias-corrected where "
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
    reason = str(res.verdict_reasons[i, j])
    return f"n/a: {reason}" if reason else "n/a"


def _donor_seed_note(analysis: GridAnalysis, k: int) -> str:
    """The sentence under target k's donor table when its P(best) rests on pair runs that did not
    finish every seed, or why it has none; "" otherwise."""
    ranks = analysis.uncertainty.donor_ranks
    if ranks is None or not ranks.notes.size:
        return ""
    notes = {c: str(ranks.notes[k, j]) for j, c in enumerate(analysis.locales) if ranks.notes[k, j]}
    if not notes:
        return ""
    first = next(iter(notes.values()))
    if first.startswith(NO_P_BEST):
        return first[0].upper() + first[1:] + "."
    runs = "; ".join(f"{c}: {note}" for c, note in notes.items())
    return (
        f"Not every pair run finished every seed ({runs}). Each donor's M, interval, P(best) "
        "and rank interval use the seeds its pair run finished."
    )


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
    analysis: GridAnalysis,
    registry: LanguageRegistry,
    images: dict[str, Path],
    top_k: int = 5,
    forests: Mapping[str, Path] | None = None,
) -> list[Block]:
    """The content of the report, independent of the output format.

    Answers first (sentences with intervals, the best donors per target), then the heatmap and
    the details. ``forests``: each target's donor forest plot, shown with its donor table.
    """
    a, res, d = analysis, analysis.result, analysis.diagnostics
    unc = analysis.uncertainty
    meta = a.metadata
    blocks = [Block("heading", f"{a.title}: report", 1)]
    if meta.get("budget_note"):
        blocks.append(Block("text", f"Warning: {meta['budget_note']}."))
    blocks.append(Block("heading", "Answers"))
    blocks.append(
        Block(
            "text",
            f"Intervals in brackets are {unc.level:.0%} intervals (variability: {unc.variability}): "
            "Fieller's interval of the ratio for a cell, the method Table 1 names for a diagnostic; "
            "q-values are Benjamini–Hochberg adjusted over the cells; details below.",
        )
    )
    blocks.append(Block("list", answer_sentences(a)))
    blocks.append(Block("heading", "Best donors per target", 3))
    blocks.append(Block("text", BEST_DONORS_NOTE))
    blocks.append(Block("table", best_donor_rows(a, registry)))
    blocks.append(Block("toc", None))  # after the answers: the first screen holds them
    blocks.append(Block("heading", "Heatmap"))
    blocks.append(Block("heatmap", cell_table(a, registry)))
    for name, path in images.items():
        blocks.append(Block("image", (name, path)))
    blocks.append(Block("heading", "What was analysed"))
    blocks.append(
        Block(
            "table",
            (
                ["what", "value"],
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
                    [
                        "intervals",
                        f"{unc.level:.0%}, variability: {unc.variability} "
                        f"({_units_text(unc) if len(unc.draws) > 1 else 'seeds only'})",
                    ],
                ],
            ),
        )
    )
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
    blocks += excluded_blocks(d, " (reasons below)")
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
    header = ["donor → target", "M", f"{unc.level:.0%} interval (Fieller)", "q", "verdict"]
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
            "over seeds, paired where the runs share seeds (unbounded where the self-gain is not "
            "significant). "
            f"Verdict: helps / hurts when the paired test of M = 0 has a Benjamini–Hochberg "
            f"q ≤ {1 - unc.level:.2g} over all cells of the targets that are not flagged, unclear "
            f"otherwise; flagged targets get no verdict ({NO_VERDICT_FLAGGED}). P(best): the "
            "probability that the donor is the target's best; rank interval: the "
            f"{unc.level:.0%} interval of its rank among the target's donors (1 = best).",
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
                _p_best(r),
                _rank_interval(r),
            ]
            for r in ranking.itertuples()
        ]
        header = ["rank", "donor", "M", f"{unc.level:.0%} interval", "q", "verdict", "P(best)",
                  f"rank {unc.level:.0%} interval"]  # fmt: skip
        blocks.append(Block("table", (header, rows)))
        note = _donor_seed_note(a, k)
        if note:
            blocks.append(Block("text", note))
        image = forests.get(t) if forests else None
        blocks.append(Block("forest", donor_forest(a, t, registry, image)))
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
# Answers first: sentences with intervals, the best donors, the cells behind the heatmap


@dataclass
class CellTable:
    """Per cell, what the heatmap shows and its hover text says (rows: targets, in ``codes`` order).

    ``lower``/``upper`` are NaN where there is no bounded interval (unbounded Fieller set,
    flagged or undefined target); ``significant`` is the verdict helps/hurts with an interval.
    """

    codes: list[str]
    families: list[str]
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    q: np.ndarray
    n_seeds: np.ndarray
    verdict: np.ndarray
    significant: np.ndarray
    alpha: float
    # Why each NaN cell is NaN ("" elsewhere): the hover says so, as diagnostics.json does.
    reason: np.ndarray | None = None

    def frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=self.codes, columns=self.codes)


def cell_table(analysis: GridAnalysis, registry: LanguageRegistry) -> CellTable:
    """The cells of the analysis in the heatmap's order (family, then name)."""
    unc = analysis.uncertainty
    index = {c: k for k, c in enumerate(analysis.locales)}
    codes = registry.order(analysis.locales)
    order = np.array([index[c] for c in codes])
    grid = np.ix_(order, order)
    bounded = unc.cell_bounded & ~unc.point.flagged[:, None]
    lower = np.where(bounded, unc.cell_lower, np.nan)
    upper = np.where(bounded, unc.cell_upper, np.nan)
    significant = np.isin(unc.verdicts, ("helps", "hurts")) & bounded
    return CellTable(
        codes=list(codes),
        families=registry.families(codes),
        value=unc.point.matrix[grid],
        lower=lower[grid],
        upper=upper[grid],
        q=unc.q_values[grid],
        n_seeds=np.asarray(unc.point.n_seeds, dtype=float)[grid],
        verdict=unc.verdicts[grid],
        significant=significant[grid],
        alpha=1 - unc.level,
        reason=reason_matrix(analysis.result.reasons, list(codes)),
    )


def cell_hover(cells: CellTable, i: int, j: int) -> str:
    """A cell's hover text: donor → target, value, interval, q-value, seed count, verdict."""
    t, s = cells.codes[i], cells.codes[j]
    reason = cells.reason[i, j] if cells.reason is not None else ""
    # An undefined row has no M at all, not even the diagonal 1.
    if i == j and not np.isfinite(cells.value[i, j]):
        return f"{t}: row undefined: {reason or 'see the NaN reasons'}"
    if i == j:
        return f"{t}: diagonal, M = 1 by definition"
    if not np.isfinite(cells.value[i, j]) and reason:
        return f"{s} → {t}: M = n/a: {reason}"
    seeds = int(cells.n_seeds[i, j]) if np.isfinite(cells.n_seeds[i, j]) else 0
    return (
        f"{s} → {t}: M = {_num(cells.value[i, j])}, "
        f"{1 - cells.alpha:.0%} interval {_interval(cells.lower[i, j], cells.upper[i, j])}, "
        f"q = {_num(cells.q[i, j])}, {seeds} seed{'' if seeds == 1 else 's'}, {cells.verdict[i, j]}"
    )


@dataclass
class Forest:
    """One target's donors for a forest plot, best first (rows of donors.csv), with hover texts."""

    title: str
    rows: pd.DataFrame
    level: float
    hover: list[str]
    image: Path | None = None  # a drawn PNG (``--forest-pdf``), for Markdown


def donor_forest(
    analysis: GridAnalysis, target: str, registry: LanguageRegistry, image: Path | None = None
) -> Forest:
    """The forest plot of ``target``'s donors: M with its interval, sorted, NaN last."""
    rows = donor_ranking(analysis, target)
    # a column with no bounded interval holds None (object dtype): numbers with NaN for drawing
    rows = rows.assign(
        **{c: pd.to_numeric(rows[c], errors="coerce") for c in ("value", "lower", "upper")}
    )
    level = analysis.uncertainty.level
    hover = [
        f"{r.donor} → {target}: M = {_num(r.value)}, {level:.0%} interval "
        f"{_interval(r.lower, r.upper)}, q = {_num(r.q_value)}, {r.verdict}"
        for r in rows.itertuples()
    ]
    return Forest(f"Donors of {_language(target, registry)}", rows, level, hover, image)


def _diagnostic_phrase(analysis: GridAnalysis, key: str) -> str:
    """``label estimate [lower, upper]``, or ``(no calibrated interval)`` (the reason is in Table 1)."""
    spec = next(s for s in diagnostics_in(TABLE1) if s.key == key)
    d = analysis.uncertainty.diagnostics[key]
    if d.point is None or not math.isfinite(d.point):
        return f"{spec.label} n/a"
    interval = (
        _interval(d.lower, d.upper, spec.fraction)
        if d.lower is not None and d.upper is not None
        else "(no calibrated interval)"
    )
    return f"{spec.label} {_num(d.point, spec.fraction)} {interval}"


def _p_text(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def formal_test_phrases(tests: Mapping[str, Any] | None, alpha: float) -> dict[str, str]:
    """The hook for formal tests: ``intervals.json``'s ``"tests"`` (name -> null, p_value, reason)
    as phrases such as ``H0 M = J rejected (p < 0.0001)``; empty where the analysis wrote none."""
    phrases = {}
    for name, test in (tests or {}).items():
        null = str(test.get("null") or name).split(":")[0].strip()
        p = test.get("p_value")
        if p is None or not math.isfinite(float(p)):
            phrases[name] = f"H0 {null} not tested ({test.get('reason') or 'not computed'})"
        else:
            outcome = "rejected" if float(p) < alpha else "not rejected"
            phrases[name] = f"H0 {null} {outcome} at the {alpha:g} level ({_p_text(float(p))})"
    return phrases


def answer_sentences(analysis: GridAnalysis) -> list[str]:
    """The report's answers, each a sentence with its interval (and its test, where there is one)."""
    unc = analysis.uncertainty
    alpha = 1 - unc.level
    task = analysis.title.removesuffix(" CLTM")  # the declared task's title (a task of one's own too)
    status = _row_status(analysis)
    if all(status):
        reasons = "; ".join(dict.fromkeys(status))
        return [
            f"No question can be answered yet: no target has a defined row with verdicts ({reasons})."
        ]
    tests = formal_test_phrases(unc.to_intervals_json().get("tests"), alpha)
    agnostic = tests.pop("agnostic", None)
    sentences = [
        f"How far is {task.lower()} from language-agnostic (M = J: every donor as good as the "
        f"target's own data)? {_diagnostic_phrase(analysis, 'rfd')} (0 is agnostic; the "
        f"paper: {_paper_values('rfd')})" + (f"; {agnostic}." if agnostic else "."),
    ]
    called = unc.verdicts[unc.verdicts != "n/a"]
    helps, hurts = int((called == "helps").sum()), int((called == "hurts").sum())
    sentences.append(
        f"Which donors help? {helps} of {called.size} donor → target cells help and {hurts} hurt "
        f"significantly (BH q ≤ {alpha:.2g}), the rest are unclear; "
        f"{_diagnostic_phrase(analysis, 'prop_positive')} of the cells are positive."
    )
    sentences.append(
        f"Is transfer mutual? {_diagnostic_phrase(analysis, 'asymmetry')} (0: s helps t exactly as "
        f"t helps s). Does it stay within families? "
        f"{_diagnostic_phrase(analysis, 'intra_family_positive')} of the positive transfer."
    )
    if tests:
        sentences.append("Other tests: " + "; ".join(tests.values()) + ".")
    left_out = [f"{t} ({why})" for t, why in zip(analysis.locales, status) if why]
    if left_out:
        sentences.append(f"Targets without verdicts: {'; '.join(left_out)}.")
    return sentences


def _paper_values(key: str) -> str:
    spec = next(s for s in diagnostics_in(TABLE1) if s.key == key)
    assert spec.paper is not None
    return f"GR {_num(spec.paper[0], spec.fraction)}, SV {_num(spec.paper[1], spec.fraction)}"


def _row_status(analysis: GridAnalysis) -> list[str]:
    """Per target, why it has no verdicts ('' where it has)."""
    gains = analysis.result.gains
    out = []
    for t in analysis.locales:
        if not bool(gains.loc[t, "valid"]):
            out.append(f"row undefined: {gains.loc[t, 'reason']}")
        elif bool(gains.loc[t, "flagged"]):
            out.append(NO_VERDICT_FLAGGED)
        else:
            out.append("")
    return out


BEST_DONORS_NOTE = (
    "Per target, the donors whose data help it significantly (verdict helps: Benjamini–Hochberg "
    "q ≤ 0.05 with a bounded interval), best first, at most three; where the analysis gives the "
    "set of donors that holds the best one with 95% probability, that set is shown beside them."
)


def _language(code: str, registry: LanguageRegistry) -> str:
    """``code (name)``, or the code alone where the name is the code."""
    name = registry.name(code)
    return code if name == code else f"{code} ({name})"


def best_donor_rows(
    analysis: GridAnalysis, registry: LanguageRegistry, limit: int = 3
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the best-donors table: one row per target."""
    donors = analysis.donors
    has_set = "in_best_set" in donors.columns
    header = ["target", "best donors: M [interval]", "significant helpers"]
    if has_set:
        header.append("set holding the best donor (95%)")
    rows = []
    for t, status in zip(analysis.locales, _row_status(analysis)):
        ranking = donors[donors["target"] == t]
        # A significant helper has a bounded interval too (the table's note; as the heatmap marks them).
        bounded = np.isfinite(ranking["lower"].astype(float)) & np.isfinite(ranking["upper"].astype(float))
        helps = ranking[(ranking["verdict"] == "helps") & bounded]
        if status:
            best = f"n/a: {status}"
        elif helps.empty:
            top = ranking.iloc[0] if len(ranking) else None
            verdict = "" if top is None else (
                "q ≤ 0.05 but an unbounded interval" if top.verdict == "helps" and not bounded.iloc[0] else top.verdict
            )
            best = "none helps significantly" + (
                f" (highest: {top.donor} {_num(top.value)}, {verdict})" if top is not None else ""
            )
        else:
            best = "; ".join(
                f"{r.donor} {_num(r.value)} {_interval(r.lower, r.upper)}"
                for r in helps.head(limit).itertuples()
            )
        row = [_language(t, registry), best, str(len(helps))]
        if has_set:
            members = ranking[ranking["in_best_set"].astype(str).str.lower() == "true"]
            row.append(", ".join(members["donor"]) if len(members) and not status else "n/a")
        rows.append(row)
    return header, rows


# --------------------------------------------------------------------------------------------
# Tables for papers: Table 1 and the donor tables as data (CSV) and LaTeX (booktabs)


def table1_frame(analysis: GridAnalysis) -> pd.DataFrame:
    """Table 1, ours beside the paper's: one row per diagnostic, numbers unformatted."""
    rows = []
    for spec in diagnostics_in(TABLE1):
        d = analysis.uncertainty.diagnostics[spec.key]
        rows.append(
            {
                "diagnostic": spec.key,
                "label": spec.label,
                "estimate": d.point,
                "lower": d.lower,
                "upper": d.upper,
                "plugin": d.plugin,
                "paper_gr": spec.paper[0] if spec.paper else None,
                "paper_sv": spec.paper[1] if spec.paper else None,
                "percent": spec.fraction,
                "method": d.method,
                "reason": d.reason or "",
            }
        )
    return pd.DataFrame(rows)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "−": "$-$", "→": r"$\rightarrow$", "±": r"$\pm$", "≤": r"$\le$", "≥": r"$\ge$", "∪": r"$\cup$",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """``text`` safe inside a LaTeX table cell; a minus before a digit is a math minus."""
    escaped = "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))
    return re.sub(r"(?<![\w$])-(?=\d|\.\d)", "$-$", escaped)


def latex_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    align: str,
    caption: str,
    groups: Sequence[int] = (),
) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); ``groups``: rows before which a
    ``\\midrule`` separates one group from the next."""
    lines = [
        f"% {caption}",
        "% needs \\usepackage{booktabs}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in header) + " \\\\",
        "\\midrule",
    ]
    for k, row in enumerate(rows):
        if k in groups and k:
            lines.append("\\midrule")
        lines.append(" & ".join(latex_escape(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def table1_latex(analysis: GridAnalysis) -> str:
    """Table 1 as a booktabs table: estimate, interval, plug-in and the paper's GR / SV values."""
    unc = analysis.uncertainty
    header = [
        "diagnostic",
        "estimate",
        f"{unc.level:.0%} interval",
        "plug-in",
        "paper GR",
        "paper SV",
    ]
    rows = []
    for spec in diagnostics_in(TABLE1):
        d = unc.diagnostics[spec.key]
        pct = spec.fraction
        interval = _interval(d.lower, d.upper, pct) if d.lower is not None else "n/a"
        paper = spec.paper or (None, None)
        rows.append(
            [
                spec.label,
                _num(d.point, pct),
                interval,
                _num(d.plugin, pct),
                _num(paper[0], pct),
                _num(paper[1], pct),
            ]
        )
    caption = (
        f"{analysis.title}: Table 1 diagnostics, {_units_text(unc)}, {unc.level:.0%} intervals "
        f"(variability: {unc.variability}); n/a: no calibrated interval (see report.md for why)"
    )
    return latex_table(header, rows, "lrrrrr", caption)


def donors_latex(analysis: GridAnalysis) -> str:
    """Every target's donors, best first, as one booktabs table (a rule between targets)."""
    unc = analysis.uncertainty
    header = ["target", "donor", "M", f"{unc.level:.0%} interval", "q", "verdict", "P(best)", "rank"]
    rows: list[list[str]] = []
    groups = []
    for t in analysis.locales:
        ranking = analysis.donors[analysis.donors["target"] == t]
        groups.append(len(rows))
        for r in ranking.itertuples():
            rows.append(
                [
                    t,
                    r.donor,
                    _num(r.value),
                    _interval(r.lower, r.upper),
                    _num(r.q_value),
                    str(r.verdict),
                    _p_best(r),
                    _rank_interval(r),  # an en dash: LaTeX reads UTF-8 by default since 2018
                ]
            )
    caption = (
        f"{analysis.title}: donors per target ranked by M[target, donor]; verdict by "
        f"Benjamini-Hochberg q <= {1 - unc.level:.2g}; interval n/a where unbounded or the target is flagged; "
        f"P(best): probability that the donor is the target's best; rank: its {unc.level:.0%} rank interval (1 = best)"
    )
    return latex_table(header, rows, "llrrrlrr", caption, groups)


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


def _comparison_rows(a: GridAnalysis, b: GridAnalysis, comparison: ComparisonResult) -> list[list[str]]:
    """Per Table 1 diagnostic: each grid's estimate and interval, the difference and its interval."""
    rows = []
    for spec in diagnostics_in(TABLE1):
        da, db = a.uncertainty.diagnostics[spec.key], b.uncertainty.diagnostics[spec.key]
        diff = comparison.diagnostics[spec.key]
        pct = spec.fraction
        rows.append(
            [
                spec.label,
                _num(da.point, pct),
                diagnostic_interval_text(da, pct),
                _num(db.point, pct),
                diagnostic_interval_text(db, pct),
                _num(diff.point, pct),
                f"n/a: {diff.reason}" if diff.lower is None and diff.reason else _interval(diff.lower, diff.upper, pct),
            ]
        )
    return rows


def _differing_cells(comparison: ComparisonResult, labels: tuple[str, str], limit: int = 20) -> list[Block]:
    """The shared cells whose difference is significant after BH (q < 0.05), largest first."""
    cells = comparison.cells
    hits = cells[cells["q_value"].astype(float) < 0.05] if len(cells) else cells
    la, lb = labels
    if not len(hits):
        return [Block("text", f"No shared cell differs between {la} and {lb} at BH q < 0.05.")]
    hits = hits.reindex(hits["difference"].astype(float).abs().sort_values(ascending=False).index)
    rows = [
        [
            f"{r.donor} → {r.target}",
            _num(r.value_a, digits=2),
            _num(r.value_b, digits=2),
            _num(r.difference, digits=2),
            _interval(r.lower, r.upper),
            f"{float(r.q_value):.3g}",
        ]
        for r in hits.head(limit).itertuples()
    ]
    header = ["donor → target", la, lb, f"{la} − {lb}", f"{comparison.level:.0%} interval", "BH q"]
    shown = f"the {limit} largest of {len(hits)}" if len(hits) > limit else f"all {len(hits)}"
    return [
        Block("heading", f"Cells that differ (BH q < 0.05; {shown})"),
        Block("table", (header, rows)),
    ]


def comparison_blocks(
    a: GridAnalysis,
    b: GridAnalysis,
    labels: tuple[str, str],
    images: dict[str, Path],
    comparison: ComparisonResult,
) -> list[Block]:
    """Content of the comparison page (``comparison``: the differences' intervals and q-values,
    :func:`~cltm_sb.analysis.compare.compare_uncertainty`)."""
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
                    f"{la} − {lb}",
                    level,
                ],
                _comparison_rows(a, b, comparison),
            ),
        )
    )
    blocks.append(
        Block(
            "text",
            "Each grid's interval is its own (variability: "
            f"{comparison.variability}); the difference's interval: {METHOD_DIAGNOSTIC}, each grid "
            f"resampled on its own (n/a where a grid has no calibrated interval). {la}: {_methods_text(a)} "
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
            f"orientation. Each cell's calibrated interval, p-value and BH q-value ({METHOD_CELL}) "
            "are in compare.json (`difference.cells`); the cells that differ are listed below.",
        )
    )
    blocks += _differing_cells(comparison, labels)
    return blocks
