"""Turn a wheel into a sourceless wheel for one CPython.

The input is untrusted: entry names, types, sizes and every RECORD hash are checked before
anything is written. Members that do not change are copied as their already-compressed
bytes; only the compiled modules, WHEEL and RECORD are new. The output is written to a
temporary file beside its final name and renamed when complete.
"""

from __future__ import annotations

import base64
import calendar
import csv
import hashlib
import io
import os
import posixpath
import stat
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from hatch_pyc._compile import DeliveredPyc, compile_plan
from hatch_pyc._errors import HatchPycError, InvalidInput, first_problem
from hatch_pyc._layout import outside_packages
from hatch_pyc._options import PycOptions
from hatch_pyc._plan import CompilePlan, PlannedSource
from hatch_pyc._targets import Interpreter

if TYPE_CHECKING:
    from installer.records import RecordEntry

# An entry inflating more than this many times its compressed size, to more than this
# many bytes, is treated as a decompression bomb.
MAX_RATIO = 200
MAX_ENTRY_BYTES = 1 << 30
MAX_TOTAL_BYTES = 4 << 30
_COPY_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


class InvalidWheel(InvalidInput):
    """A wheel that is malformed, inconsistent or hostile."""


@dataclass
class WheelConversion:
    """What converting one wheel for one target produced."""

    source: Path
    output: Path
    interpreter: Interpreter
    compiled: list[str] = field(default_factory=list)  # arcnames of the .py now .pyc
    kept_source: list[str] = field(default_factory=list)  # excluded or kept after an error
    tag: str = ""
    # .py in plain directories inside packages (templates such as alembic's env.py), kept as
    # source under the default ``outside_packages="keep-source"``; never in ``kept_source``.
    outside_packages: list[str] = field(default_factory=list)

    @property
    def outside_package_dirs(self) -> list[str]:
        """The plain directories holding :attr:`outside_packages` (``alembic/templates/``): what a summary names.

        Each is the directory just below the file's innermost package, whose ``__init__.py`` is
        a module of the wheel and so is in :attr:`compiled` or :attr:`kept_source`.
        """
        modules = {*self.compiled, *self.kept_source}
        dirs = set()
        for arcname in self.outside_packages:
            parts = arcname.split("/")[:-1]
            package = len(parts) - 1  # parts[:package] is the innermost package
            while package > 0 and "/".join(parts[:package]) + "/__init__.py" not in modules:
                package -= 1
            dirs.add("/".join(parts[: package + 1]) + "/")
        return sorted(dirs)


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    digest: str  # RECORD hash, "sha256=..."
    size: int


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_names(zf: zipfile.ZipFile, wheel: Path) -> list[zipfile.ZipInfo]:
    """Refuse entries that could write outside the target or hide what they are."""
    seen: set[str] = set()
    total = 0
    infos = []
    for info in zf.infolist():
        name = info.filename
        if name.endswith("/"):
            continue  # directory entries carry nothing; they are not copied
        normalised = posixpath.normpath(name)
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
            raise InvalidWheel(f"{wheel}: entry {name!r} has an absolute or non-POSIX path")
        if normalised != name or ".." in name.split("/") or name.startswith("./"):
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


def _dist_info_dir(infos: Sequence[zipfile.ZipInfo], wheel: Path) -> str:
    tops = {info.filename.split("/", 1)[0] for info in infos}
    candidates = sorted(t for t in tops if t.endswith(".dist-info") and f"{t}/WHEEL" in {i.filename for i in infos})
    if len(candidates) != 1:
        raise InvalidWheel(f"{wheel}: expected one .dist-info directory with a WHEEL file, found {candidates}")
    return candidates[0]


def _unreadable(wheel: Path, exc: BaseException) -> InvalidWheel:
    return InvalidWheel(f"{wheel}: cannot be read as a wheel ({exc})")


def _record_entries(zf: zipfile.ZipFile, wheel: Path) -> dict[str, RecordEntry]:
    """Check every entry's name against RECORD (installer's rules); return RECORD's rows by name.

    Contents are checked against these rows where they are read, each entry once: modules by
    the compile workers, everything else by :func:`_check_contents`.
    """
    from installer.records import RecordEntry, parse_record_file
    from installer.sources import WheelFile

    try:
        source = WheelFile(zf)
        source.validate_record(validate_contents=False)
        rows = list(parse_record_file(source.read_dist_info("RECORD").splitlines()))
    except ValueError as exc:
        issues = [str(issue).replace(f"In {zf.filename}, ", "") for issue in getattr(exc, "issues", None) or [exc]]
        raise InvalidWheel(f"{wheel}: {first_problem(issues)}") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise _unreadable(wheel, exc) from exc
    return {row[0]: RecordEntry.from_elements(*row) for row in rows if row[1] and row[2]}


