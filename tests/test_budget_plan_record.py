"""plan.json records a budgeted grid's budget and its history (issue 19); status and complete show it."""

import hashlib
import json
import math
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.analysis.designs import design_pairs, write_pairs_csv
from cltm_sb.cli import main
from cltm_sb.grid.budget_record import budget_line, units_sha256
from cltm_sb.grid.executors.core import InProcessExecutor
from cltm_sb.grid.plan import load_plan

LOCALES = ["de", "en", "es", "fr", "it", "pl"]
N_PAIRS = 15  # 6 languages


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_prepared(tmp_path / "prep", LOCALES)


def _plan(data: Path, out: Path, *extra: str, seeds: str = "42") -> dict:
    args = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(LOCALES), "--seeds", seeds,
            "--runner", "grid_fakes:run_fake", "--time-per-run", "1", "-o", str(out), *extra]
    assert main(args) == 0
    return json.loads((out / "plan.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_families(codes):
    from cltm_sb.languages import load_registry

    return load_registry().families(codes)


def test_budget_plan_records_its_design(data, tmp_path, capsys):
    plan = _plan(data, tmp_path / "g", "--budget", "0.4")
    block = plan["budget"]
    k = math.ceil(0.4 * N_PAIRS)
    expected = {"kind": "design", "fraction": 0.4, "design_seed": 0, "families": {"source": "built-in registry"},
                "ordered": False, "unit": "pairs", "n_units": k, "n_full": N_PAIRS, "f_eff": 0.4,
                "units_sha256": units_sha256([tuple(sorted(p)) for p in design_pairs(
                    LOCALES, 0.4, load_families(LOCALES))])}
    assert block == expected
    assert "budgeted grid: 6 of 15 pairs (F = 0.40, cltm design seed 0) (recorded in plan.json)" in (
        capsys.readouterr().out)
    # budget sits before the runs, for a reader of plan.json
    keys = list(plan)
    assert keys.index("budget") < keys.index("runs")
    assert load_plan(tmp_path / "g").budget == block


def test_budget_plan_with_a_families_file_and_cells(data, tmp_path):
    fams = tmp_path / "fam.csv"
    fams.write_text("code,name,family\n" + "".join(f"{c},{c},F{i // 2}\n" for i, c in enumerate(LOCALES)))
    block = _plan(data, tmp_path / "g", "--budget", "0.3", "--families", str(fams), "--one-run-per-cell")["budget"]
    assert block["families"] == {"source": str(fams), "sha256": _sha256(fams)}
    assert block["ordered"] is True and block["unit"] == "cells"
    assert block["n_units"] == math.ceil(0.3 * 30) and block["n_full"] == 30
    cells = design_pairs(LOCALES, 0.3, [f"F{i // 2}" for i in range(6)], ordered=True)
    assert block["units_sha256"] == units_sha256(cells)


def test_pairs_plan_records_each_file(data, tmp_path, capsys):
    first = write_pairs_csv(design_pairs(LOCALES, 0.3), tmp_path / "pairs.csv")
    taken = {frozenset(p) for p in design_pairs(LOCALES, 0.3)}
    extra = [p for p in design_pairs(LOCALES, 1.0) if frozenset(p) not in taken][:2]
    more = write_pairs_csv(extra, tmp_path / "more.csv")
    block = _plan(data, tmp_path / "g", "--pairs", str(first), "--pairs", str(more))["budget"]
    n_first = math.ceil(0.3 * N_PAIRS)
    assert block["kind"] == "pairs"
    assert block["files"] == [
        {"path": str(first), "sha256": _sha256(first), "n_units": n_first, "unit": "pairs"},
        {"path": str(more), "sha256": _sha256(more), "n_units": 2, "unit": "pairs"},
    ]
    assert block["n_units"] == n_first + 2 and block["n_full"] == N_PAIRS
    assert block["f_eff"] == pytest.approx((n_first + 2) / N_PAIRS)
    units = sorted(tuple(sorted(p)) for p in design_pairs(LOCALES, 0.3) + extra)
    assert block["units_sha256"] == hashlib.sha256("\n".join(f"{a},{b}" for a, b in units).encode()).hexdigest()
    assert "fraction" not in block and "history" not in block
    assert "(F = 0.47, from pairs.csv + more.csv)" in capsys.readouterr().out


def test_a_plan_of_every_pair_has_no_budget_block(data, tmp_path):
    plan = _plan(data, tmp_path / "g")
    assert "budget" not in plan
    assert load_plan(tmp_path / "g").budget is None
    _plan(data, tmp_path / "g")  # re-planned: still none
    assert "budget" not in json.loads((tmp_path / "g" / "plan.json").read_text())


def test_a_grown_budget_keeps_finished_runs_and_records_its_history(data, tmp_path, capsys):
    grid = tmp_path / "g"
    _plan(data, grid, "--budget", "0.3")
    small = load_plan(grid)
    InProcessExecutor().run(small, progress=False)
    finished = {p.stem for p in (grid / "records").glob("*.json")}
    assert finished == {r.run_id for r in small.runs}

    plan = _plan(data, grid, "--budget", "0.5")
    grown = load_plan(grid)
    assert finished < {r.run_id for r in grown.runs}  # run ids do not depend on the budget
    block = plan["budget"]
    assert block["fraction"] == 0.5 and block["n_units"] == math.ceil(0.5 * N_PAIRS)
    (earlier,) = block["history"]
    assert earlier["fraction"] == 0.3 and earlier["n_units"] == math.ceil(0.3 * N_PAIRS)
    assert "history" not in earlier
    capsys.readouterr()
    assert main(["status", str(grid)]) == 0
    out = capsys.readouterr().out
    n_new = len(grown.runs) - len(finished)
    assert f"{len(finished)}/{len(grown.runs)} done" in out and f"{n_new} pending" in out
    assert "budgeted grid: 8 of 15 pairs (F = 0.53, cltm design seed 0); earlier plans: F = 0.33" in out
    assert main(["status", str(grid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["budget"] == block

    # the same budget again adds no history; every pair keeps the history under kind "full"
    assert _plan(data, grid, "--budget", "0.5")["budget"] == block
    full = _plan(data, grid)["budget"]
    assert full["kind"] == "full" and full["n_units"] == full["n_full"] == N_PAIRS and full["f_eff"] == 1.0
    assert [h["fraction"] for h in full["history"]] == [0.3, 0.5]
    assert budget_line(full) == "every pair planned: 15 of 15 pairs; earlier plans: F = 0.33, 0.53"
    # a plan of another configuration (--force) starts no history
    forced = _plan(data, grid, "--budget", "0.5", "--override", "fake_sleep=0", "--force")["budget"]
    assert "history" not in forced


def test_status_of_a_grid_of_every_pair_says_nothing_about_a_budget(data, tmp_path, capsys):
    _plan(data, tmp_path / "g")
    capsys.readouterr()
    assert main(["status", str(tmp_path / "g")]) == 0
    assert "budget" not in capsys.readouterr().out
    assert main(["status", str(tmp_path / "g"), "--json"]) == 0
    assert "budget" not in json.loads(capsys.readouterr().out)


def test_complete_copies_the_grids_budget_into_intervals_json(data, tmp_path, capsys):
    grid = tmp_path / "g"
    block = _plan(data, grid, "--budget", "0.6", seeds="42-44")["budget"]
    InProcessExecutor().run(load_plan(grid), progress=False)
    out = tmp_path / "completed"
    assert main(["complete", str(grid), "-o", str(out)]) == 0
    completion = json.loads((out / "intervals.json").read_text())["completion"]
    assert completion["design"] == block
    assert completion["cells"]["measured"] == 2 * block["n_units"]


def test_pairs_and_budget_together_are_refused(data, tmp_path, capsys):
    pairs = write_pairs_csv(design_pairs(LOCALES, 0.3), tmp_path / "pairs.csv")
    args = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(LOCALES),
            "--runner", "grid_fakes:run_fake", "-o", str(tmp_path / "g"), "--pairs", str(pairs), "--budget", "0.3"]
    assert main(args) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "g" / "plan.json").exists()


def test_a_grown_budget_keeps_the_families_of_the_first_plan(data, tmp_path):
    # Families that change the design: without them the 0.5 design would not contain the 0.3 one.
    fams = tmp_path / "fam.csv"
    fams.write_text("code,name,family\n" + "".join(f"{c},{c},F{i % 2}\n" for i, c in enumerate(LOCALES)))
    grid = tmp_path / "g"
    first = _plan(data, grid, "--budget", "0.3", "--families", str(fams))
    grown = _plan(data, grid, "--budget", "0.5")
    assert grown["budget"]["families"]["sha256"] == _sha256(fams)
    first_ids = {r["run_id"] for r in first["runs"]}
    assert first_ids <= {r["run_id"] for r in grown["runs"]}
    own = [f"F{i % 2}" for i in range(6)]
    # (with the built-in families the 0.5 design would leave out 3 of these pairs)
    small = {frozenset(p) for p in design_pairs(LOCALES, 0.3, own)}
    assert not small <= {frozenset(p) for p in design_pairs(LOCALES, 0.5, load_families(LOCALES))}


def test_complete_reads_the_families_the_grid_was_planned_with(data, tmp_path):
    from cltm_sb.analysis.completion import complete_source

    fams = tmp_path / "fam.csv"
    own = [f"F{i % 2}" for i in range(6)]
    fams.write_text("code,name,family\n" + "".join(f"{c},{c},{f}\n" for c, f in zip(LOCALES, own)))
    grid = tmp_path / "g"
    _plan(data, grid, "--budget", "0.6", "--families", str(fams), seeds="42-44")
    InProcessExecutor().run(load_plan(grid), progress=False)
    assert complete_source(grid, n_draws=0).families == own  # not the built-in registry's
    assert complete_source(grid, n_draws=0).families != load_families(LOCALES)



def test_an_audit_design_is_recorded_and_complete_finds_it(data, tmp_path, capsys):
    from cltm_sb.analysis.designs import audit_design

    grid = tmp_path / "g"
    block = _plan(data, grid, "--budget", "0.6", "--audit", "0.5", seeds="42-44")["budget"]
    core, audit = audit_design(LOCALES, 0.6, load_families(LOCALES), audit=0.5)
    assert block["audit"] == 0.5 and block["n_units"] == len(core) + len(audit)
    assert block["audit_units"] == sorted(",".join(sorted(p)) for p in audit)
    assert block["core_units"] == sorted(",".join(sorted(p)) for p in core)
    # six languages: too few pairs for an audit that gives intervals, and the line says so
    assert budget_line(block).endswith(f"; {len(audit)} of them an audit drawn at random ({len(audit)} audit pairs: "
                                       "no design-based interval: they start at 12 audit pairs (asymmetry's at 90, "
                                       "intra-family+'s and row cosine's at 97); "
                                       "15 pairs in all are too few for 12)")
    InProcessExecutor().run(load_plan(grid), progress=False)
    out = tmp_path / "completed"
    assert main(["complete", str(grid), "-o", str(out)]) == 0
    # The audit came from plan.json: too small here for intervals, and the reason counts its pairs.
    rfd = json.loads((out / "intervals.json").read_text())["diagnostics"]["rfd"]
    assert rfd["lower"] is None and f"{len(audit)} measured audit pairs" in rfd["reason"]
    # A pairs.csv with roles records its audit too.
    pairs = write_pairs_csv(core + audit, tmp_path / "pairs.csv", audit=audit)
    block = _plan(data, tmp_path / "g2", "--pairs", str(pairs))["budget"]
    assert block["audit_units"] == sorted(",".join(sorted(p)) for p in audit)
    capsys.readouterr()
    args = ["plan", "--data", str(data), "--task", "gr", "--locales", ",".join(LOCALES),
            "--runner", "grid_fakes:run_fake", "-o", str(tmp_path / "g3"), "--audit", "0.3"]
    assert main(args) == 2
    assert "--audit needs --budget" in capsys.readouterr().err


def test_a_budgeted_grid_is_reported_only_as_measured_cells_on_request(data, tmp_path, capsys):
    """The diagnostics of a budgeted grid's measured pairs are not its CLTM's: `cltm report`
    refuses and says how to complete it; --measured-only reports them, marked as such."""
    grid = tmp_path / "g"
    _plan(data, grid, "--budget", "0.4", seeds="42-44")
    InProcessExecutor().run(load_plan(grid), progress=False)
    capsys.readouterr()
    report = tmp_path / "report"
    assert main(["report", str(grid), "-o", str(report), "--no-heatmap"]) == 2
    err = capsys.readouterr().err
    assert "is a budgeted grid: 6 of 15 pairs planned (plan.json)" in err
    assert f"cltm complete {grid} -o DIR" in err and "--measured-only" in err
    assert not report.exists()
    assert main(["report", str(grid), "-o", str(report), "--no-heatmap", "--measured-only"]) == 0
    assert "analysing the measured cells alone" in capsys.readouterr().err
    text = (report / "report.md").read_text()
    assert "Warning: a budgeted grid: 6 of 15 pairs planned (plan.json): every figure here is over the " \
           "measured cells alone" in text
    # compare refuses it the same way
    assert main(["compare", str(grid), str(grid), "-o", str(tmp_path / "cmp")]) == 2
    assert "is a budgeted grid" in capsys.readouterr().err
    # a full grid is reported as before, with no warning
    full = tmp_path / "full"
    _plan(data, full, seeds="42-44")
    InProcessExecutor().run(load_plan(full), progress=False)
    assert main(["report", str(full), "-o", str(tmp_path / "full_report"), "--no-heatmap"]) == 0
    assert "Warning: a budgeted grid" not in (tmp_path / "full_report" / "report.md").read_text()
    # The note belongs to the analysis itself, so a report written from the library warns too.
    from cltm_sb.analysis.grid_analysis import analyze_grid, grid_registry

    assert analyze_grid(grid, grid_registry(grid)).metadata["budget_note"].startswith(
        "a budgeted grid: 6 of 15 pairs planned (plan.json): every figure here")
    assert "budget_note" not in analyze_grid(full, grid_registry(full)).metadata
