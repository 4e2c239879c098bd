"""Common Voice preparation for the CLTM: balanced subsets a/b, test sets and SV trials.

Expected layout (Common Voice 17.0 and later; older gender labels are read too)::

    <cv_root>/<locale>/clips/*.mp3
    <cv_root>/<locale>/validated.tsv, train.tsv, dev.tsv, test.tsv, clip_durations.tsv, ...

Output (``out_dir``)::

    <out>/<locale>/a.csv, b.csv, test.csv [, trials.csv for sv]
    <out>/prepare.json          written last: parameters, counts, file hashes and stamps, data_hash
    <out>/prepare.unfinished    only while a prepare runs (or after one died): plan refuses the folder
    <out>/.prepare.lock         the kernel lock that keeps a second prepare out while one runs
    <out>/audio/...             the decoded 16 kHz cache, unless ``cache_dir`` is given

Protocol (see DESIGN.md §2 and §6): per locale, two speaker-disjoint subsets a and b of N clips
each, N/K speakers with K clips each, half the speakers of each gender; training speakers come
from ``validated.tsv`` minus the dev and test speakers; GR test = every usable ``test.tsv`` row;
SV test = trials among the ``test.tsv`` speakers. A client_id found in several locales under the
root is left out everywhere. Each locale's draw is seeded by (seed, locale).
"""

from __future__ import annotations

import logging
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from cltm_sb import __version__
from cltm_sb.data import DataError, disk_errors
from cltm_sb.data.age import AGE_BAND_COLUMN, BANDS, balance_values
from cltm_sb.data.audio import AudioCache, CachedClip, cache_clip
from cltm_sb.data.cv_tables import speakers_in_several_locales
from cltm_sb.data.manifests import (
    DATA_ROOT_PREFIX,
    GENDERS,
    PREPARE_FILE,
    UNFINISHED_FILE,
    ManifestRow,
    certify_files,
    draw_folder,
    mark_finished,
    mark_unfinished,
    prepare_lock,
    write_manifest,
    write_trials,
)
from cltm_sb.data.pools import LocalePool, load_locale_pool
from cltm_sb.data.sampling import (
    TrainingDraw,
    draw_speaker_clips,
    draw_training,
    make_trials,
    max_supported_n,
    speakers_per_subset,
)
from cltm_sb.io import atomic_write_json, sha256_file, stable_hash
from cltm_sb.tasks import BALANCE_KEYS, Task, get_packaged_task, get_task

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
PARAM_KEYS = (
    "format_version", "task", "n", "clips_per_speaker", "seed", "locales", "cv_root", "data_root",
    "trials_per_speaker",
)  # fmt: skip


def parse_locales(locales: str | Iterable[str]) -> list[str]:
    """``"en,es"`` or a list -> a list of codes without blanks or repeats, in the given order."""
    items = locales.split(",") if isinstance(locales, str) else list(locales)
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise DataError("no locales given; pass --locales en,es,...")
    return out


def _resolve_k(task: str, clips_per_speaker: int | None) -> int:
    k = get_task(task).clips_per_speaker if clips_per_speaker is None else int(clips_per_speaker)
    if k < 1:
        raise DataError(f"--clips-per-speaker must be at least 1, got {k}")
    return k


def _cv_root(cv_root: str | os.PathLike) -> Path:
    root = Path(cv_root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"Common Voice folder {root} not found; pass --cv-root DIR")
    return root


def locale_capacity(pool: LocalePool, task: str, k: int) -> dict[str, Any]:
    """What a locale offers for (task, K): speaker and clip counts and the largest N."""
    row: dict[str, Any] = {"locale": pool.locale}
    eligible = []
    keys = balance_keys(task)
    for gender in balance_values(keys):  # the genders, or the task's other balance groups
        speakers = pool.speakers("train", gender, keys=keys)
        row[f"train_speakers_{gender}"] = len(speakers)
        row[f"eligible_speakers_{gender}"] = n_eligible = sum(len(s.clips) >= k for s in speakers)
        eligible.append(n_eligible)
    clip_counts = [len(s.clips) for s in pool.train.values()]
    row["clips_per_speaker_median"] = statistics.median(clip_counts) if clip_counts else 0
    row["clips_per_speaker_max"] = max(clip_counts, default=0)
    for gender in balance_values(keys):
        test = pool.speakers("test", gender, keys=keys)
        row[f"test_speakers_{gender}"] = len(test)
        row[f"test_clips_{gender}"] = sum(len(s.clips) for s in test)
    row["max_n"] = max_supported_n(eligible, k)
    row["test_ok"] = _test_problem(pool, task) is None
    return row


