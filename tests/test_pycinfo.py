"""Decoding pyc headers."""

from __future__ import annotations

import dataclasses
import importlib.util
import marshal
import py_compile
import struct
import sys
from pathlib import Path

import pytest
from conftest import run_cli, run_python

from hatch_pyc import Interpreter, InvalidPyc, parse_header, read_code_info, read_header
from hatch_pyc._pycinfo import RELEASED_MAGIC, decode_limits, python_version_of_magic


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


# CPython's own allocation of magic numbers to versions, transcribed from its launcher (PC/launcher.c,
# ``magic_values``), not from hatch-pyc's table: 3.8 took 3400-3419, 3.9 3420-3429, 3.10 3430-3449, and
# "50 magic numbers per version from here on", so 3.11 took 3450-3499, 3.12 3500-3549 and so on.
CPYTHON_ALLOCATION = [(3400, 3419, "3.8"), (3420, 3429, "3.9"), (3430, 3449, "3.10")] + [
    (3450 + 50 * i, 3499 + 50 * i, f"3.{11 + i}") for i in range(5)
]


@pytest.mark.parametrize(("low", "high", "version"), CPYTHON_ALLOCATION)
def test_every_number_cpython_allocated_to_a_version_names_it(low: int, high: int, version: str) -> None:
    """The pre-releases of each version used numbers from its block: the first and last of the block name
    it, and the numbers just outside name the neighbouring version, or nothing past the ends."""
    blocks = {(lo, hi): v for lo, hi, v in CPYTHON_ALLOCATION}
    before = next((v for (lo, hi), v in blocks.items() if hi == low - 1), None)
    after = next((v for (lo, hi), v in blocks.items() if lo == high + 1), None)
    assert [python_version_of_magic(n) for n in (low - 1, low, low + 1, high - 1, high, high + 1)] == [
        before,
        version,
        version,
        version,
        version,
        after,
    ]


def test_each_released_number_lies_in_its_versions_block() -> None:
    """The released numbers (the ones no interpreter here can confirm, 3.8 and 3.9, as CPython's
    ``importlib/_bootstrap_external.py`` lists them: 3.8b4 3413, 3.9a2 3425) sit in their blocks."""
    assert {n: v for n, v in RELEASED_MAGIC.items() if v in ("3.8", "3.9")} == {3413: "3.8", 3425: "3.9"}
    for number, version in RELEASED_MAGIC.items():
        assert python_version_of_magic(number) == version


def _pyc_bytes(tmp_path: Path, mode: py_compile.PycInvalidationMode) -> bytes:
    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    return Path(
        py_compile.compile(str(src), cfile=str(tmp_path / "m.pyc"), invalidation_mode=mode, doraise=True)
    ).read_bytes()


@pytest.mark.parametrize(
    "mode", [py_compile.PycInvalidationMode.TIMESTAMP, py_compile.PycInvalidationMode.CHECKED_HASH]
)
def test_a_whole_pyc_given_to_parse_header_is_read_by_its_first_16_bytes(
    tmp_path: Path, mode: py_compile.PycInvalidationMode
) -> None:
    data = _pyc_bytes(tmp_path, mode)
    assert len(data) > 16
    whole, header = parse_header(data), parse_header(data[:16])
    assert whole == header
    if mode is py_compile.PycInvalidationMode.TIMESTAMP:
        assert (whole.source_mtime, whole.source_size) == (struct.unpack("<I", data[8:12])[0], 6)
    else:
        assert whole.source_hash == importlib.util.source_hash(b"X = 1\n") and len(whole.source_hash) == 8


def test_fifteen_bytes_are_too_short() -> None:
    with pytest.raises(InvalidPyc, match=r"^x\.pyc: 15 bytes, too short for a pyc header \(16 bytes\)$"):
        parse_header(importlib.util.MAGIC_NUMBER + b"\x00" * 11, "x.pyc")


