"""Sourceless libraries keep their types: ``.pyi`` stubs beside the compiled modules of typed packages.

The proof is what users see: ``mypy --strict`` on code that uses the library says the same against the
sourceless wheel as against the normal one, and without the stubs it cannot find the library at all.
Real hatchling builds, real pip installs into fresh venvs of each target CPython, real mypy.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, pip_for, run_cli, run_python, snapshot
from installer.sources import WheelFile
from test_wheel import make_wheel

from hatch_pyc import Interpreter, find_interpreter

PROJECT = Path(__file__).parent / "projects" / "typed"
CONSUMERS = PROJECT / "consumers"
BAD_LINES = {  # uses_it_badly.py: line -> the mypy error code it must give, with or without sources
    5: "list-item",
    6: "arg-type",
    8: "arg-type",
    9: "assignment",
    10: "misc",
    11: "attr-defined",
}
# The body of Circle.area holds this string, its docstring says "Its area.": neither may be in a stub.
BODY_TEXT = "the implementation of Circle.area"
PACKAGING = "packaging==24.2"


def copy_project(dest: Path, python: str, hook: str | None = "") -> Path:
    """The typed scenario project; ``hook=None`` builds it without the pyc hook, else ``hook`` is added to its table."""
    project = dest / "typed"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("consumers", "dist"))
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text().replace("@PYTHON@", python)
    if hook is None:
        text = text[: text.index("[tool.hatch.build.targets.wheel.hooks.pyc]")]
    else:
        text += hook
    pyproject.write_text(text)
    return project


def hatchling_wheel(project: Path) -> subprocess.CompletedProcess[str]:
    """``hatchling build -t wheel`` in the project, with this environment's hatchling, hatch-pyc and mypy."""
    command = [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", "dist"]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)


def build(project: Path) -> Path:
    proc = hatchling_wheel(project)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (project / "dist").glob("*.whl")
    return wheel


def venv_with(interp: Interpreter, where: Path, wheel: Path) -> Path:
    """A fresh venv of ``interp`` with ``wheel`` installed by pip; its python."""
    subprocess.run([interp.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check", wheel],
        check=True,
    )
    return python


def mypy(python: Path, interp: Interpreter, *files: Path) -> list[str]:
    """``mypy --strict`` on ``files`` as a user of the installed library runs it; its output lines."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            "--python-executable",
            str(python),
            "--python-version",
            interp.minor,
            *(f.name for f in files),
        ],
        cwd=files[0].parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    return proc.stdout.splitlines()


def codes_by_line(lines: list[str], name: str) -> dict[int, str]:
    found = {}
    for line in lines:
        if line.startswith(f"{name}:") and ": error: " in line:
            found[int(line.split(":")[1])] = line.rsplit("[", 1)[1].rstrip("]")
    return found


def stub_texts(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        WheelFile(zf).validate_record(validate_contents=True)
        return {n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".pyi")}


def assert_signatures_only(stubs: dict[str, str], docstrings: bool = False) -> None:
    """No stub holds code: each function body is ``...`` (after a docstring when they are kept)."""
    for name, text in stubs.items():
        assert BODY_TEXT not in text, name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if docstrings and ast.get_docstring(node) is not None else node.body
                assert all(isinstance(s, ast.Expr) and s.value.value is ... for s in body), f"{name}: {node.name}"  # type: ignore[attr-defined]
            if not docstrings and isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                assert ast.get_docstring(node) is None, name


def test_a_typed_project_built_sourceless_type_checks_like_its_source(tmp_path: Path, target: Interpreter) -> None:
    plain = build(copy_project(tmp_path / "plain", target.minor, hook=None))
    sourceless = build(copy_project(tmp_path / "sourceless", target.minor))
    assert sourceless.name == f"typedlib-0.3.0-{target.python_tag}-none-any.whl"

    stubs = stub_texts(sourceless)
    with zipfile.ZipFile(sourceless) as zf:
        names = zf.namelist()
    modules = sorted(n[:-4] for n in names if n.endswith(".pyc"))
    assert not [n for n in names if n.endswith(".py")]
    assert sorted(n[:-4] for n in stubs) == modules  # a stub beside every compiled module
    # the hand-written stub ships exactly as written, never replaced by a generated one
    assert stubs["typedlib/_native.pyi"] == (PROJECT / "src/typedlib/_native.pyi").read_text()
    assert_signatures_only({n: t for n, t in stubs.items() if n != "typedlib/_native.pyi"})

    plain_python = venv_with(target, tmp_path / "venv-plain", plain)
    sourceless_python = venv_with(target, tmp_path / "venv-sourceless", sourceless)
    consumers = [CONSUMERS / "uses_it_well.py", CONSUMERS / "uses_it_badly.py"]
    expected = mypy(plain_python, target, *consumers)
    assert codes_by_line(expected, "uses_it_well.py") == {}
    assert codes_by_line(expected, "uses_it_badly.py") == BAD_LINES
    assert mypy(sourceless_python, target, *consumers) == expected

    # It runs, sourceless, under the target.
    check = (
        "import typedlib, typedlib.shapes as s; print(s.__file__.endswith('.pyc'), typedlib.area_sum([s.Circle(1.0)]))"
    )
    out = subprocess.run([str(sourceless_python), "-c", check], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "3.141592653589793"]

    # Control: the same install without its stubs is what users had before: mypy cannot see the library.
    site = next((tmp_path / "venv-sourceless").glob("lib/python*/site-packages"))
    for stub in site.glob("typedlib/**/*.pyi"):
        stub.unlink()
    blind = mypy(sourceless_python, target, consumers[0])
    assert any('Cannot find implementation or library stub for module named "typedlib' in line for line in blind)


@pytest.mark.once
def test_stub_options_and_a_rebuild_is_byte_identical(tmp_path: Path) -> None:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    first = build(copy_project(tmp_path / "a", minor)).read_bytes()
    assert build(copy_project(tmp_path / "b", minor)).read_bytes() == first

    with_docs = stub_texts(build(copy_project(tmp_path / "docs", minor, hook="stub-docstrings = true\n")))
    assert '"""Its area."""' in with_docs["typedlib/shapes.pyi"]
    assert_signatures_only(with_docs, docstrings=True)

    none = build(copy_project(tmp_path / "none", minor, hook='stubs = "none"\n'))
    assert stub_texts(none) == {"typedlib/_native.pyi": (PROJECT / "src/typedlib/_native.pyi").read_text()}

    proc = hatchling_wheel(copy_project(tmp_path / "bad", minor, hook='stubs = "always"\n'))
    assert proc.returncode != 0
    assert "Option `stubs` for build hook `pyc`" in proc.stderr and "typed, all, none" in proc.stderr


@pytest.mark.once
def test_the_hook_asks_for_mypy_only_when_stubs_will_be_made(tmp_path: Path) -> None:
    """hatchling's get_requires_for_build_wheel: what a frontend installs into the isolated build environment."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    code = "from hatchling.build import get_requires_for_build_wheel as r; print(r())"

    def requires(project: Path) -> str:
        return subprocess.run(
            [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True
        ).stdout

    assert "mypy>=" in requires(copy_project(tmp_path / "typed", minor))
    assert "mypy" not in requires(copy_project(tmp_path / "off", minor, hook='stubs = "none"\n'))
    untyped = copy_project(tmp_path / "untyped", minor)
    (untyped / "src/typedlib/py.typed").unlink()
    assert "mypy" not in requires(untyped)
    (untyped / "pyproject.toml").write_text((untyped / "pyproject.toml").read_text() + 'stubs = "all"\n')
    assert "mypy>=" in requires(untyped)


@pytest.mark.once
def test_a_typed_library_from_pypi_converted_with_the_cli(tmp_path: Path) -> None:
    interp = find_interpreter(sys.executable)
    house = REPO / ".cache" / "wheels" / "stubs"
    subprocess.run(
        [*pip_for(interp), "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", str(house), PACKAGING],
        check=True,
    )
    (wheel,) = house.glob("packaging-24.2-*.whl")
    out = tmp_path / "out"
    run_cli("wheel", str(wheel), "-o", str(out), "--python", interp.executable, check=True)
    (converted,) = out.glob("*.whl")
    stubs = stub_texts(converted)
    with zipfile.ZipFile(converted) as zf:
        modules = sorted(n[:-4] for n in zf.namelist() if n.endswith(".pyc"))
    assert len(modules) > 10 and sorted(n[:-4] for n in stubs) == modules
    assert_signatures_only(stubs)
    again = tmp_path / "again"
    run_cli("wheel", str(wheel), "-o", str(again), "--python", interp.executable, check=True)
    assert (again / converted.name).read_bytes() == converted.read_bytes()

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "good.py").write_text(
        "from packaging.requirements import Requirement\n"
        "from packaging.specifiers import SpecifierSet\n"
        "from packaging.utils import NormalizedName, canonicalize_name\n"
        "from packaging.version import Version, parse\n"
        "version: Version = parse('1.2')\n"
        "ok: bool = version in SpecifierSet('>=1')\n"
        "req = Requirement('foo>=1; python_version > \"3\"')\n"
        "name: NormalizedName = canonicalize_name(req.name)\n"
        "major: int = version.major\n"
    )
    (consumer / "bad.py").write_text(
        "from packaging.specifiers import SpecifierSet\n"
        "from packaging.utils import canonicalize_name\n"
        "from packaging.version import Version\n"
        "Version(3)\n"
        "text: str = Version('1').major\n"
        "SpecifierSet(1)\n"
        "canonicalize_name(None)\n"
    )
    plain_python = venv_with(interp, tmp_path / "venv-plain", wheel)
    sourceless_python = venv_with(interp, tmp_path / "venv-sourceless", converted)
    expected = mypy(plain_python, interp, consumer / "good.py", consumer / "bad.py")
    assert codes_by_line(expected, "good.py") == {}
    assert sorted(codes_by_line(expected, "bad.py")) == [4, 5, 6, 7]
    assert mypy(sourceless_python, interp, consumer / "good.py", consumer / "bad.py") == expected


def _broken_wheel(directory: Path) -> Path:
    """A typed package with one module stubgen cannot make a stub for (CPython compiles it: the bad
    relative import is only an error when the function runs)."""
    return make_wheel(
        directory,
        {
            "brk/__init__.py": "from brk.good import VALUE\n",
            "brk/good.py": "VALUE: int = 1\n",
            "brk/odd.py": "def f() -> object:\n    from ... import x\n    return x\n",
            "brk/py.typed": "",
            "untyped_mod.py": "X = 1\n",
        },
        name="brk",
    )


@pytest.mark.once  # the running CPython is the target: the same in every session
def test_a_module_without_a_stub_fails_or_keeps_its_source(tmp_path: Path) -> None:
    wheel = _broken_wheel(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("wheel", str(wheel), "-o", str(out))
    assert proc.returncode == 1
    (error,) = proc.stderr.splitlines()  # one module: one line
    assert error.startswith("hatch-pyc: error: ") and "brk/odd.py:2: stub: stubgen:" in error
    assert "relative import" in error
    assert error.endswith(
        "; nothing was changed (--on-error keep-source keeps it as source; --stubs none makes no stub)"
    )
    assert not out.exists() or not list(out.iterdir())

    proc = run_cli("wheel", str(wheel), "-o", str(out), "--on-error", "keep-source", check=True)
    (converted,) = out.glob("*.whl")
    with zipfile.ZipFile(converted) as zf:
        WheelFile(zf).validate_record(validate_contents=True)
        names = set(zf.namelist())
    assert {"brk/odd.py", "brk/good.pyc", "brk/good.pyi", "brk/__init__.pyi", "untyped_mod.pyc"} <= names
    assert not {"brk/odd.pyc", "brk/odd.pyi", "untyped_mod.pyi"} & names

    out_all = tmp_path / "all"
    run_cli("wheel", str(wheel), "-o", str(out_all), "--stubs", "all", "--on-error", "keep-source", check=True)
    with zipfile.ZipFile(next(out_all.glob("*.whl"))) as zf:
        assert "untyped_mod.pyi" in zf.namelist()  # all: modules outside typed packages too


def _installed_venv(tmp_path: Path, interp: Interpreter) -> tuple[Path, Path]:
    plain = build(copy_project(tmp_path / "plain", interp.minor, hook=None))
    python = venv_with(interp, tmp_path / "venv", plain)
    (site,) = (tmp_path / "venv").glob("lib/python*/site-packages")
    return python, site


def test_compile_strip_with_stubs_keeps_types_and_records_true(tmp_path: Path, target: Interpreter) -> None:
    python, site = _installed_venv(tmp_path, target)
    native = (site / "typedlib/_native.pyi").read_bytes()
    proc = run_cli(
        "compile", "--strip", "--stubs", "typed", "--python", str(python), str(tmp_path / "venv"), check=True
    )
    assert "4 type stubs written" in proc.stderr
    assert sorted(p.relative_to(site).as_posix() for p in site.glob("typedlib/**/*.py")) == []
    assert sorted(p.relative_to(site).as_posix() for p in site.glob("typedlib/**/*.pyi")) == [
        "typedlib/__init__.pyi",
        "typedlib/_native.pyi",
        "typedlib/shapes.pyi",
        "typedlib/sub/__init__.pyi",
        "typedlib/sub/registry.pyi",
    ]
    assert (site / "typedlib/_native.pyi").read_bytes() == native  # hand-written: kept, not regenerated
    # RECORD lists every stub with its true hash (installer's own check, over every file it lists)
    check = (
        "import sys, pathlib; from installer.records import parse_record_file\n"
        "site = pathlib.Path(sys.argv[1]); (d,) = site.glob('typedlib-*.dist-info')\n"
        "rows = list(parse_record_file((d / 'RECORD').read_text().splitlines()))\n"
        "from installer.records import RecordEntry\n"
        "for path, h, size in rows:\n"
        "    e = RecordEntry.from_elements(path, h, size)\n"
        "    assert e.hash_ is None or e.validate((site / path).read_bytes()), path\n"
        "print(sorted(p for p, h, s in rows if p.endswith('.pyi')))\n"
    )
    listed = subprocess.run([sys.executable, "-c", check, str(site)], capture_output=True, text=True, check=True)
    assert listed.stdout.count(".pyi") == 5
    consumers = [CONSUMERS / "uses_it_well.py", CONSUMERS / "uses_it_badly.py"]
    assert codes_by_line(mypy(python, target, *consumers), "uses_it_badly.py") == BAD_LINES
    # uninstall removes every file the run wrote: the stubs are in RECORD
    subprocess.run([*pip_for(target)[:3], "--python", str(python), "uninstall", "-y", "-q", "typedlib"], check=True)
    assert not (site / "typedlib").exists()


@pytest.mark.once
def test_compile_strip_writes_no_stubs_unless_asked_and_a_failure_changes_nothing(tmp_path: Path) -> None:
    interp = find_interpreter(sys.executable)
    python, site = _installed_venv(tmp_path, interp)
    tree = tmp_path / "venv"
    (site / "typedlib/odd.py").write_text("def f() -> object:\n    from ... import x\n    return x\n")
    before = snapshot(tree)
    proc = run_cli("compile", "--strip", "--stubs", "typed", "--python", str(python), str(tree))
    assert proc.returncode == 1 and "typedlib/odd.py:2: stub: stubgen:" in proc.stderr
    assert snapshot(tree) == before
    proc = run_cli("compile", "--stubs", "typed", str(tree))
    assert proc.returncode == 2 and "sourceless output (--strip)" in proc.stderr
    (site / "typedlib/odd.py").unlink()
    run_cli("compile", "--strip", "--python", str(python), str(tree), check=True)
    assert sorted(p.name for p in site.glob("typedlib/**/*.pyi")) == ["_native.pyi"]  # only the hand-written one


@pytest.mark.once
def test_without_mypy_a_typed_wheel_says_what_to_install(tmp_path: Path) -> None:
    """A hatch-pyc installed without the ``stubs`` extra: a one-line error naming the module and the fix."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "uv", "pip", "install", "-q", "-p", str(venv / "bin/python"), str(REPO)], check=True
    )
    assert run_python(str(venv / "bin/python"), "import mypy", check=False).returncode != 0
    wheel = _broken_wheel(tmp_path)
    out = tmp_path / "out"
    cmd = [str(venv / "bin/hatch-pyc"), "wheel", str(wheel), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "brk/" in line and "py.typed" in line and "hatch-pyc[stubs]" in line and "--stubs none" in line
    assert not out.exists() or not list(out.iterdir())
    subprocess.run([*cmd, "--stubs", "none", "--on-error", "keep-source"], capture_output=True, check=True)
    assert len(list(out.glob("*.whl"))) == 1


@pytest.mark.once  # the running CPython is the target: the same in every session
def test_generating_stubs_never_runs_the_packages_code(tmp_path: Path) -> None:
    """stubgen reads the sources from a scratch copy: a package named like a module mypy or the stdlib
    imports (``json``, ``typing_extensions``) must not be imported from there (before, it ran)."""
    marker = tmp_path / "ran"
    payload = (
        f"open({str(marker)!r} + '-' + __name__, 'w').write('x')\ndef loads(*a, **k): raise SystemExit('hijacked')\n"
    )
    wheel = make_wheel(
        tmp_path,
        {
            "json/__init__.py": payload + "def api(x: int) -> int: ...\n",
            "json/py.typed": "",
            "typing_extensions.py": payload,
            "mypy_extensions.py": payload,
        },
        name="evil",
    )
    out = tmp_path / "out"
    run_cli("wheel", str(wheel), "-o", str(out), "--stubs", "all", check=True)
    assert list(tmp_path.glob("ran*")) == []
    assert {"json/__init__.pyi", "typing_extensions.pyi", "mypy_extensions.pyi"} <= set(
        stub_texts(next(out.glob("*.whl")))
    )


@pytest.mark.once  # the running CPython is the target: the same in every session
def test_odd_but_valid_layouts_get_their_stubs(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        {
            # stubgen skips six.py and vendor directories by name; a typed package's own are stubbed too
            "pkg/__init__.py": "",
            "pkg/py.typed": "",
            "pkg/six.py": "def f(x: int) -> int: ...\n",
            "pkg/_vendor/__init__.py": "",
            "pkg/_vendor/lib.py": "def g() -> str: ...\n",
            # PEP 561's namespace case: the marker in the typed package below a namespace package
            "acme/widgets/__init__.py": "def make(n: int) -> str: ...\n",
            "acme/widgets/py.typed": "",
            # a typed package's module installed from .data/purelib is covered by the root's marker
            "demo-1.0.data/purelib/pkg/extra.py": "def h() -> bytes: ...\n",
        },
    )
    out = tmp_path / "out"
    run_cli("wheel", str(wheel), "-o", str(out), check=True)
    stubs = stub_texts(next(out.glob("*.whl")))
    assert stubs["pkg/six.pyi"].strip() == "def f(x: int) -> int: ..."
    assert stubs["pkg/_vendor/lib.pyi"].strip() == "def g() -> str: ..."
    assert stubs["acme/widgets/__init__.pyi"].strip() == "def make(n: int) -> str: ..."
    assert stubs["demo-1.0.data/purelib/pkg/extra.pyi"].strip() == "def h() -> bytes: ..."


@pytest.mark.once  # the running CPython is the target: the same in every session
@pytest.mark.parametrize(
    "other",
    ["demo-1.0.data/purelib/pkg/mod.pyi", "pkg/MOD.pyi", "pkg/mod.pyi/notes.txt"],
    ids=["same-install-path", "letter-case", "directory"],
)
def test_a_stub_never_collides_with_an_entry_of_the_wheel(tmp_path: Path, other: str) -> None:
    """An entry already at the stub's install path (any root, any case, or as a directory) wins: no stub is
    made, the summary says why, and the output passes the gate hatch-pyc itself reads wheels through."""
    wheel = make_wheel(
        tmp_path, {"pkg/__init__.py": "", "pkg/py.typed": "", "pkg/mod.py": "X: int = 1\n", other: "X: int\n"}
    )
    out = tmp_path / "out"
    proc = run_cli("wheel", str(wheel), "-o", str(out), check=True)
    assert "pkg/mod.py: no type stub made, another entry of the wheel installs to its name" in proc.stderr
    (converted,) = out.glob("*.whl")
    stubs = stub_texts(converted)
    assert "pkg/mod.pyi" not in stubs and stubs["pkg/__init__.pyi"] == ""
    run_cli("wheel", str(converted), "-o", str(tmp_path / "again"), check=True)  # the gate takes it


@pytest.mark.once
def test_the_hook_finds_a_marker_in_a_package_named_build(tmp_path: Path) -> None:
    """Only the project's own build/ and dist/ output directories are skipped when looking for py.typed."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = copy_project(tmp_path, minor)
    (project / "src/typedlib").rename(project / "src/build")
    text = (project / "pyproject.toml").read_text().replace("src/typedlib", "src/build")
    (project / "pyproject.toml").write_text(text)
    code = "from hatchling.build import get_requires_for_build_wheel as r; print(r())"
    out = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=True).stdout
    assert "mypy>=" in out


def test_the_stub_check_refuses_code_and_unwanted_docstrings(target: Interpreter) -> None:
    """The last guard, run by the target itself: whatever stubgen wrote, a body that holds code is refused."""
    from hatch_pyc._stubs import _CHECKER, _run_json

    stubs = {
        "fine.pyi": "import sys\nX: int\nif sys.version_info >= (3, 12):\n    def f(x: int = ...) -> int: ...\n"
        "class C:\n    y: str\n    def g(self) -> None: ...\n",
        "body.pyi": "def f() -> int:\n    return 42\n",
        "method.pyi": "class C:\n    def g(self) -> None:\n        print('secret')\n",
        "loop.pyi": "for i in range(3): ...\n",
        "call.pyi": "print('hello')\n",
        "doc.pyi": 'def f() -> None:\n    """Hidden."""\n',
        "broken.pyi": "def f(:\n",
    }
    problems = _run_json(
        [target.executable, "-I", "-c", _CHECKER], {"docstrings": False, "stubs": stubs}, cwd=None, what="check"
    )
    assert sorted(problems) == ["body.pyi", "broken.pyi", "call.pyi", "doc.pyi", "loop.pyi", "method.pyi"]
    assert "function f has a body at line 2" in str(problems["body.pyi"])
    kept = _run_json(
        [target.executable, "-I", "-c", _CHECKER], {"docstrings": True, "stubs": stubs}, cwd=None, what="check"
    )
    assert "doc.pyi" not in kept and "body.pyi" in kept


@pytest.mark.once  # the running CPython is the target: the same in every session
def test_stubs_are_the_same_whatever_the_hash_seed(tmp_path: Path) -> None:
    """stubgen writes the comparison methods functools.total_ordering adds in set order: the stubs are made
    under a fixed hash seed, so converting under any seed gives the same wheel."""
    source = (
        "import functools\n\n@functools.total_ordering\nclass V:\n"
        "    def __eq__(self, other: object) -> bool: ...\n"
        "    def __lt__(self, other: 'V') -> bool: ...\n"
        "    def __gt__(self, other: 'V') -> bool: ...\n"
    )
    wheel = make_wheel(tmp_path, {"ordered/__init__.py": source, "ordered/py.typed": ""}, name="ordered")
    outputs = set()
    for seed in ("1", "2", "3", "4", "5", "6"):
        out = tmp_path / f"out{seed}"
        run_cli("wheel", str(wheel), "-o", str(out), "--no-cache", env={"PYTHONHASHSEED": seed}, check=True)
        outputs.add(next(out.glob("*.whl")).read_bytes())
    assert len(outputs) == 1


def _stub_entries(cache: Path) -> list[Path]:
    return [p for p in cache.glob("code/*/*") if p.read_bytes().startswith(b"hatch-pyc stubs 1\n")]


@pytest.mark.once  # the running CPython is the target: the same in every session
def test_stubs_are_kept_in_the_compile_cache_and_never_served_damaged_or_stale(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {
        "kept/__init__.py": "from kept.core import f\n",
        "kept/core.py": "def f(x: int) -> int:\n    return x\n",
        "kept/py.typed": "",
    }
    wheel = make_wheel(tmp_path, files, name="kept")
    cache = tmp_path / "cache"

    def convert(name: str, *extra: str, source: Path = wheel) -> tuple[bytes, str]:
        out = tmp_path / name
        proc = run_cli("wheel", str(source), "-o", str(out), "--cache-dir", str(cache), *extra, check=True)
        return next(out.glob("*.whl")).read_bytes(), proc.stderr

    cold, said = convert("cold")
    assert "2 type stubs," in said and len(_stub_entries(cache)) == 1
    warm, said = convert("warm")
    assert "2 type stubs (2 from the compile cache)" in said and warm == cold
    assert convert("none", "--no-cache")[0] == cold

    (entry,) = _stub_entries(cache)
    entry.write_bytes(entry.read_bytes().replace(b"int", b"str"))  # a payload its digest no longer matches
    damaged, said = convert("damaged")
    assert "2 type stubs," in said and damaged == cold
    assert b"str" not in entry.read_bytes()  # replaced by what stubgen said again

    # one changed source is a miss for its package (a module's stub may depend on the others)
    (tmp_path / "v2").mkdir()
    changed = make_wheel(
        tmp_path / "v2", {**files, "kept/core.py": "def f(x: str) -> str:\n    return x\n"}, name="kept"
    )
    said = convert("changed", source=changed)[1]
    assert "2 type stubs," in said
    assert (
        stub_texts(next((tmp_path / "changed").glob("*.whl")))["kept/core.pyi"].strip() == "def f(x: str) -> str: ..."
    )


@pytest.mark.once
def test_the_library_default_leaves_docstrings_out_of_stubs(tmp_path: Path) -> None:
    """``PycOptions()`` as a library caller leaves it: stubs of a typed wheel hold signatures, not docstrings;
    ``stub_docstrings=True`` keeps them."""
    from hatch_pyc import PycOptions, convert_wheel

    wheel = make_wheel(
        tmp_path,
        {
            "doc/__init__.py": '"""Package."""\n',
            "doc/py.typed": "",
            "doc/m.py": 'def f() -> int:\n    """Doc."""\n    return 1\n',
        },
    )
    texts = []
    for options in (PycOptions(), PycOptions(stub_docstrings=True)):
        (result,) = convert_wheel(wheel, tmp_path / str(len(texts)), [find_interpreter(None)], options)
        with zipfile.ZipFile(result.output) as zf:
            texts.append(zf.read("doc/m.pyi").decode())
    assert "Doc." not in texts[0] and "def f() -> int: ..." in texts[0]
    assert "Doc." in texts[1]
