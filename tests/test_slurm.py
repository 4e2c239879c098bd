"""SLURM: option checking, the generated sbatch script, and a real single-node cluster on localhost.

The cluster test needs the Debian packages slurmctld, slurmd and slurm-client and root (``.ci/run``
installs them when CI is set); without them it is skipped with the reason. The daemons bind to
localhost ports 6817/6818, run from a temporary folder, and are stopped in the fixture finaliser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.cli import main
from cltm_sb.grid.executors.slurm import (
    SLURM_OPTIONS,
    SlurmExecutor,
    check_slurm_options,
    parse_minutes,
    read_slurm_config,
    sbatch_script,
    slurm_parameters,
)
from cltm_sb.grid.jobs import grid_status, read_jobs, runs_in_slurm
from cltm_sb.grid.plan import make_plan
from cltm_sb.grid.status import plan_status

from helpers import assert_golden

TESTS = Path(__file__).parent
GOLDEN = TESTS / "golden" / "sbatch_gpu.txt"
RUNNER = "grid_fakes:run_fake"
SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
PORTS = (6817, 6818)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown SLURM options \['partion'\]; valid options: partition"):
        check_slurm_options({"partion": "gpu"})
    with pytest.raises(ValueError, match="runs_per_task must be >= 1"):
        check_slurm_options({"runs_per_task": 0})


def test_yaml_options(tmp_path: Path) -> None:
    good = tmp_path / "slurm.yaml"
    good.write_text("partition: gpu\ntime: '1-00:00:00'\nadditional: {mail-type: END}\n")
    assert read_slurm_config(good) == {"partition": "gpu", "time": "1-00:00:00", "additional": {"mail-type": "END"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu: 1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown SLURM options \['gpu'\]"):
        read_slurm_config(bad)


def test_yaml_times_are_read_as_slurm_reads_them(tmp_path: Path) -> None:
    """YAML 1.1 read ``time: 4:00:00`` as the base-60 integer 14400: 10 days asked for, not 4 hours."""
    config = tmp_path / "slurm.yaml"
    for text, minutes in (("4:00:00", 240), ("12:00:00", 720), ("1:30", 2), ("90", 90)):
        config.write_text(f"time: {text}\n")
        assert slurm_parameters(read_slurm_config(config))["timeout_min"] == minutes, text


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("gpus: two", "gpus must be an integer, got 'two'"),
        ("gpus: 1.5", "gpus must be an integer, got 1.5"),
        ("mem_gb: lots", "mem_gb must be a number, got 'lots'"),  # was a bare float() error at sbatch time
        ("mem_gb: 0", "mem_gb must be > 0"),
        ("additional: mail-type=END", "additional must be a mapping of sbatch options"),
    ],
)
def test_bad_yaml_values_name_the_file_and_the_key(line: str, said: str, tmp_path: Path) -> None:
    config = tmp_path / "slurm.yaml"
    config.write_text(line + "\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(config))}: SLURM option {re.escape(said)}"):
        read_slurm_config(config)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("partition: gpu\n  gpus: 1\n", "line 2, column 7: YAML syntax error (mapping values are not allowed here)"),
        ('partition: gpu\ntime: "4:00:00\ngpus: 1\n',
         "(found unexpected end of stream, while scanning a quoted scalar at line 2, column 7)"),
        ("partition: gpu\npartition: cpu\n", 'line 2, column 1: YAML syntax error (found duplicate key "partition"'),
    ],
)
def test_a_yaml_syntax_error_is_one_line_naming_the_place(
    text: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ruamel's several-line text (naming ``<unicode string>``, not the file) was printed as it was."""
    config = tmp_path / "slurm.yaml"
    config.write_text(text)
    data = make_prepared(tmp_path / "prep", ["en"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [1], runner=RUNNER)
    plan.save()
    capsys.readouterr()
    assert main(["run", str(plan.plan_dir), "--executor", "slurm", "--slurm-config", str(config), "--no-wait"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"cltm run: error: {config}, line "), err
    assert said in err and err.endswith("; fix it there (a YAML mapping of SLURM options)"), err
    assert "<unicode string>" not in err


def test_a_setup_string_is_one_line(tmp_path: Path) -> None:
    """``setup: module load cuda`` was iterated character by character: one sbatch line per letter."""
    config = tmp_path / "slurm.yaml"
    config.write_text("setup: module load cuda\n")
    assert slurm_parameters(read_slurm_config(config))["slurm_setup"] == ["module load cuda"]
    assert "\n# setup\nmodule load cuda\n" in sbatch_script(read_slurm_config(config), tmp_path)


@pytest.mark.parametrize(
    ("value", "minutes"),
    [(30, 30), ("45", 45), ("02:00:00", 120), ("1-00:00:00", 1440), ("00:30:30", 31), ("30:15", 31),
     # SLURM's days-hours forms: "1-12" was read as 1 day 12 minutes, "0-12:30" as 12 min 30 s.
     ("1-12", 2160), ("0-12:30", 750), ("2-1:00", 2940)],
)
def test_parse_minutes(value: object, minutes: int) -> None:
    assert parse_minutes(value) == minutes


def test_a_missing_golden_file_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLTM_RECORD_GOLDEN", raising=False)
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        assert_golden(tmp_path / "missing.txt", "anything")
    assert not (tmp_path / "missing.txt").exists()


def test_sbatch_golden() -> None:
    """The script renders on a machine without SLURM (no srun needed) and matches the record."""
    options = {
        "partition": "gpu", "account": "lab", "gpus": 1, "cpus_per_task": 8, "mem_gb": 32,
        "time": "04:00:00", "array_parallelism": 4, "runs_per_task": 3,
        "setup": ["module load cuda"], "additional": {"mail-type": "END"},
    }
    got = sbatch_script(options, "/PLAN/slurm", n_tasks=10)
    assert_golden(GOLDEN, got)
    assert set(slurm_parameters({})) >= {"timeout_min", "cpus_per_task", "slurm_array_parallelism"}
    assert set(SLURM_OPTIONS) >= {"partition", "account", "time", "gpus", "array_parallelism"}


def test_chunks_group_runs_per_task(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    chunks = SlurmExecutor({"runs_per_task": 2}).chunks(plan.runs)
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [r for c in chunks for r in c] == [r.run_id for r in plan.runs]


FAILING_SBATCH = """#!/bin/sh
echo "sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host" >&2
echo "sbatch: fatal: Could not establish a configuration source" >&2
exit 1
"""


def _slurm_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sbatch: str | None) -> None:
    """The only commands on PATH: this ``sbatch`` script and an ``srun`` (none at all without one)."""
    binaries = tmp_path / "bin"
    binaries.mkdir()
    if sbatch is not None:
        (binaries / "sbatch").write_text(sbatch)
        (binaries / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it first
        for binary in binaries.iterdir():
            binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(binaries))


@pytest.mark.parametrize("sbatch", ["failing", "missing"])
def test_a_refused_submission_is_one_line_and_leaves_no_job_files(
    sbatch: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "failing": SLURM's client installed, on a host without a SLURM controller; "missing": no SLURM
    _slurm_client(tmp_path, monkeypatch, FAILING_SBATCH if sbatch == "failing" else None)
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    plan.save()
    capsys.readouterr()
    for _ in range(2):  # every attempt: one line, no orphan pickles
        args = ["run", str(plan.plan_dir), "--executor", "slurm", "--partition", "gpu", "--no-wait", "--no-progress"]
        assert main(args) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"cltm run: error: {plan.plan_dir}: sbatch did not submit the 5 run(s) ("), err
        said = "sbatch: fatal: Could not establish a configuration source" if sbatch == "failing" else "srun"
        assert said in err and "nothing was submitted" in err, err
        assert [p for p in (plan.plan_dir / "slurm").rglob("*") if p.is_file()] == []
    assert {s.state for s in plan_status(plan)} == {"pending"}


ARRAY_REFUSING_SBATCH = """#!/bin/sh
echo "sbatch: error: Batch job submission failed: Invalid job array specification" >&2
exit 1
"""


def test_an_array_over_max_array_size_says_to_raise_runs_per_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SLURM refuses an array larger than its MaxArraySize; only sbatch's words were shown."""
    _slurm_client(tmp_path, monkeypatch, ARRAY_REFUSING_SBATCH)
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER)
    plan.save()
    capsys.readouterr()
    args = ["run", str(plan.plan_dir), "--executor", "slurm", "--runs-per-task", "2", "--no-wait", "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "(sbatch: error: Batch job submission failed: Invalid job array specification)" in err, err
    assert "the job array asked for 3 tasks (2 run(s) per task)" in err and "MaxArraySize" in err, err
    assert err.endswith("raise --runs-per-task (runs_per_task in --slurm-config) so that the array has at most "
                        "MaxArraySize tasks, e.g. --runs-per-task 4 asks for 2"), err
    assert [p for p in (plan.plan_dir / "slurm").rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------------------ real cluster

SACCT_SHIM = '''#!{python}
"""sacct without accounting: answer submitit's `sacct -o JobID,State,NodeList --parsable2 -j ID`."""
import subprocess, sys
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"]
print("JobID|State|NodeList")
for jid in ids:
    out = subprocess.run(["scontrol", "show", "job", jid, "-o"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        task = f.get("ArrayTaskId")
        name = f"{{f.get('ArrayJobId', f['JobId'])}}_{{task}}" if task else f["JobId"]
        if task and not task.isdigit():
            name = f"{{f['ArrayJobId']}}_[{{task}}]"
        print(f"{{name}}|{{f.get('JobState', 'UNKNOWN')}}|{{f.get('NodeList', '')}}")
'''

SLURM_CONF = """ClusterName=cltmtest
SlurmctldHost=localhost
SlurmctldPort={p0}
SlurmdPort={p1}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
SlurmdParameters=config_overrides
StateSaveLocation={t}/state
SlurmdSpoolDir={t}/spool
SlurmctldPidFile={t}/slurmctld.pid
SlurmdPidFile={t}/slurmd.pid
SlurmctldLogFile={t}/log/slurmctld.log
SlurmdLogFile={t}/log/slurmd.log
NodeName=localhost CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, n: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else ""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} not found): install the Debian packages "
            "slurmctld slurmd slurm-client, or run .ci/run with CI set, as root"
        )
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (SlurmUser=root, slurmd)")
    busy = [p for p in PORTS if _port_busy(p)]
    if busy:
        pytest.skip(f"localhost ports {busy} are in use (another SLURM cluster is running?)")
    t = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "bin"):
        (t / sub).mkdir()
    conf = t / "slurm.conf"
    conf.write_text(SLURM_CONF.format(t=t, p0=PORTS[0], p1=PORTS[1]))
    shim = t / "bin" / "sacct"
    shim.write_text(SACCT_SHIM.format(python=sys.executable))
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH", "PYTHONPATH")}
    os.environ["SLURM_CONF"] = str(conf)
    os.environ["PATH"] = f"{t / 'bin'}{os.pathsep}{os.environ['PATH']}"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), saved["PYTHONPATH"]]))
    daemons = [
        # their logs go to the files named in slurm.conf
        subprocess.Popen(["slurmctld", "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen(["slurmd", "-D", "-N", "localhost", "-f", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]

    def stop() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and subprocess.run(
            ["pgrep", "-x", "slurmstepd"], capture_output=True
        ).returncode == 0:
            time.sleep(0.25)
        for proc in reversed(daemons):
            proc.terminate()
        for proc in reversed(daemons):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    try:
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"],
                                   capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the local SLURM node did not become idle (state {state!r}).\nslurmctld:\n"
                    f"{_tail(t / 'log' / 'slurmctld.log')}\nslurmd:\n{_tail(t / 'log' / 'slurmd.log')}"
                )
            time.sleep(0.25)
        yield {"folder": str(t)}
    finally:
        stop()


@pytest.mark.slurm
def test_grid_on_a_local_slurm_cluster(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan dir", data, "gr", ["en", "es"], [1, 2], runner=RUNNER,
                     overrides={"fake_fail": ["es:a"]})
    plan.save()
    executor = SlurmExecutor(
        {"runs_per_task": 3, "array_parallelism": 2, "time": 5, "partition": "debug"}, poll_s=0.5
    )
    report = executor.run(plan, progress=False)
    assert report.n_runs == 10
    assert sorted(r.run_id for r in report.failed) == sorted(
        r.run_id for r in plan.runs if r.train == (("es", "a"),)
    )
    states = [s.state for s in plan_status(plan)]
    assert states.count("done") == 8 and states.count("failed") == 2
    tasks = [p for p in (plan.plan_dir / "slurm").iterdir() if p.is_dir() and "_" in p.name]
    assert len(tasks) == 4  # ceil(10 / 3) array tasks
    (submission,) = read_jobs(plan.layout)  # the job file knows which runs went where
    assert sorted(r for t in submission.tasks for r in t.run_ids) == sorted(r.run_id for r in plan.runs)
    # resume: only the failed ones are submitted again
    again = executor.run(plan, progress=False)
    assert again.n_runs == 2 and again.n_skipped == 8
    _wait_for(lambda: not _squeue_jobs(), 30, "SLURM to finish both jobs")
    assert runs_in_slurm(plan, remember_ended=True) == {}  # written down: SLURM is not asked again
    assert [s.ended for s in read_jobs(plan.layout)] == [True, True]


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.25)


def _squeue_jobs() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%F"], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.slurm
def test_no_wait_submissions_never_repeat_a_queued_or_running_run(
    slurm_cluster: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_prepared(tmp_path / "prep", ["en", "es"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [1], runner=RUNNER,
                     overrides={"fake_sleep": 300})
    plan.save()
    grid = str(plan.plan_dir)
    submit = ["run", grid, "--executor", "slurm", "--no-wait", "--partition", "debug", "--time", "10",
              "--array-parallelism", "2", "--no-progress"]
    assert main(submit) == 0
    assert "submitted 5 runs" in capsys.readouterr().out
    (submission,) = read_jobs(plan.layout)
    job = submission.job_id
    assert [t.task_id for t in submission.tasks] == [f"{job}_{i}" for i in range(5)]

    def counts() -> dict[str, int]:
        return dict(Counter(s.state for s in grid_status(plan)))

    _wait_for(lambda: counts() == {"running": 2, "queued": 3}, 30, "2 running and 3 queued array tasks")
    # a second submission (and a local run) submits and starts nothing
    assert main(submit) == 0
    out = capsys.readouterr().out
    assert f"5 runs are queued or running in SLURM (job {job}) and were not started again" in out
    assert "submitted 0 runs" in out
    assert len(read_jobs(plan.layout)) == 1 and _squeue_jobs() == {job}
    assert main(["run", grid, "--executor", "local", "--no-progress"]) == 0
    assert "were not started again" in capsys.readouterr().out
    assert not plan.records_dir.exists()

    assert main(["status", grid, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["running"], status["queued"], status["pending"], status["done"]) == (2, 3, 0, 0)
    assert {row["job_id"] for row in status["in_slurm"]} == {t.task_id for t in submission.tasks}
    assert main(["status", grid]) == 0
    assert f"0/5 done, 0 failed, 3 queued, 2 running (SLURM job {job}), 0 pending" in capsys.readouterr().out

    assert main(["cancel", grid]) == 0
    assert f"cancelled SLURM job {job}: 3 queued and 2 running runs" in capsys.readouterr().out
    assert read_jobs(plan.layout)[0].cancelled_at is not None
    _wait_for(lambda: not _squeue_jobs(), 30, f"SLURM to end the cancelled job {job}")
    assert counts() == {"pending": 5} and runs_in_slurm(plan) == {}
    assert main(["cancel", grid]) == 0
    assert "nothing to cancel" in capsys.readouterr().out


@pytest.mark.slurm
def test_a_requeued_task_resumes_its_runs_from_their_checkpoints(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    """`scontrol requeue` (what a preemption does) stops the array tasks mid-run: they leave no
    failed record, start again, and their runs resume from the checkpoints they left."""
    from cltm_sb.results import read_record

    data = make_prepared(tmp_path / "prep", ["en"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [1], runner=RUNNER,
                     overrides={"fake_sleep": 300, "fake_ckpt": True})
    plan.save()
    executor = SlurmExecutor({"runs_per_task": 1, "array_parallelism": 2, "time": 10, "partition": "debug"},
                             wait=False)
    executor.run(plan, progress=False)
    (submission,) = read_jobs(plan.layout)
    checkpoints = [plan.paths(spec).run_dir / "save" / "CKPT+fake" for spec in plan.runs]
    _wait_for(lambda: all(c.is_dir() for c in checkpoints), 90, "both runs to write a checkpoint")
    subprocess.run(["scontrol", "requeue", submission.job_id], check=True, capture_output=True)
    records = [plan.paths(spec).record for spec in plan.runs]

    released: set[str] = set()

    def release_and_check() -> bool:
        # SLURM holds a requeued task back for a while (its BeginTime). The tasks of the array
        # become pending one by one, so each is released once it is pending; a few seconds later,
        # not now: slurmd refuses a launch in the second its old credential was revoked ("Job
        # credential revoked") and the job would end.
        states = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
        for line in states.splitlines():
            task_id, _, state = line.partition(" ")
            if state == "PENDING" and task_id not in released:
                subprocess.run(["scontrol", "update", f"JobId={task_id}", "StartTime=now+3"], capture_output=True)
                released.add(task_id)
        return all(r.is_file() for r in records)

    _wait_for(release_and_check, 150, "the requeued tasks to finish their runs")
    assert [(read_record(r).status, read_record(r).extra["resumed"]) for r in records] == [("ok", True)] * 2
    _wait_for(lambda: not _squeue_jobs(), 30, "SLURM to end the job")


def test_a_task_requeued_too_often_fails_its_unfinished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cltm_sb.grid.executors.slurm import MAX_REQUEUES, slurm_task

    data = make_prepared(tmp_path / "prep", ["en"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [1], runner=RUNNER)
    plan.save()
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(MAX_REQUEUES + 1))
    outcomes = slurm_task(str(plan.plan_dir), [s.run_id for s in plan.runs])
    assert [status for _, status in outcomes] == ["failed", "failed"]
    assert [s.state for s in plan_status(plan)] == ["failed", "failed"]
    assert "requeued 4 times (at most 3)" in plan_status(plan)[0].record.error
