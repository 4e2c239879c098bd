"""Benchmark: self-gains of the `toy` preset on the demo corpus (is every one clear of seed noise?).

    python bench/bench_toy_self_gain.py --out /tmp/bench_toy --task gr [--n 8] [--seeds 47,48,49,50,51]
    python bench/bench_toy_self_gain.py --out /tmp/bench_toy --task age  # N=12, K=1
    python bench/bench_toy_self_gain.py --out /tmp/bench_toy --task sv --n 32 --k 4 \
        --override number_of_epochs=15

Synthesises the demo's toy corpus (once), prepares it for the task, trains every language on a and
on a+b for each seed (the tiny encoder, the `toy` preset plus any --override) and prints, per
language, P(a), P(a+b), the self-gain, its standard error (per-seed spread, as `cltm matrix`) and
z = gain / SE. DESIGN asks for every toy language clearly above seed noise (z > 2). Append the
output to bench/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from multiprocessing import get_context
from pathlib import Path

import numpy as np


def _train(task: str, overrides: dict) -> float:
    import torch

    from cltm_sb.recipe.run import run_recipe

    torch.set_num_threads(1)
    return run_recipe(task, overrides).evaluations[0].value


def main() -> None:
    from cltm_sb.analysis.matrix import CellStats
    from cltm_sb.commands.grid import parse_overrides
    from cltm_sb.data.common_voice import prepare_common_voice
    from cltm_sb.data.synth import synthesize_corpus
    from cltm_sb.demo import FULL
    from cltm_sb.grid.executors.core import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--task", default="gr", choices=("gr", "sv", "age"))
    parser.add_argument("--n", type=int, default=None, help="clips per subset (default: the demo's)")
    parser.add_argument("--k", type=int, default=None, help="clips per speaker (default: the demo's)")
    parser.add_argument("--seeds", default=",".join(map(str, FULL.seeds)))
    parser.add_argument("--corpus-seed", type=int, default=0)
    parser.add_argument("--languages", type=int, default=FULL.n_languages)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="hparams override, e.g. number_of_epochs=15 (repeatable)")
    parser.add_argument("--workers", type=int, default=usable_cores())
    args = parser.parse_args()

    n = args.n or {"gr": FULL.gr_n, "sv": FULL.sv_n, "age": FULL.age_n}[args.task]
    k = args.k or (FULL.sv_k if args.task == "sv" else None)
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = {**dict(FULL.overrides), **parse_overrides(args.override)}
    out = Path(args.out)
    age = args.task == "age"  # the age task's corpus has voices with age cues (as `cltm demo`'s)
    corpus = out / f"corpus-{args.corpus_seed}{'-age' if age else ''}"
    if not (corpus / "families.csv").is_file():
        synthesize_corpus(corpus, seed=args.corpus_seed, n_languages=args.languages, workers=args.workers,
                          age_cues=age)
    locales = sorted(p.name for p in corpus.iterdir() if p.is_dir())[: args.languages]
    prepared = out / f"prepared-{args.corpus_seed}-{args.task}-{n}-{k}"
    if not (prepared / "prepare.json").is_file():
        prepare_common_voice(corpus, locales, args.task, n, prepared, clips_per_speaker=k, seed=0,
                             cache_dir=out / f"cache-{corpus.name}", workers=args.workers,
                             progress=False)

    jobs, keys = [], []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for locale in locales:
        for kind, subsets in (("a", ["a"]), ("a+b", ["a", "b"])):
            for seed in seeds:
                overrides = {
                    **extra, "seed": seed,
                    "train_csv": [str(prepared / locale / f"{s}.csv") for s in subsets],
                    "test_csv": [str(prepared / locale / "test.csv")],
                    "output_folder": str(out / "runs" / stamp / f"{locale}-{kind}-{seed}"),
                }
                if args.task == "sv":
                    overrides["trials_csv"] = [str(prepared / locale / "trials.csv")]
                jobs.append(overrides)
                keys.append((locale, kind))
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("forkserver")) as pool:
        values = list(pool.map(_train, [args.task] * len(jobs), jobs))
    wall = time.perf_counter() - start

    scores: dict[tuple[str, str], list[float]] = {}
    for key, value in zip(keys, values):
        scores.setdefault(key, []).append(value)
    print(f"{date.today()} {platform.node()} task={args.task} N={n} K={k} seeds={seeds} "
          f"overrides={extra} trainings={len(jobs)} wall={wall:.0f}s")
    print("| language | P(a) | P(a+b) | self-gain | SE | z |")
    print("|---|---|---|---|---|---|")
    clear = 0
    for locale in locales:
        single, both = (
            CellStats(float(np.mean(v)), float(np.var(v, ddof=1)), len(v))
            for v in (scores[(locale, "a")], scores[(locale, "a+b")])
        )
        gain = both.mean - single.mean
        se = float(np.sqrt(single.v + both.v))  # as cltm matrix's self-gain SE
        z = gain / se if se > 0 else float("inf") * np.sign(gain)
        clear += bool(z > 2)
        print(f"| {locale} | {single.mean:.3f} | {both.mean:.3f} | {gain:+.3f} | {se:.3f} | {z:.1f} |")
    print(f"clear of seed noise (z > 2): {clear}/{len(locales)}")


if __name__ == "__main__":
    main()
