"""The commit of an in-place run: all of it or none of it, whatever fails or arrives meanwhile.

Workers write every pyc under a temporary name. The commit then, in order: moves each new pyc
into place (an existing file it replaces is kept under a backup name), sets each removed file
aside (renamed, not deleted), and moves each new RECORD into place. Every step is recorded, so
an error in any of them (a source its user may not remove, a full disk) undoes the steps
before it and the tree is as it was. Only once all of them succeeded are the backups and the
set-aside files deleted: the step that cannot be undone is also the one that cannot fail for
want of permission (removing a file one may rename).

SIGINT and SIGTERM are held from the first step to the last and acted on afterwards, so an
interrupt lands before the commit (nothing changed) or after it (all of it done), never inside.
A commit does not begin after a signal that :func:`signals_as_exceptions` heard but whose exception
never ended the run (Python drops an exception raised in a weakref callback or a ``__del__``, where a
handler may happen to run).
SIGKILL cannot be held: a killed commit leaves its temporaries and set-aside files under names
that say which run made them; the next run on the tree puts set-aside files back where they
were (when nothing has taken their place) and removes the rest, so re-running the command
completes the work.

Every name this module makes is ``.<name>.<pid>-<8 hex>.hatch-pyc-tmp`` (a new file) or
``...hatch-pyc-old`` (a file set aside). Clean-up touches only such names whose ``<name>`` is
a file a run writes or removes there, made by a process that is no longer running, and only if
they hold what a run leaves (see :func:`recover`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._errors import CommitFailed, OutputFailed, Terminated

TMP_SUFFIX = ".hatch-pyc-tmp"
OLD_SUFFIX = ".hatch-pyc-old"
_OURS = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.hatch-pyc-(?P<kind>tmp|old)", re.DOTALL)  # fullmatch
SET_ASIDE_SUFFIXES = (".py", ".pyc", ".pyi")  # what an in-place run sets aside or backs up: sources, pycs, stubs


def new_token() -> str:
    """What makes this run's temporary names its own: the process id and 32 random bits."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"


def is_ours(name: str) -> bool:
    """Whether ``name`` has the form of the temporary and set-aside names this module makes."""
    return name.endswith((TMP_SUFFIX, OLD_SUFFIX)) and _OURS.fullmatch(name) is not None


def is_staged(name: str, final: str) -> bool:
    """Whether ``name`` has the form of a temporary made for a file or directory named ``final`` (a ``__pycache__``
    staged whole, say)."""
    match = _OURS.fullmatch(name) if name.endswith(TMP_SUFFIX) else None
    return match is not None and match["name"] == final


def set_aside_by_a_dead_run(path: Path) -> list[Path]:
    """The hidden names under which a run no longer running set the file ``path`` aside (its commit was killed),
    the newest first."""
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [
        found
        for match, found, info in _newest_first(path.parent, names)
        if match["kind"] == "old"
        and match["name"] == path.name
        and not stat.S_ISDIR(info.st_mode)  # a run sets aside only files
        and not _owner_running(int(match["pid"]), info.st_ctime)
    ]


def tmp_name(final: Path, token: str) -> Path:
    """The hidden name a new file is written under until the commit."""
    return final.with_name(f".{final.name}.{token}{TMP_SUFFIX}")


def write_name(final: Path, *, staged: Callable[[Path], bool] | None = None) -> Path:
    """Where to write ``final`` so that it appears whole: a new temporary beside it, or ``final``
    itself when it is already one of these hidden names (an output staged by a caller that
    renames it into place). Temporaries a killed run left for ``final`` are removed first: a
    regular file, or what ``staged`` accepts (an OCI layout staged as a directory); anything else
    of that name is the user's, and stays."""
    if _OURS.fullmatch(final.name):
        return final
    recover([final.parent], lambda path: path == final, staged=staged or is_regular_file)
    return tmp_name(final, new_token())


def is_regular_file(found: Path) -> bool:
    """Whether ``found`` is a regular file, not through a link (a temporary a run writes is one)."""
    try:
        return stat.S_ISREG(found.lstat().st_mode)
    except OSError:
        return False


def old_name(path: Path, token: str) -> Path:
    """The hidden name a replaced or removed file is kept under until the commit is complete."""
    return path.with_name(f".{path.name}.{token}{OLD_SUFFIX}")