def test_headers_and_code_infos_are_values(tmp_path: Path) -> None:
    """Both are frozen dataclasses: hashable, equal by value, not changed in place."""
    pyc = tmp_path / "m.pyc"
    pyc.write_bytes(_pyc_bytes(tmp_path, py_compile.PycInvalidationMode.UNCHECKED_HASH))
    header, info = read_header(pyc), read_code_info(pyc)
    assert info is not None and info.dis == ""  # without with_dis, no disassembly
    assert len({header, read_header(pyc)}) == 1 and len({info, read_code_info(pyc)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.flags = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]


def test_a_read_error_names_the_file_and_the_reason() -> None:
    """``/proc/self/mem`` is a regular file whose first page cannot be read (EIO): a real read error."""
    with pytest.raises(InvalidPyc, match=r"^/proc/self/mem: cannot read it \(Input/output error\)$"):
        read_header("/proc/self/mem")


def test_a_pyc_that_cannot_be_opened_names_the_file_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pyc"
    with pytest.raises(InvalidPyc) as caught:
        read_header(missing)
    assert str(caught.value) == f"{missing}: cannot read it (No such file or directory)"


def test_what_decoding_may_cost_is_what_the_docs_say() -> None:
    """docs/safety.md: 256 MiB plus 64 times the file size, 60 s plus 5 s per MiB."""
    assert decode_limits(0) == (256 << 20, 60.0)
    assert decode_limits(1 << 20) == ((256 + 64) << 20, 65.0)
    assert decode_limits(3 << 19) == (256 * 2**20 + 64 * 3 * 2**19, 67.5)


def _pyc_of_magic(tmp_path: Path, number: int) -> Path:
    pyc = tmp_path / f"m{number}.pyc"
    pyc.write_bytes(struct.pack("<H", number) + b"\r\n" + b"\x00" * 12 + b"\xe3")
    return pyc


@pytest.mark.parametrize("step", [-1, 1], ids=["earlier", "later"])
def test_a_pre_release_number_of_an_installed_version_is_not_decoded_by_the_release(tmp_path: Path, step: int) -> None:
    """The numbers either side of the running CPython's name its version (an earlier pre-release, a later
    development build), but the release cannot read them: no code info (rather than loading the pyc in an
    interpreter of another bytecode)."""
    number = int.from_bytes(importlib.util.MAGIC_NUMBER[:2], "little") + step
    pyc = _pyc_of_magic(tmp_path, number)
    assert read_header(pyc).python == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert read_code_info(pyc) is None


def test_a_version_with_no_interpreter_here_gives_no_code_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing on PATH, no pyenv and no uv Pythons, only the running CPython is found: a 3.8 pyc's
    header is read, its code is not (no interpreter that could load it)."""
    for name, value in {
        "PATH": str(tmp_path),
        "HOME": str(tmp_path),
        "PYENV_ROOT": "",
        "UV_PYTHON_INSTALL_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    pyc = _pyc_of_magic(tmp_path, 3413)
    assert read_header(pyc).python == "3.8"
    assert read_code_info(pyc) is None


@pytest.mark.parametrize(("stderr", "said"), [("one\\ntwo\\nthree", "three"), ("", "exit status -11")])
def test_a_decoder_killed_by_a_signal_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, said: str
) -> None:
    """Fault injection: the interpreter that decodes the pyc (the running one, here a stand-in) dies of SIGSEGV
    after writing ``stderr``; the error names the last line it wrote, or the exit status."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nprintf '{stderr}' >&2\nkill -SEGV $$\n")
    fake.chmod(0o755)
    pyc = tmp_path / "m.pyc"
    pyc.write_bytes(_pyc_bytes(tmp_path, py_compile.PycInvalidationMode.UNCHECKED_HASH))
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(InvalidPyc) as caught:
        read_code_info(pyc)
    assert str(caught.value) == f"{pyc}: the header is valid but the code does not load ({said})"


def test_a_pyc_nested_deeper_than_dis_can_follow_is_refused_by_name(tmp_path: Path) -> None:
    """998 code objects each holding the next (marshal's own depth limit allows 1000) load, but ``dis`` recurses
    once per level and runs out of stack: the decoder refuses it as too deep, not as too big."""
    code = compile("pass", "m.py", "exec")
    for _ in range(998):
        code = compile("pass", "m.py", "exec").replace(co_consts=(code,))
    pyc = tmp_path / "deep.pyc"
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + b"\x00" * 12 + marshal.dumps(code))
    info = read_code_info(pyc)
    assert info is not None and info.name == "<module>"
    with pytest.raises(InvalidPyc) as caught:
        read_code_info(pyc, with_dis=True)
    assert str(caught.value) == (
        f"{pyc}: decoding it nests objects deeper than the interpreter can follow; refused (a damaged or hostile pyc)"
    )


def test_a_name_with_a_line_break_does_not_forge_lines_of_the_listing(tmp_path: Path, target: Interpreter) -> None:
    """Found by an adversarial review: ``inspect --dis`` escaped control characters but printed a newline inside a
    name as it was, so a crafted pyc could add lines of its own to the listing."""
    pyc = tmp_path / "names.pyc"
    run_python(
        target,
        "import importlib.util, marshal\n"
        "code = compile('def f(a):\\n    return a.b\\nx = f\\n', 'm.py', 'exec')\n"
        "code = code.replace(co_names=tuple(n + '\\nFORGED line' for n in code.co_names))\n"
        f"open({str(pyc)!r}, 'wb').write(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))\n",
    )
    proc = run_cli("inspect", str(pyc), "--dis", check=True)
    lines = proc.stdout.splitlines()
    assert any("\\nFORGED line" in line for line in lines), proc.stdout
    assert not any(line.startswith("FORGED") for line in lines), proc.stdout
