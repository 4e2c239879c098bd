"""Checkpoint save and load time of a HuBERT-base-sized model against one training step.

What a run pays for resumability: the recipe saves a SpeechBrain checkpoint (encoder, head, AdamW
state, epoch counter, random state) at each epoch end and every ``ckpt_interval_minutes``, and a
rerun loads it. The model is a randomly initialised HuBERT-base (95M parameters, 768-dim: the
mHuBERT-147 architecture, offline) with a linear head; the optimiser state exists (one step was
taken), so the checkpoint is the full ~1.1 GB. One training step = forward + backward + AdamW on
one batch of ``--seconds`` of audio (batch 1, the paper preset), fp32 on CPU.

    python bench/bench_checkpoint.py --threads 2 --steps 3 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="training steps timed (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="saves and loads timed")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per training step")
    parser.add_argument("--folder", default=None, help="where checkpoints go (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from speechbrain.utils.checkpoints import Checkpointer
    from speechbrain.utils.epoch_loop import EpochCounter
    from transformers import HubertConfig, HubertModel

    from cltm_sb.recipe.checkpoints import RandomState

    torch.manual_seed(0)
    model = HubertModel(HubertConfig(layerdrop=0.0))  # HuBERT-base defaults: 12 layers, 768-dim
    head = torch.nn.Linear(768, 2)
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    wav = torch.randn(1, int(16000 * args.seconds))
    label = torch.tensor([1])

    def step() -> None:
        optimizer.zero_grad()
        logits = head(model(wav).last_hidden_state.mean(dim=1))
        torch.nn.functional.cross_entropy(logits, label).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    step()  # warm-up; also creates the AdamW state the checkpoint holds
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - t0) / args.steps

    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp) / "save"
        counter = EpochCounter(1)
        recoverables = {"encoder": model, "head": head, "optimizer": optimizer, "counter": counter,
                        "random_state": RandomState()}
        checkpointer = Checkpointer(folder, recoverables=recoverables)
        saves, loads = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            checkpointer.save_and_keep_only(num_to_keep=1)
            os.sync()  # on disk, not only in the page cache
            saves.append(time.perf_counter() - t0)
            size = folder_bytes(folder)
            t0 = time.perf_counter()
            checkpointer.recover_if_possible()
            loads.append(time.perf_counter() - t0)
    result = {
        "threads": args.threads,
        "parameters_M": round(sum(p.numel() for p in params) / 1e6, 1),
        "checkpoint_GB": round(size / 1e9, 2),
        "train_step_s": round(step_s, 2),
        "save_s": [round(s, 2) for s in saves],
        "load_s": [round(s, 2) for s in loads],
        "save_over_step": round(min(saves) / step_s, 2),
        "load_over_step": round(min(loads) / step_s, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