@dataclass
class Commit:
    """The steps of one commit, each undoable until :meth:`finish`."""

    token: str
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _leftovers: list[Path] = field(default_factory=list)  # deleted by finish()
    signals: list[int] = field(default_factory=list)  # after :func:`one_commit`: SIGINT/SIGTERM held meanwhile
    undeleted: list[Path] = field(default_factory=list)  # after :func:`one_commit`: leftovers finish() could not delete
    then: list[Callable[[], None]] = field(default_factory=list)  # tidying after finish(), signals still held

    def install(self, tmp: Path, final: Path) -> None:
        """Move ``tmp`` to ``final``, keeping a file already there under its backup name."""
        backup = old_name(final, self.token)
        if os.path.isdir(final) and not os.path.islink(final):
            raise IsADirectoryError(21, "a directory where the pyc goes", str(final))
        had = moved = False
        try:
            os.link(final, backup, follow_symlinks=False)
            had = True
        except FileNotFoundError:
            pass
        except FileExistsError:  # this commit already replaced ``final``: its backup must not be lost
            raise
        except OSError:  # no hard links here (some file systems): rename the old file aside
            if os.path.lexists(final):
                os.rename(final, backup)
                had = moved = True
        try:
            os.replace(tmp, final)
        except BaseException:
            if moved:
                os.rename(backup, final)
            elif had:
                os.unlink(backup)
            raise
        if had:
            self._leftovers.append(backup)
            self._undo.append(lambda: os.replace(backup, final))
        else:
            self._undo.append(lambda: os.unlink(final))

    def place_directory(self, staged: Path, final: Path) -> None:
        """Rename the directory ``staged`` to ``final``, where nothing is; undone by renaming it back."""
        if os.path.lexists(final):
            raise FileExistsError(17, "something is already there", str(final))
        os.rename(staged, final)
        self._undo.append(lambda: os.rename(final, staged))

    def set_aside(self, path: Path) -> None:
        """Remove ``path`` (a file or a link, never a directory) from the tree, reversibly: rename it
        to its hidden name."""
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(21, "a directory, not a file to remove", str(path))
        aside = old_name(path, self.token)
        os.rename(path, aside)
        self._undo.append(lambda: _put_back(aside, path))
        self._leftovers.append(aside)

    def roll_back(self) -> None:
        """Undo every step, newest first; raise :class:`CommitFailed` naming what could not be undone."""
        failures: list[str] = []
        for undo in reversed(self._undo):
            try:
                undo()
            except OSError as exc:
                failures.append(f"{exc.filename}: {exc.strerror or exc}")
        self._undo.clear()
        if failures:
            raise CommitFailed(
                f"the commit failed and could not be undone entirely: {failures[0]}"
                + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
                + "; re-run the command to complete it"
            )
        for leftover in self._leftovers:
            if os.path.lexists(leftover):  # a backup that was a hard link: the original is back
                os.unlink(leftover)
        self._leftovers.clear()

    def finish(self) -> list[Path]:
        """Delete the backups and the set-aside files: the commit is complete. Return those that
        could not be deleted (the commit stands; they are hidden files to remove by hand)."""
        failed: list[Path] = []
        for path in self._leftovers:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:
                failed.append(path)
        self._leftovers.clear()
        self._undo.clear()
        return failed


@contextmanager
def one_commit(token: str) -> Iterator[Commit]:
    """The steps the block takes on the yielded :class:`Commit` are one commit.

    SIGINT and SIGTERM are held until it ends (afterwards in ``commit.signals``, for the caller to
    act on). An exception in the block undoes every step, newest first, and propagates (a step
    that cannot be undone raises :class:`CommitFailed` instead); without one, the backups and
    set-aside files are deleted (those that could not be are in ``commit.undeleted``) and the
    steps in ``commit.then`` run, signals still held.
    """
    commit = Commit(token)
    arrived: list[int] = []
    try:
        with held_signals() as arrived:
            _act_on_a_dropped_signal()
            try:
                yield commit
            except BaseException:
                commit.roll_back()
                raise
            commit.undeleted = commit.finish()
            for step in commit.then:
                step()
    finally:  # a commit that failed still says which signals it held (its error ends the run)
        commit.signals = arrived


