#!/usr/bin/env python3
"""Mutation testing of hatch-pyc's core modules: do the tests notice when a guard breaks?

cosmic-ray makes each mutant (one flipped comparison, negated condition, changed number, emptied
loop, swapped ``and``/``or``, replaced exception ... at a time) by rewriting the module *on disk*,
then runs a test command. On disk matters here: most of hatch-pyc's tests run the real CLI in a
subprocess, and compile workers run under other CPythons, so a mutant must be in the file they
import. (mutmut 3 switches mutants inside the test process and picks tests by what that process
calls; it cannot see code that only subprocesses run, which is most of ours.)

The test command (``scripts/mutation_test.py``) runs only the tests that execute the mutated line,
fastest first, stopping at the first failure. Which tests execute which line comes from a coverage
map built first: the whole suite under coverage, with every Python process a test starts measured
too and labelled with that test's id (``tests/conftest.py``).

    python scripts/mutation.py map                          # build .cache/mutation/map.json (~10 min)
    python scripts/mutation.py run _commit _layout          # mutate these (default: every core module)
    python scripts/mutation.py run --again _commit          # after new tests and a new map: only the survivors
    python scripts/mutation.py report --markdown docs/mutation.md --survivors mutation/survivors.md
    python scripts/mutation.py all [MODULE ...]             # the three in turn (nox -s mutation)

A mutant *survives* when no selected test fails. Survivors are either killed by a new test or
listed in ``mutation/equivalent.toml`` with the reason they cannot be (the program behaves the
same); the score of a module is killed / (mutants - equivalent).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".cache" / "mutation"
CORE = (
    "_errors",
    "_options",
    "_layout",
    "_pycinfo",
    "_plan",
    "_compile",
    "_commit",
    "_records",
    "_wheelcheck",
    "_wheel",
    "_oci_base",
    "_cache",
)
# Operators whose mutants say nothing: ``|`` is only ever a type union in these modules (annotations,
# never evaluated), and each arithmetic operator is replaced by one other (``+`` by ``-``, ...)
# rather than by all eleven, which multiplies mutants without finding more weak tests.
#
# A comparison is replaced by the mutants that subsume all the others (Kaminski, Ammann and Offutt,
# "Better predicate testing", 2011: a test set that kills ``<=`` and ``>=`` for ``==`` kills the
# other four too) and by its negation; never ``==`` by ``is``, which in CPython is the same for the
# None, small ints and interned strings these modules compare, and so only adds equivalent mutants.
SUBSUMING = {
    "Eq": ("LtE", "GtE", "NotEq"),
    "NotEq": ("Lt", "Gt", "Eq"),
    "Lt": ("LtE", "NotEq", "GtE"),
    "Gt": ("GtE", "NotEq", "LtE"),
    "LtE": ("Lt", "Eq", "Gt"),
    "GtE": ("Gt", "Eq", "Lt"),
    "Is": ("IsNot",),
    "IsNot": ("Is",),
}
EXCLUDED_OPERATORS = (
    r"core/ReplaceBinaryOperator_BitOr_.*",
    r"core/ReplaceBinaryOperator_.*_(Pow|RShift|LShift|BitOr|BitAnd|BitXor|Mod|FloorDiv|Div|Mul)",
    r"core/ReplaceBinaryOperator_(Pow|RShift|LShift|BitAnd|BitXor)_.*",
    r"core/RemoveDecorator",
    *(rf"core/ReplaceComparisonOperator_{op}_(?!({'|'.join(keep)})$).*" for op, keep in SUBSUMING.items()),
)
EQUIVALENT = REPO / "mutation" / "equivalent.toml"
TIMEOUT = 600.0  # per mutant: a mutant that makes the tests hang is killed when this runs out


def _coveragerc() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    rc = WORK / "coveragerc"
    rc.write_text(
        "[run]\n"
        "parallel = true\n"
        f"data_file = {WORK / 'cov' / '.coverage'}\n"
        f"source = {REPO / 'hatch_pyc'}\n"
        "context = ${HATCH_PYC_TEST_ID}\n"
        "disable_warnings = no-data-collected, module-not-measured, module-not-imported, couldnt-parse\n"
    )
    return rc


def build_map(jobs: int, *, reuse: bool = False, add: list[str] | None = None) -> None:
    """Run the suite under coverage in every process; write which tests run each line of each core module.

    ``reuse``: combine what an earlier run measured instead of running the suite again. ``add``: run only
    these tests (new ones, written against survivors) and add what they run to the last map, so that
    ``run --again`` chooses them without the whole suite being measured again.
    """
    import coverage

    rc = _coveragerc()
    junit = WORK / "durations.xml"
    if add:
        if not junit.exists():
            raise SystemExit("no map to add to: run `python scripts/mutation.py map` first")
        junit = WORK / f"durations-added-{time.time_ns()}.xml"
        _measure(rc, junit, jobs, add)
    elif not reuse:
        for old in WORK.glob("durations-added-*.xml"):
            old.unlink()
        _measure(rc, junit, jobs)
    cov = coverage.Coverage(config_file=str(rc))
    cov.combine([str(WORK / "cov")], keep=True)
    data = cov.get_data()
    import xml.etree.ElementTree as ET

    durations: dict[str, float] = {}
    for report in [WORK / "durations.xml", *sorted(WORK.glob("durations-added-*.xml"))]:
        for case in ET.parse(report).getroot().iter("testcase"):
            file = case.get("file") or ""
            classname = case.get("classname", "").split(".")[-1]
            nodeid = f"{file}::{case.get('name')}" if file else f"tests/{classname}.py::{case.get('name')}"
            durations[nodeid] = float(case.get("time", "0"))
    importers = _importers()
    # A test parametrized over the target CPythons runs the same lines under each, but only the processes of
    # the interpreter running the suite are measured (coverage is installed there alone): a line one
    # parametrization runs selects them all (a mutant may show only under 3.14, say).
    variants: dict[str, list[str]] = {}
    for test in durations:
        variants.setdefault(test.split("[", 1)[0], []).append(test)
    lines: dict[str, dict[str, list[str]]] = {}
    for module in CORE:
        path = str(REPO / "hatch_pyc" / f"{module}.py")
        by_line = data.contexts_by_lineno(path)
        # A line run with no test's context ran when a test process imported the module, before any
        # test started (a decorator, a class body, a constant): every test of the module depends on it,
        # those that ran its lines and those whose file imports it by name (a test that only makes and
        # compares its dataclasses runs no line of it: their methods are generated).
        module_tests = sorted(
            {c for contexts in by_line.values() for c in contexts if c}
            | {t for t in durations if t.split("::")[0] in importers.get(module, set())}
        )
        lines[module] = {
            str(n): module_tests if "" in contexts else _with_variants(sorted(c for c in contexts if c), variants)
            for n, contexts in by_line.items()
        }
    sources = {m: _digest(m) for m in CORE}
    (WORK / "map.json").write_text(json.dumps({"lines": lines, "durations": durations, "sources": sources}))
    covered = {m: sum(1 for t in v.values() if t) for m, v in lines.items()}
    print(f"map: lines run by at least one test: {covered}", flush=True)


def _with_variants(tests: list[str], variants: dict[str, list[str]]) -> list[str]:
    """``tests`` and every other parametrization of each."""
    return sorted({*tests, *(v for t in tests for v in variants.get(t.split("[", 1)[0], []))})


def _importers() -> dict[str, set[str]]:
    """For each core module, the test files that import it by name (``from hatch_pyc._plan import ...``)."""
    import ast

    found: dict[str, set[str]] = {}
    for test_file in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(test_file.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("hatch_pyc._"):
                    found.setdefault(name.removeprefix("hatch_pyc."), set()).add(f"tests/{test_file.name}")
    return found


def _drop_old_pth() -> None:
    """Remove the .pth earlier versions of this script installed: it imported coverage in every process."""
    Path(sysconfig.get_paths()["purelib"], "hatch_pyc_mutation_coverage.pth").unlink(missing_ok=True)


def _measure(rc: Path, junit: Path, jobs: int, tests: list[str] | None = None) -> None:
    if not tests:  # a whole map starts afresh; added tests add their data files to the last one's
        shutil.rmtree(WORK / "cov", ignore_errors=True)
    (WORK / "cov").mkdir(parents=True, exist_ok=True)
    # Every process of this interpreter starts coverage when COVERAGE_PROCESS_START names a config: coverage
    # 7.10+ installs a .pth that does it (and imports nothing when the variable is unset), so no process
    # outside the map pays for it.
    _drop_old_pth()
    env = {**os.environ, "COVERAGE_PROCESS_START": str(rc), "HATCH_PYC_TEST_ID": ""}
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "not docker",
            "-n",
            str(jobs),
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-W",
            "ignore::coverage.exceptions.CoverageWarning",
            *(tests or []),
        ],
        cwd=REPO,
        env=env,
        check=False,
    )
    # A test may fail under coverage (signal timing, modules coverage itself imports): what it ran is mapped.
    print(f"map: suite under coverage in {time.monotonic() - started:.0f} s (exit {proc.returncode})", flush=True)


def _digest(module: str) -> str:
    import hashlib

    return hashlib.sha256((REPO / "hatch_pyc" / f"{module}.py").read_bytes()).hexdigest()


def _clone(index: int) -> Path:
    """A copy of the working tree for one job: its own files to mutate."""
    target = WORK / f"work-{index}"
    shutil.rmtree(target, ignore_errors=True)
    ignore = shutil.ignore_patterns(".git", ".nox", ".cache", "__pycache__", ".hypothesis", "site")
    shutil.copytree(REPO, target, ignore=ignore)
    return target


def _config(clone: Path, module: str, budget: float) -> Path:
    config = WORK / f"{module}.toml"
    excluded = ", ".join(json.dumps(e) for e in EXCLUDED_OPERATORS)
    command = f"{sys.executable} {clone / 'scripts' / 'mutation_test.py'} {module} {WORK / 'map.json'} {budget:g}"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{clone / "hatch_pyc" / f"{module}.py"}"\n'
        f"timeout = {TIMEOUT}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{excluded}]\n"
    )
    return config


def _run_module(clone: Path, module: str, *, again: bool = False, budget: float = 90.0) -> None:
    """Mutate ``module`` in ``clone`` and test every mutant; ``again``: only those that survived last time."""
    session = WORK / f"{module}.sqlite"
    config = _config(clone, module, budget)
    if again:
        # cosmic-ray exec runs every job that has no result: the survivors are run again, except those listed as
        # equivalent (no test can kill them, and each would cost its whole budget again)
        equivalent = _equivalent()
        again_ids = [
            (r["job_id"],)
            for r in _results(session)
            if r["outcome"] == "survived" and _equivalent_reason(module, r, equivalent) is None
        ]
        with sqlite3.connect(session) as db:
            db.executemany("DELETE FROM work_results WHERE job_id = ?", again_ids)
    else:
        session.unlink(missing_ok=True)
    pristine = clone / ".mutation-pristine"
    pristine.mkdir(exist_ok=True)
    shutil.copyfile(clone / "hatch_pyc" / f"{module}.py", pristine / f"{module}.py")
    (WORK / f"{module}.sha256").write_text(_digest(module))
    (WORK / f"{module}.commit").write_text(_commit_of_tree())
    bindir = Path(sys.executable).parent
    started = time.monotonic()
    steps = [("cosmic-ray", "exec")]
    if not again:
        steps = [("cosmic-ray", "init"), ("cr-filter-operators",), *steps]
    for tool, *args in steps:
        subprocess.run(
            [str(bindir / tool), *args, str(config), str(session)]
            if tool == "cosmic-ray"
            else [str(bindir / tool), str(session), str(config)],
            cwd=clone,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    results = _results(session)
    killed, survived, total = _counts(results)
    errors = sum(1 for r in results if r["outcome"] == "error")
    if errors:
        raise SystemExit(f"run: {module}: {errors} mutants were not found in {clone} by their tests (harness error)")
    print(
        f"run: {module}: {total} mutants, {killed} killed, {survived} survived in {time.monotonic() - started:.0f} s",
        flush=True,
    )


def _commit_of_tree() -> str:
    """The commit the code and tests under test are at, ``+`` when either has uncommitted changes."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True)
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "hatch_pyc", "tests"], check=False, capture_output=True, text=True
    )
    return (head.stdout.strip() or "unknown") + ("+" if changed.stdout.strip() else "")


