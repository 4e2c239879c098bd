"""A budgeted CLTM (issue 19): designs, completion, and ``cltm design`` / ``cltm complete``."""

import csv
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from cltm_sb.analysis.completion import (
    MEASURED,
    PREDICTED,
    UNDEFINED,
    complete_matrix,
    complete_source,
    completed_diagnostics,
    conformal_quantile,
    read_partial_matrix,
    write_completion,
)
from cltm_sb.analysis.designs import (
    design_pairs,
    n_units,
    next_pairs,
    plan_pairs,
    read_pairs_csv,
    write_pairs_csv,
)
from cltm_sb.analysis.simulate import NoiseModel, simulate_grid, structured_truth
from cltm_sb.analysis.uncertainty import SeedArrays, point_estimate
from cltm_sb.cli import main
from cltm_sb.grid.plan import plan_runs

CODES16 = [f"q{i:02d}" for i in range(16)]
FAMILIES16 = [f"F{i // 4}" for i in range(16)]


def pair_mask(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros((n, n), dtype=bool)
    for a, b in pairs:
        mask[a, b] = mask[b, a] = True
    return mask


def additive_low_rank(n: int, seed: int = 0) -> np.ndarray:
    """M = 0.5 + a_t + b_s + u_t·v_s (rank 1), diagonal 1: the model's own class, no noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 0.5, n), rng.normal(0, 0.5, n)
    u, v = rng.normal(0, 1, n), rng.normal(0, 1, n)
    m = 0.5 + a[:, None] + b[None, :] + np.outer(u, v)
    np.fill_diagonal(m, 1.0)
    return m


# --------------------------------------------------------------------------------------------
# Completion


def test_completion_recovers_an_exactly_additive_low_rank_matrix():
    n = 20
    truth = additive_low_rank(n)
    rng = np.random.default_rng(1)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    keep = [pairs[k] for k in rng.permutation(len(pairs))[: len(pairs) // 2]]
    measured = pair_mask(n, keep) | np.eye(n, dtype=bool)
    partial = np.where(measured, truth, np.nan)
    result = complete_matrix(partial)
    predicted = result.sources == PREDICTED
    assert predicted.sum() == n * (n - 1) - 2 * len(keep)
    off = ~np.eye(n, dtype=bool)
    rmse = np.sqrt(np.mean((result.matrix - truth)[predicted] ** 2))
    assert rmse < 0.1 * np.std(truth[off])
    # measured cells are kept exactly, and the intervals of predicted cells cover the truth
    assert np.array_equal(result.matrix[measured], truth[measured])
    covered = (result.lower <= truth) & (truth <= result.upper)
    assert covered[predicted].mean() >= 0.9


def test_undefined_rows_stay_undefined():
    n = 10
    truth = additive_low_rank(n, seed=2)
    partial = np.where(pair_mask(n, [(i, (i + k) % n) for i in range(n) for k in (1, 2, 3)]), truth, np.nan)
    np.fill_diagonal(partial, 1.0)
    partial[3, :] = np.nan  # self-gain not positive: the whole row, diagonal included
    result = complete_matrix(partial)
    assert all(s == UNDEFINED for s in result.sources[3])
    assert np.isnan(result.matrix[3]).all()
    assert np.isnan(result.lower[3]).all() and np.isnan(result.upper[3]).all()
    assert not result.rows[3] and result.rows.sum() == n - 1
    # the language still donates to the other rows: its column is completed
    assert np.isfinite(np.delete(result.matrix[:, 3], 3)).all()
    # and an explicit valid_rows (the grid's self-gain rule) wins over the diagonal
    partial[5, 5] = 1.0
    rows = np.ones(n, dtype=bool)
    rows[5] = False
    result = complete_matrix(partial, valid_rows=rows)
    assert (result.sources[5] == UNDEFINED).all()


def test_measured_intervals_come_from_the_supplied_se():
    n = 8
    truth = additive_low_rank(n, seed=3)
    mask = pair_mask(n, [(i, (i + k) % n) for i in range(n) for k in (1, 2, 3)]) | np.eye(n, dtype=bool)
    se = np.full((n, n), 0.1)
    result = complete_matrix(np.where(mask, truth, np.nan), se=se)
    measured = (result.sources == MEASURED) & ~np.eye(n, dtype=bool)
    assert np.allclose((result.upper - result.matrix)[measured], 1.959964 * 0.1, atol=1e-5)
    assert "supplied SE" in result.measured_interval_note


def test_too_little_data_is_refused():
    partial = np.full((4, 4), np.nan)
    np.fill_diagonal(partial, 1.0)
    partial[0, 1] = 0.5
    with pytest.raises(ValueError, match="measure more pairs"):
        complete_matrix(partial)


def test_conformal_quantile():
    scores = np.arange(1, 20, dtype=float)  # 19 scores: the 19th is the 95% conformal quantile
    assert conformal_quantile(scores, 0.95) == 19.0
    assert math.isinf(conformal_quantile(scores[:10], 0.95))


def test_completed_diagnostics_follow_the_intervals_schema():
    n = 12
    truth = additive_low_rank(n, seed=4)
    mask = pair_mask(n, [(i, (i + k) % n) for i in range(n) for k in (1, 2, 4)]) | np.eye(n, dtype=bool)
    families = [f"F{i // 3}" for i in range(n)]
    result = complete_matrix(np.where(mask, truth, np.nan), families=families)
    diags = completed_diagnostics(result, families, n_draws=50)
    assert set(diags) == {"rfd", "asymmetry", "row_cosine", "prop_positive", "reciprocity_positive",
                          "intra_family_positive"}
    for entry in diags.values():
        assert set(entry) == {"point", "lower", "upper", "plugin", "method", "reason"}
        # without an audit sample none is calibrated (bench/RESULTS.md): no interval, and it says why
        assert entry["lower"] is None and ("not calibrated" in entry["reason"] or "no audit" in entry["reason"])
    with_intervals = completed_diagnostics(result, families, n_draws=50, intervals=["rfd"])
    assert with_intervals["rfd"]["lower"] <= with_intervals["rfd"]["point"] <= with_intervals["rfd"]["upper"]


def test_read_partial_matrix_names_the_bad_cell(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(",a,b\na,1,x\nb,,1\n")
    with pytest.raises(ValueError, match=r"row 'a', column 'b'"):
        read_partial_matrix(path)
    path.write_text(",a,b\na,1,0.5\nc,,1\n")
    with pytest.raises(ValueError, match="same languages"):
        read_partial_matrix(path)
    path.write_text(",a,b\na,1,0.5\nb,,1\n")
    frame = read_partial_matrix(path)
    assert np.isnan(frame.loc["b", "a"]) and frame.loc["a", "b"] == 0.5


# --------------------------------------------------------------------------------------------
# Designs


@pytest.mark.parametrize("ordered", [False, True])
def test_designs_are_nested_and_sized(ordered):
    small = design_pairs(CODES16, 0.3, FAMILIES16, seed=7, ordered=ordered)
    large = design_pairs(CODES16, 0.5, FAMILIES16, seed=7, ordered=ordered)
    total = 16 * 15 // (1 if ordered else 2)
    assert len(small) == math.ceil(0.3 * total) == n_units(16, 0.3, ordered)
    assert len(large) == math.ceil(0.5 * total)
    assert large[: len(small)] == small  # the same runs first: finished runs are kept
    assert len(set(large)) == len(large)
    if not ordered:
        assert len({frozenset(p) for p in large}) == len(large)
    assert design_pairs(CODES16, 0.3, FAMILIES16, seed=8, ordered=ordered) != small


@pytest.mark.parametrize("n,budget", [(16, 0.2), (44, 0.2), (44, 0.3), (7, 0.5)])
def test_every_language_is_covered_evenly(n, budget):
    codes = [f"q{i:02d}" for i in range(n)]
    families = [f"F{i // 3}" for i in range(n)]
    pairs = design_pairs(codes, budget, families, seed=1)
    degree = {c: 0 for c in codes}
    for a, b in pairs:
        degree[a] += 1
        degree[b] += 1
    expected = 2 * len(pairs) / n
    assert min(degree.values()) >= math.floor(expected) - 1 >= 1
    assert max(degree.values()) - min(degree.values()) <= 2


def test_design_includes_within_family_pairs_without_crowding_out_the_rest():
    families = [f"F{i // 3}" for i in range(15)]  # 5 families of 3: 15 within-family pairs
    codes = [f"q{i:02d}" for i in range(15)]
    pairs = design_pairs(codes, 0.3, families, seed=0)
    fam = dict(zip(codes, families))
    within = sum(fam[a] == fam[b] for a, b in pairs)
    assert within >= 12  # most within-family pairs (random: ~30% of 15)
    assert within <= len(pairs) / 2  # but every row keeps cells across families


def test_active_design_ranks_unmeasured_pairs():
    n = 12
    truth = additive_low_rank(n, seed=5)
    mask = pair_mask(n, [(i, (i + k) % n) for i in range(n) for k in (1, 2, 3)]) | np.eye(n, dtype=bool)
    result = complete_matrix(np.where(mask, truth, np.nan), locales=[f"q{i:02d}" for i in range(n)])
    chosen = next_pairs(result, 5)
    assert len(chosen) == 5 and len({frozenset(p) for p in chosen}) == 5
    index = {c: i for i, c in enumerate(result.locales)}
    assert all(not mask[index[a], index[b]] for a, b in chosen)
    cells = next_pairs(result, 4, ordered=True)
    assert all(result.sources[index[t], index[s]] == PREDICTED for t, s in cells)


def test_pairs_csv_round_trip_and_plan(tmp_path):
    pairs = design_pairs(CODES16[:6], 0.4, seed=0)
    path = write_pairs_csv(pairs, tmp_path / "pairs.csv")
    assert path.read_text().splitlines()[0] == "lang1,lang2"
    assert read_pairs_csv(path) == (pairs, False)
    runs = plan_runs("gr", CODES16[:6], [42, 43], "hash", pairs=pairs)
    kinds = [r.kind for r in runs]
    assert kinds.count("pair") == 2 * len(pairs) and kinds.count("single") == 12
    assert all(len(r.eval_locales) == 2 for r in runs if r.kind == "pair")
    # one run per cell: a pairs file plans both cells of each pair; a cells file, its cells
    both = plan_pairs(CODES16[:6], True, pairs_csv=path)
    assert len(both) == 2 * len(pairs)
    cells = write_pairs_csv(design_pairs(CODES16[:6], 0.4, ordered=True), tmp_path / "cells.csv", ordered=True)
    assert cells.read_text().splitlines()[0] == "target,donor"
    per_cell = plan_runs("gr", CODES16[:6], [42], "hash", one_run_per_cell=True,
                         pairs=plan_pairs(CODES16[:6], True, pairs_csv=cells))
    assert sum(r.kind == "pair" for r in per_cell) == math.ceil(0.4 * 30)
    with pytest.raises(ValueError, match="not both"):
        plan_pairs(CODES16[:6], False, pairs_csv=path, budget=0.3)


def test_bad_pairs_csv_is_named(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("a,b\nq00,q01\n")
    with pytest.raises(ValueError, match="expected 'lang1,lang2'"):
        read_pairs_csv(path)
    path.write_text("lang1,lang2\nq00,q00\n")
    with pytest.raises(ValueError, match="line 2"):
        read_pairs_csv(path)
    with pytest.raises(Exception, match="not among --locales"):
        plan_runs("gr", ["q00", "q01"], [42], "hash", pairs=[("q00", "zz")])


def test_a_pairs_file_with_other_languages_than_the_plan_is_named(tmp_path):
    # The plan's error named the pair but not the file (with several --pairs, which one?).
    path = tmp_path / "other.csv"
    path.write_text("lang1,lang2\nq00,q01\nq00,zz\n")
    with pytest.raises(ValueError, match=r"other.csv: language\(s\) zz \(e.g. pair q00,zz\) are not among --locales"):
        plan_pairs(["q00", "q01"], False, pairs_csv=path)


# --------------------------------------------------------------------------------------------
# The commands


def _partial_csv(tmp_path, n=12):
    truth = structured_truth(n, seed=1)
    grid = simulate_grid(truth, 10, NoiseModel(), seed=3)
    arrays = SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)
    full = point_estimate(arrays).matrix
    pairs = design_pairs(truth.locales, 0.4, truth.families, seed=0)
    index = {c: i for i, c in enumerate(truth.locales)}
    keep = np.eye(n, dtype=bool) | pair_mask(n, [(index[a], index[b]) for a, b in pairs])
    frame = pd.DataFrame(np.where(keep, full, np.nan), index=truth.locales, columns=truth.locales)
    frame.loc[truth.locales[2]] = np.nan  # an undefined row
    path = tmp_path / "partial.csv"
    frame.to_csv(path, na_rep="")
    fams = tmp_path / "families.csv"
    fams.write_text("code,name,family\n" + "".join(f"{c},{c},{f}\n" for c, f in zip(truth.locales, truth.families)))
    return path, fams, truth


def test_complete_says_when_predictive_intervals_are_unbounded(tmp_path, capsys):
    """Too few measured pairs for a conformal quantile: the predicted cells' intervals are
    unbounded, and `cltm complete` says so and what to do."""
    path, fams, _ = _partial_csv(tmp_path, n=6)
    assert main(["complete", str(path), "--families", str(fams), "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    upper = read_partial_matrix(tmp_path / "out" / "upper.csv").to_numpy()
    sources = pd.read_csv(tmp_path / "out" / "sources.csv", index_col=0).to_numpy()
    n_predicted = int((sources == PREDICTED).sum())
    assert n_predicted and np.isnan(upper[sources == PREDICTED]).all()
    assert (f"note: {n_predicted} of {n_predicted} predicted cells have unbounded 95% intervals: too few "
            "measured cells to hold out") in printed
    # ... and not when there are enough (12 languages at F = 0.4).
    more = tmp_path / "more"
    more.mkdir()
    path, fams, _ = _partial_csv(more, n=12)
    assert main(["complete", str(path), "--families", str(fams), "-o", str(tmp_path / "out12")]) == 0
    assert "unbounded" not in capsys.readouterr().out
    # ... but a 99% conformal quantile needs 99 held-out cells
    assert main(["complete", str(path), "--families", str(fams), "--level", "0.99", "-o", str(tmp_path / "o99")]) == 0
    assert "cells have unbounded 99% intervals: too few measured cells to hold out for a conformal quantile (99 at " \
        "this level)" in capsys.readouterr().out


def test_cli_design_complete_round_trip(tmp_path, capsys):
    path, fams, truth = _partial_csv(tmp_path)
    out = tmp_path / "completed"
    assert main(["complete", str(path), "--families", str(fams), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predicted" in printed and "RFD" in printed
    # Without an audit no completed diagnostic has an interval: the command says so, once, and how to get them.
    assert printed.count("no interval: the design has no audit sample; `cltm design --audit` gives") == 1
    for name in ("completed.csv", "lower.csv", "upper.csv", "sources.csv", "donors.csv", "intervals.json"):
        assert (out / name).is_file()
    assert not (out / "diagnostics.json").exists()
    sources = pd.read_csv(out / "sources.csv", index_col=0)
    assert set(sources.loc[truth.locales[2]]) == {UNDEFINED}
    assert {MEASURED, PREDICTED} <= set(sources.to_numpy().ravel())
    completed = read_partial_matrix(out / "completed.csv")
    defined = [c for c in truth.locales if c != truth.locales[2]]
    assert np.isfinite(completed.loc[defined].to_numpy()).all()
    intervals = json.loads((out / "intervals.json").read_text())
    assert {"level", "variability", "variability_note", "diagnostics", "tests"} <= set(intervals)
    assert intervals["completion"]["cells"]["undefined"] == len(truth.locales) - 1

    pairs_csv = tmp_path / "pairs.csv"
    codes = ",".join(truth.locales)
    assert main(["design", "--locales", codes, "--budget", "0.3", "--families", str(fams),
                 "-o", str(pairs_csv)]) == 0
    rows = list(csv.reader(pairs_csv.open()))
    assert rows[0] == ["lang1", "lang2"] and len(rows) - 1 == math.ceil(0.3 * 66)
    nxt = tmp_path / "next.csv"
    assert main(["design", "--next", "4", "--observed", str(path), "--families", str(fams),
                 "-o", str(nxt)]) == 0
    assert len(list(csv.reader(nxt.open()))) == 5
    # --next pairs are not a random sample: the user is told what they cost the diagnostics
    assert "help the donor choice but move the completed Table-1 diagnostics" in capsys.readouterr().out
    cells = tmp_path / "cells.csv"
    assert main(["design", "--locales", codes, "--budget", "0.3", "--families", str(fams),
                 "--one-run-per-cell", "-o", str(cells)]) == 0
    assert cells.read_text().splitlines()[0] == "target,donor"


def test_cli_complete_from_a_simulated_grid(tmp_path, capsys):
    grid = tmp_path / "grid"
    assert main(["simulate", "-o", str(grid), "--languages", "9", "--seed", "2"]) == 0
    # keep the single and self runs and a third of the pairs
    codes = [f"q{i:02d}" for i in range(9)]
    keep = {frozenset(p) for p in design_pairs(codes, 0.34, seed=0)}
    for record in (grid / "records").glob("pair-*.json"):
        a, b = record.name.split("-")[1].split("+")
        if frozenset((a, b)) not in keep:
            record.unlink()
    out = tmp_path / "out"
    # A grid's cells take their intervals from its seeds: an SE file would be silently unused.
    assert main(["complete", str(grid), "--se", str(grid / "truth.csv"), "-o", str(out)]) == 2
    assert "--se goes with a partial matrix CSV" in capsys.readouterr().err
    assert main(["complete", str(grid), "-o", str(out)]) == 0  # the grid's own families.csv
    assert (out / "families.csv").read_text() == (grid / "families.csv").read_text()
    intervals = json.loads((out / "intervals.json").read_text())
    assert intervals["n_seeds"] == 10
    assert intervals["completion"]["cells"]["measured"] == 2 * len(keep)
    assert "Fieller" in intervals["cells"]["method"]


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["design", "--budget", "0.3", "-o", str(tmp_path / "p.csv")]) == 2
    assert "--locales" in capsys.readouterr().err
    assert main(["design", "--locales", "en,es", "--budget", "1.5", "-o", str(tmp_path / "p.csv")]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["complete", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["complete", str(tmp_path / "no_grid"), "-o", str(tmp_path / "o")]) == 2
    assert "no_grid: not found; give a grid folder or a partial matrix CSV" in capsys.readouterr().err
    assert main(["design", "--next", "2", "--observed", str(tmp_path / "no_grid"), "-o", str(tmp_path / "p.csv")]) == 2
    assert "no_grid: not found; give a grid folder or a partial matrix CSV" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.csv").exists()


def test_cli_plan_with_pairs_and_budget_prints_both_costs(tmp_path, capsys):
    from grid_fakes import make_prepared

    locales = ["de", "en", "es", "fr", "it", "pl"]
    data = make_prepared(tmp_path / "prep", locales)
    pairs_csv = tmp_path / "pairs.csv"
    assert main(["design", "--locales", ",".join(locales), "--budget", "0.4", "-o", str(pairs_csv)]) == 0
    capsys.readouterr()
    common = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(locales), "--seeds", "42-43",
              "--runner", "grid_fakes:run_fake", "--time-per-run", "10"]
    assert main(common + ["-o", str(tmp_path / "p"), "--pairs", str(pairs_csv)]) == 0
    out = capsys.readouterr().out
    # 6 single + 6 self + ceil(0.4 * 15) = 6 pairs per seed, 2 seeds; the full grid: 27 per seed
    assert "budgeted grid: 36 trainings, the full grid 54 (67% of it)" in out
    assert "the full grid:" in out.split("estimated time")[1]
    assert main(common + ["-o", str(tmp_path / "q"), "--budget", "0.4"]) == 0
    assert "budgeted grid: 36 trainings" in capsys.readouterr().out
    assert main(common + ["-o", str(tmp_path / "r"), "--budget", "0.4", "--one-run-per-cell"]) == 0
    # 12 + ceil(0.4 * 30) = 24 per seed against 42
    assert "budgeted grid: 48 trainings, the full grid 84" in capsys.readouterr().out


def test_plan_grows_with_a_next_round_and_keeps_its_runs(tmp_path, capsys):
    from grid_fakes import make_prepared

    from cltm_sb.grid.plan import load_plan

    locales = ["de", "en", "es", "fr", "it", "pl"]
    data = make_prepared(tmp_path / "prep", locales)
    first = write_pairs_csv(design_pairs(locales, 0.3), tmp_path / "pairs.csv")
    taken = {frozenset(p) for p in design_pairs(locales, 0.3)}
    extra = [p for p in design_pairs(locales, 1.0) if frozenset(p) not in taken][:2]
    more = write_pairs_csv(extra, tmp_path / "more.csv")
    common = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(locales), "--seeds", "42",
              "--runner", "grid_fakes:run_fake", "-o", str(tmp_path / "p")]
    assert main(common + ["--pairs", str(first)]) == 0
    before = {r.run_id for r in load_plan(tmp_path / "p").runs}
    assert main(common + ["--pairs", str(first), "--pairs", str(more)]) == 0
    after = {r.run_id for r in load_plan(tmp_path / "p").runs}
    assert before < after and len(after - before) == 2


def test_report_of_a_completed_matrix_outlines_predicted_cells_and_states_the_budget(tmp_path, capsys):
    from cltm_sb.analysis.completion import read_sources
    from cltm_sb.languages import load_registry
    from cltm_sb.report.figures import draw_heatmap

    path, fams, truth = _partial_csv(tmp_path)
    out = tmp_path / "completed"
    assert main(["complete", str(path), "--families", str(fams), "-o", str(out)]) == 0
    report = tmp_path / "report"
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(out / "sources.csv"),
                 "--families", str(fams), "-o", str(report)]) == 0
    sources = read_sources(out / "sources.csv")
    off = ~np.eye(len(sources), dtype=bool)
    n_measured = int(((sources.to_numpy() == MEASURED) & off).sum())
    n_predicted = int(((sources.to_numpy() == PREDICTED) & off).sum())
    text = (report / "report.md").read_text()
    assert f"{n_measured} of {n_measured + n_predicted} defined off-diagonal cells were measured" in text
    donors = pd.read_csv(report / "donors.csv")
    for row in donors.itertuples():
        assert row.source == sources.loc[row.target, row.donor]
    # Donors are ranked as `cltm complete` ranked them: by P(best), from its donors.csv.
    completion_donors = pd.read_csv(out / "donors.csv")
    assert set(completion_donors["target"]) == set(truth.locales) - {truth.locales[2]}  # row 2: undefined
    for target, ranking in donors[donors["target"].isin(completion_donors["target"])].groupby("target"):
        theirs = completion_donors[completion_donors["target"] == target]
        assert list(ranking.sort_values("rank")["donor"]) == list(theirs.sort_values("rank")["donor"])
        assert list(ranking["in_best_set"]) == list(
            theirs.set_index("donor").loc[list(ranking["donor"]), "in_best_set"]
        )
    assert "Donors ranked by P(best)" in text and "P(best)" in text
    # The cell intervals are the completion's (measurement intervals for measured cells, here none
    # without --se; predictive intervals for predicted ones), in the tables, donors.csv and intervals.json.
    theirs = completion_donors.set_index(["target", "donor"])
    mine = donors.set_index(["target", "donor"]).loc[theirs.index]
    assert np.allclose(mine[["lower", "upper"]], theirs[["lower", "upper"]], equal_nan=True)
    predicted = theirs[(theirs["source"] == PREDICTED) & np.isfinite(theirs["lower"])]
    assert len(predicted) and (theirs.loc[theirs["source"] == MEASURED, "lower"].isna()).all()
    (target, donor), row = next(iter(predicted.iterrows()))
    assert f"| {row['value']:.3f} | n/a | [{row['lower']:.3f}, {row['upper']:.3f}] | predicted |" in text
    assert "Cell intervals: 95%, from `cltm complete`: measured cells: no standard errors given" in text
    assert "no SE supplied" not in text
    cells = json.loads((report / "intervals.json").read_text())["cells"]
    assert cells["method"].startswith("from `cltm complete`: measured cells:")
    # `cltm complete` copied the families it used beside sources.csv: the report finds them there.
    assert (out / "families.csv").read_text() == fams.read_text()
    again = tmp_path / "report_again"
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(out / "sources.csv"),
                 "-o", str(again)]) == 0
    assert (again / "report.md").read_text() == text
    # The heatmap outlines exactly the predicted cells.
    registry = load_registry(fams)
    matrix = read_partial_matrix(out / "completed.csv")
    figure = draw_heatmap(matrix, registry, predicted=sources == PREDICTED)
    (outlines,) = [c for c in figure.axes[0].collections if c.get_label() == "predicted"]
    assert len(outlines.get_paths()) == n_predicted
    # A sources file that is not one names its row; --sources needs --matrix.
    bad = tmp_path / "bad_sources.csv"
    bad.write_text(",a,b\na,measured,guessed\nb,measured,measured\n")
    with pytest.raises(ValueError, match=r"row a: cells \['guessed'\]"):
        read_sources(bad)
    assert main(["report", str(tmp_path), "--sources", str(out / "sources.csv"), "-o", str(report)]) != 0
    assert "go with --matrix" in capsys.readouterr().err


def test_completion_ranks_donors_by_the_probability_of_being_best(tmp_path):
    from cltm_sb.analysis.completion import best_donor_probabilities, donor_ranking, donor_table

    n = 12
    truth = additive_low_rank(n, seed=4)
    measured = pair_mask(n, [(i, (i + k) % n) for i in range(n) for k in (1, 2, 3)]) | np.eye(n, dtype=bool)
    partial = np.where(measured, truth, np.nan)
    partial[5, :] = np.nan  # an undefined row: no ranking
    completion = complete_matrix(partial, se=np.full((n, n), 0.05))
    p_best = best_donor_probabilities(completion, n_draws=300, seed=1)
    defined = completion.rows
    assert np.allclose(np.nansum(p_best[defined], axis=1), 1.0)
    assert np.isnan(p_best[5]).all() and np.isnan(np.diag(p_best)).all()
    assert np.array_equal(p_best, best_donor_probabilities(completion, n_draws=300, seed=1), equal_nan=True)
    donors = donor_table(completion, p_best)
    assert set(donors["target"]) == {f"L{i}" for i in range(n) if i != 5}
    first = donors[donors["target"] == "L0"]
    assert list(first["rank"]) == list(range(1, n))
    assert (np.diff(first["p_best"].to_numpy()) <= 1e-12).all()
    # the best set holds at least 95% of the probability, and is the smallest such prefix
    in_set = first[first["in_best_set"]]
    assert in_set["p_best"].sum() >= 0.95 - 1e-9
    assert in_set["p_best"].sum() - in_set["p_best"].iloc[-1] < 0.95
    assert set(donors["source"]) <= {MEASURED, PREDICTED}
    # donors that won as many draws (here none) follow by value, as donor_ranking orders them
    tied = first[first["p_best"] == 0]
    assert len(tied) >= 2 and (np.diff(tied["value"].to_numpy()) <= 1e-12).all()
    assert list(first["donor"]) == [f"L{s}" for s in donor_ranking(completion, p_best)[0]]
    assert donor_ranking(completion, p_best)[5] == []


def test_report_of_a_completed_matrix_gives_the_completions_estimates_and_intervals(tmp_path, capsys):
    """Table 1 of a budgeted CLTM's report is what `cltm complete` printed (its audit intervals
    included), not the plug-in on the completed matrix, which it shows beside them."""
    from cltm_sb.analysis.completion_audit import AUDIT_INTERVALS
    from cltm_sb.analysis.designs import audit_design, write_pairs_csv
    from cltm_sb.analysis.simulate import structured_truth

    truth = structured_truth(30, seed=1)
    fams = tmp_path / "families.csv"
    pd.DataFrame({"code": truth.locales, "name": truth.locales, "family": truth.families}).to_csv(fams, index=False)
    core, audit = audit_design(truth.locales, 0.5, truth.families, seed=1, audit=0.5)
    design = write_pairs_csv(core + audit, tmp_path / "pairs.csv", audit=audit)
    index = {c: i for i, c in enumerate(truth.locales)}
    rng = np.random.default_rng(1)
    observed = np.full(truth.matrix.shape, np.nan)
    for a, b in core + audit:
        for t, s in ((index[a], index[b]), (index[b], index[a])):
            observed[t, s] = truth.matrix[t, s] + rng.normal(0, 0.05)
    np.fill_diagonal(observed, 1.0)
    pd.DataFrame(observed, index=truth.locales, columns=truth.locales).to_csv(tmp_path / "partial.csv")
    pd.DataFrame(0.05, index=truth.locales, columns=truth.locales).to_csv(tmp_path / "se.csv")
    out, report = tmp_path / "completed", tmp_path / "report"
    assert main(["complete", str(tmp_path / "partial.csv"), "--se", str(tmp_path / "se.csv"), "--families",
                 str(fams), "--design", str(design), "-o", str(out)]) == 0
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(out / "sources.csv"),
                 "--families", str(fams), "-o", str(report)]) == 0
    theirs = json.loads((out / "intervals.json").read_text())["diagnostics"]
    ours = json.loads((report / "intervals.json").read_text())["diagnostics"]
    table1 = pd.read_csv(report / "table1.csv").set_index("diagnostic")
    text = (report / "report.md").read_text()
    assert "the completion's estimates" in text and "plug-in (completed matrix)" in text
    for name in AUDIT_INTERVALS:
        assert theirs[name]["lower"] is not None  # the audit of 109 pairs gives them all
        assert "the supplied SE, not calibrated by cltm" in theirs[name]["method"]
        for key in ("point", "lower", "upper", "method"):
            assert ours[name][key] == theirs[name][key]
        assert table1.loc[name, "estimate"] == pytest.approx(theirs[name]["point"], rel=1e-5)
        assert table1.loc[name, "lower"] == pytest.approx(theirs[name]["lower"], rel=1e-5)
    # the plug-in on the completed matrix is kept beside them, and differs from the estimate
    assert ours["rfd"]["plugin"] != pytest.approx(ours["rfd"]["point"], rel=1e-6)
    # The report never overwrites the completion's own files.
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(out / "sources.csv"),
                 "--families", str(fams), "-o", str(out)]) == 2
    assert "would overwrite the completion's donors.csv and intervals.json" in capsys.readouterr().err
    assert json.loads((out / "intervals.json").read_text())["diagnostics"] == theirs
    # A completion of another matrix is refused by name.
    other = tmp_path / "other"
    other.mkdir()
    (other / "sources.csv").write_text((out / "sources.csv").read_text())
    data = json.loads((out / "intervals.json").read_text())
    data["completion"]["cells"]["predicted"] += 1
    (other / "intervals.json").write_text(json.dumps(data))
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(other / "sources.csv"),
                 "--families", str(fams), "-o", str(report)]) == 2
    assert f"{other / 'intervals.json'}: written for a matrix with 871 off-diagonal cells" in capsys.readouterr().err
    (other / "intervals.json").write_text('{"completion": {')  # cut short
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(other / "sources.csv"),
                 "--families", str(fams), "-o", str(report)]) == 2
    assert "not readable as JSON" in capsys.readouterr().err
    # Another tool's intervals.json (no completion block) is not read: Table 1 is then the plug-in.
    (other / "intervals.json").write_text(json.dumps({"diagnostics": {}}))
    assert main(["report", "--matrix", str(out / "completed.csv"), "--sources", str(other / "sources.csv"),
                 "--families", str(fams), "-o", str(report)]) == 0
    assert "Diagnostics (paper Table 1, plug-in)" in (report / "report.md").read_text()


def test_complete_refuses_a_negative_se_naming_the_se_file_and_cell(tmp_path, capsys):
    path, fams, truth = _partial_csv(tmp_path, n=6)
    se = read_partial_matrix(path).abs() * 0 + 0.1
    target, donor = truth.locales[0], truth.locales[1]
    se.loc[target, donor] = -0.1
    se_path = tmp_path / "se.csv"
    se.to_csv(se_path, na_rep="")
    assert main(["complete", str(path), "--families", str(fams), "--se", str(se_path), "-o", str(tmp_path / "o")]) == 2
    assert f"se.csv: the standard error of row {target}, column {donor} is negative" in capsys.readouterr().err


def test_completing_again_into_a_folder_leaves_no_families_csv_of_the_first_run(tmp_path):
    # `cltm report --sources` reads the families.csv beside sources.csv: a stale one would be used.
    path, fams, _ = _partial_csv(tmp_path, n=6)
    out = tmp_path / "completed"
    run = complete_source(path, fams, n_draws=0)
    write_completion(run, out)
    assert (out / "families.csv").is_file()
    written = write_completion(dataclasses.replace(run, families_file=None), out)
    assert not (out / "families.csv").exists() and set(written) <= set(out.iterdir())


def test_complete_says_why_rows_are_undefined(tmp_path, capsys, caplog):
    # A CSV whose diagonal was left empty: not "measure more pairs", but which rows and why.
    path, fams, truth = _partial_csv(tmp_path)
    frame = read_partial_matrix(path)
    for code in frame.index:
        frame.loc[code, code] = np.nan
    frame.to_csv(path, na_rep="")
    assert main(["complete", str(path), "--families", str(fams), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "0 of 12 rows are defined" in err and "empty diagonal" in err and "write 1 on the diagonal" in err
    # One row without its diagonal: its measured cells are left out, and the user is told.
    path, fams, truth = _partial_csv(tmp_path)
    frame = read_partial_matrix(path)
    frame.iloc[0, 0] = np.nan
    frame.to_csv(path, na_rep="")
    assert main(["complete", str(path), "--families", str(fams), "-o", str(tmp_path / "o")]) == 0
    assert f"row {truth.locales[0]} is undefined" in caplog.text and "measured cells are left out" in caplog.text
    # A grid of one seed: every row is undefined by --min-seeds, and the error says so.
    grid = tmp_path / "grid"
    assert main(["simulate", "-o", str(grid), "--languages", "4", "--n-seeds", "2", "--seed", "2"]) == 0
    for record in (grid / "records").glob("*.json"):
        if json.loads(record.read_text())["seed"] != min(
            json.loads(r.read_text())["seed"] for r in (grid / "records").glob("*.json")
        ):
            record.unlink()
    capsys.readouterr()
    assert main(["complete", str(grid), "-o", str(tmp_path / "g")]) == 2
    assert "1 finished seed(s), fewer than min_seeds=2" in capsys.readouterr().err


def test_replanning_with_the_other_protocol_is_refused(tmp_path, capsys):
    # Toggling --one-run-per-cell gives the same cells new run ids: they would train again and the
    # grid would hold two records of each cell, which `cltm matrix`/`complete` refuse as duplicates.
    from grid_fakes import make_prepared

    locales = ["de", "en", "es"]
    data = make_prepared(tmp_path / "prep", locales)
    common = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(locales), "--seeds", "42",
              "--runner", "grid_fakes:run_fake", "-o", str(tmp_path / "p")]
    assert main(common + ["--one-run-per-cell"]) == 0
    before = (tmp_path / "p" / "plan.json").read_text()
    capsys.readouterr()
    assert main(common) == 2
    err = capsys.readouterr().err
    assert "was planned with one run per cell" in err and "pass --one-run-per-cell as before" in err
    assert (tmp_path / "p" / "plan.json").read_text() == before
    assert main(common + ["--one-run-per-cell"]) == 0  # the same protocol re-plans as before


def test_complete_refuses_a_diagonal_other_than_one(tmp_path, capsys):
    # A matrix of gains or scores is not a CLTM: its completion would be read as transfer.
    path, fams, truth = _partial_csv(tmp_path)
    frame = read_partial_matrix(path)
    frame.iloc[1, 1] = -1.0
    frame.to_csv(path, na_rep="")
    assert main(["complete", str(path), "--families", str(fams), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"row '{truth.locales[1]}' has -1 on the diagonal" in err and "--normalise" in err
    assert not (tmp_path / "o").exists()


def test_replanning_that_leaves_out_finished_runs_is_refused(tmp_path, capsys):
    # A design grows; a re-plan that drops finished pair runs would leave their records read as
    # measured while plan.json no longer lists them.
    from grid_fakes import make_prepared

    locales = ["de", "en", "es", "fr"]
    data = make_prepared(tmp_path / "prep", locales)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("lang1,lang2\nde,en\nes,fr\n")
    second.write_text("lang1,lang2\nde,es\n")
    common = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(locales), "--seeds", "42",
              "--runner", "grid_fakes:run_fake", "-o", str(tmp_path / "p")]
    assert main(common + ["--pairs", str(first)]) == 0
    assert main(["run", str(tmp_path / "p"), "--executor", "inprocess", "--no-progress"]) == 0
    before = (tmp_path / "p" / "plan.json").read_text()
    capsys.readouterr()
    assert main(common + ["--pairs", str(second)]) == 2
    err = capsys.readouterr().err
    assert "leaves out 2 finished run(s)" in err and "--pairs old.csv --pairs more.csv" in err
    assert (tmp_path / "p" / "plan.json").read_text() == before
    assert main(common + ["--pairs", str(first), "--pairs", str(second)]) == 0  # growing is fine
