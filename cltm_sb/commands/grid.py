"""``cltm plan``, ``cltm run``, ``cltm status`` and ``cltm demo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from cltm_sb.commands import at_least
from cltm_sb.grid.budget_record import BudgetRequest, budget_block, budget_line, budget_request
from cltm_sb.grid.layout import PLAN_FILE, PlanError
from cltm_sb.grid.plan import (
    DEFAULT_RUNNER,
    Plan,
    RunSpec,
    check_replace,
    load_plan,
    make_plan,
    plan_runs,
    trainings_per_seed,
)
from cltm_sb.grid.status import estimate_seconds, format_duration, heartbeats, seconds_per_subset
from cltm_sb.results import IDENTITY_VERSION
from cltm_sb.tasks import TASK_HELP


def parse_list(text: str | None) -> list[str]:
    """``en,es, fr`` -> ``["en", "es", "fr"]``."""
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def parse_seeds(text: str) -> list[int]:
    """``42,43`` or ``42-51`` (inclusive) or a mix."""
    seeds: list[int] = []
    for part in parse_list(text):
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds {text!r}: expected e.g. 42,43 or 42-51") from None
    return seeds


def parse_draws(text: str) -> list[int]:
    """``0-2`` or ``0,3``: data draws of ``cltm prepare --draws``, like --seeds."""
    try:
        return parse_seeds(text)
    except ValueError:
        raise ValueError(f"--draws {text!r}: expected e.g. 0-2 or 0,1") from None


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values typed as the hparams files are read (numbers, lists, booleans)."""
    from cltm_sb.recipe.overrides import parse_override

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override {item!r}: expected key=value")
        key = key.strip().lstrip("-")
        out[key] = parse_override(key, value)
    return out


def _plan(args: argparse.Namespace) -> int:
    out = Path(args.out)
    overrides = parse_overrides(args.override)
    request = _budget_request(args)
    pairs = request.pairs(parse_list(args.locales)) if request is not None else None
    plan = make_plan(
        out,
        args.data,
        args.task,
        parse_list(args.locales),
        parse_seeds(args.seeds),
        hparams_file=args.hparams,
        overrides=overrides,
        one_run_per_cell=args.one_run_per_cell,
        targets=parse_list(args.targets) or None,
        donors=parse_list(args.donors) or None,
        donor_sets=[d.split("+") for d in parse_list(args.donor_sets)],
        runner=args.runner,
        draws=parse_draws(args.draws),
        pairs=pairs,
    )
    if (out / PLAN_FILE).is_file() and not args.force:
        check_replace(load_plan(out), plan)
    plan.budget = budget_block(plan, request)  # before save: it reads the earlier budgets
    plan.save(families=args.families)
    kinds = Counter(r.kind for r in plan.runs)
    n_loc = len(plan.locales)
    print(f"plan: {plan.plan_file}")
    print(
        f"{plan.n_trainings} trainings ({', '.join(f'{n} {k}' for k, n in kinds.items())}) "
        f"for {len(plan.seeds)} seeds{f' x {len(plan.draws)} data draws' if len(plan.draws) > 1 else ''}, "
        f"{len(plan.targets)} targets x {len(plan.donors)} donors"
    )
    if plan.targets == plan.locales and plan.donors == plan.locales and not plan.donor_sets:
        shared, per_cell = trainings_per_seed(n_loc), trainings_per_seed(n_loc, True)
        print(
            f"per seed: {shared} with pair sharing, {per_cell} with one run per cell "
            f"({'used' if plan.one_run_per_cell else 'x' + format(per_cell / shared, '.2f') + ' more'})"
        )
    # The user's --time-per-run wins over the folder's records (of this or another configuration),
    # and the line below says where the figure came from.
    per_subset, timing = (args.time_per_run, "given by --time-per-run") if args.time_per_run else (None, "")
    if per_subset is None and plan.records_dir.is_dir():
        from cltm_sb.results import load_records

        per_subset = seconds_per_subset(load_records(plan.records_dir).records)
        timing = f"measured on the records in {plan.records_dir}"
    if per_subset is None and args.measure:
        from cltm_sb.grid.executors.local import LocalExecutor

        first = plan.runs[0]
        report = LocalExecutor(workers=1).run(plan, [first.run_id], progress=False)
        if report.failed:
            raise PlanError(f"the measured run {first.run_id} failed: {report.failed[0].error}")
        per_subset = seconds_per_subset(report.records)
        timing = f"measured on {first.run_id}"
    full = _full_runs(plan) if pairs is not None else None
    if full is not None:
        print(f"budgeted grid: {plan.n_trainings} trainings, the full grid {len(full)} "
              f"({plan.n_trainings / len(full):.0%} of it)")
    if plan.budget is not None:
        print(f"{budget_line(plan.budget)} (recorded in {PLAN_FILE})")
    if per_subset is not None:
        total = estimate_seconds(plan, plan.runs, per_subset, workers=args.workers)
        print(f"estimated time with {args.workers} worker(s): {format_duration(total)} "
              f"({per_subset:.1f} s per training subset, {timing})")
        if full is not None:
            print(f"the full grid: {format_duration(estimate_seconds(plan, full, per_subset, workers=args.workers))}")
    else:
        print("no time estimate: pass --measure (runs one training now) or --time-per-run SECONDS")
    return 0


