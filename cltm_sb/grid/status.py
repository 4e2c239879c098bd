"""Where the runs of a plan stand (done, failed, pending) and how long the rest may take."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cltm_sb.grid.plan import Plan, RunSpec
from cltm_sb.recipe.run_files import last_heartbeat
from cltm_sb.results import RecordError, RunRecord, read_record

logger = logging.getLogger(__name__)


@dataclass
class RunState:
    """Where one run stands: ``done``, ``failed`` or ``pending`` from its record
    (:func:`cltm_sb.grid.jobs.grid_status` adds ``queued`` and ``running`` from SLURM)."""

    spec: RunSpec
    state: str
    record: RunRecord | None = None
    redo_reason: str = ""  # why a pending run that has a record will be trained again


def run_state(plan: Plan, spec: RunSpec) -> RunState:
    """State of one run from its record: done only when the record is ok and matches the plan."""
    path = plan.paths(spec).record
    if not path.is_file():
        return RunState(spec, "pending")
    try:
        record = read_record(path)
    except RecordError as error:
        logger.warning("%s; the run will be redone", error)
        return RunState(spec, "pending", redo_reason=str(error))
    if record.config_hash != plan.config_hash or (record.data_hash and record.data_hash != plan.data_hash):
        reason = (
            f"{path}: config/data hash {record.config_hash}/{record.data_hash} differs from the "
            f"plan's {plan.config_hash}/{plan.data_hash}"
        )
        logger.warning("%s; the run will be redone", reason)
        return RunState(spec, "pending", record, reason)
    if record.debug:  # a few batches only: never counts as done
        reason = f"{path}: a --debug run (a few batches only)"
        logger.warning("%s; the run will be redone in full", reason)
        return RunState(spec, "pending", record, reason)
    return RunState(spec, "done" if record.status == "ok" else "failed", record)


def plan_status(plan: Plan) -> list[RunState]:
    """The state of every run of the plan, in plan order."""
    return [run_state(plan, spec) for spec in plan.runs]


def _locked(lock: Path) -> bool:
    """Whether a live process holds ``lock`` (a run training on this machine); takes nothing.

    A shared lock is asked for without waiting and let go at once: the file is neither written
    nor kept locked, so a grid that takes the lock meanwhile is not in the way.
    """
    try:
        with open(lock, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def heartbeats(plan: Plan, states: Sequence[RunState]) -> dict[str, str]:
    """The last heartbeat line (``epoch, step, loss, elapsed, ETA``) of each running run.

    Running: in SLURM (``state == "running"``), or not finished and training on this machine (its
    lock is held). The line comes from the run's log, where the recipe writes one every
    ``heartbeat_minutes`` when it has no progress bar.
    """
    beats = {}
    for state in states:
        paths = plan.paths(state.spec)
        if state.state == "running" or (state.state == "pending" and _locked(paths.lock)):
            beat = last_heartbeat(paths.log)
            beats[state.spec.run_id] = beat or "started, no heartbeat yet"
    return beats


def estimate_seconds(plan: Plan, runs: Sequence[RunSpec], seconds_per_subset: float, workers: int = 1) -> float:
    """Rough wall time of ``runs``: training time grows with the number of training subsets."""
    total = sum(len(spec.train) for spec in runs) * seconds_per_subset
    return total / max(1, workers)


def seconds_per_subset(records: Iterable[RunRecord]) -> float | None:
    """Mean measured wall time per training subset over finished records (None without any)."""
    times = [
        r.wall_time_s / max(1, len(r.train_set))
        for r in records
        if r.status == "ok" and r.wall_time_s
    ]
    return sum(times) / len(times) if times else None


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m20s`` or ``45s``."""
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
