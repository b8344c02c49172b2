"""``hatch-pyc report`` and ``hatch-pyc images``: measure variants or container images, check thresholds.

Both write the same kinds of output (JSON, Markdown, $GITHUB_STEP_SUMMARY) and turn a threshold
check into the same PASS/FAIL/note lines.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from hatch_pyc._cli_shared import EXIT_FAILED, EXIT_OK, add_optimize, progress_bar, show, show_progress

if TYPE_CHECKING:
    from hatch_pyc._gate import GateResult


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` and ``images``."""
    rep = sub.add_parser(
        "report",
        help="size and import-time deltas between .py and .pyc variants",
        description="Build variants of TARGET in scratch copies (sources only; sources + __pycache__ and sourceless "
        "at each level), measure sizes and import times, and print/write the report. TARGET is a project "
        "directory, a wheel, a package directory, a site-packages or a venv; it is never modified.",
    )
    rep.add_argument("target", metavar="TARGET")
    rep.add_argument(
        "--python",
        metavar="PY",
        help="target CPython (default: a venv's own interpreter, the version of a .../pythonX.Y/site-packages, "
        "else the running one)",
    )
    rep.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MOD",
        help="module to time (repeatable; default: the target's top-level packages)",
    )
    add_optimize(rep, "optimisation level of the compiled variants (repeatable; default 0)", repeatable=True)
    rep.add_argument("--repeat", type=int, metavar="N", help="measured rounds (default: as many as fit in ~40 s, 6-30)")
    rep.add_argument("--sizes-only", action="store_true", help="skip import timing")
    rep.add_argument(
        "--compact",
        action="store_true",
        help="also measure sourceless variants of compact pycs (no column positions: see compile --compact), "
        "sourceless-compact-O<level>",
    )
    _add_json_and_markdown(rep, "report", "docs/report-schema.json")
    rep.add_argument("--html", metavar="FILE", help="write one self-contained HTML page with charts")
    rep.add_argument("--baseline", metavar="FILE", help="an earlier --json report to compare with")
    rep.add_argument(
        "--max-size-increase",
        type=_percent,
        metavar="PCT",
        help="exit 1 when a variant grows more than PCT%% (vs the baseline, or vs sources only without one)",
    )
    rep.add_argument(
        "--max-import-regression",
        type=_percent,
        metavar="PCT",
        help="exit 1 when an import gets more than PCT%% slower (as a ratio measured in the same rounds), beyond the "
        "measured noise",
    )
    rep.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or terminal tables (threshold checks still print)"
    )
    rep.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    rep.set_defaults(func=run_report)

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
        type=_percent,
        metavar="PCT",
        help="exit 1 when an image is more than PCT%% bigger than the baseline",
    )
    img.add_argument(
        "--max-startup-regression",
        type=_percent,
        metavar="PCT",
        help="exit 1 when an image's median start-up is more than PCT%% slower than the baseline's, beyond the noise",
    )
    img.add_argument("-q", "--quiet", action="store_true", help="no terminal tables (threshold lines still print)")
    img.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    img.set_defaults(func=run_images)


def _percent(text: str) -> float:
    """An argparse type: a threshold in percent, a finite number of 0 or more."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a percentage of 0 or more (got {text})")
    return value


def _add_json_and_markdown(parser: argparse.ArgumentParser, what: str, schema: str) -> None:
    parser.add_argument("--json", metavar="FILE", help=f"write the {what} as JSON (schema: {schema})")
    parser.add_argument("--markdown", metavar="FILE", help="write Markdown (also appended to $GITHUB_STEP_SUMMARY)")


def run_report(args: argparse.Namespace) -> int:
    """Measure TARGET's variants, check the thresholds, write and print the report."""
    from hatch_pyc._errors import InvalidInput, InvalidOptions
    from hatch_pyc._overlap import refuse_outputs_over_inputs
    from hatch_pyc._render import render_html, render_markdown, render_terminal
    from hatch_pyc._report import build_report, compare, read_baseline

    refuse_outputs_over_inputs(
        [("TARGET", args.target), ("--baseline", args.baseline)],
        [("--json", args.json), ("--markdown", args.markdown), ("--html", args.html)],
    )
    baseline = read_baseline(args.baseline) if args.baseline else None
    if args.sizes_only and args.max_import_regression is not None:
        raise InvalidOptions("--max-import-regression needs import times: leave out --sizes-only")
    with progress_bar(show_progress(args), "measuring import times") as bar:
        report = build_report(
            args.target,
            python=args.python,
            levels=tuple(args.optimize or (0,)),
            modules=tuple(args.imports or ()),
            repeat=args.repeat,
            measure_time=not args.sizes_only,
            progress=(lambda _stage, done, total: bar(done, total)) if bar else None,
            compact=args.compact,
        )
    gate = None
    if args.max_size_increase is not None or args.max_import_regression is not None:
        try:
            gate = compare(
                report,
                baseline,
                max_size_increase=args.max_size_increase,
                max_import_regression=args.max_import_regression,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            if baseline is None:  # this run's own report: a bug here, not bad input
                raise
            raise InvalidInput(
                f"{args.baseline}: not a hatch-pyc report this version can compare with ({type(exc).__name__}: {exc})"
            ) from None
    lines = _gate_lines(gate, report)
    _write_report(args, report, render_markdown(report, lines))
    if args.html:
        # a name that is not UTF-8 (a lone surrogate) is written escaped, as in the Markdown, not a traceback
        with open(args.html, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(render_html(report, lines))
    if not args.quiet:
        render_terminal(report, lines)
    elif lines:  # -q hides the tables, never a verdict
        show("\n".join(lines))
    return EXIT_FAILED if gate and not gate.passed else EXIT_OK


def run_images(args: argparse.Namespace) -> int:
    """Describe and time the images, check the thresholds, write and print the comparison."""
    import shlex

    from hatch_pyc._errors import InvalidOptions
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
    with progress_bar(show_progress(args), "starting containers") as bar:
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
    lines = _gate_lines(gate, report)
    _write_report(args, report, render_images_markdown(report, lines))
    if not args.quiet:
        render_images_terminal(report, lines)
    elif lines:
        show("\n".join(lines))
    return EXIT_FAILED if gate and not gate.passed else EXIT_OK


def _gate_lines(gate: GateResult | None, report: dict[str, Any]) -> list[str]:
    """Every check of a threshold check as a line (failures first, the verdict last), for the terminal and the
    Markdown; the JSON report gets the same checks under ``gate``."""
    if gate is None:
        return []
    report["gate"] = gate.to_json()
    return gate.lines()


def _write_report(args: argparse.Namespace, report: dict[str, Any], markdown: str) -> None:
    """--json and --markdown files, and the Markdown appended to $GITHUB_STEP_SUMMARY when CI sets it."""
    import json

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
