"""The compile cache's packs: what a worker writes and reads, and how pruning counts, bounds and merges them.

In-process where the pack format is the subject (``hatch_pyc._pack``, ``hatch_pyc._cache``); through real
``hatch-pyc compile`` runs where a worker's reading is (more packs than it keeps open, a pack's recency, a pack
directory others may write, a worker's flush when it holds much).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_tree

from hatch_pyc import _cache
from hatch_pyc._cache import cache_info, open_cache, prune_cache
from hatch_pyc._pack import MAGIC, entry_payload, make_entry, pack_entries, pack_index, write_pack


def _code(tmp_path: Path) -> Path:
    code, why = open_cache(True, tmp_path / "cache")
    assert code is not None, why
    return code


def _write(packs: Path, entries: list[tuple[bytes, bytes]], age: float = 0.0, name: str | None = None) -> Path:
    """A pack of ``entries`` in ``packs``, ``age`` seconds old."""
    path = packs / (name or f"{os.urandom(8).hex()}.pack")
    with open(path, "wb") as handle:
        write_pack(handle, entries)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _entries(count: int, size: int = 100) -> list[tuple[bytes, bytes]]:
    return [
        (key, make_entry(key, n % 2 == 0, os.urandom(size))) for n, key in ((n, os.urandom(32)) for n in range(count))
    ]


def _index(path: Path) -> list[tuple[bytes, int, int]] | None:
    with open(path, "rb") as handle:
        return pack_index(handle.fileno(), path.stat().st_size)


def _whole(path: Path) -> dict[bytes, bytes]:
    with open(path, "rb") as handle:
        return dict(pack_entries(handle.fileno(), path.stat().st_size))


def test_a_pack_gives_back_what_was_written_and_only_what_lies_within_its_entries(tmp_path: Path) -> None:
    entries = _entries(3)
    path = _write(tmp_path, entries)
    assert _whole(path) == dict(entries)
    for key, entry in entries:
        found = entry_payload(key, entry)
        assert found is not None and found[1] == entry[33:]
    assert entry_payload(entries[0][0], entries[1][1]) is None  # another key's entry
    assert entry_payload(entries[0][0], entries[0][1][:33]) is None  # no code at all
    data = path.read_bytes()
    for broken in (
        data[:-1] + b"\xff",  # an index longer than the pack
        data[: len(MAGIC) + 3],  # shorter than a magic and a count
        b"hatch-pyc pack 2\n" + data[len(MAGIC) :],
    ):
        path.write_bytes(broken)
        assert _index(path) is None
    empty = io.BytesIO()
    assert write_pack(empty, []) == 0
    path.write_bytes(empty.getvalue())
    assert _index(path) == []


def test_pruning_counts_entries_not_files_and_removes_the_least_recently_used_pack_first(tmp_path: Path) -> None:
    """A key held by two packs is still in the cache when the older pack goes: it is not counted as removed."""
    packs = _code(tmp_path).parent / "packs"
    shared = _entries(1)
    older = _write(packs, _entries(3) + shared, age=300)
    newer = _write(packs, _entries(2) + shared, age=100)
    info = cache_info(packs.parent)
    assert info.entries == 6
    assert info.bytes == sum(p.stat().st_blocks * 512 for p in (older, newer))
    assert prune_cache(packs.parent, info.bytes) == (0, 0)
    older_size = older.stat().st_blocks * 512
    assert prune_cache(packs.parent, info.bytes - 1) == (3, older_size)
    assert not older.exists() and newer.exists()
    assert cache_info(packs.parent).entries == 3


def test_many_packs_are_merged_into_one_with_each_whole_entry_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over ``_MAX_PACKS`` packs: the small ones become one pack holding each key once (damaged entries and packs
    left out), as recently used as the newest it replaces; a big pack stays as it is."""
    monkeypatch.setattr(_cache, "_MERGED_PACK", 64 * 1024)
    packs = _code(tmp_path).parent / "packs"
    big = _write(packs, _entries(1, size=80 * 1024), age=50)
    wanted: dict[bytes, bytes] = {}
    small = []
    for n in range(_cache._MAX_PACKS):
        entries = _entries(2)
        if n == 0:
            entries.append(entries[0])  # a key twice in one pack
        wanted.update(entries)
        small.append(_write(packs, entries, age=1000 - n))
    damaged_key, damaged = _entries(1)[0]
    small.append(_write(packs, [(damaged_key, damaged[:-1] + bytes([damaged[-1] ^ 1]))], age=5))
    newest = small[-1].stat().st_mtime
    broken = _write(packs, _entries(1), age=2)
    broken.write_bytes(b"hatch-pyc pack 9\n")  # not a pack: removed, not merged
    removed, freed = prune_cache(packs.parent)
    assert removed == 1  # the damaged entry: no longer listed by any pack
    assert freed > 0
    left = sorted(packs.iterdir())
    assert big in left and len(left) == 2
    (merged,) = set(left) - {big}
    assert _whole(merged) == wanted and len(_index(merged) or []) == len(wanted)
    assert merged.stat().st_mtime == newest
    assert cache_info(packs.parent).entries == len(wanted) + 1


