#!/usr/bin/env python3
"""Why the workers pay for a canonical marshal: plain ``marshal.dumps`` depends on the process history.

Run it with the interpreter hatch-pyc is installed in (it uses the engine's own worker and
worker environment). For each target interpreter it compiles every module of a corpus in
two processes with different histories, both with the workers' fixed hash seed (A: a fresh process, files in order; B: a dozen
standard modules imported first, files in reverse order, every seventh code object kept
alive) and counts the modules whose bytes differ between A and B, for three ways of
marshalling the same code object:

- ``marshal.dumps``: what compileall, pip and uv write;
- *hold everything*: every object of the code tree held in a list while marshalling, so
  each one's reference count is above one (a cheaper idea that does not work: equal
  constants may be one object or two, depending on what else the process has compiled);
- the worker's ``_canonical_marshal``: every equal constant made one object, every string
  interned and held (must be 0).

    python benchmarks/why_canonical_marshal.py --python 3.10 3.11 3.12 3.13 3.14 3.15 [--corpus DIR ...]

The default corpus is each target's own standard library (with its tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# The installed engine's own worker script and worker environment (no PYTHON* settings, the fixed hash seed).
from hatch_pyc._pool import WORKER_SCRIPT as WORKER
from hatch_pyc._pool import worker_env

# Runs in the target: argv = worker.py history(A|B) out.json root...
_PROBE = r"""
import hashlib, importlib, json, marshal, os, sys, warnings
warnings.simplefilter("ignore")
worker, history, out = sys.argv[1:4]
ns = {"__name__": "hatch_pyc_worker"}
exec(compile(open(worker, "rb").read(), worker, "exec"), ns)
for i in range(256):
    sys.intern(chr(i))
sys.intern("")
CodeType = type(compile("", "", "exec"))

def hold(code, held):
    held.append(code); held.append(code.co_consts)
    for const in code.co_consts:
        if type(const) is CodeType:
            hold(const, held)
        else:
            held.append(const)
            if type(const) in (tuple, frozenset):
                held.extend(const)
    held.append(code.co_names); held.extend(code.co_names)
    held.extend(code.co_varnames + code.co_cellvars + code.co_freevars)
    held.append(code.co_filename); held.append(code.co_name)

def held_dumps(code):
    held = []
    hold(code, held)
    return marshal.dumps(code)

kept = []
if history == "B":
    for name in ("asyncio", "email.mime.text", "json", "decimal", "typing", "dataclasses", "argparse",
                 "http.client", "xml.etree.ElementTree", "unittest", "pydoc", "inspect"):
        try:
            kept.append(importlib.import_module(name))
        except ImportError:
            pass
files = []
for root in sys.argv[4:]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py")]
if history == "B":
    files.reverse()
digests = {}
for i, path in enumerate(files):
    with open(path, "rb") as handle:
        source = handle.read()
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        continue
    ways = (marshal.dumps(code), held_dumps(code), ns["_canonical_marshal"](code))
    digests[path] = [hashlib.sha256(data).hexdigest() for data in ways]
    if history == "B" and i % 7 == 0:
        kept.append(code)
with open(out, "w") as handle:
    json.dump(digests, handle)
"""

WAYS = ("marshal.dumps", "hold everything", "canonical marshal (the worker's)")


def probe(python: str, corpus: list[str]) -> tuple[int, list[int]]:
    with tempfile.TemporaryDirectory() as scratch:
        outs = {h: Path(scratch) / f"{h}.json" for h in "AB"}
        command = [python, "-S", "-c", _PROBE, str(WORKER)]
        procs = [subprocess.Popen([*command, h, str(outs[h]), *corpus], env=worker_env()) for h in "AB"]
        if any(p.wait() for p in procs):
            raise SystemExit(f"{python}: the probe failed")
        a, b = (json.loads(outs[h].read_text()) for h in "AB")
    common = sorted(a.keys() & b.keys())
    return len(common), [sum(a[k][i] != b[k][i] for k in common) for i in range(len(WAYS))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", nargs="+", default=["3.12"], help="targets: 3.12, python3.13 or paths")
    parser.add_argument("--corpus", nargs="*", default=None, help="directories (default: the target's stdlib)")
    args = parser.parse_args()
    print(f"| target | modules | {' | '.join(WAYS)} |")
    print("| --- | ---: |" + " ---: |" * len(WAYS))
    for spec in args.python:
        python = spec if "/" in spec or spec.startswith("python") else f"python{spec}"
        info = subprocess.run(
            [
                python,
                "-c",
                "import sys, sysconfig; print(sys.version.split()[0]); print(sysconfig.get_paths()['stdlib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        count, differ = probe(python, args.corpus or [info[1]])
        print(f"| {info[0]} | {count} | " + " | ".join(f"{n} differ" for n in differ) + " |")
    print("\nA module 'differs' when its bytes in a fresh process (A) and after another history (B) are not equal.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
