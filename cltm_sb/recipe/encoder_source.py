"""Is a HuggingFace encoder checkpoint there to load, before anything trains?

A local folder needs ``config.json`` (with ``model_type``) and weights that read; a hub id needs
a copy in the local cache when the hub is offline, and at plan time always (unless the revision
is pinned to a commit): the plan's configuration hash names the cached commit, and a run that
downloads another ``main`` would be another configuration. Without these checks the failures
come late and unnamed: "should have a model_type key", a bare ``SafetensorError``, or five hub
retries (about 25 s) per run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.encoders import _COMMIT, _HUB_ID, WEIGHT_FILES, weight_files

_SAVE_HINT = "save the checkpoint there with model.save_pretrained(folder), or download it again"


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, now or when huggingface_hub was imported."""
    from huggingface_hub import constants

    flags = (os.environ.get(name, "").upper() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(f in constants.ENV_VARS_TRUE_VALUES for f in flags)


def hub_cache_dir(save_path: str | os.PathLike | None) -> str:
    """The cache a hub id loads from: ``encoder_save_path``, else HuggingFace's (HF_HOME/hub)."""
    from huggingface_hub import constants

    return str(save_path) if save_path is not None else str(constants.HF_HUB_CACHE)


def is_commit(revision: Any) -> bool:
    """A full commit hash: the one revision that names the same weights online and offline."""
    return revision is not None and bool(_COMMIT.match(str(revision)))


def _check_weights(path: Path, fix: str) -> None:
    """A safetensors file whose header covers the whole file; any other weight file not empty."""
    if path.stat().st_size == 0:
        raise RecipeError(f"{path}: empty weight file; {fix}")
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as error:  # SafetensorError is not importable under a stable name
        raise RecipeError(f"{path}: truncated or damaged weights ({error}); {fix}") from None


def check_checkpoint_folder(folder: Path, fix: str = _SAVE_HINT) -> Path:
    """The ``config.json`` of a checkpoint folder whose config and weights read; else RecipeError."""
    config = folder / "config.json"
    if not config.is_file():
        raise RecipeError(
            f"encoder folder {folder}: no config.json, so not a HuggingFace checkpoint (one holds "
            f"config.json and model.safetensors); {fix}"
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RecipeError(f"{config}: not readable JSON ({error}); {fix}") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise RecipeError(f"{config}: no model_type key; {fix}")
    files = weight_files(folder)
    if not files:
        raise RecipeError(f"encoder folder {folder}: no weights ({' or '.join(WEIGHT_FILES)}); {fix}")
    for path in files:
        _check_weights(path, fix)
    return config


_INSTEAD = "or pass encoder_source=/path/to/folder (a checkpoint saved with save_pretrained)"


def _download_hint(repo_id: str, revision: Any, save_path: str | os.PathLike | None) -> str:
    options = (f" --revision {revision}" if revision else "") + (
        f" --cache-dir {save_path}" if save_path is not None else ""
    )
    return (
        f"`huggingface-cli download {repo_id}{options}` (or huggingface_hub.snapshot_download) "
        "where there is network"
    )


def check_hub_checkpoint(
    repo_id: str, revision: Any, save_path: str | os.PathLike | None, *, need_cached: bool
) -> Path | None:
    """The cached ``config.json`` of a hub checkpoint (checked like a folder), or None.

    None: not cached, and allowed to download (online and ``need_cached`` false). Uncached while
    offline, or while ``need_cached``, raises and says how to get it or what to pass instead.
    """
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir(save_path)
    cached = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache, revision=revision)
    download = _download_hint(repo_id, revision, save_path)
    if isinstance(cached, str):
        fix = f"download it again with --force-download: {download}"
        return check_checkpoint_folder(Path(cached).parent, fix)
    named = repo_id + (f" (revision {revision})" if revision else "")
    if hub_offline():
        raise RecipeError(
            f"encoder_source {named} is not in the HuggingFace cache {cache} and the hub is offline "
            f"(HF_HUB_OFFLINE); pre-download it with {download}, {_INSTEAD}"
        )
    if need_cached:
        raise RecipeError(
            f"encoder_source {named} is not in the HuggingFace cache {cache}; pre-download it with "
            f"{download} so that every run of the plan starts from the same weights, pin "
            f"encoder_revision to a commit, {_INSTEAD}"
        )
    return None


def hub_load_error(
    repo_id: str, revision: Any, save_path: str | os.PathLike | None, error: BaseException
) -> RecipeError:
    """The one-line error of a hub checkpoint that failed to load (no network, no such repo...)."""
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return RecipeError(
        f"encoder_source {repo_id}: not loadable from the hub nor from the HuggingFace cache "
        f"{hub_cache_dir(save_path)} ({first.strip()}); pre-download it with "
        f"{_download_hint(repo_id, revision, save_path)}, {_INSTEAD}"
    )


def check_encoder_source(
    source: Any, revision: Any = None, save_path: str | os.PathLike | None = None, *,
    need_cached: bool = False,
) -> Path | None:
    """Check a HuggingFace encoder's ``source`` (folder or hub id); its ``config.json`` when known.

    ``need_cached``: refuse an uncached hub id even online (plan time), unless the revision is a
    commit.
    """
    text = str(source)
    folder = Path(text).expanduser()
    if folder.is_dir():
        return check_checkpoint_folder(folder)
    if not _HUB_ID.match(text) or text.startswith((".", "~")) or folder.exists():
        raise RecipeError(
            f"encoder_source {text!r} is neither a checkpoint folder nor a hub id (organisation/name); "
            "pass encoder_source=/path/to/folder or a hub id"
        )
    return check_hub_checkpoint(text, revision, save_path, need_cached=need_cached and not is_commit(revision))


def checkpoint_sizes(config_json: Path) -> dict[str, int | None]:
    """``hidden_states`` (the transformer layers plus the feature projection: what the encoder
    returns, what ``embed_layers`` averages over) and ``hidden_size`` of a checkpoint's config."""
    config = json.loads(config_json.read_text(encoding="utf-8"))
    layers, size = config.get("num_hidden_layers"), config.get("hidden_size")
    return {
        "hidden_states": layers + 1 if isinstance(layers, int) else None,
        "hidden_size": size if isinstance(size, int) else None,
    }


#: Keys that average the last k of the encoder's layers: at most its hidden states.
LAYER_KEYS = ("pool_layers", "embed_layers")


def check_layer_keys(
    states: int, where: str, config: Mapping[str, Any], origin: Callable[[str], str], *, embeds: bool = True
) -> None:
    """``pool_layers`` (and, for a task that embeds, ``embed_layers``) at most the ``states`` layers
    an encoder returns; ``where`` says whose layers they are, for the message."""
    for key in LAYER_KEYS if embeds else ("pool_layers",):  # the head's input; speaker embeddings
        wanted = config.get(key)
        if isinstance(wanted, int) and wanted > states:
            raise RecipeError(
                f"{key}={wanted} ({origin(key)}) is more than the {states} hidden states {where}; "
                f"set {key} to at most {states}"
            )


def check_checkpoint_sizes(
    config_json: Path, config: Mapping[str, Any], origin: Callable[[str], str], *, embeds: bool = True
) -> None:
    """``pool_layers`` and ``embed_layers`` within the hidden states the checkpoint returns;
    ``encoder_dim`` its width.

    ``origin(key)`` says where a value was set, for the message. ``embeds``: the task embeds
    utterances for verification (only then is ``embed_layers`` used, so only then checked).
    """
    sizes = checkpoint_sizes(config_json)
    states, width = sizes["hidden_states"], sizes["hidden_size"]
    if states is not None:
        where = f"of the encoder {config_json.parent} ({states - 1} transformer layers and the feature projection)"
        check_layer_keys(states, where, config, origin, embeds=embeds)
    dim = config.get("encoder_dim")
    if width is not None and isinstance(dim, int) and dim != width:
        raise RecipeError(
            f"encoder_dim={dim} ({origin('encoder_dim')}) is not the hidden_size {width} of the encoder "
            f"{config_json.parent}; set encoder_dim={width}"
        )
