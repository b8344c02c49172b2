"""Compile in place while the tree is walked: the workers get each batch of sources as soon as the walk has found
and checked them, instead of after the whole walk.

A warm run (every module in the compile cache) of 3,242 modules spends about 0.1 s walking the tree and a few
hundredths making its tasks, in one process, while the workers wait; the workers then take about 0.2 s. Here the
two overlap. What the run promises is unchanged, because until the commit the workers only write under this run's
own temporary names (:mod:`hatch_pyc._commit`):

- a tree the walk refuses part-way (a FIFO named ``.py``, a ``__pycache__`` that is a link) or a plan the caller
  refuses (``check_plan``) ends the run with the workers killed and every temporary of the run removed: nothing of
  the tree is changed, as when a source fails to compile;
- the clean-up after a killed run (:func:`hatch_pyc._compile.Run.recover`) still comes before anything is
  committed. It must come before anything is planned where it puts files back, so a walk that meets a killed run's
  leftovers stops handing out work, and a clean-up that puts anything back throws away what was handed out: the run
  is then made as :func:`hatch_pyc._compile.compile_plan` makes it, from a new plan.

Type stubs (``--stubs`` with ``--strip``) are made from the whole plan: such runs are made by ``compile_plan``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from hatch_pyc._commit import Recovery
from hatch_pyc._compile import CompileResult, Progress, Run, compile_plan
from hatch_pyc._options import PycOptions
from hatch_pyc._plan import CompilePlan, PlannedSource, plan_compile
from hatch_pyc._pool import BATCH_BYTES, Feed
from hatch_pyc._stubs import StubResult

__all__ = ["compile_streamed"]


def compile_streamed(
    paths: Sequence[str | os.PathLike[str]],
    options: PycOptions,
    *,
    python: str | None = None,
    stdlib: bool = False,
    allow_other_python: bool = False,
    progress: Progress | None = None,
    on_recovery: Callable[[Recovery], None] | None = None,
    check_plan: Callable[[CompilePlan], None] | None = None,
) -> CompileResult:
    """Plan ``paths`` and compile them in place, handing sources to the workers while the walk goes on.

    ``check_plan`` is called with the whole plan before anything is committed: an error it raises ends the run
    with nothing changed. ``progress`` is called from the whole plan on (its total is not known before).
    """
    if options.strip and (options.stubs or "none") != "none":
        plan = plan_compile(paths, options, python=python, stdlib=stdlib, allow_other_python=allow_other_python)
        if check_plan is not None:
            check_plan(plan)
        return compile_plan(plan, progress=progress, on_recovery=on_recovery)
    streamer = _Streamer(progress)
    try:
        plan = plan_compile(
            paths,
            options,
            python=python,
            stdlib=stdlib,
            allow_other_python=allow_other_python,
            on_source=streamer.add,
        )
        if check_plan is not None:
            check_plan(plan)
    except BaseException:
        streamer.abandon()
        raise
    return streamer.complete(plan, on_recovery)


class _Streamer:
    """The plan's sources, turned into tasks and handed to a :class:`~hatch_pyc._pool.Feed` batch by batch."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.run: Run | None = None
        self.feed: Feed | None = None
        self.batch: list[PlannedSource] = []
        self.batch_bytes = 0
        self.live = True  # False once the walk met a killed run's leftovers: nothing more is handed out
        self.directory = ""  # the directory of the last source looked at (the walk yields a directory's together)
        self.pycache: frozenset[str] = frozenset()  # it, if it held a __pycache__ when it was listed

    def add(self, plan: CompilePlan, item: PlannedSource) -> None:
        """Hear a newly planned source (``plan_compile``'s ``on_source``)."""
        if not self.live:
            return
        if plan.with_leftovers or plan.with_pycache is None:  # the clean-up comes first (see the module's text)
            self.live = False
            return
        if self.run is None:
            self.run = Run(plan, self.progress)
        directory = os.path.dirname(item.source) or "."
        if directory != self.directory:
            self.directory = directory
            self.pycache = frozenset((directory,)) if Path(directory) in plan.with_pycache else frozenset()
        if not self.run.skip_current((item,), self.pycache):
            return
        self.batch.append(item)
        self.batch_bytes += item.size
        if self.batch_bytes >= BATCH_BYTES:
            self.hand_out()

    def hand_out(self) -> None:
        """Make the tasks of the sources held and give them to the workers."""
        run = self.run
        if run is None or not self.batch:
            return
        run.open_cache(True)
        tasks = run.tasks_for(self.batch)
        self.batch, self.batch_bytes = [], 0
        if self.feed is None:
            options = run.plan.options
            self.feed = Feed(
                run.plan.interpreter,
                options.worker_count,
                run.on_answer,
                cache=run.cache,
                compact=options.compact,
                for_now=options.worker_count - 1,  # the walk keeps a CPU of its own
            )
        self.feed.put([task for _, task in tasks])

    def abandon(self) -> None:
        """Kill the workers and remove every temporary of the run (nothing was committed)."""
        if self.feed is not None:
            self.feed.abort()
        if self.run is not None:
            self.run.clean_up()

    def complete(self, plan: CompilePlan, on_recovery: Callable[[Recovery], None] | None) -> CompileResult:
        """The walk is over and the plan accepted: clean up after a killed run, hand out the rest, commit."""
        run = self.run
        if run is None or not self.live:  # nothing handed out, or leftovers met: as compile_plan makes a run
            self.abandon()
            return compile_plan(plan, progress=self.progress, on_recovery=on_recovery)
        try:
            run.recover(on_recovery)
        except BaseException:
            self.abandon()
            raise
        if run.result.recovery.restored:  # files put back: planned anew, without what was handed out
            self.abandon()
            result = compile_plan(run.plan, progress=self.progress)
            first = run.result.recovery
            first.extend(result.recovery)
            result.recovery = first
            return result
        try:
            self.hand_out()
            if self.feed is not None:
                with self.feed.lock:  # progress is also told from the pool's threads
                    run.planned()
                self.feed.finish()
            else:
                run.planned()
            run.commit(StubResult())
        except BaseException:
            if self.feed is not None:
                self.feed.abort()
            raise
        finally:
            run.clean_up()
        return run.outcome()
