"""The SLURM jobs a grid submitted: the job file, what SLURM says about them, cancelling them.

Every submission is kept in ``<plan>/slurm/jobs.json`` (named by
:attr:`~cltm_sb.grid.layout.GridLayout.slurm_jobs_file`): which run ids went to which array job
and task, and when. With it, a run whose job is still queued or running is never submitted or
started again, ``cltm status`` shows queued and running runs, and ``cltm cancel`` knows what to
cancel. SLURM is the judge of what still runs (``squeue``): a job it no longer lists (ended,
cancelled, or forgotten) frees its runs, and a run that then has no record is simply pending.

A run inside a live job counts as finished as soon as its record is newer than the submission
(an array task may work through several runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cltm_sb.grid.layout import GridLayout, PlanError
from cltm_sb.grid.plan import Plan
from cltm_sb.grid.status import RunState, plan_status
from cltm_sb.io import atomic_write_json
from cltm_sb.results import RecordError, RunRecord, read_record

JOBS_FORMAT = "cltm-slurm-jobs"
JOBS_VERSION = 1

# SLURM job states (squeue's long names) that mean "not started yet" and "started, not ended";
# every other state has ended. squeue lists only jobs in these states unless told otherwise.
QUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})
RUNNING_STATES = frozenset(
    {"CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
)
SQUEUE_TIMEOUT_S = 60.0

# Asks SLURM about array jobs (their ids, e.g. "123"); answers {task id: state} for the tasks
# still queued or running, e.g. {"123_0": "RUNNING", "123_1": "PENDING"} (a plain job: {"124": ...}).
JobQuery = Callable[[Sequence[str]], dict[str, str]]
Scancel = Callable[[Sequence[str]], None]


class SlurmError(PlanError):
    """SLURM cannot be asked or told what the grid needs; the message says what to do."""


# --------------------------------------------------------------------------------------------
# The job file


@dataclass
class SubmittedTask:
    """One array task (or a plain job) and the runs it works through."""

    task_id: str  # SLURM's id: "123_4" for an array task, "123" for a single job
    run_ids: list[str]


@dataclass
class Submission:
    """One ``sbatch`` of the grid: an array job and its tasks."""

    job_id: str
    submitted_at: str  # ISO 8601, UTC
    tasks: list[SubmittedTask]
    ended: bool = False  # SLURM listed none of its tasks as queued or running any more
    cancelled_at: str | None = None  # by `cltm cancel` or an interrupted `cltm run`

    @property
    def submitted_unix(self) -> float:
        return datetime.fromisoformat(self.submitted_at).timestamp()

    @property
    def live(self) -> bool:
        """Possibly still queued or running (SLURM has to be asked)."""
        return not self.ended and self.cancelled_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "submitted_at": self.submitted_at,
            "ended": self.ended,
            "cancelled_at": self.cancelled_at,
            "tasks": [{"task_id": t.task_id, "run_ids": list(t.run_ids)} for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Submission:
        return cls(
            job_id=str(data["job_id"]),
            submitted_at=str(data["submitted_at"]),
            tasks=[SubmittedTask(str(t["task_id"]), [str(r) for r in t["run_ids"]]) for t in data["tasks"]],
            ended=bool(data.get("ended", False)),
            cancelled_at=data.get("cancelled_at"),
        )


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def read_jobs(layout: GridLayout) -> list[Submission]:
    """The grid's submissions, oldest first (none without a job file)."""
    path = layout.slurm_jobs_file
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != JOBS_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {JOBS_FORMAT!r}")
        return [Submission.from_dict(s) for s in data["submissions"]]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SlurmError(
            f"{path}: not a readable list of SLURM jobs ({error}); check with `squeue` that none of "
            "this grid's jobs still runs, then delete the file"
        ) from error


