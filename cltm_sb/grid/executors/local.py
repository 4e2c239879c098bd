"""Local execution: K worker slots on this machine, every run in a fresh process.

:class:`LocalExecutor` gives every run a fresh process forked from a forkserver that has already
imported torch and SpeechBrain, so a run does not pay their import time; runs are pinned to a
device and a fixed thread count.

No process of a grid outlives the grid process, however it dies (SIGKILL included). On Linux the
kernel does it (``PR_SET_PDEATHSIG``): the forkserver is killed when the grid dies
(:mod:`~cltm_sb.grid.executors.forkserver_guard`) and a worker when the forkserver, its parent,
dies. A worker also drops its copy of the pipe that keeps the forkserver alive (else the
forkserver would wait for the worker, and the worker for the forkserver), and a thread of the
worker waits for the grid process itself to end and then kills the worker's process group (its
own children included; on other systems this thread is what remains).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cltm_sb.grid.executors.core import (
    Executor,
    GridInterrupted,
    RunBusy,
    RunOutcome,
    _signals_interrupt,
    execute_run,
    failed_record,
    run_lock,
    usable_cores,
)
from cltm_sb.grid.executors.forkserver_guard import set_parent_death_signal
from cltm_sb.grid.plan import Plan, RunSpec
from cltm_sb.io import lock_holder
from cltm_sb.results import read_record, write_record

HEAVY_MODULES = ("torch", "torchaudio", "speechbrain", "hyperpyyaml", "cltm_sb.results")
TERMINATE_GRACE_S = 5.0
#: A worker's exit status when its run's lock was held by another live process (EX_TEMPFAIL).
RUN_BUSY_EXIT = 75
#: A worker's exit code when SLURM stops the whole task (requeue, preemption, scancel).
SLURM_STOP_EXITS = (-signal.SIGTERM,)
#: A worker's exit status when the grid died while the worker was starting.
GRID_GONE_EXIT = 70
FORKSERVER_GUARD = "cltm_sb.grid.executors.forkserver_guard"


def detect_gpus() -> int:
    """Number of visible CUDA devices (0 without torch or CUDA)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable CUDA means CPU
        return 0


def _release_forkserver() -> None:
    """Close this worker's copy of the forkserver's keep-alive pipe.

    multiprocessing gives every process the forkserver forks a copy of the pipe whose end of
    file tells the forkserver that its client (the grid) is gone. While a worker holds a copy,
    a killed grid leaves the forkserver running, and the worker's death signal, tied to the
    forkserver, never comes. The worker never uses the grid's forkserver itself (a process
    started from it starts its own), so it forgets it.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver  # noqa: SLF001 - the only handle on the inherited pipe
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is None:  # not started by a forkserver
        return
    with contextlib.suppress(OSError):
        os.close(fd)
    server._forkserver_alive_fd = None  # noqa: SLF001
    server._forkserver_address = None  # noqa: SLF001


def _kill_group_when_gone(grid_sentinel: int) -> None:
    """Wait until the grid process has ended, then kill this worker's process group."""
    multiprocessing.connection.wait([grid_sentinel])
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _die_with_grid() -> None:
    """Make sure this worker does not outlive the grid process, however the grid dies."""
    parent = os.getppid()  # the forkserver (the grid itself with the spawn method)
    set_parent_death_signal(signal.SIGKILL)
    _release_forkserver()
    grid = multiprocessing.parent_process()
    # The parent may have died before the death signal was asked for: then none comes.
    if os.getppid() != parent or (grid is not None and not grid.is_alive()):
        os._exit(GRID_GONE_EXIT)
    if grid is not None:
        threading.Thread(
            target=_kill_group_when_gone, args=(grid.sentinel,), name="cltm-grid-watch", daemon=True
        ).start()


def _worker_main(plan: Plan, spec: RunSpec, device: str, threads: int, errors: Any = None) -> None:
    """Body of a worker process: its own process group, SIGINT left to the grid, logs redirected.

    It dies with the grid (:func:`_die_with_grid`); a run whose lock is held by another live
    process exits with :data:`RUN_BUSY_EXIT` without touching the run. An error outside the
    runner (the run's folder, log or record cannot be written: a full or read-only disk) is sent
    through ``errors`` (a pipe) too: it is in no log, and the grid puts it in the failed record.
    """
    os.setpgid(0, 0)
    _die_with_grid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # SLURM's time-limit warning is the task's to handle (submitit requeues it); a worker
    # trains on until the requeue stops it, its checkpoints intact.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        execute_run(plan, spec, device, threads, redirect_output=True)
    except RunBusy:
        sys.exit(RUN_BUSY_EXIT)
    except Exception as error:
        if errors is not None:
            with contextlib.suppress(OSError):
                errors.send(f"{type(error).__name__}: {error}")
        raise


def _received(errors: Any) -> str | None:
    """The error a worker sent before it ended (None: it sent none), and the pipe closed."""
    try:
        return str(errors.recv()) if errors.poll() else None
    except (EOFError, OSError):
        return None
    finally:
        errors.close()


@dataclass
class _Slot:
    device: str
    busy: bool = False


