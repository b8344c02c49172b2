#!/usr/bin/env python3
"""Benchmark ``hatch-pyc compile`` against ``python -m compileall -j0`` and uv's compile step.

Standard library only. Run it with the interpreter hatch-pyc is installed in (it calls
``sys.executable -m hatch_pyc``); the *target* interpreter (``--python``, default 3.12) is
resolved to its real executable so that no tool pays a pyenv shim's start-up.

    python benchmarks/bench_compile.py                  # 5 rounds, stdlib + site-packages
    python benchmarks/bench_compile.py --quick          # 2 rounds, stdlib only (smoke test)
    python benchmarks/bench_compile.py --json raw.json --output results/compile-3.12.md

What is timed is the tool's command alone (wall clock around ``subprocess.run``): every
variant gets a fresh copy of the corpus, made, synced to disk and settled before the clock
starts; the copy is not timed. See benchmarks/README.md for the details.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = HERE / ".work"
DEFAULT_PACKAGES = ("boto3", "pandas", "sqlalchemy", "django")
STDLIB_SKIP = frozenset({"test", "tests", "idlelib", "site-packages", "__pycache__"})

# The script's own SHA-256 (first 12 hex digits), read when it starts: the code that runs, even if the file is edited
# while a run goes on.
SCRIPT_SHA256 = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]

# Targets, as (label, numerator variant, denominator variant, limit).
TARGETS = (
    ("one level <= 0.8x compileall -j0", "hatch-pyc -O0", "compileall -j0", 0.8),
    ("one level <= 0.9x uv compile step", "hatch-pyc -O0", "uv compile step", 0.9),
    ("levels 0,1,2 <= 0.55x compileall -j0 (3 levels)", "hatch-pyc -O0 -O1 -O2", "compileall -j0 -o0 -o1 -o2", 0.55),
    ("no-change rerun <= 0.1x first run", "hatch-pyc -O0 rerun (no change)", "hatch-pyc -O0", 0.1),
    ("fresh copy, warm cache <= 0.15x uv compile step", "hatch-pyc -O0 warm cache", "uv compile step", 0.15),
    ("fresh copy, warm cache <= 0.15x compileall -j0", "hatch-pyc -O0 warm cache", "compileall -j0", 0.15),
    ("cold cache <= 1.03x no cache", "hatch-pyc -O0 cold cache", "hatch-pyc -O0 no cache, beside cold", 1.03),
)
# Denominators of reports saved before a target's own denominator was measured (re-rendered with --from-json).
OLDER_DENOMINATORS = {"hatch-pyc -O0 no cache, beside cold": "hatch-pyc -O0"}


def denominator(times: dict[str, list[float]], wanted: str) -> str:
    """The variant a ratio to ``wanted`` is taken against: ``wanted``, or in a report saved before it was measured,
    the variant it replaced (:data:`OLDER_DENOMINATORS`)."""
    return wanted if wanted in times else OLDER_DENOMINATORS.get(wanted, wanted)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, ok_codes: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode not in ok_codes:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(cmd: list[str], *, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall-clock seconds of ``cmd`` alone, started once the machine is quiet; its CPU seconds go to ``CPU``."""
    QUIET.wait()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[:] = [round(after.ru_utime - before.ru_utime, 4), round(after.ru_stime - before.ru_stime, 4)]
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc


def settle() -> None:
    """Flush dirty pages (copies, previous outputs) so their write-back is not timed."""
    os.sync()
    time.sleep(0.3)


