"""The report (Markdown + self-contained HTML), donor rankings, protocol detection and grid comparison."""

import io
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chromium_cdp import Chromium, chromium_path
from matplotlib import image as mpl_image

from cltm_sb.analysis.grid_analysis import (
    PROTOCOL_PER_CELL,
    PROTOCOL_SHARED,
    analyze_grid,
)
from cltm_sb.analysis.uncertainty import DIAGNOSTIC_NAMES, NO_VERDICT_FLAGGED
from cltm_sb.cli import main
from cltm_sb.languages import default_registry
from cltm_sb.report.document import difference, donor_ranking
from cltm_sb.report.write import write_comparison, write_report

from helpers import assert_golden, make_record, write_records

GOLDEN = Path(__file__).parent / "golden"

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
                    make_record(
                        [(x, "a"), (y, "a")],
                        {x: value[x]},
                        seed,
                        task=task,
                        run_id=f"p-{x}-{y}-{seed}",
                    )
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
    return analyze_grid(grid, registry)


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
    unc = analysis.uncertainty
    assert unc.seeds == list(range(6)) and unc.level == 0.95
    assert all(unc.diagnostics[k].lower is not None for k in ("rfd", "asymmetry", "row_cosine"))


def test_protocol_from_records_and_from_plan(tmp_path, registry):
    folder = write_records(
        tmp_path / "cell" / "records", grid_records(n_seeds=2, one_run_per_cell=True)
    )
    assert analyze_grid(tmp_path / "cell", registry).protocol == PROTOCOL_PER_CELL
    (tmp_path / "cell" / "plan.json").write_text(
        json.dumps({"task": "gr", "one_run_per_cell": False})
    )
    shared = analyze_grid(tmp_path / "cell", registry)
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
    assert (
        ranking["q_value"].notna().all()
        and (ranking.loc[ranking.verdict != "unclear", "q_value"] <= 0.05).all()
    )
    assert "interval_kind" not in ranking and "se" not in ranking


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
        "intervals.json",
        "diagnostics.json",
    ):
        assert (report_dir / name).is_file(), name
    assert not (report_dir / "bootstrap.json").exists()
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
    assert "variability: seed" in md and "plug-in (paper's Table 1)" in md
    assert "They do not account for which speakers were drawn" in md
    assert "BH q ≤ 0.05" in md
    diagnostics = json.loads((report_dir / "diagnostics.json").read_text())
    assert "delta method, runs assumed independent" in diagnostics["notes"]["cltm_se"]
    page = (report_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2  # the two heatmaps
    assert page.count('<svg class="forest"') == len(LOCALES)  # a donor forest plot per target
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing outside the page
    assert page.count('<table class="sortable">') >= 8
    # answers first: the sentences and the best donors come before the heatmap and the details
    assert md.index("## Answers") < md.index("## Heatmap") < md.index("## Diagnostics")
    assert "RFD (relative Frobenius deviation)" in md.split("## Heatmap")[0]
    assert page.count('<nav class="toc">') == 1 and 'href="#answers"' in page
    for name in ("table1.csv", "table1.tex", "donors.tex", "cltm.pdf", "cltm_subset.pdf"):
        assert (report_dir / name).is_file(), name
    assert not (report_dir / "forest").exists()  # forest plot files only with --forest-pdf
    donors = pd.read_csv(report_dir / "donors.csv")
    assert len(donors) == len(LOCALES) * (len(LOCALES) - 1)


def test_html_escapes_text(tmp_path, registry):
    from cltm_sb.report.document import Block
    from cltm_sb.report.render import render_html

    page = render_html([Block("text", "<script>alert(1)</script> & more")], "a<b")
    assert (
        "<script>alert(1)" not in page
        and "&lt;script&gt;" in page
        and "<title>a&lt;b</title>" in page
    )


def _contract_check(intervals: dict) -> None:
    """intervals.json as the issue states it: level, variability, one entry per diagnostic."""
    assert intervals["level"] == 0.95 and intervals["variability"] == "seed"
    assert set(DIAGNOSTIC_NAMES) <= set(intervals["diagnostics"])
    for name, d in intervals["diagnostics"].items():
        assert set(d) >= {"point", "lower", "upper", "plugin", "method", "reason"}, name
        assert (d["lower"] is None) == (d["upper"] is None), name
        if d["lower"] is None:
            assert d["reason"], f"{name}: no interval and no reason"
        else:
            assert d["lower"] <= d["point"] <= d["upper"] and not d["reason"], name


def test_intervals_json_follows_the_contract(report_dir, analysis):
    intervals = json.loads((report_dir / "intervals.json").read_text())
    _contract_check(intervals)
    diagnostics = json.loads((report_dir / "diagnostics.json").read_text())
    for name in DIAGNOSTIC_NAMES:
        # The paper's plug-in value is the one of diagnostics.json, beside the headline estimate.
        assert intervals["diagnostics"][name]["plugin"] == pytest.approx(diagnostics[name]), name
    assert intervals["diagnostics"]["rfd"]["lower"] is not None  # 6 seeds, strong self-gains


def test_three_seeds_give_every_diagnostic_a_reason_instead_of_an_interval(tmp_path, registry):
    folder = write_records(tmp_path / "records", grid_records(n_seeds=3))
    few = analyze_grid(folder, registry)
    write_report(few, registry, tmp_path / "out", heatmap=False)
    intervals = json.loads((tmp_path / "out" / "intervals.json").read_text())
    _contract_check(intervals)
    for name, d in intervals["diagnostics"].items():
        assert d["lower"] is None and d["upper"] is None and d["reason"], name
        assert d["point"] == d["plugin"], name  # no bias correction below 4 seeds
    md = (tmp_path / "out" / "report.md").read_text()
    assert "n/a: 3 seed(s): bias correction and intervals need at least 4" in md
    assert not (tmp_path / "out" / "cltm.png").exists()


def test_donors_csv_has_q_values_and_flagged_targets_get_no_verdict(tmp_path, registry):
    records = grid_records()
    # en's self run is no better than its single run beyond noise: en is flagged.
    rng = np.random.default_rng(1)
    for r in records:
        if r.kind == "self" and r.evaluations[0].locale == "en":
            r.evaluations[0].value = 0.6 + 0.004 + rng.normal(0, 0.004)
    folder = write_records(tmp_path / "records", records)
    flagged = analyze_grid(folder, registry)
    assert flagged.result.flagged_targets == ["en"]
    write_report(flagged, registry, tmp_path / "out", heatmap=False)
    donors = pd.read_csv(tmp_path / "out" / "donors.csv", keep_default_na=False, na_values=[""])
    assert list(donors.columns) == [
        "rank", "target", "donor", "value", "lower", "upper", "verdict", "q_value", "reason",
        "p_best", "rank_lower", "rank_upper", "in_best_set",
    ]  # fmt: skip
    ranked = donors[donors.target != "en"]
    assert (ranked.groupby("target").p_best.sum().round(6) == 1.0).all()
    assert ranked.groupby("target").in_best_set.any().all()
    en = donors[donors.target == "en"]
    assert (en.verdict == "n/a").all() and (en.reason == NO_VERDICT_FLAGGED).all()
    assert en.q_value.isna().all() and en.lower.isna().all() and en.upper.isna().all()
    others = donors[donors.target != "en"]
    assert others.q_value.notna().all() and set(others.verdict) <= {"helps", "hurts", "unclear"}
    called = others[others.verdict != "unclear"]
    assert len(called) and (called.q_value <= 0.05).all()
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"n/a: {NO_VERDICT_FLAGGED}" in md


def test_donors_say_when_a_pair_run_did_not_finish_every_seed(tmp_path, registry):
    # The es+fr pair run finished seeds 4 and 5 only: its M and P(best) rest on those two.
    records = [
        r for r in grid_records() if not (r.kind == "pair" and r.seed < 4 and
                                          {e.locale for e in r.evaluations} == {"es", "fr"})
    ]  # fmt: skip
    write_report(analyze_grid(write_records(tmp_path / "records", records), registry),
                 registry, tmp_path / "out", heatmap=False)  # fmt: skip
    donors = pd.read_csv(tmp_path / "out" / "donors.csv", keep_default_na=False)
    reason = donors.set_index(["target", "donor"])["reason"]
    assert reason[("es", "fr")] == reason[("fr", "es")] == "pair run finished 2 of 6 seeds"
    assert (reason.drop([("es", "fr"), ("fr", "es")]) == "").all()
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("Not every pair run finished every seed (fr: pair run finished 2 of 6 seeds)") == 1
    assert md.count("Not every pair run finished every seed (es: pair run finished 2 of 6 seeds)") == 1


def test_heatmap_cells_say_why_they_are_undefined(tmp_path, registry):
    from cltm_sb.report.document import cell_hover, cell_table
    from cltm_sb.report.render import render_heatmap

    from helpers import known_grid

    # known_grid: es's self-gain is <= 0 (row NaN) and the pair en+fr is missing (M[en, fr] NaN).
    analysis = analyze_grid(write_records(tmp_path / "records", known_grid()), registry)
    cells = cell_table(analysis, registry)
    at = {c: k for k, c in enumerate(cells.codes)}
    es, en, fr = at["es"], at["en"], at["fr"]
    assert "self-gain G_self" in cell_hover(cells, es, en)
    assert "no finished pair (en ∪ fr)" in cell_hover(cells, en, fr)
    # es's diagonal is NaN, not "M = 1 by definition", and is drawn as undefined, not grey.
    assert "by definition" not in cell_hover(cells, es, es)
    assert "row undefined: self-gain G_self" in cell_hover(cells, es, es)
    html_cells = render_heatmap(cells)
    assert 'class="diag" data-target="es"' not in html_cells
    assert 'class="diag" data-target="en"' in html_cells


def test_donors_csv_gives_each_undefined_cell_its_own_reason(tmp_path, registry):
    from helpers import known_grid

    # known_grid: es's self-gain is <= 0 (row NaN) and the pair en+fr is missing (M[en, fr] NaN).
    donors = analyze_grid(write_records(tmp_path / "records", known_grid()), registry).donors
    reason = donors.set_index(["target", "donor"])["reason"]
    assert reason[("es", "en")].startswith("row undefined: self-gain G_self")
    assert reason[("en", "fr")].startswith("cell undefined: no finished pair (en ∪ fr)")
    assert not donors["reason"].str.contains("see the NaN reasons").any()


def test_report_builds_and_diagnoses_the_matrix_once(grid, registry, tmp_path, monkeypatch):
    import cltm_sb.analysis.grid_analysis as ga
    import cltm_sb.analysis.uncertainty as unc

    calls = {"build_cltm": 0, "diagnose": 0, "plugins": 0}

    def counted(module, name, key):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(ga, "build_cltm", "build_cltm")
    counted(ga, "diagnose", "diagnose")
    counted(unc, "plug_in_diagnostics", "plugins")
    assert main(["report", str(grid), "-o", str(tmp_path / "r"), "--no-heatmap"]) == 0
    assert calls == {"build_cltm": 1, "diagnose": 1, "plugins": 0}


def test_compare_two_grids(tmp_path, analysis, registry):
    other = write_records(tmp_path / "b", grid_records(scale=0.5, task="sv"))
    b = analyze_grid(other, registry)
    diff, se = difference(analysis, b)
    expected = analysis.result.matrix - b.result.matrix
    pd.testing.assert_frame_equal(diff, expected.loc[diff.index, diff.columns])
    assert (se.to_numpy()[~np.eye(4, dtype=bool)] > 0).all()
    written = write_comparison(analysis, b, registry, tmp_path / "cmp", labels=("GR", "SV"))
    page = written["html"].read_text()
    assert "Difference matrix GR − SV" in page and page.count("data:image/png;base64,") == 1
    assert "variability: seed" in page
    assert (tmp_path / "cmp" / "difference.csv").is_file()
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    for label in ("GR", "SV"):
        _contract_check(summary[label]["intervals"])
        assert "bootstrap" not in summary[label]
    differences = summary["difference"]
    assert set(differences["diagnostics"]) >= {"rfd", "asymmetry", "row_cosine"}
    assert "independent" in differences["variability"] and differences["cells"]
    # The page shows the differences' intervals that compare.json holds (it once said there were none).
    markdown = written["markdown"].read_text()
    assert "| GR − SV | 95% interval |" in markdown and "not computed here" not in markdown
    rfd = differences["diagnostics"]["rfd"]
    assert f"| {rfd['point']:.3f} | [{rfd['lower']:.3f}, {rfd['upper']:.3f}] |" in markdown
    assert "Cells that differ (BH q < 0.05" in markdown or "No shared cell differs" in markdown


def test_compared_cells_say_which_grid_leaves_them_undefined_and_why(tmp_path, analysis, registry):
    from cltm_sb.analysis.compare import cell_differences

    from helpers import known_grid

    # known_grid: es's self-gain is <= 0 (row NaN) and the pair en+fr is missing (M[en, fr] NaN).
    known = analyze_grid(write_records(tmp_path / "records", known_grid()), registry)
    cells = cell_differences(analysis.uncertainty, known.uncertainty).set_index(["target", "donor"])
    assert cells.loc[("en", "fr"), "reason"].startswith("grid B: cell undefined: no finished pair (en ∪ fr)")
    assert cells.loc[("es", "en"), "reason"].startswith("grid B: row undefined: self-gain G_self")


def test_a_report_into_a_used_folder_leaves_no_file_of_the_last_one(tmp_path, analysis, registry):
    out = tmp_path / "r"
    write_report(analysis, registry, out, forest_pdf=True)
    (out / "stale.csv").write_text("from an older cltm")  # not ours: kept
    assert list((out / "forest").glob("*.pdf"))
    written = write_report(analysis, registry, out, heatmap=False)
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert "forest" not in names and "cltm.png" not in names and {"stale.csv", "report.md"} <= names
    assert written["markdown"] == out / "report.md"


def test_a_report_written_into_the_grid_it_reads_keeps_the_grid(tmp_path, capsys):
    grid = tmp_path / "sim"
    assert main(["simulate", "-o", str(grid), "--languages", "4", "--n-seeds", "4"]) == 0
    records = sorted(p.name for p in (grid / "records").iterdir())
    assert main(["report", str(grid), "-o", str(grid), "--no-heatmap"]) == 0
    assert main(["report", str(grid), "-o", str(grid), "--no-heatmap"]) == 0  # again: still readable
    assert sorted(p.name for p in (grid / "records").iterdir()) == records
    assert (grid / "truth.csv").is_file() and (grid / "simulation.json").is_file()


def test_cli_report_and_compare(grid, tmp_path, capsys):
    assert (
        main(
            [
                "report",
                str(grid),
                "-o",
                str(tmp_path / "r"),
                "--subset",
                "paper",
                "--forest-pdf",
            ]
        )
        == 0
    )
    for name in ("forest/de.pdf", "forest/de.png", "table1.tex", "donors.tex"):
        assert (tmp_path / "r" / name).is_file(), name
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
                "--labels",
                "x,y",
            ]
        )
        == 0
    )
    assert "compare.html" in capsys.readouterr().out
    # the retired bootstrap's options still parse, do nothing, and say so
    assert (
        main(
            ["report", str(grid), "-o", str(tmp_path / "old"), "--bootstrap", "20", "--no-heatmap"]
        )
        == 0
    )
    assert "--bootstrap: obsolete and ignored" in capsys.readouterr().err
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
    assert dom.count('<table class="sortable">') >= 8 and "Which languages should I add?" in dom
    # the check itself sees a broken image
    page = (report_dir / "report.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(
        re.sub(r'src="data:image/png;base64,[^"]*"', 'src="missing.png"', page, count=1)
    )
    dom = _dump_dom(broken, tmp_path / "profile2")
    assert 'data-images-loaded="1/2"' in dom and 'class="broken"' in dom


