"""The grid's SLURM job file: nothing queued or running is submitted twice; status; cancel.

SLURM is faked here (no cluster needed): :class:`FakeSlurm` hands out job ids for submissions and
answers the queries that ``squeue`` and ``scancel`` would. tests/test_slurm.py does the same on a
real local cluster.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.cli import main
from cltm_sb.grid import jobs
from cltm_sb.grid.executors.core import InProcessExecutor, execute_run, failed_record
from cltm_sb.grid.executors.slurm import SlurmExecutor
from cltm_sb.grid.jobs import (
    SlurmError,
    cancel_grid,
    grid_status,
    parse_squeue,
    read_jobs,
    runs_in_slurm,
)
from cltm_sb.grid.plan import Plan, make_plan
from cltm_sb.results import write_record

RUNNER = "grid_fakes:run_fake"
# the real ones, kept before the `slurm` fixture replaces them
_real_scancel = jobs.scancel
_real_squeue_states = jobs.squeue_states


@dataclass
class FakeJob:
    job_id: str


class FakeSlurm:
    """Job ids from 100 up; ``states`` holds the tasks SLURM would list as queued or running."""

    def __init__(self) -> None:
        self.next_id = 100
        self.states: dict[str, str] = {}
        self.submitted: list[list[list[str]]] = []
        self.cancelled: list[str] = []

    def submit(self, chunks: list[list[str]]) -> list[FakeJob]:
        job = str(self.next_id)
        self.next_id += 1
        self.submitted.append(chunks)
        # like submitit: one chunk is a plain job, more make an array
        ids = [job] if len(chunks) == 1 else [f"{job}_{i}" for i in range(len(chunks))]
        self.states.update(dict.fromkeys(ids, "PENDING"))
        return [FakeJob(i) for i in ids]

    def query(self, job_ids: Sequence[str]) -> dict[str, str]:
        return {t: s for t, s in self.states.items() if t.split("_")[0] in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.cancelled.extend(job_ids)
        self.states = {t: s for t, s in self.states.items() if t.split("_")[0] not in job_ids}

    def end(self, *task_ids: str) -> None:
        for task_id in task_ids:
            del self.states[task_id]


@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    fake = FakeSlurm()
    monkeypatch.setattr(jobs, "squeue_states", fake.query)
    monkeypatch.setattr(jobs, "scancel", fake.cancel)
    return fake


class FakeSubmitExecutor(SlurmExecutor):
    """The real SLURM executor with ``sbatch`` replaced by :class:`FakeSlurm`."""

    def __init__(self, fake: FakeSlurm, runs_per_task: int = 2) -> None:
        super().__init__({"runs_per_task": runs_per_task}, wait=False)
        self.fake = fake

    def _submit(self, plan: Plan, chunks: list[list[str]]) -> list[FakeJob]:
        return self.fake.submit(chunks)


def _plan(tmp_path: Path) -> Plan:
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    plan.save()
    return plan


def _ids(plan: Plan) -> list[str]:
    return [r.run_id for r in plan.runs]


def test_a_second_submission_submits_nothing_queued_or_running(
    tmp_path: Path, slurm: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path)
    ids = _ids(plan)
    assert len(ids) == 5
    first = FakeSubmitExecutor(slurm).run(plan, progress=False)
    assert first.submitted and first.n_runs == 5
    (submission,) = read_jobs(plan.layout)
    assert submission.job_id == "100" and submission.live
    assert [(t.task_id, t.run_ids) for t in submission.tasks] == [
        ("100_0", ids[:2]), ("100_1", ids[2:4]), ("100_2", ids[4:])
    ]
    assert abs(submission.submitted_unix - time.time()) < 60
    assert plan.layout.slurm_jobs_file == plan.plan_dir / "slurm" / "jobs.json"
    slurm.states["100_0"] = "RUNNING"

    again = FakeSubmitExecutor(slurm).run(plan, progress=False)
    assert again.n_runs == 0 and not again.submitted and len(slurm.submitted) == 1
    assert sorted(r.run_id for r in again.in_slurm) == sorted(ids)
    assert len(read_jobs(plan.layout)) == 1
    # other executors leave them alone too, and the command says so
    assert InProcessExecutor().run(plan, progress=False).n_runs == 0
    assert not plan.records_dir.exists()
    assert main(["run", str(plan.plan_dir), "--executor", "inprocess", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "5 runs are queued or running in SLURM (job 100) and were not started again" in out
    assert "`cltm cancel" in out


def test_runs_of_a_job_that_ended_without_a_record_are_submittable_again(
    tmp_path: Path, slurm: FakeSlurm
) -> None:
    plan = _plan(tmp_path)
    ids = _ids(plan)
    FakeSubmitExecutor(slurm).run(plan, progress=False)
    # task 0 finished its first run only; task 1 ended without a record; task 2 is still queued
    execute_run(plan, plan.runs[0])
    slurm.end("100_0", "100_1")
    assert set(runs_in_slurm(plan)) == {ids[4]}

    again = FakeSubmitExecutor(slurm).run(plan, progress=False)
    assert again.n_runs == 3 and slurm.submitted[1] == [ids[1:3], ids[3:4]]
    assert [s.job_id for s in read_jobs(plan.layout)] == ["100", "101"]
    # a job SLURM no longer lists is written down as ended and not asked about again
    slurm.states.clear()
    assert runs_in_slurm(plan, remember_ended=True) == {}
    assert [s.ended for s in read_jobs(plan.layout)] == [True, True]
    asked: list[Sequence[str]] = []
    assert runs_in_slurm(plan, query=lambda job_ids: asked.append(job_ids) or {}) == {} and not asked
    third = FakeSubmitExecutor(slurm, runs_per_task=10).run(plan, progress=False)
    assert third.n_runs == 4 and slurm.submitted[2] == [ids[1:]]
    assert read_jobs(plan.layout)[2].tasks[0].task_id == "102"  # a single task: a plain job


def test_status_counts_queued_and_running(
    tmp_path: Path, slurm: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path)
    ids = _ids(plan)
    # run 2 failed long ago; it is submitted again with the rest
    old = plan.paths(ids[2]).record
    write_record(failed_record(plan, plan.runs[2], "old failure"), old)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    FakeSubmitExecutor(slurm).run(plan, progress=False)
    slurm.states["100_0"] = "RUNNING"
    execute_run(plan, plan.runs[0])  # finished inside the running task
    slurm.end("100_2")
    assert [s.state for s in grid_status(plan)] == ["done", "running", "queued", "queued", "pending"]

    assert main(["status", str(plan.plan_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {k: status[k] for k in ("done", "failed", "queued", "running", "pending")} == {
        "done": 1, "failed": 0, "queued": 2, "running": 1, "pending": 1
    }
    assert status["in_slurm"][0] == {
        "run_id": ids[1], "state": "running", "job_id": "100_0", "slurm_state": "RUNNING"
    }
    assert main(["status", str(plan.plan_dir)]) == 0
    assert "1/5 done, 0 failed, 2 queued, 1 running (SLURM job 100), 1 pending" in capsys.readouterr().out


def test_cancel_cancels_live_jobs_and_frees_their_runs(
    tmp_path: Path, slurm: FakeSlurm, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path)
    FakeSubmitExecutor(slurm).run(plan, progress=False)
    slurm.states["100_0"] = "RUNNING"
    assert main(["cancel", str(plan.plan_dir)]) == 0
    out = capsys.readouterr().out
    assert "cancelled SLURM job 100: 3 queued and 2 running runs" in out and slurm.cancelled == ["100"]
    assert read_jobs(plan.layout)[0].cancelled_at is not None
    # marked: submittable again at once, even while SLURM still lists the job as ending
    slurm.states["100_0"] = "COMPLETING"
    assert runs_in_slurm(plan) == {}
    assert FakeSubmitExecutor(slurm).run(plan, progress=False).n_runs == 5
    slurm.end("101_0", "101_1", "101_2")
    assert main(["cancel", str(plan.plan_dir)]) == 0
    assert "nothing to cancel" in capsys.readouterr().out and slurm.cancelled == ["100"]


def test_cancel_errors_name_the_grid(
    tmp_path: Path, slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path)
    assert main(["cancel", str(plan.plan_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{plan.plan_dir}: this grid has no submitted SLURM jobs" in err

    FakeSubmitExecutor(slurm).run(plan, progress=False)
    monkeypatch.setattr(jobs, "scancel", _real_scancel)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SlurmError, match=r"`scancel` is not available here, so cltm cannot cancel its jobs 100"):
        cancel_grid(plan)
    assert read_jobs(plan.layout)[0].cancelled_at is None
    monkeypatch.setattr(jobs, "squeue_states", _real_squeue_states)
    with pytest.raises(SlurmError, match=r"`squeue` is not available here.*slurm/jobs.json lists"):
        InProcessExecutor().run(plan, progress=False)

FAKE_SQUEUE = '''#!{python}
"""squeue as SLURM 22.05 answers `--noheader --array --format=%i|%T --jobs=IDS`."""
import os, sys
known = {{"7": ["7_2|PENDING", "7_0|RUNNING", "7_1|COMPLETING"], "8": ["8|RUNNING"]}}
if os.environ.get("FAKE_SQUEUE_DOWN"):
    sys.exit("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
ids = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--jobs=")][0].split(",")
lines = [line for i in ids for line in known.get(i, [])]
if not lines and not any(i in known for i in ids):
    sys.exit("slurm_load_jobs error: Invalid job id specified")
print("\\n".join(lines))
'''


def test_squeue_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    squeue = folder / "squeue"
    squeue.write_text(FAKE_SQUEUE.format(python=sys.executable))
    squeue.chmod(squeue.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    assert parse_squeue("5_1|RUNNING\n5_2|COMPLETED\nbad line\n6|PENDING\n") == {"5_1": "RUNNING", "6": "PENDING"}
    assert _real_squeue_states(["7", "8"]) == {
        "7_2": "PENDING", "7_0": "RUNNING", "7_1": "COMPLETING", "8": "RUNNING"
    }
    assert _real_squeue_states(["99"]) == {}  # unknown to SLURM: ended
    assert _real_squeue_states(["8", "99"]) == {"8": "RUNNING"}
    monkeypatch.setenv("FAKE_SQUEUE_DOWN", "1")
    with pytest.raises(SlurmError, match="squeue failed .*Unable to contact slurm controller"):
        _real_squeue_states(["7"])


@dataclass
class FinishedJob:
    """A submitit job that ended: what the array task returned, or the exception it raised."""

    job_id: str
    outcomes: list[tuple[str, str]] | None = None
    state: str = "COMPLETED"

    def result(self) -> list[tuple[str, str]]:
        if self.outcomes is None:
            raise RuntimeError("the task died")
        return self.outcomes

    def exception(self) -> Exception | None:
        return None if self.outcomes is not None else RuntimeError("the task died")

    @property
    def paths(self) -> object:
        return type("Paths", (), {"stderr": Path("/nonexistent/err")})()


def test_a_job_whose_run_was_busy_leaves_it_pending(tmp_path: Path) -> None:
    """The array task found the run locked by a live attempt: no failed record is written."""
    from cltm_sb.grid.executors.core import RunBusy, run_lock

    plan = _plan(tmp_path)
    spec = plan.runs[0]
    busy = SlurmExecutor._job_failure(plan, spec, FinishedJob("7_0", [(spec.run_id, "busy")]))
    assert isinstance(busy, RunBusy) and not plan.paths(spec).record.exists()
    with run_lock(plan.paths(spec)):  # an earlier attempt still trains it
        held = SlurmExecutor._job_failure(plan, spec, FinishedJob("7_0", None))
    assert isinstance(held, RunBusy) and not plan.paths(spec).record.exists()
    failed = SlurmExecutor._job_failure(plan, spec, FinishedJob("7_0", None))
    assert failed.status == "failed" and "SLURM job 7_0 ended without a record" in failed.error
    assert plan.paths(spec).record.is_file()


class UnseenJob:
    """A submitit job whose task SLURM killed (no result file) on a cluster without accounting:
    sacct answers nothing, so submitit calls it UNKNOWN and never done."""

    def __init__(self, job_id: str, folder: Path) -> None:
        self.job_id = job_id
        self.paths = type("Paths", (), {"result_pickle": folder / f"{job_id}_result.pkl",
                                        "stderr": folder / f"{job_id}_log.err"})()
        self.state = "UNKNOWN"
        self.polls = 0

    def done(self) -> bool:
        self.polls += 1
        if self.polls > 50:
            raise AssertionError(f"still waiting for job {self.job_id}, which SLURM no longer lists")
        return False

    def cancel(self, check: bool = False) -> None:
        pass


def test_waiting_ends_for_a_job_that_vanished_without_accounting(tmp_path: Path, slurm: FakeSlurm) -> None:
    """`cltm run --executor slurm` waited forever for a task killed by SLURM (out of memory, a
    node failure) when sacct had no answer; SLURM's queue no longer listing it now ends it."""
    plan = _plan(tmp_path)
    submitted: list[UnseenJob] = []

    class Unseen(SlurmExecutor):
        def _submit(self, plan: Plan, chunks: list[list[str]]) -> list[UnseenJob]:
            submitted.extend(UnseenJob(job.job_id, tmp_path) for job in slurm.submit(chunks))
            slurm.end("100_1", "100_2")  # killed at once; 100_0 runs a while, then is killed too
            return submitted

    executor = Unseen({"runs_per_task": 2}, wait=True, poll_s=0.01)
    original = slurm.query

    def query(job_ids: Sequence[str]) -> dict[str, str]:
        if submitted and submitted[0].polls > 3:
            slurm.states.pop("100_0", None)
        return original(job_ids)

    jobs.squeue_states = query  # the fixture restores the function
    report = executor.run(plan, progress=False)
    assert report.n_runs == 5 and len(report.failed) == 5
    errors = {r.run_id: r.error for r in report.failed}
    assert "SLURM job 100_0 ended without a record: squeue no longer lists it" in errors[_ids(plan)[0]]
    assert "SLURM job 100_2 ended without a record" in errors[_ids(plan)[4]]
    assert submitted[0].polls > 3 and all(plan.paths(run_id).record.is_file() for run_id in _ids(plan))


