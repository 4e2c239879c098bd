"""Data draws in records and plans: the draw in the duplicate key, ``--draws`` crossed with seeds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.grid.executors.core import InProcessExecutor
from cltm_sb.grid.layout import PlanError
from cltm_sb.grid.plan import load_plan, make_plan, plan_runs
from cltm_sb.results import RecordError, RunRecord, load_records, read_record, records_to_table

from helpers import make_record

RUNNER = "grid_fakes:run_fake"


def _with_draws(folder: Path, locales: list[str], draws: int) -> Path:
    """A fake prepared folder with draws 1..draws-1 beside draw 0, as `cltm prepare --draws` lays them out."""
    make_prepared(folder, locales)
    for draw in range(1, draws):
        make_prepared(folder / f"draw{draw}", locales)
        info = {"data_hash": "data-toy", "data_root": str(folder / f"draw{draw}" / "audio"),
                "draw": draw, "draw_hash": f"draw-{draw}-hash"}  # fmt: skip
        (folder / f"draw{draw}" / "prepare.json").write_text(json.dumps(info))
    return folder


def test_old_records_read_as_draw_zero(tmp_path: Path) -> None:
    data = make_record([("en", "a")], {"en": 0.7}, 42).to_dict()
    del data["draw"], data["draw_hash"]
    old = RunRecord.from_dict(data)
    assert old.draw == 0 and old.draw_hash == ""
    assert "draw" in RunRecord.from_dict(make_record([("en", "a")], {"en": 0.7}, 42).to_dict()).to_dict()


def test_duplicate_key_includes_the_draw() -> None:
    zero = make_record([("en", "a")], {"en": 0.7}, 42, run_id="d0")
    one = make_record([("en", "a")], {"en": 0.6}, 42, run_id="d1")
    one.draw, one.draw_hash = 1, "h1"
    table = records_to_table([zero, one])
    assert sorted(table["draw"]) == [0, 1] and len(table) == 2
    again = make_record([("en", "a")], {"en": 0.5}, 42, run_id="d1bis")
    again.draw = 1
    with pytest.raises(RecordError, match="seed 42, data draw 1"):
        records_to_table([zero, one, again])


def test_plan_crosses_draws_with_seeds_and_keeps_draw_zero_ids() -> None:
    base = plan_runs("gr", ["en", "es", "fr"], [42, 43], "cfg")
    crossed = plan_runs("gr", ["en", "es", "fr"], [42, 43], "cfg", draws=[0, 1, 2])
    assert len(crossed) == 3 * len(base)
    assert [r.run_id for r in crossed if r.draw == 0] == [r.run_id for r in base]
    assert len({r.run_id for r in crossed}) == len(crossed)
    assert all("-d2-" in r.run_id for r in crossed if r.draw == 2)
    assert crossed == plan_runs("gr", ["en", "es", "fr"], [42, 43], "cfg", draws=[0, 1, 2])
    with pytest.raises(PlanError, match="--draws"):
        plan_runs("gr", ["en"], [42], "cfg", draws=[1, 1])


def test_plan_gives_each_run_its_draws_manifests_and_records_carry_the_draw(tmp_path: Path) -> None:
    data = _with_draws(tmp_path / "prep", ["en", "es"], 3)
    one = make_plan(tmp_path / "one", data, "gr", ["en", "es"], [42], runner=RUNNER)
    assert "draws" not in one.to_dict(), "one draw: plan.json as before draws existed"
    plan = make_plan(tmp_path / "plan", data, "gr", ["en", "es"], [42], runner=RUNNER, draws=[0, 2])
    plan.save()
    loaded = load_plan(tmp_path / "plan")
    assert loaded.to_dict() == plan.to_dict() and loaded.draws == [0, 2]
    assert {r.run_id for r in one.runs} < {r.run_id for r in loaded.runs}
    spec = next(r for r in loaded.runs if r.draw == 2 and r.kind == "pair")
    over = loaded.run_overrides(spec)
    assert over["train_csv"] == [str(data.resolve() / "draw2" / loc / "a.csv") for loc, _ in spec.train]
    assert over["test_csv"][0].startswith(str(data.resolve() / "draw2"))
    InProcessExecutor().run(loaded, progress=False)
    records = load_records(tmp_path / "plan")
    assert sorted(set(records.table["draw"])) == [0, 2]
    record = read_record(loaded.paths(spec).record)
    assert (record.draw, record.draw_hash) == (2, "draw-2-hash")  # set by the executor from the plan
    first = read_record(loaded.paths(next(r for r in loaded.runs if r.draw == 0)).record)
    assert (first.draw, first.draw_hash) == (0, "data-toy")


def test_plan_names_a_missing_draw(tmp_path: Path) -> None:
    data = _with_draws(tmp_path / "prep", ["en"], 2)
    with pytest.raises(PlanError, match=r"no data draw 2 .*--draws 3"):
        make_plan(tmp_path / "plan", data, "gr", ["en"], [42], runner=RUNNER, draws=[0, 1, 2])


def _respeak(manifest: Path, old: str, new: str) -> None:
    """Rename the speakers ``<old>*`` of a fake manifest to ``<new>*`` (only the spk_id field
    starts after a comma with the locale's prefix)."""
    manifest.write_text(manifest.read_text().replace(f",{old}", f",{new}"))


def test_draws_share_speakers_across_draws_but_not_within_one(tmp_path: Path, capsys) -> None:
    from cltm_sb.cli import main
    from cltm_sb.data.checks import DataCheckError

    data = _with_draws(tmp_path / "prep", ["en"], 3)
    draw2 = data / "draw2" / "en"
    # Independent draws from one pool: draw 0's a speakers are draw 2's b speakers.
    _respeak(draw2 / "a.csv", "en_a_", "en_x_")
    _respeak(draw2 / "b.csv", "en_b_", "en_a_")
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [42], runner=RUNNER, draws=[0, 2])
    assert plan.draws == [0, 2]
    assert main(["validate", str(data)]) == 0
    capsys.readouterr()

    _respeak(draw2 / "a.csv", "en_x_f", "en_a_f")  # a leak inside draw 2: a and b share en_a_f
    leak = r"draw2/en/a\.csv, line 2 .*'en_a_f' is in both training subsets a and b of 'en' \(also at .*draw2/en/b\.csv"
    with pytest.raises(DataCheckError, match=leak):
        make_plan(tmp_path / "plan", data, "gr", ["en"], [42], runner=RUNNER, draws=[0, 2])
    assert main(["validate", str(data)]) == 1  # the draw folders are validated too
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and re.search(leak, out), out

    _respeak(draw2 / "a.csv", "en_a_f", "en_test_f")  # a test speaker trained on in draw 2
    with pytest.raises(DataCheckError, match=r"draw2/en/a\.csv, line 2 .*'en_test_f' is also in the test set"):
        make_plan(tmp_path / "plan", data, "gr", ["en"], [42], runner=RUNNER, draws=[0, 2])