def _session_clone(module: str) -> int | None:
    """The work copy the last run of ``module`` mutated (its mutants name files there), if it can be run again."""
    session = WORK / f"{module}.sqlite"
    digest = WORK / f"{module}.sha256"
    if not session.exists() or not digest.exists() or digest.read_text() != _digest(module):
        return None
    with sqlite3.connect(session) as db:
        row = db.execute("SELECT module_path FROM mutation_specs LIMIT 1").fetchone()
    # cosmic-ray mutates the file the session names: a session made in another checkout (a copied
    # .cache) names that checkout's copy, and its tests here would run an unmutated module.
    match = re.fullmatch(re.escape(str(WORK)) + r"/work-(\d+)/hatch_pyc/\w+\.py", row[0]) if row else None
    return int(match.group(1)) if match else None


def _counts(rows: list[dict[str, object]]) -> tuple[int, int, int]:
    killed = sum(1 for r in rows if r["outcome"] == "killed")
    survived = sum(1 for r in rows if r["outcome"] == "survived")
    return killed, survived, killed + survived


def _results(session: Path) -> list[dict[str, object]]:
    with sqlite3.connect(session) as db:
        rows = db.execute(
            "SELECT s.job_id, s.module_path, s.operator_name, s.start_pos_row, s.start_pos_col, s.definition_name, "
            "r.worker_outcome, r.test_outcome, r.diff, r.output FROM mutation_specs s "
            "JOIN work_results r ON r.job_id = s.job_id"
        ).fetchall()
    results = []
    for job_id, module_path, operator, row, col, definition, worker_outcome, test_outcome, diff, output in rows:
        worker, test = str(worker_outcome).lower(), str(test_outcome).lower()
        if worker == "skipped" or any(re.match(e, operator) for e in EXCLUDED_OPERATORS):
            continue  # a session made before an operator was excluded: scored as a new run would be
        # killed or incompetent (the mutant does not even run); a timeout or a dead worker: noticed too;
        # a mutant the test command did not find in its copy (scripts/mutation_test.py) is neither
        if "harness error:" in str(output or ""):
            outcome = "error"
        else:
            outcome = "survived" if worker == "normal" and test == "survived" else "killed"
        results.append(
            {
                "job_id": job_id,
                "module": Path(module_path).stem,
                "operator": operator,
                "line": row,
                "col": col,
                "function": definition,
                "outcome": outcome,
                "diff": diff or "",
                "output": output or "",
            }
        )
    return results


