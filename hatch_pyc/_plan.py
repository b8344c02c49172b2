"""Plan a compile run: which sources, which pyc paths, which target, nothing written yet."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._commit import OLD_SUFFIX, TMP_SUFFIX, is_ours, is_staged, set_aside_by_a_dead_run
from hatch_pyc._errors import InvalidInput, InvalidOptions
from hatch_pyc._layout import cache_name, outside_packages, sourceless_path
from hatch_pyc._options import PycOptions
from hatch_pyc._targets import Interpreter, find_interpreter

_OUR_SUFFIXES = (TMP_SUFFIX, OLD_SUFFIX)
_SITE_VERSION = re.compile(r"python(\d)\.(\d+)t?$")
_CFG_VERSION = re.compile(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", re.MULTILINE)
_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


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
    # Where the member is, if it is stored or deflated (the worker then reads it without zipfile): its local
    # header's offset, its compressed size, its method, its name as zipfile read it, its CRC-32, its size, where
    # the next entry begins.
    place: tuple[int, int, int, str, int, int, int] | None = None


@dataclass(frozen=True)
class Root:
    """A directory that imports start from (a site-packages, or the parent of a package)."""

    import_root: Path
    walk: Path  # the part of it the user named


@dataclass
class CompilePlan:
    """Everything a run will do, decided before anything is committed (workers may begin on it, under temporary
    names, while it is made: :mod:`hatch_pyc._streamed`)."""

    interpreter: Interpreter
    options: PycOptions
    roots: list[Root]
    sources: list[PlannedSource] = field(default_factory=list)
    excluded: list[Path] = field(default_factory=list)
    # Sourceless runs keep as source a .py in a plain directory inside a package (a template)
    outside: list[Path] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)  # every directory walked (where sources may be)
    # What the walk's listings showed, so that no directory is listed twice: the walked directories that hold a
    # ``__pycache__``, and those that hold a name of hatch-pyc's temporary or set-aside files (what a killed run may
    # have left). None: not known (a plan not made by a walk), so every directory is looked at.
    with_pycache: set[Path] | None = None
    with_leftovers: set[Path] | None = None
    # Directories of the tree the walk could not list (permissions, gone meanwhile) and why: passed over, as os.walk
    # and compileall pass them over, and named in the run's warnings (any sources in them were not compiled).
    unlisted: list[tuple[Path, str]] = field(default_factory=list)
    # Sourceless pycs are always rewritten and read back; ``remove_sources`` deletes each
    # source once every pyc is in place (off when the pycs go to another tree, as for wheels).
    sourceless: bool = False
    remove_sources: bool = False
    # ``deliver``: write nothing; each pyc comes back in the result, deflated for a zip (wheels).
    deliver: bool = False
    # Plans the same paths again (the run restored sources a killed run had set aside, which the
    # walk could not see): set by plan_compile.
    replan: Callable[[], CompilePlan] | None = field(default=None, repr=False)


def plan_touches(plan: CompilePlan, path: str | os.PathLike[str]) -> bool:
    """Whether writing ``path`` would clobber what the run works on: a source, a pyc it writes, or any
    ``.py`` / ``.pyc`` in a directory it walks (a new one there would become a module)."""
    target = os.path.realpath(path)
    if target.endswith((".py", ".pyc")) and os.path.dirname(target) in {os.path.realpath(d) for d in plan.directories}:
        return True
    files = [*plan.excluded, *plan.outside]
    for item in plan.sources:
        files.append(item.source)
        files.extend(final for _, final in item.outputs)
    return target in {os.path.realpath(f) for f in files}


def unlisted_notes(plan: CompilePlan) -> list[str]:
    """A warning for each directory of the tree the walk could not list: what a run or a dry run says of it."""
    return [f"{d}: cannot be listed ({why}); any sources in it were left as they are" for d, why in plan.unlisted]


def without_dot_dot(path: Path) -> Path:
    """``path`` without its ``..`` parts, made absolute, naming what the system would open: a pyc's file name and a
    RECORD's lines come from the path, so ``pkg/../pkg`` and ``pkg`` must give the same bytes. The part up to the
    last ``..`` is taken by its spelling when that names the same directory, else (a link before a ``..``) by
    resolving its links; the rest is kept as it is. A path with no ``..`` is returned as it is."""
    parts = path.parts
    if ".." not in parts:
        return path
    last = len(parts) - 1 - parts[::-1].index("..")
    head = Path(*parts[: last + 1]).absolute()
    plain = Path(os.path.normpath(head))
    if not os.path.exists(head):  # not there (``gone/..`` is not there either): refused as it was given
        return path
    try:
        same = os.path.samefile(plain, head)
    except OSError:  # the spelling names nothing (``link/../d/e/..``, where ``d`` is only beside the link's target)
        same = False
    return (plain if same else Path(os.path.realpath(head))).joinpath(*parts[last + 1 :])


def import_root_of(directory: Path) -> Path:
    """Walk up past package directories (those with ``__init__.py``) to where imports start."""
    outside = (part for part in (directory, *directory.parents) if not (part / "__init__.py").is_file())
    return next(outside, Path(directory.anchor))


def site_root_of(path: Path) -> Path | None:
    """The installation directory ``path`` lies in: a ``site-packages`` or ``dist-packages``, or (for a
    ``pip install --target`` tree) the nearest directory holding a ``*.dist-info``; else None.

    Inside one, imports start there even when the path is in a namespace package (``jaraco/functools``)
    or a plain directory (``alembic/templates``), and that is where the install records are.
    """
    for part in (path, *path.parents):
        if part.name in ("site-packages", "dist-packages"):
            return part
    for part in (path, *path.parents):
        try:
            with os.scandir(part) as entries:
                if any(e.name.endswith(".dist-info") and e.is_dir() for e in entries):
                    return part
        except OSError:
            continue
    return None


def _import_root(directory: Path) -> Path:
    """Where imports start for a directory the user named (see :func:`site_root_of`)."""
    return site_root_of(directory) or import_root_of(directory)


def venv_site_packages(venv: Path) -> list[Path]:
    """The site-packages directories of a virtual environment root."""
    found = sorted(venv.glob("lib/python3*/site-packages")) + sorted(venv.glob("Lib/site-packages"))
    return [p for p in found if p.is_dir()]


def _venv_python(venv: Path) -> Path | None:
    for candidate in ("bin/python3", "bin/python", "Scripts/python.exe"):
        if (venv / candidate).exists():
            return venv / candidate
    return None


@dataclass(frozen=True)
class TreeOwner:
    """The CPython a tree belongs to, as the tree itself says."""

    minor: str  # "3.12"
    evidence: str  # how that is known, for messages
    interpreter: str  # what find_interpreter() is given to use it: a venv's python, else the version


def tree_owner(path: Path) -> TreeOwner | None:
    """The interpreter ``path`` belongs to: a venv (``pyvenv.cfg``), a ``pythonX.Y/site-packages``
    (or ``dist-packages``), or an interpreter's standard library (``pythonX.Y`` holding ``os.py``)."""
    path = path.absolute()
    for part in (path, *path.parents):
        cfg = part / "pyvenv.cfg"
        if cfg.is_file():
            python = _venv_python(part)
            if python is None:
                raise InvalidInput(f"{part}: a virtual environment with no bin/python")
            # The lib/pythonX.Y directory is where that interpreter looks: it wins over what
            # pyvenv.cfg says (which a copied or edited venv may get wrong).
            found = [m for m in (_SITE_VERSION.search(p.parent.name) for p in venv_site_packages(part)) if m]
            match = found[0] if len(found) == 1 else None
            if match is None:
                try:
                    match = _CFG_VERSION.search(cfg.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    match = None
            minor = f"{match.group(1)}.{match.group(2)}" if match else ""
            return TreeOwner(minor, f"the virtual environment {part}", str(python))
    for part in (path, *path.parents):
        if part.name in ("site-packages", "dist-packages"):
            match = _SITE_VERSION.search(part.parent.name)
            if match:
                minor = f"{match.group(1)}.{match.group(2)}"
                return TreeOwner(minor, f"{part} is CPython {minor}'s", minor)
            return None
        match = _SITE_VERSION.search(part.name)
        if match and (part / "os.py").is_file():
            minor = f"{match.group(1)}.{match.group(2)}"
            return TreeOwner(minor, f"{part} is CPython {minor}'s standard library", minor)
    return None


def resolve_target(paths: Sequence[Path], python: str | None, *, allow_other_python: bool | None = None) -> Interpreter:
    """The explicit target, else the one the paths imply, else the running interpreter.

    A tree that belongs to a known interpreter (a venv, a site-packages, a standard library)
    is compiled for that interpreter's version only: pycs of another version are bytecode its
    interpreter never reads, and stripped sources would be gone. ``allow_other_python=True`` says
    a different explicit target is meant (a tree staged for another image, say); ``False`` refuses
    it and the message names ``--allow-other-python``; ``None`` refuses it for callers that have no
    such option (``verify``, ``report``).
    """
    owners = {p: owner for p in paths if (owner := tree_owner(p)) is not None}
    if python is None:
        implied = {owner.interpreter for owner in owners.values()}
        if len(implied) > 1:
            raise InvalidOptions(
                f"the paths belong to different interpreters ({', '.join(sorted(implied))}); "
                "compile them separately or pass --python"
            )
        return find_interpreter(implied.pop() if implied else None)
    interp = find_interpreter(python)
    if not allow_other_python:
        for path, owner in owners.items():
            if owner.minor and owner.minor != interp.minor:
                raise InvalidOptions(
                    f"{path}: belongs to CPython {owner.minor} ({owner.evidence}) but the target is CPython "
                    f"{interp.minor}, whose pycs that interpreter cannot load; target {owner.minor}"
                    + (
                        ""
                        if allow_other_python is None
                        else f", or pass --allow-other-python if the tree is meant for {interp.minor}"
                    )
                )
    return interp


def find_roots(paths: Sequence[Path], interpreter: Interpreter, *, stdlib: bool = False) -> list[Root]:
    """Turn user paths (package dirs, site-packages, venvs, files) into import roots to walk."""
    roots: list[Root] = []
    for given in paths:
        if not given.exists():
            aside = set_aside_by_a_dead_run(given.absolute()) if given.name.endswith(".py") else []
            if aside and os.path.islink(given.absolute().parent):  # the run writes nothing through a link
                raise InvalidInput(f"{given}: no such file; a killed run set it aside as {aside[0]}")
            if aside:  # a dry run (a real one puts it back first: see hatch_pyc._compile.put_back_named)
                raise InvalidInput(
                    f"{given}: no such file; a killed run set it aside as {aside[0].name}, which the run (not a dry "
                    "run) puts back first"
                )
            raise InvalidInput(f"{given}: no such file or directory")
        path = given.absolute()
        if path.is_file():
            if path.suffix != ".py":
                raise InvalidInput(f"{path}: not a .py file")
            roots.append(Root(_import_root(path.parent), path))
        elif (path / "pyvenv.cfg").is_file():
            sites = venv_site_packages(path)
            if not sites:
                raise InvalidInput(f"{path}: a virtual environment with no site-packages")
            roots.extend(Root(site, site) for site in sites)
        elif path.is_dir():
            roots.append(Root(_import_root(path), path))
        else:
            raise InvalidInput(f"{path}: neither a file nor a directory")
    if stdlib:
        lib = Path(interpreter.stdlib)
        roots.append(Root(lib, lib))
    return roots


def _walk_sources(
    root: Root,
    skip_dirs: frozenset[Path],
    directories: list[Path],
    with_pycache: set[Path],
    with_leftovers: set[Path],
    *,
    unlisted: list[tuple[Path, str]] | None = None,
) -> Iterator[tuple[Path, Path, str]]:
    """Each ``.py`` under ``root.walk``: (its directory, the source, its path from the import root, posix).

    Notes what the listings showed, so that no directory is listed twice: each walked directory, those holding
    a ``__pycache__`` and those holding a name of hatch-pyc's temporary and set-aside files (see
    :class:`CompilePlan`). A ``__pycache__`` staged under such a name is not walked into, as ``__pycache__`` is not,
    nor is a distribution's ``.dist-info`` at the import root (no module is there); any other directory is,
    whatever its name.
    """
    base = str(root.import_root)
    if root.walk.is_file():
        here = root.walk.parent
        directories.append(here)
        with_leftovers.add(here)  # not listed: looked at by the recovery
        if os.path.lexists(here / "__pycache__"):
            with_pycache.add(here)
        yield here, root.walk, _relative(str(root.walk), base)
        return
    # os.walk's order and rules (top down, no link followed, a directory that cannot be listed passed over), by hand:
    # each entry of the site-packages corpus's 16,000 costs a few string tests and no Path.
    stack: list[tuple[str, Path]] = [(os.fspath(root.walk), root.walk)]
    at_import_root = root.walk == root.import_root
    while stack:
        dirpath, here = stack.pop()
        try:
            listing = os.scandir(dirpath)
        except OSError as exc:
            if unlisted is not None:
                unlisted.append((here, exc.strerror or str(exc)))
            continue
        dirnames: list[str] = []
        sources: list[str] = []
        has_pycache = has_leftovers = False
        try:
            with listing:
                for entry in listing:
                    name = entry.name
                    if name == "__pycache__":
                        has_pycache = True
                    elif name.endswith(_OUR_SUFFIXES) and is_ours(name):
                        has_leftovers = True
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    if is_dir:
                        if name != "__pycache__" and not is_staged(name, "__pycache__"):
                            dirnames.append(name)
                    elif name.endswith(".py"):
                        sources.append(name)
        except OSError as exc:  # gone while it was listed
            if unlisted is not None:
                unlisted.append((here, exc.strerror or str(exc)))
            continue
        directories.append(here)
        if has_pycache:
            with_pycache.add(here)
        if has_leftovers:
            with_leftovers.add(here)
        if at_import_root:  # metadata: no module, only a RECORD
            dirnames = [d for d in dirnames if not d.endswith(".dist-info")]
            at_import_root = False
        rel = _relative(dirpath, base)
        for name in sorted(sources):
            yield here, here / name, f"{rel}/{name}" if rel else name
        for name in sorted(dirnames, reverse=True):  # popped in order: depth first, as os.walk goes
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            child = here / name
            if skip_dirs and child in skip_dirs:
                continue
            stack.append((path, child))


def _relative(path: str, base: str) -> str:
    """``path`` relative to ``base``, posix: a walk starts at or below its import root, so every path it makes
    begins with the root's own."""
    return path[len(base) :].lstrip(os.sep).replace(os.sep, "/")


def plan_compile(
    paths: Sequence[str | os.PathLike[str]],
    options: PycOptions,
    *,
    python: str | None = None,
    stdlib: bool = False,
    allow_other_python: bool = False,
    on_source: Callable[[CompilePlan, PlannedSource], None] | None = None,
) -> CompilePlan:
    """Decide what a run compiles and where each pyc goes, without writing anything.

    ``on_source`` hears each source as soon as it is planned, with the plan so far (see :mod:`hatch_pyc._streamed`):
    every check of the walk up to it has passed, and those still to come may refuse the tree yet.

    Everything that would make the run write or read where it must not is refused here, before
    anything is written there: a target other than the tree's own interpreter (see
    :func:`resolve_target`), a ``.py`` that is not a regular file (a FIFO would block the run,
    a device never end), a ``__pycache__`` that is a link (pycs would be written, and stale ones
    removed, wherever it points).
    """
    for given in paths:
        text = os.fspath(given)
        if not text:  # Path("") is ".": an unset variable must not name the current directory
            raise InvalidOptions("an empty path (an unset variable?) names nothing; give . for the current directory")
        if text.endswith("/") and not os.path.isdir(text) and os.path.lexists(text.rstrip("/")):
            raise InvalidInput(f"{text}: not a directory")  # Path("m.py/") is m.py: the system refuses that name
    as_paths = [without_dot_dot(Path(p)) for p in paths]
    if not as_paths and not stdlib:
        raise InvalidOptions("nothing to compile: give a path (or --stdlib)")
    if stdlib and options.strip:
        raise InvalidOptions(
            "--stdlib with --strip would delete the standard library's sources; in an image they sit in the base "
            "layers, so deleting them only hides them and the image grows: compile the stdlib with sources kept"
        )
    interpreter = resolve_target(as_paths, python, allow_other_python=allow_other_python)
    roots = find_roots(as_paths, interpreter, stdlib=stdlib)
    spec = None
    if options.exclude:
        import pathspec  # costs ~30 ms to import: only when patterns are given

        spec = pathspec.GitIgnoreSpec.from_lines(options.exclude)
    with_pycache: set[Path] = set()
    with_leftovers: set[Path] = set()
    plan = CompilePlan(
        interpreter=interpreter,
        options=options,
        roots=roots,
        sourceless=options.strip,
        remove_sources=options.strip,
        with_pycache=with_pycache,
        with_leftovers=with_leftovers,
        replan=lambda: plan_compile(
            paths, options, python=interpreter.executable, stdlib=stdlib, allow_other_python=True
        ),
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
    overlap = len(roots) > 1
    first_names: dict[Path, bool] = {}  # see _first_name_of
    directories_met: set[tuple[int, int]] = set()
    pycache_of: dict[Path, Path] = {}  # a directory with sources -> its __pycache__ (checked: not a link)
    for root in roots:
        packages: dict[str, bool] = {}

        def is_package(rel: str, root: Root = root, packages: dict[str, bool] = packages) -> bool:
            if rel not in packages:
                packages[rel] = (root.import_root / rel / "__init__.py").is_file()
            return packages[rel]

        walk = _walk_sources(root, skip, plan.directories, with_pycache, with_leftovers, unlisted=plan.unlisted)
        for here, source, relpath in walk:
            if overlap:  # one walk yields a file once; walks of several roots may meet
                if source in seen or not _first_name_of(here, first_names, directories_met):
                    continue
                seen.add(source)
            if spec is not None and spec.match_file(relpath):
                plan.excluded.append(source)
                continue
            if options.strip and options.outside_packages == "keep-source" and outside_packages(relpath, is_package):
                plan.outside.append(source)
                continue
            try:
                info = os.stat(source)
            except OSError as exc:
                raise InvalidInput(f"{source}: cannot read it ({exc.strerror})") from exc
            if not stat.S_ISREG(info.st_mode):
                kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
                raise InvalidInput(
                    f"{source}: {kind}, not a regular file; only regular files are compiled (exclude it)"
                )
            pycache = pycache_of.get(here)
            if pycache is None:
                pycache = pycache_of[here] = here / "__pycache__"
                if here in with_pycache:
                    _check_cache_dir(pycache)
            if options.strip:
                outputs: tuple[tuple[int, Path], ...] = ((options.levels[0], sourceless_path(source)),)
            else:
                stem = source.name[: -len(".py")]
                outputs = tuple((lv, pycache / cache_name(stem, interpreter.cache_tag, lv)) for lv in options.levels)
            dfile = f"{options.ddir.rstrip('/')}/{relpath}" if options.ddir else relpath
            planned = PlannedSource(source, relpath, dfile, outputs, info.st_size, info.st_mtime)
            plan.sources.append(planned)
            if on_source is not None:
                on_source(plan, planned)
    return plan


def _first_name_of(directory: Path, first: dict[Path, bool], met: set[tuple[int, int]]) -> bool:
    """Whether ``directory`` is the first spelling met of the directory it is: paths given together may name one
    tree twice, through a link (``venv venv/lib64/python3.12/site-packages``), whose modules are then planned once.
    Directories are compared, never files: two sources hard-linked to one file (uv links them from its cache) are
    two modules, each compiled. ``first`` keeps the answer by spelling, ``met`` the directories met."""
    answer = first.get(directory)
    if answer is None:
        try:
            info = os.stat(directory)
        except OSError:  # gone meanwhile: the run says so where it reads it
            answer = True
        else:
            ident = (info.st_dev, info.st_ino)
            answer = ident not in met
            met.add(ident)
        first[directory] = answer
    return answer


def _check_cache_dir(cache: Path) -> None:
    """A ``__pycache__`` must be a directory of the tree: never a link (pycs would go where it points)."""
    try:
        info = cache.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise InvalidInput(
            f"{cache}: a symbolic link (to {os.readlink(cache)}); hatch-pyc never writes or removes files "
            "through a link: remove it (Python recreates __pycache__) or exclude the package"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidInput(f"{cache}: not a directory; remove it (Python recreates __pycache__) or exclude the package")