def test_simulate_then_report_writes_the_contract(tmp_path, capsys):
    """`cltm simulate` writes a grid that `cltm report` and `cltm matrix` read."""
    grid = tmp_path / "sim"
    args = ["--languages", "4", "--n-seeds", "5", "--z", "20", "--seed", "3"]
    assert main(["simulate", "-o", str(grid), *args]) == 0
    assert "cltm report" in capsys.readouterr().out
    settings = json.loads((grid / "simulation.json").read_text())
    assert settings["n_records"] == 5 * (4 + 4 + 6)  # shared pair runs: L(L+3)/2 per seed
    assert set(settings["true_diagnostics"]) == set(DIAGNOSTIC_NAMES)
    families = ["--families", str(grid / "families.csv")]
    out = tmp_path / "report"
    assert main(["report", str(grid), "-o", str(out), "--no-heatmap", *families]) == 0
    intervals = json.loads((out / "intervals.json").read_text())
    _contract_check(intervals)
    assert intervals["n_seeds"] == 5 and intervals["diagnostics"]["rfd"]["lower"] is not None
    assert (
        main(
            [
                "matrix",
                str(grid),
                "--task",
                "gr",
                "-o",
                str(tmp_path / "m"),
                "--no-heatmap",
                *families,
            ]
        )
        == 0
    )
    truth = pd.read_csv(grid / "truth.csv", index_col=0)
    built = pd.read_csv(tmp_path / "m" / "cltm.csv", index_col=0)
    assert np.abs(built.to_numpy() - truth.to_numpy()).max() < 0.5  # z = 20: close to the truth
    # a second simulation into the same folder would mix two grids
    assert main(["simulate", "-o", str(grid), *args]) == 2
    assert "already holds run records" in capsys.readouterr().err