def test_as_many_packs_as_the_bound_are_left_as_they_are(tmp_path: Path) -> None:
    packs = _code(tmp_path).parent / "packs"
    made = {_write(packs, _entries(1)) for _ in range(_cache._MAX_PACKS)}
    assert prune_cache(packs.parent) == (0, 0)
    assert set(packs.iterdir()) == made


def test_a_killed_worker_s_temporary_pack_goes_after_an_hour_and_not_before(tmp_path: Path) -> None:
    packs = _code(tmp_path).parent / "packs"
    old = _write(packs, _entries(1), age=3600.5, name="0" * 16 + ".pack.42.tmp")
    young = _write(packs, _entries(1), age=3599, name="1" * 16 + ".pack.42.tmp")
    assert cache_info(packs.parent).entries == 0  # not counted
    prune_cache(packs.parent)
    assert not old.exists() and young.exists()


def _pycs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.pyc"))}


def _run(tree: Path, cache: Path, *extra: str) -> dict[str, int]:
    summary = tree.parent / "summary.json"
    run_cli("compile", str(tree), "--python", sys.executable, "--cache-dir", str(cache), "--json", str(summary), *extra)
    result = json.loads(summary.read_text())
    return {"hits": result["cache_hits"], "misses": result["cache_misses"]}


def test_more_packs_than_a_worker_keeps_open_still_serve_every_module_and_merge(tmp_path: Path) -> None:
    """300 packs of one entry each (more than the 256 a worker keeps open): every module is served, warm runs give
    the pycs a cold one gave; pruning twice merges them (256 packs at a time) into one that serves them all again."""
    files = {f"m{n}.py": f"VALUE = {n}\n" for n in range(300)}
    cache = tmp_path / "cache"
    tree = write_tree(tmp_path / "app", files)
    assert _run(tree, cache, "--force") == {"hits": 0, "misses": 300}
    want = _pycs(tree)
    packs = cache / "packs"
    for pack in list(packs.iterdir()):
        for key, entry in _whole(pack).items():
            _write(packs, [(key, entry)])
        pack.unlink()
    assert len(list(packs.iterdir())) == 300
    assert _run(tree, cache, "--force") == {"hits": 300, "misses": 0}
    assert _pycs(tree) == want
    prune_cache(cache)  # a merge reads 256 packs at most
    assert len(list(packs.iterdir())) == 300 - 256 + 1
    prune_cache(cache)
    assert len(list(packs.iterdir())) == 1
    assert _run(tree, cache, "--force") == {"hits": 300, "misses": 0}
    assert _pycs(tree) == want


