"""``cltm import``: other studies' transfer results into the matrix layout of ``cltm analyze``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Container
from pathlib import Path
from typing import Any

from cltm_sb.commands.analysis import MAP_HELP
from cltm_sb.languages import UnknownLanguageError, load_registry, parse_code_map


def _known(args: argparse.Namespace) -> Container[str]:
    """Codes a --families file lists stay as they are (no ISO mapping)."""
    return load_registry(args.families) if args.families else ()


def _check_codes(args: argparse.Namespace, imported: Any) -> None:
    """Refuse codes the registry lacks now, before writing: `cltm report` would refuse them later."""
    matrix = imported.values
    try:
        load_registry(args.families).check([*map(str, matrix.index), *map(str, matrix.columns)])
    except UnknownLanguageError as error:
        raise UnknownLanguageError(f"{args.file}: {error}, or --map CODE=CV for a code with another name") from None


def _print_written(written: dict[str, Path], imported: Any) -> None:
    for path in written.values():
        print(path)
    for reason in imported.reasons:
        print(f"row {reason['target']} is NaN: {reason['reason']}", file=sys.stderr)
    if imported.flagged:
        print(f"own value within 2 SE of zero: {', '.join(imported.flagged)}", file=sys.stderr)
    se = f" --se {written['cltm_se']}" if "cltm_se" in written else ""
    print(
        f"analyse it with `cltm report --matrix {written['cltm']}{se} -o REPORT`", file=sys.stderr
    )


def _import_dr(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.importers import import_dr, write_imported

    imported = import_dr(
        args.file,
        args.model,
        args.source_task,
        args.eval_task,
        parse_code_map(args.map),
        _known(args),
    )
    _check_codes(args, imported)
    _print_written(write_imported(imported, args.out), imported)
    return 0


def _import_long(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.importers import import_long, write_imported

    imported = import_long(args.file, args.normalise, parse_code_map(args.map), _known(args))
    _check_codes(args, imported)
    _print_written(write_imported(imported, args.out), imported)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``cltm import dr`` and ``cltm import long``."""
    p = subparsers.add_parser(
        "import", help="another study's transfer results as matrix CSVs (for cltm report --matrix)"
    )
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("-o", "--out", required=True, help="output folder")
        q.add_argument("--map", action="append", metavar="CODE=CV", help=MAP_HELP)
        q.add_argument(
            "--families", help="code,name,family CSV: its codes are kept as they are (not mapped)"
        )

    q = formats.add_parser(
        "dr",
        help="Donors-and-Recipients results/transfer_results.csv",
        description="One model's matrix from the Donors-and-Recipients release: rows = eval "
        "languages (targets), columns = fine-tuning languages (donors). Writes delta.csv and "
        "delta_se.csv (delta_score_norm_mean/_se) and cltm.csv/cltm_se.csv (each row divided by "
        "the target's own-language delta), import.json.",
    )
    q.add_argument("file", help="results/transfer_results.csv")
    q.add_argument("--model", required=True, help="model_name to import")
    q.add_argument("--source-task", required=True, help="fine_tuned_dataset to import")
    q.add_argument("--eval-task", required=True, help="eval_dataset to import")
    common(q)
    q.set_defaults(func=_import_dr)

    q = formats.add_parser(
        "long",
        help="a long CSV target,donor,value[,se]",
        description="One row per cell. Without --normalise the values are the matrix (cltm.csv, "
        "cltm_se.csv); with it they are raw gains: delta.csv keeps them and cltm.csv divides each "
        "row by the target's own value.",
    )
    q.add_argument("file", help="CSV with columns target,donor,value and optionally se")
    q.add_argument(
        "--normalise", action="store_true", help="divide each row by the target's own value"
    )
    common(q)
    q.set_defaults(func=_import_long)
