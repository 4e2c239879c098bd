"""The names of the files inside one run's output folder (the recipe side owns them).

The recipe writes them; the grid and the analysis (geometry) find them through these names and
never spell a file name of a run folder themselves.
"""

from __future__ import annotations

from pathlib import Path

#: A standalone run's record (a grid's records live in the grid folder instead).
RECORD_FILE = "record.json"
#: SpeechBrain's copy of the resolved hparams, written when a run starts.
HPARAMS_FILE = "hyperparams.yaml"
#: The run's own log, beside the grid's per-run log.
LOG_FILE = "log.txt"
#: Checkpoints kept after evaluation (``keep_checkpoints``).
CHECKPOINT_DIR = "save"
#: Files whose presence means a run already used a folder.
RUN_MARKERS = (HPARAMS_FILE, RECORD_FILE)


def embeddings_file(run_dir: str | Path, locale: str) -> Path:
    """Test-utterance embeddings of ``locale`` (``ids`` and float16 ``emb``)."""
    return Path(run_dir) / f"embeddings_{locale}.npz"


def scores_file(run_dir: str | Path, locale: str) -> Path:
    """Verification trial scores of ``locale``."""
    return Path(run_dir) / f"scores_{locale}.csv"
