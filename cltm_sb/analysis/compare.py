"""Two independent grids compared: intervals for the differences of diagnostics and of cells.

Two tasks, or two encoders, are independent experiments: each grid is analysed on its own
(:func:`cltm_sb.analysis.uncertainty.analyze_uncertainty`) and the differences combine the two
calibrated analyses.

- Diagnostics: MOVER (method of variance estimates recovery; Zou & Donner 2008, Newcombe 2011).
  From each grid's calibrated interval (l, u) around its estimate θ̂, the difference θ_A − θ_B gets
  ``θ̂_A − θ̂_B ∓ sqrt((θ̂_A − l_A)² + (u_B − θ̂_B)²)`` (lower) and ``… + sqrt((u_A − θ̂_A)² +
  (θ̂_B − l_B)²)`` (upper). It keeps the asymmetry of the square-root mapped RFD and asymmetry
  intervals, which a difference of two ± SE intervals would lose, and it needs nothing beyond
  the intervals each grid already prints. A diagnostic without an interval in either grid has no
  interval for the difference (the reason names the grid).
- Cells M_A[t, s] − M_B[t, s] over the languages both grids hold: MOVER on the two Fieller
  intervals (unbounded when either is), and a Welch test of a zero difference from the paired
  delta-method SEs with Welch–Satterthwaite degrees of freedom built from each grid's own
  (``PairedCells.dof``: n − 1, or Satterthwaite's when runs lost seeds, as its Fieller interval
  uses); Benjamini–Hochberg q-values over the cells compared. Flagged targets of either grid are not compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cltm_sb.analysis.uncertainty import (
    DIAGNOSTIC_NAMES,
    DiagnosticInterval,
    UncertaintyResult,
    bh_q_values,
)

METHOD_DIAGNOSTIC = (
    "MOVER (Zou & Donner) from the two grids' calibrated intervals; the grids are independent"
)
METHOD_CELL = (
    "MOVER from the two Fieller intervals; p-value: Welch test of a zero difference from the "
    "paired delta-method SEs; BH q-values over the compared cells"
)
CELL_COLUMNS = [
    "target",
    "donor",
    "value_a",
    "value_b",
    "difference",
    "lower",
    "upper",
    "p_value",
    "q_value",
    "reason",
]


@dataclass
class DifferenceInterval:
    """One diagnostic's difference A − B: point, interval (None when not calibrated), reason."""

    name: str
    point: float | None
    lower: float | None
    upper: float | None
    method: str
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "lower": self.lower,
            "upper": self.upper,
            "method": self.method,
            "reason": self.reason,
        }


@dataclass
class ComparisonResult:
    """Differences between two grids' diagnostics and cells, with intervals and q-values."""

    level: float
    diagnostics: dict[str, DifferenceInterval]
    cells: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CELL_COLUMNS))
    # Each grid's own: "seed", or "seed+data" for a grid of several data draws (A / B when they differ).
    variability: str = "seed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (for compare.json): level, diagnostics, and the cells as records with the
        method of their intervals and p-values."""
        cells = self.cells.astype(object).where(self.cells.notna(), None)
        return {
            "level": self.level,
            "variability": f"{self.variability} (each grid resampled on its own; the grids are independent)",
            "diagnostics": {name: d.to_dict() for name, d in self.diagnostics.items()},
            "cell_method": METHOD_CELL,
            "cells": cells.to_dict(orient="records"),
        }


def mover_difference(
    a: float, lower_a: float, upper_a: float, b: float, lower_b: float, upper_b: float
) -> tuple[float, float]:
    """MOVER interval of a − b from independent intervals (lower_a, upper_a) and (lower_b, upper_b)."""
    lower = a - b - math.sqrt((a - lower_a) ** 2 + (upper_b - b) ** 2)
    upper = a - b + math.sqrt((upper_a - a) ** 2 + (b - lower_b) ** 2)
    return lower, upper


def diagnostic_difference(
    name: str, da: DiagnosticInterval, db: DiagnosticInterval
) -> DifferenceInterval:
    """A − B of one diagnostic, with a MOVER interval where both grids have a calibrated one."""
    if da.point is None or db.point is None:
        which = "A" if da.point is None else "B"
        reason = (da.reason if da.point is None else db.reason) or "undefined"
        return DifferenceInterval(
            name, None, None, None, METHOD_DIAGNOSTIC, f"grid {which}: {reason}"
        )
    point = da.point - db.point
    for label, d in (("A", da), ("B", db)):
        if d.lower is None or d.upper is None:
            reason = f"grid {label} has no calibrated interval ({d.reason or 'none'})"
            return DifferenceInterval(name, point, None, None, METHOD_DIAGNOSTIC, reason)
    lower, upper = mover_difference(da.point, da.lower, da.upper, db.point, db.lower, db.upper)
    return DifferenceInterval(name, point, lower, upper, METHOD_DIAGNOSTIC)


def _cell_frame(res: UncertaintyResult, locales: list[str]) -> dict[str, np.ndarray]:
    """The result's cell arrays reordered to ``locales`` (rows and columns)."""
    index = [res.locales.index(c) for c in locales]
    grid = np.ix_(index, index)
    usable = res.point.valid_rows & ~res.point.flagged
    return {
        "value": res.point.matrix[grid],
        "lower": res.cell_lower[grid],
        "upper": res.cell_upper[grid],
        "bounded": res.cell_bounded[grid],
        "se": res.se_paired[grid],
        # The t degrees of freedom of the grid's own interval and test (n − 1 with every seed).
        "dof": res.cells.dof[grid],
        "interval": ~np.isnan(res.cell_lower[grid]),
        "usable": usable[index][:, None] & np.isfinite(res.point.matrix[grid]),
        "reason": res.verdict_reasons[grid],
    }


