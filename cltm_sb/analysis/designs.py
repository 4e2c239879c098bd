"""Which pairs a budgeted CLTM grid measures (issue 19).

A design lists the pair runs to train when only a fraction F of the n(n−1)/2 pairs fits the
budget (single and self runs, the row scales, are always run). Three rules:

- coverage: every language is in as many pairs as the budget allows (the degrees differ by at most
  one or two), so each target's row and each donor's column have measured cells for their effects;
- information: pairs within a language family come first (positive transfer concentrates there,
  intra-family+ is computed from them, and they are where a target's best donor usually is);
- nesting: the design is a prefix of one seeded order of all pairs, so the design for F = 0.5
  contains the one for F = 0.3 with the same seed and finished runs are kept when a budget grows.

With one run per cell (``ordered``) the units are ordered cells (target, donor) and the budget
counts cells. :func:`next_pairs` is the active design: it ranks unmeasured pairs by how much
measuring them would reduce the uncertainty of the diagnostics and of each target's best donor.

An audit (``audit`` > 0, :func:`audit_design`): a share of the budget's pairs is drawn uniformly
at random from the pairs the information rules left out, a simple random sample on which the
completion's errors can be measured without trusting the model. The completed matrix's
diagnostics get design-based intervals from it (:mod:`~cltm_sb.analysis.completion_audit`).
The rules above choose the rest (the core). Audits stay nested: the audit is the first pairs
of a second seeded order that the core does not hold, so a pair of the design for F = 0.3 is in
the design for F = 0.5 (as an audit or a core pair).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cltm_sb.analysis.completion import PREDICTED, Completion

# Within-family pairs are preferred over a pair whose two languages have this many fewer pairs.
FAMILY_PRIORITY = 2.0
PAIR_COLUMNS = ("lang1", "lang2")
CELL_COLUMNS = ("target", "donor")
# pairs.csv of a design with an audit has a third column: each pair's role.
ROLE_COLUMN = "role"
CORE = "core"
AUDIT = "audit"


def n_units(n_languages: int, budget: float, ordered: bool = False) -> int:
    """⌈F·n(n−1)/2⌉ pairs (⌈F·n(n−1)⌉ cells when ``ordered``)."""
    if not 0 < budget <= 1:
        raise ValueError(f"--budget must be in (0, 1], got {budget}")
    total = n_languages * (n_languages - 1) // (1 if ordered else 2)
    return min(total, math.ceil(budget * total - 1e-9))


def design_order(
    locales: Sequence[str],
    families: Sequence[str] | None = None,
    seed: int = 0,
    ordered: bool = False,
) -> list[tuple[str, str]]:
    """Every pair (or ordered cell) in the seeded order whose prefixes are the designs.

    Greedy: the next unit is the one whose two languages are in the fewest chosen units so far
    (for cells: the target's row and the donor's column), minus :data:`FAMILY_PRIORITY` for a
    within-family unit, ties broken by the seeded random order.
    """
    codes = list(locales)
    n = len(codes)
    if n < 2:
        raise ValueError("a design needs at least two languages")
    if len(set(codes)) != n:
        raise ValueError(f"languages repeat in {codes}")
    fam = np.asarray(families if families is not None else range(n), dtype=object)
    if fam.size != n:
        raise ValueError(f"{fam.size} families for {n} languages")
    rng = np.random.default_rng([seed, 19])
    if ordered:
        ii, jj = np.nonzero(~np.eye(n, dtype=bool))
    else:
        ii, jj = np.triu_indices(n, k=1)
    same = (fam[ii] == fam[jj]).astype(float)
    jitter = rng.uniform(0.0, 0.5, ii.size)
    deg_a = np.zeros(n)  # pairs: degree; cells: row counts
    deg_b = np.zeros(n)  # cells: column counts
    within = np.zeros(n)  # within-family units of each language so far
    left = np.ones(ii.size, dtype=bool)
    order: list[tuple[str, str]] = []
    for _ in range(ii.size):
        load = deg_a[ii] + deg_b[jj] if ordered else deg_a[ii] + deg_a[jj]
        # A within-family unit is preferred only while both languages have at most half of
        # their units inside their family: the cells left to predict are mostly across families,
        # and each row needs measured cells of both kinds.
        share_ok = (within[ii] <= load_half(deg_a, deg_b, ii, ordered)) & (
            within[jj] <= load_half(deg_a, deg_b, jj, ordered)
        )
        score = np.where(left, load - FAMILY_PRIORITY * same * share_ok + jitter, np.inf)
        k = int(np.argmin(score))
        left[k] = False
        a, b = int(ii[k]), int(jj[k])
        order.append((codes[a], codes[b]))
        if same[k]:
            within[a] += 1
            within[b] += 1
        if ordered:
            deg_a[a] += 1
            deg_b[b] += 1
        else:
            deg_a[a] += 1
            deg_a[b] += 1
    return order


def load_half(deg_a: np.ndarray, deg_b: np.ndarray, idx: np.ndarray, ordered: bool) -> np.ndarray:
    """Half of the units each language is in so far."""
    return ((deg_a[idx] + deg_b[idx]) if ordered else deg_a[idx]) / 2


def design_pairs(
    locales: Sequence[str],
    budget: float,
    families: Sequence[str] | None = None,
    seed: int = 0,
    ordered: bool = False,
) -> list[tuple[str, str]]:
    """The first ⌈F·n(n−1)/2⌉ units of :func:`design_order` (nested across budgets)."""
    k = n_units(len(locales), budget, ordered)
    return design_order(locales, families, seed, ordered)[:k]


def audit_design(
    locales: Sequence[str],
    budget: float,
    families: Sequence[str] | None = None,
    seed: int = 0,
    audit: float = 0.0,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The core and audit pairs of a budget of ⌈F·n(n−1)/2⌉ pairs, round(audit × that) of them audit.

    The core is the first pairs of :func:`design_order`; the audit is a simple random sample of
    the other pairs (the first of them in an independent seeded order). Pairs only: an audit of
    ordered cells would leave a pair run's second cell out of the sample.
    """
    if not 0 <= audit < 1:
        raise ValueError(f"--audit must be in [0, 1), got {audit}")
    k = n_units(len(locales), budget)
    n_audit = round(audit * k)
    core = design_order(locales, families, seed)[: k - n_audit]
    taken = set(core)
    n = len(locales)
    ii, jj = np.triu_indices(n, k=1)
    order = np.random.default_rng([seed, 1919]).permutation(ii.size)
    sample = [p for p in ((locales[int(ii[x])], locales[int(jj[x])]) for x in order) if p not in taken]
    return core, sample[:n_audit]


