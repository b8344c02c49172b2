"""The wheel gate's limits and comparisons, each tried on both sides of the line it draws.

Every wheel here is a real file; where a test needs an entry far larger than a test can write (a
gigabyte, a compression ratio exactly at the limit), the central directory claims the sizes, as a
hostile wheel would: the gate decides from those claims before it inflates anything.
"""

from __future__ import annotations

import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from packaging.tags import Tag
from test_wheel import make_wheel
from test_wheel_gate import GOOD, _good, _meta, _wheel_file, wheel_from

from hatch_pyc import find_interpreter
from hatch_pyc._wheelcheck import MAX_ENTRY_BYTES, MAX_RATIO, MAX_TOTAL_BYTES, InvalidWheel, open_wheel, retag

RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"
CP = f"cp{sys.version_info[0]}{sys.version_info[1]}"
LINUX = "manylinux_2_17_x86_64"


def _claim_sizes(wheel: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Make the central directory say ``{entry: (file_size, compress_size)}``; the data stays as written."""
    data = bytearray(wheel.read_bytes())
    for name, (file_size, compress_size) in sizes.items():
        record = data.find(b"PK\x01\x02")
        while data[record + 46 : record + 46 + len(name)] != name.encode() or data[record + 28] != len(name.encode()):
            record = data.find(b"PK\x01\x02", record + 1)
            assert record != -1, name
        data[record + 20 : record + 24] = compress_size.to_bytes(4, "little")
        data[record + 24 : record + 28] = file_size.to_bytes(4, "little")
    wheel.write_bytes(bytes(data))
    with zipfile.ZipFile(wheel) as zf:  # what every reader of the archive now sees
        assert {n: (zf.getinfo(n).file_size, zf.getinfo(n).compress_size) for n in sizes} == sizes


def _refused(wheel: Path) -> str:
    """The one line ``hatch-pyc wheel`` refuses ``wheel`` with (exit 2, nothing written)."""
    out = wheel.parent / "out"
    proc = run_cli("wheel", str(wheel), "-o", str(out), "--python", RUNNING)
    assert proc.returncode == 2, proc.stderr
    assert not out.exists() or not list(out.iterdir())
    (line,) = proc.stderr.strip().splitlines()
    return line


def _gate_error(wheel: Path) -> str:
    with pytest.raises(InvalidWheel) as caught:
        open_wheel(wheel).close()
    return str(caught.value)


def _binary(tag: str, extra: dict[str, str] | None = None) -> tuple[str, dict[str, bytes | str]]:
    """A binary wheel's file name and entries for one tag."""
    return f"demo-1.0-{tag}.whl", {**_good(wheel=_wheel_file(purelib="false", tags=(tag,))), **(extra or {})}


# -- sizes: one entry, all entries, the compression ratio --------------------------------------------------


@pytest.mark.parametrize("excess", [0, 1])
def test_an_entry_of_one_gib_is_the_largest_allowed(tmp_path: Path, excess: int) -> None:
    """An entry may inflate to exactly 1 GiB (at a harmless ratio); one byte more is refused as a bomb."""
    wheel = wheel_from(tmp_path, GOOD, {**_good(), "demo/big.bin": "x"})
    size = MAX_ENTRY_BYTES + excess
    assert MAX_ENTRY_BYTES == 1 << 30
    _claim_sizes(wheel, {"demo/big.bin": (size, size)})
    if not excess:
        with open_wheel(wheel) as checked:
            assert next(i for i in checked.infos if i.filename == "demo/big.bin").file_size == 1 << 30
        return
    assert _gate_error(wheel) == (
        f"{wheel}: entry 'demo/big.bin' inflates to 1073741825 bytes from 1073741825 (a decompression bomb?)"
    )


@pytest.mark.parametrize("excess", [0, 1])
def test_the_entries_together_may_inflate_to_four_gib(tmp_path: Path, excess: int) -> None:
    """All entries together may inflate to exactly 4 GiB; one byte more is refused, with the true total."""
    bigs = [f"demo/big{i}.bin" for i in range(4)]
    wheel = wheel_from(tmp_path, GOOD, {**_good(), **dict.fromkeys(bigs, "x")})
    with zipfile.ZipFile(wheel) as zf:
        small = sum(i.file_size for i in zf.infolist() if i.filename not in bigs)
    last = (1 << 30) - small + excess  # three entries of 1 GiB, the fourth up to the total
    sizes = {**dict.fromkeys(bigs[:3], (1 << 30, 1 << 30)), bigs[3]: (last, last)}
    _claim_sizes(wheel, sizes)
    assert MAX_TOTAL_BYTES == 4 << 30
    if not excess:
        with open_wheel(wheel) as checked:
            assert sum(i.file_size for i in checked.infos) == 4 << 30
        return
    assert _gate_error(wheel) == f"{wheel}: entries inflate to 4294967297 bytes in all (a decompression bomb?)"


@pytest.mark.parametrize("excess", [0, 1])
def test_an_entry_may_inflate_to_exactly_200_times_its_compressed_size(tmp_path: Path, excess: int) -> None:
    """Above 1 MiB an entry may inflate 200-fold; one byte beyond that ratio is refused as a bomb."""
    wheel = wheel_from(tmp_path, GOOD, {**_good(), "demo/big.bin": "x"})
    size = MAX_RATIO * 6000 + excess  # 1_200_000: above the 1 MiB below which any ratio is allowed
    assert MAX_RATIO == 200 and size > 1 << 20
    _claim_sizes(wheel, {"demo/big.bin": (size, 6000)})
    if not excess:
        with open_wheel(wheel) as checked:
            assert "demo/big.bin" in checked.names
        return
    assert _gate_error(wheel) == (
        f"{wheel}: entry 'demo/big.bin' inflates to 1200001 bytes from 6000 (a decompression bomb?)"
    )


def test_a_large_entry_that_does_not_compress_is_converted(tmp_path: Path) -> None:
    """Two MiB of incompressible data (ratio about 1) is an ordinary wheel, not a bomb: it converts."""
    noise = bytes((i * 2654435761 >> 13) & 0xFF for i in range(2 << 20))
    wheel = wheel_from(tmp_path, GOOD, {**_good(), "demo/noise.bin": noise})
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("demo/noise.bin")
        assert info.file_size == 2 << 20 and info.file_size < 2 * info.compress_size
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--python", RUNNING, check=True)
    (converted,) = (tmp_path / "out").iterdir()
    with zipfile.ZipFile(converted) as zf:
        assert zf.read("demo/noise.bin") == noise


def test_one_mib_of_zeros_is_allowed_at_any_ratio(tmp_path: Path) -> None:
    """Up to 1 MiB an entry may compress as well as it likes: exactly 1 MiB of zeros converts."""
    zeros = b"\0" * (1 << 20)
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/zeros.bin": zeros})
    with zipfile.ZipFile(wheel) as zf:
        assert zf.getinfo("demo/zeros.bin").file_size > MAX_RATIO * zf.getinfo("demo/zeros.bin").compress_size
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--python", RUNNING, check=True)
    (converted,) = (tmp_path / "out").iterdir()
    with zipfile.ZipFile(converted) as zf:
        assert zf.read("demo/zeros.bin") == zeros


def test_one_byte_more_than_one_mib_of_zeros_is_a_bomb(tmp_path: Path) -> None:
    """Past 1 MiB the ratio counts: 1 MiB + 1 of zeros (over 1000-fold) is refused in one line."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/zeros.bin": b"\0" * ((1 << 20) + 1)})
    with zipfile.ZipFile(wheel) as zf:
        packed = zf.getinfo("demo/zeros.bin").compress_size
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: entry 'demo/zeros.bin' inflates to 1048577 bytes from {packed} "
        "(a decompression bomb?)"
    )


# -- entry names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "entry"),
    [
        (GOOD, "demo\\evil.py"),  # a backslash anywhere: a directory separator on Windows
        (GOOD, "c:/hatch-pyc-gate-evil.py"),  # a drive letter
        (f"demo-1.0-cp311-cp311-{LINUX}.whl", "c:/hatch-pyc-gate-evil.py"),  # even where Windows never installs it
        (f"demo-1.0-cp311-cp311-{LINUX}.whl", "C:evil.py"),
    ],
)
def test_windows_paths_are_refused_as_non_posix(tmp_path: Path, filename: str, entry: str) -> None:
    """A backslash or a drive letter in an entry name is refused as an absolute or non-POSIX path."""
    tags = filename[: -len(".whl")].split("-", 2)[2]
    entries = _good(wheel=_wheel_file(purelib="true" if tags == "py3-none-any" else "false", tags=(tags,)))
    wheel = wheel_from(tmp_path, filename, {**entries, entry: "x"})
    assert _refused(wheel) == f"hatch-pyc: error: {wheel}: entry {entry!r} has an absolute or non-POSIX path"


def test_a_colon_after_the_first_character_is_not_a_drive_letter(tmp_path: Path) -> None:
    """Only a colon second in the name marks a drive: a Linux-only wheel may hold ``demo/a:b.txt``."""
    name, entries = _binary(f"cp311-cp311-{LINUX}", {"demo/a:b.txt": "x"})
    wheel = wheel_from(tmp_path, name, entries)
    with open_wheel(wheel) as checked:
        assert "demo/a:b.txt" in checked.names


def test_a_top_level_file_where_a_package_directory_goes_is_refused(tmp_path: Path) -> None:
    """A root file ``demo`` beside ``demo/__init__.py`` cannot be installed: refused, naming both."""
    wheel = wheel_from(tmp_path, GOOD, {**_good(), "demo": "x"})
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: entry 'demo' is a file where 'demo/__init__.py' needs a directory"
    )


def test_a_script_file_where_a_scripts_directory_goes_is_refused(tmp_path: Path) -> None:
    """In a .data scheme too: ``scripts/tool`` as a file and as a directory cannot both be installed."""
    extra = {"demo-1.0.data/scripts/tool": "#!/bin/sh\n", "demo-1.0.data/scripts/tool/x": "x"}
    wheel = wheel_from(tmp_path, GOOD, {**_good(), **extra})
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: entry 'demo-1.0.data/scripts/tool' is a file where "
        "'demo-1.0.data/scripts/tool/x' needs a directory"
    )


# -- the .data directory ------------------------------------------------------------------------------------


@pytest.mark.parametrize("top", ["abc.data", "demo-0.9.data"])
def test_a_data_directory_sorting_before_the_real_one_is_refused(tmp_path: Path, top: str) -> None:
    """A second ``.data`` directory is refused whatever its name, also one sorting before ``demo-1.0.data``."""
    entry = f"{top}/purelib/demo/extra.py"
    wheel = wheel_from(tmp_path, GOOD, {**_good(), entry: "X = 2\n"})
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: entry {entry!r} is in a .data directory other than demo-1.0.data "
        "(named for the file name and demo-1.0.dist-info); installers disagree on what it holds"
    )


def test_the_data_directory_the_wheel_names_is_accepted(tmp_path: Path) -> None:
    """The one ``.data`` directory spelled as the file name and ``.dist-info`` spell it is installed as data."""
    wheel = wheel_from(tmp_path, GOOD, {**_good(), "demo-1.0.data/purelib/demo/extra.py": "X = 2\n"})
    with open_wheel(wheel) as checked:
        assert checked.data_dir == "demo-1.0.data"
        assert "demo-1.0.data/purelib/demo/extra.py" in checked.names


# -- METADATA's version --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "quoted"), [("0.9", "'0.9'"), ("not-a-version", "'not-a-version'")])
def test_metadata_with_an_older_or_invalid_version_is_refused(tmp_path: Path, version: str, quoted: str) -> None:
    """METADATA must name the file name's version: an older one, or one that is no version, is refused."""
    wheel = wheel_from(tmp_path, GOOD, _good(metadata=_meta(version=version)))
    assert _refused(wheel) == f"hatch-pyc: error: {wheel}: METADATA says version {quoted}, not 1.0"


def test_metadata_with_the_same_version_spelled_otherwise_is_accepted(tmp_path: Path) -> None:
    """``1.0.0`` in METADATA is the file name's ``1.0``: the wheel passes."""
    wheel = wheel_from(tmp_path, GOOD, _good(metadata=_meta(version="1.0.0")))
    with open_wheel(wheel) as checked:
        assert str(checked.version) == "1.0"


# -- retagging -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-1, 0])
def test_an_abi3_wheel_for_the_target_or_older_is_retagged_for_the_target(tmp_path: Path, offset: int) -> None:
    """abi3 built for an older CPython, or the target itself, serves the target: its tags become cpXY-cpXY."""
    major, minor = sys.version_info[:2]
    name, entries = _binary(f"cp{major}{minor + offset}-abi3-{LINUX}")
    wheel = wheel_from(tmp_path, name, entries)
    with open_wheel(wheel) as checked:
        assert checked.check_target(find_interpreter(RUNNING)) == (
            f"{CP}-{CP}-{LINUX}",
            [Tag(CP, CP, LINUX)],
        )


def test_an_abi3_wheel_for_a_newer_cpython_is_refused(tmp_path: Path) -> None:
    """abi3 built for CPython 3.(Y+1) needs that CPython at least: it does not include 3.Y and is refused."""
    major, minor = sys.version_info[:2]
    tag = f"cp{major}{minor + 1}-abi3-{LINUX}"
    name, entries = _binary(tag)
    wheel = wheel_from(tmp_path, name, entries)
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: its tags ({tag}) do not include CPython {RUNNING}; nothing was written"
    )


