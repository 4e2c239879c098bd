"""The report (Markdown + self-contained HTML), donor rankings, protocol detection and grid comparison."""

import itertools
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from cltm_sb.cli import main
from cltm_sb.languages import default_registry
from cltm_sb.report import (
    PROTOCOL_PER_CELL,
    PROTOCOL_SHARED,
    analyze_grid,
    difference,
    donor_ranking,
    write_comparison,
    write_report,
)

from helpers import make_record, write_records

LOCALES = ["de", "en", "es", "fr"]
# M[t, s]: es and fr help each other, de hurts es.
TRUE_M = {
    ("de", "en"): 0.8,
    ("de", "es"): 0.1,
    ("de", "fr"): 0.2,
    ("en", "de"): 0.7,
    ("en", "es"): 0.3,
    ("en", "fr"): 0.4,
    ("es", "de"): -0.6,
    ("es", "en"): 0.2,
    ("es", "fr"): 0.9,
    ("fr", "de"): 0.1,
    ("fr", "en"): 0.3,
    ("fr", "es"): 0.95,
}


def grid_records(n_seeds=6, scale=1.0, one_run_per_cell=False, task="gr", noise=0.004):
    rng = np.random.default_rng(0)
    records = []
    for seed in range(n_seeds):
        for t in LOCALES:
            records.append(
                make_record([(t, "a")], {t: 0.6 + rng.normal(0, noise)}, seed, task=task)
            )
            records.append(
                make_record([(t, "a"), (t, "b")], {t: 0.7 + rng.normal(0, noise)}, seed, task=task)
            )
        for t, s in itertools.combinations(LOCALES, 2):
            value = {
                x: 0.6 + 0.1 * scale * TRUE_M[(x, y)] + rng.normal(0, noise)
                for x, y in ((t, s), (s, t))
            }
            if one_run_per_cell:
                records += [
                    make_record([(x, "a"), (y, "a")], {x: value[x]}, seed, task=task, run_id=f"p-{x}-{y}-{seed}")
                    for x, y in ((t, s), (s, t))
                ]
            else:
                records.append(make_record([(t, "a"), (s, "a")], value, seed, task=task))
    return records


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("grid") / "records", grid_records())


@pytest.fixture(scope="module")
def analysis(grid, registry):
    return analyze_grid(grid, registry, n_replicates=60, rng_seed=0)


