"""A pool of long-lived compile workers running in the target interpreter.

Start-up is paid once per worker, not per file or per package; work is handed out in
byte-balanced batches, largest sources first, to whichever worker is free.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from hatch_pyc._cache import packs_dir
from hatch_pyc._errors import HatchPycError
from hatch_pyc._targets import Interpreter

WORKER_SCRIPT = Path(__file__).with_name("_worker.py")
# How a script of hatch-pyc's runs in a target: no site, no user site, no pycs written, and the script's directory
# dropped from sys.path before anything is imported, so no module beside it can shadow the standard library
# (``python *WORKER_FLAGS -c BOOT script.py``). Its code is read from its pyc in ``__pycache__`` when that is current
# for it (an installer compiled it for this CPython), as an import reads a module's (about 7 ms less per worker);
# else it is compiled from the source.
WORKER_FLAGS = ("-B", "-S", "-s")
# Compact pycs: compile() leaves out every instruction's column positions (PEP 657), as CPython does under
# ``-X no_debug_ranges`` (3.11+; 3.10 takes the option and has no such positions).
COMPACT_FLAGS = ("-X", "no_debug_ranges")
BOOT = (
    "import sys; del sys.path[0]; p = sys.argv[1]; from importlib.machinery import SourceFileLoader as L; "
    "exec(L('__main__', p).get_code('__main__'))"
)
BATCH_BYTES = 128 * 1024

Task = dict[str, Any]
Answer = dict[str, Any]


class WorkerCrashed(HatchPycError, RuntimeError):
    """A worker process died or answered nonsense."""


def worker_env() -> dict[str, str]:
    """The worker's environment: no PYTHON* settings from the caller, a fixed hash seed.

    Frozenset constants are marshalled in hash order on 3.10, so a fixed seed is what
    makes pycs byte-identical from run to run.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def make_batches(tasks: Sequence[tuple[int, Task]], batch_bytes: int = BATCH_BYTES) -> list[list[tuple[int, Task]]]:
    """Group ``(size, task)`` pairs into batches of about ``batch_bytes``, largest first."""
    ordered = sorted(tasks, key=lambda pair: -pair[0])
    batches: list[list[tuple[int, Task]]] = []
    current: list[tuple[int, Task]] = []
    total = 0
    for size, task in ordered:
        current.append((size, task))
        total += size
        if total >= batch_bytes:
            batches.append(current)
            current, total = [], 0
    if current:
        batches.append(current)
    return batches


class _Worker:
    def __init__(self, interpreter: Interpreter, cache: Path | None = None, compact: bool = False) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                interpreter.executable,
                *WORKER_FLAGS,
                *(COMPACT_FLAGS if compact else ()),
                "-c",
                BOOT,
                str(WORKER_SCRIPT),
                "--parent",  # an orphan stops at once (a parent killed with SIGKILL cannot end it)
                str(os.getpid()),
                *(("--cache", str(packs_dir(cache))) if cache is not None else ()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=worker_env(),
        )

    def ask(self, batch: list[Task]) -> list[Answer]:
        """The answers to ``batch``: one per task. Bytes a worker sends after its line (``"payload": n``: the next
        n bytes are that answer's) are put in the answer as ``"payload"``.

        A worker answers ``{"again": true}`` for the tasks of a batch it left once a module changed which
        one-character strings its process had interned (it then starts afresh: ``_worker.main``): they are asked
        again, until each has its answer. Each round answers at least the first task asked."""
        answers = self._ask(batch)
        again = [i for i, answer in enumerate(answers) if answer.get("again")]
        while again:
            for i, answer in zip(again, self._ask([batch[i] for i in again]), strict=True):
                answers[i] = answer
            again = [i for i in again if answers[i].get("again")]
        return answers

    def _ask(self, batch: list[Task]) -> list[Answer]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(batch).encode("utf-8") + b"\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                raise WorkerCrashed(f"compile worker stopped: {self._tail()}")
            try:
                answers: list[Answer] = json.loads(line)
            except ValueError:  # its line cut short: it died while writing it
                raise WorkerCrashed(f"compile worker stopped: {self._tail()}") from None
            for answer in answers:
                if answer.get("payload"):
                    size = answer["payload"]
                    answer["payload"] = self.proc.stdout.read(size)
                    if len(answer["payload"]) != size:
                        raise WorkerCrashed(f"compile worker stopped: {self._tail()}")
        except (BrokenPipeError, OSError) as exc:
            raise WorkerCrashed(f"compile worker stopped: {self._tail()}") from exc
        return answers

    def _tail(self) -> str:
        self.proc.poll()
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        code = self.proc.returncode
        return (text[-1] if text else "no message") + (f" (exit {code})" if code is not None else "")

    def end(self, kill: bool = False) -> None:
        """Tell the worker to stop (its input ends: it stores what it holds and exits), or kill it."""
        if kill:
            self.proc.kill()
        try:  # killed or not: a pipe left open is a ResourceWarning wherever it is collected
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, kill: bool = False) -> None:
        """Wait for the worker to exit (after :meth:`end`) and close what it leaves."""
        try:
            self.proc.wait(timeout=None if not kill else 10)
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()
            self.stderr.close()


def close_all(pool: Sequence[_Worker], kill: bool = False) -> None:
    """End every worker of ``pool``, then wait for them: they exit side by side."""
    for worker in pool:
        worker.end(kill=kill)
    for worker in pool:
        worker.wait(kill=kill)


def worker_count(sizes: Sequence[int], workers: int) -> int:
    """How many of ``workers`` processes a run of sources of ``sizes`` bytes uses (see :func:`_used`)."""
    return _used(workers, make_batches([(size, {}) for size in sizes]))


