"""Small file helpers: atomic, durable writes that respect the umask, folders of outputs written
as one, and content hashes."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """This process's umask (read without changing it where Linux allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: the only portable way to read it is to set it
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give a new file or folder under the umask.

    ``tempfile`` makes private files (0600) and folders (0700); what the tool writes (records,
    manifests, a lab's shared audio cache) must be as readable as any other file the user writes.
    """
    return (0o777 if directory else 0o666) & ~current_umask()


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or folder's) data to disk; folders that cannot be opened are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, writer: Callable[[Path], None], durable: bool = True
) -> Path:
    """Write ``path`` through ``writer(tmp_path)`` and rename into place.

    The temporary file lives in the same folder so that the rename is atomic: readers see either
    the old file or the complete new one, never a partial write. Its content is flushed to disk
    before the rename (and the rename after it), so a power cut cannot leave an empty file under
    the final name; the file gets the permissions the umask gives any new file. ``durable=False``
    skips the flushes (still atomic) for files that can be made again at will, such as the
    thousands of records of a simulated grid (the flushes cost ~4 ms a file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.chmod(tmp_path, default_mode())
        if durable:
            fsync_path(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, durable: bool = True) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN written as null)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n"
    return atomic_write_text(path, text, durable)


OUTPUTS_MANIFEST = ".cltm-outputs.json"


class OutputFolder:
    """A folder of outputs written as one (``with OutputFolder(out, "report") as folder: write
    into folder.path``).

    The files are written into a hidden staging folder beside ``out`` and moved in when the
    block ends without error, replacing the files that the last write of the same ``kind`` (the
    command: report, compare, ...) left there, as listed in ``out/.cltm-outputs.json``: no file
    of an earlier analysis of that kind is left beside the new ones, and an interrupted or failed
    write leaves ``out`` as it was. Files of other kinds (a report written into the simulated
    grid it reads, say) and of one's own are kept.
    """

    def __init__(self, out: str | os.PathLike, kind: str) -> None:
        self.target = Path(out)
        self.kind = kind
        self.path = self.target

    def __enter__(self) -> OutputFolder:
        parent = self.target.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=parent))
        return self

    def final(self, written: Any) -> Any:
        """``written`` (a path, or a dict or list of them) with staging paths as they will be in ``out``."""
        if isinstance(written, dict):
            return {key: self.final(value) for key, value in written.items()}
        if isinstance(written, list):
            return [self.final(value) for value in written]
        if isinstance(written, Path) and written.is_relative_to(self.path):
            return self.target / written.relative_to(self.path)
        return written

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        try:
            if kind is None:
                self._publish()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def _publish(self) -> None:
        new = sorted(
            p.relative_to(self.path).as_posix()
            for p in self.path.rglob("*")
            if p.is_file() and p.name != OUTPUTS_MANIFEST
        )
        manifest = self.target / OUTPUTS_MANIFEST
        writes: dict[str, list[str]] = {}
        if manifest.is_file():
            writes = json.loads(manifest.read_text(encoding="utf-8")).get("writes", {})
        others = {name for kind, names in writes.items() if kind != self.kind for name in names}
        self.target.mkdir(parents=True, exist_ok=True)
        for name in sorted(set(writes.get(self.kind, [])) - set(new) - others):
            stale = self.target / name
            stale.unlink(missing_ok=True)
            for folder in stale.parents:  # folders the stale files leave empty go too
                if folder == self.target or not folder.is_dir() or any(folder.iterdir()):
                    break
                folder.rmdir()
        for name in new:
            destination = self.target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path / name, destination)
        atomic_write_json(manifest, {"writes": {**writes, self.kind: new}})


