"""Where the runs of a plan execute: local worker processes, a SLURM cluster, or in-process.

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

:class:`LocalExecutor` gives every run a fresh process forked from a forkserver that has already
imported torch and SpeechBrain, so a run does not pay their import time; runs are pinned to a
device and a fixed thread count. :class:`SlurmExecutor` submits job arrays through submitit, with
several runs per array task. :class:`InProcessExecutor` runs everything in the calling process
(tests, debugging).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cltm_sb.grid import Plan, PlanError, RunSpec, import_object, load_plan, plan_status
from cltm_sb.results import RecordError, RunRecord, read_record, write_record

logger = logging.getLogger(__name__)

HEAVY_MODULES = ("torch", "torchaudio", "speechbrain", "hyperpyyaml", "cltm_sb.results")
LOCK_FILE = ".lock"
TERMINATE_GRACE_S = 5.0


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
    path = plan.plan_dir / LOCK_FILE
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
                preload = [*HEAVY_MODULES, plan.runner.partition(":")[0], "cltm_sb.executors"]
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


# --------------------------------------------------------------------------------------------
# SLURM


# Options of the SLURM executor, with their defaults; `slurm_parameters` maps them to submitit.
SLURM_OPTIONS: dict[str, Any] = {
    "partition": None,
    "account": None,
    "qos": None,
    "constraint": None,
    "time": 60,  # minutes per array task, or "HH:MM:SS" / "D-HH:MM:SS"
    "gpus": 0,  # per array task
    "cpus_per_task": 1,
    "mem_gb": None,
    "array_parallelism": 16,  # simultaneous array tasks
    "runs_per_task": 1,  # runs one array task works through (amortises start-up)
    "runs_per_gpu": 1,  # runs sharing a GPU inside an array task
    "job_name": "cltm",
    "setup": [],  # shell lines run before the task (e.g. "module load cuda")
    "additional": {},  # any other sbatch option, e.g. {"mail-type": "END"}
}


def check_slurm_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``options`` with the defaults; an unknown key raises with the valid keys listed."""
    unknown = sorted(set(options) - set(SLURM_OPTIONS))
    if unknown:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in SLURM_OPTIONS.items())
        raise ValueError(f"unknown SLURM options {unknown}; valid options: {valid}")
    merged = {**SLURM_OPTIONS, **{k: v for k, v in options.items() if v is not None}}
    for key in ("runs_per_task", "array_parallelism", "cpus_per_task", "runs_per_gpu"):
        if int(merged[key]) < 1:
            raise ValueError(f"SLURM option {key} must be >= 1, got {merged[key]}")
    if int(merged["gpus"]) < 0:
        raise ValueError(f"SLURM option gpus must be >= 0, got {merged['gpus']}")
    parse_minutes(merged["time"])
    return merged


def parse_minutes(value: Any) -> int:
    """Minutes from an int or a SLURM time string (``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minutes = int(value)
    else:
        text = str(value).strip()
        days = 0
        if "-" in text:
            day_text, text = text.split("-", 1)
            days = int(day_text)
        try:
            parts = [int(p) for p in text.split(":")]
        except ValueError:
            raise ValueError(f"SLURM time {value!r}: expected minutes, HH:MM:SS or D-HH:MM:SS") from None
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) == 2:
            minutes = parts[0] * 60 + parts[1] if days else parts[0] + (parts[1] > 0)
        elif len(parts) == 3:
            minutes = parts[0] * 60 + parts[1] + (parts[2] > 0)
        else:
            raise ValueError(f"SLURM time {value!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
        minutes += days * 24 * 60
    if minutes < 1:
        raise ValueError(f"SLURM time {value!r} must be at least one minute")
    return minutes


def slurm_parameters(options: Mapping[str, Any]) -> dict[str, Any]:
    """submitit ``update_parameters`` keywords for the (checked) options."""
    o = check_slurm_options(options)
    params: dict[str, Any] = {
        "name": o["job_name"],
        "timeout_min": parse_minutes(o["time"]),
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": int(o["cpus_per_task"]),
        "slurm_array_parallelism": int(o["array_parallelism"]),
    }
    if int(o["gpus"]):
        params["gpus_per_node"] = int(o["gpus"])
    if o["mem_gb"] is not None:
        params["mem_gb"] = float(o["mem_gb"])
    for key in ("partition", "account", "qos", "constraint"):
        if o[key]:
            params[f"slurm_{key}"] = str(o[key])
    if o["setup"]:
        params["slurm_setup"] = [str(line) for line in o["setup"]]
    if o["additional"]:
        params["slurm_additional_parameters"] = {str(k): v for k, v in dict(o["additional"]).items()}
    return dict(sorted(params.items()))


def sbatch_script(options: Mapping[str, Any], folder: str | os.PathLike, n_tasks: int = 1) -> str:
    """The sbatch script submitit would submit for one array of ``n_tasks`` (for review, tests).

    Works on any machine: rendering a script needs no SLURM installation.
    """
    import submitit

    class ScriptOnlySlurmExecutor(submitit.SlurmExecutor):
        """submitit's SLURM executor without its check for ``srun``; it renders, never submits."""

        @classmethod
        def affinity(cls) -> int:
            return 1

    executor = ScriptOnlySlurmExecutor(folder=Path(folder) / "%j")
    params = slurm_parameters(options)
    # The same split AutoExecutor makes: generic names are renamed, ``slurm_`` ones lose the prefix.
    generic = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    specific = {k.removeprefix("slurm_"): v for k, v in params.items() if k.startswith("slurm_")}
    executor.update_parameters(**executor._convert_parameters(generic), **specific)  # noqa: SLF001
    if n_tasks > 1:
        executor.parameters["map_count"] = n_tasks
    return executor._make_submission_file_text("python -u -m submitit.core._submit <FOLDER>", "<UID>")


