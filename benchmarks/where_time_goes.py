#!/usr/bin/env python3
"""Where does ``hatch-pyc compile`` spend its time? A breakdown to go with bench_compile.py.

Standard library only; run it with the interpreter hatch-pyc is installed in, after
bench_compile.py has built its corpora (it reuses them from the same workdir):

    python benchmarks/where_time_goes.py --python 3.12 --corpus site-packages

It prints three things:

1. Per-stage CPU seconds of the work every worker does per file, measured one file at a
   time in the target interpreter: read+stat, ``compile()`` at each level, plain
   ``marshal.dumps`` and hatch-pyc's canonical marshal (imported from the installed
   ``hatch_pyc/_worker.py``). ``compile()`` CPU / workers is the floor no compiler that
   calls ``compile()`` once per file and level can beat on this machine.
2. How many ``compile()`` calls the worker's level-skipping rules avoid for -O0 -O1 -O2,
   compared with the first rules hatch-pyc had and with the best possible (levels whose
   canonical bytes are equal). The worker's rules are checked here: a "false skip" (a
   level the rule would skip whose bytes differ) must be 0.
3. One real run through the library (``plan_compile`` + ``compile_plan``) on a fresh copy:
   planning wall time, compile-phase wall time, parent CPU and the workers' CPU and
   peak RSS; plus the start-up cost of the ``hatch-pyc`` command itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_compile  # noqa: E402

# Runs inside the target interpreter: argv = worker.py corpus-dir levels
_STAGES = r"""
import json, marshal, os, re, sys, time, warnings
warnings.simplefilter("ignore")
worker_path, root, levels = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
ns = {"__name__": "hatch_pyc_worker"}
exec(compile(open(worker_path, "rb").read(), worker_path, "exec"), ns)
for i in range(256):
    sys.intern(chr(i))
# "refined" = the worker's rules; "first" = the rules hatch-pyc 0.1.0 started with.
canonical, refined_doc, refined_asserts = ns["_canonical_marshal"], ns["_may_have_docstring"], ns["_may_have_asserts"]
CodeType = type(compile("", "", "exec"))

def may_have_doc(code):
    # The first rule: any str first constant, which every class body has (its name).
    if "__doc__" in code.co_names:
        return True
    consts = code.co_consts
    if consts and isinstance(consts[0], str):
        return True
    return any(isinstance(c, CodeType) and may_have_doc(c) for c in consts)

files = []
for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
# marshal, canonical marshal and the docstring scan are timed at the first level only.
t = dict.fromkeys(["read+stat", "marshal.dumps", "canonical marshal", "docstring scan"], 0.0)
for level in levels:
    t["compile -O%d" % level] = 0.0
# compile() time of the levels the worker's rules cannot skip (the work any run must do).
needed = {"compile -O1 where the rules need it": 0.0, "compile -O2 where the rules need it": 0.0}
skip = dict.fromkeys(["files", "failed", "o1_rule", "o1_refined", "o1_equal", "o2_rule", "o2_refined",
                      "o2_equal", "o1_false_skips", "o2_false_skips"], 0)
clock = time.perf_counter
for path in files:
    start = clock()
    with open(path, "rb") as handle:
        source = handle.read()
    os.stat(path)
    t["read+stat"] += clock() - start
    blobs = {}
    took = {}
    try:
        for level in levels:
            start = clock()
            code = compile(source, path, "exec", dont_inherit=True, optimize=level)
            took[level] = clock() - start
            t["compile -O%d" % level] += took[level]
            if level == levels[0]:
                start = clock(); marshal.dumps(code); t["marshal.dumps"] += clock() - start
                start = clock(); may_have_doc(code); t["docstring scan"] += clock() - start
                start = clock(); blobs[level] = canonical(code); t["canonical marshal"] += clock() - start
            else:
                blobs[level] = canonical(code)
            if level == 1:
                doc1 = (may_have_doc(code), refined_doc(code))
            del code
    except (SyntaxError, ValueError):
        skip["failed"] += 1
        continue
    skip["files"] += 1
    if levels == [0, 1, 2]:
        a_old = not source.isascii() or b"assert" in source or b"__debug__" in source
        a_new = refined_asserts(source)
        eq01, eq12 = blobs[0] == blobs[1], blobs[1] == blobs[2]
        skip["o1_rule"] += not a_old; skip["o1_refined"] += not a_new; skip["o1_equal"] += eq01
        skip["o2_rule"] += not doc1[0]; skip["o2_refined"] += not doc1[1]; skip["o2_equal"] += eq12
        skip["o1_false_skips"] += (not a_new) and not eq01
        skip["o2_false_skips"] += (not doc1[1]) and not eq12
        if a_new:
            needed["compile -O1 where the rules need it"] += took[1]
        if doc1[1]:
            needed["compile -O2 where the rules need it"] += took[2]
