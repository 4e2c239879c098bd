"""Diagnostics of a CLTM (DESIGN.md §1), with the NaN rules of §6.

The functions take the matrix as a square array or as a labelled table (rows = targets, columns =
donors). A labelled table may be non-square (studies that evaluate more languages than they train
on): the diagnostics that need a square matrix (asymmetry, reciprocity+) use the languages that are
both target and donor, the others every cell, and "off-diagonal" means a cell whose target and
donor differ. Undefined entries are NaN: each diagnostic uses the finite entries it needs and
:func:`diagnose` lists what was left out and which languages each diagnostic used. With no NaN and
a square matrix the formulas are exactly those of the paper:

- RFD = ||M − J||_F / n, computed as sqrt(mean((M − 1)²)) over finite entries
- relative asymmetry = ||M − Mᵀ||_F / ||M||_F over entries whose mirror is finite too
- average row cosine = mean over ordered pairs i≠j of cos(M[i,:], M[j,:]), each pair over the
  columns finite in both rows
- prop+, reciprocity+, intra-family+ as fractions in [0, 1]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

Array = np.ndarray

TABLE1 = "table1"  # the paper's Table 1
STABILITY = "stability"  # the paper's §4.4 stability figures


@dataclass(frozen=True)
class Diagnostic:
    """One scalar diagnostic of :func:`diagnose`: how it is named, shown, and what the paper found.

    Attributes:
        key: its key in the dictionary of :func:`diagnose` (and in intervals.json).
        label: the name shown to people.
        section: :data:`TABLE1` or :data:`STABILITY`.
        fraction: a fraction in [0, 1], shown as a percentage.
        paper: the paper's Table 1 values (GR, SV), None outside Table 1.
    """

    key: str
    label: str
    section: str
    fraction: bool = False
    paper: tuple[float, float] | None = None


# The one list of diagnostics: every table, report, JSON and benchmark reads it from here.
# The paper's SV reciprocity+ (16.91%) exceeds its prop+ (8.93%), which a definition forbids;
# it is kept as printed (DESIGN.md §6).
DIAGNOSTICS = (
    Diagnostic("rfd", "RFD (relative Frobenius deviation)", TABLE1, paper=(0.162, 2.970)),
    Diagnostic("asymmetry", "relative asymmetry", TABLE1, paper=(0.175, 1.084)),
    Diagnostic("prop_positive", "prop+", TABLE1, fraction=True, paper=(0.9997, 0.0893)),
    Diagnostic("reciprocity_positive", "reciprocity+", TABLE1, fraction=True, paper=(0.9993, 0.1691)),
    Diagnostic("row_cosine", "average row cosine", TABLE1, paper=(0.990, 0.615)),
    Diagnostic("intra_family_positive", "intra-family+", TABLE1, fraction=True, paper=(0.0498, 0.4168)),
    Diagnostic("se_median", "median SE of entries (delta method)", STABILITY),
    Diagnostic("se_mean", "mean SE of entries (delta method)", STABILITY),
    Diagnostic("rms_offdiag", "RMS of off-diagonal entries", STABILITY),
    Diagnostic("self_gain_min", "min self-gain", STABILITY),
    Diagnostic("self_gain_median", "median self-gain", STABILITY),
)  # fmt: skip


def diagnostics_in(section: str) -> tuple[Diagnostic, ...]:
    """The diagnostics of one section, in table order."""
    return tuple(d for d in DIAGNOSTICS if d.section == section)


def _square(matrix: Array | pd.DataFrame) -> Array:
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"a CLTM must be square, got shape {values.shape}")
    return values


def _off_mask(n: int) -> Array:
    return ~np.eye(n, dtype=bool)


def _labels(matrix: pd.DataFrame) -> tuple[list[str], list[str]]:
    return [str(c) for c in matrix.index], [str(c) for c in matrix.columns]


def _cells(matrix: Array | pd.DataFrame) -> tuple[Array, Array]:
    """(values, off mask): off = the cells whose target and donor differ.

    A labelled table may be non-square (its labels say which cells are diagonal); an array must
    be square.
    """
    if isinstance(matrix, pd.DataFrame):
        rows, cols = _labels(matrix)
        values = matrix.to_numpy(dtype=float)
        return values, np.asarray(rows, dtype=object)[:, None] != np.asarray(cols, dtype=object)
    m = _square(matrix)
    return m, _off_mask(m.shape[0])


def common_languages(matrix: pd.DataFrame) -> list[str]:
    """The languages that are both target and donor, in row order (all of them when square)."""
    rows, cols = _labels(matrix)
    donors = set(cols)
    return [r for r in rows if r in donors]


def _square_part(matrix: Array | pd.DataFrame) -> Array:
    """The square matrix of the languages that are both target and donor (what asymmetry and
    reciprocity+ need); an array must already be square."""
    if isinstance(matrix, pd.DataFrame):
        rows, cols = _labels(matrix)
        if rows == cols:
            return matrix.to_numpy(dtype=float)
        common = common_languages(matrix)
        frame = matrix.set_axis(rows, axis=0).set_axis(cols, axis=1)
        return frame.loc[common, common].to_numpy(dtype=float).reshape(len(common), len(common))
    return _square(matrix)


def all_languages(matrix: pd.DataFrame) -> list[str]:
    """Every language on either axis: the targets, then the donors that are not targets."""
    rows, cols = _labels(matrix)
    seen = set(rows)
    return rows + [c for c in cols if c not in seen]


def rfd(matrix: Array | pd.DataFrame) -> float:
    """Relative Frobenius deviation from the all-ones matrix (NaN without a finite off-diagonal entry)."""
    m, off = _cells(matrix)
    finite = np.isfinite(m)
    # The diagonal is 1 by construction: without an off-diagonal entry RFD would be a fake 0.
    if not (finite & off).any():
        return float("nan")
    return float(np.sqrt(np.mean((m[finite] - 1.0) ** 2)))


def relative_asymmetry(matrix: Array | pd.DataFrame) -> float:
    """||M − Mᵀ||_F / ||M||_F over entries whose mirror entry is finite too (the languages that
    are both target and donor)."""
    m = _square_part(matrix)
    both = np.isfinite(m) & np.isfinite(m.T)
    norm = np.sqrt(np.sum(m[both] ** 2))
    # Only the diagonal would give a fake 0: asymmetry needs an off-diagonal entry and its mirror.
    if not (both & _off_mask(m.shape[0])).any() or norm == 0:
        return float("nan")
    return float(np.sqrt(np.sum((m - m.T)[both] ** 2)) / norm)


def row_cosine(matrix: Array | pd.DataFrame) -> float:
    """Mean cosine similarity between the rows of every ordered pair of distinct targets."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"a CLTM must be a matrix, got shape {m.shape}")
    n = m.shape[0]
    cosines = []
    for i in range(n):
        for j in range(i + 1, n):
            cols = np.isfinite(m[i]) & np.isfinite(m[j])
            a, b = m[i, cols], m[j, cols]
            norm = np.linalg.norm(a) * np.linalg.norm(b)
            if cols.any() and norm > 0:
                cosines.append(float(a @ b / norm))
    # cos is symmetric, so the mean over ordered pairs equals the mean over unordered ones.
    return float(np.mean(cosines)) if cosines else float("nan")


