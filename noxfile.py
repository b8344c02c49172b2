"""Sessions: tests on every CPython 3.10+ found, lint, types, docs, docker, oracle, bench.

Run ``python -m nox`` for the default set (tests, lint, types, docs, docker, corpus_ci).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox

# hatch-pyc's own rules say which CPythons there are: the oldest it targets, and the newest
# release its magic table knows. The package is importable from the checkout (no src/ layout)
# and these two modules need nothing but the standard library.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hatch_pyc._pycinfo import RELEASED_MAGIC
from hatch_pyc._targets import OLDEST_TARGET, discover_interpreters

TEST_DEPS = [
    "pip>=25.3",
    "pytest>=8",
    "build>=1",
    "editables>=0.5",
    "jsonschema>=4",
    "markdown>=3",
    "pillow>=10",
    "hypothesis>=6",
    "uv>=0.5",  # tests uninstall with uv: RECORD must hold what it removes
    "pytest-xdist>=3",
    "pyyaml>=6",  # tests/test_ci_recipes.py reads the CI recipes of docs/ci.md
]
nox.options.sessions = ["tests", "lint", "types", "docs", "docker", "corpus_ci"]
nox.options.reuse_existing_virtualenvs = True
# uv makes each session's environment in seconds where pip takes half a minute (eleven sessions on
# CI); without uv (``pip install nox`` alone) nox falls back to virtualenv and pip.
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.download_python = "never"  # use the machine's CPythons; never fetch one
# On CI a missing interpreter is a failure; on a laptop it is a skipped session.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))


def _select_pyenv_versions() -> None:
    """Make every pyenv-installed CPython 3.10+ callable (pyenv's shims fail for versions that
    are installed but not selected). Other machines find their Pythons on PATH."""
    if os.environ.get("PYENV_VERSION") or not shutil.which("pyenv"):
        return

    def run(*args: str) -> list[str]:
        return subprocess.run(["pyenv", *args], capture_output=True, text=True, check=False).stdout.split()

    def wanted(version: str) -> bool:
        match = re.fullmatch(r"3\.(\d+)\.\d+", version)
        return bool(match) and (3, int(match.group(1))) >= OLDEST_TARGET

    installed = [v for v in run("versions", "--bare") if wanted(v)]
    chosen = [v for v in run("global") if v in installed] + installed
    if chosen:
        os.environ["PYENV_VERSION"] = ":".join(dict.fromkeys(chosen))


def _pythons() -> list[str]:
    """Every CPython the tests run under: on CI each released minor from the oldest target to the
    newest in the magic table (a missing one fails); elsewhere every one this machine has."""
    if os.environ.get("CI"):
        newest = max(int(v.split(".")[1]) for v in RELEASED_MAGIC.values())
        return [f"3.{minor}" for minor in range(OLDEST_TARGET[1], newest + 1)]
    return [interp.minor for interp in discover_interpreters()]


_select_pyenv_versions()
PYTHONS = _pythons()
_RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"
MATRIX_RUNNER = _RUNNING if _RUNNING in PYTHONS else PYTHONS[0]
# The corpus re-checked on every change: pure and binary wheels, one of them with data files.
CORPUS_CI = ("six", "idna", "pyyaml", "markupsafe", "attrs")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, run by each CPython; every test also targets every CPython found.

    Spread over one worker per CPU (pytest-xdist): the tests are real processes that mostly wait
    on each other, and six sessions of them in a row would take CI past 40 minutes."""
    session.install(".[docker,stubs]", *TEST_DEPS)
    # The (runner, target) matrix once: this session's CPython targets only itself, except in the
    # session of the CPython running nox, which targets every one (tests/conftest.py).
    session.env["HATCH_PYC_TEST_TARGETS"] = "all" if session.python == MATRIX_RUNNER else "own"
    session.run("pytest", "-m", "not docker", "-n", "auto", *session.posargs)


@nox.session(python="3.11")
def docker(session: nox.Session) -> None:
    """Dockerfile examples and hatch-pyc images in a private, offline Docker engine (needs root).

    scripts/docker-env.sh starts dockerd on a socket of its own and builds the local base image
    (debootstrap; nothing is pulled from a registry). Off CI, a machine that cannot run it skips.
    """
    proc = subprocess.run(["bash", "scripts/docker-env.sh", "start"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = f"no Docker engine: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
        if os.environ.get("CI"):
            session.error(message)
        session.skip(message)
    for line in proc.stdout.splitlines():
        if line.startswith("export DOCKER_HOST="):
            session.env["DOCKER_HOST"] = line.removeprefix("export DOCKER_HOST=")
    session.install(".[docker,stubs]", *TEST_DEPS)
    session.run("pytest", "-m", "docker", *session.posargs)


@nox.session(python="3.11")
def corpus(session: nox.Session) -> None:
    """Convert, install and verify 80 popular PyPI wheels on every CPython found (docs/corpus.md)."""
    session.install(".[stubs]", "pytest>=8", "pip")  # corpus.py installs with this environment's pip
    session.run("python", "scripts/corpus.py", *session.posargs)


@nox.session(python="3.11")
def corpus_ci(session: nox.Session) -> None:
    """The corpus check on a small, fixed subset, on every CPython found: its promises re-checked on every change."""
    session.install(".[stubs]", "pytest>=8", "pip")
    only = [arg for name in CORPUS_CI for arg in ("--only", name)]
    session.run("python", "scripts/corpus.py", *only, *session.posargs)


@nox.session(python="3.11")
def mutation(session: nox.Session) -> None:
    """Mutation testing of the core modules (docs/testing.md): the coverage map, then each module's
    mutants against the tests that run the mutated line. ``nox -s mutation -- _commit _wheelcheck``."""
    # editable: every process a test starts, whatever its working directory, imports this tree's
    # hatch_pyc, so the coverage map sees it (the mutants' own copies are found first from their cwd)
    session.install("-e", ".[docker,stubs]", *TEST_DEPS, "cosmic-ray>=8.4", "coverage>=7.10")
    session.run(
        "python",
        "scripts/mutation.py",
        "all",
        "--markdown",
        "docs/testing.md",
        "--survivors",
        "mutation/survivors.md",
        *session.posargs,
    )


@nox.session(python="3.11")
def oracle(session: nox.Session) -> None:
    """Every pyc against each CPython's own compile(): the stdlib with its tests and the benchmarks'
    site-packages, levels 0-2, on every CPython found (docs/correctness.md)."""
    session.install(".")
    session.run("python", "scripts/oracle.py", *(session.posargs or ["--markdown", "docs/correctness.md"]))


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def types(session: nox.Session) -> None:
    """mypy --strict over the library."""
    session.install(".", "mypy>=1.10", "docker>=7")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation strictly (broken links and missing pages fail)."""
    session.install(".", "mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", os.path.join(session.create_tmp(), "site"))


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Compile benchmarks against compileall and uv (see benchmarks/README.md)."""
    session.install(".[stubs]", "pip")
    session.run("python", "benchmarks/bench_compile.py", *session.posargs)
    session.run("python", "benchmarks/bench_wheel.py")
