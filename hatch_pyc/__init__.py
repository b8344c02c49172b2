"""hatch-pyc: precompile Python to bytecode for one CPython, reproducibly and without losing a source.

The library is the product; the ``hatch-pyc`` command and the hatchling build hook are thin
adapters over it.

Each public name is imported on first use (PEP 562): hatchling imports this package for every
build through the hook's entry point, and ``hatch-pyc --version`` should not pay for the compiler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives.
_MODULES = {
    "_cache": ("CacheInfo", "cache_info", "clear_cache", "default_cache_dir", "prune_cache"),
    "_compile": ("CompileResult", "compile_plan", "compile_tree"),
    "_errors": (
        "CommitFailed",
        "CompileFailed",
        "HatchPycError",
        "ImageCommandFailed",
        "Interrupted",
        "InvalidInput",
        "InvalidOptions",
        "InvalidPyc",
        "InvalidTarget",
        "OutputFailed",
        "SourceError",
    ),
    "_images": ("compare_images", "gate_images"),
    "_layout": ("cache_path", "sourceless_path"),
    "_options": ("PycOptions",),
    "_plan": ("CompilePlan", "PlannedSource", "plan_compile"),
    "_pycinfo": ("CodeInfo", "PycHeader", "parse_header", "read_code_info", "read_header"),
    "_targets": (
        "Interpreter",
        "describe_interpreter",
        "discover_interpreters",
        "find_interpreter",
        "find_interpreters",
    ),
    "_wheel": ("InvalidWheel", "WheelConversion", "convert_wheel", "convert_wheels"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "CacheInfo",
    "CodeInfo",
    "CommitFailed",
    "CompileFailed",
    "CompilePlan",
    "CompileResult",
    "HatchPycError",
    "ImageCommandFailed",
    "InvalidInput",
    "InvalidOptions",
    "InvalidPyc",
    "InvalidTarget",
    "InvalidWheel",
    "Interpreter",
    "Interrupted",
    "OutputFailed",
    "PlannedSource",
    "PycHeader",
    "PycOptions",
    "SourceError",
    "WheelConversion",
    "__version__",
    "cache_info",
    "cache_path",
    "clear_cache",
    "compare_images",
    "compile_plan",
    "compile_tree",
    "convert_wheel",
    "convert_wheels",
    "default_cache_dir",
    "describe_interpreter",
    "discover_interpreters",
    "find_interpreter",
    "find_interpreters",
    "gate_images",
    "parse_header",
    "plan_compile",
    "prune_cache",
    "read_code_info",
    "read_header",
    "sourceless_path",
]

if TYPE_CHECKING:
    # Type checkers and IDEs see plain imports (tests/test_api.py keeps them equal to _MODULES),
    # and no module __getattr__ that would make every misspelt name pass as Any.
    from hatch_pyc._cache import CacheInfo, cache_info, clear_cache, default_cache_dir, prune_cache
    from hatch_pyc._compile import CompileResult, compile_plan, compile_tree
    from hatch_pyc._errors import (
        CommitFailed,
        CompileFailed,
        HatchPycError,
        ImageCommandFailed,
        Interrupted,
        InvalidInput,
        InvalidOptions,
        InvalidPyc,
        InvalidTarget,
        OutputFailed,
        SourceError,
    )
    from hatch_pyc._images import compare_images, gate_images
    from hatch_pyc._layout import cache_path, sourceless_path
    from hatch_pyc._options import PycOptions
    from hatch_pyc._plan import CompilePlan, PlannedSource, plan_compile
    from hatch_pyc._pycinfo import CodeInfo, PycHeader, parse_header, read_code_info, read_header
    from hatch_pyc._targets import (
        Interpreter,
        describe_interpreter,
        discover_interpreters,
        find_interpreter,
        find_interpreters,
    )
    from hatch_pyc._wheel import InvalidWheel, WheelConversion, convert_wheel, convert_wheels
else:

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later look-ups find it without coming here
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