class Quiet:
    """Wait, before each timed command, until other processes leave the CPUs alone.

    A shared machine (a developer running tests, CI) skews single runs badly; pairing
    cancels slow drift, not a burst in one run. The machine-wide busy fraction is read from
    /proc/stat over 0.5 s; above ``threshold`` we wait, up to ``max_wait`` seconds, then run
    anyway and count the run as started busy.
    """

    def __init__(self, threshold: float = 0.15, max_wait: float = 120.0) -> None:
        self.threshold = threshold
        self.max_wait = max_wait
        self.last_busy = 0.0
        self.busy_starts = 0
        self.runs = 0
        self.waited = 0.0

    @staticmethod
    def _snapshot() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as handle:
                fields = [int(x) for x in handle.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    def busy(self, interval: float = 0.5) -> float:
        first = self._snapshot()
        time.sleep(interval)
        second = self._snapshot()
        if first is None or second is None or second[0] == first[0]:
            return 0.0
        return 1.0 - (second[1] - first[1]) / (second[0] - first[0])

    def wait(self) -> None:
        started = time.monotonic()
        busy = self.busy()
        if busy > self.threshold:
            log(f"  machine busy ({busy:.0%} of all CPUs used by others); waiting up to {self.max_wait:.0f} s")
            while busy > self.threshold and time.monotonic() - started < self.max_wait:
                time.sleep(2)
                busy = self.busy()
        self.waited += time.monotonic() - started
        self.runs += 1
        self.busy_starts += busy > self.threshold
        self.last_busy = busy


QUIET = Quiet()
# [user, system] CPU seconds of the last timed command and every process it waited for (workers included). The
# system (kernel) part is what varies most with the file system the copies are on: see benchmarks/README.md.
CPU: list[float] = [0.0, 0.0]


# --------------------------------------------------------------------------- target, tools

_PROBE = (
    "import json, sys, sysconfig; print(json.dumps({'executable': sys.executable, "
    "'version': '%d.%d.%d' % sys.version_info[:3], 'stdlib': sysconfig.get_paths()['stdlib'], "
    "'cache_tag': sys.implementation.cache_tag}))"
)


def resolve_target(spec: str) -> dict[str, str]:
    """``3.12`` / ``python3.12`` / a path -> the real executable, as the interpreter reports it."""
    command = spec
    if re.fullmatch(r"\d\.\d+", spec):
        command = f"python{spec}"
    found = command if os.sep in command else shutil.which(command)
    if not found:
        sys.exit(f"no interpreter {command!r} on PATH (under pyenv: export PYENV_VERSION=...)")
    info = json.loads(run([found, "-c", _PROBE]).stdout)
    info["executable"] = os.path.realpath(info["executable"])
    return info


def ensure_uv(workdir: Path, spec: str) -> Path:
    """uv, pip-installed into a venv in the workdir (made with the running interpreter)."""
    venv = workdir / "tools"
    uv = venv / "bin" / "uv"
    if not uv.exists():
        log(f"installing {spec} into {venv}")
        if not (venv / "bin" / "python").exists():
            run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", spec])
    return uv


def uv_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        UV_CACHE_DIR=str(workdir / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_CONFIG="1",
        NO_COLOR="1",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


# --------------------------------------------------------------------------- corpora


def count_py(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                files += 1
                size += os.path.getsize(os.path.join(dirpath, name))
    return files, size


def count_pycs(root: Path) -> int:
    return sum(
        1
        for dirpath, _, filenames in os.walk(root)
        if os.path.basename(dirpath) == "__pycache__"
        for name in filenames
        if name.endswith(".pyc")
    )


def build_stdlib(target: dict[str, str], dest: Path) -> None:
    lib = Path(target["stdlib"])

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in STDLIB_SKIP and os.path.isdir(os.path.join(directory, n))}

    shutil.copytree(lib, dest, symlinks=True, ignore=ignore)


def target_pip(target: dict[str, str], workdir: Path) -> str:
    """A Python of the target's version with pip: the target itself, or a venv it makes
    (Debian's CPythons have pip only in venvs)."""
    py = target["executable"]
    if subprocess.run([py, "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0:
        return py
    venv = workdir / f"pip-{target['cache_tag']}"
    if not (venv / "bin" / "python").exists():
        log(f"{py} has no pip: making {venv} to install with")
        run([py, "-m", "venv", str(venv)])
    return str(venv / "bin" / "python")


def build_site_packages(target: dict[str, str], dest: Path, wheels: Path, packages: list[str]) -> None:
    py = target_pip(target, wheels.parent)
    if not any(wheels.glob("*.whl")):
        log(f"downloading wheels for {', '.join(packages)} with {py} -m pip download")
        run(
            [
                py,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary",
                ":all:",
                "--dest",
                str(wheels),
                *packages,
            ]
        )
    log("installing them with pip install --no-compile --target")
    run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-index",
            "--find-links",
            str(wheels),
            "--target",
            str(dest),
            *packages,
        ]
    )


def ensure_corpus(name: str, target: dict[str, str], workdir: Path, packages: list[str]) -> dict[str, object]:
    """Build the corpus once; later runs reuse it (delete the workdir to rebuild)."""
    tag = target["cache_tag"]
    base = workdir / "corpora" / f"{name}-{tag}"
    tree = base / "tree"
    marker = base / "corpus.json"
    wanted = {"name": name, "python": target["version"], "packages": packages if name == "site-packages" else None}
    if marker.exists():
        info = json.loads(marker.read_text())
        if {k: info.get(k) for k in wanted} == wanted and tree.is_dir():
            return info
    log(f"building corpus {name} for CPython {target['version']}")
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    if name == "stdlib":
        build_stdlib(target, tree)
    else:
        build_site_packages(target, tree, workdir / f"wheels-{tag}", packages)
    shipped = [Path(d) / n for d, _, names in os.walk(tree) if d.endswith("__pycache__") for n in names]
    if shipped:  # e.g. numpy's cp310 wheel ships numpy/distutils/__pycache__/conv_template.cpython-310.pyc
        log(f"removing {len(shipped)} pyc(s) the wheels shipped, so the corpus starts clean: {shipped[0]} ...")
        for path in shipped:
            path.unlink()
    if count_pycs(tree):
        sys.exit(f"{tree}: the corpus already holds pycs; it must start clean")
    files, size = count_py(tree)
    versions = sorted(p.name[: -len(".dist-info")] for p in tree.glob("*.dist-info")) if name == "site-packages" else []
    info = {**wanted, "path": str(tree), "py_files": files, "py_bytes": size, "dists": versions}
    marker.write_text(json.dumps(info, indent=2))
    return info


_copies = itertools.count(1)


def fresh_copy(corpus: Path, dest: Path) -> Path:
    """A copy of ``corpus`` at a new path beside ``dest`` (``dest-N``); nothing is deleted.

    Copies are removed only once every timed run is over: on the reference machine's ext4
    (no journal, online discard) creating a file right after thousands were deleted cost up
    to ~1 ms of kernel CPU instead of ~0.1 ms, which added 1.2-1.4 s to every tool's run on
    the site-packages corpus. A user's build does not delete a tree before compiling one.
    """
    dest = dest.with_name(f"{dest.name}-{next(_copies)}")
    shutil.copytree(corpus, dest, symlinks=True)
    settle()
    return dest


# --------------------------------------------------------------------------- one round


class Recorder:
    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.pycs: dict[str, list[int]] = {}
        self.busy: dict[str, list[float]] = {}  # machine busy fraction just before each timed run
        self.cpu: dict[str, list[list[float]]] = {}  # [user, system] CPU seconds of each timed run

    def add(self, variant: str, seconds: float, pycs: int | None = None, *, derived: bool = False) -> None:
        self.times.setdefault(variant, []).append(seconds)
        if pycs is not None:
            self.pycs.setdefault(variant, []).append(pycs)
        if not derived:
            self.busy.setdefault(variant, []).append(round(QUIET.last_busy, 3))
            self.cpu.setdefault(variant, []).append(list(CPU))
        log(f"  {variant:<38} {seconds:8.3f} s" + (f"  ({pycs} pyc)" if pycs is not None else ""))


def runner_env(workdir: Path) -> dict[str, str]:
    """The environment of the hatch-pyc command.

    hatch-pyc runs from source in a dev checkout, and a sandbox may set
    PYTHONDONTWRITEBYTECODE: then every run would recompile hatch-pyc's own modules, a
    cost no installed copy has. Its bytecode is cached under the workdir instead (the
    workers do not see PYTHON* variables, so the pycs under test are unaffected).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "runner-pycache")
    return env


def hatch_cmd(ctx: dict[str, object], tree: Path, levels: tuple[int, ...], cache: Path | None = None) -> list[str]:
    """``hatch-pyc compile``: without the compile cache (what compiling costs), or with the cache ``cache``."""
    cmd = [sys.executable, "-m", "hatch_pyc", "compile", str(tree), "--python", str(ctx["python"]), "-q"]
    cmd += ["--cache-dir", str(cache)] if cache is not None else ["--no-cache"]
    for level in levels:
        cmd += ["-O", str(level)]
    if ctx["workers"]:
        cmd += ["--workers", str(ctx["workers"])]
    return cmd


def compileall_cmd(ctx: dict[str, object], tree: Path, levels: tuple[int, ...] | None) -> list[str]:
    cmd = [str(ctx["python"]), "-m", "compileall", "-q", "-j0"]
    for level in levels or ():
        cmd += ["-o", str(level)]
    return [*cmd, str(tree)]


def unit_hatch(ctx: dict[str, object], rec: Recorder, levels: tuple[int, ...], rerun: bool) -> None:
    label = "hatch-pyc " + " ".join(f"-O{lv}" for lv in levels)
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "hatch")  # type: ignore[operator]
    cmd = hatch_cmd(ctx, tree, levels)
    seconds, _ = timed(cmd, env=ctx["runner_env"])  # type: ignore[arg-type]
    settle()
    rec.add(label, seconds, count_pycs(tree))
    if rerun:
        seconds, _ = timed(cmd, env=ctx["runner_env"])  # type: ignore[arg-type]
        rec.add(label + " rerun (no change)", seconds)


def unit_cache(ctx: dict[str, object], rec: Recorder) -> None:
    """One level with a warm compile cache (every module of the corpus is in it: filled by ``warm_up``), on a fresh
    copy at a new path: what an image rebuild or a CI job on the same lock file does."""
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "cache")  # type: ignore[operator]
    cache = Path(str(ctx["warm_cache"]))
    seconds, _ = timed(hatch_cmd(ctx, tree, (0,), cache), env=ctx["runner_env"])  # type: ignore[arg-type]
    settle()
    rec.add("hatch-pyc -O0 warm cache", seconds, count_pycs(tree))


def unit_cold_pair(ctx: dict[str, object], rec: Recorder, round_no: int) -> None:
    """What filling the cache costs: one level into a new empty cache, and the same command without a cache, one
    right after the other (each on its own fresh copy; which goes first alternates by round, as uv's pair does), so
    that the 3% the target allows is not measured across the drift of a whole round. The second row's ratio to the
    round's ``hatch-pyc -O0`` run shows how much that drift is."""
    scratch = Path(str(ctx["scratch"]))
    for cold in (True, False) if round_no % 2 == 0 else (False, True):
        tree = fresh_copy(ctx["corpus"], scratch / "cold-pair")
        cache = scratch / f"cold-cache-{next(_copies)}" if cold else None
        seconds, _ = timed(hatch_cmd(ctx, tree, (0,), cache), env=ctx["runner_env"])  # type: ignore[arg-type]
        settle()
        label = "hatch-pyc -O0 cold cache" if cold else "hatch-pyc -O0 no cache, beside cold"
        rec.add(label, seconds, count_pycs(tree))


# Writes the pycs listed in a pickle (relative path, bytes; in path order) into a tree, as a tool that had them all
# in memory would, in as many processes as hatch-pyc has workers (argv[3]; 0: one per CPU), each taking a run of
# whole directories: each __pycache__ made, each pyc created and written. Starting the interpreter and unpickling
# are in its time too. What any tool pays for its output on this file system, at least.
_WRITE_ONLY = (
    "import os, pickle, sys\n"
    "pycs = pickle.load(open(sys.argv[1], 'rb'))\n"
    "n = int(sys.argv[3]) or len(os.sched_getaffinity(0))\n"
    "def write(share):\n"
    "    made = set()\n"
    "    for rel, data in share:\n"
    "        path = os.path.join(sys.argv[2], rel)\n"
    "        directory = os.path.dirname(path)\n"
    "        if directory not in made:\n"
    "            os.makedirs(directory, exist_ok=True)\n"
    "            made.add(directory)\n"
    "        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)\n"
    "        os.write(fd, data)\n"
    "        os.close(fd)\n"
    "step = max(1, -(-len(pycs) // n))\n"
    "shares = [pycs[i : i + step] for i in range(0, len(pycs), step)]\n"
    "children = []\n"
    "try:\n"
    "    for share in shares[1:]:\n"
    "        pid = os.fork()\n"
    "        if pid == 0:\n"
    "            code = 0\n"
    "            try:\n"
    "                write(share)\n"
    "            except BaseException:\n"
    "                import traceback\n"
    "                traceback.print_exc()\n"
    "                code = 1\n"
    "            os._exit(code)\n"
    "        children.append(pid)\n"
    "    write(shares[0] if shares else [])\n"
    "finally:\n"
    "    failed = [os.waitpid(pid, 0)[1] for pid in children]\n"
    "sys.exit(1 if any(failed) else 0)\n"
)


def keep_pycs(tree: Path, into: Path) -> None:
    """Pickle every pyc of the compiled ``tree`` (its path in the tree, its bytes), for :func:`unit_write_only`."""
    import pickle

    pycs = [
        (os.path.relpath(os.path.join(dirpath, name), tree), Path(dirpath, name).read_bytes())
        for dirpath, _, names in sorted(os.walk(tree))
        if os.path.basename(dirpath) == "__pycache__"
        for name in sorted(names)
    ]
    into.write_bytes(pickle.dumps(pycs))


def unit_write_only(ctx: dict[str, object], rec: Recorder) -> None:
    """The floor of a warm run: the same pycs written into a fresh copy by a script that has them all in memory, in
    as many processes as hatch-pyc's workers (the target interpreter's start and the unpickling included)."""
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "write-only")  # type: ignore[operator]
    seconds, _ = timed([str(ctx["python"]), "-c", _WRITE_ONLY, str(ctx["pycs"]), str(tree), str(ctx["workers"] or 0)])
    settle()
    rec.add("write the pycs only", seconds, count_pycs(tree))


def warm_up(ctx: dict[str, object]) -> None:
    """One untimed run of each tool: runner bytecode, hatch-pyc's interpreter cache, page cache."""
    log("warm-up: one untimed run of hatch-pyc and of compileall")
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "warm")  # type: ignore[operator]
    run(hatch_cmd(ctx, tree, (0,)), env=ctx["runner_env"])  # type: ignore[arg-type]
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "warm")  # type: ignore[operator]
    run(compileall_cmd(ctx, tree, None))
    log("warm-up: filling the compile cache the warm-cache runs read")
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "warm")  # type: ignore[operator]
    run(hatch_cmd(ctx, tree, (0,), Path(str(ctx["warm_cache"]))), env=ctx["runner_env"])  # type: ignore[arg-type]
    keep_pycs(tree, Path(str(ctx["pycs"])))


