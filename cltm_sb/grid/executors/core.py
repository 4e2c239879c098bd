"""What every executor shares: one run turned into one record, the plan lock, signals, the base class.

Every executor runs the same function, :func:`execute_run`, which turns one :class:`RunSpec` into
one result record at ``<plan>/records/<run_id>.json``:

0. the run's lock ``<plan>/locks/<run_id>.lock`` is taken (``flock``) and held for the whole
   attempt; if another live process holds it (an attempt that is still training), the run is not
   started (:class:`RunBusy`) and stays pending;
1. the run's folder ``<plan>/runs/<run_id>/`` is emptied (only if it carries the grid's marker)
   and made again, unless an interrupted attempt left a checkpoint there: the recipe then
   resumes from it (a SLURM task requeued after preemption or a time-out, or a killed grid);
2. the plan's runner (``"package.module:function"``, by default :func:`cltm_sb.recipe.run.run_recipe`)
   is called as ``runner(task, overrides, hparams_file, run_id=, kind=, run_opts=, in_grid=True)``
   (``task``: a packaged task's name, or the :class:`~cltm_sb.tasks.Task` of one of one's own)
   and trains and evaluates, logging to ``<plan>/logs/<run_id>.log``; it returns a
   :class:`~cltm_sb.results.RunRecord` and writes no record itself;
3. the executor writes that record atomically, the one writer of ``records/<run_id>.json``; an
   exception becomes a ``status="failed"`` record with the error and the log path, and the other
   runs go on.

A killed grid leaves no partial record (atomic renames), no process of it outlives it (see
:mod:`~cltm_sb.grid.executors.local`), and a run without an ok record matching the plan's config
hash is run again by the next ``cltm run``.
"""

from __future__ import annotations

import contextlib
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
from typing import IO, Any

from tqdm import tqdm

from cltm_sb.grid.jobs import RECORD_TASK_KEY, InSlurm, runs_in_slurm, slurm_task_here
from cltm_sb.grid.layout import PlanError, RunPaths
from cltm_sb.grid.plan import Plan, RunSpec, config_changed, import_object
from cltm_sb.grid.status import plan_status, run_state
from cltm_sb.io import holding, try_lock
from cltm_sb.recipe.run_files import has_checkpoint
from cltm_sb.results import RecordError, RunRecord, write_record

logger = logging.getLogger(__name__)


class GridInterrupted(KeyboardInterrupt):
    """The grid received SIGINT, SIGTERM or SIGHUP; the runs in flight were stopped.

    ``signum`` is the signal; a command exits with ``128 + signum`` as a shell would report it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = int(signum)


class RunBusy(RuntimeError):
    """A run whose lock another live process holds: it was not started and stays pending.

    ``status`` is ``"busy"`` so that it reads like a record's outcome beside the records.
    """

    status = "busy"

    def __init__(self, run_id: str, lock: Path, holder: str) -> None:
        super().__init__(
            f"run {run_id} is still running elsewhere ({holder}; lock {lock}), so it was not "
            "started again; it stays pending: run `cltm run` again once that process has ended"
        )
        self.run_id = run_id
        self.lock = lock
        self.holder = holder


#: What an executor reports for one run: its record, or that it is still running elsewhere.
RunOutcome = RunRecord | RunBusy


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
    """Send logging (and, in a worker process, stdout/stderr) to the run's log file, once.

    In a worker, stdout/stderr already go into the log, so the handlers the root logger brought
    along (``logging.basicConfig`` in the main module, which multiprocessing imports again in
    every worker, or in a module the forkserver preloads) would write every line a second time:
    they are detached while the run lasts and the log's own handler is the only one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    inherited = list(root.handlers) if redirect_fds else []
    for other in inherited:
        root.removeHandler(other)
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
        for other in inherited:
            root.addHandler(other)
        root.setLevel(old_level)
        handler.close()
        if redirect_fds:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _lock_or_holder(path: Path) -> IO[str] | str:
    """:func:`cltm_sb.io.try_lock`, a file system without flock named as the plan folder's."""
    try:
        return try_lock(path)
    except OSError as error:
        raise PlanError(
            f"{path}: cannot lock ({error.strerror}); the file system of the plan folder does not "
            "support flock: keep the plan on a local disk or on a file system with locking"
        ) from error



