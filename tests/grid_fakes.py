"""A fast fake runner with the signature of ``cltm_sb.recipe.run.run_recipe``: no training.

Used as ``runner="grid_fakes:run_fake"``. Metric values are a deterministic function of
(train set, evaluated locale, seed), so an interrupted and an uninterrupted grid give the same
matrix. Overrides that steer it: ``fake_sleep`` (seconds per run), ``fake_fail`` (list of
``locale:subset+...`` train keys that raise), ``fake_ckpt`` (write a checkpoint folder
``save/CKPT+fake`` before sleeping; an attempt that finds one resumes: no sleep, and
``extra["resumed"]`` is true). Like the real runner, it returns its record and,
in a grid (``in_grid=True``), writes none: the executor does. It writes its pid to
``<output_folder>/pid`` and logs one line ``fake run <run_id> trains on <train key>``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from cltm_sb.io import atomic_write_text, stable_hash
from cltm_sb.results import PER_RUN_KEYS, Evaluation, RunRecord, train_set_key, write_record
from cltm_sb.tasks import get_task

BASE = {"single": 0.60, "self": 0.70}
logger = logging.getLogger(__name__)


def config_hash_for(task: str, overrides: dict | None, hparams_file: str | None) -> str:
    return stable_hash({"task": task, "overrides": overrides or {}, "hparams": hparams_file})


def fake_value(train_key: str, locale: str, seed: int) -> float:
    """0.6 + a per-locale offset; self +0.1; donors add a hash-based gain in [-0.05, 0.05]."""
    parts = train_key.split("+")
    offset = int(stable_hash(locale, 4), 16) % 100 / 1000
    noise = (int(stable_hash([locale, seed], 4), 16) % 100 - 50) / 5000
    value = 0.6 + offset + noise
    if f"{locale}:b" in parts:
        value += 0.1
    for part in parts:
        donor = part.split(":")[0]
        if donor != locale:
            value += (int(stable_hash([locale, donor], 4), 16) % 100 - 50) / 1000
    return round(value, 6)


def run_fake(
    task: str,
    overrides: dict | None = None,
    hparams_file: str | None = None,
    *,
    run_id: str | None = None,
    kind: str = "single",
    record_path: str | None = None,
    run_opts: dict | None = None,
    in_grid: bool = False,
) -> RunRecord:
    overrides = dict(overrides or {})
    out = Path(overrides["output_folder"])
    # Atomic, so that a test that sees the file also sees the whole pid.
    atomic_write_text(out / "pid", str(os.getpid()), durable=False)
    train = []
    for csv in overrides["train_csv"]:
        path = Path(csv)
        train.append({"locale": path.parent.name, "subset": path.stem})
    key = train_set_key(train)
    logger.info("fake run %s trains on %s", run_id or out.name, key)
    resumed = bool(overrides.get("fake_ckpt")) and (out / "save" / "CKPT+fake").is_dir()
    if overrides.get("fake_ckpt") and not resumed:
        (out / "save" / "CKPT+fake").mkdir(parents=True)
    if not resumed:
        time.sleep(float(overrides.get("fake_sleep", 0)))
    if key in overrides.get("fake_fail", []):
        raise RuntimeError(f"fake failure of {key}")
    (out / "partial.txt").write_text("work in progress")
    seed = int(overrides["seed"])
    metric = get_task(task).metric
    evals = [
        Evaluation(Path(csv).parent.name, metric, fake_value(key, Path(csv).parent.name, seed), 10)
        for csv in overrides["test_csv"]
    ]
    record = RunRecord(
        run_id=run_id or out.name,
        task=task,
        kind=kind,
        train_set=train,
        seed=seed,
        evaluations=evals,
        config_hash=config_hash_for(
            task, {k: v for k, v in overrides.items() if k not in PER_RUN_KEYS}, hparams_file
        ),
        data_hash="",
        device=str((run_opts or {}).get("device", "cpu")),
        wall_time_s=float(overrides.get("fake_sleep", 0)) + 0.01,
        extra={"resumed": resumed},
    )
    if not in_grid:
        write_record(record, record_path or out / "record.json")
    return record


def run_fake_hashing(task: str, overrides: dict | None = None, hparams_file: str | None = None,
                     **kwargs) -> RunRecord:
    """:func:`run_fake` that records the data hash of the manifests it reads, as the real runner."""
    from cltm_sb.recipe.data import data_hash_of

    record = run_fake(task, overrides, hparams_file, **kwargs)
    record.data_hash = data_hash_of([*overrides["train_csv"], *overrides["test_csv"]])
    return record


def run_fake_old_contract(task: str, overrides: dict | None = None, hparams_file: str | None = None,
                          **kwargs) -> None:
    """A runner of the old contract: writes the grid's record itself and returns nothing."""
    record = run_fake(task, overrides, hparams_file, **{**kwargs, "in_grid": True})
    write_record(record, Path(overrides["output_folder"]).parent.parent / "records" / f"{record.run_id}.json")


def make_prepared(folder: Path, locales: list[str], data_hash: str = "data-toy") -> Path:
    """A prepared-data folder that passes the plan's data checks, without training content:
    per locale two clips in a and in b, four test clips of two speakers, their trials, and
    0.05 s of silence per clip (16 kHz mono) under ``<folder>/audio``."""
    import json

    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for loc in locales:
        (folder / loc).mkdir(exist_ok=True)
        (folder / "audio" / loc).mkdir(parents=True, exist_ok=True)
        clips = {"a": ["f", "m"], "b": ["f", "m"], "test": ["f", "f", "m", "m"]}
        for subset, genders in clips.items():
            rows = ["ID,duration,wav,spk_id,gender,locale,subset"]
            for i, g in enumerate(genders):
                uid = f"{loc}_{subset}{i}"
                sf.write(folder / "audio" / loc / f"{uid}.wav", np.zeros(800, np.float32), 16000)
                gender = "female" if g == "f" else "male"
                rows.append(f"{uid},0.050,$data_root/{loc}/{uid}.wav,{loc}_{subset}_{g},{gender},{loc},{subset}")
            (folder / loc / f"{subset}.csv").write_text("\n".join(rows) + "\n")
        trials = [f"{loc}_test0,{loc}_test1,1", f"{loc}_test0,{loc}_test2,0"]
        (folder / loc / "trials.csv").write_text("enrol_ID,test_ID,label\n" + "\n".join(trials) + "\n")
    (folder / "prepare.json").write_text(
        json.dumps({"data_hash": data_hash, "data_root": str(folder / "audio")})
    )
    return folder
