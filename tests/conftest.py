"""Shared, session-scoped fixtures: the toy corpus and folders prepared from it."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from helpers import TOY_GR_N, TOY_LANGUAGES, TOY_SV_K, TOY_SV_N


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthesized Common Voice-style corpus (3 locales in 2 families) with families.csv."""
    from cltm_sb.data.synth import CorpusSize, synthesize_corpus

    size = CorpusSize(
        train_speakers_per_gender=16, train_clips_per_speaker=4, test_speakers_per_gender=5,
        test_clips_per_speaker=4, dev_speakers_per_gender=1, dev_clips_per_speaker=2,
        unlabelled_speakers=1,
    )  # fmt: skip
    return synthesize_corpus(tmp_path_factory.mktemp("toy_cv"), seed=0, n_languages=TOY_LANGUAGES, size=size)


@pytest.fixture(scope="session")
def toy_locales(toy_corpus: Path) -> list[str]:
    """The locale codes of the toy corpus."""
    return sorted(p.name for p in toy_corpus.iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def prepared_gr(toy_corpus: Path, toy_locales: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GR preparation of every toy locale (N=16, K=1); returns the output folder."""
    from cltm_sb.data.common_voice import prepare_common_voice

    out = tmp_path_factory.mktemp("prepared_gr")
    prepare_common_voice(toy_corpus, toy_locales, "gr", TOY_GR_N, out, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def prepared_sv(toy_corpus: Path, toy_locales: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SV preparation of every toy locale (N=32, K=4, trials); returns the output folder."""
    from cltm_sb.data.common_voice import prepare_common_voice

    out = tmp_path_factory.mktemp("prepared_sv")
    prepare_common_voice(
        toy_corpus, toy_locales, "sv", TOY_SV_N, out, clips_per_speaker=TOY_SV_K, seed=0, progress=False
    )
    return out


def _forget_unloadable_lazy_modules() -> None:
    """Drop SpeechBrain's lazy placeholders of optional integrations (k2, ...) from sys.modules.

    Hypothesis scans ``sys.modules`` for constants and reads ``module.__file__``; on a placeholder
    whose optional dependency is not installed that read raises ImportError instead of
    AttributeError, which crashes the session. The placeholders are re-created on a real import.
    """
    lazy_type = getattr(sys.modules.get("speechbrain.utils.importutils"), "LazyModule", None)
    if lazy_type is None:
        return
    for name, module in list(sys.modules.items()):
        if isinstance(module, lazy_type):
            try:
                with warnings.catch_warnings():  # deprecated redirects warn when resolved
                    warnings.simplefilter("ignore")
                    getattr(module, "__file__", None)
            except ImportError:
                del sys.modules[name]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems() -> None:
    """Runs before Hypothesis scans the modules imported during collection."""
    _forget_unloadable_lazy_modules()


@pytest.fixture(autouse=True)
def _safe_modules_for_hypothesis():
    """Tests may import SpeechBrain parts that register new placeholders: clean before each."""
    _forget_unloadable_lazy_modules()
    yield


@pytest.fixture
def one_torch_thread():
    """Train with one torch thread (as each grid worker does), restoring the setting after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

