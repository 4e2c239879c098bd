"""One data hash per prepared folder, whoever computes it (plan or run)."""

import json

import pytest

from cltm_sb.data.manifests import find_data_root, prepared_data_hash, read_prepare_info
from cltm_sb.grid.layout import PlanError
from cltm_sb.grid.plan import read_prepared
from cltm_sb.recipe.run import data_hash_of

HEADER = "ID,duration,wav,spk_id,gender,locale,subset\n"


def own_manifests(folder):
    for locale in ("xa", "xb"):
        (folder / locale).mkdir(parents=True)
        for subset in ("a", "b"):
            (folder / locale / f"{subset}.csv").write_text(
                HEADER + f"{locale}_{subset}1,1.0,/audio/{locale}{subset}.wav,s1,female,{locale},{subset}\n"
            )
    return folder


def test_plan_and_run_agree_on_own_manifests(tmp_path):
    folder = own_manifests(tmp_path / "own")
    plan_hash, _ = read_prepared(folder)
    assert data_hash_of([folder / "xa" / "a.csv", folder / "xb" / "a.csv"]) == plan_hash
    assert data_hash_of([folder / "xb" / "b.csv"]) == plan_hash
    (folder / "xb" / "b.csv").write_text(HEADER)  # other data, other hash
    assert prepared_data_hash(folder) != plan_hash


def test_prepare_json_hash_and_root_win(tmp_path):
    folder = own_manifests(tmp_path / "prep")
    (folder / "prepare.json").write_text(json.dumps({"data_hash": "abc", "data_root": "/audio"}))
    assert data_hash_of([folder / "xa" / "a.csv"]) == read_prepared(folder)[0] == "abc"
    assert find_data_root(folder / "xa" / "a.csv").as_posix() == "/audio"


def test_broken_prepare_json_is_named(tmp_path):
    folder = own_manifests(tmp_path / "bad")
    (folder / "prepare.json").write_text("{")
    with pytest.raises(ValueError, match="prepare.json: not valid JSON"):
        read_prepare_info(folder)
    with pytest.raises(PlanError, match="prepare.json: not valid JSON"):
        read_prepared(folder)
    assert find_data_root(folder / "xa" / "a.csv") is None


def test_manifests_of_two_data_sets_are_refused(tmp_path):
    from cltm_sb.recipe import RecipeError

    one, other = own_manifests(tmp_path / "one"), own_manifests(tmp_path / "other")
    (other / "xa" / "b.csv").write_text(HEADER)  # another data set
    (other / "draw1").mkdir()  # a draw folder names its data set in its prepare.json
    (other / "draw1" / "prepare.json").write_text(json.dumps({"data_hash": prepared_data_hash(other)}))
    (other / "draw1" / "xa").mkdir()
    assert data_hash_of([other / "draw1" / "xa" / "a.csv", other / "xa" / "a.csv"]) == prepared_data_hash(other)
    # The record used to carry the first train manifest's hash alone, the test set's folder unchecked.
    with pytest.raises(RecipeError, match=r"two data sets, .*one \(data_hash \w+\) and .*other \(data_hash \w+\)"):
        data_hash_of([one / "xa" / "a.csv", other / "xa" / "a.csv"])
