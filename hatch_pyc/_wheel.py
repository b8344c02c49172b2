"""Turn a wheel into a sourceless wheel for one CPython.

The input is untrusted: it is opened through the gate (:mod:`hatch_pyc._wheelcheck`), and
every target and every RECORD hash is checked before anything is written. Members that do
not change are copied as their already-compressed bytes; only the compiled modules, WHEEL
and RECORD are new. Outputs are written to temporary files beside their final names and
renamed when all are complete, together: a failure while renaming puts back what the earlier
renames replaced, SIGINT and SIGTERM wait until the renames are done, and temporaries left by a
killed run (``.<name>.<pid>-<hex>.hatch-pyc-tmp``) are removed by the next run that writes
the same output.
"""

from __future__ import annotations

import base64
import calendar
import csv
import hashlib
import io
import os
import stat
import struct
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path
from typing import IO, TYPE_CHECKING

from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from hatch_pyc._commit import make_parents, new_token, one_commit, write_name
from hatch_pyc._compile import DeliveredPyc, compile_plan
from hatch_pyc._errors import CompileFailed, HatchPycError, Interrupted, InvalidInput, first_problem
from hatch_pyc._layout import outside_packages
from hatch_pyc._options import PycOptions
from hatch_pyc._overlap import as_written
from hatch_pyc._plan import CompilePlan, PlannedSource
from hatch_pyc._stubs import (
    StubResult,
    make_stubs,
    merge,
    package_dirs,
    stub_name,
    stubgen_missing,
    typed_packages,
    wants_stub,
)
from hatch_pyc._targets import Interpreter
from hatch_pyc._wheelcheck import CheckedWheel, InvalidWheel, _check_install_paths, _install_path, open_wheel, retag

if TYPE_CHECKING:
    from installer.records import RecordEntry

_COPY_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


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
    # ``mod.pyc`` entries the input shipped beside a ``mod.py`` that was compiled: never loaded
    # there (the source wins), they are replaced by the compiled module, never written twice.
    replaced: list[str] = field(default_factory=list)
    cache_hits: int = 0  # modules whose code came from the compile cache
    cache_misses: int = 0  # modules compiled (and stored) with the cache on
    notes: list[str] = field(default_factory=list)  # said to the user, not errors (a cache not used, why)
    stubs: list[str] = field(default_factory=list)  # arcnames of the .pyi stubs generated for compiled modules
    stub_cache_hits: int = 0  # of those stubs (and stubgen's errors), how many came from the compile cache

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


def _digest_and_size(entry: RecordEntry | None, info: zipfile.ZipInfo) -> tuple[str, int]:
    if entry is None or entry.hash_ is None or entry.size is None:
        return "", info.file_size  # RECORD itself, signatures
    return str(entry.hash_), entry.size


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


def _place(info: zipfile.ZipInfo, end: int) -> tuple[int, int, int, str, int, int, int] | None:
    """Where a compile worker reads ``info`` without zipfile (see :class:`~hatch_pyc._plan.PlannedSource`;
    ``end``: where the next entry or the central directory begins): only a member stored or deflated, neither
    encrypted nor patched (flag bits 0x1, 0x20, 0x40, which zipfile refuses); any other is read through zipfile."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x61:
        return None
    return (
        info.header_offset,
        info.compress_size,
        info.compress_type,
        info.orig_filename,
        info.CRC,
        info.file_size,
        end,
    )


def _ends(zf: zipfile.ZipFile) -> dict[str, int]:
    """Each entry's name -> where the next entry (by offset), or else the central directory, begins."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    starts = [i.header_offset for i in infos[1:]] + [zf.start_dir]
    return {info.filename: start for info, start in zip(infos, starts, strict=True)}


def _file_attr(like: zipfile.ZipInfo) -> int:
    """A regular file's ``external_attr``: 0o755 if the input's mode had an execute bit, else 0o644.

    That is all an installer reads of it (pip and installer make a file executable or not);
    set-id, sticky and world-writable bits, or a file type, from an untrusted wheel are dropped.
    """
    return (stat.S_IFREG | (0o755 if (like.external_attr >> 16) & 0o111 else 0o644)) << 16


