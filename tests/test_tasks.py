"""Task declarations (cltm_sb.tasks): the packaged three, YAML files, entry points, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cltm_sb import tasks as T
from cltm_sb.tasks import Task, TaskError, get_task, load_task_file, task_from_mapping

REPO = Path(__file__).resolve().parent.parent


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_packaged_tasks_are_declarations_with_the_old_table_values() -> None:
    assert T.task_names() == ["age", "gr", "sv"]
    gr, sv, age = get_task("gr"), get_task("sv"), get_task("age")
    assert (gr.recipe, gr.metric, gr.clips_per_speaker, gr.trials) == ("gender", "macro_f1", 1, False)
    assert (sv.recipe, sv.metric, sv.clips_per_speaker, sv.trials) == ("speaker", "auc", 10, True)
    assert (gr.title, sv.title) == ("Gender recognition", "Speaker verification")
    assert age.label_key == "age_band" and age.label_classes == ("30to49", "50plus", "under30")
    assert age.balance == ("age_band",) and gr.balance == sv.balance == ("gender",)
    for task in (gr, sv, age):
        assert task_from_mapping(task.to_dict()) == task  # what a plan stores reads back the same


def test_a_task_yaml_of_ones_own_loads_with_paths_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "my.yaml").write_text("seed: 0\n")
    path = _write(tmp_path / "eer_task.yaml", """
name: accent-eer
recipe: {script: train.py, hparams: my.yaml}
metric: eer
higher_is_better: false
label: {column: accent, classes: [a, b, c]}
balance: gender
""")
    task = get_task(str(path))
    assert task.name == "accent-eer" and task.title == "accent-eer" and not task.packaged
    assert task.script == str(tmp_path / "train.py") and task.hparams == str(tmp_path / "my.yaml")
    # A lower-is-better metric enters the CLTM as 1 - value by default: gains stay "more is better".
    assert task.transform == "one_minus" and task.cltm_metric == "1-eer"
    assert task.to_cltm(0.2) == pytest.approx(0.8)
    assert task.balance == ("gender",)
    negated = task_from_mapping({**task.to_dict(), "transform": "negate"})
    assert negated.cltm_metric == "-eer" and negated.to_cltm(0.2) == pytest.approx(-0.2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nrecipe: gender\nmetric: f1\ncolour: red\n", "unknown key(s) ['colour']"),
        ("name: x\nrecipe: gender\n", "set 'metric'"),
        ("name: 9x\nrecipe: gender\nmetric: f1\n", "must start with a letter"),
        ("name: x\nrecipe: nosuch\nmetric: f1\n", "recipe 'nosuch' is not a packaged recipe (age, gender, speaker)"),
        ("name: x\nrecipe: {script: missing.py, hparams: h.yaml}\nmetric: f1\n", "recipe.script 'missing.py': file"),
        ("name: x\nrecipe: {function: nocolon}\nmetric: f1\n", "'package.module:function'"),
        ("name: x\nrecipe: {function: 'a:b', script: t.py}\nmetric: f1\n", "exactly one of 'script'"),
        ("name: x\nrecipe: gender\nmetric: eer\nhigher_is_better: false\ntransform: none\n", "needs a transform"),
        ("name: x\nrecipe: gender\nmetric: f1\ntransform: log\n", "transform 'log'; valid: none, one_minus, negate"),
        ("name: x\nrecipe: gender\nmetric: f1\nlabel: {column: c, classes: [b, a]}\n", "must be sorted (['a', 'b'])"),
        ("name: x\nrecipe: gender\nmetric: f1\nlabel: {column: c, classes: [a]}\n", "two or more distinct"),
        ("name: x\nrecipe: gender\nmetric: f1\ntrials: maybe\n", "trials must be true or false"),
        ("name: x\nrecipe: gender\nmetric: f1\nclips_per_speaker: 0\n", "clips_per_speaker must be"),
        ("name: x\n recipe: gender\n", "YAML syntax error"),
    ],
)
def test_a_bad_declaration_names_the_file_and_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(TaskError, match=re.escape(str(path))) as info:
        load_task_file(path)
    assert message in str(info.value)


def test_an_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(TaskError, match=r"unknown task 'emotion'; valid tasks: age, gr, sv, or the path"):
        get_task("emotion")
    with pytest.raises(TaskError, match="not found"):
        get_task("no/such/task.yaml")


class _Entry:
    """An entry point as importlib.metadata gives it."""

    def __init__(self, value: str, loaded: object) -> None:
        self.value, self._loaded = value, loaded

    def load(self) -> object:
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


def test_other_packages_declare_tasks_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = _write(tmp_path / "lid.yaml", "name: lid\nrecipe: gender\nmetric: macro_f1\nlabel: {column: lang}\n")
    entries = {
        "emotion": _Entry("pkg:EMOTION", {"name": "emotion", "recipe": "gender", "metric": "accuracy"}),
        "lid": _Entry("pkg:LID_YAML", str(yaml)),
        "obj": _Entry("pkg:OBJ", Task("obj", "Object", "auc", recipe="speaker", trials=True)),
        "broken": _Entry("pkg:BROKEN", ImportError("no module named pkg")),
        "liar": _Entry("pkg:LIAR", {"name": "other", "recipe": "gender", "metric": "f1"}),
    }
    monkeypatch.setattr(T, "_entry_points", lambda: entries)
    assert T.task_names() == ["age", "broken", "emotion", "gr", "liar", "lid", "obj", "sv"]
    assert get_task("emotion").metric == "accuracy"
    assert get_task("lid").label_key == "lang"
    assert get_task("obj").trials
    with pytest.raises(TaskError, match=r"entry point 'broken' of group cltm_sb.tasks \(pkg:BROKEN\): cannot load"):
        get_task("broken")
    with pytest.raises(TaskError, match="declares task 'other', not 'liar'"):
        get_task("liar")


def test_no_task_specific_branch_is_left_in_grid_analysis_report_and_runner() -> None:
    """Every task-specific choice is in the declarations: no code compares a task to gr or sv."""
    pattern = re.compile(r"""(task|name)\s*[!=]=\s*["'](gr|sv)["']|in TRIALS_TASKS|["'](gr|sv)["']\s*:""")
    folders = ["grid", "analysis", "report", "recipe", "data"]
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in folders
        for path in sorted((REPO / "cltm_sb" / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []
