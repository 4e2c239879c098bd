"""Audit designs and the design-based intervals of a completed CLTM's diagnostics (issue 19)."""

import json

import numpy as np
import pandas as pd
import pytest

from cltm_sb.analysis.completion import (
    NO_AUDIT,
    complete_matrix,
    complete_seed_arrays,
    completed_diagnostics,
)
from cltm_sb.analysis.completion_audit import (
    AUDIT_INTERVALS,
    MIN_AUDIT_PAIRS,
    NOISE_SUPPLIED,
    RECENTRED,
    audit_intervals,
    audit_mask,
    audit_size_note,
    recentre_share,
)
from cltm_sb.analysis.designs import (
    audit_design,
    design_pairs,
    n_units,
    read_audit_pairs,
    read_pair_roles,
    read_pairs_csv,
    write_pairs_csv,
)
from cltm_sb.analysis.simulate import NoiseModel, simulate_grid, structured_truth
from cltm_sb.analysis.uncertainty import SeedArrays, plug_in_diagnostics
from cltm_sb.cli import main

CODES = [f"q{i:02d}" for i in range(24)]
FAMILIES = [f"F{i // 3}" for i in range(24)]


def _masked(grid, codes, pairs) -> SeedArrays:
    index = {c: i for i, c in enumerate(codes)}
    keep = np.zeros((len(codes), len(codes)), dtype=bool)
    for a, b in pairs:
        keep[index[a], index[b]] = keep[index[b], index[a]] = True
    return SeedArrays(codes, grid.seeds, grid.single, grid.self_, np.where(keep[None], grid.pair, np.nan))


# --------------------------------------------------------------------------------------------
# Designs


def test_audit_is_a_random_sample_of_the_pairs_the_core_leaves_out():
    core, audit = audit_design(CODES, 0.3, FAMILIES, seed=3, audit=0.34)
    k = n_units(len(CODES), 0.3)
    assert len(core) + len(audit) == k and len(audit) == round(0.34 * k)
    assert core == design_pairs(CODES, (k - len(audit)) / (len(CODES) * 23 / 2), FAMILIES, seed=3)
    assert not {frozenset(p) for p in core} & {frozenset(p) for p in audit}
    # Drawn uniformly: over many seeds every non-core pair is about as likely to be audited, so
    # within-family pairs are audited at the rate of the others (the core favours them).
    big = [f"F{i // 8}" for i in range(24)]  # more within-family pairs than the core takes
    within = {(a, b) for i, a in enumerate(CODES) for j, b in enumerate(CODES) if i < j and big[i] == big[j]}
    rates = {True: [], False: []}
    for seed in range(200):
        core, audit = audit_design(CODES, 0.2, big, seed=seed, audit=0.34)
        taken = set(core)
        for kind in (True, False):
            pool = [p for p in ((a, b) for i, a in enumerate(CODES) for b in CODES[i + 1:])
                    if ((p in within) == kind) and p not in taken]
            if pool:
                rates[kind].append(sum(p in set(audit) for p in pool) / len(pool))
    assert abs(np.mean(rates[True]) - np.mean(rates[False])) < 0.03


def test_audit_designs_are_nested_across_budgets():
    for seed in range(5):
        small = audit_design(CODES, 0.3, FAMILIES, seed=seed, audit=0.34)
        large = audit_design(CODES, 0.5, FAMILIES, seed=seed, audit=0.34)
        assert {frozenset(p) for p in small[0] + small[1]} <= {frozenset(p) for p in large[0] + large[1]}
    with pytest.raises(ValueError, match="--audit"):
        audit_design(CODES, 0.3, FAMILIES, audit=1.0)


