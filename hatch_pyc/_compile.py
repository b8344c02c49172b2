"""Compile a plan: skip what is current, compile the rest in the target, then commit.

The run is two-phase so that nothing is lost: workers write every pyc under a temporary
name; only when all of them succeeded does the commit (:mod:`hatch_pyc._commit`) move them
into place, set the stripped sources aside and replace the RECORD of every distribution
whose files changed (:mod:`hatch_pyc._records`), all of it or none of it. A failure or an
interrupt before the commit removes the temporary files and leaves the tree exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._cache import open_cache, read_regular_file, record_run
from hatch_pyc._commit import (
    TMP_SUFFIX,
    Recovery,
    is_regular_file,
    is_staged,
    new_token,
    old_name,
    one_commit,
    recover,
    tmp_name,
)
from hatch_pyc._errors import (
    CommitFailed,
    CompileFailed,
    Interrupted,
    InvalidInput,
    OutputFailed,
    SourceError,
    first_problem,
)
from hatch_pyc._layout import is_cache_of
from hatch_pyc._options import PycOptions
from hatch_pyc._plan import CompilePlan, PlannedSource, unlisted_notes
from hatch_pyc._pool import Task, Workers, run_tasks, worker_count
from hatch_pyc._records import find_distributions, pycs_by_source, updated_record
from hatch_pyc._stubs import StubResult, make_stubs, merge, package_dirs, stubgen_missing, typed_packages, wants_stub
from hatch_pyc._targets import Interpreter

Progress = Callable[[int, int], None]
__all__ = ["TMP_SUFFIX", "CompileResult", "DeliveredPyc", "compile_plan", "compile_tree"]


@dataclass(frozen=True)
class DeliveredPyc:
    """A pyc a ``deliver`` plan hands back instead of writing: deflated as a zip member."""

    deflated: bytes
    crc: int
    size: int
    digest: str  # as RECORD writes it: sha256=...


@dataclass
class CompileResult:
    """What a run did, in numbers and names."""

    plan: CompilePlan
    compiled: list[PlannedSource] = field(default_factory=list)
    up_to_date: list[PlannedSource] = field(default_factory=list)
    kept_source: list[SourceError] = field(default_factory=list)
    stripped: list[Path] = field(default_factory=list)
    pyc_written: int = 0
    pyc_linked: int = 0
    seconds: float = 0.0
    delivered: dict[Path, DeliveredPyc] = field(default_factory=dict)  # final pyc path -> its bytes
    records: list[Path] = field(default_factory=list)  # RECORD files rewritten to match the tree
    leftovers: list[Path] = field(default_factory=list)  # set-aside files the commit could not delete
    recovery: Recovery = field(default_factory=Recovery)  # what a killed earlier run left, put right
    cache_hits: int = 0  # pycs whose code came from the compile cache
    cache_misses: int = 0  # pycs compiled (and stored) with the cache on
    notes: list[str] = field(default_factory=list)  # said to the user, not errors (a cache not used, why)
    stubs: list[Path] = field(default_factory=list)  # .pyi stubs written beside sourceless modules
    stub_cache_hits: int = 0  # modules whose stub (or stubgen's error) came from the compile cache

    @property
    def excluded(self) -> list[Path]:
        """Sources left alone because an ``exclude`` pattern matched."""
        return self.plan.excluded


def _code_unseen_in_header(plan: CompilePlan) -> bool:
    """Whether the run asks for code that a pyc's header cannot tell apart from what another run wrote: compact
    code (``--compact``, on a CPython with column positions) or another file name in it (``--ddir``). Such a pyc is
    current only if it holds what this run would write, code and all: the worker compares (with the cache, a
    lookup), where the header alone said "already current" to a pyc without ``--compact``."""
    options = plan.options
    return bool(options.ddir) or (options.compact and plan.interpreter.version >= (3, 11))


def _timestamp_current(item: PlannedSource, magic: bytes) -> bool:
    """Whether every timestamp pyc of ``item`` is valid for its source as it is now."""
    expected = magic + struct.pack("<III", 0, int(item.mtime) & 0xFFFFFFFF, item.size & 0xFFFFFFFF)
    return all(_starts_with(final, expected) for _, final in item.outputs)


def _starts_with(path: Path, expected: bytes) -> bool:
    """Whether the regular file at ``path`` starts with ``expected`` (a FIFO there cannot block)."""
    return read_regular_file(path, len(expected), follow_links=True) == expected


def _digest_of(path: Path) -> str | None:
    """The SHA-256 (hex) of the regular file at ``path``, or None if it is not one or cannot be read."""
    data = read_regular_file(path, -1, follow_links=True)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _check_unchanged(removed: dict[Path, Path | None], compiled_from: dict[str, str], token: str) -> None:
    """Each source a sourceless run removes must still hold the bytes its pyc was compiled from, or an edit made while
    the run went on would be lost with it. Read where the commit has set it aside (its hidden name), once every
    source is there: an editor saving by the source's path no longer reaches it. One that saved the file anew at its
    path since it was set aside counts as changed too. Raised inside the commit, which is then undone (and an undo
    never puts a source back over such a save)."""
    changed = [
        path
        for path, pyc in removed.items()
        if pyc is not None
        and (os.path.lexists(path) or _digest_of(old_name(path, token)) != compiled_from.get(str(path)))
    ]
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise InvalidInput(
            f"{changed[0]}: changed while it was compiled{more}; nothing was changed (run again to compile it as it is)"
        )


_tmp_name = tmp_name


def put_back_named(paths: Sequence[str | os.PathLike[str]]) -> Recovery:
    """Put back each named source that a killed run set aside (its commit had removed it from its path): before the
    plan, which could not find it, so that running the same command again completes that run's work."""
    recovery = Recovery()
    for given in paths:
        path = Path(given).absolute()
        # never through a link: the run writes nothing through one either (it would fail, having changed this)
        if path.name.endswith(".py") and not os.path.lexists(path) and not os.path.islink(path.parent):
            recover([path.parent], path.__eq__, staged=lambda _: False, into=recovery)  # no run makes a .py temporary
    return recovery