def unit_compileall(ctx: dict[str, object], rec: Recorder, levels: tuple[int, ...] | None, rerun: bool) -> None:
    label = "compileall -j0" + ("" if levels is None else " " + " ".join(f"-o{lv}" for lv in levels))
    tree = fresh_copy(ctx["corpus"], ctx["scratch"] / "compileall")  # type: ignore[operator]
    cmd = compileall_cmd(ctx, tree, levels)
    seconds, _ = timed(cmd)
    settle()
    rec.add(label, seconds, count_pycs(tree))
    if rerun:
        seconds, _ = timed(cmd)
        rec.add(label + " rerun (no change)", seconds)


_UV_REPORT = re.compile(r"Bytecode compiled (\d+) files? in ([\d.]+)(ms|s)")


def unit_uv(ctx: dict[str, object], rec: Recorder, round_no: int) -> None:
    scratch: Path = ctx["scratch"]  # type: ignore[assignment]
    base = [
        str(ctx["uv"]),
        "pip",
        "install",
        "--python",
        str(ctx["python"]),
        "--offline",
        "--no-index",
        "--find-links",
        str(ctx["wheels"]),
        *ctx["packages"],
    ]  # type: ignore[misc]
    got: dict[bool, float] = {}
    for compile_ in (False, True) if round_no % 2 == 0 else (True, False):
        dest = scratch / f"uv-{next(_copies)}"  # a new path every time, as fresh_copy
        settle()
        cmd = [*base, "--target", str(dest)] + (["--compile-bytecode"] if compile_ else [])
        seconds, proc = timed(cmd, env=ctx["uv_env"])  # type: ignore[arg-type]
        settle()
        got[compile_] = seconds
        if compile_:
            rec.add("uv pip install --compile-bytecode", seconds, count_pycs(dest))
            match = _UV_REPORT.search(proc.stderr + proc.stdout)
            if match:
                reported = float(match.group(2)) / (1000 if match.group(3) == "ms" else 1)
                rec.add("uv compile step (uv's own report)", reported, derived=True)
        else:
            rec.add("uv pip install (no compile)", seconds, count_pycs(dest))
    rec.add("uv compile step", got[True] - got[False], derived=True)


