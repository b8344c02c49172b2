"""Verify a compiled variant: import every module in fresh processes, compare with the sources.

A module that imports from source but fails sourceless (it reads its own source through
``inspect.getsource``, ``linecache`` or ``__file__``, or another module's docstring at ``-O 2``)
is what breaks a precompiled deployment where nobody looks; this finds it before production,
with the ``exclude`` patterns that fix it: found by putting sources back beside the pycs of a
scratch tree until the module imports, so every suggestion has been tried.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatch_pyc._compile import compile_tree
from hatch_pyc._options import PycOptions
from hatch_pyc._targets import Interpreter

_CHILD = r"""
import sys
# -c puts the working directory (the tree) first on sys.path: a module there named json or
# traceback would replace the ones this harness needs before any module is checked.
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
import importlib, json, os, traceback
# Results go to a private copy of stdout; whatever modules print (from Python or C) goes to stderr.
results = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
sys.path.insert(0, sys.argv[1])
inside = os.path.join(sys.argv[1], "")
for name in sys.argv[3:]:
    try:
        known = set(sys.modules)
        importlib.import_module(name)
        result = {"module": name, "ok": True}
        if sys.argv[2] == "loaded":  # the modules of the tree this import loaded, in load order
            result["loaded"] = [
                n for n, m in list(sys.modules.items())
                if n not in known and str(getattr(m, "__file__", None) or "").startswith(inside)
            ]
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from module code count as failures
        try:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        except BaseException:  # a module imported earlier broke traceback (exceptiongroup on 3.13+ did)
            try:
                text = str(exc)
            except BaseException:
                text = "<unprintable>"
            last = type(exc).__name__ + (": " + text if text else "")
        result = {"module": name, "ok": False, "error": last}
    results.write(json.dumps(result) + "\n")
    results.flush()
"""
_SKIP_NAMES = ("__main__", "setup", "conftest")


@dataclass(frozen=True)
class ModuleOutcome:
    """One module's import in one variant."""

    module: str
    ok: bool
    error: str | None = None
    loaded: tuple[str, ...] = ()  # with ``record_loaded``: the tree's modules the import loaded


@dataclass(frozen=True)
class SourceFix:
    """The ``exclude`` patterns that make one module import sourceless, and how sure verify is of them.

    ``checked``: the module imported with exactly these sources kept (else the patterns are the
    module's own source, the best guess). ``minimal``: dropping any one of them breaks the import
    again; false when the probe limit cut the search short, or when the set was found for another
    module and proven on this one without taking it apart (the set works either way).
    """

    module: str
    patterns: tuple[str, ...]
    checked: bool
    minimal: bool


@dataclass
class VerifyResult:
    """Modules that fail only without sources (the problem), those that fail either way, and those
    that fail sourceless with no source to compare with (a pyc without its ``.py``: verify cannot tell).
    """

    modules: int = 0
    # (module, error, exclude pattern): the first of the module's fix patterns
    sourceless_only: list[tuple[str, str, str]] = field(default_factory=list)
    both: list[tuple[str, str]] = field(default_factory=list)
    # (module, error, path of its pyc): fail sourceless, and the tree has no source to import instead
    no_source: list[tuple[str, str, str]] = field(default_factory=list)
    compiled_ok: int = 0
    fixes: dict[str, SourceFix] = field(default_factory=dict)  # every pattern a sourceless-only module needs
    probes: int = 0  # imports run to find and check the fixes

    @property
    def ok(self) -> bool:
        """No module fails only because its source is gone, or fails where that cannot be ruled out."""
        return not self.sourceless_only and not self.no_source