def _write_jobs(layout: GridLayout, submissions: Sequence[Submission]) -> None:
    atomic_write_json(
        layout.slurm_jobs_file,
        {"format": JOBS_FORMAT, "version": JOBS_VERSION, "submissions": [s.to_dict() for s in submissions]},
    )


@contextlib.contextmanager
def _jobs_locked(layout: GridLayout) -> Iterator[list[Submission]]:
    """Read, change and write the job file under its own lock.

    Not the plan lock: ``cltm cancel`` must work while a waiting ``cltm run`` holds that one.
    """
    layout.slurm_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.slurm_jobs_lock, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            submissions = read_jobs(layout)
            yield submissions
            _write_jobs(layout, submissions)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_submission(
    layout: GridLayout, tasks: Sequence[tuple[str, Sequence[str]]], submitted_at: float
) -> Submission:
    """Add one submission (``[(task id, run ids), ...]`` of one array job) to the job file.

    ``submitted_at`` (Unix time) must be taken before ``sbatch``: a record written after it is
    the run's result from this job, and a fast task may write one before ``sbatch`` returns.
    """
    job_id = tasks[0][0].split("_")[0]
    when = datetime.fromtimestamp(submitted_at, timezone.utc).isoformat()
    submission = Submission(job_id, when, [SubmittedTask(t, list(r)) for t, r in tasks])
    with _jobs_locked(layout) as submissions:
        submissions.append(submission)
    return submission


def mark_cancelled(layout: GridLayout, job_ids: Sequence[str]) -> None:
    """Mark submissions as cancelled: their runs may be submitted again at once."""
    wanted, when = set(job_ids), _now_iso()
    with _jobs_locked(layout) as submissions:
        for sub in submissions:
            if sub.job_id in wanted and sub.cancelled_at is None:
                sub.cancelled_at = when


def _mark_ended(layout: GridLayout, job_ids: set[str]) -> None:
    """Remember jobs SLURM no longer runs, so that SLURM need not be asked about them again."""
    if not job_ids:
        return
    with _jobs_locked(layout) as submissions:
        for sub in submissions:
            if sub.job_id in job_ids:
                sub.ended = True


# --------------------------------------------------------------------------------------------
# Asking SLURM


def _missing_tool(tool: str, layout: GridLayout, doing: str) -> SlurmError:
    return SlurmError(
        f"{layout.plan_dir}: `{tool}` is not available here, so cltm cannot {doing} "
        f"({layout.slurm_jobs_file} lists this grid's SLURM jobs); run the command on a machine "
        "with the SLURM client tools (e.g. the cluster's login node)"
    )


def parse_squeue(text: str) -> dict[str, str]:
    """``%i|%T`` lines of ``squeue --array`` -> {task id: state}, for queued or running ones."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        task_id, sep, state = line.strip().partition("|")
        state = state.strip().upper()
        if sep and state in QUEUED_STATES | RUNNING_STATES:
            states[task_id.strip()] = state
    return states


def squeue_states(job_ids: Sequence[str]) -> dict[str, str]:
    """Ask ``squeue`` which tasks of ``job_ids`` are queued or running.

    ``squeue --jobs`` fails as a whole when it knows none of the ids ("Invalid job id"): the jobs
    are then asked one by one, and an id SLURM does not know has ended. Any other failure (e.g. the
    controller is down) raises, since "not listed" would wrongly mean "ended".
    """
    if not job_ids:
        return {}
    result = _squeue(job_ids)
    if result.returncode == 0:
        return parse_squeue(result.stdout)
    if "invalid job id" not in result.stderr.lower():
        raise SlurmError(f"squeue failed (exit {result.returncode}): {result.stderr.strip()}")
    if len(job_ids) == 1:
        return {}
    states: dict[str, str] = {}
    for job_id in job_ids:
        single = _squeue([job_id])
        if single.returncode == 0:
            states.update(parse_squeue(single.stdout))
        elif "invalid job id" not in single.stderr.lower():
            raise SlurmError(f"squeue failed (exit {single.returncode}): {single.stderr.strip()}")
    return states


def _squeue(job_ids: Sequence[str]) -> subprocess.CompletedProcess[str]:
    command = ["squeue", "--noheader", "--array", "--format=%i|%T", f"--jobs={','.join(job_ids)}"]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as error:
        raise SlurmError(f"squeue did not answer within {SQUEUE_TIMEOUT_S:.0f} s ({' '.join(command)})") from error


def scancel(job_ids: Sequence[str]) -> None:
    """``scancel`` the jobs; a failure raises with SLURM's message."""
    result = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SlurmError(f"scancel {' '.join(job_ids)} failed (exit {result.returncode}): {result.stderr.strip()}")