def would_recover(plan: CompilePlan) -> Recovery:
    """What :func:`compile_plan` would put right of a killed run's leftovers before its own work (nothing is changed):
    for a dry run."""
    return _recover(plan, dry_run=True)


def compile_plan(
    plan: CompilePlan, *, progress: Progress | None = None, on_recovery: Callable[[Recovery], None] | None = None
) -> CompileResult:
    """Carry out ``plan``; raise :class:`CompileFailed` (tree untouched) if a source fails.

    ``on_recovery`` hears what was put right of a killed run's leftovers as soon as it is done, before the run's
    own work: an error that ends the run afterwards (nothing of its own changed) does not hide it."""
    run = Run(plan, progress)
    if not plan.deliver:
        run.recover(on_recovery)
    todo = run.skip_current(run.plan.sources)
    run.open_cache(bool(todo))
    run.planned()
    stub_jobs = _stub_jobs(run.plan, todo)
    run.stub_sources = [source for job in stub_jobs for source in job.sources.values()]
    options = run.plan.options
    interp = run.plan.interpreter
    # The workers start now, while their tasks are made (in a warm run each takes about as long as the other).
    workers = (
        Workers(interp, worker_count([i.size for i in todo], options.worker_count), run.cache, options.compact)
        if todo
        else None
    )
    try:
        tasks = run.tasks_for(todo)
    except BaseException:
        if workers is not None:
            workers.close(kill=True)
        raise
    try:
        # Stubs are made beside the compile, by mypy's stubgen in a thread of their own (concurrent.futures, with
        # the logging it imports, is only imported then: about 5 ms of every run's start-up).
        background = None
        stub_result = StubResult()
        if stub_jobs:
            from concurrent.futures import ThreadPoolExecutor

            background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hatch-pyc-stubs")
        try:
            stubs_made = background.submit(_make_stubs, stub_jobs, interp, options) if background else None
            run_tasks(
                interp,
                tasks,
                options.worker_count,
                run.on_answer,
                cache=run.cache,
                compact=options.compact,
                started=workers,
            )
            if stubs_made is not None:
                stub_result = stubs_made.result()
        finally:
            if background is not None:
                background.shutdown(wait=True)
        run.commit(stub_result)
    finally:
        if workers is not None:
            workers.close(kill=True)  # those run_tasks did not take (it closes its own)
        run.clean_up()
    return run.outcome()


