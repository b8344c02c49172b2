"""The compile engine on real trees, for every CPython 3.10-3.13, imported by that CPython."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from conftest import pip_for, run_python, snapshot, write_tree

import hatch_pyc
from hatch_pyc import CompileFailed, Interpreter, PycOptions, compile_tree, read_header
from hatch_pyc._layout import cache_path
from hatch_pyc._pool import WORKER_SCRIPT

APP = {
    "app/__init__.py": '''
        """The app's docstring."""
        VALUE = 1

        def checked():
            assert False, "asserts are on"
            return "asserts are off"

        def documented():
            """A docstring."""
            return documented.__doc__
    ''',
    "app/sub/__init__.py": "",
    "app/sub/deep/__init__.py": "",
    "app/sub/deep/leaf.py": "WHERE = __name__\nKINDS = {1, 2.5, -0.0, 'x', b'y', (1, 2), frozenset({3})}\n",
    "app/__main__.py": "print('main ran from', __spec__.origin.rsplit('/', 1)[-1])\n",
    "app/data.json": '{"a": 1}\n',
    "app/py.typed": "",
    "app/stub.pyi": "VALUE: int\n",
    "nsp/part/mod.py": "NAME = 'namespace package'\n",
}


def test_levels_in_pycache_are_loaded_by_the_target(make_tree, target: Interpreter) -> None:
    tree = make_tree(APP)
    result = compile_tree([tree], PycOptions(levels=(0, 1, 2)), python=target.executable)

    assert result.plan.interpreter.version[:2] == target.version[:2]
    assert len(result.compiled) == 6
    for level in (0, 1, 2):
        pyc = cache_path(tree / "app/__init__.py", target.cache_tag, level)
        assert read_header(pyc).magic == target.magic
    # Prove the pycs are what gets imported: change the source without changing its size or
    # mtime, so the timestamp pyc still matches and must be used instead of the source.
    init = tree / "app/__init__.py"
    st = init.stat()
    init.write_text(init.read_text().replace("VALUE = 1", "VALUE = 2"))
    os.utime(init, ns=(st.st_atime_ns, st.st_mtime_ns))

    code = "import app; print(app.VALUE, app.checked(), app.documented(), app.__doc__ is None)"
    for flags, expected in (
        ((), None),
        (("-O",), "1 asserts are off A docstring. False"),
        (("-OO",), "1 asserts are off None True"),
    ):
        proc = run_python(target, code, path=tree, args=flags, check=False)
        if expected is None:
            assert "AssertionError: asserts are on" in proc.stderr
        else:
            assert proc.stdout.strip() == expected
    proc = run_python(target, "import app.sub.deep.leaf as m, nsp.part.mod as n; print(m.WHERE, n.NAME)", path=tree)
    assert proc.stdout.strip() == "app.sub.deep.leaf namespace package"


def test_strip_makes_a_sourceless_tree_that_imports(make_tree, target: Interpreter) -> None:
    tree = make_tree(APP)
    data_before = {p: (tree / p).read_bytes() for p in ("app/data.json", "app/py.typed", "app/stub.pyi")}
    result = compile_tree([tree], PycOptions(levels=(2,), strip=True), python=target.executable)

    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.py")) == []
    assert len(result.stripped) == 6
    assert {p: (tree / p).read_bytes() for p in data_before} == data_before
    assert not list(tree.rglob("__pycache__"))
    header = read_header(tree / "app/__init__.pyc")
    assert header.magic == target.magic
    assert header.invalidation_mode == "unchecked-hash"

    code = """
        import app, app.sub.deep.leaf as leaf, nsp.part.mod as ns
        print(app.__file__.endswith('app/__init__.pyc'), type(app.__loader__).__name__)
        print(app.checked(), app.documented(), leaf.KINDS == {1, 2.5, -0.0, 'x', b'y', (1, 2), frozenset({3})})
        print(ns.NAME, app.checked.__code__.co_filename)
    """
    out = run_python(target, code, path=tree).stdout.split("\n")
    assert out[0] == "True SourcelessFileLoader"
    assert out[1] == "asserts are off None True"  # compiled at -OO: whatever -O the process runs with
    assert out[2] == "namespace package app/__init__.py"
    main = run_python(target, "import runpy; runpy.run_module('app', run_name='__main__')", path=tree)
    assert main.stdout.strip() == "main ran from __main__.pyc"


def test_python_dash_m_runs_a_sourceless_main(make_tree, target: Interpreter) -> None:
    tree = make_tree(APP)
    compile_tree([tree], PycOptions(strip=True), python=target.executable)
    proc = run_python(target, "", path=None, args=("-m", "app"), cwd=tree, check=False)
    # ``-c ''`` after ``-m app`` is passed to the module as argv; the module ran:
    assert "main ran from __main__.pyc" in proc.stdout


@pytest.mark.parametrize(
    "options", [PycOptions(levels=(0, 1)), PycOptions(levels=(1,), strip=True)], ids=["cache", "strip"]
)
def test_syntax_error_fails_the_run_and_changes_nothing(make_tree, target: Interpreter, options: PycOptions) -> None:
    tree = make_tree({**APP, "app/broken.py": "x = 1\ndef f(:\n    pass\n", "app/zz_ok.py": "Y = 2\n"})
    before = snapshot(tree)
    with pytest.raises(CompileFailed) as info:
        compile_tree([tree], options, python=target.executable)
    assert snapshot(tree) == before
    (error,) = info.value.errors
    assert error.path.endswith("app/broken.py")
    assert error.lineno == 2
    assert error.kind == "SyntaxError"
    assert str(error).startswith(f"{tree / 'app/broken.py'}:2: SyntaxError:")


def test_undecodable_source_is_an_error_naming_the_file(make_tree, target: Interpreter) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/latin.py": b"NAME = '\xe9t\xe9'\n"})
    before = snapshot(tree)
    with pytest.raises(CompileFailed) as info:
        compile_tree([tree], python=target.executable)
    assert snapshot(tree) == before
    assert info.value.errors[0].path.endswith("pkg/latin.py")
    assert "utf-8" in info.value.errors[0].message.lower() or "decode" in info.value.errors[0].message.lower()


def test_keep_source_compiles_the_rest(make_tree, target: Interpreter) -> None:
    tree = make_tree({"pkg/__init__.py": "from . import good\n", "pkg/good.py": "OK = True\n", "pkg/bad.py": "def(\n"})
    result = compile_tree([tree], PycOptions(strip=True, on_error="keep-source"), python=target.executable)
    assert [e.path for e in result.kept_source] == [str(tree / "pkg/bad.py")]
    assert (tree / "pkg/bad.py").exists()
    assert not (tree / "pkg/good.py").exists()
    assert (tree / "pkg/good.pyc").exists()
    assert run_python(target, "import pkg; print(pkg.good.OK)", path=tree).stdout.strip() == "True"


def test_exclude_keeps_sources(make_tree) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/keep/a.py": "A = 1\n", "pkg/gone.py": "B = 2\n", "pkg/t_x.py": ""})
    result = compile_tree([tree], PycOptions(strip=True, exclude=("pkg/keep/", "t_*.py")))
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.py")) == ["pkg/keep/a.py", "pkg/t_x.py"]
    assert sorted(p.relative_to(tree).as_posix() for p in result.excluded) == ["pkg/keep/a.py", "pkg/t_x.py"]
    assert not (tree / "pkg/keep/a.pyc").exists()


def test_read_only_sources_are_compiled_and_stripped(make_tree, target: Interpreter) -> None:
    tree = make_tree({"pkg/__init__.py": "X = 1\n"})
    (tree / "pkg/__init__.py").chmod(0o444)
    compile_tree([tree], PycOptions(levels=(0,)), python=target.executable)
    pyc = cache_path(tree / "pkg/__init__.py", target.cache_tag, 0)
    assert stat.S_IMODE(pyc.stat().st_mode) & 0o600 == 0o600
    compile_tree([tree], PycOptions(strip=True), python=target.executable)
    assert not (tree / "pkg/__init__.py").exists()
    assert run_python(target, "import pkg; print(pkg.X)", path=tree).stdout.strip() == "1"


def test_identical_levels_are_hard_links(make_tree) -> None:
    tree = make_tree({"plain.py": "X = 1\n", "asserts.py": "assert True\n", "doc.py": '"""doc"""\n'})
    result = compile_tree([tree], PycOptions(levels=(0, 1, 2)))
    tag = result.plan.interpreter.cache_tag

    def inode(name: str, level: int) -> int:
        return cache_path(tree / name, tag, level).stat().st_ino

    assert inode("plain.py", 0) == inode("plain.py", 1) == inode("plain.py", 2)
    assert inode("asserts.py", 0) != inode("asserts.py", 1) == inode("asserts.py", 2)
    assert inode("doc.py", 0) == inode("doc.py", 1) != inode("doc.py", 2)
    assert result.pyc_linked == 4
    assert result.pyc_written == 5


def test_second_run_skips_current_pycs_and_recompiles_changed_ones(make_tree) -> None:
    tree = make_tree({"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/b.py": "B = 1\n"})
    first = compile_tree([tree], PycOptions(levels=(0, 1)))
    assert len(first.compiled) == 3
    second = compile_tree([tree], PycOptions(levels=(0, 1)))
    assert (len(second.compiled), len(second.up_to_date)) == (0, 3)
    (tree / "pkg/a.py").write_text("A = 22\n")
    third = compile_tree([tree], PycOptions(levels=(0, 1)))
    assert [i.source.name for i in third.compiled] == ["a.py"]
    # A level that was never written is not current.
    fourth = compile_tree([tree], PycOptions(levels=(0, 1, 2)))
    assert len(fourth.compiled) == 3
    assert len(compile_tree([tree], PycOptions(levels=(0,), force=True)).compiled) == 3


def test_hash_modes_are_checked_in_the_target(make_tree, target: Interpreter) -> None:
    tree = make_tree({"m.py": "M = 1\n"})
    options = PycOptions(invalidation="checked-hash")
    assert len(compile_tree([tree], options, python=target.executable).compiled) == 1
    assert len(compile_tree([tree], options, python=target.executable).up_to_date) == 1
    # The timestamp pyc a plain run wants is not the hash pyc on disk: recompiled.
    assert len(compile_tree([tree], PycOptions(), python=target.executable).compiled) == 1
    (tree / "m.py").write_text("M = 2\n")
    assert len(compile_tree([tree], options, python=target.executable).compiled) == 1


def test_reproducible_whatever_the_seed_and_worker_count(make_tree, target: Interpreter) -> None:
    files = {
        f"pkg/m{i}.py": f"""
            S{i} = {{'a', 'b', 'c{i}', ('t', {i})}}
            F = frozenset({{'x', 'y', 'z'}})
            def f(x):
                return x in {{'426', '225', '226'}} or x in {{'426', '225', '226'}}
            class C{i}:
                '''doc'''
                def g(self):
                    return [q for q in ']' if q not in '<>']
        """
        for i in range(30)
    }
    a = make_tree(files)
    b = make_tree(files)
    options = {"levels": (0, 1, 2), "invalidation": "unchecked-hash"}
    os.environ["PYTHONHASHSEED"] = "1"
    try:
        compile_tree([a], PycOptions(workers=2, **options), python=target.executable)  # type: ignore[arg-type]
        os.environ["PYTHONHASHSEED"] = "2"
        compile_tree([b], PycOptions(workers=1, **options), python=target.executable)  # type: ignore[arg-type]
    finally:
        del os.environ["PYTHONHASHSEED"]
    pycs_a = {p.relative_to(a): p.read_bytes() for p in sorted(a.rglob("*.pyc"))}
    pycs_b = {p.relative_to(b): p.read_bytes() for p in sorted(b.rglob("*.pyc"))}
    assert len(pycs_a) == 90
    assert pycs_a == pycs_b


def test_code_objects_record_the_import_relative_path(make_tree) -> None:
    tree = make_tree({"site/pkg/__init__.py": "import sys\nFILE = sys._getframe().f_code.co_filename\n"})
    compile_tree([tree / "site/pkg"], PycOptions(strip=True))
    assert (
        run_python(sys.executable, "import pkg; print(pkg.FILE)", path=tree / "site").stdout.strip()
        == "pkg/__init__.py"
    )
    other = make_tree({"pkg/__init__.py": "import sys\nFILE = sys._getframe().f_code.co_filename\n"})
    compile_tree([other], PycOptions(strip=True, ddir="/srv/app"))
    assert (
        run_python(sys.executable, "import pkg; print(pkg.FILE)", path=other).stdout.strip()
        == "/srv/app/pkg/__init__.py"
    )


def test_a_real_installed_package_in_a_venv(tmp_path: Path, target: Interpreter) -> None:
    import subprocess

    venv = tmp_path / "venv"
    subprocess.run([target.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    subprocess.run(
        [
            *pip_for(target),
            "install",
            "-q",
            "--no-compile",
            "--no-deps",
            "--target",
            str(site),
            "packaging==25.0",
            "six==1.17.0",
        ],
        check=True,
    )
    # The venv's own interpreter is the default target for a venv root.
    result = compile_tree([venv], PycOptions(strip=True))
    assert result.plan.interpreter.version[:2] == target.version[:2]
    assert not list(site.glob("packaging/*.py"))
    assert not (site / "six.py").exists()
    code = """
        import packaging.version, packaging.specifiers, six
        print(packaging.version.Version('1.0.post1') in packaging.specifiers.SpecifierSet('>=1'), six.PY3)
        print(packaging.version.__file__.endswith('.pyc'))
    """
    assert run_python(str(venv / "bin/python"), code).stdout.split() == ["True", "True", "True"]


def test_dry_run_plans_without_writing(make_tree) -> None:
    from hatch_pyc import plan_compile

    tree = make_tree(APP)
    before = snapshot(tree)
    plan = plan_compile([tree], PycOptions(levels=(0, 2)))
    assert len(plan.sources) == 6
    assert all(len(item.outputs) == 2 for item in plan.sources)
    assert snapshot(tree) == before


def test_site_packages_path_implies_its_interpreter(tmp_path: Path, other_target: Interpreter) -> None:
    site = write_tree(tmp_path / f"lib/python{other_target.minor}/site-packages", {"mod.py": "X = 1\n"})
    result = compile_tree([site])
    assert result.plan.interpreter.version[:2] == other_target.version[:2]
    assert cache_path(site / "mod.py", other_target.cache_tag, 0).exists()


def test_canonical_code_equals_what_compile_returns(make_tree, target: Interpreter) -> None:
    source = APP["app/sub/deep/leaf.py"] + textwrap.dedent(APP["app/__init__.py"])
    tree = make_tree({"pkg/__init__.py": "", "pkg/m.py": source})
    compile_tree([tree], PycOptions(levels=(0, 2), strip=False), python=target.executable)
    code = f"""
        import marshal
        src = open({str(tree / "pkg/m.py")!r}, 'rb').read()
        for level, name in ((0, 'm.{target.cache_tag}.pyc'), (2, 'm.{target.cache_tag}.opt-2.pyc')):
            ours = marshal.loads(open({str(tree / "pkg/__pycache__")!r} + '/' + name, 'rb').read()[16:])
            print(ours == compile(src, 'pkg/m.py', 'exec', dont_inherit=True, optimize=level))
    """
    assert run_python(target, code).stdout.split() == ["True", "True"]


SKIP_RULE_CASES = {
    # name: (source, opt-1 is a link to opt-0, opt-2 is a link to opt-1)
    "assert_like_names.py": ("def t(self):\n    self.assertEqual(1, 1)\n    _assert = 2\n", True, True),
    "assert_after_colon.py": ("def f(x):\n    if x: assert x\n", False, True),
    "debug.py": ("FLAG = __debug__\n", False, True),
    "debug_nfkc.py": ("FLAG = __\uff44\uff45\uff42\uff55\uff47__\n", False, True),
    "method_doc.py": ("class C:\n    X = 'not a doc'\n    def m(self):\n        'doc'\n", True, False),
    "class_doc.py": ("class C:\n    'doc'\n", True, False),
    "genexpr_str.py": ("G = (s for s in 'ab' if s != 'x')\nL = lambda: 'x'\n", True, True),
    "nested_async_doc.py": ("def outer():\n    async def inner():\n        '''doc'''\n    return inner\n", True, False),
    "no_doc_class.py": ("class C:\n    def m(self):\n        return 'first const'\n", True, True),
}


def test_level_skip_rules_never_change_the_bytecode(make_tree, target: Interpreter) -> None:
    tree = make_tree({f"pkg/{name}": source for name, (source, _, _) in SKIP_RULE_CASES.items()})
    compile_tree([tree], PycOptions(levels=(0, 1, 2)), python=target.executable)
    tag = target.cache_tag
    for name, (_, same1, same2) in SKIP_RULE_CASES.items():
        inodes = [cache_path(tree / "pkg" / name, tag, level).stat().st_ino for level in (0, 1, 2)]
        assert (inodes[0] == inodes[1], inodes[1] == inodes[2]) == (same1, same2), name
    code = f"""
        import marshal, os
        root = {str(tree / "pkg")!r}
        for name in sorted(os.listdir(root)):
            if not name.endswith('.py'):
                continue
            src = open(os.path.join(root, name), 'rb').read()
            for level, suffix in ((0, ''), (1, '.opt-1'), (2, '.opt-2')):
                pyc = os.path.join(root, '__pycache__', name[:-3] + '.{tag}' + suffix + '.pyc')
                ours = marshal.loads(open(pyc, 'rb').read()[16:])
                theirs = compile(src, 'pkg/' + name, 'exec', dont_inherit=True, optimize=level)
                print(name, level, ours == theirs)
    """
    lines = run_python(target, code).stdout.splitlines()
    assert len(lines) == 3 * len(SKIP_RULE_CASES)
    assert all(line.endswith("True") for line in lines), [line for line in lines if not line.endswith("True")]


_HISTORY_SCRIPT = """
import hashlib, os, sys, sysconfig, warnings
warnings.simplefilter("ignore")
worker, variant = sys.argv[1], sys.argv[2]
ns = {"__name__": "hatch_pyc_worker"}
exec(compile(open(worker, "rb").read(), worker, "exec"), ns)
for i in range(256):
    sys.intern(chr(i))
sys.intern("")
lib = sysconfig.get_paths()["stdlib"]
files = sorted(os.path.join(lib, n) for n in os.listdir(lib) if n.endswith(".py"))[:160]
keep = []
if variant == "busy":
    # Another history: more modules alive, other code objects kept, the reverse order.
    import argparse, asyncio, decimal, email.message, json, logging, typing, unittest  # noqa
    files.reverse()
for path in files:
    try:
        code = compile(open(path, "rb").read(), os.path.basename(path), "exec", dont_inherit=True)
    except SyntaxError:
        continue
    print(os.path.basename(path), hashlib.sha256(ns["_canonical_marshal"](code)).hexdigest())
    if variant == "busy":
        keep.append(code)
    del code
"""


def test_canonical_bytes_do_not_depend_on_the_process_history(target: Interpreter) -> None:
    from hatch_pyc._pool import WORKER_SCRIPT, worker_env

    def hashes(variant: str) -> dict[str, str]:
        proc = subprocess.run(
            [target.executable, "-S", "-c", _HISTORY_SCRIPT, str(WORKER_SCRIPT), variant],
            capture_output=True,
            text=True,
            env=worker_env(),
            check=True,
        )
        return dict(line.split() for line in proc.stdout.splitlines())

    quiet, busy = hashes("quiet"), hashes("busy")
    assert len(quiet) > 100
    assert quiet == busy


_SET_HISTORY_SCRIPT = """
import sys
worker, history = sys.argv[1:3]
ns = {"__name__": "hatch_pyc_worker"}
exec(compile(open(worker, "rb").read(), worker, "exec"), ns)
if history == "interned":
    # Strings equal to the set's items already interned: 3.10's compile() then rebuilds the set
    # once more (intern_string_constants), and these three collide in its table (hash seed 0).
    kept = [sys.intern("".join(["set", "uptools"])), sys.intern("".join(["distri", "bute"])), sys.intern("".join(["wh", "eel"]))]
src = b'pkgs = set()\\npkgs |= {"setuptools", "distribute", "wheel"}\\n'
code = compile(src, "m.py", "exec", dont_inherit=True)
fs = [c for c in code.co_consts if type(c) is frozenset][0]
print(",".join(fs), ns["_canonical_marshal"](code).hex())
"""


def _with_worker(target: Interpreter, script: str, history: str, worker: Path = WORKER_SCRIPT) -> str:
    """What ``script`` prints, run by ``target`` as a worker runs (its environment, no site)."""
    from hatch_pyc._pool import worker_env

    return subprocess.run(
        [target.executable, "-S", "-c", script, str(worker), history],
        capture_output=True,
        text=True,
        env=worker_env(),
        check=True,
    ).stdout


def test_set_constant_bytes_do_not_depend_on_which_strings_were_interned(target: Interpreter) -> None:
    fresh_order, fresh = _with_worker(target, _SET_HISTORY_SCRIPT, "fresh").split()
    interned_order, interned = _with_worker(target, _SET_HISTORY_SCRIPT, "interned").split()
    if target.version[:2] == (3, 10):
        assert fresh_order != interned_order  # CPython's own set differs with the history...
    assert fresh == interned  # ...hatch-pyc's bytes do not


_QUALNAME_HISTORY_SCRIPT = """
import sys
worker, history = sys.argv[1:3]
ns = {"__name__": "hatch_pyc_worker"}
exec(compile(open(worker, "rb").read(), worker, "exec"), ns)
src = (b"class C:\\n    def __eq__(self, other):\\n        return 'C.__eq__'\\n"
       b"def test():\\n    return ['C.__eq__', 'B.__eq__']\\n"
       b"class finalize:\\n    class _Info:\\n        pass\\n")
kept = []
if history == "earlier":
    # Another module, compiled and marshalled before in the same worker, with the same qualified names.
    kept.append(compile(src.replace(b"'C.__eq__'", b"1").replace(b"def test", b"def other"), "other.py", "exec", dont_inherit=True))
    ns["_canonical_marshal"](kept[-1])
print(ns["_canonical_marshal"](compile(src, "m.py", "exec", dont_inherit=True)).hex())
"""


def test_bytes_do_not_depend_on_qualified_names_interned_before(
    target: Interpreter, worker: Path = WORKER_SCRIPT
) -> None:
    """A constant equal to a qualified name ('C.__eq__' in test_binop, a class body's 'finalize._Info'
    in weakref) must not turn into the equal string an earlier module had interned."""
    fresh = _with_worker(target, _QUALNAME_HISTORY_SCRIPT, "fresh", worker)
    assert fresh.strip() and fresh == _with_worker(target, _QUALNAME_HISTORY_SCRIPT, "earlier", worker)


def _unprivileged_python() -> list[str] | None:
    """A command prefix that runs a Python as ``nobody`` (for a root test run), or None."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    for python in (sys.executable, "/usr/bin/python3"):
        # It must run *and* see itself: hatch-pyc checks the target's path.
        see = "import os, sys; sys.exit(not os.path.exists(sys.executable))"
        probe = subprocess.run([*prefix, python, "-c", see], check=False, capture_output=True)
        if probe.returncode == 0:
            return [*prefix, python]
    return None


def python_that_obeys_permissions(base: Path) -> list[str]:
    """A command that runs hatch-pyc so that file permissions bind it: this interpreter, or for a root
    test run (which reads any file) a Python as ``nobody`` with the engine copied to ``base/lib`` and
    everything under ``base`` opened to that user (use ``PYTHONPATH=base/lib``)."""
    if os.geteuid() != 0:
        return [sys.executable]
    python = _unprivileged_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("no Python that 'nobody' can run (setpriv and /usr/bin/python3 are needed on CI)")
        pytest.skip("running as root and no Python that 'nobody' can run")
    shutil.copytree(Path(hatch_pyc.__file__).parent, base / "lib/hatch_pyc")
    for path in [base, *base.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return python


def test_an_unreadable_source_fails_the_run_naming_it_and_changes_nothing() -> None:
    # Root reads any file, so a root test run (CI) compiles as ``nobody``: the engine copied
    # where that user can read it, run by an interpreter that user can execute.
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        tree = write_tree(base / "tree", {"pkg/__init__.py": "", "pkg/ok.py": "OK = 1\n", "pkg/secret.py": "S = 2\n"})
        secret = tree / "pkg/secret.py"
        python = python_that_obeys_permissions(base)
        before = snapshot(tree)  # read while it still can be
        mode = secret.stat().st_mode
        secret.chmod(0o000)
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [*python, "-m", "hatch_pyc", "compile", str(tree), "--python", python[-1]],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )

        assert done.returncode == 1, done.stderr
        assert done.stderr == (
            f"hatch-pyc: error: {secret}: PermissionError: Permission denied; nothing was changed "
            "(--on-error keep-source keeps it as source)\n"
        )
        secret.chmod(mode)
        assert snapshot(tree) == before
