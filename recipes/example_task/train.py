#!/usr/bin/env python3
"""A complete recipe of one's own that meets cltm's run contract (README: "Tasks of your own").

Usage::

    python recipes/example_task/train.py recipes/example_task/hparams.yaml \
        --train_csv=[prep/en/a.csv,prep/es/a.csv] --test_csv=[prep/en/test.csv,prep/es/test.csv] \
        --seed=42 --output_folder=results/example/42 --data_root=prep/audio

It trains a linear classifier (scikit-learn's SGD, seeded) on log band energies of the union of
``train_csv``, evaluates it on each ``test_csv`` (one locale each) and writes
``<output_folder>/metrics.json``::

    {"evaluations": [{"locale": "en", "metric": "macro_f1", "value": 0.9, "n_items": 40}, ...]}

Replace ``features`` and ``train`` with your own model: the grid only needs the overrides above
to be accepted and metrics.json to be written.
"""

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from hyperpyyaml import load_hyperpyyaml


def parse_arguments(argv):
    """``hparams.yaml --key=value ...`` -> (hparams file, overrides as YAML text), as SpeechBrain does."""
    if not argv or argv[0].startswith("--"):
        raise SystemExit("usage: train.py hparams.yaml [--key=value ...]")
    lines = []
    for arg in argv[1:]:
        key, sep, value = arg[2:].partition("=")
        if not arg.startswith("--") or not sep:
            raise SystemExit(f"expected --key=value, got {arg!r}")
        lines.append(f"{key}: {value}")
    return argv[0], "\n".join(lines)


def read_manifest(path, data_root):
    """Rows of a manifest with ``$data_root`` replaced in the wav column."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["wav"] = row["wav"].replace("$data_root", str(data_root))
    return rows


def features(wav_path, n_bands):
    """Mean and spread over 25 ms frames of the log energy in log-spaced bands."""
    signal, rate = sf.read(wav_path, dtype="float32")
    if signal.ndim == 2:
        signal = signal.mean(axis=1)
    signal = (signal - signal.mean()) / (signal.std() + 1e-8)
    frame, hop = int(0.025 * rate), int(0.010 * rate)
    signal = np.pad(signal, (0, max(0, frame - len(signal))))
    frames = np.stack([signal[i * hop:i * hop + frame] for i in range(1 + (len(signal) - frame) // hop)])
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1.0 / rate)
    edges = np.geomspace(80.0, min(7600.0, rate / 2 - 1), n_bands + 1)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    logs = np.log(bands + 1e-6)
    return np.concatenate([logs.mean(axis=0), logs.std(axis=0)])


def macro_f1(truth, predicted, n_classes):
    """Macro-F1 over the fixed class list (an absent class counts, with F1 0)."""
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, labels=list(range(n_classes)), average="macro", zero_division=0))


def main(argv):
    hparams_file, overrides = parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as handle:
        hp = load_hyperpyyaml(handle, overrides)
    data_root = hp["data_root"]
    if data_root is None:  # a prepared folder says where its audio is
        prepared = Path(hp["train_csv"][0]).resolve().parent.parent / "prepare.json"
        data_root = json.loads(prepared.read_text(encoding="utf-8"))["data_root"]
    classes = list(hp["label_classes"])
    index = {name: i for i, name in enumerate(classes)}

    def load(paths):
        rows = [row for path in paths for row in read_manifest(path, data_root)]
        unknown = sorted({row[hp["label_key"]] for row in rows} - set(index))
        if unknown:
            raise SystemExit(f"{hp['label_key']} values {unknown} are not among label_classes {classes}")
        x = np.stack([features(row["wav"], hp["n_bands"]) for row in rows])
        return x, np.array([index[row[hp["label_key"]]] for row in rows]), rows

    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import StandardScaler

    x, y, _ = load(hp["train_csv"])
    scaler = StandardScaler().fit(x)
    model = SGDClassifier(loss="log_loss", alpha=hp["alpha"], max_iter=hp["epochs"], tol=None,
                          random_state=hp["seed"])
    model.fit(scaler.transform(x), y)
    evaluations = []
    for path in hp["test_csv"]:
        x_test, y_test, rows = load([path])
        predicted = model.predict(scaler.transform(x_test))
        evaluations.append({
            "locale": rows[0]["locale"], "metric": hp["metric"],
            "value": macro_f1(y_test, predicted, len(classes)), "n_items": len(rows),
        })
    out = Path(hp["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps({"evaluations": evaluations}, indent=2), encoding="utf-8")
    os.replace(tmp, out / "metrics.json")  # written whole or not at all
    print(json.dumps(evaluations))


if __name__ == "__main__":
    main(sys.argv[1:])
