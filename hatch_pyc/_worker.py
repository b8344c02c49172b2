"""Compile worker, run as a script by the *target* interpreter (``python -I -S _worker.py``).

It must not import hatch_pyc or anything outside the standard library: it runs under
whichever CPython the bytecode is for. It reads one JSON batch per line on stdin and answers
one JSON line per batch on stdout, so the parent keeps a few long-lived workers busy
instead of paying interpreter start-up per file.

A task is ``{"src", "dfile", "mode", "outs": [[level, tmp_path], ...], "verify", "mtime"?, "check"?, "whole"?}``
(``check``: the final pycs, left as they are if their headers are current, and with ``whole`` their code too); a module
inside a wheel adds ``"archive", "member", "digest", "size"`` (read from the zip, checked against RECORD).
With ``"deliver": true`` nothing is written: each pyc comes back in the answer, deflated for a zip (its bytes
follow the answer's line).
Every output is written to its temporary path only; the parent renames them into place once
the whole run has succeeded, so a failure or a kill never leaves a half-written pyc under a
final name.

``--cache DIR`` (after the script's path): compiled code is looked up in DIR before ``compile()``
runs and stored there after, under a key of everything that decides its bytes (see ``_Cache``).
The 16-byte header is never cached: it is made for each output from the source it is for.
"""

import bisect
import codecs
import errno
import hashlib
import importlib.util
import json
import marshal
import os
import re
import select
import signal
import stat
import struct
import sys
import time

MAGIC = importlib.util.MAGIC_NUMBER
_CodeType = type(compile("", "", "exec"))
# The CPythons on which the differential oracle (scripts/oracle.py: every module of the standard
# library with its test suite and a 3,000-module site-packages, levels 0-2, compared type-strictly
# with the interpreter's own compile()) found no difference. On them the level-skip rules apply.
# A newer CPython (an alpha) compiles every level and checks each code object it writes against
# the one compile() returned (_codecheck), so its output is still exactly CPython's.
_VERIFIED = (3, 10) <= sys.version_info[:2] <= (3, 15)
_SKIP_RULES = _VERIFIED
_FLAGS = {"timestamp": 0, "unchecked-hash": 0b01, "checked-hash": 0b11}
_CO_OPTIMIZED = 0x1
# 3.14+: a function's docstring is marked by a flag (inspect.CO_HAS_DOCSTRING) instead of
# always being co_consts[0] (which 3.10-3.13 set to None when there is none).
_CO_HAS_DOCSTRING = 0x4000000
_DOCSTRING_FLAG = sys.version_info >= (3, 14)
_ASSERT = re.compile(rb"\bassert\b")


def _may_have_docstring(code):
    """Whether ``-OO`` could change ``code``: False only when no code object in it has a docstring.

    Module and class bodies store a docstring as ``__doc__``. On 3.14+ a function says
    exactly whether it has one (``CO_HAS_DOCSTRING``); on 3.10-3.13 its first constant is its
    docstring or None, so a str first constant there (a comprehension's, say) gives a harmless
    extra compile. A class body's first constant is its name, which is why class bodies are
    judged by ``__doc__`` alone. A false positive costs one compile; a false negative would
    drop a docstring change, so the oracle checks every skipped level against compile().
    """
    if "__doc__" in code.co_names:
        return True
    flags = code.co_flags
    if flags & _CO_OPTIMIZED:
        if _DOCSTRING_FLAG:
            if flags & _CO_HAS_DOCSTRING:
                return True
        else:
            consts = code.co_consts
            if consts and type(consts[0]) is str:
                return True
    for const in code.co_consts:
        if type(const) is _CodeType and _may_have_docstring(const):
            return True
    return False


_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
_PLAIN_ENCODINGS = frozenset({"utf-8", "ascii", "iso8859-1"})


