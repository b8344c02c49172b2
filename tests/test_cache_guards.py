"""The compile cache's own guards, one test each (written against the mutants that survived `_cache`'s run).

In-process and fast: what the workers store is covered in test_cache.py; this is the directory's upkeep (which
environment switch wins, what a foreign directory is told, the tag check, the totals, when pruning runs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from hatch_pyc._cache import (
    CACHE_DIR_ENV,
    MAX_BYTES_ENV,
    NO_CACHE_ENV,
    cache_info,
    clear_cache,
    open_cache,
    prune_cache,
    record_run,
)
from hatch_pyc._errors import InvalidInput


def _cache(tmp_path: Path) -> Path:
    code, why = open_cache(True, tmp_path / "cache")
    assert code is not None, why
    return code


def _entry(code: Path, name: str, size: int, age: float) -> Path:
    """A file under a name the cache gives its entries, ``age`` seconds old."""
    path = code / name[:2] / name[2:]
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_a_named_directory_is_used_even_when_the_environment_turns_the_default_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HATCH_PYC_NO_CACHE`` turns off the cache a run would find by itself; a directory the caller names
    (``--cache-dir``, the hook's ``cache-dir``) is still used."""
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "from-env"))
    assert open_cache(True, None) == (None, "")
    code, why = open_cache(True, tmp_path / "named")
    assert why == ""
    assert code == tmp_path / "named" / "code"
    assert code.is_dir()
    assert not (tmp_path / "from-env").exists()


def test_a_foreign_directory_is_named_by_its_first_file_and_the_count_of_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir(mode=0o700)
    (root / "b-notes.txt").write_text("b")
    (root / "a-notes.txt").write_text("a")
    code, why = open_cache(True, root)
    assert code is None
    assert why == (
        f"compile cache {root} not used: it holds files the cache did not make (a-notes.txt and 1 more); "
        "name an empty or new directory"
    )
    (root / "b-notes.txt").unlink()
    assert open_cache(True, root)[1].endswith("(a-notes.txt); name an empty or new directory")


def test_a_tag_with_more_after_the_cache_s_own_text_is_not_the_cache_s(tmp_path: Path) -> None:
    """Only the exact tag marks a cache: `prune` and `clear` must not take a directory whose tag merely
    starts like ours."""
    code = _cache(tmp_path)
    tag = code.parent / "CACHEDIR.TAG"
    text = tag.read_bytes()
    assert cache_info(code.parent).entries == 0
    for other in (text + b"# and my own notes\n", text[:-1]):
        tag.write_bytes(other)
        with pytest.raises(InvalidInput, match="not a hatch-pyc compile cache"):
            cache_info(code.parent)
        with pytest.raises(InvalidInput, match="not a hatch-pyc compile cache"):
            prune_cache(code.parent, 0)


def test_the_totals_add_up_over_runs_and_only_sane_numbers_are_believed(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    record_run(code, 3, 4)
    record_run(code, 2, 0)
    info = cache_info(code.parent)
    assert (info.hits, info.misses) == (5, 4)
    assert info.hit_rate == 5 / 9
    stats = code.parent / "stats.json"
    for text in ('{"hits": true, "misses": -5}', '{"hits": 1e300, "misses": 1e400}', '{"hits": "7", "misses": [1]}'):
        stats.write_text(text)
        info = cache_info(code.parent)
        assert (info.hits, info.misses) == (0, 0), text
    stats.write_text('{"hits": 7, "misses": 2.0}')
    assert (cache_info(code.parent).hits, cache_info(code.parent).misses) == (7, 2)
    # read within 64 KiB: a file padded to 40 KiB is still read whole, one over the bound is not believed
    for pad, hits in ((40_000, 8), (70_000, 0)):
        stats.write_text('{"note": "' + "x" * pad + '", "hits": 8, "misses": 1}')
        assert cache_info(code.parent).hits == hits, pad


def test_a_run_that_stored_code_prunes_at_most_hourly_and_a_run_of_hits_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _cache(tmp_path)
    monkeypatch.setenv(MAX_BYTES_ENV, "1")  # every entry is over the bound
    old = _entry(code, "ab" + "0" * 62, 100, age=7200)
    record_run(code, 5, 0)  # nothing was stored: no size check
    assert old.exists()
    record_run(code, 0, 1)  # stored code, never pruned before: the check runs
    assert not old.exists()
    pruned_at = json.loads((code.parent / "stats.json").read_text())["pruned"]
    assert time.time() - 60 < pruned_at <= time.time()
    newer = _entry(code, "cd" + "0" * 62, 100, age=10)
    record_run(code, 0, 1)  # within the hour of the last check: none
    assert newer.exists()
    stats = json.loads((code.parent / "stats.json").read_text())
    stats["pruned"] = int(time.time() - 3700)
    (code.parent / "stats.json").write_text(json.dumps(stats))
    record_run(code, 0, 1)
    assert not newer.exists()


def test_pruning_removes_the_least_recently_used_first_and_stops_under_the_bound(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    oldest = _entry(code, "01" + "1" * 62, 4096, age=300)
    middle = _entry(code, "02" + "2" * 62, 4096, age=200)
    newest = _entry(code, "03" + "3" * 62, 4096, age=100)
    size = cache_info(code.parent).bytes
    assert size == sum(p.stat().st_blocks * 512 for p in (oldest, middle, newest))  # bytes on disk
    assert size >= 3 * 4096
    removed, freed = prune_cache(code.parent, size - 1)
    assert (removed, freed) == (1, size // 3)
    assert not oldest.exists()
    assert middle.exists()
    assert newest.exists()
    assert prune_cache(code.parent, size) == (0, 0)


def test_clearing_goes_on_past_an_entry_it_cannot_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry that cannot be removed (another run removed it first, a read-only file system) is not counted and
    does not stop the others from being removed."""
    code = _cache(tmp_path)
    stuck = _entry(code, "01" + "1" * 62, 10, age=30)
    others = [_entry(code, f"{n:02x}" + "2" * 62, 10, age=20 - n) for n in (2, 3)]
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    removed, _ = clear_cache(code.parent)
    assert removed == 2
    assert stuck.exists()
    assert not any(p.exists() for p in others)