OOM_STDERR = """submitit INFO (2024-05-01 10:00:00,000) - Starting with JobEnvironment(job_id=7_0)
INFO: run 1 (single) on cuda, 8 threads
slurmstepd: error: Detected 1 oom_kill event in StepId=7_0.batch. Some of the step tasks have been OOM Killed.
"""


class KilledJob(FinishedJob):
    """A task SLURM killed (out of memory): no result, so submitit's error quotes its whole stderr."""

    def __init__(self, job_id: str, stderr: Path) -> None:
        super().__init__(job_id, None, "OUT_OF_MEMORY")
        self.stderr_path = stderr

    def exception(self) -> Exception:
        from submitit.core.utils import UncompletedJobError

        return UncompletedJobError("\n".join([
            f"Job {self.job_id} (task: 0) with path {self.stderr_path.parent}/{self.job_id}_result.pkl",
            f"has not produced any output (state: {self.state})", "Error stream produced:", "-" * 40,
            self.stderr_path.read_text(),
        ]))

    @property
    def paths(self) -> object:
        return type("Paths", (), {"stderr": self.stderr_path})()


def test_a_failed_array_task_is_one_status_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cltm status` printed the whole stderr submitit quotes for a killed task, over several
    lines; the record's error is now its last line, and the record names the full stderr file."""
    plan = _plan(tmp_path)
    stderr = tmp_path / "slurm" / "7_0_0_log.err"
    stderr.parent.mkdir()
    stderr.write_text(OOM_STDERR)
    record = SlurmExecutor._job_failure(plan, plan.runs[0], KilledJob("7_0", stderr))
    assert "\n" not in record.error and "\\n" not in record.error and len(record.error.replace(str(stderr), "")) <= 400, record.error
    assert "oom_kill event in StepId=7_0.batch" in record.error and str(stderr) in record.error
    assert record.extra["slurm_stderr"] == str(stderr)
    assert main(["status", str(plan.plan_dir)]) == 0
    (failed,) = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert failed.startswith(f"  FAILED {plan.runs[0].run_id}: SLURM job 7_0 ended without a record"), failed
    assert "oom_kill event" in failed

    # a long last line is cut; the file keeps all of it
    stderr.write_text("x" * 5000 + "\n\n")
    record = SlurmExecutor._job_failure(plan, plan.runs[0], KilledJob("7_0", stderr))
    assert "\n" not in record.error and len(record.error.replace(str(stderr), "")) <= 400 and "x" * 100 in record.error


def test_a_record_names_the_slurm_task_that_wrote_it_so_no_clock_decides(
    tmp_path: Path, slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Freshness was the record's mtime (the file server's clock) against the submission time (the
    # login node's): with clocks 2 s or more apart a run that finished in its running task stayed
    # "running", and a record of another task could pass as this one's.
    plan = _plan(tmp_path)
    ids = _ids(plan)
    FakeSubmitExecutor(slurm).run(plan, progress=False)
    slurm.states["100_0"] = "RUNNING"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    execute_run(plan, plan.runs[0])  # inside task 100_0
    record = plan.paths(ids[0]).record
    assert json.loads(record.read_text())["extra"]["slurm_task"] == "100_0"
    hour_ago = time.time() - 3600
    os.utime(record, (hour_ago, hour_ago))  # a file server whose clock is an hour behind
    assert ids[0] not in runs_in_slurm(plan) and ids[1] in runs_in_slurm(plan)
    since = read_jobs(plan.layout)[0].submitted_unix
    assert jobs.record_from_task(record, "100_0", since) is not None
    assert jobs.record_from_task(record, "101_0", since) is None  # written in another task
    # Outside SLURM no task is named, and the time decides as before.
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    execute_run(plan, plan.runs[1])
    assert "slurm_task" not in json.loads(plan.paths(ids[1]).record.read_text())["extra"]
    assert ids[1] not in runs_in_slurm(plan)
