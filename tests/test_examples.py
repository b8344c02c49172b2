"""The example package of the README, compiled and run under every CPython."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
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


def test_demo_app_builds_the_wheel_the_dockerfiles_install(tmp_path: Path) -> None:
    """examples/dockerfiles install ``APP=demo_app`` from wheels/: its own pyproject.toml builds that wheel, with
    its data file, as the Dockerfiles' README says (``pip wheel -w wheels examples/demo_app``)."""
    app = tmp_path / "app"
    shutil.copytree(REPO / "examples/demo_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(app)],
        check=True,
    )
    (wheel,) = wheels.iterdir()
    assert wheel.name == "demo_app-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {"demo_app/__main__.py", "demo_app/stock.json", "demo_app/plugins/report.py"} <= names
