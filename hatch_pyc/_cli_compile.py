"""``hatch-pyc compile``: compile trees, site-packages or a venv in place."""

from __future__ import annotations

import argparse
import os
import signal
from typing import TYPE_CHECKING, TextIO

from hatch_pyc._cli_shared import (
    EXIT_OK,
    add_exclude,
    add_on_error_and_workers,
    add_optimize,
    add_outside_packages,
    add_stubs,
    cache_options,
    progress_bar,
    reserved_output,
    say,
    show,
    show_progress,
    stub_options,
)
from hatch_pyc._options import INVALIDATION_MODES, PycOptions

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from hatch_pyc._commit import Recovery
    from hatch_pyc._compile import CompileResult
    from hatch_pyc._plan import CompilePlan


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``compile``."""
    comp = sub.add_parser(
        "compile",
        help="compile package trees, site-packages or a venv in place",
        description="Compile .py files in place for one CPython, keeping sources (pycs in __pycache__) "
        "or stripping them (--strip: mod.pyc beside where mod.py was).",
    )
    comp.add_argument(
        "paths", nargs="*", metavar="PATH", help="package directory, site-packages, venv root or .py file"
    )
    comp.add_argument(
        "--python",
        metavar="PY",
        help="target CPython: version (3.12), command (python3.12) or path "
        "(default: the venv's own interpreter for a venv, else the running one)",
    )
    add_optimize(comp, "optimisation level 0, 1 or 2; repeat for several (default: 0)", repeatable=True)
    comp.add_argument(
        "--allow-other-python",
        action="store_true",
        help="compile for --python even where the tree belongs to another CPython (a venv, a pythonX.Y "
        "site-packages or standard library), whose interpreter will not load these pycs",
    )
    comp.add_argument(
        "--strip",
        action="store_true",
        help="sourceless: write mod.pyc and remove mod.py once every pyc is written and verified",
    )
    add_exclude(comp, "the import root")
    add_outside_packages(comp)
    add_stubs(comp, "none")
    comp.add_argument(
        "--invalidation-mode",
        choices=INVALIDATION_MODES,
        help="pyc header mode (default: timestamp, or unchecked-hash with --strip)",
    )
    add_on_error_and_workers(comp)
    comp.add_argument("--force", action="store_true", help="recompile pycs that are already current")
    comp.add_argument(
        "--ddir",
        metavar="DIR",
        help="prefix for the file names recorded in the code objects (default: the path relative to the import root)",
    )
    comp.add_argument("--stdlib", action="store_true", help="also compile the target interpreter's standard library")
    comp.add_argument(
        "--use-source-date-epoch",
        action="store_true",
        help="timestamp pycs record SOURCE_DATE_EPOCH "
        "instead of each source's mtime (for trees whose mtimes are set to it, as in image layers)",
    )
    comp.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    comp.add_argument("--json", metavar="FILE", help="write a JSON summary of the run")
    group = comp.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="list every file")
    group.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    comp.add_argument("--progress", action="store_true", help="show a progress bar even when not on a terminal")
    comp.set_defaults(func=run_compile)


def _options_from(args: argparse.Namespace) -> PycOptions:
    levels = tuple(args.optimize) if args.optimize else (0,)
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    return PycOptions(
        levels=levels,
        strip=args.strip,
        exclude=tuple(args.exclude or ()),
        invalidation=args.invalidation_mode,
        on_error=args.on_error,
        workers=args.workers,
        **cache_options(args),
        force=args.force,
        ddir=args.ddir,
        source_date_epoch=int(sde) if (sde and args.use_source_date_epoch) else None,
        outside_packages=args.outside_packages,
        **stub_options(args),
    )


def run_compile(args: argparse.Namespace) -> int:
    """Plan, then compile (or with --dry-run print the plan)."""
    from hatch_pyc._plan import plan_compile

    options = _options_from(args)
    if not args.dry_run:
        from hatch_pyc._compile import put_back_named

        _say_recovery(put_back_named(args.paths))
    if args.dry_run:
        plan = plan_compile(
            args.paths, options, python=args.python, stdlib=args.stdlib, allow_other_python=args.allow_other_python
        )
        for item in plan.sources:
            outs = ", ".join(str(path) for _, path in item.outputs)
            show(f"{item.source} -> {outs}" + ("  (source removed)" if options.strip else ""), lines=False)
        for path in plan.excluded:
            show(f"{path}  (excluded: keeps its source)", lines=False)
        for path in plan.outside:
            show(f"{path}  (outside packages: keeps its source)", lines=False)
        from hatch_pyc._compile import would_recover

        _say_recovery(would_recover(plan), dry_run=True)
        from hatch_pyc._plan import unlisted_notes

        for note in unlisted_notes(plan):
            say(f"hatch-pyc: warning: {note}")
        say(f"hatch-pyc: would compile {len(plan.sources)} sources for {plan.interpreter} (dry run)")
        return EXIT_OK
    from contextlib import ExitStack

    from hatch_pyc._compile import CompileResult
    from hatch_pyc._errors import Interrupted, InvalidOptions
    from hatch_pyc._plan import plan_touches
    from hatch_pyc._streamed import compile_streamed

    outputs = ExitStack()  # the --json file, reserved once the plan is accepted, written at the end
    json_out: list[TextIO | None] = [None]
    bar = ExitStack()
    draw: list[Callable[[int, int], None] | None] = [None]

    def accept(plan: CompilePlan) -> None:
        """The whole plan, before anything is committed (the workers may have begun under temporary names)."""
        if args.json and plan_touches(plan, args.json):
            raise InvalidOptions(f"--json {args.json}: a file this run compiles or writes, or a module in its tree")
        # Every output is opened before the tree changes: a --json that cannot be written fails now.
        json_out[0] = outputs.enter_context(reserved_output(args.json))
        label = f"compiling for CPython {plan.interpreter.minor}"
        draw[0] = bar.enter_context(progress_bar(show_progress(args), label))

    def progress(done: int, total: int) -> None:
        if draw[0] is not None:
            draw[0](done, total)

    with outputs:
        try:
            with bar:
                result = compile_streamed(
                    args.paths,
                    options,
                    python=args.python,
                    stdlib=args.stdlib,
                    allow_other_python=args.allow_other_python,
                    progress=progress,
                    on_recovery=_say_recovery,
                    check_plan=accept,
                )
        except Interrupted as exc:
            done = exc.result
            assert isinstance(done, CompileResult)
            args.changed = _summary(done)
            _report(args, done, json_out[0])
            what = "interrupted" if exc.signum == signal.SIGINT else "terminated"
            say(f"hatch-pyc: {what} during the commit, which was completed first: {_summary(done)}")
            return 128 + exc.signum
        # From here on the tree is compiled: an error or a signal while reporting must say so (_cli.main).
        args.changed = _summary(result)
        _report(args, result, json_out[0])
    plan = result.plan
    if not args.quiet:
        say(_summary(result))
    if not plan.sources:
        for hint in _sourceless_for_others(plan):
            say(f"hatch-pyc: warning: {hint}")
    return EXIT_OK


def _sourceless_for_others(plan: CompilePlan) -> list[str]:
    """With nothing to compile: the walked directories' sourceless pycs that the target cannot load (a tree
    stripped for another CPython), one line per version, so "compiled 0 of 0" is not taken for success."""
    from hatch_pyc._errors import InvalidPyc
    from hatch_pyc._pycinfo import read_header

    found: dict[str, list[Path]] = {}
    for directory in plan.directories:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            path = directory / name
            if not name.endswith(".pyc") or not path.is_file():
                continue
            try:
                header = read_header(path)
            except InvalidPyc:
                continue
            if header.magic != plan.interpreter.magic:
                found.setdefault(header.python or f"magic number {header.magic_number}", []).append(path)
    return [
        f"{paths[0]} and {len(paths) - 1} more sourceless pycs are for CPython {version}, which CPython "
        f"{plan.interpreter.minor} cannot load; they have no sources here to compile (rebuild them from their "
        f"sources, or target {version})"
        if len(paths) > 1
        else f"{paths[0]} is a sourceless pyc for CPython {version}, which CPython {plan.interpreter.minor} cannot "
        f"load; it has no source here to compile (rebuild it from its source, or target {version})"
        for version, paths in sorted(found.items())
    ]


def _say_recovery(recovery: Recovery, *, dry_run: bool = False) -> None:
    """What was put right of a killed run's leftovers (said as soon as it is done: the run may fail afterwards)."""
    if recovery.restored or recovery.removed:
        say(
            f"hatch-pyc: {'would put' if dry_run else 'put'} right what a killed run left: "
            f"{len(recovery.restored)} set-aside files restored, {len(recovery.removed)} temporaries removed"
            + (
                " (the restored sources are compiled too)"
                if dry_run and any(p.suffix == ".py" for p in recovery.restored)
                else ""
            )
        )
    for kept in recovery.kept:
        say(f"hatch-pyc: warning: {kept}: a file a killed run set aside, kept because its name is taken now")
    for strange in recovery.strange:
        say(f"hatch-pyc: warning: {strange}: named like a killed run's leftover but not one; taken for the user's")


