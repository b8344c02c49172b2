"""Decode a pyc header (PEP 552): which CPython it is for and what keeps it valid."""

from __future__ import annotations

import datetime
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from hatch_pyc._errors import InvalidPyc

# Magic numbers of released CPythons (Lib/importlib/_bootstrap_external.py, since 3.14
# Include/internal/pycore_magic_number.h); ranges cover the pre-releases of each version, which
# bump the number as the bytecode changes. A number past the last range is reported as unknown,
# never guessed: hatch-pyc compiles with the target's own magic number, so the table only names
# versions in `inspect` and in messages.
RELEASED_MAGIC: dict[int, str] = {
    3413: "3.8",
    3425: "3.9",
    3439: "3.10",
    3495: "3.11",
    3531: "3.12",
    3571: "3.13",
    3627: "3.14",
    3666: "3.15",
}
MAGIC_RANGES: tuple[tuple[int, int, str], ...] = (
    (3400, 3419, "3.8"),
    (3420, 3429, "3.9"),
    (3430, 3449, "3.10"),
    (3450, 3499, "3.11"),
    (3500, 3549, "3.12"),
    (3550, 3599, "3.13"),
    (3600, 3649, "3.14"),
    (3650, 3699, "3.15"),
)


def python_version_of_magic(number: int) -> str | None:
    """``3531`` -> ``"3.12"``; ``None`` when the number is not a known CPython 3 magic."""
    if number in RELEASED_MAGIC:
        return RELEASED_MAGIC[number]
    for low, high, version in MAGIC_RANGES:
        if low <= number <= high:
            return version
    return None


@dataclass(frozen=True)
class PycHeader:
    """The 16-byte header of a pyc file."""

    magic: bytes
    magic_number: int
    python: str | None
    flags: int
    source_mtime: int | None
    source_size: int | None
    source_hash: bytes | None

    @property
    def invalidation_mode(self) -> str:
        """``timestamp``, ``checked-hash`` or ``unchecked-hash``."""
        if not self.flags & 0b01:
            return "timestamp"
        return "checked-hash" if self.flags & 0b10 else "unchecked-hash"

    def describe(self) -> dict[str, object]:
        """A JSON-friendly view, for ``hatch-pyc inspect``."""
        info: dict[str, object] = {
            "magic": self.magic.hex(),
            "magic_number": self.magic_number,
            "python": self.python,
            "flags": self.flags,
            "invalidation_mode": self.invalidation_mode,
        }
        if self.source_mtime is not None:
            info["source_mtime"] = self.source_mtime
            info["source_mtime_utc"] = datetime.datetime.fromtimestamp(
                self.source_mtime, tz=datetime.timezone.utc
            ).isoformat()
            info["source_size"] = self.source_size
        if self.source_hash is not None:
            info["source_hash"] = self.source_hash.hex()
        return info


def parse_header(data: bytes, name: str = "<bytes>") -> PycHeader:
    """Decode the first 16 bytes of a pyc; raise :class:`InvalidPyc` naming ``name``."""
    if len(data) < 16:
        raise InvalidPyc(f"{name}: {len(data)} bytes, too short for a pyc header (16 bytes)")
    magic = data[:4]
    if magic[2:4] != b"\r\n":
        raise InvalidPyc(f"{name}: not a pyc file (bad magic {magic.hex()})")
    (number,) = struct.unpack("<H", magic[:2])
    (flags,) = struct.unpack("<I", data[4:8])
    if flags & ~0b11:
        raise InvalidPyc(f"{name}: unknown header flags {flags:#x}")
    if flags & 0b01:
        return PycHeader(magic, number, python_version_of_magic(number), flags, None, None, data[8:16])
    mtime, size = struct.unpack("<II", data[8:16])
    return PycHeader(magic, number, python_version_of_magic(number), flags, mtime, size, None)


def read_header(path: str | os.PathLike[str]) -> PycHeader:
    """Read and decode the header of the pyc at ``path``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(16)
    except OSError as exc:
        raise InvalidPyc(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    return parse_header(data, str(Path(path)))


_CODE_INFO = r"""
import dis, io, json, marshal, sys
data = open(sys.argv[1], "rb").read()
code = marshal.loads(data[16:])
out = io.StringIO()
if sys.argv[2] == "1":
    dis.dis(code, file=out)
print(json.dumps({"filename": code.co_filename, "name": code.co_name,
                  "python": "%d.%d.%d" % sys.version_info[:3], "dis": out.getvalue()}))
"""


@dataclass(frozen=True)
class CodeInfo:
    """What the code object in a pyc says, as read by a matching interpreter."""

    filename: str
    name: str
    read_by: str
    dis: str


def read_code_info(path: str | os.PathLike[str], *, with_dis: bool = False) -> CodeInfo | None:
    """Load the pyc's code object in a CPython with its magic number; ``None`` if none is found."""
    import json
    import subprocess
    import sys
    from importlib.util import MAGIC_NUMBER

    from hatch_pyc._errors import InvalidTarget
    from hatch_pyc._targets import find_interpreter

    header = read_header(path)
    if header.magic == MAGIC_NUMBER:
        executable = sys.executable
    elif header.python is None:
        return None
    else:
        try:
            interp = find_interpreter(header.python)
        except InvalidTarget:
            return None
        if interp.magic != header.magic:
            return None
        executable = interp.executable
    proc = subprocess.run(
        [executable, "-I", "-B", "-c", _CODE_INFO, os.fspath(path), "1" if with_dis else "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InvalidPyc(f"{path}: the header is valid but the code does not load ({last})")
    info = json.loads(proc.stdout)
    return CodeInfo(info["filename"], info["name"], info["python"], info["dis"])
