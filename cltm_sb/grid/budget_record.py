"""What plan.json records about a budgeted grid (issue 19): its pairs, where they came from, its history.

A budgeted grid (``cltm plan --budget F`` or ``--pairs pairs.csv ...``) trains only some pair runs.
The plan keeps a ``budget`` block so that a reader of the grid folder can tell which design or
files chose them, how many units (pairs, or cells with one run per cell) were planned out of the
full grid's, and how the grid grew: re-planning the same folder with a larger nested budget keeps
the finished runs (run ids do not depend on the budget) and appends the earlier block to
``history``. A grid that was never budgeted has no block, so its plan.json is as before.

The planned units' hash (``units_sha256``) is the SHA-256 of the sorted lines ``a,b`` of the
planned units (each unordered pair written with its codes sorted; a cell as ``target,donor``),
joined by newlines: two plans with the same hash train the same pair runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cltm_sb.grid.layout import GridLayout, PlanError
from cltm_sb.grid.plan import Plan
from cltm_sb.io import sha256_file, sha256_text

DESIGN = "design"
PAIRS = "pairs"
#: Every pair of a grid that was budgeted before (written only to keep the budgets' history).
FULL = "full"
BUILT_IN = "built-in registry"


@dataclass(frozen=True)
class BudgetRequest:
    """What the user asked ``cltm plan`` for: ``--pairs`` files or a ``--budget`` design.

    Attributes:
        pairs_files: the ``--pairs`` files, as given.
        budget: the ``--budget`` fraction F (None with ``--pairs``).
        seed: the seed of the ``cltm design`` behind ``--budget``.
        families_csv: the ``--families`` CSV the design's families come from (None: built-in).
        one_run_per_cell: the plan's protocol (the units are ordered cells).
        audit: with ``budget``, the share of its pairs drawn at random as an audit sample
            (``cltm design --audit``).
    """

    pairs_files: tuple[str, ...] = field(default_factory=tuple)
    budget: float | None = None
    seed: int = 0
    families_csv: str | None = None
    one_run_per_cell: bool = False
    audit: float = 0.0

    @property
    def kind(self) -> str:
        return DESIGN if self.budget is not None else PAIRS

    def pairs(self, locales: Sequence[str]) -> list[tuple[str, str]]:
        """The pair units to plan (:func:`cltm_sb.analysis.designs.plan_pairs`)."""
        from cltm_sb.analysis.designs import plan_pairs
        from cltm_sb.languages import load_registry

        if self.audit:
            core, audit = self._audit_design(locales)
            return core + audit
        families = load_registry(self.families_csv).families(locales) if self.budget is not None else None
        files = list(self.pairs_files) or None
        return plan_pairs(locales, self.one_run_per_cell, files, self.budget, families, seed=self.seed)

    def audit_pairs(self, locales: Sequence[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The core and audit pairs among :meth:`pairs`: the design's (``audit``) or the files'
        ``role`` column (a file without one, e.g. of a ``--next`` round, adds neither)."""
        from cltm_sb.analysis.designs import read_pair_roles

        if self.audit:
            return self._audit_design(locales)
        core: list[tuple[str, str]] = []
        audit: list[tuple[str, str]] = []
        for path in self.pairs_files:
            file_core, file_audit = read_pair_roles(path)
            core += file_core
            audit += file_audit
        return core, audit

    def _audit_design(self, locales: Sequence[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        from cltm_sb.analysis.designs import audit_design
        from cltm_sb.languages import load_registry

        families = load_registry(self.families_csv).families(locales)
        return audit_design(locales, self.budget, families, seed=self.seed, audit=self.audit)


def budget_request(
    pairs_files: Sequence[str] | None,
    budget: float | None,
    families_csv: str | None = None,
    one_run_per_cell: bool = False,
    seed: int = 0,
    grid: str | os.PathLike | None = None,
    audit: float = 0.0,
) -> BudgetRequest | None:
    """The request of ``--pairs``/``--budget`` (None: neither, a grid of every pair).

    ``grid``: the folder being planned. Re-planning a grid with ``budget`` but without
    ``families_csv`` designs with the grid's own families.csv (the copy `cltm plan --families`
    made), as the first plan did: with other families the design would not be nested and
    finished runs would be left out."""
    if audit and budget is None:
        raise ValueError("--audit needs --budget (a pairs.csv of `cltm design --audit` carries its own roles)")
    if not pairs_files and budget is None:
        return None
    if pairs_files and budget is not None:
        raise ValueError(
            "pass --pairs or --budget, not both: to add pairs (e.g. of `cltm design --next`) to a "
            "--budget design, write that design first (`cltm design --locales ... --budget F --seed S "
            "-o design.csv`, the plan's F, seed and families) and plan `--pairs design.csv --pairs more.csv`"
        )
    if audit and one_run_per_cell:
        raise ValueError("--audit samples pairs; it cannot be used with --one-run-per-cell")
    if families_csv is None and budget is not None and grid is not None:
        own = GridLayout(grid).families_file
        families_csv = str(own) if own.is_file() else None
    return BudgetRequest(tuple(str(p) for p in pairs_files or ()), budget, seed, families_csv, one_run_per_cell,
                         audit)


def planned_units(plan: Plan) -> list[tuple[str, str]]:
    """The plan's distinct pair units, sorted: unordered pairs (codes sorted) or (target, donor) cells."""
    units = set()
    for run in plan.runs:
        if run.kind != "pair":
            continue
        a, b = run.train[0][0], run.train[1][0]
        units.add((a, b) if plan.one_run_per_cell else tuple(sorted((a, b))))
    return sorted(units)


def full_units(plan: Plan) -> int:
    """The number of pair units of the same plan without a budget (its targets and donors)."""
    targets, donors = set(plan.targets), set(plan.donors)
    if plan.one_run_per_cell:
        return sum(1 for t in plan.targets for s in plan.donors if s != t)
    codes = plan.locales
    return sum(
        1
        for i, x in enumerate(codes)
        for y in codes[i + 1 :]
        if (x in targets and y in donors) or (y in targets and x in donors)
    )


def units_sha256(units: Sequence[tuple[str, str]]) -> str:
    """SHA-256 of the sorted ``a,b`` lines of ``units`` (see the module's docstring)."""
    return sha256_text("\n".join(sorted(f"{a},{b}" for a, b in units)))


def _file_entry(path: str) -> dict[str, Any]:
    from cltm_sb.analysis.designs import read_pairs_csv

    pairs, ordered = read_pairs_csv(path)
    return {"path": path, "sha256": sha256_file(path), "n_units": len(pairs), "unit": "cells" if ordered else "pairs"}


def _current_block(plan: Plan, request: BudgetRequest | None) -> dict[str, Any]:
    units = planned_units(plan)
    total = full_units(plan)
    block: dict[str, Any] = {"kind": request.kind if request is not None else FULL}
    if request is not None and request.budget is not None:
        families: dict[str, Any] = {"source": BUILT_IN}
        if request.families_csv is not None:
            families = {"source": str(request.families_csv), "sha256": sha256_file(request.families_csv)}
        block.update(fraction=request.budget, design_seed=request.seed, families=families)
        if request.audit:
            block["audit"] = request.audit
    elif request is not None:
        block["files"] = [_file_entry(p) for p in request.pairs_files]
    core, audit = request.audit_pairs(plan.locales) if request is not None and not plan.one_run_per_cell else ([], [])
    if audit:
        # The audit sample and the core it was drawn beside (`cltm complete GRID` gives the
        # diagnostics design-based intervals from them; pairs in neither came later).
        block["audit_units"] = sorted(f"{a},{b}" for a, b in (tuple(sorted(p)) for p in audit))
        block["core_units"] = sorted(f"{a},{b}" for a, b in (tuple(sorted(p)) for p in core))
    block.update(
        ordered=plan.one_run_per_cell,
        unit="cells" if plan.one_run_per_cell else "pairs",
        n_units=len(units),
        n_full=total,
        f_eff=round(len(units) / total, 6) if total else None,
        units_sha256=units_sha256(units),
    )
    return block


def _earlier_block(plan: Plan) -> dict[str, Any] | None:
    """The budget block of the plan now in ``plan``'s folder, if it is of the same grid.

    The same grid: the same task, configuration and data (the runs a re-plan keeps); a plan of
    another one (replaced with ``--force``) or an unreadable plan.json starts no history.
    """
    try:
        fields = plan.layout.plan_fields()
    except PlanError:
        return None
    if not fields or not isinstance(fields.get("budget"), dict):
        return None
    same = (fields.get("task"), fields.get("config_hash"), fields.get("data_hash"))
    if same != (plan.task, plan.config_hash, plan.data_hash):
        return None
    return fields["budget"]


def budget_block(plan: Plan, request: BudgetRequest | None) -> dict[str, Any] | None:
    """The ``budget`` block of ``plan`` (call before :meth:`Plan.save` replaces the folder's plan.json).

    None for a grid of every pair that was never budgeted. When the folder already holds a
    budgeted plan of the same grid, its block (without its own history) is appended to
    ``history`` unless the new block is the same: a re-plan with the same arguments adds nothing.
    A grid re-planned with every pair keeps a block of kind ``full`` with the history.
    """
    earlier = _earlier_block(plan)
    if request is None and earlier is None:
        return None
    block = _current_block(plan, request)
    if earlier is not None:
        history = [dict(h) for h in earlier.get("history") or []]
        core = {k: v for k, v in earlier.items() if k != "history"}
        if core != block:
            history.append(core)
        if history:
            block["history"] = history
    return block


def _fraction(block: dict[str, Any]) -> str:
    f_eff = block.get("f_eff")
    return "?" if f_eff is None else f"{f_eff:.2f}"


def partial_budget(block: dict[str, Any] | None) -> str | None:
    """"k of n pairs measured ..." for a grid that plans only some of its pairs (None otherwise)."""
    if not block or block.get("kind") == FULL:
        return None
    n_units, n_full = block.get("n_units"), block.get("n_full")
    if not isinstance(n_units, int) or not isinstance(n_full, int) or n_units >= n_full:
        return None
    return f"a budgeted grid: {n_units} of {n_full} {block.get('unit', 'pairs')} planned (plan.json)"


def budget_line(block: dict[str, Any] | None) -> str | None:
    """One line for ``cltm status`` / ``cltm plan`` about a budgeted grid (None: never budgeted).

    Example: ``budgeted grid: 473 of 946 pairs (F = 0.50, cltm design seed 0); earlier plans: F = 0.30``.
    """
    if not block:
        return None
    counts = f"{block.get('n_units')} of {block.get('n_full')} {block.get('unit', 'pairs')}"
    kind = block.get("kind")
    if kind == FULL:
        line = f"every pair planned: {counts}"
    elif kind == DESIGN:
        line = f"budgeted grid: {counts} (F = {_fraction(block)}, cltm design seed {block.get('design_seed')})"
    else:
        names = " + ".join(os.path.basename(str(f.get("path"))) for f in block.get("files") or [])
        line = f"budgeted grid: {counts} (F = {_fraction(block)}, from {names})"
    if block.get("audit_units"):
        line += f"; {len(block['audit_units'])} of them an audit drawn at random"
        from cltm_sb.analysis.completion_audit import audit_size_note

        note = audit_size_note(len(block["audit_units"]), block.get("n_units") or 0, block.get("n_full") or 0)
        if note:
            line += f" ({note})"
    history = block.get("history") or []
    if history:
        line += "; earlier plans: F = " + ", ".join(_fraction(h) for h in history)
    return line