@pytest.mark.parametrize("tag", [f"cp3\u1369-abi-{LINUX}", f"cp3\u1369-abi3-{LINUX}", "py3\u1369-none-any"])
def test_a_tag_whose_version_is_not_a_decimal_number_is_refused_in_one_line(tmp_path: Path, tag: str) -> None:
    """``3፩`` (an Ethiopic digit: str.isdigit() takes it, int() does not read it) is no CPython version: the
    wheel is refused with the ordinary one line (the abi3 and py3 forms were a traceback)."""
    name, entries = _binary(tag)
    wheel = wheel_from(tmp_path, name, entries)
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: its tags ({tag}) do not include CPython {RUNNING}; nothing was written"
    )


def test_a_tag_set_that_is_not_one_compressed_tag_set_is_refused(tmp_path: Path) -> None:
    """``retag`` gives one compressed tag set or refuses: ``cpXY-cpXY-linux`` with ``cpXY-none-macosx`` (not
    every ABI with every platform) cannot be one file name, so it is refused, naming the tags it kept."""
    mac = "macosx_11_0_arm64"
    wheel = tmp_path / f"demo-1.0-{CP}-{CP}.none-{LINUX}.{mac}.whl"
    interp = find_interpreter(RUNNING)
    whole = frozenset(Tag(CP, abi, platform) for abi in (CP, "none") for platform in (LINUX, mac))
    assert retag(whole, interp, wheel) == (f"{CP}-{CP}.none-{LINUX}.{mac}", sorted(whole, key=str))
    with pytest.raises(InvalidWheel) as caught:
        retag(frozenset({Tag(CP, CP, LINUX), Tag(CP, "none", mac)}), interp, wheel)
    assert str(caught.value) == (
        f"{wheel}: its tags cannot be written as one compressed tag set: ['{CP}-{CP}-{LINUX}', '{CP}-none-{mac}']"
    )


