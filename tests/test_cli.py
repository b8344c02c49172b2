"""``hatch-pyc compile`` and ``hatch-pyc inspect`` as a user runs them: output, exit codes, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import modules_imported_by, run_cli, run_python, snapshot

from hatch_pyc import Interpreter
from hatch_pyc._compile import TMP_SUFFIX


def test_compile_reports_what_it_did(make_tree, target: Interpreter) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    proc = run_cli("compile", "--python", target.minor, "-O", "0", "-O", "2", str(tree), "--json", str(tree / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert f"compiled 2 of 2 sources for CPython {'.'.join(map(str, target.version))}" in proc.stderr
    summary = json.loads((tree / "r.json").read_text())
    assert summary["levels"] == [0, 2]
    assert summary["pyc_written"] + summary["pyc_linked"] == 4
    again = run_cli("compile", "--python", target.minor, "-O", "0", "-O", "2", str(tree))
    assert "compiled 0 of 2 sources" in again.stderr
    assert "2 already current" in again.stderr


def test_compile_syntax_error_exits_1_naming_file_and_line(make_tree) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/bad.py": "x = 1\ny = 2\nx = = 1\n"})
    before = snapshot(tree)
    proc = run_cli("compile", "--strip", str(tree))
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()  # one failing source: one line
    assert line.startswith(f"hatch-pyc: error: {tree / 'pkg/bad.py'}:3: SyntaxError: invalid syntax; ")
    assert "nothing was changed" in line
    assert snapshot(tree) == before
    (tree / "pkg/worse.py").write_text("def f(:\n")
    before = snapshot(tree)
    proc = run_cli("compile", "--strip", str(tree))
    assert proc.returncode == 1
    *each, summary = proc.stderr.splitlines()  # several: a line for each, then what was done
    assert [line.split(":")[0] for line in each] == ["hatch-pyc"] * 2 and len(each) == 2
    assert summary == (
        "hatch-pyc: 2 source(s) did not compile; nothing was changed "
        "(--on-error keep-source keeps them as source instead)"
    )
    assert snapshot(tree) == before


def test_keep_source_warns_and_exits_0(make_tree) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/bad.py": "x = = 1\n"})
    proc = run_cli("compile", "--strip", "--on-error", "keep-source", str(tree))
    assert proc.returncode == 0
    assert "warning:" in proc.stderr and "pkg/bad.py:1" in proc.stderr and "kept as source" in proc.stderr
    assert (tree / "pkg/bad.py").exists() and not (tree / "pkg/__init__.py").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compile", "/no/such/dir"], "/no/such/dir: no such file or directory"),
        (["compile", "--python", "2.7", "."], "no CPython 2.7 found"),
        (["compile", "--python", "/bin/true", "."], "/bin/true: did not describe itself as a Python interpreter"),
        (["compile", "--strip", "-O", "0", "-O", "1", "."], "a sourceless tree holds one optimisation level"),
        (["compile"], "nothing to compile"),
        (["inspect", "/etc/os-release"], "/etc/os-release: not a pyc file"),
        (["inspect", "/etc/hostname-nope.pyc"], "/etc/hostname-nope.pyc: cannot read it"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hatch-pyc: error: ")
    assert message in lines[0]


def test_usage_error_exits_2() -> None:
    assert run_cli("compile", "-O", "3", ".").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_non_cpython_target_is_refused(tmp_path: Path) -> None:
    # A stand-in for PyPy: an interpreter that answers the probe as PyPy would.
    fake = tmp_path / "pypy3"
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'{"executable": "/opt/pypy3", "implementation": "pypy", "version": [3, 10, 14], '
        '"releaselevel": "final", "magic": "00000d0a", "cache_tag": "pypy310", "stdlib": "", "purelib": "", '
        '"platlib": "", "gil_disabled": false}\'\n'
    )
    fake.chmod(0o755)
    proc = run_cli("compile", "--python", str(fake), str(tmp_path), env={"HATCH_PYC_NO_CACHE": "1"})
    assert proc.returncode == 2
    assert "is pypy, not CPython" in proc.stderr


def test_dry_run_prints_the_plan_and_changes_nothing(make_tree) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/a.py": "", "pkg/skip.py": ""})
    before = snapshot(tree)
    proc = run_cli("compile", "--dry-run", "--strip", "--exclude", "skip.py", str(tree))
    assert proc.returncode == 0
    assert f"{tree / 'pkg/a.py'} -> {tree / 'pkg/a.pyc'}  (source removed)" in proc.stdout
    assert "skip.py  (excluded: keeps its source)" in proc.stdout
    assert snapshot(tree) == before


def test_inspect_decodes_header_and_code(make_tree, target: Interpreter) -> None:
    tree = make_tree({"pkg/__init__.py": "def hello():\n    return 'hi'\n"})
    run_cli("compile", "--python", target.minor, "--strip", str(tree), check=True)
    proc = run_cli("inspect", "--json", "--dis", str(tree / "pkg/__init__.pyc"), check=True)
    info = json.loads(proc.stdout)
    assert info["python"] == target.minor
    assert info["magic"] == target.magic.hex()
    assert info["invalidation_mode"] == "unchecked-hash"
    assert info["co_filename"] == "pkg/__init__.py"
    assert info["co_name"] == "<module>"
    text = run_cli("inspect", "--dis", str(tree / "pkg/__init__.pyc"), check=True).stdout
    assert "hello" in text and "RETURN" in text


def _big_tree(root: Path, modules: int = 1500) -> Path:
    body = "".join(f"def f{i}(x):\n    '''doc {i}'''\n    return [x * {i} for _ in range(3)]\n" for i in range(150))
    for i in range(modules):
        path = root / f"pkg{i % 10}" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    for d in range(10):
        (root / f"pkg{d}" / "__init__.py").write_text("")
    return root


def _wait_for_temporaries(root: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(root.rglob(f"*{TMP_SUFFIX}")):
            return
        assert proc.poll() is None, "the run finished before it could be interrupted"
        time.sleep(0.01)
    raise AssertionError("no temporary pyc appeared")


@pytest.mark.slow
def test_sigterm_mid_strip_leaves_the_tree_as_it_was(tmp_path: Path) -> None:
    root = _big_tree(tmp_path / "t")
    before = snapshot(root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatch_pyc", "compile", "--strip", str(root)], stderr=subprocess.PIPE
    )
    _wait_for_temporaries(root, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert b"terminated; nothing was changed" in err
    assert snapshot(root) == before


_DROPS_A_SIGTERM = """
import os, signal, sys, weakref
from hatch_pyc import _cli, _compile

