"""cltm_sb: Cross-Lingual Transfer Matrices for paralinguistic speech tasks on SpeechBrain.

The package is a library first: every piece (data preparation, recipes, the grid of runs, the
matrix and its diagnostics) can be imported and used on its own; ``cltm`` is a thin command line
on top of it.
"""

__version__ = "0.1.0"