def test_a_hit_freshens_a_pack_older_than_a_day_and_leaves_a_younger_one_alone(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old_tree = write_tree(tmp_path / "old", {"a.py": "A = 1\n"})
    young_tree = write_tree(tmp_path / "young", {"b.py": "B = 1\n"})
    _run(old_tree, cache)
    (old,) = (cache / "packs").iterdir()
    _run(young_tree, cache)
    (young,) = set((cache / "packs").iterdir()) - {old}
    os.utime(old, (time.time() - 86400 - 60,) * 2)
    os.utime(young, (time.time() - 86400 + 600,) * 2)
    young_mtime = young.stat().st_mtime
    assert _run(old_tree, cache, "--force") == {"hits": 1, "misses": 0}
    assert _run(young_tree, cache, "--force") == {"hits": 1, "misses": 0}
    assert time.time() - old.stat().st_mtime < 600
    assert young.stat().st_mtime == young_mtime


def test_a_worker_holding_much_writes_a_pack_before_its_input_ends(tmp_path: Path) -> None:
    """Twelve modules of about 1 MiB of code each, through one worker: it writes a pack each time it holds 8 MiB,
    not all of it at the end, and every module is served back."""
    files = {f"big{n}.py": f"DATA = {'x' * (1 << 20)!r}\nN = {n}\n" for n in range(12)}
    cache = tmp_path / "cache"
    tree = write_tree(tmp_path / "app", files)
    assert _run(tree, cache, "--workers", "1") == {"hits": 0, "misses": 12}
    sizes = sorted(len(_index(p) or []) for p in (cache / "packs").iterdir())
    assert sizes == [4, 8], sizes
    assert _run(tree, cache, "--workers", "1", "--force") == {"hits": 12, "misses": 0}


def test_a_worker_neither_reads_nor_writes_packs_others_may_write(tmp_path: Path) -> None:
    """The parent refuses such a cache; the worker checks the directory again itself (it opened it, not the path)."""
    from hatch_pyc import find_interpreter
    from hatch_pyc._pool import run_tasks

    code = _code(tmp_path)
    tree = write_tree(tmp_path / "app", {"m.py": "X = 1\n"})
    _run(tree, code.parent)
    packs = code.parent / "packs"
    before = sorted(packs.iterdir())
    packs.chmod(0o777)
    answers: list[dict[str, object]] = []
    task = {
        "src": str(tree / "m.py"),
        "dfile": "m.py",
        "mode": "timestamp",
        "outs": [[0, str(tmp_path / "m.pyc.tmp")]],
        "verify": False,
    }
    run_tasks(find_interpreter(sys.executable), [(1, task)], 1, lambda _, a: answers.append(a), cache=code)
    assert answers[0]["cache"] == [0, 1] and "ok" in answers[0]
    assert sorted(packs.iterdir()) == before


def _sparse_pack(path: Path, count: int, records: bytes = b"", apparent: int = 1 << 37) -> None:
    """A file that starts like a pack and claims ``count`` records at its end, ``apparent`` bytes long but sparse."""
    with open(path, "wb") as handle:
        handle.write(MAGIC)
        handle.seek(apparent - 4 - len(records))
        handle.write(records + struct.pack("<I", count))


def test_a_pack_claiming_billions_of_entries_is_not_read(tmp_path: Path) -> None:
    """Found by an adversarial review: a sparse file of 128 GiB whose count says 4e9 records made the workers fail
    the run (MemoryError, blamed on a source) and ``cache info``, ``prune`` and ``clear`` fail with a traceback. The
    count is bounded: the file is not a pack, the run compiles, and ``clear`` removes it."""
    cache = tmp_path / "cache"
    tree = write_tree(tmp_path / "app", {"m.py": "X = 1\n"})
    assert _run(tree, cache) == {"hits": 0, "misses": 1}
    crafted = cache / "packs" / ("f" * 16 + ".pack")
    _sparse_pack(crafted, 4_000_000_000)
    assert _index(crafted) is None
    assert _run(tree, cache, "--force") == {"hits": 1, "misses": 0}
    assert cache_info(cache).entries == 1
    for action in ("info", "prune"):
        proc = run_cli("cache", action, "--cache-dir", str(cache))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    cleared = run_cli("cache", "clear", "--cache-dir", str(cache), check=True)
    assert cleared.stdout.startswith("removed 1 entries") and not crafted.exists()


def test_records_that_overlap_or_leave_gaps_are_no_pack_and_a_merge_reads_no_more_than_the_packs_hold(
    tmp_path: Path,
) -> None:
    """Found by an adversarial review: 2,000 records each naming the same GiB of a sparse file made a merge read and
    hash 2 TB (``prune``, and the compile that pruned, hung). A pack's records must lie one after another from the
    magic to the index, as a worker writes them; anything else is not a pack, and pruning removes it unread."""
    packs = _code(tmp_path).parent / "packs"
    key = os.urandom(32)
    overlapping = struct.pack("<32sQI", key, len(MAGIC), 1 << 30) * 2000
    crafted = packs / ("e" * 16 + ".pack")
    _sparse_pack(crafted, 2000, overlapping, apparent=(1 << 30) + len(MAGIC) + len(overlapping) + 4)
    assert _index(crafted) is None
    entries = _entries(2)
    good = _write(tmp_path, entries)
    data = good.read_bytes()
    start = len(data) - 4 - 88
    first = struct.unpack_from("<32sQI", data, start)
    for changed in (
        struct.pack("<32sQI", first[0], first[1] + 1, first[2] - 1),  # a gap after the magic
        struct.pack("<32sQI", first[0], first[1], first[2] + 1),  # overlapping the next
    ):
        good.write_bytes(data[:start] + changed + data[start + 44 :])
        assert _index(good) is None
    good.write_bytes(data)
    assert [key for key, _, _ in _index(good) or []] == [key for key, _ in entries]
    for _ in range(_cache._MAX_PACKS + 1):
        _write(packs, _entries(1))
    started = time.monotonic()
    prune_cache(packs.parent)
    assert time.monotonic() - started < 30
    assert not crafted.exists() and len(list(packs.iterdir())) == 1
    assert cache_info(packs.parent).entries == _cache._MAX_PACKS + 1


def test_a_worker_keeps_a_quarter_of_its_descriptors_for_packs_at_most_and_reads_the_rest_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial review: with 305 packs and a limit of 256 descriptors (macOS's default), every
    compile failed ("Too many open files") and pruning could not merge them."""
    import resource

    from hatch_pyc import _worker

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        assert _worker._packs_kept_open() == 16
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    packs = _code(tmp_path).parent / "packs"
    writer = _worker._Cache(str(packs))
    keys = [writer.key(f"X = {n}\n".encode(), "m.py", 0) for n in range(5)]
    for n, key in enumerate(keys):
        writer.put(key, False, b"code %d" % n)
        writer.flush()  # a pack each
    assert len(list(packs.iterdir())) == 5
    monkeypatch.setattr(_worker, "_packs_kept_open", lambda: 2)
    reader = _worker._Cache(str(packs))
    assert [reader.get(key) for key in keys] == [(False, b"code %d" % n) for n in range(5)]
    assert sum(pack[0] is not None for pack in reader.packs) == 2


def test_a_cache_that_cannot_be_written_still_serves_a_pack_older_than_a_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial review: on a read-only cache, freshening an old pack failed and the entry, read
    whole, was thrown away."""
    from hatch_pyc import _worker

    packs = _code(tmp_path).parent / "packs"
    writer = _worker._Cache(str(packs))
    key = writer.key(b"X = 1\n", "m.py", 0)
    writer.put(key, True, b"code")
    writer.flush()
    (pack,) = packs.iterdir()
    os.utime(pack, (time.time() - 2 * 86400,) * 2)

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "utime", read_only)
    assert _worker._Cache(str(packs)).get(key) == (True, b"code")


def test_a_run_with_few_descriptors_and_many_packs_is_served_from_all_of_them(tmp_path: Path) -> None:
    files = {f"m{n}.py": f"VALUE = {n}\n" for n in range(100)}
    cache = tmp_path / "cache"
    tree = write_tree(tmp_path / "app", files)
    assert _run(tree, cache) == {"hits": 0, "misses": 100}
    packs = cache / "packs"
    for pack in list(packs.iterdir()):
        for key, entry in _whole(pack).items():
            _write(packs, [(key, entry)])
        pack.unlink()
    summary = tmp_path / "limited.json"
    limit = "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
    limit += "sys.argv = ['hatch-pyc'] + sys.argv[1:]; runpy.run_module('hatch_pyc', run_name='__main__')"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            limit,
            "compile",
            str(tree),
            "--force",
            "--cache-dir",
            str(cache),
            "--json",
            str(summary),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(summary.read_text())["cache_hits"] == 100
