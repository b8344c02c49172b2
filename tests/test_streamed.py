"""Compiling while the tree is walked (hatch_pyc._streamed) keeps every promise of a run planned first.

The workers get batches while the walk goes on, so each test that refuses or interrupts a run first waits until a
worker has written something under the run's temporary names: what is removed is then what was really written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import write_tree
from test_safety import full_snapshot

import hatch_pyc._streamed as streamed
from hatch_pyc import (
    CompileFailed,
    CompilePlan,
    InvalidInput,
    InvalidOptions,
    PlannedSource,
    PycOptions,
    compile_plan,
    compile_tree,
    plan_compile,
)
from hatch_pyc._commit import TMP_SUFFIX, old_name
from hatch_pyc._pool import BATCH_BYTES

# Three packages of 20 modules of about 8 KB: several batches, handed out while the walk goes on.
MODULE = "".join(f"def f{i}(x):\n    '''Doc {i}.'''\n    assert x, {i}\n    return x + {i}\n\n" for i in range(160))


def _tree(root: Path) -> Path:
    files = {f"pkg{p}/__init__.py": "" for p in "abc"}
    files.update({f"pkg{p}/m{i:02d}.py": MODULE for p in "abc" for i in range(20)})
    tree = write_tree(root, files)
    for source in tree.rglob(
        "*.py"
    ):  # one mtime for every tree: timestamp pycs hold it (two trees may straddle a second)
        os.utime(source, (1_700_000_000, 1_700_000_000))
    assert sum(f.stat().st_size for f in tree.rglob("*.py")) > 3 * BATCH_BYTES
    (tree / "pkgb/__pycache__").mkdir()  # one package compiled before: its pycs go beside the old ones
    return tree


def _temporaries(tree: Path) -> list[Path]:
    return [p for p in tree.rglob("*") if p.name.endswith(TMP_SUFFIX) or TMP_SUFFIX in p.parent.name]


def _wait_for_a_worker(tree: Path) -> None:
    """Until a worker has written a pyc under a temporary name (a staged __pycache__, or one beside a pyc)."""
    deadline = time.monotonic() + 60
    while not any(p.is_file() for p in _temporaries(tree)):
        assert time.monotonic() < deadline, "no worker wrote anything"
        time.sleep(0.01)


@pytest.fixture
def handed_out(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of sources the walk had planned at each batch handed to the workers (it records only)."""
    seen: list[int] = []
    real = streamed._Streamer.hand_out

    def hand_out(self: streamed._Streamer) -> None:
        if self.run is not None and self.batch:
            seen.append(len(self.run.plan.sources))
        real(self)

    monkeypatch.setattr(streamed._Streamer, "hand_out", hand_out)
    yield seen


@pytest.mark.parametrize("strip", [False, True], ids=["in-place", "strip"])
def test_a_streamed_run_writes_what_a_run_planned_first_writes(
    tmp_path: Path, handed_out: list[int], strip: bool
) -> None:
    planned_first = _tree(tmp_path / "a")
    as_walked = _tree(tmp_path / "b")
    options = PycOptions(levels=(0,) if strip else (0, 1, 2), strip=strip, cache=False)
    first = compile_plan(plan_compile([planned_first], options))
    second = compile_tree([as_walked], options)
    total = len(second.plan.sources)
    assert total == len(first.plan.sources) == 63
    assert handed_out and handed_out[0] < total, "nothing was handed out before the walk ended"
    assert (second.pyc_written, second.pyc_linked, len(second.compiled)) == (
        first.pyc_written,
        first.pyc_linked,
        len(first.compiled),
    )
    assert full_snapshot(as_walked) == full_snapshot(planned_first)
    assert not _temporaries(as_walked)


def _refused_after_a_worker_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refuse: Callable[[Path], None], error: type[Exception]
) -> None:
    tree = _tree(tmp_path / "tree")
    before = full_snapshot(tree)
    real = streamed._Streamer.hand_out
    calls = []

    def hand_out(self: streamed._Streamer) -> None:
        real(self)
        calls.append(1)
        if len(calls) == 2:  # the walk goes on only once a worker has written a pyc
            _wait_for_a_worker(tree)

    monkeypatch.setattr(streamed._Streamer, "hand_out", hand_out)
    with pytest.raises(error):
        refuse(tree)
    assert len(calls) >= 2
    assert full_snapshot(tree) == before
    assert not _temporaries(tree)


