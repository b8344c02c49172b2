"""In-place compiling keeps its promises (docs/safety.md), on real trees and real venvs.

Each test states a promise, builds the tree that once broke it, and compares the tree (and
whatever lies outside it) byte for byte before and after.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import pip_for, run_cli, run_python, write_tree
from test_compile import _unprivileged_python

import hatch_pyc
from hatch_pyc import Interpreter, find_interpreter

HERE = find_interpreter(sys.executable)


def full_snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (hidden ones and links too) with its bytes, link target or mode."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[rel + "/"] = ("dir", info.st_mode)
            elif stat.S_ISREG(info.st_mode):
                out[rel] = (path.read_bytes(), info.st_mode)
            else:
                out[rel] = ("special", info.st_mode)
    return out


def _venv(where: Path, interp: Interpreter) -> Path:
    subprocess.run([interp.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return where


def _site(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


# 1. A tree that belongs to an interpreter is compiled for that interpreter only.


@pytest.mark.slow
def test_a_target_other_than_the_venvs_own_is_refused(tmp_path: Path, other_target: Interpreter) -> None:
    venv = _venv(tmp_path / "venv", other_target)
    site = _site(venv)
    write_tree(site, {"pkg/__init__.py": "X = 1\n", "pkg/mod.py": "Y = 2\n"})
    before = full_snapshot(venv)
    for path in (venv, site, site / "pkg", site / "pkg/mod.py"):
        for extra in ([], ["--strip"]):
            proc = run_cli("compile", *extra, "--python", HERE.minor, str(path))
            assert proc.returncode == 2, proc.stderr
            (line,) = proc.stderr.splitlines()
            assert f"belongs to CPython {other_target.minor}" in line and f"target is CPython {HERE.minor}" in line
            assert "--allow-other-python" in line
            assert full_snapshot(venv) == before
    # Said explicitly, it is done; the venv's own version needs no flag.
    run_cli("compile", "--python", HERE.minor, "--allow-other-python", str(site / "pkg"), check=True)
    assert (site / f"pkg/__pycache__/mod.{HERE.cache_tag}.pyc").is_file()
    run_cli("compile", "--strip", "--python", other_target.minor, str(venv), check=True)
    assert run_python(str(venv / "bin/python"), "import pkg.mod; print(pkg.mod.Y)").stdout.strip() == "2"


def test_a_copy_of_a_standard_library_is_compiled_for_its_version_only(
    tmp_path: Path, other_target: Interpreter
) -> None:
    lib = write_tree(tmp_path / f"lib/python{other_target.minor}", {"os.py": "", "json/__init__.py": "J = 1\n"})
    before = full_snapshot(tmp_path)
    proc = run_cli("compile", "--python", HERE.minor, str(lib / "json"))
    assert proc.returncode == 2 and f"{lib} is CPython {other_target.minor}'s standard library" in proc.stderr
    assert full_snapshot(tmp_path) == before


# 2. RECORD stays true: uninstallers and importlib.metadata agree with the disk.


_PACKAGES = ("six==1.17.0", "packaging==25.0")


def _metadata_agrees(venv: Path, dist: str, top: str) -> None:
    # 3.10 and 3.11 infer a distribution's top-level names from its .py files only (3.12 from
    # every file): a sourceless distribution without top_level.txt is missing there (docs/safety.md).
    code = f"""
        import importlib.metadata as md, os
        files = md.files({dist!r})
        missing = [str(f) for f in files if not os.path.exists(f.locate())]
        print(missing)
        import sys
        print({top!r} in md.packages_distributions() or (sys.version_info < (3, 12) and {top!r} != "six"))
        print(sum(1 for f in files if str(f).endswith('.pyc')) > 0)
    """
    lines = run_python(str(venv / "bin/python"), code).stdout.split("\n")
    assert lines[:3] == ["[]", "True", "True"], lines


def _record_rows(site: Path, dist_prefix: str) -> list[list[str]]:
    (record,) = site.glob(f"{dist_prefix}-*.dist-info/RECORD")
    return list(csv.reader(record.read_text().splitlines()))


def _uv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uv", *args], capture_output=True, text=True, check=True)


@pytest.mark.slow
@pytest.mark.parametrize("strip", [True, False], ids=["strip", "pycache"])
def test_records_stay_true_so_pip_and_uv_uninstall_cleanly(tmp_path: Path, strip: bool) -> None:
    venv = _venv(tmp_path / "venv", HERE)
    python = str(venv / "bin/python")
    subprocess.run([*pip_for(HERE)[:3], "--python", python, "install", "-q", "--no-compile", _PACKAGES[1]], check=True)
    _uv("pip", "install", "-q", "--python", python, _PACKAGES[0])  # installed by uv: its RECORD
    site = _site(venv)
    outside = {p: p.read_bytes() for p in (venv / "pyvenv.cfg",)}

    run_cli("compile", *(["--strip"] if strip else []), str(venv), check=True)

    for dist, top in (("six", "six"), ("packaging", "packaging")):
        _metadata_agrees(venv, dist, top)
        rows = _record_rows(site, dist)
        listed = {row[0] for row in rows}
        on_disk = {
            p.relative_to(site).as_posix()
            for p in site.rglob("*")
            if p.is_file() and (p.relative_to(site).parts[0].startswith(top))
        }
        assert on_disk <= listed, on_disk - listed  # every file of the package is listed
        if strip:
            assert not any(name.endswith(".py") for name in listed if not name.startswith("../"))
            pyc_rows = [row for row in rows if row[0].endswith(".pyc")]
            assert pyc_rows and all(row[1].startswith("sha256=") and int(row[2]) > 0 for row in pyc_rows)
        else:
            assert any("/__pycache__/" in name or name.startswith("__pycache__/") for name in listed)
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "show", "-f", "six"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ("six.pyc" in shown) == strip and ("six.py\n" in shown) == (not strip)

    # uv uninstalls what RECORD lists: nothing of six may be left, nor importable.
    _uv("pip", "uninstall", "-q", "--python", python, "six")
    assert not [p for p in site.rglob("six*") if "dist-info" not in p.as_posix()]
    assert run_python(python, "import six", check=False).returncode != 0
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "uninstall", "-q", "-y", "packaging"], check=True)
    assert not (site / "packaging").exists()
    assert {p: p.read_bytes() for p in outside} == outside


# 3. Nothing outside the tree is created, replaced or removed, whatever links it holds.


@pytest.mark.parametrize("strip", [True, False], ids=["strip", "pycache"])
def test_a_linked_pycache_is_refused_and_nothing_outside_changes(tmp_path: Path, strip: bool) -> None:
    outside = write_tree(tmp_path / "outside", {f"mod.{HERE.cache_tag}.pyc": b"precious", "notes.txt": "keep\n"})
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    (tree / "pkg/__pycache__").symlink_to(outside, target_is_directory=True)
    before, before_outside = full_snapshot(tree), full_snapshot(outside)
    proc = run_cli("compile", *(["--strip"] if strip else []), str(tree))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"hatch-pyc: error: {tree / 'pkg/__pycache__'}: a symbolic link (to {outside})")
    assert full_snapshot(tree) == before and full_snapshot(outside) == before_outside


def test_a_linked_source_is_read_and_only_the_link_is_replaced(tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"real.py": "def f():\n    return 41 + 1\n"})
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": ""})
    (tree / "pkg/linked.py").symlink_to(outside / "real.py")
    before_outside = full_snapshot(outside)
    run_cli("compile", "--strip", str(tree), check=True)
    assert not os.path.lexists(tree / "pkg/linked.py") and (tree / "pkg/linked.pyc").is_file()
    assert full_snapshot(outside) == before_outside
    assert run_python(HERE, "import pkg.linked; print(pkg.linked.f())", path=tree).stdout.strip() == "42"


# 8. Only regular files are read.


def test_a_fifo_or_a_device_named_py_is_refused_at_once(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/ok.py": "OK = 1\n"})
    os.mkfifo(tree / "pkg/pipe.py")
    before = full_snapshot(tree)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", "compile", "--strip", str(tree)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"hatch-pyc: error: {tree / 'pkg/pipe.py'}: a FIFO (named pipe), not a regular file; "
        "only regular files are compiled (exclude it)"
    ]
    assert full_snapshot(tree) == before
    (tree / "pkg/pipe.py").unlink()
    (tree / "pkg/zero.py").symlink_to("/dev/zero")
    proc = run_cli("compile", str(tree))
    assert proc.returncode == 2 and "pkg/zero.py: a character device, not a regular file" in proc.stderr
    # excluded, it is left alone and the rest compiles
    run_cli("compile", "--strip", "--exclude", "pkg/zero.py", str(tree), check=True)
    assert (tree / "pkg/ok.pyc").is_file() and (tree / "pkg/zero.py").is_symlink()


# 6. Only what this tool provably made is removed.


def test_user_files_that_look_like_temporaries_are_kept(tmp_path: Path) -> None:
    live = os.getpid()  # a running process: its temporaries belong to a run in progress
    files = {
        "pkg/__init__.py": "",
        "pkg/mod.py": "X = 1\n",
        "pkg/notes.hatch-pyc-tmp": "mine\n",
        "pkg/.mod.pyc.hatch-pyc-tmp": "mine too\n",
        f"pkg/.mod.pyc.{live}-0123abcd.hatch-pyc-tmp": "another run's\n",
        "pkg/.other.txt.999999999-0123abcd.hatch-pyc-tmp": "not for a file a run writes\n",
    }
    tree = write_tree(tmp_path / "tree", files)
    dead = tree / "pkg/.mod.pyc.999999999-0123abcd.hatch-pyc-tmp"  # what a killed run left: removed
    dead.write_bytes(b"partial")
    # a killed run's temporary for a pyc this run does not write (its module was stripped since): removed all the same
    stripped = tree / "pkg/.other.pyc.999999999-0123abcd.hatch-pyc-tmp"
    stripped.write_bytes(b"partial")
    run_cli("compile", "--strip", str(tree), check=True)
    for rel, content in files.items():
        if rel.endswith(".py"):
            continue
        assert (tree / rel).read_text() == content, rel
    assert not dead.exists() and not stripped.exists()


@pytest.mark.parametrize("suffix", [".hatch-pyc-tmp", ".hatch-pyc-old"])
def test_a_directory_named_like_a_temporary_is_walked_like_any_other(tmp_path: Path, suffix: str) -> None:
    # Only a name of the form a run gives (hidden, with a pid and a token) is one of ours: the walk skips those, and
    # must not skip a user's directory that only ends the same way (its modules would silently keep their sources).
    files = {"pkg/__init__.py": "", f"pkg/data{suffix}/__init__.py": "", f"pkg/data{suffix}/mod.py": "X = 1\n"}
    tree = write_tree(tmp_path / "tree", files)
    run_cli("compile", "--strip", str(tree), check=True)
    assert (tree / f"pkg/data{suffix}/mod.pyc").is_file()
    assert not (tree / f"pkg/data{suffix}/mod.py").exists()


# 7. Outputs are checked before the tree changes.


@pytest.mark.parametrize("where", ["missing-dir/out.json", "a-directory"])
def test_an_output_that_cannot_be_written_fails_before_anything_changes(tmp_path: Path, where: str) -> None:
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    (tmp_path / "a-directory").mkdir()
    before = full_snapshot(tree)
    proc = run_cli("compile", "--strip", "--json", str(tmp_path / where), str(tree))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"hatch-pyc: error: {tmp_path / where}: ") and line.endswith("nothing was changed")
    assert full_snapshot(tree) == before
    good = tmp_path / "out.json"
    run_cli("compile", "--strip", "--json", str(good), str(tree), check=True)
    assert json.loads(good.read_text())["stripped"] == 2
    assert [p.name for p in tmp_path.iterdir() if "hatch-pyc" in p.name] == []


# 5. A removal that cannot be completed is not begun: the commit is undone.


def test_a_source_that_cannot_be_removed_undoes_the_whole_commit() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to own some sources while 'nobody' runs hatch-pyc")
    python = _unprivileged_python()
    if python is None:
        pytest.fail("no Python that 'nobody' can run (setpriv and /usr/bin/python3 are needed)")
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        shutil.copytree(Path(hatch_pyc.__file__).parent, base / "lib/hatch_pyc")
        for path in [base / "lib", *(base / "lib").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        tree = base / "tree"
        files = {f"pkg/m{i}.py": f"X = {i}\n" for i in range(8)}
        write_tree(tree, {"pkg/__init__.py": "", **files})
        for path in [tree, *tree.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        (tree / "pkg").chmod(0o1777)  # sticky: only a file's owner may rename or remove it
        for i in range(0, 8, 2):
            os.chown(tree / f"pkg/m{i}.py", 65534, 65534)  # these 'nobody' may remove; the others not
        before = full_snapshot(tree)
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(
            [*python, "-m", "hatch_pyc", "compile", "--strip", str(tree), "--python", python[-1]],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert "cannot remove it (Operation not permitted); the commit was undone, nothing was changed" in line
        assert full_snapshot(tree) == before


# 4. An interrupt lands before the commit or after it, never inside; a kill is put right by a re-run.


def _many_modules(root: Path, count: int = 6000) -> Path:
    write_tree(root, {"pkg/__init__.py": "", **{f"pkg/m{i}.py": f"X = {i}\n" for i in range(count)}})
    return root


def _stop_inside_commit(root: Path, removal: bool) -> subprocess.Popen[str]:
    """Start ``compile --strip`` and freeze it (SIGSTOP) once its commit (or its removal) has begun."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatch_pyc", "compile", "--strip", "--workers", "2", str(root)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CI": "true"},
    )
    probes = [root / f"pkg/m{i}.{'py' if removal else 'pyc'}" for i in range(0, 6000, 97)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(os.path.exists(p) != removal for p in probes):
            proc.send_signal(signal.SIGSTOP)
            return proc
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    raise AssertionError("the commit never began")


def _mid_commit(root: Path) -> tuple[int, int, int]:
    """(pycs in place, temporaries waiting, sources set aside) in a frozen run's tree."""
    names = os.listdir(root / "pkg")
    return (
        sum(n.endswith(".pyc") and not n.startswith(".") for n in names),
        sum(n.endswith(".hatch-pyc-tmp") for n in names),
        sum(".py." in n and n.endswith(".hatch-pyc-old") for n in names),
    )


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "removal"), [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["term", "int"])
def test_a_signal_inside_the_commit_is_held_until_it_is_complete(
    tmp_path: Path, sig: signal.Signals, removal: bool
) -> None:
    for attempt in range(3):
        root = _many_modules(tmp_path / f"t{attempt}")
        proc = _stop_inside_commit(root, removal)
        placed, waiting, aside = _mid_commit(root)
        inside = waiting > 0 if not removal else aside > 0
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
        if not inside:
            continue  # froze after the commit: try again with a fresh tree
        assert proc.returncode == 128 + sig, err
        what = "interrupted" if sig == signal.SIGINT else "terminated"
        assert f"{what} during the commit, which was completed first" in err
        assert "6001 sources removed" in err
        names = os.listdir(root / "pkg")
        assert not [n for n in names if n.endswith(".py") or "hatch-pyc" in n]
        assert sum(n.endswith(".pyc") for n in names) == 6001
        assert placed > 0 or removal
        return
    raise AssertionError("three runs finished their commit before they could be frozen inside it")


