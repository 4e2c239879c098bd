"""What a valid value of each hparam is: ONE table, checked at plan time and before a run trains.

:data:`HPARAM_RULES` maps a key of the packaged YAML files to its :class:`Rule`. A key that the
table does not name but whose YAML default is a number (or true/false) must stay one: a user's
own YAML keys get the type check too. Closed sets live here (:data:`PRECISIONS`,
:data:`KEEP_CHECKPOINTS`; the score normalisations are :data:`cltm_sb.recipe.verification.SCORE_NORMS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.verification import SCORE_NORMS

KEEP_CHECKPOINTS = ("none", "head", "all")
PRECISIONS = ("fp32", "fp16", "bf16", "auto")


@dataclass(frozen=True)
class Rule:
    """``check(value)`` is true for a valid value; ``expected`` says what one is, for the message."""

    check: Callable[[Any], bool]
    expected: str


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def number(low: float | None = None, *, above: bool = False, high: float | None = None,
           below: bool = False) -> Rule:
    """A finite number, optionally bounded (``above``/``below``: the bound itself is excluded)."""
    def check(value: Any) -> bool:
        if not _is_number(value):
            return False
        if low is not None and (value <= low if above else value < low):
            return False
        return high is None or (value < high if below else value <= high)

    bounds = []
    if low is not None:
        bounds.append(f"{'>' if above else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if below else '<='} {high:g}")
    return Rule(check, "a finite number" + (f" {' and '.join(bounds)}" if bounds else ""))


def integer(low: int | None = None) -> Rule:
    """A whole number, at least ``low``."""
    return Rule(
        lambda value: _is_int(value) and (low is None or value >= low),
        "an integer" + (f" >= {low}" if low is not None else ""),
    )


def one_of(choices: Sequence[Any]) -> Rule:
    """A value of a closed set."""
    return Rule(lambda value: value in choices, "one of " + ", ".join(map(str, choices)))


def boolean() -> Rule:
    """true or false."""
    return Rule(lambda value: isinstance(value, bool), "true or false")


def or_null(rule: Rule, meaning: str) -> Rule:
    """``rule``, or null (which means ``meaning``)."""
    return Rule(lambda value: value is None or rule.check(value), f"{rule.expected}, or null ({meaning})")


HPARAM_RULES: dict[str, Rule] = {
    # Training
    "lr": number(0, above=True),
    "weight_decay": number(0),
    # SpeechBrain reverses the gradients with a negative clip norm instead of disabling it.
    "max_grad_norm": or_null(number(0, above=True), "no clipping"),
    "number_of_epochs": integer(1),  # 0 trains nothing and would still report ok
    "batch_size": integer(1),
    "test_batch_size": integer(1),
    "dynamic_batching": boolean(),
    "max_batch_seconds": number(0),
    "num_buckets": integer(0),
    "num_workers": integer(0),
    "precision": one_of(PRECISIONS),
    "seed": integer(),
    # Model
    "layerdrop": number(0, high=1),
    "head_dropout": number(0, high=1, below=True),
    "embed_layers": integer(1),  # and at most the encoder's layers (checked with its config)
    "pool_layers": integer(1),  # the same
    "encoder_dim": integer(1),
    "ecapa_n_mels": integer(1),
    "ecapa_attention_channels": integer(1),
    # Data and outputs
    "sample_rate": integer(1),
    "keep_checkpoints": one_of(KEEP_CHECKPOINTS),
    "ckpt_interval_minutes": number(0),  # 0: checkpoints at epoch ends only
    "heartbeat_minutes": number(0, above=True),
    "save_embeddings": boolean(),
    # Verification scoring
    "score_norm": one_of(SCORE_NORMS),
    "cohort_top_k": or_null(integer(1), "the whole cohort"),
    "dcf_p_target": number(0, above=True, high=1, below=True),
    "dcf_c_miss": number(0, above=True),
    "dcf_c_fa": number(0, above=True),
}


def rule_for(key: str, default: Any) -> Rule | None:
    """The table's rule for ``key``, else one from the type of its YAML default (or None)."""
    if key in HPARAM_RULES:
        return HPARAM_RULES[key]
    if isinstance(default, bool):
        return boolean()
    if _is_number(default):
        return number()
    return None


def _is_tagged(value: Any) -> bool:
    """A value a YAML file computes (``!apply:``, ``!new:``...): known only when the run loads it."""
    return isinstance(value, Mapping) and str(value.get("tag", "")).startswith("!")


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_hparams(
    config: Mapping[str, Any], defaults: Mapping[str, Any], origin: Callable[[str], str]
) -> None:
    """Refuse the first value that breaks its rule; the message names the key and where it was set.

    Arguments:
        config: the resolved configuration (after overrides and references), plain data.
        defaults: the composed YAML's own top-level values (before overrides), for untabled keys.
        origin: ``origin(key)`` says where the value came from (an override, or which file).
    """
    for key, value in config.items():
        rule = rule_for(key, defaults.get(key))
        if rule is None or _is_tagged(value) or rule.check(value):
            continue
        raise RecipeError(f"{key}={_shown(value)} ({origin(key)}): {key} must be {rule.expected}")
    if config.get("dynamic_batching") is True:
        # The paper and toy presets set both to 0: SpeechBrain's DynamicBatchSampler then failed
        # with an IndexError once the run had started.
        for key in ("max_batch_seconds", "num_buckets"):
            value = config.get(key)
            if _is_number(value) and value <= 0:
                raise RecipeError(
                    f"{key}={_shown(value)} ({origin(key)}): with dynamic_batching true, {key} must be > 0 "
                    "(the fast preset's: max_batch_seconds 60.0, num_buckets 10)"
                )
