"""Simulated grids: deterministic, both protocols, the noise model's correlations, the loader path."""

import numpy as np
import pytest

from cltm_sb.analysis.diagnostics import prop_positive, write_matrix_csv
from cltm_sb.analysis.matrix import build_cltm
from cltm_sb.analysis.simulate import (
    PROTOCOL_PER_CELL,
    PROTOCOL_SHARED,
    NoiseModel,
    Truth,
    lose_seeds,
    make_truth,
    near_agnostic_truth,
    simulate_grid,
    simulate_records,
    simulate_table,
    structured_truth,
    truth_from_csv,
)
from cltm_sb.results import records_to_table


def test_same_seed_same_grid_and_another_seed_another():
    truth = make_truth("structured", 5)
    a = simulate_table(truth, 4, seed=3)
    b = simulate_table(truth, 4, seed=3)
    c = simulate_table(truth, 4, seed=4)
    assert a.equals(b)
    assert not np.allclose(a["value"], c["value"])


def test_truths_have_their_shape():
    agnostic = near_agnostic_truth(8)
    assert np.allclose(np.diag(agnostic.matrix), 1.0)
    assert np.all(agnostic.matrix > 0.3)
    structured = structured_truth(12)
    assert prop_positive(structured.matrix) < 0.5
    assert (structured.matrix.min(axis=1) < 0).all()
    with pytest.raises(ValueError):
        Truth(["a", "b"], ["F", "F"], np.ones((3, 3)))


def test_truth_from_csv(tmp_path):
    import pandas as pd

    m = pd.DataFrame([[1.0, 0.5], [-0.2, 1.0]], index=["en", "es"], columns=["en", "es"])
    write_matrix_csv(m, tmp_path / "m.csv")
    truth = truth_from_csv(tmp_path / "m.csv", families=["G", "R"])
    assert truth.locales == ["en", "es"] and truth.matrix[1, 0] == pytest.approx(-0.2)


@pytest.mark.parametrize("protocol", [PROTOCOL_SHARED, PROTOCOL_PER_CELL])
def test_records_have_the_protocols_runs_and_load_like_the_table(protocol):
    truth = make_truth("near-agnostic", 4)
    records = simulate_records(truth, 2, protocol=protocol, seed=1)
    pairs = [r for r in records if r.kind == "pair"]
    L = 4
    if protocol == PROTOCOL_SHARED:
        assert len(pairs) == 2 * L * (L - 1) // 2 and all(len(r.evaluations) == 2 for r in pairs)
    else:
        assert len(pairs) == 2 * L * (L - 1) and all(len(r.evaluations) == 1 for r in pairs)
    from_records = build_cltm(records_to_table(records)).matrix
    from_table = build_cltm(simulate_table(truth, 2, protocol=protocol, seed=1)).matrix
    assert np.allclose(from_records.to_numpy(), from_table.to_numpy(), equal_nan=True)


def test_noise_model_correlations_and_self_gain_z():
    truth = make_truth("near-agnostic", 3)
    noise = NoiseModel(rho=0.6, rho_pair=0.5, z_self=10)
    shared = simulate_grid(truth, 4000, noise, PROTOCOL_SHARED, seed=0)
    per_cell = simulate_grid(truth, 4000, noise, PROTOCOL_PER_CELL, seed=0)

    def corr(a, b):
        return np.corrcoef(a, b)[0, 1]

    # The seed effect is shared by every run evaluated on the same locale ...
    assert corr(shared.single[:, 0], shared.self_[:, 0]) == pytest.approx(0.6, abs=0.05)
    assert corr(shared.single[:, 0], shared.pair[:, 0, 1]) == pytest.approx(0.6, abs=0.05)
    # ... not across locales; a shared pair run correlates its two evaluations: (1 − ρ)·ρ_p.
    assert corr(shared.single[:, 0], shared.single[:, 1]) == pytest.approx(0.0, abs=0.05)
    assert corr(shared.pair[:, 0, 1], shared.pair[:, 1, 0]) == pytest.approx(0.2, abs=0.05)
    assert corr(per_cell.pair[:, 0, 1], per_cell.pair[:, 1, 0]) == pytest.approx(0.0, abs=0.05)
    # The self-gain is z naive SEs (sqrt(2σ²/n)) at the simulated number of seeds.
    grid = simulate_grid(truth, 10, noise, seed=1)
    sigma, gain = grid.profiles["sigma"], grid.profiles["self_gain"]
    assert np.allclose(gain / np.sqrt(2 * sigma**2 / 10), 10.0)


def test_an_interrupted_simulation_leaves_no_grid_and_an_empty_one_is_refused(tmp_path, monkeypatch):
    import cltm_sb.analysis.simulate as simulate

    truth = make_truth("structured", 4)
    real = simulate._write_simulation

    def interrupted(folder, *args, **kwargs):
        real(folder, *args, **kwargs)
        raise KeyboardInterrupt  # after every file is written, before the grid is moved in

    monkeypatch.setattr(simulate, "_write_simulation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        simulate.write_simulated_grid(tmp_path / "sim", truth, n_seeds=3)
    assert list(tmp_path.iterdir()) == []  # neither a partial grid nor the staging folder
    monkeypatch.setattr(simulate, "_write_simulation", real)
    out = simulate.write_simulated_grid(tmp_path / "sim", truth, n_seeds=3)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "families.csv", "records", "simulation.json", "truth.csv"]
    assert list(tmp_path.iterdir()) == [out]
    with pytest.raises(ValueError, match=r"already holds run records or a simulation's files \(records, families.csv, truth.csv, simulation.json\)"):
        simulate.write_simulated_grid(out, truth, n_seeds=3)
    with pytest.raises(ValueError, match="at least 2 languages and 1 data draw"):
        simulate_records(truth, 3, n_draws=0)


@pytest.mark.parametrize("protocol", [PROTOCOL_SHARED, PROTOCOL_PER_CELL])
def test_lost_seeds_are_nan_and_a_shared_pair_run_loses_both_its_cells(protocol):
    grid = simulate_grid(make_truth("structured", 6), 10, protocol=protocol, seed=1)
    lost = lose_seeds(grid, 0.3, seed=1)
    for name in ("single", "self_", "pair"):
        kept = np.isfinite(getattr(lost, name))
        assert np.array_equal(getattr(lost, name)[kept], getattr(grid, name)[kept]), name
    share = np.isnan(lost.single).mean()
    assert 0.15 < share < 0.45
    off = ~np.eye(6, dtype=bool)
    pair_lost = np.isnan(lost.pair) & off
    symmetric = np.array_equal(pair_lost, np.transpose(pair_lost, (0, 2, 1)))
    assert symmetric == (protocol == PROTOCOL_SHARED)
    assert np.array_equal(np.isnan(lose_seeds(grid, 0.3, seed=1).pair), np.isnan(lost.pair))
    assert not np.isnan(lose_seeds(grid, 0.0).single).any()
