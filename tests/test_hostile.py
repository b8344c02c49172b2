"""Broken and hostile input: a clear one-line error, a non-zero exit, nothing written or deleted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli, snapshot, write_tree
from test_wheel import make_wheel


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("hatch-pyc: error:")]
    assert lines, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_symlink_loops_and_dangling_links(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", {"pkg/__init__.py": "", "pkg/ok.py": "X = 1\n"})
    (tree / "pkg" / "loop.py").symlink_to("loop.py")
    (tree / "pkg" / "sub").symlink_to(tree / "pkg")  # a directory loop: never followed
    before = snapshot(tree)
    line = _one_error_line(run_cli("compile", "--strip", str(tree)), 2)
    assert f"{tree / 'pkg/loop.py'}: cannot read it" in line
    assert snapshot(tree) == before
    (tree / "pkg" / "loop.py").unlink()
    (tree / "pkg" / "dangling.py").symlink_to(tmp_path / "nowhere.py")
    line = _one_error_line(run_cli("compile", str(tree)), 2)
    assert "dangling.py: cannot read it" in line
    (tree / "pkg" / "dangling.py").unlink()
    run_cli("compile", "--strip", str(tree), check=True)  # the directory loop is not followed
    assert sorted(p.name for p in (tree / "pkg").iterdir()) == ["__init__.pyc", "ok.pyc", "sub"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real full disk (needs root, as CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs on CI: {proc.stderr.strip()}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        (mount / "filler").unlink(missing_ok=True)
        subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill the disk, then give back ``leave`` bytes."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))


def test_full_disk_compile_changes_nothing(small_disk: Path) -> None:
    body = "".join(f"def f{i}(x):\n    return [x, {i}, '{'y' * 40}']\n" for i in range(300))
    tree = write_tree(small_disk / "t", {f"pkg/m{i}.py": body for i in range(12)} | {"pkg/__init__.py": ""})
    fill(small_disk, 16 << 10)
    before = snapshot(tree)
    line = _one_error_line(run_cli("compile", "--strip", str(tree)), 2)
    assert "No space left on device" in line and "nothing was changed" in line
    assert snapshot(tree) == before
    assert not [p for p in tree.rglob("*") if p.name.endswith(".hatch-pyc-tmp")]


def test_full_disk_wheel_leaves_no_partial_file(small_disk: Path, tmp_path: Path) -> None:
    big = "\n".join(f"X{i} = {'[' + ', '.join(map(str, range(60))) + ']'}" for i in range(400)) + "\n"
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", **{f"demo/m{i}.py": big for i in range(8)}})
    out = small_disk / "out"
    out.mkdir()
    fill(small_disk, 16 << 10)
    line = _one_error_line(run_cli("wheel", str(wheel), "-o", str(out)), 2)
    assert "No space left on device" in line
    assert not list(out.iterdir())


def _kill_when_temp_appears(cmd: list[str], where: Path) -> Path:
    """Run ``cmd``, SIGKILL it (and its children) as soon as its temporary appears in ``where``, return that
    temporary. The test fails unless the kill landed mid-write: the temporary seen, the command still running."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temporary = None
    deadline = time.monotonic() + 60
    try:
        while temporary is None and time.monotonic() < deadline:
            temporary = next((p for p in where.rglob("*") if p.name.endswith(".hatch-pyc-tmp")), None)
            if temporary is None:
                assert proc.poll() is None, "finished before it could be killed"
                time.sleep(0.002)
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone: the assertions below say why
            os.killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()
    assert temporary is not None, f"no temporary appeared in {where} within 60 s: the kill was not mid-write"
    assert returncode == -signal.SIGKILL, f"the command exited ({returncode}) before the kill landed"
    return temporary


def _big_wheel(tmp_path: Path) -> Path:
    body = "".join(f"def f{i}(x):\n    '''doc'''\n    return x * {i}\n" for i in range(400))
    files = {f"demo/m{i}.py": body for i in range(400)}
    files["demo/__init__.py"] = ""
    files["demo/blob.bin"] = os.urandom(30 << 20)
    return make_wheel(tmp_path, files)