def _put_back(aside: Path, path: Path) -> None:
    """Undo :meth:`Commit.set_aside`: ``aside`` back at ``path``, unless something was saved at ``path`` since (an
    editor writing the file anew): that is kept, and the older bytes set aside go with the commit's leftovers, as a
    save replaces what it saves over. Never renamed over a file, as a plain rename back would be."""
    try:
        os.link(aside, path, follow_symlinks=False)  # fails where anything is; the leftover name goes after
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system
        if not os.path.lexists(path):
            os.rename(aside, path)


def make_parents(path: Path) -> list[Path]:
    """Create the missing directories above ``path``; return those created, deepest first (to remove them)."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


_HEARD: list[int] = []  # what the handlers of signals_as_exceptions() were called for, while it is in force


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """SIGTERM raises :class:`~hatch_pyc._errors.Terminated` and SIGINT ``KeyboardInterrupt`` (unless the process
    ignores it) while the block runs, and each is remembered: if its exception is dropped (raised inside a weakref
    callback or a ``__del__``, which Python reports and ignores, so the run goes on), :func:`one_commit` raises it
    before its first step instead of committing a run its user stopped. Main thread only (the CLI's)."""

    def on_signal(signum: int, frame: object) -> None:
        _HEARD.append(signum)
        raise _exception_for(signum)

    _HEARD.clear()
    try:
        with _handled_by(on_signal):
            yield
    finally:
        _HEARD.clear()


def _act_on_a_dropped_signal() -> None:
    """Raise the exception of a signal heard before this commit (see :func:`signals_as_exceptions`): had it not
    been dropped, it would have ended the run already."""
    if _HEARD:
        raise _exception_for(_HEARD[0])


def _exception_for(signum: int) -> BaseException:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def held_signals() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM while the block runs; yield the list of those that arrived.

    Only the main thread can set handlers; elsewhere nothing is held (and nothing is listed).
    """
    arrived: list[int] = []

    def hold(signum: int, frame: object) -> None:
        arrived.append(signum)

    with _handled_by(hold):
        yield arrived


@contextmanager
def _handled_by(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while the block runs, then the handlers before it. A signal the process
    ignores (``nohup``, a background job's SIGINT) stays ignored; off the main thread, which cannot set handlers,
    nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    wanted = [sig for sig, before in previous.items() if before is not signal.SIG_IGN]
    for sig in wanted:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig in wanted:
            before = previous[sig]
            signal.signal(sig, before if before is not None else signal.SIG_DFL)


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, to about a second), where /proc says."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _dead_but_not_reaped(pid: int) -> bool:
    """Whether ``pid`` is a zombie (or dead), as /proc says: a container's PID 1 that never reaps keeps it so."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def _owner_running(pid: int, made: float) -> bool:
    """Whether the process that made a file at time ``made`` may still be running.

    A pid is reused (in a container, a retried build often gets the same one): a process that
    started after the file was made is not the one that made it.
    """
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, OverflowError):  # OverflowError: a number no process id can be
            return False
        except PermissionError:
            pass  # another user's process: alive
        if _dead_but_not_reaped(pid):  # a killed run whose parent has not waited for it yet (kill(0) succeeds)
            return False
    started = _process_start(pid)
    return started is None or started <= made + 1  # boot time is known to the second


@dataclass
class Recovery:
    """What clean-up after a killed run did."""

    restored: list[Path] = field(default_factory=list)  # set-aside files put back
    removed: list[Path] = field(default_factory=list)  # temporaries and obsolete backups deleted
    kept: list[Path] = field(default_factory=list)  # set-aside sources left alone: something took their place
    # Named like a leftover but holding what no run makes there (a directory set aside, a staged directory with
    # other things in it): left alone, and reported.
    strange: list[Path] = field(default_factory=list)

    def extend(self, other: Recovery) -> None:
        """Add what another clean-up did (a file both found is listed once)."""
        for mine, theirs in (
            (self.restored, other.restored),
            (self.removed, other.removed),
            (self.kept, other.kept),
            (self.strange, other.strange),
        ):
            mine.extend(path for path in theirs if path not in mine)