@pytest.mark.slow
@pytest.mark.once  # SIGKILL: the outcome is the order of file operations, one code on every CPython
def test_a_kill_inside_the_removal_is_put_right_by_a_rerun(tmp_path: Path) -> None:
    root = _many_modules(tmp_path / "t")
    sources = {p.name: p.read_bytes() for p in root.glob("pkg/*.py")}
    proc = _stop_inside_commit(root, removal=True)
    proc.kill()  # SIGKILL: nothing can be held or cleaned up
    proc.communicate()
    names = os.listdir(root / "pkg")
    aside = [n for n in names if n.endswith(".hatch-pyc-old")]
    present = [n for n in names if n.endswith(".py")]
    assert aside, "the kill landed outside the removal"
    assert len(aside) + len(present) == len(sources)  # every source is in the tree or set aside beside it

    proc2 = run_cli("compile", "--strip", str(root), check=True)
    assert f"{len(aside)} set-aside files restored" in proc2.stderr
    names = os.listdir(root / "pkg")
    assert not [n for n in names if "hatch-pyc" in n or n.endswith(".py")]
    assert len([n for n in names if n.endswith(".pyc")]) == len(sources)
    assert run_python(HERE, "import pkg.m4321; print(pkg.m4321.X)", path=root).stdout.strip() == "4321"


