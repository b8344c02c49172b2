"""Guards of the wheel conversion that the mutation run found untested."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli
from test_wheel import OWN, make_wheel, record_of
from test_wheel_gate import GOOD, _good, _meta, wheel_from

from hatch_pyc import find_interpreter
from hatch_pyc._errors import CompileFailed
from hatch_pyc._wheel import convert_wheel


def test_an_explicit_output_name_with_one_target_is_where_the_wheel_goes(tmp_path: Path) -> None:
    """``output=`` with exactly one target (the build hook's call) is accepted: the wheel is written
    under that name, a complete wheel, and nothing else is written beside it."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = 1\n"})
    named = tmp_path / "dist" / "renamed.whl"
    (result,) = convert_wheel(wheel, None, [find_interpreter(None)], output=named)
    assert result.output == named and result.compiled == ["demo/__init__.py"]
    assert [p.name for p in named.parent.iterdir()] == ["renamed.whl"]
    assert "demo/__init__.pyc" in record_of(named)


INTERRUPT_ONCE_DURING_COMMIT = r"""
import os, signal, sys
from hatch_pyc import _commit, _wheel
from hatch_pyc._errors import Interrupted
from hatch_pyc._targets import find_interpreter
real = _commit.Commit.install
def install(self, tmp, final):
    real(self, tmp, final)
    os.kill(os.getpid(), signal.SIGTERM)  # held until the commit is done
_commit.Commit.install = install
try:
    _wheel.convert_wheel(sys.argv[1], sys.argv[2], [find_interpreter(None)])
except Interrupted as exc:
    print(exc.signum, len(exc.result), sorted(os.listdir(sys.argv[2])))
"""


def test_one_signal_held_during_the_commit_is_reported_as_that_signal(tmp_path: Path) -> None:
    """A single SIGTERM arriving while the one output moves into place is held, then reported as
    :class:`Interrupted` naming SIGTERM and carrying the finished conversion; the output is in place."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_ONCE_DURING_COMMIT, str(wheel), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == f"{int(signal.SIGTERM)} 1 ['demo-1.0-{OWN}-none-any.whl']"
    record_of(out / f"demo-1.0-{OWN}-none-any.whl")


def test_two_signals_held_during_the_commit_are_reported_as_the_first(tmp_path: Path) -> None:
    """SIGINT then SIGTERM arriving while the output moves into place: the commit completes, and the run ends
    with :class:`Interrupted` for the first of them, SIGINT."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    out = tmp_path / "out"
    script = INTERRUPT_ONCE_DURING_COMMIT.replace(
        "os.kill(os.getpid(), signal.SIGTERM)",
        "os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM)",
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(wheel), str(out)], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"{int(signal.SIGINT)} 1 ['demo-1.0-{OWN}-none-any.whl']"
    record_of(out / f"demo-1.0-{OWN}-none-any.whl")


def test_two_inputs_with_one_output_name_are_refused_in_either_order(tmp_path: Path) -> None:
    """Two different files that would be written under one name are refused whichever is named first."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_wheel(tmp_path / "b", {"demo/__init__.py": ""})
    second = make_wheel(tmp_path / "a", {"demo/__init__.py": "X = 1\n"})
    for one, other in ((first, second), (second, first)):
        proc = run_cli("wheel", str(one), str(other), "-o", str(tmp_path / "out"))
        assert proc.returncode == 2, proc.stderr
        assert f"{one} and {other} would both be written as demo-1.0-" in proc.stderr
        assert not (tmp_path / "out").exists()


def test_a_failed_conversion_keeps_a_directory_it_made_that_something_else_wrote_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output directories a failed run created are removed only if empty: a file another writer
    put there meanwhile stays, with its directory, and the error raised is the conversion's own."""
    from hatch_pyc import _wheel

    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = (\n"})
    out = tmp_path / "new" / "deeper"
    real = _wheel.compile_plan

    def someone_else_writes(*args: object, **kwargs: object) -> object:
        (out / "notes.txt").write_text("not hatch-pyc's\n")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_wheel, "compile_plan", someone_else_writes)
    with pytest.raises(CompileFailed, match=r"demo/__init__\.py"):
        convert_wheel(wheel, out, [find_interpreter(None)])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "not hatch-pyc's\n"


