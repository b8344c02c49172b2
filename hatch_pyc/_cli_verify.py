"""``hatch-pyc verify``: import every module sourceless and compare with the sources."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hatch_pyc._cli_shared import (
    EXIT_FAILED,
    EXIT_OK,
    add_exclude,
    add_optimize,
    positive_int,
    progress_bar,
    say,
    show,
    show_progress,
)
from hatch_pyc._options import PycOptions

if TYPE_CHECKING:
    from hatch_pyc._verify import SourceFix


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``verify``."""
    ver = sub.add_parser(
        "verify",
        help="import every module sourceless and compare with the sources",
        description="Import every module of TARGET's sourceless variant in fresh processes of the target CPython "
        "and compare with the sources: modules that fail only without sources are named with the exclude "
        "patterns that fix them, each tried by importing the module with those sources kept (exit 1); "
        "modules that fail sourceless and have no source to compare with fail the run too. "
        "TARGET is a tree, site-packages, venv, wheel or project.",
    )
    ver.add_argument("target", metavar="TARGET")
    ver.add_argument("--python", metavar="PY", help="target CPython (default: the venv's, else the running one)")
    add_optimize(ver, "optimisation level of the sourceless variant (default 0)", repeatable=False)
    add_exclude(ver, "the import root")
    ver.add_argument(
        "--workers",
        type=positive_int,
        default=0,
        metavar="N",
        help="parallel import processes, 1 or more (default: one per CPU)",
    )
    ver.add_argument("--json", metavar="FILE", help="write the outcome as JSON")
    ver.add_argument("-q", "--quiet", action="store_true", help="list only the failures that matter")
    ver.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    ver.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Stage TARGET, import it both ways, name the modules that fail only without sources (exit 1)."""
    import tempfile
    from pathlib import Path

    from hatch_pyc._overlap import refuse_outputs_over_inputs
    from hatch_pyc._plan import resolve_target
    from hatch_pyc._targets import find_interpreter
    from hatch_pyc._variants import stage_target
    from hatch_pyc._verify import verify_tree

    refuse_outputs_over_inputs([("TARGET", args.target)], [("--json", args.json)])
    target = Path(args.target)
    interp = resolve_target([target], args.python) if target.is_dir() else find_interpreter(args.python)
    options = PycOptions(levels=(args.optimize,), strip=True, exclude=tuple(args.exclude or ()), workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-verify-") as scratch:
        staged = stage_target(target, Path(scratch), interp)
        with progress_bar(show_progress(args), "importing modules") as bar:
            result = verify_tree(staged.tree, interp, options=options, progress=bar)
    if args.json:
        import json

        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "python": ".".join(map(str, interp.version)),
                    "modules": result.modules,
                    "sourceless_only": [
                        {
                            "module": m,
                            "error": e,
                            "exclude": p,
                            "fix": {
                                "exclude": list(result.fixes[m].patterns),
                                "checked": result.fixes[m].checked,
                                "minimal": result.fixes[m].minimal,
                            },
                        }
                        for m, e, p in result.sourceless_only
                    ],
                    "both": [{"module": m, "error": e} for m, e in result.both],
                    "no_source": [{"module": m, "error": e, "pyc": p} for m, e, p in result.no_source],
                },
                handle,
                indent=2,
            )
    for module, error, _ in result.sourceless_only:
        show(f"FAIL {module}: imports from source but not sourceless: {error}", lines=False)
        show(f"     {describe_fix(result.fixes[module])}")
    for module, error, pyc in result.no_source:
        show(
            f"FAIL {module}: fails sourceless, and there is no source to compare with ({pyc} has no .py): {error}",
            lines=False,
        )
        show("     verify the tree, wheel or venv that still has its sources (before --strip) to tell")
    if result.both and not args.quiet:
        show(f"{len(result.both)} module(s) fail with and without sources (not caused by compiling):")
        for module, error in result.both:
            show(f"     {module}: {error}", lines=False)
    say(
        f"hatch-pyc: {result.modules} modules imported sourceless for CPython {interp.minor}: "
        f"{result.compiled_ok} ok, {len(result.sourceless_only)} fail only without sources, "
        f"{len(result.both)} fail either way"
        + (f", {len(result.no_source)} fail with no source to compare with" if result.no_source else "")
    )
    return EXIT_OK if result.ok else EXIT_FAILED


def describe_fix(fix: SourceFix, shown: int = 8) -> str:
    """One line: the exclude patterns that fix a module, and whether verify tried them (all are in --json)."""
    patterns = fix.patterns if len(fix.patterns) <= shown else fix.patterns[:shown]
    more = f" and {len(fix.patterns) - len(patterns)} more (see --json)" if len(patterns) < len(fix.patterns) else ""
    options = " ".join(f"--exclude '{p}'" for p in patterns) + more
    hook = ", ".join(f'"{p}"' for p in patterns) + (", ..." if more else "")
    if not fix.checked:
        how, note = "keep its source with:", "not checked: no import with sources kept succeeded within the probe limit"
    else:
        how, note = "fixed by", "checked" if fix.minimal else "checked; some may not be needed"
    return f"{how} {options} ({note})  (hook: exclude = [{hook}])"