def _test_problem(pool: LocalePool, task: str) -> str | None:
    """Why the locale's test set cannot serve ``task``, or None."""
    if not get_task(task).trials:  # every balance group (gender, age band) must be tested
        keys = balance_keys(task)
        missing = [g for g in balance_values(keys) if not pool.speakers("test", g, keys=keys)]
        if missing:
            return f"its test.tsv has no usable {' or '.join(missing)} clip"
        return None
    if not any(
        len(pool.speakers("test", g)) >= 2 and pool.speakers("test", g, min_clips=2)
        for g in GENDERS
    ):
        return "its test.tsv lacks two same-gender speakers, one of them with two clips (no trials)"
    return None


def _check_feasible(pools: Sequence[LocalePool], task: str, n: int, k: int) -> None:
    """Raise one DataError that names every locale unable to meet the request."""
    groups = balance_values(balance_keys(task))
    per = " and ".join(balance_keys(task))
    needed = 2 * speakers_per_subset(n, k, len(groups), per) // len(groups)  # per group over a and b
    problems = []
    for pool in pools:
        cap = locale_capacity(pool, task, k)
        if cap["max_n"] < n:
            eligible = " and ".join(f"{cap[f'eligible_speakers_{g}']} {g}" for g in groups)
            in_all = ", ".join(f"{cap[f'train_speakers_{g}']} {g}" for g in groups)
            problems.append(
                f"locale {pool.locale!r} cannot supply N={n} with K={k} (needs {needed} speakers "
                f"per {per} with at least {k} clips in its training pool): it has "
                f"{eligible} such speakers ({in_all} in all; median "
                f"{cap['clips_per_speaker_median']} clips per speaker); the largest N it supports "
                f"is {cap['max_n']}"
            )
        test_problem = _test_problem(pool, task)
        if test_problem:
            problems.append(f"locale {pool.locale!r}: {test_problem}")
    if problems:
        raise DataError(
            "\n".join(problems)
            + "\nUse a smaller --n or --clips-per-speaker, or leave these locales out "
            "(`cltm prepare --report` shows what every locale offers)."
        )


class _Decoder:
    """Decodes clips into the cache, in this process or in a pool of worker processes."""

    def __init__(self, cache: AudioCache, workers: int, progress: bool) -> None:
        self.cache = cache
        self.progress = progress
        self.status: Counter = Counter()
        self._pool = (
            ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
            if workers > 1
            else None
        )

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def decode(self, locale: str, sources: Sequence[Path], what: str) -> list[CachedClip | str]:
        root = str(self.cache.root)
        args = ([root] * len(sources), [locale] * len(sources), [str(s) for s in sources])
        if self._pool is not None:
            results = self._pool.map(cache_clip, *args, chunksize=8)
        else:
            results = map(cache_clip, *args)
        out = list(
            tqdm(results, total=len(sources), desc=f"{locale} {what}", unit="clip",
                 disable=not self.progress or not sources, leave=False)
        )  # fmt: skip
        self.status.update(r.status if isinstance(r, CachedClip) else "failed" for r in out)
        return out


def _manifest_row(
    pool: LocalePool, clip: str, cached: CachedClip, spk: str, gender: str, subset: str,
    labels: tuple[tuple[str, str], ...] = (),
) -> ManifestRow:  # fmt: skip
    duration = pool.durations.get(clip) or cached.source_duration
    return ManifestRow(
        ID=f"{pool.locale}_{Path(clip).stem}",
        duration=round(duration, 3),
        wav=DATA_ROOT_PREFIX + cached.relpath,
        spk_id=spk,
        gender=gender,
        locale=pool.locale,
        subset=subset,
        labels=labels,
    )


