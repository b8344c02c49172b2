"""hatch-pyc: precompile Python to bytecode for one CPython, reproducibly and without losing a source.

The library is the product; the ``hatch-pyc`` command and the hatchling build hook are thin
adapters over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from hatch_pyc._compile import CompileResult, compile_plan, compile_tree
from hatch_pyc._errors import (
    CompileFailed,
    HatchPycError,
    InvalidInput,
    InvalidOptions,
    InvalidPyc,
    InvalidTarget,
    OutputFailed,
    SourceError,
)
from hatch_pyc._layout import cache_path, sourceless_path
from hatch_pyc._options import PycOptions
from hatch_pyc._plan import CompilePlan, PlannedSource, plan_compile
from hatch_pyc._pycinfo import CodeInfo, PycHeader, parse_header, read_code_info, read_header
from hatch_pyc._targets import Interpreter, describe_interpreter, find_interpreter, find_interpreters

__all__ = [
    "CodeInfo",
    "CompileFailed",
    "CompilePlan",
    "CompileResult",
    "HatchPycError",
    "InvalidInput",
    "InvalidOptions",
    "InvalidPyc",
    "InvalidTarget",
    "Interpreter",
    "OutputFailed",
    "PlannedSource",
    "PycHeader",
    "PycOptions",
    "SourceError",
    "__version__",
    "cache_path",
    "compile_plan",
    "compile_tree",
    "describe_interpreter",
    "find_interpreter",
    "find_interpreters",
    "parse_header",
    "plan_compile",
    "read_code_info",
    "read_header",
    "sourceless_path",
]