def test_pairs_csv_with_roles_round_trip(tmp_path):
    core, audit = audit_design(CODES, 0.3, FAMILIES, seed=0, audit=0.34)
    path = write_pairs_csv(core + audit, tmp_path / "pairs.csv", audit=audit)
    assert path.read_text().splitlines()[0] == "lang1,lang2,role"
    assert read_pairs_csv(path) == (core + audit, False)
    assert read_audit_pairs(path) == audit
    plain = write_pairs_csv(core, tmp_path / "plain.csv")
    assert read_audit_pairs(plain) == []
    bad = tmp_path / "bad.csv"
    bad.write_text("lang1,lang2,role\nq00,q01,core\nq00,q02,sample\n")
    with pytest.raises(ValueError, match="line 3: role 'sample'"):
        read_pairs_csv(bad)
    with pytest.raises(ValueError, match="one-run-per-cell"):
        write_pairs_csv(core, tmp_path / "cells.csv", ordered=True, audit=audit)
    with pytest.raises(ValueError, match="audit pair"):
        write_pairs_csv(core, tmp_path / "x.csv", audit=[("q00", "zz")])


# --------------------------------------------------------------------------------------------
# Intervals


def test_audit_intervals_cover_the_true_diagnostics():
    """Coverage measured, not assumed: 40 simulated grids (a truth unlike the model, 10 seeds),
    each designed with an audit, completed, and its intervals scored against the truth."""
    hits = {d: 0 for d in AUDIT_INTERVALS}
    errors = {d: [] for d in AUDIT_INTERVALS}
    n_exp = 40
    for exp in range(n_exp):
        truth = structured_truth(24, seed=exp)
        grid = simulate_grid(truth, 10, NoiseModel(), seed=100 + exp)
        core, audit = audit_design(truth.locales, 0.5, truth.families, seed=exp, audit=0.5)
        completion = complete_seed_arrays(_masked(grid, truth.locales, core + audit), truth.families,
                                          seed=exp, audit_pairs=audit)
        result = audit_intervals(completion, truth.families, completion.audit, completion.seed_replicates)
        true = plug_in_diagnostics(truth.matrix, truth.families)
        for d in AUDIT_INTERVALS:
            point, lower, upper = result.estimates[d]
            hits[d] += lower <= true[d] <= upper
            errors[d].append(point - true[d])
    for d in AUDIT_INTERVALS:
        assert hits[d] / n_exp >= 0.85, (d, hits[d])
        # and the points are not biased: their mean error is small against their spread
        assert abs(np.mean(errors[d])) < 0.6 * np.std(errors[d]) + 1e-9, d


def test_a_recentred_share_interval_keeps_its_logit_width_about_the_new_point():
    lower, upper = recentre_share(0.5, 0.4, 0.2, 0.6)
    logit = lambda x: np.log(x / (1 - x))  # noqa: E731
    assert logit(upper) - logit(lower) == pytest.approx(logit(0.6) - logit(0.2))
    assert logit(0.5) - logit(lower) == pytest.approx(logit(0.4) - logit(0.2))
    # at the edges of [0, 1] the point stays inside its interval
    for point in (0.0, 1.0):
        lower, upper = recentre_share(point, 0.3, 0.1, 0.5)
        assert 0.0 <= lower <= point <= upper <= 1.0


def test_audit_intervals_are_printed_only_at_the_levels_they_were_judged_at():
    truth = structured_truth(30, seed=1)
    grid = simulate_grid(truth, 10, NoiseModel(), seed=1)
    core, audit = audit_design(truth.locales, 0.5, truth.families, seed=1, audit=0.5)
    arrays = _masked(grid, truth.locales, core + audit)
    widths = {}
    for level in (0.9, 0.95, 0.99, 0.8, 0.999):
        completion = complete_seed_arrays(arrays, truth.families, seed=1, audit_pairs=audit, level=level)
        entries = completed_diagnostics(completion, truth.families, n_draws=50, seed=1)
        for d in AUDIT_INTERVALS:
            judged = 0.95 if d in ("asymmetry", "intra_family_positive", "row_cosine") else 0.9
            if judged <= level <= 0.99:
                assert entries[d]["lower"] is not None, (d, level)
                widths[d, level] = entries[d]["upper"] - entries[d]["lower"]
            else:
                assert entries[d]["lower"] is None, (d, level)
                assert (f"its {100 * level:g}% audit interval is not calibrated (judged from {100 * judged:g}% to 99%"
                        in entries[d]["reason"]), (d, level)
    assert widths["rfd", 0.9] < widths["rfd", 0.95] < widths["rfd", 0.99]
    assert widths["row_cosine", 0.95] < widths["row_cosine", 0.99]


