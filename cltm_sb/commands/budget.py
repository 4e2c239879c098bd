"""``cltm design`` and ``cltm complete``: a budgeted CLTM (measure some pairs, predict the rest)."""

from __future__ import annotations

import argparse

import numpy as np

from cltm_sb.analysis.completion import (
    DEFAULT_LEVEL,
    MEASURED,
    PREDICTED,
    complete_source,
    min_conformal_scores,
    observed_completion,
    write_completion,
)
from cltm_sb.analysis.completion_audit import audit_size_note
from cltm_sb.analysis.designs import audit_design, design_pairs, next_pairs, write_pairs_csv
from cltm_sb.analysis.diagnostics import DIAGNOSTICS
from cltm_sb.analysis.summary import format_value
from cltm_sb.commands import at_least, name_list
from cltm_sb.languages import load_registry
from cltm_sb.tasks import TASK_HELP

FAMILIES_HELP = "CSV with columns code,name,family (default: the built-in registry)"
DISTANCES_HELP = ("distances between the languages (e.g. typological): lang1,lang2,<name>[,...] or a square "
                  "CSV; cross-validation decides whether a smooth function of them enters the model")
# bench/RESULTS.md ("Against the full grid, the sampling floor of intra-family+, and what active
# rounds cost the diagnostics"): latent truth, F = 0.3, L = 44, 20 grids.
NEXT_PAIRS_NOTE = (
    "these pairs are chosen for what they may change (each target's best donor, the most uncertain "
    "cells), not at random: they help the donor choice but move the completed Table-1 diagnostics "
    "away from the truth (in simulation, intra-family+ off by 0.071 instead of 0.042 and row cosine "
    "by 5% instead of 3% at 44 languages); to grow a budget for the diagnostics, plan a larger "
    "`cltm design --budget F` with the same seed (designs are nested)"
)


def _design(args: argparse.Namespace) -> int:
    ordered = args.one_run_per_cell
    audit = None
    if args.next is not None:
        if args.audit:
            raise ValueError("--audit belongs to the design of a budget, not to --next (whose pairs are core pairs)")
        if not args.observed:
            raise ValueError("--next needs --observed GRID_OR_CSV (what is measured so far)")
        observed = observed_completion(args.observed, args.families, args.task, args.distances)
        pairs = next_pairs(observed, args.next, ordered)
        what = f"{len(pairs)} next {'cells' if ordered else 'pairs'} to measure"
    else:
        if args.budget is None or not args.locales:
            raise ValueError("pass --locales and --budget F (or --next K --observed GRID_OR_CSV)")
        codes = name_list(args.locales)
        families = load_registry(args.families).families(codes)
        unit = "cells" if ordered else "pairs"
        if args.audit:
            if ordered:
                raise ValueError("--audit samples pairs; it cannot be used with --one-run-per-cell")
            core, audit = audit_design(codes, args.budget, families, seed=args.seed, audit=args.audit)
            pairs = core + audit
        else:
            pairs = design_pairs(codes, args.budget, families, seed=args.seed, ordered=ordered)
        total = len(codes) * (len(codes) - 1) // (1 if ordered else 2)
        what = f"{len(pairs)} of {total} {unit} (budget {args.budget:g}, seed {args.seed}"
        what += f"; {len(audit)} of them an audit drawn at random)" if audit is not None else ")"
    path = write_pairs_csv(pairs, args.out, ordered=ordered, audit=audit)
    print(f"{path}: {what}; plan them with `cltm plan ... --pairs {path}`")
    if args.next is not None:
        print(f"note: {NEXT_PAIRS_NOTE}")
    if audit is not None and (note := audit_size_note(len(audit), len(pairs), total)):
        print(f"note: {note}")
    return 0


