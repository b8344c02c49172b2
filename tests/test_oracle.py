"""The differential oracle: every pyc hatch-pyc writes is, type-strictly, what the target's compile() returns.

The full run (every module of each CPython's standard library with its test suite, plus the
benchmarks' site-packages corpus) is ``nox -s oracle``; here a bounded sample runs on every
target, and mutated workers prove that the oracle and the worker's own check fail when they must.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import run_cli, run_python, write_tree

import hatch_pyc._pool
from hatch_pyc import CompileFailed, Interpreter, PycOptions, compile_tree
from hatch_pyc._oracle import check_against_cpython

# Constants equal under == that are different programs; slices are constants since 3.14.
ADVERSARIAL = {
    "adv/__init__.py": '''
        """Module docstring."""
        def a(x): return x[0:]
        def b(x): return x[0.0:]
        def c(x): return x[:1]
        def d(x): return x[:True]
        def e(x): return x[::-1], x[::-1.0]
        def f(x): return x[0:, 1:], x[0.0:, 1:]
        def g(): return (0, 0.0, False, -0.0), (1, 1.0, True), (b"", ""), (0j, -0j, 0.0j)
        def h(): return frozenset({1}), frozenset({1.0}), frozenset({True})
        def i(x): return x in {0, 1}, x in {0.0, 1.0}, x in {False, True}
        def j(): return ((0,), (0.0,)), ((False,), (-0.0,))
        def k(): return 1e400 - 1e400, -(1e400 - 1e400)
        def m(): return [x for x in (0.0, -0.0)]
        def n(x):
            """A docstring."""
            assert x, "no"
            return x
        class C:
            """Class doc."""
            s = slice(0, None)
            def meth(self):
                return "not a docstring"
    ''',
    "adv/lazy.py": "def f():\n    return 'first constant, no docstring'\n",
}
CHECK_BEHAVIOUR = """
import adv
[1, 2, 3][0:]
for f, args in ((adv.a, [1, 2]), (adv.c, [1, 2]), (adv.d, [1, 2])):
    f(args)
try:
    adv.b([1, 2])
except TypeError:
    pass
else:
    raise SystemExit("x[0.0:] did not raise")
assert [type(v) for v in adv.g()[0]] == [int, float, bool, float], adv.g()
assert str(adv.g()[0][3]) == "-0.0"
print("ok")
"""


def _mutant_worker(tmp_path: Path, replacements: dict[str, str]) -> Path:
    """A copy of the worker (with its _codecheck beside it) with source text replaced."""
    folder = tmp_path / "mutant"
    folder.mkdir(parents=True)
    text = hatch_pyc._pool.WORKER_SCRIPT.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / "_worker.py").write_text(text, encoding="utf-8")
    shutil.copy(hatch_pyc._pool.WORKER_SCRIPT.with_name("_codecheck.py"), folder)
    return folder / "_worker.py"


# The worker as it was before 3.14 support: a constant's key was its type and ==, so
# slice(0, None) and slice(0.0, None) were one constant.
KEY_BY_EQUALITY = {
    "    if kind is slice:  # a constant since 3.14 (x[0:], x[:1])\n": "    if False:\n",
    '    raise TypeError("no type-strict key for %s" % kind.__name__)': "    return (kind, value)",
}
KEY_IGNORING_TYPE = {"def _const_key(value):\n": "def _const_key(value):\n    return value\n"}
UNVERIFIED = {"_VERIFIED = (3, 10) <= sys.version_info[:2] <= (3, 15)": "_VERIFIED = False"}


def _only_slices(source: Path) -> None:
    """Keep only the slice constants' pair in the adversarial module (what the old worker got wrong)."""
    source.write_text("def a(x): return x[0:]\ndef b(x): return x[0.0:]\n", encoding="utf-8")


