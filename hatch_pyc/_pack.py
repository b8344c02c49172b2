"""The compile cache's packs: many entries of compiled code in one file, found by an index at its end.

Standard library only: the compile worker (``_worker.py``, run by the target CPython) loads this file from beside
itself to write and read packs; the package (``hatch_pyc._cache``) imports it to count, merge and prune them.

A pack is :data:`MAGIC`, the entries one after another, then their index (one record each: the key, where the
entry starts, how long it is), then how many records the index holds. An entry is the SHA-256 of its key and
the rest, one flag byte (whether ``-OO`` could change the code), then the marshalled code: each is checked
against its digest when it is read, so a damaged or half-written pack serves nothing wrong. A pack is written
whole under a temporary name, then renamed.
"""

# No ``from __future__ import annotations``: turning annotations into strings makes CPython 3.10 intern "{" and "}"
# for the rest of the process, and a worker that loads this file would write them marked interned in every module it
# compiles (see _ONE_CHARS in _worker.py). Names only type checkers import are quoted.
import hashlib
import os
import struct

TYPE_CHECKING = False  # the worker loads this file: typing costs it 6 ms
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import BinaryIO

MAGIC = b"hatch-pyc pack 1\n"
_RECORD = struct.Struct("<32sQI")  # key, offset, length
_COUNT = struct.Struct("<I")
_DIGEST = 32  # bytes of an entry's SHA-256
MAX_ENTRY = 256 * 1024**2  # bytes: a longer entry is no code any compile() made
MAX_COUNT = 1 << 21  # entries: a worker's pack holds at most 8 MiB of them, a merged one 64 MiB


def entry_parts(key: bytes, may_have_docstring: bool, code: bytes) -> tuple[bytes, bytes, bytes]:
    """The entry of ``code`` (marshalled) stored under ``key``, in three parts (written one after another: a worker
    copies no code to store it)."""
    flag = b"\x01" if may_have_docstring else b"\x00"
    digest = hashlib.sha256(key)
    digest.update(flag)
    digest.update(code)
    return digest.digest(), flag, code


def make_entry(key: bytes, may_have_docstring: bool, code: bytes) -> bytes:
    """The entry of ``code`` (marshalled) stored under ``key``, whole."""
    return b"".join(entry_parts(key, may_have_docstring, code))


def entry_payload(key: bytes, entry: bytes) -> tuple[bool, bytes] | None:
    """``(may_have_docstring, marshalled code)`` of ``entry`` read under ``key``, or None if it is not whole (its
    digest of the key and the rest does not match: damaged, cut short, or another key's)."""
    if len(entry) <= _DIGEST + 1 or _digest(key, memoryview(entry)[_DIGEST:]) != entry[:_DIGEST]:
        return None
    return entry[_DIGEST] == 1, entry[_DIGEST + 1 :]


def _digest(key: bytes, payload: bytes | memoryview) -> bytes:
    digest = hashlib.sha256(key)
    digest.update(payload)
    return digest.digest()


class PackWriter:
    """Writes a pack to ``handle`` one entry at a time; :meth:`finish` adds the index."""

    def __init__(self, handle: "BinaryIO") -> None:
        self.handle = handle
        handle.write(MAGIC)
        self.size = len(MAGIC)
        self.index: list[bytes] = []

    def add(self, key: bytes, *parts: bytes) -> None:
        """Append the entry of ``key``, given whole or in parts (:func:`entry_parts`)."""
        start = self.size
        for part in parts:
            self.handle.write(part)
            self.size += len(part)
        self.index.append(_RECORD.pack(key, start, self.size - start))

    def finish(self) -> int:
        """Write the index; returns how many entries the pack holds."""
        self.handle.write(b"".join(self.index))
        self.handle.write(_COUNT.pack(len(self.index)))
        return len(self.index)


def write_pack(handle: "BinaryIO", entries: "Iterable[tuple[bytes, bytes]]") -> int:
    """Write a pack of ``entries`` (``(key, entry)`` pairs, any iterable) to ``handle``; returns how many."""
    writer = PackWriter(handle)
    for key, entry in entries:
        writer.add(key, entry)
    return writer.finish()


class Index:
    """A pack's index as read, not yet trusted: its records' raw bytes and where its entries end."""

    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.end = end  # where the entries end and the index starts
        self.count = len(data) // _RECORD.size

    def keys(self) -> list[bytes]:
        """The keys of the records, in order (sliced from the raw bytes: a worker reads a large cache's indexes at
        about a third of a microsecond per entry)."""
        data, step = self.data, _RECORD.size
        return [data[i : i + _DIGEST] for i in range(0, len(data), step)]

    def place(self, number: int) -> tuple[int, int] | None:
        """``(offset, length)`` of record ``number``'s entry, or None if it does not lie within the entries."""
        _, offset, length = _RECORD.unpack_from(self.data, number * _RECORD.size)
        if offset < len(MAGIC) or offset + length > self.end or length > MAX_ENTRY:
            return None
        return offset, length


def read_index(fd: int, size: int) -> Index | None:
    """The index of the pack open at ``fd`` (``size`` bytes long), or None if it is not a pack: no magic, or an index
    that would not fit, or one of more than :data:`MAX_COUNT` records (a sparse file can claim any size, so the
    count is bounded, not only checked against the size)."""
    head = len(MAGIC)
    if size < head + _COUNT.size or os.pread(fd, head, 0) != MAGIC:
        return None
    (count,) = _COUNT.unpack(os.pread(fd, _COUNT.size, size - _COUNT.size))
    end = size - _COUNT.size - count * _RECORD.size
    if count > MAX_COUNT or end < head:
        return None
    data = os.pread(fd, count * _RECORD.size, end)
    if len(data) != count * _RECORD.size:
        return None
    return Index(data, end)


def pack_index(fd: int, size: int) -> list[tuple[bytes, int, int]] | None:
    """``[(key, offset, length)]`` of the pack open at ``fd`` (``size`` bytes long), or None if it is not one as
    :class:`PackWriter` writes them: the entries one after another from the magic to the index, none longer than
    :data:`MAX_ENTRY`. What an entry holds is checked when it is read (:func:`entry_payload`)."""
    index = read_index(fd, size)
    if index is None:
        return None
    records = list(_RECORD.iter_unpack(index.data))
    expected = len(MAGIC)
    for _, offset, length in records:
        if offset != expected or length > MAX_ENTRY:
            return None
        expected += length
    return records if expected == index.end else None


def pack_entries(fd: int, size: int) -> "Iterator[tuple[bytes, bytes]]":
    """``(key, entry)`` of every whole entry of the pack open at ``fd`` (``size`` bytes long), in order: reading
    them costs at most the pack's size (:func:`pack_index` holds them to it)."""
    for key, offset, length in pack_index(fd, size) or ():
        entry = os.pread(fd, length, offset)
        if entry_payload(key, entry) is not None:
            yield key, entry
