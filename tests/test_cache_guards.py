"""The compile cache's own guards, one test each (written against the mutants that survived `_cache`'s run).

In-process and fast: what the workers store is covered in test_cache.py; this is the directory's upkeep (which
environment switch wins, what a foreign directory is told, the tag check, the totals, when pruning runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import snapshot
from test_compile import python_that_obeys_permissions

from hatch_pyc._cache import (
    CACHE_DIR_ENV,
    DEFAULT_MAX_BYTES,
    MAX_BYTES_ENV,
    NO_CACHE_ENV,
    _not_a_cache,
    _untrusted,
    cache_info,
    clear_cache,
    default_cache_dir,
    max_bytes,
    open_cache,
    private_dir,
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


def _stale_temporary(code: Path) -> Path:
    """A temporary entry a killed run left two hours ago, in shard ``ab``."""
    (code / "ab").mkdir(mode=0o700, exist_ok=True)
    stale = code / "ab" / ("1" * 62 + ".123.tmp")
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    return stale


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
    stats["pruned"] = time.time() - 3599  # not yet an hour
    (code.parent / "stats.json").write_text(json.dumps(stats))
    record_run(code, 0, 1)
    assert newer.exists()
    stats["pruned"] = time.time() - 3600.5  # an hour to the second
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
    assert prune_cache(code.parent, size) == (0, 0)  # exactly at the bound is under it
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
    entries = [_entry(code, f"{n:02x}" + "2" * 62, 10, age=20 - n) for n in (1, 2, 3)]
    real_unlink = Path.unlink
    stuck: list[Path] = []

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if not stuck and self in entries:  # the first entry it tries, whatever the directory order
            stuck.append(self)
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    removed, _ = clear_cache(code.parent)
    assert removed == 2
    assert [p for p in entries if p.exists()] == stuck


def test_the_size_bound_is_a_positive_number_of_bytes_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for text, bound in (
        ("4096", 4096),
        ("1", 1),
        ("0", DEFAULT_MAX_BYTES),
        ("-5", DEFAULT_MAX_BYTES),
        ("2G", DEFAULT_MAX_BYTES),
    ):
        monkeypatch.setenv(MAX_BYTES_ENV, text)
        assert max_bytes() == bound, text


def test_the_default_directory_is_under_the_home_unless_an_absolute_xdg_cache_home_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for xdg in (None, "", "relative/cache"):  # unset, empty, or not absolute: the XDG spec says ignore it
        if xdg is None:
            monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        assert default_cache_dir() == tmp_path / "home" / ".cache" / "hatch-pyc", xdg
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "hatch-pyc"
    monkeypatch.setenv(CACHE_DIR_ENV, "~/mine")
    assert default_cache_dir() == tmp_path / "home" / "mine"


def test_a_new_cache_keeps_its_code_private(tmp_path: Path) -> None:
    """Made with mode 700 whatever the umask: the code others could read is the user's own sources, compiled."""
    code = _cache(tmp_path)
    assert stat.S_IMODE(code.stat().st_mode) == 0o700
    assert stat.S_IMODE((code.parent / "packs").stat().st_mode) == 0o700
    assert stat.S_IMODE(code.parent.stat().st_mode) == 0o700


def test_a_file_of_yours_beside_the_probes_directory_is_still_yours(tmp_path: Path) -> None:
    """Only when nothing else is foreign are the probes' directory (and the code directory) looked into; a file of
    the user's own beside them is named, and one in the probes' directory that is not a probe is named too."""
    root = tmp_path / "mine"
    (root / "interpreters").mkdir(parents=True, mode=0o700)
    (root / "interpreters" / ("a" * 16 + ".json")).write_text("{}")  # a probe
    (root / "notes.txt").write_text("mine")
    assert open_cache(True, root) == (
        None,
        f"compile cache {root} not used: it holds files the cache did not make (notes.txt); "
        "name an empty or new directory",
    )
    (root / "notes.txt").unlink()
    (root / "interpreters" / "todo.txt").write_text("mine")
    assert open_cache(True, root)[1].endswith("(interpreters/todo.txt); name an empty or new directory")
    (root / "interpreters" / "todo.txt").unlink()
    assert open_cache(True, root)[0] == root / "code"


