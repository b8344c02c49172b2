"""Compile worker, run as a script by the *target* interpreter (``python -I -S _worker.py``).

It must not import hatch_pyc or anything outside the standard library: it runs under
whichever CPython the bytecode is for. It reads one JSON batch per line on stdin and answers
one JSON line per batch on stdout, so the parent keeps a few long-lived workers busy
instead of paying interpreter start-up per file.

A task is ``{"src", "dfile", "mode", "outs": [[level, tmp_path], ...], "verify", "mtime"?}``; a module
inside a wheel adds ``"archive", "member", "digest", "size"`` (read from the zip, checked against RECORD).
With ``"deliver": true`` nothing is written: each pyc comes back in the answer, deflated for a zip.
Every output is written to its temporary path only; the parent renames them into place once
the whole run has succeeded, so a failure or a kill never leaves a half-written pyc under a
final name.
"""

import importlib.util
import json
import marshal
import os
import re
import struct
import sys

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


def _may_have_asserts(source):
    # ``-O`` drops assert statements and folds ``__debug__``; both need the word in the
    # source. A non-ASCII source may spell ``__debug__`` with NFKC-equivalent letters.
    if not source.isascii() or b"__debug__" in source:
        return True
    # ``in`` is a fast scan; the regex (word boundaries: not ``assertEqual``) runs only on a hit.
    return b"assert" in source and _ASSERT.search(source) is not None


_pack_double = struct.Struct("<d").pack


def _const_key(value):
    """A key under which two constants are equal only if they are the same program.

    ``==`` is not that: ``0 == 0.0 == False``, ``0.0 == -0.0``, ``slice(0, None) ==
    slice(0.0, None)`` and ``frozenset({1}) == frozenset({1.0})``, yet each pair behaves
    differently (``[1, 2][0.0:]`` raises). So the key carries the exact type at every depth,
    floats by their bits (sign of zero, NaN payloads), and containers by their items' keys.
    A kind of constant not listed here raises TypeError: it is then never merged with another.
    """
    kind = type(value)
    if kind is str or kind is bytes or kind is int or kind is bool:
        return (kind, value)
    if kind is float:
        return (kind, _pack_double(value))
    if kind is tuple:
        return (kind, tuple([_const_key(v) for v in value]))
    if kind is frozenset:
        return (kind, frozenset([_const_key(v) for v in value]))
    if kind is complex:
        return (kind, _pack_double(value.real), _pack_double(value.imag))
    if kind is slice:  # a constant since 3.14 (x[0:], x[:1])
        return (kind, _const_key(value.start), _const_key(value.stop), _const_key(value.step))
    if value is None or value is Ellipsis:
        return (kind,)
    raise TypeError("no type-strict key for %s" % kind.__name__)


def _order_key(value):
    kind = type(value)
    if kind is tuple:
        return (kind.__name__, tuple([_order_key(v) for v in value]))
    if kind is frozenset:
        return (kind.__name__, tuple(sorted([_order_key(v) for v in value])))
    if kind is float:
        return (kind.__name__, value.hex())
    return (kind.__name__, repr(value))


_QUALNAME = sys.version_info >= (3, 11)
_MORTAL_STRINGS = sys.version_info < (3, 12)
_SETS_IN_TABLE_ORDER = sys.version_info < (3, 11)
_intern = sys.intern


def _share(value, memo):
    """Make equal constants one object and every string constant interned; ``memo`` keeps them alive.

    Equal means equal under :func:`_const_key` (same type and value at every depth), never ``==``.
    """
    kind = type(value)
    if kind is str:
        value = _intern(value)
        memo[value] = value
        return value
    if kind is _CodeType:
        return _share_code(value, memo)
    if kind is int or kind is bool or value is None or value is Ellipsis:
        return value
    if kind is tuple:
        value = tuple([_share(v, memo) for v in value])
    elif kind is frozenset:
        items = [_share(v, memo) for v in value]
        if _SETS_IN_TABLE_ORDER:
            # 3.10's marshal writes a set in table order, which follows insertion order where
            # hashes collide; inserting in a fixed order makes it depend on the items alone.
            # (3.11+ marshal sorts set items itself, cpython#81777.)
            items.sort(key=_order_key)
        value = frozenset(items)
    elif kind is slice:
        value = slice(_share(value.start, memo), _share(value.stop, memo), _share(value.step, memo))
    try:
        key = _const_key(value)
    except TypeError:  # a kind of constant with no type-strict key: never merged
        return value
    return memo.setdefault(key, value)


def _share_code(code, memo):
    # The common constants (str, int, None, nested code) are handled inline: this loop
    # runs for every constant of every code object, so a call per constant is its cost.
    consts = []
    for const in code.co_consts:
        kind = type(const)
        if kind is str:
            shared = _intern(const)
            memo[shared] = shared
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
            memo[name] = name
        memo[code.co_name] = code.co_name
    if _QUALNAME:
        return code.replace(
            co_consts=tuple(consts),
            co_name=_intern(code.co_name),
            co_filename=_intern(code.co_filename),
            co_qualname=_intern(code.co_qualname),
        )
    return code.replace(co_consts=tuple(consts), co_name=_intern(code.co_name), co_filename=_intern(code.co_filename))


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


