"""Training throughput of the recipe against a minimal plain-PyTorch loop (same model and data).

Both sides train the same encoder + linear head on the same clips, batch size, optimiser
(AdamW, one group, global-norm clip 1.0) and precision (fp32), and read and normalise the audio
the same way; throughput = seconds of training audio per wall-clock second of training. The recipe
side is ``run_recipe`` (SpeechBrain Brain.fit; its ``train_time_s``), evaluation excluded.

    python bench/bench_recipe_throughput.py --model base --steps 30 --threads 2
    python bench/bench_recipe_throughput.py --model tiny --steps 200 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def make_data(folder: Path, n: int, seconds: float) -> tuple[Path, Path]:
    """``n`` clips of ``seconds`` (alternating genders) and a 2-clip test manifest."""
    rng = np.random.default_rng(0)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    header = ["ID", "duration", "wav", "spk_id", "gender", "locale", "subset"]
    paths = []
    for name, count in (("train", n), ("test", 2)):
        rows = []
        for i in range(count):
            uid = f"{name}{i}"
            sf.write(folder / "audio" / f"{uid}.wav", 0.1 * rng.standard_normal(int(16000 * seconds)).astype(np.float32), 16000)
            rows.append([uid, seconds, f"$data_root/{uid}.wav", f"s{i}", ("female", "male")[i % 2], "xx", "a"])
        path = folder / "xx" / f"{name}.csv"
        path.parent.mkdir(exist_ok=True)
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
        paths.append(path)
    return paths[0], paths[1]


def plain_loop(model_dir: Path, train_csv: Path, data_root: Path, seed: int) -> float:
    """A minimal PyTorch loop; returns training audio seconds per wall second."""
    from transformers import HubertConfig, HubertModel

    from cltm_sb.data.audio import normalize_waveform

    torch.manual_seed(seed)
    config = HubertConfig.from_pretrained(model_dir)
    config.layerdrop = 0.0
    model = HubertModel.from_pretrained(model_dir, config=config)
    head = torch.nn.Linear(config.hidden_size, 2)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    with open(train_csv) as handle:
        rows = list(csv.DictReader(handle))
    order = torch.randperm(len(rows)).tolist()
    model.train()
    audio = 0.0
    start = time.perf_counter()
    for i in order:
        row = rows[i]
        wav, _ = sf.read(row["wav"].replace("$data_root", str(data_root)), dtype="float32")
        x = normalize_waveform(torch.from_numpy(wav))[None]
        label = torch.tensor([0 if row["gender"] == "female" else 1])
        hidden = model(x, output_hidden_states=True).hidden_states[-1]
        loss = torch.nn.functional.cross_entropy(head(hidden.mean(dim=1)), label)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        audio += float(row["duration"])
    return audio / (time.perf_counter() - start)


def recipe(model_dir: Path, dim: int, train_csv: Path, test_csv: Path, data_root: Path, out: Path, seed: int) -> float:
    """The recipe (paper preset, the given encoder); training audio seconds per wall second."""
    from cltm_sb.recipe.run import run_recipe

    record = run_recipe(
        "gr",
        {
            "train_csv": [str(train_csv)],
            "test_csv": [str(test_csv)],
            "data_root": str(data_root),
            "seed": seed,
            "output_folder": str(out),
            "encoder": "hf_ssl",
            "encoder_source": str(model_dir),
            "encoder_dim": dim,
            "layerdrop": 0.0,
            "preset": "paper",
        },
        run_opts={"device": "cpu"},
    )
    return record.extra["n_train_seconds"] / record.extra["train_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("base", "tiny"), default="base")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import HubertConfig, HubertModel

    from cltm_sb.recipe.encoders import build_tiny_hubert

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model == "tiny":
            model_dir, dim = build_tiny_hubert(tmp / "tiny"), 48
        else:  # HuBERT-base config = mHuBERT-147's size, random weights
            model_dir, dim = tmp / "base", 768
            with torch.random.fork_rng():
                torch.manual_seed(0)
                HubertModel(HubertConfig()).save_pretrained(model_dir)
        train_csv, test_csv = make_data(tmp / "data", args.steps, args.seconds)
        root = tmp / "data" / "audio"
        plain, rec = [], []
        for r in range(args.repeats):  # interleaved, best of each
            plain.append(plain_loop(model_dir, train_csv, root, seed=r))
            rec.append(recipe(model_dir, dim, train_csv, test_csv, root, tmp / f"run{r}", seed=r))
    result = {
        "model": args.model,
        "steps": args.steps,
        "clip_seconds": args.seconds,
        "threads": args.threads,
        "plain_audio_s_per_s": [round(v, 3) for v in plain],
        "recipe_audio_s_per_s": [round(v, 3) for v in rec],
        "ratio_best": round(max(rec) / max(plain), 3),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