def run(modules: list[str], jobs: int, *, again: bool = False, first_copy: int = 0, budget: float = 90.0) -> None:
    """Mutate ``modules``, one work copy per job. ``again``: a module unchanged since its last run is
    only resumed: its mutants not yet run, and those that survived are tested again (after new tests;
    the map must be rebuilt first so it knows them); the others are run whole."""
    if not (WORK / "map.json").exists():
        raise SystemExit("no coverage map: run `python scripts/mutation.py map` first")
    mapped = json.loads((WORK / "map.json").read_text()).get("sources", {})
    stale = [m for m in modules if mapped.get(m) != _digest(m)]
    if stale:  # its line numbers would pick the wrong tests
        raise SystemExit(
            f"the coverage map is older than {', '.join(stale)}: run `python scripts/mutation.py map` again"
        )
    sizes = {m: len((REPO / "hatch_pyc" / f"{m}.py").read_text().splitlines()) for m in modules}
    # A module run before and unchanged since is resumed in its own copy (its mutants name files
    # there): the mutants not yet run and the survivors; every other module is run whole.
    where = {m: _session_clone(m) if again else None for m in modules}
    fresh = range(first_copy, first_copy + jobs)  # copies another run (another --first-copy) does not use
    clones = {i: _clone(i) for i in sorted({*fresh, *(i for i in where.values() if i is not None)})}
    queues: dict[int, list[str]] = {i: [] for i in clones}
    loads = dict.fromkeys(clones, 0)
    for module, index in where.items():
        if index is not None:
            queues[index].append(module)
            loads[index] += sizes[module] // 4
    for module in sorted((m for m in modules if where[m] is None), key=lambda m: -sizes[m]):
        i = min(fresh, key=lambda k: loads[k])
        queues[i].append(module)
        loads[i] += sizes[module]

    def work(index: int) -> None:
        for module in queues[index]:
            _run_module(clones[index], module, again=where[module] is not None, budget=budget)

    with concurrent.futures.ThreadPoolExecutor(len(clones)) as pool:
        for future in [pool.submit(work, i) for i in clones]:
            future.result()