# -- the .dist-info directory and METADATA's body ------------------------------------------------------------


def test_a_dist_info_directory_whose_version_is_no_version_is_refused(tmp_path: Path) -> None:
    """``demo-latest.dist-info`` is not named for the file name's version 1.0 (``latest`` is no version at all):
    refused in one line, as a ``.dist-info`` directory for another version is."""
    wheel = wheel_from(tmp_path, GOOD, _good(dist_info="demo-latest.dist-info"))
    assert _refused(wheel) == (
        f"hatch-pyc: error: {wheel}: its .dist-info directory demo-latest.dist-info is not for version 1.0"
    )


def test_metadata_whose_body_nests_mime_parts_two_thousand_deep_is_not_parsed(tmp_path: Path) -> None:
    """The gate reads METADATA's headers only: a body of MIME parts nested 2000 deep (which a full email
    parse recurses into until it fails) neither slows nor breaks it, and METADATA passes through unchanged."""
    depth = 2000
    nested = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
    metadata = _meta(extra=nested + "x\n" + "".join(f"\n--b{i}--\n" for i in reversed(range(depth))))
    wheel = wheel_from(tmp_path, GOOD, _good(metadata=metadata))
    with open_wheel(wheel) as checked:
        assert checked.metadata["Name"] == "demo" and not checked.metadata.is_multipart()
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--python", RUNNING, check=True)
    (converted,) = (tmp_path / "out").iterdir()
    with zipfile.ZipFile(converted) as zf:
        assert zf.read("demo-1.0.dist-info/METADATA") == metadata.encode()