def test_simulate_from_a_truth_csv_per_cell(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text(",en,es,fr\nen,1,0.5,0.2\nes,0.1,1,0.9\nfr,0.3,0.8,1\n")
    grid = tmp_path / "sim"
    assert main(["simulate", "-o", str(grid), "--truth", str(truth), "--n-seeds", "3",
                 "--protocol", "per-cell"]) == 0  # fmt: skip
    families = pd.read_csv(grid / "families.csv")
    assert list(families.code) == ["en", "es", "fr"] and families.name[0] == "English"
    analysis = analyze_grid(grid, default_registry())
    assert analysis.protocol == PROTOCOL_PER_CELL and analysis.uncertainty.seeds == [42, 43, 44]


def test_answers_show_formal_tests_when_intervals_json_has_them():
    from cltm_sb.report.document import formal_test_phrases

    tests = {
        "agnostic": {"null": "M = J: every donor helps ...", "p_value": 1e-6, "reason": ""},
        "symmetric": {"null": "M = Mᵀ: ...", "p_value": 0.3, "reason": ""},
        "equal_profiles": {"null": "M[t, s] = c_s", "p_value": None, "reason": "2 seed(s)"},
    }
    assert formal_test_phrases(tests, 0.05) == {
        "agnostic": "H0 M = J rejected at the 0.05 level (p < 0.0001)",
        "symmetric": "H0 M = Mᵀ not rejected at the 0.05 level (p = 0.3)",
        "equal_profiles": "H0 M[t, s] = c_s not tested (2 seed(s))",
    }
    assert formal_test_phrases(None, 0.05) == {}  # no "tests" entry: the sentences go without them


def _markdown_tables(md: str, source: str) -> str:
    """Every Markdown table of a report, each under the heading it belongs to; ``source``
    (a temporary path) is replaced by a fixed name so that the text is reproducible."""
    out, heading = [], ""
    for line in md.replace(source, "<grid>").splitlines():
        if line.startswith("#"):
            heading = line
        elif line.startswith("|"):
            if heading:
                out += ["", heading]
                heading = ""
            out.append(line)
    return "\n".join(out).lstrip("\n") + "\n"


def test_markdown_tables_match_the_golden_file(report_dir, grid):
    """All tables of report.md for the fixed 4-language, 6-seed grid of this module."""
    md = (report_dir / "report.md").read_text()
    assert_golden(GOLDEN / "report_tables_gr4.md", _markdown_tables(md, str(grid)))


@pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium not installed (Debian package chromium; .ci/run installs it in CI as root)",
)
def test_report_in_headless_chromium_hover_sort_and_screenshot(report_dir, analysis, tmp_path):
    n_images = 2
    with Chromium(tmp_path / "profile") as browser:
        browser.open(report_dir / "report.html")
        assert browser.evaluate("document.body.getAttribute('data-images-loaded')") == (
            f"{n_images}/{n_images}"
        )
        # the first screen holds the answers (sentences with intervals)
        assert browser.evaluate(
            "document.querySelector('ul.answers').getBoundingClientRect().top < window.innerHeight"
        )
        # every heatmap cell is an element that carries its value and interval
        cells = browser.evaluate(
            "Array.from(document.querySelectorAll('table.heatmap td[data-value]'))"
            ".map(td => [td.dataset.target, td.dataset.donor, td.dataset.value,"
            " td.dataset.lower, td.dataset.upper, td.dataset.seeds])"
        )
        assert len(cells) == len(LOCALES) ** 2
        donors = analysis.donors.set_index(["target", "donor"])
        for t, s, value, lower, upper, seeds in cells:
            if t == s:
                continue
            assert float(value) == pytest.approx(analysis.result.matrix.loc[t, s], abs=1e-12)
            assert float(lower) == pytest.approx(donors.loc[(t, s), "lower"], abs=1e-12)
            assert float(upper) == pytest.approx(donors.loc[(t, s), "upper"], abs=1e-12)
            assert int(float(seeds)) == 6
        # each forest plot is drawn in the page, one element per donor with its numbers
        forest = browser.evaluate(
            "Array.from(document.querySelectorAll('svg.forest g.donor'))"
            ".map(g => [g.dataset.donor, g.dataset.value, g.querySelector('title').textContent])"
        )
        assert len(forest) == len(LOCALES) * (len(LOCALES) - 1)
        assert all(title.startswith(f"{donor} → ") for donor, _, title in forest)
        assert browser.evaluate(
            "Array.from(document.querySelectorAll('svg.forest')).every(s => s.getBBox().height > 50)"
        )
        # hovering a cell shows its value, interval, q-value and seed count
        x, y = browser.evaluate(
            "(() => { const td = document.querySelector('td[data-target=\"es\"][data-donor=\"fr\"]');"
            " td.scrollIntoView({block: 'center'}); const b = td.getBoundingClientRect();"
            " return [b.x + b.width / 2, b.y + b.height / 2]; })()"
        )
        browser.hover(x, y)
        tip = browser.evaluate("document.getElementById('cell-tip').textContent")
        assert tip.startswith("fr → es: M = ") and "95% interval [" in tip
        assert "q = " in tip and "6 seeds" in tip
        assert f"{analysis.result.matrix.loc['es', 'fr']:.3f}" in tip
        # a table sorts by a column, both ways
        column = (
            "Array.from(document.querySelectorAll('table.sortable')).find(t =>"
            " t.tHead.rows[0].cells[1].textContent.startsWith('M'))"
        )
        header = browser.evaluate(
            f"(() => {{ const th = {column}.tHead.rows[0].cells[1]; th.scrollIntoView({{block: 'center'}});"
            " const b = th.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; })()"
        )
        values = f"Array.from({column}.tBodies[0].rows).map(r => parseFloat(r.cells[1].textContent.replace('\\u2212', '-')))"
        browser.click(*header)
        ascending = browser.evaluate(values)
        assert ascending == sorted(ascending) and len(ascending) >= 2
        browser.click(*header)
        assert browser.evaluate(values) == sorted(ascending, reverse=True)
        # the page is not blank
        browser.evaluate("window.scrollTo(0, 0)")
        pixels = mpl_image.imread(io.BytesIO(browser.screenshot()), format="png")
        assert pixels.std() > 0.05 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50
        assert browser.console == [], browser.console
        # the driver does see a page's errors
        bad = tmp_path / "bad.html"
        bad.write_text("<html><body><script>console.error('boom'); undefined_call();</script></body></html>")
        browser.open(bad)
        assert any("boom" in m for m in browser.console) and any("undefined_call" in m for m in browser.console)


