"""The recipe: hparams composition, data pipeline, Brains, modules, verification metrics, the run.

``run`` (the SpeechBrain-shaped main every run uses, standalone or in a grid), ``brains`` (one
Brain per task), ``encoders`` and ``heads`` (the modules a YAML builds with ``!new:``),
``verification`` (scoring and metrics), ``run_files`` (the names of the files in a run folder),
and the checks that run before anything trains: ``overrides`` (values typed once for both command
lines), ``checks`` (the one table of hparam rules) and ``encoder_source`` (is the checkpoint there
to load?).
"""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe configuration or input that cannot run; the message says what to change."""
