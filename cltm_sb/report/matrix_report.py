"""The report and the comparison of matrices without run records (``cltm report --matrix``).

Laid out from a :class:`~cltm_sb.analysis.external.MatrixAnalysis` (nothing is computed here):
what was analysed, the heatmap, the paper's Table 1 diagnostics as plug-in values with the
languages each one used, the stability figures, the top pairs and each target's donors. Cell
intervals appear only where the user supplied standard errors, each labelled
:data:`~cltm_sb.analysis.external.SUPPLIED_SE_LABEL`; the diagnostics get none (no seeds, nothing
to calibrate them by). A budgeted CLTM's report (``--sources`` of ``cltm complete``) shows the
completion's own Table-1 estimates instead, with the intervals it printed, beside the plug-in on
the completed matrix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cltm_sb.analysis.diagnostics import (
    SQUARE_ONLY,
    STABILITY,
    TABLE1,
    diagnostics_in,
    write_matrix_csv,
)
from cltm_sb.analysis.external import (
    NO_RECORDS_REASON,
    MatrixAnalysis,
    MatrixDifference,
    difference,
)
from cltm_sb.io import atomic_write, atomic_write_json, atomic_write_text, writes_output_folder
from cltm_sb.languages import LanguageRegistry
from cltm_sb.report.document import Block, _interval, _num, excluded_blocks
from cltm_sb.report.render import render_html, render_markdown

NO_INTERVAL_TEXT = "n/a: no SE supplied"
COMPLETION_TABLE1 = (
    "the completion's estimates (`cltm complete`, its intervals.json): intervals where calibrated, "
    "the plug-in on the completed matrix beside them"
)


def _scope(analysis: MatrixAnalysis, key: str) -> str:
    used = analysis.diagnostics.get("languages_used", {}).get(key)
    if not used:
        return ""
    if key in SQUARE_ONLY:
        return f"{len(used['targets'])} languages both target and donor"
    return f"{len(used['targets'])} targets × {len(used['donors'])} donors"


def _cell_interval(shown: bool, lower: float, upper: float) -> str:
    """A cell's interval where the report has cell intervals (``shown``); n/a for an undefined cell."""
    if not shown:
        return NO_INTERVAL_TEXT
    if np.isnan([lower, upper]).any():
        return "n/a"
    return _interval(lower, upper) if np.isfinite([lower, upper]).all() else "unbounded"


def _what_rows(analysis: MatrixAnalysis, completion: bool = False) -> list[list[str]]:
    d = analysis.diagnostics
    common = d["languages_used"]["asymmetry"]["targets"]
    se = "none"
    if analysis.se is not None:
        se = "supplied: intervals " + (
            analysis.to_intervals_json()["cells"]["method"] or "not printed"
        )
    return [
        ["source", str(analysis.source)],
        ["targets (rows)", f"{d['n_targets']}: {', '.join(d['targets'])}"],
        ["donors (columns)", f"{d['n_donors']}: {', '.join(d['donors'])}"],
        ["both target and donor", f"{len(common)}: {', '.join(common) or '-'}"],
        ["standard errors", se],
        [
            "diagnostics",
            COMPLETION_TABLE1 if completion else "plug-in values (the paper's Table 1 estimators), no intervals",
        ],
    ]


def _paper_cell(spec) -> str:
    """The paper's GR / SV values of a Table-1 diagnostic ("" where the paper has none)."""
    pct = spec.fraction
    return f"{_num(spec.paper[0], pct)} / {_num(spec.paper[1], pct)}" if spec.paper else ""


def _plugin_cell(analysis: MatrixAnalysis, spec) -> str:
    """The plug-in value of a Table-1 diagnostic, or ``n/a: why`` where it is undefined."""
    undefined = analysis.diagnostics.get("undefined", {})
    if spec.key in undefined:
        return f"n/a: {undefined[spec.key]}"
    return _num(analysis.diagnostics.get(spec.key), spec.fraction)


def _table1_rows(analysis: MatrixAnalysis) -> list[list[str]]:
    return [
        [spec.label, _plugin_cell(analysis, spec), _scope(analysis, spec.key), _paper_cell(spec)]
        for spec in diagnostics_in(TABLE1)
    ]


