"""The dynamic training interval (paper §2.2): where does more data still help every language?

For each language l and each training size N (one prepared folder per N), a learning-curve run
trains on a_l (N clips) and another on a_l ∪ b_l (2N clips), over several seeds. The self-gain at N
is Δ_l(N) = P(2N) − P(N), and the relative gain P(2N)/P(N) − 1.

The two runs of one seed share its effect (head initialisation, data order), so the test pairs
them: with a required relative gain r (``--min-relative-gain``, default 0), the per-seed contrast
d_k = P_k(2N) − (1 + r)·P_k(N) has mean > 0 exactly when the relative gain exceeds r, and a
one-sided paired t-test with n − 1 degrees of freedom tests it (exact under Gaussian seed noise).
``z_l(N)`` is the normal equivalent Φ⁻¹(1 − p) of that test's p-value, so that ``--z`` keeps its
meaning (a one-sided level Φ(−z): 2.3% for z = 2) whatever the number of seeds; the old unpaired
SE with a normal threshold qualified a language without any gain 9.1% of the time at 2 seeds.
Where a seed lacks one of its runs, the contrast is that of the all-seed means (the printed
gain), its SE adds the unshared seeds' variance to the shared seeds' covariance (as the matrix
cells do), and n counts the shared seeds.
An N qualifies when every chosen language has Δ_l > 0 and z_l ≥ z; among those, the recommended
N maximises the smallest z_l (ties: the smaller N, which is cheaper and further from the plateau).
The unpaired SE and its z stay in the gain table (``se_unpaired``, ``z_unpaired``) for comparison.

Everything here is a pure function of a tidy table of per-seed values with the columns
``locale, n, role, size, seed, value`` (role ``n``: trained on a_l, size N; role ``2n``: trained on
a_l ∪ b_l, size 2N); :func:`load_curves` builds it from folders of run records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cltm_sb.analysis.draws import seed_means
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS, self_key, single_key
from cltm_sb.analysis.uncertainty import contrast_moments
from cltm_sb.data.manifests import read_prepare_info
from cltm_sb.grid.layout import GridLayout, PlanError
from cltm_sb.results import RecordTable, load_records

DEFAULT_Z = 2.0
# Where one run of a language lacks seeds the other has, the test of its gain mixes the runs' own
# seeds (see _gain_contrast); below this many seeds its false qualification at z = 2 was 3.1-4.2%
# against a nominal 2.3% (3 seeds, each run losing a seed with probability 0.1-0.3; at 5 seeds
# 2.2-3.1%: bench/RESULTS.md, "Interval rule with missing seeds"), so no z is given there.
MIN_SEEDS_UNSHARED = 5
CURVE_COLUMNS = ["locale", "n", "role", "size", "seed", "value"]
CURVE_KINDS = ("curve", "single", "self")


class IntervalError(ValueError):
    """No training size qualifies, or the learning-curve records cannot be used as given."""


@dataclass
class IntervalChoice:
    """The recommended training size.

    Attributes:
        n: the recommended N (the interval is [N, 2N]).
        min_z: the smallest z_l at N over the chosen languages.
        z: z_l at N per language (normal equivalent of the paired test's p-value).
        threshold: the z every language had to reach (one-sided level Φ(−z)).
        min_relative_gain: the relative gain P(2N)/P(N) − 1 the test required.
        qualifying: every N that qualified, with its smallest z.
        gains: the full gain table (see :func:`gain_table`).
    """

    n: int
    min_z: float
    z: dict[str, float]
    threshold: float
    qualifying: dict[int, float] = field(default_factory=dict)
    gains: pd.DataFrame | None = None
    min_relative_gain: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the gain table)."""
        out: dict[str, Any] = {
            "n": self.n,
            "interval": [self.n, 2 * self.n],
            "min_z": self.min_z,
            "z": self.z,
            "z_threshold": self.threshold,
            "level": float(stats.norm.sf(self.threshold)),
            "test": "one-sided paired t-test over seeds of P(2N) > (1 + min_relative_gain)·P(N); "
            "z is the normal equivalent of its p-value",
            "min_relative_gain": self.min_relative_gain,
            "qualifying": {str(k): v for k, v in self.qualifying.items()},
        }
        if self.gains is not None:
            chosen = self.gains[self.gains["n"] == self.n].set_index("locale")
            out["relative_gain"] = {
                loc: float(chosen.loc[loc, "relative_gain"])
                for loc in self.z
                if loc in chosen.index
            }
        return out


# --------------------------------------------------------------------------------------------
# From records to the tidy curve table


def curve_rows(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Learning-curve points of one prepared folder (training size ``n``) from a record table.

    Rows trained on a_l and evaluated on l give P(N); rows trained on a_l ∪ b_l and evaluated on l
    give P(2N). Other rows (pairs, other evaluations) are ignored.
    """
    if n <= 0:
        raise IntervalError(f"training size N must be positive, got {n}")
    rows = []
    for rec in table.itertuples(index=False):
        locale = rec.eval_locale
        if rec.train_key == single_key(locale):
            role, size = "n", n
        elif rec.train_key == self_key(locale):
            role, size = "2n", 2 * n
        else:
            continue
        rows.append((locale, int(n), role, size, int(rec.seed), float(rec.value)))
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    # Runs of several data draws (`cltm plan --draws`) share the seeds: one point per seed, the
    # mean over its draws, so that seed counts, SDs and the unpaired SE count seeds, not runs.
    return seed_means(curves, CURVE_COLUMNS[:4], "value")


def _n_from_prepare(data_dir: Path) -> int | None:
    try:
        info = read_prepare_info(data_dir)
    except ValueError as error:
        raise IntervalError(str(error)) from error
    value = (info or {}).get("n")
    return int(value) if value is not None else None


def infer_n(folder: str | os.PathLike, records: RecordTable) -> int:
    """Training size N of a folder of learning-curve records.

    Looked up, in order: the plan's prepared folder (``plan.json`` → ``data_dir/prepare.json``,
    key ``n``), a ``prepare.json`` in the folder itself, and the ``n_train`` that single runs on
    a_l record in their ``extra``. The error says how to give N by hand (``N=FOLDER``).
    """
    folder = Path(folder)
    try:
        plan = GridLayout(folder).plan_fields()
    except PlanError as error:
        raise IntervalError(str(error)) from error
    if plan and plan.get("data_dir"):
        n = _n_from_prepare(Path(plan["data_dir"]))
        if n is not None:
            return n
    n = _n_from_prepare(folder)
    if n is not None:
        return n
    sizes = {
        int(r.extra["n_train"])
        for r in records.records
        if r.status == "ok"
        and len(r.train_set) == 1
        and r.train_set[0]["subset"] == "a"
        and "n_train" in r.extra
    }
    if len(sizes) == 1:
        return sizes.pop()
    found = f"several sizes {sorted(sizes)}" if sizes else "no plan.json, prepare.json or n_train"
    raise IntervalError(
        f"{folder}: cannot tell the training size N ({found}); give it as N={folder}"
    )


def _given_or_inferred_n(given: int | None, folder: str | os.PathLike, records: RecordTable) -> int:
    """N as given (``N=FOLDER``, for a folder whose N is unknown) or as the folder says; a given N
    the folder contradicts is an error (the curve would be drawn at a size never trained)."""
    try:
        known = infer_n(folder, records)
    except IntervalError:
        if given is None:
            raise
        return int(given)
    if given is not None and int(given) != known:
        raise IntervalError(
            f"{folder}: given as N={given}, but its runs trained on N={known} (prepare.json / n_train); "
            f"give {known}={folder}, or the folder without N"
        )
    return known


def parse_source(text: str) -> tuple[int | None, str]:
    """``"120=runs/n120"`` → (120, "runs/n120"); a plain folder → (None, folder)."""
    head, sep, tail = text.partition("=")
    if sep and head.strip().isdigit():
        return int(head), tail
    return None, text


def _no_curves(folder: str | os.PathLike, task: str, records: RecordTable) -> str:
    """Why a folder gives no curve points, naming the tasks it does hold (a folder of another
    task given for one N is the usual cause)."""
    message = (
        f"{folder}: no finished {task} learning-curve runs ({records.n_records} records, "
        f"{records.n_failed} failed)"
    )
    others = sorted(set(records.table["task"]) - {task})
    if others:
        message += (
            f"; it holds {', '.join(others)} runs: give the {task} folder of that N, or --task "
            f"{others[0]} if every folder is {others[0]}"
        )
    return message


def load_curves(
    sources: Sequence[str | os.PathLike | tuple[int | None, str | os.PathLike]],
    task: str,
    locales: Sequence[str] | None = None,
    config_hash: str | None = None,
) -> pd.DataFrame:
    """The tidy curve table from folders of records, one folder (plan or records) per N.

    Args:
        sources: folders, or (N, folder) pairs where N is known; N is otherwise inferred with
            :func:`infer_n`.
        task: task code; records of other tasks are ignored.
        locales: languages to keep (default: all found).
        config_hash: pick one configuration where the folders hold several.
    """
    if not sources:
        raise IntervalError("no learning-curve folders given")
    parts, seen_n, hashes = [], {}, {}
    for source in sources:
        n, folder = source if isinstance(source, tuple) else parse_source(str(source))
        records = load_records(folder)
        table = records.table[
            (records.table["task"] == task) & records.table["kind"].isin(CURVE_KINDS)
        ]
        if config_hash is not None:
            table = table[table["config_hash"] == config_hash]
        if table.empty:
            raise IntervalError(_no_curves(folder, task, records))
        n = _given_or_inferred_n(n, folder, records)
        if n in seen_n:
            raise IntervalError(
                f"N={n} is given twice: {seen_n[n]} and {folder}; keep one folder per N"
            )
        seen_n[n] = folder
        for h in table["config_hash"].unique():
            hashes.setdefault(str(h), []).append(str(folder))
        parts.append(curve_rows(table, n))
    if len(hashes) > 1:
        raise IntervalError(_mixed_configurations(hashes))
    curves = pd.concat(parts, ignore_index=True)
    if locales is not None:
        missing = sorted(set(locales) - set(curves["locale"]))
        if missing:
            raise IntervalError(
                f"no learning-curve runs for {', '.join(missing)} in {list(seen_n.values())}"
            )
        curves = curves[curves["locale"].isin(locales)].reset_index(drop=True)
    return curves


def _mixed_configurations(hashes: dict[str, list[str]]) -> str:
    """What to do when the folders' runs differ in configuration: --config-hash only helps where
    every folder holds runs of the picked one; otherwise an N was run with other settings."""
    listed = "; ".join(f"{h}: {', '.join(f)}" for h, f in hashes.items())
    folders = {f for fs in hashes.values() for f in fs}
    common = [h for h, fs in hashes.items() if set(fs) == folders]
    if common:
        return (
            f"the learning-curve runs mix configurations ({listed}); pass --config-hash "
            f"{' or '.join(common)} to pick the one every folder holds"
        )
    return (
        f"the learning-curve runs mix configurations ({listed}) and no configuration has runs "
        "in every folder: every N must be trained with the same hparams and overrides. Run the "
        "odd folder's N again with the others' settings, or leave it out"
    )


# --------------------------------------------------------------------------------------------
# Statistics


def _check_curves(curves: pd.DataFrame) -> None:
    missing = [c for c in ("locale", "n", "role", "seed", "value") if c not in curves.columns]
    if missing:
        raise IntervalError(f"curve table lacks the columns {missing}")
    bad = sorted(set(curves["role"]) - {"n", "2n"})
    if bad:
        raise IntervalError(f"curve table: unknown role(s) {bad}; valid: n, 2n")


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (locale, n, role): training size, mean, between-seed SD, SE of the mean and seed count."""
    _check_curves(curves)
    frame = curves.copy()
    if "size" not in frame:
        frame["size"] = np.where(frame["role"] == "2n", 2 * frame["n"], frame["n"])
    grouped = frame.groupby(["locale", "n", "role"])
    out = grouped.agg(size=("size", "first"), mean=("value", "mean"), n_seeds=("value", "count"))
    out["sd"] = grouped["value"].std(ddof=1)
    out["se"] = out["sd"] / np.sqrt(out["n_seeds"])
    return out.reset_index()


def _paired(values_n: pd.Series, values_2n: pd.Series, ratio: float) -> tuple[float, float, int]:
    """Mean and SE of d_k = P_k(2N) − ratio·P_k(N) over the seeds both runs have, and their count."""
    both = pd.concat([values_n.rename("n"), values_2n.rename("2n")], axis=1).dropna()
    d = both["2n"] - ratio * both["n"]
    count = len(d)
    if count < 2:
        return float(d.mean()) if count else float("nan"), float("nan"), count
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(count)), count


