"""``hatch-pyc inspect``: decode a pyc's header and, where a matching CPython is found, its code object."""

from __future__ import annotations

import argparse

from hatch_pyc._cli_shared import EXIT_OK, show


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``inspect``."""
    insp = sub.add_parser(
        "inspect",
        help="decode a pyc: target CPython, header, code object",
        description="Decode a pyc header (magic -> CPython version, flags, source mtime/size or "
        "hash) and, when a matching CPython is found, its code object.",
    )
    insp.add_argument("file", metavar="FILE.pyc")
    insp.add_argument("--dis", action="store_true", help="also print a dis listing of the module code")
    insp.add_argument("--json", action="store_true", help="print JSON")
    insp.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    """Print the header fields and code object, aligned or as JSON."""
    from hatch_pyc._pycinfo import read_code_info, read_header

    header = read_header(args.file)
    info: dict[str, object] = {"file": args.file, **header.describe()}
    code = read_code_info(args.file, with_dis=args.dis)
    if code is not None:
        info.update(co_filename=code.filename, co_name=code.name, read_by=f"CPython {code.read_by}")
    if args.json:
        import json

        show(json.dumps(info, indent=2))
        return EXIT_OK
    width = max(len(k) for k in info)
    if header.python is None:
        info["python"] = f"unknown (magic {header.magic_number} is not a CPython release this hatch-pyc knows)"
    for key, value in info.items():
        show(f"{key:<{width}}  {value}", lines=False)
    if code is None:
        if header.python is not None:
            show(f"{'code':<{width}}  (no CPython {header.python} found here to load it)")
    elif args.dis:
        show()
        show(code.dis, end="")
    return EXIT_OK
