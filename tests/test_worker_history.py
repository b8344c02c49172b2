"""A module's pyc does not depend on what its worker compiled before it.

Whether a one-character string is interned is process-wide before CPython 3.13 (they are singletons) and marshal
writes it. A worker compiles many modules: one whose compile() interns such a string (3.10 interns "{" and "}" when
it turns annotations into strings under ``from __future__ import annotations``; an identifier ``é`` interns "é"),
or the worker's own JSON answers (3.10 and 3.11's C encoder interns "[", "]", "{" and "}"), changed how every later
module with that string among its constants was written: the same tree gave other bytes with ``--workers 1`` than
with ``--workers 2``, and other bytes than CPython compiling the module in a process of its own. Found by an
adversarial review of the streamed compile (the pyc of charset_normalizer/constant.py differed between runs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_tree
from test_wheel import make_wheel

from hatch_pyc import Interpreter

PAD = '"""' + "Padding, so that this module is compiled before the small ones of its batch. " * 30 + '"""\n'
TREE = {
    # More than a batch (128 KB) on its own: the worker answers it (in JSON) before the next batch.
    "big/__init__.py": "".join(f"V{i} = {i!r}\n" for i in range(14000)),
    "ann/__init__.py": PAD
    + "from __future__ import annotations\n\n\ndef f(x: int) -> dict[str, int]:\n    return {'x': x}\n",
    "accent/__init__.py": PAD + "é = 1\n",
    "uses/__init__.py": 'X = "{"\nY = frozenset({"{", "}", "[", "]", "-", "a"})\nZ = [c for c in Y]\nM = "é"\n',
    "plain/__init__.py": 'W = frozenset({"-", "+", "a"})\n',
}


def _pycs(root: Path) -> dict[str, bytes]:
    """Each pyc's code (after its header, which holds the source's mtime)."""
    return {str(p.relative_to(root)): p.read_bytes()[16:] for p in sorted(root.rglob("*.pyc"))}


# How a worker compiles a module it may not: in a child of the copy of itself it made as it started (os.fork),
# or, where it cannot fork (or the copy is gone), by starting afresh (os.execv) and being asked again.
HOW = {"fork": {}, "restart": {"_HATCH_PYC_WORKER_NO_FORK": "1"}}


@pytest.mark.parametrize("how", list(HOW))
@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
def test_a_modules_pyc_is_the_same_whatever_its_worker_compiled_before(
    target: Interpreter, tmp_path: Path, cache: bool, how: str
) -> None:
    """With the cache too: the worker loads the cache's pack code before it compiles anything (3.10 interned "{"
    and "}" there while that file said ``from __future__ import annotations``)."""
    source = write_tree(tmp_path / "src", TREE)

    def compiled(tree: Path, workers: str, cache_dir: Path) -> dict[str, bytes]:
        caching = ["--cache-dir", str(cache_dir)] if cache else ["--no-cache"]
        report = tree.parent / f"{tree.name}.json"
        run_cli(
            "compile",
            "--python",
            target.executable,
            *caching,
            "--workers",
            workers,
            "--json",
            str(report),
            str(tree),
            check=True,
            env=HOW[how],
        )
        if cache and not cache_dir.name.startswith("warm"):  # each module looked up once, though some were asked again
            counts = json.loads(report.read_text())
            assert (counts["cache_hits"], counts["cache_misses"]) == (0, len(_pycs(tree))), counts
        return _pycs(tree)

    alone = {}
    for package, text in TREE.items():
        tree = write_tree(tmp_path / "alone" / package.split("/")[0], {package: text})
        alone.update(compiled(tree, "1", tmp_path / "caches" / tree.name))
    assert len(alone) == len(TREE)
    runs = {}
    for workers in ("1", "2"):
        runs[workers] = compiled(shutil.copytree(source, tmp_path / f"w{workers}"), workers, tmp_path / f"c{workers}")
    if cache:  # and a warm run, every module from the cache
        shutil.copytree(tmp_path / "c2", tmp_path / "warm-cache")
        runs["warm"] = compiled(shutil.copytree(source, tmp_path / "warm"), "1", tmp_path / "warm-cache")
    for name, pycs in runs.items():
        assert pycs == alone, (name, sorted(n for n in alone if pycs.get(n) != alone[n]))


def test_a_wheels_pycs_are_the_same_whatever_their_workers_compiled_before(target: Interpreter, tmp_path: Path) -> None:
    """The same in a sourceless wheel, whose pycs the workers send back rather than write."""
    files = {name.replace("/__init__.py", ".py"): text for name, text in TREE.items()}
    (tmp_path / "in").mkdir()
    wheel = make_wheel(tmp_path / "in", files)
    wheels = []
    for workers, how in (("1", "fork"), ("2", "fork"), ("1", "restart")):
        out = tmp_path / f"w{workers}-{how}"
        run_cli(
            "wheel",
            "--python",
            target.executable,
            "--no-cache",
            "--workers",
            workers,
            "-o",
            str(out),
            str(wheel),
            check=True,
            env=HOW[how],
        )
        (made,) = out.glob("*.whl")
        wheels.append(made.read_bytes())
    assert wheels[0] == wheels[1] == wheels[2]


def test_what_a_module_that_fails_to_compile_interned_is_seen_too(target: Interpreter, tmp_path: Path) -> None:
    """Found by an adversarial review: the parser interns ``é`` before the SyntaxError, and the next module's "é"
    was written marked interned (and stored so in the cache)."""
    files = {"a/bad.py": "é = 1\nx = (\n", "a/uses.py": 'M = "é"\nS = frozenset({"é", "-", "a"})\n'}
    tree = write_tree(tmp_path / "t", files)
    alone = write_tree(tmp_path / "alone", {"a/uses.py": files["a/uses.py"]})
    for root in (tree, alone):
        run_cli(
            "compile",
            "--python",
            target.executable,
            "--no-cache",
            "--workers",
            "1",
            "--on-error",
            "keep-source",
            str(root),
            check=True,
        )
    assert _pycs(tree) == _pycs(alone)


# Each even module interns "{", "}" (3.10: annotations turned into strings) and "é" (an identifier) and holds them;
# after each comes one that holds them without interning them, which a worker that had compiled the one before
# would write marked interned.
_INTERNS = "from __future__ import annotations\n\n\ndef f(x: int) -> dict[str, int]:\n    return {'x': x}\n\n"
_HOLDS = 'B = "{"\nC = "}"\nM = "\u00e9"\nS = frozenset({"{", "\u00e9", "-", "a"})\n'
TEXTS = {f"m{i:02}": (_INTERNS + "\u00e9 = 1\n" if i % 2 == 0 else "") + _HOLDS + f"N = {i}\n" for i in range(12)}


def _ask_one_worker(
    target: Interpreter, tmp_path: Path, kill_the_copy: bool, copies: bool = True
) -> list[dict[str, object]]:
    """TEXTS compiled at -O0 and -O2 by one worker in one batch, into ``tmp_path/out/<name>.<level>.pyc``: the
    answers of its first round. ``kill_the_copy``: the copy the worker made of itself is killed first; the rest of
    the answers are asked for again, as the pool does. ``copies``: whether the worker can make its copy."""
    from hatch_pyc._pool import _Worker

    tree = write_tree(tmp_path / "t", {f"{name}.py": text for name, text in TEXTS.items()})
    (tmp_path / "out").mkdir()
    batch: list[dict[str, object]] = [
        {
            "src": str(tree / f"{name}.py"),
            "dfile": f"{name}.py",
            "mode": "unchecked-hash",
            "outs": [[level, str(tmp_path / "out" / f"{name}.{level}.pyc")] for level in (0, 2)],
            "verify": False,
        }
        for name in TEXTS
    ]
    worker = _Worker(target)
    try:
        worker._ask([])  # the worker has started, and made its copy where it makes one
        children = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()
        # The copy is made before 3.13 only: from 3.13 on every one-character string is interned at start-up.
        assert len(children) == (1 if target.version < (3, 13) and copies else 0), children
        if kill_the_copy and children:
            os.kill(int(children[0]), signal.SIGKILL)
        first = worker._ask(batch)
        answers = list(first)
        again = [i for i, answer in enumerate(answers) if answer.get("again")]
        while again:
            for i, answer in zip(again, worker._ask([batch[i] for i in again]), strict=True):
                answers[i] = answer
            again = [i for i in again if answers[i].get("again")]
    finally:
        worker.end()
        worker.wait()
    assert all("ok" in answer for answer in answers), answers
    return first


def _compiled_alone(target: Interpreter, tmp_path: Path) -> dict[str, bytes]:
    """Each of TEXTS compiled on its own at -O0 and -O2, by name and level."""
    alone = {}
    for name, text in TEXTS.items():
        root = write_tree(tmp_path / "alone" / name, {f"{name}.py": text})
        run_cli(
            "compile",
            "--python",
            target.executable,
            "--no-cache",
            "-O",
            "0",
            "-O",
            "2",
            "--invalidation-mode",
            "unchecked-hash",
            str(root),
            check=True,
        )
        for level in (0, 2):
            pyc = root / "__pycache__" / f"{name}.{target.cache_tag}{'.opt-2' if level else ''}.pyc"
            alone[f"{name}.{level}"] = pyc.read_bytes()
    return alone


def test_modules_that_intern_and_hold_such_a_string_are_compiled_without_a_restart(
    target: Interpreter, tmp_path: Path
) -> None:
    """A tree where every module both interns such a string and holds it made a worker start afresh (os.execv,
    30-50 ms) for each module: 300 such modules took 9.5 s instead of 0.1 s on 3.10. Each is now compiled in a
    child of the copy the worker made of itself as it started: one batch gets every answer at once, with no
    "again", and each pyc is what the module compiled alone gives."""
    first = _ask_one_worker(target, tmp_path, kill_the_copy=False)
    assert not any(answer.get("again") for answer in first), first
    made = {p.name.removesuffix(".pyc"): p.read_bytes() for p in (tmp_path / "out").iterdir()}
    alone = _compiled_alone(target, tmp_path)
    assert made == alone, sorted(n for n in alone if made.get(n) != alone[n])


def test_a_worker_whose_copy_is_gone_starts_afresh(target: Interpreter, tmp_path: Path) -> None:
    """The copy killed (by an OOM killer, by hand): the worker answers "again" and starts afresh, as it did before
    it had a copy, and each pyc is still what the module compiled alone gives (3.13+: no copy, nothing asked
    again)."""
    first = _ask_one_worker(target, tmp_path, kill_the_copy=True)
    assert any(answer.get("again") for answer in first) == (target.version < (3, 13)), first
    made = {p.name.removesuffix(".pyc"): p.read_bytes() for p in (tmp_path / "out").iterdir()}
    alone = _compiled_alone(target, tmp_path)
    assert made == alone, sorted(n for n in alone if made.get(n) != alone[n])


def test_a_worker_that_cannot_fork_starts_afresh_instead(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial review: where a pids limit makes fork() fail (EAGAIN), every worker died making its
    copy, and the whole run failed. It now goes on without one, starting afresh where it would have asked it."""
    from hatch_pyc import _pool

    refuse = "import os\ndef _refused():\n    raise BlockingIOError(11, 'Resource temporarily unavailable')\n"
    monkeypatch.setattr(_pool, "BOOT", refuse + "os.fork = _refused\n" + _pool.BOOT)
    first = _ask_one_worker(target, tmp_path, kill_the_copy=False, copies=False)
    assert any(answer.get("again") for answer in first) == (target.version < (3, 13)), first
    made = {p.name.removesuffix(".pyc"): p.read_bytes() for p in (tmp_path / "out").iterdir()}
    alone = _compiled_alone(target, tmp_path)
    assert made == alone, sorted(n for n in alone if made.get(n) != alone[n])


