"""Which sources a module that fails sourceless needs, proven by importing it with them put back.

``verify`` finds modules that import from source but not without it; the fix is not always the
module's own source (at ``-O 2`` a module may read another module's docstring). This searches a
scratch copy of the sourceless tree for a small set of sources that lets each such module import,
and reports only sets it has seen work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from hatch_pyc._targets import Interpreter
from hatch_pyc._verify import SourceFix, exclude_pattern, import_all


def link_tree(src: Path, dest: Path) -> Path:
    """A copy of ``src`` made of hard links where the file system allows: probes add files, never change one."""

    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dest, symlinks=True, copy_function=link_or_copy)
    return dest


class _OutOfProbes(Exception):
    """The probe limit (for one module or for the run) is reached."""


class Prober:
    """Imports modules, each alone, from the sourceless tree with chosen modules' sources beside their pycs.

    CPython's FileFinder tries the source loader before the sourceless one, so ``x.py`` put beside
    ``x.pyc`` is imported as a source, exactly as if ``exclude`` had kept it; removing it reverts.
    """

    def __init__(
        self,
        interp: Interpreter,
        root: Path,
        *,
        tree: Path,
        modules: dict[str, str],
        source_modules: dict[str, str],
        workers: int,
        limit: int,
    ) -> None:
        self.interp, self.root, self.workers, self.limit = interp, root, workers, limit
        self.every_pattern = {name: exclude_pattern(rel) for name, rel in modules.items()}
        # Modules that are pycs in the sourceless tree and sources, at the same place, in ``tree``.
        self.patterns = {
            name: exclude_pattern(rel)
            for name, rel in modules.items()
            if rel.endswith(".pyc") and source_modules.get(name) == exclude_pattern(rel)
        }
        self.tree = tree
        self.placed: set[str] = set()
        self.spent = 0

    def place(self, keep: Iterable[str]) -> None:
        """Make exactly the modules in ``keep`` sources (the others stay pycs only)."""
        wanted = set(keep)
        for name in self.placed - wanted:
            os.unlink(self.root / self.patterns[name])
        for name in wanted - self.placed:  # with its mtime: the cache the last probe wrote stays valid
            shutil.copy2(self.tree / self.patterns[name], self.root / self.patterns[name])
        self.placed = wanted

    def imports(self, modules: Sequence[str], keep: Iterable[str]) -> dict[str, bool]:
        """Import each of ``modules`` in a process of its own with ``keep`` as sources: which succeed."""
        if self.spent + len(modules) > self.limit:
            raise _OutOfProbes
        self.place(keep)
        self.spent += len(modules)
        # Bytecode caches of the sources go to the scratch tree (where the sourceless loader never
        # looks): sympy's probes put 500 sources back, and compiling them each time took 3/4 of the run.
        outcomes = import_all(self.interp, self.root, modules, workers=self.workers, batch_size=1, write_bytecode=True)
        return {name: outcomes[name].ok for name in modules}


def find_fixes(prober: Prober, loaded: dict[str, tuple[str, ...]], per_module: int) -> dict[str, SourceFix]:
    """For each module, a set of sources that lets it import sourceless, proven by importing it so.

    The module with the fewest candidates goes first and is reduced alone; the set it needs is then
    tried, in parallel, on every other module that loads all of it (failures often share one cause,
    such as docstrings at ``-O 2`` that a package reads as it is imported), and so on. Reducing each
    of those again would cost sympy at ``-O 2`` some 80 modules times a dozen imports.
    """
    candidates = {
        name: [n for n in dict.fromkeys([*names, name]) if n in prober.patterns] for name, names in loaded.items()
    }
    found: dict[str, tuple[list[str], bool, bool]] = {}
    pending = sorted(loaded, key=lambda n: (len(candidates[n]), n))
    while pending:
        leader = pending.pop(0)
        # Each set found so far failed on it; one that needs two of them (it imports both) starts from their union.
        sets = {tuple(k) for k, proven, _ in found.values() if proven and set(k) <= set(candidates[leader])}
        known = list(dict.fromkeys(n for k in sorted(sets) for n in k)) if len(sets) > 1 else []
        keep, checked, _ = found[leader] = _reduce(prober, leader, candidates[leader], per_module, known)
        followers = [n for n in pending if checked and set(keep) <= set(candidates[n])]
        if not followers:
            continue
        try:
            fixed = prober.imports(followers, keep)
        except _OutOfProbes:
            continue
        for name in followers:
            if fixed[name]:
                pending.remove(name)
                # Proven to work; needed item by item only when there is one (the module fails without it).
                found[name] = (keep, True, len(keep) == 1)
    return {
        name: SourceFix(name, tuple(sorted(prober.every_pattern[n] for n in keep)), checked, minimal)
        for name, (keep, checked, minimal) in sorted(found.items())
    }


def _reduce(
    prober: Prober, module: str, candidates: list[str], limit: int, known: list[str]
) -> tuple[list[str], bool, bool]:
    """``(modules to keep as sources, checked, minimal)`` for one module; ``known``: what others needed."""
    spent = 0

    def imports(keep: list[str]) -> bool:
        nonlocal spent
        if spent >= limit:
            raise _OutOfProbes
        spent += 1
        return prober.imports([module], keep)[module]

    guess = ([module], False, False)  # unproven: what verify suggested before it tried anything
    try:
        if module in prober.patterns and imports([module]):
            return [module], True, True  # the empty set fails (that is the failure), so {module} is minimal
        if known and imports(known):
            candidates = known
        elif len(candidates) <= 1 or not imports(candidates):
            return guess
    except _OutOfProbes:
        return guess
    kept, minimal = _minimize(candidates, imports)
    return kept, True, minimal


def _minimize(items: list[str], works: Callable[[list[str]], bool]) -> tuple[list[str], bool]:
    """A subset of ``items`` that still ``works`` and from which no item can be dropped; ``works(items)`` holds.

    One needed item at a time: bisect for the shortest prefix that works together with the items
    found so far; its last item is needed, and what follows it is not. That is about log2(len(items))
    imports per needed item (ddmin needs far more when two items are needed). Minimal as long as
    putting a source back never breaks an import. Out of probes: the smallest set known to work.
    """
    needed: list[str] = []
    rest = items
    try:
        while rest:
            if needed and works(needed):
                return needed, True
            low, high = 0, len(rest)  # needed + rest[:low] fails (without sources, the module fails), [:high] works
            while high - low > 1:
                middle = (low + high) // 2
                if works(needed + rest[:middle]):
                    high = middle
                else:
                    low = middle
            needed.append(rest[high - 1])
            rest = rest[: high - 1]
    except _OutOfProbes:
        return needed + rest, False
    return needed, True