@pytest.mark.slow
@pytest.mark.once  # SIGKILL: the outcome is the order of file operations, one code on every CPython
@pytest.mark.parametrize("command", ["wheel", "layer"])
def test_sigkill_mid_write_leaves_no_partial_output(tmp_path: Path, command: str) -> None:
    wheel = _big_wheel(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    if command == "wheel":
        cmd = [sys.executable, "-m", "hatch_pyc", "wheel", str(wheel), "-o", str(out)]
        final = out / f"demo-1.0-cp{sys.version_info[0]}{sys.version_info[1]}-none-any.whl"
    else:
        minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
        final = out / "layer.tar.gz"
        cmd = [
            sys.executable,
            "-m",
            "hatch_pyc",
            "layer",
            str(wheel),
            "--python",
            minor,
            "--prefix",
            f"/usr/lib/python{minor}/site-packages",
            "-o",
            str(final),
        ]
    temporary = _kill_when_temp_appears(cmd, out)
    assert not final.exists()
    assert temporary.exists()  # SIGKILL cannot be caught: the half-written temporary is still there
    assert wheel.exists()
    # A rerun produces the whole output.
    subprocess.run(cmd, check=True, capture_output=True)
    assert final.exists()
    assert sorted(p.name for p in out.iterdir()) == [final.name]  # and it removes what the killed run left


# Every argument that names a file or a directory, by command (found by an adversarial review: `compile --strip
# "$SITE"` with SITE unset stripped the current directory).
EMPTY_PATHS = [
    ("compile", "--strip", ""),
    ("compile", "--json", "", "."),
    ("compile", "--cache-dir", "", "."),
    ("wheel", "-o", "out", ""),
    ("wheel", "-o", "", "x.whl"),
    ("layer", "--python", sys.executable, "-o", "", "x.whl"),
    ("report", ""),
    ("images", "--json", "", "a", "b"),
    ("verify", ""),
    ("inspect", ""),
    ("cache", "--cache-dir", ""),
]


@pytest.mark.parametrize("args", EMPTY_PATHS, ids=[" ".join(a) or "''" for a in EMPTY_PATHS])
def test_an_empty_path_is_refused_not_taken_for_the_current_directory(tmp_path: Path, args: tuple[str, ...]) -> None:
    write_tree(tmp_path, {"important.py": "Y = 1\n", "pkg/__init__.py": "", "pkg/m.py": "X = 1\n"})
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "CI": "true", "HATCH_PYC_CACHE_DIR": str(tmp_path / "cache")},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "an empty path names nothing" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert snapshot(tmp_path) == before


def test_the_api_refuses_an_empty_path_and_a_file_named_as_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hatch_pyc import InvalidInput, InvalidOptions, PycOptions, compile_tree

    write_tree(tmp_path, {"important.py": "Y = 1\n"})
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InvalidOptions, match="an empty path"):
        compile_tree([""], PycOptions(strip=True, cache=False))
    with pytest.raises(InvalidInput, match=r"important\.py/: not a directory"):
        compile_tree(["important.py/"], PycOptions(strip=True, cache=False))
    assert snapshot(tmp_path) == before
    line = _one_error_line(run_cli("compile", "--strip", str(tmp_path / "important.py") + "/"), 2)
    assert line.endswith("important.py/: not a directory"), line
    assert snapshot(tmp_path) == before


# (command line, with IN for the input wheel, TREE for a package tree, OUT for an output directory)
OVER_INPUTS = {
    "layer -o": ["layer", "IN", "--python", "PY", "--prefix", "PREFIX", "-o", "IN"],
    "layer --oci-layout": [
        "layer",
        "IN",
        "--python",
        "PY",
        "--prefix",
        "PREFIX",
        "-o",
        "OUT/l.tar.gz",
        "--oci-layout",
        "IN",
    ],
    "verify --json": ["verify", "IN", "--json", "IN"],
    "report --json": ["report", "IN", "--sizes-only", "--json", "IN"],
    "report --markdown": ["report", "IN", "--sizes-only", "--markdown", "IN"],
    "report --json over a module of the tree": ["report", "TREE", "--sizes-only", "--json", "TREE/pkg/m.py"],
    "verify --json over a pyc of the tree": ["verify", "TREE", "--json", "TREE/pkg/__pycache__/m.cpython-3.pyc"],
    "wheel --json": ["wheel", "IN", "-o", "OUT", "--json", "IN"],
    "wheel --json at its output": ["wheel", "IN", "-o", "OUT", "--json", "OUT/demo-1.0-TAG-none-any.whl"],
    "report --json and --html": ["report", "IN", "--sizes-only", "--json", "OUT/r", "--html", "OUT/r"],
}


@pytest.mark.parametrize("name", list(OVER_INPUTS))
def test_an_output_over_an_input_or_another_output_is_refused(tmp_path: Path, name: str) -> None:
    """Found by an adversarial review: these replaced the input wheel (or the output wheel) with a layer or a JSON
    text, and exited 0."""
    (tmp_path / "in").mkdir()
    wheel = make_wheel(tmp_path / "in", {"demo/__init__.py": "X = 1\n"})
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/m.py": "M = 1\n"})
    (tree / "pkg/__pycache__").mkdir()
    (tmp_path / "out").mkdir()
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    swap = {"IN": str(wheel), "PY": minor, "PREFIX": f"/usr/local/lib/python{minor}/site-packages"}

    def filled(arg: str) -> str:
        text = swap.get(arg, arg).replace("TREE", str(tree)).replace("OUT", str(tmp_path / "out")).replace("TAG", tag)
        return text.replace("cpython-3.pyc", f"{sys.implementation.cache_tag}.pyc")

    args = [filled(arg) for arg in OVER_INPUTS[name]]
    before = snapshot(tmp_path)
    line = _one_error_line(run_cli(*args, "-q"), 2)
    assert "write elsewhere" in line or "its own path" in line or "is where --json" in line, line
    assert snapshot(tmp_path) == before
