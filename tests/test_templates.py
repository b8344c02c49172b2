"""Templates that look like code, for real: alembic's ``env.py`` survives a sourceless alembic.

``alembic init`` copies ``alembic/templates/generic/*`` into the user's project; the ``env.py`` there
is the file users edit. A sourceless alembic must still hand them that ``env.py``, not ``env.pyc``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import pip_for, run_cli
from installer.sources import WheelFile

from hatch_pyc import Interpreter, find_interpreter

ALEMBIC = "alembic==1.20.1"


@pytest.fixture(scope="session")
def interp() -> Interpreter:
    """The CPython running the tests: one version is enough for an end-to-end run."""
    return find_interpreter(f"{sys.version_info[0]}.{sys.version_info[1]}")


@pytest.fixture(scope="session")
def alembic_wheels(tmp_path_factory: pytest.TempPathFactory, interp: Interpreter) -> Path:
    """alembic and its dependencies from PyPI, downloaded once per session."""
    wheels = tmp_path_factory.mktemp("alembic-wheels")
    subprocess.run(
        [*pip_for(interp), "download", "-q", "--only-binary", ":all:", "-d", str(wheels), ALEMBIC], check=True
    )
    return wheels


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
@pytest.mark.once  # alembic's own commands decide it; the conversion under each runner: test_wheel.py
def test_alembic_init_copies_env_py_from_a_sourceless_alembic(
    tmp_path: Path, interp: Interpreter, alembic_wheels: Path
) -> None:
    (original,) = alembic_wheels.glob("alembic-*.whl")
    proc = run_cli("wheel", str(original), "-o", str(tmp_path / "out"), "--python", interp.minor, check=True)
    assert "kept as source (outside packages: alembic/templates/)" in proc.stderr
    (converted,) = (tmp_path / "out").glob("alembic-*.whl")
    with zipfile.ZipFile(converted) as zf:
        WheelFile(zf).validate_record(validate_contents=True)
        names = set(zf.namelist())
    with zipfile.ZipFile(original) as zf:
        template = zf.read("alembic/templates/generic/env.py").decode()
        templates = sorted(n for n in zf.namelist() if n.startswith("alembic/templates/") and n.endswith(".py"))
    assert templates and set(templates) <= names
    assert "alembic/command.pyc" in names and "alembic/command.py" not in names

    venv = tmp_path / "venv"
    subprocess.run([interp.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    # The converted alembic by its path; its dependencies from the download, as they are.
    subprocess.run([*pip, "install", "-q", "--no-index", "-f", str(alembic_wheels), str(converted)], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    assert (site / "alembic/command.pyc").is_file() and not (site / "alembic/command.py").exists()
    assert (site / "alembic/templates/generic/env.py").is_file()

    project = tmp_path / "project"
    project.mkdir()
    alembic = str(venv / "bin" / "alembic")
    run([alembic, "init", "migrations"], project)
    migrations = project / "migrations"
    assert (migrations / "env.py").read_text() == template
    assert not (migrations / "env.pyc").exists()
    assert (migrations / "script.py.mako").is_file()

    # The copied env.py is the one alembic runs: a revision, applied to a SQLite database.
    ini = project / "alembic.ini"
    ini.write_text(
        "\n".join(
            "sqlalchemy.url = sqlite:///app.db" if line.startswith("sqlalchemy.url") else line
            for line in ini.read_text().splitlines()
        )
    )
    run([alembic, "revision", "-m", "first"], project)
    upgraded = run([alembic, "upgrade", "head"], project)
    assert "Running upgrade  -> " in upgraded.stderr
    assert (project / "app.db").is_file()


@pytest.mark.slow
@pytest.mark.once  # alembic's own commands decide it; the strip under each runner: test_safety.py
def test_alembic_init_works_from_a_venv_stripped_in_place_and_uninstalls_cleanly(
    tmp_path: Path, interp: Interpreter, alembic_wheels: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([interp.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--no-index", "-f", str(alembic_wheels), ALEMBIC], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    template = (site / "alembic/templates/generic/env.py").read_text()

    proc = run_cli("compile", "--strip", str(venv), check=True)
    assert "kept as source (outside packages: templates or data)" in proc.stderr
    assert (site / "alembic/command.pyc").is_file() and not (site / "alembic/command.py").exists()

    project = tmp_path / "project"
    project.mkdir()
    run([str(venv / "bin" / "alembic"), "init", "migrations"], project)
    assert (project / "migrations/env.py").read_text() == template
    assert not (project / "migrations/env.pyc").exists()

    # RECORD lists what is on disk now: uv removes all of alembic, templates and pycs alike.
    subprocess.run(
        [sys.executable, "-m", "uv", "pip", "uninstall", "-q", "--python", str(python), "alembic"], check=True
    )
    assert not (site / "alembic").exists()
