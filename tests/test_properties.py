"""Property tests: generated package trees behave the same compiled and stripped as from source."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from conftest import run_python, write_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatch_pyc import Interpreter, PycOptions, compile_tree

KEYWORDS = {
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "match",
    "case",
    "type",
    "_",
}
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in KEYWORDS)
scalars = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.booleans(),
    st.none(),
    st.just(...),
)
constants = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
    ),
    max_leaves=8,
)


@st.composite
def modules(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append(f'"""{draw(st.text(alphabet="abc xyz", max_size=30))}"""')
    for i, value in enumerate(draw(st.lists(constants, min_size=1, max_size=5))):
        lines.append(f"C{i} = {value!r}")
    for i in range(draw(st.integers(0, 3))):
        a, b = draw(st.integers(-50, 50)), draw(st.integers(1, 9))
        doc = '    """Doc."""\n' if draw(st.booleans()) else ""
        check = f"    assert x != {a * 1000}, 'asserted'\n" if draw(st.booleans()) else ""
        lines.append(f"def f{i}(x):\n{doc}{check}    return (x * {b} + {a}, x in {{{a}, {b}}}, str(x)[::-1])")
    if draw(st.booleans()):
        lines.append(
            "class K:\n    '''Class doc.'''\n    attr = C0\n    def m(self):\n        return type(self).__name__"
        )
    return "\n".join(lines) + "\n"


@st.composite
def trees(draw: st.DrawFn) -> dict[str, str]:
    files: dict[str, str] = {}
    packages = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    for package in packages:
        depth = draw(st.integers(0, 2))
        path = "/".join([f"p_{package}", *(f"s{d}" for d in range(depth))])
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            files.setdefault("/".join(parts[:i]) + "/__init__.py", "")
        for module in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
            files[f"{path}/m_{module}.py"] = draw(modules())
    return files


PROBE = r"""
import importlib, json, sys

def canon(value):
    # Equal sets may iterate in different orders (hash seed, insertion order): compare them sorted.
    if isinstance(value, (set, frozenset)):
        return type(value).__name__ + "{" + ", ".join(sorted(canon(v) for v in value)) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(canon(v) for v in value) + ",)"
    if isinstance(value, list):
        return "[" + ", ".join(canon(v) for v in value) + "]"
    return repr(value)

out = {}
for name in sys.argv[1:]:
    mod = importlib.import_module(name)
    values = {}
    for key, value in sorted(vars(mod).items()):
        if key.startswith("__") and key != "__doc__":
            continue
        if callable(value) and key.startswith("f"):
            results = []
            for x in (0, 3, -7):
                try:
                    results.append(value(x))
                except AssertionError as exc:
                    results.append(("AssertionError", str(exc)))
            values[key] = canon(results)
        elif isinstance(value, type):
            values[key] = canon((value.attr, value().m(), value.__doc__))
        else:
            values[key] = canon(value)
    out[name] = values
print(json.dumps(out, sort_keys=True))
"""


def _snapshot(target: Interpreter, root: Path, files: dict[str, str], flags: tuple[str, ...]) -> dict[str, object]:
    mods = sorted(p[:-3].replace("/", ".").removesuffix(".__init__") for p in files)
    code = f"import sys; sys.argv[1:] = {mods!r}\n" + PROBE
    proc = run_python(target, code, path=root, args=flags)
    return json.loads(proc.stdout)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(files=trees(), level=st.sampled_from([0, 1, 2]))
def test_compiled_and_stripped_trees_behave_like_their_sources(
    target: Interpreter, files: dict[str, str], level: int
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        source = write_tree(Path(scratch) / "source", files)
        stripped = Path(scratch) / "stripped"
        shutil.copytree(source, stripped)
        compile_tree([stripped], PycOptions(levels=(level,), strip=True), python=target.executable)
        assert not list(stripped.rglob("*.py"))
        flags = ("-" + "O" * level,) if level else ()
        # The sourceless modules run at the level they were compiled at; the source runs at -O/-OO to match.
        assert _snapshot(target, stripped, files, ()) == _snapshot(target, source, files, flags)
