"""Language distances from a user's CSV, as a covariate of the completion model (issue 19).

Typological, genetic or geographic distances (e.g. from lang2vec/URIEL) are known for every pair,
measured or not. Where transfer falls off with such a distance, a smooth function of it predicts
the cells of the pairs a budgeted grid did not run; cross-validation decides whether it does.

Two layouts are read:

- long: ``lang1,lang2,<name>[,<name2>...]``, one row per unordered pair, one column per distance;
- square: a header ``,code1,code2,...`` and one row ``code,d1,d2,...`` per language (one distance,
  named ``distance``).

Each distance enters the model through :func:`smooth_basis`: piecewise-linear "hat" functions at
quantile knots (a smooth, monotone-or-not function of the distance, flat beyond the outer knots),
with a penalty on second differences of the coefficients that the model scales by its smoothing
weight.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

Array = np.ndarray

KNOTS = 6
LONG_KEYS = ("lang1", "lang2")


def read_distances(path: str | os.PathLike, locales: Sequence[str]) -> dict[str, Array]:
    """``{name: [n, n] symmetric distances}`` for ``locales`` (matrix order), from a long or square CSV.

    Every pair of ``locales`` needs a finite distance; errors name the file, the pair or the
    language and what to do.
    """
    from cltm_sb.io import read_csv_text

    path = Path(path)
    frame = read_csv_text(
        path, "distance", "the layout is lang1,lang2,<distance>[,...] or a square CSV ',code1,code2,...'"
    )
    codes = list(locales)
    if all(k in frame.columns for k in LONG_KEYS):
        return _from_long(frame, path, codes)
    return _from_square(frame, path, codes)


def _number(text: str, where: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: a distance must be a finite number >= 0, got {text!r}")
    return value


def _from_long(frame: pd.DataFrame, path: Path, codes: list[str]) -> dict[str, Array]:
    names = [c for c in frame.columns if c not in LONG_KEYS]
    if not names:
        raise ValueError(f"{path}: no distance column; the layout is lang1,lang2,<distance>[,...]")
    index = {c: i for i, c in enumerate(codes)}
    n = len(codes)
    out = {name: np.where(np.eye(n, dtype=bool), 0.0, np.nan) for name in names}
    first_line: dict[frozenset[str], int] = {}
    for row_no, row in enumerate(frame.itertuples(index=False), start=2):
        values = dict(zip(frame.columns, row))
        a, b = str(values["lang1"]).strip(), str(values["lang2"]).strip()
        if a not in index or b not in index:
            continue  # distances of languages outside the grid are allowed
        pair = frozenset((a, b))
        for name in names:
            d = _number(values[name], f"{path}, line {row_no} ({a},{b}), column {name!r}")
            known = out[name][index[a], index[b]]
            if pair in first_line and known != d:
                raise ValueError(
                    f"{path}, line {row_no}: the pair {a},{b} already has {name!r} = {known:g} (line "
                    f"{first_line[pair]}), here {d:g}; keep one row per pair"
                )
            out[name][index[a], index[b]] = out[name][index[b], index[a]] = d
        first_line.setdefault(pair, row_no)
    for name, d in out.items():
        _check_complete(d, codes, path, name)
    return out


def _from_square(frame: pd.DataFrame, path: Path, codes: list[str]) -> dict[str, Array]:
    first = frame.columns[0]
    frame = frame.set_index(first)
    frame.index = [str(i).strip() for i in frame.index]
    missing = [c for c in codes if c not in frame.index or c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: no row/column for {missing}; give a distance for every language of the grid "
            "(square layout ',code1,code2,...' or long layout 'lang1,lang2,distance')"
        )
    n = len(codes)
    d = np.zeros((n, n))
    for i, a in enumerate(codes):
        for j, b in enumerate(codes):
            if i != j:
                d[i, j] = _number(frame.at[a, b], f"{path}, row {a!r}, column {b!r}")
    if not np.allclose(d, d.T, equal_nan=True):
        i, j = np.argwhere(~np.isclose(d, d.T))[0]
        raise ValueError(
            f"{path}: distances must be symmetric; {codes[i]}->{codes[j]} is {d[i, j]:g} but "
            f"{codes[j]}->{codes[i]} is {d[j, i]:g}"
        )
    return {"distance": d}


def _check_complete(d: Array, codes: list[str], path: Path, name: str) -> None:
    off = ~np.eye(len(codes), dtype=bool)
    holes = np.argwhere(off & ~np.isfinite(d))
    if holes.size:
        i, j = holes[0]
        raise ValueError(
            f"{path}: column {name!r} has no distance for the pair {codes[i]},{codes[j]} "
            f"({len(holes) // 2} pairs missing); add a row 'lang1,lang2,...' for every pair of the grid"
        )


def hat_functions(values: Array, knots: Array) -> Array:
    """[..., K] piecewise-linear interpolation weights of ``values`` at ``knots`` (flat outside)."""
    x = np.clip(values, knots[0], knots[-1])
    out = np.zeros(x.shape + (knots.size,))
    if knots.size == 1:
        out[..., 0] = 1.0
        return out
    right = np.clip(np.searchsorted(knots, x, side="right"), 1, knots.size - 1)
    left = right - 1
    span = knots[right] - knots[left]
    w = np.where(span > 0, (x - knots[left]) / np.where(span > 0, span, 1.0), 0.0)
    flat = out.reshape(-1, knots.size)
    rows = np.arange(flat.shape[0])
    flat[rows, left.ravel()] += (1 - w).ravel()
    flat[rows, right.ravel()] += w.ravel()
    return flat.reshape(out.shape)


def smooth_basis(distances: dict[str, Array], observed: Array, knots: int = KNOTS) -> tuple[Array, Array]:
    """The basis [n, n, K] of all distances and its roughness penalty [K, K].

    Knots sit at quantiles of each distance over the ``observed`` cells (where the function is
    fitted); the penalty sums squared second differences of each distance's coefficients.
    """
    blocks, penalties = [], []
    for d in distances.values():
        at = d[observed & np.isfinite(d)]
        if at.size == 0:
            continue
        k = np.unique(np.quantile(at, np.linspace(0.0, 1.0, knots)))
        blocks.append(hat_functions(np.nan_to_num(d, nan=float(np.median(at))), k))
        second = np.diff(np.eye(k.size), 2, axis=0) if k.size > 2 else np.zeros((0, k.size))
        penalties.append(second.T @ second)
    if not blocks:
        n = observed.shape[0]
        return np.zeros((n, n, 0)), np.zeros((0, 0))
    size = sum(p.shape[0] for p in penalties)
    penalty = np.zeros((size, size))
    at = 0
    for p in penalties:
        penalty[at : at + p.shape[0], at : at + p.shape[0]] = p
        at += p.shape[0]
    return np.concatenate(blocks, axis=-1), penalty
