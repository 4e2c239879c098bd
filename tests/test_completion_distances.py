"""Distances between languages as a covariate of the budgeted CLTM's completion (issue 19)."""

import json

import numpy as np
import pandas as pd
import pytest

from cltm_sb.analysis.completion import PREDICTED, complete_matrix
from cltm_sb.analysis.distances import hat_functions, read_distances, smooth_basis
from cltm_sb.cli import main

from helpers import measured_pairs, points_on_a_line

CODES = [f"q{i:02d}" for i in range(24)]


def test_hat_functions_interpolate_linearly_and_stay_flat_outside():
    knots = np.array([0.0, 1.0, 2.0, 4.0])
    x = np.array([-1.0, 0.5, 3.0, 9.0])
    weights = hat_functions(x, knots)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights @ knots, [0.0, 0.5, 3.0, 4.0])


def test_a_distance_covariate_predicts_what_effects_alone_cannot():
    dist, truth = points_on_a_line()
    measured = measured_pairs(len(CODES))
    partial = np.where(measured, truth, np.nan)
    off = ~np.eye(len(CODES), dtype=bool)
    without = complete_matrix(partial, locales=CODES)
    with_distance = complete_matrix(partial, locales=CODES, distances={"typology": dist})
    predicted = with_distance.sources == PREDICTED

    def rmse(c):
        return np.sqrt(np.mean((c.matrix - truth)[predicted] ** 2)) / np.std(truth[off])

    assert with_distance.config.distance_smooth is not None
    assert rmse(with_distance) < 0.15 < rmse(without)
    assert with_distance.extra["distances"] == ["typology"]


def test_a_useless_distance_is_left_out_by_cross_validation():
    rng = np.random.default_rng(3)
    n = len(CODES)
    truth = 0.5 + rng.normal(0, 0.5, n)[:, None] + rng.normal(0, 0.5, n)[None, :]
    np.fill_diagonal(truth, 1.0)
    noise = rng.uniform(0, 3, (n, n))
    partial = np.where(measured_pairs(n), truth, np.nan)
    result = complete_matrix(partial, locales=CODES, distances={"random": (noise + noise.T) / 2})
    assert result.config.distance_smooth is None


def write_long(path, dist, codes, extra=()):
    rows = [f"{codes[i]},{codes[j]},{dist[i, j]:.6f}" for i in range(len(codes)) for j in range(i + 1, len(codes))]
    path.write_text("lang1,lang2,typology\n" + "\n".join(list(rows) + list(extra)) + "\n")
    return path


def test_read_distances_long_and_square(tmp_path):
    dist, _ = points_on_a_line(5)
    codes = CODES[:5]
    long = read_distances(write_long(tmp_path / "d.csv", dist, codes, ["zz,q00,1.0"]), codes[::-1])
    assert list(long) == ["typology"]
    assert np.allclose(long["typology"], dist[::-1, ::-1], atol=1e-6)
    square = tmp_path / "sq.csv"
    pd.DataFrame(dist, index=codes, columns=codes).to_csv(square)
    assert np.allclose(read_distances(square, codes)["distance"], dist)


def test_bad_distance_files_are_named(tmp_path):
    dist, _ = points_on_a_line(4)
    codes = CODES[:4]
    path = write_long(tmp_path / "d.csv", dist, codes[:3])
    with pytest.raises(ValueError, match=r"d\.csv.*no distance for the pair q00,q03.*add a row"):
        read_distances(path, codes)
    bad = tmp_path / "bad.csv"
    bad.write_text("lang1,lang2,typology\nq00,q01,far\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2 \(q00,q01\), column 'typology': 'far' is not a number"):
        read_distances(bad, codes[:2])
    square = tmp_path / "sq.csv"
    skew = dist.copy()
    skew[0, 1] += 1
    pd.DataFrame(skew, index=codes, columns=codes).to_csv(square)
    with pytest.raises(ValueError, match="symmetric; q00->q01"):
        read_distances(square, codes)
    with pytest.raises(ValueError, match=r"no row/column for \['q09'\]"):
        read_distances(square, codes + ["q09"])


def test_smooth_basis_has_one_block_per_distance():
    dist, _ = points_on_a_line(6)
    observed = ~np.eye(6, dtype=bool)
    basis, penalty = smooth_basis({"a": dist, "b": 2 * dist}, observed, knots=4)
    assert basis.shape == (6, 6, 8) and penalty.shape == (8, 8)
    assert np.allclose(basis[..., :4].sum(axis=-1), 1.0)


def test_cli_complete_with_distances(tmp_path, capsys):
    dist, truth = points_on_a_line()
    partial = np.where(measured_pairs(len(CODES)), truth, np.nan)
    matrix_csv = tmp_path / "partial.csv"
    pd.DataFrame(partial, index=CODES, columns=CODES).to_csv(matrix_csv)
    distances = write_long(tmp_path / "typology.csv", dist, CODES)
    families = tmp_path / "families.csv"
    families.write_text("code,name,family\n" + "".join(f"{c},{c},F{i // 3}\n" for i, c in enumerate(CODES)))
    out = tmp_path / "completed"
    assert main(["complete", str(matrix_csv), "--distances", str(distances), "--families", str(families),
                 "-o", str(out)]) == 0
    assert "a smooth function of the distances" in capsys.readouterr().out
    model = json.loads((out / "intervals.json").read_text())["completion"]["model"]
    assert model["distances"] == ["typology"] and model["distance_term"] is True
    assert main(["design", "--next", "3", "--observed", str(matrix_csv), "--distances", str(distances),
                 "--families", str(families), "-o", str(tmp_path / "next.csv")]) == 0


def test_a_pair_given_twice_with_two_distances_is_named(tmp_path):
    dist, _ = points_on_a_line(3)
    codes = CODES[:3]
    same = write_long(tmp_path / "same.csv", dist, codes, extra=[f"{codes[1]},{codes[0]},{dist[0, 1]:.6f}"])
    assert read_distances(same, codes)["typology"][0, 1] == pytest.approx(dist[0, 1], abs=1e-6)
    other = write_long(tmp_path / "other.csv", dist, codes, extra=[f"{codes[1]},{codes[0]},9"])
    with pytest.raises(ValueError, match=r"other\.csv, line 5: the pair q01,q00 already has 'typology' = .* \(line 2\), here 9"):
        read_distances(other, codes)
