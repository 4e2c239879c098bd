"""The names of the files inside one run's output folder (the recipe side owns them).

The recipe writes them; the grid and the analysis (geometry) find them through these names and
never spell a file name of a run folder themselves.
"""

from __future__ import annotations

from pathlib import Path

from cltm_sb.io import tail_text

#: A standalone run's record (a grid's records live in the grid folder instead).
RECORD_FILE = "record.json"
#: SpeechBrain's copy of the resolved hparams, written when a run starts.
HPARAMS_FILE = "hyperparams.yaml"
#: The run's own log, beside the grid's per-run log.
LOG_FILE = "log.txt"
#: SpeechBrain's checkpoints (``CKPT+...`` folders) while training; what ``keep_checkpoints``
#: keeps after evaluation.
CHECKPOINT_DIR = "save"
#: The head's weights, kept in ``save/`` by ``keep_checkpoints: head``.
HEAD_FILE = "head.ckpt"
#: SpeechBrain's ``FileTrainLogger`` file (the YAML's ``train_log``): one line per epoch.
TRAIN_LOG_FILE = "train_log.txt"
#: SpeechBrain's description of the environment (``pip freeze``), standalone runs only.
ENV_FILE = "env.log"
#: Files whose presence means a run already used a folder.
RUN_MARKERS = (HPARAMS_FILE, RECORD_FILE)
#: What a run writes in its output folder (``--overwrite`` removes these, and nothing else).
OWNED_FILES = (RECORD_FILE, HPARAMS_FILE, LOG_FILE, CHECKPOINT_DIR, TRAIN_LOG_FILE, ENV_FILE)
OWNED_PATTERNS = ("embeddings_*.npz", "scores_*.csv")
#: The line a run logs now and then while it trains without a progress bar; ``cltm status``
#: shows the last one of a running run (:func:`last_heartbeat`).
HEARTBEAT = "heartbeat:"


def embeddings_file(run_dir: str | Path, locale: str) -> Path:
    """Test-utterance embeddings of ``locale`` (``ids`` and float16 ``emb``)."""
    return Path(run_dir) / f"embeddings_{locale}.npz"


def scores_file(run_dir: str | Path, locale: str) -> Path:
    """Verification trial scores of ``locale``."""
    return Path(run_dir) / f"scores_{locale}.csv"


def last_heartbeat(log: str | Path, tail_bytes: int = 65536) -> str | None:
    """The last heartbeat line of a run's log (``step, loss, elapsed, ETA``), or None."""
    text = tail_text(log, tail_bytes)
    if text is None:
        return None
    lines = [line for line in text.splitlines() if HEARTBEAT in line]
    return lines[-1].split(HEARTBEAT, 1)[1].strip() if lines else None


#: The folder a checkpoint is written into before it is renamed ``CKPT+<time>`` (complete).
PARTIAL_CHECKPOINT = "CKPT+partial-save"


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``<run_dir>/save/`` holds a complete SpeechBrain checkpoint (a ``CKPT+...`` folder)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    return folder.is_dir() and any(
        p.is_dir() and p.name.startswith("CKPT+") and p.name != PARTIAL_CHECKPOINT for p in folder.iterdir()
    )