def _decode_training(
    pool: LocalePool, draw: TrainingDraw, k: int, seed: int, decoder: _Decoder, stats: Counter,
    data_draw: int = 0,
) -> dict[str, CachedClip]:  # fmt: skip
    """Decode the drawn clips; a failed clip is redrawn from the same speaker (or the speaker
    from the same gender's spares when they run out of clips) until every clip decodes."""
    done: dict[str, CachedClip] = {}
    failed: set[str] = set()
    while True:
        needed = sorted({c for d in draw.speakers for c in d.chosen if c not in done and c not in failed})
        if not needed:
            return done
        results = decoder.decode(pool.locale, [pool.clip_path(c) for c in needed], "train")
        for clip, result in zip(needed, results, strict=True):
            if isinstance(result, CachedClip):
                done[clip] = result
            else:
                failed.add(clip)
                stats["decode_failed"] += 1
                logger.warning("%s: %s; redrawing from the same speaker", pool.locale, result)
        for index, sd in enumerate(draw.speakers):
            for slot, clip in enumerate(sd.chosen):
                if clip not in failed:
                    continue
                if sd.spare:
                    sd.chosen[slot] = sd.spare.pop(0)
                    stats["redraws"] += 1
                    continue
                spares = draw.spare_speakers[sd.group or sd.speaker.gender]
                if not spares:
                    raise DataError(
                        f"locale {pool.locale!r}: too many clips fail to decode; no spare "
                        f"{sd.speaker.gender} speaker left to replace {sd.speaker.client_id}"
                    )
                draw.speakers[index] = draw_speaker_clips(
                    spares.pop(0), k, seed, pool.locale, sd.subset, data_draw
                )
                draw.speakers[index].group = sd.group
                stats["speakers_replaced"] += 1
                break


