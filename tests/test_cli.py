"""The command line's error contract: one line, exit 2 for bad input, 1 for the machine, SIGPIPE."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cltm_sb import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example_cltm.csv"


def test_a_warning_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrix = tmp_path / "m.csv"
    matrix.write_text(",en,es\nen,0.9,0.5\nes,0.4,1\n", encoding="utf-8")  # diagonal not 1
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["analyze", str(matrix)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning" in line]
    assert lines == [f"cltm analyze: warning: {matrix}: diagonal entry of 'en' is 0.9, not 1 "
                     "(a CLTM row is normalised by its self-gain)"]
    assert "UserWarning" not in err and "warnings.warn" not in err


def test_a_failure_of_the_machine_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def disk_full(path: object, square: bool = True) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "out"))

    from cltm_sb.analysis import external

    monkeypatch.setattr(external, "read_matrix_csv", disk_full)
    assert cli.main(["analyze", str(EXAMPLE)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"cltm analyze: error: [Errno 28] No space left on device: '{tmp_path / 'out'}'"


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["analyze", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.csv: matrix file not found")


def test_a_closed_pipe_ends_quietly() -> None:
    """``cltm analyze --json | head -1``: no BrokenPipeError traceback, the SIGPIPE status."""
    command = (
        f"{sys.executable} -m cltm_sb.cli analyze {EXAMPLE} --json | head -c 1 >/dev/null; "
        "echo ${PIPESTATUS[0]}"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() in {"0", "141"}, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


@pytest.mark.parametrize("option", ["--threads", "--runs-per-gpu"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_run_refuses_threads_and_runs_per_gpu_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    # --threads -1 failed every run of the grid (torch wants a positive count), --threads 0 was
    # the default in silence: refused before the plan is read, naming the option.
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", str(tmp_path / "no-plan"), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "a whole number >= 1" in err


def test_a_matrix_in_percent_gives_one_warning_that_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Every diagonal entry 100 gave one warning line per language, none naming the likely cause.
    matrix = tmp_path / "m.csv"
    matrix.write_text(",en,es,fr\nen,100,50,20\nes,40,100,-10\nfr,30,20,100\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert cli.main(["analyze", str(matrix)]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1
    assert "diagonal entries of 3 targets are not 1 (en 100, es 100, fr 100)" in lines[0]
    assert "percent? divide it by 100" in lines[0]
