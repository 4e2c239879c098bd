"""Matrices without run records (other studies', imported ones): the same diagnostics, honestly.

A matrix read from a CSV has no seeds behind it, so nothing here can be calibrated by simulation
(DESIGN.md §8): every diagnostic is the plug-in value (the paper's Table 1 estimator) with no
interval, and a cell gets an interval only when the user supplies its standard error, as the
normal-theory interval M ± z·SE labelled :data:`SUPPLIED_SE_LABEL`. Targets and donors may be
different sets (:func:`cltm_sb.analysis.diagnostics.diagnose` says which languages each
diagnostic used).

:func:`load_matrix` reads a matrix (and its SE) with the language codes mapped to Common Voice
codes; :func:`matrix_from_grid` makes the same object from a grid, so that a grid can be compared
with a published matrix; :func:`difference` sets two of them against each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cltm_sb.analysis.diagnostics import (
    TABLE1,
    all_languages,
    diagnose,
    diagnostics_in,
    read_matrix_csv,
    standard_errors_for,
)
from cltm_sb.analysis.matrix import DEFAULT_MIN_SEEDS
from cltm_sb.languages import CodeMapper, LanguageRegistry, code_mapper

DEFAULT_LEVEL = 0.95
SUPPLIED_SE_LABEL = (
    "from the supplied SE, cells assumed independent (normal theory; not calibrated by cltm)"
)
NO_RECORDS_REASON = (
    "a matrix without run records: plug-in value only, no seeds to calibrate an interval"
)
GRID_SE_LABEL = "delta-method SE of the grid's records (runs assumed independent, paper §4.4)"
VARIABILITY_NONE = "none (a matrix without run records)"


@dataclass
class MatrixAnalysis:
    """One matrix without records, diagnosed once.

    Attributes:
        source: where it came from (a CSV or a grid folder).
        title: its name in reports.
        matrix: rows = targets, columns = donors (Common Voice codes), NaN where undefined.
        se: per-cell standard errors with the same labels, or None.
        se_supplied: the SEs are the user's (intervals are then printed, labelled); False for a
            grid's delta-method SEs (shown for orientation, never as an interval).
        families: code -> family of every language on either axis.
        diagnostics: :func:`~cltm_sb.analysis.diagnostics.diagnose` of the matrix (plug-in).
        level: of the cell intervals.
    """

    source: Path
    title: str
    matrix: pd.DataFrame
    se: pd.DataFrame | None
    se_supplied: bool
    families: dict[str, str]
    diagnostics: dict[str, Any]
    level: float = DEFAULT_LEVEL

    @property
    def targets(self) -> list[str]:
        return [str(c) for c in self.matrix.index]

    @property
    def donors_axis(self) -> list[str]:
        return [str(c) for c in self.matrix.columns]

    @property
    def languages(self) -> list[str]:
        return all_languages(self.matrix)

    @property
    def has_intervals(self) -> bool:
        return self.se is not None and self.se_supplied

    def cell_bounds(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(lower, upper) of M ± z·SE from the supplied SE; NaN everywhere without one."""
        nan = pd.DataFrame(np.nan, index=self.matrix.index, columns=self.matrix.columns)
        if not self.has_intervals:
            return nan, nan.copy()
        z = float(stats.norm.ppf(0.5 + self.level / 2))
        assert self.se is not None
        return self.matrix - z * self.se, self.matrix + z * self.se

    @cached_property
    def donors(self) -> pd.DataFrame:
        """donors.csv: per target, the other donors ranked by M (NaN last), with SE and interval,
        and the reason where a cell has no value or no interval."""
        lower, upper = self.cell_bounds()
        rows = []
        for t in self.targets:
            for s in self.donors_axis:
                if s == t:
                    continue
                se = float(self.se.loc[t, s]) if self.se is not None else float("nan")
                rows.append(
                    {
                        "target": t,
                        "donor": s,
                        "value": float(self.matrix.loc[t, s]),
                        "se": se,
                        "lower": float(lower.loc[t, s]),
                        "upper": float(upper.loc[t, s]),
                    }
                )
        table = pd.DataFrame(rows, columns=["target", "donor", "value", "se", "lower", "upper"])
        order = {t: i for i, t in enumerate(self.targets)}
        table = table.assign(_t=table["target"].map(order)).sort_values(
            ["_t", "value"], ascending=[True, False], na_position="last", kind="stable"
        )
        table = table.drop(columns="_t").reset_index(drop=True)
        table.insert(0, "rank", table.groupby("target", sort=False).cumcount() + 1)
        table["interval"] = SUPPLIED_SE_LABEL if self.has_intervals else ""
        # An undefined cell says why, as a grid's donors.csv does.
        no_value = ~np.isfinite(table["value"].to_numpy(dtype=float))
        no_se = self.has_intervals & ~np.isfinite(table["se"].to_numpy(dtype=float))
        table["reason"] = np.where(
            no_value, "no value: the matrix cell is empty or NaN",
            np.where(no_se, "no interval: the SE file's cell is empty or NaN", ""),
        )
        return table

    def to_intervals_json(self) -> dict[str, Any]:
        """``intervals.json`` in the schema of ``cltm report``: plug-in values, no interval."""
        return {
            "level": self.level,
            "variability": VARIABILITY_NONE,
            "variability_note": NO_RECORDS_REASON,
            "n_seeds": None,
            "diagnostics": {
                spec.key: {
                    "point": self.diagnostics.get(spec.key),
                    "lower": None,
                    "upper": None,
                    "plugin": self.diagnostics.get(spec.key),
                    "method": "plug-in",
                    "reason": NO_RECORDS_REASON,
                }
                for spec in diagnostics_in(TABLE1)
            },
            "cells": {
                "method": SUPPLIED_SE_LABEL if self.has_intervals else None,
                "reason": "" if self.has_intervals else "no standard errors supplied (--se)",
            },
        }