def _new_info(name: str, like: zipfile.ZipInfo, date_time: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.external_attr = _file_attr(like)
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
        out.external_attr = _file_attr(info)
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
    lines: list[str] = []
    in_tag = False
    for line in data.decode("utf-8").splitlines():
        # header names are read in any letter case, and a line starting with blank space continues one
        in_tag = (in_tag and line[:1] in (" ", "\t")) or line.split(":", 1)[0].strip().lower() == "tag"
        if not in_tag:
            lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    if message.get("Wheel-Version") is None:
        raise ValueError("no Wheel-Version")
    return ("\n".join(lines + [f"Tag: {t}" for t in tags]) + "\n").encode("utf-8")


def _epoch() -> int | None:
    text = os.environ.get("SOURCE_DATE_EPOCH")
    return int(text) if text and text.isdigit() else None


def _output_name(checked: CheckedWheel, tag_text: str) -> str:
    return f"{checked.path.name[: -len('.whl')].rsplit('-', 3)[0]}-{tag_text}.whl"


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
    Every target is checked before anything is written, and the outputs are renamed into
    place together once all of them are complete.
    """
    options = _check_options(options, targets, output)
    staged: list[tuple[Path, Path]] = []
    with open_wheel(Path(wheel)) as checked:
        planned = _outputs(checked, targets, out_dir, output)
        made = [d for *_, final in planned for d in make_parents(final)]
        try:
            results = _convert(checked, planned, options, staged)
        except BaseException:
            _discard(staged, made)
            raise
    _commit(staged, results)
    return results


def convert_wheels(
    wheels: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    targets: Sequence[Interpreter],
    options: PycOptions | None = None,
    *,
    also_written: str | os.PathLike[str] | None = None,
) -> list[WheelConversion]:
    """Convert every wheel for every target, or write nothing.

    Every (wheel, target) pair is checked first (the gate, the tags, ``Requires-Python``,
    two outputs with one name, an output where ``also_written`` goes: a --json); a refusal names the pair and
    nothing is written. The outputs are then written to hidden temporary files and renamed into place only when
    all are done.
    """
    options = _check_options(options, targets, None)
    problems: list[str] = []
    outputs: dict[str, Path] = {}
    inputs = {Path(w).resolve() for w in wheels}
    other = as_written(also_written) if also_written is not None else None
    first: CheckedWheel | None = None  # kept open: converted first, it is not opened and checked twice
    try:
        for wheel in wheels:
            checked = open_wheel(Path(wheel))
            if first is None:
                first = checked
            try:
                for interp in targets:
                    try:
                        ((_, _, _, final),) = _outputs(checked, [interp], out_dir, None)
                    except InvalidInput as exc:  # the wheel refuses the target, or a directory holds the output's name
                        problems.append(str(exc))
                        continue
                    name = final.name
                    if final.resolve() in inputs:
                        problems.append(
                            f"{checked.path}: its output {final} would replace an input wheel; choose another -o"
                        )
                    if other is not None and as_written(final) == other:
                        problems.append(f"{checked.path}: its output {final} is where --json {also_written} goes")
                    if name in outputs and outputs[name] != checked.path:
                        problems.append(f"{outputs[name]} and {checked.path} would both be written as {name}")
                    outputs[name] = checked.path
            finally:
                if checked is not first:
                    checked.close()
        if problems:
            raise InvalidWheel(first_problem(problems) + "; nothing was written")
        staged: list[tuple[Path, Path]] = []
        results: list[WheelConversion] = []
        made = make_parents(Path(out_dir) / "wheel")
        try:
            for wheel in dict.fromkeys(Path(w) for w in wheels):
                checked = first if first is not None else open_wheel(wheel)  # the first is wheels[0], still open
                first = None  # closed by the with below
                with checked:
                    planned = _outputs(checked, targets, out_dir, None)
                    results.extend(_convert(checked, planned, options, staged))
        except BaseException:
            _discard(staged, made)
            raise
    finally:
        if first is not None:
            first.close()
    _commit(staged, results)
    return results


def _check_options(
    options: PycOptions | None, targets: Sequence[Interpreter], output: str | os.PathLike[str] | None
) -> PycOptions:
    options = options or PycOptions()
    if len(options.levels) != 1:
        raise InvalidInput("a sourceless wheel holds one optimisation level")
    if output is not None and len(targets) != 1:
        raise InvalidInput("an explicit output name takes exactly one target")
    return options


def _discard(staged: list[tuple[Path, Path]], made: Sequence[Path] = ()) -> None:
    """Remove the temporaries, and the output directories this run created (deepest first) if empty."""
    for tmp, _final in staged:
        tmp.unlink(missing_ok=True)
    for directory in made:
        try:
            directory.rmdir()
        except OSError:  # not empty: something else was written there meanwhile
            pass


def _commit(staged: list[tuple[Path, Path]], results: list[WheelConversion]) -> None:
    """Rename every finished temporary into place as one commit (:func:`hatch_pyc._commit.one_commit`).

    A rename that fails puts back every file the earlier ones replaced and removes the
    temporaries; SIGINT and SIGTERM are held until the renames are done, then reported as
    :class:`Interrupted` carrying ``results`` (every output was written).
    """
    try:
        with one_commit(new_token()) as commit:
            for tmp, final in staged:
                commit.install(tmp, final)
    finally:
        _discard(staged)  # those not moved into place
    if commit.signals:
        raise Interrupted(commit.signals[0], results)


def _outputs(
    checked: CheckedWheel,
    targets: Sequence[Interpreter],
    out_dir: str | os.PathLike[str] | None,
    output: str | os.PathLike[str] | None,
) -> list[tuple[Interpreter, str, list[Tag], Path]]:
    """Each target's tag text, tags and output path; refuse a target the wheel does not admit, or an
    output whose name a directory holds (before any work)."""
    planned = []
    for interp in targets:
        tag_text, new_tags = checked.check_target(interp)
        final = Path(output) if output is not None else Path(out_dir or ".") / _output_name(checked, tag_text)
        if final.is_dir() and not final.is_symlink():
            raise InvalidInput(f"{final}: a directory, where the converted wheel goes")
        planned.append((interp, tag_text, new_tags, final))
    return planned


def _convert(
    checked: CheckedWheel,
    outputs: list[tuple[Interpreter, str, list[Tag], Path]],
    options: PycOptions,
    staged: list[tuple[Path, Path]],
) -> list[WheelConversion]:
    """Convert one checked wheel for each of its :func:`_outputs`; append each finished
    (temporary, final) to ``staged``."""
    path, zf, dist_info, entries = checked.path, checked.zf, checked.dist_info, checked.record
    epoch = _epoch()
    infos = checked.infos
    data_dir = checked.data_dir
    members = [_Member(i, *_digest_and_size(entries.get(i.filename), i)) for i in infos]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="hatch-pyc-record") as background:
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
        names = checked.names
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
        contents = background.submit(checked.check_contents, rest)
        archive = path.resolve()
        stub_inputs, stub_notes = _stub_inputs(checked, sources, options)

        results = []
        ends = _ends(zf)
        for interp, tag_text, new_tags, final in outputs:
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
                        place=_place(info, ends[arcname]),
                    )
                )
            stub_job = background.submit(_stubs_for, checked, stub_inputs, interp, options) if stub_inputs else None
            try:
                result = compile_plan(plan)
                stubs = stub_job.result() if stub_job is not None else StubResult()
            except HatchPycError as exc:
                contents.result()  # a wheel that fails its RECORD is the first thing to report
                if type(exc) is InvalidInput:  # a member the worker could not read or check
                    raise InvalidWheel(str(exc)) from exc
                raise
            contents.result()
            if stubs.errors and options.on_error == "fail":
                raise CompileFailed(stubs.errors)
            kept = {e.path for e in result.kept_source}
            # a module without its stub is kept as source: its types stay
            compiled = {a for a in sources if str(archive / a) not in kept and a not in stubs.failed}
            new_stubs = {a: data for a, data in stubs.stubs.items() if a in compiled}
            # A shipped pyc where a compiled module's pyc installs (beside its mod.py, or the same path through
            # <name>.data/purelib): replaced, so no path is written twice.
            pyc_of = {a: a[:-3] + ".pyc" for a in compiled}
            installs = {_install_path(pyc, f"{data_dir}/") for pyc in pyc_of.values()}
            replaced = sorted(n for n in names if n.endswith(".pyc") and _install_path(n, f"{data_dir}/") in installs)
            # What the sourceless wheel holds must install as the wheel did: no two entries at one path, no file
            # where a directory goes, no two names one file where the wheel may be installed (pkg/A.py beside a
            # shipped pkg/a.pyc becomes A.pyc and a.pyc).
            unchanged = [
                m.info.filename for m in members if m.info.filename not in replaced and m.info.filename not in pyc_of
            ]
            try:
                _check_install_paths(
                    [*unchanged, *pyc_of.values(), *(stub_name(a) for a in new_stubs)],
                    f"{data_dir}/",
                    frozenset(new_tags),
                    path,
                )
            except InvalidWheel as exc:
                raise InvalidWheel(f"{exc} once its modules are compiled; nothing was written") from None
            conversion = WheelConversion(
                path,
                final,
                interp,
                sorted(compiled),
                sorted(excluded + [a for a in sources if a not in compiled]),
                tag_text,
                sorted(outside),
                replaced,
                result.cache_hits,
                result.cache_misses,
                result.notes + stub_notes,
                sorted(stub_name(a) for a in new_stubs),
                stubs.cache_hits,
            )
            tmp = _write_wheel(
                zf,
                path,
                members=[m for m in members if m.info.filename not in replaced],
                dist_info=dist_info,
                compiled=compiled,
                pyc_root=out_root,
                pycs=result.delivered,
                stubs=new_stubs,
                tags=new_tags,
                final=final,
                epoch=epoch,
            )
            staged.append((tmp, final))
            results.append(conversion)
        return results


@dataclass(frozen=True)
class _StubInputs:
    """What stub generation reads from one import root of a wheel (the root, or ``*.data/purelib/``)."""

    root: str  # arcname prefix
    wanted: list[str]  # import-root-relative names of the modules to stub
    context: list[str]  # and of the modules written beside them (their packages' ``__init__.py``)


def _stub_inputs(
    checked: CheckedWheel, sources: dict[str, tuple[str, zipfile.ZipInfo]], options: PycOptions
) -> tuple[list[_StubInputs], list[str]]:
    """Which compiled modules get a stub, by import root, and notes on those that cannot have one.

    Typed is decided on install paths (a ``py.typed`` in the root covers the package's modules under
    ``*.data/purelib``). An entry already at the stub's install path wins: a hand-written ``.pyi``, in any
    root, in any letter case (one file on macOS and Windows), or a directory of that name.
    """
    mode = options.stubs or "typed"
    if mode == "none":
        return [], []
    names = checked.names
    data_dir = checked.data_dir
    # where each entry installs, relative to site-packages (the root and .data/purelib|platlib are one)
    installed = [p[len("lib/") :] for n in names if (p := _install_path(n, f"{data_dir}/")).startswith("lib/")]
    typed = typed_packages(installed)
    taken = {path.lower() for path in installed}
    taken |= package_dirs(taken)
    by_root: dict[str, list[str]] = {}
    for arcname, (rel, _info) in sources.items():
        by_root.setdefault(arcname[: len(arcname) - len(rel)], []).append(rel)
    found, notes = [], []
    for root, modules in sorted(by_root.items()):
        wanted = []
        for module in sorted(m for m in modules if wants_stub(m, mode, typed)):
            if stub_name(module).lower() in taken:
                if stub_name(root + module) not in names:  # not its own hand-written stub: say why it has none
                    notes.append(f"{root + module}: no type stub made, another entry of the wheel installs to its name")
                continue
            wanted.append(module)
        if not wanted:
            continue
        context = sorted(
            rel
            for n in names
            if n.startswith(root)
            and (rel := n[len(root) :]).endswith("/__init__.py")
            and rel.rpartition("/")[0] in package_dirs(wanted)
        )
        found.append(_StubInputs(root, wanted, context))
    if found:
        missing = stubgen_missing()
        if missing is not None:
            first = found[0].root + found[0].wanted[0]
            raise InvalidInput(
                f"{checked.path}: {first} is in a typed package (py.typed) and its stub cannot be made: {missing}; "
                'or turn stubs off (--stubs none, `stubs = "none"`)'
            )
    return found, notes


def _stubs_for(
    checked: CheckedWheel, inputs: list[_StubInputs], interp: Interpreter, options: PycOptions
) -> StubResult:
    """The stubs of one target, by arcname; each source read is checked against RECORD first."""
    results = []
    with zipfile.ZipFile(checked.path) as zf:  # a handle of its own: this runs beside the compile
        for group in inputs:
            sources = {}
            for rel in sorted({*group.wanted, *group.context}):
                arcname = group.root + rel
                data = zf.read(arcname)
                entry = checked.record.get(arcname)
                if entry is None or not entry.validate(data):
                    raise InvalidWheel(f"{checked.path}: {arcname} does not match its RECORD hash")
                sources[rel] = data
            names = {rel: group.root + rel for rel in group.wanted}
            results.append(make_stubs(sources, names, interp, options, f"{checked.path}:{group.root}"))
    return merge(results)


def _write_wheel(
    zf: zipfile.ZipFile,
    wheel: Path,
    *,
    members: list[_Member],
    dist_info: str,
    compiled: set[str],
    pyc_root: Path,
    pycs: dict[Path, DeliveredPyc],
    stubs: dict[str, bytes],
    tags: list[Tag],
    final: Path,
    epoch: int | None,
) -> Path:
    """Write the new wheel to a hidden temporary beside ``final``; return its path (the caller renames it).

    Temporaries and backups of ``final`` that a killed run left are removed first.
    """
    tmp = write_name(final)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
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
                if name.startswith(f"{dist_info}/") and name.rpartition("/")[2] in ("RECORD.jws", "RECORD.p7s"):
                    continue  # signatures of the old RECORD, anywhere in .dist-info: no longer true
                if name in compiled:
                    pyc_name = name[:-3] + ".pyc"
                    pyc = pycs[pyc_root / pyc_name]
                    writer.write_deflated(_new_info(pyc_name, info, when), pyc)
                    rows.append((pyc_name, pyc.digest, str(pyc.size)))
                    if name in stubs:  # its types, where type checkers look once the source is gone
                        stub = stubs[name]
                        writer.write(_new_info(stub_name(name), info, when), stub)
                        rows.append((stub_name(name), _record_hash(stub), str(len(stub))))
                elif name == f"{dist_info}/WHEEL":
                    data = _wheel_text(zf.read(info), tags)
                    writer.write(_new_info(name, info, when), data)
                    rows.append((name, _record_hash(data), str(len(data))))
                else:
                    writer.copy_raw(raw, info, when)
                    rows.append((name, member.digest, str(member.size)))
            written = [row[0] for row in rows]
            if len(set(written)) != len(written):  # the converter's own promise, kept by construction
                twice = sorted({n for n in written if written.count(n) > 1})
                raise InvalidWheel(f"{wheel}: the converted wheel would hold {twice[0]!r} twice")
            buffer = io.StringIO()
            csv_writer = csv.writer(buffer, delimiter=",", quotechar='"', lineterminator="\n")
            csv_writer.writerows(rows)
            csv_writer.writerow((record_name, "", ""))
            like = record_info or members[-1].info
            writer.write(_new_info(record_name, like, _date_time(like, epoch)), buffer.getvalue().encode("utf-8"))
        writer.close()
        try:  # a regular file replaced keeps its mode; a link is replaced, never followed for one
            there = os.lstat(final)
            mode = there.st_mode & 0o777 if stat.S_ISREG(there.st_mode) else 0o644
        except FileNotFoundError:
            mode = 0o644
        tmp.chmod(mode)
    except BaseException:
        writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def wheel_target_tag(wheel: str | os.PathLike[str], interp: Interpreter) -> str:
    """The compressed tag ``convert_wheel`` would give ``wheel`` for ``interp``."""
    path = Path(wheel)
    _, _, _, tags = parse_wheel_filename(path.name)
    return retag(tags, interp, path)[0]


__all__ = ["InvalidWheel", "WheelConversion", "convert_wheel", "convert_wheels", "retag", "wheel_target_tag"]
