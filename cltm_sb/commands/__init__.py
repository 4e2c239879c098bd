"""Subcommands of the ``cltm`` command line, one module per group."""