def test_a_replaced_output_keeps_every_execute_bit_of_its_mode(tmp_path: Path) -> None:
    """Writing over an existing output keeps all nine permission bits of that file, the others'
    execute bit included (0o755 stays 0o755, 0o701 stays 0o701)."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    (first,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    for mode in (0o755, 0o701):
        first.output.chmod(mode)
        (again,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
        assert again.output == first.output and stat.S_IMODE(again.output.stat().st_mode) == mode
        record_of(again.output)


def test_a_signature_of_the_old_record_is_dropped_and_everything_after_it_kept(tmp_path: Path) -> None:
    """RECORD.jws and RECORD.p7s sign the old RECORD, no longer true: both are left out, wherever they sit among the
    members (here before every module), and every other member is converted."""
    made = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/mod.py": "X = 1\n", "demo/data.txt": "data\n"})
    wheel = tmp_path / "signed" / made.name
    wheel.parent.mkdir()
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(wheel, "w") as signed:  # not in RECORD, and first
        signed.writestr("demo-1.0.dist-info/RECORD.jws", "a signature\n")
        for info in source.infolist():
            signed.writestr(info, source.read(info))
            if info.filename == "demo/__init__.py":
                signed.writestr("demo-1.0.dist-info/RECORD.p7s", "another\n")
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    names = set(record_of(result.output))
    assert {"demo/__init__.pyc", "demo/mod.pyc", "demo/data.txt"} <= names
    assert not any(n.endswith(("RECORD.jws", "RECORD.p7s")) for n in names)


def test_without_stubgen_a_typed_wheel_names_its_first_module_needing_a_stub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed packages both at the wheel's root and under .data/purelib, two modules each: without stubgen, the one
    line names the first module of the first of them, and nothing is written."""
    from hatch_pyc import _wheel
    from hatch_pyc._errors import InvalidInput

    files = {
        "top/__init__.py": "",
        "top/py.typed": "",
        "top/mod.py": "X = 1\n",
        "demo-1.0.data/purelib/low/__init__.py": "",
        "demo-1.0.data/purelib/low/py.typed": "",
        "demo-1.0.data/purelib/low/mod.py": "Y = 1\n",
    }
    wheel = make_wheel(tmp_path, files)
    monkeypatch.setattr(_wheel, "stubgen_missing", lambda: "mypy is not installed")
    with pytest.raises(InvalidInput) as refused:
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert str(refused.value).startswith(f"{wheel}: top/__init__.py is in a typed package (py.typed) and its stub ")
    assert not (tmp_path / "out").exists()


def _typed(extra: dict[str, str]) -> dict[str, bytes | str]:
    return {"pkg/__init__.py": "", "pkg/py.typed": "", **extra}


def test_a_module_whose_stub_name_is_taken_does_not_stop_the_stubs_of_the_modules_after_it(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, _typed({"pkg/a.py": "A: int = 1\n", "pkg/a.pyi": "A: int\n", "pkg/b.py": "B = ''\n"}))
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    with zipfile.ZipFile(result.output) as zf:
        assert zf.read("pkg/a.pyi") == b"A: int\n"  # the hand-written stub, as it was
        assert zf.read("pkg/b.pyi").decode().strip() == "B: str"


def _stubs_said(summary: str) -> str:
    """The stubs' part of ``hatch-pyc wheel``'s summary: ``2 type stubs (1 from the compile cache)``."""
    (part,) = re.findall(r"\d+ type stubs(?: \(\d+ from the compile cache\))?", summary)
    return part


def _stub_runs(tmp_path: Path, versions: dict[str, dict[str, bytes | str]]) -> list[str]:
    """What ``hatch-pyc wheel`` says converting each version of a typed wheel, in order, with one compile cache."""
    said = []
    for version, files in versions.items():
        (tmp_path / version).mkdir()
        wheel = make_wheel(tmp_path / version, _typed(files))  # type: ignore[arg-type]
        out = tmp_path / version / "out"
        said.append(
            run_cli("wheel", str(wheel), "-o", str(out), "--cache-dir", str(tmp_path / "cache"), check=True).stderr
        )
    return said


def test_a_changed_package_init_is_a_cache_miss_for_its_modules_stubs_even_when_it_has_its_own_stub(
    tmp_path: Path,
) -> None:
    """``pkg/__init__.py`` gets no stub of its own (``pkg/__init__.pyi`` ships), but stubgen reads it beside
    ``pkg/m.py`` (the package ``m`` is in): a new ``__init__.py`` is a new key, never the old stubs."""
    files = {"pkg/__init__.pyi": "VALUE: int\n", "pkg/m.py": "from pkg import VALUE\n\nX = VALUE\n"}
    said = _stub_runs(
        tmp_path,
        {
            "one": {**files, "pkg/__init__.py": "VALUE = 1\n"},
            "two": {**files, "pkg/__init__.py": "VALUE = 2\n"},
            "three": {**files, "pkg/__init__.py": "VALUE = 2\n"},
        },
    )
    assert [_stubs_said(line) for line in said] == [
        "1 type stubs",
        "1 type stubs",
        "1 type stubs (1 from the compile cache)",
    ]


