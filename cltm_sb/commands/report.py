"""``cltm interval``, ``cltm geometry``, ``cltm report`` and ``cltm compare``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS
from cltm_sb.commands import at_least, name_list
from cltm_sb.commands.analysis import MAP_HELP
from cltm_sb.io import atomic_write, atomic_write_json, to_jsonable
from cltm_sb.languages import load_registry, parse_code_map
from cltm_sb.tasks import TASK_HELP

FAMILIES_HELP = (
    "CSV with columns code,name,family (default: a grid's own families.csv, or the one `cltm complete` "
    "wrote beside --sources, else the built-in registry)"
)


def _codes(text: str | None) -> list[str] | None:
    return name_list(text) or None


def _curve_sources(args: argparse.Namespace, out: Path) -> list[str]:
    """Folders to analyse: --records as given, plus the plans made (and run) for --data."""
    sources = list(args.records or [])
    if args.data:
        from cltm_sb.analysis.interval import plan_curves
        from cltm_sb.commands.grid import parse_overrides, parse_seeds
        from cltm_sb.grid.executors import make_executor
        from cltm_sb.grid.plan import DEFAULT_RUNNER, load_plan

        locales = _codes(args.locales)
        if not locales:
            raise ValueError("--data needs --locales: the languages to train learning curves for")
        seeds = parse_seeds(args.seeds)
        if len(seeds) < max(args.min_seeds, 2):
            # Checked before training: each point would be NaN, and no N could qualify.
            raise ValueError(
                f"--seeds {args.seeds} gives {len(seeds)} seed(s); the paired test of each N needs "
                f"at least {max(args.min_seeds, 2)} (--min-seeds), e.g. --seeds 42-46"
            )
        plans = plan_curves(
            out / "plans",
            args.data,
            args.task,
            locales,
            seeds,
            hparams_file=args.hparams,
            overrides=parse_overrides(args.override),
            runner=args.runner or DEFAULT_RUNNER,
        )
        if args.plan_only:
            for plan_dir in plans:
                print(f"planned {plan_dir}; run it with `cltm run {plan_dir}`")
            return []
        options = {"workers": args.workers} if args.workers and args.executor == "local" else {}
        executor = make_executor(args.executor, **options)
        for plan_dir in plans:
            report = executor.run(load_plan(plan_dir), progress=False)
            if report.failed:
                raise ValueError(
                    f"{len(report.failed)} learning-curve run(s) of {plan_dir} failed, e.g. "
                    f"{report.failed[0].run_id}: {report.failed[0].error} (log: {report.failed[0].log_path}); "
                    "fix the cause and run `cltm interval` again: finished runs are kept"
                )
        sources += [str(p) for p in plans]
    if not sources:
        raise ValueError("give --records [N=]DIR (existing runs) or --data PREPARED (to run them)")
    return sources


def _interval(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.interval import IntervalError, gain_table, load_curves, select_interval
    from cltm_sb.report.figures import plot_learning_curves
    from cltm_sb.tasks import get_task

    out = Path(args.out)
    sources = _curve_sources(args, out)
    if not sources:
        return 0
    curves = load_curves(
        sources, args.task, locales=_codes(args.locales), config_hash=args.config_hash
    )
    gains = gain_table(curves, min_seeds=args.min_seeds, min_relative_gain=args.min_relative_gain)
    atomic_write(
        out / "curves.csv", lambda tmp: curves.to_csv(tmp, index=False, float_format="%.6g")
    )
    atomic_write(out / "gains.csv", lambda tmp: gains.to_csv(tmp, index=False, float_format="%.6g"))
    metric = get_task(args.task).metric
    try:
        choice = select_interval(gains, z=args.z, locales=_codes(args.locales))
    except IntervalError as error:
        plot_learning_curves(
            curves, out / "curves.png", title="Learning curves (no N qualifies)", metric=metric
        )
        atomic_write_json(
            out / "interval.json", {"n": None, "error": str(error), "z_threshold": args.z}
        )
        raise
    plot_learning_curves(
        curves, out / "curves.png", choice=choice, title="Learning curves", metric=metric
    )
    atomic_write_json(out / "interval.json", choice.to_dict())
    if args.json:
        print(json.dumps(to_jsonable(choice.to_dict()), indent=2))
    else:
        print(
            f"recommended N = {choice.n} (interval [{choice.n}, {2 * choice.n}]); "
            f"smallest z = {choice.min_z:.2f} (threshold {choice.threshold:g})"
        )
        for locale, z in sorted(choice.z.items(), key=lambda kv: kv[1]):
            row = gains[(gains["locale"] == locale) & (gains["n"] == choice.n)].iloc[0]
            print(
                f"  {locale}: gain {row['gain']:.4g} ± {row['se']:.2g} (paired), relative gain "
                f"{row['relative_gain']:+.1%} (z = {z:.2f}, t = {row['t']:.2f}, {row['df']:.3g} df)"
            )
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _geometry_records(data: Any) -> list[Any]:
    """The runs behind the matrix only: a folder may also hold runs of another configuration,
    data set or language, whose embeddings (same seeds, other models) must not enter the
    per-seed distances that are averaged beside this matrix."""
    run_ids = set(data.table["run_id"])
    locales = set(data.locales)
    return [
        r
        for r in data.records.records
        if r.run_id in run_ids and {d["locale"] for d in r.train_set} <= locales
    ]


def _geometry(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.geometry import analyze_geometry
    from cltm_sb.analysis.grid_analysis import build_and_diagnose, load_grid

    data = load_grid(
        args.grid,
        None,  # geometry needs no language families
        args.task,
        _codes(args.locales),
        args.config_hash,
        args.data_hash,
    )
    result, _ = build_and_diagnose(data, args.min_seeds)
    geometry = analyze_geometry(
        _geometry_records(data),
        result.matrix,
        plan_dir=args.grid,
        n_permutations=args.permutations,
        seed=args.seed,
    )
    out = Path(args.out)
    atomic_write(
        out / "pairs.csv", lambda tmp: geometry.pairs.to_csv(tmp, index=False, float_format="%.6g")
    )
    atomic_write(
        out / "per_seed.csv",
        lambda tmp: geometry.per_seed.to_csv(tmp, index=False, float_format="%.6g"),
    )
    summary = {
        "correlation": {k: v.to_dict() for k, v in geometry.correlation.items()},
        "skipped_runs": geometry.skipped,
        "n_pairs": len(geometry.pairs),
    }
    atomic_write_json(out / "geometry.json", summary)
    print(geometry.pairs.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for name, mantel in geometry.correlation.items():
        print(
            f"{name} distance vs mean transfer: Spearman rho = {mantel.rho:.3f}, Mantel p = "
            f"{mantel.p_value:.4f} ({mantel.n_pairs} pairs, {mantel.n_permutations} permutations)"
        )
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _analysis(args: argparse.Namespace, grid: str, task: str | None):
    from cltm_sb.analysis.grid_analysis import analyze_grid, grid_registry

    _warn_obsolete(args)
    _budget_guard(grid, getattr(args, "measured_only", False))
    registry = grid_registry(grid, args.families)
    analysis = analyze_grid(
        grid,
        registry,
        task=task,
        locales=_codes(getattr(args, "locales", None)),
        min_seeds=args.min_seeds,
        config_hash=getattr(args, "config_hash", None),
        data_hash=getattr(args, "data_hash", None),
    )
    return analysis, registry


def _budget_guard(grid: str, measured_only: bool) -> None:
    """A budgeted grid is an error unless ``measured_only`` (then a warning): the diagnostics of
    its measured pairs alone would pass for the whole matrix's (the report warns too:
    ``budget_note`` of the analysis' metadata)."""
    from cltm_sb.grid.budget_record import partial_budget
    from cltm_sb.grid.layout import GridLayout

    budget = partial_budget((GridLayout(grid).plan_fields() or {}).get("budget"))
    if budget and not measured_only:
        raise ValueError(
            f"{grid} is {budget}: diagnostics over its measured pairs alone are not the CLTM's. "
            f"Complete it first (`cltm complete {grid} -o DIR`, then `cltm report --matrix "
            "DIR/completed.csv --sources DIR/sources.csv -o REPORT`), or pass --measured-only to "
            "analyse the measured cells as they are"
        )
    if budget:
        print(f"warning: {grid} is {budget}; analysing the measured cells alone (--measured-only)",
              file=sys.stderr)


