"""The ``cltm`` command line: a thin layer over the library.

Each group of subcommands lives in its own ``cltm_sb.commands.*`` module that exposes
``register(subparsers)``; this file only assembles them and turns library errors into one clear
line on stderr with a non-zero exit status: 2 for bad input or usage (the message says what to
change), 1 for a failure while running (a full or read-only disk, an unreadable file, a broken
installation), 128 + N for signal N.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence

from cltm_sb import __version__
from cltm_sb.environment import InstallError, require_loadable_torchaudio

# Modules that contribute subcommands, in the order their commands appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "cltm_sb.commands.analysis",
    "cltm_sb.commands.grid",
    "cltm_sb.commands.data",
    "cltm_sb.commands.report",
    "cltm_sb.commands.budget",
    "cltm_sb.commands.imports",
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


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Show Python warnings as one line (``cltm CMD: warning: ...``), not with a source line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        with contextlib.suppress(OSError):
            print(f"cltm {command}: warning: {message}", file=file or sys.stderr)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _stdout_closed() -> int:
    """The reader of our output went away (``cltm ... --json | head``): stop quietly, like SIGPIPE.

    stdout is pointed at /dev/null so that the interpreter's final flush does not fail again.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _error(command: str, error: BaseException) -> None:
    with contextlib.suppress(OSError):  # stderr may be gone too
        print(f"cltm {command}: error: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cltm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # fontTools logs every glyph it subsets into a PDF at INFO: noise, not news
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    try:
        with _one_line_warnings(args.command):
            if getattr(args, "trains", False):
                require_loadable_torchaudio()
            status = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler below
            return status
    except BrokenPipeError:
        return _stdout_closed()
    except InstallError as error:
        _error(args.command, error)
        return 1
    except (CLTMError, ValueError, FileNotFoundError) as error:
        if args.verbose:
            raise
        _error(args.command, error)
        return 2
    except OSError as error:
        # Not the user's input but the machine: a full or read-only disk, a permission.
        if args.verbose:
            raise
        _error(args.command, error)
        return 1
    except KeyboardInterrupt as error:
        # 128 + the signal, as a shell reports a process the signal killed: SIGINT (Ctrl-C) 130,
        # SIGTERM 143, SIGHUP 129 (a grid turns each into GridInterrupted with its number).
        signum = int(getattr(error, "signum", signal.SIGINT))
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"cltm {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