def rename_codes(
    frame: pd.DataFrame, mapper: CodeMapper, registry: LanguageRegistry, where: str
) -> pd.DataFrame:
    """``frame`` with its row and column codes mapped to Common Voice codes (codes the registry
    knows stay as they are); an ambiguous code is an error that names ``where`` and ``--map``."""
    rows = mapper.map_codes([str(c) for c in frame.index], registry, f" (rows of {where})")
    cols = mapper.map_codes([str(c) for c in frame.columns], registry, f" (columns of {where})")
    out = frame.set_axis(rows, axis=0).set_axis(cols, axis=1)
    out.index.name, out.columns.name = "target", "donor"
    return out


def analyze_matrix(
    matrix: pd.DataFrame,
    registry: LanguageRegistry,
    se: pd.DataFrame | None = None,
    source: str | os.PathLike = "<memory>",
    title: str | None = None,
    se_supplied: bool = True,
    level: float = DEFAULT_LEVEL,
) -> MatrixAnalysis:
    """Diagnose a labelled matrix (square or not) whose codes ``registry`` knows."""
    codes = all_languages(matrix)
    registry.check(codes)
    families = {c: registry.family(c) for c in codes}
    diagnostics = diagnose(matrix, families=families, se=se)
    if se is not None:
        # diagnose checked the labels; keep the SEs in the matrix's order
        se = se.loc[list(matrix.index), list(matrix.columns)]
        if (se.to_numpy(dtype=float) < 0).any():
            raise ValueError(f"{source}: a standard error is negative; SEs are >= 0 or empty")
    name = title or Path(str(source)).stem
    return MatrixAnalysis(Path(source), name, matrix, se, se_supplied, families, diagnostics, level)


def load_matrix(
    path: str | os.PathLike,
    registry: LanguageRegistry,
    se_path: str | os.PathLike | None = None,
    code_map: Mapping[str, str] | None = None,
    title: str | None = None,
) -> MatrixAnalysis:
    """Read a matrix CSV (targets as rows, donors as columns; square or not) and its SE CSV.

    Codes are ISO 639-1, ISO 639-3 or Common Voice codes (``code_map``: the user's ``--map``
    for ambiguous ones such as ``zh``); the SE file must have the matrix's labels.
    """
    mapper = code_mapper(code_map)
    matrix = rename_codes(read_matrix_csv(path, square=False), mapper, registry, str(path))
    se = None
    if se_path is not None:
        se = read_matrix_csv(se_path, square=False, unit_diagonal=False)
        se = standard_errors_for(matrix, rename_codes(se, mapper, registry, str(se_path)), se_path)
    return analyze_matrix(matrix, registry, se, source=path, title=title)


def matrix_from_grid(
    folder: str | os.PathLike,
    registry: LanguageRegistry,
    task: str | None = None,
    min_seeds: int = DEFAULT_MIN_SEEDS,
) -> MatrixAnalysis:
    """A grid's plug-in matrix as a :class:`MatrixAnalysis` (its delta-method SEs kept for the
    difference's SE, never printed as intervals), to compare it with a matrix from a CSV."""
    from cltm_sb.analysis.grid_analysis import build_and_diagnose, load_grid

    data = load_grid(folder, registry, task)
    result, _ = build_and_diagnose(data, min_seeds)
    title = data.metadata(min_seeds)["title"]
    return analyze_matrix(
        result.matrix, registry, result.se, source=folder, title=title, se_supplied=False
    )


@dataclass
class MatrixDifference:
    """A − B over the targets and the donors both matrices have (A's order)."""

    value: pd.DataFrame
    se: pd.DataFrame | None
    se_label: str
    lower: pd.DataFrame | None
    upper: pd.DataFrame | None


def difference(a: MatrixAnalysis, b: MatrixAnalysis, labels: tuple[str, str] | None = None) -> MatrixDifference:
    """M_A − M_B with SE sqrt(SE_A² + SE_B²) where both have SEs (the two assumed independent);
    an interval only where both SEs were supplied by the user. ``labels`` name the two in the SE
    label (default: their titles)."""
    targets = [t for t in a.targets if t in set(b.targets)]
    donors = [s for s in a.donors_axis if s in set(b.donors_axis)]
    off = [(t, s) for t in targets for s in donors if t != s]
    if not targets or not donors or not off:
        raise ValueError(
            f"{a.title} and {b.title} share no off-diagonal cell (common targets: "
            f"{', '.join(targets) or 'none'}; common donors: {', '.join(donors) or 'none'})"
        )
    value = a.matrix.loc[targets, donors] - b.matrix.loc[targets, donors]
    se = lower = upper = None
    label = "no SE: at least one matrix came without standard errors"
    if a.se is not None and b.se is not None:
        se = np.sqrt(a.se.loc[targets, donors] ** 2 + b.se.loc[targets, donors] ** 2)
        name_a, name_b = labels or (a.title, b.title)
        kinds = [SUPPLIED_SE_LABEL if g.se_supplied else GRID_SE_LABEL for g in (a, b)]
        label = f"{name_a}: {kinds[0]}; {name_b}: {kinds[1]}; the two assumed independent"
        if a.se_supplied and b.se_supplied:
            z = float(stats.norm.ppf(0.5 + a.level / 2))
            lower, upper = value - z * se, value + z * se
    return MatrixDifference(value, se, label, lower, upper)

