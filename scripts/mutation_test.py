#!/usr/bin/env python3
"""The test command of one mutant (run by cosmic-ray in a work copy, the module already mutated).

    mutation_test.py MODULE MAP.json [BUDGET]

Finds the lines the mutant changed (the module against the copy ``scripts/mutation.py`` kept in
``.mutation-pristine/``), takes from the coverage map the tests that run those lines, and runs them
until one fails (exit 1: killed) or all pass (exit 0: survived): first those that run a mutated line
few tests run, then the fastest, up to BUDGET seconds of them as the map timed them (90 by default). A mutant
only a later test would notice counts as surviving, so the score is a lower bound.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

BUDGET = 90.0
HARNESS_ERROR = 3


def changed_lines(pristine: list[str], mutated: list[str]) -> set[int]:
    """1-based numbers, in the pristine file, of the lines the mutant replaced."""
    lines: set[int] = set()
    matcher = difflib.SequenceMatcher(a=pristine, b=mutated, autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag != "equal":
            lines.update(range(i1 + 1, max(i2, i1 + 1) + 1))
    return lines


def statement_lines(source: str, lines: set[int]) -> set[int]:
    """``lines`` plus the first line of every statement that holds one of them.

    Coverage records a statement under its first line only: a mutant on the third line of a
    multi-line tuple or call is run by whatever runs the statement's first line.
    """
    found = set(lines)
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt) or node.end_lineno is None:
            continue
        # a compound statement's own line only when the mutant is in its header, not in its body
        body_start = min((child.lineno for child in _body(node)), default=node.end_lineno + 1)
        if any(node.lineno <= n < body_start for n in lines):
            found.add(node.lineno)
    return found


def _body(node: ast.stmt) -> list[ast.stmt]:
    return [
        child
        for name in ("body", "orelse", "finalbody", "handlers", "cases")
        for child in getattr(node, name, [])
        if isinstance(child, ast.AST) and hasattr(child, "lineno")
    ]


def main() -> int:
    module, map_path = sys.argv[1], Path(sys.argv[2])
    budget = float(sys.argv[3]) if len(sys.argv) > 3 else BUDGET
    work = Path.cwd()
    pristine = (work / ".mutation-pristine" / f"{module}.py").read_text().splitlines()
    mutated = (work / "hatch_pyc" / f"{module}.py").read_text().splitlines()
    data = json.loads(map_path.read_text())
    by_line: dict[str, list[str]] = data["lines"][module]
    durations: dict[str, float] = data["durations"]
    changed = changed_lines(pristine, mutated)
    if not changed:  # the mutant is not in this copy: scoring it would count a harness error as a survivor
        print(f"harness error: hatch_pyc/{module}.py in {work} is not mutated", file=sys.stderr)
        return HARNESS_ERROR
    lines = statement_lines("\n".join(pristine), changed)
    # Most specific first: a test that runs a line few tests run (the branch the mutant is in) before
    # those that run only the statement's common first line; then the fastest.
    specific: dict[str, int] = {}
    for n in lines:
        covering = by_line.get(str(n), [])
        for t in covering:
            specific[t] = min(specific.get(t, len(covering)), len(covering))
    tests = sorted(specific, key=lambda t: (specific[t], durations.get(t, 60.0), t))
    chosen, spent = [], 0.0
    for test in tests:
        if chosen and spent + durations.get(test, 60.0) > budget:
            break
        chosen.append(test)
        spent += durations.get(test, 60.0)
    if not chosen:
        print("no test runs the mutated line")
        return 0
    # Bytecode may be cached in the copy (pytest rewrites and compiles ~90 modules per start: 2 of its 3
    # seconds), except the mutated module's: a mutant often has the original's size and mtime second,
    # which is all a timestamp pyc is checked against, so its pycs are removed before every run.
    for stale in (work / "hatch_pyc" / "__pycache__").glob(f"{module}.*"):
        stale.unlink()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *chosen],
        cwd=work,
        env=env,
        check=False,
    )
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
