"""A configuration edited after `cltm plan` is refused before anything trains (audit finding 3)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from grid_fakes import make_prepared

from cltm_sb.cli import main
from cltm_sb.grid.executors.core import InProcessExecutor, execute_run
from cltm_sb.grid.layout import PlanError
from cltm_sb.grid.plan import load_plan, make_plan

RUNNER = "grid_fakes:run_fake"
HPARAMS = Path(__file__).parent.parent / "hparams" / "gender.yaml"


def _plan_then_edit_overrides(tmp_path: Path) -> Path:
    """A saved plan whose plan.json's overrides were edited afterwards."""
    data = make_prepared(tmp_path / "prep", ["en"])
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [1], runner=RUNNER, overrides={"lr": 0.001})
    plan.save()
    saved = json.loads(plan.plan_file.read_text())
    saved["overrides"]["lr"] = 0.01
    plan.plan_file.write_text(json.dumps(saved))
    return plan.plan_dir


def _trained(plan_dir: Path) -> list[Path]:
    """The runs the fake runner started (it writes its pid first)."""
    return sorted(plan_dir.glob("runs/*/pid"))


def test_cltm_run_refuses_an_edited_configuration_once_before_any_run(tmp_path: Path, capsys) -> None:
    plan_dir = _plan_then_edit_overrides(tmp_path)
    assert main(["run", str(plan_dir), "--executor", "inprocess"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.match(
        rf"cltm run: error: {plan_dir / 'plan.json'}: the configuration's config hash \w+ is not the "
        r"plan's \w+: the hparams .* changed since `cltm plan`", err,
    ), err
    assert _trained(plan_dir) == [] and not list(plan_dir.glob("records/*.json"))
    with pytest.raises(PlanError, match="changed since `cltm plan`"):
        InProcessExecutor().run(load_plan(plan_dir), progress=False)


def test_each_run_checks_the_configuration_before_it_trains(tmp_path: Path) -> None:
    """A run started without the grid's check (a SLURM task that waited in the queue meanwhile)."""
    plan = load_plan(_plan_then_edit_overrides(tmp_path))
    record = execute_run(plan, plan.runs[0])
    assert record.status == "failed" and "changed since `cltm plan`" in record.error
    assert record.error.startswith("PlanError: ") and _trained(plan.plan_dir) == []


def test_an_edited_hparams_file_is_seen_without_training(tmp_path: Path) -> None:
    """The packaged runner's config_hash_for reads the hparams file: no training needed."""
    hparams = tmp_path / "mygender.yaml"
    shutil.copy(HPARAMS, hparams)
    data = make_prepared(tmp_path / "prep", ["en"])
    overrides = {"encoder": "tiny_hubert", "preset": "toy", "tiny_hubert_folder": str(tmp_path / "tiny")}
    plan = make_plan(tmp_path / "plan", data, "gr", ["en"], [1], hparams_file=hparams, overrides=overrides)
    plan.require_current_config()  # unchanged: passes
    hparams.write_text(re.sub(r"(?m)^head_dropout: .*$", "head_dropout: 0.3", hparams.read_text()))
    with pytest.raises(PlanError, match=rf"hparams \({re.escape(str(hparams))}\).* changed since"):
        plan.require_current_config()
