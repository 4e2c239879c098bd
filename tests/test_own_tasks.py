"""Tasks of one's own: the run contract (recipes/example_task) and a fourth task declared in a test."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from cltm_sb.recipe import RecipeError
from cltm_sb.recipe.user import METRICS_FILE, config_hash_for, run_user_recipe
from cltm_sb.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "recipes" / "example_task"


def test_the_example_recipe_meets_the_run_contract(prepared_gr: Path, toy_locales: list[str], tmp_path: Path) -> None:
    task = get_task(str(EXAMPLE / "task.yaml"))
    a, b = toy_locales[:2]
    overrides = {
        "train_csv": [str(prepared_gr / a / "a.csv"), str(prepared_gr / b / "a.csv")],
        "test_csv": [str(prepared_gr / a / "test.csv"), str(prepared_gr / b / "test.csv")],
        "seed": 42,
        "output_folder": str(tmp_path / "run"),
        "data_root": json.loads((prepared_gr / "prepare.json").read_text())["data_root"],
    }
    record = run_user_recipe(task, overrides, run_id="pair-run", kind="pair")
    assert record.task == "example_gender" and record.kind == "pair" and record.status == "ok"
    assert [e.locale for e in record.evaluations] == [a, b]
    assert all(e.metric == "macro_f1" and 0.5 < e.value <= 1 and e.n_items == 40 for e in record.evaluations)
    assert record.train_set == [{"locale": a, "subset": "a"}, {"locale": b, "subset": "a"}]
    # What `cltm plan` computes without running anything: the same configuration.
    assert record.config_hash == config_hash_for(task, {}, task.hparams)
    assert record.config_hash != config_hash_for(task, {"alpha": 0.01}, task.hparams)
    written = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    assert [e["locale"] for e in written["evaluations"]] == [a, b]


def test_a_recipe_that_breaks_the_contract_is_named(prepared_gr: Path, toy_locales: list[str], tmp_path: Path) -> None:
    """A lower-is-better metric is transformed; wrong metrics, locales and exits are refused clearly."""
    script = tmp_path / "train.py"
    script.write_text(
        "import json, sys, pathlib\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[2:])\n"
        "if args.get('fail'): sys.exit('boom: ' + args['fail'])\n"
        "out = pathlib.Path(args['output_folder']); out.mkdir(parents=True, exist_ok=True)\n"
        "evals = [{'locale': args.get('locale', 'qaa'), 'metric': args.get('metric', 'eer'), 'value': 0.25, 'n_items': 3}]\n"
        "(out / 'metrics.json').write_text(json.dumps({'evaluations': evals}))\n"
    )
    (tmp_path / "h.yaml").write_text("seed: 0\n")
    declaration = tmp_path / "eer.yaml"
    declaration.write_text(
        "name: toy_eer\nrecipe: {script: train.py, hparams: h.yaml}\nmetric: eer\nhigher_is_better: false\n"
    )
    task = get_task(str(declaration))
    base = {
        "train_csv": [str(prepared_gr / toy_locales[0] / "a.csv")],
        "test_csv": [str(prepared_gr / toy_locales[0] / "test.csv")],
        "output_folder": str(tmp_path / "run"),
        "seed": 1,
    }
    record = run_user_recipe(task, base)
    (evaluation,) = record.evaluations
    assert (evaluation.metric, evaluation.value, evaluation.extra["eer"]) == ("1-eer", 0.75, 0.25)
    with pytest.raises(RecipeError, match="metric 'auc', but task 'toy_eer' declares 'eer'"):
        run_user_recipe(task, {**base, "metric": "auc"})
    with pytest.raises(RecipeError, match=r"locale 'xx' is not among the test locales \['qaa'\]"):
        run_user_recipe(task, {**base, "locale": "xx"})
    with pytest.raises(RecipeError, match=r"exited with status 1 .*recipe_log.txt.*\n.*boom: now"):
        run_user_recipe(task, {**base, "fail": "now"})


def _own_data_with_a_synthetic_label(prepared_gr: Path, locales: list[str], out: Path) -> Path:
    """A folder of manifests of one's own: the GR subsets plus a `register` column (high/low voice),
    audio linked in (its own data root, no prepare.json)."""
    root = json.loads((prepared_gr / "prepare.json").read_text())["data_root"]
    for locale in locales:
        (out / locale).mkdir(parents=True)
        for subset in ("a", "b", "test"):
            with open(prepared_gr / locale / f"{subset}.csv", newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
            with open(out / locale / f"{subset}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, [*rows[0], "register"], lineterminator="\n")
                writer.writeheader()
                for row in rows:
                    writer.writerow({**row, "register": "high" if row["gender"] == "female" else "low"})
                    relpath = row["wav"].removeprefix("$data_root/")
                    link = out / relpath
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.exists():
                        os.symlink(Path(root) / relpath, link)
    return out


@pytest.mark.slow
def test_a_fourth_task_declared_only_in_yaml_plans_runs_and_builds_its_matrix(
    prepared_gr: Path, toy_corpus: Path, toy_locales: list[str], tmp_path: Path
) -> None:
    from cltm_sb.cli import main

    locales = toy_locales[:2]
    data = _own_data_with_a_synthetic_label(prepared_gr, locales, tmp_path / "data")
    hparams = (EXAMPLE / "hparams.yaml").read_text().replace("label_key: gender", "label_key: register")
    (tmp_path / "register.hparams.yaml").write_text(hparams.replace("[female, male]", "[high, low]"))
    declaration = tmp_path / "register.yaml"
    declaration.write_text(
        "name: register\n"
        "title: Voice register\n"
        f"recipe: {{script: {EXAMPLE / 'train.py'}, hparams: register.hparams.yaml}}\n"
        "metric: macro_f1\n"
        "label: {column: register, classes: [high, low]}\n"
    )
    plan_dir, out = tmp_path / "plan", tmp_path / "matrix"
    assert main(["plan", "--data", str(data), "--task", str(declaration), "--locales", ",".join(locales),
                 "--seeds", "42,43", "-o", str(plan_dir)]) == 0  # fmt: skip
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert plan["task"] == "register" and plan["runner"] == "cltm_sb.recipe.user:run_user_recipe"
    assert plan["task_declaration"]["label"] == {"column": "register", "classes": ["high", "low"]}
    assert main(["run", str(plan_dir), "--workers", "2"]) == 0
    records = [json.loads(p.read_text()) for p in (plan_dir / "records").glob("*.json")]
    assert len(records) == 10 and all(r["status"] == "ok" and r["task"] == "register" for r in records)
    families = str(toy_corpus / "families.csv")
    assert main(["matrix", str(plan_dir), "--task", "register", "-o", str(out), "--families", families]) == 0
    with open(out / "cltm.csv", newline="", encoding="utf-8") as handle:
        matrix = list(csv.reader(handle))
    assert matrix[0][1:] == locales and [row[0] for row in matrix[1:]] == locales
    # M[t,t] = 1, or the whole row NaN (empty) where the saturated toy label leaves no self-gain.
    assert all(row[i + 1] == "" or float(row[i + 1]) == pytest.approx(1.0) for i, row in enumerate(matrix[1:]))
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert diagnostics["task"] == "register" and diagnostics["title"] == "Voice register CLTM"


def test_a_script_gets_absolute_paths_from_a_relative_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script runs in its own folder: relative paths of the caller's folder (a relative
    `cltm run PLAN`) reach it absolute, and metrics.json lands where the run reads it."""
    recipe, caller = tmp_path / "recipe", tmp_path / "caller"
    recipe.mkdir()
    (recipe / "h.yaml").write_text("seed: 0\n")
    (recipe / "train.py").write_text(
        "import json, sys, pathlib\n"
        "args = dict(a[2:].split('=', 1) for a in sys.argv[2:])\n"
        "for path in json.loads(args['train_csv']) + json.loads(args['test_csv']) + [args['extra']]:\n"
        "    open(path).close()  # the manifests (and a path-valued override) are readable from here\n"
        "assert pathlib.Path(args['data_root']).is_dir()\n"
        "out = pathlib.Path(args['output_folder']); out.mkdir(parents=True, exist_ok=True)\n"
        "evals = [{'locale': 'qaa', 'metric': 'macro_f1', 'value': 0.5, 'n_items': 1}]\n"
        "(out / 'metrics.json').write_text(json.dumps({'evaluations': evals}))\n"
    )
    (recipe / "task.yaml").write_text("name: rel\nrecipe: {script: train.py, hparams: h.yaml}\nmetric: macro_f1\n")
    for subset in ("a", "test"):
        manifest = caller / "data" / "qaa" / f"{subset}.csv"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(f"ID,duration,wav,spk_id,gender,locale,subset\nu1,1.0,x.wav,s1,female,qaa,{subset}\n")
    (caller / "extra.txt").write_text("x")
    monkeypatch.chdir(caller)
    overrides = {"train_csv": ["data/qaa/a.csv"], "test_csv": ["data/qaa/test.csv"], "seed": 1,
                 "output_folder": "runs/r1", "data_root": "data", "extra": "./extra.txt"}
    record = run_user_recipe(get_task(str(recipe / "task.yaml")), overrides)
    assert record.evaluations[0].value == 0.5
    assert (caller / "runs" / "r1" / METRICS_FILE).is_file()
    assert not (recipe / "runs").exists()  # no stray tree in the recipe's folder