def _live_tasks(layout: GridLayout, submissions: Sequence[Submission], query: JobQuery | None) -> dict[str, str]:
    """{task id: SLURM state} of the live submissions' tasks that are queued or running."""
    live = [s.job_id for s in submissions if s.live]
    if not live:
        return {}
    try:
        return (query or squeue_states)(live)
    except FileNotFoundError:
        raise _missing_tool(
            "squeue", layout, f"check whether its jobs {', '.join(live)} are still queued or running"
        ) from None
    except SlurmError as error:
        raise SlurmError(
            f"{layout.plan_dir}: cannot ask SLURM whether its jobs {', '.join(live)} are still queued "
            f"or running ({error}); try again when SLURM answers"
        ) from None


# --------------------------------------------------------------------------------------------
# Runs in SLURM


@dataclass(frozen=True)
class InSlurm:
    """A run whose SLURM job is queued or running (and that has not finished inside it yet)."""

    run_id: str
    state: str  # "queued" or "running"
    task_id: str  # SLURM's id of its array task, e.g. "123_4"
    slurm_state: str  # SLURM's word, e.g. PENDING, RUNNING

    def to_dict(self) -> dict[str, str]:
        """The ``cltm status --json`` form."""
        return {"run_id": self.run_id, "state": self.state, "job_id": self.task_id, "slurm_state": self.slurm_state}


# A record written inside a SLURM task names the task (its ``extra``): whether a run finished in
# the task it was submitted in then needs no clock. Records without it (written outside SLURM, or
# by an older cltm) are judged by their time, within this slack between the submitting node's
# clock and the file server's.
RECORD_TASK_KEY = "slurm_task"
CLOCK_SLACK_S = 2.0


def slurm_task_here() -> str | None:
    """The SLURM task this process runs in ("123_4" in an array, else the job id), None outside."""
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and index:
        return f"{array}_{index}"
    return os.environ.get("SLURM_JOB_ID") or None


def record_from_task(path: os.PathLike[str] | str, task_id: str, since: float) -> RunRecord | None:
    """The record at ``path`` if it was written in SLURM task ``task_id`` (submitted at ``since``),
    else None: the task it names, or, naming none, written since ``since`` (± CLOCK_SLACK_S)."""
    try:
        record = read_record(path)
        written_in = record.extra.get(RECORD_TASK_KEY)
        if written_in is not None:
            return record if str(written_in) == task_id else None
        return record if os.stat(path).st_mtime >= since - CLOCK_SLACK_S else None
    except (FileNotFoundError, RecordError):
        return None


def runs_in_slurm(plan: Plan, query: JobQuery | None = None, remember_ended: bool = False) -> dict[str, InSlurm]:
    """The runs of ``plan`` that are queued or running in SLURM, by run id (empty without jobs).

    ``query`` asks SLURM (default: :func:`squeue_states`); ``remember_ended`` writes down the jobs
    SLURM no longer runs, so that later calls need not ask about them.
    """
    submissions = read_jobs(plan.layout)
    live = _live_tasks(plan.layout, submissions, query)
    if remember_ended:
        _mark_ended(plan.layout, {s.job_id for s in submissions if s.live} - _live_jobs(submissions, live))
    return _runs_in(plan, submissions, live)


