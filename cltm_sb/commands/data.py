"""``cltm prepare``, ``cltm synth`` and ``cltm validate``: thin wrappers over ``cltm_sb.data``."""

from __future__ import annotations

import argparse
import json
import os

from cltm_sb.commands import at_least
from cltm_sb.tasks import TASK_HELP


def _prepare(args: argparse.Namespace) -> int:
    from cltm_sb.data.common_voice import prepare_common_voice, report_common_voice

    if args.report:
        table = report_common_voice(args.cv_root, args.locales, args.task, args.clips_per_speaker)
        print(table.to_string(index=False))
        return 0
    if not args.locales or args.n is None or args.out is None:
        raise ValueError("prepare needs --locales, --n and --out (or --report)")
    info = prepare_common_voice(
        args.cv_root, args.locales, args.task, args.n, args.out,
        clips_per_speaker=args.clips_per_speaker, seed=args.seed, cache_dir=args.cache_dir,
        workers=args.workers, trials_per_speaker=args.trials_per_speaker, progress=not args.quiet,
        draws=args.draws,
    )  # fmt: skip
    for locale in info["locales"]:
        counts = info["counts"][locale]
        sizes = ", ".join(f"{s} {counts[s]['clips']}" for s in ("a", "b", "test"))
        trials = counts.get("trials")
        extra = f", trials {trials['positive']}+/{trials['negative']}-" if trials else ""
        print(f"{locale}: {sizes}{extra}")
    print(f"data_hash {info['data_hash']}; manifests in {args.out}, audio in {info['data_root']}")
    for draw, entry in sorted((info.get("draws") or {}).items(), key=lambda item: int(item[0])):
        print(f"draw {draw}: {entry['folder']}, draw_hash {entry['draw_hash']}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from cltm_sb.data.synth import synthesize_corpus

    out = synthesize_corpus(args.out, seed=args.seed, n_languages=args.languages, workers=args.workers,
                            age_cues=args.age_cues)
    print(f"toy corpus in {out} (families: {out / 'families.csv'})")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from cltm_sb.data.checks import check_data

    problems = check_data(args.manifests, data_root=args.data_root, full=args.full)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems}, indent=2))
    else:
        print("\n".join(problems) if problems else f"OK: no problems in {', '.join(args.manifests)}")
    return 1 if problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the data subcommands."""
    cpus = os.cpu_count() or 1
    p = subparsers.add_parser(
        "prepare", help="balanced subsets, test sets and trials from a Common Voice folder",
        description="Prepare a/b/test manifests (and SV trials) per locale, decoding the drawn "
        "clips into a shared 16 kHz cache. Re-running with the same arguments does nothing.",
    )  # fmt: skip
    p.add_argument("--cv-root", required=True, help="Common Voice folder with one folder per locale")
    p.add_argument("--locales", help="comma-separated locale codes (default for --report: all)")
    p.add_argument("--task", required=True, help=TASK_HELP)
    p.add_argument("--n", type=int, help="clips per subset (a multiple of 2K)")
    p.add_argument("--clips-per-speaker", type=int, default=None, help="K (default: the task's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--draws", type=int, default=1,
        help="independent a/b draws (draw 0 in OUT/<locale>, draw k in OUT/draw<k>/<locale>)",
    )  # fmt: skip
    p.add_argument("--out", help="output folder")
    p.add_argument("--cache-dir", default=None, help="audio cache folder (default OUT/audio)")
    p.add_argument("--workers", type=at_least(1), default=1, help="decoding processes")
    p.add_argument("--trials-per-speaker", type=int, default=200, help="cap of positive SV trials")
    p.add_argument("--report", action="store_true", help="print what each locale offers; write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_prepare)

    s = subparsers.add_parser("synth", help="write the toy corpus (Common Voice layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--languages", type=int, default=6, help="number of languages (families of two)")
    s.add_argument("--workers", type=at_least(1), default=min(cpus, 6))
    s.add_argument("--age-cues", action="store_true",
                   help="voices carry age cues (for the age task; off: the corpus gr and sv are tuned on)")
    s.set_defaults(func=_synth)

    v = subparsers.add_parser(
        "validate", help="check manifests, trial lists or a prepared folder (what `cltm plan` checks)",
        description="Check headers and rows, the audio (16 kHz mono, readable: every test clip and "
        "a sample of the training clips), trial IDs and speaker-disjoint subsets.",
    )  # fmt: skip
    v.add_argument("manifests", nargs="+", metavar="PATH", help="manifest, trials.csv or data folder")
    v.add_argument("--data-root", default=None, help="audio root (default: from prepare.json)")
    v.add_argument("--full", action="store_true", help="read the audio header of every clip")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_validate)
