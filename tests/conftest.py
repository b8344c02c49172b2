"""Shared fixtures: real target interpreters, real trees, real subprocesses."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import hypothesis
import pytest

from hatch_pyc import Interpreter, InvalidTarget, find_interpreter
from hatch_pyc._pycinfo import RELEASED_MAGIC
from hatch_pyc._targets import OLDEST_TARGET, discover_interpreters

# A shell without job control starts a background job (``pytest ... &``, a CI step run that way) with SIGINT
# ignored, and every process it starts inherits that: hatch-pyc rightly leaves an ignored SIGINT ignored, so
# the tests that interrupt a run would fail for the way the suite was launched. The suite runs as if started
# in the foreground: Python's own handler here, the default in each process a test starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent

# The compile cache (and the interpreter probe cache) of this test process and every process it starts:
# a directory of its own, removed at exit, so no run of the suite writes to the user's ~/.cache. Tests of the
# cache itself name their own directories.
_CACHE = tempfile.mkdtemp(prefix="hatch-pyc-test-cache-")
os.environ["HATCH_PYC_CACHE_DIR"] = _CACHE
os.environ.pop("HATCH_PYC_NO_CACHE", None)
atexit.register(shutil.rmtree, _CACHE, True)

# Property tests draw their examples from a fixed seed on CI (derandomize), so a failure there is
# reproduced by running the same test again; elsewhere they explore (and keep a failing example in
# .hypothesis/ for the next run).
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def _available() -> tuple[str, ...]:
    """The CPythons this machine has (3.10 and newer).

    On CI every released minor version from 3.10 to the newest in hatch-pyc's magic table must
    be there (a missing one fails the run, see ``_require``); elsewhere, whatever is installed.
    """
    found = {interp.minor for interp in discover_interpreters()}
    if os.environ.get("CI"):
        newest = max(int(v.split(".")[1]) for v in RELEASED_MAGIC.values())
        found |= {f"3.{minor}" for minor in range(OLDEST_TARGET[1], newest + 1)}
    return tuple(sorted(found, key=lambda v: tuple(map(int, v.split(".")))))


def _targets() -> tuple[str, ...]:
    """The CPythons the ``target`` fixture compiles for: every one available, or with
    ``HATCH_PYC_TEST_TARGETS=own`` only the one running the tests.

    The nox sessions run the whole matrix once: the session of one CPython targets every CPython,
    the others only their own (noxfile.py), so no (runner, target) pair that says something new
    is left out and none is run six times.
    """
    if os.environ.get("HATCH_PYC_TEST_TARGETS") == "own":
        return (f"{sys.version_info[0]}.{sys.version_info[1]}",)
    return AVAILABLE


AVAILABLE = _available()
TARGETS = _targets()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a nox session that targets only its own CPython, tests marked ``once`` are deselected: the session
    that targets every CPython runs them (they run the CLI under one fixed CPython, minutes each)."""
    if os.environ.get("HATCH_PYC_TEST_TARGETS") != "own":
        return
    once = [item for item in items if item.get_closest_marker("once")]
    if once:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not item.get_closest_marker("once")]


def _require(minor: str) -> Interpreter:
    try:
        return find_interpreter(minor)
    except InvalidTarget as exc:
        # On CI every supported CPython must be there: a missing one is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"CPython {minor} is required on CI: {exc}")
        pytest.skip(f"CPython {minor} not found on this machine")


@pytest.fixture(params=TARGETS, ids=[f"py{t}" for t in TARGETS])
def target(request: pytest.FixtureRequest) -> Interpreter:
    """Each supported CPython in turn, as the compile target."""
    return _require(request.param)


@pytest.fixture
def other_target() -> Interpreter:
    """A CPython different from the one running the tests."""
    for minor in AVAILABLE:
        if minor != f"{sys.version_info[0]}.{sys.version_info[1]}":
            return _require(minor)
    raise AssertionError("unreachable")


Files = Mapping[str, "str | bytes"]


