"""Stage what a report measures: the target as an installed tree, then one copy per variant.

The input is never modified: a project is built into a wheel, a wheel is installed (with
``installer``) into a scratch directory, a tree or site-packages is copied. Each variant is
then made from that staged tree with the compile engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hatch_pyc._compile import compile_tree
from hatch_pyc._errors import InvalidInput
from hatch_pyc._options import PycOptions
from hatch_pyc._plan import import_root_of, venv_site_packages
from hatch_pyc._targets import Interpreter


@dataclass(frozen=True)
class Variant:
    """One way of shipping the same code."""

    name: str  # "source", "cache-O0", "sourceless-O2"
    kind: str  # "source", "cache", "sourceless"
    level: int | None
    root: Path  # the directory put first on sys.path

    @property
    def label(self) -> str:
        """Words for people."""
        if self.kind == "source":
            return "sources only, no pycs (every cold start compiles)"
        if self.kind == "cache":
            return f"sources + __pycache__ (-O level {self.level})"
        return f"sourceless .pyc (level {self.level})"

    @property
    def run_flags(self) -> tuple[str, ...]:
        """Interpreter flags that make this variant's pycs the ones imported."""
        if self.kind == "cache" and self.level:
            return ("-" + "O" * self.level,)
        return ()


@dataclass(frozen=True)
class StagedTarget:
    """The target installed into a scratch tree."""

    kind: str  # "project", "wheel", "tree", "site-packages", "venv"
    path: Path
    tree: Path
    name: str


def _install_wheel(wheel: Path, dest: Path, interp: Interpreter) -> None:
    """Install through the gate (:func:`~hatch_pyc._wheelcheck.open_wheel`): a refused wheel writes nothing."""
    from installer.destinations import SchemeDictionaryDestination

    from hatch_pyc._wheelcheck import open_wheel

    with open_wheel(wheel) as checked:
        checked.check_target(interp)  # a wheel the target's installers would refuse is not measured
        dest.mkdir(parents=True, exist_ok=True)
        scheme = {key: str(dest / key) for key in ("scripts", "headers", "data")}
        scheme.update(purelib=str(dest), platlib=str(dest))
        destination = SchemeDictionaryDestination(scheme, interpreter=interp.executable, script_kind="posix")
        checked.install(destination)
    for extra in ("scripts", "headers", "data"):
        shutil.rmtree(dest / extra, ignore_errors=True)


def _strip_caches(tree: Path) -> None:
    for cache in list(tree.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    for pyc in tree.rglob("*.pyc"):
        if pyc.with_suffix(".py").exists():
            pyc.unlink()


def stage_target(target: str | os.PathLike[str], scratch: Path, interp: Interpreter) -> StagedTarget:
    """Turn TARGET (project, wheel, package dir, site-packages or venv) into a scratch tree of sources."""
    path = Path(target).absolute()
    tree = scratch / "staged"
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or directory")
    if path.is_file() and path.suffix == ".whl":
        _install_wheel(path, tree, interp)
        return StagedTarget("wheel", path, tree, path.name.split("-")[0])
    if (path / "pyproject.toml").is_file() or (path / "setup.py").is_file():
        dist = scratch / "dist"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                "--disable-pip-version-check",
                "-w",
                str(dist),
                str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise InvalidInput(f"{path}: building its wheel failed ({last})")
        (wheel,) = dist.glob("*.whl")
        _install_wheel(wheel, tree, interp)
        return StagedTarget("project", path, tree, wheel.name.split("-")[0])
    if (path / "pyvenv.cfg").is_file():
        sites = venv_site_packages(path)
        if not sites:
            raise InvalidInput(f"{path}: a virtual environment with no site-packages")
        shutil.copytree(sites[0], tree, symlinks=True)
        _strip_caches(tree)
        return StagedTarget("venv", path, tree, path.name)
    if path.is_dir():
        root = import_root_of(path)
        kind = "site-packages" if path.name in ("site-packages", "dist-packages") else "tree"
        if root == path:
            shutil.copytree(path, tree, symlinks=True)
        else:
            shutil.copytree(path, tree / path.relative_to(root), symlinks=True)
        _strip_caches(tree)
        return StagedTarget(kind, path, tree, path.name)
    raise InvalidInput(f"{path}: not a project, wheel, package directory, site-packages or venv")


def make_variants(
    staged: StagedTarget, scratch: Path, interp: Interpreter, levels: tuple[int, ...], compact: bool = False
) -> list[Variant]:
    """The source variant plus, per level, sources+__pycache__ and sourceless copies; ``compact``: and, per level,
    a sourceless copy of compact pycs (no column positions), ``sourceless-compact-O<level>``."""
    variants = [Variant("source", "source", None, staged.tree)]
    for level in levels:
        cache = scratch / f"cache-O{level}"
        shutil.copytree(staged.tree, cache, symlinks=True)
        compile_tree([cache], PycOptions(levels=(level,)), python=interp.executable)
        variants.append(Variant(f"cache-O{level}", "cache", level, cache))
    for level in levels:
        bare = scratch / f"sourceless-O{level}"
        shutil.copytree(staged.tree, bare, symlinks=True)
        bare_options = PycOptions(levels=(level,), strip=True, on_error="keep-source")
        compile_tree([bare], bare_options, python=interp.executable)
        variants.append(Variant(f"sourceless-O{level}", "sourceless", level, bare))
    for level in levels if compact else ():
        small = scratch / f"sourceless-compact-O{level}"
        shutil.copytree(staged.tree, small, symlinks=True)
        small_options = PycOptions(levels=(level,), strip=True, on_error="keep-source", compact=True)
        compile_tree([small], small_options, python=interp.executable)
        variants.append(Variant(f"sourceless-compact-O{level}", "sourceless", level, small))
    return variants


def top_level_modules(tree: Path) -> list[str]:
    """Importable top-level names in a tree: packages and modules, not metadata or private ones."""
    names = []
    for entry in sorted(tree.iterdir()):
        if entry.name.startswith(("_", ".")) or entry.name.endswith((".dist-info", ".data", ".egg-info")):
            continue
        if entry.is_dir() and entry.name.isidentifier():
            if any(entry.glob("*.py")) or any(entry.glob("*.pyc")) or (entry / "__init__.py").exists():
                names.append(entry.name)
        elif entry.suffix in (".py", ".pyc") and entry.stem.isidentifier():
            names.append(entry.stem)
    return list(dict.fromkeys(names))