def _declares_other_encoding(source):
    """Whether the source's coding declaration (PEP 263: line 1 or 2) could make ASCII bytes mean
    other letters: utf-7 spells ``assert`` as ``+AGE-ssert``, unicode_escape as ``\\x61ssert``."""
    first = source.find(b"\n")
    second = source.find(b"\n", first + 1) if first >= 0 else -1
    head = source if second < 0 else source[:second]
    if b"coding" not in head:
        return False
    # Lines end as CPython's tokenizer ends them: at \r\n, \n or a lone \r (the first two such lines are inside
    # ``head``, which ends at the second \n).
    head = b"\n".join(head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n", 2)[:2])
    match = _CODING.search(head)
    if match is None:
        return False
    try:
        return codecs.lookup(match.group(1).decode("ascii")).name not in _PLAIN_ENCODINGS
    except (LookupError, UnicodeDecodeError):
        return True


def _may_have_asserts(source):
    # ``-O`` drops assert statements and folds ``__debug__``; both need the word in the
    # source. A non-ASCII source may spell ``__debug__`` with NFKC-equivalent letters, and a
    # declared encoding may spell either word in other ASCII bytes.
    if not source.isascii() or b"__debug__" in source or _declares_other_encoding(source):
        return True
    # ``in`` is a fast scan; the regex (word boundaries: not ``assertEqual``) runs only on a hit.
    return b"assert" in source and _ASSERT.search(source) is not None


_pack_double = struct.Struct("<d").pack


def _const_key(value):
    """A key under which two constants are equal only if they are the same program.

    ``==`` is not that: ``0 == 0.0 == False``, ``0.0 == -0.0``, ``slice(0, None) ==
    slice(0.0, None)`` and ``frozenset({1}) == frozenset({1.0})``, yet each pair behaves
    differently (``[1, 2][0.0:]`` raises). So the key carries the exact type at every depth,
    floats by their bits (the sign of zero), containers by their items' keys, and a set by its
    items in iteration order (``{8, 16}`` and ``{16, 8}`` iterate differently). A NaN raises
    TypeError, as does a kind of constant not listed here: it is then never merged with another
    (CPython's compiler never merges two NaNs either: ``nan in [other_nan]`` is False).
    """
    kind = type(value)
    if kind is str or kind is bytes or kind is int or kind is bool:
        return (kind, value)
    if kind is float:
        if value != value:
            raise TypeError("a NaN is only ever itself")
        return (kind, _pack_double(value))
    if kind is tuple:
        return (kind, tuple([_const_key(v) for v in value]))
    if kind is frozenset:
        return (kind, tuple([_const_key(v) for v in value]))
    if kind is complex:
        if value != value:
            raise TypeError("a NaN is only ever itself")
        return (kind, _pack_double(value.real), _pack_double(value.imag))
    if kind is slice:  # a constant since 3.14 (x[0:], x[:1])
        return (kind, _const_key(value.start), _const_key(value.stop), _const_key(value.step))
    if value is None or value is Ellipsis:
        return (kind,)
    raise TypeError("no type-strict key for %s" % kind.__name__)


# On 3.10 compile() may rebuild a set constant once more after interning its strings (when an
# equal string was interned before: intern_string_constants), and marshal writes a set in table
# order, so the order a 3.10 pyc's set iterates in can depend on what the process did before.
# (3.11+ marshal writes set items in an order of its own.)
_SET_ORDER_FROM_HISTORY = sys.version_info < (3, 11)


def _sort_key(value):
    return (type(value).__name__, repr(value))


def _settled_set(value):
    """The set, in an iteration order that does not depend on the process history (3.10).

    Rebuilding a set from its own iteration order (what compile() may do once more) leads, after
    at most a few steps, into a cycle of orders, most often of one: then that is the order in
    every history. Otherwise the cycle's smallest order (by the items' types and reprs) is taken:
    one of the orders CPython itself gives, the same in every run.
    """
    sets = [value]
    seen = {tuple(map(id, value)): 0}
    while len(sets) < 32:
        rebuilt = frozenset(tuple(sets[-1]))
        order = tuple(map(id, rebuilt))
        if order in seen:
            cycle = sets[seen[order] :]
            if len(cycle) == 1:
                return cycle[0]
            return min(cycle, key=lambda s: [_sort_key(v) for v in s])
        seen[order] = len(sets)
        sets.append(rebuilt)
    return min(sets, key=lambda s: [_sort_key(v) for v in s])


_QUALNAME = sys.version_info >= (3, 11)
_MORTAL_STRINGS = sys.version_info < (3, 12)
_intern = sys.intern
# Which of a code object's own names CPython interns: 3.13+ its name, qualified name and file
# name (in place, at compile time); 3.10 its name; 3.11 and 3.12 none of them.
_INTERNED_NAMES = 3 if sys.version_info >= (3, 13) else 1 if sys.version_info < (3, 11) else 0
# The strings CPython's compiler interns (all_name_chars in Objects/codeobject.c).
_NAME_LIKE = re.compile(r"[A-Za-z0-9_]*\Z").match


def _share(value, memo):
    """Make equal constants one object and name-like strings interned; ``memo`` keeps them alive.

    Equal means equal under :func:`_const_key` (same type and value at every depth), never ``==``.
    Strings are interned exactly where CPython interns them (name characters only: compile() has
    done it already, so this only makes sure); interning another one would change its marshal type
    and so, on 3.11+, where it sorts inside a set constant that shares the object.
    A constant without such a key is left as it is, but held in ``memo`` all the same, so that
    its reference count, and so marshal's back-reference flag, does not depend on history.
    """
    kind = type(value)
    if kind is str:
        return _held(value, memo, _NAME_LIKE(value) is not None)
    if kind is _CodeType:
        return _share_code(value, memo)
    if kind is int or kind is bool or value is None or value is Ellipsis:
        return value
    if kind is tuple:
        value = tuple([_share(v, memo) for v in value])
    elif kind is frozenset:
        if _SET_ORDER_FROM_HISTORY and any(type(v) is str and _NAME_LIKE(v) for v in value):
            # 3.10 writes a set in table order. compile() rebuilds a set from its own iteration order
            # once more when interning replaced one of its name-like strings (intern_string_constants),
            # which depends on history: such a set is rebuilt, then settled into an order that does not.
            # A set without one is never rebuilt by compile(): it is kept as it is, below.
            value = _settled_set(frozenset([_share(v, memo) for v in value]))
        # 3.11+ writes a set's items sorted by their own serialization, which carries marshal's
        # back-reference flag, set when an item's reference count is above one: sharing or holding
        # an item would move it in that order, and so change the order the loaded set iterates in
        # ({28, 2396} then loads as 28, 2396 where CPython's own pyc gives 2396, 28). The compiler's
        # set is kept as it is, items and all, so each item has the count it has in CPython's pyc;
        # not even a merge key may refer to its items (the compiler merged equal sets already).
        # Interned strings are the exception: any live module may share one, so their counts depend on
        # the history; held, they are always flagged. Equal sets are still made one object (3.11 and
        # 3.12 rebuild a set whose strings interning replaced, so whether two equal sets are one
        # object depends on the history), under a key of the items' keys' reprs: new strings, which
        # hold no reference to the items. (Set items are marshalled in an order of their own here, so
        # equal sets are interchangeable whatever order they iterate in.)
        else:  # 3.11+, and on 3.10 a set compile() does not rebuild
            for item in value:
                if type(item) is str and _NAME_LIKE(item):
                    memo[("held", id(item))] = item
            try:
                key = (frozenset, frozenset([repr(_const_key(item)) for item in value]))
            except TypeError:  # a NaN among the items: never merged
                memo[("held", id(value))] = value
                return value
            return memo.setdefault(key, value)
    elif kind is slice:
        # 3.14+: CPython's compiler interns no string of a slice constant (x["abc":"de"])
        value = slice(
            *[_held(v, memo) if type(v) is str else _share(v, memo) for v in (value.start, value.stop, value.step)]
        )
    try:
        key = _const_key(value)
    except TypeError:  # a NaN, or a kind of constant with no type-strict key: never merged
        memo[("held", id(value))] = value
        return value
    return memo.setdefault(key, value)


def _held(text, memo, intern=False):
    """A string, interned if asked to, held in ``memo`` by identity."""
    if intern:
        text = _intern(text)
    memo[("held", id(text))] = text
    return text


def _share_code(code, memo):
    # The common constants (str, int, None, nested code) are handled inline: this loop
    # runs for every constant of every code object, so a call per constant is its cost.
    #
    # Strings are interned where CPython's compiler interns them: name characters only, and the
    # code's own names where the version does (_INTERNED_NAMES). 3.13+ interns co_name and
    # co_qualname in place, and a class body's "__qualname__" constant is that same object:
    # interning the names alone would give whichever equal string the process interned before and
    # split it from the constant, so the constants equal to them are interned too. No other string
    # is: interning returns an earlier equal string where there is one (history), its marshal type
    # would change, and on 3.11+ so would its place in a set constant sharing the object.
    names = (code.co_name, code.co_qualname) if _INTERNED_NAMES == 3 else ()
    consts = []
    for const in code.co_consts:
        kind = type(const)
        if kind is str:
            shared = _held(const, memo, _NAME_LIKE(const) is not None or const in names)
        elif kind is _CodeType:
            shared = _share_code(const, memo)
        elif kind is int or const is None or kind is bool:
            shared = const
        else:
            shared = _share(const, memo)
        consts.append(shared)
    if _MORTAL_STRINGS:
        # Before 3.12 interned names are mortal: another live object naming the same
        # identifier would raise its reference count and so decide its FLAG_REF.
        for name in code.co_names + code.co_varnames + code.co_cellvars + code.co_freevars:
            memo[("held", id(name))] = name
    name = _held(code.co_name, memo, _INTERNED_NAMES > 0)
    filename = _held(code.co_filename, memo, _INTERNED_NAMES == 3)
    if _QUALNAME:
        qualname = _held(code.co_qualname, memo, _INTERNED_NAMES == 3)
        return code.replace(co_consts=tuple(consts), co_name=name, co_filename=filename, co_qualname=qualname)
    return code.replace(co_consts=tuple(consts), co_name=name, co_filename=filename)


def _canonical_marshal(code):
    # Whether two equal constants are one object, whether a string is interned, and
    # marshal's FLAG_REF (set when an object's reference count is above one) all depend
    # on what the interpreter did before (cpython#78274). Sharing every equal constant,
    # interning every string and holding every one of them in ``memo`` while marshalling
    # (so each has a reference count above one and carries FLAG_REF whatever else is
    # alive in the process) gives bytes that depend on the source alone.
    memo = {}
    shared = _share(code, memo)
    data = marshal.dumps(shared)
    del memo, shared
    return data


def _header(mode, source, mtime, size):
    flags = _FLAGS[mode]
    if flags == 0:
        return MAGIC + struct.pack("<III", 0, int(mtime) & 0xFFFFFFFF, size & 0xFFFFFFFF)
    return MAGIC + struct.pack("<I", flags) + importlib.util.source_hash(source)


class _WriteError(Exception):
    """Writing a pyc failed (full disk, read-only directory): not the source's fault."""


def _open_dir(directory):
    """The directory a pyc goes to, opened without following a link: nothing is written through one."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        return os.open(directory, flags)
    except FileNotFoundError:
        try:
            os.mkdir(directory)  # a __pycache__ in a directory of the tree (the parent checked it is not a link)
        except FileExistsError:
            pass
        return os.open(directory, flags)


def _write(path, data, mode):
    if _parent is not None and os.getppid() != _parent:
        os._exit(3)  # orphaned while it compiled (its parent was killed): the next run may have cleaned up already
    directory, name = os.path.split(path)
    try:
        if not _DIR_FD:
            dir_fd_arg, target = None, path
            os.close(_open_dir(directory))
        else:
            dir_fd_arg, target = _dirs.get(directory), name
            if dir_fd_arg is None:
                if len(_dirs) >= _KEPT_DIRS:  # the oldest goes: a batch of small files may span many directories
                    os.close(_dirs.pop(next(iter(_dirs))))
                dir_fd_arg = _dirs[directory] = _open_dir(directory)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dir_fd_arg)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _WriteError("%s: a link or not a directory; nothing is written through it" % directory) from None
        raise _WriteError("%s: %s" % (directory, exc.strerror or exc)) from None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FD = os.open in os.supports_dir_fd
_dirs = {}  # a directory pycs go to -> its descriptor, kept for the batch (closed by _close_dirs)
_KEPT_DIRS = 8  # directories kept open at once: a few descriptors, whatever the process's limit


def _close_dirs():
    while _dirs:
        os.close(_dirs.popitem()[1])


class _NotRegular(Exception):
    """A path that is not a regular file (a FIFO, a device): never read, it could block or never end."""


def _read_regular(path, limit=None):
    """The bytes of a regular file (the first ``limit``), opened so that a FIFO cannot block the read."""
    return _read_with_stat(path, limit)[0]


def _read_with_stat(path, limit=None):
    """``_read_regular`` and the file's ``os.stat_result``, as it was when it was read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRegular(_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file"))
        want = limit if limit is not None else info.st_size + 1  # + 1: a file that grew is read to its end
        parts = []
        while want > 0:
            part = os.read(fd, want)
            if not part:
                break
            parts.append(part)
            want = want - len(part) if limit is not None else 1024 * 1024
        return b"".join(parts), info
    finally:
        os.close(fd)


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def _starts_with(path, header):
    try:
        return _read_regular(path, len(header)) == header
    except (OSError, _NotRegular):
        return False


def _read_back(path, expected):
    global _looked_at
    with open(path, "rb") as handle:
        data = handle.read()
    if data != expected or data[:4] != MAGIC:
        raise OSError("read-back of %s does not match what was written" % path)
    marshal.loads(data[16:])
    _looked_at = False  # loading interns what the code marks interned


class _Unfaithful(Exception):
    """What would be written is not the code compile() returned (only checked where unverified)."""


_codecheck = None


def _check_faithful(code, data):
    # On a CPython the oracle has not covered, prove each pyc before it is written: what
    # marshal.loads reads back must be, type-strictly, what CPython's own pyc of it loads as.
    global _codecheck
    if _codecheck is None:
        _codecheck = _load_sibling("_hatch_pyc_codecheck", "_codecheck.py")
    # The reference is CPython's own pyc of this code (what py_compile writes, loaded back): since
    # 3.11 marshal orders set items itself, so a set iterates as the pyc says, not as compile()'s.
    reference = marshal.loads(marshal.dumps(code))
    differences = _codecheck.code_differences(reference, marshal.loads(data[16:]))
    if differences:
        raise _Unfaithful(
            "hatch-pyc would not write what CPython %d.%d compiles (%s); please report this"
            % (sys.version_info[0], sys.version_info[1], differences[0])
        )


class _BadInput(Exception):
    """An archive member that cannot be read, or whose bytes are not what RECORD says."""


_archives = {}  # path -> its zipfile.ZipFile
_archive_fds = {}  # path -> its descriptor (members read in place)
_LOCAL_HEADER = struct.Struct("<4s2xH2x4xI4x4xHH")  # signature, flags, CRC-32, name's and extra field's lengths


def _read_member(task):
    # A wheel's module, read where it is instead of extracted first. The bytes compiled are
    # the bytes checked: RECORD's digest and size are compared here, not in the parent.
    import base64

    path, member = task["archive"], task["member"]
    try:
        if task.get("place"):
            source = _read_in_place(path, task["place"], task["size"])
        else:
            import zipfile

            archive = _archives.get(path)
            if archive is None:
                archive = _archives[path] = zipfile.ZipFile(path)
            source = archive.read(member)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, a truncated or changed file
        raise _BadInput("cannot be read as a wheel (%s)" % (exc,)) from None
    algorithm, _, expected = task["digest"].partition("=")
    try:
        digest = hashlib.new(algorithm, source).digest()
    except ValueError:
        raise _BadInput("RECORD gives %s an unknown hash (%s)" % (member, algorithm)) from None
    actual = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if actual != expected or len(source) != task["size"]:
        raise _BadInput("hash / size of %s didn't match RECORD" % member)
    return source


def _read_in_place(path, place, size):
    """A stored or deflated member, read without zipfile (whose import costs a worker about 17 ms) and checked as
    zipfile checks it: a local header naming the member, data that ends before the next entry begins (3.14's
    zipfile: "Overlapped entries"), the first ``file_size`` bytes of its stream (what zipfile returns; a stream
    ending sooner is an error), their CRC-32. ``place``: what the parent's zipfile read of it (the local header's
    offset, the compressed size, the method, the name, the CRC-32, the uncompressed size, where the next entry or
    the central directory begins). Nothing past RECORD's ``size`` bytes is inflated: more is a mismatch anyway."""
    import zlib

    offset, length, method, name, crc, file_size, end = place
    fd = _archive_fds.get(path)
    if fd is None:
        fd = _archive_fds[path] = os.open(path, os.O_RDONLY)
    header = os.pread(fd, _LOCAL_HEADER.size, offset)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise ValueError("Bad magic number for file header")
    _, flags, _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    start = offset + _LOCAL_HEADER.size
    local_name = os.pread(fd, name_length, start).decode("utf-8" if flags & 0x800 else "cp437")
    if local_name != name:
        raise ValueError("File name in directory %r and header %r differ." % (name, local_name))
    start += name_length + extra_length
    if start + length > end:
        raise ValueError("Overlapped entries: %r (possible zip bomb)" % name)
    data = os.pread(fd, length, start)
    if len(data) != length:
        raise EOFError("the archive ends inside %s" % name)
    wanted = min(file_size, size + 1)
    # (a max_length of 0 is no limit to zlib: nothing wanted is nothing inflated)
    data = zlib.decompressobj(-15).decompress(data, wanted) if method == 8 and wanted else data[:wanted]
    if len(data) < wanted:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
    if wanted == file_size and zlib.crc32(data) != crc:
        raise ValueError("Bad CRC-32 for file %r" % name)
    return data


def _packer():
    import zlib

    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)


