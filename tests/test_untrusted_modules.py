"""Running and decoding untrusted code: what ``verify`` and ``inspect`` may cost, and what they may claim.

Each hostile fixture is built here from a dict of entries and run through the real CLI in a fresh
process: the exit code, a one-line message without a traceback, the wall time, and (for forks)
that no process the run started is left.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest
from conftest import run_cli, run_python, write_tree

from hatch_pyc import Interpreter, InvalidPyc, find_interpreter, read_code_info

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX: process groups and fork")


def _forks(pid_file: Path, *, escape: bool) -> str:
    """A module that starts a child sleeping for 900 s and returns once the child has written its pid.

    ``escape``: the child is a double fork into a session of its own (a daemon), out of the import's group.
    """
    start = "os.setsid()\n    if os.fork():\n        os._exit(0)\n    " if escape else ""
    return (
        "import os, time\n"
        f"PID = {str(pid_file)!r}\n"
        "if os.fork() == 0:\n"
        f"    {start}open(PID + '.tmp', 'w').write(str(os.getpid()))\n"
        "    os.rename(PID + '.tmp', PID)\n"
        "    time.sleep(900)\n"
        "    os._exit(0)\n"
        "while not os.path.exists(PID):\n"
        "    time.sleep(0.01)\n"
    )


def _alive(pid: int) -> bool:
    """Running, not merely a zombie nobody has reaped yet (orphans go to a pid 1 that may never reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: kill(0) is all there is
        return True


def _assert_gone(*pids: int) -> None:
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if _alive(p)]
    for pid in left:  # do not leave them behind for the next test either
        os.kill(pid, 9)
    assert not left, f"processes started by verify outlived it: {left}"


def _one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("escape", [False, True], ids=["fork", "setsid-double-fork"])
def test_verify_ends_the_children_a_module_starts_at_import(tmp_path: Path, escape: bool) -> None:
    pid_file = tmp_path / "child.pid"
    tree = write_tree(tmp_path / "t", {"pkg/__init__.py": "", "pkg/forks.py": _forks(pid_file, escape=escape)})
    started = time.monotonic()
    proc = run_cli("verify", str(tree))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert _one_line(proc.stderr).startswith("hatch-pyc: 2 modules imported sourceless")
    assert elapsed < 30  # not the child's 900 s
    _assert_gone(int(pid_file.read_text()))


def test_the_timeout_bounds_the_whole_process_group(tmp_path: Path) -> None:
    from hatch_pyc._verify import import_all

    pid_file = tmp_path / "child.pid"
    hangs = _forks(pid_file, escape=False) + "time.sleep(900)\n"
    tree = write_tree(tmp_path / "t", {"hangs.py": hangs, "dies.py": "import os\nos._exit(3)\n", "z.py": ""})
    started = time.monotonic()
    outcomes = import_all(find_interpreter(None), tree, ["hangs", "dies", "z"], workers=1, timeout=2)
    assert time.monotonic() - started < 15
    assert outcomes["hangs"].error == "timed out after 2 s"
    assert outcomes["dies"].error == "the interpreter exited (3)"
    assert outcomes["z"].ok
    _assert_gone(int(pid_file.read_text()))


def test_a_child_holding_the_results_pipe_does_not_hide_a_dying_import(tmp_path: Path) -> None:
    """The import process dies while its child keeps the pipe open: blamed at once, not timed out."""
    from hatch_pyc._verify import import_all

    pid_file = tmp_path / "child.pid"
    dies = _forks(pid_file, escape=False) + "os._exit(7)\n"
    tree = write_tree(tmp_path / "t", {"dies.py": dies, "z.py": ""})
    started = time.monotonic()
    outcomes = import_all(find_interpreter(None), tree, ["dies", "z"], workers=1, timeout=20)
    assert time.monotonic() - started < 10
    assert outcomes["dies"].error == "the interpreter exited (7)"
    assert outcomes["z"].ok
    _assert_gone(int(pid_file.read_text()))


STRIPPED = {
    "pkg/__init__.py": "",
    "pkg/fine.py": "X = 1\n",
    "pkg/needs_source.py": "import inspect\nSRC = inspect.getsource(inspect.getmodule(lambda: 0))\n",
}


