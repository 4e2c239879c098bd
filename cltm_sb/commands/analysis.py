"""``cltm analyze``, ``cltm matrix`` and ``cltm heatmap``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cltm_sb.analysis.diagnostics import diagnose, read_matrix_csv
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS
from cltm_sb.analysis.summary import DIAGNOSTIC_ROWS, format_value
from cltm_sb.io import to_jsonable
from cltm_sb.languages import load_registry
from cltm_sb.tasks import TASKS


def format_diagnostics(report: dict[str, Any]) -> str:
    """A plain-text table of the diagnostics for people."""
    lines = [f"languages: {report['n_languages']} ({', '.join(report['languages'])})"]
    width = max(len(label) for _, label, _ in DIAGNOSTIC_ROWS)
    lines += [
        f"  {label:<{width}}  {format_value(report.get(key), pct, digits=4)}"
        for key, label, pct in DIAGNOSTIC_ROWS
    ]
    if report.get("flagged_targets"):
        lines.append(f"self-gain within 2 SE of zero: {', '.join(report['flagged_targets'])}")
    for key, title in (("top_positive", "top positive"), ("top_negative", "top negative")):
        pairs = report.get(key) or []
        if pairs:
            shown = ", ".join(f"{p['donor']}→{p['target']} {p['value']:.2f}" for p in pairs)
            lines.append(f"{title} donor→target: {shown}")
    undefined = report.get("undefined") or {}
    if undefined:
        lines.append("undefined: " + "; ".join(f"{name} ({reason})" for name, reason in undefined.items()))
    excluded = report.get("excluded", {})
    if excluded.get("rows") or excluded.get("entries"):
        lines.append(
            f"left out: rows {', '.join(excluded['rows']) or '-'}; "
            f"{len(excluded['entries'])} NaN entries"
        )
    return "\n".join(lines)


def _analyze(args: argparse.Namespace) -> int:
    matrix = read_matrix_csv(args.matrix)
    registry = load_registry(args.families)
    codes = [str(c) for c in matrix.index]
    registry.check(codes)
    report = diagnose(matrix, families=registry.families(codes))
    if args.json:
        print(json.dumps(to_jsonable(report), indent=2))
    else:
        print(format_diagnostics(report))
    return 0


def _matrix(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.summary import matrix_from_records

    registry = load_registry(args.families)
    _, report = matrix_from_records(
        args.results_dir,
        args.task,
        registry,
        args.out,
        min_seeds=args.min_seeds,
        config_hash=args.config_hash,
        data_hash=args.data_hash,
        locales=args.locales.split(",") if args.locales else None,
        heatmap=not args.no_heatmap,
    )
    print(format_diagnostics(report))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _heatmap(args: argparse.Namespace) -> int:
    from cltm_sb.plots import plot_heatmap

    matrix = read_matrix_csv(args.matrix)
    se = read_matrix_csv(args.se) if args.se else None
    registry = load_registry(args.families)
    registry.check([str(c) for c in matrix.index])
    locales = args.locales.split(",") if args.locales else None
    for path in plot_heatmap(matrix, registry, args.out, locales=locales, title=args.title, se=se):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the analysis subcommands."""
    families_help = "CSV with columns code,name,family (default: the built-in registry)"

    p = subparsers.add_parser("analyze", help="diagnostics of a CLTM CSV")
    p.add_argument("matrix", help="CSV: header ',code1,code2,...', one row per target")
    p.add_argument("--families", help=families_help)
    p.add_argument("--json", action="store_true", help="print one JSON object (NaN as null)")
    p.set_defaults(func=_analyze)

    p = subparsers.add_parser("matrix", help="build the CLTM and its diagnostics from run records")
    p.add_argument("results_dir", help="folder of run records (or a grid folder with records/)")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--families", help=families_help)
    p.add_argument("--min-seeds", type=int, default=DEFAULT_MIN_SEEDS,
                   help="P(D, t) with fewer finished seeds is NaN (default: %(default)s)")
    p.add_argument("--locales", help="comma-separated languages and their order (default: all)")
    p.add_argument("--config-hash", help="pick one configuration when records mix several")
    p.add_argument("--data-hash", help="pick one prepared data set when records mix several")
    p.add_argument("--no-heatmap", action="store_true", help="skip cltm.png/cltm.pdf")
    p.set_defaults(func=_matrix)

    p = subparsers.add_parser("heatmap", help="draw a CLTM CSV as a heatmap (PNG and PDF)")
    p.add_argument("matrix", help="CLTM CSV")
    p.add_argument("-o", "--out", required=True, help="output file, e.g. fig.png (a PDF is written beside it)")
    p.add_argument("--families", help=families_help)
    p.add_argument("--locales", help="comma-separated subset, e.g. the paper's 16 languages")
    p.add_argument("--se", help="CSV of standard errors to print under each value")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=_heatmap)