def test_adversarial_constants_match_compile_on_every_target(target: Interpreter, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", ADVERSARIAL)
    report = check_against_cpython([tree], target, tmp_path / "scratch")
    assert report.modules == 2 and report.pycs == 6
    assert report.differences == []
    # and the sourceless build behaves as the source does
    run_cli("compile", "--python", target.executable, "--strip", str(tree), check=True)
    assert not (tree / "adv/__init__.py").exists()
    assert run_python(target, CHECK_BEHAVIOUR, path=tree).stdout.strip() == "ok"


def test_a_bounded_sample_of_the_stdlib_and_its_tests_matches_compile(target: Interpreter, tmp_path: Path) -> None:
    """The test suite's most adversarial modules, and every 25th module of the standard library."""
    stdlib = Path(target.stdlib)
    chosen = sorted(
        p
        for p in stdlib.glob("test/**/*.py")
        if p.name in {"test_compile.py", "test_grammar.py", "test_peepholer.py", "test_float.py", "test_slice.py"}
    )
    assert any(p.name == "test_compile.py" for p in chosen), f"{target}: no test suite in {stdlib}"
    modules = sorted(p for p in stdlib.glob("*.py"))[::25]
    sample = tmp_path / "sample"
    for path in [*chosen, *modules]:
        dest = sample / path.relative_to(stdlib)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    report = check_against_cpython([sample], target, tmp_path / "scratch")
    assert report.modules == len(chosen) + len(modules)
    assert report.pycs >= 3 * report.modules - 3  # every level of (nearly) every module was compared
    assert report.differences == []


def test_the_oracle_fails_the_worker_that_keyed_constants_by_equality(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slice bug of hatch-pyc <= 0.1.0 on 3.14+: the oracle names it."""
    tree = write_tree(tmp_path / "src", {"adv/__init__.py": ""})
    _only_slices(tree / "adv/__init__.py")
    monkeypatch.setattr(hatch_pyc._pool, "WORKER_SCRIPT", _mutant_worker(tmp_path, KEY_BY_EQUALITY))
    report = check_against_cpython([tree], target, tmp_path / "scratch")
    if target.version[:2] >= (3, 14):
        assert len(report.differences) == 3  # one per level
        assert all("slice(0.0, None, None) != slice(0, None, None)" in str(d) for d in report.differences)
    else:  # no slice constants before 3.14: the same worker was right there
        assert report.differences == []


def test_the_oracle_fails_a_worker_that_merges_equal_constants_of_other_types(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = write_tree(tmp_path / "src", ADVERSARIAL)
    monkeypatch.setattr(hatch_pyc._pool, "WORKER_SCRIPT", _mutant_worker(tmp_path, KEY_IGNORING_TYPE))
    report = check_against_cpython([tree], target, tmp_path / "scratch")
    assert report.differences, "merging 0 / 0.0 / False went unnoticed"
    assert any("co_consts" in d.detail for d in report.differences)


def test_on_an_unverified_cpython_the_worker_proves_each_pyc_before_writing_it(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPython newer than the oracle has covered: a correct worker still writes, unchanged output..."""
    tree = write_tree(tmp_path / "src", ADVERSARIAL)
    verified = compile_tree([tree], PycOptions(levels=(0, 1, 2)), python=target.executable)
    expected = {p: p.read_bytes() for _, p in (o for s in verified.plan.sources for o in s.outputs)}
    for path in expected:
        path.unlink()
    monkeypatch.setattr(hatch_pyc._pool, "WORKER_SCRIPT", _mutant_worker(tmp_path / "ok", UNVERIFIED))
    compile_tree([tree], PycOptions(levels=(0, 1, 2)), python=target.executable)
    # (the skip rules are off there, so the same bytes come from three compiles)
    assert {p: p.read_bytes() for p in expected} == expected


def test_on_an_unverified_cpython_a_wrong_pyc_is_refused_not_written(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """...and a worker that would change a constant fails the run naming the module."""
    tree = write_tree(tmp_path / "src", ADVERSARIAL)
    mutant = _mutant_worker(tmp_path, {**UNVERIFIED, **KEY_IGNORING_TYPE})
    monkeypatch.setattr(hatch_pyc._pool, "WORKER_SCRIPT", mutant)
    with pytest.raises(CompileFailed) as failure:
        compile_tree([tree], PycOptions(levels=(0,), strip=True), python=target.executable)
    message = str(failure.value)
    assert "adv/__init__.py" in message and "would not write what CPython" in message
    assert (tree / "adv/__init__.py").exists() and not list(tree.rglob("*.pyc"))


def test_skip_rules_and_docstring_flag_on_targets_that_have_it(target: Interpreter, tmp_path: Path) -> None:
    """3.14+ marks functions with a docstring (CO_HAS_DOCSTRING); the worker's value is the interpreter's."""
    probe = "import inspect, sys; print(getattr(inspect, 'CO_HAS_DOCSTRING', 0))"
    flag = int(run_python(target, probe).stdout)
    text = hatch_pyc._pool.WORKER_SCRIPT.read_text(encoding="utf-8")
    if target.version[:2] >= (3, 14):
        assert f"_CO_HAS_DOCSTRING = {flag:#x}" in text
    else:
        assert flag == 0
    # A function whose first constant is a str but has no docstring: on 3.14+ the flag lets the
    # worker skip compiling level 2; on any version the three levels are the same bytes (hard
    # links), and the oracle confirms each is what compile() gives at that level.
    tree = write_tree(tmp_path / "src", {"lazy.py": ADVERSARIAL["adv/lazy.py"]})
    report = check_against_cpython([tree], target, tmp_path / "scratch")
    assert report.differences == [] and report.pycs == 3
    assert report.linked == 2  # no asserts, no docstring: levels 1 and 2 are links to level 0


def test_oracle_probe_runs_isolated_from_the_callers_environment(
    target: Interpreter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTHON* variables of the caller (a hostile PYTHONPATH) do not reach the probe."""
    evil = write_tree(tmp_path / "evil", {"marshal.py": "raise SystemExit('shadowed')\n"})
    monkeypatch.setenv("PYTHONPATH", str(evil))
    tree = write_tree(tmp_path / "src", {"m.py": "x = 1\n"})
    report = check_against_cpython([tree], target, tmp_path / "scratch", levels=(0,))
    assert report.pycs == 1 and report.differences == []
