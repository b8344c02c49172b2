"""The compile cache: a warm cache gives the bytes a cold one gives, a changed source is never served old code,
a damaged entry is never served, runs may share a cache, and a cache others could write is not used."""

from __future__ import annotations

import calendar
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import run_cli, snapshot, write_tree
from test_wheel import make_wheel

from hatch_pyc import Interpreter, PycOptions, compile_tree, convert_wheel
from hatch_pyc._cache import cache_info, open_cache
from hatch_pyc._pack import entry_payload, make_entry, pack_index, write_pack

SOURCES = {
    "pkg/__init__.py": '"""Package."""\nfrom pkg.mod import VALUE\n',
    "pkg/mod.py": '"""Docs."""\nVALUE = 41 + 1\n\ndef f(x):\n    """Doc."""\n    assert x\n    return {1, 2.5, "a"}\n',
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": "import os\nNAME = os.sep\n",
}


def _packs(cache: Path) -> list[Path]:
    return sorted((cache / "packs").glob("*.pack"))


def _places(pack: Path) -> list[tuple[bytes, int, int]]:
    """``(key, offset, length)`` of each entry ``pack``'s index lists."""
    with open(pack, "rb") as handle:
        return pack_index(handle.fileno(), pack.stat().st_size) or []


def _keys(cache: Path) -> list[bytes]:
    """The keys of the code in the cache, each once however many packs hold it."""
    return sorted({key for pack in _packs(cache) for key, _, _ in _places(pack)})


def _damage(pack: Path, how: str) -> None:
    """``pack`` made unusable as ``how`` says, in place."""
    data = bytearray(pack.read_bytes())
    places = _places(pack)
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped":  # the last byte of every entry: the index still names them
        for _, offset, length in places:
            data[offset + length - 1] ^= 0x01
    elif how == "empty":
        data = bytearray()
    elif how == "other-format":
        data[:17] = b"hatch-pyc pack 9\n"
    elif how == "swapped":  # every key's record names the next key's entry: whole entries, under other keys
        start = len(data) - 4 - 44 * len(places)
        for number, (key, _, _) in enumerate(places):
            _, offset, length = places[(number + 1) % len(places)]
            data[start + 44 * number : start + 44 * (number + 1)] = struct.pack("<32sQI", key, offset, length)
    if how in ("directory", "fifo"):
        pack.unlink()
        pack.mkdir() if how == "directory" else os.mkfifo(pack)
    else:
        pack.write_bytes(bytes(data))


def _pycs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.pyc"))}


def _compile(tree: Path, target: Interpreter, cache: Path | None, **options: object) -> dict[str, object]:
    """``hatch-pyc compile`` as a user runs it; its JSON summary."""
    summary = tree.parent / f"{tree.name}.json"
    args = ["compile", str(tree), "--python", target.executable, "--json", str(summary)]
    args += ["--cache-dir", str(cache)] if cache is not None else ["--no-cache"]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)] if value is not True else [f"--{key.replace('_', '-')}"]
    run_cli(*args, check=True)
    result: dict[str, object] = json.loads(summary.read_text())
    return result