def test_a_directory_another_user_owns_is_not_trusted(tmp_path: Path) -> None:
    """As root, a directory given to ``nobody``; as anyone else, ``/`` (root's): neither may hold trusted code."""
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, 65534, 65534)
        uid = 65534
    else:
        theirs, uid = Path("/"), 0
    assert not private_dir(theirs)
    assert _untrusted(theirs) == f"owned by another user (uid {uid})"
    assert private_dir(_cache(tmp_path))


def test_a_total_at_the_bound_is_not_believed(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    (code.parent / "stats.json").write_text('{"hits": 1e18, "misses": 99999999999}')
    info = cache_info(code.parent)
    assert (info.hits, info.misses) == (0, 99999999999)


def test_showing_the_cache_changes_nothing_not_even_a_killed_run_s_temporary(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    stale = _stale_temporary(code)
    assert cache_info(code.parent).entries == 0
    assert stale.exists()
    assert prune_cache(code.parent) == (0, 0)  # pruning cleans it up, without counting it
    assert not stale.exists()


def test_a_killed_run_s_temporary_goes_after_an_hour_and_not_before(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    (code / "ab").mkdir(mode=0o700)
    ages = {"old": 3600.5, "young": 3599.0}  # an hour to the second
    paths = {}
    for name, age in ages.items():
        paths[name] = code / "ab" / (("1" if name == "old" else "2") * 62 + ".99.tmp")
        paths[name].write_bytes(b"x")
        os.utime(paths[name], (time.time() - age, time.time() - age))
    prune_cache(code.parent)
    assert not paths["old"].exists()
    assert paths["young"].exists()


def test_a_shard_that_is_a_link_is_never_followed(tmp_path: Path) -> None:
    """``code/ab`` linked to a directory elsewhere: what is there is neither counted nor removed."""
    code = _cache(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / ("3" * 62)  # named as an entry would be
    victim.write_bytes(b"precious")
    (code / "ab").symlink_to(elsewhere, target_is_directory=True)
    assert cache_info(code.parent).entries == 0
    assert clear_cache(code.parent) == (0, 0)
    assert prune_cache(code.parent, 0) == (0, 0)
    assert victim.read_bytes() == b"precious"


def test_a_cache_whose_code_directory_is_gone_is_empty_and_can_be_pruned_and_cleared(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    code.rmdir()
    assert cache_info(code.parent).entries == 0
    assert prune_cache(code.parent, 0) == (0, 0)
    assert clear_cache(code.parent) == (0, 0)


def test_a_default_cache_not_made_yet_is_empty_and_a_named_directory_that_is_not_there_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "not-yet"))
    info = cache_info()
    assert (info.directory, info.entries, info.bytes) == (tmp_path / "not-yet", 0, 0)
    assert not (tmp_path / "not-yet").exists()
    with pytest.raises(InvalidInput, match="no compile cache there"):
        cache_info(tmp_path / "not-yet")


def test_pruning_goes_on_past_an_entry_it_cannot_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _cache(tmp_path)
    stuck = _entry(code, "01" + "1" * 62, 10, age=30)  # the oldest: removed first
    other = _entry(code, "02" + "2" * 62, 10, age=20)
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    other_size = other.stat().st_blocks * 512
    monkeypatch.setattr(Path, "unlink", unlink)
    assert prune_cache(code.parent, 0) == (1, other_size)  # only what was removed is counted
    assert stuck.exists()
    assert not other.exists()


def test_the_default_bound_is_the_documented_two_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)
    assert max_bytes() == 2 * 1024 * 1024 * 1024  # docs/compile.md: "2 GiB"


def test_what_the_cache_holds_is_a_value_that_cannot_change(tmp_path: Path) -> None:
    info = cache_info(_cache(tmp_path).parent)
    assert {info} == {info}  # hashable
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.entries = 5  # type: ignore[misc]


def test_a_cache_is_on_unless_asked_off_and_its_directory_is_made_with_its_parents(tmp_path: Path) -> None:
    code, why = open_cache(directory=tmp_path / "a" / "b" / "cache")
    assert (code, why) == (tmp_path / "a" / "b" / "cache" / "code", "")
    assert code.is_dir()


def test_a_cache_that_cannot_be_made_says_why_in_words(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    root = tmp_path / "file" / "cache"
    assert open_cache(True, root) == (None, f"compile cache {root} not used: Not a directory")


def test_a_directory_without_the_tag_is_not_a_cache_to_show_prune_or_clear(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "code" / "ab").mkdir(parents=True)
    entry = plain / "code" / "ab" / ("1" * 62)
    entry.write_bytes(b"x")
    for tag in (None, "directory", "fifo"):  # none, or one that is not a regular file
        if tag == "directory":
            (plain / "CACHEDIR.TAG").mkdir()
        elif tag == "fifo":
            (plain / "CACHEDIR.TAG").rmdir()
            os.mkfifo(plain / "CACHEDIR.TAG")
        for command in (cache_info, prune_cache, clear_cache):
            with pytest.raises(InvalidInput, match=f"{plain}: not a hatch-pyc compile cache"):
                command(plain)
    assert entry.exists()


def test_a_path_that_is_not_there_is_not_a_private_directory(tmp_path: Path) -> None:
    assert not private_dir(tmp_path / "missing")


@pytest.mark.parametrize("inner", ["code", "packs"])
def test_a_code_directory_that_is_a_link_is_refused_by_name(tmp_path: Path, inner: str) -> None:
    linked = _cache(tmp_path).parent / inner
    linked.rmdir()
    (tmp_path / "elsewhere").mkdir()
    linked.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for command in (cache_info, prune_cache, clear_cache):
        with pytest.raises(InvalidInput) as caught:
            command(linked.parent)
        assert str(caught.value) == (
            f"{linked}: a link; the cache's {inner} directory must be a directory; nothing was changed"
        )


def test_a_negative_total_is_not_believed_and_does_not_eat_a_run_s_counts(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    stats = code.parent / "stats.json"
    stats.write_text('{"hits": -1, "misses": -0.5}')
    assert (cache_info(code.parent).hits, cache_info(code.parent).misses) == (0, 0)
    record_run(code, 3, 0)
    assert json.loads(stats.read_text())["hits"] == 3
    assert json.loads(stats.read_text())["misses"] == 0


def test_totals_that_cannot_be_written_never_fail_the_run(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    (code.parent / "stats.json").mkdir()  # not a file: neither read nor replaced
    record_run(code, 1, 1)
    assert (code.parent / "stats.json").is_dir()
    assert not list(code.parent.glob("stats.json.*.tmp"))


def _scandir_in_order(monkeypatch: pytest.MonkeyPatch, first: str | None = None, vanish: str | None = None) -> None:
    """``os.scandir`` listing a directory in name order, with ``first`` ahead of the rest; ``vanish`` is removed
    after the listing, as another run pruning at the same time would (its ``stat`` then fails)."""
    real = os.scandir

    def listing(path: str | os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
        with real(path) as found:
            entries = sorted(found, key=lambda e: (e.name != first, e.name))
        for entry in entries:
            if entry.name == vanish:
                os.unlink(entry.path)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", listing)


@pytest.mark.parametrize("odd", ["removed-while-counted", "a-directory"])
def test_what_in_a_shard_is_not_an_entry_is_passed_over_and_the_rest_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd: str
) -> None:
    """Listed first: an entry another run removes after the listing (its ``stat`` fails), or a directory named as
    an entry."""
    code = _cache(tmp_path)
    _entry(code, "ab" + "1" * 62, 10, age=10)
    if odd == "a-directory":
        (code / "ab" / ("0" * 62)).mkdir()
        _scandir_in_order(monkeypatch, first="0" * 62)
    else:
        _entry(code, "ab" + "0" * 62, 10, age=10)
        _scandir_in_order(monkeypatch, first="0" * 62, vanish="0" * 62)
    assert cache_info(code.parent).entries == 1


def test_a_shard_that_cannot_be_listed_is_passed_over_and_the_others_still_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = _cache(tmp_path)
    _entry(code, "01" + "1" * 62, 10, age=10)
    _entry(code, "02" + "2" * 62, 10, age=10)
    real = os.scandir

    def scandir(path: str | os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
        if Path(path).name == "01":
            raise PermissionError(13, "Permission denied", str(path))
        with real(path) as found:
            return iter(sorted(found, key=lambda e: e.name))  # shard 01 first

    monkeypatch.setattr(os, "scandir", scandir)
    assert cache_info(code.parent).entries == 1


def test_clearing_also_removes_a_killed_run_s_temporary_and_its_emptied_shard(tmp_path: Path) -> None:
    code = _cache(tmp_path)
    stale = _stale_temporary(code)
    _entry(code, "cd" + "2" * 62, 10, age=10)
    assert clear_cache(code.parent)[0] == 1  # the temporary is not counted as an entry
    assert not stale.exists()
    assert list(code.iterdir()) == []


def _open_descriptors() -> int:
    return len(os.listdir("/dev/fd"))


def test_a_tag_totals_or_stub_entry_that_is_a_directory_is_not_read_and_leaves_no_descriptor_open(
    tmp_path: Path,
) -> None:
    """``open()`` of a directory's descriptor raises and leaves the descriptor open: every reader of the cache's
    own files looks at what it opened before reading it."""
    from hatch_pyc._stubs import _read_entry

    code = _cache(tmp_path)
    (code.parent / "stats.json").mkdir()
    (code / "ab" / ("c" * 62)).mkdir(parents=True, mode=0o700)
    before = _open_descriptors()
    for _ in range(3):
        assert cache_info(code.parent).hits == 0
        assert _read_entry(code, "ab" + "c" * 62) is None
    (code.parent / "CACHEDIR.TAG").unlink()
    (code.parent / "CACHEDIR.TAG").mkdir()
    for _ in range(3):
        with pytest.raises(InvalidInput, match="not a hatch-pyc compile cache"):
            cache_info(code.parent)
    assert _open_descriptors() == before


def test_a_directory_owned_by_a_lower_uid_is_not_trusted_either() -> None:
    """Any owner but the user, above or below their uid: as root the check runs as ``nobody`` (uid 65534) on a
    directory of root's (uid 0); as anyone else, on ``/``."""
    with tempfile.TemporaryDirectory() as scratch:  # pytest's own are private to root: nobody could not enter
        base = Path(scratch)
        base.chmod(0o755)
        assert _untrusted(base) == ""  # the user's own (this runs the check here too, where coverage sees it)
        theirs = base / "roots" if os.geteuid() == 0 else Path("/")
        python = python_that_obeys_permissions(base)
        if os.geteuid() == 0:
            theirs.mkdir(mode=0o755)
        check = (
            "import pathlib, sys; from hatch_pyc._cache import _untrusted; print(_untrusted(pathlib.Path(sys.argv[1])))"
        )
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run([*python, "-c", check, str(theirs)], capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "owned by another user (uid 0)"


def test_a_link_named_as_an_entry_is_not_an_entry(tmp_path: Path) -> None:
    """``code/ab/<62 hex>`` a link to a file elsewhere: not counted, not served, and not followed by ``clear``."""
    code = _cache(tmp_path)
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    (code / "ab").mkdir(mode=0o700)
    (code / "ab" / ("4" * 62)).symlink_to(outside)
    assert cache_info(code.parent).entries == 0
    assert clear_cache(code.parent) == (0, 0)
    assert outside.read_bytes() == b"precious"


def test_totals_that_cannot_be_read_count_as_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error reading ``stats.json`` (the tag read before it succeeds) is no totals, not a failure."""
    code = _cache(tmp_path)
    record_run(code, 4, 0)
    real = os.fstat
    calls: list[int] = []

    def fstat(fd: int) -> os.stat_result:
        calls.append(fd)
        if len(calls) == 2:  # the tag, then the totals
            raise OSError(5, "Input/output error")
        return real(fd)

    before = _open_descriptors()
    monkeypatch.setattr(os, "fstat", fstat)
    info = cache_info(code.parent)
    monkeypatch.undo()
    assert len(calls) == 2
    assert (info.hits, info.misses) == (0, 0)
    assert _open_descriptors() == before
    assert cache_info(code.parent).hits == 4


def test_a_cache_another_run_is_making_is_still_a_cache(tmp_path: Path) -> None:
    """Between its ``mkdir`` and its tag, a run making the cache leaves its temporaries (the tag, a probe of an
    interpreter) where a second run looks: they are the cache's own, not files of the user's."""
    root = tmp_path / "cache"
    (root / "interpreters").mkdir(parents=True, mode=0o700)
    (root / "CACHEDIR.TAG.4242-0a1b2c3d.tmp").write_text("Signature: 8a47")
    (root / "interpreters" / ("e" * 16 + ".json.4242-0a1b2c3d.tmp")).write_text("{")  # a probe being written
    (root / "interpreters" / ("f" * 16 + ".4242.tmp")).write_text("{")  # as earlier versions named it
    (root / "packs").mkdir(mode=0o700)
    (root / "packs" / ("0" * 16 + ".pack")).write_bytes(b"")  # a worker of a run that has not tagged it yet
    (root / "packs" / ("1" * 16 + ".pack.4242.tmp")).write_bytes(b"")
    assert open_cache(True, root) == (root / "code", "")
    for theirs in ("CACHEDIR.TAG.tmp", "notes.tmp", "stats.json.x.tmp"):  # only those names, not any .tmp
        other = tmp_path / theirs.replace(".", "-")
        other.mkdir(mode=0o700)
        (other / theirs).write_text("mine")
        assert open_cache(True, other)[0] is None, theirs


def _open_when_all_are_ready(root: Path, start: threading.Barrier, got: list[tuple[Path | None, str]]) -> None:
    start.wait()
    got.append(open_cache(True, root))


def test_threads_making_one_cache_at_once_all_get_it(tmp_path: Path) -> None:
    """The build hook's compile and its stubs open the cache at the same moment, as two runs on one machine may:
    on a cache not made yet, none of them may take the others' temporary tag for a file of the user's."""
    for attempt in range(20):
        root = tmp_path / f"cache-{attempt}"
        start = threading.Barrier(8)
        got: list[tuple[Path | None, str]] = []
        workers = [threading.Thread(target=_open_when_all_are_ready, args=(root, start, got)) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert got == [(root / "code", "")] * 8, got
        assert sorted(os.listdir(root)) == ["CACHEDIR.TAG", "code", "packs"]


def test_the_temporary_tag_a_run_writes_is_one_another_run_takes_for_the_cache_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment the tag is renamed into place, its temporary is in the directory: a run looking then still
    finds a cache being made, not a file of the user's."""
    root = tmp_path / "cache"
    seen: list[str] = []
    real = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(_not_a_cache(root))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert open_cache(True, root) == (root / "code", "")
    assert seen == [""]


@pytest.mark.parametrize(
    ("mine", "named"),
    [
        ("stats.json.123.tmp", "stats.json.123.tmp"),  # named like an old temporary of the totals
        ("stats.json", "stats.json"),  # totals come after the tag: untagged, they are the user's
        (
            "CACHEDIR.TAG.1-0a1b2c3d.tmp/thesis.tex",
            "CACHEDIR.TAG.1-0a1b2c3d.tmp",
        ),  # a directory, not a tag being written
        ("interpreters/notes.1.tmp", "interpreters/notes.1.tmp"),  # not a probe's name
        ("interpreters/settings.json", "interpreters/settings.json"),
        ("packs/notes.txt", "packs/notes.txt"),  # not a pack's name
        ("packs/0123456789abcdef.pack.old", "packs/0123456789abcdef.pack.old"),
        ("packs/0123456789abcdef.pack/chapter1.tex", "packs/0123456789abcdef.pack"),  # a directory, named as a pack
    ],
)
def test_a_directory_of_yours_is_never_taken_for_a_cache_being_made(tmp_path: Path, mine: str, named: str) -> None:
    """Found by an adversarial review: names that only look like the cache's own (its temporaries, its totals, a
    probe) in a directory without the tag are the user's, and the directory is left alone."""
    root = tmp_path / "mine"
    (root / mine).parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    (root / mine).write_text("my precious")
    before = snapshot(root)
    assert open_cache(True, root) == (
        None,
        f"compile cache {root} not used: it holds files the cache did not make ({named}); "
        "name an empty or new directory",
    )
    assert snapshot(root) == before


@pytest.mark.parametrize("inner", ["code", "packs"])
def test_a_code_directory_that_is_a_link_is_never_written_through(tmp_path: Path, inner: str) -> None:
    """``<cache>/code`` or ``<cache>/packs`` linked to a directory elsewhere: nothing is written outside the directory
    named."""
    linked = _cache(tmp_path).parent / inner
    linked.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    linked.symlink_to(elsewhere, target_is_directory=True)
    assert open_cache(True, linked.parent) == (
        None,
        f"compile cache {linked} not used: a link; the cache's {inner} directory must be a directory",
    )
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("inner", ["code", "packs", "interpreters"])
def test_a_link_named_as_the_cache_s_own_directory_makes_a_directory_yours(tmp_path: Path, inner: str) -> None:
    """A directory without the tag whose ``code``, ``packs`` or ``interpreters`` is a link to a directory (empty, as a
    cache being made would have it): the link is not the cache's, the directory is left alone, and nothing is written
    where the link points."""
    root = tmp_path / "mine"
    root.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (root / inner).symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(root)
    assert open_cache(True, root) == (
        None,
        f"compile cache {root} not used: it holds files the cache did not make ({inner}); "
        "name an empty or new directory",
    )
    assert snapshot(root) == before and list(elsewhere.iterdir()) == []
