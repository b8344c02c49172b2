"""Which paths a compile run works on (hatch_pyc/_plan.py): import roots, venvs, the interpreter a tree
belongs to, overlapping arguments and which sources are compiled, on real trees, venvs and the real CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import run_cli, write_tree
from test_compile import python_that_obeys_permissions

from hatch_pyc import CompilePlan, Interpreter, PycOptions, compile_plan, find_interpreter, plan_compile
from hatch_pyc._errors import InvalidOptions
from hatch_pyc._layout import cache_path
from hatch_pyc._plan import (
    PlannedSource,
    Root,
    TreeOwner,
    _walk_sources,
    find_roots,
    import_root_of,
    site_root_of,
    tree_owner,
)

HERE = find_interpreter(sys.executable)


def _venv(where: Path, interp: Interpreter) -> Path:
    subprocess.run([interp.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return where


def _listing(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``source -> pyc`` lines a ``--dry-run`` prints, in order."""
    return [line for line in proc.stdout.splitlines() if " -> " in line]


def _co_filename(pyc: Path) -> str:
    return json.loads(run_cli("inspect", "--json", str(pyc), check=True).stdout)["co_filename"]


# Files and directories named on the command line.


def test_a_py_file_named_alone_is_compiled_and_any_other_file_refused(tmp_path: Path) -> None:
    """A ``.py`` named on its own is compiled by itself (named from its import root); a file of any other
    kind is refused with one line naming it, and nothing is written."""
    files = {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n", "pkg/data.txt": "x\n", "pkg/ext.c": "int x;\n"}
    tree = write_tree(tmp_path / "tree", files)
    run_cli("compile", str(tree / "pkg/mod.py"), check=True)
    assert sorted(p.name for p in (tree / "pkg/__pycache__").iterdir()) == [f"mod.{HERE.cache_tag}.pyc"]
    assert _co_filename(tree / f"pkg/__pycache__/mod.{HERE.cache_tag}.pyc") == "pkg/mod.py"

    shutil.rmtree(tree / "pkg/__pycache__")
    for other in ("pkg/data.txt", "pkg/ext.c"):  # suffixes sorting after and before ".py"
        proc = run_cli("compile", str(tree / other))
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [f"hatch-pyc: error: {tree / other}: not a .py file"]
        assert not (tree / "pkg/__pycache__").exists()


def test_a_file_also_inside_a_named_tree_is_compiled_once_and_the_rest_of_the_tree_too(tmp_path: Path) -> None:
    """Overlapping arguments (a module and the tree holding it) plan each source once, and every other
    module of the tree is still compiled."""
    tree = write_tree(
        tmp_path / "tree",
        {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/b.py": "B = 1\n", "pkg/sub/__init__.py": "", "z.py": ""},
    )
    proc = run_cli("compile", "--dry-run", "--strip", str(tree / "pkg/a.py"), str(tree), check=True)
    assert _listing(proc) == [
        f"{tree / rel}.py -> {tree / rel}.pyc  (source removed)"
        for rel in ("pkg/a", "z", "pkg/__init__", "pkg/b", "pkg/sub/__init__")
    ]
    proc = run_cli("compile", "--strip", str(tree / "pkg/a.py"), str(tree), check=True)
    assert "compiled 5 of 5 sources" in proc.stderr
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.py*")) == [
        "pkg/__init__.pyc",
        "pkg/a.pyc",
        "pkg/b.pyc",
        "pkg/sub/__init__.pyc",
        "z.pyc",
    ]


def test_every_directory_is_walked_but_pycache(tmp_path: Path) -> None:
    """Packages whatever their names (capitals, digits) are compiled; nothing inside a ``__pycache__``
    is ever taken for a module."""
    tree = write_tree(
        tmp_path / "tree",
        {
            "Models/__init__.py": "",
            "Models/User.py": "U = 1\n",
            "v2/__init__.py": "",
            "app/__init__.py": "",
            "app/__pycache__/leftover.py": "L = 1\n",
        },
    )
    proc = run_cli("compile", "--dry-run", str(tree), check=True)
    assert _listing(proc) == [
        f"{tree / d / name}.py -> {tree / d / '__pycache__' / name}.{HERE.cache_tag}.pyc"
        for d, name in (("Models", "User"), ("Models", "__init__"), ("app", "__init__"), ("v2", "__init__"))
    ]


def test_a_plain_directory_in_a_package_keeps_its_sources_and_the_walk_goes_on(tmp_path: Path) -> None:
    """A sourceless run keeps a template's ``.py`` as source and still compiles every module walked after it."""
    tree = write_tree(
        tmp_path / "tree",
        {
            "pkg/__init__.py": "",
            "pkg/templates/env.py": "TEMPLATE = '${x}'\n",
            "pkg/views/__init__.py": "",
            "pkg/views/page.py": "P = 1\n",
        },
    )
    proc = run_cli("compile", "--strip", str(tree), check=True)
    assert "compiled 3 of 3 sources" in proc.stderr
    assert "1 kept as source (outside packages: templates or data)" in proc.stderr
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.py*")) == [
        "pkg/__init__.pyc",
        "pkg/templates/env.py",
        "pkg/views/__init__.pyc",
        "pkg/views/page.pyc",
    ]