def _prepare_locale(
    pool: LocalePool, task: str, n: int, k: int, seed: int, trials_per_speaker: int,
    decoder: _Decoder, out_dir: Path, data_draw: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Draw, decode and write one locale's manifests (data draw ``data_draw``); return its counts.

    Every draw has the same test set and trials (the official test.tsv): draws differ only in
    which speakers and clips make a and b.
    """
    locale = pool.locale
    stats: Counter = Counter()
    keys = balance_keys(task)
    by_gender = {g: pool.speakers("train", g, min_clips=k, keys=keys) for g in balance_values(keys)}
    labels = _label_columns(task)
    too_few = sum(1 for s in pool.train.values() if len(s.clips) < k)
    draw = draw_training(by_gender, n, k, seed, locale, data_draw)
    cached = _decode_training(pool, draw, k, seed, decoder, stats, data_draw)
    subsets: dict[str, list[ManifestRow]] = {"a": [], "b": [], "test": []}
    for sd in draw.speakers:
        for clip in sd.chosen:
            subsets[sd.subset].append(
                _manifest_row(pool, clip, cached[clip], sd.speaker.client_id, sd.speaker.gender, sd.subset,
                              labels(sd.speaker))
            )
    test_speakers = sorted(pool.test.values(), key=lambda s: s.client_id)
    test_clips = [(s, c) for s in test_speakers for c in s.clips]
    results = decoder.decode(locale, [pool.clip_path(c) for _, c in test_clips], "test")
    for (speaker, clip), result in zip(test_clips, results, strict=True):
        if isinstance(result, CachedClip):
            subsets["test"].append(
                _manifest_row(pool, clip, result, speaker.client_id, speaker.gender, "test", labels(speaker))
            )
        else:
            stats["test_decode_failed"] += 1
            logger.warning("%s: %s; left out of the test set", locale, result)
    counts: dict[str, Any] = {}
    folder = out_dir / locale
    if get_task(task).trials:
        trials, skipped = make_trials(subsets["test"], trials_per_speaker, seed, locale)
        labels = Counter(t.label for t in trials)
        if not labels[0] or not labels[1]:
            raise DataError(f"locale {locale!r}: its test clips give no {'negative' if labels[1] else 'positive'} trials")
        used = {t.enrol_ID for t in trials} | {t.test_ID for t in trials}
        stats["test_clips_not_in_trials"] = sum(r.ID not in used for r in subsets["test"])
        subsets["test"] = [r for r in subsets["test"] if r.ID in used]
        write_trials(folder / "trials.csv", trials)
        counts["trials"] = {"positive": labels[1], "negative": labels[0], **dict(skipped)}
    for subset, rows in subsets.items():
        write_manifest(folder / f"{subset}.csv", rows)
        counts[subset] = _subset_counts(rows)
    counts["dropped_rows"] = {part: dict(sorted(c.items())) for part, c in pool.dropped.items()}
    counts["dropped_speakers"] = {"too_few_clips": too_few}
    counts["decoding"] = {
        key: int(stats[key])
        for key in ("decode_failed", "redraws", "speakers_replaced", "test_decode_failed")
    }
    if get_task(task).trials:
        counts["decoding"]["test_clips_not_in_trials"] = int(stats["test_clips_not_in_trials"])
    return counts


def _subset_counts(rows: Sequence[ManifestRow]) -> dict[str, int]:
    counts = {"clips": len(rows), "speakers": len({r.spk_id for r in rows})}
    for gender in GENDERS:
        counts[f"{gender}_clips"] = sum(r.gender == gender for r in rows)
        counts[f"{gender}_speakers"] = len({r.spk_id for r in rows if r.gender == gender})
    bands = [dict(r.labels).get(AGE_BAND_COLUMN) for r in rows]
    for band in BANDS if any(bands) else ():
        counts[f"{band}_clips"] = sum(b == band for b in bands)
        counts[f"{band}_speakers"] = len({r.spk_id for r, b in zip(rows, bands) if b == band})
    return counts


def balance_keys(task: str | Task) -> tuple[str, ...]:
    """The columns a subset of ``task`` is balanced over; one that prepare cannot balance raises."""
    spec = get_task(task)
    unknown = [key for key in spec.balance if key not in BALANCE_KEYS]
    if unknown:
        raise DataError(
            f"task {spec.name!r} balances {unknown}: `cltm prepare` balances {', '.join(BALANCE_KEYS)} "
            "(from Common Voice's gender and age columns); write its manifests yourself (any folder "
            "of <locale>/a.csv, b.csv, test.csv with extra label columns works with `cltm plan`)"
        )
    return spec.balance


def _needs_age(task: str | Task) -> bool:
    spec = get_task(task)
    return AGE_BAND_COLUMN in spec.balance or spec.label_key == AGE_BAND_COLUMN


def _label_columns(task: str | Task):
    """The extra manifest columns of a task's rows, as a function of the speaker."""
    if _needs_age(task):
        return lambda speaker: ((AGE_BAND_COLUMN, speaker.age_band),)
    return lambda speaker: ()


def _task_argument(task: str | Task) -> str | Task:
    """What the helpers get: a packaged task's name, else the declaration itself."""
    spec = get_task(task)
    return spec.name if get_packaged_task(spec.name) == spec else spec


def _read_existing(out_dir: Path) -> dict[str, Any] | None:
    import json

    path = out_dir / PREPARE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DataError(f"{path}: unreadable ({error}); delete the folder or choose another --out") from error


def _is_intact(out_dir: Path, info: dict[str, Any]) -> bool:
    """Manifests unchanged and every referenced cache entry valid."""
    cache = AudioCache(info["data_root"])
    for relpath, digest in info.get("files", {}).items():
        path = out_dir / relpath
        if not path.is_file() or sha256_file(path) != digest:
            logger.info("%s is missing or changed: preparing again", path)
            return False
        if path.name != "trials.csv":
            wavs = pd.read_csv(path, usecols=["wav"], dtype=str)["wav"]
            for wav in wavs:
                if cache.read_entry(wav[len(DATA_ROOT_PREFIX):]) is None:
                    logger.info("cache entry %s is missing or corrupt: preparing again", wav)
                    return False
    return True


def prepare_common_voice(
    cv_root: str | os.PathLike,
    locales: str | Sequence[str],
    task: str,
    n: int,
    out_dir: str | os.PathLike,
    clips_per_speaker: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    workers: int = 1,
    trials_per_speaker: int = 200,
    progress: bool = True,
    draws: int = 1,
) -> dict[str, Any]:
    """Prepare the CLTM subsets, test sets (and SV trials) of ``locales``; return prepare.json.

    Args:
        cv_root: Common Voice folder holding one folder per locale.
        locales: locale codes (list or comma-separated string).
        task: ``gr`` or ``sv``.
        n: clips per subset (a multiple of 2K).
        out_dir: output folder (manifests and prepare.json).
        clips_per_speaker: K; defaults to the task's.
        seed: seed of the draw; each locale uses (seed, locale).
        cache_dir: audio cache folder (default ``<out_dir>/audio``); may be shared.
        workers: decoding processes.
        trials_per_speaker: cap of within-speaker positive trials per test speaker (sv).
        progress: show tqdm progress bars.
        draws: independent a/b draws under the same balance rules (DESIGN.md §9). Draw 0 is
            ``<out>/<locale>/`` and never depends on the others; draw k >= 1 is
            ``<out>/draw<k>/<locale>/`` with its own ``prepare.json`` (``draw``, ``draw_hash``;
            its ``data_hash`` is draw 0's, which names the prepared data set). Asking for more
            draws later adds them and leaves draw 0 as it is.

    Re-running with the same arguments is a no-op; different arguments into a folder that holds a
    finished preparation raise :class:`DataError`. A folder without prepare.json, or with the
    ``prepare.unfinished`` marker, is an unfinished run: it is overwritten, and the clips already
    in the cache are reused. The folder is locked while it is written: a second prepare into it
    raises :class:`~cltm_sb.data.manifests.PrepareBusy` naming the holder.
    """
    task = _task_argument(task)
    k = _resolve_k(task, clips_per_speaker)
    groups = balance_values(balance_keys(task))
    speakers_per_subset(int(n), k, len(groups), " and ".join(balance_keys(task)))
    if int(draws) < 1:
        raise DataError(f"--draws must be at least 1 (draw 0 is the default preparation), got {draws}")
    if int(trials_per_speaker) < 1:
        raise DataError(f"--trials-per-speaker must be at least 1, got {trials_per_speaker}")
    codes = parse_locales(locales)
    root = _cv_root(cv_root)
    out = Path(out_dir).expanduser().resolve()
    data_root = Path(cache_dir).expanduser().resolve() if cache_dir else out / "audio"
    params = {
        "format_version": FORMAT_VERSION, "task": get_task(task).name, "n": int(n), "clips_per_speaker": k,
        "seed": int(seed), "locales": codes, "cv_root": str(root), "data_root": str(data_root),
        "trials_per_speaker": int(trials_per_speaker),
    }  # fmt: skip
    # The cache reports its own folder (AudioCache.ensure); any other failed write is under out.
    fix = "free space there or choose another --out"
    with disk_errors(out, "the prepared manifests", fix), prepare_lock(out):
        return _prepare_locked(root, codes, task, int(n), k, int(seed), out, data_root, params,
                               int(workers), int(trials_per_speaker), progress, int(draws))  # fmt: skip


def _reusable_draw(folder: Path, params: dict[str, Any], draw: int, data_hash: str) -> dict[str, Any] | None:
    """The prepare.json of a finished, unchanged draw ``draw`` made with ``params``, else None."""
    info = _read_existing(folder)
    if info is None or (folder / UNFINISHED_FILE).is_file():
        return None
    same = all(info.get(key) == params[key] for key in PARAM_KEYS)
    if not same or info.get("draw") != draw or info.get("data_hash") != data_hash:
        return None
    return info if _is_intact(folder, info) else None


def _prepare_draw(
    pools: Sequence[LocalePool], task: str, n: int, k: int, seed: int, trials_per_speaker: int,
    decoder: _Decoder, folder: Path, draw: int, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Write one draw's manifests into ``folder``; return counts, certified files and cache use."""
    before = Counter(decoder.status)
    counts: dict[str, Any] = {}
    desc = "locales" if draw == 0 else f"draw {draw}: locales"
    for pool in tqdm(pools, desc=desc, unit="locale", disable=not progress or len(pools) < 2):
        counts[pool.locale] = _prepare_locale(
            pool, task, n, k, seed, trials_per_speaker, decoder, folder, draw
        )
    written = [
        f"{pool.locale}/{name}"
        for pool in pools
        for name in ("a.csv", "b.csv", "test.csv", "trials.csv")
        if (folder / pool.locale / name).is_file() and (name != "trials.csv" or get_task(task).trials)
    ]
    return {
        "counts": counts,
        "cache": dict(sorted((decoder.status - before).items())),
        **certify_files(folder, written),
    }


def _prepare_locked(
    root: Path, codes: list[str], task: str, n: int, k: int, seed: int, out: Path, data_root: Path,
    params: dict[str, Any], workers: int, trials_per_speaker: int, progress: bool, draws: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """The body of :func:`prepare_common_voice`, run while this process holds the folder's lock."""
    existing = _read_existing(out)
    keep_first = False
    if existing is not None:
        old = {key: existing.get(key) for key in PARAM_KEYS}
        if old != params:
            changed = ", ".join(f"{key}: {old[key]!r} -> {params[key]!r}" for key in PARAM_KEYS if old[key] != params[key])
            raise DataError(
                f"{out / PREPARE_FILE} holds a preparation with other arguments ({changed}); "
                "choose another --out or delete that folder"
            )
        if not (out / UNFINISHED_FILE).is_file() and _is_intact(out, existing):
            have = [d for d in range(1, draws) if _reusable_draw(draw_folder(out, d), params, d, existing["data_hash"])]
            if len(have) == draws - 1:
                logger.info("%s is already prepared with these arguments: nothing to do", out)
                return existing
            keep_first = True  # draw 0 stays byte for byte; only the missing draws are made
    excluded = speakers_in_several_locales(root)
    if excluded:
        logger.info("%d speaker(s) appear in several locales under %s: left out", len(excluded), root)
    pools = [load_locale_pool(root, code, set(excluded), _needs_age(task)) for code in codes]
    _check_feasible(pools, task, n, k)
    mark_unfinished(out)  # from the first manifest written until prepare.json certifies them
    cache = AudioCache(data_root)
    with _Decoder(cache, workers, progress) as decoder:
        if keep_first and existing is not None:
            info = {key: value for key, value in existing.items() if key != "draws"}
        else:
            made = _prepare_draw(pools, task, n, k, seed, trials_per_speaker, decoder, out, 0, progress)
            info = {
                **params,
                "speakers_per_subset": n // k,
                "counts": made["counts"],
                "cross_locale_speakers": len(excluded),
                "cache": made["cache"],
                "files": made["files"],
                "file_stamps": made["file_stamps"],
                "data_hash": stable_hash(made["files"]),
                "cltm_sb_version": __version__,
            }
        known = sorted(int(d) for d in ((existing or {}).get("draws") or {}) if keep_first)
        entries = {"0": {"folder": ".", "draw_hash": info["data_hash"]}}
        for draw in range(1, max([draws, *(d + 1 for d in known)])):
            folder = draw_folder(out, draw)
            dinfo = _reusable_draw(folder, params, draw, info["data_hash"])
            if dinfo is None:
                dinfo = _write_draw(pools, task, n, k, seed, trials_per_speaker, decoder, folder,
                                    draw, progress, params, info["data_hash"], len(excluded))  # fmt: skip
            entries[str(draw)] = {"folder": folder.name, "draw_hash": dinfo["draw_hash"]}
    if len(entries) > 1:  # one draw: prepare.json exactly as before draws existed
        info["draws"] = entries
    atomic_write_json(out / PREPARE_FILE, info)
    mark_finished(out)
    logger.info("prepared %s (%s) in %s, data_hash %s", params["task"], ", ".join(codes), out, info["data_hash"])
    return info


def _write_draw(
    pools: Sequence[LocalePool], task: str, n: int, k: int, seed: int, trials_per_speaker: int,
    decoder: _Decoder, folder: Path, draw: int, progress: bool, params: dict[str, Any],
    data_hash: str, cross_locale: int,
) -> dict[str, Any]:  # fmt: skip
    """Prepare draw ``draw`` >= 1 into ``folder`` with its own prepare.json (written last).

    Its ``data_hash`` is draw 0's (the prepared data set: runs of every draw group together) and
    its ``draw_hash`` is of its own manifests and number, so no two draws share one.
    """
    mark_unfinished(folder)
    made = _prepare_draw(pools, task, n, k, seed, trials_per_speaker, decoder, folder, draw, progress)
    info = {
        **params,
        "draw": draw,
        "speakers_per_subset": n // k,
        "counts": made["counts"],
        "cross_locale_speakers": cross_locale,
        "cache": made["cache"],
        "files": made["files"],
        "file_stamps": made["file_stamps"],
        "data_hash": data_hash,
        "draw_hash": stable_hash({"draw": draw, "files": made["files"]}),
        "cltm_sb_version": __version__,
    }
    atomic_write_json(folder / PREPARE_FILE, info)
    mark_finished(folder)
    return info


def report_common_voice(
    cv_root: str | os.PathLike,
    locales: str | Sequence[str] | None,
    task: str,
    clips_per_speaker: int | None = None,
) -> pd.DataFrame:
    """One row per locale: eligible speakers per gender, clips per speaker, test size, largest N.

    ``locales=None`` reports every locale folder under ``cv_root``. Nothing is written.
    """
    task = _task_argument(task)
    k = _resolve_k(task, clips_per_speaker)
    root = _cv_root(cv_root)
    excluded = set(speakers_in_several_locales(root))
    if locales is None:
        from cltm_sb.data.cv_tables import list_locale_dirs

        codes = [p.name for p in list_locale_dirs(root)]
    else:
        codes = parse_locales(locales)
    rows = [locale_capacity(load_locale_pool(root, code, excluded, _needs_age(task)), task, k) for code in codes]
    frame = pd.DataFrame(rows)
    frame.insert(1, "clips_per_speaker", k)
    return frame
