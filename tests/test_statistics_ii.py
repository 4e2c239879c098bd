"""Honest statistics II: formal tests, best-donor sets, two-grid comparison, paired interval rule,
partial Mantel test and power, each checked on small simulations with a known answer."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from cltm_sb.analysis.compare import compare_uncertainty, mover_difference
from cltm_sb.analysis.geometry import family_matrix, mantel_spearman, partial_mantel_spearman
from cltm_sb.analysis.interval import gain_table, select_interval
from cltm_sb.analysis.power import (
    PilotNoise,
    cell_detectable,
    cell_power,
    estimate_noise,
    plan_power,
    seeds_needed,
)
from cltm_sb.analysis.simulate import (
    NoiseModel,
    make_truth,
    null_truth,
    simulate_grid,
    simulate_table,
    write_simulated_grid,
)
from cltm_sb.analysis.uncertainty import (
    SeedArrays,
    analyze_arrays,
    analyze_uncertainty,
    best_set,
    box_f_test,
    donor_ranks,
    formal_tests,
    point_estimate,
)
from cltm_sb.cli import main


def arrays_of(truth, n_seeds, seed, noise=None):
    grid = simulate_grid(truth, n_seeds, noise or NoiseModel(), seed=seed)
    return SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)


# ---- formal tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("hypothesis", ["agnostic", "symmetric", "equal_profiles"])
def test_formal_tests_hold_their_level_under_the_null_and_reject_the_truth(hypothesis):
    base = make_truth("structured", 6)
    truth = null_truth(base, hypothesis)
    p_null = []
    for rep in range(150):
        arrays = arrays_of(truth, 6, rep)
        p_null.append(formal_tests(arrays, point_estimate(arrays))[hypothesis].p_value)
    # Withheld (None) only where a row's self-gain is too weak for the linearisation: rare here.
    assert sum(p is None for p in p_null) <= 10
    p_null = [p for p in p_null if p is not None]
    # ~150 experiments: a 5% test rejects 7.5 ± 2.7 times; 15 would be a 10% test.
    assert sum(p < 0.05 for p in p_null) <= 15
    # and the p-values spread over (0, 1) rather than piling up anywhere
    assert 0.3 < float(np.median(p_null)) < 0.75
    p_alt = []
    for rep in range(20):
        arrays = arrays_of(base, 6, 1000 + rep)
        p_alt.append(formal_tests(arrays, point_estimate(arrays))[hypothesis].p_value)
    assert np.mean([p is not None and p < 0.05 for p in p_alt]) >= 0.8


def test_ratio_tests_are_withheld_when_a_used_run_lost_seeds():
    # symmetric and equal_profiles rest on the plain jackknife over the grid's seeds, which
    # counts a run that lost seeds more than once: they are calibrated on complete grids only.
    arrays = arrays_of(make_truth("structured", 6), 6, 0)
    assert formal_tests(arrays, point_estimate(arrays))["symmetric"].p_value is not None
    arrays.pair[2, 0, 1] = arrays.pair[2, 1, 0] = np.nan
    tests = formal_tests(arrays, point_estimate(arrays))
    for name in ("symmetric", "equal_profiles"):
        assert tests[name].p_value is None
        assert "a used run finished 5 of the 6 seeds" in tests[name].reason
    assert tests["agnostic"].p_value is not None  # exact on its complete contrasts


def test_box_f_test_is_exact_in_the_spherical_case():
    rng = np.random.default_rng(0)
    rejections = sum(box_f_test(rng.standard_normal((8, 20)))[1] < 0.05 for _ in range(1000))
    assert 25 <= rejections <= 80


def test_intervals_json_carries_the_tests_and_few_seeds_say_why():
    truth = make_truth("near-agnostic", 6)
    res = analyze_uncertainty(simulate_table(truth, 10, seed=3), truth.locales, truth.families)
    tests = json.loads(json.dumps(res.to_intervals_json()))["tests"]
    assert set(tests) == {"agnostic", "symmetric", "equal_profiles"}
    for entry in tests.values():
        assert {"statistic", "p_value", "method"} <= set(entry)
        assert 0 <= entry["p_value"] <= 1
    res3 = analyze_uncertainty(simulate_table(truth, 3, seed=3), truth.locales, truth.families)
    assert all(t.p_value is None and "seed" in t.reason for t in res3.tests.values())


# ---- donors -------------------------------------------------------------------------------------


def test_best_set_is_the_smallest_prefix_reaching_95_percent():
    p = np.array([0.5, 0.02, 0.3, 0.16, 0.02])
    assert best_set(p).tolist() == [True, False, True, True, False]
    assert best_set(np.array([0.97, 0.03, np.nan])).tolist() == [True, False, False]


def test_best_set_covers_the_true_best_donor():
    truth = make_truth("near-agnostic", 6)
    m = truth.matrix.copy()
    np.fill_diagonal(m, -np.inf)
    best = m.argmax(axis=1)
    covered = []
    for rep in range(40):
        arrays = arrays_of(truth, 5, rep)
        point = point_estimate(arrays)
        ranks = donor_ranks(arrays, point, n_draws=1000)
        rows = np.flatnonzero(point.valid_rows & ~point.flagged)
        covered += ranks.in_best_set[rows, best[rows]].tolist()
        assert np.all(np.nansum(ranks.p_best[rows], axis=1) == pytest.approx(1.0))
        off = ~np.eye(6, dtype=bool)[rows]
        lo, hi = ranks.rank_lower[rows][off], ranks.rank_upper[rows][off]
        assert np.all((lo >= 1) & (lo <= hi) & (hi <= 5))
    assert np.mean(covered) >= 0.9


def test_donors_table_has_p_best_ranks_and_the_best_set():
    truth = make_truth("structured", 6)
    res = analyze_uncertainty(simulate_table(truth, 10, seed=2), truth.locales, truth.families)
    table = res.donors_table()
    assert {"p_best", "rank_lower", "rank_upper", "in_best_set"} <= set(table.columns)
    for _, rows in table.groupby("target"):
        chosen = rows[rows["in_best_set"]]
        assert chosen["p_best"].sum() >= 0.95 - 1e-9
        # dropping the least likely donor of the set would fall short of 0.95
        assert chosen["p_best"].sum() - chosen["p_best"].min() < 0.95
    assert str(table["rank_lower"].dtype) == "Int64"


def _arrays_with_a_short_pair_run() -> SeedArrays:
    """Four languages, ten seeds; target q0's donors by M: q1 (0.76) clearly above q2 (0.54) and q3.

    q3's pair run on q0 finished only seeds 0 and 1, where q1 happened to be low and q2 high:
    over the seeds every donor finished, q2 led.
    """
    rng = np.random.default_rng(0)
    n, L = 10, 4
    effect = rng.normal(0, 0.02, size=(n, L))  # each seed's effect on each evaluated language
    single = 0.5 + effect
    self_ = 0.6 + effect + rng.normal(0, 0.003, size=(n, L))
    pair = 0.5 + 0.1 * 0.3 + effect[:, :, None] + rng.normal(0, 0.003, size=(n, L, L))
    pair[:, 0, 1] = 0.58 + effect[:, 0] + rng.normal(0, 0.003, size=n)
    pair[:, 0, 2] = 0.55 + effect[:, 0] + rng.normal(0, 0.003, size=n)
    pair[:2, 0, 1] -= 0.02
    pair[:2, 0, 2] += 0.02
    pair[2:, 0, 3] = pair[2:, 3, 0] = np.nan
    pair[:, np.arange(L), np.arange(L)] = np.nan
    return SeedArrays([f"q{i}" for i in range(L)], list(range(n)), single, self_, pair)


def test_p_best_follows_the_printed_m_when_a_pair_run_missed_seeds():
    res = analyze_arrays(_arrays_with_a_short_pair_run())
    m, p_best = res.point.matrix[0], res.donor_ranks.p_best[0]
    assert m[1] - m[2] > 4 * max(res.se_paired[0, 1], res.se_paired[0, 2])
    # Over the two seeds every donor finished, q2 won P(best) against the printed order.
    assert np.nanargmax(p_best) == 1 and p_best[1] > 0.9
    assert res.donor_ranks.rank_lower[0, 1] == 1 and res.donor_ranks.rank_lower[0, 2] == 2
    table = res.donors_table().set_index(["target", "donor"])
    assert table.loc[("q0", "q3"), "reason"] == "pair run finished 2 of 10 seeds"
    assert table.loc[("q3", "q0"), "reason"] == "pair run finished 2 of 10 seeds"
    assert table.loc[("q0", "q1"), "reason"] == "" and table.loc[("q1", "q2"), "reason"] == ""


def test_a_target_whose_donors_share_too_few_seeds_says_why_it_has_no_p_best():
    arrays = _arrays_with_a_short_pair_run()
    arrays.pair[:8, 0, 2] = arrays.pair[:8, 2, 0] = np.nan  # q2 on q0: seeds 8 and 9, q3: 0 and 1
    res = analyze_arrays(arrays)
    assert np.isnan(res.donor_ranks.p_best[0]).all()
    assert not np.isnan(res.donor_ranks.p_best[1, [0, 2, 3]]).any()
    reason = res.donors_table().set_index(["target", "donor"]).loc[("q0", "q1"), "reason"]
    assert reason == "no P(best): the pair runs of q2 and q3 on q0 share fewer than 2 seeds"


# ---- comparison ---------------------------------------------------------------------------------


def test_mover_reduces_to_the_root_sum_of_squares_for_symmetric_intervals():
    lower, upper = mover_difference(1.0, 0.7, 1.3, 0.5, 0.1, 0.9)
    half = math.hypot(0.3, 0.4)
    assert (lower, upper) == pytest.approx((0.5 - half, 0.5 + half))


def test_comparison_intervals_cover_the_true_differences():
    truth_a = make_truth("structured", 6, seed=0)
    truth_b = make_truth("structured", 6, seed=1)
    true_rfd = []
    hits, cell_rates = [], []
    from cltm_sb.analysis.diagnostics import rfd

    for rep in range(60):
        res = [
            analyze_arrays(arrays_of(t, 10, 500 + 2 * rep + k), t.families, donor_draws=0)
            for k, t in enumerate((truth_a, truth_b))
        ]
        comparison = compare_uncertainty(*res)
        used = [r.point.valid_rows & ~r.point.flagged for r in res]
        truth_value = rfd(np.where(used[0][:, None], truth_a.matrix, np.nan)) - rfd(
            np.where(used[1][:, None], truth_b.matrix, np.nan)
        )
        true_rfd.append(truth_value)
        d = comparison.diagnostics["rfd"]
        hits.append(d.lower <= truth_value <= d.upper)
        cells = comparison.cells.dropna(subset=["lower"])
        i = cells["target"].map(truth_a.locales.index).to_numpy()
        j = cells["donor"].map(truth_a.locales.index).to_numpy()
        tv = truth_a.matrix[i, j] - truth_b.matrix[i, j]
        cell_rates.append(np.mean((cells["lower"] <= tv) & (tv <= cells["upper"])))
        assert cells["q_value"].between(0, 1).all()
    assert np.mean(hits) >= 0.88
    assert np.mean(cell_rates) >= 0.92
    assert json.dumps(comparison.to_dict())  # compare.json-ready
    assert "Welch" in comparison.to_dict()["cell_method"]  # the cells' method is named beside them


def test_comparison_test_of_grids_with_lost_seeds_takes_each_grid_cells_degrees_of_freedom():
    # With runs that lost seeds a cell's variance uses every finished seed (df ~ Satterthwaite),
    # and the Welch test used the few seeds all three runs share − 1 instead.
    from scipy import stats

    from cltm_sb.analysis.simulate import lose_seeds

    truth = make_truth("structured", 6, seed=0)
    res = []
    for k in range(2):
        grid = lose_seeds(simulate_grid(truth, 10, NoiseModel(), seed=40 + k), 0.3, seed=k)
        arrays = SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)
        res.append(analyze_arrays(arrays, truth.families, donor_draws=0))
    cells = compare_uncertainty(*res).cells.dropna(subset=["p_value"])
    i = cells["target"].map(truth.locales.index).to_numpy()
    j = cells["donor"].map(truth.locales.index).to_numpy()
    dof = [r.cells.dof[i, j] for r in res]
    assert all((d > r.cells.n[i, j] - 1).any() for d, r in zip(dof, res))
    var = [r.se_paired[i, j] ** 2 for r in res]
    df = (var[0] + var[1]) ** 2 / (var[0] ** 2 / dof[0] + var[1] ** 2 / dof[1])
    z = cells["difference"].to_numpy() / np.sqrt(var[0] + var[1])
    assert cells["p_value"].to_numpy() == pytest.approx(2 * stats.t.sf(np.abs(z), df))
    # No p-value where a grid has no interval of its own for the cell.
    for r in res:
        assert not np.isnan(r.cell_lower[i, j]).any()


# ---- interval rule ------------------------------------------------------------------------------


def paired_curves(gain: float, seed_sd: float, noise_sd: float, n_seeds: int = 5) -> pd.DataFrame:
    """One language at N = 100 whose N and 2N runs share a large seed effect."""
    rng = np.random.default_rng(1)
    u = rng.normal(0, seed_sd, n_seeds)
    rows = []
    for k in range(n_seeds):
        rows.append(("xx", 100, "n", 100, k, 0.7 + u[k] + rng.normal(0, noise_sd)))
        rows.append(("xx", 100, "2n", 200, k, 0.7 + gain + u[k] + rng.normal(0, noise_sd)))
    return pd.DataFrame(rows, columns=["locale", "n", "role", "size", "seed", "value"])


def test_pairing_detects_a_gain_that_the_unpaired_se_misses():
    gains = gain_table(paired_curves(gain=0.01, seed_sd=0.02, noise_sd=0.002))
    row = gains.iloc[0]
    assert row.z_unpaired < 2 <= row.z
    assert row.se < row.se_unpaired
    assert row.relative_gain == pytest.approx(row.gain / row.p_n)
    assert select_interval(gains).n == 100


def test_min_relative_gain_is_tested_not_just_compared():
    curves = paired_curves(gain=0.01, seed_sd=0.02, noise_sd=0.002)  # about +1.4%
    assert select_interval(gain_table(curves, min_relative_gain=0.0)).n == 100
    with pytest.raises(ValueError, match="relative gain above 0.05"):
        select_interval(gain_table(curves, min_relative_gain=0.05))


def test_paired_rule_keeps_its_level_with_two_seeds():
    rng = np.random.default_rng(7)
    rows = []
    for lang in range(600):
        u = rng.normal(0, 0.01, 2)
        for k in range(2):
            rows.append((f"l{lang}", 100, "n", 100, k, 0.7 + u[k] + rng.normal(0, 0.01)))
            rows.append((f"l{lang}", 100, "2n", 200, k, 0.7 + u[k] + rng.normal(0, 0.01)))
    gains = gain_table(pd.DataFrame(rows, columns=["locale", "n", "role", "size", "seed", "value"]))
    rate = float(((gains["gain"] > 0) & (gains["z"] >= 2)).mean())
    assert rate <= 0.023 + 0.02  # nominal Φ(−2); the unpaired rule gave ~9% here
    assert float(((gains["gain"] > 0) & (gains["z_unpaired"] >= 2)).mean()) > rate


# ---- partial Mantel -----------------------------------------------------------------------------


def test_partial_mantel_separates_family_from_distance():
    rng = np.random.default_rng(3)
    families = [f"F{i // 3}" for i in range(12)]
    different = family_matrix(families)
    # Transfer depends on family only; distance on family plus noise: a plain Mantel test finds
    # the association, the partial one (given family) does not.
    noise = rng.normal(0, 0.3, (12, 12))
    distance = different + (noise + noise.T) / 2
    other = rng.normal(0, 0.1, (12, 12))
    transfer = -different + (other + other.T) / 2
    plain = mantel_spearman(distance, transfer, 499, seed=1)
    partial = partial_mantel_spearman(distance, transfer, different, 499, seed=1)
    assert plain.p_value < 0.01
    assert partial.p_value > 0.05 and partial.controlling_for == "control"
    # Within families too: distance drives transfer directly, which the partial test keeps.
    transfer2 = -distance + 0.05 * (other + other.T)
    partial2 = partial_mantel_spearman(distance, transfer2, different, 499, seed=1)
    assert partial2.p_value < 0.01 and partial2.rho < -0.5


def test_partial_mantel_with_one_family_says_why():
    x = np.arange(16.0).reshape(4, 4)
    x = x + x.T
    result = partial_mantel_spearman(x, x, family_matrix(["F"] * 4), 99)
    assert math.isnan(result.rho) and "constant" in result.reason


# ---- power --------------------------------------------------------------------------------------


def test_power_grows_with_seeds_and_effect():
    ratio, rho = 3.0, 0.3
    detectable = [cell_detectable(ratio, rho, n) for n in (3, 5, 10, 20)]
    assert all(a > b for a, b in zip(detectable, detectable[1:]))
    assert cell_power(detectable[2], ratio, rho, 10) == pytest.approx(0.8, abs=1e-6)
    needed = [seeds_needed(e, ratio, rho) for e in (0.2, 0.4, 0.8)]
    assert needed[0] > needed[1] > needed[2] >= 2
    noise = PilotNoise.from_z(10.0, 10, 0.3, 0.5)
    small = plan_power(noise, 6, 4, simulations=30)
    large = plan_power(noise, 6, 16, simulations=30)
    assert large.diagnostic_detectable["rfd"] < small.diagnostic_detectable["rfd"]
    assert large.cell_detectable["median target"] < small.cell_detectable["median target"]
    assert small.diagnostic_detectable["prop_positive"] is None  # no calibrated interval


def test_power_estimates_the_noise_model_from_pilot_runs():
    truth = make_truth("structured", 8)
    arrays = arrays_of(truth, 40, 1, NoiseModel(rho=0.3, rho_pair=0.5, z_self=20.0))
    noise = estimate_noise(arrays)
    assert noise.rho == pytest.approx(0.3, abs=0.12)
    assert noise.rho_pair == pytest.approx(0.5, abs=0.2)
    assert noise.median_ratio == pytest.approx(20.0 / math.sqrt(20), rel=0.25)


def test_cli_power_reads_a_pilot_grid(tmp_path, capsys):
    grid = write_simulated_grid(tmp_path / "pilot", make_truth("structured", 4), 5)
    assert (
        main(
            [
                "power",
                str(grid),
                "--languages",
                "8",
                "--seeds",
                "6",
                "--effect",
                "0.5",
                "--simulations",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "smallest |M[t,s]| detectable" in out and "seeds needed" in out
    assert main(["power", "--languages", "6", "--seeds", "5", "--simulations", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_seeds"] == 5


def test_cli_power_reads_a_pilot_of_several_data_draws(tmp_path, capsys):
    # Once: "the records hold several data draws ... analyse them with analyze_uncertainty",
    # a Python function, with no way to pick a draw from the command line.
    truth = make_truth("structured", 4)
    grid = write_simulated_grid(tmp_path / "pilot", truth, 5, n_draws=3)
    args = ["power", str(grid), "--languages", "6", "--seeds", "5", "--simulations", "3", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "data draws [0, 1, 2]: seed noise from draw 0" in captured.err
    assert json.loads(captured.out)["noise"]["source"].startswith("pilot: 4 languages, 5 seeds")
    assert main([*args, "--draw", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["n_seeds"] == 5
    assert main([*args, "--draw", "7"]) == 2
    assert "--draw 7: the pilot holds data draws [0, 1, 2]" in capsys.readouterr().err


def test_cli_power_with_too_few_simulations_says_so(capsys):
    # With 2 simulated grids every diagnostic once read "n/a (no calibrated interval)".
    assert main(["power", "--languages", "6", "--seeds", "5", "--simulations", "2"]) == 0
    out = capsys.readouterr().out
    assert "rfd: n/a (fewer than 3 simulated grids gave it; raise --simulations)" in out
    assert "no calibrated interval" not in out