def warm_uv(ctx: dict[str, object]) -> None:
    dest = ctx["scratch"] / f"uv-{next(_copies)}"  # type: ignore[operator]
    log("warming uv's cache (one untimed install)")
    run(
        [
            str(ctx["uv"]),
            "pip",
            "install",
            "--python",
            str(ctx["python"]),
            "--offline",
            "--no-index",
            "--find-links",
            str(ctx["wheels"]),
            *ctx["packages"],
            "--target",
            str(dest),
        ],
        env=ctx["uv_env"],
    )  # type: ignore[misc]


# --------------------------------------------------------------------------- statistics, report


def paired_ratio(times: dict[str, list[float]], num: str, den: str, keep: list[bool] | None = None) -> float | None:
    """Median over rounds of num/den in the same round (only the rounds ``keep`` marks, if given)."""
    a, b = times.get(num), times.get(den)
    if not a or not b or len(a) != len(b):
        return None
    ratios = [x / y for i, (x, y) in enumerate(zip(a, b, strict=True)) if y > 0 and (keep is None or keep[i])]
    return statistics.median(ratios) if ratios else None


def min_ratio(times: dict[str, list[float]], num: str, den: str) -> float | None:
    a, b = times.get(num), times.get(den)
    return min(a) / min(b) if a and b and min(b) > 0 else None


