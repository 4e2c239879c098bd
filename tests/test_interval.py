"""Dynamic training interval: learning-curve gains, z and the choice of N on curves with a known answer."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cltm_sb.analysis.interval import (
    CURVE_COLUMNS,
    IntervalError,
    gain_table,
    infer_n,
    load_curves,
    parse_source,
    select_interval,
)
from cltm_sb.analysis.uncertainty import contrast_moments
from cltm_sb.cli import main
from cltm_sb.results import load_records

from helpers import make_record, write_records

SIZES = (50, 100, 200, 400)
# Five seeds whose offsets have mean 0 and a known SD: sd = 0.005 * sqrt(2.5).
OFFSETS = np.array([-2, -1, 0, 1, 2]) * 0.005
SD = 0.005 * math.sqrt(2.5)


def saturating(n: float) -> float:
    """Grows fast, then plateaus: gains shrink with N."""
    return 0.9 - 0.4 * math.exp(-n / 100)


def late(n: float) -> float:
    """Flat at first, grows around N = 300."""
    return 0.5 + 0.4 / (1 + math.exp(-(n - 300) / 60))


def flat(n: float) -> float:
    return 0.7


CURVES = {"sat": saturating, "late": late, "flat": flat}


def curve_table(languages=("sat", "late"), sizes=SIZES, offsets=OFFSETS) -> pd.DataFrame:
    # The 2N run of a seed gets another seed's offset, so that the pairing has a spread: with
    # OFFSETS the paired SE equals the unpaired one, SD·sqrt(2/5).
    rows = []
    for locale in languages:
        f = CURVES[locale]
        for n in sizes:
            for seed, (off, off_2n) in enumerate(zip(offsets, np.roll(offsets, 1))):
                rows.append((locale, n, "n", n, seed, f(n) + off))
                rows.append((locale, n, "2n", 2 * n, seed, f(2 * n) + off_2n))
    return pd.DataFrame(rows, columns=["locale", "n", "role", "size", "seed", "value"])


def test_gain_and_z_follow_the_formula():
    gains = gain_table(curve_table())
    row = gains[(gains.locale == "sat") & (gains.n == 100)].iloc[0]
    se = math.sqrt(SD**2 / 5 + SD**2 / 5)
    assert row.gain == pytest.approx(saturating(200) - saturating(100))
    assert row.se == pytest.approx(se)
    assert row.se_unpaired == pytest.approx(se)
    assert row.t == pytest.approx((saturating(200) - saturating(100)) / se)
    # z: the normal equivalent of the paired t-test's one-sided p-value (4 df)
    assert row.z == pytest.approx(stats.norm.isf(stats.t.sf(row.t, 4)))
    assert row.seeds_n == row.seeds_2n == row.paired_seeds == 5


def test_choice_maximises_the_smallest_z():
    # min z over {sat, late}: N=50 ~1.5 (late still flat), N=100 ~10.0, N=200 ~9.4, N=400 ~1.4 (sat saturated)
    choice = select_interval(gain_table(curve_table()), z=2.0)
    assert choice.n == 100
    assert set(choice.qualifying) == {100, 200}
    assert choice.min_z == pytest.approx(min(choice.z.values()))
    assert choice.z["late"] < choice.z["sat"]
    assert choice.to_dict()["interval"] == [100, 200]


def test_a_flat_language_makes_every_n_fail_and_is_named():
    gains = gain_table(curve_table(("sat", "late", "flat")))
    with pytest.raises(IntervalError, match=r"flat fail at every N") as info:
        select_interval(gains)
    assert "N=100: flat (gain 0 <= 0)" in str(info.value)
    # leaving the flat language out gives the answer back
    assert select_interval(gains, locales=["sat", "late"]).n == 100


def test_a_higher_threshold_can_exclude_every_n():
    with pytest.raises(IntervalError, match="late"):
        select_interval(gain_table(curve_table()), z=12.0)


def test_too_few_seeds_gives_nan_z_with_reason():
    gains = gain_table(curve_table(offsets=np.array([0.0])))
    assert gains["z"].isna().all()
    assert gains["reason"].str.contains("1 finished seed").all()
    with pytest.raises(IntervalError, match="fewer than 2"):
        select_interval(gains)


def test_zero_spread_positive_gain_is_infinite_z():
    gains = gain_table(curve_table(("sat",), offsets=np.zeros(3)))
    assert np.isinf(gains["z"]).all()
    assert select_interval(gains).n == 50  # ties (all inf) go to the smallest N


def test_a_missing_2n_seed_tests_the_printed_gain():
    # Seed 4 lost its 2N run and has a low P(N): over all seeds the gain is positive, over the
    # four shared seeds negative. The test once used the shared seeds only, so a positive gain was
    # printed beside a negative t; now both describe the all-seed gain.
    p_n, p_2n = [0.50, 0.52, 0.51, 0.49, 0.40], [0.495, 0.505, 0.50, 0.49]
    rows = [("x", 50, "n", 50, k, v) for k, v in enumerate(p_n)]
    rows += [("x", 50, "2n", 100, k, v) for k, v in enumerate(p_2n)]
    row = gain_table(pd.DataFrame(rows, columns=CURVE_COLUMNS)).iloc[0]
    gain = np.mean(p_2n) - np.mean(p_n)
    assert row.gain == pytest.approx(gain) and gain > 0
    assert np.mean(np.subtract(p_2n, p_n[:4])) < 0
    # Var(mean 2N) + Var(mean N) − 2·Cov, the covariance through the 4 shared seeds of 5 × 4.
    shared_cov = np.cov(p_n[:4], p_2n)[0, 1]
    var = np.var(p_2n, ddof=1) / 4 + np.var(p_n, ddof=1) / 5 - 2 * 4 * shared_cov / (5 * 4)
    assert row.se == pytest.approx(math.sqrt(var))
    assert row.t == pytest.approx(gain / math.sqrt(var)) and row.t > 0
    # The t test's df are Satterthwaite's for that all-seed variance, as the matrix cells' (between
    # the shared seeds − 1 and the seeds any run has − 1), not the 2 shared seeds' 1.
    df = contrast_moments(np.array(p_2n + [np.nan]), np.array(p_n), 1.0)[3]
    assert row.df == pytest.approx(float(df)) and 3 < row.df <= 4
    assert row.p_value == pytest.approx(stats.t.sf(row.t, row.df))
    assert (row.paired_seeds, row.seeds_n, row.seeds_2n) == (4, 5, 4)


def test_below_five_seeds_a_run_missing_seeds_gets_no_z_but_a_reason():
    # At 3 seeds a test over unshared seeds qualified 3.0-4.1% of gainless languages at z = 2
    # (nominal 2.3%): no z there, and the reason says so; complete curves keep their paired test.
    p_n, p_2n = [0.50, 0.52, 0.40], [0.55, 0.57]
    rows = [("x", 50, "n", 50, k, v) for k, v in enumerate(p_n)]
    rows += [("x", 50, "2n", 100, k, v) for k, v in enumerate(p_2n)]
    row = gain_table(pd.DataFrame(rows, columns=CURVE_COLUMNS)).iloc[0]
    assert np.isnan(row.z) and np.isnan(row.t)
    assert "only 2 seed(s) have both runs (N: 3, 2N: 2)" in row.reason and "cltm run" in row.reason
    rows += [("x", 50, "2n", 100, 2, 0.45)]
    complete = gain_table(pd.DataFrame(rows, columns=CURVE_COLUMNS)).iloc[0]
    assert np.isfinite(complete.z) and not complete.reason


# ---- from records -----------------------------------------------------------------------------


def curve_records(n: int, languages=("sat", "late"), n_train: bool = True):
    records = []
    for locale in languages:
        f = CURVES[locale]
        for seed, (off, off_2n) in enumerate(zip(OFFSETS, np.roll(OFFSETS, 1))):
            single = make_record([(locale, "a")], {locale: f(n) + off}, seed)
            both = make_record([(locale, "a"), (locale, "b")], {locale: f(2 * n) + off_2n}, seed)
            for rec, size in ((single, n), (both, 2 * n)):
                rec.kind = "curve"
                if n_train:
                    rec.extra["n_train"] = size
                records.append(rec)
    return records


def test_load_curves_from_folders_infers_n(tmp_path):
    sources = []
    for n in SIZES:
        write_records(tmp_path / f"n{n}" / "records", curve_records(n))
        sources.append(tmp_path / f"n{n}")
    curves = load_curves(sources, "gr")
    assert sorted(curves["n"].unique()) == list(SIZES)
    assert select_interval(gain_table(curves)).n == 100


def test_n_from_plan_and_prepare_json(tmp_path):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "prepare.json").write_text(json.dumps({"n": 120}))
    plan = tmp_path / "plan"
    write_records(plan / "records", curve_records(120, n_train=False))
    (plan / "plan.json").write_text(json.dumps({"data_dir": str(prepared)}))
    assert infer_n(plan, load_records(plan)) == 120


def test_unknown_n_asks_for_it(tmp_path):
    folder = write_records(tmp_path / "x", curve_records(50, n_train=False))
    with pytest.raises(IntervalError, match=r"give it as N="):
        load_curves([folder], "gr")
    assert parse_source(f"50={folder}") == (50, str(folder))
    assert load_curves([f"50={folder}"], "gr")["n"].unique().tolist() == [50]


def test_a_given_n_the_folder_contradicts_is_an_error(tmp_path):
    folder = write_records(tmp_path / "n50", curve_records(50))  # its runs record n_train = 50
    with pytest.raises(IntervalError, match=r"given as N=100, but its runs trained on N=50.*give 50="):
        load_curves([f"100={folder}"], "gr")
    assert load_curves([f"50={folder}"], "gr")["n"].unique().tolist() == [50]


def test_same_n_twice_is_an_error(tmp_path):
    a = write_records(tmp_path / "a", curve_records(50))
    b = write_records(tmp_path / "b", curve_records(50))
    with pytest.raises(IntervalError, match="N=50 is given twice"):
        load_curves([a, b], "gr")


def test_cli_interval_writes_the_choice_and_the_figure(tmp_path, capsys):
    args = ["interval", "--task", "gr", "-o", str(tmp_path / "out")]
    for n in SIZES:
        args += ["--records", str(write_records(tmp_path / f"n{n}", curve_records(n)))]
    assert main(args) == 0
    assert "recommended N = 100" in capsys.readouterr().out
    for name in ("curves.csv", "gains.csv", "interval.json", "curves.png", "curves.pdf"):
        assert (tmp_path / "out" / name).is_file()
    assert json.loads((tmp_path / "out" / "interval.json").read_text())["n"] == 100


def test_cli_interval_failure_names_the_language(tmp_path, capsys):
    args = ["interval", "--task", "gr", "-o", str(tmp_path / "out")]
    for n in SIZES:
        args += [
            "--records",
            str(write_records(tmp_path / f"n{n}", curve_records(n, ("sat", "flat")))),
        ]
    assert main(args) == 2
    assert "flat fail at every N" in capsys.readouterr().err
    assert (tmp_path / "out" / "curves.png").is_file()


def test_cli_interval_plans_and_runs_the_curves(tmp_path, capsys):
    from grid_fakes import make_prepared

    args = [
        "interval",
        "--task",
        "gr",
        "--locales",
        "en,es",
        "--seeds",
        "1-3",
        "-o",
        str(tmp_path / "out"),
        "--runner",
        "grid_fakes:run_fake",
        "--executor",
        "inprocess",
    ]
    for n in (20, 40):
        prepared = make_prepared(tmp_path / f"prep{n}", ["en", "es"], data_hash=f"d{n}")
        info = json.loads((prepared / "prepare.json").read_text())
        (prepared / "prepare.json").write_text(json.dumps({**info, "n": n}))
        args += ["--data", str(prepared)]
    assert main(args[:-1] + [args[-1]] + ["--plan-only"]) == 0
    assert "planned" in capsys.readouterr().out
    plan = json.loads((tmp_path / "out" / "plans" / "n20" / "plan.json").read_text())
    assert {r["kind"] for r in plan["runs"]} == {"single", "self"} and len(
        plan["runs"]
    ) == 2 * 2 * 3
    assert main(args) == 0
    # the fake adds exactly 0.1 for b at every N: equal z everywhere, the smaller N wins
    assert "recommended N = 20" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "plans" / "n40" / "records").glob("*.json"))) == 12


def test_folders_of_different_configurations_say_what_to_do(tmp_path):
    # One N run with other overrides: --config-hash (once the only advice) would leave that
    # folder empty; the message says so. Where every folder holds one configuration, it is named.
    a = write_records(tmp_path / "n50", curve_records(50))
    other = curve_records(100)
    for rec in other:
        rec.config_hash, rec.run_id = "cfg2", rec.run_id + "-cfg2"
    b = write_records(tmp_path / "n100", other)
    with pytest.raises(IntervalError, match=r"no configuration has runs in every folder.*same hparams"):
        load_curves([a, b], "gr")
    write_records(tmp_path / "n100", curve_records(100))  # cfg1 beside cfg2 in n100
    with pytest.raises(IntervalError, match=r"pass --config-hash cfg1 to pick the one every folder"):
        load_curves([a, b], "gr")
    assert sorted(load_curves([a, b], "gr", config_hash="cfg1")["n"].unique()) == [50, 100]


def test_a_bad_prepared_folder_leaves_no_plan_behind(tmp_path):
    from grid_fakes import make_prepared

    from cltm_sb.analysis.interval import plan_curves

    folders = []
    for name, n in (("p20", 20), ("p40", 40), ("p20b", 20)):
        prepared = make_prepared(tmp_path / name, ["en", "es"])
        info = json.loads((prepared / "prepare.json").read_text())
        (prepared / "prepare.json").write_text(json.dumps({**info, "n": n}))
        folders.append(prepared)
    with pytest.raises(IntervalError, match="N=20 is prepared twice"):
        plan_curves(tmp_path / "plans", folders, "gr", ["en", "es"], [1, 2], runner="grid_fakes:run_fake")
    assert not (tmp_path / "plans").exists()


def test_cli_interval_refuses_too_few_seeds_before_training(tmp_path, capsys):
    from grid_fakes import make_prepared

    prepared = make_prepared(tmp_path / "prep", ["en", "es"])
    info = json.loads((prepared / "prepare.json").read_text())
    (prepared / "prepare.json").write_text(json.dumps({**info, "n": 20}))
    args = ["interval", "--task", "gr", "--locales", "en,es", "--seeds", "42", "-o", str(tmp_path / "out"),
            "--data", str(prepared), "--runner", "grid_fakes:run_fake", "--executor", "inprocess"]  # fmt: skip
    assert main(args) == 2
    assert "--seeds 42 gives 1 seed(s); the paired test of each N needs at least 2" in capsys.readouterr().err
    assert not (tmp_path / "out" / "plans").exists()  # nothing planned, nothing trained


def test_runs_of_several_data_draws_give_one_point_per_seed(tmp_path):
    # 3 seeds x 2 draws once read as seeds_n = 6, with an SD and unpaired SE over the 6 runs.
    records = []
    for draw, shift in ((0, 0.0), (1, 0.02)):
        for rec in curve_records(50):
            rec.run_id, rec.draw = f"{rec.run_id}-d{draw}", draw
            rec.evaluations[0].value += shift
            records.append(rec)
    folder = write_records(tmp_path / "n50", records)
    curves = load_curves([folder], "gr")
    seeds = len(OFFSETS)
    assert len(curves) == 2 * 2 * seeds  # languages x roles x seeds
    gains = gain_table(curves).set_index("locale")
    assert (gains["seeds_n"] == seeds).all() and (gains["paired_seeds"] == seeds).all()
    sat = curves[(curves["locale"] == "sat") & (curves["role"] == "n")].sort_values("seed")
    assert sat["value"].tolist() == pytest.approx([CURVES["sat"](50) + off + 0.01 for off in OFFSETS])


def test_a_folder_of_another_task_is_named_as_such(tmp_path):
    a = write_records(tmp_path / "n50", curve_records(50))
    other = curve_records(100)
    for rec in other:
        rec.task = "sv"
    b = write_records(tmp_path / "n100", other)
    with pytest.raises(IntervalError, match=r"n100: no finished gr .* it holds sv runs: give the gr folder"):
        load_curves([a, b], "gr")
