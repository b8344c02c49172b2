"""Compile a plan: skip what is current, compile the rest in the target, commit, then strip.

The run is two-phase so that nothing is lost: workers write every pyc under a temporary
name; only when all of them succeeded are they renamed into place, and only after that are
sources removed (``strip``). A failure or an interrupt before the commit removes the
temporary files and leaves the tree exactly as it was.
"""

from __future__ import annotations

import base64
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._errors import CompileFailed, InvalidInput, OutputFailed, SourceError, first_problem
from hatch_pyc._layout import is_cache_of
from hatch_pyc._options import PycOptions
from hatch_pyc._plan import CompilePlan, PlannedSource, plan_compile
from hatch_pyc._pool import Task, run_tasks

Progress = Callable[[int, int], None]
TMP_SUFFIX = ".hatch-pyc-tmp"


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

    @property
    def excluded(self) -> list[Path]:
        """Sources left alone because an ``exclude`` pattern matched."""
        return self.plan.excluded


def _timestamp_current(item: PlannedSource, magic: bytes) -> bool:
    """Whether every timestamp pyc of ``item`` is valid for its source as it is now."""
    expected = magic + struct.pack("<III", 0, int(item.mtime) & 0xFFFFFFFF, item.size & 0xFFFFFFFF)
    for _, final in item.outputs:
        try:
            with open(final, "rb") as handle:
                if handle.read(16) != expected:
                    return False
        except OSError:
            return False
    return True


def _tmp_name(final: Path, token: str) -> Path:
    return final.with_name(f".{final.name}.{token}{TMP_SUFFIX}")


def compile_plan(plan: CompilePlan, *, progress: Progress | None = None) -> CompileResult:
    """Carry out ``plan``; raise :class:`CompileFailed` (tree untouched) if a source fails."""
    started = time.perf_counter()
    options = plan.options
    interp = plan.interpreter
    result = CompileResult(plan)
    mode = options.invalidation_mode
    token = f"{os.getpid()}-{os.urandom(4).hex()}"

    if not plan.deliver:
        _remove_stale_temporaries(plan)
    todo: list[PlannedSource] = []
    for item in plan.sources:
        quick_check = not options.force and not plan.sourceless and mode == "timestamp"
        if quick_check and options.source_date_epoch is None and _timestamp_current(item, interp.magic):
            result.up_to_date.append(item)
            continue
        todo.append(item)

    total = len(plan.sources)
    done = len(result.up_to_date)
    if progress:
        progress(done, total)

    by_src: dict[str, PlannedSource] = {}
    tasks: list[tuple[int, Task]] = []
    for item in todo:
        task: Task = {
            "src": str(item.source),
            "dfile": item.dfile,
            "mode": mode,
            "outs": [[level, str(_tmp_name(final, token))] for level, final in item.outputs],
            "verify": plan.sourceless,
        }
        if plan.deliver:
            task["deliver"] = True
        if item.archive is not None:
            task.update(archive=str(item.archive), member=item.member, digest=item.digest, size=item.size)
            task["mtime"] = item.mtime
        if options.source_date_epoch is not None:
            task["mtime"] = options.source_date_epoch
        if mode != "timestamp" and not options.force and not plan.sourceless:
            task["check"] = [str(final) for _, final in item.outputs]
        by_src[task["src"]] = item
        tasks.append((item.size, task))

    errors: list[SourceError] = []
    write_errors: list[str] = []
    input_errors: list[str] = []
    written: list[tuple[Path, Path]] = []  # (tmp, final)

    def on_answer(task: Task, answer: dict[str, object]) -> None:
        nonlocal done
        item = by_src[task["src"]]
        if "current" in answer:
            result.up_to_date.append(item)
        elif "error" in answer:
            err = answer["error"]
            assert isinstance(err, dict)
            if err.get("write"):
                write_errors.append(str(err["msg"]))
            elif err.get("input"):
                input_errors.append(f"{item.archive}: {err['msg']}")
            else:
                errors.append(SourceError(str(item.source), err.get("lineno"), err["kind"], err["msg"]))
        else:
            outcomes = answer["ok"]
            assert isinstance(outcomes, list)
            finals = dict(item.outputs)
            for level, how, *payload in outcomes:
                if how == "delivered":
                    (packed,) = payload
                    result.delivered[finals[level]] = DeliveredPyc(
                        base64.b64decode(packed["deflated"]), packed["crc"], packed["size"], packed["digest"]
                    )
                    result.pyc_written += 1
                    continue
                written.append((_tmp_name(finals[level], token), finals[level]))
                if how == "linked":
                    result.pyc_linked += 1
                else:
                    result.pyc_written += 1
            result.compiled.append(item)
        done += 1
        if progress:
            progress(done, total)

    # Directories the workers will create (``__pycache__``): a failed run removes them again.
    new_dirs = [] if plan.deliver else [d for d in {f.parent for i in todo for _, f in i.outputs} if not d.is_dir()]
    committed = False
    try:
        run_tasks(interp, tasks, options.worker_count, on_answer)
        if input_errors:
            raise InvalidInput(first_problem(sorted(input_errors)))
        if write_errors:
            raise OutputFailed(f"cannot write pycs in {sorted(write_errors)[0]}; nothing was changed")
        errors.sort(key=lambda e: e.path)
        if errors and options.on_error == "fail":
            raise CompileFailed(errors)
        for tmp, final in written:
            os.replace(tmp, final)
        committed = True
    finally:
        if not committed:
            _remove_quietly(tmp for tmp, _ in written)
            _remove_quietly(_tmp_name(final, token) for item in todo for _, final in item.outputs)
            for directory in new_dirs:  # each a __pycache__ (or a sourceless pyc's) in a directory that stays
                try:
                    directory.rmdir()
                except OSError:
                    pass  # not empty: something else was put there meanwhile

    result.kept_source = errors
    if plan.remove_sources:
        failed = {e.path for e in errors}
        result.stripped = _strip_sources([i for i in result.compiled if str(i.source) not in failed])
    result.compiled.sort(key=lambda i: i.source)
    result.seconds = time.perf_counter() - started
    return result