def test_find_roots_walks_only_the_paths_given_unless_asked_for_the_stdlib(tmp_path: Path) -> None:
    """``find_roots`` adds the interpreter's standard library only when ``stdlib=True`` is passed."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": ""})
    assert find_roots([tree / "pkg"], HERE) == [Root(tree, tree / "pkg")]
    assert find_roots([tree / "pkg"], HERE, stdlib=True) == [
        Root(tree, tree / "pkg"),
        Root(Path(HERE.stdlib), Path(HERE.stdlib)),
    ]


# Where imports start.


def test_a_namespace_package_below_a_site_packages_without_records_imports_from_it(tmp_path: Path) -> None:
    """A path below a ``site-packages`` is named from that site-packages even with no ``*.dist-info`` in
    it (``ns/pkg/mod.py``, not ``pkg/mod.py``, for a namespace package ``ns``)."""
    site = write_tree(
        tmp_path / "lib" / f"python{HERE.minor}" / "site-packages", {"ns/pkg/__init__.py": "", "ns/pkg/mod.py": ""}
    )
    run_cli("compile", str(site / "ns/pkg"), check=True)
    assert _co_filename(site / f"ns/pkg/__pycache__/mod.{HERE.cache_tag}.pyc") == "ns/pkg/mod.py"


def test_an_unreadable_directory_above_the_tree_is_passed_over(tmp_path: Path) -> None:
    """Looking for install records above a tree skips a directory that cannot be listed (a ``0711`` home,
    say): the run compiles the tree as usual instead of failing."""
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        locked = base / "home"
        tree = write_tree(locked / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
        python = python_that_obeys_permissions(base)  # root lists any directory: then run as ``nobody``
        locked.chmod(0o311)  # enter, not list
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run(
                [*python, "-m", "hatch_pyc", "compile", "--strip", str(tree), "--python", python[-1]],
                check=False,
                capture_output=True,
                text=True,
                env=env,
            )
        finally:
            locked.chmod(0o755)
        assert done.returncode == 0, done.stderr
        assert "compiled 2 of 2 sources" in done.stderr
        assert sorted(p.name for p in (tree / "pkg").iterdir()) == ["__init__.pyc", "mod.pyc"]


def test_a_directory_of_the_tree_that_cannot_be_listed_is_named_in_a_warning(tmp_path: Path) -> None:
    """Found by an adversarial review: a directory of the tree that cannot be listed (mode ``0311``, read by a user
    who is not root) was passed over without a word, and ``--strip`` said it had compiled every source while that
    directory's kept theirs. It is still passed over (as os.walk and compileall do), and a warning names it."""
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        tree = write_tree(base / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n", "pkg/sec/hidden.py": ""})
        python = python_that_obeys_permissions(base)  # root lists any directory: then run as ``nobody``
        (tree / "pkg/sec").chmod(0o311)  # enter, not list
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [*python, "-m", "hatch_pyc", "compile", "--strip", str(tree / "pkg"), "--python", python[-1]]
        summary = base / "summary.json"
        try:
            dry, done = (
                subprocess.run(command + extra, check=False, capture_output=True, text=True, env=env)
                for extra in (["--dry-run"], ["--json", str(summary)])
            )
        finally:
            (tree / "pkg/sec").chmod(0o755)
        warning = (
            f"hatch-pyc: warning: {tree / 'pkg/sec'}: cannot be listed (Permission denied); any sources in it were "
            "left as they are"
        )
        assert dry.returncode == 0 and warning in dry.stderr.splitlines(), dry.stderr  # a dry run says so too
        assert done.returncode == 0, done.stderr
        assert warning in done.stderr.splitlines()
        assert json.loads(summary.read_text())["unlisted"] == [str(tree / "pkg/sec")]
        assert sorted(p.name for p in (tree / "pkg").iterdir()) == ["__init__.pyc", "mod.pyc", "sec"]
        assert (tree / "pkg/sec/hidden.py").exists()


# The interpreter a tree belongs to.


@pytest.mark.slow
def test_a_venv_named_alone_is_compiled_for_its_own_python(tmp_path: Path, other_target: Interpreter) -> None:
    """A venv root given without ``--python`` is compiled for the venv's interpreter, and another explicit
    target is refused naming the venv as the evidence."""
    venv = _venv(tmp_path / "venv", other_target)
    site = next(venv.glob("lib/python3*/site-packages"))
    write_tree(site, {"pkg/__init__.py": "", "pkg/mod.py": "Y = 2\n"})

    proc = run_cli("compile", "--python", HERE.minor, str(venv))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"hatch-pyc: error: {venv}: belongs to CPython {other_target.minor} (the virtual environment {venv}) but "
        f"the target is CPython {HERE.minor}, whose pycs that interpreter cannot load; target {other_target.minor}, "
        f"or pass --allow-other-python if the tree is meant for {HERE.minor}"
    ]
    assert not (site / "pkg/__pycache__").exists()

    run_cli("compile", str(venv), check=True)
    assert sorted(p.name for p in (site / "pkg/__pycache__").iterdir()) == [
        f"__init__.{other_target.cache_tag}.pyc",
        f"mod.{other_target.cache_tag}.pyc",
    ]


