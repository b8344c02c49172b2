"""The differential oracle: is every pyc hatch-pyc writes what the target CPython itself compiles?

It copies the sources of a corpus into a scratch directory, compiles them with hatch-pyc's own
engine (the same plan, workers, level-skip rules, constant sharing and canonical marshal every
command uses), then asks the *target* interpreter to compile each source again with its own
``compile()`` (same file name, same level) and compare the two code objects recursively and
type-strictly: bytecode, line and exception tables, names, flags and every constant by exact
type (:mod:`hatch_pyc._codecheck`). A difference is a bug in hatch-pyc, never noise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatch_pyc._compile import compile_tree
from hatch_pyc._errors import HatchPycError
from hatch_pyc._options import PycOptions
from hatch_pyc._pool import BOOT, COMPACT_FLAGS, WORKER_FLAGS, worker_env
from hatch_pyc._targets import Interpreter

PROBE_SCRIPT = Path(__file__).with_name("_oracle_probe.py")
# Not part of a standard library: a CPython's own site-packages, and caches.
_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


@dataclass(frozen=True)
class OracleDifference:
    """One way a pyc hatch-pyc wrote is not the code CPython compiles from the same source."""

    source: str
    level: int
    detail: str

    def __str__(self) -> str:
        return f"{self.source} (level {self.level}): {self.detail}"


@dataclass
class OracleReport:
    """What the oracle compared on one interpreter, and every difference it found."""

    interpreter: Interpreter
    levels: tuple[int, ...]
    modules: int = 0
    pycs: int = 0  # pycs compared with compile()'s code object
    linked: int = 0  # pycs the level-skip rules made as hard links to a lower level
    refused_by_both: int = 0  # (source, level) pairs that neither hatch-pyc nor compile() accepts
    differences: list[OracleDifference] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly view for the oracle's results file."""
        return {
            "python": ".".join(map(str, self.interpreter.version)),
            "magic": self.interpreter.magic.hex(),
            "levels": list(self.levels),
            "modules": self.modules,
            "pycs": self.pycs,
            "linked": self.linked,
            "refused_by_both": self.refused_by_both,
            "differences": [str(d) for d in self.differences],
        }


def copy_sources(root: Path, dest: Path) -> int:
    """Copy the regular ``.py`` files under ``root`` to ``dest`` (same tree); return how many."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        target = dest / os.path.relpath(dirpath, root)
        for name in filenames:
            source = os.path.join(dirpath, name)
            if name.endswith(".py") and not os.path.islink(source) and os.path.isfile(source):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target / name)
                count += 1
    return count


def _probe(interpreter: Interpreter, entries: list[dict[str, Any]], compact: bool = False) -> dict[str, Any]:
    # Started as the workers are (no site, no PYTHON* variables of the caller, the workers' fixed
    # hash seed: 3.10 marshals a set of strings in the order of its hash table; compact: no column
    # positions), so that what it compiles is what CPython writes in exactly the workers' conditions.
    flags = (*WORKER_FLAGS, *(COMPACT_FLAGS if compact else ()))
    proc = subprocess.run(
        [interpreter.executable, *flags, "-c", BOOT, str(PROBE_SCRIPT)],
        input=json.dumps(entries),
        capture_output=True,
        text=True,
        env=worker_env(),
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HatchPycError(f"the oracle's probe failed in {interpreter}: {last}")
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def check_against_cpython(
    roots: Sequence[str | os.PathLike[str]],
    interpreter: Interpreter,
    scratch: str | os.PathLike[str],
    *,
    levels: Sequence[int] = (0, 1, 2),
    workers: int = 0,
    compact: bool = False,
) -> OracleReport:
    """Compile copies of ``roots`` with hatch-pyc for ``interpreter`` and compare every pyc with ``compile()``.

    ``scratch`` must be an empty or missing directory the caller owns; the copies and their
    pycs are left there. Sources that neither side can compile (the test suite's deliberately
    broken files) are counted, not reported. ``compact``: hatch-pyc's compact pycs against ``compile()``
    under ``-X no_debug_ranges``.
    """
    scratch = Path(scratch)
    copies = []
    for index, root in enumerate(roots):
        copy = scratch / f"{index}"
        if copy_sources(Path(root), copy):
            copies.append(copy)
    # never from the compile cache: the oracle checks what the workers compile
    options = PycOptions(levels=tuple(levels), on_error="keep-source", workers=workers, cache=False, compact=compact)
    result = compile_tree(copies, options, python=interpreter.executable)
    report = OracleReport(interpreter, options.levels, linked=result.pyc_linked)
    entries = [
        {"src": str(item.source), "dfile": item.dfile, "outs": [[level, str(path)] for level, path in item.outputs]}
        for item in result.plan.sources
    ]
    chunks = max(1, options.worker_count)
    with ThreadPoolExecutor(chunks) as pool:
        answers = list(pool.map(lambda i: _probe(interpreter, entries[i::chunks], compact), range(chunks)))
    relpath = {str(item.source): item.relpath for item in result.plan.sources}
    for answer in answers:
        report.modules += answer["counts"]["modules"]
        report.pycs += answer["counts"]["pycs"]
        report.refused_by_both += answer["counts"]["refused_by_both"]
        report.differences.extend(
            OracleDifference(relpath[d["src"]], d["level"], d["detail"]) for d in answer["differences"]
        )
    report.differences.sort(key=lambda d: (d.source, d.level, d.detail))
    return report