def test_forest_plot_of_a_target_without_any_bounded_interval(tmp_path, registry):
    """Two noisy seeds (as in the quick demo): no donor has a bounded interval, so donors.csv's
    bounds are all empty; the page still draws every forest plot."""
    folder = write_records(tmp_path / "records", grid_records(n_seeds=2, noise=0.05))
    two = analyze_grid(folder, registry)
    assert two.donors["lower"].isna().all()
    written = write_report(two, registry, tmp_path / "out", heatmap=False)
    page = written["html"].read_text()
    assert page.count('<svg class="forest"') == len(LOCALES)
    assert 'data-lower=""' in page and "stroke-dasharray" in page  # unbounded: dotted line


def test_a_helper_without_a_bounded_interval_is_not_listed_as_a_significant_helper(tmp_path, capsys):
    # Two seeds: a cell can pass BH while its Fieller interval is unbounded (the table's note
    # defines a significant helper as both).
    grid, out = tmp_path / "sim", tmp_path / "r"
    assert main(["simulate", "-o", str(grid), "--languages", "3", "--n-seeds", "2", "--z", "10", "--seed", "5"]) == 0
    assert main(["report", str(grid), "-o", str(out), "--no-heatmap"]) == 0
    donors = pd.read_csv(out / "donors.csv")
    unbounded_helpers = donors[(donors["verdict"] == "helps") & donors["lower"].isna()]
    assert len(unbounded_helpers)  # the case this test is about
    page = (out / "report.md").read_text()
    table = page.split("### Best donors per target")[1].split("\n\n#")[0]
    for row in unbounded_helpers.itertuples():
        assert f"{row.donor} {row.value:.3f} n/a" not in table
    assert "q ≤ 0.05 but an unbounded interval" in table


def test_the_sentence_on_left_out_entries_names_them():
    # It said "2 NaN entries" without which: the reader had to open diagnostics.json.
    from cltm_sb.report.document import MAX_NAMED_ENTRIES, excluded_blocks

    few = excluded_blocks({"excluded": {"rows": ["ca"], "entries": [["en", "de"], ["de", "fr"]]}})
    assert few[0].content == "Left out of the diagnostics: rows ca; 2 NaN entries: en←de, de←fr."
    many = [["en", f"x{i:02d}"] for i in range(MAX_NAMED_ENTRIES + 3)]
    text = excluded_blocks({"excluded": {"rows": [], "entries": many}}, " (reasons below)")[0].content
    assert text.endswith("en←x11 and 3 more (diagnostics.json lists them) (reasons below).")
    assert excluded_blocks({"excluded": {"rows": [], "entries": []}}) == []