def test_the_copy_and_its_child_end_with_the_worker(target: Interpreter, tmp_path: Path) -> None:
    """Found by an adversarial review: a worker killed (Ctrl-C, the OOM killer) left its copy and the child compiling
    a large module running on for seconds after the run had ended. The copy now kills its child and ends as soon as
    the worker is gone."""
    from hatch_pyc._pool import _Worker

    big = "\n".join(f"x{i} = ('\u00e9', {i}, [{i}, {i} + 1])" for i in range(150_000)) + "\n"
    tree = write_tree(tmp_path / "t", {"a.py": "\u00e9 = 1\n", "big.py": big})
    batch = [
        {
            "src": str(tree / name),
            "dfile": name,
            "mode": "unchecked-hash",
            "outs": [[0, str(tmp_path / name)]],
            "verify": False,
        }
        for name in ("a.py", "big.py")
    ]
    worker = _Worker(target)
    try:
        worker._ask([])
        copies = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()
        if target.version >= (3, 13):  # no copy to end: every one-character string is interned at start-up
            assert copies == []
            return
        (copy,) = copies
        assert worker.proc.stdin is not None
        worker.proc.stdin.write(json.dumps(batch).encode() + b"\n")
        worker.proc.stdin.flush()
        deadline = time.monotonic() + 60
        children: list[str] = []
        while not children and time.monotonic() < deadline:  # the copy's child compiling big.py
            children = Path(f"/proc/{copy}/task/{copy}/children").read_text().split()
            time.sleep(0.01)
        assert children, "big.py never reached the copy"
        worker.proc.kill()
        worker.proc.wait()
    finally:
        worker.end(kill=True)
        worker.wait(kill=True)

    def running(pid: str) -> bool:
        try:
            return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False

    deadline = time.monotonic() + 1  # the child compiles big.py for 2.5 s: a copy that waited for it is caught here
    while (running(copy) or running(children[0])) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not running(copy) and not running(children[0])
