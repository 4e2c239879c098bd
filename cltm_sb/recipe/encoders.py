"""Speech encoders, pooling and layer averaging, usable from YAML through ``!new:cltm_sb.recipe.encoders...``.

Every encoder here follows one interface so that the Brains and the verification code never
depend on which encoder a YAML file chose::

    layers, frame_lens = encoder(wavs, wav_lens)

``wavs`` is a padded ``(batch, samples)`` float tensor, ``wav_lens`` SpeechBrain relative lengths
``(batch,)`` in (0, 1]. ``layers`` is a list of ``(batch, frames, dim)`` tensors (for a
transformer: the CNN/projection output, then every layer; the last entry is the top layer),
``frame_lens`` the relative number of valid frames per item, for :func:`masked_mean`.

Waveform normalisation happens once in the recipe's data pipeline
(:func:`cltm_sb.data.audio.normalize_waveform`);
the encoders never normalise again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from cltm_sb.io import default_mode

logger = logging.getLogger(__name__)

#: Configuration of the tiny HuBERT used by tests and the demo. Changing it (or its front-end
#: filterbank) changes the weights, so the cache folder name carries a version.
TINY_HUBERT_VERSION = 4
TINY_HUBERT_CONFIG = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "conv_dim": (64,),
    "conv_stride": (320,),
    "conv_kernel": (400,),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": False,
    "layerdrop": 0.0,
    "mask_time_prob": 0.0,
}


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``(batch, max_len)`` mask from relative lengths (SpeechBrain convention)."""
    abs_len = torch.round(lengths.float() * max_len).clamp(min=1, max=max_len)
    return torch.arange(max_len, device=lengths.device)[None, :] < abs_len[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over time of ``x`` ``(batch, time, dim)``, counting valid frames only.

    Arguments:
        x: padded features.
        lengths: relative lengths ``(batch,)``; ``None`` means every frame is valid.

    Example:
        >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> masked_mean(x, torch.tensor([2 / 3])).tolist()
        [[2.0]]
    """
    if lengths is None:
        return x.mean(dim=1)
    mask = lengths_to_mask(lengths, x.shape[1]).to(x.dtype).unsqueeze(-1)
    return (x * mask).sum(dim=1) / mask.sum(dim=1)


class MaskedMeanPooling(nn.Module):
    """Module form of :func:`masked_mean` for YAML files."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Pool ``(batch, time, dim)`` to ``(batch, dim)`` over valid frames."""
        return masked_mean(x, lengths)


class LayerAverage(nn.Module):
    """Mean of the last ``k`` entries of an encoder's list of layers.

    Arguments:
        k: how many top layers to average (``k=1`` is the last layer).
        key: the hparam that sets ``k`` (``pool_layers``, ``embed_layers``), named in the error.
    """

    def __init__(self, k: int = 1, key: str = "k") -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"LayerAverage: {key} must be >= 1, got {k}")
        self.k = k
        self.key = key

    def forward(self, layers: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Average the top ``k`` layers; more than available raises and names both numbers."""
        if self.k > len(layers):
            raise ValueError(
                f"LayerAverage: asked for the last {self.k} layers but the encoder returns "
                f"{len(layers)}; set {self.key} to at most {len(layers)}"
            )
        if self.k == 1:
            return layers[-1]
        return torch.stack(list(layers[-self.k :]), dim=0).mean(dim=0)


class HFSSLEncoder(nn.Module):
    """A HuggingFace self-supervised encoder (HuBERT, wav2vec 2.0, WavLM, ...), fully trainable.

    Loads with ``trust_remote_code=False`` and prefers safetensors. ``source`` is a hub id
    (``utter-project/mHuBERT-147``; offline it must already be in ``save_path``) or a local folder
    with ``config.json`` and the weights.

    Arguments:
        source: hub id or local folder.
        save_path: HuggingFace cache folder for hub ids (``None``: the default cache).
        revision: hub revision (branch, tag or commit); ignored for local folders.
        layerdrop: set explicitly (HuBERT's config default 0.1 applies in training).
        config_overrides: other config attributes to set after loading (e.g. dropouts,
            ``mask_time_prob``); ``None`` keeps the checkpoint's values.
        freeze_feature_extractor: freeze the CNN feature extractor.
        expected_hidden_size: the size the YAML declares next to the source; a checkpoint of
            another size raises instead of building a mis-sized head.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        save_path: str | os.PathLike | None = None,
        revision: str | None = None,
        layerdrop: float = 0.0,
        config_overrides: dict | None = None,
        freeze_feature_extractor: bool = False,
        expected_hidden_size: int | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        source = str(source)
        folder = Path(source).expanduser()
        local = folder.is_dir()
        if local:
            source = str(folder)  # `~/models/x` is a folder here as in the run's checks
        if local or not _HUB_ID.match(source) or source.startswith((".", "~")) or folder.exists():
            from cltm_sb.recipe.encoder_source import check_encoder_source

            # A folder without config.json or weights, or a mistyped path, in one line that names
            # it (transformers would say "model_type key" or suggest downloading the path).
            check_encoder_source(source)
        kwargs = {
            "cache_dir": None if save_path is None else str(save_path),
            "revision": None if local else revision,
            "trust_remote_code": False,
            "local_files_only": local,
        }
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
        except OSError as error:
            if local:
                raise
            from cltm_sb.recipe.encoder_source import hub_load_error

            # Without a network the hub was retried for ~25 s: say what to do instead.
            raise hub_load_error(source, revision, save_path, error) from error
        if expected_hidden_size is not None and config.hidden_size != int(expected_hidden_size):
            raise ValueError(
                f"{source} has hidden_size {config.hidden_size} but the encoder YAML says "
                f"encoder_dim: {expected_hidden_size}; fix encoder_dim"
            )
        config.layerdrop = float(layerdrop)
        for key, value in (config_overrides or {}).items():
            if not hasattr(config, key):
                raise ValueError(f"HFSSLEncoder: {source} config has no attribute {key!r}")
            setattr(config, key, value)
        self.model = AutoModel.from_pretrained(source, config=config, **kwargs)
        self.source = source
        self.revision = revision
        # Models whose CNN uses group norm were trained without attention masks (HF convention);
        # padding then changes the outputs, which is why verification embeds unpadded clips.
        self.use_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"
        if freeze_feature_extractor:
            self.model.feature_extractor._freeze_parameters()

    @property
    def hidden_size(self) -> int:
        """Width of every layer."""
        return int(self.model.config.hidden_size)

    def config_summary(self) -> dict:
        """The regularisation settings in effect (recorded in run records)."""
        cfg = self.model.config
        keys = (
            "layerdrop",
            "hidden_dropout",
            "attention_dropout",
            "activation_dropout",
            "feat_proj_dropout",
            "final_dropout",
            "mask_time_prob",
            "mask_feature_prob",
        )
        return {k: getattr(cfg, k) for k in keys if hasattr(cfg, k)}

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return the list of hidden states and the relative valid frame lengths."""
        n_samples = wavs.shape[1]
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        abs_samples = torch.round(wav_lens * n_samples).long()
        attention_mask = None
        if self.use_attention_mask:
            attention_mask = (
                torch.arange(n_samples, device=wavs.device)[None, :] < abs_samples[:, None]
            ).long()
        out = self.model(wavs, attention_mask=attention_mask, output_hidden_states=True)
        layers = list(out.hidden_states)
        n_frames = layers[-1].shape[1]
        valid = self.model._get_feat_extract_output_lengths(abs_samples).clamp(1, n_frames)
        return layers, valid.float() / n_frames


class FbankECAPA(nn.Module):
    """SpeechBrain's ECAPA-TDNN on log-Mel filterbanks, trained from scratch (non-SSL baseline).

    Returns a single "layer" of one frame (the ECAPA embedding), so pooling and layer averaging
    (with ``k=1``) apply unchanged.

    Arguments:
        n_mels: filterbank channels.
        embedding_dim: ECAPA output size.
        channels: ECAPA block widths.
        attention_channels: attentive statistics pooling width.
        sample_rate: audio sample rate.
    """

    def __init__(
        self,
        n_mels: int = 80,
        embedding_dim: int = 192,
        channels: list[int] | tuple[int, ...] = (512, 512, 512, 512, 1536),
        attention_channels: int = 128,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        from speechbrain.processing.features import InputNormalization

        self.fbank = Fbank(n_mels=n_mels, sample_rate=sample_rate)
        self.norm = InputNormalization(norm_type="sentence", std_norm=False)
        self.ecapa = ECAPA_TDNN(
            input_size=n_mels,
            lin_neurons=embedding_dim,
            channels=list(channels),
            attention_channels=attention_channels,
            se_channels=min(128, attention_channels),
        )
        self.hidden_size = embedding_dim

    def config_summary(self) -> dict:
        """No dropout or layerdrop in this encoder."""
        return {"layerdrop": 0.0}

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return ``[embedding (batch, 1, dim)]`` and all-ones frame lengths."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        feats = self.norm(self.fbank(wavs), wav_lens)
        emb = self.ecapa(feats, wav_lens)
        return [emb], torch.ones(wavs.shape[0], device=wavs.device)


def default_cache_dir() -> Path:
    """``$CLTM_CACHE``, else ``$XDG_CACHE_HOME/cltm_sb``, else ``~/.cache/cltm_sb``."""
    if os.environ.get("CLTM_CACHE"):
        return Path(os.environ["CLTM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cltm_sb"


def gabor_filterbank(
    n_channels: int,
    kernel_size: int,
    sample_rate: int = 16000,
    min_hz: float = 80.0,
    max_hz: float = 7000.0,
) -> torch.Tensor:
    """Conv1d weights ``(n_channels, 1, kernel_size)``: Hann-windowed cosine and sine pairs.

    ``n_channels / 2`` centre frequencies, evenly spaced on the mel scale from ``min_hz`` to
    ``max_hz``; each filter has unit L2 norm times sqrt(2), about the norm of a Kaiming-initialised
    filter of that length. A quadrature pair makes the pooled response depend on the band's
    energy rather than on where the stride happens to sample its phase.

    Example:
        >>> gabor_filterbank(8, 400).shape
        torch.Size([8, 1, 400])
    """
    if n_channels % 2 or n_channels < 2:
        raise ValueError(f"n_channels must be a positive even number, got {n_channels}")
    mel = torch.linspace(_hz_to_mel(min_hz), _hz_to_mel(max_hz), n_channels // 2, dtype=torch.float64)
    centres = 700.0 * (10 ** (mel / 2595.0) - 1.0)
    t = (torch.arange(kernel_size, dtype=torch.float64) - kernel_size / 2) / sample_rate
    window = torch.hann_window(kernel_size, periodic=False, dtype=torch.float64)
    phase = 2 * torch.pi * centres[:, None] * t[None, :]
    filters = torch.stack([window * torch.cos(phase), window * torch.sin(phase)], dim=1)
    filters = filters.reshape(n_channels, kernel_size)
    filters = filters / filters.norm(dim=1, keepdim=True) * 2**0.5
    return filters.unsqueeze(1).float()


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def build_tiny_hubert(folder: str | os.PathLike | None = None) -> Path:
    """Create (once) a tiny HuBERT in ``folder`` and return its path.

    Its transformer weights are random; its one-layer convolutional front end starts as a
    mel-spaced Gabor filterbank (:func:`gabor_filterbank`), the band-pass filters that the first
    layer of a pretrained HuBERT or wav2vec 2.0 learns. With random filters the pooled features
    carry almost no speaker information (untrained verification AUC about 0.5 on the toy corpus);
    with the filterbank they carry the spectral envelope (0.67-0.84), so the toy runs start, like
    fine-tuning a real checkpoint, from features worth adapting.

    The folder holds ``config.json``, ``model.safetensors`` and ``preprocessor_config.json``, so it
    loads like any local HuggingFace checkpoint, offline. Weights come from a fixed seed inside a
    forked RNG (the caller's random state is untouched) and the folder is written to a temporary
    name, then renamed: concurrent builders never see a partial folder.

    Arguments:
        folder: target folder; ``None`` means ``<default_cache_dir()>/tiny_hubert-v<version>``.
    """
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    folder = (
        Path(folder)
        if folder is not None
        else default_cache_dir() / f"tiny_hubert-v{TINY_HUBERT_VERSION}"
    )
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(tmp, default_mode(directory=True))  # shared caches stay readable (mkdtemp makes 0700)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = HubertModel(HubertConfig(**TINY_HUBERT_CONFIG))
            conv = model.feature_extractor.conv_layers[0].conv
            with torch.no_grad():
                conv.weight.copy_(gabor_filterbank(conv.out_channels, conv.kernel_size[0]))
        # transformers writes a model's files on rank 0 of a process group only: a torchrun
        # worker of another rank renamed a folder without weights into place (a broken cache).
        model.should_save_on_this_rank = lambda is_main_process: True
        model.save_pretrained(tmp, safe_serialization=True)
        Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, do_normalize=False, return_attention_mask=False
        ).save_pretrained(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "model.safetensors").is_file():
                from cltm_sb.recipe import RecipeError

                # A folder of other files (no race lost: a builder's rename leaves the weights).
                raise RecipeError(
                    f"cannot build the tiny HuBERT in {folder}: it holds other files; give a new or "
                    "empty folder (tiny_hubert_folder), or null for the cache"
                ) from None
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
        else:
            logger.info("built tiny HuBERT in %s", folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------------------ identity
#: Weight files of a local checkpoint folder, in the order HuggingFace prefers them.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# SHA-256 of weight files by (path, size, mtime_ns): hashing mHuBERT-147 (380 MB) once per process
# is enough, and a replaced file has another size or mtime, so it is hashed again.
_WEIGHTS_SHA256: dict[tuple[str, int, int], str] = {}


def weight_files(folder: str | os.PathLike) -> list[Path]:
    """The weight file(s) of a local checkpoint folder: one file, or the shards of a split one."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for pattern in ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin"):
        shards = sorted(folder.glob(pattern))
        if shards:
            return shards
    return []


def weights_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of one weight file, cached in this process by (path, size, mtime)."""
    from cltm_sb.io import sha256_file

    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), int(stat.st_size), int(stat.st_mtime_ns))
    if key not in _WEIGHTS_SHA256:
        _WEIGHTS_SHA256[key] = sha256_file(path)
    return _WEIGHTS_SHA256[key]


def _cached_hub_commit(repo_id: str, ref: str, save_path: str | os.PathLike | None) -> str | None:
    """The commit that the local HuggingFace cache maps ``ref`` to (``refs/<ref>``), or None."""
    if save_path is None:
        from huggingface_hub.constants import HF_HUB_CACHE

        save_path = HF_HUB_CACHE
    ref_file = Path(save_path) / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
    try:
        commit = ref_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit or None


def encoder_identity(
    source: object, revision: str | None = None, save_path: str | os.PathLike | None = None
) -> dict[str, str | None]:
    """What identifies an encoder's starting weights, for the configuration hash and the record.

    - a local folder: the SHA-256 of its weights (``weights_sha256``; of each shard, combined,
      for a split checkpoint), so two checkpoints under one name never share a configuration;
    - a hub id: ``revision`` when the hparams give one (a commit as is; a branch or tag is
      resolved through the local cache's ``refs/`` when it is there), else the commit that the
      local cache's ``refs/main`` points to, else nothing but the id. This is only as good as the
      cache: without a revision and without a cached copy the id stands for "whatever main is",
      and an online load that moves ``refs/main`` between `cltm plan` and a run changes the
      identity (the grid then refuses the run's record as another configuration). Pin
      ``encoder_revision`` to a commit to be sure;
    - anything else (an encoder trained from scratch, e.g. ECAPA): its source text.

    Computed the same way at plan time (:func:`cltm_sb.recipe.run.config_hash_for`) and at run time.
    """
    if source is None:
        return {"source": None}
    text = str(source)
    folder = Path(text).expanduser()
    if folder.is_dir():
        files = weight_files(folder)
        if not files:
            return {"source": str(folder.resolve()), "weights_sha256": None}
        if len(files) == 1:
            return {"weights_sha256": weights_sha256(files[0])}
        from cltm_sb.io import stable_hash

        shards = {f.name: weights_sha256(f) for f in files}
        return {"weights_sha256": stable_hash(shards, length=64)}
    if not _HUB_ID.match(text):
        return {"source": text}
    if revision and _COMMIT.match(str(revision)):
        commit: str | None = str(revision)
    else:
        commit = _cached_hub_commit(text, str(revision or "main"), save_path) or (
            str(revision) if revision else None
        )
    return {"hub_id": text, "revision": commit}
