"""Subcommands of the ``cltm`` command line, one module per group."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _checked(kind: type, accept: Callable[[float], bool], requirement: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"{requirement} is needed, got {text!r}")
        return value

    return parse


def at_least(minimum: int) -> Callable[[str], float]:
    """An argparse ``type``: a whole number that is ``minimum`` or more."""
    return _checked(int, lambda value: value >= minimum, f"a whole number >= {minimum}")


#: An argparse ``type``: a number above 0.
positive = _checked(float, lambda value: value > 0, "a number above 0")


def name_list(text: str | None) -> list[str]:
    """``en,es, fr`` -> ``["en", "es", "fr"]``; a name given twice is an error."""
    names = [x.strip() for x in (text or "").split(",") if x.strip()]
    repeated = sorted({x for x in names if names.count(x) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once in {text!r}; name each once")
    return names