def find_modules(tree: Path) -> dict[str, str]:
    """``{dotted module name: path relative to tree}`` for every module a tree can import."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        here = Path(dirpath)
        rel_dir = here.relative_to(tree)
        parts = [] if str(rel_dir) == "." else list(rel_dir.parts)
        if any(not p.isidentifier() for p in parts):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and d.isidentifier())
        for name in sorted(filenames):
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("py", "pyc") or not stem.isidentifier() or stem in _SKIP_NAMES:
                continue
            dotted = ".".join(parts if stem == "__init__" else [*parts, stem])
            if dotted:
                found.setdefault(dotted, (rel_dir / name).as_posix() if parts else name)
    return dict(sorted(found.items()))


def import_all(
    interp: Interpreter,
    root: Path,
    modules: Sequence[str],
    *,
    workers: int,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    record_loaded: bool = False,
    write_bytecode: bool = False,
) -> dict[str, ModuleOutcome]:
    """Import each module in fresh child processes (batches, a pool, a timeout per module).

    A batch shares one process, so a module can see what the ones before it did (a package left
    half-imported, a patched standard library); ``batch_size=1`` imports each module alone.
    ``record_loaded`` lists, for each module that imports, the modules of ``root`` it loaded.
    ``write_bytecode`` lets the children cache the sources they compile (``-B`` otherwise).
    """
    pending: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    size = batch_size or max(1, min(25, len(modules) // (workers * 4) or 1))
    for start in range(0, len(modules), size):
        pending.put(list(modules[start : start + size]))
    outcomes: dict[str, ModuleOutcome] = {}
    lock = threading.Lock()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    mode = "loaded" if record_loaded else "-"
    groups: set[_ImportGroup] = set()  # running, so that an interrupted run can end them all

    def run_batch(batch: list[str]) -> None:
        while batch:
            command = [interp.executable, "-E", "-s", *([] if write_bytecode else ["-B"]), "-c", _CHILD]
            group = _ImportGroup([*command, str(root), mode, *batch], env, root)
            with lock:
                groups.add(group)
            try:
                for result, error in group.results(timeout):
                    if result is not None:
                        if result.get("module") not in batch:
                            continue  # a forked child of an import (or the module itself) wrote it: not ours
                        loaded = tuple(result.get("loaded", ()))
                        record(ModuleOutcome(result["module"], result["ok"], result.get("error"), loaded))
                        batch.remove(result["module"])
                        if not batch:
                            break
                    else:  # the process died, or hung, on the first module that has not reported
                        record(ModuleOutcome(batch.pop(0), False, error))
                        break
            finally:
                group.end()
                with lock:
                    groups.discard(group)

    def record(outcome: ModuleOutcome) -> None:
        with lock:
            outcomes[outcome.module] = outcome
            if progress:
                progress(len(outcomes), len(modules))

    def drive() -> None:
        while True:
            try:
                batch = pending.get_nowait()
            except queue.Empty:
                return
            run_batch(batch)

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(max(1, workers))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:  # Ctrl-C or SIGTERM in the main thread: the imports run in sessions of their own, so end them here
        with lock:
            for group in list(groups):
                group.kill()
    return outcomes


class _ImportGroup:
    """One import process in a session of its own, and everything it starts that stays in that session.

    Modules may fork at import (a server, a watchdog, a multiprocessing pool). Their children inherit
    the results pipe, so results are read as they come, never to end of file, and the process is
    judged by its own exit; the whole session's process group is killed on timeout and when the batch
    is done, so the timeout bounds every process in it and none outlives verify. A process that
    leaves the group (``setsid`` or ``setpgid``) is found by a token in its environment and killed
    too, unless it also changed or dropped its environment: only a cgroup could bound that.
    """

    _tokens = itertools.count()

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.token = f"{os.getpid()}-{next(self._tokens)}-{secrets.token_hex(4)}"
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**env, _TOKEN: self.token},
            cwd=cwd,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self.stream = self.proc.stdout
        os.set_blocking(self.stream.fileno(), False)
        self.buffer = b""
        self.eof = False

    def results(self, timeout: float) -> Iterator[tuple[dict[str, Any] | None, str]]:
        """``(result, "")`` for each module as it reports; then ``(None, why)`` if the process stops first.

        ``timeout`` is per result: the clock restarts with each one.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                yield None, f"timed out after {timeout:g} s"
                return
            if not self.eof:
                readable, _, _ = select.select([self.stream], [], [], min(left, 0.25))
                if readable:
                    got = False
                    for result in self._read():
                        got = True
                        yield result, ""
                    if got:
                        deadline = time.monotonic() + timeout
            else:
                time.sleep(min(left, 0.05))
            status = self._exited()
            if status is not None:
                # Everything it wrote is in the pipe now: read it without waiting for end of file
                # (a child it left behind may hold the pipe open).
                yield from ((result, "") for result in self._read())
                yield None, f"the interpreter exited ({status})"
                return

    def _read(self) -> Iterator[dict[str, Any]]:
        while not self.eof:
            try:
                chunk = os.read(self.stream.fileno(), 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                result = json.loads(line)
            except ValueError:
                continue  # not a line the import process wrote (a child it started may share the pipe)
            if isinstance(result, dict) and isinstance(result.get("module"), str):
                yield result

    def _exited(self) -> int | None:
        """The exit status, leaving the process a zombie: its pid (the group's id) cannot be reused yet."""
        if not hasattr(os, "waitid"):  # macOS before Python 3.13: reaped (the group keeps its id while it has members)
            return self.proc.poll()
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.returncode
        if info is None:
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    def kill(self) -> None:
        """SIGKILL the process group (the import process has not been reaped, so the id is still ours)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def end(self) -> None:
        """Kill the group and what left it, reap the import process, close the pipe."""
        self.kill()
        self.proc.wait()
        _kill_tagged(self.token)
        self.stream.close()


_TOKEN = "HATCH_PYC_VERIFY_IMPORT"


def _kill_tagged(token: str) -> None:
    """SIGKILL every process of this user whose environment carries ``token`` (Linux ``/proc``; else nothing)."""
    needle = f"{_TOKEN}={token}".encode()
    for _ in range(3):  # a process may fork while it is being killed
        found = False
        try:
            entries = os.listdir("/proc")
        except OSError:
            return
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    environ = handle.read()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)
        if not found:
            return


def exclude_pattern(relpath: str) -> str:
    return relpath[: -len("c")] if relpath.endswith(".pyc") else relpath


def verify_tree(
    tree: Path,
    interp: Interpreter,
    *,
    options: PycOptions | None = None,
    compiled: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_probes: int = 400,
    probes_per_module: int = 64,
) -> VerifyResult:
    """Compare imports of ``tree`` (sources) with its sourceless variant (made here unless ``compiled`` is given).

    Each module that fails only without sources is then imported again with sources put back
    (in a scratch copy: ``compiled`` is never modified) until a small set of them is found that
    lets it import: at most ``probes_per_module`` imports for one module, ``max_probes`` in all.
    """
    options = options or PycOptions(strip=True)
    workers = options.worker_count
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-verify-") as scratch:
        owned = compiled is None
        if compiled is None:
            compiled = Path(scratch) / "compiled"
            shutil.copytree(tree, compiled, symlinks=True)
            strip = PycOptions(
                levels=options.levels[:1],
                strip=True,
                exclude=options.exclude,
                on_error="keep-source",
                cache=options.cache,
                cache_dir=options.cache_dir,
            )
            compile_tree([compiled], strip, python=interp.executable)
        modules = find_modules(compiled)
        # Only a ``.py`` is a source to compare with: a tree compiled with ``--strip`` has pycs alone,
        # and importing those again would "prove" that each failure happens with sources too.
        source_modules = {name: rel for name, rel in find_modules(tree).items() if rel.endswith(".py")}
        names = list(modules)
        total = len(names) * 2

        def step(offset: int) -> Callable[[int, int], None] | None:
            return (lambda done, _total: progress(offset + done, total)) if progress else None

        after = import_all(interp, compiled, names, workers=workers, progress=step(0))
        failed = [n for n in names if not after[n].ok]
        before = import_all(
            interp, tree, [n for n in failed if n in source_modules], workers=workers, progress=step(len(names))
        )
        # "Needs its source" is a claim about the module, not about the batch it shared a process
        # with: confirm each such verdict with the module imported alone from both trees.
        suspects = [n for n in failed if n in before and before[n].ok]
        if suspects:
            alone_after = import_all(interp, compiled, suspects, workers=workers, batch_size=1)
            alone_before = import_all(interp, tree, suspects, workers=workers, batch_size=1, record_loaded=True)
            for name in suspects:
                after[name] = alone_after[name]
                before[name] = alone_before[name]
            failed = [n for n in failed if not after[n].ok]
        result = VerifyResult(modules=len(names), compiled_ok=len(names) - len(failed))
        needs = [n for n in failed if n in before and before[n].ok]
        if needs:
            from hatch_pyc._verify_fix import Prober, find_fixes, link_tree

            prober = Prober(
                interp,
                compiled if owned else link_tree(compiled, Path(scratch) / "probe"),
                tree=tree,
                modules=modules,
                source_modules=source_modules,
                workers=workers,
                limit=max_probes,
            )
            try:
                result.fixes = find_fixes(prober, {n: before[n].loaded for n in needs}, probes_per_module)
            finally:
                prober.place(())
            result.probes = prober.spent
    for name in failed:
        error = after[name].error or "failed"
        if name in result.fixes:
            result.sourceless_only.append((name, error, result.fixes[name].patterns[0]))
        elif name in before:
            result.both.append((name, error))
        else:
            result.no_source.append((name, error, modules[name]))
    return result