def test_completed_diagnostics_print_audit_intervals_and_say_why_others_have_none():
    truth = structured_truth(30, seed=1)
    grid = simulate_grid(truth, 10, NoiseModel(), seed=1)
    core, audit = audit_design(truth.locales, 0.5, truth.families, seed=1, audit=0.5)
    arrays = _masked(grid, truth.locales, core + audit)
    completion = complete_seed_arrays(arrays, truth.families, seed=1, audit_pairs=audit)
    assert completion.seed_replicates.shape == (10, 30, 30)
    entries = completed_diagnostics(completion, truth.families, n_draws=50, seed=1)
    audit_method = f"audit: difference estimator over pairs, design-based interval from {len(audit)} audit pairs"
    for d in AUDIT_INTERVALS:
        assert entries[d]["lower"] <= entries[d]["point"] <= entries[d]["upper"]
        if d in RECENTRED:  # the completion's point, the audit's width about it
            assert entries[d]["method"].startswith("completion: difference estimator over pairs")
            assert audit_method in entries[d]["method"] and "its logit-scale width, about this point" in entries[d][
                "method"]
        elif d == "row_cosine":  # not a total over pairs: the predicted cells' errors imputed
            assert entries[d]["method"].startswith(f"audit: the predicted cells' errors imputed from {len(audit)} audit")
        else:
            assert entries[d]["method"].startswith(audit_method)
    assert len(audit) >= 97  # intra-family+'s and row cosine's intervals need 97 audit pairs
    # Without the audit: no interval, and the reason says how to get one.
    plain = complete_seed_arrays(arrays, truth.families, seed=1)
    entries = completed_diagnostics(plain, truth.families, n_draws=50, seed=1)
    assert all(entries[d]["lower"] is None and entries[d]["reason"] == NO_AUDIT for d in AUDIT_INTERVALS)
    # Asymmetry and intra-family+ need a larger audit than the others.
    fewer = complete_seed_arrays(arrays, truth.families, seed=1, audit_pairs=audit[:92])
    entries = completed_diagnostics(fewer, truth.families, n_draws=50, seed=1)
    assert entries["rfd"]["lower"] is not None and entries["asymmetry"]["lower"] is not None
    assert "needs at least 97" in entries["intra_family_positive"]["reason"]
    assert "needs at least 97" in entries["row_cosine"]["reason"]
    # ... so `cltm complete` does not impute row cosine's errors there; the benchmark still can.
    args = (fewer, truth.families, fewer.audit, fewer.seed_replicates)
    assert np.isnan(audit_intervals(*args, printable_only=True).estimates["row_cosine"]).all()
    assert np.isfinite(audit_intervals(*args).estimates["row_cosine"]).all()
    fewer = complete_seed_arrays(arrays, truth.families, seed=1, audit_pairs=audit[:60])
    entries = completed_diagnostics(fewer, truth.families, n_draws=50, seed=1)
    assert entries["rfd"]["lower"] is not None
    assert entries["asymmetry"]["lower"] is None and "needs at least 90" in entries["asymmetry"]["reason"]
    # Too small an audit: no interval, the reason names the minimum.
    small = complete_seed_arrays(arrays, truth.families, seed=1, audit_pairs=audit[: MIN_AUDIT_PAIRS - 1])
    entries = completed_diagnostics(small, truth.families, n_draws=50, seed=1)
    assert all(f"at least {MIN_AUDIT_PAIRS}" in entries[d]["reason"] for d in AUDIT_INTERVALS)


