"""Type-strict comparison of two code objects: is this the program CPython compiled?

Run inside the *target* interpreter (by the differential oracle's probe, and by the compile
worker on a CPython newer than the ones the oracle has proven it on), so it imports nothing
but the standard library and works on every CPython from 3.10 on.

``==`` on code objects is not enough: ``0 == 0.0 == False`` and ``slice(0, None) ==
slice(0.0, None)``, yet each pair is a different program. Every constant is compared by
exact type at every depth, floats by their bits, sets by their members' exact keys.
"""

import struct
import sys

_CodeType = type(compile("", "", "exec"))
_pack_double = struct.Struct("<d").pack
# Derived views of co_linetable and co_code (deprecated and warning on access since 3.12):
# the tables themselves are compared instead.
_DERIVED = frozenset({"co_lnotab", "co_consts"})
_LIMIT = 20


def _fields(code):
    """Every data attribute a code object has on this CPython (co_code, co_linetable, co_flags, ...)."""
    return sorted(
        name
        for name in dir(code)
        if name.startswith("co_") and name not in _DERIVED and not callable(getattr(code, name))
    )


def strict_key(value):
    """A hashable key equal for two constants only if they are the same program.

    Deliberately written apart from the worker's ``_const_key``, which decides what the worker
    merges: the check must not share a mistake with the code it checks.
    """
    kind = type(value)
    if kind is float:
        return (kind, _pack_double(value))
    if kind is complex:
        return (kind, _pack_double(value.real), _pack_double(value.imag))
    if kind is tuple:
        return (kind, tuple(strict_key(v) for v in value))
    if kind is frozenset:
        return (kind, frozenset(strict_key(v) for v in value))
    if kind is slice:
        return (kind, strict_key(value.start), strict_key(value.stop), strict_key(value.step))
    if kind is _CodeType:
        return (kind, id(value))  # compared field by field, never by key
    return (kind, value)


# On 3.10 compile() may rebuild a set constant once more (after interning its strings), and a
# set rebuilt from its own iteration order can iterate differently, so CPython itself gives one
# of the orders on that rebuild path, depending on the process history. Only a set with a string
# of name characters among its items is rebuilt (intern_string_constants): any other iterates in
# the one order compile() gave it.
_SET_ORDER_FROM_HISTORY = sys.version_info < (3, 11)


def _interned_by_compile(value):
    """Whether compile() interns ``value`` (all_name_chars in CPython's Objects/codeobject.c)."""
    return type(value) is str and value.isascii() and all(c.isalnum() or c == "_" for c in value)


def _orders_cpython_gives(expected, actual):
    """Whether ``actual`` is the same set as ``expected`` in an order CPython 3.10 also gives."""
    if len(expected) != len(actual) or {strict_key(v) for v in expected} != {strict_key(v) for v in actual}:
        return False
    if not any(_interned_by_compile(v) for v in expected):
        return False  # never rebuilt: compared item by item
    wanted = [strict_key(v) for v in actual]
    current = expected
    for _ in range(32):
        if [strict_key(v) for v in current] == wanted:
            return True
        current = frozenset(tuple(current))
    return False


def _const_differences(expected, actual, where, out):
    if type(expected) is not type(actual):
        out.append("%s: %s %r != %s %r" % (where, type(expected).__name__, expected, type(actual).__name__, actual))
        return
    if type(expected) is _CodeType:
        _code_differences(expected, actual, where, out)
    elif type(expected) is frozenset and _SET_ORDER_FROM_HISTORY and _orders_cpython_gives(expected, actual):
        pass
    elif type(expected) is tuple or type(expected) is frozenset:
        # A set is compared in iteration order: {8, 16} and {16, 8} are equal but a loop over
        # them runs in another order.
        if len(expected) != len(actual):
            out.append("%s: %d items != %d" % (where, len(expected), len(actual)))
            return
        for i, (a, b) in enumerate(zip(expected, actual)):
            _const_differences(a, b, "%s[%d]" % (where, i), out)
    elif strict_key(expected) != strict_key(actual):
        out.append("%s: %r != %r" % (where, expected, actual))


def _code_differences(expected, actual, where, out):
    where = "%s/%s" % (where, getattr(expected, "co_qualname", expected.co_name)) if where else expected.co_name
    for name in _fields(expected):
        a, b = getattr(expected, name), getattr(actual, name, None)
        if type(a) is not type(b) or a != b:
            out.append("%s: %s differs" % (where, name))
    consts_a, consts_b = expected.co_consts, actual.co_consts
    if len(consts_a) != len(consts_b):
        out.append("%s: co_consts has %d items != %d" % (where, len(consts_a), len(consts_b)))
        return
    for i, (a, b) in enumerate(zip(consts_a, consts_b)):
        _const_differences(a, b, "%s: co_consts[%d]" % (where, i), out)


def _nans(value, out):
    """Every NaN-holding float or complex constant in ``value``, in a fixed traversal order."""
    kind = type(value)
    if kind is _CodeType:
        for const in value.co_consts:
            _nans(const, out)
    elif kind is tuple or kind is frozenset:
        for item in value:
            _nans(item, out)
    elif kind is slice:
        for item in (value.start, value.stop, value.step):
            _nans(item, out)
    elif (kind is float or kind is complex) and value != value:
        out.append(value)
    return out


def _nan_identity_differences(expected, actual, out):
    # A NaN is not equal to itself, so which NaN constants are one object decides what
    # ``x in (nan_a, nan_b)`` and ``nan_a == nan_a`` give: the sharing must be CPython's.
    a, b = _nans(expected, []), _nans(actual, [])
    if len(a) == len(b):
        for i in range(len(a)):
            for j in range(i + 1, len(a)):
                if (a[i] is a[j]) != (b[i] is b[j]):
                    out.append("NaN constants #%d and #%d: one object %s != %s" % (i, j, a[i] is a[j], b[i] is b[j]))
                    return


def code_differences(expected, actual):
    """What differs between two code objects, recursively and type-strictly (empty: the same program).

    Compared: every ``co_*`` data attribute (bytecode, line and exception tables, names,
    variables, flags, counts, file name, qualified name, first line), every constant by exact
    type and value (sets in iteration order), and which NaN constants are one object. Not
    compared: the identity of other constants and whether a string is interned, which CPython
    leaves to the implementation (and changes between versions).
    """
    out = []
    _code_differences(expected, actual, "", out)
    _nan_identity_differences(expected, actual, out)
    return out[:_LIMIT]