def prop_positive(matrix: Array | pd.DataFrame) -> float:
    """Fraction of finite off-diagonal entries that are > 0."""
    m, mask = _cells(matrix)
    off = m[mask & np.isfinite(m)]
    return float(np.mean(off > 0)) if off.size else float("nan")


def reciprocity_positive(matrix: Array | pd.DataFrame) -> float:
    """Fraction of unordered pairs i<j (both entries finite) with M[i,j] > 0 and M[j,i] > 0,
    over the languages that are both target and donor."""
    m = _square_part(matrix)
    upper = np.triu(np.ones_like(m, dtype=bool), k=1)
    pairs = upper & np.isfinite(m) & np.isfinite(m.T)
    if not pairs.any():
        return float("nan")
    return float(np.mean((m > 0)[pairs] & (m.T > 0)[pairs]))


def _family_axes(
    matrix: Array | pd.DataFrame, families: Sequence[str] | Mapping[str, str]
) -> tuple[Array, Array]:
    """Families of the rows and of the columns. ``families``: a code -> family mapping, or one
    family per language in matrix order (square) or in :func:`all_languages` order (labelled)."""
    if isinstance(matrix, pd.DataFrame):
        rows, cols = _labels(matrix)
        if not isinstance(families, Mapping):
            codes = all_languages(matrix)
            if len(families) != len(codes):
                raise ValueError(f"{len(families)} families given for {len(codes)} languages")
            families = dict(zip(codes, families))
        missing = [c for c in dict.fromkeys(rows + cols) if c not in families]
        if missing:
            raise ValueError(f"no family given for {', '.join(missing)}")
        return (
            np.asarray([families[r] for r in rows], dtype=object),
            np.asarray([families[c] for c in cols], dtype=object),
        )
    n = _square(matrix).shape[0]
    if isinstance(families, Mapping) or len(families) != n:
        raise ValueError(f"{len(families)} families given for {n} languages")
    fam = np.asarray(families, dtype=object)
    return fam, fam