def test_audit_of_a_partial_matrix_uses_the_supplied_se_and_says_so():
    truth = structured_truth(30, seed=4)  # 109 audit pairs: row cosine's interval too
    core, audit = audit_design(truth.locales, 0.5, truth.families, seed=4, audit=0.5)
    mask = audit_mask(truth.locales, core + audit)
    rng = np.random.default_rng(4)
    se = np.full(truth.matrix.shape, 0.05)
    observed = np.where(mask, truth.matrix + rng.normal(0, 0.05, se.shape), np.nan)
    np.fill_diagonal(observed, 1.0)
    completion = complete_matrix(observed, truth.families, se=se, locales=truth.locales, seed=4)
    completion.audit = audit_mask(truth.locales, audit)
    entries = completed_diagnostics(completion, truth.families, n_draws=50, seed=4)
    for d in ("rfd", "row_cosine"):
        assert entries[d]["lower"] is not None and NOISE_SUPPLIED in entries[d]["method"], d
        assert "not calibrated by cltm" in entries[d]["method"], d
    # Without SE there is no measurement noise to add: no interval.
    bare = complete_matrix(observed, truth.families, locales=truth.locales, seed=4)
    bare.audit = completion.audit
    assert "no measurement noise" in completed_diagnostics(bare, truth.families, n_draws=50)["rfd"]["reason"]
    with pytest.raises(ValueError, match="'zz' is not a language"):
        audit_mask(truth.locales, [("q00", "zz")])


