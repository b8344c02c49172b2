#!/usr/bin/env python3
"""The differential oracle, full run: hatch-pyc's pycs against each CPython's own compile().

For every target (default: every CPython 3.10+ this machine has), two corpora are compiled by
hatch-pyc's engine at levels 0, 1 and 2 and each pyc is compared, recursively and
type-strictly, with what that interpreter's ``compile()`` returns for the same source, file
name and level (hatch_pyc._oracle):

- *stdlib*: the target's whole standard library **with its test suite** (``test_compile``,
  ``test_grammar``, ``test_peepholer`` ... are full of adversarial constants);
- *site-packages*: the benchmarks' corpus (boto3, pandas, sqlalchemy, django and their
  dependencies, installed for that target; benchmarks/bench_compile.py builds and caches it).

    python scripts/oracle.py                                  # every CPython found, both corpora
    python scripts/oracle.py --python 3.14 --corpus stdlib
    python scripts/oracle.py --json oracle.json --markdown docs/correctness.md

``--markdown`` into an existing file replaces only what lies between the ``oracle:begin`` and
``oracle:end`` markers, so the prose around the table survives a rerun.

Exit 0 when there is no difference, 1 when there is one (each is printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_compile  # noqa: E402  (the site-packages corpus, built and cached once per target)

from hatch_pyc import Interpreter, InvalidTarget, find_interpreter  # noqa: E402
from hatch_pyc._oracle import OracleReport, check_against_cpython  # noqa: E402
from hatch_pyc._targets import discover_interpreters  # noqa: E402


def corpus_roots(name: str, interp: Interpreter, workdir: Path) -> list[Path]:
    if name == "stdlib":
        return [Path(interp.stdlib)]
    target = bench_compile.resolve_target(interp.executable)
    info = bench_compile.ensure_corpus("site-packages", target, workdir, list(bench_compile.DEFAULT_PACKAGES))
    return [Path(str(info["path"]))]


BEGIN = "<!-- oracle:begin -->"
END = "<!-- oracle:end -->"


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        f"- date: {datetime.date.today().isoformat()}; levels 0, 1, 2; produced by `nox -s oracle` (scripts/oracle.py)",
        "- *modules*: sources compiled; *pycs compared*: pycs whose code object was compared with "
        "`compile()`'s, recursively and type-strictly; *linked levels*: pycs written as hard links to a lower "
        "level's (the level-skip rules, or equal output), each compared too; *refused by both*: (source, level) "
        "pairs that neither hatch-pyc nor `compile()` accepts (the test suite's deliberately broken files)",
        "",
        "| CPython | corpus | modules | pycs compared | linked levels | refused by both | differences | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['python']} | {row['corpus']} | {row['modules']:,} | {row['pycs']:,} | {row['linked']:,} "
            f"| {row['refused_by_both']:,} | **{len(row['differences'])}** | {row['seconds']:.0f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", help="a target (3.14, python3.14 or a path); repeatable")
    parser.add_argument("--corpus", action="append", choices=("stdlib", "site-packages"), help="default: both")
    parser.add_argument("--workdir", type=Path, default=bench_compile.DEFAULT_WORKDIR, help="corpus cache")
    parser.add_argument(
        "--compact", action="store_true", help="compact pycs, against compile() under -X no_debug_ranges"
    )
    parser.add_argument("--json", type=Path, help="write every figure and difference here")
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    parser.add_argument("--from-json", type=Path, help="render the results of a saved --json again, running nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = json.loads(args.from_json.read_text(encoding="utf-8"))
        return write_results(rows, args.json, args.markdown)
    try:
        targets = [find_interpreter(spec) for spec in args.python] if args.python else discover_interpreters()
    except InvalidTarget as exc:
        print(f"oracle: error: {exc}", file=sys.stderr)
        return 2
    rows: list[dict[str, object]] = []
    for interp in targets:
        for corpus in args.corpus or ["stdlib", "site-packages"]:
            roots = corpus_roots(corpus, interp, args.workdir)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="hatch-pyc-oracle-") as scratch:
                report: OracleReport = check_against_cpython(roots, interp, scratch, compact=args.compact)
            row = {"corpus": corpus + (" (compact)" if args.compact else ""), **report.to_json()}
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
            print(
                f"oracle: CPython {row['python']} {corpus}: {report.modules} modules, {report.pycs} pycs compared, "
                f"{len(report.differences)} differences ({row['seconds']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            for difference in report.differences:
                print(f"  {difference}", file=sys.stderr)
    return write_results(rows, args.json, args.markdown)


def write_results(rows: list[dict[str, object]], json_path: Path | None, markdown: Path | None) -> int:
    """Save the rows and the table; exit 1 if any row has a difference."""
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    table = render(rows)
    if markdown:
        text = markdown.read_text(encoding="utf-8") if markdown.exists() else ""
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = f"{head}{BEGIN}\n{table}{END}{rest.split(END, 1)[1]}"
        else:
            text = table
        markdown.write_text(text, encoding="utf-8")
    print(table)
    return 1 if any(row["differences"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