def _complete(args: argparse.Namespace) -> int:
    run = complete_source(args.source, args.families, args.se, task=args.task, level=args.level, seed=args.seed,
                          distances_csv=args.distances, design_csv=args.design)
    written = write_completion(run, args.out, seed=args.seed)
    c = run.completion
    counts = run.to_intervals_json()["completion"]["cells"]
    print(f"completed {len(c.locales)} languages from {args.source}: {counts['measured']} measured, "
          f"{counts['predicted']} predicted, {counts['undefined']} undefined off-diagonal cells "
          f"(model: {c.config.scaling} scaling, rank {c.config.rank}"
          + (", a smooth function of the distances" if c.config.distance_smooth is not None else "")
          + (", a neighbour term" if c.config.neighbour_prior is not None else "") + ")")
    unbounded = int(((c.sources == PREDICTED) & ~(np.isfinite(c.lower) & np.isfinite(c.upper))).sum())
    if unbounded:
        print(f"note: {unbounded} of {counts['predicted']} predicted cells have unbounded {100 * c.level:g}% "
              "intervals: too few measured cells to hold out for a conformal quantile "
              f"({min_conformal_scores(c.level)} at this level); "
              "measure more pairs (`cltm design --next K --observed ...`)")
    if c.audit is not None:
        audit = np.triu(c.audit, 1)
        missing = int((audit & (c.sources != MEASURED) & (c.sources.T != MEASURED)).sum())
        if missing:
            print(f"note: {missing} of the design's {int(audit.sum())} audit pairs are not measured: the audit "
                  "uses the measured ones (is the grid not finished, or the design another grid's?)")
    reasons: dict[str, list[str]] = {}  # reason -> the diagnostics without an interval for it
    methods = set()
    for d in DIAGNOSTICS:
        entry = run.diagnostics.get(d.key)
        if entry is None:
            continue
        interval = ""
        if entry["lower"] is not None:
            interval = (f" [{format_value(entry['lower'], d.fraction, digits=3)}, "
                        f"{format_value(entry['upper'], d.fraction, digits=3)}]")
            methods.add(entry["method"])
        elif entry["reason"]:
            reasons.setdefault(entry["reason"], []).append(d.label)
        print(f"  {d.label}: {format_value(entry['point'], d.fraction, digits=3)}{interval}")
    # Say once why points stand alone, so they are not read as a full grid's estimates.
    for method in sorted(methods):
        print(f"  ({100 * c.level:g}% intervals: {method})")
    for reason, labels in sorted(reasons.items()):
        print(f"  ({', '.join(labels)}: {reason}; each diagnostic's estimator is in intervals.json)")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``design`` and ``complete``."""
    p = subparsers.add_parser("design", help="choose the pairs of a budgeted grid (pairs.csv for `cltm plan --pairs`)")
    p.add_argument("--locales", help="comma-separated Common Voice codes")
    p.add_argument("--budget", type=float, help="fraction F of the pairs to measure: ceil(F n(n-1)/2) pairs")
    p.add_argument("--families", help=FAMILIES_HELP)
    p.add_argument("--seed", type=int, default=0, help="designs with one seed are nested across budgets")
    p.add_argument("--one-run-per-cell", action="store_true",
                   help="ordered cells (target,donor) instead of pairs; the budget counts cells")
    p.add_argument("--audit", type=float, default=0.0, metavar="A",
                   help="share of the budget's pairs drawn at random from those the design leaves out (an "
                   "audit sample: design-based intervals for the completed diagnostics; e.g. 0.34)")
    p.add_argument("--next", type=at_least(1), metavar="K", help="active design: the K most useful unmeasured pairs")
    p.add_argument("--observed", help="with --next: the grid folder or partial matrix CSV measured so far")
    p.add_argument("--task", help=TASK_HELP)
    p.add_argument("--distances", help="with --next: " + DISTANCES_HELP)
    p.add_argument("-o", "--out", required=True, help="pairs.csv to write")
    p.set_defaults(func=_design)

    p = subparsers.add_parser("complete", help="complete a partially measured CLTM with predictive intervals")
    p.add_argument("source", help="grid folder, or a partial matrix CSV (empty cell = not measured)")
    p.add_argument("--se", help="with a CSV: standard errors of the measured cells (same layout)")
    p.add_argument("--families", help=FAMILIES_HELP)
    p.add_argument("--distances", help=DISTANCES_HELP)
    p.add_argument("--design", help="the pairs.csv of `cltm design --audit`: its audit pairs give the diagnostics "
                   "design-based intervals")
    p.add_argument("--task", help=TASK_HELP)
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval level (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="cross-validation folds and draws")
    p.add_argument("-o", "--out", required=True,
                   help="folder for completed.csv, lower.csv, upper.csv, sources.csv, intervals.json")
    p.set_defaults(func=_complete)
