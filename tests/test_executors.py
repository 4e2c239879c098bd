"""Running a plan: failures recorded, resumable after a kill, same matrix either way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from grid_fakes import make_prepared

from cltm_sb.analysis.matrix import build_cltm
from cltm_sb.grid.executors import make_executor
from cltm_sb.grid.executors.core import InProcessExecutor
from cltm_sb.grid.executors.local import LocalExecutor
from cltm_sb.grid.plan import Plan, load_plan, make_plan
from cltm_sb.grid.status import plan_status
from cltm_sb.results import load_records

RUNNER = "grid_fakes:run_fake"
TESTS = Path(__file__).parent
LOCALES = ["en", "es", "fr"]


def _plan(tmp_path: Path, name: str = "plan", **overrides) -> Plan:
    data = tmp_path / "prep"
    if not data.is_dir():
        make_prepared(data, LOCALES)
    plan = make_plan(tmp_path / name, data, "gr", LOCALES, [42, 43], overrides=overrides, runner=RUNNER)
    plan.save()
    return plan


def _matrix(plan: Plan) -> np.ndarray:
    table = load_records(plan.plan_dir).select(plan.task)
    return build_cltm(table, locales=LOCALES).matrix.to_numpy()


def _assert_complete(plan: Plan) -> None:
    files = sorted(p.name for p in plan.records_dir.iterdir())
    assert files == sorted(f"{r.run_id}.json" for r in plan.runs)  # one record each, no temp files
    assert {s.state for s in plan_status(plan)} == {"done"}


def test_failing_run_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    plan = _plan(tmp_path, fake_fail=["en:a+es:a"])
    report = InProcessExecutor().run(plan, progress=False)
    assert report.n_runs == 18 and report.n_ok == 16
    assert {r.run_id for r in report.failed} == {
        r.run_id for r in plan.runs if r.kind == "pair" and {x for x, _ in r.train} == {"en", "es"}
    }
    failed = report.failed[0]
    assert failed.error == "RuntimeError: fake failure of en:a+es:a"
    assert failed.log_path == str(plan.paths(failed.run_id).log)
    assert "fake failure of en:a+es:a" in Path(failed.log_path).read_text()
    states = [s.state for s in plan_status(plan)]
    assert states.count("failed") == 2 and states.count("done") == 16
    # a second run retries only the failures
    again = InProcessExecutor().run(plan, progress=False)
    assert again.n_runs == 2 and again.n_skipped == 16


def test_finished_runs_are_never_run_again(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    InProcessExecutor().run(plan, progress=False)
    before = {p: p.stat().st_mtime_ns for p in plan.records_dir.iterdir()}
    report = InProcessExecutor().run(plan, progress=False)
    assert report.n_runs == 0 and report.n_skipped == 18
    assert before == {p: p.stat().st_mtime_ns for p in plan.records_dir.iterdir()}


def test_local_workers_match_in_process(tmp_path: Path) -> None:
    local = _plan(tmp_path, "local")
    report = LocalExecutor(workers=2, preload=["grid_fakes"]).run(local, progress=False)
    assert report.n_ok == 18
    record = json.loads(local.paths(local.runs[0]).record.read_text())
    assert record["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    assert record["device"] == "cpu"
    reference = _plan(tmp_path, "inprocess")
    InProcessExecutor().run(reference, progress=False)
    np.testing.assert_array_equal(_matrix(local), _matrix(reference))
    _assert_complete(local)


def test_a_killed_worker_is_a_failure_and_reruns(tmp_path: Path) -> None:
    plan = _plan(tmp_path, fake_sleep=0.3)
    victim = plan.paths(plan.runs[3])

    def kill_when_started() -> None:
        pid_file = victim.run_dir / "pid"
        for _ in range(400):
            if pid_file.is_file() and pid_file.read_text():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    report = LocalExecutor(workers=2, preload=["grid_fakes"]).run(plan, progress=False)
    killer.join()
    assert [r.run_id for r in report.failed] == [plan.runs[3].run_id]
    assert "killed by signal SIGKILL" in report.failed[0].error
    again = LocalExecutor(workers=2, preload=["grid_fakes"]).run(plan, progress=False)
    assert again.n_runs == 1 and again.n_ok == 1
    _assert_complete(plan)


def test_worker_that_cannot_write_its_run_says_why(tmp_path: Path) -> None:
    # A run folder or log that cannot be written (a full or read-only disk) failed every run with
    # "worker process exited with code 1" alone; the reason was in no log and no record.
    plan = _plan(tmp_path)
    plan.layout.logs_dir.write_text("not a folder")  # the log cannot be opened
    report = LocalExecutor(workers=1, preload=["grid_fakes"]).run(plan, [plan.runs[0].run_id], progress=False)
    assert len(report.failed) == 1
    assert f"before writing its record: FileExistsError: [Errno 17] File exists: '{plan.layout.logs_dir}'" in (
        report.failed[0].error
    )


def test_interrupted_grid_resumes_to_the_same_matrix(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "killed", fake_sleep=0.4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cltm_sb.cli", "run", str(plan.plan_dir), "--workers", "2",
         "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = list(plan.records_dir.glob("*.json")) if plan.records_dir.is_dir() else []
        runs = plan.plan_dir / "runs"
        in_flight = [
            p for p in (runs.iterdir() if runs.is_dir() else [])
            if (p / "pid").is_file() and not plan.paths(p.name).record.exists()
        ]
        if len(done) >= 4 and in_flight:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out  # 128 + SIGTERM
    records = list(plan.records_dir.glob("*.json"))
    assert 4 <= len(records) < 18
    assert not list(plan.records_dir.glob(".*.tmp"))
    for path in records:  # every record left is complete and ok
        assert json.loads(path.read_text())["status"] == "ok"
    started = [p for p in (plan.plan_dir / "runs").iterdir()]
    interrupted = [p for p in started if not plan.paths(p.name).record.exists()]
    # A folder may exist before its worker wrote a pid; those never started the fake run.
    with_pid = [p for p in interrupted if (p / "pid").is_file()]
    assert with_pid, "the kill should have caught runs in flight"
    for folder in with_pid:  # their workers are gone
        pid = int((folder / "pid").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    report = LocalExecutor(workers=2, preload=["grid_fakes"]).run(load_plan(plan.plan_dir), progress=False)
    assert report.n_runs == 18 - len(records) and not report.failed
    _assert_complete(plan)
    reference = _plan(tmp_path, "reference", fake_sleep=0.4)
    InProcessExecutor().run(reference, progress=False)
    np.testing.assert_array_equal(_matrix(plan), _matrix(reference))


def test_cli_run_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cltm_sb.cli import main

    plan = _plan(tmp_path, fake_fail=["fr:a"])
    assert main(["status", str(plan.plan_dir)]) == 0
    assert "0/18 done, 0 failed, 18 pending" in capsys.readouterr().out
    assert main(["run", str(plan.plan_dir), "--executor", "inprocess", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "16 runs finished, 2 failed" in out and "fake failure of fr:a" in out
    assert main(["status", str(plan.plan_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["done"], status["failed"], status["pending"]) == (16, 2, 0)
    assert status["eta_s"] is not None and len(status["failures"]) == 2
    done = next(s for s in plan.runs if s.run_id != "fr:a" and plan.paths(s).record.is_file())
    plan.paths(done).record.write_text("{not json")
    assert main(["status", str(plan.plan_dir)]) == 0
    out = capsys.readouterr().out
    assert "15/18 done, 2 failed, 1 pending" in out
    assert f"REDO {done.run_id} (pending, trained again by `cltm run`): " in out
    assert str(plan.paths(done).record) in out


def test_unknown_executor_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid executors: local, slurm, inprocess"):
        make_executor("kubernetes")
