"""Diagnostics of a CLTM (DESIGN.md §1), with the NaN rules of §6.

All functions take the matrix as a square array (rows = targets, columns = donors). Undefined
entries are NaN: each diagnostic uses the finite entries it needs and :func:`diagnose` lists what
was left out. With no NaN the formulas are exactly those of the paper:

- RFD = ||M − J||_F / n, computed as sqrt(mean((M − 1)²)) over finite entries
- relative asymmetry = ||M − Mᵀ||_F / ||M||_F over entries whose mirror is finite too
- average row cosine = mean over ordered pairs i≠j of cos(M[i,:], M[j,:]), each pair over the
  columns finite in both rows
- prop+, reciprocity+, intra-family+ as fractions in [0, 1]
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
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


def rfd(matrix: Array | pd.DataFrame) -> float:
    """Relative Frobenius deviation from the all-ones matrix (NaN without a finite off-diagonal entry)."""
    m = _square(matrix)
    finite = np.isfinite(m)
    # The diagonal is 1 by construction: without an off-diagonal entry RFD would be a fake 0.
    if not (finite & _off_mask(m.shape[0])).any():
        return float("nan")
    return float(np.sqrt(np.mean((m[finite] - 1.0) ** 2)))


def relative_asymmetry(matrix: Array | pd.DataFrame) -> float:
    """||M − Mᵀ||_F / ||M||_F over entries whose mirror entry is finite too."""
    m = _square(matrix)
    both = np.isfinite(m) & np.isfinite(m.T)
    norm = np.sqrt(np.sum(m[both] ** 2))
    # Only the diagonal would give a fake 0: asymmetry needs an off-diagonal entry and its mirror.
    if not (both & _off_mask(m.shape[0])).any() or norm == 0:
        return float("nan")
    return float(np.sqrt(np.sum((m - m.T)[both] ** 2)) / norm)


def row_cosine(matrix: Array | pd.DataFrame) -> float:
    """Mean cosine similarity between the rows of every ordered pair of distinct targets."""
    m = _square(matrix)
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
    m = _square(matrix)
    off = m[_off_mask(m.shape[0]) & np.isfinite(m)]
    return float(np.mean(off > 0)) if off.size else float("nan")


def reciprocity_positive(matrix: Array | pd.DataFrame) -> float:
    """Fraction of unordered pairs i<j (both entries finite) with M[i,j] > 0 and M[j,i] > 0."""
    m = _square(matrix)
    upper = np.triu(np.ones_like(m, dtype=bool), k=1)
    pairs = upper & np.isfinite(m) & np.isfinite(m.T)
    if not pairs.any():
        return float("nan")
    return float(np.mean((m > 0)[pairs] & (m.T > 0)[pairs]))


def intra_family_positive(matrix: Array | pd.DataFrame, families: Sequence[str]) -> float:
    """Share of the positive off-diagonal mass that stays within a language family."""
    m = _square(matrix)
    if len(families) != m.shape[0]:
        raise ValueError(f"{len(families)} families given for {m.shape[0]} languages")
    fam = np.asarray(families, dtype=object)
    same = fam[:, None] == fam[None, :]
    valid = _off_mask(m.shape[0]) & np.isfinite(m)
    positive = np.where(valid, np.maximum(m, 0.0), 0.0)
    total = positive.sum()
    return float(positive[same].sum() / total) if total > 0 else float("nan")


def rms_offdiag(matrix: Array | pd.DataFrame) -> float:
    """Root mean square of the finite off-diagonal entries."""
    m = _square(matrix)
    off = m[_off_mask(m.shape[0]) & np.isfinite(m)]
    return float(np.sqrt(np.mean(off**2))) if off.size else float("nan")


def undefined_reasons(
    matrix: Array | pd.DataFrame, families: Sequence[str] | None = None, se: Array | None = None
) -> dict[str, str]:
    """Why each diagnostic of :func:`diagnose` that is undefined (NaN) is undefined."""
    m = _square(matrix)
    n = m.shape[0]
    off = _off_mask(n)
    finite = np.isfinite(m)
    no_off = "no finite off-diagonal entry"
    no_mirror = "no off-diagonal entry whose mirror entry is finite too"
    checks: dict[str, tuple[float, str]] = {
        "rfd": (rfd(m), no_off),
        "asymmetry": (
            relative_asymmetry(m),
            no_mirror if not (finite & finite.T & off).any() else "the matrix is zero",
        ),
        "row_cosine": (
            row_cosine(m),
            "no two targets with non-zero rows over common finite columns"
            if n > 1
            else "one target only",
        ),
        "prop_positive": (prop_positive(m), no_off),
        "reciprocity_positive": (reciprocity_positive(m), no_mirror),
        "rms_offdiag": (rms_offdiag(m), no_off),
    }
    if families:
        checks["intra_family_positive"] = (
            intra_family_positive(m, families),
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


def diagnose(
    matrix: pd.DataFrame,
    families: Sequence[str] | None = None,
    se: pd.DataFrame | None = None,
    gains: pd.DataFrame | None = None,
    top_k: int = 5,
) -> dict[str, Any]:
    """Every diagnostic of a labelled CLTM, as a JSON-ready dictionary (NaN where undefined).

    Args:
        matrix: the CLTM, index = targets, columns = donors, same labels in the same order.
        families: family of each language (matrix order); without it intra-family+ is NaN.
        se: per-entry standard errors (same labels), for the SE summary and the top pairs.
        gains: per-target table with ``self_gain`` and ``flagged`` (from the matrix builder).
        top_k: how many top positive and negative donor→target pairs to list.
    """
    locales = [str(c) for c in matrix.index]
    m = _square(matrix)
    check_finite_or_nan(matrix, "the CLTM")
    n = len(locales)
    off = _off_mask(n)
    finite = np.isfinite(m)
    empty_rows = [locales[i] for i in range(n) if not finite[i].any()]
    missing_entries = [
        [locales[i], locales[j]]
        for i in range(n)
        for j in range(n)
        if not finite[i, j] and locales[i] not in empty_rows
    ]
    se_values = _square(se) if se is not None else np.full_like(m, np.nan)

    result: dict[str, Any] = {
        "n_languages": n,
        "languages": locales,
        "rfd": rfd(m),
        "asymmetry": relative_asymmetry(m),
        "row_cosine": row_cosine(m),
        "prop_positive": prop_positive(m),
        "reciprocity_positive": reciprocity_positive(m),
        "intra_family_positive": intra_family_positive(m, families) if families else float("nan"),
        "rms_offdiag": rms_offdiag(m),
        "se_median": _nan_stat(se_values[off], np.median),
        "se_mean": _nan_stat(se_values[off], np.mean),
        "n_valid_entries": int(finite.sum()),
        "n_valid_offdiag": int((finite & off).sum()),
        "excluded": {"rows": empty_rows, "entries": missing_entries},
        "undefined": undefined_reasons(m, families, se_values if se is not None else None),
    }
    if gains is not None and "self_gain" in gains:
        g = gains["self_gain"].to_numpy(dtype=float)
        result["self_gain_min"] = _nan_stat(g, np.min)
        result["self_gain_median"] = _nan_stat(g, np.median)
        result["flagged_targets"] = [str(t) for t in gains.index[gains["flagged"].astype(bool)]]
    else:
        result["self_gain_min"] = result["self_gain_median"] = float("nan")
        result["flagged_targets"] = []

    pairs = [
        {"target": locales[i], "donor": locales[j], "value": float(m[i, j]), "se": float(se_values[i, j])}
        for i in range(n)
        for j in range(n)
        if i != j and finite[i, j]
    ]
    by_value = sorted(pairs, key=lambda p: p["value"], reverse=True)
    result["top_positive"] = [p for p in by_value if p["value"] > 0][:top_k]
    result["top_negative"] = [p for p in reversed(by_value) if p["value"] < 0][:top_k]

    per_language = []
    for k, code in enumerate(locales):
        incoming = m[k, off[k] & finite[k]]
        outgoing = m[off[:, k] & finite[:, k], k]
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


def read_matrix_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CLTM CSV (header ``,code1,code2,...``; rows ``code,v1,v2,...``) and check it.

    Errors name the file and the problem: a non-square table, row and column labels that differ,
    a cell that is not a number (empty cells and ``nan`` are NaN). A valid row whose diagonal is
    not 1 gives a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: matrix file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not UTF-8 text (line {line}, byte {error.start}); save the matrix as a UTF-8 CSV"
        ) from None
    try:
        raw = pd.read_csv(io.StringIO(text), index_col=0, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty; a CLTM CSV has a header row ',code1,code2,...' and one "
            "row 'code,v1,v2,...' per target"
        ) from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path}: not a CSV table ({error})") from None
    raw.index = [str(i).strip() for i in raw.index]
    raw.columns = [str(c).strip() for c in raw.columns]
    rows, cols = list(raw.index), list(raw.columns)
    if len(rows) != len(cols):
        raise ValueError(
            f"{path}: the matrix is not square ({len(rows)} rows, {len(cols)} columns); "
            "it needs one row per target and one column per donor, for the same languages"
        )
    for labels, what in ((rows, "row"), (cols, "column")):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"{path}: {what} label(s) {', '.join(dup)} appear more than once")
    if set(rows) != set(cols):
        only_rows = sorted(set(rows) - set(cols))
        only_cols = sorted(set(cols) - set(rows))
        raise ValueError(
            f"{path}: row and column labels differ: only in rows: {', '.join(only_rows) or '-'}; "
            f"only in the header: {', '.join(only_cols) or '-'}"
        )
    raw = raw[rows]
    values = np.full((len(rows), len(rows)), np.nan)
    for i, target in enumerate(rows):
        for j, donor in enumerate(rows):
            cell = raw.iat[i, j].strip()
            if cell == "" or cell.lower() in {"nan", "na", "null"}:
                continue
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}: row {target!r}, column {donor!r}: {cell!r} is not a number"
                ) from None
    frame = pd.DataFrame(values, index=rows, columns=rows)
    check_finite_or_nan(frame, str(path))
    for i, target in enumerate(rows):
        if np.isfinite(values[i, i]) and not np.isclose(values[i, i], 1.0):
            warnings.warn(
                f"{path}: diagonal entry of {target!r} is {values[i, i]:g}, not 1 "
                "(a CLTM row is normalised by its self-gain)",
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
