"""Simulated grids from a known true CLTM, for calibrating the analysis (DESIGN.md §8, §9).

A grid is simulated from a true matrix M and a noise model:

- per target language t: single performance mu_t = P(a_t, t), self-gain G_t (so P(a_t ∪ b_t, t) =
  mu_t + G_t) and pair performance P(a_t ∪ a_s, t) = mu_t + M[t, s]·G_t;
- seed noise of standard deviation sigma_t on every evaluation on t, chosen so that the self-gain
  is ``z_self`` times its naive standard error sqrt(2·sigma_t² / n_seeds) (the SE that
  ``build_cltm`` uses and that decides the 2-SE flag);
- of that variance, a fraction ``rho`` is shared by all runs of one seed evaluated on the same
  locale (the seed's effect: same initial head, same data order for that language); of the rest, a
  fraction ``rho_pair`` belongs to the pair run and is shared by its two evaluations (on t and s)
  when the protocol shares pair runs. With one run per ordered cell that part is drawn separately
  for each cell, so the variance of every cell is the same in both protocols and only the
  correlation of mirror cells differs.

Data draws (``cltm prepare --draws``, DESIGN.md §9): with ``data_ratio`` > 0 each draw of the a/b
speakers moves every evaluation on t by a data effect of variance ``data_ratio``·sigma_t², common to
all seeds of that draw. Of it, a share ``rho_data`` comes from a_t's draw and is common to every run
evaluated on t (single, self and pair, so it cancels in the gains like the seed effect); the rest
is the run's own: b_t's draw for the self run, the donor a_s's for the pair run. The true matrix is
the mean over draws. :func:`simulate_draws_table` crosses draws with seeds.

Values are not clipped to [0, 1]: the model stays Gaussian, which is what the calibration needs.
Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cltm_sb.analysis.matrix import pair_key, self_key, single_key
from cltm_sb.io import OutputFolder
from cltm_sb.languages import LanguageRegistry
from cltm_sb.results import Evaluation, RunRecord

PROTOCOL_SHARED = "shared"
PROTOCOL_PER_CELL = "per-cell"
PROTOCOLS = (PROTOCOL_SHARED, PROTOCOL_PER_CELL)
FIRST_SEED = 42  # the authors' seeds are 42..51


@dataclass(frozen=True)
class Truth:
    """A true CLTM with its languages and their families (matrix order)."""

    locales: list[str]
    families: list[str]
    matrix: np.ndarray
    name: str = "custom"

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=float)
        n = len(self.locales)
        if m.shape != (n, n) or len(self.families) != n:
            raise ValueError(
                f"truth {self.name}: matrix {m.shape}, {n} locales, {len(self.families)} families"
            )
        if not np.all(np.isfinite(m)):
            raise ValueError(f"truth {self.name}: a true matrix must be finite everywhere")


@dataclass(frozen=True)
class NoiseModel:
    """How noisy the simulated runs are (see the module docstring).

    Attributes:
        rho: share of the seed variance common to every run of a seed on one evaluated locale.
        rho_pair: share of the remaining variance common to the two evaluations of a pair run.
        z_self: self-gain over its naive SE at the simulated number of seeds.
        single_range, gain_range: uniform ranges of the per-language P(a_t, t) and G_self(t).
        data_ratio: variance of a data draw's effect on one evaluation over the seed variance.
        rho_data: share of the data effect common to every run evaluated on t (a_t's draw).
    """

    rho: float = 0.3
    rho_pair: float = 0.5
    z_self: float = 10.0
    single_range: tuple[float, float] = (0.6, 0.8)
    gain_range: tuple[float, float] = (0.05, 0.15)
    data_ratio: float = 0.0
    rho_data: float = 0.5

    def __post_init__(self) -> None:
        if not (0 <= self.rho < 1 and 0 <= self.rho_pair <= 1 and self.z_self > 0):
            raise ValueError(f"invalid noise model {self}")
        if not (self.data_ratio >= 0 and 0 <= self.rho_data <= 1):
            raise ValueError(f"invalid data-draw noise in {self}")


@dataclass
class SimulatedGrid:
    """Per-seed values of one simulated grid (NaN where a run does not exist).

    ``single[k, t]``, ``self_[k, t]``: seed k of a_t and a_t ∪ b_t on t; ``pair[k, t, s]``: seed k
    of a_t ∪ a_s evaluated on t (diagonal NaN). ``seeds`` are the seed labels.
    """

    truth: Truth
    seeds: list[int]
    single: np.ndarray
    self_: np.ndarray
    pair: np.ndarray
    protocol: str
    profiles: dict[str, np.ndarray] = field(default_factory=dict)


def _codes(n: int) -> list[str]:
    # Letter codes that no real Common Voice locale uses ("q" is ISO 639's private-use area).
    return [f"q{i:02d}" for i in range(n)]


def _family_labels(n: int, size: int) -> list[str]:
    return [f"F{i // size}" for i in range(n)]


def near_agnostic_truth(n_languages: int, seed: int = 0) -> Truth:
    """A GR-like truth: every entry close to 1 (RFD and asymmetry near 0.1-0.2, row cosine ~0.99)."""
    rng = np.random.default_rng([seed, 1])
    sym = rng.normal(0.0, 0.10, (n_languages, n_languages))
    sym = (sym + sym.T) / np.sqrt(2)
    anti = rng.normal(0.0, 0.07, (n_languages, n_languages))
    anti = (anti - anti.T) / np.sqrt(2)
    m = 1.0 + sym + anti
    np.fill_diagonal(m, 1.0)
    return Truth(_codes(n_languages), _family_labels(n_languages, 3), m, "near-agnostic")


def structured_truth(n_languages: int, seed: int = 0) -> Truth:
    """An SV-like truth: mostly negative rows of varied depth, sparse positive transfer in families.

    Families of three; within a family an entry is positive with probability 0.7 (0.1-0.9);
    across families entries are negative, scaled by a per-target depth (lognormal, median 1.5),
    with a rare small positive one.
    """
    rng = np.random.default_rng([seed, 2])
    families = _family_labels(n_languages, 3)
    fam = np.asarray(families)
    same = fam[:, None] == fam[None, :]
    depth = np.exp(rng.normal(np.log(1.5), 0.6, n_languages))
    m = -depth[:, None] * rng.uniform(0.3, 1.5, (n_languages, n_languages))
    within_pos = same & (rng.uniform(size=m.shape) < 0.7)
    m[within_pos] = rng.uniform(0.1, 0.9, int(within_pos.sum()))
    rare_pos = ~same & (rng.uniform(size=m.shape) < 0.04)
    m[rare_pos] = rng.uniform(0.05, 0.3, int(rare_pos.sum()))
    np.fill_diagonal(m, 1.0)
    return Truth(_codes(n_languages), families, m, "structured")


TRUTHS = {"near-agnostic": near_agnostic_truth, "structured": structured_truth}


def make_truth(kind: str, n_languages: int, seed: int = 0) -> Truth:
    """One of :data:`TRUTHS` by name."""
    if kind not in TRUTHS:
        raise ValueError(f"unknown truth {kind!r}; valid: {sorted(TRUTHS)}")
    return TRUTHS[kind](n_languages, seed)


def null_truth(truth: Truth, hypothesis: str) -> Truth:
    """The truth nearest ``truth`` where a formal test's null holds (for its false-positive rate).

    ``agnostic``: M = J; ``symmetric``: (M + Mᵀ)/2; ``equal_profiles``: every off-diagonal entry
    of a donor's column replaced by the column's mean (the same transfer to every target).
    """
    m = np.asarray(truth.matrix, dtype=float)
    n = m.shape[0]
    if hypothesis == "agnostic":
        out = np.ones_like(m)
    elif hypothesis == "symmetric":
        out = (m + m.T) / 2
    elif hypothesis == "equal_profiles":
        off = ~np.eye(n, dtype=bool)
        column_mean = np.where(off, m, 0.0).sum(axis=0) / max(n - 1, 1)
        out = np.broadcast_to(column_mean, m.shape).copy()
    else:
        raise ValueError(
            f"unknown hypothesis {hypothesis!r}; valid: agnostic, symmetric, equal_profiles"
        )
    np.fill_diagonal(out, 1.0)
    return Truth(
        list(truth.locales), list(truth.families), out, f"{truth.name} ({hypothesis} null)"
    )


def truth_from_csv(path: str | os.PathLike, families: Sequence[str] | None = None) -> Truth:
    """A truth from a CLTM CSV (the layout of ``cltm analyze``); every entry must be finite."""
    from cltm_sb.analysis.diagnostics import read_matrix_csv

    frame = read_matrix_csv(path)
    locales = [str(c) for c in frame.index]
    fams = list(families) if families is not None else ["F0"] * len(locales)
    return Truth(locales, fams, frame.to_numpy(dtype=float), os.fspath(path))


def truth_from_registry(
    path: str | os.PathLike, registry: LanguageRegistry
) -> tuple[Truth, dict[str, str]]:
    """A truth from a CLTM CSV with its languages' families, and their names, from ``registry``.

    Unknown codes are an error that names them (pass a ``code,name,family`` CSV as the registry).
    """
    from cltm_sb.analysis.diagnostics import read_matrix_csv

    codes = [str(c) for c in read_matrix_csv(path).index]
    truth = truth_from_csv(path, families=registry.families(codes))
    return truth, {c: registry.name(c) for c in codes}


def language_profiles(
    truth: Truth, n_seeds: int, noise: NoiseModel, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-language single performance, self-gain and seed standard deviation."""
    n = len(truth.locales)
    p_single = rng.uniform(*noise.single_range, n)
    gain = rng.uniform(*noise.gain_range, n)
    # z = G / sqrt(2 sigma² / n_seeds)  =>  sigma = G sqrt(n_seeds / 2) / z
    sigma = gain * np.sqrt(n_seeds / 2.0) / noise.z_self
    return {"p_single": p_single, "self_gain": gain, "sigma": sigma}


def simulate_grid(
    truth: Truth,
    n_seeds: int,
    noise: NoiseModel | None = None,
    protocol: str = PROTOCOL_SHARED,
    seed: int = 0,
    draw: int = 0,
) -> SimulatedGrid:
    """Per-seed values of every single, self and pair evaluation of one simulated grid.

    ``draw`` numbers the data draw: every draw of one ``seed`` has the same languages (profiles)
    and independent seed noise and data effects; draw 0 without data noise is the grid of before.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {PROTOCOLS}")
    if n_seeds < 1:
        raise ValueError("n_seeds must be at least 1")
    noise = noise or NoiseModel()
    rng = np.random.default_rng(seed)
    prof = language_profiles(truth, n_seeds, noise, rng)
    m = np.asarray(truth.matrix, dtype=float)
    n = len(truth.locales)
    mu, gain, sigma = prof["p_single"], prof["self_gain"], prof["sigma"]
    if draw:
        rng = np.random.default_rng([seed, draw])
    seed_part = np.sqrt(noise.rho)
    rest = np.sqrt(1.0 - noise.rho)
    # u: seed effect per (seed, evaluated locale), shared by every run evaluated there.
    u = rng.standard_normal((n_seeds, n))
    single = mu + sigma * (seed_part * u + rest * rng.standard_normal((n_seeds, n)))
    self_ = mu + gain + sigma * (seed_part * u + rest * rng.standard_normal((n_seeds, n)))
    # w: the pair run's own effect; symmetric (one run serves t and s) when runs are shared.
    w = rng.standard_normal((n_seeds, n, n))
    if protocol == PROTOCOL_SHARED:
        upper = np.triu(w, k=1)
        w = upper + np.transpose(upper, (0, 2, 1))
    eps = rng.standard_normal((n_seeds, n, n))
    own = np.sqrt(noise.rho_pair) * w + np.sqrt(1.0 - noise.rho_pair) * eps
    pair = (mu[:, None] + m * gain[:, None])[None] + sigma[None, :, None] * (
        seed_part * u[:, :, None] + rest * own
    )
    if noise.data_ratio > 0:
        single, self_, pair = _add_data_effects(single, self_, pair, sigma, noise, [seed, draw, 1])
    idx = np.arange(n)
    pair[:, idx, idx] = np.nan
    seeds = list(range(FIRST_SEED, FIRST_SEED + n_seeds))
    return SimulatedGrid(truth, seeds, single, self_, pair, protocol, prof)


def lose_seeds(grid: SimulatedGrid, share: float, seed: int = 0) -> SimulatedGrid:
    """``grid`` where every run independently lost each of its seeds with probability ``share``.

    A lost seed is NaN, as a failed or missing run is to the analysis. A shared pair run serves
    two cells, so it loses a seed in both of them at once; with one run per cell each cell loses
    its own. For calibrating the cells' statistics on incomplete grids (bench_calibration.py).
    """
    if not 0 <= share < 1:
        raise ValueError(f"share of lost seeds must be in [0, 1), got {share}")
    rng = np.random.default_rng([seed, 3])
    n_seeds, n = grid.single.shape
    single = np.where(rng.uniform(size=(n_seeds, n)) < share, np.nan, grid.single)
    self_ = np.where(rng.uniform(size=(n_seeds, n)) < share, np.nan, grid.self_)
    lost = rng.uniform(size=(n_seeds, n, n)) < share
    if grid.protocol == PROTOCOL_SHARED:
        upper = np.triu(lost, k=1)
        lost = upper | np.transpose(upper, (0, 2, 1))
    pair = np.where(lost, np.nan, grid.pair)
    return SimulatedGrid(
        grid.truth, list(grid.seeds), single, self_, pair, grid.protocol, dict(grid.profiles)
    )


def _add_data_effects(
    single: np.ndarray, self_: np.ndarray, pair: np.ndarray, sigma: np.ndarray,
    noise: NoiseModel, entropy: list[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """One draw's data effects, common to all its seeds (see the module docstring)."""
    rng = np.random.default_rng(entropy)
    n = sigma.size
    tau = sigma * np.sqrt(noise.data_ratio)
    common, own = np.sqrt(noise.rho_data), np.sqrt(1.0 - noise.rho_data)
    a_t = rng.standard_normal(n)  # a_t's speakers, in every run evaluated on t
    single = single + tau * (common * a_t + own * rng.standard_normal(n))
    self_ = self_ + tau * (common * a_t + own * rng.standard_normal(n))  # b_t's speakers
    donor = rng.standard_normal((n, n))  # a_s's speakers, as they act on t
    pair = pair + (tau[:, None] * (common * a_t[:, None] + own * donor))[None]
    return single, self_, pair


def simulate_draws_table(
    truth: Truth,
    n_draws: int,
    n_seeds: int,
    noise: NoiseModel | None = None,
    protocol: str = PROTOCOL_SHARED,
    seed: int = 0,
) -> pd.DataFrame:
    """A grid crossing ``n_draws`` data draws with ``n_seeds`` seeds, as a tidy table with ``draw``."""
    if n_draws < 1:
        raise ValueError("n_draws must be at least 1")
    parts = []
    for draw in range(n_draws):
        table = grid_to_table(simulate_grid(truth, n_seeds, noise, protocol, seed, draw=draw))
        parts.append(table.assign(draw=draw))
    return pd.concat(parts, ignore_index=True)


def grid_to_table(grid: SimulatedGrid) -> pd.DataFrame:
    """The tidy table ``RecordTable.select`` would return (train_key, eval_locale, seed, value, ...)."""
    locales = grid.truth.locales
    n = len(locales)
    n_seeds = len(grid.seeds)
    seeds = np.asarray(grid.seeds)
    keys, evals, kinds, values, seed_col = [], [], [], [], []

    def add(key: str, locale: str, kind: str, column: np.ndarray) -> None:
        keys.append(np.full(n_seeds, key, dtype=object))
        evals.append(np.full(n_seeds, locale, dtype=object))
        kinds.append(np.full(n_seeds, kind, dtype=object))
        values.append(column)
        seed_col.append(seeds)

    for i, t in enumerate(locales):
        add(single_key(t), t, "single", grid.single[:, i])
        add(self_key(t), t, "self", grid.self_[:, i])
        for j, s in enumerate(locales):
            if i != j:
                add(pair_key(t, s), t, "pair", grid.pair[:, i, j])
    table = pd.DataFrame(
        {
            "kind": np.concatenate(kinds),
            "train_key": np.concatenate(keys),
            "seed": np.concatenate(seed_col).astype(int),
            "eval_locale": np.concatenate(evals),
            "value": np.concatenate(values).astype(float),
        }
    )
    return table[np.isfinite(table["value"])].reset_index(drop=True) if n else table


def simulate_table(
    truth: Truth,
    n_seeds: int,
    noise: NoiseModel | None = None,
    protocol: str = PROTOCOL_SHARED,
    seed: int = 0,
) -> pd.DataFrame:
    """A simulated grid as a tidy table (the fast path of the calibration benchmark)."""
    return grid_to_table(simulate_grid(truth, n_seeds, noise, protocol, seed))


def grid_to_records(grid: SimulatedGrid, task: str = "gr", draw: int = 0) -> list[RunRecord]:
    """The simulated grid as run records: a shared pair run holds two evaluations (t and s).

    Records of data draw ``draw`` >= 1 carry it (and ``-d<draw>`` in their run ids).
    """
    from cltm_sb.tasks import get_task

    metric = get_task(task).metric
    locales = grid.truth.locales
    records: list[RunRecord] = []

    def record(
        run_id: str, kind: str, train: list[tuple[str, str]], seed: int, evals: dict[str, float]
    ) -> None:
        records.append(
            RunRecord(
                run_id=f"{run_id}-d{draw}" if draw else run_id,
                task=task,
                kind=kind,
                train_set=[{"locale": loc, "subset": sub} for loc, sub in train],
                seed=seed,
                evaluations=[
                    Evaluation(loc, metric, float(v), n_items=100) for loc, v in evals.items()
                ],
                config_hash="sim",
                data_hash="sim",
                extra={"simulated": True},
                draw=draw,
                draw_hash=f"sim-draw{draw}" if draw else "sim",
            )
        )

    for k, seed in enumerate(grid.seeds):
        for i, t in enumerate(locales):
            record(f"single-{t}-s{seed}", "single", [(t, "a")], seed, {t: grid.single[k, i]})
            record(f"self-{t}-s{seed}", "self", [(t, "a"), (t, "b")], seed, {t: grid.self_[k, i]})
            for j, s in enumerate(locales):
                if grid.protocol == PROTOCOL_SHARED and j > i:
                    record(
                        f"pair-{t}+{s}-s{seed}",
                        "pair",
                        [(t, "a"), (s, "a")],
                        seed,
                        {t: grid.pair[k, i, j], s: grid.pair[k, j, i]},
                    )
                elif grid.protocol == PROTOCOL_PER_CELL and j != i:
                    record(
                        f"pair-{t}+{s}-on-{t}-s{seed}",
                        "pair",
                        [(t, "a"), (s, "a")],
                        seed,
                        {t: grid.pair[k, i, j]},
                    )
    return records


def simulate_records(
    truth: Truth,
    n_seeds: int,
    noise: NoiseModel | None = None,
    protocol: str = PROTOCOL_SHARED,
    seed: int = 0,
    task: str = "gr",
    n_draws: int = 1,
) -> list[RunRecord]:
    """A simulated grid as :class:`~cltm_sb.results.RunRecord` objects (for the loader path).

    ``n_draws`` > 1 crosses that many data draws with the seeds (see :func:`simulate_grid`).
    """
    if n_draws < 1 or len(truth.locales) < 2:
        raise ValueError(
            f"a simulated grid needs at least 2 languages and 1 data draw, got {len(truth.locales)} and {n_draws}"
        )
    return [
        record
        for draw in range(n_draws)
        for record in grid_to_records(
            simulate_grid(truth, n_seeds, noise, protocol, seed, draw=draw), task=task, draw=draw
        )
    ]


def _truth_diagnostics(truth: Truth) -> dict[str, float]:
    """The true matrix's Table 1 diagnostics: what a calibrated interval should cover."""
    from cltm_sb.analysis.diagnostics import TABLE1, diagnose, diagnostics_in

    frame = pd.DataFrame(truth.matrix, index=truth.locales, columns=truth.locales)
    report = diagnose(frame, families=truth.families)
    return {d.key: report[d.key] for d in diagnostics_in(TABLE1)}


def write_simulated_grid(
    out: str | os.PathLike,
    truth: Truth,
    n_seeds: int,
    noise: NoiseModel | None = None,
    protocol: str = PROTOCOL_SHARED,
    seed: int = 0,
    task: str = "gr",
    names: Mapping[str, str] | None = None,
    n_draws: int = 1,
) -> Path:
    """Write a simulated grid into ``out``, in the layout ``cltm report`` and ``cltm matrix`` read.

    Written: ``records/<run_id>.json`` (one per simulated run), ``families.csv``
    (``code,name,family``, for ``--families``), ``truth.csv`` (the true CLTM) and
    ``simulation.json`` (the settings and the true matrix's Table 1 diagnostics). A folder that
    already holds records is refused: mixing two simulations would make duplicate results. The
    grid is written as one (:class:`~cltm_sb.io.OutputFolder`), so an interrupted simulation
    leaves no partial grid to be analysed.

    Args:
        names: English names of the locales (default: the codes themselves).
        n_draws: data draws crossed with the seeds (``noise.data_ratio`` sets their effect).

    Returns:
        The folder written.
    """
    from cltm_sb.grid.layout import GridLayout

    noise = noise or NoiseModel()
    target = Path(out)
    written = [GridLayout(target).records_dir.name, "families.csv", "truth.csv", "simulation.json"]
    taken = [name for name in written if (target / name).exists()]
    if taken:
        raise ValueError(
            f"{target} already holds run records or a simulation's files ({', '.join(taken)}); "
            "simulate into an empty folder"
        )
    records = simulate_records(truth, n_seeds, noise, protocol, seed, task=task, n_draws=n_draws)
    with OutputFolder(target, "simulate") as folder:
        _write_simulation(folder.path, records, truth, n_seeds, noise, protocol, seed, task, names, n_draws)
    return target


def _write_simulation(
    folder: Path,
    records: list[RunRecord],
    truth: Truth,
    n_seeds: int,
    noise: NoiseModel,
    protocol: str,
    seed: int,
    task: str,
    names: Mapping[str, str] | None,
    n_draws: int,
) -> None:
    from cltm_sb.analysis.diagnostics import write_matrix_csv
    from cltm_sb.grid.layout import GridLayout
    from cltm_sb.io import atomic_write_json, atomic_write_text

    layout = GridLayout(folder)
    for record in records:
        # The bytes of results.write_record, without its per-file flush to disk: a simulated
        # grid is made again from its seed at will (10,340 files: 40 s -> 3 s).
        atomic_write_json(
            layout.records_dir / f"{record.run_id}.json", record.to_dict(), durable=False
        )
    names = names or {}
    families = pd.DataFrame(
        {
            "code": truth.locales,
            "name": [names.get(c, c) for c in truth.locales],
            "family": truth.families,
        }
    )
    atomic_write_text(layout.plan_dir / "families.csv", families.to_csv(index=False))
    frame = pd.DataFrame(truth.matrix, index=truth.locales, columns=truth.locales)
    write_matrix_csv(frame, layout.plan_dir / "truth.csv")
    settings = {
        "truth": truth.name,
        "n_languages": len(truth.locales),
        "n_seeds": n_seeds,
        "n_draws": n_draws,
        "protocol": protocol,
        "seed": seed,
        "task": task,
        "noise": asdict(noise),
        "n_records": len(records),
        "true_diagnostics": _truth_diagnostics(truth),
    }
    atomic_write_json(layout.plan_dir / "simulation.json", settings)
