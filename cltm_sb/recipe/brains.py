"""SpeechBrain Brains for the two tasks: gender recognition and speaker identification.

Both fine-tune ``modules.encoder`` (any encoder of :mod:`cltm_sb.recipe.encoders`) and ``modules.head``
(a :class:`cltm_sb.recipe.heads.LinearHead`) on the time-mean of the encoder's last layer, pooled over
valid frames only. Batches come from a ``DynamicItemDataset`` with the outputs ``id``, ``sig``
(a normalised waveform) and ``label`` (an index in the run's fixed label map).

Hyperparameters read from ``hparams``: ``pooling`` (optional, default masked mean),
``label_classes`` (names of the label indices) and, for speaker embeddings, ``embed_layers``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F

from cltm_sb.recipe.encoders import LayerAverage, masked_mean

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


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
    """Shared logic: encoder → masked mean over the last layer → linear head → cross-entropy.

    Arguments (besides ``sb.Brain``'s):
        run_name: named in errors (e.g. the non-finite loss error).
    """

    def __init__(self, *args, run_name: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run_name = run_name
        self._epoch = 0
        self._targets: list[int] = []
        self._predictions: list[int] = []

    def encode(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The encoder's layers and relative frame lengths."""
        return self.modules.encoder(wavs, wav_lens)

    def _pool(self, x: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        pooling = getattr(self.hparams, "pooling", None)
        return masked_mean(x, frame_lens) if pooling is None else pooling(x, frame_lens)

    def compute_forward(self, batch, stage: sb.Stage) -> torch.Tensor:
        """Logits ``(batch, classes)`` from the pooled last layer."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        layers, frame_lens = self.encode(wavs, wav_lens)
        return self.modules.head(self._pool(layers[-1], frame_lens))

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
        """Reset the collected predictions."""
        self._epoch = epoch or 0
        self._targets, self._predictions = [], []

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        """Log the loss; on evaluation stages compute the metrics into ``self.stage_metrics``."""
        if stage == sb.Stage.TRAIN:
            logger.info("run %s epoch %s: train loss %.4f", self.run_name, epoch, stage_loss)
            return
        classes = list(self.hparams.label_classes)
        self.stage_metrics = classification_metrics(self._targets, self._predictions, classes)
        self.stage_metrics["loss"] = float(stage_loss)
        self.stage_metrics["n_items"] = len(self._targets)
        logger.info("run %s %s: %s", self.run_name, stage.name.lower(), self.stage_metrics)


class GenderBrain(UtteranceClassifierBrain):
    """Gender recognition: a linear head over fixed, sorted gender labels; macro-F1 on test."""


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
        stacked = LayerAverage(int(self.hparams.embed_layers))(layers)
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