def intra_family_positive(
    matrix: Array | pd.DataFrame, families: Sequence[str] | Mapping[str, str]
) -> float:
    """Share of the positive off-diagonal mass that stays within a language family."""
    m, off = _cells(matrix)
    row_fam, col_fam = _family_axes(matrix, families)
    same = row_fam[:, None] == col_fam[None, :]
    valid = off & np.isfinite(m)
    positive = np.where(valid, np.maximum(m, 0.0), 0.0)
    total = positive.sum()
    return float(positive[same].sum() / total) if total > 0 else float("nan")


def rms_offdiag(matrix: Array | pd.DataFrame) -> float:
    """Root mean square of the finite off-diagonal entries."""
    m, mask = _cells(matrix)
    off = m[mask & np.isfinite(m)]
    return float(np.sqrt(np.mean(off**2))) if off.size else float("nan")


def undefined_reasons(
    matrix: Array | pd.DataFrame,
    families: Sequence[str] | Mapping[str, str] | None = None,
    se: Array | None = None,
) -> dict[str, str]:
    """Why each diagnostic of :func:`diagnose` that is undefined (NaN) is undefined."""
    m, off = _cells(matrix)
    square = _square_part(matrix)
    n_common = square.shape[0]
    finite = np.isfinite(m)
    finite_sq = np.isfinite(square)
    no_off = "no finite off-diagonal entry"
    if n_common < 2:
        no_mirror = (
            f"needs a square part: {n_common} language(s) are both target and donor, fewer than two"
        )
    else:
        no_mirror = "no off-diagonal entry whose mirror entry is finite too"
    checks: dict[str, tuple[float, str]] = {
        "rfd": (rfd(matrix), no_off),
        "asymmetry": (
            relative_asymmetry(matrix),
            no_mirror
            if n_common < 2 or not (finite_sq & finite_sq.T & _off_mask(n_common)).any()
            else "the matrix is zero",
        ),
        "row_cosine": (
            row_cosine(m),
            "no two targets with non-zero rows over common finite columns"
            if m.shape[0] > 1
            else "one target only",
        ),
        "prop_positive": (prop_positive(matrix), no_off),
        "reciprocity_positive": (reciprocity_positive(matrix), no_mirror),
        "rms_offdiag": (rms_offdiag(matrix), no_off),
    }
    if families:
        checks["intra_family_positive"] = (
            intra_family_positive(matrix, families),
            no_off if not (finite & off).any() else "no positive off-diagonal entry",
        )
    else:
        checks["intra_family_positive"] = (float("nan"), "no language families given")
    if se is None or not np.isfinite(np.asarray(se, dtype=float)[off]).any():
        reason = "no standard errors given" if se is None else "no finite off-diagonal standard error"
        checks["se_median"] = checks["se_mean"] = (float("nan"), reason)
    return {name: reason for name, (value, reason) in checks.items() if not np.isfinite(value)}


def check_finite_or_nan(matrix: pd.DataFrame, where: str) -> None:
    """Refuse ``inf`` entries (NaN is an undefined cell; infinity is a broken one), naming the cell."""
    values = np.asarray(matrix, dtype=float)
    bad = np.argwhere(np.isinf(values))
    if bad.size:
        i, j = bad[0]
        raise ValueError(
            f"{where}: row {matrix.index[i]!r}, column {matrix.columns[j]!r} is {values[i, j]:g}; "
            f"a CLTM entry must be a finite number or empty/NaN ({len(bad)} infinite entries in all)"
        )


