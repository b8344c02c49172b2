"""Plan a compile run: which sources, which pyc paths, which target, nothing written yet."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._errors import InvalidInput, InvalidOptions
from hatch_pyc._layout import cache_path, sourceless_path
from hatch_pyc._options import PycOptions
from hatch_pyc._targets import Interpreter, find_interpreter

_SITE_VERSION = re.compile(r"python(\d)\.(\d+)t?$")


@dataclass(frozen=True)
class PlannedSource:
    """One module to compile and the pycs it becomes."""

    source: Path
    relpath: str  # posix path relative to the import root; what exclude patterns match
    dfile: str  # the code object's co_filename
    outputs: tuple[tuple[int, Path], ...]  # (level, final pyc path), lowest level first
    size: int
    mtime: float
    # A module inside a zip archive (a wheel): ``source`` is then ``archive/member``, a name for
    # messages; the worker reads the member and checks it against ``digest`` (RECORD's form,
    # ``sha256=...``) and ``size`` before compiling it.
    archive: Path | None = None
    member: str | None = None
    digest: str | None = None


@dataclass(frozen=True)
class Root:
    """A directory that imports start from (a site-packages, or the parent of a package)."""

    import_root: Path
    walk: Path  # the part of it the user named


@dataclass
class CompilePlan:
    """Everything a run will do, decided before anything is written."""

    interpreter: Interpreter
    options: PycOptions
    roots: list[Root]
    sources: list[PlannedSource] = field(default_factory=list)
    excluded: list[Path] = field(default_factory=list)
    # Sourceless pycs are always rewritten and read back; ``remove_sources`` deletes each
    # source once every pyc is in place (off when the pycs go to another tree, as for wheels).
    sourceless: bool = False
    remove_sources: bool = False
    # ``deliver``: write nothing; each pyc comes back in the result, deflated for a zip (wheels).
    deliver: bool = False


def import_root_of(directory: Path) -> Path:
    """Walk up past package directories (those with ``__init__.py``) to where imports start."""
    current = directory
    while (current / "__init__.py").is_file() and current.parent != current:
        current = current.parent
    return current


def venv_site_packages(venv: Path) -> list[Path]:
    """The site-packages directories of a virtual environment root."""
    found = sorted(venv.glob("lib/python3*/site-packages")) + sorted(venv.glob("Lib/site-packages"))
    return [p for p in found if p.is_dir()]


def _venv_python(venv: Path) -> Path | None:
    for candidate in ("bin/python3", "bin/python", "Scripts/python.exe"):
        if (venv / candidate).exists():
            return venv / candidate
    return None


def _implied_target(path: Path) -> str | None:
    """The interpreter a path belongs to, when the path says so (a venv or .../python3.X/site-packages)."""
    if (path / "pyvenv.cfg").is_file():
        python = _venv_python(path)
        if python is None:
            raise InvalidInput(f"{path}: a virtual environment with no bin/python")
        return str(python)
    for part in (path, *path.parents):
        if part.name in ("site-packages", "dist-packages"):
            match = _SITE_VERSION.search(part.parent.name)
            if match:
                return f"{match.group(1)}.{match.group(2)}"
            return None
    return None


def resolve_target(paths: Sequence[Path], python: str | None) -> Interpreter:
    """The explicit target, else the one the paths imply, else the running interpreter."""
    if python is not None:
        return find_interpreter(python)
    implied = {spec for spec in (_implied_target(p) for p in paths) if spec is not None}
    if len(implied) > 1:
        raise InvalidOptions(
            f"the paths belong to different interpreters ({', '.join(sorted(implied))}); "
            "compile them separately or pass --python"
        )
    return find_interpreter(implied.pop() if implied else None)


def find_roots(paths: Sequence[Path], interpreter: Interpreter, *, stdlib: bool = False) -> list[Root]:
    """Turn user paths (package dirs, site-packages, venvs, files) into import roots to walk."""
    roots: list[Root] = []
    for given in paths:
        if not given.exists():
            raise InvalidInput(f"{given}: no such file or directory")
        path = given.absolute()
        if path.is_file():
            if path.suffix != ".py":
                raise InvalidInput(f"{path}: not a .py file")
            roots.append(Root(import_root_of(path.parent), path))
        elif (path / "pyvenv.cfg").is_file():
            sites = venv_site_packages(path)
            if not sites:
                raise InvalidInput(f"{path}: a virtual environment with no site-packages")
            roots.extend(Root(site, site) for site in sites)
        elif path.is_dir():
            roots.append(Root(import_root_of(path), path))
        else:
            raise InvalidInput(f"{path}: neither a file nor a directory")
    if stdlib:
        lib = Path(interpreter.stdlib)
        roots.append(Root(lib, lib))
    return roots


def _walk_sources(root: Root, skip_dirs: frozenset[Path]) -> Iterator[Path]:
    if root.walk.is_file():
        yield root.walk
        return
    for dirpath, dirnames, filenames in os.walk(root.walk):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and (here / d) not in skip_dirs)
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield here / name


def plan_compile(
    paths: Sequence[str | os.PathLike[str]],
    options: PycOptions,
    *,
    python: str | None = None,
    stdlib: bool = False,
) -> CompilePlan:
    """Decide what a run compiles and where each pyc goes, without writing anything."""
    as_paths = [Path(p) for p in paths]
    if not as_paths and not stdlib:
        raise InvalidOptions("nothing to compile: give a path (or --stdlib)")
    if stdlib and options.strip:
        raise InvalidOptions(
            "--stdlib with --strip would delete the standard library's sources; in an image they sit in the base "
            "layers, so deleting them only hides them and the image grows: compile the stdlib with sources kept"
        )
    interpreter = resolve_target(as_paths, python)
    roots = find_roots(as_paths, interpreter, stdlib=stdlib)
    spec = None
    if options.exclude:
        import pathspec  # costs ~30 ms to import: only when patterns are given

        spec = pathspec.GitIgnoreSpec.from_lines(options.exclude)
    plan = CompilePlan(
        interpreter=interpreter,
        options=options,
        roots=roots,
        sourceless=options.strip,
        remove_sources=options.strip,
    )
    # A stdlib walk must not descend into the site-packages that lives inside it.
    # (for a venv interpreter purelib is the venv's, so the base's own site-packages is named too).
    skip = (
        frozenset(Path(p) for p in (interpreter.purelib, interpreter.platlib))
        | {Path(interpreter.stdlib) / "site-packages", Path(interpreter.stdlib) / "dist-packages"}
        if stdlib
        else frozenset()
    )
    seen: set[Path] = set()
    for root in roots:
        for source in _walk_sources(root, skip):
            if source in seen:
                continue
            seen.add(source)
            relpath = source.relative_to(root.import_root).as_posix()
            if spec is not None and spec.match_file(relpath):
                plan.excluded.append(source)
                continue
            try:
                stat = source.stat()
            except OSError as exc:
                raise InvalidInput(f"{source}: cannot read it ({exc.strerror})") from exc
            if options.strip:
                outputs: tuple[tuple[int, Path], ...] = ((options.levels[0], sourceless_path(source)),)
            else:
                outputs = tuple((lv, cache_path(source, interpreter.cache_tag, lv)) for lv in options.levels)
            dfile = f"{options.ddir.rstrip('/')}/{relpath}" if options.ddir else relpath
            plan.sources.append(PlannedSource(source, relpath, dfile, outputs, stat.st_size, stat.st_mtime))
    return plan