def _remove_stale_temporaries(plan: CompilePlan) -> None:
    """Remove temporaries a killed run left beside the pycs it was writing."""
    directories = {final.parent for item in plan.sources for _, final in item.outputs}
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        _remove_quietly(directory / name for name in names if name.endswith(TMP_SUFFIX))


def _remove_quietly(paths: object) -> None:
    for path in paths:  # type: ignore[attr-defined]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _strip_sources(items: Sequence[PlannedSource]) -> list[Path]:
    """Remove each source whose sourceless pyc is in place, then its now-useless cache entries."""
    removed: list[Path] = []
    caches: set[Path] = set()
    for item in items:
        ((_, pyc),) = item.outputs
        if not pyc.is_file() or pyc.stat().st_size < 16:
            raise InvalidInput(f"{pyc}: missing after commit; {item.source} was kept")
        item.source.unlink()
        removed.append(item.source)
        cache = item.source.parent / "__pycache__"
        if cache.is_dir():
            for entry in os.listdir(cache):
                if is_cache_of(entry, item.source.stem):
                    os.unlink(cache / entry)
            caches.add(cache)
    for cache in caches:
        try:
            cache.rmdir()
        except OSError:
            pass  # not empty: other modules' pycs remain
    return removed


def compile_tree(
    paths: Sequence[str | os.PathLike[str]],
    options: PycOptions | None = None,
    *,
    python: str | None = None,
    stdlib: bool = False,
    progress: Progress | None = None,
) -> CompileResult:
    """Compile package trees, site-packages or venvs in place for one target CPython."""
    plan = plan_compile(paths, options or PycOptions(), python=python, stdlib=stdlib)
    return compile_plan(plan, progress=progress)
