"""The ``cltm`` command line: a thin layer over the library.

Each group of subcommands lives in its own ``cltm_sb.commands.*`` module that exposes
``register(subparsers)``; this file only assembles them and turns library errors into one clear
line on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from cltm_sb import __version__
from cltm_sb.environment import InstallError, require_loadable_torchaudio

# Modules that contribute subcommands, in the order their commands appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "cltm_sb.commands.analysis",
    "cltm_sb.commands.grid",
    "cltm_sb.commands.data",
    "cltm_sb.commands.report",
)


class CLTMError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="cltm",
        description="Cross-Lingual Transfer Matrices for paralinguistic speech tasks (SpeechBrain).",
    )
    parser.add_argument("--version", action="version", version=f"cltm_sb {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cltm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if getattr(args, "trains", False):
            require_loadable_torchaudio()
        return int(args.func(args) or 0)
    except InstallError as error:
        print(f"cltm {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (CLTMError, ValueError, FileNotFoundError) as error:
        if args.verbose:
            raise
        print(f"cltm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        # 128 + the signal, as a shell reports a process the signal killed: SIGINT (Ctrl-C) 130,
        # SIGTERM 143, SIGHUP 129 (a grid turns each into GridInterrupted with its number).
        signum = int(getattr(error, "signum", signal.SIGINT))
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"cltm {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
