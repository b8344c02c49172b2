"""The commit's steps undo exactly, and clean-up after a killed run touches only what that run made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tree
from test_safety import full_snapshot

from hatch_pyc._commit import Commit, held_signals, new_token, old_name, recover, tmp_name
from hatch_pyc._errors import CommitFailed


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(proc.stdout)


def test_every_step_is_undone_and_the_tree_is_as_it_was(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"a.py": "A\n", "a.pyc": "old pyc\n", "b.py": "B\n", "RECORD": "r\n"})
    before = full_snapshot(tree)
    commit = Commit(new_token())
    for final, data in ((tree / "a.pyc", "new a"), (tree / "b.pyc", "new b"), (tree / "RECORD", "new r")):
        tmp = tmp_name(final, commit.token)
        tmp.write_text(data)
        commit.install(tmp, final)
    commit.set_aside(tree / "a.py")
    commit.set_aside(tree / "b.py")
    assert (tree / "a.pyc").read_text() == "new a" and not (tree / "a.py").exists()
    commit.roll_back()
    assert full_snapshot(tree) == before


def test_finish_leaves_only_the_new_files(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"a.py": "A\n", "a.pyc": "old\n"})
    commit = Commit(new_token())
    tmp = tmp_name(tree / "a.pyc", commit.token)
    tmp.write_text("new")
    commit.install(tmp, tree / "a.pyc")
    commit.set_aside(tree / "a.py")
    commit.finish()
    assert full_snapshot(tree) == {"a.pyc": (b"new", (tree / "a.pyc").stat().st_mode)}


def test_a_directory_where_the_pyc_goes_fails_that_step_before_it_changes_anything(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"a.pyc/keep": "x\n", "b.pyc": "old\n"})
    before = full_snapshot(tree)
    commit = Commit(new_token())
    tmp_b = tmp_name(tree / "b.pyc", commit.token)
    tmp_b.write_text("new")
    commit.install(tmp_b, tree / "b.pyc")
    tmp_a = tmp_name(tree / "a.pyc", commit.token)
    tmp_a.write_text("new")
    with pytest.raises(IsADirectoryError):
        commit.install(tmp_a, tree / "a.pyc")
    commit.roll_back()
    tmp_a.unlink()
    assert full_snapshot(tree) == before


def test_an_undo_that_fails_is_reported_not_hidden(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"a.py": "A\n"})
    commit = Commit(new_token())
    commit.set_aside(tree / "a.py")
    os.unlink(old_name(tree / "a.py", commit.token))  # what the undo needs is gone
    with pytest.raises(CommitFailed, match=r"could not be undone entirely: .*a\.py"):
        commit.roll_back()


def test_recovery_restores_removes_and_keeps_by_the_rules(tmp_path: Path) -> None:
    dead = _dead_pid()
    token = f"{dead}-0123abcd"
    live = f"{os.getpid()}-0123abcd"
    tree = write_tree(tmp_path, {"taken.py": "the user's new file\n", "same.py": "S\n", "a.pyc": "new\n"})
    (tree / f".gone.py.{token}.hatch-pyc-old").write_text("set aside\n")  # name free: restored
    (tree / f".taken.py.{token}.hatch-pyc-old").write_text("an older version\n")  # name taken: kept
    (tree / f".same.py.{token}.hatch-pyc-old").write_text("S\n")  # identical: removed
    (tree / f".a.pyc.{token}.hatch-pyc-old").write_text("old backup\n")  # pyc in place: removed
    (tree / f".a.pyc.{token}.hatch-pyc-tmp").write_text("partial")  # planned: removed
    (tree / f".b.pyc.{token}.hatch-pyc-tmp").write_text("partial")  # not planned: kept
    (tree / f".c.pyc.{live}.hatch-pyc-tmp").write_text("a run in progress")  # alive: kept
    (tree / f".d.pyc.{dead}-0123ABCD.hatch-pyc-tmp").write_text("not our form")  # kept
    (tree / "other.pyc").write_text("a file this run does not write\n")
    (tree / f".other.pyc.{token}.hatch-pyc-old").write_text("its backup: not ours to judge\n")  # kept
    planned = {os.path.normpath(tree / n) for n in ("a.pyc", "c.pyc", "d.pyc")}
    result = recover([tree], lambda original: os.path.normpath(original) in planned, set_aside=True)
    assert result.restored == [tree / "gone.py"] and (tree / "gone.py").read_text() == "set aside\n"
    assert result.kept == [tree / f".other.pyc.{token}.hatch-pyc-old", tree / f".taken.py.{token}.hatch-pyc-old"]
    assert sorted(p.name for p in tree.iterdir()) == sorted(
        [
            "a.pyc",
            "other.pyc",
            f".other.pyc.{token}.hatch-pyc-old",
            "gone.py",
            "same.py",
            "taken.py",
            f".taken.py.{token}.hatch-pyc-old",
            f".b.pyc.{token}.hatch-pyc-tmp",
            f".c.pyc.{live}.hatch-pyc-tmp",
            f".d.pyc.{dead}-0123ABCD.hatch-pyc-tmp",
        ]
    )


def test_signals_are_held_and_listed_then_handlers_come_back() -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with held_signals() as arrived:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert arrived == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_signal_stays_ignored() -> None:
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with held_signals() as arrived:
            os.kill(os.getpid(), signal.SIGINT)
        assert arrived == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_reused_pid_is_not_taken_for_the_run_that_made_a_file() -> None:
    import time

    from hatch_pyc._commit import _owner_running

    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            time.sleep(0.2)
            assert _owner_running(proc.pid, time.time())  # made while it runs: its own
            assert not _owner_running(proc.pid, time.time() - 60)  # made before it started: a dead run's
        finally:
            proc.kill()
    assert not _owner_running(_dead_pid(), time.time())
    assert not _owner_running(os.getpid(), time.time() - 3600)  # this process, reused from a killed run


def test_recovery_touches_only_leftovers_of_planned_names(tmp_path: Path) -> None:
    """A name shaped like ours, for a file the run does not write, is not its business: kept as it is,
    even when it is restorable or a copy of the file beside it (found by an adversarial review)."""
    pid = _dead_pid()
    (tmp_path / "other.cfg").write_text("same\n")
    unplanned = {
        tmp_path / f".notes.txt.{pid}-deadbeef.hatch-pyc-old": "would be restored as notes.txt\n",
        tmp_path / f".other.cfg.{pid}-deadbeef.hatch-pyc-old": "same\n",
        tmp_path / f".other.cfg.{pid}-deadbeef.hatch-pyc-tmp": "half\n",
    }
    for path, text in unplanned.items():
        path.write_text(text)
    before = full_snapshot(tmp_path)
    recovery = recover([tmp_path], lambda path: path == tmp_path / "out.whl")
    assert (recovery.restored, recovery.removed, recovery.kept) == ([], [], [])
    assert full_snapshot(tmp_path) == before


def test_a_process_id_no_process_can_have_does_not_crash_recovery(tmp_path: Path) -> None:
    leftover = tmp_path / ".out.whl.2147483648-deadbeef.hatch-pyc-tmp"  # os.kill raises OverflowError
    leftover.write_text("half\n")
    recovery = recover([tmp_path], lambda path: path == tmp_path / "out.whl")
    assert recovery.removed == [leftover] and not leftover.exists()


def test_a_staged_directory_a_killed_run_left_is_removed(tmp_path: Path) -> None:
    """A killed ``layer --oci-layout DIR`` leaves its staged layout, a directory: the next run removes it."""
    staged = tmp_path / f".image.{_dead_pid()}-deadbeef.hatch-pyc-tmp"
    (staged / "blobs/sha256").mkdir(parents=True)
    (staged / "index.json").write_text("{}")
    recovery = recover([tmp_path], lambda path: path == tmp_path / "image")
    assert recovery.removed == [staged] and not staged.exists()
