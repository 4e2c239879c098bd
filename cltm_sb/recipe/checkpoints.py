"""Checkpoints of a run and what a rerun in the same output folder does.

Training saves SpeechBrain checkpoints (the YAML's ``checkpointer``) in ``<output_folder>/save/``
at each epoch end and every ``ckpt_interval_minutes``; a rerun of the same command recovers the
last one (SpeechBrain's ``recover_if_possible``). The random state is part of the checkpoint
(:class:`RandomState`), so a resumed run draws the same numbers as an uninterrupted one and, on
CPU, ends with the same metrics to the last digit. Under DDP only the main process saves, so every
process resumes with its random state: such a resume may differ slightly from an uninterrupted run.

:func:`folder_state` tells what an output folder holds, and so what a rerun does:
``new`` (start), ``started`` (a start that trained nothing: start again), ``resumable``
(continue from the checkpoint), ``finished`` (print the record; ``--overwrite`` to redo).
"""

from __future__ import annotations

import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from speechbrain.utils import checkpoints
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import ddp_barrier, if_main_process

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.run_files import (
    CHECKPOINT_DIR,
    HEAD_FILE,
    PARTIAL_CHECKPOINT,
    RECORD_FILE,
    RUN_MARKERS,
    has_checkpoint,
)

logger = logging.getLogger(__name__)

FolderState = Literal["new", "started", "resumable", "finished"]


@register_checkpoint_hooks
class RandomState:
    """The python, numpy and torch (CPU) random states, as a checkpoint recoverable.

    Dropout, layer drop and any other random draw during training continue from where the
    interrupted run was; without it a resumed run would differ from an uninterrupted one.

    An epoch-end state is restored at once. A state saved within an epoch is restored by
    :meth:`apply_pending` at the first batch the resumed run trains (the Brain calls it): making
    the epoch's data loader draws a seed from torch's generator, which the interrupted run did
    before it saved, so restoring earlier would shift every later draw by one.
    """

    def __init__(self) -> None:
        self.pending: dict | None = None

    @mark_as_saver
    def save(self, path: str | Path) -> None:
        """Write the three states to ``path``."""
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        torch.save(state, path)

    @mark_as_loader
    def load(self, path: str | Path, end_of_epoch: bool) -> None:
        """Restore the three states from ``path`` (within an epoch: at the next batch)."""
        state = torch.load(path, weights_only=False)
        if end_of_epoch:
            self._restore(state)
        else:
            self.pending = state

    def apply_pending(self) -> None:
        """Restore a state loaded from a within-epoch checkpoint, once."""
        if self.pending is not None:
            self._restore(self.pending)
            self.pending = None

    @staticmethod
    def _restore(state: dict) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])


class Checkpointer(checkpoints.Checkpointer):
    """SpeechBrain's ``Checkpointer`` whose saves are atomic.

    A checkpoint is written into :data:`~cltm_sb.recipe.run_files.PARTIAL_CHECKPOINT` and renamed
    ``CKPT+<time>`` once complete; SpeechBrain's own writes straight into the final folder, so a
    run killed during a save would leave a checkpoint that fails to load on resume. A partial
    folder is never listed (nor recovered) and the next save replaces it.
    """

    def save_checkpoint(self, meta: dict | None = None, end_of_epoch: bool = True, name: str | None = None,
                        verbosity: int = logging.INFO):
        """SpeechBrain's save, into the partial folder, then renamed (main process)."""
        meta = {} if meta is None else meta
        if name is not None:  # a name the caller chose: SpeechBrain's own save
            return super().save_checkpoint(meta, end_of_epoch, name, verbosity)
        partial = self.checkpoints_dir / PARTIAL_CHECKPOINT
        if if_main_process() and partial.exists():
            shutil.rmtree(partial)  # what a killed save left
        saved = super().save_checkpoint(
            meta, end_of_epoch, PARTIAL_CHECKPOINT.removeprefix("CKPT+"), logging.DEBUG
        )
        final = None
        if saved is not None:  # the main process
            final = self._new_checkpoint_dirpath()
            partial.rename(final)
        # Every process waits for the rename: ``save_and_keep_only`` then lists the checkpoints on
        # each process, and the main one's deletion is a collective (SpeechBrain's
        # main_process_only broadcasts). A process that listed before the rename saw nothing to
        # delete, went on to the barrier, and DDP hung.
        ddp_barrier()
        if saved is None:  # not the main process
            return None
        logger.log(verbosity, "Saved a checkpoint in %s", final)
        return checkpoints.Checkpoint(final, saved.meta, {k: final / Path(v).name for k, v in saved.paramfiles.items()})

    def _list_checkpoint_dirs(self) -> list[Path]:
        return [d for d in super()._list_checkpoint_dirs() if d.name != PARTIAL_CHECKPOINT]

    def load_checkpoint(self, checkpoint: checkpoints.Checkpoint) -> None:
        """SpeechBrain's load; a checkpoint that fails to load (damaged, truncated) raises a
        :class:`RecipeError` naming its folder and what to do, instead of torch's error naming no
        file. Nothing is deleted: the user decides."""
        try:
            super().load_checkpoint(checkpoint)
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError) as error:
            raise RecipeError(damaged_checkpoint_message(Path(checkpoint.path), error)) from error


def damaged_checkpoint_message(path: Path, error: BaseException) -> str:
    """One line: the checkpoint folder that failed to load, why, and how to go on."""
    cause = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    cause = cause.split(". ")[0].rstrip(".")  # torch's advice after its first sentence is this one's
    return (
        f"checkpoint {path} cannot be loaded ({type(error).__name__}: {cause}); delete that folder to "
        f"resume from the checkpoint before it, or start the run again (delete {path.parent}, or "
        "rerun the recipe with --overwrite)"
    )


def folder_state(output_folder: str | Path) -> FolderState:
    """What a run's output folder holds (see the module docstring)."""
    folder = Path(output_folder)
    if (folder / RECORD_FILE).is_file():
        return "finished"
    if has_checkpoint(folder):
        return "resumable"
    if any((folder / m).exists() for m in RUN_MARKERS):
        return "started"
    return "new"


def prune_checkpoints(hp: dict, output_folder: str | Path, keep: str) -> None:
    """After evaluation: keep every checkpoint (``all``), the head's weights only (``head``:
    ``save/head.ckpt``) or nothing (``none``), as ``keep_checkpoints`` says.

    A full checkpoint of a HuBERT-base encoder with its AdamW state is about 1.1 GB, so a grid
    keeps none by default.
    """
    folder = Path(output_folder) / CHECKPOINT_DIR
    if keep == "all":
        return
    if folder.is_dir():
        shutil.rmtree(folder)
    if keep == "head":
        from cltm_sb.io import atomic_write

        folder.mkdir(parents=True)
        atomic_write(folder / HEAD_FILE, lambda p: torch.save(hp["modules"]["head"].state_dict(), p))


def clear_run_files(output_folder: str | Path) -> None:
    """Remove what a run wrote in its output folder (``--overwrite``); other files stay."""
    from cltm_sb.recipe import run_files

    folder = Path(output_folder)
    for name in run_files.OWNED_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for pattern in run_files.OWNED_PATTERNS:
        for path in folder.glob(pattern):
            path.unlink()