def _fresh(tmp_path: Path, name: str = "app") -> Path:
    """The same tree at the same path, made anew (what an image rebuild does): every mtime alike."""
    tree = tmp_path / name
    shutil.rmtree(tree, ignore_errors=True)
    write_tree(tree, SOURCES)
    for path in tree.rglob("*.py"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    return tree


@pytest.mark.parametrize(
    "levels", [("-O", "0", "-O", "1", "-O", "2"), ("--strip", "-O", "2")], ids=["3-levels", "strip"]
)
def test_a_warm_cache_gives_the_bytes_of_no_cache_on_every_cpython(
    tmp_path: Path, target: Interpreter, levels: tuple[str, ...]
) -> None:
    """Cold, warm and no cache: byte-identical pycs; the warm run compiles nothing and says so."""
    cache = tmp_path / "cache"
    outputs = []
    for how in ("none", "cold", "warm"):
        tree = _fresh(tmp_path)
        args = ["compile", str(tree), "--python", target.executable, *levels, "--json", str(tmp_path / "s.json")]
        args += ["--no-cache"] if how == "none" else ["--cache-dir", str(cache)]
        proc = run_cli(*args, check=True)
        summary = json.loads((tmp_path / "s.json").read_text())
        outputs.append(snapshot(tree))
        if how == "none":
            assert (summary["cache_hits"], summary["cache_misses"]) == (0, 0)
            assert not (cache / "code").exists()
        elif how == "cold":
            assert summary["cache_hits"] == 0 and summary["cache_misses"] == len(_keys(cache)) > 0
        else:
            assert summary["cache_misses"] == 0 and summary["cache_hits"] == len(_keys(cache))
            assert f"{summary['cache_hits']} of {summary['cache_hits']} from the compile cache" in proc.stderr
    assert outputs[0] == outputs[1] == outputs[2]
    assert any(name.endswith(".pyc") for name in outputs[0])


def test_a_source_changed_in_place_with_the_same_size_and_mtime_gets_new_code(tmp_path: Path) -> None:
    """The key is the source's bytes, not its size or mtime: an edit that keeps both is compiled again."""
    cache = tmp_path / "cache"
    here = sys.executable
    tree = write_tree(tmp_path / "app", {"m.py": "VALUE = 1\n"})
    source = tree / "m.py"
    os.utime(source, (1_700_000_000, 1_700_000_000))
    run_cli("compile", str(tree), "--strip", "--cache-dir", str(cache), "--python", here, check=True)
    assert run_python_value(tree, here) == "1"
    tree = write_tree(tmp_path / "app", {"m.py": "VALUE = 2\n"})  # same size, same mtime, same path
    os.utime(source, (1_700_000_000, 1_700_000_000))
    (tree / "m.pyc").unlink()
    run_cli("compile", str(tree), "--strip", "--cache-dir", str(cache), "--python", here, check=True)
    assert run_python_value(tree, here) == "2"


def run_python_value(tree: Path, python: str) -> str:
    proc = subprocess.run(
        [python, "-S", "-c", "import m; print(m.VALUE)"], cwd=tree, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


@pytest.mark.parametrize(
    "damage",
    ["truncated", "flipped", "empty", "other-format", "swapped", "directory", "fifo"],
)
def test_a_damaged_pack_is_never_served_and_its_code_is_stored_anew(tmp_path: Path, damage: str) -> None:
    """Each entry carries the SHA-256 of its key and contents, and a pack its index: a pack cut short, an entry
    changed, a record naming another key's entry, another format, a directory or a FIFO where the pack was is a
    miss for every module in it (never served, never blocking); the run writes what no cache gives and stores
    the code anew, and the next run is served from the new pack though the damaged one is still there."""
    cache = tmp_path / "cache"
    here = sys.executable
    reference = _fresh(tmp_path, "app")
    run_cli("compile", str(reference), "--no-cache", "--python", here, check=True)
    want = _pycs(reference)
    tree = _fresh(tmp_path, "app")
    _compile(tree, _here(), cache)
    keys = _keys(cache)
    (pack,) = _packs(cache)
    _damage(pack, damage)
    tree = _fresh(tmp_path, "app")
    summary = _compile(tree, _here(), cache)
    assert summary["cache_hits"] == 0 and summary["cache_misses"] == len(keys) == len(SOURCES)
    assert _pycs(tree) == want
    assert pack.exists() or pack.is_fifo()
    tree = _fresh(tmp_path, "app")
    summary = _compile(tree, _here(), cache)
    assert (summary["cache_hits"], summary["cache_misses"]) == (len(keys), 0)
    assert _pycs(tree) == want


def _here() -> Interpreter:
    from hatch_pyc import find_interpreter

    return find_interpreter(sys.executable)


def test_two_runs_sharing_a_cache_at_once_both_write_what_no_cache_writes(tmp_path: Path) -> None:
    """Two compiles of the same 200 modules at one path each, on one empty cache at the same time: both succeed
    with the pycs a run without a cache writes, and the cache holds only whole entries, which serve every
    module of a third run."""
    cache = tmp_path / "cache"
    files = {f"pkg/m{i}.py": f"VALUE = {i}\n" + "def f(x):\n    return x * 2\n" * (i % 7) for i in range(200)}
    files["pkg/__init__.py"] = ""
    trees = [write_tree(tmp_path / name, files) for name in ("one", "two")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hatch_pyc", "compile", str(tree), "--cache-dir", str(cache), "--workers", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tree in trees
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert list(cache.rglob("*.tmp")) == []
    for tree in trees:
        shared = _pycs(tree)
        shutil.rmtree(tree / "pkg" / "__pycache__")
        _compile(tree, _here(), None)
        assert _pycs(tree) == shared and len(shared) == 201
        shutil.rmtree(tree / "pkg" / "__pycache__")
        summary = _compile(tree, _here(), cache)
        assert (summary["cache_hits"], summary["cache_misses"]) == (201, 0)
        assert _pycs(tree) == shared


def test_a_cache_other_users_may_write_is_not_used(tmp_path: Path) -> None:
    """Whoever may write the cache could write a consistent entry: a group- or world-writable cache is refused,
    with a warning naming it, and the run compiles everything (and is right)."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    tree = write_tree(tmp_path / "app", {"m.py": "X = 1\n"})
    proc = run_cli("compile", str(tree), "--cache-dir", str(cache), check=True)
    assert f"hatch-pyc: warning: compile cache {cache} not used: writable by other users (mode 777)" in proc.stderr
    assert not (cache / "code").exists()
    assert (tree / "__pycache__").is_dir()
    assert open_cache(True, cache) == (None, f"compile cache {cache} not used: writable by other users (mode 777)")


def test_no_cache_and_the_environment_switch_write_no_cache(tmp_path: Path) -> None:
    """``--no-cache`` and ``HATCH_PYC_NO_CACHE=1`` neither read nor fill the cache."""
    cache = tmp_path / "cache"
    tree = write_tree(tmp_path / "app", {"m.py": "X = 1\n"})
    run_cli("compile", str(tree), "--no-cache", "--cache-dir", str(cache), check=True)
    assert not cache.exists()
    run_cli(
        "compile", str(tree), "--force", env={"HATCH_PYC_NO_CACHE": "1", "HATCH_PYC_CACHE_DIR": str(cache)}, check=True
    )
    assert not cache.exists()
    run_cli("compile", str(tree), "--force", env={"HATCH_PYC_CACHE_DIR": str(cache)}, check=True)
    assert len(_keys(cache)) == 1


def test_the_cache_command_shows_prunes_and_clears_only_what_it_made(tmp_path: Path) -> None:
    """``hatch-pyc cache``: where, how many entries, how big, hit rate; ``prune --max-size`` removes the least
    recently used packs first; ``clear`` removes the cache's own files and nothing else in the directory."""
    cache = tmp_path / "cache"
    _compile(_fresh(tmp_path), _here(), cache, optimize=2)
    (older,) = _packs(cache)
    _compile(_fresh(tmp_path), _here(), cache, optimize=2)  # all hits: no new pack
    assert _packs(cache) == [older]
    _compile(write_tree(tmp_path / "other", {"x.py": "X = 1\n", "y.py": "Y = 2\n"}), _here(), cache, optimize=2)
    (newer,) = set(_packs(cache)) - {older}
    info = json.loads(run_cli("cache", "--cache-dir", str(cache), "--json", check=True).stdout)
    assert info["directory"] == str(cache) and info["entries"] == len(_keys(cache)) == 6
    assert (info["hits"], info["misses"], info["hit_rate"]) == (4, 6, 0.4)
    assert info["bytes"] == sum(p.stat().st_blocks * 512 for p in (older, newer))
    text = run_cli("cache", "--cache-dir", str(cache), check=True).stdout
    assert f"directory: {cache}\n" in text and "entries:   6\n" in text and "40.0% of 10 lookups" in text
    os.utime(newer, (2_000_000_000, 2_000_000_000))  # the older pack is the least recently used
    pruned = run_cli("cache", "prune", "--cache-dir", str(cache), "--max-size", str(newer.stat().st_blocks * 512))
    assert pruned.returncode == 0 and pruned.stdout.startswith("removed 4 entries"), pruned.stdout
    assert _packs(cache) == [newer]
    mine = cache / "notes.txt"
    mine.write_text("the user's\n")
    cleared = run_cli("cache", "clear", "--cache-dir", str(cache), check=True)
    assert cleared.stdout.startswith("removed 2 entries")
    assert sorted(p.name for p in cache.iterdir()) == ["CACHEDIR.TAG", "code", "notes.txt", "packs"]
    assert list((cache / "packs").iterdir()) == [] and list((cache / "code").iterdir()) == []
    bad = run_cli("cache", "prune", "--max-size", "lots", "--cache-dir", str(cache))
    assert bad.returncode == 2 and "not a size: 'lots'" in bad.stderr and "Traceback" not in bad.stderr


def test_a_wheel_rebuilt_with_a_warm_cache_is_byte_identical(tmp_path: Path) -> None:
    """``hatch-pyc wheel`` twice on one wheel with one cache: the second compiles nothing, the wheels are equal,
    and equal to a conversion without a cache. (A module's code is named by its install path, so the cache is
    shared by every conversion of the same module.)"""
    cache = tmp_path / "cache"
    wheel = make_wheel(tmp_path, dict(SOURCES))
    outputs = []
    for how in ("--no-cache", "cold", "warm"):
        out = tmp_path / how.strip("-")
        args = ["wheel", str(wheel), "-o", str(out)]
        args += [how] if how.startswith("--") else ["--cache-dir", str(cache)]
        run_cli(*args, check=True, env={"SOURCE_DATE_EPOCH": "1700000000"})
        (made,) = out.glob("*.whl")
        outputs.append(made.read_bytes())
        if how == "cold":  # each module's code once, deflated for a zip
            assert len(_keys(cache)) == 4 and all(_inflates(stream) for _, stream in _entries(cache).values())
    assert outputs[0] == outputs[1] == outputs[2]
    assert cache_info(cache).hits == 4
    with zipfile.ZipFile(tmp_path / "warm" / made.name) as archive:
        assert "pkg/mod.pyc" in archive.namelist() and "pkg/mod.py" not in archive.namelist()
        assert archive.testzip() is None


def _inflates(stream: bytes) -> bool:
    """Whether ``stream`` is one whole raw deflate stream of marshalled code."""
    reader = zlib.decompressobj(-15)
    try:
        code = reader.decompress(stream)
    except zlib.error:
        return False
    return reader.eof and not reader.unused_data and code[:1] in (b"c", b"\xe3")


def _entries(cache: Path) -> dict[bytes, tuple[bool, bytes]]:
    """Every whole entry in ``cache``: key -> (flag, payload)."""
    found = {}
    for pack in _packs(cache):
        data = pack.read_bytes()
        for key, offset, length in _places(pack):
            payload = entry_payload(key, data[offset : offset + length])
            assert payload is not None
            found[key] = payload
    return found


def test_a_wheel_of_other_times_gets_fresh_headers_around_the_cached_code(tmp_path: Path) -> None:
    """The deflated code a wheel conversion keeps holds no part of the pyc's header: the same modules in a wheel
    with other timestamps, converted with timestamp headers (each from its member's time), are all hits, and the
    wheel is what no cache gives."""
    cache = tmp_path / "cache"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = make_wheel(tmp_path / "first", dict(SOURCES))
    later = dict.fromkeys(SOURCES, (2024, 5, 6, 7, 8, 10))
    second = make_wheel(tmp_path / "second", dict(SOURCES), date_times=later)
    here = _here()

    def convert(wheel: Path, out: str, **cache: object) -> Path:
        options = PycOptions(strip=True, invalidation="timestamp", **cache)  # type: ignore[arg-type]
        (result,) = convert_wheel(wheel, tmp_path / out, [here], options)
        return result.output

    convert(first, "cold", cache_dir=str(cache))
    warm = convert(second, "warm", cache_dir=str(cache))
    assert warm.read_bytes() == convert(second, "none", cache=False).read_bytes()
    assert cache_info(cache).hits == 4 and len(_keys(cache)) == 4  # nothing new was stored
    with zipfile.ZipFile(warm) as archive:
        header = archive.read("pkg/mod.pyc")[:16]
    assert header[8:12] == calendar.timegm((2024, 5, 6, 7, 8, 10, 0, 0, 0)).to_bytes(4, "little")


@pytest.mark.parametrize("bad", ["not-deflate", "cut-short", "more-after-its-end"])
def test_deflated_code_that_does_not_inflate_whole_is_never_served(tmp_path: Path, bad: str) -> None:
    """An entry of deflated code that is whole (its digest matches) but is not exactly one deflate stream (not one
    at all, one cut short, one with bytes after its end) is a miss: the module is compiled and deflated anew, and
    the wheel is what no cache gives."""
    cache = tmp_path / "cache"
    wheel = make_wheel(tmp_path, dict(SOURCES))
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "reference"), "--no-cache", check=True)
    (want,) = (tmp_path / "reference").glob("*.whl")
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "cold"), "--cache-dir", str(cache), check=True)
    planted = []
    for key, (flag, stream) in _entries(cache).items():
        payload = {"not-deflate": b"\xff" * 40, "cut-short": stream[:-3], "more-after-its-end": stream + b"more"}[bad]
        planted.append((key, make_entry(key, flag, payload)))
    with open(cache / "packs" / ("0" * 16 + ".pack"), "wb") as handle:  # read before the cold run's pack
        write_pack(handle, planted)
    out = tmp_path / "warm"
    run_cli("wheel", str(wheel), "-o", str(out), "--cache-dir", str(cache), check=True)
    (made,) = out.glob("*.whl")
    assert made.read_bytes() == want.read_bytes()
    assert (cache_info(cache).hits, cache_info(cache).misses) == (0, 8)


