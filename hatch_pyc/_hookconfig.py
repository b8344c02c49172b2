"""Validate the build hook's TOML table into options, reporting every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hatch_pyc._errors import InvalidOptions
from hatch_pyc._options import ON_ERROR, OUTSIDE_PACKAGES, STUBS, PycOptions

PLUGIN_NAME = "pyc"
# Read by hatchling itself, not by the hook.
_HATCHLING_KEYS = frozenset(
    {"dependencies", "require-runtime-dependencies", "require-runtime-features", "enable-by-default"}
)
_KEYS = (
    "optimize",
    "exclude",
    "python",
    "on-error",
    "outside-packages",
    "report",
    "verify",
    "cache",
    "cache-dir",
    "compact",
    "stubs",
    "stub-docstrings",
)


@dataclass(frozen=True)
class HookConfig:
    """The hook's options, validated."""

    options: PycOptions
    python: str | None
    report: bool = False
    verify: bool = False


def _option(key: str, table: str) -> str:
    return f"Option `{key}` for build hook `{PLUGIN_NAME}` ({table}.{key})"


def load_hook_config(config: Mapping[str, Any], table: str = "tool.hatch.build.targets.wheel.hooks.pyc") -> HookConfig:
    """Turn the raw table into a :class:`HookConfig`; raise :class:`InvalidOptions` listing every problem."""
    problems: list[str] = []
    for key in sorted(config):
        if key not in _KEYS and key not in _HATCHLING_KEYS:
            problems.append(
                f"Unknown option `{key}` for build hook `{PLUGIN_NAME}` ({table}.{key}); "
                f"known options: {', '.join(_KEYS)}"
            )

    optimize = config.get("optimize", 0)
    if isinstance(optimize, bool) or not isinstance(optimize, int) or optimize not in (0, 1, 2):
        problems.append(f"{_option('optimize', table)} must be an integer from 0 to 2")
        optimize = 0

    exclude = config.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(p, str) and p for p in exclude):
        problems.append(f"{_option('exclude', table)} must be an array of non-empty strings (gitignore patterns)")
        exclude = []

    python = config.get("python")
    if python is not None and (not isinstance(python, str) or not python.strip()):
        problems.append(f"{_option('python', table)} must be a non-empty string (a version, command or path)")
        python = None

    on_error = config.get("on-error", "fail")
    if on_error not in ON_ERROR:
        problems.append(f"{_option('on-error', table)} must be one of: {', '.join(ON_ERROR)}")
        on_error = "fail"

    outside = config.get("outside-packages", "keep-source")
    if outside not in OUTSIDE_PACKAGES:
        problems.append(f"{_option('outside-packages', table)} must be one of: {', '.join(OUTSIDE_PACKAGES)}")
        outside = "keep-source"

    def flag(key: str, default: bool) -> bool:
        value = config.get(key, default)
        if isinstance(value, bool):
            return value
        problems.append(f"{_option(key, table)} must be a boolean")
        return default

    report, verify, cache, compact, stub_docstrings = (
        flag("report", False),
        flag("verify", False),
        flag("cache", True),
        flag("compact", False),
        flag("stub-docstrings", False),
    )
    stubs = config.get("stubs", "typed")
    if stubs not in STUBS:
        problems.append(f"{_option('stubs', table)} must be one of: {', '.join(STUBS)}")
        stubs = "typed"
    cache_dir = config.get("cache-dir")
    if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir.strip()):
        problems.append(f"{_option('cache-dir', table)} must be a non-empty string (a directory)")
        cache_dir = None

    if problems:
        raise InvalidOptions("\n".join(problems))
    return HookConfig(
        options=PycOptions(
            levels=(optimize,),
            strip=True,
            exclude=tuple(exclude),
            on_error=on_error,
            outside_packages=outside,
            cache=cache,
            cache_dir=cache_dir,
            compact=compact,
            stubs=stubs,
            stub_docstrings=stub_docstrings,
        ),
        python=python,
        report=report,
        verify=verify,
    )