@pytest.fixture(scope="module")
def report_dir(analysis, registry, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    write_report(analysis, registry, out, subset=["es", "fr", "en"])
    return out


def test_analysis_infers_task_and_protocol(analysis):
    assert analysis.task == "gr" and analysis.metric == "macro_f1"
    assert analysis.protocol == PROTOCOL_SHARED
    assert analysis.protocol_source == "inferred from the records"
    assert analysis.result.matrix.loc["es", "fr"] == pytest.approx(0.9, abs=0.1)
    assert analysis.bootstrap.available


def test_protocol_from_records_and_from_plan(tmp_path, registry):
    folder = write_records(
        tmp_path / "cell" / "records", grid_records(n_seeds=2, one_run_per_cell=True)
    )
    assert analyze_grid(tmp_path / "cell", registry, n_replicates=0).protocol == PROTOCOL_PER_CELL
    (tmp_path / "cell" / "plan.json").write_text(
        json.dumps({"task": "gr", "one_run_per_cell": False})
    )
    shared = analyze_grid(tmp_path / "cell", registry, n_replicates=0)
    assert (shared.protocol, shared.protocol_source) == (PROTOCOL_SHARED, "plan.json")
    assert folder.is_dir()


def test_donor_ranking_answers_which_languages_to_add(analysis):
    ranking = donor_ranking(analysis, "es")
    assert list(ranking["donor"]) == ["fr", "en", "de"]
    assert list(ranking["rank"]) == [1, 2, 3]
    verdict = dict(zip(ranking["donor"], ranking["verdict"]))
    assert verdict["fr"] == "helps" and verdict["de"] == "hurts"
    assert (ranking["lower"] <= ranking["value"]).all() and (
        ranking["value"] <= ranking["upper"]
    ).all()
    assert set(ranking["interval_kind"]) == {"bootstrap"}


def test_report_files_and_content(report_dir):
    for name in (
        "report.html",
        "report.md",
        "cltm.png",
        "cltm_subset.png",
        "cltm.csv",
        "cltm_se.csv",
        "gains.csv",
        "donors.csv",
        "bootstrap.json",
        "diagnostics.json",
    ):
        assert (report_dir / name).is_file(), name
    md = (report_dir / "report.md").read_text()
    assert "![CLTM, all languages](cltm.png)" in md
    assert "protocol: shared pair runs" in md
    for heading in (
        "Diagnostics (paper Table 1)",
        "Stability (paper §4.4)",
        "Self-gains",
        "Top pairs",
        "Which languages should I add?",
    ):
        assert heading in md
    page = (report_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r'src="(?!data:)', page)  # nothing outside the page
    assert page.count("<table>") >= 8
    donors = pd.read_csv(report_dir / "donors.csv")
    assert len(donors) == len(LOCALES) * (len(LOCALES) - 1)


def test_html_escapes_text(tmp_path, registry):
    from cltm_sb.report import _Block, render_html

    page = render_html([_Block("text", "<script>alert(1)</script> & more")], "a<b")
    assert (
        "<script>alert(1)" not in page
        and "&lt;script&gt;" in page
        and "<title>a&lt;b</title>" in page
    )


def test_below_five_seeds_intervals_are_na(tmp_path, registry):
    folder = write_records(tmp_path / "records", grid_records(n_seeds=3))
    few = analyze_grid(folder, registry, n_replicates=50)
    assert not few.bootstrap.available
    write_report(few, registry, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "95% intervals: n/a (3 seed(s): intervals need at least 5)" in md
    ranking = donor_ranking(few, "es")
    assert set(ranking["interval_kind"]) == {"±1.96 SE"}


def test_compare_two_grids(tmp_path, analysis, registry):
    other = write_records(tmp_path / "b", grid_records(scale=0.5, task="sv"))
    b = analyze_grid(other, registry, n_replicates=0)
    diff, se = difference(analysis, b)
    expected = analysis.result.matrix - b.result.matrix
    pd.testing.assert_frame_equal(diff, expected.loc[diff.index, diff.columns])
    assert (se.to_numpy()[~np.eye(4, dtype=bool)] > 0).all()
    written = write_comparison(analysis, b, registry, tmp_path / "cmp", labels=("GR", "SV"))
    page = written["html"].read_text()
    assert "Difference matrix GR − SV" in page and page.count("data:image/png;base64,") == 1
    assert (tmp_path / "cmp" / "difference.csv").is_file()


def test_cli_report_and_compare(grid, tmp_path, capsys):
    assert (
        main(
            [
                "report",
                str(grid),
                "-o",
                str(tmp_path / "r"),
                "--bootstrap",
                "20",
                "--subset",
                "paper",
            ]
        )
        == 0
    )
    assert (tmp_path / "r" / "report.html").is_file() and (
        tmp_path / "r" / "cltm_subset.png"
    ).is_file()
    assert (
        main(
            [
                "compare",
                str(grid),
                str(grid),
                "-o",
                str(tmp_path / "c"),
                "--bootstrap",
                "0",
                "--labels",
                "x,y",
            ]
        )
        == 0
    )
    assert "compare.html" in capsys.readouterr().out
    assert main(["report", str(grid), "-o", str(tmp_path / "bad"), "--subset", "en,xx"]) == 2


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _dump_dom(page, profile) -> str:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.mark.skipif(
    _chromium() is None,
    reason="chromium not installed (Debian package chromium; .ci/run installs it in CI as root)",
)
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    dom = _dump_dom(report_dir / "report.html", tmp_path / "profile")
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded, "the page's load handler did not run"
    assert loaded.group(1) == loaded.group(2) == "2"
    assert 'class="broken"' not in dom
    assert dom.count("<table>") >= 8 and "Which languages should I add?" in dom
    # the check itself sees a broken image
    page = (report_dir / "report.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(
        re.sub(r'src="data:image/png;base64,[^"]*"', 'src="missing.png"', page, count=1)
    )
    dom = _dump_dom(broken, tmp_path / "profile2")
    assert 'data-images-loaded="1/2"' in dom and 'class="broken"' in dom
