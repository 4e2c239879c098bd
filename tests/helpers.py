"""Factories for tests: synthetic run records with known metric values; golden-file checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cltm_sb.results import Evaluation, RunRecord, write_record

# Small but enough for a tiny-encoder training: GR N=16 (8 speakers per gender per subset),
# SV N=32 with K=4 (8 speakers per subset), GR test 40 clips and SV test 10 speakers per locale.
TOY_LANGUAGES = 3  # qaa, qab (one family) and qba (another)
TOY_GR_N = 16
TOY_SV_N = 32
TOY_SV_K = 4


def make_record(
    train: list[tuple[str, str]],
    evals: dict[str, float],
    seed: int,
    task: str = "gr",
    config_hash: str = "cfg1",
    data_hash: str = "data1",
    status: str = "ok",
    run_id: str | None = None,
) -> RunRecord:
    """A record trained on ``train`` [(locale, subset)] and evaluated on ``evals`` {locale: value}."""
    locales = sorted({loc for loc, _ in train})
    kind = "single" if len(train) == 1 else ("self" if len(locales) == 1 else "pair")
    metric = "macro_f1" if task == "gr" else "auc"
    return RunRecord(
        run_id=run_id or f"{'+'.join(f'{a}{b}' for a, b in train)}-{'+'.join(evals)}-s{seed}",
        task=task,
        kind=kind,
        train_set=[{"locale": loc, "subset": sub} for loc, sub in train],
        seed=seed,
        status=status,
        evaluations=[Evaluation(loc, metric, value, n_items=10) for loc, value in evals.items()],
        config_hash=config_hash,
        data_hash=data_hash,
        error="boom" if status == "failed" else None,
    )


def write_records(folder: Path, records: list[RunRecord]) -> Path:
    """Write each record as ``<folder>/<run_id>.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        write_record(record, folder / f"{record.run_id}.json")
    return folder


def known_grid() -> list[RunRecord]:
    """Three languages, two seeds, with hand-computable CLTM entries.

    en: P_single .61 (.60/.62), P_self .71 (.70/.72), pair en+es on en .66 -> M = 0.5;
        the pair en+fr is missing -> NaN.
    es: P_single .50, P_self .49 -> self-gain -0.01 <= 0 -> row NaN.
    fr: P_single .80, P_self .90, en+fr on fr .85 -> 0.5, es+fr on fr .75 -> -0.5.
    """
    r = []
    for seed, (en_single, en_self) in zip((1, 2), ((0.60, 0.70), (0.62, 0.72))):
        r.append(make_record([("en", "a")], {"en": en_single}, seed))
        r.append(make_record([("en", "a"), ("en", "b")], {"en": en_self}, seed))
        r.append(make_record([("es", "a")], {"es": 0.50}, seed))
        r.append(make_record([("es", "a"), ("es", "b")], {"es": 0.48 if seed == 1 else 0.50}, seed))
        r.append(make_record([("fr", "a")], {"fr": 0.80}, seed))
        r.append(make_record([("fr", "a"), ("fr", "b")], {"fr": 0.90}, seed))
        r.append(make_record([("en", "a"), ("es", "a")], {"en": 0.66, "es": 0.45}, seed))
        r.append(make_record([("en", "a"), ("fr", "a")], {"fr": 0.85}, seed))
        r.append(make_record([("es", "a"), ("fr", "a")], {"es": 0.52, "fr": 0.75}, seed))
    return r


#: Set to 1 to (re)write golden files from the current output; review the diff, then commit it.
RECORD_GOLDEN = "CLTM_RECORD_GOLDEN"


def assert_golden(path: Path, got: str) -> None:
    """``got`` equals the committed golden file ``path``; a missing golden file fails."""
    if os.environ.get(RECORD_GOLDEN) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing: record it with {RECORD_GOLDEN}=1 pytest, review, commit")
    assert got == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; if this is intended, rerun with {RECORD_GOLDEN}=1, review the diff and commit"
    )


class CountingTrainLogger:
    """A train logger of one's own (as TensorBoard's or W&B's would be), declared in a YAML:
    counts the stats the Brain logs, per stage, in the class (the YAML makes the instance)."""

    logged: list[dict] = []

    def __init__(self, save_file: str) -> None:
        self.save_file = save_file

    def log_stats(self, stats_meta: dict, train_stats: dict | None = None, valid_stats: dict | None = None,
                  test_stats: dict | None = None, verbose: bool = False) -> None:
        CountingTrainLogger.logged.append({"meta": dict(stats_meta), "train": train_stats, "test": test_stats})


def points_on_a_line(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Languages on a line: their distances and M = target effect + a nonlinear function of the
    distance (no noise), a matrix that closeness, not effects, describes."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 4.0, n)
    dist = np.abs(x[:, None] - x[None, :])
    m = 0.3 * rng.normal(size=n)[:, None] + 1.5 * np.exp(-dist**2) - 0.5 * np.tanh(dist)
    np.fill_diagonal(m, 1.0)
    return dist, m


def measured_pairs(n: int, share: float = 0.4, seed: int = 1) -> np.ndarray:
    """[t, s] a random share of the pairs measured, both cells of each (as pair runs measure them),
    and the diagonal."""
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    measured = np.eye(n, dtype=bool)
    for k in rng.permutation(len(pairs))[: int(len(pairs) * share)]:
        i, j = pairs[k]
        measured[i, j] = measured[j, i] = True
    return measured