class LocalExecutor(Executor):
    """K worker slots on this machine; every run gets a fresh process pinned to a device.

    Args:
        workers: concurrent runs (default: GPUs × runs_per_gpu, or 1 on CPU).
        runs_per_gpu: runs sharing one GPU.
        threads: threads per run (default: usable cores // workers, at least 1).
        devices: explicit device of each slot (e.g. ``["cuda:0", "cuda:0", "cuda:1"]``).
        preload: modules the forkserver imports once (default: torch, SpeechBrain, the runner).
        start_method: ``forkserver`` (default) or ``spawn``.
    """

    def __init__(
        self,
        workers: int | None = None,
        runs_per_gpu: int = 1,
        threads: int | None = None,
        devices: Sequence[str] | None = None,
        preload: Sequence[str] | None = None,
        start_method: str = "forkserver",
    ) -> None:
        if runs_per_gpu < 1:
            raise ValueError(f"runs_per_gpu must be >= 1, got {runs_per_gpu}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if devices is None:
            n_gpus = detect_gpus()
            if n_gpus:
                workers = workers or n_gpus * runs_per_gpu
                devices = [f"cuda:{(i // runs_per_gpu) % n_gpus}" for i in range(workers)]
            else:
                devices = ["cpu"] * (workers or 1)
        elif workers is not None and workers != len(devices):
            raise ValueError(f"workers={workers} but {len(devices)} devices were given")
        self.devices = list(devices)
        self.threads = threads or max(1, usable_cores() // len(self.devices))
        self.preload = list(preload) if preload is not None else None
        self.start_method = start_method

    @property
    def workers(self) -> int:
        return len(self.devices)

    def _context(self, plan: Plan) -> multiprocessing.context.BaseContext:
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            preload = self.preload
            if preload is None:
                preload = [*HEAVY_MODULES, plan.runner.partition(":")[0], "cltm_sb.grid.executors.local"]
            # First, so that the forkserver dies with the grid even while it imports torch.
            ctx.set_forkserver_preload([FORKSERVER_GUARD, *preload])
        return ctx

    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunOutcome], None]) -> None:
        ctx = self._context(plan)
        queue = deque(runs)
        slots = [_Slot(d) for d in self.devices]
        running: dict[int, tuple[Any, RunSpec, _Slot, float, Any]] = {}
        starting: Any = None  # a worker being started, not yet in `running`
        with _signals_interrupt():
            try:
                while queue or running:
                    for slot in slots:
                        if queue and not slot.busy:
                            spec = queue.popleft()
                            errors, sender = ctx.Pipe(duplex=False)
                            starting = ctx.Process(
                                target=_worker_main,
                                args=(plan, spec, slot.device, self.threads, sender),
                                name=f"cltm-{spec.run_id}",
                            )
                            try:
                                starting.start()
                            finally:
                                sender.close()  # the worker's copy is its own: EOF when it ends
                            slot.busy = True
                            running[starting.sentinel] = (starting, spec, slot, time.perf_counter(), errors)
                            starting = None
                    for sentinel in multiprocessing.connection.wait(list(running), timeout=1.0):
                        proc, spec, slot, start, errors = running.pop(sentinel)  # type: ignore[index]
                        proc.join()
                        slot.busy = False
                        said = _received(errors)
                        on_done(self._collect(plan, spec, proc.exitcode, slot, start, said))
            except BaseException:
                for entry in running.values():
                    entry[4].close()
                procs = [entry[0] for entry in running.values()]
                if starting is not None and starting.pid is not None:
                    procs.append(starting)
                self._stop(procs)
                raise

    def _collect(
        self, plan: Plan, spec: RunSpec, exitcode: int | None, slot: _Slot, start: float, said: str | None = None
    ) -> RunOutcome:
        """The record a worker wrote, or a failed record if it died without writing one.

        A worker that found the run locked by another live process left no record, and none is
        written: the run stays pending. The failed record is written under the run's lock, so
        that nothing is written while any process (a child of the dead worker) still holds it.
        """
        paths = plan.paths(spec)
        path = paths.record
        if exitcode == RUN_BUSY_EXIT:
            return RunBusy(spec.run_id, paths.lock, lock_holder(paths.lock))
        if exitcode in SLURM_STOP_EXITS and os.environ.get("SLURM_JOB_ID"):
            # SLURM stops the whole task (requeue, preemption, time-out, scancel): not a failure
            # of this run, which resumes from its checkpoint when the task starts again.
            raise GridInterrupted(-exitcode)
        if exitcode == 0 and path.is_file():
            return read_record(path)
        how = (
            f"killed by signal {signal.Signals(-exitcode).name}"
            if exitcode is not None and exitcode < 0
            else f"exited with code {exitcode}"
        )
        record = failed_record(
            plan,
            spec,
            f"worker process {how} before writing its record" + (f": {said}" if said else ""),
            threads=self.threads,
            device=slot.device,
            wall_time_s=round(time.perf_counter() - start, 3),
        )
        try:
            with run_lock(paths):
                write_record(record, path)
        except RunBusy as busy:
            return busy
        return record

    @staticmethod
    def _stop(procs: Sequence[Any]) -> None:
        """SIGTERM every worker's process group, then SIGKILL what is left after a grace time."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                if proc.is_alive():
                    # The worker itself too: it may not have made its own group yet.
                    for kill in (os.killpg, os.kill):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            kill(proc.pid, sig)
            deadline = time.monotonic() + TERMINATE_GRACE_S
            for proc in procs:
                proc.join(max(0.0, deadline - time.monotonic()))
            if not any(proc.is_alive() for proc in procs):
                break
