"""Finding and describing target CPythons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from hatch_pyc import Interpreter, InvalidTarget, _targets, find_interpreter, find_interpreters
from hatch_pyc._targets import OLDEST_TARGET, describe_interpreter, discover_interpreters


def test_every_spelling_of_a_version_finds_it(target: Interpreter) -> None:
    major, minor = target.version[:2]
    for spec in (f"{major}.{minor}", f"python{major}.{minor}", f"cp{major}{minor}", target.executable):
        found = find_interpreter(spec)
        assert found.version[:2] == (major, minor), spec
        assert found.magic == target.magic
        assert found.cache_tag == f"cpython-{major}{minor}"
        assert found.python_tag == f"cp{major}{minor}"


def test_default_is_the_running_interpreter() -> None:
    assert find_interpreter(None).version == tuple(sys.version_info[:3])


def test_a_venv_directory_names_its_interpreter(tmp_path: Path) -> None:
    import venv

    venv.create(tmp_path / "v", with_pip=False)
    found = find_interpreter(str(tmp_path / "v"))
    assert found.version[:2] == tuple(sys.version_info[:2])
    assert Path(found.purelib).is_relative_to(tmp_path / "v")


def test_missing_targets_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidTarget, match=r"no CPython 3\.99 found"):
        find_interpreter("3.99")
    with pytest.raises(InvalidTarget, match="no such interpreter on PATH"):
        find_interpreter("python-nonexistent")
    with pytest.raises(InvalidTarget, match="no such file"):
        find_interpreter(str(tmp_path / "missing" / "python"))
    script = tmp_path / "broken"
    script.write_text("#!/bin/sh\necho 'boom' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(InvalidTarget, match=r"does not run as a Python interpreter \(boom\)"):
        describe_interpreter(str(script))


def test_the_probe_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second describe reads the cache instead of starting the interpreter again."""
    monkeypatch.setenv("HATCH_PYC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("HATCH_PYC_NO_CACHE", raising=False)
    describe_interpreter.cache_clear()
    try:
        first = describe_interpreter(sys.executable)
        (cached,) = (tmp_path / "interpreters").glob("*.json")
        describe_interpreter.cache_clear()

        def no_probe(executable: str) -> dict[str, object]:
            raise AssertionError(f"{executable} was probed although its cached description is valid")

        monkeypatch.setattr(_targets, "_probe", no_probe)
        assert describe_interpreter(sys.executable) == first
    finally:
        describe_interpreter.cache_clear()
    assert cached.exists()


def test_a_stale_cache_entry_is_probed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter replaced at the same path (an upgrade) is asked again, not taken from the cache."""
    monkeypatch.setenv("HATCH_PYC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HATCH_PYC_NO_CACHE", raising=False)
    fake = _fake_interpreter(tmp_path / "bin" / "python3", version=(3, 98, 0))
    os.utime(fake, ns=(1_000_000_000, 1_000_000_000))
    probed: list[str] = []
    real_probe = _targets._probe

    def counting_probe(executable: str) -> dict[str, object]:
        probed.append(executable)
        return real_probe(executable)

    monkeypatch.setattr(_targets, "_probe", counting_probe)
    describe_interpreter.cache_clear()
    try:
        assert describe_interpreter(str(fake)).version == (3, 98, 0)
        (cached,) = (tmp_path / "cache" / "interpreters").glob("*.json")
        old_stamp = json.loads(cached.read_text())["stamp"]
        # Same path, same size (3.98 -> 3.99), same inode: only the mtime in the stamp tells them apart.
        _fake_interpreter(fake, version=(3, 99, 0))
        os.utime(fake, ns=(2_000_000_000, 2_000_000_000))
        describe_interpreter.cache_clear()
        assert describe_interpreter(str(fake)).version == (3, 99, 0)
    finally:
        describe_interpreter.cache_clear()
    assert probed == [str(fake), str(fake)]
    saved = json.loads(cached.read_text())
    assert saved["stamp"] != old_stamp and saved["info"]["version"] == [3, 99, 0]  # the cache is renewed


def test_find_interpreters_reports_each_version() -> None:
    found = find_interpreters(["3.99", f"{sys.version_info[0]}.{sys.version_info[1]}"])
    assert found["3.99"] is None
    assert found[f"{sys.version_info[0]}.{sys.version_info[1]}"] is not None


def _fake_interpreter(path: Path, *, version: tuple[int, int, int], gil_disabled: bool = False) -> Path:
    """A stand-in that answers hatch-pyc's probe as a CPython we cannot install here would."""
    info = {
        "executable": str(path),
        "implementation": "cpython",
        "version": list(version),
        "releaselevel": "alpha",
        "magic": "ff0e0d0a",
        "cache_tag": f"cpython-{version[0]}{version[1]}",
        "stdlib": "",
        "purelib": "",
        "platlib": "",
        "gil_disabled": gil_disabled,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{json.dumps(info)}'\n")
    path.chmod(0o755)
    return path


def test_discovery_has_no_last_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A python3.99 on PATH is found like any other: no list of versions ends at a release."""
    bin_dir = tmp_path / "bin"
    _fake_interpreter(bin_dir / "python3.99", version=(3, 99, 0))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HATCH_PYC_NO_CACHE", "1")
    describe_interpreter.cache_clear()
    found = {interp.minor: interp for interp in discover_interpreters()}
    assert found["3.99"].executable == str(bin_dir / "python3.99")
    assert find_interpreters()["3.99"] == found["3.99"]
    describe_interpreter.cache_clear()


def test_each_discovered_interpreter_is_the_version_it_is_filed_under() -> None:
    found = discover_interpreters()
    assert found, "no CPython found at all"
    assert [i.version for i in found] == sorted(i.version for i in found)
    for interp in found:
        proc = subprocess.run(
            [interp.executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stdout.strip() == interp.minor
        assert interp.version[:2] >= OLDEST_TARGET


@pytest.mark.parametrize("spec", ["3.13t", "python3.14t", "cp315t"])
def test_free_threaded_builds_are_refused_with_what_to_use_instead(spec: str) -> None:
    minor = spec.rstrip("t")[-2:]
    with pytest.raises(InvalidTarget, match=rf"free-threaded CPython 3\.{minor} .*--python 3\.{minor}\), whose pycs"):
        find_interpreter(spec)


def test_a_free_threaded_interpreter_given_by_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HATCH_PYC_NO_CACHE", "1")
    fake = _fake_interpreter(tmp_path / "python3.14t", version=(3, 14, 0), gil_disabled=True)
    proc = run_cli("compile", "--python", str(fake), str(tmp_path), env={"HATCH_PYC_NO_CACHE": "1"})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert (
        "is a free-threaded CPython 3.14 (3.14t): compile with its default build instead (--python 3.14)" in proc.stderr
    )


def test_a_broken_python_earlier_on_path_does_not_hide_a_working_one(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"python{target.minor}"
    broken = tmp_path / "broken" / name
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho garbage\n")
    broken.chmod(0o755)
    working = tmp_path / "working" / name
    working.parent.mkdir()
    working.symlink_to(target.executable)
    monkeypatch.setenv("PATH", os.pathsep.join([str(broken.parent), str(working.parent), os.environ["PATH"]]))
    monkeypatch.setenv("HATCH_PYC_NO_CACHE", "1")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.pyenv, no uv Pythons: PATH alone
    describe_interpreter.cache_clear()
    try:
        found = find_interpreter(target.minor)
    finally:
        describe_interpreter.cache_clear()
    assert found.version == target.version and found.magic == target.magic
