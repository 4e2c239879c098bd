"""Embedding geometry on embeddings with planted centroids, and the Mantel test."""

import itertools
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from cltm_sb.analysis.geometry import (
    GeometryError,
    analyze_geometry,
    cosine_distance,
    mantel_spearman,
    pair_distances,
    read_embeddings,
)
from cltm_sb.analysis.matrix import build_cltm
from cltm_sb.cli import main
from cltm_sb.results import load_records

from helpers import make_record, write_records

LOCALES = ["l0", "l1", "l2", "l3", "l4", "l5"]
# Language l's planted direction: angle THETA[l] in the plane of the first two dimensions.
THETA = {loc: 0.3 * k**1.3 for k, loc in enumerate(LOCALES)}
DIM = 8


def planted_embeddings(locale: str, spread: float) -> np.ndarray:
    """Unit rows (c ± spread·e_k)/sqrt(1 + spread²) with c ⟂ e_k: their mean is c / sqrt(1 + spread²)."""
    c = np.zeros(DIM)
    c[0], c[1] = math.cos(THETA[locale]), math.sin(THETA[locale])
    rows = []
    for k in range(2, DIM):
        e = np.zeros(DIM)
        e[k] = spread
        rows += [(c + e) / math.sqrt(1 + spread**2), (c - e) / math.sqrt(1 + spread**2)]
    return np.array(rows)


def planted_distance(t: str, s: str, spread: float) -> float:
    return 2 * abs(math.sin((THETA[t] - THETA[s]) / 2)) / math.sqrt(1 + spread**2)


SPREADS = {1: 0.5, 2: 1.0}  # seed -> spread: the two seeds' distances differ


def write_sv_grid(plan, locales=LOCALES, record_paths=True, one_run_per_cell=False):
    """A shared-protocol SV grid whose transfer falls with the planted distance: M[t,s] = 1 - d(t,s)."""
    records = []
    for seed, spread in SPREADS.items():
        off = 0.005 if seed == 1 else -0.005
        for t in locales:
            records.append(make_record([(t, "a")], {t: 0.6 + off}, seed, task="sv"))
            records.append(make_record([(t, "a"), (t, "b")], {t: 0.7 + off}, seed, task="sv"))
        for t, s in itertools.combinations(locales, 2):
            m = 1 - planted_distance(t, s, 0.75)
            evals = (
                {t: 0.6 + 0.1 * m + off}
                if one_run_per_cell
                else {t: 0.6 + 0.1 * m + off, s: 0.6 + 0.1 * m + off}
            )
            rec = make_record([(t, "a"), (s, "a")], evals, seed, task="sv")
            run_dir = plan / "runs" / rec.run_id
            run_dir.mkdir(parents=True)
            for loc in evals:
                path = run_dir / f"embeddings_{loc}.npz"
                emb = planted_embeddings(loc, spread)
                np.savez(
                    path,
                    ids=np.array([f"{loc}_{i}" for i in range(len(emb))]),
                    emb=emb.astype(np.float16),
                )
                ev = next(e for e in rec.evaluations if e.locale == loc)
                ev.extra["embeddings"] = str(path) if record_paths else "/elsewhere/gone.npz"
            records.append(rec)
    write_records(plan / "records", records)
    return plan


def test_distances_recover_the_planted_centroids(tmp_path):
    plan = write_sv_grid(tmp_path / "plan")
    per_seed, skipped = pair_distances(load_records(plan).records, plan)
    assert not skipped
    assert len(per_seed) == 15 * 2
    for row in per_seed.itertuples():
        assert row.euclidean == pytest.approx(
            planted_distance(row.t, row.s, SPREADS[row.seed]), abs=2e-3
        )
        assert row.n_t == 2 * (DIM - 2)