def _gain_contrast(
    values_n: pd.Series, values_2n: pd.Series, ratio: float, point: float
) -> tuple[float, float, int, float]:
    """Mean and SE of P(2N) − ratio·P(N), the count of seeds both runs have and the t test's
    degrees of freedom.

    The mean is ``point``, the contrast of the all-seed means the table prints; the SE adds the
    unshared seeds' variance to the covariance of the shared ones (as the matrix cells do), so
    the gain and its test describe one number. With every seed shared this is the paired test,
    computed as :func:`_paired` (n − 1 df) so that complete curves keep their exact values;
    otherwise the df are Satterthwaite's for the all-seed variance, as the matrix cells' (the
    shared seeds − 1 would make the test too cautious: bench/RESULTS.md, "Cells with missing
    seeds").
    """
    shared = int((values_n.notna() & values_2n.notna()).sum())
    if shared == values_n.count() == values_2n.count():
        return (*_paired(values_n, values_2n, ratio), float(shared - 1))
    _, var, _, df = contrast_moments(values_2n.to_numpy(float), values_n.to_numpy(float), ratio)
    se = math.sqrt(max(float(var), 0.0)) if shared >= 2 else float("nan")
    return point, se, shared, float(df)


def _one_sided(mean: float, se: float, df: float) -> tuple[float, float, float]:
    """(t, p, z): one-sided paired t-test of mean > 0 and the normal equivalent of its p-value."""
    if not np.isfinite(mean) or not np.isfinite(se):
        return float("nan"), float("nan"), float("nan")
    if se == 0:
        if mean == 0:
            return float("nan"), float("nan"), float("nan")
        t = math.copysign(math.inf, mean)
        return t, (0.0 if mean > 0 else 1.0), t
    t = mean / se
    p = float(stats.t.sf(t, df))
    return t, p, float(stats.norm.isf(p))  # p underflowing to 0 gives z = inf


