"""How pruning merges packs, at the documented bounds and not beside them: more than 32 packs; those under 64 MiB;
at most 256 at a time; a merged pack of 64 MiB at most; each key once, 2,097,152 at most; only what was copied whole
is removed; the bytes freed are counted exactly; a merge that fails changes nothing.

The packs at 64 MiB are sparse files (a hole where the code is), so the bounds are those a real cache meets, not
lowered for the test.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cache_packs import _code, _entries, _index, _whole, _write

from hatch_pyc import _cache
from hatch_pyc._cache import cache_info, prune_cache, read_regular_file
from hatch_pyc._pack import MAGIC

MIB64 = 64 * 1024**2
_NO_LIMIT = 1 << 40  # no pack is removed for the cache's size: only the merge is at work


def _disk(path: Path) -> int:
    return path.stat().st_blocks * 512


def _hole_pack(packs: Path, size: int, age: float, *, whole: bool = True) -> tuple[Path, bytes]:
    """A pack of exactly ``size`` bytes holding one entry whose code is zeros, left as a hole (a sparse file). With
    ``whole`` its entry's digest is right (a merge can copy it); else it is zeros (such a pack is never read)."""
    key = os.urandom(32)
    length = size - len(MAGIC) - 44 - 4  # the entry: digest, flag, code
    digest = bytes(32)
    if whole:
        hashed = hashlib.sha256(key + b"\x00")
        chunk, left = bytes(1 << 20), length - 33
        while left:
            hashed.update(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        digest = hashed.digest()
    path = packs / f"{os.urandom(8).hex()}.pack"
    with open(path, "wb") as handle:
        handle.write(MAGIC + digest + b"\x00")
        handle.seek(len(MAGIC) + length)
        handle.write(struct.pack("<32sQI", key, len(MAGIC), length) + struct.pack("<I", 1))
    then = time.time() - age
    os.utime(path, (then, then))
    assert path.stat().st_size == size
    return path, key


def _tiny(packs: Path, count: int, age: float) -> list[Path]:
    return [_write(packs, _entries(1), age=age - n) for n in range(count)]


def test_a_merge_takes_packs_under_64_mib_and_makes_none_over_64_mib(tmp_path: Path) -> None:
    """33 packs: one of exactly 64 MiB (left alone), two that together make a merged pack of exactly 64 MiB (merged,
    and the merge stops there), 30 small ones (left for later). Then a pack 100 bytes short of 64 MiB and the 30
    small ones: the first small one takes the merged pack past 64 MiB, and the merge stops after it."""
    packs = _code(tmp_path).parent / "packs"
    at_bound, _ = _hole_pack(packs, MIB64, age=5000)
    half = 32 * 1024**2
    first, key1 = _hole_pack(packs, half + len(MAGIC) + 48, age=4000)
    second, key2 = _hole_pack(packs, MIB64 - half + 48, age=3900)  # entries: half + (64 MiB - magic - half)
    small = _tiny(packs, 30, age=3000)
    assert len(list(packs.iterdir())) == 33
    assert prune_cache(packs.parent, _NO_LIMIT) == (
        0,
        0,
    )  # the merged pack takes more on disk than the holes it replaced
    left = set(packs.iterdir())
    assert at_bound in left and not {first, second} & left and set(small) <= left
    (merged,) = left - {at_bound, *small}
    assert [key for key, _, _ in _index(merged) or []] == [key1, key2]
    assert merged.stat().st_size == MIB64 + 2 * 44 + 4  # 64 MiB of magic and entries, then the index

    short, key3 = _hole_pack(packs, MIB64 - 100 + 48, age=3500)  # magic and entry: 100 bytes short of 64 MiB
    next_in = _whole(small[0])
    assert len(list(packs.iterdir())) == 33
    assert prune_cache(packs.parent, _NO_LIMIT) == (0, 0)
    left = set(packs.iterdir())
    assert {at_bound, merged} <= left and short not in left and small[0] not in left and set(small[1:]) <= left
    (again,) = left - {at_bound, merged, *small}
    assert [key for key, _, _ in _index(again) or []] == [key3, *next_in]
    assert len(left) == 32


def test_32_packs_stay_as_they_are_and_33_are_merged(tmp_path: Path) -> None:
    packs = _code(tmp_path).parent / "packs"
    made = set(_tiny(packs, 32, age=1000))
    assert prune_cache(packs.parent, _NO_LIMIT) == (0, 0)
    assert set(packs.iterdir()) == made
    made |= set(_tiny(packs, 1, age=10))
    prune_cache(packs.parent, _NO_LIMIT)
    assert len(list(packs.iterdir())) == 1
    assert cache_info(packs.parent).entries == 33


def test_a_merge_reads_256_packs_at_most_oldest_first(tmp_path: Path) -> None:
    packs = _code(tmp_path).parent / "packs"
    made = _tiny(packs, 258, age=10_000)
    prune_cache(packs.parent, _NO_LIMIT)
    left = set(packs.iterdir())
    assert len(left) == 3 and set(made[256:]) <= left
    (merged,) = left - set(made)
    assert len(_index(merged) or []) == 256


def test_one_small_pack_among_big_ones_is_not_merged_and_two_are(tmp_path: Path) -> None:
    """Over 32 packs, but only one under 64 MiB: there is nothing to merge it with, it stays as it is (nothing freed).
    With two, they become one."""
    packs = _code(tmp_path).parent / "packs"
    big = {_hole_pack(packs, MIB64 + n, age=1000, whole=False)[0] for n in range(32)}
    (one,) = _tiny(packs, 1, age=10)
    assert prune_cache(packs.parent, _NO_LIMIT) == (0, 0)
    assert set(packs.iterdir()) == big | {one}
    (two,) = _tiny(packs, 1, age=5)
    wanted = {**_whole(one), **_whole(two)}
    prune_cache(packs.parent, _NO_LIMIT)
    left = set(packs.iterdir())
    assert big <= left and len(left) == 33 and not {one, two} & left
    (merged,) = left - big
    assert _whole(merged) == wanted


def test_the_bytes_freed_by_a_merge_are_counted_exactly_and_the_merged_pack_is_private(tmp_path: Path) -> None:
    """``prune`` returns what it freed: the merged packs' bytes on disk less the new pack's, and what it removed as
    no pack. The new pack can be read by this user only, like every pack a worker writes."""
    packs = _code(tmp_path).parent / "packs"
    made = _tiny(packs, 33, age=100)
    broken = _write(packs, _entries(1), age=1)
    broken.write_bytes(b"hatch-pyc pack 9\n")
    before = sum(_disk(p) for p in made) + _disk(broken)
    removed, freed = prune_cache(packs.parent, _NO_LIMIT)
    (merged,) = packs.iterdir()
    assert (removed, freed) == (0, before - _disk(merged))
    assert stat.S_IMODE(merged.stat().st_mode) == 0o600


def test_pruning_by_size_then_still_removes_what_is_no_pack_and_merges(tmp_path: Path) -> None:
    """A prune that removes the oldest pack for the cache's size goes on with the rest: a file named as a pack that
    is none is removed, and the packs left are merged. Stub entries (files of ``code/``) are never merged."""
    packs = _code(tmp_path).parent / "packs"
    stub = packs.parent / "code" / "ab" / ("c" * 62)
    stub.parent.mkdir()
    stub.write_bytes(b"a stub entry")
    os.utime(stub, (time.time() - 50, time.time() - 50))
    oldest = _write(packs, _entries(1, size=50_000), age=10_000)
    made = _tiny(packs, 33, age=100)
    broken = _write(packs, _entries(1), age=1)
    broken.write_bytes(b"hatch-pyc pack 9\n")
    total = cache_info(packs.parent).bytes
    prune_cache(packs.parent, total - 1)
    assert not oldest.exists() and not broken.exists() and stub.read_bytes() == b"a stub entry"
    assert len(list(packs.iterdir())) == 1 and not set(made) & set(packs.iterdir())


def test_a_pack_that_cannot_be_read_whole_into_the_merge_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only packs copied whole are removed. One that cannot be opened when the merge reaches it (gone, or replaced by
    something that is no regular file; here the opener is made to say so) stays; so does one whose entries did not
    all fit in the merged pack (its count bound, lowered here to 3, is 2,097,152), and its entries are all still
    served."""
    packs = _code(tmp_path).parent / "packs"
    unreadable = _write(packs, _entries(1), age=1000)
    pairs = [_write(packs, _entries(2), age=900 - n) for n in range(32)]
    real = _cache._open_regular
    calls: list[Path] = []

    def opener(
        path: Path, dir_fd: int | None = None, *, follow_links: bool = False
    ) -> tuple[int, os.stat_result] | None:
        calls.append(path)
        if path == unreadable and calls.count(path) == 2:  # listed first (its keys), then read by the merge
            return None
        return real(path, dir_fd, follow_links=follow_links)

    wanted = cache_info(packs.parent).entries
    monkeypatch.setattr(_cache, "_open_regular", opener)
    monkeypatch.setattr(_cache, "MAX_COUNT", 3)
    prune_cache(packs.parent, _NO_LIMIT)
    monkeypatch.undo()
    left = set(packs.iterdir())
    assert unreadable in left and pairs[0] not in left and set(pairs[1:]) <= left
    assert len(left) == 1 + 31 + 1
    assert cache_info(packs.parent).entries == wanted


def _limit_file_size_to_64k() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


def test_a_merge_that_fails_to_write_changes_nothing_and_frees_nothing(tmp_path: Path) -> None:
    """The merged pack cannot be written whole (no file may grow past 64 KiB: a real EFBIG): its temporary is
    removed, every pack stays, and ``prune`` says it freed nothing."""
    packs = _code(tmp_path).parent / "packs"
    made = {_write(packs, _entries(1, size=4096), age=100 - n) for n in range(33)}
    script = "import sys; from hatch_pyc._cache import prune_cache; print(prune_cache(sys.argv[1], 1 << 40))"
    done = subprocess.run(
        [sys.executable, "-c", script, str(packs.parent)],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size_to_64k,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "(0, 0)\n", "")
    assert set(packs.iterdir()) == made


def test_the_helpers_a_merge_uses_pass_over_a_pack_gone_since_it_was_listed(tmp_path: Path) -> None:
    """A pack removed by another prune after this one listed it: its length counts as a big pack's (left alone),
    its bytes on disk as none, and as an entry of a directory being checked it counts as renamed into place."""
    gone = tmp_path / ("0" * 16 + ".pack")
    assert _cache._length(gone) == MIB64
    assert _cache._on_disk(gone) == 0
    assert _cache._is(gone, stat.S_ISREG) is True


def test_a_file_is_read_only_up_to_the_size_it_may_have(tmp_path: Path) -> None:
    path = tmp_path / "entry"
    path.write_bytes(b"12345")
    assert read_regular_file(path, 100, max_size=5) == b"12345"
    assert read_regular_file(path, 100, max_size=4) is None
    assert read_regular_file(path, 3, max_size=6) == b"123"
