"""Write OCI image layers of a compiled install, without a container engine.

Wheels are installed with ``installer`` into a staging root under the image path ``prefix``,
compiled there with the engine, and written as one tar+gzip layer: sorted entries, owner
0:0, normalised modes, fixed times, identical pycs as hard links, gzip header time 0. The
same inputs give the same bytes, so the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hatch_pyc._commit import make_parents, write_name
from hatch_pyc._compile import CompileResult, compile_tree
from hatch_pyc._errors import InvalidInput
from hatch_pyc._options import PycOptions
from hatch_pyc._targets import Interpreter

DEFAULT_EPOCH = 1580601600  # hatchling's default SOURCE_DATE_EPOCH: 2020-02-02
_SITE = re.compile(r"^(?P<base>/.*)/lib/python(?P<minor>\d+\.\d+)/(site|dist)-packages$")


@dataclass(frozen=True)
class LayerResult:
    """What was written: the layer file, its two digests, and what went in."""

    path: Path
    digest: str  # sha256 of the compressed blob (manifest "layers[].digest")
    diff_id: str  # sha256 of the uncompressed tar (config "rootfs.diff_ids")
    size: int
    entries: int
    compile: CompileResult


@dataclass(frozen=True)
class ImagePaths:
    """Where a wheel's parts go inside the image."""

    purelib: PurePosixPath
    scripts: PurePosixPath
    data: PurePosixPath
    headers: PurePosixPath
    interpreter: PurePosixPath


def image_paths(prefix: str, interp: Interpreter, scripts: str | None = None, python: str | None = None) -> ImagePaths:
    """Paths in the image for site-packages ``prefix`` (``/usr/local/lib/python3.12/site-packages``)."""
    site = _image_path("--prefix", prefix)
    match = _SITE.match(str(site))
    base = PurePosixPath(match.group("base")) if match else site
    if match and match.group("minor") != interp.minor:
        raise InvalidInput(f"--prefix {prefix} is for Python {match.group('minor')}, but the target is {interp.minor}")
    return ImagePaths(
        purelib=site,
        scripts=_image_path("--scripts-dir", scripts) if scripts is not None else base / "bin",
        data=base,
        headers=base / "include" / f"python{interp.minor}",
        interpreter=_image_path("--interpreter-path", python)
        if python is not None
        else base / "bin" / f"python{interp.minor}",
    )


def _image_path(option: str, value: str) -> PurePosixPath:
    """A path inside the image, as given to ``option``: absolute, without ``..`` (the layer is built under a
    staging root on this machine, so ``/../../tmp`` would reach outside it) and without control characters (the
    interpreter's path is written into each script's first line)."""
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise InvalidInput(f"{option} {value!r}: must be an absolute path inside the image")
    if ".." in path.parts:
        raise InvalidInput(f"{option} {value!r}: must not contain '..' (a path inside the image, spelled out)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"{option} {value!r}: must not contain control characters")
    return path


def _install(wheels: Sequence[Path], root: Path, paths: ImagePaths, interp: Interpreter) -> None:
    """Install each wheel through the gate (:func:`~hatch_pyc._wheelcheck.open_wheel`), refusing one
    whose tags or Requires-Python exclude the image's interpreter, as installers would."""
    from installer.destinations import SchemeDictionaryDestination

    from hatch_pyc._wheelcheck import open_wheel

    def inside(p: PurePosixPath) -> str:
        where = os.path.normpath(root / p.relative_to("/"))
        if os.path.commonpath([where, os.path.normpath(root)]) != os.path.normpath(root):  # image_paths refused it
            raise InvalidInput(f"{p}: not a path inside the image")
        return where

    scheme = {
        "purelib": inside(paths.purelib),
        "platlib": inside(paths.purelib),
        "scripts": inside(paths.scripts),
        "data": inside(paths.data),
        "headers": inside(paths.headers),
    }
    for wheel in wheels:
        destination = SchemeDictionaryDestination(
            scheme, interpreter=str(paths.interpreter), script_kind="posix", bytecode_optimization_levels=()
        )
        with open_wheel(wheel) as checked:
            checked.check_target(interp)
            checked.install(destination)


def _tar_info(name: str, st: os.stat_result, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.mode = 0o777
    else:
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        info.size = st.st_size
    return info


def write_tar(root: Path, out: io.BufferedIOBase, epoch: int) -> int:
    """Write the tree under ``root`` as a reproducible tar stream; return the number of entries."""
    entries: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        if str(rel) != ".":
            entries.append(rel.as_posix())
        entries.extend((rel / name).as_posix() if str(rel) != "." else name for name in filenames)
    entries.sort()
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in entries:
            path = root / name
            st = path.lstat()
            info = _tar_info(name, st, epoch)
            if info.type == tarfile.SYMTYPE:
                info.linkname = os.readlink(path)
                tar.addfile(info)
                continue
            if info.isreg():
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen[key]
                    info.size = 0
                    tar.addfile(info)
                    continue
                seen[key] = name
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return len(entries)


class _Digesting(io.RawIOBase):
    """A write-only stream that hashes what passes through and forwards it."""

    def __init__(self, sink: io.BufferedIOBase | gzip.GzipFile) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hash.update(data)
        self.count += len(data)
        self.sink.write(data)
        return len(data)


def write_layer(
    wheels: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    interp: Interpreter,
    *,
    prefix: str,
    options: PycOptions | None = None,
    scripts: str | None = None,
    python: str | None = None,
) -> LayerResult:
    """Install ``wheels`` under ``prefix``, compile them for ``interp``, write one gzip layer to ``output``."""
    options = options or PycOptions()
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = int(epoch_text) if epoch_text and epoch_text.isdigit() else DEFAULT_EPOCH
    paths = image_paths(prefix, interp, scripts, python)
    out = Path(output)
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-layer-") as scratch:
        root = Path(scratch) / "root"
        _install([Path(w) for w in wheels], root, paths, interp)
        site = root / paths.purelib.relative_to("/")
        # Timestamp pycs must match the time every file will have in the layer.
        layer_options = PycOptions(
            levels=options.levels,
            strip=options.strip,
            exclude=options.exclude,
            invalidation=options.invalidation,
            on_error=options.on_error,
            workers=options.workers,
            ddir=options.ddir or str(paths.purelib),
            source_date_epoch=epoch,
            outside_packages=options.outside_packages,
            cache=options.cache,
            cache_dir=options.cache_dir,
            compact=options.compact,
        )
        result = compile_tree([site], layer_options, python=interp.executable)
        # Written to a hidden name and renamed whole; a failure leaves neither it nor the directories made for it.
        made = make_parents(out)
        tmp_name = write_name(out)
        try:
            with open(tmp_name, "xb") as raw:
                blob = _Digesting(raw)
                with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6) as gz:
                    tar_stream = _Digesting(gz)
                    entries = write_tar(root, tar_stream, epoch)  # type: ignore[arg-type]
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, out)
        except BaseException:
            tmp_name.unlink(missing_ok=True)
            for directory in made:
                try:
                    directory.rmdir()
                except OSError:
                    break
            raise
    return LayerResult(
        path=out,
        digest="sha256:" + blob.hash.hexdigest(),
        diff_id="sha256:" + tar_stream.hash.hexdigest(),
        size=blob.count,
        entries=entries,
        compile=result,
    )