def test_a_record_with_several_problems_names_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    """installer finds two problems in RECORD (both signature files listed in it): the one line names the first,
    without installer's "In <wheel>," prefix, and counts the other."""
    wheel = make_wheel(
        tmp_path,
        {"demo/__init__.py": "", "demo-1.0.dist-info/RECORD.jws": "sig\n", "demo-1.0.dist-info/RECORD.p7s": "sig\n"},
    )
    with pytest.raises(InvalidWheel) as refused:
        open_wheel(wheel)
    assert str(refused.value) == (
        f"{wheel}: digital signature file demo-1.0.dist-info/RECORD.jws is incorrectly contained in RECORD. "
        "(and 1 more problems)"
    )


def test_a_case_collision_is_explained_whichever_name_comes_first(tmp_path: Path) -> None:
    """Two entries whose install paths differ only in case collide wherever the upper-case one sits (in the zip, or
    in sorting order once ``.data/purelib/`` is taken off): the message says why they are one path."""
    pairs = [
        ("demo/Mod.py", "demo/mod.py"),
        ("demo/mod.py", "demo/Mod.py"),
        ("demo-1.0.data/purelib/demo/m.py", "demo/M.py"),
    ]
    for first, second in pairs:
        directory = tmp_path / first.replace("/", "-")
        directory.mkdir()
        wheel = make_wheel(directory, {"demo/__init__.py": "", first: "A = 1\n", second: "B = 2\n"})
        with pytest.raises(InvalidWheel) as refused:
            open_wheel(wheel)
        message = str(refused.value)
        assert message.startswith(f"{wheel}: entries 'demo") and f"{first!r}" in message and f"{second!r}" in message
        assert message.endswith(" install to the same path where names differing in case or Unicode form are one")


