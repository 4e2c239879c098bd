"""Benchmark: the data checks `cltm plan` makes before writing plan.json, on a 44-language folder.

Usage: python bench/bench_data_checks.py [--work DIR] [--locales 44] [--train 120] [--test 1500]
       [--task gr|sv] [--repeats 3]

Writes a fake prepared folder (``prepare.json``; per locale a.csv and b.csv of ``--train`` clips,
test.csv of ``--test`` clips, trials.csv for sv; 0.1 s of 16 kHz PCM per clip, since a header read
does not depend on the length), then times :func:`cltm_sb.data.checks.check_data` over the files a
full grid needs (every test clip and a sample of training clips read as audio headers), the same
with ``full=True`` (every clip), and the whole :func:`cltm_sb.grid.plan.make_plan`. The page cache
is warm after the first repeat: on a cold network disk, header reads take longer.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def write_folder(folder: Path, n_locales: int, n_train: int, n_test: int) -> list[str]:
    """A prepared folder of ``n_locales`` fake locales; returns their codes."""
    silence = np.zeros(1600, np.float32)
    codes = [f"l{i:02d}" for i in range(n_locales)]
    for code in codes:
        (folder / code).mkdir(parents=True)
        (folder / "audio" / code).mkdir(parents=True)
        test_ids = []
        for subset, n in (("a", n_train), ("b", n_train), ("test", n_test)):
            lines = ["ID,duration,wav,spk_id,gender,locale,subset"]
            for i in range(n):
                uid = f"{code}_{subset}{i}"
                sf.write(folder / "audio" / code / f"{uid}.wav", silence, 16000, subtype="PCM_16")
                gender = ("female", "male")[i % 2]
                speaker = f"{code}_{subset}_spk{i // 4}"  # 4 clips per speaker
                lines.append(f"{uid},0.100,$data_root/{code}/{uid}.wav,{speaker},{gender},{code},{subset}")
                if subset == "test":
                    test_ids.append(uid)
            (folder / code / f"{subset}.csv").write_text("\n".join(lines) + "\n")
        trials = ["enrol_ID,test_ID,label"]
        for i in range(0, len(test_ids) - 4, 2):
            trials += [f"{test_ids[i]},{test_ids[i + 1]},1", f"{test_ids[i]},{test_ids[i + 4]},0"]
        (folder / code / "trials.csv").write_text("\n".join(trials) + "\n")
    info = {"data_hash": "bench", "data_root": str(folder / "audio")}
    (folder / "prepare.json").write_text(json.dumps(info))
    return codes


def best_of(repeats: int, func) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--locales", type=int, default=44)
    parser.add_argument("--train", type=int, default=120, help="clips in each of a and b")
    parser.add_argument("--test", type=int, default=1500, help="test clips per locale")
    parser.add_argument("--task", default="gr", choices=("gr", "sv"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from cltm_sb.data.checks import check_data
    from cltm_sb.grid.plan import make_plan

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        start = time.perf_counter()
        codes = [f"l{i:02d}" for i in range(args.locales)]
        if not (work / "prep" / "prepare.json").is_file():  # reuse a --work folder written before
            codes = write_folder(work / "prep", args.locales, args.train, args.test)
            print(f"wrote {args.locales} locales x ({args.train}+{args.train} training, {args.test} "
                  f"test) clips in {time.perf_counter() - start:.1f} s")
        # A runner without check_config: only the data checks are timed, not the encoder's.
        options = {"config_hash": "bench", "runner": f"{__name__}:main"}
        plan = make_plan(work / "plan", work / "prep", args.task, codes, [1], check_files=False, **options)
        files = plan.needed_files()
        assert check_data(files, plan.data_root) == []
        sampled = best_of(args.repeats, lambda: check_data(files, plan.data_root))
        full = best_of(args.repeats, lambda: check_data(files, plan.data_root, full=True))
        planned = best_of(
            args.repeats,
            lambda: make_plan(work / "plan", work / "prep", args.task, codes, [1], **options),
        )
        n_test = args.locales * args.test
        n_sampled = n_test + 2 * args.locales * min(args.train, 20)
        print(f"{len(files)} files, {plan.n_trainings} runs ({args.task})")
        print(f"check_data (plan-time: {n_sampled} audio headers): {sampled:.2f} s")
        print(f"check_data full=True ({n_test + 2 * args.locales * args.train} audio headers): {full:.2f} s")
        print(f"make_plan with the checks: {planned:.2f} s")


if __name__ == "__main__":
    main()
