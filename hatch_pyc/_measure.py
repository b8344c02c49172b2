"""Measure variants: sizes on disk and in a wheel, and import times in fresh interpreters.

Import times are taken honestly: fresh processes of the target CPython, variants interleaved
(A B C A B C ...), warm-up rounds discarded, the module's import timed inside the child (so
interpreter start-up, measured on its own, is not counted), medians with a distribution-free
confidence interval, and ``-X importtime`` runs for the per-module view.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from hatch_pyc._targets import Interpreter
from hatch_pyc._variants import Variant

# The measurement is the line after the import marked as the timer's; the process then ends at once (os._exit), so
# nothing the module registered to run at exit (an atexit print, a thread joined) can add to its output or its time.
_MARK = "hatch-pyc import ms:"
_TIMER = (
    "import os, sys, time\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "t = time.perf_counter()\n"
    "import importlib; importlib.import_module(sys.argv[2])\n"
    f"sys.stdout.write(f'\\n{_MARK} {{(time.perf_counter() - t) * 1e3:.6f}}\\n')\n"
    "sys.stdout.flush()\n"
    "os._exit(0)\n"
)
T = TypeVar("T")
MIN_ROUNDS = 6  # the fewest samples whose median has a 95% order-statistic interval
_BASE_FLAGS = ("-E", "-s", "-B")  # no PYTHON* variables, no user site, never write pycs


@dataclass
class SizeStats:
    """How big a variant is."""

    files: int = 0
    bytes: int = 0
    disk_bytes: int = 0
    wheel_bytes: int = 0
    py_bytes: int = 0
    pyc_bytes: int = 0
    by_package: dict[str, int] = field(default_factory=dict)
    largest: list[tuple[str, int]] = field(default_factory=list)


def measure_size(root: Path, largest: int = 10) -> SizeStats:
    """Count every file under ``root`` once (hard links once), and what it deflates to in a wheel."""
    stats = SizeStats()
    seen: set[tuple[int, int]] = set()
    sizes: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            top = rel.split("/", 1)[0]
            key = (st.st_dev, st.st_ino)
            if key in seen:  # a hard link to a file already counted (identical opt levels)
                continue
            seen.add(key)
            stats.files += 1
            stats.bytes += st.st_size
            stats.disk_bytes += st.st_blocks * 512
            stats.by_package[top] = stats.by_package.get(top, 0) + st.st_size
            if name.endswith(".py"):
                stats.py_bytes += st.st_size
            elif name.endswith(".pyc"):
                stats.pyc_bytes += st.st_size
            sizes.append((rel, st.st_size))
            if path.is_file() and not path.is_symlink():
                stats.wheel_bytes += len(zlib.compress(path.read_bytes(), 6)) - 6  # deflate body, as in a zip
    sizes.sort(key=lambda pair: (-pair[1], pair[0]))
    stats.largest = sizes[:largest]
    return stats


@dataclass
class Timing:
    """Import time of one module in one variant, in milliseconds."""

    samples: list[float] = field(default_factory=list)
    error: str | None = None
    slowest: list[tuple[str, float, float]] = field(default_factory=list)  # (module, self ms, cumulative ms)

    @property
    def median(self) -> float:
        """Median of the samples."""
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        """A ~95% confidence interval for the median, from order statistics (no normality assumed)."""
        return median_ci(self.samples)


def median_ci(samples: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Order-statistic confidence interval of the median, exact for the sample count (no normality assumed):
    the narrowest ``[x(r), x(n+1-r)]`` that holds the median with probability ``level``. Below 6 samples
    no interval reaches 95%; the range is returned and :func:`median_ci_level` says how sure it is."""
    values = sorted(samples)
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    rank = max(1, _ci_rank(n, level))
    return (values[rank - 1], values[n - rank])


def median_ci_level(n: int, level: float = 0.95) -> float:
    """The probability that :func:`median_ci` of ``n`` samples holds the median (``level`` or more from 6)."""
    if n == 0:
        return 0.0
    rank = max(1, _ci_rank(n, level))
    return 1 - 2 * sum(math.comb(n, i) for i in range(rank)) / float(2**n)


def _ci_rank(n: int, level: float) -> int:
    """The largest ``r`` with ``1 - 2 P(Binomial(n, 1/2) < r) >= level`` (0 when even the range falls short)."""
    rank, below = 0, 0
    while rank < n // 2 + 1:
        below += math.comb(n, rank)  # P(B <= rank) * 2**n
        if 1 - 2 * below / 2**n < level:
            break
        rank += 1
    return rank


