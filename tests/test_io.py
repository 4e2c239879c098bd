"""Atomic writes: whole files only, durable, and as readable as the umask allows."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from cltm_sb.io import (
    atomic_write,
    atomic_write_text,
    current_umask,
    default_mode,
    read_csv_text,
    writes_output_folder,
)


@pytest.fixture
def umask():
    """Set a umask for one test and restore the old one."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path: Path, umask, mask: int, mode: int) -> None:
    umask(mask)
    assert current_umask() == mask
    path = atomic_write_text(tmp_path / "shared" / "record.json", "{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert default_mode(directory=True) == 0o777 & ~mask


def test_a_failing_writer_leaves_nothing(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out.csv", broken)
    assert list(tmp_path.iterdir()) == []


def test_the_content_is_flushed_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b))[1])
    atomic_write_text(tmp_path / "r.json", "{}")
    assert order[:2] == ["fsync", "replace"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (",en,es\nen,1,0.5\nes,0.2\n", r"line 3 \(row 'es'\): 2 fields where the header has 3"),
        (",en,es\nen,1,0.5,0.1\nes,0.2,1\n", r"line 2 \(row 'en'\): 4 fields where the header has 3"),
        (",en,es,en\nen,1,0.5,1\nes,0.2,1,0.2\n", "column.s. en appear more than once"),
        (",en,es,\nen,1,0.5,\nes,0.2,1,\n", r"column.s. 4 of the header have no name \(a trailing comma\?\)"),
        (";en;es\nen;1;0.5\nes;0.2;1\n", "separated by ';'; save the file with commas"),
    ],
)
def test_a_table_pandas_would_pad_or_rename_is_refused_naming_the_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=says):
        read_csv_text(path, "matrix", "layout", index_col=0)


def test_an_unnamed_label_column_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(",en,es\nen,1,0.5\nes,0.2,1\n\n")
    assert read_csv_text(path, "matrix", "layout").shape == (2, 3)
    assert list(read_csv_text(path, "matrix", "layout", index_col=0).index) == ["en", "es"]


def test_an_output_folder_replaces_its_last_write_and_survives_a_failed_one(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")

    def writer(kind: str):
        @writes_output_folder("folder", kind)
        def write(folder: Path, names: list[str], fail: bool = False) -> list[Path]:
            written = [atomic_write_text(folder / name, name) for name in names]
            if fail:
                raise KeyboardInterrupt  # e.g. Ctrl-C after some files
            return written

        return write

    report, other = writer("report"), writer("simulate")
    assert other(out, ["records/r1.json", "truth.csv"]) == [out / "records/r1.json", out / "truth.csv"]
    first = report(out, ["a.csv", "sub/b.csv", "sub/deep/c.csv"])
    assert first == [out / "a.csv", out / "sub/b.csv", out / "sub/deep/c.csv"]
    with pytest.raises(KeyboardInterrupt):
        report(out, ["a.csv", "d.csv"], fail=True)
    assert (out / "sub/b.csv").is_file() and not (out / "d.csv").exists()  # as it was
    report(out, ["d.csv", "sub/b.csv"])
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.name.startswith("."))
    # a.csv and sub/deep/ were the last report's, not this one's; another kind's files (a report
    # written into the grid it reads) and the user's own are kept
    assert names == ["d.csv", "notes.txt", "records", "records/r1.json", "sub", "sub/b.csv", "truth.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left


def test_a_lock_file_its_holder_deleted_is_not_the_one_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cltm_sb.io import holding, try_lock

    # The holder (a failed prepare taking back its folder) deletes the file just before letting
    # go, after this process opened it: locking the deleted file would let a third process lock
    # a new file of the same name beside this one.
    path = tmp_path / "folder" / ".lock"
    real, calls = fcntl.flock, []

    def flock(handle, operation):
        if not calls:
            path.unlink()
        calls.append(operation)
        return real(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    held = try_lock(path)
    assert not isinstance(held, str)
    with holding(held):
        assert os.fstat(held.fileno()).st_ino == path.stat().st_ino
        assert isinstance(try_lock(path), str)  # the file at path is the one held
