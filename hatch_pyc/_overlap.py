"""Outputs that would overwrite a run's own inputs, or each other, refused before any work.

Found by an adversarial review: ``layer w.whl -o w.whl``, ``verify w.whl --json w.whl`` and ``report w.whl --json
w.whl`` replaced the input wheel with a layer or a JSON text and exited 0. Every command that writes files checks
its outputs here against the files and trees it reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hatch_pyc._errors import InvalidOptions

# Inside a tree a command reads (report, verify), what it reads there: an output may go beside them (``report .
# --json report.json``), never over one of them.
_READ_SUFFIXES = (".py", ".pyc", ".pyi", ".pth", ".so", ".pyd", ".whl")
_READ_DIRS = ("__pycache__",)


def as_written(path: str | os.PathLike[str]) -> Path:
    """Where an output lands: its directory as the system names it (a link and ``..`` hide nothing), then its own
    name, which is not followed (an output replaces a link at its name, it never writes through it)."""
    head, name = os.path.split(os.fspath(path))
    if name in ("", ".", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(head or os.curdir)) / name


def _read_inside(written: Path, tree: Path) -> bool:
    """Whether ``written`` (inside ``tree``) is a file of the kinds a command reads in a tree."""
    parts = written.relative_to(tree).parts
    return written.name.endswith(_READ_SUFFIXES) or any(
        part in _READ_DIRS or part.endswith(".dist-info") for part in parts[:-1]
    )


def refuse_outputs_over_inputs(
    inputs: Sequence[tuple[str, str | os.PathLike[str] | None]],
    outputs: Sequence[tuple[str, str | os.PathLike[str] | None]],
) -> None:
    """Refuse (:class:`InvalidOptions`, one line) an output that is one of ``inputs`` (each ``(what, path)``), lies
    in an input tree where the command reads (a module, a pyc, a wheel, a ``.dist-info``), or is another output.
    Paths are compared as they are written (:func:`as_written`) and read (``realpath``); ``None`` is not given."""
    read = [(what, given, Path(os.path.realpath(given))) for what, given in inputs if given is not None]
    written: dict[Path, str] = {}
    for what, given in outputs:
        if given is None:
            continue
        where = as_written(given)
        label = f"{what} {given}"
        if where in written:
            raise InvalidOptions(f"{label}: the same file as {written[where]}; give each output its own path")
        written[where] = label
        for source, path, real in read:
            if where == real:
                raise InvalidOptions(
                    f"{label}: the same file as {source} {path}, which this run reads; write elsewhere"
                )
            if real.is_dir() and real in where.parents and _read_inside(where, real):
                raise InvalidOptions(
                    f"{label}: a file of the tree {path} that this run reads (a module, a pyc, a wheel or "
                    "metadata); write elsewhere"
                )