def busy_of(corpus: dict[str, object], variant: str) -> list[float] | None:
    """How busy the machine was before each run of ``variant`` (a derived uv row: its two installs)."""
    busy: dict[str, list[float]] = corpus.get("busy_before") or {}  # type: ignore[assignment]
    if variant.startswith("uv compile step"):
        a, b = busy.get("uv pip install (no compile)"), busy.get("uv pip install --compile-bytecode")
        return [max(x, y) for x, y in zip(a, b, strict=True)] if a and b else None
    return busy.get(variant)


# Row order and what each row is compared with (paired, per round).
REFERENCES = {
    "hatch-pyc -O0": "compileall -j0",
    "compileall -j0": None,
    "uv compile step": "compileall -j0",
    "uv compile step (uv's own report)": "compileall -j0",
    "hatch-pyc -O0 -O1 -O2": "compileall -j0 -o0 -o1 -o2",
    "compileall -j0 -o0 -o1 -o2": None,
    "hatch-pyc -O0 rerun (no change)": "hatch-pyc -O0",
    "compileall -j0 rerun (no change)": "compileall -j0",
    "hatch-pyc -O0 warm cache": "compileall -j0",
    "hatch-pyc -O0 cold cache": "hatch-pyc -O0 no cache, beside cold",
    "hatch-pyc -O0 no cache, beside cold": "hatch-pyc -O0",
    "write the pycs only": "hatch-pyc -O0 warm cache",
    "uv pip install (no compile)": None,
    "uv pip install --compile-bytecode": None,
}


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.3f}x" if ratio < 0.2 else f"{ratio:.2f}x"


