"""What the all-or-nothing commit costs: this checkout against an earlier hatch-pyc, side by side.

The in-place commit became reversible (replaced files kept as hard-linked backups, stripped
sources renamed aside and deleted last), SIGINT/SIGTERM are held during it, and the RECORD of
every distribution whose files changed is rewritten in it. This times ``compile`` and
``compile --strip`` on fresh copies of bench_compile.py's site-packages corpus (installed with
``pip --target``, so it has 40-odd ``*.dist-info/RECORD`` files), alternating the two versions
round by round, and reports medians and the paired median ratio (new / old).

    python benchmarks/bench_compile.py --corpus site-packages --rounds 1   # builds the corpus once
    python benchmarks/bench_commit.py --baseline 85e8a82 --rounds 5 --output benchmarks/results/commit-3.12.md

The baseline is checked out with ``git worktree`` under the workdir and run from there.
Standard library only.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compile import (
    DEFAULT_PACKAGES,
    ensure_corpus,
    fresh_copy,
    log,
    resolve_target,
    runner_env,
    timed,
)

REPO = Path(__file__).resolve().parent.parent


def baseline_checkout(rev: str, workdir: Path) -> Path:
    """A worktree of ``rev`` (made once) whose ``hatch_pyc`` the baseline runs use."""
    where = workdir / f"baseline-{rev}"
    if not (where / "hatch_pyc").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev], check=True)
    return where


# Runs hatch-pyc's CLI from a given checkout, then prints the CPU seconds of its own (main) process:
# what the commit changed runs there, while the workers' compile time is the same code in both.
_RUN = """
import resource, sys
sys.path.insert(0, sys.argv.pop(1))
from hatch_pyc._cli import main
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
print("main-cpu", usage.ru_utime + usage.ru_stime, file=sys.stderr)
sys.exit(code)
"""


def command(source: Path, tree: Path, python: str, strip: bool) -> list[str]:
    cmd = [sys.executable, "-c", _RUN, str(source), "compile", str(tree), "--python", python, "-q"]
    return cmd + (["--strip"] if strip else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="85e8a82", help="git revision to compare with (default: 85e8a82)")
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks/.work")
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--copies",
        type=Path,
        help="where the fresh copies go (default: the workdir); a tmpfs such as /dev/shm takes the disk's "
        "write-back, which swings a run by seconds on a shared machine, out of the comparison",
    )
    args = parser.parse_args()

    target = resolve_target(args.python)
    corpus = ensure_corpus("site-packages", target, args.workdir, list(DEFAULT_PACKAGES))
    tree = Path(str(corpus["path"]))
    versions = {"new": REPO, "old": baseline_checkout(args.baseline, args.workdir)}
    env = runner_env(args.workdir)
    copies = (args.copies or args.workdir) / "commit-copies"
    shutil.rmtree(copies, ignore_errors=True)  # an earlier run's; this run's stay until it ends (see fresh_copy)
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    records: dict[str, int] = {}
    for round_no in range(args.rounds):
        order = ["new", "old"] if round_no % 2 == 0 else ["old", "new"]
        for strip in (False, True):
            for version in order:
                copy = fresh_copy(tree, copies / "copy")
                seconds, proc = timed(command(versions[version], copy, target["executable"], strip), env=env)
                if proc.returncode != 0:
                    sys.exit(f"{version} failed:\n{proc.stderr}")
                key = f"{version} {'--strip' if strip else 'pycache'}"
                times.setdefault(key, []).append(seconds)
                cpu.setdefault(key, []).append(float(proc.stderr.split("main-cpu ")[-1].split()[0]))
                # RECORD files that list a pyc afterwards: what the new commit adds
                records[key] = sum(".pyc," in p.read_text() for p in copy.glob("*.dist-info/RECORD"))
                log(f"round {round_no + 1}: {key} {seconds:.3f} s")
    lines = [
        f"# The in-place commit: this checkout against {args.baseline}",
        "",
        f"Target CPython {target['version']}; site-packages corpus: {corpus['py_files']} .py files, "
        f"{len(corpus['dists'])} distributions; {args.rounds} rounds, fresh copy per run, order alternating.",
        "",
        "| mode | old median s | new median s | paired median ratio new/old | min-max ratio "
        "| main process CPU s, old → new (median) | RECORDs listing pycs (old → new) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in ("pycache", "--strip"):
        old, new = times[f"old {mode}"], times[f"new {mode}"]
        ratios = sorted(n / o for n, o in zip(new, old, strict=True))
        lines.append(
            f"| `compile{' --strip' if mode == '--strip' else ''}` | {statistics.median(old):.3f} | "
            f"{statistics.median(new):.3f} | {statistics.median(ratios):.3f}x | {ratios[0]:.3f}–{ratios[-1]:.3f}x | "
            f"{statistics.median(cpu[f'old {mode}']):.3f} → {statistics.median(cpu[f'new {mode}']):.3f} | "
            f"{records[f'old {mode}']} → {records[f'new {mode}']} |"
        )
    shutil.rmtree(copies, ignore_errors=True)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
