"""The report: build it, write it as JSON (a documented, versioned schema), and gate CI on it."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hatch_pyc._cache import read_regular_file
from hatch_pyc._errors import InvalidInput, InvalidOptions
from hatch_pyc._gate import FAIL, GateCheck, GateResult, Ratio, not_checked, size_check, slowdown_check
from hatch_pyc._gate import pct as _pct
from hatch_pyc._measure import (
    SizeStats,
    Timing,
    TimingPlan,
    choose_repeat,
    is_module_name,
    measure_imports,
    measure_size,
    median_ci_level,
)
from hatch_pyc._plan import resolve_target
from hatch_pyc._targets import Interpreter, find_interpreter
from hatch_pyc._variants import make_variants, stage_target, top_level_modules

SCHEMA_ID = "https://hatch-pyc.invalid/schemas/report-1.json"
SCHEMA_VERSION = 1
Report = dict[str, Any]


def _size_json(stats: SizeStats, source: SizeStats) -> dict[str, Any]:
    return {
        "files": stats.files,
        "bytes": stats.bytes,
        "disk_bytes": stats.disk_bytes,
        "wheel_bytes": stats.wheel_bytes,
        "py_bytes": stats.py_bytes,
        "pyc_bytes": stats.pyc_bytes,
        "delta_bytes": stats.bytes - source.bytes,
        "delta_bytes_pct": _pct(stats.bytes, source.bytes),
        "delta_wheel_bytes": stats.wheel_bytes - source.wheel_bytes,
        "delta_wheel_bytes_pct": _pct(stats.wheel_bytes, source.wheel_bytes),
        "by_package": dict(sorted(stats.by_package.items(), key=lambda kv: (-kv[1], kv[0]))),
        "largest": [{"path": path, "bytes": size} for path, size in stats.largest],
    }


def _timing_json(timing: Timing, source: Timing | None) -> dict[str, Any]:
    if timing.error is not None:
        return {"error": timing.error}
    low, high = timing.ci
    out: dict[str, Any] = {
        "median_ms": round(timing.median, 3),
        "ci_ms": [round(low, 3), round(high, 3)],
        "ci_level": round(median_ci_level(len(timing.samples)), 4),
        "min_ms": round(min(timing.samples), 3),
        "max_ms": round(max(timing.samples), 3),
        "samples_ms": [round(s, 3) for s in timing.samples],
        "slowest": [{"module": m, "self_ms": round(s, 3), "cumulative_ms": round(c, 3)} for m, s, c in timing.slowest],
    }
    if source is not None and source.error is None and source.samples:
        # The median of round-by-round ratios (each round timed both side by side), with its interval.
        speedup = Ratio.of(source.samples, timing.samples) if len(source.samples) == len(timing.samples) else None
        out["speedup_vs_source"] = round(speedup.median, 3) if speedup else None
        out["speedup_ci"] = [round(speedup.low, 3), round(speedup.high, 3)] if speedup else None
    return out


def build_report(
    target: str,
    *,
    python: str | None = None,
    levels: Sequence[int] = (0,),
    modules: Sequence[str] = (),
    repeat: int | None = None,
    measure_time: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    compact: bool = False,
) -> Report:
    """Stage ``target``, build its variants in scratch copies, measure them, return the report.

    ``compact``: also the sourceless variants of compact pycs (no column positions), to show their saving."""
    for module in modules:  # what ``import`` takes: a module the child cannot even name is not timed
        if not is_module_name(module):
            raise InvalidOptions(f"--import {module!r}: not a module name (dotted identifiers, as import takes)")
    interp: Interpreter = resolve_target([Path(target)], python) if Path(target).is_dir() else find_interpreter(python)
    levels = tuple(sorted(set(levels))) or (0,)
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-report-") as scratch_dir:
        scratch = Path(scratch_dir)
        staged = stage_target(target, scratch, interp)
        variants = make_variants(staged, scratch, interp, levels, compact)
        sizes = {v.name: measure_size(v.root) for v in variants}
        mods = list(modules) or top_level_modules(staged.tree)
        timings: dict[str, dict[str, Timing]] = {}
        startup = Timing()
        plan = TimingPlan(repeat=repeat or 5)
        if measure_time and mods:
            if repeat is None:
                plan.repeat = choose_repeat(interp, variants, mods)
            timings, startup = measure_imports(
                interp, variants, mods, plan, (lambda d, t: progress("timing", d, t)) if progress else None
            )
        source_size = sizes["source"]
        report: Report = {
            "$schema": SCHEMA_ID,
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "hatch-pyc", "version": _version()},
            "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "target": {"kind": staged.kind, "path": str(staged.path), "name": staged.name},
            "python": {"version": ".".join(map(str, interp.version)), "executable": interp.executable},
            "levels": list(levels),
            "modules": mods,
            "measurement": {
                "repeat": plan.repeat if timings else 0,
                "warmup": plan.warmup if timings else 0,
                "interleaved": True,
                "startup_ms": _timing_json(startup, None) if startup.samples else None,
            },
            "variants": [],
        }
        for variant in variants:
            entry: dict[str, Any] = {
                "name": variant.name,
                "kind": variant.kind,
                "level": variant.level,
                "label": variant.label,
                "size": _size_json(sizes[variant.name], source_size),
                "imports": {},
            }
            for module in mods:
                if variant.name in timings:
                    source_timing = timings["source"][module]
                    entry["imports"][module] = _timing_json(timings[variant.name][module], source_timing)
            report["variants"].append(entry)
        report["docstrings"] = _docstring_saving(sizes, levels)
        return report


def _docstring_saving(sizes: dict[str, SizeStats], levels: Sequence[int]) -> dict[str, Any] | None:
    """What -OO saves over -O: docstrings, in pyc bytes of the sourceless variants."""
    if 2 not in levels:
        return None
    other = 1 if 1 in levels else 0 if 0 in levels else None
    if other is None:
        return None
    low, high = sizes[f"sourceless-O{other}"], sizes["sourceless-O2"]
    return {
        "compared": f"sourceless-O{other}",
        "bytes": low.pyc_bytes - high.pyc_bytes,
        "pct": _pct(high.pyc_bytes, low.pyc_bytes),
    }


def _version() -> str:
    from hatch_pyc import __version__

    return __version__


_MAX_BASELINE_BYTES = 64 * 1024 * 1024
_MAX_SIZE = 2**63  # bytes: no file system holds a larger tree (10**400 overflowed the gate's percentages)


def read_baseline(path: str | os.PathLike[str]) -> Report:
    """An earlier ``--json`` report to gate against, checked where the gate reads it: a regular file (a FIFO would
    block, ``/dev/zero`` never end) of JSON with this schema, whose variants' sizes are whole numbers of bytes. A
    crafted baseline (sizes ``Infinity``, ``true`` or negative) made every size check pass or be skipped."""
    data = read_regular_file(path, -1, max_size=_MAX_BASELINE_BYTES, follow_links=True)
    if data is None:
        raise InvalidInput(
            f"{path}: cannot read the baseline report (not a regular file of at most 64 MiB, or unreadable)"
        )
    try:
        baseline = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the reader follows
        raise InvalidInput(f"{path}: cannot read the baseline report ({exc})") from None
    if not isinstance(baseline, dict) or baseline.get("$schema") != SCHEMA_ID:
        raise InvalidInput(f"{path}: not a hatch-pyc report ($schema {SCHEMA_ID})")
    variants = baseline.get("variants")
    if not isinstance(variants, list):
        raise InvalidInput(f"{path}: not a hatch-pyc report (no list of variants)")
    names = set()
    for variant in variants:
        name = variant.get("name") if isinstance(variant, dict) else None
        size = variant.get("size") if isinstance(variant, dict) else None
        if not isinstance(name, str) or not isinstance(size, dict):
            raise InvalidInput(f"{path}: not a hatch-pyc report (a variant without a name or a size)")
        if name in names:  # the gate would compare with the last one only
            raise InvalidInput(f"{path}: not a hatch-pyc report (variant {name!r} twice)")
        names.add(name)
        for key in ("bytes", "wheel_bytes"):
            if type(size.get(key)) is not int or not 0 <= size[key] < _MAX_SIZE:
                raise InvalidInput(
                    f"{path}: not a hatch-pyc report (variant {name!r}: size {key} is {size.get(key)!r}, not a "
                    "whole number of bytes)"
                )
    return baseline


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def compare(
    report: Report,
    baseline: Report | None,
    *,
    max_size_increase: float | None,
    max_import_regression: float | None,
) -> GateResult:
    """Check thresholds against a baseline report, or (without one) each variant against the report's own
    sources-only variant. Import times are compared as ratios measured side by side in one run (see
    :mod:`hatch_pyc._gate`); a slow-down within the measured noise never fails."""
    checks: list[GateCheck] = []
    old_variants = {v["name"]: v for v in (baseline or report).get("variants", [])}
    limits = [x for x in (max_size_increase, max_import_regression) if x is not None]
    for variant in report["variants"]:
        name = variant["name"]
        if baseline is None and name == "source":
            continue  # it is what the others are compared with
        old = old_variants.get(name) if baseline is not None else old_variants.get("source")
        if old is None:
            checks.append(not_checked("size", name, min(limits, default=0.0), "not in the baseline, not compared"))
            continue
        if max_size_increase is not None:
            against = "baseline" if baseline is not None else "sources only"
            for key in ("bytes", "wheel_bytes"):
                checks.append(
                    size_check(f"{name} {key}", old["size"][key], variant["size"][key], max_size_increase, against)
                )
        if max_import_regression is not None:
            for module in variant["imports"]:
                checks.append(_import_check(report, baseline, name, module, max_import_regression))
    return GateResult(checks)


def _reference(report: Report, variant: str, module: str) -> tuple[str, list[float] | None]:
    """What ``variant``'s import of ``module`` is measured against in the same rounds, and its samples."""
    if variant == "source":
        startup = report.get("measurement", {}).get("startup_ms") or {}
        return "interpreter start-up", startup.get("samples_ms")
    source = next((v for v in report.get("variants", []) if v["name"] == "source"), None)
    timing = (source or {}).get("imports", {}).get(module) or {}
    return "source", timing.get("samples_ms")