def test_code_kept_for_a_wheel_serves_a_tree_and_code_kept_for_a_tree_serves_a_wheel(tmp_path: Path) -> None:
    """A module is kept once, in the form its run wanted (deflated for a wheel, as it is for pycs written), and
    either form serves both: a tree compiled after a wheel of the same modules is all hits (the code inflated), a
    wheel converted after a tree is all hits (the code deflated, then kept deflated too), and the outputs are what
    no cache gives."""
    here = _here()
    wheel = make_wheel(tmp_path, dict(SOURCES))
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "reference"), "--no-cache", check=True)
    (want,) = (tmp_path / "reference").glob("*.whl")
    reference = _fresh(tmp_path, "reference-tree")
    _compile(reference, here, None)

    wheel_first = tmp_path / "wheel-first"
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "w1"), "--cache-dir", str(wheel_first), check=True)
    tree = _fresh(tmp_path, "tree")
    summary = _compile(tree, here, wheel_first)
    assert (summary["cache_hits"], summary["cache_misses"]) == (4, 0)
    assert _pycs(tree) == _pycs(reference)
    assert len(_keys(wheel_first)) == 4  # inflating stores nothing

    tree_first = tmp_path / "tree-first"
    _compile(_fresh(tmp_path, "tree"), here, tree_first)
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "w2"), "--cache-dir", str(tree_first), check=True)
    assert (cache_info(tree_first).hits, cache_info(tree_first).misses) == (4, 4)
    assert len(_keys(tree_first)) == 8  # each module's code, and now deflated too
    (made,) = (tmp_path / "w2").glob("*.whl")
    assert made.read_bytes() == want.read_bytes()