def recover(
    directories: Iterable[Path],
    planned: Callable[[Path], bool],
    *,
    set_aside: bool = False,
    staged: Callable[[Path], bool] | None = None,
    dry_run: bool = False,
    into: Recovery | None = None,
) -> Recovery:
    """Undo what a killed run left in ``directories``, touching only names such a run makes.

    ``planned(path)`` says whether this run writes ``path`` (a pyc, a RECORD, an output). Only
    leftovers of planned files are touched, and with ``set_aside`` (an in-place run) also the files
    such a run sets aside or backs up for any name: a source, a pyc, a stub. A temporary is removed
    (a staged directory, such as an OCI layout, with what it holds) if ``staged(it)`` says it is
    what a run makes under that name (no check without ``staged``). A set-aside file is put back
    when its name is free (that loses nothing); when the name is taken it is removed only if it
    holds the same bytes, or if it is the backup of a planned file (the run rewrites that file
    anyway); anything else is kept and reported. A run never sets a directory aside: one named so,
    like a temporary ``staged`` refuses, is left alone (in ``strange``). With ``dry_run`` nothing is
    changed: the result says what would be. A leftover that cannot be removed or put back raises
    :class:`OutputFailed` naming it and what the clean-up had done (into ``into``, when given: one clean-up made of
    several calls). Of several files set aside for one name, the newest is put back first.
    """
    recovery = Recovery() if into is None else into
    for directory in sorted(set(directories)):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for match, found, info in _newest_first(directory, names):
            original = directory / match["name"]
            if match["kind"] == "old" and set_aside:  # only a source, a pyc or a stub is ever set aside there
                ours = original.name.endswith(SET_ASIDE_SUFFIXES)
            else:
                ours = planned(original)
            if not ours or not os.path.lexists(found):
                continue  # not this run's business (a name like ours for a file it does not write), or gone since
            if _owner_running(int(match["pid"]), info.st_ctime):  # a rename or a link sets it; the mtime is the file's
                continue
            verdict = _verdict(found, original, match["kind"], info, planned=planned, staged=staged)
            try:
                if dry_run:
                    pass
                elif verdict == "removed":
                    _unlink(found)  # gone meanwhile (another run's clean-up): removed all the same
                elif verdict == "restored":
                    os.rename(found, original)
            except FileNotFoundError:
                continue  # gone meanwhile
            except OSError as exc:
                done = (
                    f" (it had put back {len(recovery.restored)} and removed {len(recovery.removed)} of them)"
                    if recovery.restored or recovery.removed
                    else ""
                )
                raise OutputFailed(
                    f"{found}: cannot {'put back' if verdict == 'restored' else 'remove'} this leftover of a killed "
                    f"run ({exc.strerror or exc}); the clean-up stopped there{done}, before the run's own work"
                ) from exc
            getattr(recovery, verdict).append(original if verdict == "restored" else found)
    return recovery


def _newest_first(directory: Path, names: Iterable[str]) -> list[tuple[re.Match[str], Path, os.stat_result]]:
    """Each name of the form a run gives, with its path and ``lstat``: by the name it was made for, the newest first
    (a rename or a link sets the ctime; the mtime is the file's own)."""
    found = []
    for name in names:
        match = _OURS.fullmatch(name)
        if match is not None:
            try:
                found.append((match, directory / name, (directory / name).lstat()))
            except OSError:
                continue
    return sorted(found, key=lambda item: (item[0]["name"], -item[2].st_ctime, item[1].name))


def _verdict(
    found: Path,
    original: Path,
    kind: str,
    info: os.stat_result,
    *,
    planned: Callable[[Path], bool],
    staged: Callable[[Path], bool] | None,
) -> str:
    """What :func:`recover` does with one leftover, by its rules: the name of the :class:`Recovery` list it goes in."""
    if kind == "tmp":
        return "strange" if staged is not None and not staged(found) else "removed"
    if stat.S_ISDIR(info.st_mode):
        return "strange"
    if not os.path.lexists(original):
        return "restored"
    if _same_bytes(found, original) or (planned(original) and original.suffix != ".py"):
        return "removed"
    return "kept"


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _unlink(path: Path) -> None:
    """Remove a leftover: a file or link, or a staged directory (an OCI layout) with what it holds."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