def _warn_obsolete(args: argparse.Namespace) -> None:
    """--bootstrap and --seed set the retired percentile bootstrap: accepted, ignored, named."""
    given = [f"--{name}" for name in ("bootstrap", "seed") if getattr(args, name, None) is not None]
    if given:
        print(
            f"warning: {' and '.join(given)}: obsolete and ignored (the intervals are calibrated "
            "without a bootstrap; see intervals.json)",
            file=sys.stderr,
        )


def _report(args: argparse.Namespace) -> int:
    from cltm_sb.report.write import write_report

    if (args.grid is None) == (args.matrix is None):
        raise ValueError("give a grid folder or --matrix M.csv (one of them)")
    if args.matrix is not None:
        return _matrix_report(args)
    if args.se or args.map or args.sources:
        raise ValueError("--se, --sources and --map go with --matrix (a grid has its own SEs and codes)")
    analysis, registry = _analysis(args, args.grid, args.task)
    subset = args.subset if args.subset == "paper" else _codes(args.subset)
    written = write_report(
        analysis,
        registry,
        args.out,
        subset=subset,
        top_k=args.top,
        heatmap=not args.no_heatmap,
        forest_pdf=args.forest_pdf,
    )
    for path in (written["html"], written["markdown"]):
        print(path)
    return 0