@pytest.mark.slow
def test_a_venv_with_a_stale_lib_directory_goes_by_its_pyvenv_cfg(tmp_path: Path, other_target: Interpreter) -> None:
    """A venv re-created in place for another CPython keeps the old ``lib/pythonX.Y``: with two of them the
    venv's version is what ``pyvenv.cfg`` says, so its own version is compiled for without a flag."""
    # the venv's own lib directory must sort after the stale one, which a wrong pick would take
    stale, own = sorted((HERE, other_target), key=lambda i: f"python{i.minor}")
    venv = _venv(tmp_path / "venv", own)
    write_tree(venv / "lib" / f"python{stale.minor}" / "site-packages", {"old/__init__.py": ""})
    site = venv / "lib" / f"python{own.minor}" / "site-packages"
    write_tree(site, {"pkg/__init__.py": "", "pkg/mod.py": "Y = 2\n"})

    owner = tree_owner(site / "pkg")
    assert owner is not None and owner.minor == own.minor
    proc = run_cli("compile", "--python", own.minor, str(site / "pkg"), check=True)
    assert f"compiled 2 of 2 sources for CPython {own.minor}." in proc.stderr
    assert (site / f"pkg/__pycache__/mod.{own.cache_tag}.pyc").is_file()


def test_a_directory_named_like_an_interpreter_is_not_a_standard_library(
    tmp_path: Path, other_target: Interpreter
) -> None:
    """Only a ``pythonX.Y`` directory holding ``os.py`` is a standard library: a checkout merely named
    ``python3.N`` is compiled for the running interpreter."""
    tree = write_tree(tmp_path / f"python{other_target.minor}", {"app/__init__.py": "", "app/mod.py": "M = 1\n"})
    assert tree_owner(tree / "app") is None
    run_cli("compile", str(tree / "app"), check=True)
    assert sorted(p.name for p in (tree / "app/__pycache__").iterdir()) == [
        f"__init__.{HERE.cache_tag}.pyc",
        f"mod.{HERE.cache_tag}.pyc",
    ]