def _completion_table1_rows(analysis: MatrixAnalysis, entries: dict) -> list[list[str]]:
    """Table 1 of a budgeted CLTM: the completion's estimate and interval, then the plug-in."""
    rows = []
    for spec in diagnostics_in(TABLE1):
        entry = entries.get(spec.key) or {}
        lower, upper = entry.get("lower"), entry.get("upper")
        if lower is not None and upper is not None:
            interval = _interval(lower, upper, spec.fraction)
        else:
            reason = str(entry.get("reason") or "").removeprefix("no interval: ")
            interval = f"n/a: {reason}" if reason else "n/a"
        rows.append([spec.label, _num(entry.get("point"), spec.fraction), interval, _plugin_cell(analysis, spec),
                     _scope(analysis, spec.key), _paper_cell(spec)])
    return rows


def _completion_methods(entries: dict) -> str:
    """One sentence per estimator the completion used, naming its diagnostics."""
    by_method: dict[str, list[str]] = {}
    for spec in diagnostics_in(TABLE1):
        method = (entries.get(spec.key) or {}).get("method")
        if method:
            by_method.setdefault(method, []).append(spec.label)
    return " ".join(f"{', '.join(labels)}: {method}." for method, labels in by_method.items())


def _top_rows(donors: pd.DataFrame, shown: bool, positive: bool, top_k: int) -> list[list[str]]:
    table = donors.dropna(subset=["value"])
    table = table[table["value"] > 0] if positive else table[table["value"] < 0]
    table = table.sort_values("value", ascending=not positive).head(top_k)
    return [
        [
            f"{r.donor} → {r.target}",
            _num(r.value),
            _num(r.se),
            _cell_interval(shown, r.lower, r.upper),
        ]
        for r in table.itertuples()
    ]


def _source_of(sources: pd.DataFrame | None, target: str, donor: str) -> str:
    if sources is None or target not in sources.index or donor not in sources.columns:
        return ""
    return str(sources.loc[target, donor])


def budget_text(sources: pd.DataFrame) -> str:
    """What a budgeted CLTM measured: counts of measured and predicted off-diagonal cells."""
    values = sources.to_numpy(dtype=object)
    off = np.asarray(sources.index, dtype=object)[:, None] != np.asarray(sources.columns, dtype=object)[None, :]
    measured = int(((values == "measured") & off).sum())
    predicted = int(((values == "predicted") & off).sum())
    undefined = int(((values == "undefined") & off).sum())
    share = measured / (measured + predicted) if measured + predicted else float("nan")
    return (
        f"A budgeted CLTM (`cltm complete`): {measured} of {measured + predicted} defined "
        f"off-diagonal cells were measured ({share:.0%}), {predicted} are predicted by the completion "
        "model (outlined in the heatmap, marked in the donor tables), "
        f"{undefined} are undefined. Predicted values are not measurements: their predictive "
        "intervals are in the completion's lower.csv and upper.csv."
    )