def summarise(corpus: str, data: dict[str, object]) -> tuple[list[str], list[dict[str, object]]]:
    times: dict[str, list[float]] = data["times"]  # type: ignore[assignment]
    cpu: dict[str, list[list[float]]] = data.get("cpu") or {}  # type: ignore[assignment]
    rows = []
    lines = [
        "| variant | median s | min–max s | paired ratio | compared with | × uv compile step | CPU s: user + kernel |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for variant in [*REFERENCES, *(v for v in times if v not in REFERENCES)]:
        values = times.get(variant)
        if not values:
            continue
        med = statistics.median(values)
        ref = REFERENCES.get(variant)
        ref = denominator(times, ref) if ref else None
        ratio = paired_ratio(times, variant, ref) if ref else None
        with_uv = ("hatch-pyc -O0", "hatch-pyc -O0 warm cache", "write the pycs only")
        r_uv = paired_ratio(times, variant, "uv compile step") if variant in with_uv else None
        used = cpu.get(variant)
        if variant == "uv compile step" and cpu.get("uv pip install --compile-bytecode"):  # the difference too
            pairs = zip(cpu["uv pip install --compile-bytecode"], cpu["uv pip install (no compile)"], strict=True)
            used = [[round(a - b, 4) for a, b in zip(with_, without, strict=True)] for with_, without in pairs]
        user = statistics.median(u for u, _ in used) if used else None
        kernel = [k for _, k in used] if used else []
        lines.append(
            f"| {variant} | {med:.3f} | {min(values):.3f}–{max(values):.3f} | {fmt_ratio(ratio)} | "
            f"{ref or '—'} | {fmt_ratio(r_uv)} | "
            + (
                f"{user:.2f} + {statistics.median(kernel):.2f} ({min(kernel):.2f}–{max(kernel):.2f}) |"
                if used
                else "— |"
            )
        )
        rows.append(
            {
                "corpus": corpus,
                "variant": variant,
                "median": med,
                "min": min(values),
                "max": max(values),
                "ratio_to": ref,
                "ratio": ratio,
                "ratio_uv": r_uv,
                "runs": values,
                "cpu": used,
            }
        )
    return lines, rows


def judge(corpus: str, data: dict[str, object], threshold: float) -> tuple[list[str], list[dict[str, object]]]:
    """Verdicts on the paired median ratio; ratio of minimums and quiet rounds only as cross-checks."""
    times: dict[str, list[float]] = data["times"]  # type: ignore[assignment]
    lines = []
    verdicts = []
    for target, num, wanted, limit in TARGETS:
        den = denominator(times, wanted)
        label = f"{target} (saved report: against `{den}`, no paired run)" if den != wanted else target
        ratio = paired_ratio(times, num, den)
        if ratio is None:
            continue
        bn, bd = busy_of(data, num), busy_of(data, den)
        keep = [max(x, y) <= threshold for x, y in zip(bn, bd, strict=True)] if bn and bd else None
        quiet = paired_ratio(times, num, den, keep) if keep else None
        n_quiet = sum(keep) if keep else 0
        mins = min_ratio(times, num, den)
        met = ratio <= limit
        lines.append(
            f"| {label} | {fmt_ratio(ratio)} | {'met' if met else '**missed**'} | {fmt_ratio(mins)} | "
            f"{fmt_ratio(quiet)} ({n_quiet}) |"
        )
        verdicts.append(
            {
                "corpus": corpus,
                "target": label,
                "ratio": ratio,
                "limit": limit,
                "met": met,
                "ratio_of_minimums": mins,
                "ratio_quiet_rounds": quiet,
                "quiet_rounds": n_quiet,
            }
        )
    if lines:
        lines = [
            "| target | paired median ratio | verdict | ratio of minimums | paired, quiet rounds only (n) |",
            "| --- | ---: | --- | ---: | ---: |",
            *lines,
        ]
    return lines, verdicts


def render(raw: dict[str, object]) -> str:
    """The Markdown report, from the raw numbers alone (so a saved --json can be rendered again)."""
    meta: dict[str, object] = raw["meta"]  # type: ignore[assignment]
    quiet: dict[str, float] = meta["quiet"]  # type: ignore[assignment]
    target: dict[str, str] = meta["target"]  # type: ignore[assignment]
    corpora: dict[str, dict[str, object]] = raw["corpora"]  # type: ignore[assignment]
    report: list[str] = []
    corpus_lines = []
    raw["rows"], raw["targets"] = [], []
    for name, data in corpora.items():
        mb = float(data["py_bytes"]) / 1e6  # type: ignore[arg-type]
        dists = data.get("dists") or []
        corpus_lines.append(
            f"- **{name}**: {data['py_files']} .py files, {mb:.1f} MB of .py"
            + (
                f" ({', '.join(dists)})"  # type: ignore[arg-type]
                if dists
                else " (target stdlib minus test/, tests/, idlelib/, site-packages/, \\_\\_pycache\\_\\_/)"
            )
        )
        table, rows = summarise(name, data)
        checks, verdicts = judge(name, data, quiet["threshold"])
        pycs: dict[str, list[int]] = data["pycs"]  # type: ignore[assignment]
        counts = "; ".join(f"{v}: {'/'.join(map(str, sorted(set(c))))}" for v, c in pycs.items())
        report += [f"### {name} ({data['py_files']} .py, {mb:.1f} MB)", "", *table, ""]
        report += [*checks, ""] if checks else []
        report += [f"pyc files written per run: {counts}", ""]
        raw["rows"] += rows  # type: ignore[operator]
        raw["targets"] += verdicts  # type: ignore[operator]
    versions: dict[str, str] = meta["versions"]  # type: ignore[assignment]
    header = [
        f"## hatch-pyc compile benchmark: CPython {target['version']}",
        "",
        f"- date: {meta['date']}; rounds: {meta['rounds']} per corpus, tool order reversed every other round",
        f"- machine: {meta['machine']}",
        *(f"- {k}: {v}" for k, v in versions.items()),
        *([f"- benchmark script: bench_compile.py with SHA-256 {meta['script']}..."] if meta.get("script") else []),
        *corpus_lines,
        *(f"- note: {note}" for note in meta.get("notes") or []),  # type: ignore[attr-defined]
        *([f"- niceness: {meta['nice']} for the benchmark and every tool it runs"] if meta.get("nice") else []),
        f"- quiet machine: {quiet['runs'] - quiet['busy_starts']:.0f} of {quiet['runs']:.0f} timed runs started "
        f"with other processes using <= {quiet['threshold']:.0%} of the CPUs ({quiet['waited']:.0f} s spent "
        f"waiting for that; {quiet['busy_starts']:.0f} started busy after waiting {quiet['max_wait']:.0f} s)",
        f"- command: `{meta['command']}`",
        "- timed: the tool's command only (fresh copy of the corpus per run, synced before the clock starts; one "
        "untimed warm-up run of each tool per corpus); ratios are medians of per-round ratios",
        "- hatch-pyc runs as `python -m hatch_pyc` with PYTHONDONTWRITEBYTECODE unset and its own bytecode cached "
        "under the workdir (PYTHONPYCACHEPREFIX; its workers drop PYTHON* variables), as an installed copy would",
    ]
    if "uv" in versions:
        header.append(
            "- uv compile step = `uv pip install --offline --no-index --find-links WHEELS --target T "
            "--compile-bytecode` minus the same without `--compile-bytecode`, same round, warm cache "
            "(uv has no command that only compiles a directory)"
        )
    if any(data.get("cpu") for data in corpora.values()):
        header.append(
            "- CPU s: median user seconds + median kernel seconds (min–max) of the command and of every process it "
            "waited for (compileall's pool workers, children of its fork server, are not counted: its cells are its "
            "main process's alone); the kernel part moves with what the file system charges for the files a run "
            "creates (see benchmarks/README.md)"
        )
    if any("hatch-pyc -O0 no cache, beside cold" in data["times"] for data in corpora.values()):  # type: ignore[operator]
        header.append(
            "- cold cache: a new empty cache each run, timed right before or after (alternating by round) the same "
            "command without a cache on its own fresh copy, `hatch-pyc -O0 no cache, beside cold`; the cold target "
            "compares the two"
        )
    header.append(
        "- verdicts use the paired median ratio; the ratio of minimums and the paired ratio over rounds where both "
        "runs started on a quiet machine are cross-checks against load from other processes"
    )
    return "\n".join([*header, "", *report]).rstrip() + "\n"


def tool_versions(target: dict[str, str], uv: Path | None) -> dict[str, str]:
    versions = {
        "runner python": platform.python_version() + f" ({sys.executable})",
        "target python": f"{target['version']} ({target['executable']})",
        "hatch-pyc": run([sys.executable, "-m", "hatch_pyc", "--version"]).stdout.strip(),
    }
    pip = subprocess.run([target["executable"], "-m", "pip", "--version"], capture_output=True, text=True, check=False)
    # Debian's CPythons have pip only in venvs: the corpus is then installed with a venv's (target_pip).
    versions["pip (target)"] = pip.stdout.split(" from ")[0] if pip.returncode == 0 else "none (a venv's pip installs)"
    source = Path(run([sys.executable, "-c", "import hatch_pyc; print(hatch_pyc.__file__)"]).stdout.strip()).parent
    top = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    in_checkout = top.returncode == 0 and Path(top.stdout.strip()).resolve() == source.parent.resolve()
    head = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    if in_checkout and head.returncode == 0:
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=False
        ).stdout.split("\n")
        changed = sum(1 for line in dirty if line.strip())
        versions["hatch-pyc"] += f" (git {head.stdout.strip()}" + (
            f", {changed} files changed in hatch_pyc/)" if changed else ", clean)"
        )
    if uv is not None:
        versions["uv"] = run([str(uv), "--version"]).stdout.strip()
    return versions


