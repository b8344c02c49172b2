"""The compile cache: compiled code by content, shared by every run, tree, venv and wheel.

The workers look code up and store it (``_worker._Cache``: the key; ``_pack``: the entry and pack formats and their
checks). Compiled code lives in packs, a few files per run that stored code, in ``packs/``; stubgen's results
(``hatch_pyc._stubs``) are files of their own in ``code/``. This module decides where the cache is and whether it
may be used, keeps its totals, and bounds its size. It is on by default, in ``$HATCH_PYC_CACHE_DIR``, else
``$XDG_CACHE_HOME/hatch-pyc``, else ``~/.cache/hatch-pyc``; ``HATCH_PYC_NO_CACHE=1`` (or
``PycOptions(cache=False)``, ``--no-cache``) turns it off.
A cache directory another user owns, or one that others may write to, is not used: an entry
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hatch_pyc._errors import InvalidInput
from hatch_pyc._pack import MAX_COUNT, PackWriter, pack_entries, pack_index

__all__ = [
    "CACHE_DIR_ENV",
    "DEFAULT_MAX_BYTES",
    "NO_CACHE_ENV",
    "CacheInfo",
    "cache_info",
    "clear_cache",
    "default_cache_dir",
    "open_cache",
    "packs_dir",
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
# Stub entries live in ``code/<2 hex>/<62 hex>``, compiled code in ``packs/<16 hex>.pack``; the totals in
# ``stats.json``.
_CODE = "code"
_PACKS = "packs"
_STATS = "stats.json"
_TAG = "CACHEDIR.TAG"  # https://bford.info/cachedir/: backup tools skip the directory
_TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# This is the hatch-pyc compile cache.\n"
_SHARD = re.compile(r"[0-9a-f]{2}").fullmatch
_ENTRY = re.compile(r"[0-9a-f]{62}").fullmatch
_ENTRY_TMP = re.compile(r"[0-9a-f]{62}\.\d+\.tmp").fullmatch
_PACK = re.compile(r"[0-9a-f]{16}\.pack").fullmatch
_PACK_TMP = re.compile(r"[0-9a-f]{16}\.pack\.\d+\.tmp").fullmatch
# What a cache not tagged yet may hold (a run made it and was stopped, or is making it now): its tag being written
# (write_atomically's temporary name), and the probes of interpreters (hatch_pyc._targets, written before the cache
# is opened): ``<16 hex>.json``, being written, or under the temporary name earlier versions gave it.
_TAG_TMP = re.compile(r"CACHEDIR\.TAG\.\d+-[0-9a-f]{8}\.tmp").fullmatch
_PROBE = re.compile(r"[0-9a-f]{16}(\.json|\.json\.\d+-[0-9a-f]{8}\.tmp|\.\d+\.tmp)").fullmatch
_PRUNE_EVERY = 3600.0  # seconds between the automatic size checks of one cache
_STALE_TMP = 3600.0  # a worker's temporary entry older than this was left by a killed run
_MAX_PACKS = 32  # more packs than this are merged when the cache is pruned (each run that stored code adds some)
_MERGED_PACK = 64 * 1024**2  # bytes: packs at least this big are left as they are by the merge
_MERGED_AT_ONCE = 256  # packs one merge reads at most


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
        for inner in (code, root / _PACKS):
            inner.mkdir(mode=0o700, exist_ok=True)
            problem = f"a link; the cache's {inner.name} directory must be a directory" if inner.is_symlink() else ""
            problem = problem or _untrusted(inner)
            if problem:
                return None, f"compile cache {inner} not used: {problem}"
        tag = root / _TAG
        if not tag.exists():
            write_atomically(tag, _TAG_TEXT.encode())
    except OSError as exc:
        return None, f"compile cache {root} not used: {exc.strerror or exc}"
    return code, ""


def packs_dir(code: Path) -> Path:
    """Where the workers keep their packs of compiled code, beside ``code`` (what :func:`open_cache` returned)."""
    return code.parent / _PACKS


def _not_a_cache(root: Path) -> str:
    """Why ``root`` is not a directory the cache may take as its own ('' when it may): it must carry the cache's own
    tag, or hold nothing but what a run making the cache leaves before the tag (``code`` with shard directories,
    ``packs`` with packs, the probes of interpreters, the tag being written). A cache never moves into a directory
    of yours."""
    if _tagged(root):
        return ""
    others = [other for name in sorted(os.listdir(root)) for other in _not_made_before_the_tag(root, name)]
    if others:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        return f"it holds files the cache did not make ({others[0]}{more}); name an empty or new directory"
    return ""


def _not_made_before_the_tag(root: Path, name: str) -> list[str]:
    """What of ``name`` in an untagged ``root`` a run making the cache does not write before its tag (read without
    following links: a link is never the cache's): ``[]``, ``[name]``, or the entries of ``code``, ``packs`` or
    ``interpreters`` that are not the cache's."""
    path = root / name
    if name == _TAG:  # another run has just put it in place
        return [] if _tagged(root) else [name]
    if _TAG_TMP(name):  # a regular file, or gone: renamed into place since the listing
        try:
            return [] if stat.S_ISREG(path.lstat().st_mode) else [name]
        except FileNotFoundError:
            return []
    kinds: dict[str, Callable[[str], object]] = {_CODE: _SHARD, _PACKS: _pack_name, "interpreters": _PROBE}
    ours = kinds.get(name)
    if ours is None or path.is_symlink() or not path.is_dir():
        return [name]
    kind = stat.S_ISDIR if name == _CODE else stat.S_ISREG  # shard directories; packs and probes are files
    return [f"{name}/{entry}" for entry in sorted(os.listdir(path)) if not (ours(entry) and _is(path / entry, kind))]


def _pack_name(name: str) -> bool:
    return bool(_PACK(name) or _PACK_TMP(name))


def _is(path: Path, kind: Callable[[int], bool]) -> bool:
    """Whether ``path`` is of ``kind`` (not following a link), or gone since it was listed (renamed into place)."""
    try:
        return kind(path.lstat().st_mode)
    except FileNotFoundError:
        return True


def _tagged(root: Path) -> bool:
    """Whether ``root`` carries the hatch-pyc cache's ``CACHEDIR.TAG`` (a regular file, read within bounds)."""
    return read_regular_file(root / _TAG, len(_TAG_TEXT) + 1) == _TAG_TEXT.encode()


def read_regular_file(
    path: str | os.PathLike[str],
    limit: int,
    *,
    dir_fd: int | None = None,
    max_size: int | None = None,
    follow_links: bool = False,
) -> bytes | None:
    """The first ``limit`` bytes (-1: all) of ``path`` (relative to ``dir_fd`` when given) if it is a regular file of
    at most ``max_size`` bytes, else None: never blocking on a FIFO, and a directory is not an error (``open()`` of
    one raises and leaves its descriptor open). Never through a link unless ``follow_links`` (the cache reads its own
    files without; a tree's sources and pycs may be links)."""
    opened = _open_regular(path, dir_fd, follow_links=follow_links)
    if opened is None:
        return None
    fd, info = opened
    try:
        if max_size is not None and info.st_size > max_size:
            return None
        with open(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _open_regular(
    path: str | os.PathLike[str], dir_fd: int | None = None, *, follow_links: bool = False
) -> tuple[int, os.stat_result] | None:
    """A descriptor of ``path`` and what ``fstat`` says of it, if it is a regular file: opened without blocking on a
    FIFO or taking a terminal, and without following a link unless ``follow_links`` (None for anything else, and
    nothing left open)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        return fd, info
    os.close(fd)
    return None


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
    """``(mtime, bytes on disk, path)`` of every stub entry: only names the cache gives (``ab/<62 hex>``), in shard
    directories that are not links; ``clean``: also remove a killed run's stale temporary entry."""
    try:
        shards = [s for s in os.scandir(code) if _SHARD(s.name) and s.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    return [found for shard in shards for found in _files(shard.path, _ENTRY, _ENTRY_TMP, clean)]


def _packs(packs: Path, *, clean: bool = False) -> list[tuple[float, int, Path]]:
    """``(mtime, bytes on disk, path)`` of every pack (``<16 hex>.pack``); ``clean``: also remove a killed worker's
    stale temporary pack."""
    return _files(str(packs), _PACK, _PACK_TMP, clean)


def _files(
    directory: str, ours: Callable[[str], object], temporary: Callable[[str], object], clean: bool
) -> list[tuple[float, int, Path]]:
    """``(mtime, bytes on disk, path)`` of the regular files in ``directory`` named as ``ours`` says; ``clean``: also
    remove those named as ``temporary`` that are older than an hour (a killed run's)."""
    found: list[tuple[float, int, Path]] = []
    now = time.time()
    try:
        names = list(os.scandir(directory))
    except OSError:
        return found
    for entry in names:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if temporary(entry.name):
            if clean and now - info.st_mtime > _STALE_TMP:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            continue
        if ours(entry.name):
            found.append((info.st_mtime, _disk_bytes(info), Path(entry.path)))
    return found


@dataclass(frozen=True)
class _Held:
    """A file of the cache: a stub entry (one key, its name) or a pack (the keys of its index)."""

    mtime: float
    size: int
    path: Path
    keys: frozenset[bytes | str]


def _contents(root: Path, *, clean: bool = False) -> list[_Held]:
    """Every stub entry and pack of the cache at ``root``, oldest first."""
    held = [_Held(m, n, p, frozenset((p.parent.name + p.name,))) for m, n, p in _entries(root / _CODE, clean=clean)]
    held += [_Held(m, n, p, frozenset(_pack_keys(p))) for m, n, p in _packs(root / _PACKS, clean=clean)]
    return sorted(held, key=lambda item: (item.mtime, str(item.path)))


def _pack_keys(path: Path) -> list[bytes]:
    """The keys ``path``'s index holds (none when it is not a pack: damaged, or not a regular file)."""
    opened = _open_regular(path)
    if opened is None:
        return []
    fd, info = opened
    try:
        records = pack_index(fd, info.st_size)
    except (OSError, MemoryError, OverflowError):
        records = None
    finally:
        os.close(fd)
    return [key for key, _, _ in records or ()]


def _keys(held: list[_Held]) -> set[bytes | str]:
    return set().union(*(item.keys for item in held))


def _existing_cache(directory: str | os.PathLike[str] | None) -> Path:
    """The cache directory ``directory`` names (default: :func:`default_cache_dir`), which must be one: a
    directory carrying the cache's tag whose ``code`` and ``packs`` are not links. Anything else is refused
    (InvalidInput): ``clear`` and ``prune`` never remove files from a directory the cache did not make."""
    root = (Path(directory).expanduser() if directory is not None else default_cache_dir()).absolute()
    if not root.is_dir():
        raise InvalidInput(f"{root}: no compile cache there (not a directory)")
    if not _tagged(root):
        raise InvalidInput(f"{root}: not a hatch-pyc compile cache (no hatch-pyc {_TAG}); nothing was changed")
    for inner in (_CODE, _PACKS):
        if (root / inner).is_symlink():
            raise InvalidInput(
                f"{root / inner}: a link; the cache's {inner} directory must be a directory; nothing was changed"
            )
    return root


def cache_info(directory: str | os.PathLike[str] | None = None) -> CacheInfo:
    """What the cache at ``directory`` (default: :func:`default_cache_dir`) holds: its entries (each key once, however
    many packs hold it) and the bytes its files take. A cache not made yet is empty; a directory that is not a cache
    is refused (InvalidInput). Nothing is changed."""
    root = (Path(directory).expanduser() if directory is not None else default_cache_dir()).absolute()
    if root.exists() or directory is not None:
        root = _existing_cache(root)
    held = _contents(root) if root.exists() else []
    stats = _read_stats(root) if root.exists() else {}
    return CacheInfo(
        directory=root,
        entries=len(_keys(held)),
        bytes=sum(item.size for item in held),
        hits=int(stats.get("hits", 0)),
        misses=int(stats.get("misses", 0)),
        max_bytes=max_bytes(),
    )


def prune_cache(directory: str | os.PathLike[str] | None = None, limit: int | None = None) -> tuple[int, int]:
    """Remove the least recently used files (stub entries, packs of code) until the cache holds at most ``limit``
    bytes (default: its bound), then remove what is named as a pack but is none (damaged, cut short) and merge the
    packs if there are many; returns ``(entries removed, bytes freed)``. Only the cache's own files are removed."""
    root = _existing_cache(directory)
    limit = max_bytes() if limit is None else limit
    held = _contents(root, clean=True)
    before = _keys(held)
    total = sum(item.size for item in held)
    kept: list[_Held] = []
    freed = 0
    for item in held:
        if total > limit:
            try:
                item.path.unlink()
            except OSError:
                pass
            else:
                total -= item.size
                freed += item.size
                continue
        kept.append(item)
    packs = [item for item in kept if item.path.parent.name == _PACKS]
    for item in [item for item in packs if not item.keys]:  # not a pack (damaged, cut short), or an empty one
        with contextlib.suppress(OSError):
            item.path.unlink()
            freed += item.size
            packs.remove(item)
    freed += _merge_packs(root / _PACKS, packs)
    return len(before - _keys(_contents(root))), freed


def _merge_packs(packs: Path, held: list[_Held]) -> int:
    """When there are more than ``_MAX_PACKS`` packs (a worker reads every pack's index when it starts), merge those
    under ``_MERGED_PACK`` bytes (as long as they claim to be: a sparse file takes less on disk), oldest first, into
    one of about that size at most: each key once, damaged entries and packs left out, the new pack as recently used
    as the newest it replaces. Packs are read one at a time. Returns the bytes freed. A run reading the packs
    meanwhile keeps what it opened; two merges at once may both copy an entry, which the next merge drops."""
    if len(held) <= _MAX_PACKS:
        return 0
    small = [item for item in held if _length(item.path) < _MERGED_PACK][:_MERGED_AT_ONCE]
    if len(small) < 2:
        return 0
    name = f"{os.urandom(8).hex()}.pack"
    tmp = packs / f"{name}.{os.getpid()}.tmp"
    merged: list[_Held] = []
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with open(out, "wb") as handle:
            writer = PackWriter(handle)
            seen: set[bytes] = set()
            for item in small:
                if writer.size >= _MERGED_PACK:
                    break
                if _copy_unseen(item.path, writer, seen):
                    merged.append(item)
            writer.finish()
        newest = max((item.mtime for item in merged), default=time.time())
        os.utime(tmp, (newest, newest))
        os.rename(tmp, packs / name)
    except (OSError, MemoryError, OverflowError):
        with contextlib.suppress(OSError):
            tmp.unlink()
        return 0
    freed = 0
    for item in merged:
        with contextlib.suppress(OSError):
            item.path.unlink()
            freed += item.size
    return max(0, freed - _on_disk(packs / name))


def _copy_unseen(path: Path, writer: PackWriter, seen: set[bytes]) -> bool:
    """Add to ``writer`` the whole entries of the pack at ``path`` whose keys are not in ``seen`` (and add them to it);
    whether all of them were (False: the pack could not be opened, or the merged pack is full)."""
    opened = _open_regular(path)
    if opened is None:
        return False
    fd, info = opened
    try:
        for key, entry in pack_entries(fd, info.st_size):
            if len(writer.index) >= MAX_COUNT:
                return False
            if key not in seen:
                seen.add(key)
                writer.add(key, entry)
    finally:
        os.close(fd)
    return True


def _length(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return _MERGED_PACK


def _on_disk(path: Path) -> int:
    try:
        return _disk_bytes(path.stat())
    except OSError:
        return 0


def _disk_bytes(info: os.stat_result) -> int:
    return info.st_blocks * 512 if hasattr(info, "st_blocks") else info.st_size


def clear_cache(directory: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """Remove every entry and the totals; returns ``(entries removed, bytes freed)``, counting only what was
    removed. Only the cache's own files go (its stub entries and packs, emptied shard directories,
    ``stats.json``); the directory, its tag and anything else in it stay."""
    root = _existing_cache(directory)
    held = _contents(root, clean=True)
    removed: list[_Held] = []
    for item in held:
        try:
            item.path.unlink()
        except OSError:
            continue
        removed.append(item)
    for shard in (root / _CODE).glob("[0-9a-f][0-9a-f]"):
        with contextlib.suppress(OSError):
            shard.rmdir()  # only if empty (a link is not removed: rmdir refuses it)
    with contextlib.suppress(OSError):
        (root / _STATS).unlink()
    return len(_keys(removed)), sum(item.size for item in removed)