def matrix_report_blocks(
    analysis: MatrixAnalysis,
    registry: LanguageRegistry,
    images: dict[str, Path],
    top_k: int = 5,
    sources: pd.DataFrame | None = None,
    p_best: pd.DataFrame | None = None,
    completion_diagnostics: dict | None = None,
    cell_method: str | None = None,
) -> list[Block]:
    """The content of a matrix's report, independent of the output format (``sources``: the
    ``measured``/``predicted``/``undefined`` cells of a budgeted CLTM; ``p_best``: its donors'
    P(best) and cell intervals, :func:`~cltm_sb.analysis.completion.read_completion_donors`;
    ``completion_diagnostics``: its Table-1 entries and ``cell_method`` how its cell intervals
    were made, :func:`~cltm_sb.analysis.completion.read_completion_intervals`)."""
    a, d = analysis, analysis.diagnostics
    completed = completion_diagnostics is not None
    donors = _with_p_best(a.donors, p_best)
    cells = _cell_method(a, p_best, cell_method)
    shown = cells is not None
    interval_note = (
        f"Cell intervals: {a.level:.0%}, {cells}." if shown
        else "No cell intervals: no standard errors were supplied (--se)."
    )
    blocks = [
        Block("heading", f"{a.title}: report", 1),
        Block(
            "text",
            "A budgeted CLTM completed by `cltm complete`: Table 1 gives the completion's estimates "
            "(a plug-in on the completed matrix is biased where cells are predicted, so it is shown "
            f"beside them only); the other figures are plug-in values. {interval_note}"
            if completed
            else "A matrix without run records: every diagnostic is the plug-in value (the paper's "
            f"Table 1 estimator), with no interval ({NO_RECORDS_REASON}). {interval_note}",
        ),
        Block("toc", None),
        Block("heading", "What was analysed"),
        Block("table", (["what", "value"], _what_rows(a, completed))),
    ]
    if sources is not None:
        blocks.append(Block("text", budget_text(sources)))
    blocks += [
        Block("heading", "Heatmap"),
    ]
    blocks += [Block("image", (name, path)) for name, path in images.items()]
    if not images:
        blocks.append(Block("text", "not drawn (--no-heatmap)"))
    if completed:
        blocks.append(Block("heading", "Diagnostics (paper Table 1, the completion's estimates)"))
        header = ["metric", "estimate", f"{a.level:.0%} interval", "plug-in (completed matrix)",
                  "languages used", "paper GR / SV"]
        blocks.append(Block("table", (header, _completion_table1_rows(a, completion_diagnostics))))
        blocks.append(Block("text", "Estimators and intervals: " + _completion_methods(completion_diagnostics)))
    else:
        blocks.append(Block("heading", "Diagnostics (paper Table 1, plug-in)"))
        blocks.append(
            Block("table", (["metric", "plug-in", "languages used", "paper GR / SV"], _table1_rows(a)))
        )
    blocks += excluded_blocks(d)
    blocks.append(Block("heading", "Stability (paper §4.4)"))
    # the SEs are the user's (or a grid's delta-method ones): say which
    se_kind = "supplied" if a.se_supplied else "delta method"
    stability = [
        [s.label.replace("(delta method)", f"({se_kind})"), _num(d.get(s.key), s.fraction)]
        for s in diagnostics_in(STABILITY)
        if not s.key.startswith("self_gain")  # no runs, no self-gains
    ]
    blocks.append(Block("table", (["figure", "value (plug-in)"], stability)))
    blocks.append(Block("heading", "Top pairs"))
    header = ["donor → target", "M", "SE", f"{a.level:.0%} interval"]
    for positive, title in ((True, "Most positive"), (False, "Most negative")):
        rows = _top_rows(donors, shown, positive, top_k)
        blocks.append(Block("heading", title, 3))
        blocks.append(Block("table", (header, rows)) if rows else Block("text", "none"))
    blocks.append(Block("heading", "Which languages should I add? Donors per target"))
    if p_best is None:
        blocks.append(Block("text", f"Donors ranked by M[target, donor]. {interval_note}"))
    else:
        blocks.append(Block("text", (
            "Donors ranked by P(best): the share of the completion's predictive draws in which the "
            "donor is the target's largest cell (predicted cells are shrunk, so their point values "
            "understate how likely they are to be the best); ★ marks the smallest set of donors "
            f"holding 95% of P(best). {interval_note}"
        )))
    for t in a.targets:
        ranking = donors[donors["target"] == t]
        blocks.append(Block("heading", f"{t} ({registry.name(t)})", 3))
        rows = [
            [
                str(r.rank),
                f"{r.donor} ({registry.name(r.donor)})",
                _num(r.value),
                _num(r.se),
                _cell_interval(shown, r.lower, r.upper),
            ]
            + ([_source_of(sources, t, r.donor)] if sources is not None else [])
            + ([_p_best_text(r)] if p_best is not None else [])
            for r in ranking.itertuples()
        ]
        header = ["rank", "donor", "M", "SE", f"{a.level:.0%} interval"]
        header += ["source"] if sources is not None else []
        header += ["P(best)"] if p_best is not None else []
        blocks.append(Block("table", (header, rows)) if rows else Block("text", "no other donor"))
    return blocks


