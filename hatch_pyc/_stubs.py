"""Type stubs for sourceless modules: the types a typed package promises, kept when its sources go.

Type checkers and IDEs read a package's ``.py`` files for its signatures (PEP 561: when the
package holds ``py.typed``). A sourceless package has none left, so each compiled module gets a
``.pyi`` stub beside it, generated from its source by mypy's ``stubgen`` (the stub generator
typeshed and most typed projects use). It runs in a child process of the running Python, where
``hatch-pyc[stubs]`` installs mypy, with no import of the package (``--no-import``) and with the
target's Python version, so ``sys.version_info`` branches resolve as they will at run time.

A stub holds signatures, never code bodies: every stub is parsed by the *target* interpreter (which
knows its own syntax) and refused if a function body holds anything but ``...`` (and, when asked
for, a docstring), or a module or class body holds a statement other than a definition, an
assignment, an import or a version branch. The expressions a signature carries (a default value
stubgen keeps, a decorator, a base class, a dataclass ``field()``) are kept as stubgen writes them;
they never run, since the import system never loads a ``.pyi``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from hatch_pyc._cache import open_cache, read_regular_file
from hatch_pyc._errors import InvalidInput, SourceError
from hatch_pyc._options import STUBS, PycOptions, Stubs
from hatch_pyc._targets import Interpreter

STUBGEN_REQUIREMENT = "mypy>=1.11"
_SHADOWED = frozenset(sys.stdlib_module_names) | {"typing_extensions", "mypy_extensions", "_typeshed"}
_TIMEOUT = 1800.0
# Entries in the compile cache (beside the workers' code entries, under keys of their own): this header,
# the SHA-256 of the key and the payload, then the payload, JSON {"failed": {...}, "texts": {...}}.
_CACHE_HEADER = b"hatch-pyc stubs 1\n"
_MAX_ENTRY = 64 << 20

# Run by the running Python with stdin {"path": [...], "version": [3, 14], "files": [...], "out": DIR,
# "docstrings": bool, "analysis": bool}. Its working directory holds the package's sources, so before it
# imports anything that directory leaves its path, which becomes ``path``: the parent's own ``sys.path``
# (absolute), where mypy is (a build frontend's isolated environment puts it there). It runs with a fixed
# PYTHONHASHSEED (so not ``-I``, which ignores it): stubgen writes some methods in set order. Prints
# {"errors": {file: message}}.
# stubgen stops the whole batch at a module it cannot handle: that one is set aside, named by stubgen's
# message (or found by halving the batch), and the rest is run again.
_RUNNER = r"""
import os, sys
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.getcwd()]
import contextlib, io, json
job = json.load(sys.stdin)
sys.path[:] = job["path"]
from mypy import stubgen
stubgen.BLACKLIST.clear()  # stubgen skips six.py and vendor/ directories by name: every module is stubbed here
def run(files):
    args = ["--no-import", "--include-private", "--quiet", "-o", job["out"], *files]
    if job["docstrings"]:
        args.insert(0, "--include-docstrings")
    if not job["analysis"]:
        args.insert(0, "--no-analysis")
    options = stubgen.parse_options(args)
    options.pyversion = tuple(job["version"])
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            stubgen.generate_stubs(options)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            return said.getvalue() or (exc.code if isinstance(exc.code, str) else f"stubgen exited with {exc.code}")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
errors = {}
def settle(files):
    while files:
        problem = run(files)
        if problem is None:
            return
        if len(files) == 1:
            errors[files[0]] = problem
            return
        named = [name for name in files if f"{name}:" in problem or f"{name} " in problem]
        if named:
            errors[named[0]] = problem
            files = [name for name in files if name != named[0]]
            continue
        half = len(files) // 2
        settle(files[:half])
        settle(files[half:])
        return
settle(job["files"])
json.dump({"errors": errors}, sys.stdout)
"""

# Run by the target interpreter with stdin {"docstrings": bool, "stubs": {name: text}}; prints
# {name: problem} for every stub that holds code (or a docstring it was not to keep), or does not parse.
_CHECKER = r"""
import ast, json, sys
job = json.load(sys.stdin)
docs = job["docstrings"]
DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
PLAIN = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Pass)
PLAIN += (ast.TypeAlias,) if hasattr(ast, "TypeAlias") else ()
def constant(node, kinds):
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, kinds)
def body_problem(body, where):
    for i, node in enumerate(body):
        if constant(node, str) and i == 0:
            if not docs:
                return f"{where} has a docstring at line {node.lineno}"
            continue
        if constant(node, type(...)):
            continue
        if isinstance(node, DEFS):
            inner = node.body if isinstance(node, ast.ClassDef) else None
            if inner is None:
                problem = function_problem(node)
            else:
                problem = body_problem(inner, f"class {node.name}")
            if problem:
                return problem
            continue
        if isinstance(node, ast.If):
            problem = body_problem(node.body, where) or body_problem(node.orelse, where)
            if problem:
                return problem
            continue
        if isinstance(node, PLAIN):
            continue
        return f"{where} runs code at line {node.lineno} ({type(node).__name__})"
    return None