@contextlib.contextmanager
def run_lock(paths: RunPaths) -> Iterator[None]:
    """Hold the run's lock for one attempt; :class:`RunBusy` if another live process holds it."""
    locked = _lock_or_holder(paths.lock)
    if isinstance(locked, str):
        raise RunBusy(paths.run_id, paths.lock, locked)
    with holding(locked):
        yield


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
        draw=spec.draw,
        draw_hash=plan.draw_hash(spec.draw),
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
    """Run one spec of the plan here and now; leaves exactly one record, written here.

    The run's lock is held from before its folder is cleared until its record is written, so an
    attempt never starts beside a live one: :class:`RunBusy` is raised instead and nothing of the
    run is touched. Exceptions of the runner become a failed record (``KeyboardInterrupt`` and
    ``SystemExit`` propagate and leave none: the run is then pending and restarts from scratch).
    """
    paths = plan.paths(spec)
    with run_lock(paths), _log_to(paths.log, redirect_output):
        # Asked again under the lock: an attempt that was still alive when the grid looked may
        # have finished since.
        state = run_state(plan, spec) if paths.record.is_file() else None
        if state is not None and state.state == "done" and state.record is not None:
            logger.info("run %s was finished meanwhile by another process; not run again", spec.run_id)
            return state.record
        resume = has_checkpoint(paths.run_dir)
        paths.fresh_run_dir(resume=resume)
        if resume:
            logger.info("run %s resumes from the checkpoint its last attempt left", spec.run_id)
        if threads is not None:
            set_threads(threads)
        start = time.perf_counter()
        logger.info("run %s (%s) on %s, %s threads", spec.run_id, spec.kind, device, threads)
        try:
            record = _call_runner(plan, spec, device, threads, start)
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
        task = slurm_task_here()
        if task is not None:  # which SLURM task finished the run, for `cltm status` and the wait
            record.extra[RECORD_TASK_KEY] = task
        write_record(record, paths.record)
        logger.info("run %s: %s in %.1f s", spec.run_id, record.status, record.wall_time_s or 0.0)
    return record


def _call_runner(plan: Plan, spec: RunSpec, device: str, threads: int | None, start: float) -> RunRecord:
    """The record of one attempt: what the plan's runner returns, checked and completed."""
    paths = plan.paths(spec)
    runner: Callable[..., Any] = import_object(plan.runner)
    # Before training: hparams or overrides edited since `cltm plan` (or since `cltm run` looked,
    # e.g. while a SLURM task waited in the queue) fail the run now, not after it has trained.
    plan.require_current_config()
    plan.require_current_data()
    record = runner(
        plan.runner_task,  # a packaged task's name, or the declaration of one's own
        plan.run_overrides(spec),
        plan.hparams_file,
        run_id=spec.run_id,
        kind=spec.kind,
        run_opts={"device": device},
        in_grid=True,
    )
    if not isinstance(record, RunRecord):
        raise RecordError(
            f"the runner {plan.runner} returned {type(record).__name__}, not a RunRecord: in a grid "
            "the runner returns its record and the executor writes it"
        )
    if record.status == "ok" and record.config_hash != plan.config_hash:
        # Still needed: the files may change while the run trains, or the runner may record a
        # hash its config_hash_for does not give.
        raise RecordError(config_changed(plan, record.config_hash, "the run's"))
    if record.status == "ok" and record.data_hash and record.data_hash != plan.data_hash:
        # Recorded as ok, it would never count as done and be trained again by every `cltm run`.
        raise RecordError(
            f"the run read data of hash {record.data_hash}, not the plan's {plan.data_hash} "
            f"({plan.data_dir}); restore the plan's data, or make the plan again (`cltm plan ... --force`)"
        )
    missing = sorted(set(spec.eval_locales) - {e.locale for e in record.evaluations})
    if record.status == "ok" and missing:
        raise RecordError(f"the runner returned no evaluation on {missing}")
    if record.log_path and record.log_path != str(paths.log):
        record.extra.setdefault("runner_log", record.log_path)
    record.log_path = str(paths.log)
    record.run_id = spec.run_id
    # The plan knows the draw, also for a runner of the user's that does not (DESIGN.md §9).
    record.draw, record.draw_hash = spec.draw, plan.draw_hash(spec.draw)
    if record.wall_time_s is None:
        record.wall_time_s = round(time.perf_counter() - start, 3)
    if record.threads is None:
        record.threads = threads
    record.device = record.device or device
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
    in_slurm: list[InSlurm] = field(default_factory=list)  # left alone: queued/running in SLURM
    elsewhere: list[RunBusy] = field(default_factory=list)  # not started: locked by a live process

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.records if r.status != "ok"]

    @property
    def n_ok(self) -> int:
        return sum(r.status == "ok" for r in self.records)


