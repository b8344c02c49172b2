"""The commit's steps undo exactly, and clean-up after a killed run touches only what that run made."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from conftest import run_python, write_tree
from test_safety import full_snapshot

from hatch_pyc import Interpreter, _commit
from hatch_pyc._commit import (
    Commit,
    Recovery,
    _owner_running,
    _process_start,
    held_signals,
    new_token,
    old_name,
    one_commit,
    recover,
    signals_as_exceptions,
    tmp_name,
    write_name,
)
from hatch_pyc._errors import CommitFailed, OutputFailed, Terminated


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
    with pytest.raises(IsADirectoryError) as refused:
        commit.install(tmp_a, tree / "a.pyc")
    assert str(refused.value) == f"[Errno {errno.EISDIR}] a directory where the pyc goes: '{tree / 'a.pyc'}'"
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
    before = signal.getsignal(signal.SIGTERM)
    with held_signals() as arrived:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert arrived == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with held_signals() as arrived:
            os.kill(os.getpid(), signal.SIGINT)
        assert arrived == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def _drop_a_signal(signum: int) -> None:
    """Send ``signum`` to this process from inside a weakref callback, where its handler runs and Python reports
    and ignores the exception the handler raises: the run goes on as if no signal had come."""

    class Token:
        pass

    token = Token()

    def callback(_: object) -> None:
        os.kill(os.getpid(), signum)
        for _ in range(100_000):  # the handler runs at one of these steps
            pass

    ref = weakref.ref(token, callback)
    del token  # the callback runs now
    assert ref() is None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception, reported
@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_commit_does_not_begin_after_a_signal_whose_exception_was_dropped(
    tmp_path: Path, signum: int, raised: type[BaseException]
) -> None:
    """Found by SIGTERM-ing `compile --strip` at random moments: once in ~40 runs the handler ran in importlib's
    weakref callback, its exception was dropped, and the run stripped the tree and exited 0."""
    (tmp_path / "a.py").write_text("A = 1\n")
    before = signal.getsignal(signum)
    with signals_as_exceptions():
        _drop_a_signal(signum)  # the run went on
        with pytest.raises(raised), one_commit(new_token()) as commit:
            commit.set_aside(tmp_path / "a.py")
    assert os.listdir(tmp_path) == ["a.py"]
    assert signal.getsignal(signum) is before
    with signals_as_exceptions(), one_commit(new_token()):  # heard by an earlier run: forgotten
        pass


def test_a_reused_pid_is_not_taken_for_the_run_that_made_a_file() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            time.sleep(0.2)
            assert _owner_running(proc.pid, time.time())  # made while it runs: its own
            assert not _owner_running(proc.pid, time.time() - 60)  # made before it started: a dead run's
        finally:
            proc.kill()
    assert not _owner_running(_dead_pid(), time.time())
    assert not _owner_running(os.getpid(), time.time() - 3600)  # this process, reused from a killed run


def test_a_killed_run_not_yet_reaped_is_not_running() -> None:
    """A zombie still answers kill(pid, 0): a killed run whose parent (a container's PID 1) never waits for it
    must not keep its temporaries from being cleaned up forever."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        made = time.time()
        proc.kill()  # not waited for: a zombie until wait()
        deadline = time.time() + 10
        while Path(f"/proc/{proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.time() < deadline
            time.sleep(0.05)
        assert not _owner_running(proc.pid, made)
    finally:
        proc.wait()


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


def test_a_directory_is_never_taken_for_a_file_a_run_set_aside(tmp_path: Path) -> None:
    """A run sets aside files only (``Commit.set_aside`` refuses a directory): a directory named as set aside, even
    for a planned name, is a user's. It is not renamed over that name; it is left as it is, and reported."""
    aside = tmp_path / f".image.{_dead_pid()}-deadbeef.hatch-pyc-old"
    (aside / "blobs").mkdir(parents=True)
    before = full_snapshot(tmp_path)
    recovery = recover([tmp_path], lambda path: path == tmp_path / "image")
    assert (recovery.restored, recovery.removed, recovery.strange) == ([], [], [aside])
    assert full_snapshot(tmp_path) == before


_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from hatch_pyc._commit import write_name
for name in ("a.pyc", "b.pyc", "c.pyc"):
    tmp = write_name(Path(sys.argv[1]) / name)
    tmp.write_text("half")
    print(tmp.name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_write_name_removes_a_killed_runs_temporary_of_that_file_only(tmp_path: Path) -> None:
    """A run SIGKILLed after writing three temporaries: the next write of b.pyc removes b.pyc's, and only it.

    The names have the documented form ``.<name>.<pid>-<8 hex>.hatch-pyc-tmp``: a longer or shorter
    token would not be recognised as a leftover and would stay for ever."""
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    a, b, c = killed.stdout.split()
    for name, tmp in (("a", a), ("b", b), ("c", c)):
        assert re.fullmatch(rf"\.{name}\.pyc\.\d+-[0-9a-f]{{8}}\.hatch-pyc-tmp", tmp), tmp
    mine = write_name(tmp_path / "b.pyc")
    assert re.fullmatch(rf"\.b\.pyc\.{os.getpid()}-[0-9a-f]{{8}}\.hatch-pyc-tmp", mine.name), mine.name
    assert sorted(os.listdir(tmp_path)) == sorted([a, c])


def _install_new(*finals: Path) -> Commit:
    """A commit that installed a file holding ``new`` at each of ``finals``."""
    commit = Commit(new_token())
    for final in finals:
        tmp = tmp_name(final, commit.token)
        tmp.write_text("new")
        commit.install(tmp, final)
    return commit


def test_a_replaced_link_is_put_back_as_the_link_it_was(tmp_path: Path) -> None:
    """The backup of a symbolic link is the link, not the file it points to (nor nothing, when it dangles).

    (On Linux, CPython before 3.14 makes ``os.link`` never follow a link, whatever ``follow_symlinks`` says;
    3.14 and macOS follow it unless told not to.)"""
    tree = write_tree(tmp_path, {"shared.pyc": "shared\n"})
    os.symlink("shared.pyc", tree / "a.pyc")
    os.symlink("nowhere.pyc", tree / "b.pyc")
    before = full_snapshot(tree)
    commit = _install_new(tree / "a.pyc", tree / "b.pyc")
    assert os.readlink(old_name(tree / "a.pyc", commit.token)) == "shared.pyc"
    assert os.readlink(old_name(tree / "b.pyc", commit.token)) == "nowhere.pyc"
    commit.roll_back()
    assert full_snapshot(tree) == before


_LINKS_UNDER = """
import os
from pathlib import Path
from hatch_pyc._commit import Commit, new_token, old_name, tmp_name
tree = Path.cwd()
os.symlink("shared.pyc", tree / "a.pyc")
commit = Commit(new_token())
tmp = tmp_name(tree / "a.pyc", commit.token)
tmp.write_text("new")
commit.install(tmp, tree / "a.pyc")
print(os.readlink(old_name(tree / "a.pyc", commit.token)))
commit.roll_back()
print(os.readlink(tree / "a.pyc"), (tree / "shared.pyc").read_text())
"""


def test_a_replaced_link_is_put_back_as_the_link_it_was_by_hatch_pyc_running_on_each_cpython(
    tmp_path: Path, target: Interpreter
) -> None:
    """hatch-pyc runs on every CPython it targets, and ``os.link`` changed in 3.14 (it follows a link unless told
    not to): the commit run by each interpreter keeps the link itself, never a second name of its target."""
    (tmp_path / "shared.pyc").write_text("shared")
    proc = run_python(target, _LINKS_UNDER, path=Path(_commit.__file__).parent.parent, cwd=tmp_path)
    assert proc.stdout.splitlines() == ["shared.pyc", "shared.pyc shared"]
    assert sorted(os.listdir(tmp_path)) == ["a.pyc", "shared.pyc"]


def _no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: ``os.link`` behaves as on a file system without hard links (vfat: EPERM)."""

    def link(src: str, dst: str, *, follow_symlinks: bool = True) -> None:
        if not os.path.lexists(src):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(src), None, str(dst))
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(src), None, str(dst))

    monkeypatch.setattr(os, "link", link)


def test_without_hard_links_the_replaced_file_is_renamed_aside_and_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``os.link`` fails (monkeypatched: a file system without hard links), the old file is renamed
    to its backup name, and a roll back renames it back."""
    _no_hard_links(monkeypatch)
    tree = write_tree(tmp_path, {"a.pyc": "old\n"})
    before = full_snapshot(tree)
    commit = _install_new(tree / "a.pyc", tree / "b.pyc")
    backup = old_name(tree / "a.pyc", commit.token)
    assert sorted(os.listdir(tree)) == sorted(["a.pyc", "b.pyc", backup.name])
    assert (backup.read_text(), (tree / "a.pyc").read_text()) == ("old\n", "new")
    commit.roll_back()
    assert full_snapshot(tree) == before


def test_without_hard_links_finish_leaves_only_the_new_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As above (``os.link`` monkeypatched to fail), a completed commit deletes the renamed-aside file."""
    _no_hard_links(monkeypatch)
    tree = write_tree(tmp_path, {"a.pyc": "old\n"})
    commit = Commit(new_token())
    tmp = tmp_name(tree / "a.pyc", commit.token)
    tmp.write_text("new")
    commit.install(tmp, tree / "a.pyc")
    assert commit.finish() == []
    assert full_snapshot(tree) == {"a.pyc": (b"new", (tree / "a.pyc").stat().st_mode)}


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_failed_move_into_place_leaves_the_old_file_and_no_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    """The temporary is gone when it is to be moved into place: the error propagates, the old file is
    where it was and no backup is left (without hard links, ``os.link`` monkeypatched to fail, the
    backup was the old file itself, renamed: it is renamed back)."""
    if not hard_links:
        _no_hard_links(monkeypatch)
    tree = write_tree(tmp_path, {"a.pyc": "old\n"})
    before = full_snapshot(tree)
    commit = Commit(new_token())
    tmp = tmp_name(tree / "a.pyc", commit.token)
    with pytest.raises(FileNotFoundError) as failed:
        commit.install(tmp, tree / "a.pyc")
    assert failed.value.filename == str(tmp)
    assert full_snapshot(tree) == before
    commit.roll_back()  # the failed step left nothing to undo
    assert full_snapshot(tree) == before


def test_set_aside_refuses_a_directory_but_takes_a_link_to_one(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, {"pkg/a.py": "A\n"})
    os.symlink("pkg", tree / "link")
    before = full_snapshot(tree)
    commit = Commit(new_token())
    with pytest.raises(IsADirectoryError) as refused:
        commit.set_aside(tree / "pkg")
    assert str(refused.value) == f"[Errno {errno.EISDIR}] a directory, not a file to remove: '{tree / 'pkg'}'"
    assert full_snapshot(tree) == before
    commit.set_aside(tree / "link")
    assert sorted(os.listdir(tree)) == sorted(["pkg", old_name(tree / "link", commit.token).name])
    commit.roll_back()
    assert full_snapshot(tree) == before


@pytest.mark.parametrize("lost", [1, 2, 3])
def test_undos_that_fail_are_counted_and_the_first_is_named(tmp_path: Path, lost: int) -> None:
    """Steps are undone newest first: the message names the first undo that failed, then how many more."""
    names = ["a.py", "b.py", "c.py"][:lost]
    tree = write_tree(tmp_path, dict.fromkeys(names, "x\n"))
    commit = Commit(new_token())
    for name in names:
        commit.set_aside(tree / name)
    for name in names:
        os.unlink(old_name(tree / name, commit.token))  # what each undo needs is gone
    with pytest.raises(CommitFailed) as failed:
        commit.roll_back()
    more = {1: "", 2: " (and 1 more)", 3: " (and 2 more)"}[lost]
    assert str(failed.value) == (
        f"the commit failed and could not be undone entirely: {old_name(tree / names[-1], commit.token)}: "
        f"No such file or directory{more}; re-run the command to complete it"
    )


def test_a_roll_back_removes_a_backup_the_undo_could_not_rename_away(tmp_path: Path) -> None:
    """A temporary that is a hard link to the file it replaces (the same bytes): moving it into place and
    back are no-ops (rename between two names of one file does nothing), so the backup name is still
    there after the undo; the roll back deletes it, and the file keeps its name."""
    tree = write_tree(tmp_path, {"a.pyc": "same\n"})
    commit = Commit(new_token())
    tmp = tmp_name(tree / "a.pyc", commit.token)
    os.link(tree / "a.pyc", tmp)
    before = full_snapshot(tree)
    commit.install(tmp, tree / "a.pyc")
    assert old_name(tree / "a.pyc", commit.token).exists()
    commit.roll_back()
    assert full_snapshot(tree) == before


def test_finish_reports_only_the_leftovers_it_could_not_delete(tmp_path: Path) -> None:
    """A backup already gone is not a failure; one that cannot be unlinked (a directory took its name) is
    reported, and the others are deleted all the same."""
    tree = write_tree(tmp_path, {"a.py": "A\n", "b.py": "B\n", "c.py": "C\n"})
    commit = Commit(new_token())
    for name in ("a.py", "b.py", "c.py"):
        commit.set_aside(tree / name)
    aside_a, aside_b = old_name(tree / "a.py", commit.token), old_name(tree / "b.py", commit.token)
    aside_a.unlink()
    aside_b.unlink()
    aside_b.mkdir()
    assert commit.finish() == [aside_b]
    assert full_snapshot(tree) == {f"{aside_b.name}/": ("dir", aside_b.stat().st_mode)}


def test_a_handler_of_the_callers_own_is_back_afterwards() -> None:
    held: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: held.append(signum))
    try:
        handler = signal.getsignal(signal.SIGTERM)
        with held_signals() as arrived:
            os.kill(os.getpid(), signal.SIGTERM)
        assert (arrived, held) == ([signal.SIGTERM], [])
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


class _EqualToEverything:
    """A signal handler that compares equal to anything, SIG_IGN included: it is not SIG_IGN all the same."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, signum: int, frame: object) -> None:
        self.calls.append(signum)

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


def test_a_handler_equal_to_sig_ign_is_not_taken_for_it() -> None:
    handler = _EqualToEverything()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with held_signals() as arrived:
            os.kill(os.getpid(), signal.SIGTERM)
        assert (arrived, handler.calls) == ([signal.SIGTERM], [])
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_process_named_with_a_parenthesis_is_dated_all_the_same() -> None:
    """/proc/<pid>/stat has the name in parentheses; a name holding ``)`` must not shift the fields."""
    named = "import time; open('/proc/self/comm', 'w').write('x) 1 2 3'); print('ready', flush=True); time.sleep(30)"
    spawned = time.time()
    with subprocess.Popen([sys.executable, "-c", named], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            with open(f"/proc/{proc.pid}/stat", "rb") as handle:
                assert handle.read().startswith(f"{proc.pid} (x) 1 2 3) ".encode())
            started = _process_start(proc.pid)
            assert started is not None and spawned - 2 <= started <= time.time() + 1
            assert not _owner_running(proc.pid, spawned - 60)
        finally:
            proc.kill()


def _fake_proc(monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> None:
    """Fault injection: ``open`` in _commit reads ``files[path]`` instead of these /proc paths."""
    real_open = open

    def fake_open(path: str, *args: object, **kwargs: object) -> object:
        return real_open(files.get(path, path), *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(_commit, "open", fake_open, raising=False)


def test_an_exited_process_has_no_start_time() -> None:
    assert _process_start(_dead_pid()) is None


@pytest.mark.parametrize(
    ("proc_stat", "pid_stat"),
    [
        (b"cpu  1 2 3\nintr 5\n", None),
        (b"cpu  1 2 3\nbtime unknown\n", None),
        (None, b"123 (python) S 1"),
        (None, b"123 python S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"),
    ],
    ids=["no-btime", "btime-not-a-number", "stat-too-short", "stat-without-name"],
)
def test_a_start_time_proc_does_not_give_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc_stat: bytes | None, pid_stat: bytes | None
) -> None:
    """Without a start time the owner of a file may be running: even a file made an hour before this
    process started counts as its own. /proc files of another form are given to _commit by ``open``
    monkeypatched for those paths only (a fault injection)."""
    files = {}
    for path, data in (("/proc/stat", proc_stat), (f"/proc/{os.getpid()}/stat", pid_stat)):
        if data is not None:
            files[path] = tmp_path / path.replace("/", "_")
            files[path].write_bytes(data)
    _fake_proc(monkeypatch, files)
    assert _process_start(os.getpid()) is None
    assert _owner_running(os.getpid(), time.time() - 3600)


def test_checking_whether_a_run_is_alive_sends_it_no_signal(tmp_path: Path) -> None:
    """Recovery asks whether the owner of a leftover runs (signal 0); the owner gets nothing and its file stays."""
    listening = (
        "import signal, sys\n"
        "got = []\n"
        "for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):\n"
        "    signal.signal(sig, lambda signum, frame: got.append(signum))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
        "print(got)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", listening], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        leftover = tmp_path / f".a.pyc.{proc.pid}-deadbeef.hatch-pyc-tmp"
        leftover.write_text("being written\n")
        recovery = recover([tmp_path], lambda path: path == tmp_path / "a.pyc")
        out, _ = proc.communicate("", timeout=30)
    assert (recovery.removed, out, proc.returncode) == ([], "[]\n", 0)
    assert leftover.read_text() == "being written\n"


def test_a_process_of_another_user_counts_as_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.kill(pid, 0)`` refused (monkeypatched to raise PermissionError for that pid: tests run as any
    user): the process exists, so the file it made while running is kept."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            time.sleep(0.2)
            real_kill = os.kill

            def kill(pid: int, sig: int) -> None:
                if pid == proc.pid:
                    raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
                real_kill(pid, sig)

            monkeypatch.setattr(os, "kill", kill)
            leftover = tmp_path / f".a.pyc.{proc.pid}-deadbeef.hatch-pyc-tmp"
            leftover.write_text("being written\n")
            recovery = recover([tmp_path], lambda path: path == tmp_path / "a.pyc")
            assert (recovery.removed, os.listdir(tmp_path)) == ([], [leftover.name])
        finally:
            monkeypatch.undo()
            proc.kill()


def test_a_file_made_up_to_a_second_before_its_owner_started_is_its_own() -> None:
    """/proc gives the start to the clock tick but the boot time only to the second: one second of slack."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            time.sleep(0.2)
            started = _process_start(proc.pid)
            assert started is not None and (started - 1) + 1 == started
            assert _owner_running(proc.pid, started - 1)
            assert not _owner_running(proc.pid, started - 1.5)
        finally:
            proc.kill()


def test_a_directory_that_is_not_there_is_skipped_not_the_rest(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / "b").mkdir()
    leftover = tmp_path / "b" / f".a.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    leftover.write_text("half\n")
    recovery = recover([tmp_path / "a-missing", tmp_path / "b"], lambda path: path.name == "a.pyc")
    assert recovery.removed == [leftover] and os.listdir(tmp_path / "b") == []


def test_a_leftover_that_vanishes_meanwhile_is_skipped_not_the_rest(tmp_path: Path) -> None:
    """Another run's clean-up removes a leftover between the listing and the look at it (here: while
    ``planned`` is asked about it): it is passed over and the next one is still cleaned up."""
    dead = _dead_pid()
    first = tmp_path / f".a.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    second = tmp_path / f".b.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    first.write_text("half\n")
    second.write_text("half\n")

    def planned(path: Path) -> bool:
        if path == tmp_path / "a.pyc":
            first.unlink(missing_ok=True)  # the other run's clean-up
        return True

    recovery = recover([tmp_path], planned)
    assert recovery.removed == [second] and os.listdir(tmp_path) == []


def test_the_outdated_backup_of_a_planned_record_is_removed(tmp_path: Path) -> None:
    """A RECORD (no suffix) the run rewrites: its backup from a killed run goes even though it differs."""
    dead = _dead_pid()
    tree = write_tree(tmp_path, {"RECORD": "current\n"})
    backup = tree / f".RECORD.{dead}-0123abcd.hatch-pyc-old"
    backup.write_text("older\n")
    recovery = recover([tree], lambda path: path == tree / "RECORD")
    assert (recovery.restored, recovery.removed, recovery.kept) == ([], [backup], [])
    assert full_snapshot(tree) == {"RECORD": (b"current\n", (tree / "RECORD").stat().st_mode)}


def test_a_set_aside_source_whose_name_is_now_a_directory_is_kept(tmp_path: Path) -> None:
    """Its bytes cannot be compared with a directory's: it is kept and reported, the directory untouched."""
    dead = _dead_pid()
    tree = write_tree(tmp_path, {"mod.py/inner.py": "I\n"})
    aside = tree / f".mod.py.{dead}-0123abcd.hatch-pyc-old"
    aside.write_text("M\n")
    before = full_snapshot(tree)
    recovery = recover([tree], lambda path: False, set_aside=True)
    assert (recovery.restored, recovery.removed, recovery.kept) == ([], [], [aside])
    assert full_snapshot(tree) == before


def test_a_leftover_another_clean_up_deletes_first_counts_as_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs clean up the same directory: the one whose unlink finds the file gone goes on.
    ``os.unlink`` is monkeypatched to delete the file once before the real attempt (the other run)."""
    dead = _dead_pid()
    leftover = tmp_path / f".a.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    leftover.write_text("half\n")
    real_unlink = os.unlink

    def unlink(path: str | os.PathLike[str], *, dir_fd: int | None = None) -> None:
        real_unlink(path, dir_fd=dir_fd)  # the other run
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    recovery = recover([tmp_path], lambda path: path == tmp_path / "a.pyc")
    monkeypatch.undo()
    assert recovery.removed == [leftover] and os.listdir(tmp_path) == []


def test_a_failed_commit_still_says_which_signals_it_held(tmp_path: Path) -> None:
    """A SIGTERM held during a commit that then fails is not dropped: the commit lists it (the error
    propagates and ends the run), and the handler is the caller's again."""
    before = signal.getsignal(signal.SIGTERM)
    tree = write_tree(tmp_path, {"a.py": "old\n"})
    (tmp_path / "new").write_text("new\n")
    with pytest.raises(RuntimeError, match="a later step failed"), one_commit(new_token()) as commit:
        commit.install(tmp_path / "new", tree / "a.py")
        os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("a later step failed")
    assert commit.signals == [signal.SIGTERM]
    assert (tree / "a.py").read_text() == "old\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_installing_one_name_twice_in_a_commit_keeps_the_original(tmp_path: Path) -> None:
    """The second install of a name would need its backup name, already holding the original: refused
    (FileExistsError, not taken for a file system without hard links), and the roll back restores it."""
    tree = write_tree(tmp_path, {"a.py": "original\n", "one": "1\n", "two": "2\n"})
    with pytest.raises(FileExistsError), one_commit(new_token()) as commit:
        commit.install(tree / "one", tree / "a.py")
        commit.install(tree / "two", tree / "a.py")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "two"]
    assert (tree / "a.py").read_text() == "original\n"


@pytest.mark.parametrize("there", ["file", "dangling-link"])
def test_a_directory_is_placed_only_where_nothing_is(tmp_path: Path, there: str) -> None:
    """``place_directory`` never replaces what is at the final name, not even a dangling link: EEXIST,
    naming it, and both stay as they were."""
    staged = tmp_path / "staged"
    staged.mkdir()
    final = tmp_path / "layout"
    if there == "file":
        final.write_text("mine\n")
    else:
        final.symlink_to(tmp_path / "nowhere")
    before = full_snapshot(tmp_path)
    with pytest.raises(FileExistsError) as caught:
        Commit(new_token()).place_directory(staged, final)
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.EEXIST,
        "something is already there",
        str(final),
    )
    assert full_snapshot(tmp_path) == before


def test_the_steps_after_a_commit_run_in_order_once_it_succeeded(tmp_path: Path) -> None:
    """``commit.then``: what a caller tidies once every move is done (a merged layout's staged directory)
    runs in order after a commit that succeeded, and not at all after one that failed."""
    done: list[str] = []
    with one_commit(new_token()) as commit:
        commit.then += [lambda: done.append("first"), lambda: done.append("second")]
    assert done == ["first", "second"]
    with pytest.raises(RuntimeError), one_commit(new_token()) as commit:
        commit.then.append(lambda: done.append("after a failure"))
        raise RuntimeError("a step failed")
    assert done == ["first", "second"]


def test_a_zombie_is_told_from_the_living_whatever_its_name_and_a_gone_process_is_not_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/PID/stat names the process in parentheses, and a name may hold ")": the state is read after the last
    one. A process that is gone (no /proc entry) or a stat that cannot be parsed is not a zombie."""
    from hatch_pyc import _commit

    odd = tmp_path / "odd) R name"
    odd.symlink_to("/bin/true")
    child = subprocess.Popen([str(odd)])
    try:
        stat_path = Path(f"/proc/{child.pid}/stat")
        for _ in range(200):
            if stat_path.read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
            time.sleep(0.02)
        assert b"(odd) R name)" in stat_path.read_bytes()
        assert _commit._dead_but_not_reaped(child.pid)
    finally:
        child.wait()
    assert not _commit._dead_but_not_reaped(child.pid)  # reaped: gone from /proc
    assert not _commit._dead_but_not_reaped(os.getpid())  # alive
    monkeypatch.setattr(_commit, "open", lambda *a, **k: __import__("io").BytesIO(b"7 (cut"), raising=False)
    assert not _commit._dead_but_not_reaped(os.getpid())  # no state after the name


def test_a_leftover_that_cannot_be_removed_stops_the_run_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed run's temporary that cannot be removed (an immutable file, a read-only directory) ends the run with
    one error naming the whole path and saying it was the clean-up, not a bare ``a.pyc: Operation not permitted``."""
    from hatch_pyc import _commit

    dead = _dead_pid()
    aside = tmp_path / f".a.py.{dead}-deadbeef.hatch-pyc-old"
    aside.write_text("A = 1\n")
    leftover = tmp_path / f".b.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    leftover.write_text("half\n")

    def refuse(path: Path) -> None:
        raise PermissionError(1, "Operation not permitted", path.name)

    monkeypatch.setattr(_commit, "_unlink", refuse)
    with pytest.raises(OutputFailed) as failed:
        recover([tmp_path], lambda path: path == tmp_path / "b.pyc", set_aside=True)
    assert str(failed.value) == (  # and what it did before is said, not hidden
        f"{leftover}: cannot remove this leftover of a killed run (Operation not permitted); the clean-up stopped "
        "there (it had put back 1 and removed 0 of them), before the run's own work"
    )
    assert leftover.exists() and (tmp_path / "a.py").read_text() == "A = 1\n"


def test_an_output_is_written_anew_without_taking_a_users_directory_for_a_temporary(tmp_path: Path) -> None:
    """Found by an adversarial review: ``write_name`` (every output a command writes whole: a wheel, a layer, a
    JSON report) removed whatever had its temporary's name, a user's directory with all it held included. A run
    makes a file there: anything else stays (an OCI layout's directory: see ``tests/test_oci_hostile.py``)."""
    dead = _dead_pid()
    half = tmp_path / f".a.whl.{dead}-deadbeef.hatch-pyc-tmp"
    half.write_bytes(b"half a wheel")
    users = tmp_path / f".b.whl.{dead}-deadbeef.hatch-pyc-tmp"
    (users / "keep").mkdir(parents=True)
    write_name(tmp_path / "a.whl")
    write_name(tmp_path / "b.whl")
    assert not half.exists() and (users / "keep").is_dir()


def test_of_several_files_set_aside_for_one_name_the_newest_comes_back(tmp_path: Path) -> None:
    """Found by an adversarial review: two killed runs set ``a.py`` aside in turn; the clean-up put back the one whose
    name sorted first (the older here), compiled it, and a second run then put back the other. The newest comes
    back, the older is kept and named once."""
    dead = _dead_pid()
    older = tmp_path / f".a.py.{dead}-00000000.hatch-pyc-old"
    older.write_text("V = 'OLD'\n")
    time.sleep(0.01)  # ctimes a hundredth of a second apart
    newer = tmp_path / f".a.py.{dead}-ffffffff.hatch-pyc-old"
    newer.write_text("V = 'NEW'\n")
    recovery = recover([tmp_path], lambda path: False, set_aside=True)
    recovery.extend(recover([tmp_path], lambda path: False, set_aside=True))  # a second look: listed once
    assert (tmp_path / "a.py").read_text() == "V = 'NEW'\n"
    assert (recovery.restored, recovery.kept) == ([tmp_path / "a.py"], [older])


def test_a_named_source_is_put_back_only_as_a_run_would_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``put_back_named`` (found by an adversarial review): never through a directory that is a link (the run then
    refuses to write there, having changed it); never a ``.py`` temporary (no run writes one); and a put-back that
    fails says the one done before it, in another named directory."""
    from hatch_pyc import _commit
    from hatch_pyc._compile import put_back_named

    dead = f"{_dead_pid()}-deadbeef"
    tree = write_tree(
        tmp_path / "tree",
        {
            f"pkg/.a.py.{dead}.hatch-pyc-old": "A = 1\n",
            f"pkg/.a.py.{dead}.hatch-pyc-tmp": "a user's file: no run writes a .py temporary\n",
            f"pkg/sub/.d.py.{dead}.hatch-pyc-old": "D = 1\n",
        },
    )
    (tmp_path / "link").symlink_to(tree / "pkg", target_is_directory=True)
    assert put_back_named([tmp_path / "link/a.py"]) == Recovery()
    real_rename = os.rename

    def refuse_in_sub(src: object, dst: object) -> None:
        if "sub" in str(src):
            raise PermissionError(1, "Operation not permitted", str(src))
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(_commit.os, "rename", refuse_in_sub)
    with pytest.raises(OutputFailed, match=r"\(it had put back 1 and removed 0 of them\)"):
        put_back_named([tree / "pkg/a.py", tree / "pkg/sub/d.py"])
    monkeypatch.undo()
    assert (tree / "pkg/a.py").read_text() == "A = 1\n"
    assert (tree / f"pkg/.a.py.{dead}.hatch-pyc-tmp").exists()


def test_an_undone_set_aside_puts_a_link_back_as_a_link(tmp_path: Path) -> None:
    """A source that is a symbolic link, set aside and put back by the undo, is the same link again: never a hard
    link to what it points at."""
    target = tmp_path / "real.py"
    target.write_text("R = 1\n")
    (tmp_path / "mod.py").symlink_to(target)
    commit = Commit(new_token())
    commit.set_aside(tmp_path / "mod.py")
    commit.roll_back()
    assert os.readlink(tmp_path / "mod.py") == str(target)


def test_a_leftover_another_clean_up_puts_back_first_is_passed_over_not_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs clean up one directory: a set-aside file the other run put back first (the rename finds it gone)
    is passed over, and the next leftover is still cleaned up. Likewise a name listed that is gone before it is
    looked at."""
    from hatch_pyc import _commit

    dead = _dead_pid()
    aside = tmp_path / f".a.py.{dead}-deadbeef.hatch-pyc-old"
    aside.write_text("A = 1\n")
    half = tmp_path / f".b.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    half.write_text("half\n")
    real_rename = os.rename

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_rename(src, dst)  # the other run
        real_rename(src, dst)

    monkeypatch.setattr(_commit.os, "rename", rename)
    recovery = recover([tmp_path], lambda path: path == tmp_path / "b.pyc", set_aside=True)
    monkeypatch.undo()
    assert (recovery.restored, recovery.removed) == ([], [half])
    assert sorted(os.listdir(tmp_path)) == ["a.py"]
    ghost = f".c.pyc.{dead}-deadbeef.hatch-pyc-tmp"  # listed, then gone
    half.write_text("half\n")
    assert [found for _, found, _ in _commit._newest_first(tmp_path, [ghost, half.name])] == [half]
