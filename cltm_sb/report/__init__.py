"""The report of a finished grid (DESIGN.md §3): style, figures, document (content), render, write.

Import from the modules: :mod:`cltm_sb.report.write` (``write_report``, ``write_comparison``),
:mod:`cltm_sb.report.document` (the content), :mod:`cltm_sb.report.render` (Markdown, HTML),
:mod:`cltm_sb.report.figures` (heatmaps, learning curves) and :mod:`cltm_sb.report.style`. This
file imports nothing, so that importing one of them does not load matplotlib.
"""