def gain_table(
    curves: pd.DataFrame, min_seeds: int = DEFAULT_MIN_SEEDS, min_relative_gain: float = 0.0
) -> pd.DataFrame:
    """Self-gain P(2N) − P(N) per (locale, N) with its paired test; ``reason`` says why z is NaN.

    Columns: locale, n, p_n, sd_n, seeds_n, p_2n, sd_2n, seeds_2n, gain, relative_gain, se
    (SE of the gain, paired through the seeds both runs have: see :func:`_gain_contrast`),
    paired_seeds, df, t, p_value, z,
    se_unpaired, z_unpaired, reason. ``t``, ``p_value`` and ``z`` test P(2N) > (1 +
    ``min_relative_gain``)·P(N) (one-sided, paired over seeds, t with ``df`` = paired seeds − 1,
    or Satterthwaite's where a run lacks seeds the other has);
    ``z`` is the normal equivalent of ``p_value``. A zero spread with a positive contrast gives
    z = inf; fewer than ``min_seeds`` seeds (or paired seeds) give NaN.
    """
    frame = curves.copy()
    _check_curves(frame)
    summary = curve_summary(frame).set_index(["locale", "n", "role"])
    by_seed = frame.pivot_table(
        index=["locale", "n", "seed"], columns="role", values="value", aggfunc="mean"
    )
    ratio = 1.0 + float(min_relative_gain)
    rows = []
    for locale, n in sorted({(loc, int(n)) for loc, n, _ in summary.index}):
        row: dict[str, Any] = {"locale": locale, "n": n}
        reason = ""
        for role, tag in (("n", "n"), ("2n", "2n")):
            if (locale, n, role) in summary.index:
                s = summary.loc[(locale, n, role)]
                row[f"p_{tag}"], row[f"sd_{tag}"], row[f"seeds_{tag}"] = (
                    s["mean"],
                    s["sd"],
                    int(s["n_seeds"]),
                )
            else:
                row[f"p_{tag}"], row[f"sd_{tag}"], row[f"seeds_{tag}"] = np.nan, np.nan, 0
            what = "a_l (N)" if role == "n" else "a_l ∪ b_l (2N)"
            if not reason and row[f"seeds_{tag}"] < min_seeds:
                reason = (
                    f"{what} has {row[f'seeds_{tag}']} finished seed(s), fewer than {min_seeds}"
                )
        gain = row["p_2n"] - row["p_n"]
        seeds = by_seed.loc[(locale, n)] if not reason else None
        mean = se = df = float("nan")
        paired = 0
        if seeds is not None and {"n", "2n"} <= set(seeds.columns):
            point = row["p_2n"] - ratio * row["p_n"]
            mean, se, paired, df = _gain_contrast(seeds["n"], seeds["2n"], ratio, point)
        if not reason and paired < min_seeds:
            reason = f"{paired} seed(s) with both runs, fewer than {min_seeds}: nothing to pair"
        seeds_any = int((seeds["n"].notna() | seeds["2n"].notna()).sum()) if paired else 0
        if not reason and paired < seeds_any < MIN_SEEDS_UNSHARED:
            reason = (
                f"only {paired} seed(s) have both runs (N: {row['seeds_n']}, 2N: {row['seeds_2n']}): "
                f"below {MIN_SEEDS_UNSHARED} seeds "
                "a test over unshared seeds is not calibrated (bench/RESULTS.md); `cltm run` "
                "retries the failed runs"
            )
        t, p, z = _one_sided(mean, se, df) if not reason else (np.nan,) * 3
        if not reason and np.isnan(z):
            reason = "no gain and no seed spread"
        se_unpaired = (
            math.sqrt(row["sd_n"] ** 2 / row["seeds_n"] + row["sd_2n"] ** 2 / row["seeds_2n"])
            if row["seeds_n"] > 1 and row["seeds_2n"] > 1
            else np.nan
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            z_unpaired = gain / se_unpaired if se_unpaired > 0 else np.nan
            relative = gain / row["p_n"] if row["p_n"] else np.nan
        # The paired SE of the plain gain (r = 0), whatever r the test uses.
        se_gain = (
            _gain_contrast(seeds["n"], seeds["2n"], 1.0, gain)[1] if paired >= 2 else np.nan
        )
        row.update(
            gain=gain,
            relative_gain=relative,
            se=se_gain,
            paired_seeds=paired,
            df=df if paired else np.nan,
            t=t,
            p_value=p,
            z=z,
            se_unpaired=se_unpaired,
            z_unpaired=z_unpaired,
            reason=reason,
        )
        rows.append(row)
    columns = [
        "locale",
        "n",
        "p_n",
        "sd_n",
        "seeds_n",
        "p_2n",
        "sd_2n",
        "seeds_2n",
        "gain",
        "relative_gain",
        "se",
        "paired_seeds",
        "df",
        "t",
        "p_value",
        "z",
        "se_unpaired",
        "z_unpaired",
        "reason",
    ]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["min_relative_gain"] = float(min_relative_gain)
    return out


def _failure(row: pd.Series | None, threshold: float) -> str | None:
    """Why a language does not qualify at one N (None when it does)."""
    if row is None:
        return "no runs"
    if row["reason"]:
        return str(row["reason"])
    if not row["gain"] > 0:
        return f"gain {row['gain']:.4g} <= 0"
    if not row["z"] >= threshold:
        return (
            f"z = {row['z']:.2f} < {threshold:g} (paired t = {row['t']:.2f}, {row['df']:.3g} df)"
        )
    return None


def select_interval(
    gains: pd.DataFrame, z: float = DEFAULT_Z, locales: Sequence[str] | None = None
) -> IntervalChoice:
    """The N whose smallest z_l over ``locales`` is largest among the N where all pass.

    Raises:
        IntervalError: no N qualifies; the message lists, per N, the languages that fail and why.
    """
    if gains.empty:
        raise IntervalError("no learning-curve points to choose N from")
    locales = list(locales) if locales is not None else sorted(set(gains["locale"]))
    indexed = {(r.locale, int(r.n)): r for r in gains.itertuples(index=False)}
    sizes = sorted({int(n) for n in gains["n"]})
    qualifying: dict[int, float] = {}
    failures: dict[int, list[str]] = {}
    for n in sizes:
        fails = []
        for locale in locales:
            rec = indexed.get((locale, n))
            why = _failure(pd.Series(rec._asdict()) if rec is not None else None, z)
            if why:
                fails.append(f"{locale} ({why})")
        if fails:
            failures[n] = fails
        else:
            qualifying[n] = float(min(indexed[(loc, n)].z for loc in locales))
    if not qualifying:
        detail = "; ".join(f"N={n}: {', '.join(f)}" for n, f in failures.items())
        always = sorted(
            set.intersection(*[{f.split(" ")[0] for f in fs} for fs in failures.values()])
        )
        hint = f" {', '.join(always)} fail at every N." if always else ""
        relative = float(gains.attrs.get("min_relative_gain", 0.0))
        what = f"a relative gain above {relative:g}" if relative else "a self-gain above zero"
        raise IntervalError(
            f"no training size gives every language {what} at the one-sided level "
            f"{stats.norm.sf(z):.3g} (z = {z:g}, paired t-test over seeds).{hint} "
            f"Per N: {detail}. Add seeds, try other N, or leave those languages out."
        )
    best = max(qualifying, key=lambda n: (qualifying[n], -n))
    return IntervalChoice(
        n=best,
        min_z=qualifying[best],
        z={loc: float(indexed[(loc, best)].z) for loc in locales},
        threshold=float(z),
        qualifying=qualifying,
        gains=gains,
        min_relative_gain=float(gains.attrs.get("min_relative_gain", 0.0)),
    )


# --------------------------------------------------------------------------------------------
# Launching the learning-curve runs (a thin layer over the grid)


def _sizes_of(data_dirs: Sequence[str | os.PathLike]) -> dict[int, str | os.PathLike]:
    """N -> prepared folder, every folder checked before any plan is written (a bad third folder
    must not leave the plans of the first two behind)."""
    seen: dict[int, str | os.PathLike] = {}
    for data_dir in data_dirs:
        n = _n_from_prepare(Path(data_dir))
        if n is None:
            raise IntervalError(
                f"{data_dir}: no prepare.json with 'n'; prepare one folder per N with `cltm prepare`"
            )
        if n in seen:
            raise IntervalError(f"N={n} is prepared twice: {seen[n]} and {data_dir}; keep one")
        seen[n] = data_dir
    return seen


def plan_curves(
    plans_dir: str | os.PathLike,
    data_dirs: Sequence[str | os.PathLike],
    task: str,
    locales: Sequence[str],
    seeds: Sequence[int],
    **plan_options: Any,
) -> list[Path]:
    """Save one plan per prepared folder (one folder per N) holding only its a_l and a_l ∪ b_l runs.

    Each plan goes to ``<plans_dir>/n<N>`` (N from the folder's ``prepare.json``); run them with any
    executor (``cltm run``), which skips finished runs, and analyse them with :func:`load_curves`.
    ``plan_options`` go to :func:`cltm_sb.grid.plan.make_plan` (hparams_file, overrides, runner, ...).
    """
    from cltm_sb.grid.plan import make_plan

    written = []
    for n, data_dir in _sizes_of(data_dirs).items():
        plan = make_plan(Path(plans_dir) / f"n{n}", data_dir, task, locales, seeds, **plan_options)
        plan.runs = [r for r in plan.runs if r.kind in ("single", "self")]
        plan.save()
        written.append(plan.plan_dir)
    return written
