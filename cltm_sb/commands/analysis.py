"""``cltm analyze``, ``cltm matrix`` and ``cltm heatmap``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cltm_sb.analysis.diagnostics import DIAGNOSTICS, read_matrix_csv, standard_errors_for
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS
from cltm_sb.analysis.simulate import (
    PROTOCOLS,
    TRUTHS,
    NoiseModel,
    make_truth,
    truth_from_registry,
    write_simulated_grid,
)
from cltm_sb.analysis.summary import format_value
from cltm_sb.commands import at_least, name_list, positive
from cltm_sb.io import to_jsonable
from cltm_sb.languages import PAPER_SUBSET, code_mapper, load_registry, parse_code_map
from cltm_sb.tasks import TASK_HELP


def format_diagnostics(report: dict[str, Any]) -> str:
    """A plain-text table of the diagnostics for people."""
    lines = [f"languages: {report['n_languages']} ({', '.join(report['languages'])})"]
    if report.get("targets") is not None and report["targets"] != report.get("donors"):
        # a non-square matrix: say which languages each kind of diagnostic used
        square = (report.get("languages_used") or {}).get("asymmetry", {}).get("targets", [])
        lines += [
            f"targets: {report['n_targets']} ({', '.join(report['targets'])})",
            f"donors: {report['n_donors']} ({', '.join(report['donors'])})",
            f"asymmetry and reciprocity+ use the {len(square)} languages that are both target and "
            f"donor ({', '.join(square) or 'none'}); the others use every cell",
        ]
    width = max(len(d.label) for d in DIAGNOSTICS)
    lines += [
        f"  {d.label:<{width}}  {format_value(report.get(d.key), d.fraction, digits=4)}"
        for d in DIAGNOSTICS
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
    from cltm_sb.analysis.external import load_matrix

    registry = load_registry(args.families)
    report = load_matrix(args.matrix, registry, args.se, parse_code_map(args.map)).diagnostics
    if args.json:
        print(json.dumps(to_jsonable(report), indent=2))
    else:
        print(format_diagnostics(report))
    return 0


def _matrix(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.grid_analysis import grid_registry
    from cltm_sb.analysis.summary import matrix_from_records

    registry = grid_registry(args.results_dir, args.families)
    _, report = matrix_from_records(
        args.results_dir,
        args.task,
        registry,
        args.out,
        min_seeds=args.min_seeds,
        config_hash=args.config_hash,
        data_hash=args.data_hash,
        locales=name_list(args.locales) or None,
        heatmap=not args.no_heatmap,
    )
    print(format_diagnostics(report))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _heatmap(args: argparse.Namespace) -> int:
    from cltm_sb.report.figures import plot_heatmap

    if Path(args.out).suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"-o {args.out}: name a .png file (its PDF is written beside it)")

    from cltm_sb.analysis.external import rename_codes

    # The codes are read as `cltm analyze` reads them (ISO codes, any case, --map), so that a
    # matrix it analyses draws too, and --locales names them the same way.
    registry = load_registry(args.families)
    mapper = code_mapper(parse_code_map(args.map))
    matrix = rename_codes(read_matrix_csv(args.matrix, square=False), mapper, registry, args.matrix)
    se = None
    if args.se:
        se_raw = read_matrix_csv(args.se, square=False, unit_diagonal=False)
        se = standard_errors_for(matrix, rename_codes(se_raw, mapper, registry, args.se), args.se)
    registry.check([str(c) for c in [*matrix.index, *matrix.columns]])
    # 'paper', as cltm report --subset takes it: the paper's 16 languages.
    given = list(PAPER_SUBSET) if args.locales == "paper" else name_list(args.locales)
    locales = mapper.map_codes(given, registry, " (--locales)") if given else None
    for path in plot_heatmap(matrix, registry, args.out, locales=locales, title=args.title, se=se):
        print(path)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    names = None
    if args.truth:
        truth, names = truth_from_registry(args.truth, load_registry(args.families))
    else:
        truth = make_truth(args.generator, args.languages, seed=args.seed)
    noise = NoiseModel(rho=args.rho, rho_pair=args.rho_pair, z_self=args.z,
                       data_ratio=args.data_ratio, rho_data=args.rho_data)  # fmt: skip
    out = write_simulated_grid(
        args.out, truth, args.n_seeds, noise, args.protocol, args.seed, args.task, names, args.draws
    )
    print(
        f"simulated {truth.name}: {len(truth.locales)} languages, {args.n_seeds} seeds"
        f"{f' x {args.draws} data draws' if args.draws > 1 else ''}, "
        f"{args.protocol} pair runs, in {out}; analyse it with "
        f"`cltm report {out} -o REPORT --families {out / 'families.csv'}`"
    )
    return 0


def _one_draw(table: Any, draw: int | None) -> Any:
    """The pilot's runs of one data draw: the noise model is seed noise, which only runs of one
    draw show (the runs of other draws share the seeds but not the data). Default: draw 0."""
    draws = sorted({int(d) for d in table["draw"]}) if "draw" in table.columns else [0]
    if draw is None:
        if len(draws) > 1:
            print(f"the pilot holds data draws {draws}: seed noise from draw {draws[0]} "
                  "(--draw picks another)", file=sys.stderr)
        draw = draws[0]
    if draw not in draws:
        raise ValueError(f"--draw {draw}: the pilot holds data draws {draws}")
    return table[table["draw"] == draw] if "draw" in table.columns else table


def _power(args: argparse.Namespace) -> int:
    from cltm_sb.analysis.power import PilotNoise, estimate_noise, plan_power

    if args.grid:
        from cltm_sb.analysis.grid_analysis import load_grid
        from cltm_sb.analysis.uncertainty import seed_arrays

        data = load_grid(args.grid, None, args.task, None, args.config_hash, args.data_hash)
        noise = estimate_noise(seed_arrays(_one_draw(data.table, args.draw), data.locales), args.min_seeds)
    else:
        noise = PilotNoise.from_z(args.z, args.z_seeds, args.rho, args.rho_pair)
    result = plan_power(
        noise,
        args.languages,
        args.seeds,
        effect=args.effect,
        alpha=args.alpha,
        power=args.power,
        truth=args.generator,
        simulations=args.simulations,
    )
    if args.json:
        print(json.dumps(to_jsonable(result.to_dict()), indent=2))
        return 0
    print(format_power(result))
    return 0


def _detectable_text(value: float | None, se: float | None) -> str:
    """A detectable difference, or why there is none: no spread from the simulations (too few
    grids gave the diagnostic) is not the same as a diagnostic without calibrated intervals."""
    if value is not None:
        return f"{value:.3f}"
    if se is None:
        return "n/a (fewer than 3 simulated grids gave it; raise --simulations)"
    return "n/a (no calibrated interval)"


def format_power(result: Any) -> str:
    """``cltm power`` for people."""
    noise = result.noise
    lines = [
        f"noise ({noise.source}): G_self/σ median {noise.median_ratio:.2f}, weakest "
        f"{noise.weakest_ratio:.2f}; ρ = {noise.rho:.2f}, ρ_p = {noise.rho_pair:.2f}",
        f"planned: {result.n_languages} languages, {result.n_seeds} seeds, one data draw "
        f"(self-gain z of the median target {noise.z_self(result.n_seeds):.1f}); power "
        f"{result.power:.0%} at two-sided level {result.alpha:g}",
        "smallest |M[t,s]| detectable (paired t-test of the cell, no multiplicity correction):",
    ]
    lines += [f"  {k}: {v:.3f}" for k, v in result.cell_detectable.items()]
    lines.append(
        f"smallest difference of a diagnostic between two such grids ({result.simulations} "
        f"simulated grids, {result.truth} truth):"
    )
    for name, value in result.diagnostic_detectable.items():
        lines.append(f"  {name}: {_detectable_text(value, result.diagnostic_se.get(name))}")
    if result.effect is not None:
        lines.append(f"seeds needed to detect |M[t,s]| = {result.effect:g}:")
        lines += [
            f"  {k}: {v if v is not None else 'more than 200'}"
            for k, v in result.seeds_for_effect.items()
        ]
    return "\n".join(lines)


MAP_HELP = (
    "language code -> Common Voice code for an ambiguous code (e.g. zh=zh-CN); repeat or "
    "comma-separate. ISO 639-1 and 639-3 codes are mapped without it"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the analysis subcommands."""
    families_help = "CSV with columns code,name,family (default: the built-in registry)"

    p = subparsers.add_parser("analyze", help="diagnostics of a CLTM CSV")
    p.add_argument(
        "matrix",
        help="CSV: header ',donor1,donor2,...', one row per target; targets and donors may differ",
    )
    p.add_argument("--families", help=families_help)
    p.add_argument("--se", help="CSV of the entries' standard errors, same labels as the matrix")
    p.add_argument("--map", action="append", metavar="CODE=CV", help=MAP_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object (NaN as null)")
    p.set_defaults(func=_analyze)

    p = subparsers.add_parser("matrix", help="build the CLTM and its diagnostics from run records")
    p.add_argument("results_dir", help="folder of run records (or a grid folder with records/)")
    p.add_argument("--task", required=True, help=TASK_HELP)
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
    p.add_argument("--locales", help="comma-separated subset, or 'paper' for the paper's 16 languages")
    p.add_argument("--se", help="CSV of standard errors to print under each value")
    p.add_argument("--map", action="append", metavar="CODE=CV", help=MAP_HELP)
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=_heatmap)

    defaults = NoiseModel()
    p = subparsers.add_parser(
        "simulate",
        help="run records of a simulated grid from a known true CLTM (for cltm report/matrix)",
        description="Simulate every single, self and pair run of a grid from a true CLTM and a seed "
        "noise model, and write their records (plus families.csv, truth.csv, simulation.json) "
        "into a folder that cltm report and cltm matrix read.",
    )
    p.add_argument(
        "-o", "--out", required=True, help="output folder (records/ and the files above)"
    )
    truth = p.add_mutually_exclusive_group()
    truth.add_argument("--truth", help="true CLTM as a matrix CSV (every entry finite)")
    truth.add_argument(
        "--generator",
        choices=sorted(TRUTHS),
        default="structured",
        help="generated true CLTM: near-agnostic (GR-like) or structured (SV-like) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--languages",
        type=at_least(2),
        default=6,
        help="L, languages of a generated truth (default: %(default)s)",
    )
    p.add_argument("--families", help=families_help + "; for the codes of --truth")
    p.add_argument("--n-seeds", type=int, default=10, help="seeds per run (default: %(default)s)")
    p.add_argument(
        "--rho",
        type=float,
        default=defaults.rho,
        help="share of seed variance common to every run of a seed on one language "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--rho-pair",
        type=float,
        default=defaults.rho_pair,
        help="share of the rest common to the two evaluations of a pair run (default: %(default)s)",
    )
    p.add_argument(
        "--z",
        type=float,
        default=defaults.z_self,
        help="self-gain over its standard error at --n-seeds (default: %(default)s)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=PROTOCOLS[0],
        help="pair runs shared by two cells, or one run per cell (default: %(default)s)",
    )
    p.add_argument("--draws", type=at_least(1), default=1, help="data draws crossed with the seeds (default: 1)")
    p.add_argument(
        "--data-ratio",
        type=float,
        default=defaults.data_ratio,
        help="variance of a draw's effect on one evaluation over the seed variance (default: %(default)s)",
    )
    p.add_argument(
        "--rho-data",
        type=float,
        default=defaults.rho_data,
        help="share of a draw's effect common to every run evaluated on one language "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed of the simulation (default: %(default)s)"
    )
    p.add_argument(
        "--task",
        default="gr",
        help="task of the records (default: %(default)s)",
    )
    p.set_defaults(func=_simulate)

    p = subparsers.add_parser(
        "power",
        help="what a planned grid can detect, from pilot records or a given noise model",
        description="Estimate the seed-noise model from pilot records (or take it as --z, --rho, "
        "--rho-pair) and print, for a planned number of languages and seeds, the smallest "
        "|M[t,s]| and diagnostic difference detectable with the requested power, and the seeds "
        "needed for --effect.",
    )
    p.add_argument("grid", nargs="?", help="pilot: plan folder or folder of records (optional)")
    p.add_argument("--languages", type=at_least(2), required=True, help="planned number of languages L")
    p.add_argument("--seeds", type=at_least(2), required=True, help="planned number of seeds")
    p.add_argument("--effect", type=positive, help="|M[t,s]| to detect: print the seeds needed")
    p.add_argument("--power", type=float, default=0.8, help="(default: %(default)s)")
    p.add_argument(
        "--alpha", type=float, default=0.05, help="two-sided level (default: %(default)s)"
    )
    p.add_argument("--task", help="task of the pilot records")
    p.add_argument(
        "--min-seeds", type=int, default=DEFAULT_MIN_SEEDS, help="(default: %(default)s)"
    )
    p.add_argument("--config-hash", help="pick one configuration when records mix several")
    p.add_argument("--data-hash", help="pick one prepared data set when records mix several")
    p.add_argument(
        "--draw", type=int, help="pilot of several data draws: the draw to estimate seed noise from (default: 0)"
    )
    p.add_argument(
        "--z",
        type=float,
        default=defaults.z_self,
        help="without a pilot: self-gain over its SE at --z-seeds seeds (default: %(default)s)",
    )
    p.add_argument("--z-seeds", type=int, default=10, help="seeds of --z (default: %(default)s)")
    p.add_argument(
        "--rho", type=float, default=defaults.rho, help="without a pilot (default: %(default)s)"
    )
    p.add_argument(
        "--rho-pair",
        type=float,
        default=defaults.rho_pair,
        help="without a pilot (default: %(default)s)",
    )
    p.add_argument(
        "--generator",
        choices=sorted(TRUTHS),
        default="structured",
        help="true CLTM simulated for the diagnostics (default: %(default)s)",
    )
    p.add_argument(
        "--simulations", type=at_least(2), default=100, help="simulated grids (default: %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_power)