@pytest.fixture(scope="session")
def interpreter_copy(tmp_path_factory: pytest.TempPathFactory) -> Interpreter:
    """The running CPython with a standard library of its own: its binary copied into a scratch prefix
    beside a real copy (not links) of its stdlib, which CPython finds from the binary's place.

    Tests that run a command which could change an interpreter (``compile --stdlib``) run it on this,
    so that not even a broken guard in the code under test can touch the machine's own CPythons.
    """
    import shutil
    import sysconfig

    from hatch_pyc import describe_interpreter

    prefix = tmp_path_factory.mktemp("cpython")
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    binary = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    (prefix / "bin").mkdir()
    shutil.copy2(binary, prefix / "bin" / name)
    skip = shutil.ignore_patterns("test", "__pycache__", "site-packages", "dist-packages", "idlelib", "turtledemo")
    shutil.copytree(sysconfig.get_paths()["stdlib"], prefix / "lib" / name, ignore=skip)
    copy = describe_interpreter(str(prefix / "bin" / name))
    assert copy.stdlib == str(prefix / "lib" / name), f"the copy did not find its own stdlib: {copy.stdlib}"
    return copy


def write_tree(root: Path, files: Files) -> Path:
    """Write ``{relpath: text or bytes}`` under ``root`` (text is dedented)."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[[Files], Path]:
    """Build a tree of files in a fresh directory and return the directory."""
    counter = iter(range(1000))

    def make(files: Files) -> Path:
        return write_tree(tmp_path / f"tree{next(counter)}", files)

    return make


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and directory under ``root`` with its bytes and mode: to prove a run changed nothing."""
    out: dict[str, tuple[bytes, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            continue
        if path.is_file():
            out[path.relative_to(root).as_posix()] = (path.read_bytes(), path.stat().st_mode)
        elif path.is_dir():  # a failed run must not leave even an empty __pycache__ behind
            out[path.relative_to(root).as_posix() + "/"] = (b"", path.stat().st_mode)
    return out


def run_python(
    interp: Interpreter | str,
    code: str,
    *,
    path: Path | None = None,
    args: tuple[str, ...] = (),
    cwd: Path | None = None,
    check: bool = True,
    hash_seed: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh, isolated process of ``interp`` with ``path`` on sys.path.

    ``PYTHONDONTWRITEBYTECODE`` keeps the interpreter from writing pycs of its own, so what
    is imported is what hatch-pyc wrote. ``hash_seed`` fixes ``PYTHONHASHSEED``.
    """
    exe = interp if isinstance(interp, str) else interp.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    if path is not None:
        env["PYTHONPATH"] = str(path)
    proc = subprocess.run(
        [exe, "-s", *args, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"python failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def pip_for(interp: Interpreter) -> list[str]:
    """The test's own pip, installing for ``interp`` (whose base may have no pip: Debian's CPythons)."""
    return [sys.executable, "-m", "pip", "--python", interp.executable, "--disable-pip-version-check"]


def modules_imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter imports to run ``code``, beyond those it starts with."""
    probe = "\n".join(
        [
            "import sys",
            "_before = set(sys.modules)",
            textwrap.dedent(code),
            "print(*sorted(set(sys.modules) - _before))",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(proc.stdout.splitlines()[-1].split())


def run_cli(
    *args: str, check: bool | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hatch-pyc`` as a user would, in a subprocess of the test interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true", **(env or {})},
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"hatch-pyc {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """A Docker SDK client of the engine at DOCKER_HOST holding the base image; without one the test is
    skipped, or fails when CI is set (docker_support.require_engine)."""
    import docker_support

    client = docker_support.require_engine()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _coverage_context(request: pytest.FixtureRequest) -> Iterator[None]:
    """For ``scripts/mutation.py``'s coverage map: which test ran each line, in this process and in
    every Python process the test starts (they inherit ``HATCH_PYC_TEST_ID``; their coverage
    configuration takes it as its static context). A no-op unless coverage is measuring."""
    if not os.environ.get("COVERAGE_PROCESS_START"):
        yield
        return
    import coverage

    os.environ["HATCH_PYC_TEST_ID"] = request.node.nodeid
    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(request.node.nodeid)
    yield
    os.environ["HATCH_PYC_TEST_ID"] = ""
