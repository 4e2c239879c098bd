"""Importers of other studies' transfer results into the matrix layout ``cltm analyze`` reads.

- :func:`import_dr`: the Donors-and-Recipients release (``results/transfer_results.csv``, one row
  per model, fine-tuning dataset and language, evaluation dataset and language; the deltas are in
  percentage points against the base model, 3 seeds aggregated per row). Columns are read by
  name; the ones used are :data:`DR_COLUMNS` (``delta_score_norm_se``, or else
  ``delta_score_norm_std`` / sqrt(``n_seeds``), for the SE). ``regime`` is not needed (it
  follows from the two languages).
- :func:`import_long`: a generic long CSV ``target,donor,value[,se]``.

Both give rows = evaluated (target) languages and columns = fine-tuning (donor) languages, so the
matrix may be non-square. :func:`normalise_by_own` divides each row by the target's own-language
value, as a CLTM row is divided by its self-gain: a row whose own value is missing or not
positive is NaN, with its reason. Language codes (ISO 639-1, ISO 639-3, Common Voice) become
Common Voice codes (:class:`cltm_sb.languages.CodeMapper`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cltm_sb.analysis.diagnostics import write_matrix_csv
from cltm_sb.analysis.matrix import FLAG_SE_MULTIPLE
from cltm_sb.io import atomic_write_json, writes_output_folder
from cltm_sb.languages import code_mapper

DR_COLUMNS = (
    "model_name",
    "fine_tuned_dataset",
    "fine_tuned_language",
    "eval_dataset",
    "eval_language",
    "delta_score_norm_mean",
)
LONG_COLUMNS = ("target", "donor", "value")
RATIO_SE_NOTE = (
    "delta method on the ratio, numerator and denominator assumed independent (different "
    "fine-tunings; the base model's score they share is one deterministic evaluation)"
)


@dataclass
class ImportedMatrix:
    """What an importer read: the values, their SEs, the row-normalised matrix and its reasons.

    Attributes:
        values: rows = targets (evaluated), columns = donors (fine-tuned on), NaN where missing.
        se: their standard errors (None when the source has none).
        cltm: ``values`` with each row divided by the target's own value (None: not normalised).
        cltm_se: its delta-method SE (None without ``se``).
        reasons: one {target, donor, reason} per NaN row of ``cltm`` (donor ``*``).
        flagged: targets whose own value is within 2 SE of zero (kept, as in the CLTM).
        info: where it came from (file, filters, rows used, code mapping), for ``import.json``.
    """

    values: pd.DataFrame
    se: pd.DataFrame | None
    cltm: pd.DataFrame | None = None
    cltm_se: pd.DataFrame | None = None
    reasons: list[dict[str, str]] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _read_rows(
    path: Path, required: Sequence[str]
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, row)]) of a CSV read by column name; missing columns raise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or ()]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; save it as a UTF-8 CSV") from None
    for line, row in rows:
        # DictReader pads a short row with None and files a long row's surplus under None.
        width = sum(value is not None for key, value in row.items() if key is not None)
        width += len(row.get(None) or ())
        if width != len(header):
            raise ValueError(
                f"{path}, line {line}: {width} fields where the header has {len(header)}; "
                "fix or remove the line"
            )
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})"
        )
    return header, rows


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    text = (text or "").strip()
    if text == "" or text.lower() in {"nan", "na", "null", "none"}:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{path}, line {line}, column {column}: {text!r} is not a number"
        ) from None
    if math.isinf(value):
        raise ValueError(f"{path}, line {line}, column {column}: {text!r} is not finite")
    return value


def _frames(
    path: Path,
    cells: Sequence[tuple[int, str, str, float, float]],
    code_map: Mapping[str, str] | None,
    known: Container[str],
) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    """Matrices from (line, target, donor, value, se) cells, codes mapped to Common Voice codes;
    a cell given twice, or a negative SE, is an error naming the line."""
    for line, target, donor, _, se in cells:
        if se < 0:
            raise ValueError(f"{path}, line {line} ({target}, {donor}): the SE {se:g} is negative; SEs are >= 0 or empty")
    mapper = code_mapper(code_map)
    originals = list(dict.fromkeys([c[1] for c in cells] + [c[2] for c in cells]))
    mapped = dict(zip(originals, mapper.map_codes(originals, known, f" in {path}")))
    seen: dict[tuple[str, str], int] = {}
    targets: list[str] = []
    donors: list[str] = []
    for line, t, s, _, _ in cells:
        key = (mapped[t], mapped[s])
        if key in seen:
            raise ValueError(
                f"{path}: lines {seen[key]} and {line} both give target {t!r}, donor {s!r}; "
                "keep one (or filter the file further)"
            )
        seen[key] = line
        targets.append(key[0])
        donors.append(key[1])
    rows, cols = list(dict.fromkeys(targets)), list(dict.fromkeys(donors))
    values = pd.DataFrame(np.nan, index=rows, columns=cols)
    se = pd.DataFrame(np.nan, index=rows, columns=cols)
    for (_, _, _, v, e), t, s in zip(cells, targets, donors):
        values.loc[t, s] = v
        se.loc[t, s] = e
    for frame in (values, se):
        frame.index.name, frame.columns.name = "target", "donor"
    has_se = bool(np.isfinite(se.to_numpy()).any())
    return values, (se if has_se else None), {k: v for k, v in mapped.items() if k != v}


def normalise_by_own(
    values: pd.DataFrame, se: pd.DataFrame | None, what: str = "own-language value"
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[dict[str, str]], list[str]]:
    """Each row divided by its target's own value (column = the target), as a CLTM row by its
    self-gain: (matrix, its SE, NaN reasons, targets within 2 SE of zero).

    A target that is not a donor, or whose own value is missing or not positive, gets a NaN row
    with its reason.
    """
    out = pd.DataFrame(np.nan, index=values.index, columns=values.columns)
    out_se = out.copy() if se is not None else None
    reasons: list[dict[str, str]] = []
    flagged: list[str] = []
    for t in values.index:
        if t not in values.columns:
            reasons.append({"target": t, "donor": "*", "reason": f"no {what}: {t} is not a donor"})
            continue
        own = float(values.loc[t, t])
        if not np.isfinite(own):
            reasons.append({"target": t, "donor": "*", "reason": f"{what} is missing"})
            continue
        if own <= 0:
            reasons.append({"target": t, "donor": "*", "reason": f"{what} = {own:.4g} <= 0"})
            continue
        row = values.loc[t].to_numpy(dtype=float)
        out.loc[t] = row / own
        if se is not None and out_se is not None:
            own_se = float(se.loc[t, t])
            row_se = se.loc[t].to_numpy(dtype=float)
            var = row_se**2 / own**2 + row**2 * own_se**2 / own**4
            out_se.loc[t] = np.sqrt(var)
            out_se.loc[t, t] = 0.0  # 1 by definition
            if np.isfinite(own_se) and own <= FLAG_SE_MULTIPLE * own_se:
                flagged.append(str(t))
    return out, out_se, reasons, flagged


def import_dr(
    path: str | os.PathLike,
    model: str,
    source_task: str,
    eval_task: str,
    code_map: Mapping[str, str] | None = None,
    known: Container[str] = (),
) -> ImportedMatrix:
    """Read one model's matrix of the Donors-and-Recipients release (see the module docstring).

    ``source_task`` selects ``fine_tuned_dataset``, ``eval_task`` selects ``eval_dataset``;
    targets are the eval languages, donors the fine-tuning languages; ``known`` codes (a
    ``--families`` registry) are kept as they are.
    """
    path = Path(path)
    header, rows = _read_rows(path, DR_COLUMNS)
    chosen = [(line, r) for line, r in rows if (r["model_name"] or "").strip() == model]
    if not chosen:
        models = sorted({(r["model_name"] or "").strip() for _, r in rows})
        raise ValueError(
            f"{path}: no rows of model {model!r}; models in the file: {', '.join(models[:20]) or 'none'}"
        )
    tasks = sorted(
        {(r["fine_tuned_dataset"].strip(), r["eval_dataset"].strip()) for _, r in chosen}
    )
    chosen = [
        (line, r)
        for line, r in chosen
        if r["fine_tuned_dataset"].strip() == source_task and r["eval_dataset"].strip() == eval_task
    ]
    if not chosen:
        pairs = "; ".join(f"{s} -> {e}" for s, e in tasks[:20])
        raise ValueError(
            f"{path}: model {model!r} has no rows fine-tuned on {source_task!r} and evaluated on "
            f"{eval_task!r}; its (--source-task -> --eval-task) pairs: {pairs}"
        )
    has_se = "delta_score_norm_se" in header
    has_std = "delta_score_norm_std" in header and "n_seeds" in header
    cells = []
    for line, r in chosen:
        value = _number(path, line, "delta_score_norm_mean", r["delta_score_norm_mean"])
        se = (
            _number(path, line, "delta_score_norm_se", r["delta_score_norm_se"])
            if has_se
            else math.nan
        )
        if not np.isfinite(se) and has_std:
            std = _number(path, line, "delta_score_norm_std", r["delta_score_norm_std"])
            n = _number(path, line, "n_seeds", r["n_seeds"])
            se = std / math.sqrt(n) if n > 0 else math.nan
        cells.append(
            (line, r["eval_language"].strip(), r["fine_tuned_language"].strip(), value, se)
        )
    values, se_frame, renamed = _frames(path, cells, code_map, known)
    cltm, cltm_se, reasons, flagged = normalise_by_own(values, se_frame, "own-language Δ")
    info = {
        "format": "donors-and-recipients",
        "file": str(path),
        "model_name": model,
        "fine_tuned_dataset": source_task,
        "eval_dataset": eval_task,
        "rows_used": len(chosen),
        "values": "delta_score_norm_mean: Δ against the base model, percentage points",
        "se": "delta_score_norm_se"
        if has_se
        else ("delta_score_norm_std / sqrt(n_seeds)" if has_std else None),
        "codes_mapped": renamed,
    }
    return ImportedMatrix(values, se_frame, cltm, cltm_se, reasons, flagged, info)


def import_long(
    path: str | os.PathLike,
    normalise: bool = False,
    code_map: Mapping[str, str] | None = None,
    known: Container[str] = (),
) -> ImportedMatrix:
    """Read a long CSV ``target,donor,value[,se]`` (one row per cell).

    Without ``normalise`` the values are the matrix (e.g. a published CLTM); with it they are raw
    gains and each row is divided by the target's own value (:func:`normalise_by_own`).
    """
    path = Path(path)
    header, rows = _read_rows(path, LONG_COLUMNS)
    if not rows:
        raise ValueError(f"{path}: no rows after the header {','.join(header)}")
    has_se = "se" in header
    cells = [
        (
            line,
            (r["target"] or "").strip(),
            (r["donor"] or "").strip(),
            _number(path, line, "value", r["value"]),
            _number(path, line, "se", r["se"]) if has_se else math.nan,
        )
        for line, r in rows
    ]
    for line, t, s, _, _ in cells:
        if not t or not s:
            raise ValueError(f"{path}, line {line}: empty target or donor")
    values, se, renamed = _frames(path, cells, code_map, known)
    info = {"format": "long", "file": str(path), "rows_used": len(rows), "codes_mapped": renamed}
    if not normalise:
        return ImportedMatrix(values, se, values, se, info=info)
    cltm, cltm_se, reasons, flagged = normalise_by_own(values, se)
    return ImportedMatrix(values, se, cltm, cltm_se, reasons, flagged, info)


@writes_output_folder("out_dir", "import")
def write_imported(imported: ImportedMatrix, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``delta.csv``/``delta_se.csv`` (the values as read, when normalised), ``cltm.csv``/
    ``cltm_se.csv`` (what ``cltm report --matrix`` reads) and ``import.json``."""
    out = Path(out_dir)  # the staging folder of writes_output_folder
    written: dict[str, Path] = {}
    normalised = imported.cltm is not None and imported.cltm is not imported.values
    if normalised:
        written["delta"] = write_matrix_csv(imported.values, out / "delta.csv")
        if imported.se is not None:
            written["delta_se"] = write_matrix_csv(imported.se, out / "delta_se.csv")
    cltm = imported.cltm if imported.cltm is not None else imported.values
    cltm_se = imported.cltm_se if imported.cltm is not None else imported.se
    written["cltm"] = write_matrix_csv(cltm, out / "cltm.csv")
    if cltm_se is not None:
        written["cltm_se"] = write_matrix_csv(cltm_se, out / "cltm_se.csv")
    notes = {}
    if normalised:
        notes["cltm"] = "each row divided by the target's own-language value (column = target)"
        if cltm_se is not None:
            notes["cltm_se"] = RATIO_SE_NOTE
    summary = {
        **imported.info,
        "targets": [str(t) for t in cltm.index],
        "donors": [str(s) for s in cltm.columns],
        "nan_reasons": imported.reasons,
        "flagged_targets": imported.flagged,
        "notes": notes,
    }
    written["import"] = atomic_write_json(out / "import.json", summary)
    return written