class Run:
    """One run of a plan, step by step: what :func:`compile_plan` does, for a caller that hands its tasks to the
    workers as the plan is made (:mod:`hatch_pyc._streamed`). ``plan`` may still be growing until :meth:`planned`.
    """

    def __init__(self, plan: CompilePlan, progress: Progress | None = None) -> None:
        self.started = time.perf_counter()
        self.plan = plan
        self.result = CompileResult(plan)
        self.progress = progress
        self.token = new_token()
        self.total: int | None = None  # known once the plan is whole
        self.skipped = 0  # found current before any task was made
        self.done = 0  # answered
        self.cache: Path | None = None
        self.cache_opened = False
        self.stub_sources: list[Path] = []
        self.staged: dict[Path, Path] = {}  # a directory -> the hidden __pycache__ its pycs are written in
        self.tmps: dict[Path, Path] = {}  # final pyc -> where a worker writes it
        self.by_src: dict[str, PlannedSource] = {}
        self.records: list[tuple[Path, Path]] = []  # (tmp, RECORD)
        self.errors: list[SourceError] = []
        self.write_errors: list[str] = []
        self.input_errors: list[str] = []
        self.written: list[tuple[Path, Path]] = []  # (tmp, final)
        self.compiled_from: dict[str, str] = {}  # a source a sourceless run removes -> the SHA-256 of its bytes
        self.strip: list[PlannedSource] = []
        self.stubs: dict[Path, tuple[Path, Path]] = {}
        self.arrived: list[int] = []
        mode = plan.options.invalidation_mode
        self.quick_check = (
            not plan.options.force
            and not plan.sourceless
            and mode == "timestamp"
            and plan.options.source_date_epoch is None
            and not _code_unseen_in_header(plan)
        )

    def recover(self, on_recovery: Callable[[Recovery], None] | None) -> None:
        """Put right what a killed run left (see :func:`_recover`); plan again if that put sources back."""
        self.result.recovery = _recover(self.plan)
        if on_recovery is not None:
            on_recovery(self.result.recovery)
        if self.result.recovery.restored and self.plan.replan is not None:
            self.plan = self.result.plan = self.plan.replan()  # the restored sources are to be compiled too

    def skip_current(
        self, items: Sequence[PlannedSource], with_pycache: frozenset[str] | None = None
    ) -> list[PlannedSource]:
        """The sources of ``items`` to compile: those whose timestamp pycs are current are counted as up to date.
        ``with_pycache``: the directories known to hold a ``__pycache__`` (default: the plan's, as it is now)."""
        if not self.quick_check:
            return list(items)
        if with_pycache is None:
            with_pycache = _with_pycache(self.plan)
        todo = []
        magic = self.plan.interpreter.magic
        for item in items:
            if _may_have_pycache(with_pycache, item) and _timestamp_current(item, magic):
                self.result.up_to_date.append(item)
                self.skipped += 1
            else:
                todo.append(item)
        return todo

    def planned(self) -> None:
        """The plan is whole: progress can be told, and the notes that depend on it made."""
        self.total = len(self.plan.sources)
        self.result.notes.extend(unlisted_notes(self.plan))
        if self.plan.options.compact and self.plan.interpreter.version < (3, 11):
            self.result.notes.append(
                f"CPython {self.plan.interpreter.minor} pycs have no column positions: compact changes nothing"
            )
        if self.progress:
            self.progress(self.skipped + self.done, self.total)

    def open_cache(self, wanted: bool) -> None:
        """Open the compile cache (once) if there is anything to compile."""
        if self.cache_opened or not wanted:
            return
        self.cache_opened = True
        options = self.plan.options
        self.cache, why_not = open_cache(options.cache, options.cache_dir)
        if why_not:
            self.result.notes.append(why_not)

    def tasks_for(self, todo: Sequence[PlannedSource]) -> list[tuple[int, Task]]:
        """The workers' tasks for ``todo`` (where each pyc is written is kept for the commit)."""
        staged, tmps, tasks, by_src = _tasks(self.plan, todo, self.token)
        self.staged.update(staged)
        self.tmps.update(tmps)
        self.by_src.update(by_src)
        return tasks

    def on_answer(self, task: Task, answer: dict[str, object]) -> None:
        """A worker's answer to ``task`` (called from pool threads, one at a time)."""
        result = self.result
        counts = answer.get("cache")
        if isinstance(counts, list):
            result.cache_hits += counts[0]
            result.cache_misses += counts[1]
        item = self.by_src[task["src"]]
        if "current" in answer:
            result.up_to_date.append(item)
        elif "error" in answer:
            err = answer["error"]
            assert isinstance(err, dict)
            if err.get("write"):
                message = str(err["msg"])
                hidden = self.staged.get(item.source.parent)
                if hidden is not None:  # named as the __pycache__ it was staged for
                    message = message.replace(os.fspath(hidden), os.fspath(hidden.parent / "__pycache__"), 1)
                self.write_errors.append(message)
            elif err.get("input"):
                self.input_errors.append(f"{item.archive}: {err['msg']}")
            else:
                self.errors.append(SourceError(str(item.source), err.get("lineno"), err["kind"], err["msg"]))
        else:
            outcomes = answer["ok"]
            assert isinstance(outcomes, list)
            finals = dict(item.outputs)
            payload = answer.get("payload", b"")  # the delivered pycs' bytes, one after another
            assert isinstance(payload, bytes)
            start = 0
            for level, how, *extra in outcomes:
                if how == "delivered":
                    (packed,) = extra
                    end = start + packed["length"]
                    result.delivered[finals[level]] = DeliveredPyc(
                        payload[start:end], packed["crc"], packed["size"], packed["digest"]
                    )
                    start = end
                    result.pyc_written += 1
                    continue
                self.written.append((self.tmps[finals[level]], finals[level]))
                if how == "linked":
                    result.pyc_linked += 1
                else:
                    result.pyc_written += 1
            result.compiled.append(item)
            if "source" in answer:
                self.compiled_from[task["src"]] = str(answer["source"])
        self.done += 1
        if self.progress and self.total is not None:
            self.progress(self.skipped + self.done, self.total)

    def commit(self, stub_result: StubResult) -> None:
        """Every answer is in: check them, then write the RECORDs and commit (all or nothing)."""
        plan = self.plan
        options = plan.options
        result = self.result
        if self.cache is not None:
            record_run(self.cache, result.cache_hits, result.cache_misses)
        if self.input_errors:
            raise InvalidInput(first_problem(sorted(self.input_errors)))
        if self.write_errors:
            raise OutputFailed(f"cannot write pycs in {sorted(self.write_errors)[0]}; nothing was changed")
        errors = self.errors
        errors.extend(stub_result.errors)  # a module without its stub keeps its source, like one that failed
        errors.sort(key=lambda e: e.path)
        if errors and options.on_error == "fail":
            raise CompileFailed(errors)
        failed = {e.path for e in errors}
        written = self.written
        if stub_result.failed:  # its pyc was written, but the module stays as it was
            no_stub = stub_result.failed
            unwanted = {final for i in result.compiled if str(i.source) in no_stub for _, final in i.outputs}
            result.pyc_written -= sum(final in unwanted for _, final in written)
            written = self.written = [(tmp, final) for tmp, final in written if final not in unwanted]
            result.compiled = [i for i in result.compiled if str(i.source) not in no_stub]
        strip = self.strip = [i for i in result.compiled if str(i.source) not in failed] if plan.remove_sources else []
        self.stubs = _write_stubs(strip, stub_result, self.token)
        written.extend(self.stubs.values())
        removed = _removals(strip)
        if not plan.deliver and (written or removed):
            self.records = _new_records(
                plan, written, removed, self.token, {src: final for src, (_, final) in self.stubs.items()}
            )
        # The pycs of a module that failed part-way (kept as source after one of its levels was written) or whose
        # stub failed: removed first, so that none arrives with the staged directory it is in.
        moved = {tmp for tmp, _ in written}
        _remove_quietly(tmp for tmp in self.tmps.values() if tmp not in moved)
        self.arrived, result.leftovers = _commit(
            self.token, written, removed, self.records, self.staged, compiled_from=self.compiled_from
        )
        self.tmps = {}  # committed: each was moved into place or removed just before
        result.kept_source = errors
        result.stripped = [item.source for item in strip]
        result.stub_cache_hits = stub_result.cache_hits

    def clean_up(self) -> None:
        """Whatever still has a temporary name of this run (the token is ours) when nothing was committed."""
        _remove_quietly(self.tmps.values())
        _remove_quietly(tmp for tmp, _ in self.records)
        _remove_quietly(_tmp_name(s.with_suffix(".pyi"), self.token) for s in self.stub_sources)
        for directory in self.staged.values():  # placed by the commit (gone from here), else emptied just now
            try:
                directory.rmdir()
            except OSError:
                pass  # gone: renamed into place

    def outcome(self) -> CompileResult:
        """The committed run's result (raises :class:`Interrupted` if a signal arrived during the commit)."""
        result = self.result
        plan = self.plan
        if result.stripped and not plan.deliver:  # a source saved anew after the commit's last look at it
            saved = [source for source in result.stripped if os.path.lexists(source)]
            if saved:
                kept = set(saved)
                result.stripped = [source for source in result.stripped if source not in kept]
                more = f" (and {len(saved) - 1} more)" if len(saved) > 1 else ""
                result.notes.append(
                    f"{saved[0]}: saved again while the run removed it{more}; kept beside its pyc, which it hides "
                    "(run again to compile it as it is)"
                )
        result.stubs = sorted(final for _, final in self.stubs.values())
        result.records = [record for _, record in self.records]
        result.compiled.sort(key=lambda i: i.source)
        result.seconds = time.perf_counter() - self.started
        if self.arrived:
            raise Interrupted(self.arrived[0], result)
        return result