def random_pairs(
    locales: Sequence[str], budget: float, seed: int = 0, ordered: bool = False
) -> list[tuple[str, str]]:
    """A uniformly random design of the same size (the benchmark's baseline)."""
    n = len(locales)
    rng = np.random.default_rng([seed, 23])
    ii, jj = np.nonzero(~np.eye(n, dtype=bool)) if ordered else np.triu_indices(n, k=1)
    pick = rng.permutation(ii.size)[: n_units(n, budget, ordered)]
    return [(locales[int(ii[k])], locales[int(jj[k])]) for k in pick]


def next_pairs(completion: Completion, k: int, ordered: bool = False) -> list[tuple[str, str]]:
    """The k unmeasured pairs (or cells) whose measurement would help most.

    A cell's value: its predictive variance (what it adds to the uncertainty of every norm-type
    diagnostic) times 1 + 4·P(it beats the row's current best), the chance that it changes its
    target's best donor (normal predictive distribution). A pair scores the sum of its two cells.
    """
    m = completion.matrix
    n = m.shape[0]
    predicted = completion.sources == PREDICTED
    sd = np.where(predicted, completion.predictive_sd, 0.0)
    filled = np.where(np.eye(n, dtype=bool), -np.inf, np.nan_to_num(m, nan=-np.inf))
    top2 = -np.sort(-filled, axis=1)[:, :2]
    # The best of the OTHER donors: the runner-up for the row's current best cell.
    best_other = np.where(filled >= top2[:, :1], top2[:, 1:2], top2[:, :1])
    from statistics import NormalDist

    with np.errstate(invalid="ignore", divide="ignore"):
        zscore = (m - best_other) / sd
    cdf = np.vectorize(NormalDist().cdf)
    p_best = np.where(predicted & (sd > 0), cdf(np.nan_to_num(zscore, nan=-10.0)), 0.0)
    value = np.where(predicted, sd**2 * (1.0 + 4.0 * p_best), 0.0)
    codes = completion.locales
    if ordered:
        ii, jj = np.nonzero(predicted)
        scores = value[ii, jj]
    else:
        ii, jj = np.triu_indices(n, k=1)
        both = predicted[ii, jj] | predicted[jj, ii]
        measured_any = (completion.sources[ii, jj] == "measured") | (completion.sources[jj, ii] == "measured")
        keep = both & ~measured_any
        ii, jj = ii[keep], jj[keep]
        scores = value[ii, jj] + value[jj, ii]
    order = np.argsort(-scores, kind="stable")[:k]
    return [(codes[int(ii[x])], codes[int(jj[x])]) for x in order]


