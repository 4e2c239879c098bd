"""The task table: one entry per supported task, shared by records, the CLI and plots."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A paralinguistic task of the CLTM.

    Attributes:
        name: short code used on the command line and in records (``gr``, ``sv``).
        recipe: name of the SpeechBrain recipe (``recipes/<recipe>/train.py``).
        metric: name of the higher-is-better metric that enters the CLTM.
        title: human-readable title for plots and reports.
        clips_per_speaker: default K written to prepare.json.
    """

    name: str
    recipe: str
    metric: str
    title: str
    clips_per_speaker: int


TASKS: dict[str, Task] = {
    "gr": Task("gr", "gender", "macro_f1", "Gender recognition", clips_per_speaker=1),
    "sv": Task("sv", "speaker", "auc", "Speaker verification", clips_per_speaker=10),
}


def get_task(name: str) -> Task:
    """Return the task called ``name``; an unknown name raises a ValueError listing the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}"
        ) from None