@dataclass(frozen=True)
class _StubJob:
    """The modules under one import root that get a stub, and the packages' ``__init__.py`` around them."""

    import_root: Path
    sources: dict[str, Path]  # import-root-relative name -> the source, for each module to stub
    context: dict[str, Path]  # the same, for the ``__init__.py`` of their packages


def _stub_jobs(plan: CompilePlan, todo: Sequence[PlannedSource]) -> list[_StubJob]:
    """Which sources of an in-place sourceless run get a ``.pyi`` stub (``PycOptions.stubs``; off by default).

    A ``.pyi`` (or anything) already at the stub's name is kept and wins: no stub is made for that module.
    """
    mode = plan.options.stubs or "none"
    if mode == "none" or not plan.remove_sources or plan.deliver:
        return []
    by_root: dict[Path, dict[str, Path]] = {}
    for item in todo:
        root = Path(str(item.source)[: -len(item.relpath)])
        by_root.setdefault(root, {})[item.relpath] = item.source
    jobs = []
    for root, modules in sorted(by_root.items()):
        markers = (f"{d}/py.typed" for d in package_dirs(modules))
        typed = typed_packages(m for m in markers if os.path.isfile(root / m))
        wanted = {
            rel: src
            for rel, src in modules.items()
            if wants_stub(rel, mode, typed) and not os.path.lexists(src.with_suffix(".pyi"))
        }
        if not wanted:
            continue
        inits = (f"{directory}/__init__.py" for directory in package_dirs(wanted))
        context = {init: root / init for init in inits if init not in wanted and (root / init).is_file()}
        jobs.append(_StubJob(root, wanted, context))
    if jobs:
        missing = stubgen_missing()
        if missing is not None:
            first = min(jobs[0].sources.values())
            raise InvalidInput(f"{first}: its type stub cannot be made: {missing}; or leave out --stubs")
    return jobs