def write_pairs_csv(
    pairs: Sequence[tuple[str, str]],
    path: str | os.PathLike,
    ordered: bool = False,
    audit: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """pairs.csv: ``lang1,lang2`` (unordered pairs) or ``target,donor`` (ordered cells).

    With ``audit`` (pairs that are also in ``pairs``) a third column ``role`` says ``core`` or
    ``audit`` for every pair."""
    from cltm_sb.io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = CELL_COLUMNS if ordered else PAIR_COLUMNS
    if audit is None:
        writer.writerow(header)
        writer.writerows(pairs)
    else:
        if ordered:
            raise ValueError("an audit is a sample of pairs; it cannot be used with --one-run-per-cell")
        sample = {frozenset(p) for p in audit}
        if not sample <= {frozenset(p) for p in pairs}:
            raise ValueError("every audit pair must be one of the design's pairs")
        writer.writerow((*header, ROLE_COLUMN))
        writer.writerows((a, b, AUDIT if frozenset((a, b)) in sample else CORE) for a, b in pairs)
    return atomic_write_text(path, buffer.getvalue())


def read_pairs_csv(path: str | os.PathLike) -> tuple[list[tuple[str, str]], bool]:
    """Read pairs.csv; returns the pairs and whether they are ordered cells (``target,donor``)."""
    pairs, ordered, _ = _read_design_csv(path)
    return pairs, ordered


def read_pair_roles(path: str | os.PathLike) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The core and the audit pairs of a pairs.csv written by ``cltm design --audit`` (both [] without
    a role column)."""
    pairs, _, roles = _read_design_csv(path)
    return [p for p, r in zip(pairs, roles) if r == CORE], [p for p, r in zip(pairs, roles) if r == AUDIT]


def read_audit_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The audit pairs of a pairs.csv written by ``cltm design --audit`` ([] without a role column)."""
    return read_pair_roles(path)[1]


def _read_design_csv(path: str | os.PathLike) -> tuple[list[tuple[str, str]], bool, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pairs file not found (make one with `cltm design`)")
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    if not rows:
        raise ValueError(f"{path}: empty; a pairs file has a header lang1,lang2 or target,donor")
    header = tuple(c.strip() for c in rows[0])
    with_role = header == (*PAIR_COLUMNS, ROLE_COLUMN)
    if header not in (PAIR_COLUMNS, CELL_COLUMNS) and not with_role:
        raise ValueError(
            f"{path}: header {','.join(header)!r}; expected 'lang1,lang2' (pairs; 'lang1,lang2,role' "
            "with an audit) or 'target,donor' (ordered cells, --one-run-per-cell)"
        )
    width = len(header)
    pairs, roles = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != width or not row[0].strip() or not row[1].strip():
            what = "two language codes and a role" if with_role else "two language codes"
            raise ValueError(f"{path}: line {line}: expected {what}, got {row}")
        a, b = row[0].strip(), row[1].strip()
        if a == b:
            raise ValueError(f"{path}: line {line}: a pair needs two different languages ({a})")
        role = row[2].strip() if with_role else ""
        if with_role and role not in (CORE, AUDIT):
            raise ValueError(f"{path}: line {line}: role {role!r}; expected {CORE!r} or {AUDIT!r}")
        pairs.append((a, b))
        roles.append(role)
    return pairs, header == CELL_COLUMNS, roles


def plan_pairs(
    locales: Sequence[str],
    one_run_per_cell: bool,
    pairs_csv: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    budget: float | None = None,
    families: Sequence[str] | None = None,
    seed: int = 0,
) -> list[tuple[str, str]] | None:
    """The pair runs ``cltm plan`` keeps: from ``--pairs`` (one file or several, united) or a
    ``--budget`` design; None: every pair.

    A file of unordered pairs under ``--one-run-per-cell`` plans both cells of each pair; a file
    of ordered cells under pair sharing plans the pair run of each cell (it serves both).
    """
    if pairs_csv is not None and budget is not None:
        raise ValueError("pass --pairs or --budget, not both")
    if budget is not None:
        return design_pairs(locales, budget, families, seed=seed, ordered=one_run_per_cell)
    if pairs_csv is None:
        return None
    files = [pairs_csv] if isinstance(pairs_csv, (str, os.PathLike)) else list(pairs_csv)
    out: list[tuple[str, str]] = []
    for path in files:
        pairs, ordered = read_pairs_csv(path)
        # Named here, where the file is known: the plan's own check could not say which file.
        unknown = sorted({c for pair in pairs for c in pair} - set(locales))
        if unknown:
            first = next(p for p in pairs if set(p) & set(unknown))
            raise ValueError(
                f"{path}: language(s) {', '.join(unknown)} (e.g. pair {first[0]},{first[1]}) are not "
                f"among --locales ({', '.join(locales)}); add them to --locales or use a pairs file "
                "designed for these languages (`cltm design --locales ...`)"
            )
        if one_run_per_cell and not ordered:
            pairs = [cell for a, b in pairs for cell in ((a, b), (b, a))]
        out += [p for p in pairs if p not in out]
    return out
