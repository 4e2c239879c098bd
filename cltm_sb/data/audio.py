"""Audio decoding, resampling, waveform normalisation and the shared decoded-audio cache.

The cache holds raw 16 kHz mono audio as 16-bit PCM WAV files (the fastest format for
``speechbrain.dataio.dataio.read_audio``), one per source clip, at
``<cache>/<locale>/<clip stem>_<8 hex of the source's SHA-256>.wav``. Keying on the source bytes
lets several prepared folders, and several Common Voice releases, share one cache safely. Each
entry has a JSON sidecar (``.json``) with the WAV's SHA-256 and the source's rate and length; an
entry whose WAV or sidecar is missing or does not match is treated as corrupt and rebuilt. Both
files are written to a temporary file and renamed; the sidecar comes last, so an interrupted write
leaves an entry that is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from cltm_sb.data import disk_errors
from cltm_sb.io import atomic_write, atomic_write_json, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

TARGET_SAMPLE_RATE = 16000
CACHE_SUBTYPE = "PCM_16"


class AudioDecodeError(RuntimeError):
    """A clip that cannot be decoded into usable audio."""


def resample(x: np.ndarray, orig_sr: int, target_sr: int = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal with a polyphase filter (exact rational ratio)."""
    if orig_sr == target_sr:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    return resample_poly(x, target_sr // g, orig_sr // g).astype(np.float32, copy=False)


def decode_clip(path: str | os.PathLike) -> np.ndarray:
    """Decode an audio file (MP3, WAV, FLAC, ...) to float32 mono at 16 kHz.

    Channels are averaged; any sample rate is resampled. Raises :class:`AudioDecodeError` for
    unreadable, empty or non-finite audio.
    """
    samples, _ = _decode_with_rate(path)
    return samples


def _decode_with_rate(path: str | os.PathLike) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path``; also return the source's (sample rate, frames)."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types
        raise AudioDecodeError(f"{path}: cannot decode ({error})") from error
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise AudioDecodeError(f"{path}: non-finite samples")
    out = resample(np.ascontiguousarray(mono), int(sr))
    return np.ascontiguousarray(out, dtype=np.float32), (int(sr), int(data.shape[0]))


def cached_audio_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a cache-format clip (16 kHz mono, not empty), or None.

    Reads the file's header only (``soundfile.info``), never its samples, so that every test clip
    of a large grid can be checked in seconds. A missing file is None: its manifest check names it.
    """
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile raises several types
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return None
        except OSError as stat_error:
            return f"cannot be opened ({stat_error.strerror})"
        if size == 0:
            return "is an empty file (0 bytes)"
        return f"cannot be read as audio ({getattr(error, 'error_string', None) or error})"
    if info.frames <= 0:
        return "holds no audio samples (0 frames)"
    if info.samplerate != TARGET_SAMPLE_RATE or info.channels != 1:
        return (
            f"is {info.samplerate} Hz with {info.channels} channel(s); expected "
            f"{TARGET_SAMPLE_RATE} Hz mono"
        )
    return None


def normalize_waveform(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance over the last dimension; silence (zero variance) stays finite."""
    import torch

    x = x.to(torch.float32)
    mean = x.mean(dim=-1, keepdim=True)
    centred = x - mean
    std = centred.pow(2).mean(dim=-1, keepdim=True).sqrt()
    return centred / std.clamp_min(eps)


@dataclass(frozen=True)
class CachedClip:
    """The result of caching one source clip.

    Attributes:
        relpath: path of the WAV relative to the cache root (POSIX separators).
        frames: number of 16 kHz samples.
        source_sr: sample rate of the source file.
        source_frames: length of the source file in its own samples (from its header).
        status: ``hit`` (valid entry reused), ``built`` (new) or ``rebuilt`` (was corrupt).
    """

    relpath: str
    frames: int
    source_sr: int
    source_frames: int
    status: str

    @property
    def source_duration(self) -> float:
        """Duration of the source clip in seconds, from its header."""
        return self.source_frames / self.source_sr


class AudioCache:
    """A folder of decoded 16 kHz mono clips shared by every prepared folder that points to it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()

    def relpath_for(self, locale: str, source: str | os.PathLike) -> str:
        """Cache path (relative to the root) for ``source``; reads the source's bytes."""
        source = Path(source)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:8]
        return f"{locale}/{source.stem}_{digest}.wav"

    def sidecar(self, relpath: str) -> Path:
        """Path of the JSON sidecar of an entry."""
        return (self.root / relpath).with_suffix(".json")

    def read_entry(self, relpath: str) -> dict | None:
        """The sidecar of a valid entry, or ``None`` when the entry is missing or corrupt."""
        wav = self.root / relpath
        sidecar = self.sidecar(relpath)
        if not (wav.is_file() and sidecar.is_file()):
            return None
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
            if meta.get("sha256") != sha256_file(wav):
                return None
            if int(meta["frames"]) <= 0:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return meta

    def ensure(self, locale: str, source: str | os.PathLike) -> CachedClip:
        """Return the cache entry of ``source``, decoding it if missing or corrupt.

        Raises :class:`AudioDecodeError` (and writes nothing) when the source cannot be decoded.
        """
        try:
            relpath = self.relpath_for(locale, source)
        except OSError as error:
            raise AudioDecodeError(f"{source}: cannot read ({error})") from error
        meta = self.read_entry(relpath)
        if meta is not None:
            return CachedClip(
                relpath, int(meta["frames"]), int(meta["source_sr"]), int(meta["source_frames"]), "hit"
            )
        existed = (self.root / relpath).exists() or self.sidecar(relpath).exists()
        samples, (source_sr, source_frames) = _decode_with_rate(source)
        wav = self.root / relpath
        fix = "free space there, or pass --cache-dir on a writable disk with room for the clips"
        with disk_errors(self.root, "the decoded audio cache", fix):
            atomic_write(wav, lambda tmp: _write_cache_wav(tmp, samples))
            meta = {
                "sha256": sha256_file(wav),
                "frames": int(samples.shape[0]),
                "source": Path(source).name,
                "source_sr": source_sr,
                "source_frames": source_frames,
            }
            atomic_write_json(self.sidecar(relpath), meta)
        return CachedClip(
            relpath, meta["frames"], source_sr, source_frames, "rebuilt" if existed else "built"
        )


def _write_cache_wav(path: Path, samples: np.ndarray) -> None:
    """Write one cache entry's WAV; a failed write is an OSError, as for any other file.

    libsndfile reports a full or read-only disk only as "System error." (no errno), so
    :func:`~cltm_sb.data.disk_errors` then finds the cause from the folder itself.
    """
    try:
        sf.write(str(path), samples, TARGET_SAMPLE_RATE, subtype=CACHE_SUBTYPE, format="WAV")
    except sf.SoundFileRuntimeError as error:
        raise OSError(f"libsndfile: {error}") from error


def cache_clip(cache_root: str, locale: str, source: str) -> CachedClip | str:
    """Worker entry point: cache one clip; return the entry, or an error message on failure."""
    try:
        return AudioCache(cache_root).ensure(locale, source)
    except AudioDecodeError as error:
        return str(error)