def test_cli_design_audit_and_complete_with_the_design(tmp_path, capsys):
    truth = structured_truth(24, seed=5)
    fams = tmp_path / "families.csv"
    pd.DataFrame({"code": truth.locales, "name": truth.locales, "family": truth.families}).to_csv(fams, index=False)
    pairs_csv = tmp_path / "pairs.csv"
    assert main(["design", "--locales", ",".join(truth.locales), "--budget", "0.5", "--audit", "0.5",
                 "--families", str(fams), "--seed", "5", "-o", str(pairs_csv)]) == 0
    printed = capsys.readouterr().out
    assert "of them an audit drawn at random" in printed
    # 276 pairs, budget 0.5: an audit of 69, enough for all but asymmetry's and intra-family+'s
    # intervals, and how to get those
    assert ("note: 69 audit pairs: no design-based interval for asymmetry below 90 audit pairs, for "
            "intra-family+ and row cosine below 97 audit pairs; --budget 0.71 with --audit 0.5 gives 97") in printed
    pairs, _ = read_pairs_csv(pairs_csv)
    mask = audit_mask(truth.locales, pairs)
    rng = np.random.default_rng(5)
    observed = np.where(mask, truth.matrix + rng.normal(0, 0.05, mask.shape), np.nan)
    np.fill_diagonal(observed, 1.0)
    frame = pd.DataFrame(observed, index=truth.locales, columns=truth.locales)
    frame.to_csv(tmp_path / "partial.csv")
    pd.DataFrame(0.05, index=truth.locales, columns=truth.locales).to_csv(tmp_path / "se.csv")
    out = tmp_path / "completed"
    assert main(["complete", str(tmp_path / "partial.csv"), "--se", str(tmp_path / "se.csv"), "--families",
                 str(fams), "--design", str(pairs_csv), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(95% intervals: audit: difference estimator" in printed and "RFD" in printed
    assert "audit pairs are not measured" not in printed
    intervals = json.loads((out / "intervals.json").read_text())
    assert intervals["diagnostics"]["rfd"]["lower"] is not None
    # Audit pairs the matrix lacks (a grid not finished, another grid's design): said, not hidden.
    a, b = read_pair_roles(pairs_csv)[1][0]
    frame.loc[a, b] = frame.loc[b, a] = np.nan
    frame.to_csv(tmp_path / "partial.csv")
    assert main(["complete", str(tmp_path / "partial.csv"), "--se", str(tmp_path / "se.csv"), "--families",
                 str(fams), "--design", str(pairs_csv), "-o", str(tmp_path / "unfinished")]) == 0
    assert "note: 1 of the design's 69 audit pairs are not measured" in capsys.readouterr().out
    plain = tmp_path / "plain.csv"
    assert main(["design", "--locales", ",".join(truth.locales), "--budget", "0.5", "--families", str(fams),
                 "-o", str(plain)]) == 0
    assert main(["complete", str(tmp_path / "partial.csv"), "--families", str(fams), "--design", str(plain),
                 "-o", str(out)]) == 2
    assert "no audit pairs" in capsys.readouterr().err
    assert main(["design", "--locales", "a,b,c", "--budget", "1", "--audit", "0.3", "--one-run-per-cell",
                 "-o", str(plain)]) == 2


def test_pairs_measured_after_the_core_count_with_the_predicted_ones():
    """A --next round picks pairs for their uncertainty from the pairs the audit stands for: they
    join the predicted pairs, so the audit remains a random sample of its population."""
    truth = structured_truth(24, seed=2)
    grid = simulate_grid(truth, 10, NoiseModel(), seed=2)
    core, audit = audit_design(truth.locales, 0.4, truth.families, seed=2, audit=0.5)
    taken = {frozenset(p) for p in core + audit}
    later = [p for p in design_pairs(truth.locales, 1.0, truth.families) if frozenset(p) not in taken][:10]
    completion = complete_seed_arrays(_masked(grid, truth.locales, core + audit + later), truth.families,
                                      seed=2, audit_pairs=audit, core_pairs=core)
    with_core = audit_intervals(completion, truth.families, completion.audit, completion.seed_replicates,
                                core=completion.core)
    without = audit_intervals(completion, truth.families, completion.audit, completion.seed_replicates)
    assert with_core.n_unmeasured == without.n_unmeasured + len(later)
    assert f"from the {len(audit) + with_core.n_unmeasured} pairs" in with_core.method
    entries = completed_diagnostics(completion, truth.families, n_draws=50, seed=2)
    assert entries["rfd"]["method"] == with_core.method
    # asymmetry's and intra-family+'s audit intervals are not calibrated after such rounds: none,
    # and each says why
    for d in ("asymmetry", "intra_family_positive"):
        assert entries[d]["lower"] is None and "--next rounds" in entries[d]["reason"], d


def test_cli_design_refuses_an_audit_for_next_rounds(tmp_path, capsys):
    """A --next round's pairs are chosen for their uncertainty, not at random: never an audit."""
    partial = tmp_path / "partial.csv"
    codes = CODES[:6]
    pd.DataFrame(np.eye(6), index=codes, columns=codes).to_csv(partial)
    assert main(["design", "--next", "3", "--observed", str(partial), "--audit", "0.3",
                 "-o", str(tmp_path / "next.csv")]) == 2
    assert "--audit belongs to the design of a budget, not to --next" in capsys.readouterr().err
    assert not (tmp_path / "next.csv").exists()


def test_audit_size_note_says_what_a_small_audit_lacks_and_how_to_enlarge_it():
    assert audit_size_note(97, 284, 946) == ""
    assert audit_size_note(8, 24, 120) == (
        "8 audit pairs: no design-based interval: they start at 12 audit pairs (asymmetry's at 90, "
        "intra-family+'s and row cosine's at 97); --audit 0.50 gives 12")
    assert audit_size_note(4, 9, 15) == (
        "4 audit pairs: no design-based interval: they start at 12 audit pairs (asymmetry's at 90, "
        "intra-family+'s and row cosine's at 97); 15 pairs in all are too few for 12")
    assert audit_size_note(12, 36, 120) == (
        "12 audit pairs: no design-based interval for asymmetry below 90 audit pairs, for intra-family+ "
        "and row cosine below 97 audit pairs; 120 pairs in all are too few for 97")
    assert audit_size_note(40, 200, 946).endswith("for intra-family+ and row cosine below 97 audit pairs; --audit 0.49 gives 97")
    assert audit_size_note(92, 284, 946) == (
        "92 audit pairs: no design-based interval for intra-family+ and row cosine below 97 audit pairs; --audit 0.35 gives 97")
    # every suggestion delivers what it promises
    for n_languages in (8, 16, 28, 44):
        n_full = n_languages * (n_languages - 1) // 2
        for budget in (0.2, 0.3, 0.5):
            k = n_units(n_languages, budget)
            note = audit_size_note(round(0.34 * k), k, n_full)
            if "--budget" in note:
                f = float(note.split("--budget ")[1].split()[0])
                assert round(0.5 * n_units(n_languages, f)) >= int(note.rsplit(" ", 1)[1])
            elif "--audit" in note:
                a = float(note.split("--audit ")[1].split()[0])
                assert round(a * k) >= int(note.rsplit(" ", 1)[1])


def test_tiny_audits_give_bounded_intervals_or_say_why_not():
    """Intervals computed from a few audit pairs (what the benchmark scores below MIN_AUDIT_PAIRS)
    stay finite and inside each diagnostic's range, even where a share is 0 or 1."""
    truth = structured_truth(16, seed=7)
    grid = simulate_grid(truth, 10, NoiseModel(), seed=7)
    for seed in range(6):
        core, audit = audit_design(truth.locales, 0.3, truth.families, seed=seed, audit=0.34)
        completion = complete_seed_arrays(_masked(grid, truth.locales, core + audit), truth.families,
                                          seed=seed, audit_pairs=audit)
        estimates = audit_intervals(completion, truth.families, completion.audit, completion.seed_replicates,
                                    min_pairs=2).estimates
        for name, (point, lower, upper) in estimates.items():
            assert np.isfinite([point, lower, upper]).all(), name
            assert lower <= point <= upper, name
        for name in ("prop_positive", "reciprocity_positive", "intra_family_positive"):
            assert estimates[name][1] >= 0.0 and estimates[name][2] <= 1.0, name
        assert len(audit) == MIN_AUDIT_PAIRS  # the smallest audit that prints intervals
        audit_intervals(completion, truth.families, completion.audit, completion.seed_replicates)
        fewer = audit_mask(truth.locales, audit[: MIN_AUDIT_PAIRS - 1])
        with pytest.raises(ValueError, match=f"design-based intervals need at least {MIN_AUDIT_PAIRS}"):
            audit_intervals(completion, truth.families, fewer, completion.seed_replicates)
    # Every language its own family (intra-family+ is 0) or all in one (it is 1): the logit scale's edges.
    for families, share in (([f"F{i}" for i in range(16)], 0.0), (["F"] * 16, 1.0)):
        point, lower, upper = audit_intervals(completion, families, completion.audit, completion.seed_replicates,
                                              min_pairs=2).estimates["intra_family_positive"]
        assert point == pytest.approx(share, abs=1e-6) and 0.0 <= lower <= point <= upper <= 1.0


def test_seed_replicates_are_the_leave_one_seed_out_matrices():
    """The audit's noise jackknife: each replicate is the matrix without one seed, on the full
    data's defined cells; a weak row whose self-gain falls to 0 or below without one seed keeps
    that seed's leave-one-out values (its noise), it is not held at the full-data value."""
    from cltm_sb.analysis.uncertainty import point_estimate

    truth = structured_truth(12, seed=0)
    grid = simulate_grid(truth, 5, NoiseModel(z_self=2), seed=0)
    arrays = SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)
    full = point_estimate(arrays)
    completion = complete_seed_arrays(arrays, truth.families, seed=0, audit_pairs=[("q00", "q01")])
    weak = 0
    for left, replicate in enumerate(completion.seed_replicates):
        kept = [i for i in range(5) if i != left]
        alone = point_estimate(SeedArrays(truth.locales, [grid.seeds[i] for i in kept], grid.single[kept],
                                          grid.self_[kept], grid.pair[kept]))
        assert np.array_equal(np.isfinite(replicate), full.entries)
        both = np.isfinite(alone.matrix) & full.entries
        np.testing.assert_allclose(replicate[both], alone.matrix[both])
        lost = full.valid_rows & ~alone.valid_rows  # rows defined with all seeds, not without this one
        weak += int(lost.sum())
        assert np.isfinite(replicate[lost]).all()
    assert weak  # the setting has such rows: the rule above was exercised


def test_a_grid_whose_runs_lost_seeds_keeps_the_statistics_modules_cell_intervals_and_jackknife():
    """With failed seeds the measured cells' intervals are those `cltm matrix` prints (every
    finished seed, Satterthwaite df), not a paired interval over the seeds all three runs share
    (another ratio than the printed M); the audit's noise jackknife moves each run on its own
    scale, so a run with m of the n seeds counts its noise once, not (n−1)·m/(n·(m−1)) times."""
    from cltm_sb.analysis.simulate import lose_seeds
    from cltm_sb.analysis.uncertainty import cell_statistics, fieller_interval, point_estimate

    truth = structured_truth(12, seed=0)
    grid = lose_seeds(simulate_grid(truth, 10, NoiseModel(), seed=0), 0.3, seed=0)
    arrays = SeedArrays(truth.locales, grid.seeds, grid.single, grid.self_, grid.pair)
    completion = complete_seed_arrays(arrays, truth.families, seed=0, audit_pairs=[("q00", "q01")])
    point = point_estimate(arrays)
    lower, upper, bounded = fieller_interval(cell_statistics(arrays))
    off = point.entries & ~np.eye(12, dtype=bool) & bounded
    np.testing.assert_allclose(completion.lower[off], lower[off])
    np.testing.assert_allclose(completion.upper[off], upper[off])
    # A pair run with 3 of 10 seeds on noiseless single and self runs: its cell's jackknife
    # variance is exactly that run's noise over its 3 seeds (the plain jackknife: 9·3/(10·2) = 1.35 times it).
    rng = np.random.default_rng(1)
    single, self_ = np.full((10, 12), 0.5), np.full((10, 12), 0.7)
    pair = 0.6 + 0.02 * rng.standard_normal((10, 12, 12))
    pair[3:, 0, 1] = np.nan
    replicates = complete_seed_arrays(SeedArrays(truth.locales, grid.seeds, single, self_, pair), truth.families,
                                      seed=0, audit_pairs=[("q00", "q01")]).seed_replicates
    cell = replicates[:, 0, 1]
    jackknife_var = 9 / 10 * ((cell - cell.mean()) ** 2).sum()
    assert jackknife_var == pytest.approx(pair[:3, 0, 1].var(ddof=1) / 3 / 0.2**2)


def test_complete_names_the_design_file_whose_pair_is_not_in_the_matrix(tmp_path, capsys):
    # The error said "core pair en,xx: 'xx' is not a language of the completed matrix", not which file.
    truth = structured_truth(12, seed=5)
    observed = truth.matrix.copy()
    observed[0, 1] = observed[1, 0] = np.nan
    matrix = tmp_path / "partial.csv"
    pd.DataFrame(observed, index=truth.locales, columns=truth.locales).to_csv(matrix)
    families = tmp_path / "families.csv"
    pd.DataFrame({"code": truth.locales, "name": truth.locales, "family": truth.families}).to_csv(families, index=False)
    a, b, c = truth.locales[:3]
    design = tmp_path / "design.csv"
    design.write_text(f"lang1,lang2,role\n{a},{c},core\n{b},{c},audit\n{a},xx,audit\n")
    assert main(["complete", str(matrix), "--design", str(design), "--families", str(families),
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"design.csv: audit pair {a},xx: 'xx' is not a language of the completed matrix" in err
