"""``cltm prepare --draws K``: independent a/b draws, draw 0 untouched (DESIGN.md §9)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from cltm_sb.data.common_voice import prepare_common_voice
from cltm_sb.data.manifests import draw_folder, prepared_data_hash

from helpers import TOY_GR_N


def _digests(folder: Path, locales: list[str], names: tuple[str, ...]) -> dict[str, str]:
    return {
        f"{loc}/{name}": hashlib.sha256((folder / loc / name).read_bytes()).hexdigest()
        for loc in locales
        for name in names
    }


@pytest.fixture(scope="module")
def three_draws(toy_corpus: Path, toy_locales: list[str], prepared_gr: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("draws3")
    prepare_common_voice(toy_corpus, toy_locales, "gr", TOY_GR_N, out, seed=0, progress=False,
                         cache_dir=prepared_gr / "audio", draws=3)  # fmt: skip
    return out


def test_draw_zero_is_byte_identical_and_keeps_its_hash(three_draws: Path, prepared_gr: Path, toy_locales):
    names = ("a.csv", "b.csv", "test.csv")
    assert _digests(three_draws, toy_locales, names) == _digests(prepared_gr, toy_locales, names)
    one = json.loads((prepared_gr / "prepare.json").read_text())
    info = json.loads((three_draws / "prepare.json").read_text())
    assert info["data_hash"] == one["data_hash"] == prepared_data_hash(three_draws)
    assert info["files"] == one["files"]
    assert "draws" not in one, "one draw: prepare.json as before draws existed"
    assert sorted(info["draws"]) == ["0", "1", "2"]
    assert info["draws"]["0"] == {"folder": ".", "draw_hash": info["data_hash"]}


def test_draws_differ_are_balanced_and_share_the_test_set(three_draws: Path, toy_locales):
    info = json.loads((three_draws / "prepare.json").read_text())
    hashes = {entry["draw_hash"] for entry in info["draws"].values()}
    assert len(hashes) == 3
    for draw in (1, 2):
        folder = draw_folder(three_draws, draw)
        assert folder == three_draws / f"draw{draw}"
        dinfo = json.loads((folder / "prepare.json").read_text())
        assert dinfo["draw"] == draw and dinfo["draw_hash"] == info["draws"][str(draw)]["draw_hash"]
        # every draw belongs to one prepared data set: its runs group with draw 0's
        assert dinfo["data_hash"] == info["data_hash"] == prepared_data_hash(folder)
        for loc in toy_locales:
            zero = {s: pd.read_csv(three_draws / loc / f"{s}.csv") for s in ("a", "b")}
            this = {s: pd.read_csv(folder / loc / f"{s}.csv") for s in ("a", "b")}
            assert set(this["a"]["ID"]) != set(zero["a"]["ID"])
            assert not set(this["a"]["spk_id"]) & set(this["b"]["spk_id"]), "a and b speaker-disjoint"
            for s in ("a", "b"):
                assert len(this[s]) == len(zero[s]) == TOY_GR_N
                assert this[s]["gender"].value_counts().to_dict() == zero[s]["gender"].value_counts().to_dict()
                assert this[s]["spk_id"].nunique() == zero[s]["spk_id"].nunique()
            assert (folder / loc / "test.csv").read_bytes() == (three_draws / loc / "test.csv").read_bytes()
            assert dinfo["counts"][loc]["a"] == info["counts"][loc]["a"]


def test_adding_draws_later_leaves_draw_zero_alone(toy_corpus: Path, prepared_gr: Path, tmp_path: Path):
    kwargs = {"seed": 0, "progress": False, "cache_dir": prepared_gr / "audio"}
    first = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path / "x", **kwargs)
    before = _digests(tmp_path / "x", ["qaa"], ("a.csv", "b.csv", "test.csv"))
    stamps = first["file_stamps"]
    more = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path / "x", draws=2, **kwargs)
    assert _digests(tmp_path / "x", ["qaa"], ("a.csv", "b.csv", "test.csv")) == before
    assert more["file_stamps"] == stamps and more["data_hash"] == first["data_hash"]
    straight = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path / "y", draws=2, **kwargs)
    assert straight["draws"] == more["draws"]
    assert (tmp_path / "x" / "draw1" / "qaa" / "a.csv").read_bytes() == (
        tmp_path / "y" / "draw1" / "qaa" / "a.csv"
    ).read_bytes()
    mtime = (tmp_path / "x" / "prepare.json").stat().st_mtime_ns
    again = prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path / "x", draws=2, **kwargs)
    assert again == more and (tmp_path / "x" / "prepare.json").stat().st_mtime_ns == mtime


def test_draws_must_be_positive(toy_corpus: Path, tmp_path: Path):
    from cltm_sb.data import DataError

    with pytest.raises(DataError, match="--draws"):
        prepare_common_voice(toy_corpus, ["qaa"], "gr", 8, tmp_path, draws=0, progress=False)


def test_a_run_reads_its_draw_from_the_manifests_folder(three_draws: Path):
    from cltm_sb.data.manifests import prepared_draw

    info = json.loads((three_draws / "prepare.json").read_text())
    assert prepared_draw(three_draws, info["data_hash"]) == (0, info["data_hash"])
    assert prepared_draw(three_draws / "draw2", info["data_hash"]) == (2, info["draws"]["2"]["draw_hash"])


def test_a_plan_over_prepared_draws_passes_the_data_checks(three_draws: Path, toy_locales, tmp_path: Path):
    """Independent draws share speakers across draws (draw 0's a, draw 2's b): no leak (audit finding 2)."""
    from cltm_sb.data.checks import check_data, expand_paths
    from cltm_sb.grid.plan import make_plan

    plan = make_plan(tmp_path / "plan", three_draws, "gr", toy_locales[:2], [42], runner="grid_fakes:run_fake",
                     draws=[0, 1, 2])  # fmt: skip
    assert plan.draws == [0, 1, 2]
    expanded = {path for path, _ in expand_paths([three_draws])}
    assert {three_draws / f"draw{k}" / loc / "a.csv" for k in (1, 2) for loc in toy_locales} <= expanded
    assert check_data([three_draws]) == []
