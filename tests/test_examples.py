"""The example package of the README, compiled and run under every CPython."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import REPO, run_cli, run_python

from hatch_pyc import Interpreter


def test_demo_app_runs_sourceless(tmp_path: Path, target: Interpreter) -> None:
    app = tmp_path / "app"
    shutil.copytree(REPO / "examples/demo_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    run_cli("compile", "--python", target.minor, "--strip", "-O", "2", str(app), check=True)
    assert not list(app.rglob("*.py"))
    assert (app / "demo_app/stock.json").exists()
    out = run_python(target, "", args=("-m", "demo_app"), cwd=app).stdout.splitlines()
    assert out == [
        "  A-1  anvil    x3",
        "  B-2  bolt     x400",
        "total value: 435.00",
        "loaded from __main__.pyc by SourcelessFileLoader",
        "docstrings: stripped (-OO)",
    ]


def test_demo_app_with_sources_and_every_level(tmp_path: Path, target: Interpreter) -> None:
    app = tmp_path / "app"
    shutil.copytree(REPO / "examples/demo_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    run_cli("compile", "--python", target.minor, "-O", "0", "-O", "1", "-O", "2", str(app), check=True)
    assert len(list(app.rglob(f"*.{target.cache_tag}*.pyc"))) == 15
    out = run_python(target, "", args=("-OO", "-m", "demo_app"), cwd=app).stdout.splitlines()
    assert out[-2:] == ["loaded from __main__.py by SourceFileLoader", "docstrings: stripped (-OO)"]
