"""Finding and describing target CPythons."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hatch_pyc import Interpreter, InvalidTarget, find_interpreter, find_interpreters
from hatch_pyc._targets import describe_interpreter


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
    monkeypatch.setenv("HATCH_PYC_CACHE_DIR", str(tmp_path))
    describe_interpreter.cache_clear()
    first = describe_interpreter(sys.executable)
    (cached,) = (tmp_path / "interpreters").glob("*.json")
    describe_interpreter.cache_clear()
    assert describe_interpreter(sys.executable) == first
    assert cached.exists()


def test_find_interpreters_reports_each_version() -> None:
    found = find_interpreters(["3.99", f"{sys.version_info[0]}.{sys.version_info[1]}"])
    assert found["3.99"] is None
    assert found[f"{sys.version_info[0]}.{sys.version_info[1]}"] is not None
