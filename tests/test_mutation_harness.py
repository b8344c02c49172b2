"""The mutation harness's test command (scripts/mutation_test.py) never scores a mutant it did not test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "scripts" / "mutation_test.py"


def _work(tmp_path: Path, original: str, mutated: str) -> Path:
    """A work copy as scripts/mutation.py makes one: the module mutated, its pristine copy kept aside, a map."""
    work = tmp_path / "work"
    (work / "hatch_pyc").mkdir(parents=True)
    (work / ".mutation-pristine").mkdir()
    (work / "hatch_pyc" / "__init__.py").write_text("")
    (work / ".mutation-pristine" / "_m.py").write_text(original)
    (work / "hatch_pyc" / "_m.py").write_text(mutated)
    (work / "tests").mkdir()
    (work / "tests" / "test_m.py").write_text("import hatch_pyc._m as m\n\ndef test_x():\n    assert m.X == 1\n")
    test = "tests/test_m.py::test_x"
    (tmp_path / "map.json").write_text(json.dumps({"lines": {"_m": {"1": [test]}}, "durations": {test: 0.1}}))
    return work


def _run(tmp_path: Path, work: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "_m", str(tmp_path / "map.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_copy_holding_no_mutant_is_a_harness_error_not_a_survivor(tmp_path: Path) -> None:
    work = _work(tmp_path, "X = 1\n", "X = 1\n")
    proc = _run(tmp_path, work)
    assert proc.returncode == 3 and "harness error: hatch_pyc/_m.py" in proc.stderr, proc.stderr


def test_a_mutant_of_the_same_size_and_mtime_is_not_hidden_by_a_cached_pyc(tmp_path: Path) -> None:
    """The original was imported (its pyc cached) and the mutant has its size and modification time: a timestamp
    pyc would still say X = 1. The harness removes the module's pycs, so the test sees the mutant and fails."""
    work = _work(tmp_path, "X = 1\n", "X = 1\n")
    module = work / "hatch_pyc" / "_m.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import hatch_pyc._m"], cwd=work, env=env, check=True)
    assert list((work / "hatch_pyc" / "__pycache__").glob("_m.*.pyc"))
    when = module.stat().st_mtime_ns
    module.write_text("X = 2\n")
    os.utime(module, ns=(when, when))
    proc = _run(tmp_path, work)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # killed
