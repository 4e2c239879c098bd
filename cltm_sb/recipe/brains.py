"""SpeechBrain Brains for the two tasks: gender recognition and speaker identification.

Both fine-tune ``modules.encoder`` (any encoder of :mod:`cltm_sb.recipe.encoders`) and ``modules.head``
(a :class:`cltm_sb.recipe.heads.LinearHead`) on the time-mean of the mean of the encoder's last
``pool_layers`` layers (1: the last layer, the paper's protocol), pooled over valid frames only.
Batches come from a ``DynamicItemDataset`` with the outputs ``id``, ``sig`` (a normalised
waveform) and ``label`` (an index in the run's fixed label map).

Hyperparameters read from ``hparams``: ``pooling`` (time pooling), ``pool_layers``,
``label_classes`` (names of the label indices), ``train_logger`` (SpeechBrain train logger, one
line per epoch) and, for speaker embeddings, ``embed_layers``. Each is read where it is used (a
Brain built only to embed needs no ``train_logger``); a missing one is a
:class:`~cltm_sb.recipe.RecipeError` naming the key and the YAML line that gives it.

With a ``checkpointer`` a checkpoint is saved at each epoch end (and SpeechBrain saves one every
``ckpt_interval_minutes``); ``fit`` then resumes from the last one (:mod:`cltm_sb.recipe.checkpoints`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.encoders import LayerAverage
from cltm_sb.recipe.run_files import HEARTBEAT

logger = logging.getLogger(__name__)


#: The hparams keys the Brains read, each with the YAML that gives it (as the README's "Blocks in
#: your own recipe" example and the package's hparams files do).
HPARAM_YAML = {
    "pooling": "pooling: !new:cltm_sb.recipe.encoders.MaskedMeanPooling",
    "pool_layers": "pool_layers: 1",
    "label_classes": "label_classes: [female, male] (the names of the label indices)",
    "train_logger": "train_logger: !new:speechbrain.utils.train_logger.FileTrainLogger with "
    "save_file: <output folder>/train_log.txt",
    "embed_layers": "embed_layers: 4",
}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Heartbeat:
    """A one-line progress report every ``every_s`` seconds, for runs without a progress bar.

    The line (``heartbeat: epoch 2/6 step 10/40 loss 0.6931 elapsed 0:00:12 ETA 0:00:30``) goes
    to the run's log, where ``cltm status`` finds the last one of a running run. The ETA comes
    from the steps this process has trained (a resumed run counts from its restart).
    """

    def __init__(self, every_s: float, n_epochs: int | None, steps_per_epoch: int | None) -> None:
        self.every_s = every_s
        self.n_epochs = n_epochs
        self.steps_per_epoch = steps_per_epoch
        self.start = self.last = time.monotonic()
        self.first_step: int | None = None

    def beat(self, epoch: int, step: int, loss: float) -> None:
        """Log a line if ``every_s`` seconds have passed since the last one."""
        now = time.monotonic()
        total = (self.steps_per_epoch or 0) * (self.n_epochs or 0)
        done = (epoch - 1) * (self.steps_per_epoch or 0) + step
        if self.first_step is None:
            self.first_step = done - 1
        if now - self.last < self.every_s:
            return
        self.last = now
        rate = (done - self.first_step) / max(now - self.start, 1e-9)
        eta = _clock((total - done) / rate) if total and rate > 0 else "?"
        steps = f"{step}/{self.steps_per_epoch}" if self.steps_per_epoch else str(step)
        logger.info(
            "%s epoch %d/%s step %s loss %.4f elapsed %s ETA %s",
            HEARTBEAT, epoch, self.n_epochs or "?", steps, loss, _clock(now - self.start), eta,
        )


def classification_metrics(
    targets: Sequence[int], predictions: Sequence[int], classes: Sequence[str]
) -> dict:
    """Macro-F1 (sklearn), accuracy and per-class recall over a fixed label map.

    The label list is fixed (every class counts in the macro average, even one absent from the
    test set: its F1 is 0), so scores are comparable across languages.

    Example:
        >>> m = classification_metrics([0, 1, 1], [0, 1, 0], ["female", "male"])
        >>> round(m["macro_f1"], 3), round(m["accuracy"], 3), m["recall"]["male"]
        (0.667, 0.667, 0.5)
    """
    from sklearn.metrics import f1_score, recall_score

    labels = list(range(len(classes)))
    recall = recall_score(targets, predictions, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": float(
            f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)
        ),
        "accuracy": float(np.mean(np.asarray(targets) == np.asarray(predictions))),
        "recall": {name: float(r) for name, r in zip(classes, recall)},
    }


class UtteranceClassifierBrain(sb.Brain):
    """Shared logic: encoder → layer average → masked time mean → linear head → cross-entropy.

    Arguments (besides ``sb.Brain``'s):
        run_name: named in errors (e.g. the non-finite loss error).
        heartbeat_s: without a progress bar (``noprogressbar``), log a heartbeat line this often
            (:class:`Heartbeat`); None: never.
        save_last_epoch: save a checkpoint at the end of the last epoch too. A recipe that deletes
            its checkpoints after evaluation passes False: that save (about 3 s for a HuBERT-base
            encoder with its optimiser state, bench/RESULTS.md) would only protect the evaluation.
    """

    def __init__(self, *args, run_name: str = "", heartbeat_s: float | None = None,
                 save_last_epoch: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run_name = run_name
        self.heartbeat_s = heartbeat_s
        self.save_last_epoch = save_last_epoch
        self._n_epochs: int | None = None
        self._epoch = 0
        self._targets: list[int] = []
        self._predictions: list[int] = []
        self._steps_per_epoch: int | None = None
        self._heartbeat: Heartbeat | None = None
        self._batch_sampler = None

    def _hparam(self, key: str) -> Any:
        """``hparams[key]``; a missing key raises :class:`RecipeError` saying what to add."""
        hparams = getattr(self, "hparams", None)  # sb.Brain sets it only when hparams are given
        if not hasattr(hparams, key):
            raise RecipeError(
                f"{type(self).__name__}: the hparams have no '{key}'; add `{HPARAM_YAML[key]}` to "
                "the YAML (README: Blocks in your own recipe)"
            )
        return getattr(hparams, key)

    def encode(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The encoder's layers and relative frame lengths."""
        return self.modules.encoder(wavs, wav_lens)

    def _pool(self, x: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        return self._hparam("pooling")(x, frame_lens)

    def compute_forward(self, batch, stage: sb.Stage) -> torch.Tensor:
        """Logits ``(batch, classes)`` from the pooled mean of the last ``pool_layers`` layers."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        layers, frame_lens = self.encode(wavs, wav_lens)
        stacked = LayerAverage(int(self._hparam("pool_layers")), key="pool_layers")(layers)
        return self.modules.head(self._pool(stacked, frame_lens))

    def make_dataloader(self, dataset, stage: sb.Stage, ckpt_prefix: str | None = "dataloader-", **loader_kwargs):
        """SpeechBrain's loader; the training one's length sets the heartbeat's step count."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self._batch_sampler = loader_kwargs.get("batch_sampler")
            if isinstance(self.train_sampler, torch.utils.data.DistributedSampler):
                # SpeechBrain's DDP sampler shuffles with torch's default seed 0: every seed of a
                # DDP run saw one data order. The run's seed, as its single-process sampler has.
                self.train_sampler.seed = int(os.environ.get("SB_GLOBAL_SEED", self.train_sampler.seed))
            try:
                self._steps_per_epoch = len(loader)
            except TypeError:  # a loader without a length: the heartbeat shows no total
                self._steps_per_epoch = None
        return loader

    def fit(self, epoch_counter, *args, **kwargs) -> None:
        """SpeechBrain's ``fit``; the epoch counter's limit is the heartbeat's epoch count."""
        self._n_epochs = getattr(epoch_counter, "limit", None)
        super().fit(epoch_counter, *args, **kwargs)

    def on_fit_start(self) -> None:
        """SpeechBrain's start (optimiser, recovery of the last checkpoint), then the heartbeat."""
        super().on_fit_start()
        if self.heartbeat_s is not None and self.noprogressbar and sb.utils.distributed.if_main_process():
            self._heartbeat = Heartbeat(self.heartbeat_s, self._n_epochs, self._steps_per_epoch)

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        """A random state recovered from a within-epoch checkpoint takes effect now
        (:class:`cltm_sb.recipe.checkpoints.RandomState`)."""
        if self.checkpointer is not None:
            for recoverable in self.checkpointer.recoverables.values():
                if hasattr(recoverable, "apply_pending"):
                    recoverable.apply_pending()

    def fit_batch(self, batch) -> torch.Tensor:
        """One training step (SpeechBrain's), then the heartbeat when one is due."""
        loss = super().fit_batch(batch)
        if self._heartbeat is not None:
            self._heartbeat.beat(self._epoch, self.step, float(loss))
        return loss

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Only a check of ``label_classes`` (read at the end, after a whole pass): the model in
        memory is the trained one (SpeechBrain would load the last checkpoint again, about 1.1 GB
        for a HuBERT-base encoder with its optimiser state)."""
        self._hparam("label_classes")

    def compute_objectives(self, predictions: torch.Tensor, batch, stage: sb.Stage) -> torch.Tensor:
        """Cross-entropy; a non-finite training loss stops the run and names it."""
        labels = batch.label.to(self.device)
        loss = F.cross_entropy(predictions.float(), labels)
        if stage == sb.Stage.TRAIN and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"run {self.run_name or '?'}: non-finite training loss ({loss.item()}) at epoch "
                f"{self._epoch}, step {self.step}; batch IDs {list(batch.id)}. Lower lr, check "
                "the audio of these clips, or use precision=fp32."
            )
        if stage != sb.Stage.TRAIN:
            self._targets.extend(labels.tolist())
            self._predictions.extend(predictions.argmax(dim=-1).tolist())
        return loss

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        """Reset the collected predictions; a training epoch's batch sampler gets its epoch."""
        self._epoch = epoch or 0
        if stage == sb.Stage.TRAIN and epoch and self.train_sampler is None and hasattr(self._batch_sampler, "set_epoch"):
            # SpeechBrain sets the epoch of its own samplers only: a DynamicBatchSampler (dynamic
            # batching) gave every epoch after the first one order, and a resumed run the first
            # epoch's. Epoch 1 keeps the order it always had (the sampler starts at epoch 0).
            self._batch_sampler.set_epoch(epoch - 1)
        self._targets, self._predictions = [], []

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        """Training: save the epoch's checkpoint, then log the loss (``train_logger``).
        Evaluation: compute the metrics into ``self.stage_metrics``."""
        if stage == sb.Stage.TRAIN:
            last = self._n_epochs is not None and epoch == self._n_epochs
            if self.checkpointer is not None and (self.save_last_epoch or not last):
                # SpeechBrain zeroes these right after this hook; saved as zero, a resumed run
                # starts its next epoch as an uninterrupted one does.
                self.step, self.avg_train_loss = 0, 0.0
                # Saved before the log line: a run killed in between logs no epoch twice.
                self.checkpointer.save_and_keep_only(meta={"train_loss": stage_loss}, num_to_keep=1)
            # Every process calls it: SpeechBrain's loggers write on the main one only and
            # share the result with the others.
            self._hparam("train_logger").log_stats(stats_meta={"epoch": epoch}, train_stats={"loss": stage_loss})
            logger.info("run %s epoch %s: train loss %.4f", self.run_name, epoch, stage_loss)
            return
        classes = list(self._hparam("label_classes"))
        self.stage_metrics = classification_metrics(self._targets, self._predictions, classes)
        self.stage_metrics["loss"] = float(stage_loss)
        self.stage_metrics["n_items"] = len(self._targets)
        logger.info("run %s %s: %s", self.run_name, stage.name.lower(), self.stage_metrics)


class GenderBrain(UtteranceClassifierBrain):
    """Gender recognition: a linear head over fixed, sorted gender labels; macro-F1 on test."""


class ClassifierBrain(UtteranceClassifierBrain):
    """Any utterance-label task (age bands, accent, emotion ...): a linear head over the task's
    fixed, sorted classes (``label_key``, ``label_classes``); macro-F1 on test."""


class SpeakerIDBrain(UtteranceClassifierBrain):
    """Speaker identification fine-tune whose encoder then embeds verification utterances.

    The head (one class per training speaker) is used only for training; :meth:`embed` drops it
    and returns the mean of the last ``hparams.embed_layers`` layers, mean-pooled over valid
    frames and L2-normalised.
    """

    @torch.no_grad()
    def embed(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised embeddings ``(batch, dim)`` of a batch of waveforms."""
        self.modules.eval()
        wavs = wavs.to(self.device)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        layers, frame_lens = self.encode(wavs, wav_lens.to(self.device))
        stacked = LayerAverage(int(self._hparam("embed_layers")), key="embed_layers")(layers)
        return F.normalize(self._pool(stacked.float(), frame_lens), dim=-1)

    def embed_dataset(self, dataset) -> tuple[list[str], np.ndarray]:
        """Embed every utterance of ``dataset`` alone (never padded): IDs and ``(n, dim)`` array.

        HuBERT-base encoders normalise over time including padding, so an utterance embedded in a
        padded batch would differ from the same utterance alone; one at a time avoids that.
        """
        ids, embs = [], []
        with dataset.output_keys_as(["id", "sig"]):
            for i in range(len(dataset)):
                item = dataset[i]
                ids.append(item["id"])
                embs.append(self.embed(item["sig"][None, :])[0].cpu().numpy())
        return ids, np.stack(embs).astype(np.float32)