def test_verify_of_a_stripped_tree_does_not_claim_failures_happen_with_sources(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", STRIPPED)
    run_cli("compile", "--strip", str(tree), check=True)
    assert not (tree / "pkg/needs_source.py").exists()
    proc = run_cli("verify", str(tree), "--json", str(tmp_path / "v.json"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    fail = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert fail == [
        "FAIL pkg.needs_source: fails sourceless, and there is no source to compare with "
        "(pkg/needs_source.pyc has no .py): OSError: could not get source code"
    ]
    assert "fail with and without sources" not in proc.stdout
    assert _one_line(proc.stderr).endswith(
        "2 ok, 0 fail only without sources, 0 fail either way, 1 fail with no source to compare with"
    )
    import json

    report = json.loads((tmp_path / "v.json").read_text())
    assert report["both"] == [] and [m["module"] for m in report["no_source"]] == ["pkg.needs_source"]


def test_verify_with_sources_still_tells_the_two_apart(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", {**STRIPPED, "pkg/broken.py": "raise RuntimeError('broken')\n"})
    proc = run_cli("verify", str(tree))
    assert proc.returncode == 1
    assert "FAIL pkg.needs_source: imports from source but not sourceless" in proc.stdout
    assert "     pkg.broken: RuntimeError: broken" in proc.stdout
    assert "no source to compare with" not in proc.stdout + proc.stderr


def _hostile_pyc(magic: bytes, body: bytes) -> bytes:
    return magic + b"\0" * 12 + body


@pytest.mark.parametrize(
    ("kind", "count"),
    [(b"(", 2**28), (b"(", 2**31 - 1), (b"[", 2**31 - 1), (b"l", 2**31 - 1)],
    ids=["tuple-2^28", "tuple-2^31", "list-2^31", "long-2^31"],
)
def test_inspect_bounds_what_decoding_a_pyc_costs(tmp_path: Path, target: Interpreter, kind: bytes, count: int) -> None:
    pyc = tmp_path / "hostile.pyc"
    pyc.write_bytes(_hostile_pyc(target.magic, kind + struct.pack("<I", count)))
    assert pyc.stat().st_size == 21
    started = time.monotonic()
    proc = run_cli("inspect", "--dis", str(pyc))
    assert time.monotonic() - started < 20
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = _one_line(proc.stderr)
    assert line.startswith(f"hatch-pyc: error: {pyc}: decoding it needs over 256 MiB, more than a pyc of 21 bytes")


def test_decoding_is_bounded_in_time_too(tmp_path: Path) -> None:
    """What memory does not bound, time does (shared references make ``dis`` and interning repeat work)."""
    import importlib.util
    import marshal

    pyc = tmp_path / "slow.pyc"
    pyc.write_bytes(_hostile_pyc(importlib.util.MAGIC_NUMBER, marshal.dumps(compile("X = 1", "m.py", "exec"))))
    assert read_code_info(pyc) is not None
    with pytest.raises(InvalidPyc, match=r"slow\.pyc: decoding it took more than 0 s; refused"):
        read_code_info(pyc, timeout=0.001)


# Found by an adversarial review.


def test_a_forked_child_that_goes_on_importing_does_not_confuse_verify(tmp_path: Path) -> None:
    files = {f"pkg/m{i}.py": "X = 1\n" for i in range(12)}
    files["pkg/__init__.py"] = ""
    files["pkg/a.py"] = "import os, time\nif os.fork() == 0:\n    time.sleep(0.3)\n"  # the child returns and imports on
    files["pkg/b.py"] = "import time\ntime.sleep(1.0)\n"
    tree = write_tree(tmp_path / "t", files)
    proc = run_cli("verify", "--workers", "1", str(tree))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_tree_module_named_like_the_harness_needs_does_not_replace_it(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", {"json.py": "raise SystemExit('shadowed')\n", "other.py": "X = 1\n"})
    proc = run_cli("verify", str(tree), "--json", str(tmp_path / "v.json"))
    assert "exited" not in proc.stderr + proc.stdout, proc.stdout
    import json

    report = json.loads((tmp_path / "v.json").read_text())
    # Before, the tree's json.py replaced the harness's own and every module "exited (1)".
    assert proc.returncode == 0 and report["both"] == [] and report["sourceless_only"] == []


def test_inspect_prints_hostile_names_escaped(tmp_path: Path, target: Interpreter) -> None:
    """Names in a pyc are untrusted text: escape sequences and lone surrogates are shown escaped,
    never sent to the terminal and never a traceback (a surrogate cannot be encoded to UTF-8)."""
    pyc = tmp_path / "hostile.pyc"
    run_python(  # compiled by the target: its own magic number and marshal format
        target,
        "import importlib.util, marshal, sys\n"
        "code = compile('X = 1', '\\x1b[31mred\\udcff.py', 'exec').replace(co_name='\\x1b[2J\\udcfe')\n"
        f"open({str(pyc)!r}, 'wb').write(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))\n",
    )
    for extra in ((), ("--dis",)):
        proc = run_cli("inspect", *extra, str(pyc))
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "Traceback" not in proc.stderr
        assert "co_filename        \\x1b[31mred\\udcff.py" in proc.stdout
        assert "co_name            \\x1b[2J\\udcfe" in proc.stdout
    shown = json.loads(run_cli("inspect", "--json", str(pyc), check=True).stdout)
    assert shown["co_name"] == "\x1b[2J\udcfe"  # JSON carries the name itself, escaped by JSON's own rules


def test_inspect_of_a_fifo_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pyc"
    os.mkfifo(fifo)
    started = time.monotonic()
    proc = run_cli("inspect", str(fifo))
    assert time.monotonic() - started < 20
    assert proc.returncode == 2
    assert _one_line(proc.stderr) == f"hatch-pyc: error: {fifo}: not a regular file"


def test_verify_prints_an_untrusted_modules_error_escaped_on_one_line(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": "", "pkg/bad.py": "raise RuntimeError('\\x1b[2Jcleared\\nFAKE ok line')\n"}
    tree = write_tree(tmp_path / "t", files)
    proc = run_cli("verify", str(tree))
    assert proc.returncode == 0, proc.stderr  # fails with and without sources: not caused by compiling
    assert "\x1b" not in proc.stdout
    assert "     pkg.bad: RuntimeError: \\x1b[2Jcleared\\x0aFAKE ok line" in proc.stdout
    assert not any(line.startswith("FAKE") for line in proc.stdout.splitlines())


def test_compile_prints_hostile_file_names_escaped(tmp_path: Path) -> None:
    """--dry-run and -v name every file; a name with an escape sequence, a newline or bytes that are not
    UTF-8 is printed escaped on one line, and never makes the run fail after it compiled the tree."""
    tree = write_tree(tmp_path / "t", {"pkg/__init__.py": ""})
    (tree / "pkg" / "e\x1b[2Jvil\nFAKE.py").write_text("X = 1\n")
    os.rename(tree / "pkg" / "__init__.py", os.fsencode(tree / "pkg") + b"/caf\xff.py")
    for flags in (("--dry-run",), ("-v",)):
        proc = run_cli("compile", *flags, str(tree), env={"PYTHONIOENCODING": "utf-8"})
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
        assert not any(line.startswith("FAKE") for line in proc.stdout.splitlines())
        assert "e\\x1b[2Jvil\\x0aFAKE.py" in proc.stdout and "caf\\udcff.py" in proc.stdout


def test_inspect_of_a_directory_names_the_path(tmp_path: Path) -> None:
    proc = run_cli("inspect", str(tmp_path))
    assert proc.returncode == 2
    assert _one_line(proc.stderr) == f"hatch-pyc: error: {tmp_path}: not a regular file"


def test_bidirectional_controls_and_line_separators_are_escaped(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": "", "pkg/bad.py": "raise RuntimeError('a\\u2028FAKE ok\\u202egnp.exe')\n"}
    proc = run_cli("verify", str(write_tree(tmp_path / "t", files)))
    assert "\u2028" not in proc.stdout and "\u202e" not in proc.stdout
    assert "RuntimeError: a\\u2028FAKE ok\\u202egnp.exe" in proc.stdout


def test_output_an_ascii_terminal_cannot_hold_is_escaped_not_a_crash(tmp_path: Path, target: Interpreter) -> None:
    tree = write_tree(tmp_path / "t", {"pkg/__init__.py": "", "pkg/\u00f1.py": "X = 1\n"})
    proc = run_cli("compile", "-v", "--python", target.minor, str(tree), env={"PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "pkg/\\xf1.py" in proc.stdout