def test_a_project_with_its_own_os_module_is_not_a_standard_library(tmp_path: Path) -> None:
    """A tree holding a module called ``os.py`` (not in a ``pythonX.Y`` directory) is an ordinary tree."""
    tree = write_tree(tmp_path / "project", {"os.py": "NAME = 'mine'\n", "app.py": "A = 1\n"})
    assert tree_owner(tree) is None
    proc = run_cli("compile", str(tree), check=True)
    assert f"compiled 2 of 2 sources for CPython {HERE.minor}." in proc.stderr
    assert sorted(p.name for p in (tree / "__pycache__").iterdir()) == [
        f"app.{HERE.cache_tag}.pyc",
        f"os.{HERE.cache_tag}.pyc",
    ]


def test_verify_refuses_a_target_other_than_the_trees_own(tmp_path: Path, other_target: Interpreter) -> None:
    """``verify --python`` on a site-packages of another CPython is refused, naming both versions, before
    anything is staged."""
    site = write_tree(tmp_path / "lib" / f"python{other_target.minor}" / "site-packages", {"pkg/__init__.py": ""})
    proc = run_cli("verify", "--python", HERE.minor, str(site))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    said = (
        f"hatch-pyc: error: {site}: belongs to CPython {other_target.minor} ({site} is CPython {other_target.minor}'s) "
        f"but the target is CPython {HERE.minor}, whose pycs that interpreter cannot load; target {other_target.minor}"
    )
    assert line == said  # verify has no --allow-other-python: the message does not offer it
    proc = run_cli("compile", "--dry-run", "--python", HERE.minor, str(site))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"{said}, or pass --allow-other-python if the tree is meant for {HERE.minor}"]


# The interpreter a tree belongs to.


def test_paths_of_two_interpreters_without_python_are_refused(tmp_path: Path, other_target: Interpreter) -> None:
    """Two trees that belong to different CPythons cannot share one target: without ``--python`` the run is
    refused, naming both versions, and nothing is written."""
    ours = write_tree(tmp_path / "a/lib" / f"python{HERE.minor}" / "site-packages", {"p/__init__.py": ""})
    theirs = write_tree(tmp_path / "b/lib" / f"python{other_target.minor}" / "site-packages", {"q/__init__.py": ""})
    proc = run_cli("compile", str(ours), str(theirs))
    assert proc.returncode == 2
    versions = ", ".join(sorted([HERE.minor, other_target.minor]))
    assert proc.stderr.splitlines() == [
        f"hatch-pyc: error: the paths belong to different interpreters ({versions}); "
        "compile them separately or pass --python"
    ]
    assert not list(tmp_path.rglob("__pycache__"))


