"""The ``hatch-pyc`` command: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 success, 1 a failed check (a source that does not compile, a threshold),
2 bad usage or input. Errors are printed at one boundary, :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from hatch_pyc import __version__
from hatch_pyc._compile import CompileResult, compile_plan
from hatch_pyc._errors import CompileFailed, HatchPycError, ImageCommandFailed, InvalidInput, InvalidOptions
from hatch_pyc._options import INVALIDATION_MODES, ON_ERROR, PycOptions
from hatch_pyc._plan import plan_compile
from hatch_pyc._pycinfo import read_code_info, read_header
from hatch_pyc._report import GateResult, build_report

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Terminated(Exception):
    """SIGTERM, turned into an exception so cleanup runs as it does for Ctrl-C."""


def _say(message: str, stream: TextIO | None = None) -> None:
    print(message, file=stream or sys.stderr)


def _show_progress(args: argparse.Namespace) -> bool:
    if args.quiet or getattr(args, "verbose", False):
        return False
    if os.environ.get("CI") and not args.progress:
        return False
    return bool(args.progress or sys.stderr.isatty())


@contextmanager
def _progress_bar(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


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
        force=args.force,
        ddir=args.ddir,
        source_date_epoch=int(sde) if (sde and args.use_source_date_epoch) else None,
    )


def _cmd_compile(args: argparse.Namespace) -> int:
    options = _options_from(args)
    plan = plan_compile(args.paths, options, python=args.python, stdlib=args.stdlib)
    if args.dry_run:
        for item in plan.sources:
            outs = ", ".join(str(path) for _, path in item.outputs)
            print(f"{item.source} -> {outs}" + ("  (source removed)" if options.strip else ""))
        for path in plan.excluded:
            print(f"{path}  (excluded: keeps its source)")
        _say(f"hatch-pyc: would compile {len(plan.sources)} sources for {plan.interpreter} (dry run)")
        return EXIT_OK
    with _progress_bar(_show_progress(args), f"compiling for CPython {plan.interpreter.minor}") as bar:
        result = compile_plan(plan, progress=bar)
    if args.verbose:
        for item in result.compiled:
            print(f"compiled {item.source}")
        for item in result.up_to_date:
            print(f"current  {item.source}")
    for error in result.kept_source:
        _say(f"hatch-pyc: warning: {error} (kept as source)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(_result_json(result), handle, indent=2)
    if not args.quiet:
        _say(_summary(result))
    return EXIT_OK


def _summary(result: CompileResult) -> str:
    plan = result.plan
    pycs = result.pyc_written + result.pyc_linked
    parts = [
        f"compiled {len(result.compiled)} of {len(plan.sources)} sources for CPython "
        f"{'.'.join(map(str, plan.interpreter.version))}",
        f"{pycs} pyc ({result.pyc_linked} hard links to identical levels)",
    ]
    if result.up_to_date:
        parts.append(f"{len(result.up_to_date)} already current")
    if plan.excluded:
        parts.append(f"{len(plan.excluded)} excluded")
    if result.kept_source:
        parts.append(f"{len(result.kept_source)} kept as source after errors")
    if plan.options.strip:
        parts.append(f"{len(result.stripped)} sources removed")
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
        "kept_source": [str(e) for e in result.kept_source],
        "stripped": len(result.stripped),
        "pyc_written": result.pyc_written,
        "pyc_linked": result.pyc_linked,
        "seconds": round(result.seconds, 4),
    }


def _cmd_inspect(args: argparse.Namespace) -> int:
    header = read_header(args.file)
    info: dict[str, object] = {"file": args.file, **header.describe()}
    code = read_code_info(args.file, with_dis=args.dis)
    if code is not None:
        info.update(co_filename=code.filename, co_name=code.name, read_by=f"CPython {code.read_by}")
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    if code is None:
        print(f"{'code':<{width}}  (no CPython {header.python or '?'} found here to load it)")
    elif args.dis:
        print()
        print(code.dis, end="")
    return EXIT_OK


def _cmd_wheel(args: argparse.Namespace) -> int:
    from hatch_pyc._targets import find_interpreter
    from hatch_pyc._wheel import convert_wheel

    targets = [find_interpreter(spec) for spec in (args.python or [None])]
    options = PycOptions(
        levels=(args.optimize,),
        strip=True,
        exclude=tuple(args.exclude or ()),
        on_error=args.on_error,
        workers=args.workers,
        ddir=args.ddir,
    )
    outputs = []
    for wheel in args.wheels:
        for result in convert_wheel(wheel, args.output, targets, options):
            outputs.append(result)
            if not args.quiet:
                kept = f", {len(result.kept_source)} kept as source" if result.kept_source else ""
                _say(f"hatch-pyc: {result.output} ({len(result.compiled)} modules compiled{kept})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                [
                    {
                        "source": str(r.source),
                        "output": str(r.output),
                        "python": r.interpreter.minor,
                        "tag": r.tag,
                        "compiled": r.compiled,
                        "kept_source": r.kept_source,
                    }
                    for r in outputs
                ],
                handle,
                indent=2,
            )
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from hatch_pyc._render import render_html, render_markdown, render_terminal
    from hatch_pyc._report import compare

    baseline = None
    if args.baseline:
        try:
            with open(args.baseline, encoding="utf-8") as handle:
                baseline = json.load(handle)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{args.baseline}: cannot read the baseline report ({exc})") from exc
        if baseline.get("schema_version") != 1:
            raise InvalidInput(f"{args.baseline}: not a hatch-pyc report (schema_version 1)")
    with _progress_bar(_show_progress(args), "measuring import times") as bar:
        report = build_report(
            args.target,
            python=args.python,
            levels=tuple(args.optimize or (0,)),
            modules=tuple(args.imports or ()),
            repeat=args.repeat,
            measure_time=not args.sizes_only,
            progress=(lambda _stage, done, total: bar(done, total)) if bar else None,
        )
    gate = None
    if args.max_size_increase is not None or args.max_import_regression is not None:
        gate = compare(
            report, baseline, max_size_increase=args.max_size_increase, max_import_regression=args.max_import_regression
        )
    lines = _gate_lines(gate)
    _write_report(args, report, render_markdown(report, lines))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(render_html(report, lines))
    if not args.quiet:
        render_terminal(report, lines)
    return EXIT_FAILED if gate and gate.failures else EXIT_OK


def _gate_lines(gate: GateResult | None) -> list[str]:
    """PASS/FAIL/note lines of a threshold check, for the terminal and the Markdown."""
    if gate is None:
        return []
    lines = [f"FAIL: {f}" for f in gate.failures] + [f"note: {n}" for n in gate.notes]
    if not gate.failures:
        lines.insert(0, "PASS: every figure is within its threshold")
    return lines


def _write_report(args: argparse.Namespace, report: dict[str, Any], markdown: str) -> None:
    """--json and --markdown files, and the Markdown appended to $GITHUB_STEP_SUMMARY when CI sets it."""
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(markdown)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown)


def _cmd_images(args: argparse.Namespace) -> int:
    from hatch_pyc._images import compare_images, gate_images
    from hatch_pyc._render_images import render_images_markdown, render_images_terminal

    try:
        command = shlex.split(args.command) if args.command is not None else None
    except ValueError as exc:
        raise InvalidOptions(f"--command {args.command!r}: {exc}") from None
    if command == []:
        raise InvalidOptions("--command is empty; leave it out to run each image's default command")
    if args.runs < 1:
        raise InvalidOptions(f"--runs must be at least 1 (got {args.runs}); --sizes-only skips the timing")
    with _progress_bar(_show_progress(args), "starting containers") as bar:
        report = compare_images(
            args.images,
            command=command,
            runs=0 if args.sizes_only else args.runs,
            timeout=args.timeout,
            progress=bar,
        )
    gate = None
    if args.max_size_increase is not None or args.max_startup_regression is not None:
        gate = gate_images(
            report, max_size_increase=args.max_size_increase, max_startup_regression=args.max_startup_regression
        )
    lines = _gate_lines(gate)
    _write_report(args, report, render_images_markdown(report, lines))
    if not args.quiet:
        render_images_terminal(report, lines)
    elif lines:
        print("\n".join(lines))
    return EXIT_FAILED if gate and gate.failures else EXIT_OK


def _cmd_layer(args: argparse.Namespace) -> int:
    from hatch_pyc._layer import write_layer
    from hatch_pyc._targets import find_interpreter

    interp = find_interpreter(args.python)
    options = PycOptions(
        levels=tuple(args.optimize or (0,)),
        strip=args.strip,
        exclude=tuple(args.exclude or ()),
        invalidation=args.invalidation_mode,
        on_error=args.on_error,
        workers=args.workers,
    )
    layer = write_layer(
        args.wheels,
        args.output,
        interp,
        prefix=args.prefix,
        options=options,
        scripts=args.scripts_dir,
        python=args.interpreter_path,
    )
    print(f"layer    {layer.path}")
    print(f"digest   {layer.digest}")
    print(f"diff_id  {layer.diff_id}")
    print(f"size     {layer.size}")
    if args.oci_layout or args.docker:
        from hatch_pyc._oci import write_image

        image = write_image(
            layer,
            base=args.base,
            layout=args.oci_layout,
            tag=args.tag or args.docker,
            created_by=f"hatch-pyc layer --prefix {args.prefix}",
            docker=args.docker,
        )
        print(f"image    {image.config_digest}" + (f" ({image.layout})" if image.layout else ""))
    if not args.quiet:
        pycs = layer.compile.pyc_written + layer.compile.pyc_linked
        _say(
            f"hatch-pyc: {layer.entries} entries, {len(layer.compile.compiled)} modules, {pycs} pyc "
            f"({layer.compile.pyc_linked} hard links) for CPython {interp.minor}"
        )
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from hatch_pyc._plan import resolve_target
    from hatch_pyc._targets import find_interpreter
    from hatch_pyc._variants import stage_target
    from hatch_pyc._verify import verify_tree

    target = Path(args.target)
    interp = resolve_target([target], args.python) if target.is_dir() else find_interpreter(args.python)
    options = PycOptions(levels=(args.optimize,), strip=True, exclude=tuple(args.exclude or ()), workers=args.workers)
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-verify-") as scratch:
        staged = stage_target(target, Path(scratch), interp)
        with _progress_bar(_show_progress(args), "importing modules") as bar:
            result = verify_tree(staged.tree, interp, options=options, progress=bar)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "python": ".".join(map(str, interp.version)),
                    "modules": result.modules,
                    "sourceless_only": [{"module": m, "error": e, "exclude": p} for m, e, p in result.sourceless_only],
                    "both": [{"module": m, "error": e} for m, e in result.both],
                },
                handle,
                indent=2,
            )
    for module, error, pattern in result.sourceless_only:
        print(f"FAIL {module}: imports from source but not sourceless: {error}")
        print(f"     keep its source with: --exclude '{pattern}'  (hook: exclude = [\"{pattern}\"])")
    if result.both and not args.quiet:
        print(f"{len(result.both)} module(s) fail with and without sources (not caused by compiling):")
        for module, error in result.both:
            print(f"     {module}: {error}")
    _say(
        f"hatch-pyc: {result.modules} modules imported sourceless for CPython {interp.minor}: "
        f"{result.compiled_ok} ok, {len(result.sourceless_only)} fail only without sources, "
        f"{len(result.both)} fail either way"
    )
    return EXIT_FAILED if result.sourceless_only else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to render the CLI reference)."""
    parser = argparse.ArgumentParser(
        prog="hatch-pyc",
        description="Precompile Python to bytecode: trees, venvs, wheels and container layers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    comp.add_argument(
        "-O",
        "--optimize",
        metavar="LEVEL",
        type=int,
        choices=(0, 1, 2),
        action="append",
        help="optimisation level 0, 1 or 2; repeat for several (default: 0)",
    )
    comp.add_argument(
        "--strip",
        action="store_true",
        help="sourceless: write mod.pyc and remove mod.py once every pyc is written and verified",
    )
    _add_exclude(comp, "the import root")
    comp.add_argument(
        "--invalidation-mode",
        choices=INVALIDATION_MODES,
        help="pyc header mode (default: timestamp, or unchecked-hash with --strip)",
    )
    _add_on_error_and_workers(comp)
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
    _add_verbosity(comp)
    comp.set_defaults(func=_cmd_compile)

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
    whl.add_argument(
        "-O",
        "--optimize",
        type=int,
        choices=(0, 1, 2),
        default=0,
        metavar="LEVEL",
        help="optimisation level of the bytecode (default: 0)",
    )
    _add_exclude(whl, "the install root (site-packages)")
    _add_on_error_and_workers(whl)
    whl.add_argument("--ddir", metavar="DIR", help="prefix for file names recorded in the code objects")
    whl.add_argument("--json", metavar="FILE", help="write a JSON list of the wheels written")
    whl.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    whl.set_defaults(func=_cmd_wheel)

    rep = sub.add_parser(
        "report",
        help="size and import-time deltas between .py and .pyc variants",
        description="Build variants of TARGET in scratch copies (sources only; sources + __pycache__ and sourceless "
        "at each level), measure sizes and import times, and print/write the report. TARGET is a project "
        "directory, a wheel, a package directory, a site-packages or a venv; it is never modified.",
    )
    rep.add_argument("target", metavar="TARGET")
    rep.add_argument("--python", metavar="PY", help="target CPython (default: the running interpreter)")
    rep.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MOD",
        help="module to time (repeatable; default: the target's top-level packages)",
    )
    rep.add_argument(
        "-O",
        "--optimize",
        type=int,
        choices=(0, 1, 2),
        action="append",
        metavar="LEVEL",
        help="optimisation level of the compiled variants (repeatable; default 0)",
    )
    rep.add_argument("--repeat", type=int, metavar="N", help="measured rounds (default: as many as fit in ~40 s, 5-30)")
    rep.add_argument("--sizes-only", action="store_true", help="skip import timing")
    _add_json_and_markdown(rep, "report", "docs/report-schema.json")
    rep.add_argument("--html", metavar="FILE", help="write one self-contained HTML page with charts")
    rep.add_argument("--baseline", metavar="FILE", help="an earlier --json report to compare with")
    rep.add_argument(
        "--max-size-increase",
        type=float,
        metavar="PCT",
        help="exit 1 when a variant grows more than PCT%% (vs the baseline, or vs sources only without one)",
    )
    rep.add_argument(
        "--max-import-regression",
        type=float,
        metavar="PCT",
        help="exit 1 when an import gets more than PCT%% slower, beyond the measured noise",
    )
    rep.add_argument("-q", "--quiet", action="store_true", help="no terminal table")
    rep.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    rep.set_defaults(func=_cmd_report)

    img = sub.add_parser(
        "images",
        help="compare container images: total and per-layer size, start-up time",
        description="Compare images in the Docker engine at DOCKER_HOST (needs the `docker` extra; nothing is "
        "pulled): total size, the layers and the instructions that made them, and the start-up time of a command "
        "in fresh containers with --network none, the images interleaved. The first image is the baseline.",
    )
    img.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image tag or ID; the first is the baseline for the others"
    )
    img.add_argument(
        "--command",
        metavar="CMD",
        help="the command to time, split as a shell would (e.g. \"python -c 'import app'\"); "
        "default: each image's own CMD",
    )
    img.add_argument(
        "--runs", type=int, default=10, metavar="N", help="measured runs per image, after one warm-up (default 10)"
    )
    img.add_argument("--sizes-only", action="store_true", help="skip the start-up timing")
    img.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="fail a run that takes longer (default 120 s)"
    )
    _add_json_and_markdown(img, "comparison", "docs/images-schema.json")
    img.add_argument(
        "--max-size-increase",
        type=float,
        metavar="PCT",
        help="exit 1 when an image is more than PCT%% bigger than the baseline",
    )
    img.add_argument(
        "--max-startup-regression",
        type=float,
        metavar="PCT",
        help="exit 1 when an image's median start-up is more than PCT%% slower than the baseline's, beyond the noise",
    )
    img.add_argument("-q", "--quiet", action="store_true", help="no terminal tables (threshold lines still print)")
    img.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    img.set_defaults(func=_cmd_images)

    lay = sub.add_parser(
        "layer",
        help="write an OCI image layer of compiled wheels (no container engine needed)",
        description="Install wheels under --prefix in a staging root, compile them for --python, and write one "
        "reproducible OCI layer (tar+gzip). Optionally write a whole image (--oci-layout) or load it (--docker).",
    )
    lay.add_argument("wheels", nargs="+", metavar="WHEEL")
    lay.add_argument("--python", required=True, metavar="PY", help="target CPython (the image's interpreter version)")
    lay.add_argument(
        "--prefix",
        required=True,
        metavar="DIR",
        help="site-packages inside the image, e.g. "
        "/usr/local/lib/python3.12/site-packages; scripts go to the matching bin/",
    )
    lay.add_argument("-o", "--output", required=True, metavar="FILE", help="the layer file (.tar.gz)")
    lay.add_argument(
        "-O",
        "--optimize",
        type=int,
        choices=(0, 1, 2),
        action="append",
        metavar="LEVEL",
        help="optimisation level; repeat for several (default 0)",
    )
    lay.add_argument("--strip", action="store_true", help="sourceless: mod.pyc only, one level")
    _add_exclude(lay, "the install root (site-packages)")
    lay.add_argument(
        "--invalidation-mode",
        choices=INVALIDATION_MODES,
        help="pyc header mode (default: timestamp "
        "pycs matching the layer's fixed file times, or unchecked-hash with --strip)",
    )
    _add_on_error_and_workers(lay)
    lay.add_argument(
        "--scripts-dir",
        metavar="DIR",
        help="where console scripts go in the image (default: the bin/ beside lib/ of --prefix)",
    )
    lay.add_argument(
        "--interpreter-path",
        metavar="PATH",
        help="the image's interpreter, for script shebangs (default: <bin>/pythonX.Y)",
    )
    lay.add_argument(
        "--oci-layout",
        metavar="PATH",
        help="also write a whole image: the base's layers plus this one, "
        "as an OCI layout that is also a docker archive (a directory, or a .tar file)",
    )
    lay.add_argument(
        "--base",
        metavar="BASE",
        help="the base image for --oci-layout/--docker: an OCI layout (directory or .tar) or a `docker save` archive",
    )
    lay.add_argument("--tag", metavar="NAME:TAG", help="the image name written into the layout")
    lay.add_argument(
        "--docker",
        metavar="NAME:TAG",
        help="load the image into the Docker engine (needs the `docker` extra) under this name",
    )
    lay.add_argument("-q", "--quiet", action="store_true", help="print the digests only")
    lay.set_defaults(func=_cmd_layer)

    ver = sub.add_parser(
        "verify",
        help="import every module sourceless and compare with the sources",
        description="Import every module of TARGET's sourceless variant in fresh processes of the target CPython "
        "and compare with the sources: modules that fail only without sources are named with the exclude "
        "pattern that keeps their source (exit 1). TARGET is a tree, site-packages, venv, wheel or project.",
    )
    ver.add_argument("target", metavar="TARGET")
    ver.add_argument("--python", metavar="PY", help="target CPython (default: the venv's, else the running one)")
    ver.add_argument(
        "-O",
        "--optimize",
        type=int,
        choices=(0, 1, 2),
        default=0,
        metavar="LEVEL",
        help="optimisation level of the sourceless variant (default 0)",
    )
    _add_exclude(ver, "the import root")
    ver.add_argument(
        "--workers", type=int, default=0, metavar="N", help="parallel import processes (default: one per CPU)"
    )
    ver.add_argument("--json", metavar="FILE", help="write the outcome as JSON")
    ver.add_argument("-q", "--quiet", action="store_true", help="list only the failures that matter")
    ver.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    ver.set_defaults(func=_cmd_verify)

    insp = sub.add_parser(
        "inspect",
        help="decode a pyc: target CPython, header, code object",
        description="Decode a pyc header (magic -> CPython version, flags, source mtime/size or "
        "hash) and, when a matching CPython is found, its code object.",
    )
    insp.add_argument("file", metavar="FILE.pyc")
    insp.add_argument("--dis", action="store_true", help="also print a dis listing of the module code")
    insp.add_argument("--json", action="store_true", help="print JSON")
    insp.set_defaults(func=_cmd_inspect)
    return parser