t.update(needed)
print(json.dumps({"version": sys.version.split()[0], "stages": t, "skip": skip}))
"""


def stages(target: dict[str, str], corpus: Path, levels: str) -> dict[str, object]:
    worker = Path(
        bench_compile.run([sys.executable, "-c", "import hatch_pyc; print(hatch_pyc.__file__)"]).stdout.strip()
    ).with_name("_worker.py")
    out = bench_compile.run([target["executable"], "-c", _STAGES, str(worker), str(corpus), levels]).stdout
    return json.loads(out.strip().splitlines()[-1])


def library_run(target: dict[str, str], corpus: Path, scratch: Path, levels: tuple[int, ...]) -> dict[str, float]:
    from hatch_pyc._compile import compile_plan
    from hatch_pyc._options import PycOptions
    from hatch_pyc._plan import plan_compile

    tree = bench_compile.fresh_copy(corpus, scratch / "tree")
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    plan = plan_compile([tree], PycOptions(levels=levels), python=target["executable"])
    planned = time.perf_counter()
    result = compile_plan(plan)
    done = time.perf_counter()
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(tree)
    return {
        "plan wall s": planned - start,
        "compile phase wall s": done - planned,
        "parent cpu s": (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime),
        "workers cpu s": (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime),
        "workers sys s": kids1.ru_stime - kids0.ru_stime,
        "workers peak rss MB": kids1.ru_maxrss / 1024,
        "workers": plan.options.worker_count,
        "pyc written": result.pyc_written,
        "pyc linked": result.pyc_linked,
    }


def startup(target: dict[str, str], workdir: Path) -> dict[str, float]:
    env = bench_compile.runner_env(workdir)
    commands = {
        "runner `python -c pass`": [sys.executable, "-c", "pass"],
        "`hatch-pyc --version` (imports the CLI)": [sys.executable, "-m", "hatch_pyc", "--version"],
        "target `python -S -s -c pass` (a worker's start)": [target["executable"], "-S", "-s", "-c", "pass"],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(7):
        for label, cmd in commands.items():
            times[label].append(bench_compile.timed(cmd, env=env)[0])
    return {k: statistics.median(v) for k, v in times.items()}


def floors(bench: dict[str, object], corpus: str, st: dict[str, float], workers: int) -> None:
    """Each speed target's allowance in seconds against the least any reproducible run must spend.

    The least: reading every source once, the ``compile()`` CPU of the levels the rules cannot
    skip and the canonical marshal of each of those pycs (what makes them byte-identical),
    spread perfectly over ``workers`` CPUs, with no start-up, planning or writing at all.
    """
    times: dict[str, list[float]] = bench["corpora"][corpus]["times"]  # type: ignore[index]
    one = st["read+stat"] + st["compile -O0"] + st["canonical marshal"]
    share = st["canonical marshal"] / st["compile -O0"]
    three = one + (st["compile -O1 where the rules need it"] + st["compile -O2 where the rules need it"]) * (1 + share)
    rows = []
    for label, numerator, wanted, limit in bench_compile.TARGETS:
        reference = bench_compile.denominator(times, wanted)
        if reference not in times or numerator == "hatch-pyc -O0 rerun (no change)":
            continue
        allowed = limit * statistics.median(times[reference])
        least = (three if numerator == "hatch-pyc -O0 -O1 -O2" else one) / workers
        measured = statistics.median(times[numerator])
        verdict = "reachable" if least < allowed else f"**below the floor by {least / allowed - 1:.0%}**"
        rows.append(f"| {label} | {allowed:.2f} | {least:.2f} | {measured:.2f} | {verdict} |")
    print(
        "| target (medians from --bench-json) | allowed s | floor s: read + compile() + canonical marshal "
        f"on {workers} CPUs, nothing else | hatch-pyc median s | target |"
    )
    print("| --- | ---: | ---: | ---: | --- |")
    print("\n".join(rows) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--corpus", choices=("stdlib", "site-packages"), default="site-packages")
    parser.add_argument("--workdir", type=Path, default=bench_compile.DEFAULT_WORKDIR)
    parser.add_argument("--packages", nargs="+", default=list(bench_compile.DEFAULT_PACKAGES))
    parser.add_argument(
        "--bench-json",
        type=Path,
        help="bench_compile.py's --json from the same machine and hour: adds each speed target's "
        "compile() floor next to the seconds the target allows",
    )
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    target = bench_compile.resolve_target(args.python)
    info = bench_compile.ensure_corpus(args.corpus, target, workdir, args.packages)
    corpus = Path(str(info["path"]))
    print(
        f"## Where hatch-pyc's time goes: {args.corpus} ({info['py_files']} .py, "
        f"{info['py_bytes'] / 1e6:.1f} MB), CPython {target['version']}\n"
    )

    bench_compile.log("per-stage CPU in the target, one file at a time")
    measured = stages(target, corpus, "0,1,2")
    workers = len(os.sched_getaffinity(0))
    st: dict[str, float] = measured["stages"]  # type: ignore[assignment]
    print("| stage (one process, one level unless named, summed over files) | CPU s | per file ms |")
    print("| --- | ---: | ---: |")
    files = measured["skip"]["files"]  # type: ignore[index]
    for stage, secs in st.items():
        print(f"| {stage} | {secs:.3f} | {1000 * secs / files:.3f} |")
    floor = st["compile -O0"] / workers
    print(
        f"\nFloor for one level on {workers} CPUs: compile -O0 CPU / {workers} = **{floor:.2f} s**; "
        f"canonical marshal adds {st['canonical marshal'] / max(st['marshal.dumps'], 1e-9):.1f}x the cost "
        f"of plain marshal.dumps (+{(st['canonical marshal'] - st['marshal.dumps']) / st['compile -O0']:.1%} "
        "of compile -O0; paid again for every level compiled).\n"
    )

    sk: dict[str, int] = measured["skip"]  # type: ignore[assignment]
    n = sk["files"]
    print("| -O0 -O1 -O2: compile() calls | first rules (0.1.0) | worker's rules | best possible |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| -O1 skipped (same as -O0) | {sk['o1_rule']} | {sk['o1_refined']} | {sk['o1_equal']} |")
    print(f"| -O2 skipped (same as -O1) | {sk['o2_rule']} | {sk['o2_refined']} | {sk['o2_equal']} |")
    calls = [
        (3 * n - sk[a] - sk[b]) / n
        for a, b in (("o1_rule", "o2_rule"), ("o1_refined", "o2_refined"), ("o1_equal", "o2_equal"))
    ]
    print(f"| compile() calls per file | {calls[0]:.2f} | {calls[1]:.2f} | {calls[2]:.2f} |")
    print(
        f"\nWorker's rules: -O1 is skipped unless `\\bassert\\b|__debug__` matches (or the source is not "
        "ASCII); -O2 unless a code object stores `__doc__` or a *function's* first constant is a str. "
        f"False skips here: -O1 {sk['o1_false_skips']}, -O2 {sk['o2_false_skips']} (must be 0).\n"
    )

    if args.bench_json:
        floors(json.loads(args.bench_json.read_text()), args.corpus, st, workers)

    bench_compile.log("library runs (plan + compile_plan) on fresh copies")
    scratch = workdir / "scratch-where"
    print(
        "| library run | plan wall s | compile phase wall s | parent CPU s | workers CPU s (sys) "
        "| workers peak RSS MB | pyc written / linked |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for levels in ((0,), (0, 1, 2)):
        r = library_run(target, corpus, scratch, levels)
        print(
            f"| -O{' -O'.join(map(str, levels))} | {r['plan wall s']:.3f} | {r['compile phase wall s']:.3f} | "
            f"{r['parent cpu s']:.2f} | {r['workers cpu s']:.2f} ({r['workers sys s']:.2f}) | "
            f"{r['workers peak rss MB']:.0f} | {r['pyc written']} / {r['pyc linked']} |"
        )
    shutil.rmtree(scratch, ignore_errors=True)

    print("\n| start-up (median of 7) | wall s |")
    print("| --- | ---: |")
    for label, secs in startup(target, workdir).items():
        print(f"| {label} | {secs:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