# 9. Templates that look like code keep their source in a sourceless tree.


@pytest.mark.parametrize("choice", ["keep-source", "compile"])
def test_a_py_outside_packages_keeps_its_source_unless_told(tmp_path: Path, choice: str) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/templates/generic/env.py": "# edit me: ${placeholder}\nTARGET = None\n",
        "pkg/templates/generic/script.py.mako": "${up}\n",
        "ns/sub/mod.py": "X = 1\n",  # a namespace package from the import root: a module
        "top.py": "T = 1\n",
    }
    tree = write_tree(tmp_path / "site", files)
    proc = run_cli("compile", "--strip", "--outside-packages", choice, str(tree), check=True)
    kept = choice == "keep-source"
    assert (tree / "pkg/templates/generic/env.py").exists() == kept
    assert (tree / "pkg/templates/generic/env.pyc").exists() == (not kept)
    assert ("1 kept as source (outside packages: templates or data)" in proc.stderr) == kept
    assert (
        (tree / "ns/sub/mod.pyc").is_file() and (tree / "top.pyc").is_file() and (tree / "pkg/__init__.pyc").is_file()
    )
    assert not (tree / "ns/sub/mod.py").exists()


# Found by an adversarial review: each once broke a promise above.


@pytest.mark.parametrize("where", ["pkg/mod.py", "pkg/new.py", "pkg/mod.pyc"])
def test_json_never_lands_on_what_the_run_compiles(tmp_path: Path, where: str) -> None:
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "def important():\n    return 42\n"})
    before = full_snapshot(tree)
    proc = run_cli("compile", "--strip", "--json", str(tree / where), str(tree))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"hatch-pyc: error: --json {tree / where}: a file this run compiles or writes, or a module in its tree"
    ]
    assert full_snapshot(tree) == before