def writes_output_folder(parameter: str, kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function that writes a folder of outputs of ``kind`` into its argument
    ``parameter``: the folder is then written as one (:class:`OutputFolder`) and the paths it
    returns are those in the folder asked for."""

    def decorate(write: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(write)

        @functools.wraps(write)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            with OutputFolder(bound.arguments[parameter], kind) as folder:
                bound.arguments[parameter] = folder.path
                return folder.final(write(*bound.args, **bound.kwargs))

        return wrapper

    return decorate


def try_lock(path: str | os.PathLike) -> IO[str] | str:
    """Take ``path``'s ``flock`` without waiting: the open, locked file, or who holds it.

    A kernel lock vanishes with the process that holds it (SIGKILL included), so a lock file left
    behind by a dead process never blocks; the line written into it only tells the user who holds
    a live lock. A holder may delete the file before letting go (a failed ``cltm prepare`` removes
    the folder it created): a lock then taken on the deleted file is let go and the new file at
    ``path`` locked instead, so two processes never hold two files of one name. An OSError other
    than contention (a file system without flock) is the caller's to handle.
    """
    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - returned to the caller, locked
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return lock_holder(path)
        except OSError:
            handle.close()
            raise
        if _is_at(handle, path):
            break
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def _is_at(handle: IO[str], path: Path) -> bool:
    """Whether the open file ``handle`` is still the file at ``path`` (not deleted or replaced)."""
    try:
        at = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (at.st_dev, at.st_ino) == (opened.st_dev, opened.st_ino)


def lock_holder(path: str | os.PathLike) -> str:
    """Who holds (or last held) a lock, as its file says: ``pid ... on <host> since ...``."""
    try:
        return Path(path).read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


@contextlib.contextmanager
def holding(handle: IO[str]) -> Iterator[None]:
    """Keep a lock from :func:`try_lock` until the block ends."""
    try:
        yield
    finally:
        # Unlock before closing: a child forked meanwhile shares the lock and would keep it.
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def tail_text(path: str | os.PathLike, tail_bytes: int = 65536) -> str | None:
    """The last ``tail_bytes`` of a text file (a log may be large), or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - tail_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def yaml_syntax_error(path: str | os.PathLike, error: Exception) -> str:
    """One line for a ruamel.yaml error of a file: ``<path>, line L, column C: YAML syntax error (...)``.

    ruamel's own text spans several lines and calls the file ``<unicode string>``. The
    context (an unclosed quote or bracket: where it opened) is kept, with its place.
    """

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    problem = getattr(error, "problem", None) or (str(error).strip().splitlines() or [type(error).__name__])[0]
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    where = f", {at(mark)}" if mark is not None else ""
    shown = context and context_mark is not None and context_mark is not mark
    opened = f" {context} at {at(context_mark)}" if shown else ""
    return f"{path}{where}: YAML syntax error ({problem.strip()}{opened and ','}{opened})"


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and NaN floats into plain JSON values (NaN -> None)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short content hash of a JSON-serialisable object, independent of dict key order."""
    text = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return sha256_text(text)[:length]


def read_csv_text(path: str | os.PathLike, what: str, layout: str, index_col: int | None = None) -> Any:
    """A CSV as a DataFrame of text cells (nothing turned into NaN), labels stripped.

    Errors name the file: missing, not UTF-8 (with line and byte), empty, not a CSV table;
    ``what`` names the file's kind ("matrix"), ``layout`` says what it should hold.
    """
    import io

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not UTF-8 text (line {line}, byte {error.start}); save the {what} as a UTF-8 CSV"
        ) from None
    _check_table_shape(path, text, layout, index_col)
    try:
        frame = pd.read_csv(io.StringIO(text), index_col=index_col, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; {layout}") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path}: not a CSV table ({error}); {layout}") from None
    if index_col is not None:
        frame.index = [str(i).strip() for i in frame.index]
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _check_table_shape(path: Path, text: str, layout: str, index_col: int | None) -> None:
    """Errors pandas would hide: a row with more or fewer fields than the header (padded with
    empty cells, it would pass for unmeasured ones), a repeated or unnamed column (renamed
    ``en.1`` / ``Unnamed: 5``), a file written with semicolons."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return  # empty: pandas' own error says so
    names = [h.strip() for h in header]
    if len(names) == 1 and ";" in names[0]:
        raise ValueError(f"{path}: the fields are separated by ';'; save the file with commas; {layout}")
    # The first column may be unnamed: it holds the row labels (``,code1,code2,...``).
    named = [(k, name) for k, name in enumerate(names) if k != (index_col or 0) or name]
    unnamed = [k + 1 for k, name in named if not name]
    if unnamed:
        raise ValueError(
            f"{path}: column(s) {', '.join(map(str, unnamed))} of the header have no name "
            f"(a trailing comma?); {layout}"
        )
    seen: set[str] = set()
    repeated = sorted({name for _, name in named if name in seen or seen.add(name)})
    if repeated:
        raise ValueError(f"{path}: column(s) {', '.join(repeated)} appear more than once in the header")
    for record in reader:
        if not record:
            continue  # a blank line
        if len(record) != len(header):
            label = f" (row {record[index_col].strip()!r})" if index_col is not None and record else ""
            raise ValueError(
                f"{path}, line {reader.line_num}{label}: {len(record)} fields where the header has "
                f"{len(header)}; fix the line; {layout}"
            )
