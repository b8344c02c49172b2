#!/usr/bin/env python3
"""How much smaller ``--compact`` makes sourceless wheels: rich, requests, attrs, SQLAlchemy and Django.

Each wheel is converted twice by ``hatch-pyc wheel`` for each CPython 3.11+ on the machine (3.10 has no column
positions), with and without ``--compact``; the table gives the whole wheels' sizes and the pycs' alone
(their compressed bytes inside the wheel), and checks that a second compact conversion is byte-identical.

    python benchmarks/bench_compact.py --output benchmarks/results/compact.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGES = ("rich", "requests", "attrs", "sqlalchemy", "django")


def _pyc_bytes(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as archive:
        return sum(info.compress_size for info in archive.infolist() if info.filename.endswith(".pyc"))


def _convert(wheel: Path, out: Path, python: str, compact: bool) -> Path:
    cmd = [sys.executable, "-m", "hatch_pyc", "wheel", str(wheel), "-o", str(out), "--python", python, "-q"]
    cmd += ["--stubs", "none"]  # the pycs and the wheels as measured before type stubs existed
    subprocess.run([*cmd, "--no-cache", *(["--compact"] if compact else [])], check=True)
    (made,) = out.glob("*.whl")
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    from hatch_pyc._targets import discover_interpreters

    targets = [i for i in discover_interpreters() if i.version >= (3, 11)]
    lines = [
        "| CPython | wheel | wheel KB | compact KB | saved | pycs KB (zipped) | compact pycs KB | saved |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    totals: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-bench-compact-") as scratch:
        root = Path(scratch)
        for interp in targets:
            wheels = root / f"in-{interp.minor}"
            download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:"]
            subprocess.run([*download, "--python-version", interp.minor, "-d", str(wheels), *PACKAGES], check=True)
            for wheel in sorted(wheels.glob("*.whl")):
                made = {}
                for compact in (False, True, True):
                    out = root / f"out-{interp.minor}-{wheel.stem}-{compact}-{len(made)}"
                    made[(compact, len(made))] = _convert(wheel, out, interp.executable, compact)
                full, small, again = made[(False, 0)], made[(True, 1)], made[(True, 2)]
                if small.read_bytes() != again.read_bytes():
                    sys.exit(f"{wheel.name} for {interp.minor}: two compact conversions differ")
                sizes = [full.stat().st_size, small.stat().st_size, _pyc_bytes(full), _pyc_bytes(small)]
                for i, size in enumerate(sizes):
                    totals.setdefault(interp.minor, [0, 0, 0, 0])[i] += size
                name = wheel.name.split("-")[0]
                lines.append(
                    f"| {interp.minor} | {name} | {sizes[0] / 1024:.0f} | {sizes[1] / 1024:.0f} | "
                    f"{1 - sizes[1] / sizes[0]:.1%} | {sizes[2] / 1024:.0f} | {sizes[3] / 1024:.0f} | "
                    f"{1 - sizes[3] / sizes[2]:.1%} |"
                )
            t = totals[interp.minor]
            lines.append(
                f"| {interp.minor} | **all five** | {t[0] / 1024:.0f} | {t[1] / 1024:.0f} | **{1 - t[1] / t[0]:.1%}** | "
                f"{t[2] / 1024:.0f} | {t[3] / 1024:.0f} | **{1 - t[3] / t[2]:.1%}** |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            "# Compact pycs: sourceless wheels with and without `--compact`\n\n"
            "`python benchmarks/bench_compact.py` (each compact conversion done twice: byte-identical).\n\n" + text
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