def _add_exclude(parser: argparse.ArgumentParser, relative_to: str) -> None:
    parser.add_argument(
        "--exclude",
        metavar="PATTERN",
        action="append",
        help=f"gitignore-style pattern, relative to {relative_to}; matching modules keep their source and are not "
        "compiled (repeatable)",
    )


def _add_json_and_markdown(parser: argparse.ArgumentParser, what: str, schema: str) -> None:
    parser.add_argument("--json", metavar="FILE", help=f"write the {what} as JSON (schema: {schema})")
    parser.add_argument("--markdown", metavar="FILE", help="write Markdown (also appended to $GITHUB_STEP_SUMMARY)")


def _add_on_error_and_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="fail",
        help="fail: a source that does not compile fails the run and nothing changes (default); keep-source: keep "
        "it as source and report it",
    )
    parser.add_argument("--workers", type=int, default=0, metavar="N", help="worker processes (default: one per CPU)")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="list every file")
    group.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when not on a terminal")


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code: int = args.func(args)
        return code
    except CompileFailed as exc:
        for error in exc.errors:
            _say(f"hatch-pyc: error: {error}")
        _say(
            f"hatch-pyc: {len(exc.errors)} source(s) did not compile; nothing was changed "
            "(--on-error keep-source keeps them as source instead)"
        )
        return EXIT_FAILED
    except HatchPycError as exc:
        _say(f"hatch-pyc: error: {exc}")
        # A command failing in an image is a failed check on the image, not bad usage.
        return EXIT_FAILED if isinstance(exc, ImageCommandFailed) else EXIT_USAGE
    except OSError as exc:  # a full disk, a read-only directory: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"hatch-pyc: error: {where}{exc.strerror or exc}; nothing was left half-written")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _say("hatch-pyc: interrupted; nothing was left half-written")
        return 130
    except _Terminated:
        _say("hatch-pyc: terminated; nothing was left half-written")
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
