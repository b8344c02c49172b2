"""The import-time gate on a real venv, with the machine loaded differently for the baseline and the new run:
an unchanged tree passes, a module made 50 ms slower to import fails (issue 15, item 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hatch_pyc import find_interpreter

ROUNDS = "12"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with real PyPI packages installed by pip, without pycs."""
    root = tmp_path_factory.mktemp("gate") / "venv"
    interp = find_interpreter("3.12")
    subprocess.run([interp.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(root / "bin/python"), "-m", "pip", "install", "-q", "--no-compile", "six==1.17.0"],
        check=True,
    )
    return root


# Run pinned to the first CPU this process may use (the child pins itself: no preexec_fn under threads).
PIN = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"


@contextmanager
def busy_cpu() -> Iterator[None]:
    """Two spinning processes on the one CPU a report run is then confined to (``_report(pinned=True)``), as
    on a shared CI runner: the run gets about a third of that CPU, whatever else the machine is doing."""
    hogs = [subprocess.Popen([sys.executable, "-c", PIN + "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _report(venv: Path, *extra: str, pinned: bool = False) -> subprocess.CompletedProcess[str]:
    args = ["report", str(venv), "--import", "six", "--repeat", ROUNDS, "-q", *extra]
    run = PIN + "import runpy, sys\nsys.argv[0] = 'hatch-pyc'\nrunpy.run_module('hatch_pyc', run_name='__main__')"
    return subprocess.run(
        [sys.executable, *(["-c", run] if pinned else ["-m", "hatch_pyc"]), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
        check=False,
    )


@pytest.mark.slow
@pytest.mark.once
def test_an_unchanged_venv_passes_on_a_differently_loaded_machine_and_a_slower_import_fails(
    venv: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base.json"
    with busy_cpu():
        assert _report(venv, "--json", str(base), pinned=True).returncode == 0
    baseline = json.loads(base.read_text())
    loaded_startup = baseline["measurement"]["startup_ms"]["median_ms"]

    again = tmp_path / "again.json"
    same = _report(venv, "--baseline", str(base), "--max-import-regression", "10", "--json", str(again))
    idle_startup = json.loads(again.read_text())["measurement"]["startup_ms"]["median_ms"]
    assert loaded_startup > 1.5 * idle_startup, "the load did not slow the baseline: the test shows nothing"
    assert same.returncode == 0, same.stdout + same.stderr
    lines = same.stdout.splitlines()
    assert lines[-1] == "gate: passed (3 checks)"
    assert all(line.startswith(("PASS: import time ", "NOISE: import time ")) for line in lines[:-1]), lines
    gate = json.loads(again.read_text())["gate"]
    assert gate["passed"] and len(gate["checks"]) == 3

    site = next(venv.glob("lib/python3*/site-packages"))
    module = site / "six.py"
    original = module.read_text()
    module.write_text(
        original + "\nimport time as _t\n_s = _t.perf_counter()\nwhile _t.perf_counter() - _s < 0.05:\n    pass\n"
    )
    try:
        slower = _report(venv, "--baseline", str(base), "--max-import-regression", "10")
    finally:
        module.write_text(original)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    failed = [line for line in slower.stdout.splitlines() if line.startswith("FAIL: ")]
    # The sources-only variant against the interpreter's start-up, and each compiled variant against the
    # sources beside it: a 50 ms slower module moves the ratios, whichever of them clears its noise fails.
    assert failed and all(line.startswith("FAIL: import time ") and "`six`" in line for line in failed), failed
    assert slower.stdout.splitlines()[-1].startswith("gate: ") and "checks failed" in slower.stdout