def test_json_never_lands_on_a_cache_pyc_the_run_writes(tmp_path: Path) -> None:
    """``__pycache__`` is not walked (no module lives there), so only the plan's own outputs name this pyc."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "def important():\n    return 42\n"})
    where = tree / "pkg" / "__pycache__" / f"mod.{HERE.cache_tag}.pyc"
    before = full_snapshot(tree)
    proc = run_cli("compile", "--json", str(where), str(tree))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"hatch-pyc: error: --json {where}: a file this run compiles or writes, or a module in its tree"
    ]
    assert full_snapshot(tree) == before


def _site_with_record(tmp_path: Path) -> Path:
    site = tmp_path / "lib" / f"python{HERE.minor}" / "site-packages"
    files = {
        "ns/pkg/__init__.py": "X = 1\n",
        "ns/pkg/mod.py": "Y = 2\n",
        "tool/__init__.py": "",
        "tool/templates/generic/env.py": "TEMPLATE = 1\n",
    }
    write_tree(site, files)
    record = "".join(f"{rel},sha256=x,1\n" for rel in files) + "nspkg-1.0.dist-info/RECORD,,\n"
    write_tree(site, {"nspkg-1.0.dist-info/RECORD": record, "nspkg-1.0.dist-info/METADATA": "Name: nspkg\n"})
    return site


def test_a_path_below_site_packages_imports_from_it_and_updates_its_records(tmp_path: Path) -> None:
    site = _site_with_record(tmp_path)
    proc = run_cli("compile", "--strip", str(site / "ns/pkg"), check=True)
    assert "1 RECORD files updated" in proc.stderr
    rows = [line.split(",")[0] for line in (site / "nspkg-1.0.dist-info/RECORD").read_text().splitlines()]
    assert "ns/pkg/__init__.pyc" in rows and "ns/pkg/__init__.py" not in rows
    info = run_cli("inspect", "--json", str(site / "ns/pkg/mod.pyc"), check=True).stdout
    assert json.loads(info)["co_filename"] == "ns/pkg/mod.py"  # relative to the site-packages, not to ns/
    # a template directory named on its own is still a template of its package
    proc = run_cli("compile", "--strip", str(site / "tool/templates/generic"), check=True)
    assert (site / "tool/templates/generic/env.py").is_file() and not (site / "tool/templates/generic/env.pyc").exists()


def test_a_directory_where_a_stale_pyc_would_be_is_left_alone(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree",
        {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n", f"pkg/__pycache__/mod.{HERE.cache_tag}.pyc/keep": "mine\n"},
    )
    run_cli("compile", "--strip", str(tree), check=True)
    assert (tree / f"pkg/__pycache__/mod.{HERE.cache_tag}.pyc/keep").read_text() == "mine\n"
    assert not [p for p in tree.rglob("*") if "hatch-pyc" in p.name]
    assert (tree / "pkg/mod.pyc").is_file() and not (tree / "pkg/mod.py").exists()


def test_an_error_after_the_commit_says_the_run_completed(tmp_path: Path) -> None:
    tree = _many_modules(tmp_path / "t", count=2000)  # a listing larger than a pipe holds
    with subprocess.Popen(
        [sys.executable, "-m", "hatch_pyc", "compile", "-v", "--strip", str(tree)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # the reader went away (`| head -1`): the listing fails half-way
        err = proc.stderr.read()
        proc.wait(timeout=60)
    assert proc.returncode == 141  # as a tool killed by SIGPIPE; stderr still says the run completed
    assert err.startswith("hatch-pyc: stdout was closed after the run had completed (hatch-pyc: compiled 2001 of 2001")
    assert "nothing was changed" not in err
    assert not list(tree.rglob("*.py"))


def test_the_lib_directory_of_a_venv_wins_over_what_pyvenv_cfg_claims(tmp_path: Path) -> None:
    from hatch_pyc._plan import tree_owner

    venv = _venv(tmp_path / "venv", HERE)
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace(f"version = {HERE.minor}", "version = 3.99"))
    owner = tree_owner(_site(venv))
    assert owner is not None and owner.minor == HERE.minor


def test_a_worker_never_writes_through_a_linked_directory(tmp_path: Path) -> None:
    """The workers' own guard, for a link that appears after the plan checked the tree."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hatch_pyc_worker", Path(hatch_pyc.__file__).parent / "_worker.py")
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    outside = (tmp_path / "outside").resolve()
    outside.mkdir()
    (tmp_path / "__pycache__").symlink_to(outside, target_is_directory=True)
    with pytest.raises(worker._WriteError, match="a link or not a directory"):
        worker._write(str(tmp_path / "__pycache__" / "m.pyc.tmp"), b"data", 0o644)
    assert list(outside.iterdir()) == []
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    with pytest.raises(worker._NotRegular, match="FIFO"):
        worker._read_regular(str(fifo))
