"""One validated set of compile options, shared by the CLI, the hook and the library."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from hatch_pyc._errors import InvalidOptions

InvalidationMode = Literal["timestamp", "checked-hash", "unchecked-hash"]
OnError = Literal["fail", "keep-source"]
OutsidePackages = Literal["keep-source", "compile"]
Stubs = Literal["typed", "all", "none"]
INVALIDATION_MODES: tuple[InvalidationMode, ...] = ("timestamp", "checked-hash", "unchecked-hash")
ON_ERROR: tuple[OnError, ...] = ("fail", "keep-source")
OUTSIDE_PACKAGES: tuple[OutsidePackages, ...] = ("keep-source", "compile")
STUBS: tuple[Stubs, ...] = ("typed", "all", "none")


@dataclass(frozen=True)
class PycOptions:
    """What to compile and how.

    ``strip`` makes the tree sourceless: one level, ``mod.pyc`` beside where ``mod.py``
    was. Without it pycs go to ``__pycache__`` at every level in ``levels``.
    ``invalidation`` defaults to timestamp pycs when sources stay and to unchecked-hash
    pycs when they go (a sourceless pyc is never checked, and a hash header keeps the
    file independent of the source's mtime).
    ``outside_packages`` decides, for sourceless output, what happens to a ``.py`` in a plain
    directory inside a package (templates such as alembic's ``env.py``, see
    :func:`hatch_pyc._layout.outside_packages`): kept as source (the default) or compiled like
    any module.
    ``cache`` looks compiled code up in the compile cache (:mod:`hatch_pyc._cache`) before compiling
    and stores it after; ``cache_dir`` names the cache (default: ``$HATCH_PYC_CACHE_DIR``, else the
    user's cache directory). Output is byte-identical with and without it.
    ``compact`` leaves out the column positions of every instruction (PEP 657; what ``-X no_debug_ranges``
    does): pycs about a fifth smaller zipped, and tracebacks keep file and line but lose the ``^^^`` markers
    under the failing expression. CPython 3.10 has no column positions: there it changes nothing.
    ``stubs`` decides which sourceless modules get a ``.pyi`` stub beside them (:mod:`hatch_pyc._stubs`):
    those of packages holding ``py.typed`` (``"typed"``), every one (``"all"``) or none; ``None`` is each
    command's default, ``"typed"`` for wheels and ``"none"`` for trees made sourceless in place.
    ``stub_docstrings`` keeps docstrings in the stubs (for IDE hover); off, stubs hold signatures only.
    """

    levels: tuple[int, ...] = (0,)
    strip: bool = False
    exclude: tuple[str, ...] = ()
    invalidation: InvalidationMode | None = None
    on_error: OnError = "fail"
    workers: int = 0
    force: bool = False
    ddir: str | None = None
    source_date_epoch: int | None = field(default=None)
    outside_packages: OutsidePackages = "keep-source"
    cache: bool = True
    cache_dir: str | None = None
    compact: bool = False
    stubs: Stubs | None = None
    stub_docstrings: bool = False

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise InvalidOptions("; ".join(problems))
        object.__setattr__(self, "levels", tuple(sorted(set(self.levels))))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def invalidation_mode(self) -> InvalidationMode:
        """The mode actually used once the default is resolved."""
        if self.invalidation is not None:
            return self.invalidation
        return "unchecked-hash" if self.strip else "timestamp"

    @property
    def worker_count(self) -> int:
        """Workers to start: ``0`` means one per available CPU."""
        if self.workers > 0:
            return self.workers
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _problems(options: PycOptions) -> Iterable[str]:
    levels = options.levels
    if not levels:
        yield "at least one optimisation level is needed"
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int) or level not in (0, 1, 2):
            yield f"optimisation level {level!r} must be 0, 1 or 2"
    if options.strip and len(set(levels)) > 1:
        yield (
            "a sourceless tree holds one optimisation level (mod.pyc is loaded whatever -O says); "
            f"got {sorted(set(levels))}"
        )
    if options.invalidation is not None and options.invalidation not in INVALIDATION_MODES:
        yield f"invalidation mode {options.invalidation!r} must be one of {', '.join(INVALIDATION_MODES)}"
    if options.on_error not in ON_ERROR:
        yield f"on-error {options.on_error!r} must be one of {', '.join(ON_ERROR)}"
    if options.outside_packages not in OUTSIDE_PACKAGES:
        yield f"outside-packages {options.outside_packages!r} must be one of {', '.join(OUTSIDE_PACKAGES)}"
    if isinstance(options.workers, bool) or not isinstance(options.workers, int) or options.workers < 0:
        yield f"workers {options.workers!r} must be a whole number (0 means one per CPU)"
    if options.stubs is not None and options.stubs not in STUBS:
        yield f"stubs {options.stubs!r} must be one of {', '.join(STUBS)}"
    elif options.stubs not in (None, "none") and not options.strip:
        yield "type stubs are for sourceless output (--strip): with sources kept, the sources carry the types"
    if options.cache_dir is not None and (not isinstance(options.cache_dir, str) or not options.cache_dir):
        yield f"cache directory {options.cache_dir!r} must be a non-empty path"
    if isinstance(options.exclude, str):
        yield "exclude must be a list of patterns, not one string"
