"""Find and describe target CPythons.

Bytecode belongs to one CPython minor version, so every pyc is compiled by the interpreter
it is for. A target is named by version (``3.12``), by command (``python3.13``) or by path;
this module turns that into an :class:`Interpreter` after asking the interpreter itself.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_pyc._cache import cache_disabled_by_env, default_cache_dir, private_dir, write_atomically
from hatch_pyc._errors import InvalidTarget

_PROBE = r"""
import importlib.util, json, sys, sysconfig
paths = sysconfig.get_paths()
print(json.dumps({
    "executable": sys.executable,
    "implementation": sys.implementation.name,
    "version": list(sys.version_info[:3]),
    "releaselevel": sys.version_info.releaselevel,
    "magic": importlib.util.MAGIC_NUMBER.hex(),
    "cache_tag": sys.implementation.cache_tag,
    "stdlib": paths["stdlib"],
    "purelib": paths["purelib"],
    "platlib": paths["platlib"],
    "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}))
"""
_VERSION_SPEC = re.compile(r"^(?:cp|python|py)?(\d)\.?(\d{1,2})$")
# A CPython answers the probe in well under a second, even on a loaded machine; one that hangs
# (a broken python3.X on PATH) must not stall discovery for long.
_PROBE_SECONDS = 15
_FREE_THREADED_SPEC = re.compile(r"^(?:cp|python|py)?3\.?(\d{1,2})t$")


@dataclass(frozen=True)
class Interpreter:
    """A CPython that pycs can be compiled for, as it described itself."""

    executable: str
    version: tuple[int, int, int]
    magic: bytes
    cache_tag: str
    stdlib: str
    purelib: str
    platlib: str

    @property
    def minor(self) -> str:
        """``"3.12"``."""
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def python_tag(self) -> str:
        """The wheel python tag of bytecode for this interpreter: ``"cp312"``."""
        return f"cp{self.version[0]}{self.version[1]}"

    def __str__(self) -> str:
        return f"CPython {'.'.join(map(str, self.version))} ({self.executable})"


def _cache_file(executable: str) -> tuple[Path, str] | None:
    """Where the description of ``executable`` is cached, and the stamp that keeps it valid."""
    if cache_disabled_by_env():
        return None
    try:
        real = os.path.realpath(executable)
        st = os.stat(real)
    except OSError:
        return None
    cfg = Path(executable).parent.parent / "pyvenv.cfg"
    cfg_stamp = cfg.stat().st_mtime_ns if cfg.is_file() else 0
    stamp = f"{real}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{cfg_stamp}"
    base = default_cache_dir()  # the compile cache's directory (hatch_pyc._cache), beside its code/
    # The stamp holds the real path, so two paths sharing a key only cost a probe; zlib, not
    # hashlib, because importing hashlib alone costs ~5 ms of a no-change run.
    name = os.path.abspath(executable).encode()
    key = f"{zlib.crc32(name):08x}{zlib.adler32(name):08x}"
    return base / "interpreters" / f"{key}.json", stamp


@functools.cache
def describe_interpreter(executable: str) -> Interpreter:
    """Ask ``executable`` what it is; raise :class:`InvalidTarget` unless it is a usable CPython.

    The answer is cached on disk (keyed by the file's size, mtime and inode) because asking
    costs an interpreter start-up, which dominates a no-change run.
    """
    cache = _cache_file(executable)
    # A description names the program the workers run: it is taken from, and kept in, a directory only this
    # user may write (hatch_pyc._cache.private_dir), never from one another user could have filled.
    if cache is not None and not (_private_or_new(cache[0].parent.parent) and _private_or_new(cache[0].parent)):
        cache = None
    if cache is not None:
        try:
            saved = json.loads(cache[0].read_text(encoding="utf-8"))
            if saved.get("stamp") == cache[1]:
                return _from_info(executable, saved["info"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    info = _probe(executable)
    interp = _from_info(executable, info)
    if cache is not None:
        try:
            write_atomically(cache[0], json.dumps({"stamp": cache[1], "info": info}).encode())
        except OSError:
            pass  # a read-only home is fine: we just ask again next time
    return interp


def _private_or_new(directory: Path) -> bool:
    """``directory`` is private (see :func:`hatch_pyc._cache.private_dir`), or made now, private."""
    if not os.path.lexists(directory):
        try:
            directory.mkdir(mode=0o700, parents=True)
        except OSError:
            return False
    return not directory.is_symlink() and private_dir(directory)


def _probe(executable: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [executable, "-I", "-B", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_SECONDS,
            check=False,
        )
    except OSError as exc:
        raise InvalidTarget(f"{executable}: cannot run it ({exc.strerror or exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise InvalidTarget(f"{executable}: did not answer within {_PROBE_SECONDS} s") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InvalidTarget(f"{executable}: does not run as a Python interpreter ({last})")
    try:
        info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise InvalidTarget(f"{executable}: did not describe itself as a Python interpreter") from exc
    return info


def _from_info(executable: str, info: dict[str, Any]) -> Interpreter:
    if info["implementation"] != "cpython":
        raise InvalidTarget(
            f"{executable} is {info['implementation']}, not CPython: hatch-pyc writes CPython bytecode only"
        )
    if not info["cache_tag"]:
        raise InvalidTarget(f"{executable}: this interpreter has no bytecode cache tag")
    if info["gil_disabled"]:
        raise InvalidTarget(_free_threaded(f"{executable} is", int(info["version"][1])))
    return Interpreter(
        executable=info["executable"] or executable,
        version=(int(info["version"][0]), int(info["version"][1]), int(info["version"][2])),
        magic=bytes.fromhex(info["magic"]),
        cache_tag=info["cache_tag"],
        stdlib=info["stdlib"],
        purelib=info["purelib"],
        platlib=info["platlib"],
    )


def _free_threaded(what: str, minor: int) -> str:
    """Why a free-threaded build is refused, and what to do instead (docs/compile.md says more)."""
    return (
        f"{what} a free-threaded CPython 3.{minor} (3.{minor}t): compile with its default build instead "
        f"(--python 3.{minor}), whose pycs 3.{minor}t loads (same magic number and cache tag); a free-threaded "
        "build marshals other bytes, and hatch-pyc proves its output on default builds only"
    )


def current_interpreter() -> Interpreter:
    """The interpreter running hatch-pyc."""
    return describe_interpreter(sys.executable)


def _candidates(minor: tuple[int, int]) -> list[str]:
    """Places a CPython of this minor version is commonly found, best first."""
    name = f"python{minor[0]}.{minor[1]}"
    found: list[str] = []
    if sys.version_info[:2] == minor and sys.implementation.name == "cpython":
        found.append(sys.executable)
    # Every python3.X on PATH, in PATH order (a broken one earlier must not hide a working one).
    # pyenv's shims are scripts that cost ~50 ms a call and fail for versions not selected;
    # the installs behind them are tried first.
    shims: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            (shims if os.sep + "shims" + os.sep in candidate else found).append(candidate)
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in dict.fromkeys(r for r in roots if r):
        pattern = os.path.join(root, "versions", f"{minor[0]}.{minor[1]}.*", "bin", name)
        found.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    uv_root = os.environ.get("UV_PYTHON_INSTALL_DIR") or str(Path.home() / ".local" / "share" / "uv" / "python")
    pattern = os.path.join(uv_root, f"cpython-{minor[0]}.{minor[1]}.*", "bin", name)
    found.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    found.extend(shims)
    return list(dict.fromkeys(found))


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(x) for x in match.groups()) if match else (0,)


def find_interpreter(spec: str | os.PathLike[str] | None = None) -> Interpreter:
    """Resolve a target named by version, command or path (``None``: the running one)."""
    if spec is None:
        return current_interpreter()
    text = os.fspath(spec).strip()
    free_threaded = _FREE_THREADED_SPEC.match(text)
    if free_threaded and os.sep not in text:
        raise InvalidTarget(_free_threaded(f"{text} names", int(free_threaded.group(1))))
    match = _VERSION_SPEC.match(text)
    if match and os.sep not in text:
        minor = (int(match.group(1)), int(match.group(2)))
        errors = []
        for candidate in _candidates(minor):
            try:
                interp = describe_interpreter(candidate)
            except InvalidTarget as exc:
                errors.append(str(exc))
                continue
            if interp.version[:2] == minor:
                return interp
            errors.append(f"{candidate} is {interp.minor}")
        hint = f" (tried: {'; '.join(errors)})" if errors else ""
        raise InvalidTarget(
            f"no CPython {minor[0]}.{minor[1]} found on PATH, in pyenv or in uv's Pythons{hint}; "
            "pass --python with the interpreter's path"
        )
    looks_like_path = os.sep in text or (os.altsep is not None and os.altsep in text) or os.path.exists(text)
    executable = text if looks_like_path else shutil.which(text)
    if executable is None:
        raise InvalidTarget(f"{text}: no such interpreter on PATH")
    if os.path.isdir(executable):
        for sub in ("bin/python3", "bin/python", "Scripts/python.exe"):
            if os.path.isfile(os.path.join(executable, sub)):
                executable = os.path.join(executable, sub)
                break
        else:
            raise InvalidTarget(f"{text}: a directory with no bin/python in it")
    if not os.path.exists(executable):
        raise InvalidTarget(f"{text}: no such file")
    return describe_interpreter(executable)


# The oldest CPython hatch-pyc compiles for; there is no newest: any later one found is a target.
OLDEST_TARGET = (3, 10)
_MINOR_NAME = re.compile(r"^python3\.(\d+)$")
_MINOR_DIR = re.compile(r"^(?:cpython-)?3\.(\d+)\.\d+")


def _installed_minors() -> set[int]:
    """Minor versions of CPython 3 this machine has a ``python3.X`` for: PATH, pyenv, uv."""
    found: set[int] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        found.update(int(m.group(1)) for m in map(_MINOR_NAME.match, names) if m)
    roots = [os.path.join(r, "versions") for r in (os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")) if r]
    roots.append(os.environ.get("UV_PYTHON_INSTALL_DIR") or str(Path.home() / ".local" / "share" / "uv" / "python"))
    for root in roots:
        try:
            names = os.listdir(root)
        except OSError:
            continue
        found.update(int(m.group(1)) for m in map(_MINOR_DIR.match, names) if m)
    if sys.implementation.name == "cpython" and sys.version_info[0] == 3:
        found.add(sys.version_info[1])
    return found


def discover_interpreters() -> list[Interpreter]:
    """Every CPython 3.10 or newer this machine has (PATH, pyenv, uv), one per minor version, oldest first.

    No list of versions is built in: a 3.16 installed tomorrow is found the same way.
    """
    found = []
    for minor in sorted(_installed_minors()):
        if (3, minor) < OLDEST_TARGET:
            continue
        try:
            found.append(find_interpreter(f"3.{minor}"))
        except InvalidTarget:
            continue  # a name on PATH that does not run (a pyenv shim of an unselected version)
    return found


def find_interpreters(minors: list[str] | None = None) -> dict[str, Interpreter | None]:
    """The CPython of each of ``minors`` (``None`` where none is found); by default, every one discovered."""
    if minors is None:
        return {interp.minor: interp for interp in discover_interpreters()}
    found: dict[str, Interpreter | None] = {}
    for minor in minors:
        try:
            found[minor] = find_interpreter(minor)
        except InvalidTarget:
            found[minor] = None
    return found