def test_pair_table_averages_seeds_and_sets_transfer_beside(tmp_path):
    plan = write_sv_grid(tmp_path / "plan")
    records = load_records(plan)
    result = build_cltm(records.select("sv"))
    geo = analyze_geometry(records.records, result.matrix, plan_dir=plan, n_permutations=999)
    row = geo.pairs[(geo.pairs.t == "l0") & (geo.pairs.s == "l3")].iloc[0]
    expected = np.mean([planted_distance("l0", "l3", sp) for sp in SPREADS.values()])
    assert row.euclidean == pytest.approx(expected, abs=2e-3)
    assert row.n_seeds == 2 and row.euclidean_se > 0
    assert row.m_ts == pytest.approx(result.matrix.loc["l0", "l3"])
    assert row.m_mean == pytest.approx((row.m_ts + row.m_st) / 2)
    assert list(geo.pairs["euclidean"]) == sorted(geo.pairs["euclidean"])
    # transfer falls with distance: Spearman -1, and the Mantel p-value is small
    assert geo.correlation["euclidean"].rho == pytest.approx(-1.0)
    assert geo.correlation["euclidean"].p_value < 0.01
    assert geo.correlation["euclidean"].n_pairs == 15


def test_cosine_distance_of_planted_directions():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    assert cosine_distance(a, b) == pytest.approx(1.0)
    assert cosine_distance(a, a) == pytest.approx(0.0)


def test_mantel_is_deterministic_and_uninformative_on_noise():
    rng = np.random.default_rng(3)
    x = rng.random((8, 8))
    y = rng.random((8, 8))
    x, y = x + x.T, y + y.T
    first = mantel_spearman(x, y, n_permutations=499, seed=1)
    assert first == mantel_spearman(x, y, n_permutations=499, seed=1)
    assert first.p_value > 0.05
    same = mantel_spearman(x, x, n_permutations=499, seed=1)
    assert same.rho == pytest.approx(1.0) and same.p_value < 0.01


def test_mantel_leaves_out_nan_pairs():
    d = pd.DataFrame(np.arange(16.0).reshape(4, 4))
    d = d + d.T
    t = -d.copy()
    t.iloc[0, 1] = t.iloc[1, 0] = np.nan
    result = mantel_spearman(d, t, n_permutations=10)
    assert result.n_pairs == 5 and result.rho == pytest.approx(-1.0)


def test_moved_plan_folder_falls_back_to_the_run_folder(tmp_path):
    plan = write_sv_grid(tmp_path / "plan", locales=LOCALES[:3], record_paths=False)
    per_seed, _ = pair_distances(load_records(plan).records, plan)
    assert len(per_seed) == 3 * 2


def test_a_copied_plan_reads_its_own_embeddings_not_the_recorded_paths(tmp_path):
    original = write_sv_grid(tmp_path / "plan", locales=LOCALES[:3])  # records name the original's files
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    removed = next(copy.glob("runs/*/embeddings_*.npz"))
    removed.unlink()  # the copy lost one file: that pair is skipped, not read from the original
    per_seed, skipped = pair_distances(load_records(copy).records, copy)
    assert len(per_seed) == 3 * 2 - 1
    assert [s["run_id"] for s in skipped] == [removed.parent.name]


def test_one_run_per_cell_runs_are_skipped_with_a_reason(tmp_path):
    plan = write_sv_grid(tmp_path / "plan", locales=LOCALES[:3], one_run_per_cell=True)
    with pytest.raises(GeometryError, match="one run per cell"):
        analyze_geometry(load_records(plan).records, plan_dir=plan)


def test_bad_embeddings_file_is_named(tmp_path):
    path = tmp_path / "embeddings_xx.npz"
    np.savez(path, ids=np.array(["a"]), other=np.zeros((1, 2)))
    with pytest.raises(GeometryError, match="embeddings_xx.npz"):
        read_embeddings(path)
    with pytest.raises(GeometryError, match="not found"):
        read_embeddings(tmp_path / "missing.npz")


def test_truncated_embeddings_file_is_named(tmp_path):
    path = tmp_path / "embeddings_xx.npz"
    np.savez(path, ids=np.array(["a", "b"]), emb=np.ones((2, 8), dtype=np.float16))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GeometryError, match=r"embeddings_xx.npz: truncated .* run that SV run again"):
        read_embeddings(path)


def test_cli_geometry(tmp_path, capsys):
    plan = write_sv_grid(tmp_path / "plan")
    out = tmp_path / "geo"
    assert main(["geometry", str(plan), "-o", str(out), "--permutations", "199"]) == 0
    printed = capsys.readouterr().out
    assert "Spearman rho = -1.000" in printed
    summary = json.loads((out / "geometry.json").read_text())
    assert summary["n_pairs"] == 15
    assert pd.read_csv(out / "pairs.csv").shape[0] == 15


