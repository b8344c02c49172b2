"""The one gate for untrusted wheels: every command that reads a wheel opens it here.

``hatch-pyc wheel``, the build hook, ``layer``, ``verify`` and ``report`` all call
:func:`open_wheel`, so a check added here protects every one of them. Before a caller sees
anything, the archive's entry names, types and sizes are checked (nothing can be written
outside a target, no link, no duplicate, no bomb), every entry is matched against RECORD and
RECORD against the archive, and what the wheel says about itself is made to agree: its file
name, its ``.dist-info`` directory, METADATA and WHEEL. Where pip, uv or installer refuse a
wheel, the gate refuses it too, with one line naming the wheel and the reason.

Contents are checked against RECORD by :meth:`CheckedWheel.check_contents`, separately,
because the converter streams the modules it compiles through their hashes in its workers
rather than reading each entry twice.
"""

from __future__ import annotations

import posixpath
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, cast

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from hatch_pyc._errors import InvalidInput, first_problem
from hatch_pyc._targets import Interpreter

if TYPE_CHECKING:
    from installer.destinations import WheelDestination
    from installer.records import RecordEntry

# An entry inflating more than this many times its compressed size, to more than this
# many bytes, is treated as a decompression bomb.
MAX_RATIO = 200
MAX_ENTRY_BYTES = 1 << 30
MAX_TOTAL_BYTES = 4 << 30
_SCHEMES = ("purelib", "platlib", "scripts", "data", "headers")


class InvalidWheel(InvalidInput):
    """A wheel that is malformed, inconsistent or hostile."""


