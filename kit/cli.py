"""What every tool shares on the command line: logging set-up, and user errors as one line with exit 2.

A tool adopts it in two lines::

    from crossscale_kit.cli import main_guard, parser

    @main_guard
    def main(argv: list[str] | None = None) -> int:
        ap = parser(__doc__)            # an ArgumentParser that lists --debug in its help
        ...

``main_guard`` turns an error the user can fix (a ``ValueError`` such as a config or data error, a
``TypeError`` from a wrong-typed binding, an ``OSError`` such as a missing file or a full disk) into
``error: <message>`` on stderr and exit code 2, without a traceback; ``--debug`` (or ``--traceback``)
shows the traceback instead. An exception with an ``exit_code`` attribute (a run stopped by a signal)
prints its message and exits with that code. Programming errors (anything else) keep their traceback.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
import warnings
from typing import Callable

#: errors a user can act on from the message alone
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)
DEBUG_FLAGS = ("--debug", "--traceback")
_GIN_NOTE = re.compile(r"^\s*In call to configurable ")
_GIN_MACRO = re.compile(r"No bindings specified for '([^'/]+)/gin\.macro'")


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The tools' argument parser: the module docstring as description, and ``--debug`` in the help."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", "--traceback", action="store_true",
                    help="show the full Python traceback of an error instead of one line")
    return ap


def configure_logging(debug: bool = False) -> None:
    """Log to stderr: INFO on rank 0 (DEBUG with ``--debug``), warnings only on the other ranks."""
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if debug else logging.INFO if rank == 0 else logging.WARNING
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    logging.basicConfig(level=level, format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger().setLevel(level)
    # a warning is shown once, as one log line (a module that warns does not also log the same text)
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("warning").warning("%s", message)


def report(exc: BaseException, *, code: int = 2) -> int:
    """Print ``exc`` as one user-facing error and return the exit code."""
    hint = "" if hasattr(exc, "exit_code") else " (run again with --debug for the full traceback)"
    # gin appends "In call to configurable ..." to errors raised inside a configurable: noise to a user
    text = "\n".join(line for line in str(exc).splitlines() if not _GIN_NOTE.match(line))
    m = _GIN_MACRO.search(text)
    if m:  # gin prints the whole config after this message: name the macro and the fix instead
        text = (f"the gin macro %{m.group(1)} is used but never defined; define it in a gin file "
                f"({m.group(1)} = ...) or with --gin_param '{m.group(1)} = ...', or fix its spelling.")
    if hint and "\n" in text:  # a list of problems: the hint on a line of its own, after the list
        hint = "\n" + hint.strip()
    print(f"error: {text}{hint}", file=sys.stderr)
    return code


def main_guard(main: Callable[[list[str]], int]) -> Callable[[list[str] | None], int]:
    """Wrap a tool's ``main(argv) -> int`` so user errors end in one message and exit code 2."""

    @functools.wraps(main)
    def guarded(argv: list[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = any(flag in argv for flag in DEBUG_FLAGS)
        configure_logging(debug)
        try:
            return main(argv)
        except KeyboardInterrupt:
            if debug:
                raise
            print("error: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
            code = getattr(exc, "exit_code", None)
            if isinstance(code, int):
                return report(exc, code=code)
            if debug or not isinstance(exc, USER_ERRORS):
                raise
            return report(exc)

    return guarded
