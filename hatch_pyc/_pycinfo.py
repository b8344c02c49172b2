"""Decode a pyc header (PEP 552): which CPython it is for and what keeps it valid."""

from __future__ import annotations

import datetime
import os
import stat
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
    """``3531`` -> ``"3.12"``; ``None`` when the number is not a known CPython 3 magic.

    Each released number lies in its version's range (a test checks it), so the ranges decide.
    """
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
        # O_NONBLOCK: a FIFO given as the pyc must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidPyc(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidPyc(f"{path}: not a regular file")
    with open(fd, "rb") as handle:
        try:
            data = handle.read(16)
        except OSError as exc:
            raise InvalidPyc(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    return parse_header(data, str(Path(path)))


# Runs in the interpreter the pyc is for, with what it may spend fixed before it reads a byte:
# marshal allocates what a count declares before it reads the first item (a 21-byte pyc declaring
# a tuple of 2**31 items asks for 16 GiB), and ``dis`` repeats what shared references repeat, so a
# small pyc can ask for any amount. The address-space limit makes such a request fail at once with
# MemoryError; the parent's timeout bounds the rest. A pre-scan of the marshal stream would have to
# know every CPython's code object layout and still would not bound ``dis``.
_CODE_INFO = r"""
import json, resource, sys
def fail(kind):
    sys.stdout.write(json.dumps({"refused": kind}))
    sys.exit(3)
try:
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
except (OSError, ValueError):
    used = None
if used is not None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = used + int(sys.argv[3])
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
try:
    import dis, io, marshal
    with open(sys.argv[1], "rb") as handle:
        data = handle.read(int(sys.argv[4]) + 1)
    code = marshal.loads(data[16:])
    if type(code).__name__ != "code":
        sys.exit("ValueError: the pyc holds a %s, not a code object" % type(code).__name__)
    out = io.StringIO()
    if sys.argv[2] == "1":
        breaks = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines() ends a line
        def esc(name):
            return "".join(repr(c)[1:-1] if c in breaks else c for c in name)
        def shown(code):
            # the code with a line break in any name written as an escape: dis prints names as they are, and one
            # crafted name would otherwise forge lines of the listing
            consts = tuple(shown(c) if type(c) is type(code) else c for c in code.co_consts)
            try:
                return code.replace(co_consts=consts, co_names=tuple(map(esc, code.co_names)),
                                    co_varnames=tuple(map(esc, code.co_varnames)), co_name=esc(code.co_name))
            except (TypeError, ValueError):
                return code
        dis.dis(shown(code), file=out)
    text = json.dumps({"filename": code.co_filename, "name": code.co_name,
                       "python": "%d.%d.%d" % sys.version_info[:3], "dis": out.getvalue()})
except MemoryError:
    fail("memory")
except RecursionError:
    fail("depth")
print(text)
"""
# What decoding an untrusted pyc may cost: address space beyond what the interpreter holds at
# start (a real pyc takes some 10 times its size to load and ``dis``), and time.
DECODE_MEMORY = 256 << 20
DECODE_MEMORY_PER_BYTE = 64
DECODE_SECONDS = 60.0
DECODE_SECONDS_PER_MIB = 5.0  # ``dis`` of a 12.8 MB pyc takes 14 s


def decode_limits(size: int) -> tuple[int, float]:
    """What decoding a pyc of ``size`` bytes may cost: (address space in bytes, seconds)."""
    return DECODE_MEMORY + DECODE_MEMORY_PER_BYTE * size, DECODE_SECONDS + DECODE_SECONDS_PER_MIB * size / (1 << 20)


@dataclass(frozen=True)
class CodeInfo:
    """What the code object in a pyc says, as read by a matching interpreter."""

    filename: str
    name: str
    read_by: str
    dis: str


def read_code_info(
    path: str | os.PathLike[str], *, with_dis: bool = False, timeout: float | None = None
) -> CodeInfo | None:
    """Load the pyc's code object in a CPython with its magic number; ``None`` if none is found.

    The pyc is untrusted: it is decoded in a child process with its memory and time bounded
    (``DECODE_MEMORY`` plus ``DECODE_MEMORY_PER_BYTE`` times its size; ``timeout`` seconds, by
    default ``DECODE_SECONDS`` plus ``DECODE_SECONDS_PER_MIB`` per MiB).
    """
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
    size = os.stat(path).st_size
    budget, default_timeout = decode_limits(size)
    if timeout is None:
        timeout = default_timeout
    command = [executable, "-I", "-B", "-c", _CODE_INFO, os.fspath(path), "1" if with_dis else "0", str(budget)]
    try:
        proc = subprocess.run([*command, str(size)], capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InvalidPyc(
            f"{path}: decoding it took more than {timeout:.0f} s; refused (a damaged or hostile pyc)"
        ) from None
    if proc.returncode == 3 and proc.stdout.startswith('{"refused"'):
        why = json.loads(proc.stdout)["refused"]
        if why == "memory":
            reason = f"needs over {budget >> 20} MiB, more than a pyc of {size} bytes can hold"
        else:
            reason = "nests objects deeper than the interpreter can follow"
        raise InvalidPyc(f"{path}: decoding it {reason}; refused (a damaged or hostile pyc)")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise InvalidPyc(f"{path}: the header is valid but the code does not load ({last})")
    info = json.loads(proc.stdout)
    return CodeInfo(info["filename"], info["name"], info["python"], info["dis"])
