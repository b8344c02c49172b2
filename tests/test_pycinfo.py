"""Decoding pyc headers."""

from __future__ import annotations

import importlib.util
import py_compile
import struct
from pathlib import Path

import pytest
from conftest import run_python

from hatch_pyc import Interpreter, InvalidPyc, parse_header, read_code_info, read_header
from hatch_pyc._pycinfo import RELEASED_MAGIC, python_version_of_magic


@pytest.mark.parametrize(
    ("mode", "name"),
    [
        (py_compile.PycInvalidationMode.TIMESTAMP, "timestamp"),
        (py_compile.PycInvalidationMode.CHECKED_HASH, "checked-hash"),
        (py_compile.PycInvalidationMode.UNCHECKED_HASH, "unchecked-hash"),
    ],
)
def test_headers_written_by_py_compile(tmp_path: Path, mode: py_compile.PycInvalidationMode, name: str) -> None:
    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    pyc = Path(py_compile.compile(str(src), cfile=str(tmp_path / "m.pyc"), invalidation_mode=mode, doraise=True))
    header = read_header(pyc)
    assert header.magic == importlib.util.MAGIC_NUMBER
    assert header.invalidation_mode == name
    if name == "timestamp":
        assert header.source_mtime == int(src.stat().st_mtime)
        assert header.source_size == 6
        assert header.describe()["source_size"] == 6
    else:
        assert header.source_hash == importlib.util.source_hash(src.read_bytes())
    info = read_code_info(pyc)
    assert info is not None and info.name == "<module>"


def test_the_magic_table_names_each_target_as_the_target_itself_says(target: Interpreter, tmp_path: Path) -> None:
    """Asked of each interpreter, never copied from the table (nor from hatch-pyc's own probe of it)."""
    answer = run_python(
        target, "import importlib.util, sys; print(importlib.util.MAGIC_NUMBER.hex(), '%d.%d' % sys.version_info[:2])"
    )
    magic_hex, minor = answer.stdout.split()
    magic = bytes.fromhex(magic_hex)
    assert magic[2:] == b"\r\n"
    number = int.from_bytes(magic[:2], "little")
    if number > max(RELEASED_MAGIC) and minor not in RELEASED_MAGIC.values():
        # a CPython newer than this hatch-pyc (an alpha): named unknown, never guessed
        assert python_version_of_magic(number) is None
        return
    assert RELEASED_MAGIC[number] == minor  # a final release's number is in the table, under its version
    assert python_version_of_magic(number) == minor
    # Its pre-releases bumped the number up to it: the one before it names the same version.
    assert python_version_of_magic(number - 1) == minor
    # And a pyc it writes itself is read as its own.
    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    run_python(target, f"import py_compile; py_compile.compile({str(src)!r}, cfile={str(src) + 'c'!r}, doraise=True)")
    header = read_header(tmp_path / "m.pyc")
    assert (header.magic, header.python) == (magic, minor)


def test_magic_numbers_outside_the_table_are_unknown_not_guessed() -> None:
    newest = max(RELEASED_MAGIC)
    assert python_version_of_magic(newest + 100) is None  # a CPython newer than this hatch-pyc
    assert python_version_of_magic(62211) is None  # Python 2.7


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"short", "5 bytes, too short"),
        (b"\x00" * 16, "not a pyc file"),
        (struct.pack("<H", 3531) + b"\r\n" + struct.pack("<I", 8) + b"\x00" * 8, "unknown header flags"),
    ],
)
def test_bad_headers_name_the_file(data: bytes, message: str) -> None:
    with pytest.raises(InvalidPyc, match=f"x.pyc: .*{message}"):
        parse_header(data, "x.pyc")


def test_a_pyc_whose_code_is_damaged(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pyc"
    bad.write_bytes(importlib.util.MAGIC_NUMBER + b"\x00" * 12 + b"\xff garbage")
    with pytest.raises(InvalidPyc, match=r"bad\.pyc: the header is valid but the code does not load"):
        read_code_info(bad)
