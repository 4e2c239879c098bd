"""Analysis of run records: matrices, diagnostics and their uncertainty (DESIGN.md §3, §8)."""
