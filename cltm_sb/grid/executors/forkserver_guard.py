"""Makes the forkserver of a local grid die with the grid, even when the grid is SIGKILLed.

:class:`~cltm_sb.grid.executors.local.LocalExecutor` puts this module first in the forkserver's
preload list. Imported by the forkserver (and only there: anywhere else the import does nothing),
it asks the kernel to SIGKILL the forkserver when its parent, the grid process, dies. Left to
itself the forkserver notices a dead grid only through a pipe, then takes seconds to shut down
an interpreter that has imported torch; the workers it forked die with it (their own death
signal, set in :func:`~cltm_sb.grid.executors.local._die_with_grid`).

The kernel sends the signal when the *thread* that started the forkserver ends: a grid started
from a short-lived thread takes its forkserver down with that thread, and multiprocessing starts
a new one for the next grid.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).

    Returns whether the kernel took the request (False on other systems).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _imported_by_forkserver() -> bool:
    """True while multiprocessing's forkserver imports its preload modules (this module first)."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is None:
        return False
    frame = sys._getframe()  # noqa: SLF001 - the only way to see who imports us
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _imported_by_forkserver():
    set_parent_death_signal(signal.SIGKILL)