def _live_jobs(submissions: Sequence[Submission], live: dict[str, str]) -> set[str]:
    """The live submissions' job ids with at least one task queued or running."""
    return {s.job_id for s in submissions if s.live and any(t.task_id in live for t in s.tasks)}


def _runs_in(plan: Plan, submissions: Sequence[Submission], live: dict[str, str]) -> dict[str, InSlurm]:
    found: dict[str, InSlurm] = {}
    for sub in submissions:  # oldest first: a later submission of the same run wins
        if not sub.live:
            continue
        since = sub.submitted_unix
        for task in sub.tasks:
            slurm_state = live.get(task.task_id)
            if slurm_state is None:
                continue
            state = "queued" if slurm_state in QUEUED_STATES else "running"
            for run_id in task.run_ids:
                if record_from_task(plan.paths(run_id).record, task.task_id, since) is None:
                    found[run_id] = InSlurm(run_id, state, task.task_id, slurm_state)
    return found


@dataclass
class SlurmRunState(RunState):
    """A run queued or running in SLURM (``state`` is ``queued`` or ``running``)."""

    slurm: InSlurm | None = None


def grid_status(plan: Plan, query: JobQuery | None = None) -> list[RunState]:
    """Every run's state in plan order: done, failed, pending, or queued/running in SLURM.

    A queued or running run keeps its older record (e.g. the failure it is being retried for).
    """
    states = plan_status(plan)
    in_slurm = runs_in_slurm(plan, query)
    return [
        SlurmRunState(s.spec, in_slurm[s.spec.run_id].state, s.record, slurm=in_slurm[s.spec.run_id])
        if s.spec.run_id in in_slurm
        else s
        for s in states
    ]


# --------------------------------------------------------------------------------------------
# Cancelling


@dataclass
class CancelReport:
    """What ``cltm cancel`` did."""

    cancelled_jobs: list[str] = field(default_factory=list)  # array job ids given to scancel
    runs: list[InSlurm] = field(default_factory=list)  # the runs that were queued or running
    ended_jobs: list[str] = field(default_factory=list)  # recorded jobs that had already ended


def cancel_grid(plan: Plan, query: JobQuery | None = None, cancel: Scancel | None = None) -> CancelReport:
    """Cancel this grid's SLURM jobs that are still queued or running, and mark them cancelled.

    Their runs may then be submitted again by the next ``cltm run`` (they stay pending: a
    cancelled run writes no record). Raises :class:`SlurmError` when the grid never submitted a
    job or when ``scancel`` (or ``squeue``) is not available.
    """
    layout = plan.layout
    submissions = read_jobs(layout)
    if not submissions:
        raise SlurmError(
            f"{plan.plan_dir}: this grid has no submitted SLURM jobs ({layout.slurm_jobs_file} does not "
            "exist); nothing to cancel (jobs are recorded by `cltm run --executor slurm`)"
        )
    live = _live_tasks(layout, submissions, query)
    live_jobs = sorted(_live_jobs(submissions, live), key=_job_order)
    if live_jobs:
        try:
            (cancel or scancel)(live_jobs)
        except FileNotFoundError:
            raise _missing_tool("scancel", layout, f"cancel its jobs {', '.join(live_jobs)}") from None
        mark_cancelled(layout, live_jobs)
    _mark_ended(layout, {s.job_id for s in submissions if s.live} - set(live_jobs))
    runs = sorted(_runs_in(plan, submissions, live).values(), key=lambda r: r.run_id)
    ended = [s.job_id for s in submissions if s.job_id not in live_jobs]
    return CancelReport(cancelled_jobs=live_jobs, runs=runs, ended_jobs=ended)


def _job_order(job_id: str) -> tuple[int, str]:
    return (int(job_id), job_id) if job_id.isdigit() else (0, job_id)
