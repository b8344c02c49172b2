"""The compile cache: compiled code by content, shared by every run, tree, venv and wheel.

The workers look code up and store it (``_worker._Cache``: the key, the entry format and its check).
This module decides where the cache is and whether it may be used, keeps its totals, and bounds its
size. It is on by default, in ``$HATCH_PYC_CACHE_DIR``, else ``$XDG_CACHE_HOME/hatch-pyc``, else
``~/.cache/hatch-pyc``; ``HATCH_PYC_NO_CACHE=1`` (or ``PycOptions(cache=False)``, ``--no-cache``) turns
it off. A cache directory another user owns, or one that others may write to, is not used: an entry
is checked against its own digest, so a corrupted one is never served, but whoever may write the
directory could write a consistent entry.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from hatch_pyc._errors import InvalidInput

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_MAX_BYTES",
    "NO_CACHE_ENV",
    "CacheInfo",
    "cache_info",
    "clear_cache",
    "default_cache_dir",
    "open_cache",
    "private_dir",
    "prune_cache",
    "read_regular_file",
    "record_run",
    "write_atomically",
]

CACHE_DIR_ENV = "HATCH_PYC_CACHE_DIR"
NO_CACHE_ENV = "HATCH_PYC_NO_CACHE"
MAX_BYTES_ENV = "HATCH_PYC_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 2 * 1024**3
# Entries live in ``code/<2 hex>/<62 hex>``; the totals in ``stats.json``.
_CODE = "code"
_STATS = "stats.json"
_TAG = "CACHEDIR.TAG"  # https://bford.info/cachedir/: backup tools skip the directory
_TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# This is the hatch-pyc compile cache.\n"
_SHARD = re.compile(r"[0-9a-f]{2}").fullmatch
_ENTRY = re.compile(r"[0-9a-f]{62}").fullmatch
_ENTRY_TMP = re.compile(r"[0-9a-f]{62}\.\d+\.tmp").fullmatch
# What a cache not tagged yet may hold (a run made it and was stopped, or is making it now): its tag being written
# (write_atomically's temporary name), and the probes of interpreters (hatch_pyc._targets, written before the cache
# is opened): ``<16 hex>.json``, being written, or under the temporary name earlier versions gave it.
_TAG_TMP = re.compile(r"CACHEDIR\.TAG\.\d+-[0-9a-f]{8}\.tmp").fullmatch
_PROBE = re.compile(r"[0-9a-f]{16}(\.json|\.json\.\d+-[0-9a-f]{8}\.tmp|\.\d+\.tmp)").fullmatch
_PRUNE_EVERY = 3600.0  # seconds between the automatic size checks of one cache
_STALE_TMP = 3600.0  # a worker's temporary entry older than this was left by a killed run


@dataclass(frozen=True)
class CacheInfo:
    """Where the cache is, what it holds, and how often runs found code in it."""

    directory: Path
    entries: int
    bytes: int
    hits: int
    misses: int
    max_bytes: int

    @property
    def hit_rate(self) -> float | None:
        """Hits over lookups since the totals were last reset (None before any lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


def default_cache_dir() -> Path:
    """The cache directory when none is given: ``$HATCH_PYC_CACHE_DIR``, ``$XDG_CACHE_HOME/hatch-pyc``
    or ``~/.cache/hatch-pyc``."""
    named = os.environ.get(CACHE_DIR_ENV)
    if named:
        return Path(named).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "hatch-pyc"


def cache_disabled_by_env() -> bool:
    """Whether ``HATCH_PYC_NO_CACHE`` is set to something other than empty, 0, false or no."""
    return os.environ.get(NO_CACHE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def max_bytes() -> int:
    """The size the cache is kept under: ``$HATCH_PYC_CACHE_MAX_BYTES`` or 2 GiB."""
    text = os.environ.get(MAX_BYTES_ENV, "")
    try:
        value = int(text)
    except ValueError:
        return DEFAULT_MAX_BYTES
    return value if value > 0 else DEFAULT_MAX_BYTES


def open_cache(enabled: bool = True, directory: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """The directory the workers keep code in, made if needed, or None; and, when a cache was asked
    for and cannot be used, one line saying why (the run then compiles everything)."""
    if not enabled or (directory is None and cache_disabled_by_env()):
        return None, ""
    root = (Path(directory).expanduser() if directory is not None else default_cache_dir()).absolute()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = _untrusted(root) or _not_a_cache(root)
        if problem:
            return None, f"compile cache {root} not used: {problem}"
        code = root / _CODE
        code.mkdir(mode=0o700, exist_ok=True)
        problem = "a link; the cache's code directory must be a directory" if code.is_symlink() else _untrusted(code)
        if problem:
            return None, f"compile cache {code} not used: {problem}"
        tag = root / _TAG
        if not tag.exists():
            write_atomically(tag, _TAG_TEXT.encode())
    except OSError as exc:
        return None, f"compile cache {root} not used: {exc.strerror or exc}"
    return code, ""


def _not_a_cache(root: Path) -> str:
    """Why ``root`` is not a directory the cache may take as its own ('' when it may): it must carry the cache's own
    tag, or hold nothing but what a run making the cache leaves before the tag (``code`` with shard directories,
    the probes of interpreters, the tag being written). A cache never moves into a directory of yours."""
    if _tagged(root):
        return ""
    others = [other for name in sorted(os.listdir(root)) for other in _not_made_before_the_tag(root, name)]
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        return f"it holds files the cache did not make ({others[0]}{more}); name an empty or new directory"
    return ""


def _not_made_before_the_tag(root: Path, name: str) -> list[str]:
    """What of ``name`` in an untagged ``root`` a run making the cache does not write before its tag (read without
    following links: a link is never the cache's): ``[]``, ``[name]``, or the entries of ``code`` or ``interpreters``
    that are not the cache's."""
    path = root / name
    if name == _TAG:  # another run has just put it in place
        return [] if _tagged(root) else [name]
    if _TAG_TMP(name):  # a regular file, or gone: renamed into place since the listing
        try:
            return [] if stat.S_ISREG(path.lstat().st_mode) else [name]
        except FileNotFoundError:
            return []
    if name not in (_CODE, "interpreters") or path.is_symlink() or not path.is_dir():
        return [name]
    ours = _SHARD if name == _CODE else _PROBE
    return [f"{name}/{entry}" for entry in sorted(os.listdir(path)) if not ours(entry)]


def _tagged(root: Path) -> bool:
    """Whether ``root`` carries the hatch-pyc cache's ``CACHEDIR.TAG`` (a regular file, read within bounds)."""
    return read_regular_file(root / _TAG, len(_TAG_TEXT) + 1) == _TAG_TEXT.encode()


def read_regular_file(
    path: str | os.PathLike[str], limit: int, *, dir_fd: int | None = None, max_size: int | None = None
) -> bytes | None:
    """The first ``limit`` bytes of ``path`` (relative to ``dir_fd`` when given) if it is a regular file of at most
    ``max_size`` bytes, else None: never through a link, never blocking on a FIFO, and a directory is not an error
    (``open()`` of one raises and leaves its descriptor open). What the cache reads of its own files."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (max_size is not None and info.st_size > max_size):
            return None
        with open(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _untrusted(path: Path) -> str:
    """Why code in ``path`` could have been written by someone else ('' when it could not)."""
    info = path.stat()  # following a link: ~/.cache may be one
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return f"owned by another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return ""


def private_dir(path: Path) -> bool:
    """Whether ``path`` is a directory only this user may write (owned by them, not group- or world-writable):
    where cached facts may be trusted. The interpreter probes (``hatch_pyc._targets``) ask it too."""
    try:
        return not _untrusted(path)
    except OSError:
        return False


def _root(code: Path) -> Path:
    return code.parent


def _read_stats(root: Path) -> dict[str, float]:
    """The totals: finite, non-negative numbers only (a damaged file counts as none)."""
    text = read_regular_file(root / _STATS, 1 << 16)
    try:
        data = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1e18
    }


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all, under a temporary name no other writer (a thread of this process,
    another run making the same cache) uses."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def record_run(code: Path, hits: int, misses: int) -> None:
    """Add a run's lookups to the cache's totals, and keep the cache under its size bound (checked at
    most once an hour, after a run that stored code). Never fails a run: a cache that cannot be
    written to is only a slower one. Two runs ending at once may lose one's counts."""
    root = _root(code)
    try:
        stats = _read_stats(root)
        stats["hits"] = stats.get("hits", 0) + hits
        stats["misses"] = stats.get("misses", 0) + misses
        due = misses > 0 and time.time() - stats.get("pruned", 0) >= _PRUNE_EVERY
        if due:
            stats["pruned"] = time.time()
        write_atomically(root / _STATS, json.dumps({k: int(v) for k, v in stats.items()}).encode())
        if due:
            prune_cache(root, max_bytes())
    except Exception:  # noqa: BLE001
        pass


def _entries(code: Path, *, clean: bool = False) -> list[tuple[float, int, Path]]:
    """``(mtime, bytes on disk, path)`` of every entry: only names the cache gives (``ab/<62 hex>``), in shard
    directories that are not links; ``clean``: also remove a killed worker's stale temporary entry."""
    found: list[tuple[float, int, Path]] = []
    now = time.time()
    try:
        shards = [s for s in os.scandir(code) if _SHARD(s.name) and s.is_dir(follow_symlinks=False)]
    except OSError:
        return found
    for shard in shards:
        try:
            names = list(os.scandir(shard.path))
        except OSError:
            continue
        for entry in names:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if _ENTRY_TMP(entry.name):
                if clean and now - info.st_mtime > _STALE_TMP:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                continue
            if _ENTRY(entry.name):
                size = info.st_blocks * 512 if hasattr(info, "st_blocks") else info.st_size  # bytes on disk
                found.append((info.st_mtime, size, Path(entry.path)))
    return found


def _existing_cache(directory: str | os.PathLike[str] | None) -> Path:
    """The cache directory ``directory`` names (default: :func:`default_cache_dir`), which must be one: a
    directory carrying the cache's tag whose ``code`` is not a link. Anything else is refused (InvalidInput):
    ``clear`` and ``prune`` never remove files from a directory the cache did not make."""
    root = (Path(directory).expanduser() if directory is not None else default_cache_dir()).absolute()
    if not root.is_dir():
        raise InvalidInput(f"{root}: no compile cache there (not a directory)")
    if not _tagged(root):
        raise InvalidInput(f"{root}: not a hatch-pyc compile cache (no hatch-pyc {_TAG}); nothing was changed")
    if (root / _CODE).is_symlink():
        raise InvalidInput(
            f"{root / _CODE}: a link; the cache's code directory must be a directory; nothing was changed"
        )
    return root


def cache_info(directory: str | os.PathLike[str] | None = None) -> CacheInfo:
    """What the cache at ``directory`` (default: :func:`default_cache_dir`) holds. A cache not made yet is
    empty; a directory that is not a cache is refused (InvalidInput). Nothing is changed."""
    root = (Path(directory).expanduser() if directory is not None else default_cache_dir()).absolute()
    if root.exists() or directory is not None:
        root = _existing_cache(root)
    entries = _entries(root / _CODE) if root.exists() else []
    stats = _read_stats(root) if root.exists() else {}
    return CacheInfo(
        directory=root,
        entries=len(entries),
        bytes=sum(size for _, size, _ in entries),
        hits=int(stats.get("hits", 0)),
        misses=int(stats.get("misses", 0)),
        max_bytes=max_bytes(),
    )


def prune_cache(directory: str | os.PathLike[str] | None = None, limit: int | None = None) -> tuple[int, int]:
    """Remove the least recently used entries until the cache holds at most ``limit`` bytes (default:
    its bound); returns ``(entries removed, bytes freed)``. Only the cache's own entries are removed."""
    root = _existing_cache(directory)
    limit = max_bytes() if limit is None else limit
    entries = sorted(_entries(root / _CODE, clean=True))
    total = sum(size for _, size, _ in entries)
    removed = freed = 0
    for _, size, path in entries:
        if total <= limit:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
        freed += size
    return removed, freed


def clear_cache(directory: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """Remove every entry and the totals; returns ``(entries removed, bytes freed)``, counting only what was
    removed. Only the cache's own files go (its entries, emptied shard directories, ``stats.json``); the
    directory, its tag and anything else in it stay."""
    root = _existing_cache(directory)
    removed = freed = 0
    for _, size, path in _entries(root / _CODE, clean=True):
        try:
            path.unlink()
        except OSError:
            continue
        removed += 1
        freed += size
    for shard in (root / _CODE).glob("[0-9a-f][0-9a-f]"):
        with contextlib.suppress(OSError):
            shard.rmdir()  # only if empty (a link is not removed: rmdir refuses it)
    with contextlib.suppress(OSError):
        (root / _STATS).unlink()
    return removed, freed
