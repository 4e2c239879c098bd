"""Run records: atomic round trip, loading, grouping, failures and duplicates."""

import json

import pytest

from cltm_sb.results import (
    RecordError,
    config_hash,
    load_records,
    read_record,
    records_to_table,
    train_set_key,
)

from helpers import make_record, write_records


def test_record_roundtrip_and_sorted_train_set(tmp_path):
    record = make_record([("fr", "a"), ("en", "a")], {"en": 0.7, "fr": 0.6}, seed=42)
    write_records(tmp_path, [record])
    back = read_record(tmp_path / f"{record.run_id}.json")
    assert back.train_set == [{"locale": "en", "subset": "a"}, {"locale": "fr", "subset": "a"}]
    assert [e.locale for e in back.evaluations] == ["en", "fr"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_train_set_key_is_order_free():
    a = [{"locale": "fr", "subset": "a"}, {"locale": "en", "subset": "a"}]
    assert train_set_key(a) == train_set_key(reversed(a)) == "en:a+fr:a"


def test_config_hash_ignores_per_run_keys():
    base = {"lr": 1e-5, "seed": 1, "output_folder": "/x", "encoder": {"layers": 2}}
    other = {**base, "seed": 2, "output_folder": "/y", "train_csv": ["a.csv"]}
    assert config_hash(base) == config_hash(other)
    assert config_hash(base) != config_hash({**base, "lr": 1e-4})


def test_loader_counts_and_skips_failed_runs(tmp_path):
    ok = make_record([("en", "a")], {"en": 0.7}, seed=1)
    bad = make_record([("en", "a")], {}, seed=2, status="failed")
    table = load_records(write_records(tmp_path, [ok, bad]))
    assert table.n_records == 2 and table.n_failed == 1
    assert table.table["seed"].tolist() == [1]


def test_loader_reads_a_grid_folder_with_records_subfolder(tmp_path):
    write_records(tmp_path / "records", [make_record([("en", "a")], {"en": 0.7}, seed=1)])
    (tmp_path / "plan.json").write_text("{}")
    assert load_records(tmp_path).n_records == 1


def test_duplicates_are_an_error(tmp_path):
    a = make_record([("en", "a")], {"en": 0.7}, seed=1, run_id="one")
    b = make_record([("en", "a")], {"en": 0.71}, seed=1, run_id="two")
    with pytest.raises(RecordError, match=r"seed 1 appears in the records .*one.json and .*two.json"):
        load_records(write_records(tmp_path, [a, b]))
    with pytest.raises(RecordError, match=r"seed 1 appears in runs \['one', 'two'\]"):
        records_to_table([a, b])  # without files, the run ids


def test_mixing_configurations_is_an_error_naming_both(tmp_path):
    a = make_record([("en", "a")], {"en": 0.7}, seed=1, config_hash="aaa")
    b = make_record([("en", "a")], {"en": 0.7}, seed=2, config_hash="bbb")
    table = load_records(write_records(tmp_path, [a, b]))
    with pytest.raises(RecordError, match="config_hash=aaa.*config_hash=bbb"):
        table.select("gr")
    assert len(table.select("gr", config_hash="aaa")) == 1


def test_selecting_a_task_the_records_lack_names_theirs(tmp_path):
    """select("gr") on records of another task returned an empty table; build_cltm then said
    only "no evaluations to build a matrix from"."""
    table = load_records(write_records(tmp_path, [make_record([("en", "a")], {"en": 0.7}, seed=1)]))
    with pytest.raises(RecordError, match="no records of task 'sv'; these records are of 'gr'"):
        table.select("sv")


@pytest.mark.parametrize(
    ("content", "says"),
    [("[1, 2]", "a JSON list, expected an object"), ("\"text\"", "a JSON str"), ("{", "Expecting")],
)
def test_a_record_that_is_not_an_object_is_named(tmp_path, content, says):
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(RecordError, match=rf"x.json: not a valid run record \({says}"):
        load_records(tmp_path)


def test_broken_record_names_the_file(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(RecordError, match="x.json: not a valid run record"):
        load_records(tmp_path)


def test_a_record_of_a_task_of_ones_own_is_read_and_a_bad_task_name_rejected():
    # Records of a declared task (cltm_sb.tasks) are read without its declaration at hand.
    assert make_record([("en", "a")], {"en": 0.7}, seed=1, task="asr").task == "asr"
    with pytest.raises(ValueError, match="task name 'a s r' must start with a letter"):
        make_record([("en", "a")], {"en": 0.7}, seed=1, task="a s r")


@pytest.mark.parametrize(
    ("task", "preset", "expected"),
    [("gr", "toy", "8da09f5b5870c844"), ("gr", "paper", "f012010278ec56f1"),
     ("sv", "toy", "a82b7d9927fdd464"), ("sv", "paper", "33c1caca83dcc955")],
)
def test_the_packaged_configurations_keep_their_hash(task: str, preset: str, expected: str) -> None:
    """The hparams part of config_hash for the packaged YAMLs, as recorded at 2454d60: the loader
    options, pooling depth and sampler that moved from Python into the YAMLs changed no identity
    (a grid planned before the move stays one configuration)."""
    from cltm_sb.recipe.hparams import resolve_plain
    from cltm_sb.recipe.run import _compose, _stand_ins

    _, overrides, text, _ = _compose(task, {"preset": preset}, None)
    resolved = resolve_plain(text, {**_stand_ins(text, overrides), **overrides})
    assert config_hash(resolved) == expected
    assert config_hash({**resolved, "pool_layers": 2}) != expected
    shuffled_off = {**resolved, "train_dataloader_opts": {**resolved["train_dataloader_opts"], "shuffle": False}}
    assert config_hash(shuffled_off) != expected


def test_a_planned_grid_without_finished_runs_is_named_and_its_plan_kept(tmp_path):
    # The plan is not a broken record: the message must not tell the user to delete it.
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no finished runs yet.*cltm run") as error:
        load_records(tmp_path)
    assert "delete" not in str(error.value)


def test_an_output_folder_is_named_as_one_not_as_broken_records(tmp_path):
    (tmp_path / ".cltm-outputs.json").write_text('{"writes": {"report": ["diagnostics.json"]}}')
    (tmp_path / "diagnostics.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="an output folder of cltm .*, not a grid") as error:
        load_records(tmp_path)
    assert "delete" not in str(error.value)
