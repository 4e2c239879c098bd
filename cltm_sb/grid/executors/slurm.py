"""SLURM execution: job arrays through submitit, several runs per array task.

A preempted or timed-out array task is requeued, at most :data:`MAX_REQUEUES` times: SLURM
requeues a preempted one (``scontrol requeue`` does the same), submitit requeues one that nears
its time limit (the task is checkpointable: :class:`SlurmTask`). A task stopped by SLURM leaves
no result and no failed record, so that the job counts as requeued, not ended; when it starts
again its runs resume from their checkpoints (the executor keeps a run folder that holds one).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cltm_sb.grid import jobs as slurm_jobs
from cltm_sb.grid.executors.core import (
    Executor,
    GridInterrupted,
    RunBusy,
    RunOutcome,
    _signals_interrupt,
    failed_record,
    run_lock,
)
from cltm_sb.grid.executors.local import LocalExecutor
from cltm_sb.grid.jobs import mark_cancelled, record_submission, runs_in_slurm
from cltm_sb.grid.plan import Plan, RunSpec, load_plan
from cltm_sb.io import lock_holder, tail_text, yaml_syntax_error
from cltm_sb.results import RunRecord, read_record, write_record

logger = logging.getLogger(__name__)


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
        if _as_number(merged, key, int) < 1:
            raise ValueError(f"SLURM option {key} must be >= 1, got {merged[key]}")
    if _as_number(merged, "gpus", int) < 0:
        raise ValueError(f"SLURM option gpus must be >= 0, got {merged['gpus']}")
    if merged["mem_gb"] is not None and _as_number(merged, "mem_gb", float) <= 0:
        raise ValueError(f"SLURM option mem_gb must be > 0, got {merged['mem_gb']}")
    # One line given as a string is one line, not one line per character.
    if isinstance(merged["setup"], str):
        merged["setup"] = [merged["setup"]]
    if not isinstance(merged["setup"], list):
        raise ValueError(f"SLURM option setup must be a list of shell lines, got {merged['setup']!r}")
    if not isinstance(merged["additional"], Mapping):
        raise ValueError(
            f"SLURM option additional must be a mapping of sbatch options (e.g. {{mail-type: END}}), "
            f"got {merged['additional']!r}"
        )
    parse_minutes(merged["time"])
    return merged


def _as_number(options: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> int | float:
    """``options[key]`` as a number; anything else raises naming the key (not a bare int() error)."""
    value = options[key]
    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"SLURM option {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"SLURM option {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None


def parse_minutes(value: Any) -> int:
    """Minutes from an int or a SLURM time string (``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minutes = int(value)
    else:
        text = str(value).strip()
        days, with_days = 0, "-" in text
        try:
            if with_days:
                day_text, text = text.split("-", 1)
                days = int(day_text)
            parts = [int(p) for p in text.split(":")]
        except ValueError:
            raise ValueError(f"SLURM time {value!r}: expected minutes, HH:MM:SS or D-HH:MM:SS") from None
        # After "D-" SLURM reads hours first ("1-12" is 36 h, "0-12:30" 12.5 h); without it
        # minutes ("30", "30:15").
        if len(parts) == 1:
            minutes = parts[0] * 60 if with_days else parts[0]
        elif len(parts) == 2:
            minutes = parts[0] * 60 + parts[1] if with_days else parts[0] + (parts[1] > 0)
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
    """SLURM options from a YAML file (a mapping of the keys of :data:`SLURM_OPTIONS`).

    Read as YAML 1.2, like the hparams files: YAML 1.1 (PyYAML) reads ``time: 4:00:00`` as the
    base-60 integer 14400, which would then ask SLURM for 14400 minutes (10 days), not 4 hours.
    """
    from ruamel.yaml import YAML, YAMLError

    path = Path(path)
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read SLURM options ({error})") from error
    except YAMLError as error:
        # ruamel's own text spans several lines and names no file.
        raise ValueError(f"{yaml_syntax_error(path, error)}; fix it there (a YAML mapping of SLURM options)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of SLURM options")
    try:
        check_slurm_options(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return data


#: Requeues of one array task (after preemption or a time-out) before its runs are failed.
MAX_REQUEUES = 3


def slurm_task(plan_dir: str, run_ids: list[str], runs_per_gpu: int = 1) -> list[tuple[str, str]]:
    """Body of one SLURM array task: run ``run_ids`` with local workers on the allocated devices.

    Stopped by SLURM (SIGTERM of a requeue, a preemption or ``scancel``), the task ends at once
    without a result: its unfinished runs keep their checkpoints and write no record. Started
    more than :data:`MAX_REQUEUES` times again, it fails its unfinished runs instead of training.
    """
    plan = load_plan(plan_dir)
    specs = [plan.run(run_id) for run_id in run_ids]
    done: list[tuple[str, str]] = []
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    if restarts > MAX_REQUEUES:
        for spec in specs:
            paths = plan.paths(spec)
            if paths.record.is_file() and read_record(paths.record).status == "ok":
                continue
            record = failed_record(plan, spec, f"the SLURM task was requeued {restarts} times (at most "
                                   f"{MAX_REQUEUES}); its checkpoint stays: `cltm run` resumes it")
            with run_lock(paths):
                write_record(record, paths.record)
            done.append((spec.run_id, record.status))
        return done
    executor = LocalExecutor(runs_per_gpu=runs_per_gpu)
    try:
        executor._execute(plan, specs, lambda r: done.append((r.run_id, r.status)))
    except GridInterrupted as stop:
        # No result file: submitit and `cltm run` then see a requeued job, not an ended one.
        logger.warning("SLURM stopped this task (%s); its runs resume when it starts again", stop)
        logging.shutdown()
        os._exit(128 + stop.signum)
    return done


class SubmissionError(OSError):
    """sbatch refused a submission (or cannot be run): nothing of it was submitted.

    An :class:`OSError`: the machine, not the user's input (``cltm run`` prints one line, exit 1).
    """

    def __init__(self, plan: Plan, chunks: Sequence[Sequence[str]], error: BaseException) -> None:
        said = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        n_runs = sum(map(len, chunks))
        advice = (
            _array_too_large(n_runs, len(chunks), max(map(len, chunks)))
            if _ARRAY_REFUSED.search(said) and len(chunks) > 1
            else "check that SLURM works on this host (`sinfo`, `sbatch --version`), "
            "or run the plan here with --executor local"
        )
        super().__init__(
            f"{plan.plan_dir}: sbatch did not submit the {n_runs} run(s) ({said or type(error).__name__}); "
            f"nothing was submitted: {advice}"
        )


#: sbatch's refusal of an array larger than the cluster's MaxArraySize (SLURM's ESLURM_INVALID_ARRAY).
_ARRAY_REFUSED = re.compile(r"invalid job array specification", re.IGNORECASE)


def _array_too_large(n_runs: int, n_tasks: int, runs_per_task: int) -> str:
    """What to do when SLURM refused an array of ``n_tasks`` tasks: fewer, fuller tasks."""
    doubled = 2 * runs_per_task
    return (
        f"the job array asked for {n_tasks} tasks ({runs_per_task} run(s) per task), probably more than "
        "this cluster's MaxArraySize (`scontrol show config | grep MaxArraySize`): raise --runs-per-task "
        f"(runs_per_task in --slurm-config) so that the array has at most MaxArraySize tasks, e.g. "
        f"--runs-per-task {doubled} asks for {math.ceil(n_runs / doubled)}"
    )


def _vanished_message(job: Any) -> str:
    """The failure of a job that SLURM no longer lists and that left neither record nor result."""
    return (
        f"SLURM job {job.job_id} ended without a record: squeue no longer lists it and sacct did not say "
        f"how it ended (out of memory, a node failure or scancel?); its stderr: {job.paths.stderr}; "
        "`cltm run` runs it again"
    )


#: Characters of a failed task's stderr line kept in a run's error; the stderr file keeps it all.
STDERR_LINE_CHARS = 300


def _stderr_line(job: Any, said: str) -> str:
    """One line of why an array task failed: the last non-empty line of its stderr file, else of
    ``said`` (submitit's text, which quotes the whole stderr), cut to :data:`STDERR_LINE_CHARS`.

    The last line is SLURM's own note (out of memory, time limit) or a traceback's exception.
    """
    lines = [line.strip() for line in (tail_text(job.paths.stderr) or said).splitlines() if line.strip()]
    last = lines[-1] if lines else said.strip()
    return last if len(last) <= STDERR_LINE_CHARS else last[: STDERR_LINE_CHARS - 3] + "..."


#: The files submitit writes into the job folder before sbatch answers (uuid-named).
_SUBMISSION_FILE = re.compile(r"(\.submission_file_)?[0-9a-f]{32}\.(pkl|sh)")


def _submission_files(folder: Path) -> set[Path]:
    """submitit's not-yet-submitted job files directly in ``folder`` (job folders are left)."""
    if not folder.is_dir():
        return set()
    return {path for path in folder.iterdir() if _SUBMISSION_FILE.fullmatch(path.name) and path.is_file()}


class SlurmTask:
    """:func:`slurm_task` as submitit's checkpointable callable: near its time limit (SIGUSR2)
    submitit calls :meth:`checkpoint` and requeues the same call, whose runs resume from their
    checkpoints (at most ``MAX_REQUEUES`` time-outs: submitit's ``max_num_timeout``)."""

    def __call__(self, plan_dir: str, run_ids: list[str], runs_per_gpu: int = 1) -> list[tuple[str, str]]:
        return slurm_task(plan_dir, run_ids, runs_per_gpu)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The same call again: the runs' own checkpoints hold the progress."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


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

    def _submit(self, plan: Plan, chunks: list[list[str]]) -> list[Any]:
        """Submit one array job, one task per chunk of run ids; submitit's jobs, in chunk order.

        A refused submission (sbatch fails, or is not installed) is a :class:`SubmissionError`
        with sbatch's own message, and the files submitit wrote for the jobs are removed.
        """
        import submitit
        from submitit.core.utils import FailedSubmissionError

        folder = plan.layout.slurm_dir / "%j"
        before = _submission_files(plan.layout.slurm_dir)
        said = io.StringIO()
        try:
            # No srun here (no SLURM) is a RuntimeError of submitit's constructor.
            executor = submitit.AutoExecutor(
                folder=folder, cluster=self.cluster, slurm_max_num_timeout=MAX_REQUEUES
            )
            params = slurm_parameters(self.options)
            if self.cluster != "slurm":
                params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
            executor.update_parameters(**params)
            # submitit prints sbatch's stderr itself before raising: the error below says it once.
            with contextlib.redirect_stderr(said):
                jobs = executor.map_array(
                    SlurmTask(),
                    [str(plan.plan_dir)] * len(chunks),
                    chunks,
                    [int(self.options["runs_per_gpu"])] * len(chunks),
                )
        except FailedSubmissionError:
            raise  # sbatch accepted the job but its answer was not understood: its files stay
        # sbatch failed (submitit's FailedJobError), no srun (RuntimeError) or no sbatch (OSError).
        except (RuntimeError, OSError) as error:
            for orphan in _submission_files(plan.layout.slurm_dir) - before:
                orphan.unlink(missing_ok=True)  # jobs that were never submitted
            raise SubmissionError(plan, chunks, error) from error
        sys.stderr.write(said.getvalue())
        return jobs

    def _execute(self, plan: Plan, runs: list[RunSpec], on_done: Callable[[RunOutcome], None]) -> bool:
        if self.cluster == "slurm":
            # Asked again under the plan lock: another `cltm run` may have submitted since the
            # caller looked.
            in_slurm = runs_in_slurm(plan)
            meanwhile = [s.run_id for s in runs if s.run_id in in_slurm]
            if meanwhile:
                logger.warning(
                    "%s: %d runs were submitted by another `cltm run` meanwhile; left alone",
                    plan.plan_dir, len(meanwhile),
                )
                runs = [s for s in runs if s.run_id not in in_slurm]
            if not runs:
                return True
        chunks = self.chunks(runs)
        submitted_at = time.time()
        jobs = self._submit(plan, chunks)
        if self.cluster == "slurm" and jobs:
            # Written before anything else can fail: a submitted job must never be forgotten.
            record_submission(
                plan.layout, [(job.job_id, ids) for job, ids in zip(jobs, chunks)], submitted_at
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
                    vanished = self._vanished(pending.values()) if self.cluster == "slurm" else set()
                    for run_id, job in list(pending.items()):
                        record = self._fresh_record(plan, run_id, job, submitted_at)
                        if record is None and job.job_id in vanished:
                            record = self._fresh_record(plan, run_id, job, submitted_at) or self._job_failure(
                                plan, by_id[run_id], job, _vanished_message(job)
                            )
                        elif record is None and job.done():
                            record = self._fresh_record(plan, run_id, job, submitted_at) or self._job_failure(
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
            if self.cluster == "slurm" and jobs:
                mark_cancelled(plan.layout, [jobs[0].job_id.split("_")[0]])
            raise
        return False

    @staticmethod
    def _fresh_record(plan: Plan, run_id: str, job: Any, since: float) -> RunRecord | None:
        """The run's record if ``job`` (its array task) wrote it, else None."""
        return slurm_jobs.record_from_task(plan.paths(run_id).record, str(job.job_id), since)

    @staticmethod
    def _vanished(jobs: Any) -> set[str]:
        """Ids of ``jobs`` that ended unseen: sacct has no state for them and squeue no longer lists them.

        submitit learns that a job ended from its result file or from sacct; a task killed by
        SLURM (out of memory, node failure, ``scancel``) writes no result, and without accounting
        (``sacct`` disabled or the job purged) submitit calls it UNKNOWN, never done: the wait
        would last forever. SLURM's queue decides instead, as for `cltm run` and `cltm status`;
        when squeue cannot be asked, nothing is decided and the wait goes on.
        """
        unknown = {
            job.job_id for job in jobs
            if not job.paths.result_pickle.exists() and str(job.state).upper() == "UNKNOWN"
        }
        if not unknown:
            return set()
        try:
            listed = slurm_jobs.squeue_states(sorted({i.split("_")[0] for i in unknown}))
        except (OSError, slurm_jobs.SlurmError) as error:
            logger.warning("cannot ask squeue whether jobs %s still run (%s); waiting", sorted(unknown), error)
            return set()
        return unknown - set(listed)

    @staticmethod
    def _job_failure(plan: Plan, spec: RunSpec, job: Any, message: str | None = None) -> RunOutcome:
        """What a finished job that left no record means for one of its runs.

        A run the task found locked by another live process was not started (busy: it stays
        pending). Otherwise a failed record is written, under the run's lock, so that nothing is
        written while a process of an earlier attempt still trains it. ``message`` says how the
        job ended when submitit cannot (its result and exception would wait for it forever).
        """
        paths = plan.paths(spec)
        if message is None:
            with contextlib.suppress(Exception):  # the task's own outcomes, when it returned any
                if dict(job.result()).get(spec.run_id) == RunBusy.status:
                    return RunBusy(spec.run_id, paths.lock, lock_holder(paths.lock))
            # One line (`cltm status`, `cltm run`): submitit's text quotes the task's whole stderr,
            # which stays in its file, named in the error and in the record.
            try:
                error = job.exception()
                message = (
                    f"SLURM job {job.job_id} ended without a record ({type(error).__name__}): "
                    f"{_stderr_line(job, str(error))}; full stderr: {job.paths.stderr}"
                ) if error else f"SLURM job {job.job_id} ended without a record (state {job.state})"
            except Exception as error:  # noqa: BLE001 - the job's own failure text
                message = (
                    f"SLURM job {job.job_id} failed: {type(error).__name__}: "
                    f"{_stderr_line(job, str(error))}; full stderr: {job.paths.stderr}"
                )
        record = failed_record(plan, spec, message, extra={"slurm_stderr": str(job.paths.stderr)})
        try:
            with run_lock(paths):
                write_record(record, paths.record)
        except RunBusy as busy:
            return busy
        return record
