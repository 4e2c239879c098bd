"""The completion's neighbour term: close partners transfer alike (issue 19)."""

import json

import numpy as np
import pandas as pd
import pytest

import cltm_sb.analysis.completion as completion
from cltm_sb.analysis.completion import PREDICTED, complete_matrix, neighbour_term
from cltm_sb.cli import main

from helpers import measured_pairs, points_on_a_line

CODES = [f"q{i:02d}" for i in range(24)]


def test_a_cells_own_value_never_enters_its_term():
    rng = np.random.default_rng(3)
    n = 12
    observed = measured_pairs(n, 0.5) & ~np.eye(n, dtype=bool)
    y = np.where(observed, rng.normal(size=(n, n)), 0.0)
    resid = np.where(observed, rng.normal(size=(n, n)), 0.0)
    term = neighbour_term(y, resid, observed, 0.2)
    t, s = np.argwhere(observed)[0]
    changed = resid.copy()
    changed[t, s] += 10.0
    changed[s, t] -= 10.0  # nor its mirror's: in cross-validation both leave together
    assert neighbour_term(y, changed, observed, 0.2)[t, s] == pytest.approx(term[t, s])


def test_a_close_partners_residual_carries_over():
    # Languages 0 and 1 are close (their pair measured high both ways); 1's cell with donor 2 is
    # above the model by 1, so the unmeasured cell (0, 2) is predicted above the model too.
    n = 6
    observed = np.zeros((n, n), dtype=bool)
    for i, j in [(0, 1), (1, 2), (3, 4), (4, 5), (0, 5), (2, 3)]:
        observed[i, j] = observed[j, i] = True
    y = np.where(observed, -1.0, 0.0)
    y[0, 1] = y[1, 0] = 3.0
    resid = np.zeros((n, n))
    resid[1, 2] = 1.0
    term = neighbour_term(y, resid, observed, 0.2)
    assert term[0, 2] > 0.5
    assert abs(term[3, 5]) < 1e-9  # no partner of 3 or 5 has a residual there


def test_no_pair_measured_both_ways_gives_no_term():
    n = 5
    observed = np.zeros((n, n), dtype=bool)
    observed[0, 1] = observed[2, 3] = True
    y = np.where(observed, 1.0, 0.0)
    assert np.all(neighbour_term(y, y, observed, 0.2) == 0.0)


def test_cross_validation_adds_the_term_where_transfer_follows_closeness(monkeypatch):
    truth = points_on_a_line()[1]
    off = ~np.eye(len(CODES), dtype=bool)
    partial = np.where(measured_pairs(len(CODES), 0.4), truth, np.nan)
    with_term = complete_matrix(partial, locales=CODES)
    monkeypatch.setattr(completion, "NEIGHBOUR_PRIORS", ())
    without = complete_matrix(partial, locales=CODES)
    predicted = with_term.sources == PREDICTED

    def rmse(c):
        return np.sqrt(np.mean((c.matrix - truth)[predicted] ** 2)) / np.std(truth[off])

    assert with_term.config.neighbour_prior is not None
    assert without.config.neighbour_prior is None
    assert rmse(with_term) < rmse(without) - 0.03  # 0.44 vs 0.48


def test_cross_validation_leaves_the_term_out_of_independent_noise():
    rng = np.random.default_rng(5)
    truth = 1.0 + 0.3 * rng.normal(size=(len(CODES), len(CODES)))
    np.fill_diagonal(truth, 1.0)
    partial = np.where(measured_pairs(len(CODES), 0.3), truth, np.nan)
    assert complete_matrix(partial, locales=CODES).config.neighbour_prior is None


def test_cli_complete_names_the_neighbour_term(tmp_path, capsys):
    partial = np.where(measured_pairs(len(CODES), 0.4), points_on_a_line()[1], np.nan)
    matrix_csv = tmp_path / "partial.csv"
    pd.DataFrame(partial, index=CODES, columns=CODES).to_csv(matrix_csv)
    families = tmp_path / "families.csv"  # one family each: the term, not the blocks, finds the close ones
    families.write_text("code,name,family\n" + "".join(f"{c},{c},F{i}\n" for i, c in enumerate(CODES)))
    out = tmp_path / "completed"
    assert main(["complete", str(matrix_csv), "--families", str(families), "-o", str(out)]) == 0
    assert "a neighbour term" in capsys.readouterr().out
    model = json.loads((out / "intervals.json").read_text())["completion"]["model"]
    assert model["neighbour_term"] is True