def test_a_venv_without_its_lib_directory_goes_by_its_pyvenv_cfg(tmp_path: Path, other_target: Interpreter) -> None:
    """A venv whose ``lib/pythonX.Y`` is gone (a copied or half-removed venv) still belongs to the version its
    ``pyvenv.cfg`` names: another target is refused with that version."""
    venv = _venv(tmp_path / "venv", other_target)
    shutil.rmtree(venv / "lib")
    (venv / "app").mkdir()
    (venv / "app/__init__.py").write_text("")
    proc = run_cli("compile", "--dry-run", "--python", HERE.minor, str(venv / "app"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        f"hatch-pyc: error: {venv / 'app'}: belongs to CPython {other_target.minor} (the virtual environment {venv})"
    )


def test_a_killed_runs_sources_are_restored_and_compiled_for_the_allowed_other_python(
    tmp_path: Path, other_target: Interpreter
) -> None:
    """``--allow-other-python`` holds for the whole run: a site-packages of another CPython whose last
    ``--strip`` run was killed gets its set-aside source back, and the run planned again after that
    restore compiles it for the target allowed (it is not refused the second time)."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    site = write_tree(
        tmp_path / "lib" / f"python{other_target.minor}" / "site-packages",
        {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"},
    )
    (site / f"pkg/.b.py.{int(dead.stdout)}-0123abcd.hatch-pyc-old").write_text("B = 2\n")  # set aside, then killed
    proc = run_cli("compile", "--strip", "--python", HERE.minor, "--allow-other-python", str(site), check=True)
    assert "1 set-aside files restored" in proc.stderr
    assert "compiled 3 of 3 sources" in proc.stderr
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*")) == [
        "pkg",
        "pkg/__init__.pyc",
        "pkg/a.pyc",
        "pkg/b.pyc",
    ]


def test_what_a_plan_is_made_of_are_values(tmp_path: Path) -> None:
    """A planned source, a root and a tree's owner are frozen values: sets and dict keys hold them, and no step
    of a run can change what an earlier step decided."""
    made = [
        PlannedSource(tmp_path / "m.py", "m.py", "m.py", ((0, tmp_path / "m.pyc"),), 1, 0.0),
        Root(tmp_path, tmp_path),
        TreeOwner("3.12", "the virtual environment v", "v/bin/python"),
    ]
    for value in made:
        field = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, None)
    assert len({*made, *made}) == 3


def test_a_plan_made_by_hand_writes_cache_pycs_and_keeps_its_sources(tmp_path: Path) -> None:
    """``CompilePlan`` is public: one made with only what it needs is the safe kind. Its pycs go to
    ``__pycache__`` beside each source, the source stays, and a second run finds them up to date."""
    source = tmp_path / "m.py"
    source.write_text("X = 1\n")
    info = source.stat()
    pyc = cache_path(source, HERE.cache_tag, 0)
    planned = PlannedSource(source, "m.py", str(source), ((0, pyc),), info.st_size, info.st_mtime)
    first = compile_plan(CompilePlan(HERE, PycOptions(), [Root(tmp_path, tmp_path)], sources=[planned]))
    assert (first.compiled, first.stripped, source.read_text()) == ([planned], [], "X = 1\n")
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0  # a timestamp pyc, checked against its source
    again = compile_plan(CompilePlan(HERE, PycOptions(), [Root(tmp_path, tmp_path)], sources=[planned]))
    assert (again.compiled, again.up_to_date) == ([], [planned])


def test_the_install_records_above_a_path_that_cannot_be_listed_are_found(tmp_path: Path) -> None:
    """A directory on the way up that cannot be listed (here one not made yet: listing it fails) is passed
    over, and the search goes on to the ``*.dist-info`` above it."""
    site = write_tree(tmp_path / "target", {"pkg-1.0.dist-info/RECORD": "", "pkg/__init__.py": ""})
    assert site_root_of(site / "pkg" / "not" / "made") == site
    assert site_root_of(tmp_path / "elsewhere" / "not-made") is None


def test_imports_start_above_the_outermost_package(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", {"a/__init__.py": "", "a/b/__init__.py": "", "a/b/c/mod.py": ""})
    assert import_root_of(tree / "a" / "b") == tree
    assert import_root_of(tree / "a" / "b" / "c") == tree / "a" / "b" / "c"  # no __init__.py: not a package
    assert import_root_of(tree) == tree


def test_a_venv_whose_pyvenv_cfg_cannot_be_read_belongs_to_no_known_version(tmp_path: Path) -> None:
    """``/proc/self/mem`` is a regular file whose first read fails (EIO): a ``pyvenv.cfg`` that cannot be read
    names no version (and no ``lib/pythonX.Y`` does either), so nothing is refused on its word."""
    venv = write_tree(tmp_path / "venv", {"bin/python": ""})
    (venv / "pyvenv.cfg").symlink_to("/proc/self/mem")
    assert tree_owner(venv / "pkg") == TreeOwner("", f"the virtual environment {venv}", str(venv / "bin/python"))


def test_the_api_refuses_a_tree_of_an_older_or_a_newer_cpython_unless_allowed(
    tmp_path: Path, other_target: Interpreter
) -> None:
    """``plan_compile`` refuses by default, whichever of the two is the newer, and plans it when allowed."""
    for owner, target in ((HERE, other_target), (other_target, HERE)):
        site = write_tree(tmp_path / owner.minor / "lib" / f"python{owner.minor}" / "site-packages", {"m.py": ""})
        with pytest.raises(
            InvalidOptions, match=f"belongs to CPython {owner.minor} .* target is CPython {target.minor}"
        ):
            plan_compile([site], PycOptions(), python=target.executable)
        plan = plan_compile([site], PycOptions(), python=target.executable, allow_other_python=True)
        assert (plan.interpreter.minor, [s.source for s in plan.sources]) == (target.minor, [site / "m.py"])


def test_a_directory_above_a_venvs_site_packages_is_walked_into_it(tmp_path: Path) -> None:
    """Only a ``--stdlib`` walk passes over the interpreter's site-packages (it is not the standard library);
    naming ``venv/lib`` compiles what is installed there, for the venv's own Python."""
    venv = _venv(tmp_path / "venv", HERE)
    site = venv / "lib" / f"python{HERE.minor}" / "site-packages"
    write_tree(site, {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    proc = run_cli("compile", str(venv / "lib"), check=True)
    assert "compiled 2 of 2 sources" in proc.stderr
    assert sorted(p.name for p in (site / "pkg/__pycache__").iterdir()) == [
        f"__init__.{HERE.cache_tag}.pyc",
        f"mod.{HERE.cache_tag}.pyc",
    ]


def _walk_as_os_walk_does(root: Root) -> tuple[list[tuple[Path, Path, str]], list[Path], set[Path], set[Path]]:
    """The walk's rules, written over ``os.walk`` (as the walk was until it listed directories by hand)."""
    from hatch_pyc._commit import is_ours, is_staged

    found, directories, with_pycache, with_leftovers = [], [], set(), set()
    for dirpath, dirnames, filenames in os.walk(root.walk):
        here = Path(dirpath)
        directories.append(here)
        if "__pycache__" in dirnames or "__pycache__" in filenames:
            with_pycache.add(here)
        if any(is_ours(name) for name in (*filenames, *dirnames)):
            with_leftovers.add(here)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d != "__pycache__"
            and not (d.endswith(".dist-info") and here == root.import_root)
            and not is_staged(d, "__pycache__")
        )
        rel = os.path.relpath(dirpath, root.import_root).replace(os.sep, "/")
        for name in sorted(filenames):
            if name.endswith(".py"):
                found.append((here, here / name, name if rel == "." else f"{rel}/{name}"))
    return found, directories, with_pycache, with_leftovers


def test_the_walk_lists_what_os_walk_would_in_its_order(tmp_path: Path) -> None:
    """The walk lists directories by hand (a third of a warm run's planning was os.walk and Path objects): what it
    yields, in which order, and what it notes (every walked directory, those with a ``__pycache__`` and those with a
    killed run's leftover) are os.walk's. Links are not followed, a staged ``__pycache__`` and an import-root
    ``.dist-info`` are not walked into, a directory named like a module is walked and not compiled."""
    site = write_tree(
        tmp_path / "site",
        {
            "b/__init__.py": "",
            "b/z.py": "",
            "b/a.py": "",
            "b/__pycache__/stale.py": "",
            "b/deep/c.py": "",
            "b/deep/x-1.0.dist-info/inside.py": "",
            "b/odd.py/inner.py": "",
            "b/.hidden/h.py": "",
            "a.py": "",
            "A.py": "",
            "x-1.0.dist-info/RECORD": "",
            "x-1.0.dist-info/m.py": "",
            "b/.__pycache__.123-0123abcd.hatch-pyc-tmp/t.cpython-312.pyc": b"",
            "b/deep/.c.py.123-0123abcd.hatch-pyc-old": "",
            "b/data.txt": "",
        },
    )
    (site / "b/linked").symlink_to(site / "b/deep", target_is_directory=True)
    (site / "b/link.py").symlink_to(site / "b/a.py")
    (site / "b/gone.py").symlink_to(site / "nowhere.py")
    for walk in (site, site / "b"):
        root = Root(site, walk)
        directories: list[Path] = []
        with_pycache: set[Path] = set()
        with_leftovers: set[Path] = set()
        listed = list(_walk_sources(root, frozenset(), directories, with_pycache, with_leftovers))
        assert (listed, directories, with_pycache, with_leftovers) == _walk_as_os_walk_does(root)
    assert [rel for _, _, rel in listed] == [
        "b/__init__.py",
        "b/a.py",
        "b/gone.py",
        "b/link.py",
        "b/z.py",
        "b/.hidden/h.py",
        "b/deep/c.py",
        "b/deep/x-1.0.dist-info/inside.py",
        "b/odd.py/inner.py",
    ]
    assert with_leftovers == {site / "b", site / "b/deep"} and with_pycache == {site / "b"}


@pytest.mark.parametrize("when", ["opened", "listed"])
def test_a_directory_gone_while_it_is_listed_is_passed_over_as_os_walk_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Found by an adversarial review (a race, so the listing's error is made here by a stand-in for os.scandir):
    a directory whose listing fails after it was opened (removed meanwhile: ENOENT) is passed over, as os.walk
    passes it over, instead of ending the run with a traceback; so is one that cannot be opened, and the walk goes
    on to the directories after it."""
    site = write_tree(tmp_path / "site", {"a/m.py": "", "b/n.py": "", "b/deep/o.py": "", "c.py": "", "d/p.py": ""})
    real_scandir = os.scandir

    class Failing:
        def __init__(self, path: str) -> None:
            self.listing = real_scandir(path)

        def __enter__(self) -> Failing:
            return self

        def __exit__(self, *exc: object) -> None:
            self.listing.close()

        def __iter__(self) -> Failing:
            return self

        def __next__(self) -> os.DirEntry[str]:
            next(self.listing)  # one entry read, then the directory is gone
            raise FileNotFoundError(2, "No such file or directory")

    def scandir(path: str) -> object:
        if os.fspath(path) != os.fspath(site / "b"):
            return real_scandir(path)
        if when == "opened":
            raise PermissionError(13, "Permission denied")
        return Failing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    root = Root(site, site)
    directories: list[Path] = []
    with_pycache: set[Path] = set()
    with_leftovers: set[Path] = set()
    unlisted: list[tuple[Path, str]] = []
    listed = list(_walk_sources(root, frozenset(), directories, with_pycache, with_leftovers, unlisted=unlisted))
    assert (listed, directories, with_pycache, with_leftovers) == _walk_as_os_walk_does(root)
    assert [rel for _, _, rel in listed] == ["c.py", "a/m.py", "d/p.py"]
    assert unlisted == [(site / "b", "Permission denied" if when == "opened" else "No such file or directory")]


def test_the_walk_passes_over_the_directories_it_is_told_to_skip_and_goes_on(tmp_path: Path) -> None:
    """A stdlib walk skips the site-packages inside the standard library (``skip_dirs``); the directories after it
    are still walked."""
    site = write_tree(tmp_path / "lib", {"a/m.py": "", "site-packages/x/n.py": "", "z/o.py": ""})
    listed = list(_walk_sources(Root(site, site), frozenset({site / "site-packages"}), [], set(), set()))
    assert [rel for _, _, rel in listed] == ["a/m.py", "z/o.py"]


def test_a_dot_dot_is_taken_out_as_the_system_takes_it_and_the_rest_is_kept_as_named(tmp_path: Path) -> None:
    """Through a link, ``link/..`` is the link's target's parent, not the directory holding the link; what comes
    after the last ``..`` is kept as it is spelt, a link included (it is what the user named)."""
    from hatch_pyc._plan import without_dot_dot

    write_tree(tmp_path, {"real/pkg/__init__.py": "", "real/pkg/inner/deeper/m.py": "", "elsewhere/.keep": ""})
    (tmp_path / "elsewhere/link").symlink_to(tmp_path / "real/pkg", target_is_directory=True)
    (tmp_path / "real/alias").symlink_to(tmp_path / "real/pkg", target_is_directory=True)
    assert without_dot_dot(tmp_path / "real/pkg/../pkg") == tmp_path / "real/pkg"
    assert without_dot_dot(tmp_path / "elsewhere/link/../alias") == tmp_path / "real/alias"
    assert without_dot_dot(tmp_path / "elsewhere/link/../pkg/__init__.py") == tmp_path / "real/pkg/__init__.py"
    # Found by an adversarial review: spelt, this names nothing (there is no elsewhere/inner), yet the system opens
    # real/pkg/inner; it was kept as given, and the run took its venv and its import root from the spelling.
    assert without_dot_dot(tmp_path / "elsewhere/link/../pkg/inner/deeper/../m.py") == tmp_path / "real/pkg/inner/m.py"
    assert without_dot_dot(tmp_path / "gone/../real") == tmp_path / "gone/../real"  # refused later, as given
    assert without_dot_dot(Path("relative/name")) == Path("relative/name")


def test_one_tree_named_twice_through_a_link_is_planned_once(tmp_path: Path) -> None:
    """Found by an adversarial review: ``venv venv/lib64/python3.X/site-packages`` (lib64 a link to lib) planned
    every module twice, and the run failed with "File exists". A directory met again under another name is
    passed over, whichever name comes first; the run compiles each module once."""
    tree = write_tree(tmp_path / "real", {"pkg/__init__.py": "", "pkg/m.py": "X = 1\n", "top.py": "Y = 2\n"})
    (tmp_path / "alias").symlink_to(tree)
    for paths in ([tree, tmp_path / "alias/pkg"], [tmp_path / "alias/pkg", tree]):
        plan = plan_compile(paths, PycOptions(cache=False))
        assert len(plan.sources) == 3
        assert len({os.path.realpath(item.source) for item in plan.sources}) == 3
    result = compile_plan(plan_compile([tree, tmp_path / "alias/pkg"], PycOptions(strip=True, cache=False)))
    assert result.pyc_written == 3
    assert sorted(p.name for p in tree.rglob("*.py*")) == ["__init__.pyc", "m.pyc", "top.pyc"]


def test_sources_hard_linked_to_one_file_are_each_compiled(tmp_path: Path) -> None:
    """uv links a venv's files from its cache: two venvs' sources can be one file. Only directories are
    compared to find a tree named twice, so each of them is still compiled."""
    first = write_tree(tmp_path / "a", {"m.py": "X = 1\n"})
    (tmp_path / "b").mkdir()
    os.link(first / "m.py", tmp_path / "b/m.py")
    plan = plan_compile([first, tmp_path / "b"], PycOptions(cache=False))
    assert sorted(str(item.source) for item in plan.sources) == [str(first / "m.py"), str(tmp_path / "b/m.py")]