def _used(workers: int, batches: Sequence[object]) -> int:
    """No more processes than batches, and at least one."""
    return max(1, min(workers, len(batches)))


class Workers:
    """Worker processes started ahead of their tasks (they start while the caller prepares them), for one
    :func:`run_tasks`, which takes them over; :meth:`close` kills those it has not taken."""

    def __init__(self, interpreter: Interpreter, count: int, cache: Path | None = None, compact: bool = False) -> None:
        self.pool: list[_Worker] = []
        try:
            for _ in range(count):
                self.pool.append(_Worker(interpreter, cache, compact))
        except BaseException:
            self.close(kill=True)
            raise

    def close(self, kill: bool = False) -> None:
        pool, self.pool = self.pool, []
        close_all(pool, kill=kill)


def run_tasks(
    interpreter: Interpreter,
    tasks: Sequence[tuple[int, Task]],
    workers: int,
    on_answer: Callable[[Task, Answer], None],
    *,
    cache: Path | None = None,
    compact: bool = False,
    started: Workers | None = None,
) -> None:
    """Compile ``(size, task)`` pairs in ``workers`` processes; call ``on_answer`` per task.

    ``cache``: the compile cache's code directory (:func:`hatch_pyc._cache.open_cache`); the first
    answer of each batch then carries ``"cache": [hits, misses]``. ``compact``: the workers compile
    without column positions (:data:`COMPACT_FLAGS`). ``started``: processes started for these tasks
    beforehand (:func:`worker_count` of them; ``workers``, ``cache`` and ``compact`` are theirs), used
    and closed here.

    ``on_answer`` is called from pool threads, one at a time. On any failure or interrupt the
    workers are killed before the exception propagates.
    """
    if not tasks:
        if started is not None:
            started.close()
        return
    batches = make_batches(tasks)
    feed = Feed(interpreter, _used(workers, batches), on_answer, cache=cache, compact=compact, started=started)
    try:
        for batch in batches:
            feed.put([task for _, task in batch])
        feed.finish()
    except BaseException:
        feed.abort()
        raise


class Feed:
    """Batches of tasks handed to worker processes as they are made: a caller may still be making the rest (see
    :mod:`hatch_pyc._streamed`). A worker is started for each batch put while fewer than ``workers`` run, so a
    run of one batch starts one process. ``on_answer`` is called from pool threads, one at a time.

    :meth:`finish` once every batch is put (it raises the first failure), or :meth:`abort` (workers killed).
    """

    def __init__(
        self,
        interpreter: Interpreter,
        workers: int,
        on_answer: Callable[[Task, Answer], None],
        *,
        cache: Path | None = None,
        compact: bool = False,
        started: Workers | None = None,
        for_now: int | None = None,
    ) -> None:
        self._interpreter = interpreter
        self._most = max(1, workers)
        # Workers started while the caller still makes batches (see :meth:`all_put`): it needs a CPU of its own.
        self._now = self._most if for_now is None else max(1, min(for_now, self._most))
        self._cache = cache
        self._compact = compact
        self._on_answer = on_answer
        self._pending: queue.SimpleQueue[list[Task] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()  # held while on_answer runs
        self._stop = threading.Event()
        self.failures: list[BaseException] = []
        self._pool: list[_Worker] = []
        self._threads: list[threading.Thread] = []
        self._batches = 0
        self._closed = False
        if started is not None:
            pool, started.pool = started.pool, []
            for worker in pool:
                self._drive(worker)

    def _drive(self, worker: _Worker) -> None:
        self._pool.append(worker)
        thread = threading.Thread(target=self._run, args=(worker,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _run(self, worker: _Worker) -> None:
        try:
            while not self._stop.is_set():
                batch = self._pending.get()
                if batch is None or self._stop.is_set():
                    return
                answers = worker.ask(batch)
                with self.lock:
                    for task, answer in zip(batch, answers, strict=True):
                        self._on_answer(task, answer)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.failures.append(exc)
            self._stop.set()
            for _ in self._threads:  # wakes the others: they stop
                self._pending.put(None)

    def put(self, batch: list[Task]) -> None:
        """Hand ``batch`` to the first free worker (starting one if fewer than ``workers`` run)."""
        self._batches += 1
        if len(self._pool) < min(self._now, self._batches):
            self._drive(_Worker(self._interpreter, self._cache, self._compact))
        self._pending.put(batch)

    def all_put(self) -> None:
        """Every batch is put (the caller's CPU is free): up to ``workers`` processes for the batches not taken."""
        self._now = self._most
        while len(self._pool) < min(self._most, self._batches) and not self._pending.empty():
            self._drive(_Worker(self._interpreter, self._cache, self._compact))

    def finish(self) -> None:
        """Every batch is put: wait for every answer, end the workers; raise the first failure (workers killed)."""
        self.all_put()
        for _ in self._threads:
            self._pending.put(None)
        try:
            for thread in self._threads:
                while thread.is_alive():
                    thread.join(0.2)
        except BaseException:
            self.abort()
            raise
        self._close(kill=bool(self.failures))
        if self.failures:
            raise self.failures[0]

    def abort(self) -> None:
        """Kill the workers (what they wrote is the caller's to remove) and let their threads end."""
        self._stop.set()
        for _ in self._threads:
            self._pending.put(None)
        self._close(kill=True)
        for thread in self._threads:
            thread.join(10)

    def _close(self, kill: bool) -> None:
        if not self._closed:
            self._closed = True
            close_all(self._pool, kill=kill)
