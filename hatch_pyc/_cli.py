"""The ``hatch-pyc`` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success, 1 a failed check (a source that does not compile, a threshold),
2 bad usage or input. Errors are printed at one boundary, :func:`main`.

Each command lives in a ``_cli_<command>`` module (``report`` and ``images`` share one) that adds
its parser and runs it. Building the parser imports every such module, so they import the core
modules a command needs only when it runs: ``hatch-pyc --version`` or a usage error never loads
the compiler, the wheel code or Docker.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from hatch_pyc import (
    __version__,
    _cli_cache,
    _cli_compile,
    _cli_inspect,
    _cli_layer,
    _cli_report,
    _cli_verify,
    _cli_wheel,
)
from hatch_pyc._cli_shared import EXIT_FAILED, EXIT_USAGE, say
from hatch_pyc._errors import CompileFailed, HatchPycError, ImageCommandFailed, Terminated

EXIT_PIPE = 128 + signal.SIGPIPE  # what a tool killed by SIGPIPE exits with

# In the order ``hatch-pyc --help`` lists them.
_COMMANDS = (_cli_compile, _cli_wheel, _cli_report, _cli_layer, _cli_verify, _cli_inspect, _cli_cache)


class _Parser(argparse.ArgumentParser):
    """A usage error is one line naming the option and what it allows, and where the help is (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader went away (``| head -1``): the write end reports an error."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render the CLI reference)."""
    parser = _Parser(
        prog="hatch-pyc",
        description="Precompile Python to bytecode: trees, venvs, wheels and container layers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    _refuse_empty_paths(parser)
    return parser


def _refuse_empty_paths(parser: argparse.ArgumentParser) -> None:
    """Give every argument that names a file or directory, in every command, the check of :func:`_named_path`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command_parser in action.choices.values():
                _refuse_empty_paths(command_parser)
        elif action.metavar in _PATH_METAVARS and action.type is None:
            action.type = _named_path


# Every argument that names a file or directory, in every command: an empty one is refused (Path("") is ".").
_PATH_METAVARS = frozenset({"PATH", "FILE", "DIR", "WHEEL", "TARGET", "FILE.pyc"})


def _named_path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("an empty path names nothing (an unset variable?)")
    return text


def _say_failed(exc: CompileFailed) -> None:
    """What did not compile: one line for one source (the file, the reason, what was done), else a line for each
    and one saying what was done."""
    if len(exc.errors) == 1:
        (error,) = exc.errors
        hint = "--on-error keep-source keeps it as source" + (
            "; --stubs none makes no stub" if error.kind == "stub" else ""
        )
        say(f"hatch-pyc: error: {error}; nothing was changed ({hint})")
        return
    for error in exc.errors:
        say(f"hatch-pyc: error: {error}")
    stubs = sum(e.kind == "stub" for e in exc.errors)
    failed = [f"{len(exc.errors) - stubs} source(s) did not compile"] if stubs < len(exc.errors) else []
    failed += [f"{stubs} module(s) got no type stub (--stubs none makes none)"] if stubs else []
    say(f"hatch-pyc: {' and '.join(failed)}; nothing was changed (--on-error keep-source keeps them as source instead)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = build_parser().parse_args(argv)
    # A name the output's encoding cannot hold (PYTHONIOENCODING=ascii) is printed escaped, never a
    # traceback after the work is done; stderr already behaves so.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    # SIGTERM stops a run as Ctrl-C does: the exception ends it, and one that Python dropped (raised where a
    # handler's exception is ignored) still stops its commit (hatch_pyc._commit.signals_as_exceptions).
    from hatch_pyc._commit import signals_as_exceptions

    try:
        with signals_as_exceptions():
            code: int = args.func(args)
        return code
    except CompileFailed as exc:
        _say_failed(exc)
        return EXIT_FAILED
    except HatchPycError as exc:
        say(f"hatch-pyc: error: {exc}")
        # A command failing in an image is a failed check on the image, not bad usage.
        return EXIT_FAILED if isinstance(exc, ImageCommandFailed) else EXIT_USAGE
    except OSError as exc:  # a full disk, a read-only directory: one line naming the file
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            return _stdout_went_away(args)
        where = f"{exc.filename}: " if exc.filename else ""
        done = getattr(args, "changed", None)
        say(
            f"hatch-pyc: error: {where}{exc.strerror or exc}"
            + (f" after the run had completed ({done})" if done else "")
        )
        return EXIT_USAGE
    except (KeyboardInterrupt, Terminated) as exc:
        what, code = ("interrupted", 130) if isinstance(exc, KeyboardInterrupt) else ("terminated", 143)
        # compile: a commit holds signals until it is done (see _cli_compile); ``changed`` is set
        # once it is, so a signal that lands here came before it, or while reporting after it.
        # Every other command writes each output whole or not at all.
        done = getattr(args, "changed", None)
        if done:
            truth = f"the run had completed: {done}"
        else:
            truth = "nothing was changed" if args.command == "compile" else "no output was left half-written"
        say(f"hatch-pyc: {what}; {truth}")
        return code


def _stdout_went_away(args: argparse.Namespace) -> int:
    """The reader of stdout went away (``| head -1``): end quietly, as other Unix tools do (128 + SIGPIPE);
    stderr still says so when the run had changed something."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python exits
    done = getattr(args, "changed", None)
    if done:
        say(f"hatch-pyc: stdout was closed after the run had completed ({done})")
    return EXIT_PIPE


def main_entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except KeyboardInterrupt:  # before main() could set up its handling: nothing was started
        say("hatch-pyc: interrupted; nothing was changed")
        code = 130
    sys.exit(code)
