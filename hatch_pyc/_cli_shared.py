"""What the ``hatch-pyc`` commands share: exit codes, messages, the progress bar, common options.

Every command module is imported to build the parser, ``--version`` included, so this module
and they import only the standard library, ``_options`` and ``_text`` at module level; a handler imports
the core modules its command needs when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from hatch_pyc._errors import OutputFailed
from hatch_pyc._options import ON_ERROR, OUTSIDE_PACKAGES, STUBS
from hatch_pyc._text import terminal_safe

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def say(message: str, stream: TextIO | None = None) -> None:
    """A message for the user, on stderr unless told otherwise; one line, whatever it quotes."""
    print(terminal_safe(message), file=stream or sys.stderr)


def show(text: str = "", *, lines: bool = True, end: str = "\n") -> None:
    """Output on stdout, control characters and lone surrogates escaped (newlines kept with ``lines``)."""
    print(terminal_safe(text, lines=lines), end=end)


def show_progress(args: argparse.Namespace) -> bool:
    """A progress bar on a terminal, off with -q/-v or in CI, forced with --progress."""
    if args.quiet or getattr(args, "verbose", False):
        return False
    if os.environ.get("CI") and not args.progress:
        return False
    return bool(args.progress or sys.stderr.isatty())


@contextmanager
def reserved_output(path: str | None) -> Iterator[TextIO | None]:
    """A text file for ``path`` opened *before* the work that fills it: a path that cannot be
    written fails the command before anything else has changed. The text goes to a hidden
    temporary beside ``path`` and replaces it only when the block completes."""
    if path is None:
        yield None
        return
    final = os.path.abspath(path)
    if os.path.isdir(final):
        raise OutputFailed(f"{path}: is a directory; nothing was changed")
    directory, name = os.path.split(final)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}-{os.urandom(4).hex()}.hatch-pyc-tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputFailed(f"{path}: cannot write it ({exc.strerror or exc}); nothing was changed") from None
    handle = open(fd, "w", encoding="utf-8")
    try:
        yield handle
        handle.close()
        os.replace(tmp, final)
    except BaseException:
        handle.close()
        os.unlink(tmp)
        raise


@contextmanager
def progress_bar(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A ``(done, total)`` callback drawing a transient bar, or None when ``enabled`` is false."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        # Progress is a diagnostic: stderr, which is what show_progress() asked about (stdout keeps the
        # results, even when redirected). Enabled means a terminal there, or --progress asked for it.
        console=Console(stderr=True, force_terminal=True, force_interactive=True),
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def add_optimize(parser: argparse.ArgumentParser, help: str, *, repeatable: bool) -> None:
    """``-O LEVEL``: one level (default 0) or, ``repeatable``, a list (None when not given)."""
    how = {"action": "append"} if repeatable else {"default": 0}
    parser.add_argument("-O", "--optimize", type=int, choices=(0, 1, 2), metavar="LEVEL", help=help, **how)


def add_exclude(parser: argparse.ArgumentParser, relative_to: str) -> None:
    """``--exclude PATTERN`` (repeatable), its patterns relative to ``relative_to``."""
    parser.add_argument(
        "--exclude",
        metavar="PATTERN",
        action="append",
        help=f"gitignore-style pattern, relative to {relative_to}; matching modules keep their source and are not "
        "compiled (repeatable)",
    )


def add_on_error_and_workers(parser: argparse.ArgumentParser) -> None:
    """``--on-error`` and ``--workers``, for the commands that compile."""
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="fail",
        help="fail: a source that does not compile fails the run and nothing changes (default); keep-source: keep "
        "it as source and report it",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=0,
        metavar="N",
        help="worker processes, 1 or more (default: one per CPU)",
    )
    add_cache(parser)
    add_compact(parser)


def add_cache(parser: argparse.ArgumentParser) -> None:
    """``--no-cache`` and ``--cache-dir``: the compile cache, for the commands that compile."""
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="compile everything, neither reading nor filling the compile cache (also: HATCH_PYC_NO_CACHE=1)",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the compile cache (default: $HATCH_PYC_CACHE_DIR, else ~/.cache/hatch-pyc); see hatch-pyc cache",
    )


def cache_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PycOptions`` fields ``--no-cache``, ``--cache-dir`` and ``--compact`` set."""
    return {"cache": not args.no_cache, "cache_dir": args.cache_dir, "compact": args.compact}


def stub_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PycOptions`` fields ``--stubs`` and ``--stub-docstrings`` set."""
    return {"stubs": args.stubs, "stub_docstrings": args.stub_docstrings}


def add_compact(parser: argparse.ArgumentParser) -> None:
    """``--compact``: pycs without column positions."""
    parser.add_argument(
        "--compact",
        action="store_true",
        help="leave out each instruction's column positions (PEP 657, what -X no_debug_ranges does): pycs about a "
        "fifth smaller zipped; tracebacks keep file and line but lose the ^^^ under the failing expression "
        "(no effect for CPython 3.10)",
    )


def add_stubs(parser: argparse.ArgumentParser, default: str) -> None:
    """``--stubs`` and ``--stub-docstrings``: .pyi stubs beside sourceless modules, so their types stay."""
    parser.add_argument(
        "--stubs",
        choices=STUBS,
        default=default,
        help="write a .pyi stub, generated by mypy's stubgen (install hatch-pyc[stubs]), beside each sourceless "
        "module: typed: those of packages holding py.typed; all: every module; none: no stubs "
        f"(default: {default}). A .pyi already there is kept and wins",
    )
    parser.add_argument(
        "--stub-docstrings",
        action="store_true",
        help="keep docstrings in the stubs, for IDE hover (default: signatures only)",
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 is not "the default": leave the option out)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value}); leave it out for one per CPU")
    return value


def add_outside_packages(parser: argparse.ArgumentParser) -> None:
    """``--outside-packages``: what sourceless output does with a .py in a plain directory inside a package."""
    parser.add_argument(
        "--outside-packages",
        choices=OUTSIDE_PACKAGES,
        default="keep-source",
        help="a .py in a directory without __init__.py inside a package (a template, such as alembic's env.py) "
        "is data: keep-source keeps it as source in sourceless output (default); compile treats it as a module",
    )
