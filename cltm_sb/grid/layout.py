"""The one owner of a grid folder's names: plan.json, runs/, records/, logs/, slurm/ and locks.

Nothing else builds a path inside a grid folder: the planner, the executors, the analysis and the
report ask :class:`GridLayout` (the whole folder) or :class:`RunPaths` (one run). The names of the
files inside one run's output folder belong to the recipe side (:mod:`cltm_sb.recipe.run_files`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

PLAN_FILE = "plan.json"
FAMILIES_FILE = "families.csv"
RUN_MARKER = ".cltm_run"
LOCK_FILE = ".lock"


class PlanError(ValueError):
    """A plan that cannot be made, read or run as asked; the message says what to do."""


class GridLayout:
    """The files and folders of one grid folder (``<plan_dir>``)."""

    def __init__(self, plan_dir: str | os.PathLike) -> None:
        self.plan_dir = Path(plan_dir)

    @property
    def plan_file(self) -> Path:
        return self.plan_dir / PLAN_FILE

    @property
    def records_dir(self) -> Path:
        return self.plan_dir / "records"

    @property
    def families_file(self) -> Path:
        """The ``code,name,family`` CSV the grid was planned with (copied by ``cltm plan``);
        commands that read the grid use it when ``--families`` is not given."""
        return self.plan_dir / FAMILIES_FILE

    @property
    def runs_dir(self) -> Path:
        return self.plan_dir / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.plan_dir / "logs"

    @property
    def slurm_dir(self) -> Path:
        return self.plan_dir / "slurm"

    @property
    def slurm_jobs_file(self) -> Path:
        """The grid's submitted SLURM jobs: which runs went to which array task, and when."""
        return self.slurm_dir / "jobs.json"

    @property
    def slurm_jobs_lock(self) -> Path:
        """Serialises changes of :attr:`slurm_jobs_file` (not the plan lock: cancel works beside a run)."""
        return self.slurm_dir / ".jobs.lock"

    @property
    def lock_file(self) -> Path:
        return self.plan_dir / LOCK_FILE

    @property
    def locks_dir(self) -> Path:
        """Per-run locks (``<run_id>.lock``), held by the process that trains the run."""
        return self.plan_dir / "locks"

    def run(self, run_id: str) -> RunPaths:
        """The :class:`RunPaths` of one run."""
        return RunPaths(self.plan_dir, run_id)

    def plan_fields(self) -> dict[str, Any] | None:
        """The raw content of ``plan.json`` (None when the folder holds no plan).

        For readers that need a field or two (the protocol, the prepared folder) without loading
        the plan; an unreadable plan file is a :class:`PlanError` that names it.
        """
        if not self.plan_file.is_file():
            return None
        try:
            data = json.loads(self.plan_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise PlanError(f"{self.plan_file}: not valid JSON ({error})") from error
        if not isinstance(data, dict):
            raise PlanError(f"{self.plan_file}: not a cltm plan (expected a JSON object)")
        return data


class RunPaths:
    """Every file name of one run of a plan; nothing else builds them.

    - ``run_dir``: ``<plan>/runs/<run_id>/``, the run's output folder, tagged with a marker file
      so that only folders made by the grid are ever deleted;
    - ``record``: ``<plan>/records/<run_id>.json``, written atomically when the run ends;
    - ``log``: ``<plan>/logs/<run_id>.log``;
    - ``lock``: ``<plan>/locks/<run_id>.lock``, locked (``flock``) by the process that trains the
      run for the whole attempt; the kernel drops the lock when that process dies.
    """

    def __init__(self, plan_dir: str | os.PathLike, run_id: str) -> None:
        self.plan_dir = Path(plan_dir)
        self.run_id = run_id

    @property
    def run_dir(self) -> Path:
        return self.plan_dir / "runs" / self.run_id

    @property
    def marker(self) -> Path:
        return self.run_dir / RUN_MARKER

    @property
    def record(self) -> Path:
        return self.plan_dir / "records" / f"{self.run_id}.json"

    @property
    def log(self) -> Path:
        return GridLayout(self.plan_dir).logs_dir / f"{self.run_id}.log"

    @property
    def lock(self) -> Path:
        return GridLayout(self.plan_dir).locks_dir / f"{self.run_id}.lock"

    def stale_temp_records(self) -> list[Path]:
        """Temporary files of record writes that were killed (``.<run_id>.json.*.tmp``)."""
        folder = self.record.parent
        return sorted(folder.glob(f".{self.run_id}.json.*.tmp")) if folder.is_dir() else []

    def fresh_run_dir(self, resume: bool = False) -> Path:
        """Remove what an interrupted attempt left, then make an empty folder with the marker.

        With ``resume`` (the attempt left a checkpoint: the recipe resumes from it) the folder is
        kept. Only a folder that carries the marker is deleted or kept; any other folder in the
        way is an error.
        """
        if self.run_dir.exists():
            if not self.marker.is_file():
                raise PlanError(
                    f"{self.run_dir} exists but was not made by the grid (no {RUN_MARKER}); "
                    "move it away and run again"
                )
            if not resume:
                shutil.rmtree(self.run_dir)
        for tmp in self.stale_temp_records():
            tmp.unlink(missing_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(f"{self.run_id}\n", encoding="utf-8")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.record.parent.mkdir(parents=True, exist_ok=True)
        return self.run_dir