@contextlib.contextmanager
def plan_lock(plan: Plan) -> Iterator[None]:
    """Hold ``<plan>/.lock`` so that two ``cltm run`` never work on one plan at once.

    A ``flock``: a holder that died, even by SIGKILL, holds nothing, whatever the file still says.
    """
    plan.plan_dir.mkdir(parents=True, exist_ok=True)
    locked = _lock_or_holder(plan.layout.lock_file)
    if isinstance(locked, str):
        raise PlanError(
            f"{plan.plan_dir}: another `cltm run` ({locked}) is working on this plan; "
            "wait for it or stop it"
        )
    with holding(locked):
        yield


#: Signals that stop a grid: Ctrl-C, ``kill``, and a closed terminal or SSH session.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`GridInterrupted` while the grid runs.

    Only the first signal raises: a second one would break off the stopping of the workers,
    and the grid's exit would then wait for them (multiprocessing joins its children at exit).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise GridInterrupted(signum)

    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
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

        Returns what ran; a failing run is recorded and reported, never raised. A run whose
        lock another live process holds (an earlier attempt still training) is not started: it
        is listed in the report's ``elsewhere`` and stays pending. SIGINT, SIGTERM and SIGHUP
        stop the runs in flight and raise :class:`GridInterrupted`.
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
        # Whatever the executor, a run this grid submitted to SLURM that is still queued or
        # running there is not started again (it would run twice and race for its record).
        in_slurm = runs_in_slurm(plan, remember_ended=True)
        busy = [in_slurm[s.run_id] for s in todo if s.run_id in in_slurm]
        todo = [s for s in todo if s.run_id not in in_slurm]
        considered = len(states) if wanted is None else len(wanted)
        report = GridReport(n_runs=len(todo), n_skipped=considered - len(todo), in_slurm=busy)
        if not todo:
            return report
        plan.require_current_identity(len(todo))  # an old plan: the user chooses keep or retrain
        plan.require_current_config()  # once for the grid, before any run trains or is submitted
        plan.require_current_data()
        with _signals_interrupt(), plan_lock(plan), tqdm(
            total=len(todo), unit="run", desc=f"cltm {plan.task}", disable=not progress,
            dynamic_ncols=True,
        ) as bar:

            def on_done(record: RunOutcome) -> None:
                bar.update(1)
                if isinstance(record, RunBusy):
                    report.elsewhere.append(record)
                    bar.write(f"NOT STARTED {record}")
                    return
                report.records.append(record)
                bar.set_postfix_str(f"{record.run_id} {record.wall_time_s or 0:.1f}s", refresh=True)
                if record.status != "ok":
                    bar.write(f"FAILED {record.run_id}: {record.error} (log: {record.log_path})")

            report.submitted = bool(self._execute(plan, todo, on_done))
        return report

    @abstractmethod
    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunOutcome], None]) -> bool | None:
        """Run ``runs`` and call ``on_done`` with each outcome; return True if only submitted.

        An outcome is a run's record, or :class:`RunBusy` for a run that another live process
        is still training (not started, no record).
        """


class InProcessExecutor(Executor):
    """Runs one run after the other in this process (no isolation: for tests and debugging)."""

    def __init__(self, device: str = "cpu", threads: int | None = None) -> None:
        self.device = device
        self.threads = threads

    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunOutcome], None]) -> None:
        for spec in runs:
            try:
                outcome: RunOutcome = execute_run(plan, spec, self.device, self.threads)
            except RunBusy as busy:
                outcome = busy
            on_done(outcome)