def _matrix_report(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cltm_sb.analysis.completion import (
        read_completion_donors,
        read_completion_intervals,
        read_sources,
    )
    from cltm_sb.analysis.external import load_matrix
    from cltm_sb.report.matrix_report import write_matrix_report

    grid_only = ("subset", "locales", "forest_pdf", "task", "config_hash", "data_hash")
    given = [f"--{k.replace('_', '-')}" for k in grid_only if getattr(args, k, None)]
    if given:
        raise ValueError(f"{', '.join(given)}: options of a grid's report, not of --matrix")
    if args.sources and Path(args.out).resolve() == Path(args.sources).resolve().parent:
        raise ValueError(
            f"-o {args.out} is the folder of {args.sources}: the report would overwrite the completion's "
            "donors.csv and intervals.json; write the report to another folder"
        )
    # Without --families, the families `cltm complete` used, copied beside sources.csv.
    families = args.families
    if families is None and args.sources and Path(args.sources).with_name("families.csv").is_file():
        families = Path(args.sources).with_name("families.csv")
    registry = load_registry(families)
    code_map = parse_code_map(args.map)
    analysis = load_matrix(args.matrix, registry, args.se, code_map)
    sources = read_sources(args.sources, registry, code_map) if args.sources else None
    # `cltm complete` writes donors.csv beside sources.csv: its P(best) ranks the donor tables,
    # and its cell intervals are shown ...
    p_best = (
        read_completion_donors(Path(args.sources).with_name("donors.csv"), registry, code_map)
        if args.sources
        else None
    )
    # ... and its intervals.json gives the Table-1 estimates and intervals, the level and how the
    # cell intervals were made.
    completion = (
        read_completion_intervals(Path(args.sources).with_name("intervals.json"), len(analysis.matrix))
        if args.sources
        else None
    )
    cell_method = None
    if completion is not None:
        analysis = replace(analysis, level=float(completion.get("level", analysis.level)))
        cell_method = (completion.get("cells") or {}).get("method")
    written = write_matrix_report(
        analysis, registry, args.out, top_k=args.top, heatmap=not args.no_heatmap, sources=sources,
        p_best=p_best, completion_diagnostics=completion["diagnostics"] if completion else None,
        cell_method=cell_method,
    )
    for path in (written["html"], written["markdown"]):
        print(path)
    return 0


def _compare_matrices(args: argparse.Namespace, labels: tuple[str, str]) -> int:
    """At least one side is a matrix CSV: both compared as matrices (plug-in diagnostics)."""
    from cltm_sb.analysis.external import load_matrix, matrix_from_grid
    from cltm_sb.analysis.grid_analysis import grid_registry
    from cltm_sb.report.matrix_report import write_matrix_comparison

    sides = []
    for source, se, task in ((args.grid_a, args.se_a, args.task_a), (args.grid_b, args.se_b, args.task_b)):
        if Path(source).is_file():
            registry = load_registry(args.families)
            sides.append(load_matrix(source, registry, se, parse_code_map(args.map)))
        else:
            if se:
                raise ValueError(f"--se-a/--se-b go with a matrix CSV; {source} is a grid")
            registry = grid_registry(source, args.families)
            sides.append(matrix_from_grid(source, registry, task, args.min_seeds))
    written = write_matrix_comparison(sides[0], sides[1], registry, args.out, labels=labels)
    for path in (written["html"], written["markdown"]):
        print(path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from cltm_sb.report.write import write_comparison

    if args.more:  # three or more grids (e.g. GR, SV and age): side by side, and every pair
        return _compare_several(args)
    labels = tuple(_codes(args.labels) or ["A", "B"])
    if len(set(labels)) != 2:
        raise ValueError(f"--labels needs two distinct comma-separated names, got {args.labels!r}")
    if Path(args.grid_a).is_file() or Path(args.grid_b).is_file():
        return _compare_matrices(args, labels)  # type: ignore[arg-type]
    a, registry = _analysis(args, args.grid_a, args.task_a)
    b, _ = _analysis(args, args.grid_b, args.task_b)
    written = write_comparison(a, b, registry, args.out, labels=labels)  # type: ignore[arg-type]
    for path in (written["html"], written["markdown"]):
        print(path)
    return 0


def _compare_several(args: argparse.Namespace) -> int:
    from cltm_sb.report.side_by_side import write_side_by_side

    grids = [args.grid_a, args.grid_b, *args.more]
    files = [g for g in grids if Path(g).is_file()]
    if files:
        raise ValueError(
            f"{', '.join(files)}: a matrix CSV is compared with one other grid or matrix "
            "(`cltm compare A B`); three or more side by side are grid folders only"
        )
    labels = _codes(args.labels) if args.labels != "A,B" else [chr(ord("A") + i) for i in range(len(grids))]
    analysed = [_analysis(args, grid, None) for grid in grids]  # each grid's task from its plan
    written = write_side_by_side([a for a, _ in analysed], analysed[0][1], args.out, labels)
    print(written["markdown"])
    return 0


def _analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--families", help=FAMILIES_HELP)
    p.add_argument(
        "--min-seeds",
        type=int,
        default=DEFAULT_MIN_SEEDS,
        help="P(D, t) with fewer finished seeds is NaN (default: %(default)s)",
    )
    p.add_argument(
        "--measured-only",
        action="store_true",
        help="a budgeted grid (cltm plan --budget/--pairs): analyse its measured cells as they are, "
        "instead of refusing (its full matrix is `cltm complete`'s)",
    )
    # Obsolete (the retired percentile bootstrap): kept so that old scripts run, with a warning.
    p.add_argument("--bootstrap", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the interval, geometry, report and compare subcommands."""
    p = subparsers.add_parser(
        "interval",
        help="learning curves and the recommended training size N (paper §2.2)",
        description="Analyse learning-curve runs (one folder of records or plan per N) and pick the N "
        "where every language's self-gain P(2N) - P(N) is at least --z standard errors above 0.",
    )
    p.add_argument(
        "--records",
        action="append",
        metavar="[N=]DIR",
        help="folder of records (or plan folder) of one N; repeat per N. N is read from "
        "plan.json/prepare.json or the records unless given as N=DIR",
    )
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument(
        "--locales", help="comma-separated languages that must all qualify (default: all found)"
    )
    p.add_argument(
        "--z",
        type=float,
        default=2.0,
        help="strictness: one-sided level Phi(-z) of the paired t-test over seeds (default: "
        "%(default)s, i.e. 2.3%%)",
    )
    p.add_argument(
        "--min-relative-gain",
        type=float,
        default=0.0,
        help="require P(2N)/P(N) - 1 significantly above this (e.g. 0.02 for 2%%; default: %(default)s)",
    )
    p.add_argument(
        "--min-seeds",
        type=int,
        default=DEFAULT_MIN_SEEDS,
        help="seeds needed per point (default: %(default)s)",
    )
    p.add_argument("--config-hash", help="pick one configuration when the folders mix several")
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output folder (curves.csv, gains.csv, interval.json, curves.png)",
    )
    p.add_argument("--json", action="store_true", help="print the choice as JSON")
    g = p.add_argument_group("running the curves (instead of --records)")
    g.add_argument(
        "--data",
        action="append",
        metavar="PREPARED",
        help="prepared folder of one N (its prepare.json has n); repeat per N. Plans go "
        "to OUT/plans/n<N> with the a and a+b runs of --locales, and are run",
    )
    g.add_argument(
        "--seeds", default="42-46", help="seeds of the curve runs (default: %(default)s)"
    )
    g.add_argument("--hparams", help="task YAML (default: the packaged one)")
    g.add_argument("--override", action="append", metavar="KEY=VALUE", help="hparams override")
    g.add_argument("--runner", help="run function (default: the packaged recipe runner)")
    g.add_argument("--executor", choices=("local", "inprocess"), default="local")
    g.add_argument("--workers", type=at_least(1), help="local: concurrent runs")
    g.add_argument("--plan-only", action="store_true", help="write the plans and stop")
    p.set_defaults(func=_interval)

    p = subparsers.add_parser(
        "geometry", help="SV embedding centroid distances beside the CLTM (paper §4.3)"
    )
    p.add_argument("grid", help="plan folder of an SV grid (records/ and runs/ with embeddings)")
    p.add_argument(
        "-o", "--out", required=True, help="output folder (pairs.csv, per_seed.csv, geometry.json)"
    )
    p.add_argument(
        "--task", default="sv", help=TASK_HELP + " (default: %(default)s)"
    )
    p.add_argument("--locales", help="comma-separated languages of the CLTM (default: all)")
    p.add_argument(
        "--min-seeds", type=int, default=DEFAULT_MIN_SEEDS, help="(default: %(default)s)"
    )
    p.add_argument(
        "--permutations", type=at_least(0), default=9999,
        help="Mantel permutations (0: no p-value; default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed of the permutations (default: %(default)s)"
    )
    p.add_argument("--config-hash", help="pick one configuration when records mix several")
    p.add_argument("--data-hash", help="pick one prepared data set when records mix several")
    p.set_defaults(func=_geometry)

    p = subparsers.add_parser(
        "report", help="HTML and Markdown report of a finished grid (or of a matrix CSV)"
    )
    p.add_argument("grid", nargs="?", help="plan folder or folder of records")
    p.add_argument(
        "--matrix",
        help="instead of a grid: a matrix CSV without run records (another study's; targets and "
        "donors may differ): plug-in diagnostics, heatmap, donor tables",
    )
    p.add_argument(
        "--se",
        help="with --matrix: CSV of the entries' standard errors (cell intervals, labelled as "
        "from the supplied SE)",
    )
    p.add_argument(
        "--sources",
        help="with --matrix: a budgeted CLTM's sources.csv (`cltm complete`): predicted cells are "
        "outlined and marked, and the budget is stated; the donors.csv beside it ranks the donors "
        "by P(best)",
    )
    p.add_argument("--map", action="append", metavar="CODE=CV", help=MAP_HELP)
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output folder (report.html, report.md, intervals.json, donors.csv, table1.csv/.tex, "
        "donors.tex, figures, matrix files)",
    )
    p.add_argument(
        "--task", help="task (default: the plan's or the records' only task)"
    )
    p.add_argument("--locales", help="comma-separated languages and their order (default: all)")
    p.add_argument(
        "--subset",
        help="languages of a second heatmap: comma-separated, or 'paper' for the paper's 16",
    )
    p.add_argument(
        "--top",
        type=at_least(1),
        default=5,
        help="top positive/negative pairs to list (default: %(default)s)",
    )
    p.add_argument("--no-heatmap", action="store_true", help="skip the figures (the numbers only)")
    p.add_argument(
        "--forest-pdf",
        action="store_true",
        help="also write each target's donor forest plot as files (forest/<target>.pdf and .png)",
    )
    p.add_argument("--config-hash", help="pick one configuration when records mix several")
    p.add_argument("--data-hash", help="pick one prepared data set when records mix several")
    _analysis_options(p)
    p.set_defaults(func=_report)

    p = subparsers.add_parser(
        "compare",
        help="grids or matrix CSVs side by side: two with their difference matrix, three or more "
        "(e.g. GR, SV, age) with their diagnostics",
    )
    p.add_argument("grid_a", help="first plan folder or folder of records, or a matrix CSV")
    p.add_argument("grid_b", help="second plan folder or folder of records, or a matrix CSV")
    p.add_argument("more", nargs="*", metavar="GRID",
                   help="further grids (e.g. the GR, SV and age grids): their diagnostics side by side "
                   "(side_by_side.md/.csv) and every pair compared in <A>_vs_<B>/")
    p.add_argument("--se-a", help="SE CSV of the first matrix (when it is a CSV)")
    p.add_argument("--se-b", help="SE CSV of the second matrix (when it is a CSV)")
    p.add_argument("--map", action="append", metavar="CODE=CV", help=MAP_HELP)
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output folder (compare.html, compare.md, difference.csv)",
    )
    p.add_argument(
        "--labels",
        default="A,B",
        help="names of the two grids, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--task-a", help="task of the first grid (default: inferred)"
    )
    p.add_argument(
        "--task-b", help="task of the second grid (default: inferred)"
    )
    _analysis_options(p)
    p.set_defaults(func=_compare)