def function_problem(node):
    for i, stmt in enumerate(node.body):
        if constant(stmt, str) and i == 0:
            if not docs:
                return f"function {node.name} has a docstring at line {stmt.lineno}"
            continue
        if constant(stmt, type(...)) or isinstance(stmt, ast.Pass):
            continue
        return f"function {node.name} has a body at line {stmt.lineno} ({type(stmt).__name__})"
    return None
out = {}
for name, text in job["stubs"].items():
    try:
        tree = ast.parse(text, name)
    except SyntaxError as exc:
        out[name] = f"does not parse: {exc.msg} at line {exc.lineno}"
        continue
    problem = body_problem(tree.body, "the module")
    if problem:
        out[name] = problem
json.dump(out, sys.stdout)
"""


@dataclass
class StubResult:
    """What stub generation gave: a stub per module (by its ``.py`` name), and the modules it failed for."""

    stubs: dict[str, bytes] = field(default_factory=dict)
    errors: list[SourceError] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # the modules of ``errors``, named as in ``stubs``
    cache_hits: int = 0  # modules whose stub (or stubgen's error) came from the compile cache


def stub_name(module: str) -> str:
    """``pkg/mod.py`` -> ``pkg/mod.pyi``."""
    return module[: -len(".py")] + ".pyi"


def typed_packages(names: Iterable[str]) -> set[str]:
    """The directories (``pkg``, ``ns/pkg``) that hold a ``py.typed`` marker, from import-root-relative names.

    PEP 561 puts the marker in the top-level package, where it covers every subpackage, or, for a
    namespace package, in the typed package below it. A module at the root (``mod.py``) cannot be marked.
    """
    return {name[: -len("/py.typed")] for name in names if name.endswith("/py.typed")}


def wants_stub(module: str, mode: Stubs, typed: set[str]) -> bool:
    """Whether the module ``module`` (import-root-relative ``.py`` name) gets a stub under ``mode``:
    under ``"typed"``, when a directory above it holds ``py.typed``."""
    if mode == "all":
        return True
    if mode == "typed":
        return not package_dirs([module]).isdisjoint(typed)
    return False


def package_dirs(modules: Iterable[str]) -> set[str]:
    """The directories above ``modules`` (import-root-relative names): where a package's ``__init__.py`` goes."""
    return {
        "/".join(parts[:depth]) for m in modules for parts in [m.split("/")[:-1]] for depth in range(1, len(parts) + 1)
    }


def stubgen_missing() -> str | None:
    """Why stubs cannot be generated here (mypy is not installed), or ``None``."""
    try:
        if find_spec("mypy.stubgen") is not None:
            return None
    except (ImportError, ValueError):
        pass
    return (
        f"generating type stubs needs mypy's stubgen, which is not installed for {sys.executable} "
        f'(install "hatch-pyc[stubs]" or "{STUBGEN_REQUIREMENT}")'
    )


