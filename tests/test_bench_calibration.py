"""bench/bench_calibration.py's grids with lost seeds (--lost-seeds): the code path stays alive.

The coverage itself is measured by the benchmark (bench/RESULTS.md, "Cells with missing seeds").
"""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_calibration():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_calibration

        yield bench_calibration
    finally:
        sys.path.remove(str(BENCH))


def test_lost_seed_settings_cover_both_truths_and_seed_counts(bench_calibration):
    chosen = bench_calibration.lost_seed_settings([0.1, 0.3], languages=(6,))
    assert {(s.truth, s.n_seeds, s.lost) for s in chosen} == {
        (t, n, p) for t in ("near-agnostic", "structured") for n in (5, 10) for p in (0.1, 0.3)
    }
    assert all(s.experiments >= 100 and not s.headline and "lost=" in s.label for s in chosen)
    # A complete grid keeps its label, which seeds its experiments.
    assert "lost" not in bench_calibration.Setting("structured", 6, 5).label


def test_lost_seeds_run_reports_cell_and_self_gain_coverage(bench_calibration, tmp_path, monkeypatch):
    out = tmp_path / "lost.md"
    argv = ["bench_calibration.py", "--lost-seeds", "0.3", "--languages", "4"]
    argv += ["--experiments", "3", "--workers", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench_calibration.main()
    text = out.read_text(encoding="utf-8")
    assert "--lost-seeds 0.3" in text and "before" not in text.split("\n", 3)[3]
    rows = [line.split(" | ") for line in text.splitlines() if "lost=0.3 |" in line]
    labels = {r[0].lstrip("| ") for r in rows}
    assert len(labels) == 4  # 2 truths x 5 and 10 seeds
    for interval in ("cells", "self-gain"):
        coverages = [float(r[3]) for r in rows if r[2] == interval]
        assert len(coverages) == 4 and all(0 <= c <= 100 for c in coverages), interval


def test_a_cell_without_an_interval_is_not_counted_as_missed(bench_calibration):
    sel = np.array([True, True, True, False])
    lower = np.array([0.0, np.nan, -np.inf, 0.0])
    upper = np.array([2.0, np.nan, np.inf, 0.5])
    got = bench_calibration._coverage("cells", sel, lower, upper, np.ones(4), np.ones(4))["cells"]
    assert got["covered"] == 1.0 and got["n"] == 2
    assert got["bounded"] == pytest.approx(1 / 3)