def read_slurm_config(path: str | os.PathLike) -> dict[str, Any]:
    """SLURM options from a YAML file (a mapping of the keys of :data:`SLURM_OPTIONS`)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read SLURM options ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of SLURM options")
    try:
        check_slurm_options(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return data


def slurm_task(plan_dir: str, run_ids: list[str], runs_per_gpu: int = 1) -> list[tuple[str, str]]:
    """Body of one SLURM array task: run ``run_ids`` with local workers on the allocated devices."""
    plan = load_plan(plan_dir)
    specs = [plan.run(run_id) for run_id in run_ids]
    executor = LocalExecutor(runs_per_gpu=runs_per_gpu)
    done: list[tuple[str, str]] = []
    executor._execute(plan, specs, lambda r: done.append((r.run_id, r.status)))
    return done


class SlurmExecutor(Executor):
    """Job arrays through submitit; ``runs_per_task`` runs share one array task.

    Args:
        options: keys of :data:`SLURM_OPTIONS` (unknown keys raise).
        wait: follow the jobs until they end (else submit and return; see ``cltm status``).
        cluster: submitit cluster (``slurm``; ``local`` or ``debug`` for tests without SLURM).
        poll_s: seconds between looks at the records while waiting.
    """

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        wait: bool = True,
        cluster: str = "slurm",
        poll_s: float = 5.0,
    ) -> None:
        self.options = check_slurm_options(options or {})
        self.wait = wait
        self.cluster = cluster
        self.poll_s = poll_s

    def chunks(self, runs: Sequence[RunSpec]) -> list[list[str]]:
        """Run ids grouped ``runs_per_task`` at a time, in plan order."""
        k = int(self.options["runs_per_task"])
        return [[s.run_id for s in runs[i : i + k]] for i in range(0, len(runs), k)]

    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunRecord], None]) -> bool:
        import submitit

        folder = plan.plan_dir / "slurm" / "%j"
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params = slurm_parameters(self.options)
        if self.cluster != "slurm":
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        chunks = self.chunks(runs)
        submitted_at = time.time()
        jobs = executor.map_array(
            slurm_task,
            [str(plan.plan_dir)] * len(chunks),
            chunks,
            [int(self.options["runs_per_gpu"])] * len(chunks),
        )
        logger.info(
            "submitted %d runs as %d array tasks (job %s)", len(runs), len(chunks),
            jobs[0].job_id.split("_")[0] if jobs else "-",
        )
        if not self.wait:
            return True
        by_id = {s.run_id: s for s in runs}
        pending = {run_id: job for job, ids in zip(jobs, chunks) for run_id in ids}
        try:
            with _signals_interrupt():
                while pending:
                    for run_id, job in list(pending.items()):
                        record = self._fresh_record(plan, run_id, submitted_at)
                        if record is None and job.done():
                            record = self._fresh_record(plan, run_id, submitted_at) or self._job_failure(
                                plan, by_id[run_id], job
                            )
                        if record is not None:
                            del pending[run_id]
                            on_done(record)
                    if pending:
                        time.sleep(self.poll_s)
        except BaseException:
            for job in {id(j): j for j in pending.values()}.values():
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
            raise
        return False

    @staticmethod
    def _fresh_record(plan: Plan, run_id: str, since: float) -> RunRecord | None:
        path = plan.paths(run_id).record
        try:
            if path.stat().st_mtime < since - 2.0:
                return None
            return read_record(path)
        except (FileNotFoundError, RecordError):
            return None

    @staticmethod
    def _job_failure(plan: Plan, spec: RunSpec, job: Any) -> RunRecord:
        try:
            error = job.exception()
            message = f"SLURM job {job.job_id} ended without a record: {error!r}" if error else (
                f"SLURM job {job.job_id} ended without a record (state {job.state})"
            )
        except Exception as error:  # noqa: BLE001 - the job's own failure text
            message = f"SLURM job {job.job_id} failed: {type(error).__name__}: {error}"
        record = failed_record(plan, spec, message, extra={"slurm_stderr": str(job.paths.stderr)})
        write_record(record, plan.paths(spec).record)
        return record


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