def drop_a_sigterm():
    # SIGTERM from inside a weakref callback: its handler runs there and Python reports and ignores what it
    # raises (it happened in importlib's own callback when a run was SIGTERM-ed at random moments)
    class Token:
        pass
    token = Token()
    def callback(_):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100_000):
            pass
    ref = weakref.ref(token, callback)
    del token

real = _compile._commit
def commit_after_a_dropped_sigterm(*args, **kwargs):
    drop_a_sigterm()
    return real(*args, **kwargs)
_compile._commit = commit_after_a_dropped_sigterm
sys.exit(_cli.main(sys.argv[1:]))
"""


@pytest.mark.once  # the order of the run's steps, one code on every CPython
def test_a_sigterm_whose_exception_python_dropped_still_stops_the_commit(make_tree) -> None:
    """Found by SIGTERM-ing ``compile --strip`` at random moments: once in about 40 runs the handler ran in a
    weakref callback, Python dropped its exception, and the run stripped the tree and exited 0."""
    tree = make_tree({"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    before = snapshot(tree)
    proc = subprocess.run(
        [sys.executable, "-c", _DROPS_A_SIGTERM, "compile", "--strip", str(tree)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert "Exception ignored" in proc.stderr, proc.stderr  # the stand-in did drop it
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines()[-1] == "hatch-pyc: terminated; nothing was changed"
    assert snapshot(tree) == before


@pytest.mark.slow
@pytest.mark.once  # SIGKILL: the outcome is the order of file operations, one code on every CPython
def test_sigkill_mid_strip_loses_nothing_and_a_rerun_cleans_up(tmp_path: Path) -> None:
    root = _big_tree(tmp_path / "t")
    sources = sorted(root.rglob("*.py"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatch_pyc", "compile", "--strip", str(root)], start_new_session=True
    )
    _wait_for_temporaries(root, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, with no chance to clean up
    proc.wait()
    # Every source is still there, and no pyc exists under a final name.
    assert sorted(root.rglob("*.py")) == sources
    assert not list(root.rglob("*.pyc"))
    run_cli("compile", "--strip", str(root), check=True)
    assert not list(root.rglob("*.py"))
    assert not list(root.rglob(f"*{TMP_SUFFIX}"))
    assert len(list(root.rglob("*.pyc"))) == len(sources)
    assert run_python(sys.executable, "import pkg3.m3; print(pkg3.m3.f2(2))", path=root).stdout.strip() == "[4, 4, 4]"


def test_stdlib_is_planned_without_its_site_packages_and_never_stripped(interpreter_copy: Interpreter) -> None:
    """On a copy of the running CPython: with the guard removed, this strips that copy, never a real stdlib."""
    stdlib = Path(interpreter_copy.stdlib)
    proc = run_cli("compile", "--stdlib", "--dry-run", "--python", interpreter_copy.executable, check=True)
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"{stdlib}/os.py -> ") for line in lines)
    assert not any("site-packages" in line.split(" -> ")[0] for line in lines)
    before = snapshot(stdlib)
    refused = run_cli("compile", "--stdlib", "--strip", "--python", interpreter_copy.executable)
    assert refused.returncode == 2 and "would delete the standard library's sources" in refused.stderr
    assert snapshot(stdlib) == before


def test_version_imports_the_parser_and_no_command() -> None:
    """Building the parser imports each command's module, never the core modules a command runs."""
    code = """
        from hatch_pyc._cli import main
        try:
            main(["--version"])
        except SystemExit:
            pass
    """
    new = modules_imported_by(code)
    ours = {m.removeprefix("hatch_pyc.") for m in new if m.startswith("hatch_pyc.")}
    assert {m for m in ours if not m.startswith("_cli")} == {"_errors", "_options", "_text"}
    assert not new & {"subprocess", "json", "packaging", "pathspec", "installer", "rich", "docker"}


def test_inspect_names_a_magic_number_newer_than_it_knows_unknown(tmp_path: Path) -> None:
    from hatch_pyc._pycinfo import RELEASED_MAGIC

    future = max(RELEASED_MAGIC) + 100  # a CPython released after this hatch-pyc
    pyc = tmp_path / "m.pyc"
    pyc.write_bytes(future.to_bytes(2, "little") + b"\r\n" + bytes(12) + b"c")
    proc = run_cli("inspect", "--dis", str(pyc), check=True)
    assert f"unknown (magic {future} is not a CPython release this hatch-pyc knows)" in proc.stdout
    assert json.loads(run_cli("inspect", "--json", str(pyc), check=True).stdout)["python"] is None
