"""Data preparation: Common Voice reading, balanced subsets, trials, the audio cache, the toy corpus.

The public entry points are :func:`cltm_sb.data.common_voice.prepare_common_voice`,
:func:`cltm_sb.data.common_voice.report_common_voice` and
:func:`cltm_sb.data.synth.synthesize_corpus`; they are imported lazily so that importing
``cltm_sb.data`` stays cheap.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data or request; the message names the file, row or locale and what to do."""


__all__ = ["DataError"]