def _check_names(zf: zipfile.ZipFile, wheel: Path) -> list[zipfile.ZipInfo]:
    """Refuse entries that could write outside the target or hide what they are."""
    seen: set[str] = set()
    total = 0
    infos = []
    for info in zf.infolist():
        name = info.filename
        if name.endswith("/"):
            continue  # directory entries carry nothing; they are not copied
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
            raise InvalidWheel(f"{wheel}: entry {name!r} has an absolute or non-POSIX path")
        if posixpath.normpath(name) != name or any(part in ("", ".", "..") for part in name.split("/")):
            raise InvalidWheel(f"{wheel}: entry {name!r} is not a plain relative path ('..' or '.' parts)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidWheel(f"{wheel}: entry {name!r} is a symbolic link")
        if name in seen:
            raise InvalidWheel(f"{wheel}: entry {name!r} appears more than once")
        seen.add(name)
        if info.file_size > MAX_ENTRY_BYTES or (
            info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            raise InvalidWheel(
                f"{wheel}: entry {name!r} inflates to {info.file_size} bytes from {info.compress_size} "
                "(a decompression bomb?)"
            )
        total += info.file_size
        infos.append(info)
    if total > MAX_TOTAL_BYTES:
        raise InvalidWheel(f"{wheel}: entries inflate to {total} bytes in all (a decompression bomb?)")
    return infos


def _install_path(entry: str, data_dir: str) -> str:
    """Where an installer puts ``entry``, as ``<scheme>/<path>``; the root, purelib and platlib
    share one name space (they are one directory in a venv and on most systems)."""
    if entry.startswith(data_dir):
        scheme, _, rest = entry[len(data_dir) :].partition("/")
        return f"{'lib' if scheme in ('purelib', 'platlib') else scheme}/{rest}"
    return f"lib/{entry}"


def _check_install_paths(names: Iterable[str], data_dir: str, tags: frozenset[Tag], wheel: Path) -> None:
    """Refuse two entries an installer would write to one path, or a file where a directory goes.

    ``pkg/mod.py`` beside ``<name>.data/purelib/pkg/mod.py`` is one file installed twice; ``pkg/m``
    beside ``pkg/m/x.py`` cannot be installed at all. Names equal once Unicode-normalised are one
    file on macOS; names equal but for case are one file on macOS and Windows, so they are
    refused in a wheel that may be installed there (a ``-any`` or macOS or Windows tag).
    """
    folds_case = any(tag.platform == "any" or tag.platform.startswith(("macosx", "win", "ios")) for tag in tags)
    windows = any(tag.platform == "any" or tag.platform.startswith("win") for tag in tags)

    def fold(path: str) -> str:
        path = unicodedata.normalize("NFC", path)
        # lower(), not casefold(): "straße.py" and "strasse.py" are two files on NTFS and APFS
        return path.lower() if folds_case else path

    files: dict[str, str] = {}  # folded install path -> entry
    for entry in sorted(names):
        if windows and any(part.endswith((".", " ")) or ":" in part for part in entry.split("/")):
            raise InvalidWheel(
                f"{wheel}: entry {entry!r} cannot be written on Windows (a name ending in '.' or ' ', or "
                "holding ':'), where this wheel may be installed"
            )
        where = _install_path(entry, data_dir)
        key = fold(where)
        if key in files:
            other = files[key]
            how = (
                ""
                if where == _install_path(other, data_dir)
                else " where names differing in case or Unicode form are one"
            )
            raise InvalidWheel(f"{wheel}: entries {other!r} and {entry!r} install to the same path{how}")
        files[key] = entry
    for key, entry in files.items():
        parent = key.rpartition("/")[0]
        while parent.count("/") >= 1:
            if parent in files:
                raise InvalidWheel(f"{wheel}: entry {files[parent]!r} is a file where {entry!r} needs a directory")
            parent = parent.rpartition("/")[0]


def _check_data_dir(names: Iterable[str], data_dir: str, wheel: Path) -> None:
    """One ``.data`` directory, spelled as both the ``.dist-info`` directory and the file name spell it.

    pip takes any top-level ``*.data`` directory for the data directory and installer only the one
    the file name spells, so a second one (or one spelled otherwise) would be installed differently
    by each; a top-level *file* named like it sends installer into an endless loop.
    """
    spelled = "-".join(wheel.name.split("-")[:2]) + ".data/"
    for entry in sorted(names):
        top = entry.split("/", 1)[0]
        if not top.endswith(".data"):
            continue
        if "/" not in entry:
            raise InvalidWheel(f"{wheel}: entry {entry!r} is a file named like the .data directory")
        if top + "/" != data_dir or data_dir != spelled:
            raise InvalidWheel(
                f"{wheel}: entry {entry!r} is in a .data directory other than {spelled[:-1]} "
                f"(named for the file name and {data_dir[:-6]}.dist-info); installers disagree on what it holds"
            )


def _unreadable(wheel: Path, exc: BaseException) -> InvalidWheel:
    return InvalidWheel(f"{wheel}: cannot be read as a wheel ({exc})")


def _mismatch(name: str) -> str:
    return f"hash / size of {name} didn't match RECORD"  # installer's words (and the worker's)


def _dist_info_dir(infos: Sequence[zipfile.ZipInfo], wheel: Path, name: NormalizedName, version: Version) -> str:
    """The one ``.dist-info`` directory, named for the wheel's own name and version (pip, installer)."""
    tops = sorted({i.filename.split("/", 1)[0] for i in infos if "/" in i.filename})
    found = [t for t in tops if t.endswith(".dist-info")]
    if len(found) != 1:
        raise InvalidWheel(f"{wheel}: expected one .dist-info directory, found {len(found)} ({', '.join(found)})")
    dist_info = found[0]
    dir_name, _, dir_version = dist_info[: -len(".dist-info")].rpartition("-")
    if canonicalize_name(dir_name) != name:
        raise InvalidWheel(f"{wheel}: its .dist-info directory {dist_info} is not named for {name}")
    try:
        same = Version(dir_version) == version
    except InvalidVersion:
        same = False
    if not same:
        raise InvalidWheel(f"{wheel}: its .dist-info directory {dist_info} is not for version {version}")
    return dist_info


def _headers(zf: zipfile.ZipFile, wheel: Path, member: str) -> Message:
    try:
        data = zf.read(member)
    except KeyError:
        raise InvalidWheel(f"{wheel}: has no {member}") from None
    except Exception as exc:  # any decoder's failure (an unsupported method, an encrypted entry): one line
        raise _unreadable(wheel, exc) from exc
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidWheel(f"{wheel}: {member} is not UTF-8 text (installers refuse to read it)") from None
    return BytesParser().parsebytes(data, headersonly=True)


def _check_wheel_file(message: Message, wheel: Path) -> bool:
    """Check WHEEL as installers do; return Root-Is-Purelib."""
    version = message.get("Wheel-Version")
    major = str(version).strip().split(".", 1)[0] if version else ""
    if not major.isdigit():
        raise InvalidWheel(f"{wheel}: WHEEL has no valid Wheel-Version ({version!r})")
    if int(major) != 1:
        raise InvalidWheel(f"{wheel}: Wheel-Version {version} is not supported (installers read only 1.x)")
    if not message.get_all("Tag"):
        raise InvalidWheel(f"{wheel}: WHEEL has no Tag line")
    purelib = message.get("Root-Is-Purelib")
    # pip reads "True" as purelib, installer as platlib: only the two spellings mean one thing.
    if purelib not in ("true", "false"):
        raise InvalidWheel(f"{wheel}: WHEEL's Root-Is-Purelib is {purelib!r}, not 'true' or 'false'")
    return purelib == "true"


def _check_metadata(message: Message, wheel: Path, name: NormalizedName, version: Version) -> SpecifierSet | None:
    """METADATA's Name and Version must be the file name's (pip, uv); return Requires-Python."""
    meta_name, meta_version = message.get("Name"), message.get("Version")
    if not meta_name or canonicalize_name(str(meta_name)) != name:
        raise InvalidWheel(f"{wheel}: METADATA names {meta_name!r}, not {name}")
    try:
        same = meta_version is not None and Version(str(meta_version)) == version
    except InvalidVersion:
        same = False
    if not same:
        raise InvalidWheel(f"{wheel}: METADATA says version {meta_version!r}, not {version}")
    requires = message.get("Requires-Python")
    if requires is None or not str(requires).strip():
        return None
    try:
        return SpecifierSet(str(requires))
    except InvalidSpecifier:
        raise InvalidWheel(f"{wheel}: METADATA's Requires-Python {requires!r} is not a valid specifier") from None


def _record_entries(zf: zipfile.ZipFile, wheel: Path, dist_info: str, names: set[str]) -> dict[str, RecordEntry]:
    """Match every entry against RECORD (installer's rules) and RECORD against the entries."""
    from installer.records import RecordEntry, parse_record_file
    from installer.sources import WheelFile

    try:
        source = WheelFile(zf)
        source.validate_record(validate_contents=False)
        rows = list(parse_record_file(source.read_dist_info("RECORD").splitlines()))
    except ValueError as exc:
        issues = [str(issue).replace(f"In {zf.filename}, ", "") for issue in getattr(exc, "issues", None) or [exc]]
        raise InvalidWheel(f"{wheel}: {first_problem(issues)}") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zlib.error) as exc:
        raise _unreadable(wheel, exc) from exc
    missing = [row[0] for row in rows if row[0] not in names]
    if missing:
        problems = [f"RECORD lists {name!r}, which the archive does not hold" for name in missing]
        raise InvalidWheel(f"{wheel}: {first_problem(problems)}")
    return {row[0]: RecordEntry.from_elements(*row) for row in rows if row[1] and row[2]}


# Patch releases a ``Requires-Python`` is tried against: a sourceless wheel is tagged for a minor
# version, not for the patch release that compiled it.
_PATCHES = 100


def admits(constraint: SpecifierSet | None, interp: Interpreter) -> bool:
    """Whether a ``Requires-Python`` (or ``requires-python``) allows some release of the target's minor version.

    The sourceless wheel is tagged ``cpXY`` and installs on every X.Y.z; installers still check
    ``Requires-Python`` against the exact version that installs it. So ``>=3.12.5`` admits a
    target of 3.12.1 (the wheel serves 3.12.5 and later) and only a constraint no 3.12.z meets
    (``>=3.13``, ``<3.12``) refuses it.
    """
    if constraint is None:
        return True
    major, minor = interp.version[:2]
    return any(constraint.contains(f"{major}.{minor}.{patch}", prereleases=True) for patch in range(_PATCHES))


def retag(tags: frozenset[Tag], interp: Interpreter, wheel: Path) -> tuple[str, list[Tag]]:
    """The tags of the sourceless wheel: the python tag made ``cpXY``, ABI and platform kept.

    Bytecode is ABI- and platform-neutral, so a pure wheel becomes ``cpXY-none-any``; a binary
    wheel keeps its ABI and platform tags (its extension modules still need them).
    """
    major, minor = interp.version[:2]
    cp = f"cp{major}{minor}"
    kept: set[Tag] = set()
    for tag in tags:
        interp_tag = tag.interpreter
        # Only ASCII digits are a version: str.isdigit() also takes "፩", which int() cannot read.
        rest = interp_tag[3:]
        number = int(rest) if rest.isascii() and rest.isdigit() else None
        generic = interp_tag in (f"py{major}", cp) or (
            interp_tag.startswith(f"py{major}") and number is not None and number <= minor
        )
        stable = (
            tag.abi == "abi3"
            and interp_tag.startswith(f"cp{major}")
            and (number is not None or not rest)
            and (number or 0) <= minor
        )
        if generic or stable:
            if tag.abi not in ("none", "abi3") and not tag.abi.startswith(cp):
                continue
            # abi3 promises "this and every later CPython", which bytecode cannot keep: the ABI tag
            # becomes the target's own, so installers on other versions refuse the wheel.
            kept.add(Tag(cp, cp if tag.abi == "abi3" else tag.abi, tag.platform))
    if not kept:
        wanted = ", ".join(sorted(str(t) for t in tags))
        raise InvalidWheel(f"{wheel}: its tags ({wanted}) do not include CPython {major}.{minor}")
    # Keep the order the original file name gives (e.g. manylinux_2_17 before manylinux2014).
    _, abi_part, platform_part = wheel.name[: -len(".whl")].rsplit("-", 3)[-3:]
    abi_order, platform_order = abi_part.split("."), platform_part.split(".")
    abis = sorted({t.abi for t in kept}, key=lambda a: (abi_order.index(a) if a in abi_order else len(abi_order), a))
    platforms = sorted(
        {t.platform for t in kept},
        key=lambda p: (platform_order.index(p) if p in platform_order else len(platform_order), p),
    )
    if len(kept) != len(abis) * len(platforms):
        raise InvalidWheel(f"{wheel}: its tags cannot be written as one compressed tag set: {sorted(map(str, kept))}")
    return f"{cp}-{'.'.join(abis)}-{'.'.join(platforms)}", sorted(kept, key=str)


@dataclass
class CheckedWheel:
    """An open wheel that passed the gate: what it holds and what it says about itself."""

    path: Path
    zf: zipfile.ZipFile
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]
    infos: list[zipfile.ZipInfo]  # file entries in archive order (directory entries left out)
    dist_info: str
    record: dict[str, RecordEntry]  # RECORD's rows that carry a hash and a size, by name
    metadata: Message
    requires_python: SpecifierSet | None
    root_is_purelib: bool
    names: set[str] = field(default_factory=set)

    @property
    def data_dir(self) -> str:
        """``<name>-<version>.data``, as the ``.dist-info`` directory spells it."""
        return self.dist_info[: -len(".dist-info")] + ".data"

    def __enter__(self) -> CheckedWheel:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive."""
        self.zf.close()

    def check_target(self, interp: Interpreter) -> tuple[str, list[Tag]]:
        """The sourceless wheel's tags for ``interp``; refuse a target the wheel does not admit."""
        if not admits(self.requires_python, interp):
            minor = "{}.{}".format(*interp.version[:2])
            raise InvalidWheel(
                f"{self.path}: its Requires-Python `{self.requires_python}` excludes CPython {minor} "
                "(installers would refuse the wheel); choose a target it allows"
            )
        return retag(self.tags, interp, self.path)

    def check_contents(self, names: Iterable[str] | None = None) -> None:
        """Stream entries (default: all RECORD hashes) through their hashes, on a handle of its own.

        A handle of its own, so another thread can run it while this one reads ``zf``.
        """
        wanted = list(self.record) if names is None else [n for n in names if n in self.record]
        try:
            with zipfile.ZipFile(self.path) as zf:
                bad = []
                for name in wanted:
                    with zf.open(name) as stream:
                        if not self.record[name].validate_stream(cast(BinaryIO, stream)):
                            bad.append(name)
        except Exception as exc:
            # any decoder's failure (zlib, bz2, lzma, an unsupported method, an encrypted entry) is a wheel
            # that cannot be read: one line, as every reader says it
            raise _unreadable(self.path, exc) from exc
        if bad:
            raise InvalidWheel(f"{self.path}: {first_problem([_mismatch(name) for name in bad])}")

    def install(self, destination: WheelDestination) -> None:
        """Install with ``installer`` after checking every entry's contents."""
        from installer import install
        from installer.sources import WheelFile

        self.check_contents()
        try:
            install(WheelFile(self.zf), destination, {"INSTALLER": b"hatch-pyc"})
        except (ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise InvalidWheel(f"{self.path}: cannot install it ({exc})") from exc


def open_wheel(wheel: str | Path) -> CheckedWheel:
    """Open ``wheel`` and run every check that does not need its contents; the caller closes it."""
    path = Path(wheel)
    if not path.is_file():
        raise InvalidWheel(f"{path}: no such file")
    try:
        _name, version, _build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise InvalidWheel(f"{path}: {exc}") from exc
    name = canonicalize_name(_name)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidWheel(f"{path}: not a zip archive ({exc})") from exc
    try:
        infos = _check_names(zf, path)
        names = {info.filename for info in infos}
        dist_info = _dist_info_dir(infos, path, name, version)
        purelib = _check_wheel_file(_headers(zf, path, f"{dist_info}/WHEEL"), path)
        metadata = _headers(zf, path, f"{dist_info}/METADATA")
        requires_python = _check_metadata(metadata, path, name, version)
        data_dir = dist_info[: -len(".dist-info")] + ".data/"
        _check_data_dir(names, data_dir, path)
        for entry in names:
            scheme, _, rest = entry[len(data_dir) :].partition("/")
            if entry.startswith(data_dir) and (scheme not in _SCHEMES or not rest):
                raise InvalidWheel(f"{path}: entry {entry!r} is in no install scheme ({', '.join(_SCHEMES)})")
        _check_install_paths(names, data_dir, tags, path)
        record = _record_entries(zf, path, dist_info, names)
    except BaseException:
        zf.close()
        raise
    return CheckedWheel(
        path, zf, name, version, tags, infos, dist_info, record, metadata, requires_python, purelib, names
    )


__all__ = ["CheckedWheel", "InvalidWheel", "admits", "open_wheel", "retag"]