def _make_stubs(jobs: Sequence[_StubJob], interp: Interpreter, options: PycOptions) -> StubResult:
    """The stubs of every job, by the source's path (``str``); errors name the source's path."""
    results = []
    for job in jobs:
        sources = {}
        for rel, path in sorted({**job.context, **job.sources}.items()):
            try:
                sources[rel] = path.read_bytes()
            except OSError as exc:
                raise InvalidInput(f"{path}: cannot read it for its type stub ({exc.strerror})") from exc
        names = {rel: str(path) for rel, path in job.sources.items()}
        results.append(make_stubs(sources, names, interp, options, f"{job.import_root}{os.sep}"))
    return merge(results)


def _write_stubs(strip: Sequence[PlannedSource], stubs: StubResult, token: str) -> dict[Path, tuple[Path, Path]]:
    """Write the stub of each stripped module that has one under a temporary name; source -> (tmp, final)."""
    written: dict[Path, tuple[Path, Path]] = {}
    for item in strip:
        data = stubs.stubs.get(str(item.source))
        final = item.source.with_suffix(".pyi")
        if data is None or os.path.lexists(final):  # a .pyi written meanwhile (while stubgen ran) wins too
            continue
        tmp = _tmp_name(final, token)
        try:
            mode = stat.S_IMODE(os.stat(item.source).st_mode) & 0o666
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
            written[item.source] = (tmp, final)
            with open(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            raise OutputFailed(f"{final}: cannot write the type stub ({exc.strerror}); nothing was changed") from exc
    return written


def _tasks(
    plan: CompilePlan, todo: Sequence[PlannedSource], token: str
) -> tuple[dict[Path, Path], dict[Path, Path], list[tuple[int, Task]], dict[str, PlannedSource]]:
    """The workers' tasks for ``todo``: the staged ``__pycache__`` directories (:func:`_staging`), where each pyc is
    written (final -> temporary), the ``(size, task)`` pairs, and each task's source by its ``src``."""
    options = plan.options
    mode = options.invalidation_mode
    code_unseen = _code_unseen_in_header(plan)
    staged = _staging(plan, todo, token)
    tmps: dict[Path, Path] = {}
    if not plan.deliver:  # a delivered pyc comes back in the answer: it has no temporary file
        by_dir = {os.fspath(directory): hidden for directory, hidden in staged.items()}
        tmps = {final: _tmp_of(item, final, by_dir, token) for item in todo for _, final in item.outputs}
    by_src: dict[str, PlannedSource] = {}
    tasks: list[tuple[int, Task]] = []
    for item in todo:
        task: Task = {
            "src": str(item.source),
            "dfile": item.dfile,
            "mode": mode,
            "outs": [[level, str(tmps[final]) if tmps else None] for level, final in item.outputs],
            "verify": plan.sourceless,
        }
        if plan.deliver:
            task["deliver"] = True
        if item.archive is not None:
            task.update(archive=str(item.archive), member=item.member, digest=item.digest, size=item.size)
            if item.place is not None:
                task["place"] = item.place
            task["mtime"] = item.mtime
        if options.source_date_epoch is not None:
            task["mtime"] = options.source_date_epoch
        if (mode != "timestamp" or code_unseen) and not options.force and not plan.sourceless:
            task["check"] = [str(final) for _, final in item.outputs]
            if code_unseen:
                task["whole"] = True
        by_src[task["src"]] = item
        tasks.append((item.size, task))
    return staged, tmps, tasks, by_src


def _dir_of(item: PlannedSource) -> str:
    """``str(item.source.parent)``, without making a Path (and hashing it) for each of thousands of sources."""
    return os.path.dirname(item.source) or "."


def _with_pycache(plan: CompilePlan) -> frozenset[str] | None:
    """The directories that held a ``__pycache__`` when the plan was made, as :func:`_dir_of` names them (None: not
    known)."""
    return None if plan.with_pycache is None else frozenset(map(os.fspath, plan.with_pycache))


def _may_have_pycache(with_pycache: frozenset[str] | None, item: PlannedSource) -> bool:
    """Whether the directory of ``item``'s source held a ``__pycache__`` when the plan was made (if not known: yes)."""
    return with_pycache is None or _dir_of(item) in with_pycache


def _staging(plan: CompilePlan, todo: Sequence[PlannedSource], token: str) -> dict[Path, Path]:
    """Each directory whose ``__pycache__`` the run creates -> the hidden directory (a temporary name of this run)
    its pycs are written in: the commit renames it into place, one step for the directory instead of one per pyc.
    """
    if plan.deliver or plan.sourceless:
        return {}
    staged: dict[Path, Path] = {}
    seen: set[str] = set()
    with_pycache = _with_pycache(plan)
    for item in todo:
        name = _dir_of(item)
        if name in seen:
            continue
        seen.add(name)
        directory = item.source.parent
        if not _may_have_pycache(with_pycache, item) or not os.path.lexists(directory / "__pycache__"):
            staged[directory] = tmp_name(directory / "__pycache__", token)
    return staged


def _tmp_of(item: PlannedSource, final: Path, staged: dict[str, Path], token: str) -> Path:
    """Where a worker writes the pyc ``final`` of ``item``: in its staged ``__pycache__`` (``staged`` by
    :func:`_dir_of`), else under a temporary name beside it."""
    hidden = staged.get(_dir_of(item))
    return hidden / final.name if hidden is not None else tmp_name(final, token)


def _removals(strip: Sequence[PlannedSource]) -> dict[Path, Path | None]:
    """What stripping removes: each source (-> its sourceless pyc) and its stale ``__pycache__`` entries."""
    removed: dict[Path, Path | None] = {}
    listed: dict[Path, list[str]] = {}
    for item in strip:
        ((_, pyc),) = item.outputs
        removed[item.source] = pyc
        cache = item.source.parent / "__pycache__"
        if cache not in listed:
            try:
                listed[cache] = sorted(os.listdir(cache)) if not cache.is_symlink() else []
            except OSError:
                listed[cache] = []
        for entry in listed[cache]:
            if is_cache_of(entry, item.source.stem) and not (cache / entry).is_dir():  # a file (or a link)
                removed[cache / entry] = None
    return removed


def _new_records(
    plan: CompilePlan,
    written: list[tuple[Path, Path]],
    removed: dict[Path, Path | None],
    token: str,
    stubs: dict[Path, Path] | None = None,
) -> list[tuple[Path, Path]]:
    """Write the new RECORD of each distribution whose files the run changes, under a temporary name.

    ``stubs``: the ``.pyi`` written for a stripped source, listed where its source was, after its pyc.
    """
    hashed = plan.sourceless
    written_by_key = {os.path.normpath(final): (final, tmp, hashed) for tmp, final in written}
    removed_by_key = {os.path.normpath(path): pyc for path, pyc in removed.items()}
    beside = {os.path.normpath(source): [stub] for source, stub in (stubs or {}).items()}
    cached = pycs_by_source(written_by_key)
    records: list[tuple[Path, Path]] = []
    try:
        for dist in find_distributions(root.import_root for root in plan.roots):
            text = updated_record(dist, written_by_key, removed_by_key, cached, beside)
            if text is None:
                continue
            if dist.dist_info.is_symlink():
                raise InvalidInput(
                    f"{dist.dist_info}: a symbolic link; its RECORD would have to be rewritten through it "
                    "(replace the link with the directory, or exclude the distribution's files)"
                )
            tmp = _tmp_name(dist.record, token)
            mode = stat.S_IMODE(os.stat(dist.record).st_mode)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
            records.append((tmp, dist.record))
            with open(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
                handle.write(text)
    except BaseException as exc:
        _remove_quietly(tmp for tmp, _ in records)
        if not isinstance(exc, OSError):
            raise
        where = exc.filename or (records[-1][1] if records else "RECORD")
        raise OutputFailed(f"{where}: cannot write the new RECORD ({exc.strerror}); nothing was changed") from exc
    return records


def _commit(
    token: str,
    written: list[tuple[Path, Path]],
    removed: dict[Path, Path | None],
    records: list[tuple[Path, Path]],
    staged: dict[Path, Path] | None = None,
    *,
    compiled_from: dict[str, str] | None = None,
) -> tuple[list[int], list[Path]]:
    """Move pycs into place, set removed files aside, replace RECORDs: all or none.

    ``staged``: a directory -> the hidden directory its new ``__pycache__`` was written as (see :func:`_staging`),
    renamed into place whole. ``compiled_from``: each removed source -> the SHA-256 of what its pyc was compiled
    from, which it must still hold once set aside (:func:`_check_unchanged`). Return the signals held meanwhile and
    the set-aside files that could not be deleted at the end.
    """
    staging = {os.fspath(hidden): directory / "__pycache__" for directory, hidden in (staged or {}).items()}
    singly: list[tuple[Path, Path]] = []  # moved one by one
    together: dict[str, list[tuple[Path, Path]]] = {}  # moved with their staged directory
    for tmp, final in written:
        where = os.path.dirname(tmp)
        (together.setdefault(where, []) if where in staging else singly).append((tmp, final))
    try:
        with one_commit(token) as commit:
            for hidden, pycs in together.items():
                cache = staging[hidden]
                try:
                    commit.place_directory(Path(hidden), cache)
                except OSError as exc:  # made meanwhile (by an import): its pycs are moved into it one by one
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    if not stat.S_ISDIR(os.lstat(cache).st_mode):
                        raise NotADirectoryError(20, "not a directory where pycs go", str(cache)) from None
                    singly.extend(pycs)
            for tmp, final in singly:
                commit.install(tmp, final)
            for path in removed:
                commit.set_aside(path)
            _check_unchanged(removed, compiled_from or {}, token)
            for tmp, record in records:
                commit.install(tmp, record)
            commit.then.append(lambda: _remove_empty_caches(removed))
    except CommitFailed:
        raise  # undoing failed too: its message names what is left to put right
    except OSError as exc:
        where = exc.filename or "the tree"
        doing = "remove it" if exc.filename and Path(exc.filename) in removed else "replace it"
        raise OutputFailed(
            f"{where}: cannot {doing} ({exc.strerror or exc}); the commit was undone, nothing was changed"
        ) from exc
    return commit.signals, commit.undeleted


def _remove_empty_caches(removed: dict[Path, Path | None]) -> None:
    """Remove the ``__pycache__`` directories the commit emptied of stale pycs."""
    for cache in sorted({path.parent for path, pyc in removed.items() if pyc is None}):
        try:
            cache.rmdir()
        except OSError:
            pass  # not empty: other modules' pycs remain


def _recover(plan: CompilePlan, *, dry_run: bool = False) -> Recovery:
    """Put right what a killed run left in the directories this run writes to (with ``dry_run``: say what would be).

    In the trees the user named, by the rules of :func:`hatch_pyc._commit.recover`: a killed run's temporaries are
    removed when they were made for a file such a run writes there (a pyc, a ``__pycache__``, a stub), whether this
    run writes it or not (a module stripped since has no source left to plan, and its pyc's temporary would stay
    for ever), and its set-aside sources, pycs and stubs are put back or removed. Beside a file the user named (not
    in a named tree), only the leftovers of that module (its source, sourceless pyc and stub) and of this run's
    outputs are touched, and in each import root's ``.dist-info`` (a directory, never a link; the walk does not go
    into one) only those of the RECORD: nothing else a run writes there. Of the
    walked directories, only those whose listing showed such a name are listed again, with every ``__pycache__``
    (the walk does not list them).
    """
    caches: Iterable[Path] = plan.directories
    directories = set(plan.directories)
    if plan.with_leftovers is not None and plan.with_pycache is not None:  # what the walk saw
        caches, directories = plan.with_pycache, set(plan.with_leftovers)
    trees = tuple(os.path.join(root.walk, "") for root in plan.roots if not root.walk.is_file())
    named = {  # each named module's source, its sourceless pyc and its stub
        os.path.normpath(root.walk.with_suffix(suffix))
        for root in plan.roots
        if root.walk.is_file()
        for suffix in (".py", ".pyc", ".pyi")
    }
    for directory in caches:
        cache = directory / "__pycache__"
        if cache.is_dir() and not cache.is_symlink():
            directories.add(cache)
    metadata_dirs = {root.import_root for root in plan.roots}
    directories = {d for d in directories if not (d.name.endswith(".dist-info") and d.parent in metadata_dirs)}
    in_trees = {d for d in directories if os.path.join(d, "").startswith(trees)}
    beside_named = directories - in_trees
    records: set[str] = set()  # in the distributions' metadata, only a RECORD is ever written
    for root in plan.roots:
        try:
            with os.scandir(root.import_root) as entries:
                metadata = [
                    e.path for e in entries if e.name.endswith(".dist-info") and e.is_dir(follow_symlinks=False)
                ]
        except OSError:
            continue
        records.update(os.path.normpath(os.path.join(path, "RECORD")) for path in metadata)
    outputs: set[str] | None = None  # made at the first name looked up (most runs find nothing to put right)

    def is_planned(path: Path) -> bool:
        nonlocal outputs
        if outputs is None:
            outputs = _planned(plan)
        return os.path.normpath(path) in outputs

    def any_pyc(path: Path) -> bool:
        return path.name.endswith((".pyc", ".pyi")) or path.name == "__pycache__" or is_planned(path)

    recovery = recover(in_trees, any_pyc, set_aside=True, staged=_made_by_a_run, dry_run=dry_run)
    recover(
        beside_named,
        lambda path: os.path.normpath(path) in named or is_planned(path),
        staged=_made_by_a_run,
        dry_run=dry_run,
        into=recovery,
    )
    recover(
        {Path(record).parent for record in records},
        lambda path: os.path.normpath(path) in records,
        staged=_made_by_a_run,
        dry_run=dry_run,
        into=recovery,
    )
    return recovery


def _made_by_a_run(found: Path) -> bool:
    """Whether ``found`` (a temporary's name, its process gone) is what a run makes under that name: a regular file,
    or a ``__pycache__`` staged whole holding nothing but pycs and their temporaries. Anything else (a link, a
    directory of another name, a staged ``__pycache__`` holding a user's file) is the user's, and is left alone."""
    if not is_staged(found.name, "__pycache__"):
        return is_regular_file(found)
    try:
        if not stat.S_ISDIR(found.lstat().st_mode):
            return False
        with os.scandir(found) as entries:
            return all(e.is_file(follow_symlinks=False) and e.name.endswith((".pyc", TMP_SUFFIX)) for e in entries)
    except OSError:
        return False


def _planned(plan: CompilePlan) -> set[str]:
    """What the run may write, normalised: each pyc, each ``__pycache__`` (staged as a directory, see :func:`_staging`)
    and each type stub."""
    planned: set[str] = set()
    stubs = plan.remove_sources and plan.options.stubs not in (None, "none")
    for item in plan.sources:
        for _, final in item.outputs:
            planned.add(os.path.normpath(final))
        planned.add(os.path.normpath(item.source.parent / "__pycache__"))
        if stubs:
            planned.add(os.path.normpath(item.source.with_suffix(".pyi")))  # its type stub
    return planned


def _remove_quietly(paths: Iterable[Path]) -> None:
    """Best-effort clean-up on the way out of a failed run: never hides the error that ended it
    (a temporary that cannot be removed now is removed by the next run)."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def compile_tree(
    paths: Sequence[str | os.PathLike[str]],
    options: PycOptions | None = None,
    *,
    python: str | None = None,
    stdlib: bool = False,
    progress: Progress | None = None,
    allow_other_python: bool = False,
) -> CompileResult:
    """Compile package trees, site-packages or venvs in place for one target CPython.

    Raises :class:`~hatch_pyc.Interrupted` (after completing it) when SIGINT or SIGTERM arrived
    during the commit.
    """
    from hatch_pyc._streamed import compile_streamed

    put_back = put_back_named(paths)
    result = compile_streamed(
        paths,
        options or PycOptions(),
        python=python,
        stdlib=stdlib,
        allow_other_python=allow_other_python,
        progress=progress,
    )
    put_back.extend(result.recovery)
    result.recovery = put_back
    return result