def _deflate_body(body):
    """The marshalled code deflated on its own: the part of a zip member's stream that the cache keeps."""
    packer = _packer()
    return packer.compress(body) + packer.flush()


def _delivered(header, body, deflated_body):
    """A pyc as a zip member: its CRC, size and RECORD digest, and its stream.

    The stream is the header deflated and flushed to a byte boundary (a block that is not the last), then
    ``deflated_body``, the code deflated on its own (back-references never reach the header): any inflater reads
    the pair as one stream of ``header + body``. So the code's part does not depend on the header and can be kept
    in the cache, and the output is the same whether it was (a warm run) or not.
    """
    import base64
    import zlib

    packer = _packer()
    stream = packer.compress(header) + packer.flush(zlib.Z_SYNC_FLUSH) + deflated_body
    digest = hashlib.sha256(header)
    digest.update(body)
    return {
        "stream": stream,  # sent after the answer's line, as it is (see main)
        "crc": zlib.crc32(body, zlib.crc32(header)),
        "size": len(header) + len(body),
        "digest": "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii"),
    }


def _inflated(deflated_body):
    """The code a cached ``_deflate_body`` holds, or None if it is not one whole stream."""
    import zlib

    reader = zlib.decompressobj(-15)
    try:
        body = reader.decompress(deflated_body)
    except zlib.error:
        return None
    return body if reader.eof and not reader.unused_data else None


