"""Where pycs live: PEP 3147/488 cache names and sourceless names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import TypeVar

P = TypeVar("P", bound=PurePath)


def cache_path(source: P, cache_tag: str, level: int) -> P:
    """``pkg/mod.py`` -> ``pkg/__pycache__/mod.cpython-312[.opt-N].pyc`` (used only beside its source)."""
    return source.parent / "__pycache__" / cache_name(source.stem, cache_tag, level)


def cache_name(stem: str, cache_tag: str, level: int) -> str:
    """The name in ``__pycache__`` of the pyc of module ``stem``: ``mod.cpython-312[.opt-N].pyc``."""
    opt = f".opt-{level}" if level else ""
    return f"{stem}.{cache_tag}{opt}.pyc"


def sourceless_path(source: P) -> P:
    """``pkg/mod.py`` -> ``pkg/mod.pyc``: the only place a pyc is imported without its source."""
    return source.with_suffix(".pyc")


def is_cache_of(pyc_name: str, source_stem: str) -> bool:
    """Whether a ``__pycache__`` entry belongs to the module ``source_stem`` (any tag or level)."""
    if not pyc_name.endswith(".pyc") or not pyc_name.startswith(source_stem + "."):
        return False
    middle = pyc_name[len(source_stem) + 1 : -len(".pyc")]
    return bool(middle) and "." not in middle.replace(".opt-", "-", 1)


def outside_packages(relpath: str, is_package: Callable[[str], bool]) -> bool:
    """Whether ``relpath`` (a ``.py``, posix, relative to the import root) is data, not a module.

    A module is top level, or in a regular package (a directory with ``__init__.py``), or in a
    chain of namespace directories that starts at the import root (``google/cloud/x.py``). A
    ``.py`` in a plain directory *inside* a regular package (``alembic/templates/generic/env.py``)
    is a template or an example that tools copy and users edit: a sourceless build keeps it as
    source. ``is_package(dir_relpath)`` says whether that directory holds an ``__init__.py``.
    """
    parts = relpath.split("/")[:-1]
    if not parts:
        return False
    directories = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if is_package(directories[-1]):
        return False
    return any(is_package(d) for d in directories[:-1])
