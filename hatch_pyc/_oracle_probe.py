"""The differential oracle's probe, run as a script by the *target* interpreter.

For every pyc hatch-pyc wrote, it compiles the same source with this interpreter's own
``compile()`` (same file name, same level) and compares the two code objects recursively and
type-strictly (:mod:`_codecheck`, loaded from beside this file). Standard library only.

Input (stdin): a JSON list of ``{"src", "dfile", "outs": [[level, pyc path or null], ...]}``.
Output (stdout): one JSON object: counts and a list of differences.
"""

import importlib.util
import json
import marshal
import os
import struct
import sys
import warnings

MAGIC = importlib.util.MAGIC_NUMBER


def _load_codecheck():
    here = os.path.dirname(os.path.abspath(globals().get("__file__") or sys.argv[1]))
    path = os.path.join(here, "_codecheck.py")
    spec = importlib.util.spec_from_file_location("_hatch_pyc_codecheck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(source, dfile, level):
    # What CPython's own pyc of this source loads as (py_compile writes marshal.dumps of
    # compile()): the code object itself, with the set order and NaN sharing marshal gives.
    try:
        return marshal.loads(marshal.dumps(compile(source, dfile, "exec", dont_inherit=True, optimize=level))), None
    except (SyntaxError, ValueError, UnicodeDecodeError, MemoryError, RecursionError) as exc:
        return None, "%s: %s" % (type(exc).__name__, exc)


def _check(entry, code_differences, counts, differences):
    with open(entry["src"], "rb") as handle:
        source = handle.read()
    counts["modules"] += 1
    for level, pyc in entry["outs"]:
        expected, refused = _compile(source, entry["dfile"], level)

        def differ(detail, level=level):
            differences.append({"src": entry["src"], "level": level, "detail": detail})

        if pyc is None or not os.path.exists(pyc):
            if refused:
                counts["refused_by_both"] += 1
            else:
                differ("CPython compiles it; hatch-pyc wrote no pyc")
            continue
        with open(pyc, "rb") as handle:
            data = handle.read()
        if refused:
            differ("hatch-pyc wrote a pyc; CPython refuses the source (%s)" % refused)
            continue
        if data[:4] != MAGIC:
            differ("magic number %s, this CPython's is %s" % (data[:4].hex(), MAGIC.hex()))
            continue
        # The oracle compiles timestamp pycs: the header must be what the import system accepts
        # for this source as it is on disk (flags 0, the source's mtime and size).
        stat = os.stat(entry["src"])
        header = struct.unpack("<III", data[4:16])
        wanted = (0, int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)
        if header != wanted:
            differ("header (flags, mtime, size) %s, the import system wants %s" % (header, wanted))
            continue
        actual = marshal.loads(data[16:])
        counts["pycs"] += 1
        for detail in code_differences(expected, actual):
            differ(detail)


def main():
    code_differences = _load_codecheck().code_differences
    warnings.simplefilter("ignore")  # SyntaxWarnings of the test suite's deliberately odd sources
    entries = json.load(sys.stdin)
    counts = {"modules": 0, "pycs": 0, "refused_by_both": 0}
    differences = []
    for entry in entries:
        _check(entry, code_differences, counts, differences)
    json.dump({"counts": counts, "differences": differences}, sys.stdout)


if __name__ == "__main__":
    main()