def _budget_request(args: argparse.Namespace) -> BudgetRequest | None:
    """``--pairs`` / ``--budget``: what chooses a budgeted grid's pair runs (None: every pair)."""
    return budget_request(args.pairs, args.budget, args.families, args.one_run_per_cell, grid=args.out,
                          audit=args.audit)


def _full_runs(plan: Plan) -> list[RunSpec]:
    """The runs of the same plan without --pairs/--budget (for the cost comparison)."""
    return plan_runs(plan.task, plan.locales, plan.seeds, plan.config_hash,
                     one_run_per_cell=plan.one_run_per_cell, targets=plan.targets, donors=plan.donors,
                     donor_sets=plan.donor_sets, draws=plan.draws)


def _slurm_options(args: argparse.Namespace) -> dict[str, Any]:
    from cltm_sb.grid.executors.slurm import read_slurm_config

    options = read_slurm_config(args.slurm_config) if args.slurm_config else {}
    for key in ("partition", "account", "qos", "constraint", "time", "gpus", "cpus_per_task",
                "mem_gb", "array_parallelism", "runs_per_task", "job_name"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    if args.runs_per_gpu is not None:
        options["runs_per_gpu"] = args.runs_per_gpu
    return options


def _run(args: argparse.Namespace) -> int:
    from cltm_sb.grid.executors.core import InProcessExecutor
    from cltm_sb.grid.executors.local import LocalExecutor
    from cltm_sb.grid.executors.slurm import SlurmExecutor

    plan = load_plan(args.plan)
    if args.executor == "slurm":
        executor = SlurmExecutor(_slurm_options(args), wait=not args.no_wait)
    elif args.executor == "inprocess":
        executor = InProcessExecutor(threads=args.threads)
    else:
        executor = LocalExecutor(
            workers=args.workers, runs_per_gpu=args.runs_per_gpu or 1, threads=args.threads
        )
    report = executor.run(plan, retry_failed=not args.no_retry_failed, progress=not args.no_progress)
    if report.in_slurm:
        jobs = sorted({r.task_id.split("_")[0] for r in report.in_slurm})
        print(f"{len(report.in_slurm)} runs are queued or running in SLURM (job {', '.join(jobs)}) "
              f"and were not started again; `cltm status {args.plan}` follows them, "
              f"`cltm cancel {args.plan}` cancels them")
    if report.submitted or (args.executor == "slurm" and args.no_wait):
        print(f"submitted {report.n_runs} runs; follow them with `cltm status {args.plan}`")
        return 0
    print(f"{report.n_ok} runs finished, {len(report.failed)} failed, "
          f"{report.n_skipped - len(report.in_slurm)} already done or skipped")
    for record in report.failed:
        print(f"  FAILED {record.run_id}: {record.error}\n         log: {record.log_path}")
    for busy in report.elsewhere:
        print(f"  NOT STARTED {busy}")
    if report.failed:
        print(f"fix the cause and rerun `cltm run {args.plan}`: only unfinished runs run again")
    return 1 if report.failed or report.elsewhere else 0


def _status(args: argparse.Namespace) -> int:
    from cltm_sb.grid.jobs import SlurmRunState, grid_status

    plan = load_plan(args.plan)
    states = grid_status(plan)
    counts = Counter(s.state for s in states)
    per_subset = seconds_per_subset(s.record for s in states if s.record is not None)
    left = [s.spec for s in states if s.state != "done"]
    eta = estimate_seconds(plan, left, per_subset, args.workers) if per_subset is not None else None
    summary = {
        "plan": str(plan.plan_file),
        "task": plan.task,
        "total": len(states),
        "done": counts["done"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "identity_version": plan.identity_version,
        "queued": counts["queued"],
        "running": counts["running"],
        "eta_s": eta,
        "in_slurm": [s.slurm.to_dict() for s in states if isinstance(s, SlurmRunState) and s.slurm],
        "failures": [
            {"run_id": s.spec.run_id, "error": s.record.error, "log": s.record.log_path}
            for s in states
            if s.state == "failed" and s.record is not None
        ],
        "redo": [
            {"run_id": s.spec.run_id, "reason": s.redo_reason}
            for s in states
            if s.state == "pending" and s.redo_reason
        ],
        "heartbeats": heartbeats(plan, states),
        "blocked": _blocked(plan) if left else None,
        **({"budget": plan.budget} if plan.budget is not None else {}),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    in_slurm = ""
    if summary["in_slurm"]:
        jobs = sorted({row["job_id"].split("_")[0] for row in summary["in_slurm"]})
        in_slurm = (f"{summary['queued']} queued, {summary['running']} running "
                    f"(SLURM job {', '.join(jobs)}), ")
    print(f"{summary['plan']}: {summary['done']}/{summary['total']} done, "
          f"{summary['failed']} failed, {in_slurm}{summary['pending']} pending")
    if plan.identity_note():
        print(f"note: {plan.identity_note()}")
    if summary["blocked"]:
        print(f"BLOCKED: `cltm run` will refuse this plan: {summary['blocked']}")
    if plan.budget is not None:
        print(budget_line(plan.budget))
    if left:
        print(f"ETA with {args.workers} worker(s): {format_duration(eta)}")
    for run_id, beat in summary["heartbeats"].items():
        print(f"  running {run_id}: {beat}")
    for redo in summary["redo"]:
        print(f"  REDO {redo['run_id']} (pending, trained again by `cltm run`): {redo['reason']}")
    for failure in summary["failures"]:
        print(f"  FAILED {failure['run_id']}: {failure['error']}\n         log: {failure['log']}")
    return 0


def _blocked(plan: Plan) -> str | None:
    """Why `cltm run` would refuse the plan's unfinished runs (data or configuration changed since
    `cltm plan`), else None: without it the runs only read as pending."""
    try:
        plan.require_current_data()
        if plan.identity_version >= IDENTITY_VERSION:  # an old plan: its note says what to do
            plan.require_current_config()
    except (ValueError, OSError) as error:  # PlanError, or a configuration that no longer loads
        return str(error)
    return None


def _cancel(args: argparse.Namespace) -> int:
    from cltm_sb.grid.jobs import cancel_grid

    report = cancel_grid(load_plan(args.plan))
    if not report.cancelled_jobs:
        print(f"{args.plan}: nothing to cancel; its SLURM jobs ({', '.join(report.ended_jobs)}) have ended")
        return 0
    counts = Counter(r.state for r in report.runs)
    print(f"cancelled SLURM job {', '.join(report.cancelled_jobs)}: {counts['queued']} queued and "
          f"{counts['running']} running runs")
    for run in report.runs:
        print(f"  {run.state:8s} {run.run_id} ({run.task_id})")
    print(f"they are pending again: `cltm run {args.plan}` runs them")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cltm_sb.demo import run_demo

    report = run_demo(args.out, quick=args.quick, workers=args.workers, progress=not args.no_progress,
                      tasks=parse_list(args.tasks))
    print(f"demo results: {report}", file=sys.stdout)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the grid subcommands."""
    p = subparsers.add_parser("plan", help="list the training runs of a CLTM grid (plan.json)")
    p.add_argument("--data", required=True, help="prepared data folder (from `cltm prepare`)")
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument("--locales", required=True, help="comma-separated Common Voice codes")
    p.add_argument(
        "--families",
        help="code,name,family CSV for codes outside the built-in registry; copied into the grid "
        "folder, where report, compare, matrix and analyze of the grid find it",
    )
    p.add_argument("--seeds", default="42,43", help="e.g. 42,43 or 42-51 (default: %(default)s)")
    p.add_argument("--draws", default="0",
                   help="data draws of `cltm prepare --draws`, crossed with the seeds, e.g. 0-2 (default: 0)")
    p.add_argument("-o", "--out", required=True, help="plan folder (plan.json, runs/, records/, logs/)")
    p.add_argument("--hparams", help="task YAML (default: the packaged one)")
    p.add_argument("--override", action="append", metavar="KEY=VALUE",
                   help="hparams override, repeatable (e.g. encoder=tiny_hubert, preset=toy)")
    p.add_argument("--one-run-per-cell", action="store_true",
                   help="the authors' protocol: one pair training per cell (L(L+1) per seed)")
    p.add_argument("--targets", help="only these rows (comma-separated; default: all locales)")
    p.add_argument("--donors", help="only these columns (comma-separated; default: all locales)")
    p.add_argument("--donor-sets", help="multi-donor train sets, e.g. es+fr,de+it+fr")
    p.add_argument("--pairs", action="append",
                   help="a budgeted grid: only the pairs of this pairs.csv (`cltm design`); repeatable "
                        "(a design plus `cltm design --next` rounds)")
    p.add_argument("--budget", type=float, metavar="F",
                   help="a budgeted grid: the `cltm design` of ceil(F n(n-1)/2) pairs (seed 0)")
    p.add_argument("--audit", type=float, default=0.0, metavar="A",
                   help="with --budget: `cltm design --audit A` (a random audit sample, recorded in plan.json; "
                   "`cltm complete` gives the diagnostics design-based intervals from it)")
    p.add_argument("--runner", default=DEFAULT_RUNNER, help="run function (default: %(default)s)")
    p.add_argument("--measure", action="store_true", help="run the first training now to time it")
    p.add_argument("--time-per-run", type=float, help="seconds of one single-subset training")
    p.add_argument("--workers", type=at_least(1), default=1, help="workers assumed by the estimate")
    p.add_argument("--force", action="store_true", help="replace a different plan in --out")
    p.set_defaults(func=_plan, trains=True)  # --measure trains

    p = subparsers.add_parser("run", help="run a plan's unfinished runs (resumable)")
    p.add_argument("plan", help="plan folder or its plan.json")
    p.add_argument("--executor", choices=("local", "slurm", "inprocess"), default="local")
    p.add_argument("--workers", type=at_least(1), help="local: concurrent runs (default: one per GPU, or 1)")
    p.add_argument("--runs-per-gpu", type=at_least(1), help="runs sharing one GPU (default: 1)")
    p.add_argument("--threads", type=at_least(1), help="threads per run (default: cores / workers)")
    p.add_argument("--no-retry-failed", action="store_true", help="leave failed runs as they are")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("SLURM (--executor slurm)")
    g.add_argument("--slurm-config", help="YAML file of SLURM options (the flags below win)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--constraint")
    g.add_argument("--time", help="per array task: minutes or HH:MM:SS")
    g.add_argument("--gpus", type=int, help="GPUs per array task")
    g.add_argument("--cpus-per-task", type=int)
    g.add_argument("--mem-gb", type=float)
    g.add_argument("--array-parallelism", type=int, help="cap on simultaneous array tasks")
    g.add_argument("--runs-per-task", type=int, help="runs per array task (amortises start-up)")
    g.add_argument("--job-name")
    g.add_argument("--no-wait", action="store_true", help="submit and return")
    p.set_defaults(func=_run, trains=True)

    p = subparsers.add_parser("status", help="done/failed/queued/running/pending runs of a plan and an ETA")
    p.add_argument("plan", help="plan folder or its plan.json")
    p.add_argument("--workers", type=at_least(1), default=1, help="workers assumed by the ETA")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_status)

    p = subparsers.add_parser("cancel", help="cancel the SLURM jobs of a plan that are queued or running")
    p.add_argument("plan", help="plan folder or its plan.json")
    p.set_defaults(func=_cancel)

    p = subparsers.add_parser("demo", help="toy corpus -> both grids -> matrices and report.md")
    p.add_argument("--out", default="cltm_demo", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer languages and epochs (a smoke test)")
    p.add_argument("--workers", type=at_least(1), help="concurrent runs (default: one per 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tasks", default="gr,sv",
                   help="comma-separated demo tasks among gr, sv, age (default: %(default)s)")
    p.set_defaults(func=_demo, trains=True)
