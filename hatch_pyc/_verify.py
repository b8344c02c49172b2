"""Verify a compiled variant: import every module in fresh processes, compare with the sources.

A module that imports from source but fails sourceless (it reads its own source through
``inspect.getsource``, ``linecache`` or ``__file__``, or another module's docstring at ``-O 2``)
is what breaks a precompiled deployment where nobody looks; this finds it before production,
with the ``exclude`` patterns that fix it: found by putting sources back beside the pycs of a
scratch tree until the module imports, so every suggestion has been tried.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._compile import compile_tree
from hatch_pyc._options import PycOptions
from hatch_pyc._targets import Interpreter

_CHILD = r"""
import importlib, json, os, sys, traceback
# Results go to a private copy of stdout; whatever modules print (from Python or C) goes to stderr.
results = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
sys.path.insert(0, sys.argv[1])
inside = os.path.join(sys.argv[1], "")
for name in sys.argv[3:]:
    try:
        known = set(sys.modules)
        importlib.import_module(name)
        result = {"module": name, "ok": True}
        if sys.argv[2] == "loaded":  # the modules of the tree this import loaded, in load order
            result["loaded"] = [
                n for n, m in list(sys.modules.items())
                if n not in known and str(getattr(m, "__file__", None) or "").startswith(inside)
            ]
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from module code count as failures
        try:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        except BaseException:  # a module imported earlier broke traceback (exceptiongroup on 3.13+ did)
            try:
                text = str(exc)
            except BaseException:
                text = "<unprintable>"
            last = type(exc).__name__ + (": " + text if text else "")
        result = {"module": name, "ok": False, "error": last}
    results.write(json.dumps(result) + "\n")
    results.flush()
"""
_SKIP_NAMES = ("__main__", "setup", "conftest")


@dataclass(frozen=True)
class ModuleOutcome:
    """One module's import in one variant."""

    module: str
    ok: bool
    error: str | None = None
    loaded: tuple[str, ...] = ()  # with ``record_loaded``: the tree's modules the import loaded


@dataclass(frozen=True)
class SourceFix:
    """The ``exclude`` patterns that make one module import sourceless, and how sure verify is of them.

    ``checked``: the module imported with exactly these sources kept (else the patterns are the
    module's own source, the best guess). ``minimal``: dropping any one of them breaks the import
    again; false when the probe limit cut the search short, or when the set was found for another
    module and proven on this one without taking it apart (the set works either way).
    """

    module: str
    patterns: tuple[str, ...]
    checked: bool
    minimal: bool


@dataclass
class VerifyResult:
    """Modules that fail only without sources (the problem), and those that fail either way."""

    modules: int = 0
    # (module, error, exclude pattern): the first of the module's fix patterns
    sourceless_only: list[tuple[str, str, str]] = field(default_factory=list)
    both: list[tuple[str, str]] = field(default_factory=list)
    compiled_ok: int = 0
    fixes: dict[str, SourceFix] = field(default_factory=dict)  # every pattern a sourceless-only module needs
    probes: int = 0  # imports run to find and check the fixes

    @property
    def ok(self) -> bool:
        """No module fails only because its source is gone."""
        return not self.sourceless_only