def generate_stubs(
    sources: Mapping[str, bytes],
    wanted: Iterable[str],
    interp: Interpreter,
    *,
    docstrings: bool = False,
    label: str = "",
    cache: Path | None = None,
) -> StubResult:
    """Stubs for the modules ``wanted``, from ``sources`` (import-root-relative ``.py`` name -> bytes).

    ``sources`` also holds the modules around them (their packages' ``__init__.py``) so that module
    names resolve as in the package; a directory with no ``__init__.py`` (a namespace package) gets
    an empty one in the scratch copy, for stubgen names a module by the packages above it. ``label``
    prefixes the names in errors (the wheel or the tree they come from). A module stubgen fails on,
    or whose stub holds code, is in ``errors``, with the reason. ``cache`` (the compile cache's entry
    directory, :func:`hatch_pyc._cache.open_cache`) keeps what stubgen said of the same sources.
    """
    wanted = sorted(set(wanted))
    result = StubResult()
    if not wanted:
        return result
    missing = stubgen_missing()
    if missing is not None:
        raise InvalidInput(f'{label}{wanted[0]}: {missing}, or turn stubs off (--stubs none, `stubs = "none"`)')
    # mypy refuses to analyse a module that shadows one of the standard library's (or typing_extensions): those
    # are parsed only (stubgen --no-analysis), in a scratch tree of their own so they shadow nothing for the rest.
    shadowing = [name for name in wanted if _top(name) in _SHADOWED]
    analysed = [name for name in wanted if _top(name) not in _SHADOWED]
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-stubs-") as scratch:
        out = Path(scratch, "out")
        out.mkdir()
        failed: dict[str, str] = {}
        texts: dict[str, str] = {}
        for index, (files, analysis) in enumerate(((analysed, True), (shadowing, False))):
            if not files:
                continue
            tops = {_top(name) for name in files}
            group = {name: data for name, data in sources.items() if _top(name) in tops}
            key = _cache_key(files, group, interp, docstrings=docstrings, analysis=analysis)
            said = _cache_get(cache, key)
            if said is not None:
                result.cache_hits += len(files)
                failed.update(said["failed"])
                texts.update(said["texts"])
                continue
            root = Path(scratch, f"src{index}")
            for name, data in group.items():
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            for directory in package_dirs(files):
                (root / directory / "__init__.py").touch()  # exists already unless a namespace package
            now_failed = _run_stubgen(files, root, out, interp, docstrings=docstrings, analysis=analysis)
            now_texts = {}
            for name in files:
                if name in now_failed:
                    continue
                try:
                    now_texts[name] = (out / stub_name(name)).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
                    now_failed[name] = f"stubgen wrote no stub for it ({why})"
            _cache_put(cache, key, {"failed": now_failed, "texts": now_texts})
            failed.update(now_failed)
            texts.update(now_texts)
        for name in wanted:
            if name in failed:
                result.errors.append(_error(label, name, failed[name]))
                result.failed.add(name)
    if texts:
        check = {"docstrings": docstrings, "stubs": texts}
        problems = _run_json([interp.executable, "-I", "-c", _CHECKER], check, cwd=None, what="the stub check")
        for name, text in sorted(texts.items()):
            if name in problems:
                result.errors.append(SourceError(f"{label}{name}", None, "stub", f"refused: {problems[name]}"))
                result.failed.add(name)
            else:
                result.stubs[name] = text.encode("utf-8")
    result.errors.sort(key=lambda e: e.path)
    return result


def _cache_key(
    files: list[str], group: Mapping[str, bytes], interp: Interpreter, *, docstrings: bool, analysis: bool
) -> str:
    """What decides stubgen's output for ``files``: every source it reads, the target's version, the options,
    mypy's version, the running Python and this module's programs."""
    from importlib.metadata import PackageNotFoundError, version  # ~10 ms to import: only when stubs are made

    try:
        mypy_version = version("mypy")
    except PackageNotFoundError:
        mypy_version = "?"
    options = json.dumps([list(interp.version[:2]), docstrings, analysis])
    key = hashlib.sha256(_CACHE_HEADER)
    for part in (_RUNNER, _CHECKER, mypy_version, sys.version, options, "\0".join(files)):
        key.update(hashlib.sha256(part.encode()).digest())
    for name in sorted(group):
        key.update(hashlib.sha256(name.encode()).digest() + hashlib.sha256(group[name]).digest())
    return key.hexdigest()


def _shard(cache: Path, key: str, *, create: bool) -> int | None:
    """The entry's shard directory, opened without following a link, if only this user may write it."""
    directory = cache / key[:2]
    try:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        os.close(fd)
        return None
    return fd


def _read_entry(cache: Path, key: str) -> bytes | None:
    """The bytes of the entry ``key``: a regular file of at most ``_MAX_ENTRY`` bytes in a private shard."""
    shard = _shard(cache, key, create=False)
    if shard is None:
        return None
    try:
        return read_regular_file(key[2:], _MAX_ENTRY + 1, dir_fd=shard, max_size=_MAX_ENTRY)
    finally:
        os.close(shard)


def _cache_get(cache: Path | None, key: str) -> dict[str, dict[str, str]] | None:
    """What stubgen said of these sources before, if an intact entry holds it; anything else is a miss."""
    data = _read_entry(cache, key) if cache is not None else None
    if data is None or not data.startswith(_CACHE_HEADER):
        return None
    start = len(_CACHE_HEADER)
    digest, payload = data[start : start + 32], data[start + 32 :]
    if digest != hashlib.sha256(key.encode() + payload).digest():
        return None
    try:
        said = json.loads(payload)
        failed, texts = said["failed"], said["texts"]
        if all(isinstance(v, str) for v in (*failed.values(), *texts.values())):
            return {"failed": failed, "texts": texts}
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _cache_put(cache: Path | None, key: str, said: dict[str, dict[str, str]]) -> None:
    """Keep what stubgen said under ``key``: written under a temporary name and renamed; never fails a run."""
    if cache is None:
        return
    payload = json.dumps(said, sort_keys=True).encode()
    data = _CACHE_HEADER + hashlib.sha256(key.encode() + payload).digest() + payload
    shard = _shard(cache, key, create=True)
    if shard is None:
        return
    tmp = f"{key[2:]}.{os.getpid()}.tmp"  # a name the cache's clean-up knows
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600, dir_fd=shard)
        with open(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, key[2:], src_dir_fd=shard, dst_dir_fd=shard)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=shard)
    finally:
        os.close(shard)