def _nan_stat(values: Array, fn) -> float:
    values = values[np.isfinite(values)]
    return float(fn(values)) if values.size else float("nan")


# The diagnostics that need a square matrix: they use the languages that are both target and donor.
SQUARE_ONLY = ("asymmetry", "reciprocity_positive")


def _aligned(matrix: pd.DataFrame, other: pd.DataFrame, what: str) -> Array:
    """``other`` (e.g. the SEs) in the matrix's row and column order; differing labels are an error."""
    rows, cols = _labels(matrix)
    o_rows, o_cols = _labels(other)
    if set(rows) != set(o_rows) or set(cols) != set(o_cols):
        raise ValueError(
            f"the {what} do not have the matrix's labels: targets only in the matrix "
            f"{', '.join(sorted(set(rows) - set(o_rows))) or '-'}, only in the {what} "
            f"{', '.join(sorted(set(o_rows) - set(rows))) or '-'}; donors only in the matrix "
            f"{', '.join(sorted(set(cols) - set(o_cols))) or '-'}, only in the {what} "
            f"{', '.join(sorted(set(o_cols) - set(cols))) or '-'}"
        )
    frame = other.set_axis(o_rows, axis=0).set_axis(o_cols, axis=1)
    return frame.loc[rows, cols].to_numpy(dtype=float)


def standard_errors_for(matrix: pd.DataFrame, se: pd.DataFrame, source: str | os.PathLike) -> pd.DataFrame:
    """The SEs read from ``source`` in the matrix's order, checked: the matrix's labels, none
    negative (empty cells are NaN: no SE)."""
    try:
        values = _aligned(matrix, se, "standard errors")
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    negative = np.argwhere(values < 0)
    if negative.size:
        i, j = negative[0]
        raise ValueError(
            f"{source}: the standard error of row {matrix.index[i]!s}, column {matrix.columns[j]!s} "
            f"is negative ({values[i, j]:g}); SEs are >= 0 or empty"
        )
    return pd.DataFrame(values, index=matrix.index, columns=matrix.columns)


