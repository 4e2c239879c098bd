"""Benchmark: the demo grid with pair sharing against --one-run-per-cell (same machine, same call).

    python bench/bench_grid_sharing.py --out /tmp/bench_grid [--languages 6] [--task gr]

Prepares the toy corpus once (as `cltm demo` does), then runs both plans with the local executor
and prints trainings and wall time of each, plus their ratios. Append the output to
bench/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path


def main() -> None:
    from cltm_sb.data.common_voice import prepare_common_voice
    from cltm_sb.data.synth import synthesize_corpus
    from cltm_sb.demo import FULL
    from cltm_sb.grid.executors.core import usable_cores
    from cltm_sb.grid.executors.local import LocalExecutor
    from cltm_sb.grid.plan import make_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--languages", type=int, default=FULL.n_languages)
    parser.add_argument("--task", default="gr", choices=("gr", "sv"))
    parser.add_argument("--workers", type=int, default=usable_cores())
    args = parser.parse_args()

    out = Path(args.out)
    corpus = out / "corpus"
    if not (corpus / "families.csv").is_file():
        synthesize_corpus(corpus, seed=0, n_languages=args.languages, workers=args.workers)
    locales = sorted(p.name for p in corpus.iterdir() if p.is_dir())[: args.languages]
    prepared = out / "prepared" / args.task
    if not (prepared / "prepare.json").is_file():
        n = FULL.gr_n if args.task == "gr" else FULL.sv_n
        k = None if args.task == "gr" else FULL.sv_k
        prepare_common_voice(corpus, locales, args.task, n, prepared, clips_per_speaker=k,
                             cache_dir=out / "cache", workers=args.workers, progress=False)
    rows = {}
    for label, per_cell in (("shared", False), ("per-cell", True)):
        plan = make_plan(out / f"grid-{label}", prepared, args.task, locales, list(FULL.seeds),
                         overrides=dict(FULL.overrides), one_run_per_cell=per_cell)
        plan.save()
        start = time.perf_counter()
        report = LocalExecutor(workers=args.workers).run(plan, progress=False)
        rows[label] = (report.n_runs, time.perf_counter() - start, len(report.failed))
    (n_s, t_s, f_s), (n_c, t_c, f_c) = rows["shared"], rows["per-cell"]
    print(f"## Grid pair sharing ({date.today()}, {platform.node()}, {usable_cores()} cores, "
          f"{args.workers} workers, CPU only)")
    print(f"command: python bench/bench_grid_sharing.py --out {args.out} --languages {args.languages} "
          f"--task {args.task}")
    print(f"L={args.languages}, seeds {list(FULL.seeds)}, task {args.task}, pid {os.getpid()}")
    print("| protocol | trainings | wall time (s) | failed |\n|---|---|---|---|")
    print(f"| pair sharing | {n_s} | {t_s:.1f} | {f_s} |")
    print(f"| one run per cell | {n_c} | {t_c:.1f} | {f_c} |")
    print(f"trainings ratio {n_c / n_s:.3f} (expected {(args.languages + 1) * 2 / (args.languages + 3):.3f}); "
          f"wall time ratio {t_c / t_s:.2f}")


if __name__ == "__main__":
    main()