def test_stubs_come_from_the_cache_when_only_a_data_file_of_the_package_changed(tmp_path: Path) -> None:
    """stubgen reads the modules and their packages' ``__init__.py``, nothing else: the cache key is made of those,
    so a changed data file beside them is still a hit."""
    said = _stub_runs(
        tmp_path,
        {version: {"pkg/m.py": "X: int = 1\n", "pkg/data.txt": version} for version in ("one", "two")},
    )
    assert [_stubs_said(line) for line in said] == ["2 type stubs", "2 type stubs (2 from the compile cache)"]


def test_a_module_read_for_its_stub_is_checked_against_record_again(tmp_path: Path) -> None:
    """The wheel is read again for the stubs (beside the compile): a module whose bytes changed on disk since the
    gate checked them is refused, never stubbed."""
    from hatch_pyc._options import PycOptions
    from hatch_pyc._wheel import _StubInputs, _stubs_for
    from hatch_pyc._wheelcheck import InvalidWheel, open_wheel

    wheel = make_wheel(tmp_path, _typed({"pkg/m.py": "X: int = 1\n"}))
    (tmp_path / "later").mkdir()
    swapped = make_wheel(tmp_path / "later", _typed({"pkg/m.py": "X: str = ''\n"}))
    with open_wheel(wheel) as checked:
        wheel.write_bytes(swapped.read_bytes())
        with pytest.raises(InvalidWheel) as caught:
            _stubs_for(checked, [_StubInputs("", ["pkg/m.py"], [])], find_interpreter(None), PycOptions())
    assert str(caught.value) == f"{wheel}: pkg/m.py does not match its RECORD hash"


def test_every_target_a_wheel_refuses_is_counted_in_the_one_line(tmp_path: Path) -> None:
    """Two targets the wheel's Requires-Python excludes, and one it accepts: the refusal names the first pair and
    counts the other; nothing is written for the third either."""
    from hatch_pyc import convert_wheels
    from hatch_pyc._wheel import InvalidWheel

    targets = [find_interpreter(minor) for minor in ("3.10", "3.11", "3.12")]
    (tmp_path / "in").mkdir()
    wheel = wheel_from(tmp_path / "in", GOOD, _good(metadata=_meta(extra="Requires-Python: >=3.12\n")))
    with pytest.raises(InvalidWheel) as caught:
        convert_wheels([wheel], tmp_path / "out", targets)
    assert str(caught.value) == (
        f"{wheel}: its Requires-Python `>=3.12` excludes CPython 3.10 (installers would refuse the wheel); "
        "choose a target it allows (and 1 more problems); nothing was written"
    )
    assert not (tmp_path / "out").exists()