def _cell_method(analysis: MatrixAnalysis, p_best: pd.DataFrame | None, cell_method: str | None) -> str | None:
    """How the report's cell intervals were made: the completion's (its donors.csv, ``cell_method``
    from its intervals.json), else from the user's SEs; None when it has none."""
    if cell_method is not None and p_best is not None and "lower" in p_best.columns:
        return f"from `cltm complete`: {cell_method}"
    return analysis.to_intervals_json()["cells"]["method"] if analysis.has_intervals else None


def _with_p_best(donors: pd.DataFrame, p_best: pd.DataFrame | None) -> pd.DataFrame:
    """``donors`` with p_best and in_best_set, re-ranked by P(best) then value (unchanged without);
    where ``p_best`` has the completion's cell intervals (lower, upper), they replace the donors'."""
    if p_best is None:
        return donors
    out = donors.drop(columns=[c for c in p_best.columns if c in donors.columns and c not in ("target", "donor")])
    out = out.merge(p_best, on=["target", "donor"], how="left")
    out["in_best_set"] = out["in_best_set"].fillna(False).astype(bool)
    # Targets keep their order; within a target, stable sorts keep P(best) then value order.
    order = {t: i for i, t in enumerate(dict.fromkeys(donors["target"]))}
    out = out.sort_values(["p_best", "value"], ascending=False, kind="stable")
    out = out.sort_values("target", key=lambda targets: targets.map(order), kind="stable")
    out["rank"] = out.groupby("target").cumcount() + 1
    return out.reset_index(drop=True)


def _p_best_text(row) -> str:
    value = getattr(row, "p_best", float("nan"))
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2f}" + (" ★" if getattr(row, "in_best_set", False) else "")


def table1_frame(analysis: MatrixAnalysis, completion_diagnostics: dict | None = None) -> pd.DataFrame:
    """table1.csv for a matrix: the plug-in values beside the paper's, no interval; for a budgeted
    CLTM, the completion's estimates and intervals (:func:`_completion_entries`), the plug-in beside them."""
    d = analysis.diagnostics
    if completion_diagnostics is not None:
        entries = _completion_entries(analysis, completion_diagnostics)
    else:
        entries = {
            spec.key: {
                "point": d.get(spec.key),
                "plugin": d.get(spec.key),
                "method": "plug-in",
                "reason": d.get("undefined", {}).get(spec.key) or NO_RECORDS_REASON,
            }
            for spec in diagnostics_in(TABLE1)
        }
    return pd.DataFrame(
        [
            {
                "diagnostic": spec.key,
                "label": spec.label,
                "estimate": entries[spec.key].get("point"),
                "lower": entries[spec.key].get("lower"),
                "upper": entries[spec.key].get("upper"),
                "plugin": entries[spec.key]["plugin"],
                "paper_gr": spec.paper[0] if spec.paper else None,
                "paper_sv": spec.paper[1] if spec.paper else None,
                "percent": spec.fraction,
                "method": entries[spec.key].get("method"),
                "reason": entries[spec.key].get("reason") or "",
            }
            for spec in diagnostics_in(TABLE1)
        ]
    )


def _completion_entries(analysis: MatrixAnalysis, completion_diagnostics: dict) -> dict[str, dict]:
    """The completion's Table-1 entries (intervals.json schema) with this matrix's plug-in as ``plugin``."""
    return {
        spec.key: {**(completion_diagnostics.get(spec.key) or {}), "plugin": analysis.diagnostics.get(spec.key)}
        for spec in diagnostics_in(TABLE1)
    }


