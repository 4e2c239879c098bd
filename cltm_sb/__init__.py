"""cltm_sb: Cross-Lingual Transfer Matrices for paralinguistic speech tasks on SpeechBrain.

The package is a library first: every piece (data preparation, recipes, the grid of runs, the
matrix and its diagnostics) can be imported and used on its own; ``cltm`` is a thin command line
on top of it.
"""

__version__ = "0.1.0"

#: Modules that moved into :mod:`cltm_sb.recipe` (2026-12). README documented them as blocks for
#: one's own recipe (``!new:cltm_sb.encoders.HFSSLEncoder``), so those YAML tags keep resolving:
#: hyperpyyaml finds ``cltm_sb.encoders`` as an attribute of this package.
_MOVED_MODULES = ("encoders", "heads", "brains", "verification")


def __getattr__(name: str):
    if name in _MOVED_MODULES:
        import importlib

        return importlib.import_module(f"cltm_sb.recipe.{name}")
    raise AttributeError(f"module 'cltm_sb' has no attribute {name!r}")
