"""``hatch-pyc verify``: every module imported sourceless, compared with its sources."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from conftest import run_cli, run_python, snapshot, write_tree
from test_hook import copy_project, hatchling_build

from hatch_pyc import Interpreter, PycOptions
from hatch_pyc._verify import find_modules, import_all, verify_tree

TREE = {
    "pkg/__init__.py": "",
    "pkg/fine.py": "X = 1\n",
    "pkg/needs_source.py": "import inspect\nSRC = inspect.getsource(inspect.getmodule(lambda: 0))\n",
    "pkg/reads_file.py": "OWN = open(__file__.removesuffix('c'), encoding='utf-8').read()\n",
    "pkg/broken.py": "raise RuntimeError('broken either way')\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": "from pkg import fine\n",
    "pkg/__main__.py": "raise SystemExit('never imported by verify')\n",
    "nsp/part.py": "Y = 2\nprint('modules may print when imported')\n",
    "top.py": "Z = 3\n",
}


def test_find_modules() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tree = write_tree(Path(d), TREE)
        assert list(find_modules(tree)) == [
            "nsp.part",
            "pkg",
            "pkg.broken",
            "pkg.fine",
            "pkg.needs_source",
            "pkg.reads_file",
            "pkg.sub",
            "pkg.sub.deep",
            "top",
        ]


def test_sourceless_only_failures_are_named_with_their_fix(tmp_path: Path, target: Interpreter) -> None:
    tree = write_tree(tmp_path / "t", TREE)
    before = snapshot(tree)
    result = verify_tree(tree, target)
    assert snapshot(tree) == before  # the input is never modified
    assert result.modules == 9
    assert [(m, p) for m, _, p in result.sourceless_only] == [
        ("pkg.needs_source", "pkg/needs_source.py"),
        ("pkg.reads_file", "pkg/reads_file.py"),
    ]
    assert result.sourceless_only[1][1].startswith("FileNotFoundError")
    assert result.both == [("pkg.broken", "RuntimeError: broken either way")]
    assert result.compiled_ok == 6


def test_timeouts_and_dying_interpreters(tmp_path: Path) -> None:
    from hatch_pyc import find_interpreter

    tree = write_tree(
        tmp_path / "t",
        {"a.py": "", "hangs.py": "import time\ntime.sleep(60)\n", "dies.py": "import os\nos._exit(3)\n", "z.py": ""},
    )
    outcomes = import_all(find_interpreter(None), tree, ["a", "hangs", "dies", "z"], workers=1, timeout=2)
    assert outcomes["a"].ok and outcomes["z"].ok
    assert outcomes["hangs"].error == "timed out after 2 s"
    assert outcomes["dies"].error == "the interpreter exited (3)"


def test_cli_exit_codes_and_exclude(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", TREE)
    proc = run_cli("verify", str(tree))
    assert proc.returncode == 1
    assert "FAIL pkg.needs_source: imports from source but not sourceless: OSError" in proc.stdout
    assert "fixed by --exclude 'pkg/needs_source.py' (checked)" in proc.stdout
    fixed = run_cli(
        "verify",
        str(tree),
        "--exclude",
        "pkg/needs_source.py",
        "--exclude",
        "pkg/reads_file.py",
        "--json",
        str(tmp_path / "v.json"),
    )
    assert fixed.returncode == 0, fixed.stdout
    assert "9 modules imported sourceless" in fixed.stderr and "1 fail either way" in fixed.stderr
    assert json.loads((tmp_path / "v.json").read_text()) == {
        "python": ".".join(map(str, sys.version_info[:3])),
        "modules": 9,
        "sourceless_only": [],
        "both": [{"module": "pkg.broken", "error": "RuntimeError: broken either way"}],
        "no_source": [],
    }


def test_hook_verify_option_fails_the_build(tmp_path: Path) -> None:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = copy_project("src-layout", tmp_path, minor)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text() + "verify = true\n"
    pyproject.write_text(text.replace('exclude = ["srcpkg/reads_source.py"]\n', ""))
    assert hatchling_build(project, "-t", "sdist").returncode == 0  # an earlier build's output, to be kept
    before = snapshot(project / "dist")
    assert list(before) == ["srcpkg-1.2.0.tar.gz"]
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode != 0
    assert "srcpkg.reads_source: OSError" in proc.stderr and 'exclude = ["srcpkg/reads_source.py"]' in proc.stderr
    assert snapshot(project / "dist") == before  # the wheel that failed verification is not left in dist/
    pyproject.write_text(text)
    ok = hatchling_build(project, "-t", "wheel")
    assert ok.returncode == 0, ok.stderr
    assert "hatch-pyc: verified 5 modules sourceless" in ok.stderr


def test_a_module_that_breaks_traceback_does_not_hide_the_next_failure(tmp_path: Path, target: Interpreter) -> None:
    """exceptiongroup's backport patched TracebackException.__init__ in a way 3.13+ rejects; the
    next failing import in the same process was then blamed as 'the interpreter exited (1)'."""
    tree = write_tree(
        tmp_path / "t",
        {
            "breaker.py": "import traceback\n"
            "def boom(*args, **kwargs):\n    raise AttributeError('no setter')\n"
            "traceback.TracebackException.__init__ = boom\n",
            "missing.py": "import no_such_module_anywhere\n",
        },
    )
    outcomes = import_all(target, tree, ["breaker", "missing"], workers=1, batch_size=2)
    assert outcomes["breaker"].ok
    assert outcomes["missing"].error == "ModuleNotFoundError: No module named 'no_such_module_anywhere'"


def test_needs_its_source_is_claimed_only_for_the_module_alone(tmp_path: Path, target: Interpreter) -> None:
    """A module that fails sourceless only because of what an earlier module in the same process did
    (here: a flag in builtins; in the corpus, a package left half-imported) is not 'needs its source'."""
    files = {
        "a_poison.py": "import builtins\nbuiltins._hatch_pyc_poisoned = True\n",
        "b_victim.py": "import builtins\n"
        "if getattr(builtins, '_hatch_pyc_poisoned', False):\n    raise RuntimeError('poisoned by an earlier import')\n",
        **{f"c{i}.py": "" for i in range(6)},
    }
    tree = write_tree(tmp_path / "t", files)
    # The batch is what verify_tree's sourceless pass runs: 8 modules, one worker, two per process.
    batched = import_all(target, tree, sorted(find_modules(tree)), workers=1)
    assert batched["b_victim"].error == "RuntimeError: poisoned by an earlier import"  # the trap is real
    result = verify_tree(tree, target, options=PycOptions(strip=True, workers=1))
    assert result.sourceless_only == [] and result.both == []
    assert result.compiled_ok == 8


# At -O 2 a docstring is gone from the pyc: b fails sourceless because a's is, and a imports fine.
DOCSTRINGS = {
    "pkg/__init__.py": "",
    "pkg/a.py": 'def f():\n    """The docstring b reads."""\n',
    "pkg/b.py": "from pkg.a import f\ng_doc = f.__doc__.upper()\n",
    "pkg/c.py": "import pkg.b\n",
    "pkg/a2.py": 'def h():\n    """Another."""\n',
    "pkg/both.py": "from pkg.a import f\nfrom pkg.a2 import h\nDOCS = f.__doc__ + h.__doc__\n",
    "pkg/needs_source.py": TREE["pkg/needs_source.py"],
    "pkg/d.py": "import pkg.b, pkg.needs_source\n",  # needs what two other failures needed
}
SMALL = {k: v for k, v in DOCSTRINGS.items() if k not in ("pkg/c.py", "pkg/d.py")}


def test_the_fix_names_the_module_whose_source_is_needed_and_is_proven(tmp_path: Path, target: Interpreter) -> None:
    """sympy.physics.vector.printing reads the __doc__ of a function of sympy.interactive.printing:
    keeping the failing module's own source does not help, keeping the other module's does."""
    tree = write_tree(tmp_path / "t", DOCSTRINGS)
    compiled = tmp_path / "compiled"
    shutil.copytree(tree, compiled)
    run_cli("compile", "--python", target.minor, "--strip", "-O", "2", str(compiled), check=True)
    before = snapshot(compiled)
    result = verify_tree(tree, target, options=PycOptions(levels=(2,), strip=True), compiled=compiled)
    assert snapshot(compiled) == before  # the probes ran in a copy of the caller's tree
    assert [(m, p) for m, _, p in result.sourceless_only] == [
        ("pkg.b", "pkg/a.py"),
        ("pkg.both", "pkg/a.py"),
        ("pkg.c", "pkg/a.py"),
        ("pkg.d", "pkg/a.py"),
        ("pkg.needs_source", "pkg/needs_source.py"),
    ]
    assert {m: (f.patterns, f.checked, f.minimal) for m, f in result.fixes.items()} == {
        "pkg.b": (("pkg/a.py",), True, True),
        "pkg.both": (("pkg/a.py", "pkg/a2.py"), True, True),
        "pkg.c": (("pkg/a.py",), True, True),
        "pkg.d": (("pkg/a.py", "pkg/needs_source.py"), True, True),
        "pkg.needs_source": (("pkg/needs_source.py",), True, True),  # its own source, as before
    }
    # The hints work as the user would apply them, and the old one (b's own source) does not.
    for exclude, works in ((["pkg/a.py"], True), (["pkg/b.py"], False), (["pkg/a.py", "pkg/a2.py"], True)):
        copy = tmp_path / "-".join(exclude).replace("/", "_")
        shutil.copytree(tree, copy)
        options = [arg for pattern in exclude for arg in ("--exclude", pattern)]
        run_cli("compile", "--python", target.minor, "--strip", "-O", "2", *options, str(copy), check=True)
        code = "import pkg.b, pkg.c" if len(exclude) == 1 else "import pkg.both"
        assert (run_python(target, code, path=copy, check=False).returncode == 0) is works, exclude


def test_probe_limits_leave_a_working_set_or_say_it_is_unchecked(tmp_path: Path) -> None:
    from hatch_pyc import find_interpreter

    interp = find_interpreter(None)
    tree = write_tree(tmp_path / "t", SMALL)
    options = PycOptions(levels=(2,), strip=True)
    # Three imports: its own source (fails), every candidate (works), one half; then the limit.
    cut = verify_tree(tree, interp, options=options, probes_per_module=3).fixes["pkg.both"]
    assert cut.checked and not cut.minimal
    assert {"pkg/a.py", "pkg/a2.py"} < set(cut.patterns)
    starved = verify_tree(tree, interp, options=options, max_probes=0)
    assert {m: (f.patterns, f.checked) for m, f in starved.fixes.items()} == {
        "pkg.b": (("pkg/b.py",), False),  # what verify suggested before it checked anything
        "pkg.both": (("pkg/both.py",), False),
        "pkg.needs_source": (("pkg/needs_source.py",), False),
    }
    assert starved.probes == 0


def test_cli_shows_the_checked_fix(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "t", SMALL)
    proc = run_cli("verify", "-O", "2", str(tree), "--json", str(tmp_path / "v.json"))
    assert proc.returncode == 1
    assert "FAIL pkg.b: imports from source but not sourceless: AttributeError" in proc.stdout
    assert "fixed by --exclude 'pkg/a.py' (checked)  (hook: exclude = [\"pkg/a.py\"])" in proc.stdout
    assert "fixed by --exclude 'pkg/a.py' --exclude 'pkg/a2.py' (checked)" in proc.stdout
    outcome = json.loads((tmp_path / "v.json").read_text())
    assert (outcome["python"], outcome["modules"]) == (".".join(map(str, sys.version_info[:3])), 6)
    assert [(f["module"], f["exclude"], f["fix"]) for f in outcome["sourceless_only"]] == [
        ("pkg.b", "pkg/a.py", {"exclude": ["pkg/a.py"], "checked": True, "minimal": True}),
        ("pkg.both", "pkg/a.py", {"exclude": ["pkg/a.py", "pkg/a2.py"], "checked": True, "minimal": True}),
        (
            "pkg.needs_source",
            "pkg/needs_source.py",
            {"exclude": ["pkg/needs_source.py"], "checked": True, "minimal": True},
        ),
    ]
    assert outcome["sourceless_only"][0]["error"].startswith("AttributeError")
    assert outcome["both"] == [] and outcome["no_source"] == []
    fixed = run_cli("verify", "-O", "2", str(tree), "--exclude", "pkg/a.py", "--exclude", "pkg/a2.py", "-q")
    assert "fixed by --exclude 'pkg/needs_source.py' (checked)" in fixed.stdout and "pkg.b" not in fixed.stdout