def test_the_library_default_is_the_environment_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile_tree`` with default options uses ``$HATCH_PYC_CACHE_DIR`` and reports its hits."""
    monkeypatch.setenv("HATCH_PYC_CACHE_DIR", str(tmp_path / "cache"))
    first = compile_tree([_fresh(tmp_path)], PycOptions(levels=(0, 2)), python=sys.executable)
    second = compile_tree([_fresh(tmp_path)], PycOptions(levels=(0, 2)), python=sys.executable)
    assert first.cache_hits == 0 and first.cache_misses > 0
    assert (second.cache_hits, second.cache_misses) == (first.cache_misses, 0)
    off = compile_tree([_fresh(tmp_path)], PycOptions(levels=(0, 2), cache=False), python=sys.executable)
    assert (off.cache_hits, off.cache_misses) == (0, 0)


def test_identical_sources_at_two_paths_keep_their_own_file_names(tmp_path: Path) -> None:
    """The code's file name is part of the key: the same bytes at ``a/errors.py`` and ``b/errors.py`` (or every
    empty ``__init__.py``) are two entries, and a traceback from each names its own file, warm or cold."""
    body = "def fail():\n    raise ValueError('where?')\n"
    files = {"a/__init__.py": "", "a/errors.py": body, "b/__init__.py": "", "b/errors.py": body}
    cache = tmp_path / "cache"
    for run in ("cold", "warm"):
        tree = write_tree(tmp_path / run, files)
        summary = _compile(tree, _here(), cache, strip=True)
        assert summary["cache_hits"] == (4 if run == "warm" else 0)
        proc = subprocess.run(
            [
                sys.executable,
                "-S",
                "-c",
                "import a.errors, b.errors\nfor m in (a.errors, b.errors):\n"
                "    print(m.fail.__code__.co_filename, m.__spec__.loader.get_code(m.__name__).co_filename)",
            ],
            cwd=tree,
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stdout.split() == ["a/errors.py", "a/errors.py", "b/errors.py", "b/errors.py"]
    assert len(_keys(cache)) == 4


def test_cache_commands_refuse_a_directory_that_is_not_a_cache_and_touch_only_entries(tmp_path: Path) -> None:
    """``cache info/prune/clear`` on a directory the cache did not make (no hatch-pyc tag) refuse it (exit 2, one
    line) and change nothing; in a real cache, files that are not entries (other names, other shards) and a
    shard that is a link are never removed or followed."""
    home = tmp_path / "home"
    write_tree(home, {"code/myproj/main.c": "int main;\n", "code/ab/" + "c" * 62: "not ours\n", "stats.json": "{}"})
    before = snapshot(home)
    for action in ("info", "prune", "clear"):
        proc = run_cli("cache", action, "--cache-dir", str(home), "--max-size", "0")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr == (
            f"hatch-pyc: error: {home}: not a hatch-pyc compile cache (no hatch-pyc CACHEDIR.TAG); nothing was changed\n"
        )
    assert snapshot(home) == before
    missing = run_cli("cache", "clear", "--cache-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no compile cache there" in missing.stderr

    cache = tmp_path / "cache"
    tree = _fresh(tmp_path)
    _compile(tree, _here(), cache)
    victim = write_tree(tmp_path / "victim", {"sub/" + "d" * 62: "precious\n", "0123456789abcdef.pack": "mine\n"})
    os.symlink(victim / "sub", cache / "code" / "ee")  # a shard that is a link: never followed
    os.symlink(victim / "0123456789abcdef.pack", cache / "packs" / "0123456789abcdef.pack")  # a pack that is a link
    (cache / "packs" / "fedcba9876543210.pack").mkdir()  # a directory named as a pack
    (cache / "packs" / "fedcba9876543210.pack" / "inside").write_text("mine\n")
    for inner in ("code", "packs"):
        (cache / inner / "README").write_text("mine\n")
    pruned = run_cli("cache", "prune", "--cache-dir", str(cache), "--max-size", "0", check=True)
    assert pruned.stdout.startswith(f"removed {len(SOURCES)} entries")
    cleared = run_cli("cache", "clear", "--cache-dir", str(cache), check=True)
    assert cleared.stdout.startswith("removed 0 entries")
    assert (victim / "sub" / ("d" * 62)).read_text() == "precious\n"
    assert (victim / "0123456789abcdef.pack").read_text() == "mine\n"
    assert (cache / "code" / "README").exists() and (cache / "packs" / "README").exists()
    assert (cache / "packs" / "fedcba9876543210.pack" / "inside").exists()


def test_a_cache_dir_holding_other_files_is_not_taken_over(tmp_path: Path) -> None:
    """``--cache-dir`` naming a directory of the user's (it holds files the cache did not make): not used, with a
    warning naming it; nothing is written there (no tag, no entries), and the run compiles everything."""
    mine = write_tree(tmp_path / "projects", {"code/app/main.py": "print('mine')\n"})
    before = snapshot(mine)
    tree = write_tree(tmp_path / "app", {"m.py": "X = 1\n"})
    proc = run_cli("compile", str(tree), "--cache-dir", str(mine), check=True)
    assert (
        f"hatch-pyc: warning: compile cache {mine} not used: it holds files the cache did not make (code/app); "
        "name an empty or new directory" in proc.stderr
    )
    assert snapshot(mine) == before and (tree / "__pycache__").is_dir()


def test_what_is_not_an_entry_in_the_cache_is_a_miss_and_never_blocks(tmp_path: Path) -> None:
    """A pack whose index names each module's whole, valid entry under the other's key, then FIFOs where the packs
    are; and a totals file that is a FIFO or holds absurd numbers: the run neither hangs nor fails, compiles what it
    did not find, and writes the pycs no cache gives; ``cache info`` still answers."""
    cache = tmp_path / "cache"
    reference = write_tree(tmp_path / "reference", {"a.py": "X = 'one'\n", "b.py": "X = 'two'\n"})
    run_cli("compile", str(reference), "--no-cache", check=True)
    want = _pycs(reference)
    tree = write_tree(tmp_path / "app", {"a.py": "X = 'one'\n", "b.py": "X = 'two'\n"})
    for source in [*reference.glob("*.py"), *tree.glob("*.py")]:
        os.utime(source, (1_700_000_000, 1_700_000_000))
    shutil.rmtree(reference / "__pycache__")
    run_cli("compile", str(reference), "--no-cache", check=True)
    want = _pycs(reference)
    _compile(tree, _here(), cache)
    (pack,) = _packs(cache)
    _damage(pack, "swapped")  # whole, valid entries: each under the other module's key
    (cache / "stats.json").write_text('{"hits": 1e400, "misses": -5, "pruned": 1e300}')
    out = tmp_path / "summary.json"
    for round_ in ("swapped", "fifo"):
        shutil.rmtree(tree / "__pycache__")
        proc = subprocess.run(
            [sys.executable, "-m", "hatch_pyc", "compile", str(tree), "--cache-dir", str(cache), "--json", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert _pycs(tree) == want, round_
        if round_ == "swapped":
            assert json.loads(out.read_text())["cache_misses"] == 2
            for pack in _packs(cache):
                _damage(pack, "fifo")
            (cache / "stats.json").unlink()
            os.mkfifo(cache / "stats.json")
    info = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", "cache", "--cache-dir", str(cache), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(info.stdout)["hits"] == 0


def test_interpreter_descriptions_in_a_cache_others_may_write_are_not_believed(tmp_path: Path) -> None:
    """The interpreter probe's cached description names the program the workers run: from a cache directory others
    may write (mode 777), it is neither read nor written, so a planted description never runs anything."""
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    evil.chmod(0o755)
    env = {"HATCH_PYC_CACHE_DIR": str(cache)}
    tree = write_tree(tmp_path / "app", {"m.py": "X = 1\n"})
    # what a first, honest run would have cached, then rewritten to name another program
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from hatch_pyc._targets import _cache_file; import sys; print(_cache_file(sys.executable)[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    planted = Path(probe.stdout.strip())
    assert planted.parent.parent == cache
    planted.parent.mkdir(exist_ok=True)
    planted.parent.chmod(0o777)
    from hatch_pyc._targets import _cache_file, _probe

    stamp = _cache_file(sys.executable)
    assert stamp is not None
    info = _probe(sys.executable)
    info["executable"] = str(evil)
    planted.write_text(json.dumps({"stamp": stamp[1], "info": info}))
    proc = run_cli("compile", str(tree), "--python", sys.executable, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "not used: writable by other users" in proc.stderr