def test_a_tree_refused_after_the_walk_began_is_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO named like a module in the last package: the walk refuses it once workers have written pycs."""

    def refuse(tree: Path) -> None:
        os.mkfifo(tree / "pkgc/zz_fifo.py")
        try:
            compile_tree([tree], PycOptions(cache=False))
        finally:
            (tree / "pkgc/zz_fifo.py").unlink()

    _refused_after_a_worker_wrote(tmp_path, monkeypatch, refuse, InvalidInput)


def test_a_plan_the_caller_refuses_is_left_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``check_plan`` (the CLI's --json check) refuses the whole plan after workers wrote pycs."""

    def refuse_plan(plan: object) -> None:
        raise InvalidOptions("refused")

    def refuse(tree: Path) -> None:
        streamed.compile_streamed([tree], PycOptions(cache=False), check_plan=refuse_plan)

    _refused_after_a_worker_wrote(tmp_path, monkeypatch, refuse, InvalidOptions)


def test_an_interrupt_during_the_walk_leaves_the_tree_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = streamed._Streamer.add

    def add(self: streamed._Streamer, plan: CompilePlan, item: PlannedSource) -> None:
        real(self, plan, item)
        if item.source.name == "m10.py" and item.source.parent.name == "pkgc":
            raise KeyboardInterrupt

    def refuse(tree: Path) -> None:
        monkeypatch.setattr(streamed._Streamer, "add", add)
        compile_tree([tree], PycOptions(cache=False))

    _refused_after_a_worker_wrote(tmp_path, monkeypatch, refuse, KeyboardInterrupt)


def test_a_source_that_fails_ends_a_streamed_run_with_nothing_changed(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree")
    (tree / "pkgc/zz_bad.py").write_text("def broken(:\n")
    before = full_snapshot(tree)
    with pytest.raises(CompileFailed):
        compile_tree([tree], PycOptions(cache=False, strip=True))
    assert full_snapshot(tree) == before


def _dead_token() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return f"{int(proc.stdout)}-deadbeef"


def test_a_walk_that_meets_a_killed_runs_leftovers_hands_out_nothing(tmp_path: Path, handed_out: list[int]) -> None:
    """The clean-up comes before any work where it may put files back: here a source a killed --strip run set aside
    (its pyc in place, the source under its hidden name). It is put back and compiled with the rest."""
    tree = _tree(tmp_path / "tree")
    source = tree / "pkga/m00.py"
    shutil.move(source, old_name(source, _dead_token()))
    result = compile_tree([tree], PycOptions(cache=False, strip=True))
    assert handed_out == []
    assert source in result.recovery.restored
    assert source in result.stripped and (tree / "pkga/m00.pyc").is_file()
    assert len(result.compiled) == 63 and not list(tree.rglob("*.py"))


def test_a_clean_up_that_puts_files_back_throws_away_what_was_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handed_out: list[int]
) -> None:
    """A RECORD a killed run set aside (its commit had not put the new one in place): the walk does not list the
    .dist-info, so work was handed out; the clean-up puts the RECORD back, and the run is made again from a new
    plan, as compile_plan makes it."""
    tree = _tree(tmp_path / "site")
    info = tree / "demo-1.0.dist-info"
    info.mkdir()
    lines = [f"pkg{p}/m{i:02d}.py,," for p in "abc" for i in range(20)] + [f"pkg{p}/__init__.py,," for p in "abc"]
    (info / "RECORD").write_text("\n".join([*lines, "demo-1.0.dist-info/RECORD,,"]) + "\n")
    (tree / "demo-1.0.dist-info/METADATA").write_text("Name: demo\nVersion: 1.0\n")
    shutil.move(info / "RECORD", old_name(info / "RECORD", _dead_token()))
    again = []
    monkeypatch.setattr(streamed, "compile_plan", lambda plan, **kw: again.append(plan) or compile_plan(plan, **kw))
    result = compile_tree([tree], PycOptions(cache=False, strip=True))
    assert handed_out and again, "the run was not made again"
    assert info / "RECORD" in result.recovery.restored
    record = (info / "RECORD").read_text()
    assert "pkga/m00.pyc,sha256=" in record and "pkga/m00.py," not in record
    assert not _temporaries(tree)