# --------------------------------------------------------------------------- main


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # subprocess.run then kills the command being timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="target CPython: 3.12, python3.12 or a path (default 3.12)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per corpus (default 5)")
    parser.add_argument(
        "--corpus",
        action="append",
        choices=("stdlib", "site-packages"),
        help="corpus to run (repeatable; default both)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"scratch dir (default {DEFAULT_WORKDIR})"
    )
    parser.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES), help="site-packages corpus contents")
    parser.add_argument("--workers", type=int, default=0, help="hatch-pyc --workers (default: its own default)")
    parser.add_argument("--uv", default="uv", help="pip requirement for uv (default: uv)")
    parser.add_argument("--no-uv", action="store_true", help="skip the uv comparison")
    parser.add_argument("--quick", action="store_true", help="2 rounds, stdlib corpus only (smoke test)")
    parser.add_argument("--json", type=Path, help="write raw numbers to this file")
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=120.0,
        help="seconds to wait for a quiet machine before each timed run (default 120; 0: never wait)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the benchmark and every tool at this niceness "
        "(e.g. -15 as root on a shared machine: all tools get the same priority over other work)",
    )
    parser.add_argument("--note", action="append", default=[], help="a line to add to the report's header")
    parser.add_argument("--from-json", type=Path, help="render the report of a saved --json file; run nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        return emit(json.loads(args.from_json.read_text()), args)
    if args.quick:
        args.rounds = 2
        args.corpus = ["stdlib"]
    corpora = args.corpus or ["stdlib", "site-packages"]
    QUIET.max_wait = args.max_wait
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as exc:
            sys.exit(f"--nice {args.nice}: {exc} (a negative niceness needs root)")
    signal.signal(signal.SIGTERM, _on_sigterm)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    run([sys.executable, "-c", "import hatch_pyc"])  # fail early if hatch-pyc is not installed here
    target = resolve_target(args.python)
    log(f"target: CPython {target['version']} at {target['executable']}")
    use_uv = "site-packages" in corpora and not args.no_uv
    uv = ensure_uv(workdir, args.uv) if use_uv else None

    started = datetime.datetime.now(datetime.timezone.utc)
    raw: dict[str, object] = {"corpora": {}}
    shutil.rmtree(workdir / "scratch", ignore_errors=True)  # a killed run's copies
    for name in corpora:
        info = ensure_corpus(name, target, workdir, args.packages)
        log(f"corpus {name}: {info['py_files']} .py files, {info['py_bytes'] / 1e6:.1f} MB of .py")
        ctx: dict[str, object] = {
            "corpus": Path(str(info["path"])),
            "scratch": workdir / "scratch",
            "python": target["executable"],
            "workers": args.workers,
            "runner_env": runner_env(workdir),
            "warm_cache": workdir / "scratch" / f"warm-cache-{name}",
            "pycs": workdir / "scratch" / f"pycs-{name}.pickle",
        }
        warm_up(ctx)
        units = [
            lambda rec, r, c=ctx: unit_hatch(c, rec, (0,), rerun=True),
            lambda rec, r, c=ctx: unit_compileall(c, rec, None, rerun=True),
            lambda rec, r, c=ctx: unit_hatch(c, rec, (0, 1, 2), rerun=False),
            lambda rec, r, c=ctx: unit_compileall(c, rec, (0, 1, 2), rerun=False),
            lambda rec, r, c=ctx: unit_cache(c, rec),
            lambda rec, r, c=ctx: unit_cold_pair(c, rec, r),
            lambda rec, r, c=ctx: unit_write_only(c, rec),
        ]
        if name == "site-packages" and uv is not None:
            ctx.update(
                uv=uv, uv_env=uv_env(workdir), wheels=workdir / f"wheels-{target['cache_tag']}", packages=args.packages
            )
            warm_uv(ctx)
            units.append(lambda rec, r, c=ctx: unit_uv(c, rec, r))
        rec = Recorder()
        for round_no in range(args.rounds):
            order = units if round_no % 2 == 0 else units[::-1]
            log(f"{name}: round {round_no + 1}/{args.rounds} ({'forward' if round_no % 2 == 0 else 'reversed'} order)")
            for unit in order:
                unit(rec, round_no)
        raw["corpora"][name] = {  # type: ignore[index]
            **info,
            "times": rec.times,
            "pycs": rec.pycs,
            "busy_before": rec.busy,
            "cpu": rec.cpu,
        }
    shutil.rmtree(workdir / "scratch", ignore_errors=True)  # only now: see fresh_copy

    raw["meta"] = {
        "date": f"{started:%Y-%m-%d %H:%M} UTC",
        "machine": f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.system()} "
        f"{platform.release()}, {platform.machine()}",
        "nproc": len(os.sched_getaffinity(0)),
        "rounds": args.rounds,
        "versions": tool_versions(target, uv),
        "target": target,
        "notes": args.note,
        "nice": os.nice(0) if args.nice else 0,
        "script": SCRIPT_SHA256,
        "quiet": {
            "runs": QUIET.runs,
            "busy_starts": QUIET.busy_starts,
            "waited": QUIET.waited,
            "threshold": QUIET.threshold,
            "max_wait": QUIET.max_wait,
        },
        "command": shlex.join(["python", "benchmarks/bench_compile.py", *(argv or sys.argv[1:])]),
    }
    return emit(raw, args)


def emit(raw: dict[str, object], args: argparse.Namespace) -> int:
    text = render(raw)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