def _top(name: str) -> str:
    """The top-level name a module is imported under: ``pkg`` for ``pkg/mod.py``, ``mod`` for ``mod.py``."""
    return name.split("/", 1)[0].removesuffix(".py")


def _run_stubgen(
    wanted: list[str], root: Path, out: Path, interp: Interpreter, *, docstrings: bool, analysis: bool
) -> dict[str, str]:
    """Run stubgen over ``wanted`` (names under ``root``); return what it said of each module it failed for.

    A stubgen that dies (mypy is compiled: a source too deep for it ends in a crash, not an error)
    is run again on each half of the modules, down to the ones it cannot handle, which are named.
    """
    path = [os.path.abspath(entry) for entry in sys.path if entry]  # never the scratch tree it runs in
    job = {
        "path": path,
        "version": list(interp.version[:2]),
        "files": wanted,
        "out": str(out),
        "docstrings": docstrings,
        "analysis": analysis,
    }
    try:
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        answer = _run_json([sys.executable, "-c", _RUNNER], job, cwd=root, what="stubgen", env=env)
    except InvalidInput as exc:
        if len(wanted) == 1:
            return {wanted[0]: str(exc)}
        half = len(wanted) // 2
        return {
            **_run_stubgen(wanted[:half], root, out, interp, docstrings=docstrings, analysis=analysis),
            **_run_stubgen(wanted[half:], root, out, interp, docstrings=docstrings, analysis=analysis),
        }
    errors = answer.get("errors")
    if not isinstance(errors, dict):
        raise InvalidInput("stubgen failed: unexpected answer")
    return {str(k): str(v) for k, v in errors.items()}


def make_stubs(
    sources: Mapping[str, bytes], wanted: Mapping[str, str], interp: Interpreter, options: PycOptions, label: str
) -> StubResult:
    """:func:`generate_stubs` with ``options``' docstring and cache settings, by the callers' own names:
    ``wanted`` maps each import-root-relative module name to the name ``stubs`` and ``failed`` use."""
    made = generate_stubs(
        sources,
        wanted,
        interp,
        docstrings=options.stub_docstrings,
        label=label,
        cache=open_cache(options.cache, options.cache_dir)[0],
    )
    return StubResult(
        {wanted[name]: data for name, data in made.stubs.items()},
        made.errors,
        {wanted[name] for name in made.failed},
        made.cache_hits,
    )


def merge(results: Iterable[StubResult]) -> StubResult:
    """One result of several (one per import root)."""
    total = StubResult()
    for part in results:
        total.stubs.update(part.stubs)
        total.errors.extend(part.errors)
        total.failed |= part.failed
        total.cache_hits += part.cache_hits
    return total


def _error(label: str, name: str, said: str) -> SourceError:
    """One line of what stubgen said about ``name`` (``file:line: error: ...`` when it gives one)."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    line = next((x for x in lines if "error:" in x), lines[-1] if lines else "stubgen failed")
    lineno = None
    prefix = f"{name}:"
    if prefix in line:
        line = line.split(prefix, 1)[1]
        number, _, rest = line.partition(":")
        if number.strip().isdigit():
            lineno, line = int(number), rest
    line = line.replace("Critical error during semantic analysis:", "").strip()
    return SourceError(f"{label}{name}", lineno, "stub", f"stubgen: {line}")


def _run_json(
    argv: list[str], job: object, *, cwd: Path | None, what: str, env: dict[str, str] | None = None
) -> dict[str, object]:
    """Run ``argv`` (a Python) with ``job`` as JSON on stdin; its JSON answer."""
    try:
        done = subprocess.run(
            argv,
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"{what} could not run ({exc})") from exc
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        status = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        last = (done.stderr.strip().splitlines() or [status])[-1]
        raise InvalidInput(f"{what} failed: {last}") from None
    if not isinstance(answer, dict):
        raise InvalidInput(f"{what} failed: unexpected answer")
    return answer


__all__ = [
    "STUBGEN_REQUIREMENT",
    "STUBS",
    "StubResult",
    "Stubs",
    "generate_stubs",
    "make_stubs",
    "merge",
    "package_dirs",
    "stub_name",
    "stubgen_missing",
    "typed_packages",
    "wants_stub",
]
