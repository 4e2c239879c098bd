"""Grid integrity: nothing of a killed grid lives on, nothing runs twice, one writer per record,
one log per run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.cli import main
from cltm_sb.grid.executors.core import InProcessExecutor, RunBusy, execute_run, plan_lock
from cltm_sb.grid.executors.local import TERMINATE_GRACE_S, LocalExecutor
from cltm_sb.grid.layout import PlanError
from cltm_sb.grid.plan import Plan, load_plan, make_plan
from cltm_sb.grid.status import plan_status
from cltm_sb.recipe.run_files import RECORD_FILE

TESTS = Path(__file__).parent
LOCALES = ["en", "es"]
MARK = "CLTM_TEST_MARK"
#: Holds an flock on argv[1] like a grid process does, says so, then waits to be killed.
HOLD_LOCK = (
    "import fcntl, os, sys, time\n"
    "handle = open(sys.argv[1], 'a+')\n"
    "fcntl.flock(handle, fcntl.LOCK_EX)\n"
    "handle.seek(0); handle.truncate(); handle.write(f'pid {os.getpid()} on testhost\\n'); handle.flush()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def _plan(tmp_path: Path, name: str = "plan", runner: str = "grid_fakes:run_fake", **overrides) -> Plan:
    data = tmp_path / "prep"
    if not data.is_dir():
        make_prepared(data, LOCALES)
    plan = make_plan(tmp_path / name, data, "gr", LOCALES, [42, 43], overrides=overrides, runner=runner)
    plan.save()
    return plan


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            **extra}


def _marked_pids(mark: str) -> list[int]:
    """Live processes whose environment carries ``CLTM_TEST_MARK=<mark>``: a grid and its children.

    A zombie's environment reads empty, so only processes that still run are counted.
    """
    needle = f"{MARK}={mark}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours
                continue
    return pids


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _seconds_until_none_left(mark: str, since: float, limit: float = 30.0) -> float:
    while _marked_pids(mark) and time.monotonic() - since < limit:
        time.sleep(0.02)
    return time.monotonic() - since


def _in_flight(plan: Plan) -> list[Path]:
    """Run folders whose fake run has started (it wrote its pid) and not yet been recorded."""
    runs = plan.layout.runs_dir
    return [
        p for p in (runs.iterdir() if runs.is_dir() else [])
        if (p / "pid").is_file() and not plan.paths(p.name).record.exists()
    ]


def _hold_lock(path: Path) -> subprocess.Popen:
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _kill(holder: subprocess.Popen) -> None:
    holder.kill()
    holder.wait(timeout=10)


def _matrix_csv(plan: Plan, out: Path, capsys: pytest.CaptureFixture[str]) -> bytes:
    assert main(["matrix", str(plan.plan_dir), "--task", "gr", "-o", str(out), "--no-heatmap"]) == 0
    capsys.readouterr()
    return (out / "cltm.csv").read_bytes()


def _assert_one_record_per_run(plan: Plan) -> None:
    files = sorted(p.name for p in plan.records_dir.iterdir())
    assert files == sorted(f"{r.run_id}.json" for r in plan.runs)  # no temp files either
    assert {s.state for s in plan_status(plan)} == {"done"}


# ------------------------------------------------------------------------------ a killed grid


@pytest.mark.parametrize(
    ("sig", "exit_code"), [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGHUP, 129)], ids=["SIGKILL", "SIGHUP"]
)
def test_killed_grid_leaves_no_process_and_resumes_to_the_same_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sig: int, exit_code: int
) -> None:
    plan = _plan(tmp_path, fake_sleep=0.5)
    mark = uuid.uuid4().hex
    grid = subprocess.Popen(
        [sys.executable, "-m", "cltm_sb.cli", "run", str(plan.plan_dir), "--workers", "2", "--no-progress"],
        env=_env(**{MARK: mark}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and grid.poll() is None:
        records = list(plan.records_dir.glob("*.json")) if plan.records_dir.is_dir() else []
        if len(records) >= 2 and len(_in_flight(plan)) == 2:
            break
        time.sleep(0.02)
    assert grid.poll() is None, "the grid ended before it could be killed"
    workers = [int((p / "pid").read_text()) for p in _in_flight(plan)]
    assert len(_marked_pids(mark)) >= 4  # the grid, its forkserver, two workers (and a tracker)
    grid.send_signal(sig)
    killed_at = time.monotonic()
    out, _ = grid.communicate(timeout=30)
    assert grid.returncode == exit_code, out
    seconds = _seconds_until_none_left(mark, killed_at)
    # The contract: nothing outlives the grid's SIGTERM, then SIGKILL after TERMINATE_GRACE_S. The
    # margin is for a loaded machine (on this VM a worker once needed the SIGKILL: 5.9 s in all).
    limit = TERMINATE_GRACE_S + 10.0
    assert _marked_pids(mark) == [] and seconds < limit, f"processes alive {seconds:.2f} s after {sig!r}"
    assert not [pid for pid in workers if _running(pid)]
    records = list(plan.records_dir.glob("*.json"))
    assert 2 <= len(records) < len(plan.runs)
    assert all(json.loads(p.read_text())["status"] == "ok" for p in records)

    report = LocalExecutor(workers=2, preload=["grid_fakes"]).run(load_plan(plan.plan_dir), progress=False)
    assert report.n_runs == len(plan.runs) - len(records) and not report.failed and not report.elsewhere
    _assert_one_record_per_run(plan)
    reference = _plan(tmp_path, "reference")
    InProcessExecutor().run(reference, progress=False)
    assert _matrix_csv(plan, tmp_path / "m1", capsys) == _matrix_csv(reference, tmp_path / "m2", capsys)


# ------------------------------------------------------------------------------ run locks


def test_a_run_locked_by_a_live_process_is_not_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(tmp_path)
    victim = plan.paths(plan.runs[1])
    victim.fresh_run_dir()
    (victim.run_dir / "work.txt").write_text("the live attempt's work")
    holder = _hold_lock(victim.lock)
    try:
        report = LocalExecutor(workers=2, preload=["grid_fakes"]).run(plan, progress=False)
        assert [b.run_id for b in report.elsewhere] == [victim.run_id]
        assert f"pid {holder.pid} on testhost" in str(report.elsewhere[0])
        assert report.n_ok == len(plan.runs) - 1 and not report.failed
        assert not victim.record.exists()  # no record, no failure: still pending
        assert (victim.run_dir / "work.txt").is_file()  # its folder was not cleared
        assert [s.spec.run_id for s in plan_status(plan) if s.state == "pending"] == [victim.run_id]
        # The command says which run runs elsewhere and does not count it as done.
        assert main(["run", str(plan.plan_dir), "--executor", "inprocess", "--no-progress"]) == 1
        out = capsys.readouterr().out
        assert f"NOT STARTED run {victim.run_id} is still running elsewhere (pid {holder.pid}" in out
    finally:
        _kill(holder)
    assert main(["run", str(plan.plan_dir), "--executor", "inprocess", "--no-progress"]) == 0
    _assert_one_record_per_run(plan)


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    spec = plan.runs[0]
    paths = plan.paths(spec)
    holder = _hold_lock(paths.lock)
    with pytest.raises(RunBusy, match=f"pid {holder.pid}"):
        execute_run(plan, spec)
    _kill(holder)
    assert f"pid {holder.pid}" in paths.lock.read_text()  # the dead holder's note is still there
    record = execute_run(plan, spec)
    assert record.status == "ok" and paths.record.is_file()
    assert paths.lock.read_text().startswith(f"pid {os.getpid()} on ")


def test_plan_lock_of_a_killed_holder_never_blocks(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    holder = _hold_lock(plan.layout.lock_file)
    with pytest.raises(PlanError, match=f"another `cltm run` \\(pid {holder.pid} on testhost\\)"), plan_lock(plan):
        pass
    _kill(holder)
    started = time.monotonic()
    with plan_lock(plan):
        assert time.monotonic() - started < 1.0


def test_a_run_finished_meanwhile_is_not_run_again(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    spec = plan.runs[0]
    paths = plan.paths(spec)
    first = execute_run(plan, spec)
    stamp = paths.record.stat().st_mtime_ns
    (paths.run_dir / "kept.txt").write_text("output of the finished attempt")
    again = execute_run(plan, spec)  # as a worker does when its run finished elsewhere meanwhile
    assert again.to_dict() == first.to_dict()
    assert paths.record.stat().st_mtime_ns == stamp and (paths.run_dir / "kept.txt").is_file()


# ------------------------------------------------------------------------------ records, logs


def test_in_a_grid_only_the_executor_writes_the_record(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    report = InProcessExecutor().run(plan, progress=False)
    assert report.n_ok == len(plan.runs)
    for spec in plan.runs:
        assert not (plan.paths(spec).run_dir / RECORD_FILE).exists()
    _assert_one_record_per_run(plan)


def test_a_runner_that_returns_no_record_fails_the_run(tmp_path: Path) -> None:
    plan = _plan(tmp_path, runner="grid_fakes:run_fake_old_contract")
    record = execute_run(plan, plan.runs[0])
    assert record.status == "failed"
    assert "returned NoneType, not a RunRecord" in (record.error or "")


def test_each_log_line_appears_once(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    spec = plan.runs[0]
    script = tmp_path / "grid_script.py"
    # A main module that configures logging when imported: multiprocessing imports it again in
    # every worker, whose stderr is the run's log.
    script.write_text(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from cltm_sb.grid.executors.local import LocalExecutor\n"
        "from cltm_sb.grid.plan import load_plan\n"
        "if __name__ == '__main__':\n"
        "    plan = load_plan(sys.argv[1])\n"
        "    LocalExecutor(workers=1, preload=['grid_fakes']).run(plan, [sys.argv[2]], progress=False)\n"
    )
    subprocess.run([sys.executable, str(script), str(plan.plan_dir), spec.run_id], env=_env(), check=True,
                   timeout=120)
    log = plan.paths(spec).log.read_text()
    assert log.count(f"fake run {spec.run_id} trains on en:a") == 1, log
    assert log.count(f"run {spec.run_id} (single) on cpu") == 1, log


def test_status_shows_the_heartbeat_of_a_run_training_here(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose lock is held is running: `cltm status` shows the last heartbeat of its log."""
    import fcntl

    plan = _plan(tmp_path)
    spec = plan.runs[0]
    paths = plan.paths(spec)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    paths.log.write_text("x heartbeat: epoch 1/6 step 2/6 loss 0.7000 elapsed 0:00:01 ETA 0:00:09\n"
                         "x heartbeat: epoch 2/6 step 1/6 loss 0.6000 elapsed 0:00:02 ETA 0:00:08\n")
    paths.lock.parent.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert main(["status", str(plan.plan_dir)]) == 0
        out = capsys.readouterr().out
        assert f"running {spec.run_id}: epoch 2/6 step 1/6 loss 0.6000 elapsed 0:00:02 ETA 0:00:08" in out
        fcntl.flock(handle, fcntl.LOCK_UN)
    assert main(["status", str(plan.plan_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["heartbeats"] == {}  # nobody trains it now
