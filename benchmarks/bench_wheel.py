"""Sourceless wheel conversion: ``hatch-pyc wheel`` against ``pyc-wheel``, side by side.

Both tools convert the same large real wheels (botocore, django, sqlalchemy by default) for the
same CPython, alternating in every round; the script reports median wall time, the paired
ratio, peak memory (max RSS of the process tree, from ``/usr/bin/time``), output size, whether
the output passes ``installer``'s RECORD validation, and whether two runs give identical bytes.
hatch-pyc runs three ways in every round: without the compile cache, with an empty one (cold: it
stores everything) and with a warm one (the wheel converted once before); the outputs must be
byte-identical, and the cache's targets are checked (warm <= 0.15x pyc-wheel, cold <= 1.03x no cache).

    python benchmarks/bench_wheel.py [--python 3.12] [--rounds 5] [--markdown FILE]

It makes its own venv under ``benchmarks/.work/wheel`` with both tools (pyc-wheel needs
setuptools at run time) and downloads the wheels once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Both tools' temporary files go to TMPDIR; --tmpdir puts it on the file system under test (on the
# machine these figures come from, /tmp creates files ~7x slower than the work tree's own disk).
TOOL_ENV = dict(os.environ)
REPO = HERE.parent
WHEELS = ["botocore==1.35.36", "django==5.1.3", "sqlalchemy==2.0.36"]
COLD = "hatch-pyc cold cache"
WARM = "hatch-pyc warm cache"


def sh(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def setup(work: Path, python: str) -> tuple[Path, list[Path]]:
    venv = work / f"venv-{python}"
    if not (venv / "bin" / "python").exists():
        exe = sh(f"python{python}", "-c", "import sys; print(sys.executable)").stdout.strip()
        sh(exe, "-m", "venv", str(venv))
        sh(
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "pyc-wheel==2.5.1",
            "setuptools",
            "installer",
        )
    # The checkout as it is now, every run (a copy installed earlier would be measured otherwise).
    sh(str(venv / "bin/python"), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(REPO))
    wheels_dir = work / f"wheels-{python}"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    sh(
        str(venv / "bin/python"),
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        str(wheels_dir),
        *WHEELS,
    )
    return venv, sorted(wheels_dir.glob("*.whl"))


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """(wall seconds, to the millisecond, and peak RSS in KiB of the process tree, from /usr/bin/time)."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, capture_output=True, text=True, check=False, env=TOOL_ENV
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr[-2000:]}")
    rss = proc.stderr.strip().splitlines()[-1]
    return wall, int(rss)


def run_hatch_pyc(
    venv: Path, wheel: Path, out: Path, python: str, cache: Path | None = None
) -> tuple[float, int, Path]:
    """``hatch-pyc wheel``: without the compile cache (what converting costs), or with the cache ``cache``."""
    out.mkdir(parents=True, exist_ok=True)
    how = ["--cache-dir", str(cache)] if cache is not None else ["--no-cache"]
    cmd = [str(venv / "bin/python"), "-m", "hatch_pyc", "wheel", str(wheel), "-o", str(out), "-q", "--python", python]
    cmd += ["--stubs", "none"]  # like for like: pyc-wheel writes no type stubs
    wall, rss = timed([*cmd, *how], out)
    (result,) = out.glob("*.whl")
    return wall, rss, result


def run_pyc_wheel(venv: Path, wheel: Path, out: Path) -> tuple[float, int, Path]:
    out.mkdir(parents=True, exist_ok=True)
    copy = out / wheel.name
    shutil.copyfile(wheel, copy)
    wall, rss = timed([str(venv / "bin/python"), "-m", "pyc_wheel", "--quiet", str(copy)], out)
    (result,) = out.glob("*.whl")
    return wall, rss, result