def _write(path, data, mode):
    directory = os.path.dirname(path)
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with open(fd, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise _WriteError("%s: %s" % (directory, exc.strerror or exc)) from None


def _starts_with(path, header):
    try:
        with open(path, "rb") as handle:
            return handle.read(len(header)) == header
    except OSError:
        return False


def _read_back(path, expected):
    with open(path, "rb") as handle:
        data = handle.read()
    if data != expected or data[:4] != MAGIC:
        raise OSError("read-back of %s does not match what was written" % path)
    marshal.loads(data[16:])


class _Unfaithful(Exception):
    """What would be written is not the code compile() returned (only checked where unverified)."""


_codecheck = None


def _check_faithful(code, data):
    # On a CPython the oracle has not covered, prove each pyc before it is written: what
    # marshal.loads reads back must be, type-strictly, the code object compile() returned.
    global _codecheck
    if _codecheck is None:
        here = os.path.dirname(os.path.abspath(globals().get("__file__") or sys.argv[1]))
        spec = importlib.util.spec_from_file_location("_hatch_pyc_codecheck", os.path.join(here, "_codecheck.py"))
        _codecheck = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_codecheck)
    differences = _codecheck.code_differences(code, marshal.loads(data[16:]))
    if differences:
        raise _Unfaithful(
            "hatch-pyc would not write what CPython %d.%d compiles (%s); please report this"
            % (sys.version_info[0], sys.version_info[1], differences[0])
        )


class _BadInput(Exception):
    """An archive member that cannot be read, or whose bytes are not what RECORD says."""


_archives = {}


def _read_member(task):
    # A wheel's module, read where it is instead of extracted first. The bytes compiled are
    # the bytes checked: RECORD's digest and size are compared here, not in the parent.
    import base64
    import hashlib
    import zipfile

    path, member = task["archive"], task["member"]
    try:
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


def _deflated(data):
    """A pyc as a zip member: deflated as zipfile does, with its CRC, size and RECORD digest."""
    import base64
    import hashlib
    import zlib

    marshal.loads(data[16:])  # it loads: what the read-back checks for a written pyc
    packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    deflated = packer.compress(data) + packer.flush()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return {
        "deflated": base64.b64encode(deflated).decode("ascii"),
        "crc": zlib.crc32(data),
        "size": len(data),
        "digest": "sha256=" + digest,
    }


def _compile_one(task):
    if "archive" in task:
        source = _read_member(task)
        mtime = task["mtime"]
        file_mode = 0o644
    else:
        src = task["src"]
        with open(src, "rb") as handle:
            source = handle.read()
        stat = os.stat(src)
        mtime = task.get("mtime", stat.st_mtime)
        file_mode = (stat.st_mode | 0o200) & 0o666
    header = _header(task["mode"], source, mtime, len(source))
    if task.get("check") and all(_starts_with(path, header) for path in task["check"]):
        return None  # every pyc is current for this source, level, mode and interpreter
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
        if same:
            data = last_data
        else:
            code = compile(source, dfile, "exec", dont_inherit=True, optimize=level)
            last_has_doc = _may_have_docstring(code)
            data = header + _canonical_marshal(code)
            if not _VERIFIED:
                _check_faithful(code, data)
            del code
        if task.get("deliver"):
            results.append([level, "delivered", _deflated(data)])
            last_level = level
            last_data = data
            continue
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
    return results


def _run_task(task):
    try:
        outcome = _compile_one(task)
        return {"current": True} if outcome is None else {"ok": outcome}
    except _WriteError as exc:
        return {"error": {"kind": "OSError", "msg": str(exc), "lineno": None, "write": True}}
    except _BadInput as exc:
        return {"error": {"kind": "InvalidInput", "msg": str(exc), "lineno": None, "input": True}}
    except _Unfaithful as exc:
        return {"error": {"kind": "UnfaithfulBytecode", "msg": str(exc), "lineno": None}}
    except SyntaxError as exc:
        return {"error": {"kind": type(exc).__name__, "msg": exc.msg, "lineno": exc.lineno}}
    except OSError as exc:  # the source cannot be read: "Permission denied", not "[Errno 13] ... 'path'"
        return {"error": {"kind": type(exc).__name__, "msg": exc.strerror or str(exc), "lineno": None}}
    except (ValueError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        return {"error": {"kind": type(exc).__name__, "msg": str(exc), "lineno": None}}


def main():
    # One-character strings are process-wide singletons whose "interned" mark (which
    # marshal writes) depends on history; interning them all up front fixes it.
    for i in range(256):
        sys.intern(chr(i))
    sys.intern("")
    out = sys.stdout
    for line in sys.stdin:
        batch = json.loads(line)
        answers = [_run_task(task) for task in batch]
        out.write(json.dumps(answers))
        out.write("\n")
        out.flush()


if __name__ == "__main__":
    main()