@writes_output_folder("out_dir", "report")
def write_matrix_report(
    analysis: MatrixAnalysis,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    top_k: int = 5,
    heatmap: bool = True,
    sources: pd.DataFrame | None = None,
    p_best: pd.DataFrame | None = None,
    completion_diagnostics: dict | None = None,
    cell_method: str | None = None,
) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``cltm.csv`` (codes as analysed), ``cltm_se.csv``
    (when supplied), ``diagnostics.json``, ``intervals.json``, ``donors.csv``, ``table1.csv`` and
    the heatmap ``cltm.png``/``.pdf``. With ``sources`` (a budgeted CLTM's
    :func:`~cltm_sb.analysis.completion.read_sources`), predicted cells are outlined, the budget
    is stated, and donors.csv gains a ``source`` column; with ``p_best`` (the completion's
    donors.csv) donors are ranked by P(best) and donors.csv gains ``p_best`` and ``in_best_set``;
    with ``completion_diagnostics`` (the completion's intervals.json entries) Table 1, table1.csv
    and intervals.json give the completion's estimates and intervals, the plug-in as ``plugin``;
    with ``cell_method`` (its intervals.json's ``cells.method``) the donor tables, top pairs,
    donors.csv and intervals.json give the completion's cell intervals from ``p_best``."""
    if sources is not None:
        missing = sorted(
            (set(analysis.matrix.index) - set(sources.index)) | (set(analysis.matrix.columns) - set(sources.columns))
        )
        if missing:
            raise ValueError(f"the sources CSV lacks the languages {missing} of the matrix")
    out = Path(out_dir)  # the staging folder of writes_output_folder
    write_matrix_csv(analysis.matrix, out / "cltm.csv")
    if analysis.se is not None:
        write_matrix_csv(analysis.se, out / "cltm_se.csv")
    notes = {"diagnostics": COMPLETION_TABLE1 if completion_diagnostics is not None
             else f"plug-in values; {NO_RECORDS_REASON}"}
    cells = _cell_method(analysis, p_best, cell_method)
    if cells is not None:
        notes["cells"] = cells
    atomic_write_json(
        out / "diagnostics.json",
        {
            "source": str(analysis.source),
            "title": analysis.title,
            "notes": notes,
            **analysis.diagnostics,
        },
    )
    interval_data = analysis.to_intervals_json()
    if completion_diagnostics is not None:
        interval_data["diagnostics"] = _completion_entries(analysis, completion_diagnostics)
        interval_data["variability_note"] = COMPLETION_TABLE1
    if cells is not None:
        interval_data["cells"] = {"method": cells, "reason": ""}
    intervals = atomic_write_json(out / "intervals.json", interval_data)
    donors = _with_p_best(analysis.donors, p_best)
    if cells is not None:
        donors["interval"] = cells
    if sources is not None:
        donors = donors.assign(
            source=[_source_of(sources, t, d) for t, d in zip(donors["target"], donors["donor"])]
        )
    atomic_write(
        out / "donors.csv", lambda tmp: donors.to_csv(tmp, index=False, float_format="%.6g")
    )
    table1 = table1_frame(analysis, completion_diagnostics)
    atomic_write(
        out / "table1.csv", lambda tmp: table1.to_csv(tmp, index=False, float_format="%.6g")
    )
    images: dict[str, Path] = {}
    if heatmap:
        from cltm_sb.report.figures import plot_heatmap  # matplotlib only when drawing

        predicted = sources == "predicted" if sources is not None else None
        plot_heatmap(
            analysis.matrix, registry, out / "cltm.png", title=analysis.title, se=analysis.se,
            predicted=predicted,
        )
        images["CLTM"] = out / "cltm.png"
    blocks = matrix_report_blocks(
        analysis, registry, images, top_k, sources, p_best, completion_diagnostics, cell_method
    )
    md = atomic_write_text(out / "report.md", render_markdown(blocks, out))
    page = atomic_write_text(out / "report.html", render_html(blocks, analysis.title))
    return {"markdown": md, "html": page, "donors": out / "donors.csv", "intervals": intervals}


# --------------------------------------------------------------------------------------------
# Two matrices side by side


def comparison_blocks(
    a: MatrixAnalysis,
    b: MatrixAnalysis,
    diff: MatrixDifference,
    labels: tuple[str, str],
    images: dict[str, Path],
) -> list[Block]:
    """Content of the comparison page of two matrices (either may come from a grid)."""
    la, lb = labels
    da, db = a.diagnostics, b.diagnostics
    blocks = [
        Block("heading", f"Comparison: {la} vs {lb}", 1),
        Block(
            "text",
            "Plug-in diagnostics of two matrices, at least one without run records: no interval "
            f"for a diagnostic or its difference ({NO_RECORDS_REASON}).",
        ),
        Block(
            "table",
            (
                ["", la, lb],
                [
                    ["source", str(a.source), str(b.source)],
                    ["targets", str(da["n_targets"]), str(db["n_targets"])],
                    ["donors", str(da["n_donors"]), str(db["n_donors"])],
                    [
                        "standard errors",
                        _se_text(a),
                        _se_text(b),
                    ],
                ],
            ),
        ),
        Block("heading", "Diagnostics (paper Table 1, plug-in)"),
    ]
    rows = []
    for spec in diagnostics_in(TABLE1):
        pct = spec.fraction
        x, y = da.get(spec.key), db.get(spec.key)
        both = x is not None and y is not None and x == x and y == y
        rows.append(
            [
                spec.label,
                _num(x, pct),
                _scope(a, spec.key),
                _num(y, pct),
                _scope(b, spec.key),
                _num(x - y if both else None, pct),
            ]
        )
    blocks.append(
        Block(
            "table",
            (
                ["metric", la, "languages used", lb, "languages used", f"{la} − {lb}"],
                rows,
            ),
        )
    )
    blocks.append(Block("heading", f"Difference matrix {la} − {lb}"))
    blocks += [Block("image", (name, path)) for name, path in images.items()]
    value = diff.value
    targets, donors = list(value.index), list(value.columns)
    table_rows = []
    for t in targets:
        row = [t]
        for s in donors:
            if t == s:
                row.append("-")
            elif diff.se is not None:
                text = f"{_num(value.loc[t, s], digits=2)} ± {_num(diff.se.loc[t, s], digits=2)}"
                if diff.lower is not None and diff.upper is not None:
                    text += f" {_interval(diff.lower.loc[t, s], diff.upper.loc[t, s])}"
                row.append(text)
            else:
                row.append(_num(value.loc[t, s], digits=2))
        table_rows.append(row)
    blocks.append(Block("table", (["target \\ donor", *donors], table_rows)))
    note = f"Entries are M_A − M_B over the common targets and donors; SE: {diff.se_label}."
    if diff.lower is not None:
        note += f" Intervals ({a.level:.0%}): from the supplied SE, cells assumed independent."
    blocks.append(Block("text", note))
    return blocks


def _se_text(analysis: MatrixAnalysis) -> str:
    if analysis.se is None:
        return "none"
    return "supplied" if analysis.se_supplied else "delta method of the grid's records"


@writes_output_folder("out_dir", "compare")
def write_matrix_comparison(
    a: MatrixAnalysis,
    b: MatrixAnalysis,
    registry: LanguageRegistry,
    out_dir: str | os.PathLike,
    labels: tuple[str, str] = ("A", "B"),
) -> dict[str, Path]:
    """Write ``compare.md``, ``compare.html``, ``compare.json``, ``difference.csv`` (and
    ``difference_se.csv`` when both have SEs) and the difference heatmap."""
    from cltm_sb.report.figures import plot_heatmap

    out = Path(out_dir)  # the staging folder of writes_output_folder
    diff = difference(a, b, labels)
    write_matrix_csv(diff.value, out / "difference.csv")
    if diff.se is not None:
        write_matrix_csv(diff.se, out / "difference_se.csv")
    plot_heatmap(
        diff.value,
        registry,
        out / "difference.png",
        title=f"{labels[0]} − {labels[1]}",
        se=diff.se,
        colorbar_label=f"M({labels[0]}) − M({labels[1]}) (colour clipped to ±1.5)",
        diagonal_label="diagonal (1 − 1 = 0 by definition)",
    )
    images = {f"difference {labels[0]} − {labels[1]}": out / "difference.png"}
    summary = {
        label: {
            "source": str(g.source),
            "title": g.title,
            "diagnostics": g.diagnostics,
            "intervals": g.to_intervals_json(),
        }
        for label, g in zip(labels, (a, b))
    }
    summary["difference"] = {
        "targets": list(diff.value.index),
        "donors": list(diff.value.columns),
        "se": diff.se_label,
        "intervals": "from the supplied SE, cells assumed independent"
        if diff.lower is not None
        else None,
    }
    atomic_write_json(out / "compare.json", summary)
    blocks = comparison_blocks(a, b, diff, labels, images)
    md = atomic_write_text(out / "compare.md", render_markdown(blocks, out))
    page = atomic_write_text(
        out / "compare.html", render_html(blocks, f"{labels[0]} vs {labels[1]}")
    )
    return {"markdown": md, "html": page, "difference": out / "difference.csv"}
