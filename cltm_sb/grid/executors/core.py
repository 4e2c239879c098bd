"""What every executor shares: one run turned into one record, the plan lock, signals, the base class.

Every executor runs the same function, :func:`execute_run`, which turns one :class:`RunSpec` into
one result record at ``<plan>/records/<run_id>.json``:

1. the run's folder ``<plan>/runs/<run_id>/`` is emptied (only if it carries the grid's marker)
   and made again, so an interrupted run restarts from scratch;
2. the plan's runner (``"package.module:function"``, by default :func:`cltm_sb.runner.run_recipe`)
   trains and evaluates, logging to ``<plan>/logs/<run_id>.log``;
3. the record is written atomically; an exception becomes a ``status="failed"`` record with the
   error and the log path, and the other runs go on.

A killed grid leaves no partial record (atomic renames), and a run without an ok record matching
the plan's config hash is run again by the next ``cltm run``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cltm_sb.grid.layout import PlanError
from cltm_sb.grid.plan import Plan, RunSpec, import_object
from cltm_sb.grid.status import plan_status
from cltm_sb.results import RecordError, RunRecord, read_record, write_record

logger = logging.getLogger(__name__)


class GridInterrupted(KeyboardInterrupt):
    """The grid received SIGINT or SIGTERM; the runs in flight were stopped."""


# --------------------------------------------------------------------------------------------
# One run


def usable_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """Fix the thread count of this process (torch intra-op and the usual BLAS variables)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def _log_to(path: Path, redirect_fds: bool) -> Iterator[None]:
    """Send logging (and, in a worker process, stdout/stderr) to the run's log file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    saved: list[int] = []
    if redirect_fds:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        saved = [os.dup(1), os.dup(2)]
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        if redirect_fds:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def failed_record(plan: Plan, spec: RunSpec, error: str, **extra: Any) -> RunRecord:
    """The record of a run that did not finish."""
    return RunRecord(
        run_id=spec.run_id,
        task=spec.task,
        kind=spec.kind,
        train_set=spec.train_set,
        seed=spec.seed,
        status="failed",
        config_hash=plan.config_hash,
        data_hash=plan.data_hash,
        error=error,
        log_path=str(plan.paths(spec).log),
        **extra,
    )


def execute_run(
    plan: Plan,
    spec: RunSpec,
    device: str = "cpu",
    threads: int | None = None,
    redirect_output: bool = False,
) -> RunRecord:
    """Run one spec of the plan here and now; always leaves exactly one record.

    Exceptions of the runner become a failed record (``KeyboardInterrupt`` and ``SystemExit``
    propagate and leave none: the run is then pending and restarts from scratch).
    """
    paths = plan.paths(spec)
    paths.fresh_run_dir()
    if threads is not None:
        set_threads(threads)
    start = time.perf_counter()
    with _log_to(paths.log, redirect_output):
        logger.info("run %s (%s) on %s, %s threads", spec.run_id, spec.kind, device, threads)
        try:
            runner: Callable[..., Any] = import_object(plan.runner)
            result = runner(
                plan.task,
                plan.run_overrides(spec),
                plan.hparams_file,
                run_id=spec.run_id,
                kind=spec.kind,
                record_path=str(paths.record),
                run_opts={"device": device},
            )
            record = result if isinstance(result, RunRecord) else read_record(paths.record)
            if record.status == "ok" and record.config_hash != plan.config_hash:
                raise RecordError(
                    f"the run's config hash {record.config_hash} is not the plan's "
                    f"{plan.config_hash}: the hparams changed since `cltm plan` (or the runner's "
                    "config_hash_for disagrees with it); make the plan again"
                )
            missing = sorted(set(spec.eval_locales) - {e.locale for e in record.evaluations})
            if record.status == "ok" and missing:
                raise RecordError(f"the runner returned no evaluation on {missing}")
            if record.log_path and record.log_path != str(paths.log):
                record.extra.setdefault("runner_log", record.log_path)
            record.log_path = str(paths.log)
            record.run_id = spec.run_id
            if record.wall_time_s is None:
                record.wall_time_s = round(time.perf_counter() - start, 3)
            if record.threads is None:
                record.threads = threads
            record.device = record.device or device
        except Exception as error:  # noqa: BLE001 - every failure is recorded, the grid goes on
            logger.error("run %s failed:\n%s", spec.run_id, traceback.format_exc())
            record = failed_record(
                plan,
                spec,
                f"{type(error).__name__}: {error}",
                threads=threads,
                device=device,
                wall_time_s=round(time.perf_counter() - start, 3),
            )
        write_record(record, paths.record)
        logger.info("run %s: %s in %.1f s", spec.run_id, record.status, record.wall_time_s or 0.0)
    return record


# --------------------------------------------------------------------------------------------
# Executors


@dataclass
class GridReport:
    """What one ``run`` call did."""

    n_runs: int
    n_skipped: int
    records: list[RunRecord] = field(default_factory=list)
    submitted: bool = False

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.status != "ok"]

    @property
    def n_ok(self) -> int:
        return sum(r.status == "ok" for r in self.records)


@contextlib.contextmanager
def plan_lock(plan: Plan) -> Iterator[None]:
    """Hold ``<plan>/.lock`` so that two ``cltm run`` never work on one plan at once."""
    plan.plan_dir.mkdir(parents=True, exist_ok=True)
    path = plan.layout.lock_file
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PlanError(
                f"{plan.plan_dir}: another `cltm run` ({holder}) is working on this plan; "
                "wait for it or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`GridInterrupted` while the grid runs."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise GridInterrupted(f"received {signal.Signals(signum).name}")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


class Executor(ABC):
    """Runs the pending runs of a plan; subclasses say where (:meth:`_execute`)."""

    def run(
        self,
        plan: Plan,
        run_ids: Sequence[str] | None = None,
        *,
        retry_failed: bool = True,
        progress: bool = True,
    ) -> GridReport:
        """Run every run of ``plan`` that has no ok record (failed ones too unless told not to).

        Returns what ran; a failing run is recorded and reported, never raised.
        """
        states = plan_status(plan)
        wanted = set(run_ids) if run_ids is not None else None
        if wanted is not None:
            unknown = sorted(wanted - {s.spec.run_id for s in states})
            if unknown:
                raise PlanError(f"{plan.plan_file}: no runs {unknown}")
        todo = [
            s.spec
            for s in states
            if (wanted is None or s.spec.run_id in wanted)
            and (s.state == "pending" or (retry_failed and s.state == "failed"))
        ]
        considered = len(states) if wanted is None else len(wanted)
        report = GridReport(n_runs=len(todo), n_skipped=considered - len(todo))
        if not todo:
            return report
        with plan_lock(plan), tqdm(
            total=len(todo), unit="run", desc=f"cltm {plan.task}", disable=not progress,
            dynamic_ncols=True,
        ) as bar:

            def on_done(record: RunRecord) -> None:
                report.records.append(record)
                bar.update(1)
                bar.set_postfix_str(f"{record.run_id} {record.wall_time_s or 0:.1f}s", refresh=True)
                if record.status != "ok":
                    bar.write(f"FAILED {record.run_id}: {record.error} (log: {record.log_path})")

            report.submitted = bool(self._execute(plan, todo, on_done))
        return report

    @abstractmethod
    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunRecord], None]) -> bool | None:
        """Run ``runs`` and call ``on_done`` with each record; return True if only submitted."""


class InProcessExecutor(Executor):
    """Runs one run after the other in this process (no isolation: for tests and debugging)."""

    def __init__(self, device: str = "cpu", threads: int | None = None) -> None:
        self.device = device
        self.threads = threads

    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunRecord], None]) -> None:
        for spec in runs:
            on_done(execute_run(plan, spec, self.device, self.threads))