def _digest_and_size(entry: RecordEntry | None, info: zipfile.ZipInfo) -> tuple[str, int]:
    if entry is None or entry.hash_ is None or entry.size is None:
        return "", info.file_size  # RECORD itself, signatures
    return str(entry.hash_), entry.size


def _mismatch(name: str) -> str:
    return f"hash / size of {name} didn't match RECORD"  # installer's words (and the worker's)


def _check_contents(wheel: Path, entries: dict[str, RecordEntry], names: Sequence[str]) -> None:
    """Stream ``names`` through their RECORD hashes, on a handle of its own (another thread runs it)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            bad = []
            for name in names:
                with zf.open(name) as stream:
                    if not entries[name].validate_stream(cast(BinaryIO, stream)):
                        bad.append(name)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise _unreadable(wheel, exc) from exc
    if bad:
        raise InvalidWheel(f"{wheel}: {first_problem([_mismatch(name) for name in bad])}")


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
        generic = interp_tag in (f"py{major}", cp) or (
            interp_tag.startswith(f"py{major}") and interp_tag[3:].isdigit() and int(interp_tag[3:]) <= minor
        )
        stable = tag.abi == "abi3" and interp_tag.startswith(f"cp{major}") and int(interp_tag[3:] or 0) <= minor
        if generic or stable or interp_tag == cp:
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


def _importable(arcname: str, dist_info: str, data_dir: str) -> str | None:
    """The install-relative path of a module the import system can load, else ``None``."""
    if not arcname.endswith(".py"):
        return None
    if arcname.startswith(dist_info + "/"):
        return None
    if arcname.startswith(data_dir + "/"):
        _, scheme, rest = arcname.split("/", 2) if arcname.count("/") >= 2 else (None, None, None)
        if scheme in ("purelib", "platlib") and rest:
            return rest
        return None  # scripts, data, headers: never compiled or renamed
    return arcname


def _outside_packages(arcname: str, rel: str, names: set[str]) -> bool:
    """Whether the module-looking ``arcname`` is data in a plain directory inside a package.

    ``rel`` is its path below its import root (the wheel's root or ``*.data/purelib|platlib``);
    a directory is a package when the wheel holds its ``__init__.py`` under that same root.
    """
    root = arcname[: len(arcname) - len(rel)]
    return outside_packages(rel, lambda directory: f"{root}{directory}/__init__.py" in names)


def _read_raw(src: io.BufferedReader, info: zipfile.ZipInfo) -> int:
    """Seek ``src`` to the compressed data of ``info``; return its length."""
    src.seek(info.header_offset)
    header = src.read(_LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    src.seek(info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11])
    return info.compress_size


def _new_info(name: str, like: zipfile.ZipInfo, date_time: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.external_attr = like.external_attr or (0o644 << 16)
    info.create_system = 3
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


class _Writer:
    """A reproducible zip writer that can copy members as compressed bytes."""

    def __init__(self, path: Path) -> None:
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)

    def _header(self, info: zipfile.ZipInfo) -> IO[bytes]:
        fp = self.zf.fp
        assert fp is not None
        info.header_offset = fp.tell()
        fp.write(info.FileHeader(zip64=max(info.file_size, info.compress_size) > zipfile.ZIP64_LIMIT))
        return fp

    def _added(self, info: zipfile.ZipInfo, fp: IO[bytes]) -> None:
        self.zf.filelist.append(info)
        self.zf.NameToInfo[info.filename] = info
        self.zf.start_dir = fp.tell()
        self.zf._didModify = True  # type: ignore[attr-defined]

    def copy_raw(self, src: io.BufferedReader, info: zipfile.ZipInfo, date_time: tuple[int, ...]) -> None:
        out = zipfile.ZipInfo(info.filename, date_time=date_time)  # type: ignore[arg-type]
        out.external_attr = info.external_attr
        out.create_system = 3
        out.compress_type = info.compress_type
        out.CRC = info.CRC
        out.compress_size = info.compress_size
        out.file_size = info.file_size
        out.flag_bits = info.flag_bits & 0x800  # sizes go in the local header: no data descriptor
        length = _read_raw(src, info)
        fp = self._header(out)
        while length:
            chunk = src.read(min(length, _COPY_CHUNK))
            if not chunk:
                raise zipfile.BadZipFile(f"truncated member {info.filename}")
            fp.write(chunk)
            length -= len(chunk)
        self._added(out, fp)

    def write(self, info: zipfile.ZipInfo, data: bytes) -> None:
        self.zf.writestr(info, data)

    def write_deflated(self, info: zipfile.ZipInfo, packed: DeliveredPyc) -> None:
        """Write a member whose deflated bytes were made beforehand (by a compile worker)."""
        info.compress_type = zipfile.ZIP_DEFLATED
        info.CRC = packed.crc
        info.file_size = packed.size
        info.compress_size = len(packed.deflated)
        info.flag_bits &= 0x800
        fp = self._header(info)
        fp.write(packed.deflated)
        self._added(info, fp)

    def close(self) -> None:
        self.zf.close()

    def abort(self) -> None:
        """Drop the archive without writing its central directory (the caller deletes the file)."""
        fp, self.zf.fp = self.zf.fp, None
        if fp is not None:
            try:
                fp.close()
            except OSError:
                pass


def _date_time(info: zipfile.ZipInfo, epoch: int | None) -> tuple[int, int, int, int, int, int]:
    if epoch is None:
        return info.date_time
    return time.gmtime(max(epoch, 315532800))[:6]


def _wheel_text(data: bytes, tags: list[Tag]) -> bytes:
    """WHEEL with its Tag lines replaced, every other line kept as it was."""
    message = BytesParser().parsebytes(data)
    lines = [line for line in data.decode("utf-8").splitlines() if not line.startswith("Tag:")]
    while lines and not lines[-1].strip():
        lines.pop()
    if message.get("Wheel-Version") is None:
        raise ValueError("no Wheel-Version")
    return ("\n".join(lines + [f"Tag: {t}" for t in tags]) + "\n").encode("utf-8")


def convert_wheel(
    wheel: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None,
    targets: Sequence[Interpreter],
    options: PycOptions | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
) -> list[WheelConversion]:
    """Write a sourceless copy of ``wheel`` for each target into ``out_dir``.

    ``output`` names the file instead (one target only; it may be ``wheel`` itself, which
    is replaced atomically once the new wheel is complete: how the build hook uses it).
    """
    options = options or PycOptions()
    if len(options.levels) != 1:
        raise InvalidInput("a sourceless wheel holds one optimisation level")
    path = Path(wheel)
    if not path.is_file():
        raise InvalidWheel(f"{path}: no such file")
    try:
        _name, _version, _build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise InvalidWheel(f"{path}: {exc}") from exc
    if output is not None and len(targets) != 1:
        raise InvalidInput("an explicit output name takes exactly one target")
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = int(epoch_text) if epoch_text and epoch_text.isdigit() else None
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidWheel(f"{path}: not a zip archive ({exc})") from exc
    with zf, ThreadPoolExecutor(max_workers=1, thread_name_prefix="hatch-pyc-record") as background:
        infos = _check_names(zf, path)
        dist_info = _dist_info_dir(infos, path)
        entries = _record_entries(zf, path)
        data_dir = dist_info[: -len(".dist-info")] + ".data"
        members = [_Member(i, *_digest_and_size(entries.get(i.filename), i)) for i in infos]

        # The importable sources: the workers read them from the wheel and check each against
        # RECORD themselves; everything else is checked here, beside compilation (zlib and
        # hashlib release the GIL). Nothing is written before both passed.
        sources: dict[str, tuple[str, zipfile.ZipInfo]] = {}  # arcname -> (install-relative path, entry)
        spec = None
        if options.exclude:
            import pathspec

            spec = pathspec.GitIgnoreSpec.from_lines(options.exclude)
        excluded: list[str] = []
        outside: list[str] = []  # templates and the like: copied as they are, like data
        names = {info.filename for info in infos}
        for info in infos:
            rel = _importable(info.filename, dist_info, data_dir)
            if rel is None:
                continue
            if spec is not None and spec.match_file(rel):
                excluded.append(info.filename)
                continue
            if options.outside_packages == "keep-source" and _outside_packages(info.filename, rel, names):
                outside.append(info.filename)
                continue
            sources[info.filename] = (rel, info)
        rest = [m.info.filename for m in members if m.info.filename in entries and m.info.filename not in sources]
        checked = background.submit(_check_contents, path, entries, rest)
        archive = path.resolve()

        results = []
        for interp in targets:
            tag_text, new_tags = retag(tags, interp, path)
            out_root = Path(interp.python_tag)  # names only: the pycs come back in memory
            plan = CompilePlan(
                interpreter=interp,
                options=options,
                roots=[],
                sourceless=True,
                remove_sources=False,
                deliver=True,
            )
            for arcname, (rel, info) in sources.items():
                entry = entries[arcname]
                dfile = f"{options.ddir.rstrip('/')}/{rel}" if options.ddir else rel
                pyc = out_root / (arcname[:-3] + ".pyc")
                plan.sources.append(
                    PlannedSource(
                        archive / arcname,
                        rel,
                        dfile,
                        ((options.levels[0], pyc),),
                        entry.size or 0,  # what RECORD says; the worker checks it
                        calendar.timegm((*info.date_time, 0, 0, 0)),
                        archive=archive,
                        member=arcname,
                        digest=str(entry.hash_),
                    )
                )
            try:
                result = compile_plan(plan)
            except HatchPycError as exc:
                checked.result()  # a wheel that fails its RECORD is the first thing to report
                if type(exc) is InvalidInput:  # a member the worker could not read or check
                    raise InvalidWheel(str(exc)) from exc
                raise
            checked.result()
            kept = {e.path for e in result.kept_source}
            compiled = {a for a in sources if str(archive / a) not in kept}
            out_name = f"{path.name[: -len('.whl')].rsplit('-', 3)[0]}-{tag_text}.whl"
            final = Path(output) if output is not None else Path(out_dir or ".") / out_name
            conversion = WheelConversion(
                path,
                final,
                interp,
                sorted(compiled),
                sorted(excluded + [a for a in sources if a not in compiled]),
                tag_text,
                sorted(outside),
            )
            _write_wheel(
                zf,
                path,
                members=members,
                dist_info=dist_info,
                compiled=compiled,
                pyc_root=out_root,
                pycs=result.delivered,
                tags=new_tags,
                final=final,
                epoch=epoch,
            )
            results.append(conversion)
        return results


def _write_wheel(
    zf: zipfile.ZipFile,
    wheel: Path,
    *,
    members: list[_Member],
    dist_info: str,
    compiled: set[str],
    pyc_root: Path,
    pycs: dict[Path, DeliveredPyc],
    tags: list[Tag],
    final: Path,
    epoch: int | None,
) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".hatch-pyc-tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    rows: list[tuple[str, str, str]] = []
    record_name = f"{dist_info}/RECORD"
    writer = _Writer(tmp)
    try:
        assert zf.fp is not None
        with open(wheel, "rb") as raw:
            record_info = None
            for member in members:
                info = member.info
                name = info.filename
                when = _date_time(info, epoch)
                if name == record_name:
                    record_info = info
                    continue
                if name in (f"{dist_info}/RECORD.jws", f"{dist_info}/RECORD.p7s"):
                    continue  # signatures of the old RECORD: no longer true
                if name in compiled:
                    pyc_name = name[:-3] + ".pyc"
                    pyc = pycs[pyc_root / pyc_name]
                    writer.write_deflated(_new_info(pyc_name, info, when), pyc)
                    rows.append((pyc_name, pyc.digest, str(pyc.size)))
                elif name == f"{dist_info}/WHEEL":
                    data = _wheel_text(zf.read(info), tags)
                    writer.write(_new_info(name, info, when), data)
                    rows.append((name, _record_hash(data), str(len(data))))
                else:
                    writer.copy_raw(raw, info, when)
                    rows.append((name, member.digest, str(member.size)))
            buffer = io.StringIO()
            csv_writer = csv.writer(buffer, delimiter=",", quotechar='"', lineterminator="\n")
            csv_writer.writerows(rows)
            csv_writer.writerow((record_name, "", ""))
            like = record_info or members[-1].info
            writer.write(_new_info(record_name, like, _date_time(like, epoch)), buffer.getvalue().encode("utf-8"))
        writer.close()
        mode = final.stat().st_mode & 0o777 if final.exists() else 0o644
        tmp.chmod(mode)
        os.replace(tmp, final)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise


def wheel_target_tag(wheel: str | os.PathLike[str], interp: Interpreter) -> str:
    """The compressed tag ``convert_wheel`` would give ``wheel`` for ``interp``."""
    path = Path(wheel)
    _, _, _, tags = parse_wheel_filename(path.name)
    return retag(tags, interp, path)[0]


__all__ = ["InvalidWheel", "WheelConversion", "convert_wheel", "retag", "wheel_target_tag"]
