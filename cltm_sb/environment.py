"""Checks of the installed environment that must fail before any training starts.

SpeechBrain imports torchaudio, whose compiled extension only links against the torch release it
was built for. A mismatched pair imports torch fine and then dies deep inside ``import speechbrain``
with an undefined symbol; these checks turn that into one line that says how to fix it.
"""

from __future__ import annotations

import re
from importlib import metadata

#: The distribution whose metadata pins the tested torch/torchaudio pair (setup.cfg).
DISTRIBUTION = "cltm_sb"
PAIR = ("torch", "torchaudio")


class InstallError(RuntimeError):
    """The installed packages cannot run a training; the message names the fix."""


def installed_version(package: str) -> str:
    """The installed version of ``package``, or ``"not installed"``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def pinned_pair() -> dict[str, str]:
    """The exact torch/torchaudio versions this installation of cltm_sb requires, if it pins them."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return {}
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*", requirement)
        if match and match.group(1).lower() in PAIR:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def pair_fix_command() -> str:
    """The pip command that installs the tested pair."""
    pins = pinned_pair()
    if set(pins) == set(PAIR):
        return "pip install " + " ".join(f"{name}=={pins[name]}" for name in PAIR)
    release = installed_version("torch").split("+")[0]
    return f"pip install torch=={release} torchaudio=={release}"


def torchaudio_problem() -> str | None:
    """Why torchaudio's compiled extension cannot load beside the installed torch, or None."""
    try:
        # Importing the extension module links libtorchaudio against the loaded torch.
        import torchaudio._extension  # noqa: F401
    except Exception as error:  # OSError (undefined symbol), ImportError, RuntimeError
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return (
            f"torchaudio {installed_version('torchaudio')} cannot load beside torch "
            f"{installed_version('torch')} ({reason}); install the tested pair with: {pair_fix_command()}"
        )
    return None


def require_loadable_torchaudio() -> None:
    """Raise :class:`InstallError` when torchaudio's extension cannot load (see :func:`torchaudio_problem`)."""
    problem = torchaudio_problem()
    if problem:
        raise InstallError(problem)
