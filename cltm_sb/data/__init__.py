"""Data preparation: Common Voice reading, balanced subsets, trials, the audio cache, the toy corpus.

The public entry points are :func:`cltm_sb.data.common_voice.prepare_common_voice`,
:func:`cltm_sb.data.common_voice.report_common_voice` and
:func:`cltm_sb.data.synth.synthesize_corpus`; they are imported lazily so that importing
``cltm_sb.data`` stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


class DataError(ValueError):
    """Bad input data or request; the message names the file, row or locale and what to do."""


class DataIOError(OSError):
    """The disk refused a read or a write (full, read-only, no permission): a problem of the
    machine, not of the input, so the CLI exits 1 rather than 2. The message names the path and
    what to do."""


# errno -> what the user is told the disk did.
_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (the folder is not writable for this user)",
    errno.EPERM: "permission denied (the folder is not writable for this user)",
}


def _probe_cause(folder: Path) -> str:
    """Why writing under ``folder`` failed when the error did not say (libsndfile's "System
    error." carries no errno): a read-only mount, no write permission, or no space left."""
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return _CAUSES[errno.EROFS]
        if not os.access(folder, os.W_OK):
            return _CAUSES[errno.EACCES]
        free = shutil.disk_usage(folder).free
        if free < 64 << 20:  # so little left that a write of a few clips can fail
            return f"the disk is full ({free >> 20} MiB free)"
    return "the disk is full or not writable"


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


@contextlib.contextmanager
def disk_errors(folder: str | os.PathLike, what: str, fix: str) -> Iterator[None]:
    """Turn an OSError met while writing ``what`` under ``folder`` into a :class:`DataIOError`.

    The message names the folder, what the disk did (full, read-only, no permission) and
    ``fix``. An error about a path outside ``folder`` (e.g. an input) passes through unchanged,
    as does an error that already names its path (:class:`DataError`, :class:`DataIOError`).
    """
    folder = Path(folder)
    try:
        yield
    except DataIOError:
        raise
    except OSError as error:
        filename = getattr(error, "filename", None)
        if filename is not None and not Path(filename).is_relative_to(folder):
            raise
        cause = _CAUSES.get(error.errno) or _probe_cause(_existing_parent(folder))
        detail = error.strerror or str(error)
        failure = DataIOError(f"{folder}: cannot write {what} ({detail}): {cause}; {fix}")
        failure.errno = error.errno
        raise failure from error


__all__ = ["DataError", "DataIOError", "disk_errors"]