def paired_ratios(values: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Round by round ``values[i] / reference[i]``: two figures measured side by side in the same interleaved
    rounds, so what slowed the machine during a round slowed both."""
    if len(values) != len(reference):
        raise ValueError(f"{len(values)} samples against {len(reference)}: not measured in the same rounds")
    return [v / r if r > 0 else math.nan for v, r in zip(values, reference, strict=True)]


def rotated(items: Sequence[T], shift: int) -> list[T]:
    """``items`` started at ``shift`` (A B C, B C A, ...): a different first runner each round."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def _time_import(interp: Interpreter, variant: Variant, module: str) -> float:
    proc = subprocess.run(
        [interp.executable, *_BASE_FLAGS, *variant.run_flags, "-c", _TIMER, str(variant.root), module],
        capture_output=True,
        encoding="utf-8",
        errors="replace",  # a module may write any bytes
        env=_env(),
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ImportFailed(last)
    return _measured(proc.stdout)


def _measured(stdout: str) -> float:
    """The import time the timer printed (the last line it marked); ImportFailed if there is none, as when the
    module ended the process itself (``os._exit(0)`` during its import)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(_MARK):
            try:
                value = float(line[len(_MARK) :])
            except ValueError:
                break
            if math.isfinite(value) and value >= 0:
                return value
            break
    raise ImportFailed("the interpreter ended without finishing the import (the module exited the process?)")


def is_module_name(name: str) -> bool:
    """Whether ``name`` is a module's dotted name (``pkg.sub``: identifiers, joined by dots)."""
    return all(part.isidentifier() for part in name.split("."))


def _time_startup(interp: Interpreter) -> float:
    started = time.perf_counter()
    subprocess.run([interp.executable, *_BASE_FLAGS, "-c", "pass"], env=_env(), check=True)
    return (time.perf_counter() - started) * 1e3


class ImportFailed(Exception):
    """The child process could not import the module (its last stderr line)."""


def _importtime(
    interp: Interpreter, variant: Variant, module: str, runs: int, top: int
) -> list[tuple[str, float, float]]:
    per_module: dict[str, list[tuple[float, float]]] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [
                interp.executable,
                *_BASE_FLAGS,
                *variant.run_flags,
                "-X",
                "importtime",
                "-c",
                _TIMER,
                str(variant.root),
                module,
            ],
            capture_output=True,
            encoding="utf-8",
            errors="replace",  # a module may write any bytes
            env=_env(),
            check=False,
        )
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            try:
                _, self_us, cumulative_us, name = (
                    part.strip() for part in line.replace("import time:", "|", 1).split("|")
                )
                times = (float(self_us) / 1e3, float(cumulative_us) / 1e3)
            except ValueError:
                continue
            # CPython writes a module's dotted name; a line in another form was written by the code imported
            if is_module_name(name) and all(map(math.isfinite, times)):
                per_module.setdefault(name, []).append(times)
    rows = [
        (name, statistics.median(s for s, _ in values), statistics.median(c for _, c in values))
        for name, values in per_module.items()
    ]
    rows.sort(key=lambda row: (-row[1], row[0]))
    return rows[:top]


@dataclass
class TimingPlan:
    """How many rounds to run."""

    repeat: int
    warmup: int = 1
    importtime_runs: int = 3
    slowest: int = 8


def choose_repeat(
    interp: Interpreter, variants: Sequence[Variant], modules: Sequence[str], budget_s: float = 40.0
) -> int:
    """Rounds that fit in ``budget_s`` (6 to 30: the fewest whose median has a 95% interval), from the time of
    one probe round."""
    started = time.perf_counter()
    for variant in variants:
        for module in modules:
            try:
                _time_import(interp, variant, module)
            except ImportFailed:
                pass
    one_round = max(time.perf_counter() - started, 1e-3)
    return int(min(30, max(MIN_ROUNDS, budget_s / one_round)))


def measure_imports(
    interp: Interpreter,
    variants: Sequence[Variant],
    modules: Sequence[str],
    plan: TimingPlan,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict[str, Timing]], Timing]:
    """Import time per variant and module, and interpreter start-up, rounds interleaved."""
    results = {v.name: {m: Timing() for m in modules} for v in variants}
    startup = Timing()
    rounds = plan.warmup + plan.repeat
    total = rounds * (len(variants) * len(modules) + 1)
    done = 0
    for round_no in range(rounds):
        keep = round_no >= plan.warmup
        # Rotate the order each round so no variant always runs first (caches, CPU frequency).
        order = rotated(variants, round_no)
        sample = _time_startup(interp)
        if keep:
            startup.samples.append(sample)
        done += 1
        for variant in order:
            for module in modules:
                timing = results[variant.name][module]
                if timing.error is None:
                    try:
                        value = _time_import(interp, variant, module)
                        if keep:
                            timing.samples.append(value)
                    except ImportFailed as exc:
                        timing.error = str(exc)
                        timing.samples.clear()
                done += 1
                if progress:
                    progress(done, total)
    for variant in variants:
        for module in modules:
            timing = results[variant.name][module]
            if timing.error is None and plan.importtime_runs:
                timing.slowest = _importtime(interp, variant, module, plan.importtime_runs, plan.slowest)
    return results, startup