def record_valid(venv: Path, wheel: Path) -> bool:
    code = (
        "import sys, zipfile; from installer.sources import WheelFile\n"
        "WheelFile(zipfile.ZipFile(sys.argv[1])).validate_record(validate_contents=True)"
    )
    return (
        subprocess.run([str(venv / "bin/python"), "-c", code, str(wheel)], capture_output=True, check=False).returncode
        == 0
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=HERE / ".work" / "wheel")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tmpdir", type=Path, help="TMPDIR for both tools (default: the caller's)")
    args = parser.parse_args()
    venv, wheels = setup(args.work, args.python)
    if args.tmpdir:
        args.tmpdir.mkdir(parents=True, exist_ok=True)
        TOOL_ENV["TMPDIR"] = str(args.tmpdir.resolve())
    rows = []
    warm_rows: list[tuple[str, str, str, str]] = []
    raw: dict[str, object] = {}
    for wheel in wheels:
        tools = ["hatch-pyc", COLD, WARM, "pyc-wheel"]
        times: dict[str, list[float]] = {tool: [] for tool in tools}
        rss: dict[str, list[int]] = {tool: [] for tool in tools}
        outputs: dict[str, list[Path]] = {tool: [] for tool in tools}
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(scratch) / "cache"  # the wheel converted once, untimed: then every module is in it
            run_hatch_pyc(venv, wheel, Path(scratch) / "warm-up", args.python, cache)
            for round_no in range(args.rounds):
                order = tools if round_no % 2 == 0 else tools[::-1]
                for tool in order:
                    out = Path(scratch) / f"{tool}-{round_no}".replace(" ", "-")
                    if tool == "hatch-pyc":
                        wall, peak, result = run_hatch_pyc(venv, wheel, out, args.python)
                    elif tool == WARM:
                        wall, peak, result = run_hatch_pyc(venv, wheel, out, args.python, cache)
                    elif tool == COLD:  # an empty cache each time: what storing everything costs
                        wall, peak, result = run_hatch_pyc(venv, wheel, out, args.python, out.with_suffix(".cache"))
                    else:
                        wall, peak, result = run_pyc_wheel(venv, wheel, out)
                    times[tool].append(wall)
                    rss[tool].append(peak)
                    outputs[tool].append(result)
            ratios = [h / p for h, p in zip(times["hatch-pyc"], times["pyc-wheel"], strict=True)]
            warm = [w / h for w, h in zip(times[WARM], times["hatch-pyc"], strict=True)]
            cold = [c / h for c, h in zip(times[COLD], times["hatch-pyc"], strict=True)]
            warm_peer = [w / p for w, p in zip(times[WARM], times["pyc-wheel"], strict=True)]
            info = {}
            for tool in times:
                first, second = outputs[tool][0], outputs[tool][1]
                with zipfile.ZipFile(first) as zf:
                    py_left = sum(1 for n in zf.namelist() if n.endswith(".py") and ".data/scripts/" not in n)
                info[tool] = {
                    "median_s": statistics.median(times[tool]),
                    "min_s": min(times[tool]),
                    "max_s": max(times[tool]),
                    "peak_rss_mib": max(rss[tool]) / 1024,
                    "size": first.stat().st_size,
                    "name": first.name,
                    "record_valid": record_valid(venv, first),
                    "reproducible": sha(first) == sha(second),
                    "py_left": py_left,
                }
            for tool in (COLD, WARM):
                if sha(outputs[tool][0]) != sha(outputs["hatch-pyc"][0]):
                    sys.exit(f"{wheel.name}: the wheel made with a {tool} differs from the one made without a cache")
            raw[wheel.name] = {
                "tools": info,
                "ratios": ratios,
                "warm_ratios": warm,
                "cold_ratios": cold,
                "warm_vs_pyc_wheel": warm_peer,
            }
            rows.append((wheel.name, wheel.stat().st_size, info, statistics.median(ratios), min(ratios), max(ratios)))
            warm_rows.append((wheel.name, *(_spread(r) for r in (warm_peer, warm, cold))))
    lines = [
        f"CPython {args.python}, {args.rounds} alternating rounds per wheel, {os.cpu_count()} CPUs, "
        f"TMPDIR={TOOL_ENV.get('TMPDIR', '(unset: /tmp)')}.",
        "",
        "| wheel | tool | median s | min-max s | peak RSS MiB | output | RECORD valid | reproducible | speed-up |",
        "|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for name, size, info, ratio, low, high in rows:
        for tool in ("hatch-pyc", COLD, WARM, "pyc-wheel"):
            t = info[tool]
            speed = f"**{1 / ratio:.2f}x** [{1 / high:.2f}-{1 / low:.2f}]" if tool == "hatch-pyc" else ""
            lines.append(
                f"| {name} ({size / 1e6:.1f} MB) | {tool} | {t['median_s']:.3f} | {t['min_s']:.3f}-{t['max_s']:.3f} | "
                f"{t['peak_rss_mib']:.0f} | {t['name']} ({t['size'] / 1e6:.2f} MB) | {'yes' if t['record_valid'] else 'NO'} | "
                f"{'yes' if t['reproducible'] else 'NO'} | {speed} |"
            )
    target = min(1 / r[3] for r in rows)
    lines += [
        "",
        f"Target: hatch-pyc at least 2x faster than pyc-wheel on every wheel: "
        f"{'met' if target >= 2 else 'missed'} (lowest median speed-up {target:.2f}x).",
        "",
        "The compile cache (every output byte-identical to the one made without a cache), paired per round:"
        " median [min-max].",
        "A warm cache holds every module (the wheel was converted once before); a cold one is empty (it stores"
        " everything).",
        "",
        "| wheel | warm cache / pyc-wheel (target <= 0.15x) | warm cache / no cache | cold cache / no cache"
        " (target <= 1.03x) |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {peer} | {warm} | {cold} |" for name, peer, warm, cold in warm_rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return 0


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f}x [{min(ratios):.3f}-{max(ratios):.3f}]"


if __name__ == "__main__":
    sys.exit(main())