_READ_FAILURES = {
    "bad-zip": zipfile.BadZipFile("Bad CRC-32 for file 'demo-1.0.dist-info/RECORD'"),
    "os-error": OSError(5, "Input/output error"),
    "eof": EOFError("Compressed file ended before the end-of-stream marker was reached"),
    "key": KeyError("There is no item named 'demo-1.0.dist-info/RECORD' in the archive"),
    "zlib": zlib.error("Error -3 while decompressing data: invalid stored block lengths"),
}


@pytest.mark.parametrize("failure", sorted(_READ_FAILURES))
def test_a_record_that_fails_to_be_read_is_one_line_naming_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Every way reading RECORD out of the archive can fail (a disk error, a corrupt member after the central
    directory was accepted) is the same one line, never a traceback."""
    from installer.sources import WheelFile

    wheel = wheel_from(tmp_path, GOOD, _good())
    real = WheelFile.read_dist_info
    reads: list[str] = []

    def read_dist_info(self: WheelFile, filename: str) -> str:
        reads.append(filename)
        if len(reads) == 2:  # installer's own read (in validate_record) wraps what fails; the gate's does not
            raise _READ_FAILURES[failure]
        return real(self, filename)

    monkeypatch.setattr(WheelFile, "read_dist_info", read_dist_info)
    assert _gate_error(wheel) == f"{wheel}: cannot be read as a wheel ({_READ_FAILURES[failure]})"
    assert reads == ["RECORD", "RECORD"]


_INSTALL_FAILURES = {
    "value": ValueError("the wheel's RECORD is not what installer expects"),
    "key": KeyError("demo-1.0.dist-info/WHEEL"),
    "bad-zip": zipfile.BadZipFile("Bad CRC-32 for file 'demo/__init__.py'"),
    "eof": EOFError("Compressed file ended before the end-of-stream marker was reached"),
    "zlib": zlib.error("Error -3 while decompressing data: invalid stored block lengths"),
}


@pytest.mark.parametrize("failure", sorted(_INSTALL_FAILURES))
def test_an_install_that_installer_refuses_is_one_line_naming_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """What installer raises while installing a wheel the gate accepted (an entry that fails to inflate, a value
    it refuses) is one line naming the wheel."""
    import installer

    wheel = wheel_from(tmp_path, GOOD, _good())

    def install(*args: object, **kwargs: object) -> None:
        raise _INSTALL_FAILURES[failure]

    monkeypatch.setattr(installer, "install", install)
    with open_wheel(wheel) as checked, pytest.raises(InvalidWheel) as caught:
        checked.install(None)  # type: ignore[arg-type]  # installer never gets to use it
    assert str(caught.value) == f"{wheel}: cannot install it ({_INSTALL_FAILURES[failure]})"


class _Listed(frozenset[Tag]):
    """Tags iterated in the order given (a frozenset's own order follows string hashes, which vary by process)."""

    order: tuple[Tag, ...] = ()

    def __iter__(self) -> Iterator[Tag]:
        return iter(self.order)


def test_a_tag_of_another_cpython_s_abi_is_passed_over_and_the_tags_after_it_still_count(tmp_path: Path) -> None:
    """``py3-cp310-linux`` promises an extension built for CPython 3.10's ABI, which a sourceless wheel for another
    CPython cannot keep; the tags after it are still looked at."""
    other = "cp39" if CP != "cp39" else "cp38"
    tags = (Tag("py3", other, LINUX), Tag("py3", "none", LINUX))
    listed = _Listed(tags)
    listed.order = tags
    interp = find_interpreter(RUNNING)
    assert retag(listed, interp, tmp_path / f"demo-1.0-py3-{other}.none-{LINUX}.whl") == (
        f"{CP}-none-{LINUX}",
        [Tag(CP, "none", LINUX)],
    )
