"""Local execution: K worker slots on this machine, every run in a fresh process.

:class:`LocalExecutor` gives every run a fresh process forked from a forkserver that has already
imported torch and SpeechBrain, so a run does not pay their import time; runs are pinned to a
device and a fixed thread count.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cltm_sb.grid.executors.core import (
    Executor,
    _signals_interrupt,
    execute_run,
    failed_record,
    usable_cores,
)
from cltm_sb.grid.plan import Plan, RunSpec
from cltm_sb.results import RunRecord, read_record, write_record

HEAVY_MODULES = ("torch", "torchaudio", "speechbrain", "hyperpyyaml", "cltm_sb.results")
TERMINATE_GRACE_S = 5.0


def detect_gpus() -> int:
    """Number of visible CUDA devices (0 without torch or CUDA)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable CUDA means CPU
        return 0


def _worker_main(plan: Plan, spec: RunSpec, device: str, threads: int) -> None:
    """Body of a worker process: its own process group, SIGINT left to the grid, logs redirected."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    execute_run(plan, spec, device, threads, redirect_output=True)


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
            ctx.set_forkserver_preload(preload)
        return ctx

    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunRecord], None]) -> None:
        ctx = self._context(plan)
        queue = deque(runs)
        slots = [_Slot(d) for d in self.devices]
        running: dict[int, tuple[Any, RunSpec, _Slot, float]] = {}
        with _signals_interrupt():
            try:
                while queue or running:
                    for slot in slots:
                        if queue and not slot.busy:
                            spec = queue.popleft()
                            proc = ctx.Process(
                                target=_worker_main,
                                args=(plan, spec, slot.device, self.threads),
                                name=f"cltm-{spec.run_id}",
                            )
                            proc.start()
                            slot.busy = True
                            running[proc.sentinel] = (proc, spec, slot, time.perf_counter())
                    for sentinel in multiprocessing.connection.wait(list(running), timeout=1.0):
                        proc, spec, slot, start = running.pop(sentinel)  # type: ignore[index]
                        proc.join()
                        slot.busy = False
                        on_done(self._collect(plan, spec, proc.exitcode, slot, start))
            except BaseException:
                self._stop([entry[0] for entry in running.values()])
                raise

    def _collect(self, plan: Plan, spec: RunSpec, exitcode: int | None, slot: _Slot, start: float) -> RunRecord:
        """The record a worker wrote, or a failed record if it died without writing one."""
        path = plan.paths(spec).record
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
            f"worker process {how} before writing its record",
            threads=self.threads,
            device=slot.device,
            wall_time_s=round(time.perf_counter() - start, 3),
        )
        write_record(record, path)
        return record

    @staticmethod
    def _stop(procs: Sequence[Any]) -> None:
        """SIGTERM every worker's process group, then SIGKILL what is left after a grace time."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                if proc.is_alive():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            deadline = time.monotonic() + TERMINATE_GRACE_S
            for proc in procs:
                proc.join(max(0.0, deadline - time.monotonic()))
            if not any(proc.is_alive() for proc in procs):
                break