def _patched(wheel: Path, member: str, how: str) -> None:
    """``wheel`` with one thing of ``member`` changed in place, as ``how`` says; its RECORD still true of it."""
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(member)
    local = info.header_offset
    central = data.find(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(member)] != member.encode():
        central = data.find(b"PK\x01\x02", central + 1)
    start = local + 30 + len(member) + int.from_bytes(data[local + 28 : local + 30], "little")
    if how == "local-name":  # the local header names another member of the same length
        data[local + 30 + len(member) - 4 : local + 30 + len(member) - 3] = b"X"
    elif how == "crc":  # both headers say a CRC-32 the bytes do not have
        for where in (local + 14, central + 16):
            data[where : where + 4] = (info.CRC ^ 1).to_bytes(4, "little")
    elif how == "cut-short":  # the central directory says the stream is shorter: it ends before its end
        data[central + 20 : central + 24] = (info.compress_size - 2).to_bytes(4, "little")
    elif how == "not-deflate":  # the stream's first block is of the reserved type
        data[start] = 0xFF
    elif how == "central-size":  # the central directory says it is shorter than it is: zipfile reads only so much
        data[central + 24 : central + 28] = (info.file_size - 5).to_bytes(4, "little")
    elif how == "overlapped":  # the compressed data said to run into the next entry's header
        data[central + 20 : central + 24] = (info.compress_size + 40).to_bytes(4, "little")
    elif how in ("patched", "strong-encryption"):  # flags zipfile refuses to read a member under
        flags = int.from_bytes(data[central + 8 : central + 10], "little") | (0x20 if how == "patched" else 0x40)
        data[central + 8 : central + 10] = flags.to_bytes(2, "little")
    wheel.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("local-name", "File name in directory 'demo/core.py' and header 'demo/corX.py' differ."),
        ("crc", "Bad CRC-32 for file 'demo/core.py'"),
        ("cut-short", "Compressed file ended before the end-of-stream marker was reached"),
        ("not-deflate", "Error -3 while decompressing data: invalid block type"),
        ("central-size", "Bad CRC-32 for file 'demo/core.py'"),
        ("overlapped", "Overlapped entries: 'demo/core.py' (possible zip bomb)"),
        ("patched", "compressed patched data (flag bit 5)"),
        ("strong-encryption", "strong encryption (flag bit 6)"),
    ],
)
def test_a_module_the_workers_read_in_place_is_checked_as_zipfile_checks_it(tmp_path: Path, how: str, why: str) -> None:
    """A worker reads a deflated module without zipfile: a local header naming another member, a CRC-32 the bytes
    do not have, a stream that ends early or is not deflate, a central directory that says the member is shorter
    than its stream (zipfile returns only so much), data running into the next entry (3.14's zipfile refuses it) is
    refused as zipfile refuses it, and a member flagged patched or strongly encrypted goes to zipfile, which
    refuses it (RECORD is true of the member's bytes in each): in one line naming the wheel, and nothing is
    written."""
    source = "X = 1\n" * 50  # long enough to be deflated
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/core.py": source})
    _patched(wheel, "demo/core.py", how)
    if how not in ("cut-short", "overlapped"):
        with pytest.raises(Exception):  # noqa: B017 - BadZipFile, zlib.error, NotImplementedError
            zipfile.ZipFile(wheel).read("demo/core.py")  # what every installer reading it with zipfile meets
    result = run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--no-cache")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"hatch-pyc: error: {wheel}: cannot be read as a wheel ({why})"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_wheel_with_a_module_of_another_compression_method_converts(tmp_path: Path) -> None:
    """A worker reads deflated modules in place and any other method through zipfile, from one wheel, in either
    order; the output is a normal sourceless wheel."""
    files = {"demo/__init__.py": "from demo.b import B\n", "demo/a.py": "A = 1\n", "demo/b.py": "B = 2\n"}
    for which in ("demo/a.py", "demo/b.py"):
        directory = tmp_path / which[-4]
        directory.mkdir()
        wheel = make_wheel(directory, dict(files))
        with zipfile.ZipFile(wheel) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
        with zipfile.ZipFile(wheel, "w") as zf:
            for info, data in members:
                info.compress_type = zipfile.ZIP_BZIP2 if info.filename == which else zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        run_cli("wheel", str(wheel), "-o", str(directory / "out"), "--no-cache", "--workers", "1", check=True)
        (made,) = (directory / "out").glob("*.whl")
        assert sorted(n for n in record_of(made) if n.endswith(".pyc")) == [
            "demo/__init__.pyc",
            "demo/a.pyc",
            "demo/b.pyc",
        ]


def test_a_deflated_member_said_to_be_empty_is_empty_however_much_its_stream_holds(tmp_path: Path) -> None:
    """A member whose entry says 0 bytes (and RECORD an empty file) is read as zipfile reads it, as nothing,
    whatever its stream would inflate to (here 1 MiB): nothing is inflated, and the module is compiled empty."""
    import zlib

    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/empty.py": ""})
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = packer.compress(bytes(1 << 20)) + packer.flush()
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(wheel, "w") as zf:
        for info, data in members:
            if info.filename != "demo/empty.py":
                zf.writestr(info, data, zipfile.ZIP_DEFLATED)
                continue
            info.compress_type = zipfile.ZIP_DEFLATED  # written by hand: the stream, said to hold 0 bytes
            info.CRC, info.file_size, info.compress_size = 0, 0, len(stream)
            info.header_offset = zf.fp.tell()  # type: ignore[union-attr]
            zf.fp.write(info.FileHeader(zip64=False) + stream)  # type: ignore[union-attr]
            zf.filelist.append(info)
            zf.NameToInfo[info.filename] = info
            zf.start_dir = zf.fp.tell()  # type: ignore[union-attr]
    assert zipfile.ZipFile(wheel).read("demo/empty.py") == b""  # what installers read
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--no-cache", check=True)
    (made,) = (tmp_path / "out").glob("*.whl")
    assert "demo/empty.pyc" in record_of(made)
