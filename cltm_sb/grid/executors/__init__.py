"""Where the runs of a plan execute: local worker processes, a SLURM cluster, or in-process.

:mod:`~cltm_sb.grid.executors.core` holds what they share (one run, one record);
:class:`~cltm_sb.grid.executors.local.LocalExecutor` runs worker processes on this machine,
:class:`~cltm_sb.grid.executors.slurm.SlurmExecutor` submits job arrays through submitit, and
:class:`~cltm_sb.grid.executors.core.InProcessExecutor` runs everything in the calling process
(tests, debugging).
"""

from __future__ import annotations

from typing import Any

from cltm_sb.grid.executors.core import Executor, InProcessExecutor
from cltm_sb.grid.executors.local import LocalExecutor
from cltm_sb.grid.executors.slurm import SlurmExecutor

EXECUTORS = ("local", "slurm", "inprocess")


def make_executor(name: str, **kwargs: Any) -> Executor:
    """An executor by name (``local``, ``slurm``, ``inprocess``); unknown names list the valid ones."""
    classes: dict[str, type[Executor]] = {
        "local": LocalExecutor,
        "slurm": SlurmExecutor,
        "inprocess": InProcessExecutor,
    }
    if name not in classes:
        raise ValueError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
    return classes[name](**kwargs)
