"""``cltm demo``: the whole pipeline on the built-in toy corpus, offline, on a laptop CPU.

toy corpus (Common Voice layout) → ``prepare`` for gender recognition and speaker verification
(and age-group recognition with ``tasks=("gr", "sv", "age")``) → a plan per task (tiny encoder,
``toy`` preset, 5 seeds) → local grid → CLTM, standard errors, diagnostics and heatmaps per task
→ ``<out>/report.md``.

Everything is resumable: running the demo again reuses the corpus, the prepared data and every
finished run.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cltm_sb.analysis.diagnostics import DIAGNOSTICS
from cltm_sb.analysis.summary import format_value
from cltm_sb.io import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; ``quick`` is the end-to-end smoke test."""

    n_languages: int
    seeds: tuple[int, ...]
    gr_n: int
    sv_n: int
    sv_k: int
    overrides: tuple[tuple[str, Any], ...]
    corpus_size: dict[str, int] | None = None
    age_n: int = 24  # 8 speakers per age band (cltm_sb.data.age): at 12 the toy self-gains drown in noise


FULL = DemoConfig(
    n_languages=6,
    seeds=(42, 43, 44, 45, 46),  # with 3 the SE of a self-gain (2 dof) is too rough to flag by
    gr_n=8,  # 4 speakers per gender: the steep part of the toy learning curve
    sv_n=32,
    sv_k=4,
    overrides=(("encoder", "tiny_hubert"), ("preset", "toy")),
)
QUICK = DemoConfig(
    n_languages=3,
    seeds=(42, 43),
    gr_n=8,
    sv_n=16,
    sv_k=4,
    overrides=(("encoder", "tiny_hubert"), ("preset", "toy"), ("number_of_epochs", 1)),
    age_n=6,
    corpus_size={
        "train_speakers_per_gender": 10,
        "train_clips_per_speaker": 4,
        "test_speakers_per_gender": 3,
        "test_clips_per_speaker": 4,
        "dev_speakers_per_gender": 1,
        "dev_clips_per_speaker": 1,
        "unlabelled_speakers": 1,
    },
)
TASK_SIZES = {"gr": ("gr_n", None), "sv": ("sv_n", "sv_k"), "age": ("age_n", None)}
#: The demo's tasks unless asked for others (``cltm demo --tasks gr,sv,age``).
DEFAULT_TASKS = ("gr", "sv")


def demo_folders(out: str | os.PathLike) -> dict[str, Path]:
    """Every folder the demo writes, by role."""
    out = Path(out)
    return {
        "out": out,
        "corpus": out / "corpus",
        "corpus_age": out / "corpus_age",  # the same languages, voices with age cues (age task)
        "cache": out / "audio_cache",
        "prepared": out / "prepared",
        "grids": out / "grids",
        "report": out / "report.md",
    }


def _check_mode(out: Path, quick: bool) -> None:
    """Refuse a folder the other mode wrote, then mark it with this one (``<out>/demo.json``).

    The demo reuses the corpus, the prepared data and the grid it finds: a full demo in a --quick
    folder would train 5 seeds on the quick corpus and sizes, under another configuration than the
    grid's finished runs, and stop at the analysis with records that mix configurations.
    """
    marker = out / "demo.json"
    mode = "quick" if quick else "full"
    try:
        made = json.loads(marker.read_text(encoding="utf-8")).get("mode")
    except (OSError, ValueError, AttributeError):  # none yet, or cut short: this run writes it
        made = None
    if made and made != mode:
        flag = "with --quick" if made == "quick" else "without --quick"
        raise ValueError(
            f"{out} holds a {made} demo (its corpus, data and runs); run `cltm demo` {flag} "
            f"again to reuse it, or give another --out for the {mode} demo"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"mode": mode}) + "\n")