class _Cache:
    """Compiled code by content: a miss compiles and stores, a hit is read back and checked.

    The key is a SHA-256 of everything that decides the marshalled code: this worker's own code (and
    the code check it may run), the interpreter's full version string, magic number and ``-X`` options
    (``no_debug_ranges``), the optimisation level, the code's file name (``co_filename``) and the
    source bytes. Entries live in packs (``_pack.py``: the formats and their checks): a worker appends what it
    stores to a pack under a temporary name, renamed into place every ``_PACK_BYTES`` and when its input ends,
    so a cold run makes a few files instead of one per module. An entry whose digest does not
    match (a damaged pack, a half-written one, another key's entry) is a miss, never served: another copy of the
    key is tried, else the code is compiled and stored anew. Only regular files named as packs are read (a FIFO
    there cannot block), in a directory that is not a link and that no other user may write (the parent checked
    it the same way).
    A hit from a pack older than a day gives the pack a new mtime: pruning removes the least recently used
    packs first.
    """

    def __init__(self, directory):
        self.directory = directory
        global _pack
        if _pack is None:
            _pack = _load_sibling("_hatch_pyc_pack", "_pack.py")
        salt = hashlib.sha256(b"hatch-pyc cache 2\0")
        here = os.path.dirname(os.path.abspath(globals().get("__file__") or sys.argv[1]))
        for name in ("_worker.py", "_codecheck.py", "_pack.py"):
            with open(os.path.join(here, name), "rb") as handle:
                text = handle.read()
            salt.update(hashlib.sha256(text).digest())
            if name == "_worker.py":
                self.probe = text  # deflated for deflated_key
        xoptions = sorted("%s=%s" % item for item in sys._xoptions.items())
        salt.update(("%s\0%s\0%s\0" % (sys.version, sys.implementation.cache_tag, xoptions)).encode("utf-8", "replace"))
        salt.update(MAGIC)
        self.salt = salt.digest()
        self.deflate_salt = None  # made at the first deflated_key
        self.hits = 0
        self.misses = 0
        self.dir_fd = None  # the packs' directory, opened and checked once
        self.index = None  # key -> record number, read from every pack at the first lookup (see _load)
        self.more = {}  # key -> its further records (two runs stored it at once, or a damaged copy came first)
        self.packs = []  # [its descriptor or None (closed: too many), name, mtime, its _pack.Index]
        self.first = []  # the number of each pack's first record
        self.writer = None  # the pack being written (a _pack.PackWriter); False: nothing can be stored
        self.out = None  # (its file, its temporary name, its name)
        self.written = set()  # the keys in it

    def deflated_key(self, key):
        """The key of ``key``'s code deflated for a zip by this interpreter's zlib: it adds zlib's version and what
        zlib makes of this worker's own source (builds that report one version can deflate differently)."""
        if self.deflate_salt is None:
            import zlib

            salt = hashlib.sha256(b"deflated\0%s\0" % zlib.ZLIB_RUNTIME_VERSION.encode("ascii", "replace"))
            salt.update(_deflate_body(self.probe))
            self.deflate_salt = salt.digest()
        return hashlib.sha256(self.deflate_salt + key).digest()

    def key(self, source, dfile, level):
        key = hashlib.sha256(self.salt)
        key.update(b"%d\0" % level)
        key.update(dfile.encode("utf-8", "surrogatepass"))
        key.update(b"\0")
        key.update(hashlib.sha256(source).digest())
        return key.digest()

    def _open_dir(self):
        """The packs' directory, opened without following a link, if only this user may write it (else None)."""
        if self.dir_fd is None:
            try:
                fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
            except OSError:
                self.dir_fd = -1
                return None
            info = os.fstat(fd)
            uid = os.geteuid() if hasattr(os, "geteuid") else None
            if (uid is not None and info.st_uid != uid) or info.st_mode & 0o022 or not stat.S_ISDIR(info.st_mode):
                os.close(fd)
                fd = -1
            self.dir_fd = fd
        return self.dir_fd if self.dir_fd >= 0 else None

    def _load(self):
        """Read every pack's index: each key maps to a number, the first record's number of its pack plus the
        record's place in it (a dict of keys and numbers, which a worker builds at about a third of a microsecond
        per entry). A pack that is not one is passed over."""
        self.index = {}
        dir_fd = self._open_dir()
        if dir_fd is None:
            return
        try:
            names = sorted(os.listdir(dir_fd))
        except OSError:
            return
        keep_open = _packs_kept_open()
        total = 0
        for name in names:
            if not _PACK_NAME(name):
                continue
            fd = _open_regular(name, dir_fd)
            if fd is None:
                continue
            try:
                info = os.fstat(fd)
                index = _pack.read_index(fd, info.st_size)
                keys = index.keys() if index is not None else None
            except (OSError, MemoryError, OverflowError):
                keys = None
            if not keys:
                os.close(fd)
                continue
            if len(self.packs) >= keep_open:  # more packs than descriptors kept open: opened by name when read
                os.close(fd)
                fd = None
            self.packs.append([fd, name, info.st_mtime, index])
            self.first.append(total)
            found = dict(zip(keys, range(total, total + len(keys))))
            total += len(keys)
            for key in found.keys() & self.index.keys():  # in an earlier pack too: tried after it
                self.more.setdefault(key, []).append(found.pop(key))
            self.index.update(found)

    def get(self, key):
        """``(may_have_docstring, marshalled code)`` stored under ``key``, or None for a miss."""
        if self.index is None:
            self._load()
        first = self.index.get(key)
        if first is None:
            return None
        for number in [first] + self.more.get(key, []):
            found = self._read(number, key)
            if found is not None:
                return found
        return None

    def _read(self, number, key):
        """The entry of record ``number`` if it is whole and is ``key``'s (None otherwise)."""
        which = bisect.bisect_right(self.first, number) - 1
        pack = self.packs[which]
        place = pack[3].place(number - self.first[which])
        if place is None:
            return None
        fd = pack[0] if pack[0] is not None else _open_regular(pack[1], self.dir_fd)
        if fd is None:
            return None
        try:
            entry = os.pread(fd, place[1], place[0])
            found = _pack.entry_payload(key, entry)
            if found is not None and pack[2] < time.time() - 86400:
                pack[2] = time.time()  # once per worker, whether or not the cache may be written
                try:
                    os.utime(fd)
                except OSError:  # a read-only cache still serves what it holds
                    pass
            return found
        except (OSError, MemoryError, OverflowError):
            return None
        finally:
            if pack[0] is None:
                os.close(fd)

    def put(self, key, has_doc, body):
        """Store ``body`` under ``key``: appended to the pack being written (begun at the first), which is closed
        and renamed into place once it holds ``_PACK_BYTES`` (and when the input ends: ``flush``)."""
        if self.writer is None:
            self._begin()
        if not self.writer or key in self.written:
            return
        try:
            self.writer.add(key, *_pack.entry_parts(key, has_doc, body))
        except OSError:  # a full disk: the run goes on without storing
            self._abandon()
            return
        self.written.add(key)
        if self.writer.size >= _PACK_BYTES:
            self.flush()

    def _begin(self):
        self.writer = False  # nothing is stored if the pack cannot be made
        dir_fd = self._open_dir()
        if dir_fd is None:
            return
        name = "%s.pack" % os.urandom(8).hex()
        tmp = "%s.%d.tmp" % (name, os.getpid())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=dir_fd)
        except OSError:  # a read-only cache: the run goes on without storing
            return
        self.out = (open(fd, "wb", buffering=_WRITE_BUFFER), tmp, name)
        try:
            self.writer = _pack.PackWriter(self.out[0])
        except OSError:
            self._abandon()

    def flush(self):
        """Finish the pack being written, if any: its index, then renamed into place. The next ``put`` begins
        another."""
        if not self.writer:
            self.writer = None
            return
        handle, tmp, name = self.out
        try:
            self.writer.finish()
            handle.close()
            os.rename(tmp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError:
            self._abandon()
            return
        self.writer = self.out = None
        self.written = set()

    def _abandon(self):
        """Give up the pack being written (a full disk): removed, and nothing more is stored by this worker."""
        handle, tmp, _ = self.out
        try:
            handle.close()
        except OSError:
            pass
        try:
            os.unlink(tmp, dir_fd=self.dir_fd)
        except OSError:
            pass
        self.writer = False
        self.out = None


def _packs_kept_open():
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 16
    if soft == getattr(resource, "RLIM_INFINITY", -1) or soft < 0:
        return _OPEN_PACKS
    return max(0, min(_OPEN_PACKS, soft // 4))


def _open_regular(name, dir_fd):
    """A descriptor of the regular file ``name`` in ``dir_fd``, opened without following a link or blocking on a
    FIFO; None for anything else."""
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


_PACK_NAME = re.compile(r"[0-9a-f]{16}\.pack").fullmatch
_PACK_BYTES = 8 * 1024 * 1024  # a worker writes a pack when it holds this much, and when its input ends
_OPEN_PACKS = 256  # packs a worker keeps open (at most a quarter of its descriptors); more are opened at each read
_WRITE_BUFFER = 1024 * 1024
_pack = None  # hatch_pyc/_pack.py, loaded beside this script when the cache is used


def _load_sibling(name, filename):
    """A module of hatch-pyc's that is stdlib-only, loaded from beside this script (which cannot import the package)."""
    here = os.path.dirname(os.path.abspath(globals().get("__file__") or sys.argv[1]))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cache = None


def _compiled(source, dfile, level, deflate=False):
    """``(may_have_docstring, marshalled code, the code deflated or None)`` of ``source`` at ``level``: from the
    cache or compile(); ``deflate``: the code is wanted deflated too (for a zip).

    The cache keeps a module's code in the form the run that compiled it wanted: as it is (pycs written), or
    deflated on its own (wheels: a warm conversion then neither compiles nor deflates). Either form serves both:
    deflated code is inflated for a pyc to write, and code as it is is deflated for a wheel, then kept deflated
    too. What is kept deflated has loaded, and is served only if it inflates to one whole stream."""
    name = packed = None
    if _cache is not None:
        name = _cache.key(source, dfile, level)
        packed = _cache.deflated_key(name)
        for key in (packed, name) if deflate else (name, packed):
            found = _cache.get(key)
            if found is None:
                continue
            has_doc, stored = found
            if key == name:
                _cache.hits += 1
                return has_doc, stored, _kept_deflated(packed, has_doc, stored) if deflate else None
            body = _inflated(stored)
            if body is not None:
                _cache.hits += 1
                return has_doc, body, stored
        _cache.misses += 1
    global _looked_at
    _looked_at = False  # compile() may intern one, and may do so before it fails (a SyntaxError after ``é = 1``)
    code = compile(source, dfile, "exec", dont_inherit=True, optimize=level)
    if _drifted and _uses(code.co_consts, _drifted):
        if _first_task:  # the worker itself interned them (its start, this task's cache lookup): afresh is no better
            raise _interned_by_itself()
        del code
        has_doc, body = _fresh.compiled(source, dfile, level) if _fresh is not None else _restart()
    else:
        has_doc, body = _marshalled(code)
        del code
    if deflate:
        return has_doc, body, _kept_deflated(packed, has_doc, body)
    if name is not None:
        _cache.put(name, has_doc, body)
    return has_doc, body, None


def _marshalled(code):
    """``(may_have_docstring, marshalled code)`` of what compile() returned."""
    body = _canonical_marshal(code)
    if not _VERIFIED:
        _check_faithful(code, MAGIC + bytes(12) + body)
    return _may_have_docstring(code), body


def _kept_deflated(packed, has_doc, body):
    """``body`` deflated on its own, once it has loaded; kept in the cache under ``packed`` (if there is one)."""
    global _looked_at
    marshal.loads(body)  # it loads: what the read-back checks for a written pyc
    _looked_at = False  # loading interns what the code marks interned
    deflated = _deflate_body(body)
    if packed is not None:
        _cache.put(packed, has_doc, deflated)
    return deflated


def _compile_one(task):
    if "archive" in task:
        source = _read_member(task)
        mtime = task["mtime"]
        file_mode = 0o644
    else:
        src = task["src"]
        source, info = _read_with_stat(src)
        mtime = task.get("mtime", info.st_mtime)
        file_mode = (info.st_mode | 0o200) & 0o666
    header = _header(task["mode"], source, mtime, len(source))
    compiled = {}  # level -> what _compiled gave for it, when the check already compiled it
    if task.get("check") and (
        _hold_what_is_written(task, source, header, compiled)
        if task.get("whole")
        else all(_starts_with(path, header) for path in task["check"])
    ):
        return None  # every pyc is current for this source, level, mode and interpreter (and code)
    dfile = task["dfile"]
    asserts_possible = None  # decided when a second level needs it

    # Identical outputs share one file: later levels are hard links to the first.
    produced = []  # (data, tmp path)
    results = []
    last_level = None
    last_data = None
    last_has_doc = True
    for level, tmp in task["outs"]:
        same = False
        if last_level == 0 and asserts_possible is None:
            asserts_possible = not _SKIP_RULES or _may_have_asserts(source)
        if last_level == 0 and level == 1:
            same = not asserts_possible
        elif last_level == 1 and level == 2:
            same = _SKIP_RULES and not last_has_doc
        elif last_level == 0 and level == 2:
            same = not asserts_possible and not last_has_doc
        if task.get("deliver"):
            if not same:
                last_has_doc, body, deflated = _compiled(source, dfile, level, deflate=True)
                delivered = _delivered(header, body, deflated)
            results.append([level, "delivered", dict(delivered)])  # main() takes each one's stream out
            last_level = level
            continue
        if same:
            data = last_data
        else:
            last_has_doc, body, _ = compiled.get(level) or _compiled(source, dfile, level)
            data = header + body
        link_to = next((path for other, path in produced if other == data), None)
        if link_to is not None:
            try:
                os.link(link_to, tmp)
            except OSError:
                _write(tmp, data, file_mode)
                link_to = None
        else:
            _write(tmp, data, file_mode)
            produced.append((data, tmp))
        if task.get("verify"):
            _read_back(tmp, data)
        results.append([level, "linked" if link_to else "written"])
        last_level = level
        last_data = data
    return results, source


def _hold_what_is_written(task, source, header, compiled):
    """Whether each pyc named by ``task["check"]`` holds what this run would write there, code and all: what decides
    the code but not the header (``--compact``, ``--ddir``) is seen only in the code. The header is read first, and
    then no more than the pyc would hold (a file of gigabytes there is not read whole); each level's code is kept in
    ``compiled`` for the run to write if it is not current."""
    if not all(_starts_with(path, header) for path in task["check"]):
        return False
    for (level, _), path in zip(task["outs"], task["check"]):
        compiled[level] = found = _compiled(source, task["dfile"], level)
        expected = header + found[1]
        try:
            existing = _read_regular(path, len(expected) + 1)
        except (OSError, _NotRegular):
            return False
        if existing != expected:
            return False
    return True


def _run_task(task):
    try:
        outcome = _compile_one(task)
        if outcome is None:
            return {"current": True}
        results, source = outcome
        answer = {"ok": results}
        if task.get("verify") and "archive" not in task:
            # a sourceless run removes the source: what was compiled, for the parent to check that the file it
            # removes still holds it (an edit made meanwhile would be lost with it)
            answer["source"] = hashlib.sha256(source).hexdigest()
        return answer
    except _Again:  # asked again of the worker as it starts afresh, which writes each file anew
        if not task.get("deliver"):
            for _, tmp in task["outs"]:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        raise
    except _WriteError as exc:
        return {"error": {"kind": "OSError", "msg": str(exc), "lineno": None, "write": True}}
    except _BadInput as exc:
        return {"error": {"kind": "InvalidInput", "msg": str(exc), "lineno": None, "input": True}}
    except _NotRegular as exc:
        return {"error": {"kind": "NotARegularFile", "msg": "%s, not a regular file" % exc, "lineno": None}}
    except _Unfaithful as exc:
        return {"error": {"kind": "UnfaithfulBytecode", "msg": str(exc), "lineno": None}}
    except SyntaxError as exc:
        return {"error": {"kind": type(exc).__name__, "msg": exc.msg, "lineno": exc.lineno}}
    except OSError as exc:  # the source cannot be read: "Permission denied", not "[Errno 13] ... 'path'"
        return {"error": {"kind": type(exc).__name__, "msg": exc.strerror or str(exc), "lineno": None}}
    except (ValueError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        return {"error": {"kind": type(exc).__name__, "msg": str(exc), "lineno": None}}


# Whether a one-character string is interned is process-wide (they are singletons) and marshal writes it: a module
# compiled after another whose compile() interned one (3.10 interns "{" and "}" when it turns an annotation into a
# string under ``from __future__ import annotations``; an identifier ``é`` interns "é") would be written with that
# string marked interned, and on 3.11 in another place inside a set constant, where CPython compiling it in a process
# of its own writes it plain. So before each task a worker notes which of them were interned since it started (where
# anything since it last looked may have: a compile(), a marshal.loads(), a batch answered), and a module with such a
# string among its constants is not written here: it is answered "again" with the rest of the batch, the worker
# starts afresh (os.execv: same process, pipes and arguments) and the parent asks again (_pool.Worker.ask). Modules
# without one, the great majority, are written as they are. From 3.13 on all 256 are interned at start-up.
_ONE_CHARS = tuple(map(chr, range(256)))
_marks = None  # how they were marshalled when last looked at (None from 3.13 on)
_started = ()  # each one's marshal type when the worker started
_drifted = frozenset()  # those interned since the worker started, as of the task's start
_looked_at = False  # nothing that could intern one has run since they were last looked at
_first_task = True  # no task answered yet since the worker started
_fresh = None  # the _FreshCopy that compiles such modules (before 3.13, where there is os.fork)
_parent = None  # the parent's pid (main() sets it): an orphan stops before it writes


class _Again(BaseException):
    """This module is to be compiled by the worker as it starts afresh (see _ONE_CHARS); a BaseException, which no
    handler of a module's errors takes for one."""


def _restart():
    raise _Again


def _interned_by_itself():
    """The error for a module whose strings the worker's own code interned before any module could (see
    _ONE_CHARS): starting afresh would do the same again, so it is refused rather than written otherwise."""
    return _Unfaithful(
        "the compile worker interned %s before compiling this module, which CPython would write otherwise; "
        "please report this" % ", ".join(sorted(map(repr, _drifted)))
    )


class _FreshCopy:
    """A copy of the worker made as it started (os.fork, before any task), kept idle: for each module it is asked
    for, it forks a child, which compiles the module with nothing interned since the worker started and answers
    ``(may_have_docstring, marshalled code)``. It writes no file and touches no cache (the worker does both with
    what it answers), and reads nothing but its request pipe: it ends when the worker does (its pipe's end), and a
    killed worker leaves nothing it could still write. About 1 ms a module, against 30-50 ms for the worker to
    start afresh (os.execv), which a tree where every module interns such a string and holds it paid per module.
    Where there is no fork, or the copy is gone, the worker starts afresh as before (``_Again``)."""

    def __init__(self):
        requests, self._requests = os.pipe()
        self._answers, answers = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (requests, self._requests, self._answers, answers):
                os.close(fd)
            raise
        if pid == 0:  # the copy: nothing of the worker's pipes to its parent, which end with the worker alone
            try:
                os.close(self._requests)
                os.close(self._answers)
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.close(null)
                _serve_fresh(requests, answers)
            finally:
                os._exit(0)
        os.close(requests)
        os.close(answers)
        self.pid = pid

    def compiled(self, source, dfile, level):
        """``(may_have_docstring, marshalled code)`` compiled by a child of the copy; ``_Again`` if it is gone."""
        request = marshal.dumps((source, dfile.encode("utf-8", "surrogatepass"), level))
        try:
            _write_all(self._requests, struct.pack("<Q", len(request)) + request)
            head = _read_exact(self._answers, 8)
            answer = _read_exact(self._answers, struct.unpack("<Q", head)[0]) if len(head) == 8 else b""
        except OSError:
            answer = b""
        if not answer:  # the copy was killed: the worker starts afresh, and makes a new one
            raise _Again
        kind, first, second = marshal.loads(answer)  # tuples of str, bytes, bool and None: nothing it interns matters
        if kind == "unfaithful":
            raise _Unfaithful(first)
        if kind != "ok":
            raise _Again  # it failed there where it compiled here (a MemoryError): the worker starts afresh
        return first, second

    def close(self):
        """End the copy (its request pipe closed, it exits) and wait for it: the worker leaves no process behind,
        not even one for its parent to reap."""
        os.close(self._requests)
        os.close(self._answers)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd, size):
    """``size`` bytes from ``fd``, fewer only where it ends."""
    parts = []
    while size:
        part = os.read(fd, min(size, 1 << 20))
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _serve_fresh(requests, answers):
    """The copy's loop: a child per request, whose answer it passes on (a child that ends without one, killed or
    interrupted, is answered "failed": the worker never waits for an answer that cannot come). What the copy reads
    and does interns nothing."""
    while True:
        head = _read_exact(requests, 8)
        if len(head) < 8:
            return
        request = _read_exact(requests, struct.unpack("<Q", head)[0])
        mine, theirs = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(mine)
                os.close(answers)
                _answer_fresh(request, theirs)
            finally:
                os._exit(0)
        os.close(theirs)
        answer = _answer_of(pid, mine, requests)
        os.close(mine)
        os.waitpid(pid, 0)
        if not answer:
            answer = marshal.dumps(("failed", "the child ended without an answer", None))
        _write_all(answers, struct.pack("<Q", len(answer)) + answer)


def _answer_of(pid, answers, requests):
    """What the child ``pid`` answers on ``answers``, read while it runs. The worker sends nothing more while it waits
    for it: ``requests`` readable means the worker is gone (killed, or interrupted with the CLI), and then the child
    is killed and the copy ends, so that nothing of the run goes on compiling once the run is over."""
    parts = []
    while True:
        ready = select.select([answers, requests], [], [])[0]
        if answers in ready:
            part = os.read(answers, 1 << 20)
            if not part:
                return b"".join(parts)
            parts.append(part)
        elif requests in ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os._exit(0)


def _answer_fresh(request, answers):
    """In a child of the copy: compile one module as the worker would have at its start, and answer."""
    source, dfile, level = marshal.loads(request)  # bytes and an int: nothing interned
    try:
        _note_drift()
        code = compile(source, dfile.decode("utf-8", "surrogatepass"), "exec", dont_inherit=True, optimize=level)
        if _drifted and _uses(code.co_consts, _drifted):  # a fresh child: only the worker's own code can have
            raise _interned_by_itself()
        answer = ("ok",) + _marshalled(code)
    except _Unfaithful as exc:
        answer = ("unfaithful", str(exc), None)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:  # the worker compiled it: not the module
        answer = ("failed", type(exc).__name__, None)
    _write_all(answers, marshal.dumps(answer))


def _start_marks():
    global _marks, _started
    if sys.version_info < (3, 13):
        _marks = marshal.dumps(_ONE_CHARS)
        _started = [marshal.dumps(c)[0] & 0x7F for c in _ONE_CHARS]


def _note_drift():
    """Before a task: note which one-character strings are interned now that were not when the worker started (one
    marshal.dumps of them, about 12 us, where anything since the last look may have interned one)."""
    global _marks, _drifted, _looked_at
    if _marks is None or _looked_at:
        return
    _looked_at = True
    now = marshal.dumps(_ONE_CHARS)
    if now != _marks:
        _marks = now
        _drifted = frozenset(c for c, then in zip(_ONE_CHARS, _started) if marshal.dumps(c)[0] & 0x7F != then)


def _uses(consts, strings):
    """Whether one of ``strings`` is among ``consts`` (a code object's constants), at any depth."""
    for const in consts:
        kind = type(const)
        if kind is str:
            if const in strings:
                return True
        elif kind is _CodeType:
            if _uses(const.co_consts, strings):
                return True
        elif (kind is tuple or kind is frozenset) and _uses(const, strings):
            return True
    return False


def main():
    global _cache, _first_task, _looked_at, _fresh, _parent
    # One-character strings are process-wide singletons: their "interned" mark (which marshal writes, and which on
    # 3.11+ decides where a string sorts inside a set constant) is whatever the process did to them before. 3.13+
    # interns all 256 at start-up. Before 3.13 CPython's compiler interns those of name characters (a constant
    # "a" is always interned) and no other ('-' and ' ' are written as plain strings): the same is done here up
    # front, so that the mark does not depend on which modules a worker compiled before (for what a module's own
    # compile() interns, see _ONE_CHARS).
    for i in range(256):
        if sys.version_info >= (3, 13) or _NAME_LIKE(chr(i)):
            sys.intern(chr(i))
    sys.intern("")
    # Nor may the worker's own answers intern one: 3.10 and 3.11's C JSON encoder interns "[", "]", "{" and "}" the
    # first time it writes a list or a dict, so every module a worker compiled after its first batch had those
    # strings marked interned (and, in a set constant, sorted elsewhere). The answers are written by json's own
    # Python encoder there, which interns nothing.
    if sys.version_info < (3, 12):
        json.encoder.c_make_encoder = None
    _start_marks()
    if _marks is not None and hasattr(os, "fork") and not os.environ.get("_HATCH_PYC_WORKER_NO_FORK"):
        try:
            _fresh = _FreshCopy()
        except OSError:  # no process to spare (a pids limit): the worker starts afresh where it would ask the copy
            _fresh = None
    args = sys.argv[2:]
    _parent = os.getppid()  # the parent that started it, unless it says which (it may be gone before this line)
    if args[:1] == ["--parent"] and len(args) > 1:
        _parent, args = int(args[1]), args[2:]
    if args[:1] == ["--cache"] and len(args) > 1:
        _cache = _Cache(args[1])
    out = sys.stdout.buffer
    for line in sys.stdin:
        batch = json.loads(line)
        answers = []
        fresh_start = False
        try:
            for task in batch:
                # A parent killed (SIGKILL) mid-batch cannot end its workers: one writing on would leave temporaries
                # in the tree after the next run's clean-up. An orphan is re-parented: it stops at once.
                if os.getppid() != _parent:
                    os._exit(3)
                if fresh_start:  # see below: asked again, of this worker as it starts afresh
                    answers.append({"again": True})
                    continue
                _note_drift()
                counted = (_cache.hits, _cache.misses) if _cache is not None else None
                try:
                    answers.append(_run_task(task))
                except _Again:
                    answers.append({"again": True})
                    fresh_start = True
                    if counted is not None:  # counted when it is asked again
                        _cache.hits, _cache.misses = counted
                _first_task = False
        finally:
            _close_dirs()
        if _cache is not None and answers:
            # the cache's count since the last batch, on the batch's first answer
            answers[0]["cache"] = [_cache.hits, _cache.misses]
            _cache.hits = _cache.misses = 0
        # A delivered pyc's bytes follow the line, as they are: an answer says how many are its own ("payload"),
        # each delivered pyc how many of those ("length"), in order.
        streams = []
        for answer in answers:
            total = 0
            for outcome in answer.get("ok") or ():
                if outcome[1] == "delivered":
                    stream = outcome[2].pop("stream")
                    outcome[2]["length"] = len(stream)
                    streams.append(stream)
                    total += len(stream)
            if total:
                answer["payload"] = total
        out.write(json.dumps(answers).encode("utf-8") + b"\n")
        for stream in streams:
            out.write(stream)
        out.flush()
        _looked_at = False  # the batch answered: whatever that did is looked at before the next task
        if fresh_start:
            if _cache is not None:
                _cache.flush()
            if _fresh is not None:
                _fresh.close()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # same process, pipes and arguments
    if _cache is not None:
        _cache.flush()
    if _fresh is not None:
        _fresh.close()
    sys.stderr.flush()
    os._exit(0)  # all is written: the interpreter's teardown would only add about 5 ms to every run


if __name__ == "__main__":
    main()
