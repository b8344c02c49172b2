"""Where pycs live: PEP 3147/488 cache names and sourceless names."""

from __future__ import annotations

from pathlib import PurePath
from typing import TypeVar

P = TypeVar("P", bound=PurePath)


def cache_path(source: P, cache_tag: str, level: int) -> P:
    """``pkg/mod.py`` -> ``pkg/__pycache__/mod.cpython-312[.opt-N].pyc`` (used only beside its source)."""
    opt = f".opt-{level}" if level else ""
    return source.parent / "__pycache__" / f"{source.stem}.{cache_tag}{opt}.pyc"


def sourceless_path(source: P) -> P:
    """``pkg/mod.py`` -> ``pkg/mod.pyc``: the only place a pyc is imported without its source."""
    return source.with_suffix(".pyc")


def is_cache_of(pyc_name: str, source_stem: str) -> bool:
    """Whether a ``__pycache__`` entry belongs to the module ``source_stem`` (any tag or level)."""
    if not pyc_name.endswith(".pyc") or not pyc_name.startswith(source_stem + "."):
        return False
    middle = pyc_name[len(source_stem) + 1 : -len(".pyc")]
    return bool(middle) and "." not in middle.replace(".opt-", "-", 1)