def languages_used(matrix: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Per diagnostic, the targets and donors it used: every target with a finite entry and every
    donor with one; for asymmetry and reciprocity+ the languages that are both target and donor."""
    rows, cols = _labels(matrix)
    finite = np.isfinite(matrix.to_numpy(dtype=float))
    every = {
        "targets": [t for i, t in enumerate(rows) if finite[i].any()],
        "donors": [s for j, s in enumerate(cols) if finite[:, j].any()],
    }
    common = common_languages(matrix)
    square = {"targets": common, "donors": common}
    keys = [d.key for d in DIAGNOSTICS if d.key not in ("self_gain_min", "self_gain_median")]
    return {k: dict(square if k in SQUARE_ONLY else every) for k in keys}


def diagnose(
    matrix: pd.DataFrame,
    families: Sequence[str] | Mapping[str, str] | None = None,
    se: pd.DataFrame | None = None,
    gains: pd.DataFrame | None = None,
    top_k: int = 5,
) -> dict[str, Any]:
    """Every diagnostic of a labelled CLTM, as a JSON-ready dictionary (NaN where undefined).

    Args:
        matrix: the CLTM, index = targets, columns = donors. Usually the same languages on both
            axes (in any order); a non-square matrix (other targets than donors) works too:
            asymmetry and reciprocity+ then use the languages that are both target and donor
            (``languages_used`` says so), and ``n_languages`` counts the languages on either axis
            beside ``n_targets`` and ``n_donors``.
        families: a code -> family mapping, or the family of each language in
            :func:`all_languages` order (the matrix order when square); without it intra-family+
            is NaN.
        se: per-entry standard errors (same labels), for the SE summary and the top pairs.
        gains: per-target table with ``self_gain`` and ``flagged`` (from the matrix builder).
        top_k: how many top positive and negative donor→target pairs to list.
    """
    rows, cols = _labels(matrix)
    if set(rows) == set(cols) and rows != cols:  # one language set in two orders: align
        matrix = matrix.set_axis(rows, axis=0).set_axis(cols, axis=1)[rows]
        cols = rows
    check_finite_or_nan(matrix, "the CLTM")
    locales = all_languages(matrix)
    m, off = _cells(matrix)
    finite = np.isfinite(m)
    n_rows, n_cols = m.shape
    empty_rows = [rows[i] for i in range(n_rows) if not finite[i].any()]
    missing_entries = [
        [rows[i], cols[j]]
        for i in range(n_rows)
        for j in range(n_cols)
        if not finite[i, j] and rows[i] not in empty_rows
    ]
    se_values = _aligned(matrix, se, "standard errors") if se is not None else np.full_like(m, np.nan)
    if families is not None and not isinstance(families, Mapping):
        if len(families) != len(locales):
            raise ValueError(f"{len(families)} families given for {len(locales)} languages")
        families = dict(zip(locales, families))
    se_frame = pd.DataFrame(se_values, index=rows, columns=cols)

    result: dict[str, Any] = {
        "n_languages": len(locales),
        "languages": locales,
        "n_targets": n_rows,
        "n_donors": n_cols,
        "targets": rows,
        "donors": cols,
        "rfd": rfd(matrix),
        "asymmetry": relative_asymmetry(matrix),
        "row_cosine": row_cosine(m),
        "prop_positive": prop_positive(matrix),
        "reciprocity_positive": reciprocity_positive(matrix),
        "intra_family_positive": intra_family_positive(matrix, families) if families else float("nan"),
        "rms_offdiag": rms_offdiag(matrix),
        # SEs of the entries only: a supplied SE file may hold one for a cell the matrix lacks.
        "se_median": _nan_stat(se_values[off & finite], np.median),
        "se_mean": _nan_stat(se_values[off & finite], np.mean),
        "n_valid_entries": int(finite.sum()),
        "n_valid_offdiag": int((finite & off).sum()),
        "excluded": {"rows": empty_rows, "entries": missing_entries},
        "undefined": undefined_reasons(
            matrix, families, se_frame.to_numpy() if se is not None else None
        ),
        "languages_used": languages_used(matrix),
    }
    if gains is not None and "self_gain" in gains:
        g = gains["self_gain"].to_numpy(dtype=float)
        result["self_gain_min"] = _nan_stat(g, np.min)
        result["self_gain_median"] = _nan_stat(g, np.median)
        result["flagged_targets"] = [str(t) for t in gains.index[gains["flagged"].astype(bool)]]
    else:
        result["self_gain_min"] = result["self_gain_median"] = float("nan")
        result["flagged_targets"] = []
        # A matrix alone (cltm analyze MATRIX.csv) holds no self-gains: say so beside their n/a.
        for name in ("self_gain_min", "self_gain_median"):
            result["undefined"][name] = "no self-gains given: a matrix holds none, cltm matrix has them"

    pairs = [
        {"target": rows[i], "donor": cols[j], "value": float(m[i, j]), "se": float(se_values[i, j])}
        for i in range(n_rows)
        for j in range(n_cols)
        if off[i, j] and finite[i, j]
    ]
    by_value = sorted(pairs, key=lambda p: p["value"], reverse=True)
    result["top_positive"] = [p for p in by_value if p["value"] > 0][:top_k]
    result["top_negative"] = [p for p in reversed(by_value) if p["value"] < 0][:top_k]

    row_of = {t: i for i, t in enumerate(rows)}
    col_of = {s: j for j, s in enumerate(cols)}
    empty = np.array([])
    per_language = []
    for code in locales:
        i, j = row_of.get(code), col_of.get(code)
        incoming = m[i, off[i] & finite[i]] if i is not None else empty
        outgoing = m[off[:, j] & finite[:, j], j] if j is not None else empty
        per_language.append(
            {
                "locale": code,
                "incoming_positive": float(np.mean(incoming > 0)) if incoming.size else float("nan"),
                "incoming_mean": float(np.mean(incoming)) if incoming.size else float("nan"),
                "outgoing_positive": float(np.mean(outgoing > 0)) if outgoing.size else float("nan"),
                "outgoing_mean": float(np.mean(outgoing)) if outgoing.size else float("nan"),
            }
        )
    result["per_language"] = per_language
    return result


def parse_cells(raw: pd.DataFrame, path: str | os.PathLike, hint: str = "") -> np.ndarray:
    """The numbers of a matrix CSV read as text: empty, ``nan``, ``na`` and ``null`` are NaN; any
    other cell that is not a number is an error naming the file, row and column (``hint``: what
    to do, appended in parentheses)."""
    values = np.full(raw.shape, np.nan)
    for i, target in enumerate(raw.index):
        for j, donor in enumerate(raw.columns):
            cell = str(raw.iat[i, j]).strip()
            if cell == "" or cell.lower() in {"nan", "na", "null"}:
                continue
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}: row {target!r}, column {donor!r}: {cell!r} is not a number"
                    + (f" ({hint})" if hint else "")
                ) from None
    return values


def read_matrix_csv(
    path: str | os.PathLike, square: bool = True, unit_diagonal: bool = True
) -> pd.DataFrame:
    """Read a CLTM CSV (header ``,code1,code2,...``; rows ``code,v1,v2,...``) and check it.

    Errors name the file and the problem: a non-square table, row and column labels that differ,
    a cell that is not a number (empty cells and ``nan`` are NaN). A valid row whose diagonal is
    not 1 gives a warning. ``square=False`` accepts other targets (rows) than donors (columns),
    kept in the file's order; a language on both axes is a diagonal cell. ``unit_diagonal=False``
    (standard errors, raw deltas) skips the diagonal warning.
    """
    from cltm_sb.io import read_csv_text

    path = Path(path)
    raw = read_csv_text(
        path,
        "matrix",
        "a CLTM CSV has a header row ',code1,code2,...' and one row 'code,v1,v2,...' per target",
        index_col=0,
    )
    rows, cols = list(raw.index), list(raw.columns)
    if square and len(rows) != len(cols):
        raise ValueError(
            f"{path}: the matrix is not square ({len(rows)} rows, {len(cols)} columns); "
            "it needs one row per target and one column per donor, for the same languages"
        )
    for labels, what in ((rows, "row"), (cols, "column")):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"{path}: {what} label(s) {', '.join(dup)} appear more than once")
    if square and set(rows) != set(cols):
        only_rows = sorted(set(rows) - set(cols))
        only_cols = sorted(set(cols) - set(rows))
        raise ValueError(
            f"{path}: row and column labels differ: only in rows: {', '.join(only_rows) or '-'}; "
            f"only in the header: {', '.join(only_cols) or '-'}"
        )
    if set(rows) == set(cols):
        cols = rows
    raw = raw[cols]
    values = parse_cells(raw, path)
    frame = pd.DataFrame(values, index=rows, columns=cols)
    check_finite_or_nan(frame, str(path))
    if not rows or not cols:
        raise ValueError(f"{path}: the matrix has no {'rows' if not rows else 'columns'}")
    col_of = {c: j for j, c in enumerate(cols)}
    off_one = {
        target: values[i, col_of[target]]
        for i, target in enumerate(rows)
        if unit_diagonal and target in col_of
        and np.isfinite(values[i, col_of[target]]) and not np.isclose(values[i, col_of[target]], 1.0)
    }
    if len(off_one) == 1:
        ((target, value),) = off_one.items()
        warnings.warn(
            f"{path}: diagonal entry of {target!r} is {value:g}, not 1 "
            "(a CLTM row is normalised by its self-gain)",
            stacklevel=2,
        )
    elif off_one:
        # One warning for the whole file: a matrix in percent gave one line per language.
        shown = ", ".join(f"{t} {v:g}" for t, v in list(off_one.items())[:5])
        more = f", ... ({len(off_one) - 5} more)" if len(off_one) > 5 else ""
        percent = (
            "; all are 100: a matrix in percent? divide it by 100"
            if np.allclose(list(off_one.values()), 100.0) else ""
        )
        warnings.warn(
            f"{path}: the diagonal entries of {len(off_one)} targets are not 1 ({shown}{more}); "
            f"a CLTM row is normalised by its self-gain{percent}",
            stacklevel=2,
        )
    frame.index.name, frame.columns.name = "target", "donor"
    return frame


def write_matrix_csv(matrix: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a labelled matrix in the CSV layout :func:`read_matrix_csv` reads (atomically)."""
    from cltm_sb.io import atomic_write

    def writer(tmp: Path) -> None:
        out = matrix.copy()
        out.index.name = None
        out.columns.name = None
        out.to_csv(tmp, float_format="%.6g", na_rep="")

    return atomic_write(path, writer)
