"""The grid of training runs: the plan, the grid folder's layout, run status and executors.

Modules: :mod:`~cltm_sb.grid.plan` (which runs a matrix needs), :mod:`~cltm_sb.grid.layout` (the one
owner of a grid folder's names), :mod:`~cltm_sb.grid.status` (done, failed, pending) and
:mod:`~cltm_sb.grid.executors` (where the runs execute: local, SLURM, in-process).
"""