def find_modules(tree: Path) -> dict[str, str]:
    """``{dotted module name: path relative to tree}`` for every module a tree can import."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        here = Path(dirpath)
        rel_dir = here.relative_to(tree)
        parts = [] if str(rel_dir) == "." else list(rel_dir.parts)
        if any(not p.isidentifier() for p in parts):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and d.isidentifier())
        for name in sorted(filenames):
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("py", "pyc") or not stem.isidentifier() or stem in _SKIP_NAMES:
                continue
            dotted = ".".join(parts if stem == "__init__" else [*parts, stem])
            if dotted:
                found.setdefault(dotted, (rel_dir / name).as_posix() if parts else name)
    return dict(sorted(found.items()))


def import_all(
    interp: Interpreter,
    root: Path,
    modules: Sequence[str],
    *,
    workers: int,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    record_loaded: bool = False,
    write_bytecode: bool = False,
) -> dict[str, ModuleOutcome]:
    """Import each module in fresh child processes (batches, a pool, a timeout per module).

    A batch shares one process, so a module can see what the ones before it did (a package left
    half-imported, a patched standard library); ``batch_size=1`` imports each module alone.
    ``record_loaded`` lists, for each module that imports, the modules of ``root`` it loaded.
    ``write_bytecode`` lets the children cache the sources they compile (``-B`` otherwise).
    """
    pending: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    size = batch_size or max(1, min(25, len(modules) // (workers * 4) or 1))
    for start in range(0, len(modules), size):
        pending.put(list(modules[start : start + size]))
    outcomes: dict[str, ModuleOutcome] = {}
    lock = threading.Lock()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    mode = "loaded" if record_loaded else "-"

    def run_batch(batch: list[str]) -> None:
        while batch:
            proc = subprocess.Popen(
                [
                    interp.executable,
                    "-E",
                    "-s",
                    *([] if write_bytecode else ["-B"]),
                    "-c",
                    _CHILD,
                    str(root),
                    mode,
                    *batch,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=root,
            )
            assert proc.stdout is not None
            lines: queue.SimpleQueue[str] = queue.SimpleQueue()
            reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
            reader.start()
            waited = 0.0
            while batch:
                try:
                    line = lines.get(timeout=0.25)
                except queue.Empty:
                    waited += 0.25
                    if not reader.is_alive() and lines.empty():
                        # The child died mid-batch (os._exit, a crash): blame the module it was on.
                        record(ModuleOutcome(batch.pop(0), False, f"the interpreter exited ({proc.wait()})"))
                        break
                    if waited >= timeout:
                        proc.kill()
                        record(ModuleOutcome(batch.pop(0), False, f"timed out after {timeout:g} s"))
                        break
                    continue
                waited = 0.0
                result = json.loads(line)
                loaded = tuple(result.get("loaded", ()))
                record(ModuleOutcome(result["module"], result["ok"], result.get("error"), loaded))
                batch.remove(result["module"])
            proc.wait()
            reader.join()
            proc.stdout.close()

    def record(outcome: ModuleOutcome) -> None:
        with lock:
            outcomes[outcome.module] = outcome
            if progress:
                progress(len(outcomes), len(modules))

    def drive() -> None:
        while True:
            try:
                batch = pending.get_nowait()
            except queue.Empty:
                return
            run_batch(batch)

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(max(1, workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _pump(stream: Iterable[str], lines: queue.SimpleQueue[str]) -> None:
    for line in stream:
        lines.put(line)


def exclude_pattern(relpath: str) -> str:
    return relpath[: -len("c")] if relpath.endswith(".pyc") else relpath


def verify_tree(
    tree: Path,
    interp: Interpreter,
    *,
    options: PycOptions | None = None,
    compiled: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_probes: int = 400,
    probes_per_module: int = 64,
) -> VerifyResult:
    """Compare imports of ``tree`` (sources) with its sourceless variant (made here unless ``compiled`` is given).

    Each module that fails only without sources is then imported again with sources put back
    (in a scratch copy: ``compiled`` is never modified) until a small set of them is found that
    lets it import: at most ``probes_per_module`` imports for one module, ``max_probes`` in all.
    """
    options = options or PycOptions(strip=True)
    workers = options.worker_count
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-verify-") as scratch:
        owned = compiled is None
        if compiled is None:
            compiled = Path(scratch) / "compiled"
            shutil.copytree(tree, compiled, symlinks=True)
            strip = PycOptions(levels=options.levels[:1], strip=True, exclude=options.exclude, on_error="keep-source")
            compile_tree([compiled], strip, python=interp.executable)
        modules = find_modules(compiled)
        source_modules = find_modules(tree)
        names = list(modules)
        total = len(names) * 2

        def step(offset: int) -> Callable[[int, int], None] | None:
            return (lambda done, _total: progress(offset + done, total)) if progress else None

        after = import_all(interp, compiled, names, workers=workers, progress=step(0))
        failed = [n for n in names if not after[n].ok]
        before = import_all(
            interp, tree, [n for n in failed if n in source_modules], workers=workers, progress=step(len(names))
        )
        # "Needs its source" is a claim about the module, not about the batch it shared a process
        # with: confirm each such verdict with the module imported alone from both trees.
        suspects = [n for n in failed if n in before and before[n].ok]
        if suspects:
            alone_after = import_all(interp, compiled, suspects, workers=workers, batch_size=1)
            alone_before = import_all(interp, tree, suspects, workers=workers, batch_size=1, record_loaded=True)
            for name in suspects:
                after[name] = alone_after[name]
                before[name] = alone_before[name]
            failed = [n for n in failed if not after[n].ok]
        result = VerifyResult(modules=len(names), compiled_ok=len(names) - len(failed))
        needs = [n for n in failed if n in before and before[n].ok]
        if needs:
            from hatch_pyc._verify_fix import Prober, find_fixes, link_tree

            prober = Prober(
                interp,
                compiled if owned else link_tree(compiled, Path(scratch) / "probe"),
                tree=tree,
                modules=modules,
                source_modules=source_modules,
                workers=workers,
                limit=max_probes,
            )
            try:
                result.fixes = find_fixes(prober, {n: before[n].loaded for n in needs}, probes_per_module)
            finally:
                prober.place(())
            result.probes = prober.spent
    for name in failed:
        error = after[name].error or "failed"
        if name in result.fixes:
            result.sourceless_only.append((name, error, result.fixes[name].patterns[0]))
        else:
            result.both.append((name, error))
    return result