def _ratio(report: Report, variant: str, module: str) -> tuple[str, Ratio | None]:
    reference, against = _reference(report, variant, module)
    entry = next((v for v in report.get("variants", []) if v["name"] == variant), None)
    timing = (entry or {}).get("imports", {}).get(module) or {}
    samples = timing.get("samples_ms")
    if not samples or not against or len(samples) != len(against):
        return reference, None
    return reference, Ratio.of(samples, against)


def _import_check(report: Report, baseline: Report | None, variant: str, module: str, limit: float) -> GateCheck:
    subject = f"{variant} `{module}`"
    timing = next(v for v in report["variants"] if v["name"] == variant)["imports"][module]
    if "error" in timing:
        return GateCheck("import", subject, limit, None, FAIL, f"the import failed: {timing['error']}")
    reference, new = _ratio(report, variant, module)
    if new is None:
        entry: dict[str, Any] = next((v for v in report["variants"] if v["name"] == "source"), {})
        source = entry.get("imports", {}).get(module)
        if variant != "source" and source and "error" in source:  # the package does not import from source
            return GateCheck("import", subject, limit, None, FAIL, f"the import failed in source: {source['error']}")
        return not_checked("import", subject, limit, f"{reference} was not measured in the same rounds")
    old = None
    if baseline is not None:
        _, old = _ratio(baseline, variant, module)
        if old is None:
            return not_checked("import", subject, limit, f"the baseline has no {variant} / {reference} samples")
    return slowdown_check("import", subject, limit, new=new, old=old, reference=reference)