def _equivalent() -> list[dict[str, str]]:
    if not EQUIVALENT.exists():
        return []
    return list(tomllib.loads(EQUIVALENT.read_text()).get("equivalent", []))


def _equivalent_reason(module: str, r: dict[str, object], equivalent: list[dict[str, str]]) -> str | None:
    """Why the surviving mutant ``r`` is equivalent, if ``mutation/equivalent.toml`` lists it."""
    text = _source_line(module, int(r["line"]))  # type: ignore[call-overload]
    return next(
        (
            e["reason"]
            for e in equivalent
            if e["module"] == module
            and e["operator"] == r["operator"]
            and e["line"].strip() == text
            and e["mutant"].strip() == _mutant_line(str(r["diff"]))
            and e.get("function", r["function"]) == r["function"]  # for a line whose text recurs
        ),
        None,
    )


def _mutant_line(diff: str) -> str:
    """The line as the mutant wrote it (the diff's first added line), stripped."""
    return next(
        (line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")), ""
    )


def _source_line(module: str, line: int) -> str:
    lines = (REPO / "hatch_pyc" / f"{module}.py").read_text().splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def report(markdown: Path | None, survivors: Path | None) -> int:
    equivalent = _equivalent()
    coverage_map = json.loads((WORK / "map.json").read_text())["lines"] if (WORK / "map.json").exists() else {}
    rows: dict[str, str] = {}
    ran: set[str] = set()
    listed = []
    for module in CORE:
        session = WORK / f"{module}.sqlite"
        if not session.exists():
            continue
        ran.add(module)
        results = [r for r in _results(session) if r["outcome"] != "error"]  # not run: in no count
        killed = [r for r in results if r["outcome"] == "killed"]
        alive = [r for r in results if r["outcome"] == "survived"]
        same = []
        for r in alive:
            text = _source_line(module, int(r["line"]))  # type: ignore[arg-type]
            if _equivalent_reason(module, r, equivalent) is not None:
                same.append(r)
            else:
                r["text"] = text
                r["covered"] = bool(coverage_map.get(module, {}).get(str(r["line"])))
                listed.append(r)
        denominator = len(results) - len(same)
        score = 100.0 * len(killed) / denominator if denominator else 100.0
        stamp = WORK / f"{module}.commit"
        at = stamp.read_text().strip() if stamp.exists() else "unknown"
        digest = WORK / f"{module}.sha256"
        if not digest.exists() or digest.read_text() != _digest(module):
            at += " (module changed since)"
        rows[module] = (
            f"| `{module}` | {len(results)} | {len(killed)} | {len(alive) - len(same)} | {len(same)} "
            f"| {score:.1f} % | {at} |"
        )
    text = markdown.read_text() if markdown is not None and markdown.exists() else ""
    for line in text.splitlines():  # a module with no run here keeps the row of its last run
        found = re.match(r"\| `(_\w+)` \|", line)
        if found and found.group(1) in CORE and found.group(1) not in rows:
            rows[found.group(1)] = line
    table = [
        "| module | mutants | killed | survived | equivalent | score | tests at |",
        "|---|--:|--:|--:|--:|--:|---|",
        *(rows[m] for m in CORE if m in rows),
    ]
    print("\n".join(table))
    if markdown is not None:
        text = text or "<!-- mutation:begin -->\n<!-- mutation:end -->\n"
        block = "<!-- mutation:begin -->\n" + "\n".join(table) + "\n<!-- mutation:end -->"
        markdown.write_text(
            re.sub(r"<!-- mutation:begin -->.*?<!-- mutation:end -->", lambda _: block, text, flags=re.S)
        )
    if survivors is not None:
        out = [
            "# Surviving mutants",
            "",
            "Generated by `python scripts/mutation.py report`; each is a change to the code that no test noticed.",
            "Kill it with a test, or list it in `mutation/equivalent.toml` with the reason it changes nothing.",
            "",
        ]
        for r in sorted(listed, key=lambda r: (str(r["module"]), int(r["line"]))):  # type: ignore[arg-type]
            where = "" if r["covered"] else " (no test runs this line)"
            out += [
                f"## `{r['module']}.py:{r['line']}` in `{r['function']}`: {r['operator']}{where}",
                "",
                "```diff",
                re.sub(r"[^ \n]*/work-\d+/", "", str(r["diff"])).strip(),
                "```",
                "",
            ]
        if survivors.exists():  # a module with no run here keeps the survivors of its last run
            for section in re.split(r"\n(?=## `)", survivors.read_text()):
                found = re.match(r"## `(_\w+)\.py:", section)
                if found and found.group(1) in CORE and found.group(1) not in ran:
                    out += [section.rstrip("\n"), ""]
        survivors.parent.mkdir(parents=True, exist_ok=True)
        survivors.write_text("\n".join(out))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["map", "run", "report", "all"])
    parser.add_argument("modules", nargs="*", help=f"core modules to mutate (default: {' '.join(CORE)})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--markdown", type=Path, help="write the score table between mutation:begin/end here")
    parser.add_argument("--survivors", type=Path, help="write every surviving mutant here")
    parser.add_argument("--again", action="store_true", help="run: resume modules unchanged since their last run")
    parser.add_argument(
        "--first-copy", type=int, default=0, help="run: number the work copies from here (two runs at once)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=90.0,
        help="run: seconds of tests (as the map timed them) a mutant may use before it counts as surviving; "
        "a lower one screens a new module faster, and `run --again` with the default re-checks its survivors",
    )
    parser.add_argument("--reuse-coverage", action="store_true", help="map: combine the last run's data, do not rerun")
    parser.add_argument(
        "--add",
        nargs="+",
        metavar="TEST",
        help="map: measure only these tests (files or node ids written since the last map) and add them to it",
    )
    args = parser.parse_intermixed_args()
    modules = args.modules or list(CORE)
    unknown = sorted(set(modules) - set(CORE))
    if unknown:
        parser.error(f"not core modules: {', '.join(unknown)}")
    if args.step in ("map", "all"):
        build_map(args.jobs, reuse=args.reuse_coverage, add=args.add)
    if args.step in ("run", "all"):
        run(modules, args.jobs, again=args.again, first_copy=args.first_copy, budget=args.budget)
    if args.step in ("report", "all"):
        return report(args.markdown, args.survivors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
