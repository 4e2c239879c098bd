"""The recipe's checks that run before anything trains: override values, hparam rules, encoder.

``overrides`` (values typed once for both command lines), ``checks`` (the one table of hparam
rules) and ``encoder_source`` (is the checkpoint there to load?). ``cltm plan`` and the recipe
command line both use them; the recipe runner itself is still :mod:`cltm_sb.runner`.
"""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe configuration or input that cannot run; the message says what to change."""
