"""Data draws in the analysis: variance split, draws as units, the variability flag (DESIGN.md §8, §9)."""

from __future__ import annotations

import numpy as np
import pytest

from cltm_sb.analysis.draws import draw_unit_arrays, table_draws, variance_components
from cltm_sb.analysis.simulate import (
    NoiseModel,
    make_truth,
    simulate_draws_table,
    simulate_grid,
    simulate_records,
    simulate_table,
)
from cltm_sb.analysis.uncertainty import analyze_uncertainty, seed_arrays
from cltm_sb.results import records_to_table

TRUTH = make_truth("structured", 6)
OFF = ~np.eye(6, dtype=bool)


def _scaled(vc, sigma: np.ndarray) -> tuple[float, float, float, float]:
    seed, data = vc.seed_var / sigma[:, None] ** 2, vc.data_var / sigma[:, None] ** 2
    return (float(np.median(seed[OFF])), float(np.median(data[OFF])),
            float(np.median(np.diag(seed))), float(np.median(np.diag(data))))  # fmt: skip


def test_variance_split_recovers_known_components() -> None:
    # rho = 0.3: a gain's seed variance is 2(1 − rho) sigma² = 1.4 sigma²; data_ratio = 1 with
    # rho_data = 0.5: its data variance is 2(1 − rho_data) sigma² = 1.0 sigma².
    noise = NoiseModel(rho=0.3, data_ratio=1.0, rho_data=0.5)
    table = simulate_draws_table(TRUTH, 60, 5, noise, seed=11)
    sigma = simulate_grid(TRUTH, 5, noise, seed=11).profiles["sigma"]
    vc = variance_components(table, TRUTH.locales)
    seed_off, data_off, seed_diag, data_diag = _scaled(vc, sigma)
    assert seed_off == pytest.approx(1.4, rel=0.1) and seed_diag == pytest.approx(1.4, rel=0.2)
    assert data_off == pytest.approx(1.0, rel=0.25) and data_diag == pytest.approx(1.0, rel=0.4)
    assert vc.n_draws[OFF].min() == 60 and np.nanmax(vc.n0) == pytest.approx(5)
    frame = vc.table()
    assert list(frame.columns[:5]) == ["target", "donor", "seed_var", "data_var", "data_share"]
    # without data noise the data part is (nearly) nothing
    quiet = variance_components(simulate_draws_table(TRUTH, 60, 5, NoiseModel(), seed=11), TRUTH.locales)
    assert float(np.median(quiet.data_share[OFF])) < 0.1


def test_draws_are_the_units_and_widen_the_intervals() -> None:
    noise = NoiseModel(data_ratio=1.0)
    table = simulate_draws_table(TRUTH, 5, 4, noise, seed=3)
    assert table_draws(table) == [0, 1, 2, 3, 4]
    units = draw_unit_arrays(table, TRUTH.locales)
    assert units.unit == "draw" and units.n_seeds == 5
    first = seed_arrays(table[table["draw"] == 0], TRUTH.locales)
    np.testing.assert_allclose(units.single[0], first.single.mean(axis=0))
    with pytest.raises(ValueError, match="several data draws"):
        seed_arrays(table, TRUTH.locales)
    both = analyze_uncertainty(table, TRUTH.locales, TRUTH.families)
    pooled = analyze_uncertainty(
        table.assign(seed=table["seed"] + 1000 * table["draw"]).drop(columns="draw"),
        TRUTH.locales, TRUTH.families,
    )  # fmt: skip
    assert both.seeds == [42, 43, 44, 45] and both.draws == [0, 1, 2, 3, 4]
    width = lambda r: np.nanmedian((r.cell_upper - r.cell_lower)[r.cell_bounded])  # noqa: E731
    assert width(both) > 1.2 * width(pooled)
    # the point estimate of a balanced grid is the mean of every run either way
    np.testing.assert_allclose(both.point.matrix, pooled.point.matrix, atol=1e-12)


def test_variability_flag_in_intervals_json() -> None:
    one = analyze_uncertainty(simulate_table(TRUTH, 5, seed=1), TRUTH.locales, TRUTH.families)
    data = one.to_intervals_json()
    assert data["variability"] == "seed" and "draws" not in data
    assert "seed variability only" in data["variability_note"]
    table = simulate_draws_table(TRUTH, 4, 3, NoiseModel(data_ratio=0.5), seed=1)
    several = analyze_uncertainty(table, TRUTH.locales, TRUTH.families).to_intervals_json()
    assert several["variability"] == "seed+data"
    assert several["n_draws"] == 4 and several["n_seeds"] == 3 and several["draws"] == [0, 1, 2, 3]
    assert "4 independent draws of the speakers" in several["variability_note"]
    assert set(several["variance_components"]["cross_gain"]) == {
        "seed_var_median", "data_var_median", "data_share_median"
    }
    # one draw only (even a draw other than 0) is seed variability
    only = table[table["draw"] == 2].reset_index(drop=True)
    assert analyze_uncertainty(only, TRUTH.locales).to_intervals_json()["variability"] == "seed"


def test_records_with_draws_load_and_analyse() -> None:
    records = simulate_records(TRUTH, 3, NoiseModel(data_ratio=1.0), seed=5, n_draws=4)
    assert {r.draw for r in records} == {0, 1, 2, 3}
    assert len({r.run_id for r in records}) == len(records)
    table = records_to_table(records)
    assert sorted(table["draw"].unique()) == [0, 1, 2, 3]
    res = analyze_uncertainty(table, TRUTH.locales, TRUTH.families)
    assert res.variability == "seed+data" and res.diagnostics["rfd"].lower is not None
    three = records_to_table([r for r in records if r.draw < 3])
    withheld = analyze_uncertainty(three, TRUTH.locales).diagnostics["rfd"]
    assert withheld.lower is None and withheld.reason.startswith("3 draw(s)")


def test_cli_simulate_draws_and_report_say_seed_and_data(tmp_path) -> None:
    import json

    from cltm_sb.cli import main

    sim = tmp_path / "sim"
    assert main(["simulate", "-o", str(sim), "--languages", "4", "--n-seeds", "3", "--draws", "4",
                 "--data-ratio", "1"]) == 0  # fmt: skip
    assert json.loads((sim / "simulation.json").read_text())["n_draws"] == 4
    out = tmp_path / "report"
    assert main(["report", str(sim), "-o", str(out), "--families", str(sim / "families.csv"),
                 "--no-heatmap"]) == 0  # fmt: skip
    intervals = json.loads((out / "intervals.json").read_text())
    assert intervals["variability"] == "seed+data" and intervals["n_draws"] == 4
    text = (out / "report.md").read_text()
    assert "variability: seed+data (4 data draws x 3 seeds" in text
    assert "independent draws of the speakers" in text
    # the donor tables show P(best) and the rank interval of donors.csv
    assert "| P(best) | rank 95% interval |" in text
    assert "P(best) & rank" in (out / "donors.tex").read_text()
