"""``hatch-pyc wheel``: sourceless copies of wheels, one per target CPython."""

from __future__ import annotations

import argparse
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
    reserved_output,
    say,
    stub_options,
)
from hatch_pyc._options import PycOptions

if TYPE_CHECKING:
    from hatch_pyc._wheel import WheelConversion


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``wheel``."""
    whl = sub.add_parser(
        "wheel",
        help="turn wheels into sourceless wheels for one or more CPythons",
        description="Write a sourceless copy of each wheel (mod.pyc in place of mod.py, tag cpXY, RECORD "
        "regenerated) for each --python target. Scripts, data, extension modules and metadata pass through.",
    )
    whl.add_argument("wheels", nargs="+", metavar="WHEEL")
    whl.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for the new wheels")
    whl.add_argument(
        "--python",
        action="append",
        metavar="PY",
        help="target CPython; repeat for one wheel per target (default: the running interpreter)",
    )
    add_optimize(whl, "optimisation level of the bytecode (default: 0)", repeatable=False)
    add_exclude(whl, "the install root (site-packages)")
    add_on_error_and_workers(whl)
    add_outside_packages(whl)
    add_stubs(whl, "typed")
    whl.add_argument("--ddir", metavar="DIR", help="prefix for file names recorded in the code objects")
    whl.add_argument("--json", metavar="FILE", help="write a JSON list of the wheels written")
    whl.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    whl.set_defaults(func=run_wheel)


def run_wheel(args: argparse.Namespace) -> int:
    """Convert every wheel for every target; name each wheel written."""
    from hatch_pyc._errors import Interrupted
    from hatch_pyc._targets import find_interpreter
    from hatch_pyc._wheel import convert_wheels

    targets = [find_interpreter(spec) for spec in (args.python or [None])]
    options = PycOptions(
        levels=(args.optimize,),
        strip=True,
        exclude=tuple(args.exclude or ()),
        on_error=args.on_error,
        workers=args.workers,
        **cache_options(args),
        ddir=args.ddir,
        outside_packages=args.outside_packages,
        **stub_options(args),
    )
    from hatch_pyc._overlap import refuse_outputs_over_inputs

    refuse_outputs_over_inputs([("WHEEL", wheel) for wheel in args.wheels], [("--json", args.json)])
    # Every (wheel, target) pair is checked before anything is written; all outputs or none.
    # The --json file is opened first too: one that cannot be written fails the run before it starts.
    with reserved_output(args.json) as json_out:
        try:
            outputs = convert_wheels(args.wheels, args.output, targets, options, also_written=args.json)
        except Interrupted as exc:  # it arrived while the outputs were renamed into place, which was finished
            outputs = exc.result  # type: ignore[assignment]
            args.changed = f"{len(outputs)} wheel(s) written"
            _report(args, outputs, json_out)
            what = "interrupted" if exc.signum == signal.SIGINT else "terminated"
            say(f"hatch-pyc: {what} while the wheels were moved into place, which was completed first: {args.changed}")
            return 128 + exc.signum
        args.changed = f"{len(outputs)} wheel(s) written"
        _report(args, outputs, json_out)
    return EXIT_OK


def _report(args: argparse.Namespace, outputs: list[WheelConversion], json_out: TextIO | None) -> None:
    for note in dict.fromkeys(note for result in outputs for note in result.notes):
        say(f"hatch-pyc: warning: {note}")
    if not args.quiet:
        for result in outputs:
            say(f"hatch-pyc: {result.output} ({summarise(result)})")
    if json_out is not None:
        import json

        json.dump(
            [
                {
                    "source": str(r.source),
                    "output": str(r.output),
                    "python": r.interpreter.minor,
                    "tag": r.tag,
                    "compiled": r.compiled,
                    "kept_source": r.kept_source,
                    "outside_packages": r.outside_packages,
                    "replaced": r.replaced,
                    "stubs": r.stubs,
                }
                for r in outputs
            ],
            json_out,
            indent=2,
        )


def summarise(result: WheelConversion) -> str:
    """``12 modules compiled, 1 kept as source, 5 kept as source (outside packages: alembic/templates/)``."""
    parts = [f"{len(result.compiled)} modules compiled"]
    if result.kept_source:
        parts.append(f"{len(result.kept_source)} kept as source")
    if result.outside_packages:
        dirs = result.outside_package_dirs
        named = ", ".join(dirs[:3]) + (f" and {len(dirs) - 3} more" if len(dirs) > 3 else "")
        parts.append(f"{len(result.outside_packages)} kept as source (outside packages: {named})")
    if result.replaced:
        more = len(result.replaced) - 3
        shipped = ", ".join(result.replaced[:3]) + (f" and {more} more" if more > 0 else "")
        parts.append(f"{len(result.replaced)} shipped .pyc replaced by the compiled module ({shipped})")
    if result.stubs:
        cached = f" ({result.stub_cache_hits} from the compile cache)" if result.stub_cache_hits else ""
        parts.append(f"{len(result.stubs)} type stubs{cached}")
    lookups = result.cache_hits + result.cache_misses
    if lookups:
        parts.append(f"{result.cache_hits} of {lookups} from the compile cache")
    return ", ".join(parts)