def _report(args: argparse.Namespace, result: CompileResult, json_out: TextIO | None) -> None:
    if json_out is not None:  # first: the record of what was done survives a failing terminal
        import json

        json.dump(_result_json(result), json_out, indent=2)
    if args.verbose:
        for item in result.compiled:
            show(f"compiled {item.source}", lines=False)
        for item in result.up_to_date:
            show(f"current  {item.source}", lines=False)
    for note in result.notes:
        say(f"hatch-pyc: warning: {note}")
    for error in result.kept_source:
        say(f"hatch-pyc: warning: {error} (kept as source)")
    for path in result.leftovers:
        say(f"hatch-pyc: warning: {path}: could not be deleted after the commit; remove it by hand")


def _summary(result: CompileResult) -> str:
    plan = result.plan
    pycs = result.pyc_written + result.pyc_linked
    parts = [
        f"compiled {len(result.compiled)} of {len(plan.sources)} sources for CPython "
        f"{'.'.join(map(str, plan.interpreter.version))}",
        f"{pycs} pyc"
        + (f" ({result.pyc_linked} hard links to identical levels)" if len(plan.options.levels) > 1 else ""),
    ]
    if result.up_to_date:
        parts.append(f"{len(result.up_to_date)} already current")
    if plan.excluded:
        parts.append(f"{len(plan.excluded)} excluded")
    if result.kept_source:
        parts.append(f"{len(result.kept_source)} kept as source after errors")
    if plan.outside:
        parts.append(f"{len(plan.outside)} kept as source (outside packages: templates or data)")
    if plan.options.strip:
        parts.append(f"{len(result.stripped)} sources removed")
    if result.stubs:
        cached = f" ({result.stub_cache_hits} from the compile cache)" if result.stub_cache_hits else ""
        parts.append(f"{len(result.stubs)} type stubs written{cached}")
    if result.records:
        parts.append(f"{len(result.records)} RECORD files updated")
    lookups = result.cache_hits + result.cache_misses
    if lookups:
        parts.append(f"{result.cache_hits} of {lookups} from the compile cache")
    return f"hatch-pyc: {'; '.join(parts)} in {result.seconds:.2f} s"


def _result_json(result: CompileResult) -> dict[str, object]:
    plan = result.plan
    return {
        "python": ".".join(map(str, plan.interpreter.version)),
        "executable": plan.interpreter.executable,
        "levels": list(plan.options.levels),
        "strip": plan.options.strip,
        "invalidation_mode": plan.options.invalidation_mode,
        "sources": len(plan.sources),
        "compiled": len(result.compiled),
        "up_to_date": len(result.up_to_date),
        "excluded": [str(p) for p in plan.excluded],
        "outside_packages": [str(p) for p in plan.outside],
        "unlisted": [str(d) for d, _ in plan.unlisted],
        "records": [str(p) for p in result.records],
        "kept_source": [str(e) for e in result.kept_source],
        "stripped": len(result.stripped),
        "stubs": [str(p) for p in result.stubs],
        "pyc_written": result.pyc_written,
        "pyc_linked": result.pyc_linked,
        "cache_hits": result.cache_hits,
        "cache_misses": result.cache_misses,
        "seconds": round(result.seconds, 4),
    }