def test_cli_geometry_refuses_a_negative_number_of_permutations(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["geometry", str(tmp_path), "-o", str(tmp_path / "geo"), "--permutations", "-5"])
    assert exit_.value.code == 2 and "a whole number >= 0 is needed, got '-5'" in capsys.readouterr().err


def test_cli_geometry_keeps_to_the_chosen_configuration_and_locales(tmp_path):
    # The same seeds under another configuration (other models, far-apart embeddings) in the same
    # folder: with --config-hash, only the chosen configuration's runs may enter the distances.
    plan = write_sv_grid(tmp_path / "plan")
    other = load_records(plan).records
    for rec in other:
        rec.config_hash, rec.run_id = "cfg2", rec.run_id + "-cfg2"
        if rec.kind == "pair":
            run_dir = plan / "runs" / rec.run_id
            run_dir.mkdir(parents=True)
            for ev in rec.evaluations:
                emb = np.full((4, DIM), -1.0 if ev.locale == "l0" else 1.0) / math.sqrt(DIM)
                np.savez(run_dir / f"embeddings_{ev.locale}.npz",
                         ids=np.array([f"{ev.locale}_{i}" for i in range(4)]), emb=emb.astype(np.float16))
                ev.extra["embeddings"] = str(run_dir / f"embeddings_{ev.locale}.npz")
    write_records(plan / "records", other)
    out = tmp_path / "geo"
    args = ["geometry", str(plan), "-o", str(out), "--permutations", "99", "--config-hash", "cfg1"]
    assert main([*args, "--locales", "l0,l1,l2"]) == 0
    per_seed = pd.read_csv(out / "per_seed.csv")
    assert len(per_seed) == 3 * 2  # 3 pairs of l0-l2, 2 seeds, configuration cfg1 only
    assert not per_seed["run_id"].str.endswith("-cfg2").any()
    for row in per_seed.itertuples():
        assert row.euclidean == pytest.approx(planted_distance(row.t, row.s, SPREADS[row.seed]), abs=2e-3)


def test_runs_of_several_data_draws_give_one_unit_per_seed(tmp_path):
    # 3 seeds x 2 draws of l0-l1 were 6 independent runs: mean over 6, SE = SD(6) / sqrt(6). A seed's
    # runs on two draws are one unit, as in `cltm interval`: its mean over the draws.
    # the draws differ much more than the seeds: the SE over 6 runs (0.03) is 9 times the seeds' (0.0035)
    spreads = {(seed, draw): 0.1 * seed + (1.5 if draw else 0.0) for seed in (1, 2, 3) for draw in (0, 1)}
    records = []
    for (seed, draw), spread in spreads.items():
        rec = make_record([("l0", "a"), ("l1", "a")], {"l0": 0.6, "l1": 0.6}, seed, task="sv")
        rec.run_id, rec.draw = f"{rec.run_id}-d{draw}", draw
        run_dir = tmp_path / "plan" / "runs" / rec.run_id
        run_dir.mkdir(parents=True)
        for loc in ("l0", "l1"):
            emb = planted_embeddings(loc, spread)
            np.savez(run_dir / f"embeddings_{loc}.npz", ids=np.array([f"{loc}_{i}" for i in range(len(emb))]),
                     emb=emb.astype(np.float16))
        records.append(rec)
    geo = analyze_geometry(records, plan_dir=tmp_path / "plan")
    assert len(geo.per_seed) == 6 and sorted(geo.per_seed["draw"]) == [0, 0, 0, 1, 1, 1]
    (row,) = geo.pairs.itertuples()
    planted = [np.mean([planted_distance("l0", "l1", spreads[seed, d]) for d in (0, 1)]) for seed in (1, 2, 3)]
    assert row.n_seeds == 3 and row.euclidean == pytest.approx(np.mean(planted), abs=2e-3)
    by_seed = geo.per_seed.groupby("seed")["euclidean"].mean()
    assert row.euclidean_se == pytest.approx(by_seed.std(ddof=1) / math.sqrt(3), rel=1e-9)
    assert row.euclidean_se < 0.01