def run_demo(
    out: str | os.PathLike = "cltm_demo",
    *,
    quick: bool = False,
    workers: int | None = None,
    progress: bool = True,
    runner: str | None = None,
    tasks: tuple[str, ...] | list[str] = DEFAULT_TASKS,
) -> Path:
    """Run the demo into ``out`` and return the path of ``report.md``.

    ``<out>/<task>/`` (``gr``, ``sv``; ``age`` when asked) holds what ``cltm matrix`` writes
    (cltm.csv, cltm_se.csv, diagnostics.json, cltm.png, ...) plus the full report (report.html,
    report.md, donors.csv). ``runner`` replaces the training function (tests).
    """
    unknown = [task for task in tasks if task not in TASK_SIZES]
    if unknown or not tasks:
        raise ValueError(f"demo tasks {unknown or '(none)'}: choose among {', '.join(TASK_SIZES)}")
    from cltm_sb.analysis.grid_analysis import analyze_grid
    from cltm_sb.data.common_voice import prepare_common_voice
    from cltm_sb.data.synth import CorpusSize, synthesize_corpus
    from cltm_sb.grid.executors.core import usable_cores
    from cltm_sb.grid.executors.local import LocalExecutor
    from cltm_sb.grid.plan import DEFAULT_RUNNER, make_plan
    from cltm_sb.languages import read_registry_csv
    from cltm_sb.report.write import write_report

    config = QUICK if quick else FULL
    folders = demo_folders(out)
    _check_mode(folders["out"], quick)
    workers = workers or usable_cores()
    corpus = folders["corpus"]
    if not (corpus / "families.csv").is_file():
        size = CorpusSize(**config.corpus_size) if config.corpus_size else None
        logger.info("writing the toy corpus into %s", corpus)
        synthesize_corpus(corpus, seed=0, n_languages=config.n_languages, size=size, workers=workers)
    if "age" in tasks and not (folders["corpus_age"] / "families.csv").is_file():
        # Age cues blur the gender cue the toy preset's GR is tuned on: a corpus of its own.
        size = CorpusSize(**config.corpus_size) if config.corpus_size else None
        synthesize_corpus(folders["corpus_age"], seed=0, n_languages=config.n_languages, size=size,
                          workers=workers, age_cues=True)  # fmt: skip
    registry = read_registry_csv(corpus / "families.csv")
    locales = sorted(p.name for p in corpus.iterdir() if p.is_dir())[: config.n_languages]

    sections = []
    for task in dict.fromkeys(tasks):
        n_attr, k_attr = TASK_SIZES[task]
        prepared = folders["prepared"] / task
        if not (prepared / "prepare.json").is_file():
            prepare_common_voice(
                folders["corpus_age"] if task == "age" else corpus, locales, task, getattr(config, n_attr), prepared,
                clips_per_speaker=getattr(config, k_attr) if k_attr else None, seed=0,
                cache_dir=folders["cache"], workers=workers, progress=progress,
            )  # fmt: skip
        plan = make_plan(
            folders["grids"] / task, prepared, task, locales, list(config.seeds),
            overrides=dict(config.overrides), runner=runner or DEFAULT_RUNNER,
        )  # fmt: skip
        plan.save(families=corpus / "families.csv")
        report = LocalExecutor(workers=workers).run(plan, progress=progress)
        if report.failed:
            logger.warning("%d %s runs failed; see %s", len(report.failed), task, plan.layout.logs_dir)
        analysis = analyze_grid(plan.plan_dir, registry, task=task, locales=locales)
        write_report(analysis, registry, folders["out"] / task)
        sections.append((task, plan, analysis))
    atomic_write_text(folders["report"], render_demo_report(sections, folders["out"]))
    return folders["report"]


def render_demo_report(sections: list[tuple[str, Any, Any]], base: Path) -> str:
    """The Markdown report: per task the heatmap, diagnostics, self-gains and flagged targets.

    ``sections``: (task, plan, :class:`~cltm_sb.analysis.grid_analysis.GridAnalysis`) per task.
    """
    from cltm_sb.report.document import PLUGIN_LABEL, diagnostic_interval_text
    from cltm_sb.tasks import get_task

    lines = ["# cltm demo", "",
             "Toy corpus, tiny encoder, `toy` preset. Rows are targets, columns donors; "
             "M[t, s] = G(t, s) / G_self(t).", ""]  # fmt: skip
    for task, plan, analysis in sections:
        result, diag = analysis.result, {**analysis.metadata, **analysis.diagnostics}
        estimates = analysis.uncertainty.diagnostics
        level = f"{analysis.uncertainty.level:.0%}"
        spec = get_task(task)
        lines += [f"## {spec.title} ({task}, metric {spec.cltm_metric})", ""]
        lines += [f"{plan.n_trainings} trainings, seeds {', '.join(map(str, plan.seeds))}; "
                  f"files in [`{task}/`]({task}/), full report in "
                  f"[`{task}/report.html`]({task}/report.html)", ""]  # fmt: skip
        png = base / task / "cltm.png"
        if png.is_file():
            lines += [f"![{spec.title} CLTM]({task}/cltm.png)", ""]
        lines += [f"| diagnostic | estimate | {level} interval (seeds only) | {PLUGIN_LABEL} |",
                  "|---|---|---|---|"]  # fmt: skip
        for d in DIAGNOSTICS:
            plugin = format_value(diag.get(d.key), d.fraction)
            if d.key in estimates:
                e = estimates[d.key]
                interval = diagnostic_interval_text(e, d.fraction)
                lines.append(f"| {d.label} | {format_value(e.point, d.fraction)} | {interval} | {plugin} |")
            else:
                lines.append(f"| {d.label} | | | {plugin} |")
        lines += ["", "| target | P(a_t) | P(a_t ∪ b_t) | self-gain ± SE | flagged |", "|---|---|---|---|---|"]
        for locale, row in result.gains.iterrows():
            lines.append(
                f"| {locale} | {format_value(row['p_single'])} | {format_value(row['p_self'])} | "
                f"{format_value(row['self_gain'])} ± {format_value(row['self_gain_se'])} | "
                f"{'yes' if row['flagged'] else ''} |"
            )
        flagged = result.flagged_targets
        lines += ["", f"Targets with a self-gain within 2 SE of zero: {', '.join(flagged) or 'none'}.", ""]
        if diag.get("n_failed_runs"):
            lines += [f"{diag['n_failed_runs']} runs failed; see `cltm status {plan.plan_dir}`.", ""]
    return "\n".join(lines) + "\n"
