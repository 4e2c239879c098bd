"""The recipe: hparams composition, data pipeline, Brains, modules, verification metrics, the run.

``run`` (the SpeechBrain-shaped main every run uses, standalone or in a grid), ``brains`` (one
Brain per task), ``encoders`` and ``heads`` (the modules a YAML builds with ``!new:``),
``verification`` (scoring and metrics), ``run_files`` (the names of the files in a run folder),
``user`` (a recipe of one's own in a grid: the run contract and ``metrics.json`` into a record),
and the checks that run before anything trains: ``overrides`` (values typed once for both command
lines), ``checks`` (the one table of hparam rules) and ``encoder_source`` (is the checkpoint there
to load?).
"""

from __future__ import annotations

import importlib
from typing import Any


class RecipeError(ValueError):
    """A recipe configuration or input that cannot run; the message says what to change."""


#: What a recipe of one's own imports from here, and the module that holds it. Loaded on first
#: use: ``cltm`` commands that only check a configuration do not import torch.
_EXPORTS = {
    "GenderBrain": "brains",
    "ClassifierBrain": "brains",
    "SpeakerIDBrain": "brains",
    "make_dataset": "data",
    "read_manifests": "data",
    "load_audio": "data",
    "compose_hparams": "hparams",
    "run_recipe": "run",
    "main": "run",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cltm_sb.recipe.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cltm_sb.recipe' has no attribute {name!r}")