def cell_differences(res_a: UncertaintyResult, res_b: UncertaintyResult) -> pd.DataFrame:
    """Per cell of the shared languages: M_A − M_B, MOVER interval, Welch p-value, BH q-value."""
    locales = [c for c in res_a.locales if c in set(res_b.locales)]
    if not locales:
        return pd.DataFrame(columns=CELL_COLUMNS)
    a, b = _cell_frame(res_a, locales), _cell_frame(res_b, locales)
    L = len(locales)
    off = ~np.eye(L, dtype=bool)
    both = a["usable"] & b["usable"] & off
    diff = a["value"] - b["value"]
    with np.errstate(invalid="ignore", divide="ignore"):
        var_a, var_b = a["se"] ** 2, b["se"] ** 2
        se = np.sqrt(var_a + var_b)
        df = (var_a + var_b) ** 2 / (var_a**2 / a["dof"] + var_b**2 / b["dof"])
        p = 2 * stats.t.sf(np.abs(diff / se), df)
    # A p-value only where both grids have their own interval (and so their own test).
    p = np.where(both & a["interval"] & b["interval"] & np.isfinite(p), p, np.nan)
    q = bh_q_values(p)
    bounded = a["bounded"] & b["bounded"]
    with np.errstate(invalid="ignore"):
        lower = diff - np.sqrt((a["value"] - a["lower"]) ** 2 + (b["upper"] - b["value"]) ** 2)
        upper = diff + np.sqrt((a["upper"] - a["value"]) ** 2 + (b["value"] - b["lower"]) ** 2)
    rows = []
    for i, t in enumerate(locales):
        for j, s in enumerate(locales):
            if i == j:
                continue
            ok = bool(both[i, j])
            reason = ""
            if not ok:  # which grid, and its own reason (flagged row, undefined row or cell)
                reason = "; ".join(
                    f"grid {label}: {frame['reason'][i, j] or 'undefined'}"
                    for label, frame in (("A", a), ("B", b))
                    if not frame["usable"][i, j]
                )
            elif not bounded[i, j]:
                reason = "Fieller interval unbounded in a grid (self-gain not significant)"
            rows.append(
                {
                    "target": t,
                    "donor": s,
                    "value_a": _num(a["value"][i, j]),
                    "value_b": _num(b["value"][i, j]),
                    "difference": _num(diff[i, j]) if ok else None,
                    "lower": _num(lower[i, j]) if ok and bounded[i, j] else None,
                    "upper": _num(upper[i, j]) if ok and bounded[i, j] else None,
                    "p_value": _num(p[i, j]),
                    "q_value": _num(q[i, j]),
                    "reason": reason,
                }
            )
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def compare_uncertainty(res_a: UncertaintyResult, res_b: UncertaintyResult) -> ComparisonResult:
    """Differences A − B of every Table 1 diagnostic and of every shared cell (see the module doc).

    Both results must use the same interval level.
    """
    if not math.isclose(res_a.level, res_b.level):
        raise ValueError(f"the grids' intervals differ in level: {res_a.level} and {res_b.level}")
    diagnostics = {
        name: diagnostic_difference(name, res_a.diagnostics[name], res_b.diagnostics[name])
        for name in DIAGNOSTIC_NAMES
    }
    kinds = dict.fromkeys([res_a.variability, res_b.variability])
    return ComparisonResult(res_a.level, diagnostics, cell_differences(res_a, res_b), " / ".join(kinds))


def _num(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None
