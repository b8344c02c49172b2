"""The compile engine's guards: what each check, count and clean-up in ``_compile.py`` promises."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli, snapshot, write_tree
from test_commit import _dead_pid
from test_compile import python_that_obeys_permissions
from test_safety import full_snapshot

from hatch_pyc import (
    CommitFailed,
    CompileFailed,
    CompilePlan,
    CompileResult,
    HatchPycError,
    Interrupted,
    InvalidInput,
    OutputFailed,
    PlannedSource,
    PycOptions,
    compile_plan,
    compile_tree,
    find_interpreter,
    plan_compile,
)
from hatch_pyc._commit import Recovery

HERE = find_interpreter(sys.executable)
TAG = HERE.cache_tag


def _limit_file_size_to_64k() -> None:
    """In the child before it runs: files may grow to 64 KiB, and a write past that fails with EFBIG
    (SIGXFSZ ignored) instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


def _compile_with_files_up_to_64k(path: Path) -> subprocess.CompletedProcess[str]:
    """``hatch-pyc compile PATH`` (workers included) where no file may grow past 64 KiB: a real EFBIG."""
    return subprocess.run(
        [sys.executable, "-m", "hatch_pyc", "compile", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true", "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=_limit_file_size_to_64k,
        check=False,
    )


def test_current_pycs_are_recognised_where_os_lacks_o_noctty_and_o_nonblock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick timestamp check opens each pyc read-only with whichever of O_NONBLOCK and O_NOCTTY the
    platform has. Where it has neither (Windows; here ``os`` monkeypatched without them, a fault
    injection: Linux always has both), a second run still finds every pyc current and rewrites none."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/b.py": "B = 2\n"})
    first = compile_tree([tree], PycOptions(levels=(0, 1)))
    assert len(first.compiled) == 3
    before = full_snapshot(tree)
    monkeypatch.delattr(os, "O_NOCTTY")
    monkeypatch.delattr(os, "O_NONBLOCK")
    second = compile_tree([tree], PycOptions(levels=(0, 1)))
    assert (len(second.compiled), sorted(i.relpath for i in second.up_to_date)) == (
        0,
        ["pkg/__init__.py", "pkg/a.py", "pkg/b.py"],
    )
    assert (second.pyc_written, second.pyc_linked) == (0, 0)
    assert full_snapshot(tree) == before


def test_a_deliver_plan_counts_the_pycs_it_hands_back_and_writes_nothing(tmp_path: Path) -> None:
    """A ``deliver`` plan (what wheel conversion runs) writes no file: each pyc comes back in
    ``result.delivered``, and ``pyc_written`` counts them as the pycs the run produced."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    before = full_snapshot(tree)
    plan = CompilePlan(
        interpreter=HERE, options=PycOptions(levels=(0,)), roots=[], sourceless=True, remove_sources=False, deliver=True
    )
    for rel in ("pkg/__init__.py", "pkg/mod.py"):
        source = tree / rel
        info = source.stat()
        plan.sources.append(
            PlannedSource(source, rel, rel, ((0, Path("out") / (rel[:-3] + ".pyc")),), info.st_size, info.st_mtime)
        )
    result = compile_plan(plan)
    assert sorted(result.delivered) == [Path("out/pkg/__init__.pyc"), Path("out/pkg/mod.pyc")]
    assert (result.pyc_written, result.pyc_linked, result.records, result.stripped) == (2, 0, [], [])
    assert full_snapshot(tree) == before


def test_the_run_time_is_the_time_the_run_took(tmp_path: Path) -> None:
    """``result.seconds`` (printed as "in N.NN s" and in --json) is the run's duration: not negative, and
    no longer than the call to compile_tree took."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    started = time.perf_counter()
    result = compile_tree([tree])
    took = time.perf_counter() - started
    assert len(result.compiled) == 2
    assert 0 <= result.seconds <= took


def test_strip_removes_the_stripped_modules_cached_pycs_and_the_emptied_pycache(tmp_path: Path) -> None:
    """A tree compiled before into ``__pycache__`` then stripped: every cached pyc of a stripped module
    goes (any tag, any level), a ``__pycache__`` left empty goes with them, and one that still holds
    another module's pycs (an excluded module's) stays with exactly those."""
    tree = write_tree(
        tmp_path / "tree",
        {"app/__init__.py": "", "app/a.py": "A = 1\n", "lib/__init__.py": "", "lib/b.py": "B = 1\n", "lib/keep.py": ""},
    )
    compile_tree([tree], PycOptions(levels=(0, 1)))
    (tree / "app/__pycache__/a.cpython-399.pyc").write_bytes(b"another tag's pyc")  # a stale one of any tag
    (tree / "app/__pycache__/ab.cpython-399.pyc").write_bytes(b"another module's")  # not a's: ab
    result = compile_tree([tree], PycOptions(strip=True, exclude=("lib/keep.py",)))
    assert sorted(p.relative_to(tree).as_posix() for p in result.stripped) == [
        "app/__init__.py",
        "app/a.py",
        "lib/__init__.py",
        "lib/b.py",
    ]
    assert sorted(full_snapshot(tree)) == [
        "app/",
        "app/__init__.pyc",
        "app/__pycache__/",
        "app/__pycache__/ab.cpython-399.pyc",
        "app/a.pyc",
        "lib/",
        "lib/__init__.pyc",
        "lib/__pycache__/",
        f"lib/__pycache__/keep.{TAG}.opt-1.pyc",
        f"lib/__pycache__/keep.{TAG}.pyc",
        "lib/b.pyc",
        "lib/keep.py",
    ]
    # Once the last module of a package is stripped, its __pycache__ is gone too.
    (tree / "app/__pycache__/ab.cpython-399.pyc").unlink()
    write_tree(tree, {"app/c.py": "C = 1\n"})
    compile_tree([tree], PycOptions(levels=(0,)))
    assert sorted(os.listdir(tree / "app/__pycache__")) == [f"c.{TAG}.pyc"]
    again = compile_tree([tree], PycOptions(strip=True, exclude=("lib/keep.py",)))
    assert [p.relative_to(tree).as_posix() for p in again.stripped] == ["app/c.py"]
    assert sorted(os.listdir(tree / "app")) == ["__init__.pyc", "a.pyc", "c.pyc"]


def test_a_record_that_cannot_be_written_names_it_and_changes_nothing(tmp_path: Path) -> None:
    """The new RECORD cannot be written (the file size limit, RLIMIT_FSIZE, is below its size: the write
    fails with EFBIG and no file name): the error names that RECORD, not the one written before it (an
    earlier distribution's, small enough), the run exits 2 and the tree is as it was, temporaries
    included. The pycs are small enough to be written under the limit."""
    rows = "".join(f"demo/data/file{i:05}.txt,sha256=abc,1\n" for i in range(3000))
    site = write_tree(
        tmp_path / "site",
        {
            "alpha/__init__.py": "A = 1\n",
            "alpha-1.0.dist-info/METADATA": "Name: alpha\nVersion: 1.0\n",
            "alpha-1.0.dist-info/RECORD": "alpha/__init__.py,,\nalpha-1.0.dist-info/RECORD,,\n",
            "demo/__init__.py": "X = 1\n",
            "demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
            "demo-1.0.dist-info/RECORD": "demo/__init__.py,,\n" + rows + "demo-1.0.dist-info/RECORD,,\n",
        },
    )
    record = site / "demo-1.0.dist-info/RECORD"
    assert record.stat().st_size > 65536
    before = full_snapshot(site)

    done = _compile_with_files_up_to_64k(site)
    assert (done.returncode, done.stderr) == (
        2,
        f"hatch-pyc: error: {record}: cannot write the new RECORD (File too large); nothing was changed\n",
    )
    assert full_snapshot(site) == before


def test_a_commit_whose_undo_fails_says_what_is_left_to_put_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit fails (the source cannot be set aside) and undoing it fails too (the new pyc cannot be
    removed again): the run raises CommitFailed naming what is left, not an OutputFailed claiming that
    nothing was changed. Both failures are injected (``os.rename`` and ``os.unlink`` monkeypatched for
    these two paths): the tests run as root, whom no permission stops, and nothing real fails between
    two steps of one commit."""
    tree = write_tree(tmp_path / "tree", {"mod.py": "X = 1\n"})
    source, pyc = tree / "mod.py", tree / "mod.pyc"
    real_rename, real_unlink = os.rename, os.unlink

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: object) -> None:
        if Path(src) == source:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src))
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    def unlink(path: str | os.PathLike[str], **kwargs: object) -> None:
        if Path(path) == pyc:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        real_unlink(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(CommitFailed) as failed:
        compile_tree([tree], PycOptions(strip=True))
    monkeypatch.undo()
    assert type(failed.value) is CommitFailed
    assert str(failed.value) == (
        f"the commit failed and could not be undone entirely: {pyc}: Permission denied; "
        "re-run the command to complete it"
    )
    assert sorted(os.listdir(tree)) == ["mod.py", "mod.pyc"]  # the pyc the undo could not remove


def test_recovery_never_follows_a_linked_pycache_out_of_the_tree(tmp_path: Path) -> None:
    """A ``__pycache__`` that is a link, in a directory with no source (the plan only refuses one beside a
    source): the clean-up after a killed run does not look through it, so a file named like a set-aside
    leftover where it points is not put back under its original name there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f".notes.txt.{_dead_pid()}-deadbeef.hatch-pyc-old").write_text("not the tree's\n")
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/data/table.csv": "a,b\n"})
    (tree / "pkg/data/__pycache__").symlink_to(outside, target_is_directory=True)
    before_outside = full_snapshot(outside)
    result = compile_tree([tree])
    assert [i.relpath for i in result.compiled] == ["pkg/__init__.py"]
    assert result.recovery == Recovery()
    assert full_snapshot(outside) == before_outside


def test_a_killed_runs_record_leftovers_in_dist_info_are_cleaned_up(tmp_path: Path) -> None:
    """A run killed while committing left its new RECORD's temporary and the old RECORD's backup in the
    ``.dist-info``: the next run over that site-packages removes both (and says so), then writes the
    RECORD anew."""
    dead = _dead_pid()
    site = write_tree(
        tmp_path / "site",
        {
            "demo/__init__.py": "X = 1\n",
            "demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
            "demo-1.0.dist-info/RECORD": "demo/__init__.py,,\ndemo-1.0.dist-info/RECORD,,\n",
        },
    )
    dist_info = site / "demo-1.0.dist-info"
    tmp = dist_info / f".RECORD.{dead}-deadbeef.hatch-pyc-tmp"
    old = dist_info / f".RECORD.{dead}-deadbeef.hatch-pyc-old"
    tmp.write_text("half a RECORD\n")
    old.write_text("an older RECORD\n")
    result = compile_tree([site])
    assert (result.recovery.restored, result.recovery.removed, result.recovery.kept) == ([], [old, tmp], [])
    assert sorted(os.listdir(dist_info)) == ["METADATA", "RECORD"]
    assert result.records == [dist_info / "RECORD"]
    assert (dist_info / "RECORD").read_text() == (
        f"demo/__init__.py,,\ndemo/__pycache__/__init__.{TAG}.pyc,,\ndemo-1.0.dist-info/RECORD,,\n"
    )


def test_a_run_with_nothing_to_change_leaves_the_records_alone() -> None:
    """A second run over a compiled site-packages has nothing to write: it does not even read the
    distributions' RECORDs, so one it may not read (mode 000; run as ``nobody`` when the tests run as
    root) does not fail it, and every file stays as it was."""
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        site = write_tree(
            base / "site",
            {
                "demo/__init__.py": "X = 1\n",
                "demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
                "demo-1.0.dist-info/RECORD": "demo/__init__.py,,\ndemo-1.0.dist-info/RECORD,,\n",
            },
        )
        python = python_that_obeys_permissions(base)
        run_cli("compile", str(site), "--python", python[-1], check=True)
        record = site / "demo-1.0.dist-info/RECORD"
        before = snapshot(site)
        mode = record.stat().st_mode
        record.chmod(0o000)
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        report = base / "run.json"
        done = subprocess.run(
            [*python, "-m", "hatch_pyc", "compile", str(site), "--python", python[-1], "--json", str(report)],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
        record.chmod(mode)
        assert done.returncode == 0, done.stderr
        summary = json.loads(report.read_text())
        assert (summary["compiled"], summary["up_to_date"], summary["records"]) == (0, 1, [])
        assert snapshot(site) == before


def test_pycs_that_cannot_be_written_name_the_first_directory_and_change_nothing(tmp_path: Path) -> None:
    """Two modules, in two packages, whose pycs are larger than the file size limit (RLIMIT_FSIZE, set
    for the run and inherited by its workers: a real EFBIG for each write): the run exits 2 with one
    error naming the first of the two ``__pycache__`` directories, and the tree is as it was: no pyc,
    no temporary, no ``__pycache__`` left behind."""
    body = "".join(f"S{i} = 'value number {i} of a module too large for the limit'\n" for i in range(3000))
    tree = write_tree(tmp_path / "tree", {"a/__init__.py": "", "a/big.py": body, "b/__init__.py": "", "b/big.py": body})
    before = full_snapshot(tree)
    done = _compile_with_files_up_to_64k(tree)
    assert (done.returncode, done.stderr) == (
        2,
        f"hatch-pyc: error: cannot write pycs in {tree / 'a/__pycache__'}: File too large; nothing was changed\n",
    )
    assert full_snapshot(tree) == before


def test_a_module_kept_as_source_after_one_level_leaves_no_temporary(tmp_path: Path) -> None:
    """``-O 0 -O 1 --on-error keep-source``: level 0 drops a dead ``if not __debug__:`` branch and compiles,
    level 1 keeps it and its 1000 nested lambdas fail (RecursionError). The module stays source, and neither
    the level-0 pyc written under this run's temporary name nor the ``__pycache__`` made for it is left in the
    tree (an image layer built next would have shipped them)."""
    nested = "lambda: " * 1000 + "0"
    tree = write_tree(tmp_path / "t", {"deep/mod.py": f"if not __debug__:\n    X = {nested}\n"})
    target = find_interpreter("3.12")
    result = compile_tree([tree], PycOptions(levels=(0, 1), on_error="keep-source"), python=target.executable)
    assert [str(e).split(": ")[0] for e in result.kept_source] == [str(tree / "deep/mod.py")]
    assert "RecursionError" in str(result.kept_source[0])
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*")) == ["deep", "deep/mod.py"]


@pytest.mark.parametrize("mode", ["timestamp", "checked-hash", "unchecked-hash"])
def test_a_second_run_finds_every_pyc_current_and_rewrites_none(tmp_path: Path, mode: str) -> None:
    """Run twice in the same invalidation mode: the second run finds every pyc current (modules of odd and
    even sizes alike: the header records the size) and rewrites none, so each pyc keeps its inode and mtime."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/odd.py": "A = 11\n", "pkg/even.py": "A = 1\n"})
    assert [(tree / f"pkg/{m}.py").stat().st_size % 2 for m in ("odd", "even")] == [1, 0]
    options = PycOptions(invalidation=mode)  # type: ignore[arg-type]
    first = compile_tree([tree], options)
    assert (len(first.compiled), first.pyc_written) == (3, 3)
    pycs = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tree.rglob("*.pyc")}
    assert len(pycs) == 3
    second = compile_tree([tree], options)
    assert (len(second.compiled), sorted(i.relpath for i in second.up_to_date), second.pyc_written) == (
        0,
        ["pkg/__init__.py", "pkg/even.py", "pkg/odd.py"],
        0,
    )
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tree.rglob("*.pyc")} == pycs


def test_the_third_record_that_cannot_be_written_is_the_one_named(tmp_path: Path) -> None:
    """Three distributions: the new RECORDs of the first two (alpha, beta) are small enough for the file size
    limit (RLIMIT_FSIZE), the third (demo) is not, and its write fails with EFBIG and no file name: the error
    names demo's RECORD, the last one the run tried (not the first nor the second written before it), the
    run exits 2 and the tree is as it was, temporaries included."""
    rows = "".join(f"demo/data/file{i:05}.txt,sha256=abc,1\n" for i in range(3000))
    site = write_tree(
        tmp_path / "site",
        {
            "alpha/__init__.py": "A = 1\n",
            "alpha-1.0.dist-info/METADATA": "Name: alpha\nVersion: 1.0\n",
            "alpha-1.0.dist-info/RECORD": "alpha/__init__.py,,\nalpha-1.0.dist-info/RECORD,,\n",
            "beta/__init__.py": "B = 1\n",
            "beta-1.0.dist-info/METADATA": "Name: beta\nVersion: 1.0\n",
            "beta-1.0.dist-info/RECORD": "beta/__init__.py,,\nbeta-1.0.dist-info/RECORD,,\n",
            "demo/__init__.py": "X = 1\n",
            "demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
            "demo-1.0.dist-info/RECORD": "demo/__init__.py,,\n" + rows + "demo-1.0.dist-info/RECORD,,\n",
        },
    )
    record = site / "demo-1.0.dist-info/RECORD"
    before = full_snapshot(site)
    done = _compile_with_files_up_to_64k(site)
    assert (done.returncode, done.stderr) == (
        2,
        f"hatch-pyc: error: {record}: cannot write the new RECORD (File too large); nothing was changed\n",
    )
    assert full_snapshot(site) == before


def test_a_killed_runs_leftovers_in_pycache_are_cleaned_up(tmp_path: Path) -> None:
    """A run killed while committing left, in a ``__pycache__``, the temporary of a pyc it was writing and the
    backup of the pyc it was replacing: the next run over the tree removes both (and says so in
    ``result.recovery``), and the ``__pycache__`` holds only the pycs again."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "M = 1\n"})
    compile_tree([tree])
    cache = tree / "pkg/__pycache__"
    pycs = sorted(os.listdir(cache))
    assert pycs == [f"__init__.{TAG}.pyc", f"mod.{TAG}.pyc"]
    dead = _dead_pid()
    tmp = cache / f".mod.{TAG}.pyc.{dead}-deadbeef.hatch-pyc-tmp"
    old = cache / f".mod.{TAG}.pyc.{dead}-deadbeef.hatch-pyc-old"
    tmp.write_bytes(b"half a pyc")
    old.write_bytes(b"the pyc before")
    result = compile_tree([tree])
    assert (result.recovery.restored, result.recovery.removed, result.recovery.kept) == ([], [old, tmp], [])
    assert sorted(os.listdir(cache)) == pycs


def test_names_like_a_killed_runs_leftovers_that_hold_what_no_run_makes_are_left_alone(tmp_path: Path) -> None:
    """Found by an adversarial review: a name of the form a run gives its temporaries (with a dead pid) was taken for
    a killed run's leftover whatever it was. Now a directory named as set aside is left alone (a run sets aside only
    files) and walked like any other; a ``__pycache__`` named as staged is removed only if it holds nothing but pycs;
    in a ``.dist-info`` (another distribution's, outside the named path) only a RECORD's leftovers are touched.
    What is left alone is named in a warning, and the run goes on."""
    dead = f"{_dead_pid()}-deadbeef"
    site = write_tree(
        tmp_path / "site",
        {
            "pkg/__init__.py": "",
            "pkg/mod.py": "M = 1\n",
            f"pkg/.data.{dead}.hatch-pyc-old/inner.py": "I = 1\n",  # a user's directory
            f"pkg/.__pycache__.{dead}.hatch-pyc-tmp/notes.txt": "mine\n",  # not only pycs
            f"pkg/.__pycache__.{dead}.hatch-pyc-tmp/mod.{TAG}.pyc": "?",
            f"pkg/sub/.__pycache__.{dead}.hatch-pyc-tmp/a.{TAG}.pyc": "half",  # what a killed run staged
            f"pkg/.mod.pyc.{dead}.hatch-pyc-tmp/mod.pyc": "?",  # a pyc's temporary is a file, never a directory
            "pkg/sub/__init__.py": "",
            "pkg/sub/a.py": "A = 1\n",
            "other-1.0.dist-info/RECORD": "other.py,,\n",
            f"other-1.0.dist-info/.notes.{dead}.hatch-pyc-old": "a user's file, not a RECORD\n",
            f"other-1.0.dist-info/.RECORD.{dead}.hatch-pyc-tmp": "half a RECORD\n",  # a killed run's: removed
        },
    )
    user_dir, user_cache = site / f"pkg/.data.{dead}.hatch-pyc-old", site / f"pkg/.__pycache__.{dead}.hatch-pyc-tmp"
    before_cache = full_snapshot(user_cache)
    done = run_cli("compile", "--strip", str(site / "pkg"))
    assert done.returncode == 0, done.stderr
    assert "0 set-aside files restored, 2 temporaries removed" in done.stderr
    assert sorted(line for line in done.stderr.splitlines() if "not one" in line) == sorted(
        f"hatch-pyc: warning: {path}: named like a killed run's leftover but not one; taken for the user's"
        for path in (user_cache, site / f"pkg/.mod.pyc.{dead}.hatch-pyc-tmp")  # user_dir: no name a run sets aside
    )
    assert os.listdir(user_dir) == ["inner.py"]  # never renamed to pkg/data; walked: not importable, so kept
    assert "1 kept as source (outside packages" in done.stderr
    assert not (site / "pkg/data").exists()
    assert full_snapshot(user_cache) == before_cache
    assert sorted(os.listdir(site / "pkg/sub")) == ["__init__.pyc", "a.pyc"]  # the staged __pycache__ of pycs is gone
    assert sorted(os.listdir(site / "other-1.0.dist-info")) == [f".notes.{dead}.hatch-pyc-old", "RECORD"]


def test_a_run_carries_out_the_plan_it_was_given(tmp_path: Path) -> None:
    """``compile_plan`` carries out the plan ``plan_compile`` made: a module added to the tree in between (nothing
    a killed run left had to be put back) is not compiled, counted or given a pyc."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    plan = plan_compile([tree], PycOptions())
    write_tree(tree, {"pkg/late.py": "L = 1\n"})
    result = compile_plan(plan)
    assert [i.relpath for i in result.compiled] == ["pkg/__init__.py", "pkg/a.py"]
    assert len(result.plan.sources) == 2
    assert sorted(os.listdir(tree / "pkg/__pycache__")) == [f"__init__.{TAG}.pyc", f"a.{TAG}.pyc"]


def test_a_directory_where_a_pyc_goes_fails_the_commit_naming_it(tmp_path: Path) -> None:
    """A directory sits where one module's pyc goes (``--force``: every pyc is to be written anew): the workers
    write every pyc under its temporary name, then the commit cannot put that one in place. The error names
    that path and says what could not be done, the other modules' pycs already moved into place are taken back,
    the run exits 2 and the tree is as it was."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n", "pkg/b.py": "B = 1\n"})
    in_the_way = tree / f"pkg/__pycache__/b.{TAG}.pyc"
    in_the_way.mkdir(parents=True)
    before = full_snapshot(tree)
    # --force, and without it: the check for current timestamp pycs looks at that path first and must take a
    # directory there for "not current" (it used to fail with "error: 3: Is a directory")
    for force in (["--force"], []):
        done = run_cli("compile", *force, str(tree))
        assert (done.returncode, done.stderr) == (
            2,
            f"hatch-pyc: error: {in_the_way}: cannot replace it (a directory where the pyc goes); "
            "the commit was undone, nothing was changed\n",
        )
        assert full_snapshot(tree) == before


def test_a_root_that_cannot_be_listed_does_not_stop_the_next_ones_clean_up() -> None:
    """Two paths: a package in a directory the user may enter but not list (mode 711; the run is as ``nobody``
    when the tests run as root), then a site-packages where a killed run left its new RECORD's temporary.
    Looking for such leftovers in the first import root fails quietly: the run compiles both, removes the
    second root's leftover, and rewrites that RECORD."""
    dead = _dead_pid()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        write_tree(
            base,
            {
                "opaque/pkg/__init__.py": "",
                "opaque/pkg/mod.py": "M = 1\n",
                "site/demo/__init__.py": "X = 1\n",
                "site/demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
                "site/demo-1.0.dist-info/RECORD": "demo/__init__.py,,\ndemo-1.0.dist-info/RECORD,,\n",
                f"site/demo-1.0.dist-info/.RECORD.{dead}-deadbeef.hatch-pyc-tmp": "half a RECORD\n",
            },
        )
        python = python_that_obeys_permissions(base)
        opaque, dist_info = base / "opaque", base / "site/demo-1.0.dist-info"
        opaque.chmod(0o711)
        env = {**os.environ, "PYTHONPATH": str(base / "lib"), "HOME": scratch, "PYTHONDONTWRITEBYTECODE": "1"}
        report = base / "run.json"
        paths = [str(opaque / "pkg"), str(base / "site")]
        try:
            done = subprocess.run(
                [*python, "-m", "hatch_pyc", "compile", *paths, "--python", python[-1], "--json", str(report)],
                check=False,
                capture_output=True,
                text=True,
                env=env,
            )
        finally:
            opaque.chmod(0o755)
        assert done.returncode == 0, done.stderr
        assert "1 temporaries removed" in done.stderr
        summary = json.loads(report.read_text())
        assert (summary["compiled"], summary["records"]) == (3, [str(dist_info / "RECORD")])
        assert sorted(os.listdir(dist_info)) == ["METADATA", "RECORD"]


def test_a_result_made_before_any_run_reports_an_empty_run(tmp_path: Path) -> None:
    """``CompileResult`` (public: what ``compile_plan`` returns) made for a plan that has not run reports an
    empty run: nothing compiled, no pyc, no RECORD rewritten, no time taken."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": ""})
    result = CompileResult(plan_compile([tree], PycOptions()))
    assert (result.compiled, result.up_to_date, result.pyc_written, result.pyc_linked, result.records) == (
        [],
        [],
        0,
        0,
        [],
    )
    assert result.seconds == 0.0


def test_progress_counts_each_module_once_up_to_the_total(tmp_path: Path) -> None:
    """The ``progress`` callback (what draws ``--progress``) gets (done, total): first the modules already
    current, then one more as each other module comes back, compiled or kept as source after an error, ending
    at the total."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": ""})
    compile_tree([tree])
    write_tree(tree, {"pkg/a.py": "A = 1\n", "pkg/b.py": "B = 1\n", "pkg/bad.py": "def (:\n"})
    calls: list[tuple[int, int]] = []
    result = compile_tree(
        [tree], PycOptions(on_error="keep-source"), progress=lambda done, total: calls.append((done, total))
    )
    assert (len(result.up_to_date), len(result.compiled), len(result.kept_source)) == (1, 2, 1)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("existing", [False, True], ids=["new-pycache", "existing-pycache"])
def test_signals_held_during_the_commit_end_the_run_as_the_first_one_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    """SIGINT, then SIGTERM, arrive while the commit moves the pycs into place (sent from inside the first move,
    monkeypatched: a fault injection, as no test can time a real signal to land there): the ``os.rename`` of a new
    ``__pycache__`` staged whole, or the ``os.replace`` of a pyc into one that exists. The commit is completed, then
    the run ends with Interrupted for the first of them, SIGINT (the CLI exits 130, "interrupted"), carrying the
    result: every module compiled, every pyc in place."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    cache = tree / "pkg/__pycache__"
    if existing:
        cache.mkdir()
    sent: list[int] = []

    def moving(real: Callable[..., None]) -> Callable[..., None]:
        def move(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: object) -> None:
            if not sent and cache in (Path(dst), Path(dst).parent):  # pycs moved into place
                for sig in (signal.SIGINT, signal.SIGTERM):
                    sent.append(sig)
                    os.kill(os.getpid(), sig)
            real(src, dst, **kwargs)

        return move

    monkeypatch.setattr(os, "replace", moving(os.replace))
    monkeypatch.setattr(os, "rename", moving(os.rename))
    with pytest.raises(Interrupted) as interrupted:
        compile_tree([tree])
    monkeypatch.undo()
    assert sent == [signal.SIGINT, signal.SIGTERM]
    assert interrupted.value.signum == signal.SIGINT
    result = interrupted.value.result
    assert isinstance(result, CompileResult)
    assert [i.relpath for i in result.compiled] == ["pkg/__init__.py", "pkg/a.py"]
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", "__pycache__", "a.py"]
    assert sorted(os.listdir(cache)) == [f"__init__.{TAG}.pyc", f"a.{TAG}.pyc"]


def _typed_tree(tmp_path: Path) -> Path:
    """A typed package whose ``__init__`` has a hand-written stub: only ``mod`` gets a generated one."""
    return write_tree(
        tmp_path / "tree",
        {
            "pkg/__init__.py": "from pkg.mod import f\n",
            "pkg/__init__.pyi": "from pkg.mod import f as f\n",
            "pkg/mod.py": "def f(x: int) -> int:\n    return x + 1\n",
            "pkg/py.typed": "",
        },
    )


def test_a_stub_is_made_beside_a_package_whose_init_has_its_own(tmp_path: Path) -> None:
    """The hand-written ``__init__.pyi`` is kept byte for byte; ``mod.pyi`` is generated (stubgen is given the
    package's ``__init__.py`` for context), with no write bit for anyone but the owner."""
    tree = _typed_tree(tmp_path)
    (tree / "pkg/mod.py").chmod(0o777)
    result = compile_tree([tree], PycOptions(strip=True, stubs="typed", cache=False))
    assert sorted(p.relative_to(tree).as_posix() for p in result.stubs) == ["pkg/mod.pyi"]
    assert (tree / "pkg/__init__.pyi").read_text() == "from pkg.mod import f as f\n"
    assert "def f(x: int) -> int: ..." in (tree / "pkg/mod.pyi").read_text()
    assert stat_mode(tree / "pkg/mod.pyi") & 0o133 == 0


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_stub_that_cannot_be_written_names_it_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _typed_tree(tmp_path)
    before = full_snapshot(tree)
    real_open = os.open

    def refusing(path: str | os.PathLike[str], flags: int, *args: object, **kwargs: object) -> int:
        if Path(path).name.startswith(".mod.pyi."):  # the stub's temporary
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(OutputFailed) as failed:
        compile_tree([tree], PycOptions(strip=True, stubs="typed", cache=False))
    monkeypatch.undo()
    assert str(failed.value) == (
        f"{tree / 'pkg/mod.pyi'}: cannot write the type stub (No space left on device); nothing was changed"
    )
    assert full_snapshot(tree) == before


def test_a_source_that_cannot_be_removed_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripping: the rename that sets a source aside fails; the error says the source could not be removed (not
    replaced), and the commit is undone."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    before = full_snapshot(tree)
    real_rename = os.rename

    def refusing(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: object) -> None:
        if Path(src) == tree / "pkg/a.py":
            raise PermissionError(errno.EACCES, "Permission denied", str(src))
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", refusing)
    with pytest.raises(OutputFailed) as failed:
        compile_tree([tree], PycOptions(strip=True, cache=False))
    monkeypatch.undo()
    assert str(failed.value) == (
        f"{tree / 'pkg/a.py'}: cannot remove it (Permission denied); the commit was undone, nothing was changed"
    )
    assert full_snapshot(tree) == before


def test_a_pyc_whose_header_cannot_be_read_is_not_taken_as_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a pyc's header fails (an I/O error after it opened): it is not current, so it is written again,
    and the run goes on."""
    from hatch_pyc import _cache  # read_regular_file, which the up-to-date check reads a pyc's header with

    tree = write_tree(tmp_path / "tree", {"m.py": "X = 1\n"})
    assert compile_tree([tree], PycOptions(cache=False)).pyc_written == 1
    real_open = open

    def failing(file: object, *args: object, **kwargs: object) -> object:
        if isinstance(file, int):  # the descriptor of a pyc being checked
            raise OSError(errno.EIO, "Input/output error")
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(_cache, "open", failing, raising=False)
    again = compile_tree([tree], PycOptions(cache=False))
    monkeypatch.undo()
    assert (again.pyc_written, len(again.up_to_date)) == (1, 0)


def test_every_import_root_gets_its_stubs_when_the_first_has_none_to_make(tmp_path: Path) -> None:
    """Two trees in one run: the first (by path) has no typed package, the second has one: its stub is made."""
    plain = write_tree(tmp_path / "a-plain", {"p/__init__.py": "", "p/m.py": "def g(x): return x\n"})
    typed = write_tree(tmp_path / "b-typed", {"t/__init__.py": "", "t/py.typed": "", "t/m.py": "def f() -> int: ...\n"})
    result = compile_tree([plain, typed], PycOptions(strip=True, stubs="typed", cache=False))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in result.stubs) == [
        "b-typed/t/__init__.pyi",
        "b-typed/t/m.pyi",
    ]


def test_without_stubgen_the_first_module_that_needs_a_stub_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hatch_pyc import _compile

    trees = [write_tree(tmp_path / name, {"t/__init__.py": "", "t/py.typed": "", "t/m.py": "X = 1\n"}) for name in "ab"]
    before = full_snapshot(tmp_path)
    monkeypatch.setattr(_compile, "stubgen_missing", lambda: "mypy is not installed")
    with pytest.raises(InvalidInput) as refused:
        compile_tree(trees, PycOptions(strip=True, stubs="typed", cache=False))
    assert str(refused.value) == (
        f"{trees[0] / 't/__init__.py'}: its type stub cannot be made: mypy is not installed; or leave out --stubs"
    )
    assert full_snapshot(tmp_path) == before


def test_a_source_that_cannot_be_read_for_its_stub_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _typed_tree(tmp_path)
    before = full_snapshot(tree)
    real_read = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self == tree / "pkg/mod.py":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(InvalidInput) as refused:
        compile_tree([tree], PycOptions(strip=True, stubs="typed", cache=False))
    monkeypatch.undo()
    assert str(refused.value) == f"{tree / 'pkg/mod.py'}: cannot read it for its type stub (Permission denied)"
    assert full_snapshot(tree) == before


def test_a_distribution_the_run_does_not_touch_leaves_the_next_ones_record_updated(tmp_path: Path) -> None:
    """Two distributions: the first (by name) has no module this run compiles, so its RECORD stays as it is; the
    second's RECORD gets its pyc."""
    site = write_tree(
        tmp_path / "site",
        {
            "aaa-1.0.dist-info/METADATA": "Name: aaa\nVersion: 1.0\n",
            "aaa-1.0.dist-info/RECORD": "aaa.txt,,\naaa-1.0.dist-info/RECORD,,\n",
            "aaa.txt": "data\n",
            "zzz/__init__.py": "Z = 1\n",
            "zzz-1.0.dist-info/METADATA": "Name: zzz\nVersion: 1.0\n",
            "zzz-1.0.dist-info/RECORD": "zzz/__init__.py,,\nzzz-1.0.dist-info/RECORD,,\n",
        },
    )
    result = compile_tree([site], PycOptions(cache=False))
    assert result.records == [site / "zzz-1.0.dist-info/RECORD"]
    assert (site / "aaa-1.0.dist-info/RECORD").read_text() == "aaa.txt,,\naaa-1.0.dist-info/RECORD,,\n"
    assert f"zzz/__pycache__/__init__.{TAG}.pyc,," in (site / "zzz-1.0.dist-info/RECORD").read_text()


def test_an_import_root_that_cannot_be_listed_does_not_stop_the_next_ones_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery looks for a killed run's leftovers in each import root's .dist-info directories: a root it cannot
    list (listed first) is passed over, and the next root's leftover RECORD temporary is still removed."""
    dead = _dead_pid()
    first = write_tree(tmp_path / "a", {"x.py": "X = 1\n"})
    site = write_tree(
        tmp_path / "site",
        {
            "demo/__init__.py": "X = 1\n",
            "demo-1.0.dist-info/METADATA": "Name: demo\nVersion: 1.0\n",
            "demo-1.0.dist-info/RECORD": "demo/__init__.py,,\ndemo-1.0.dist-info/RECORD,,\n",
        },
    )
    leftover = site / "demo-1.0.dist-info" / f".RECORD.{dead}-deadbeef.hatch-pyc-tmp"
    leftover.write_text("half a RECORD\n")
    real_listdir = os.listdir

    def listdir(path: str | os.PathLike[str] = ".") -> list[str]:
        if Path(path) == first:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    result = compile_tree([first, site], PycOptions(cache=False))
    monkeypatch.undo()
    assert result.recovery.removed == [leftover]
    assert not leftover.exists()


def test_a_worker_that_dies_is_reported_in_one_line_and_leaves_no_pipe_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that exits at once (here: a script that fails) stops the run with its last line; its pipes are all
    closed, the one it was fed included (left open, it was a ResourceWarning wherever it was collected: under
    ``-W error``, a test much later failed on it)."""
    import gc

    import hatch_pyc._pool as pool

    script = tmp_path / "_worker.py"
    script.write_text("import sys\nsys.exit('boom')\n")
    monkeypatch.setattr(pool, "WORKER_SCRIPT", script)
    unraisable: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda hook: unraisable.append(hook.exc_value))
    # "(exit 1)" when the worker has been reaped by the time its end is read, which is not always the case
    with pytest.raises(pool.WorkerCrashed, match=r"^compile worker stopped: boom( \(exit 1\))?$"):
        pool.run_tasks(find_interpreter(sys.executable), [(1, {"src": "x"})], 1, lambda task, answer: None)
    gc.collect()
    assert unraisable == []


def test_a_worker_that_ends_before_all_of_its_delivered_bytes_is_reported_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivered pyc's bytes follow the answer's line: a worker whose output ends before as many bytes as its
    answer announced stops the run (one line), instead of handing on a pyc cut short."""
    import hatch_pyc._pool as pool

    script = tmp_path / "_worker.py"
    script.write_text(
        "import sys\nsys.stdin.readline()\n"
        'sys.stdout.buffer.write(b\'[{"ok": [], "payload": 10}]\\nshort\')\n'
        "sys.stdout.flush()\nsys.exit('cut short')\n"
    )
    monkeypatch.setattr(pool, "WORKER_SCRIPT", script)
    with pytest.raises(pool.WorkerCrashed, match=r"^compile worker stopped: cut short( \(exit 1\))?$"):
        pool.run_tasks(find_interpreter(sys.executable), [(1, {"src": "x"})], 1, lambda task, answer: None)


def test_a_worker_that_dies_inside_its_answer_line_is_reported_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose output ends in the middle of its answer's line (killed while writing it) stops the run with
    one line, not a JSON decoding traceback."""
    import hatch_pyc._pool as pool

    script = tmp_path / "_worker.py"
    script.write_text(
        "import sys\nsys.stdin.readline()\nsys.stdout.buffer.write(b'[{\"ok\": [')\n"
        "sys.stdout.flush()\nsys.exit('killed')\n"
    )
    monkeypatch.setattr(pool, "WORKER_SCRIPT", script)
    with pytest.raises(pool.WorkerCrashed, match=r"^compile worker stopped: killed( \(exit 1\))?$"):
        pool.run_tasks(find_interpreter(sys.executable), [(1, {"src": "x"})], 1, lambda task, answer: None)


def test_a_wheel_a_worker_refuses_leaves_no_worker_running(tmp_path: Path) -> None:
    """A module whose bytes are not what RECORD says is found by the worker that reads it: the run fails after the
    workers started, and none is left running (nor a zombie)."""
    from test_wheel import make_wheel

    from hatch_pyc import convert_wheels

    files = {"demo/__init__.py": "", "demo/core.py": "X = 1\n"}
    wheel = make_wheel(tmp_path, files, record_override={"demo/core.py": ("sha256=" + "A" * 43, "6")})
    before = _worker_children()
    with pytest.raises(HatchPycError, match="didn't match RECORD"):
        convert_wheels([wheel], tmp_path / "out", [find_interpreter(sys.executable)], PycOptions(cache=False))
    assert _worker_children() <= before


def test_a_tree_that_fails_to_compile_leaves_no_worker_running(tmp_path: Path) -> None:
    """A syntax error fails the run after the workers compiled: none is left running, through the library and
    through the CLI under a parent that adopts its orphans (a subreaper: a worker the CLI left would be found)."""
    tree = tmp_path / "app"
    write_tree(tree, {"app/__init__.py": "X = 1\n", "app/broken.py": "def (:\n"})
    before = _worker_children()
    with pytest.raises(CompileFailed, match="broken"):
        compile_tree([tree], PycOptions(cache=False), python=sys.executable)
    assert _worker_children() <= before
    probe = f"""
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
proc = subprocess.run([sys.executable, "-m", "hatch_pyc", "compile", {str(tree)!r}, "--no-cache"],
                      capture_output=True, text=True)
time.sleep(0.5)
def status(pid):
    try:
        with open(f"/proc/{{pid}}/status") as handle:
            return handle.read()
    except OSError:  # it ended meanwhile
        return ""
left = [p for p in os.listdir("/proc") if p.isdigit() and f"PPid:\\t{{os.getpid()}}\\n" in status(p)]
print(json.dumps([proc.returncode, proc.stderr, left]))
"""
    code, stderr, left = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    assert code != 0 and "broken.py" in stderr and "Traceback" not in stderr
    assert left == []


def _worker_children() -> set[int]:
    """This process's children running the compile worker, and its zombies (children not waited for: a test
    compares what it finds after its run with what was there before, which other tests may have left)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{os.getpid()}\n" in status and (b"_worker.py" in command or "State:\tZ" in status):
            found.add(int(entry.name))
    return found


def test_a_new_pycache_arrives_whole_and_a_failed_run_leaves_none(tmp_path: Path) -> None:
    """A directory without ``__pycache__`` gets its pycs in a hidden directory of the run, renamed into place by the
    commit: after the run, only ``__pycache__`` is new in it. A run that fails (a syntax error) leaves no
    ``__pycache__`` and no hidden directory anywhere: the tree is as it was."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/m.py": "M = 1\n"})
    before = full_snapshot(tree)
    write_tree(tree, {"pkg/sub/bad.py": "def (:\n"})
    with pytest.raises(CompileFailed):
        compile_tree([tree])
    (tree / "pkg/sub/bad.py").unlink()
    assert full_snapshot(tree) == before
    result = compile_tree([tree])
    assert (result.pyc_written, result.recovery) == (3, Recovery())
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", "__pycache__", "sub"]
    assert sorted(os.listdir(tree / "pkg/sub")) == ["__init__.py", "__pycache__", "m.py"]
    assert sorted(os.listdir(tree / "pkg/sub/__pycache__")) == [f"__init__.{TAG}.pyc", f"m.{TAG}.pyc"]


def test_a_pycache_made_during_the_run_keeps_what_it_holds_and_gets_the_pycs(tmp_path: Path) -> None:
    """A ``__pycache__`` that appears while the run compiles (an import, another tool) in a directory that had
    none: the commit cannot rename its staged directory there, so it moves the pycs into it one by one; what was
    put there meanwhile stays, and no hidden directory is left."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    plan = plan_compile([tree], PycOptions())
    made: list[bool] = []

    def progress(done: int, total: int) -> None:
        if done and not made:  # the workers are under way: the plan said there was no __pycache__
            made.append(True)
            write_tree(tree, {"pkg/__pycache__/other.txt": "someone else's\n"})

    result = compile_plan(plan, progress=progress)
    assert made and result.pyc_written == 2
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", "__pycache__", "a.py"]
    assert sorted(os.listdir(tree / "pkg/__pycache__")) == [f"__init__.{TAG}.pyc", f"a.{TAG}.pyc", "other.txt"]
    assert (tree / "pkg/__pycache__/other.txt").read_text() == "someone else's\n"


@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_pycache_made_during_the_run_as_no_directory_fails_the_run_and_changes_nothing(
    tmp_path: Path, kind: str
) -> None:
    """What appears where a new ``__pycache__`` goes while the run compiles is a link (to a directory outside the
    tree) or a file: nothing is written through it or over it. The run fails naming it, and every other directory's
    ``__pycache__``, already renamed into place, is taken back: the tree is as it was, bar what appeared."""
    tree = write_tree(
        tmp_path / "tree", {"a/__init__.py": "", "a/m.py": "M = 1\n", "b/__init__.py": "", "b/m.py": "M = 2\n"}
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    plan = plan_compile([tree], PycOptions())

    def progress(done: int, total: int) -> None:
        if done == total:  # every pyc written: the commit comes next
            if kind == "link":
                (tree / "b/__pycache__").symlink_to(outside, target_is_directory=True)
            else:
                (tree / "b/__pycache__").write_text("a file\n")

    with pytest.raises(OutputFailed, match=r"b/__pycache__: cannot replace it \(not a directory where pycs go\)"):
        compile_plan(plan, progress=progress)
    assert os.listdir(outside) == []
    assert sorted(os.listdir(tree / "a")) == ["__init__.py", "m.py"]
    assert sorted(os.listdir(tree / "b")) == ["__init__.py", "__pycache__", "m.py"]


def test_a_killed_runs_staged_pycache_is_removed_and_not_compiled(tmp_path: Path) -> None:
    """A run killed before its commit left a hidden ``__pycache__`` it was writing (``.__pycache__.<pid>-<8
    hex>.hatch-pyc-tmp``, its process gone): the next run removes it with the pycs it holds. The walk does not go
    into one (a ``.py`` there is no module). One a running process is writing, and a directory of that form for a
    name the run does not write, stay (the latter, being no ``__pycache__``, is walked like any other)."""
    dead = _dead_pid()
    tree = write_tree(
        tmp_path / "tree",
        {
            "pkg/__init__.py": "",
            f"pkg/.__pycache__.{dead}-deadbeef.hatch-pyc-tmp/__init__.{TAG}.pyc": "half a pyc",
            f"pkg/.__pycache__.{dead}-deadbeef.hatch-pyc-tmp/.mod.{TAG}.pyc.{dead}-deadbeef.hatch-pyc-tmp": "half",
            f"other/.__pycache__.{os.getpid()}-deadbeef.hatch-pyc-tmp/x.py": "X = 1\n",
            f"other/.data.{dead}-deadbeef.hatch-pyc-tmp/y.py": "Y = 1\n",
            "other/o.py": "O = 1\n",
        },
    )
    result = compile_tree([tree / "pkg", tree / "other"])
    assert result.recovery.removed == [tree / f"pkg/.__pycache__.{dead}-deadbeef.hatch-pyc-tmp"]
    # the directory of that form that is no __pycache__ is walked like any other
    data = f".data.{dead}-deadbeef.hatch-pyc-tmp"
    assert sorted(i.relpath for i in result.compiled) == [f"{data}/y.py", "o.py", "pkg/__init__.py"]
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", "__pycache__"]
    assert sorted(os.listdir(tree / "other")) == [
        f".__pycache__.{os.getpid()}-deadbeef.hatch-pyc-tmp",
        f".data.{dead}-deadbeef.hatch-pyc-tmp",
        "__pycache__",
        "o.py",
    ]


def test_the_pycs_of_a_module_that_failed_part_way_do_not_arrive_with_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module whose worker wrote one of its pycs and then failed (kept as source under ``--on-error
    keep-source``; a fault injection: the worker's answer for ``b.py`` is turned into an error after its pyc was
    written, as no real source fails at one level and not at another): that pyc is removed before the commit, so it
    does not arrive with the staged ``__pycache__`` it is in, nor under its own name in an existing one."""
    import hatch_pyc._compile as engine

    real_on_answer = engine.Run.on_answer

    def on_answer(run: engine.Run, task: dict[str, object], reply: dict[str, object]) -> None:
        if str(task["src"]).endswith("b.py"):
            assert "ok" in reply  # its pyc was written
            reply = {"error": {"kind": "RecursionError", "msg": "injected", "lineno": None}}
        real_on_answer(run, task, reply)

    monkeypatch.setattr(engine.Run, "on_answer", on_answer)
    tree = write_tree(tmp_path / "tree", {"new/a.py": "A = 1\n", "new/b.py": "B = 1\n", "old/a.py": "", "old/b.py": ""})
    (tree / "old/__pycache__").mkdir()
    result = compile_tree([tree / "new", tree / "old"], PycOptions(on_error="keep-source", levels=(0, 1)))
    assert sorted(e.path for e in result.kept_source) == [str(tree / "new/b.py"), str(tree / "old/b.py")]
    for directory in ("new", "old"):
        assert sorted(os.listdir(tree / directory)) == ["__pycache__", "a.py", "b.py"]
        assert sorted(os.listdir(tree / directory / "__pycache__")) == [f"a.{TAG}.opt-1.pyc", f"a.{TAG}.pyc"]


def _limit_descriptors_to_64() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_a_batch_spanning_more_directories_than_descriptors_is_compiled(tmp_path: Path) -> None:
    """Found by an adversarial review: small files share a batch (batches are made by bytes), so a tree of many
    packages with empty ``__init__.py`` puts hundreds of directories in one; a worker that kept each one open failed
    the run with "Too many open files". Under a limit of 64 descriptors, 100 such packages compile."""
    tree = write_tree(tmp_path / "tree", {f"pkg/d{n}/__init__.py": "" for n in range(100)} | {"pkg/__init__.py": ""})
    done = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", "compile", str(tree / "pkg"), "--workers", "1", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true", "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=_limit_descriptors_to_64,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert all((tree / f"pkg/d{n}/__pycache__/__init__.{TAG}.pyc").is_file() for n in range(100))


def test_a_pycache_made_just_before_its_staged_directory_is_renamed_gets_the_pycs_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the commit's rename loses: a ``__pycache__`` holding a file appears after the commit found the name
    free and before it renames the staged directory there (made from inside that ``os.rename``, a fault injection:
    the rename then fails for real, "Directory not empty"). The pycs are moved into it one by one; its file stays."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/a.py": "A = 1\n"})
    cache = tree / "pkg/__pycache__"
    real_rename = os.rename
    made: list[bool] = []

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: object) -> None:
        if Path(dst) == cache and not made:
            made.append(True)
            write_tree(tree, {"pkg/__pycache__/other.txt": "someone else's\n"})
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    result = compile_tree([tree])
    monkeypatch.undo()
    assert made and result.pyc_written == 2
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", "__pycache__", "a.py"]
    assert sorted(os.listdir(cache)) == [f"__init__.{TAG}.pyc", f"a.{TAG}.pyc", "other.txt"]


def test_a_source_edited_while_a_strip_runs_is_kept_with_its_edit(tmp_path: Path) -> None:
    """A sourceless run removes each source only if it still holds what was compiled: a module edited after its
    worker read it (here: once every answer is in, before the commit) fails the run in one line, and the tree is as
    it was but for the edit, which is not lost."""
    tree = tmp_path / "app"
    write_tree(tree, {"app/__init__.py": "X = 1\n", "app/core.py": "Y = 2\n", "app/util.py": "Z = 3\n"})
    plan = plan_compile([tree], PycOptions(strip=True, cache=False), python=sys.executable)
    before = snapshot(tree)

    def edit_when_done(done: int, total: int) -> None:
        if done == total:
            with open(tree / "app" / "core.py", "a") as handle:
                handle.write("EDITED = True\n")

    with pytest.raises(InvalidInput, match=r"core\.py: changed while it was compiled; nothing was changed"):
        compile_plan(plan, progress=edit_when_done)
    after = snapshot(tree)
    assert (tree / "app" / "core.py").read_text() == "Y = 2\nEDITED = True\n"
    assert {k: v for k, v in after.items() if not k.endswith("core.py")} == {
        k: v for k, v in before.items() if not k.endswith("core.py")
    }
    assert not list(tree.rglob("*.pyc"))


@pytest.mark.parametrize(
    ("editor", "saved"),
    [
        # saves in place just before the commit sets the source aside (the pycs already in place): a check made
        # before the commit began would not see this edit, and would remove the source with it
        ("in place", {"core.py": "Y = 2\nEDITED = True\n"}),
        # writes the file anew once the commit has set the old one aside: an adversarial review lost 258 of 300
        # such saves, the undo renaming each old file back over its new one
        ("anew", {"core.py": "core.py saved anew\n", "util.py": "util.py saved anew\n"}),
    ],
)
def test_a_source_saved_while_the_strip_commits_is_kept_with_its_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, editor: str, saved: dict[str, str]
) -> None:
    """An edit saved during the commit itself is not lost: the sources are checked where the commit set them aside
    (and a new file at a source's path counts as changed), the commit is undone, and the undo puts nothing back over
    a save."""
    from hatch_pyc import _commit

    tree = tmp_path / "app"
    write_tree(tree, {"app/__init__.py": "X = 1\n", "app/core.py": "Y = 2\n", "app/util.py": "Z = 3\n"})
    plan = plan_compile([tree], PycOptions(strip=True, cache=False), python=sys.executable)
    before = snapshot(tree)
    set_aside = _commit.Commit.set_aside

    def editor_saves(self: _commit.Commit, path: Path) -> None:
        if editor == "in place" and path.name in saved:
            assert (tree / "app" / "core.pyc").exists()  # the commit is under way
            path.write_text(saved[path.name])
        set_aside(self, path)
        if editor == "anew" and path.name in saved:
            path.write_text(saved[path.name])  # where the source was, now free

    monkeypatch.setattr(_commit.Commit, "set_aside", editor_saves)
    more = f" \\(and {len(saved) - 1} more\\)" if len(saved) > 1 else ""
    with pytest.raises(InvalidInput, match=rf"core\.py: changed while it was compiled{more}; nothing was changed"):
        compile_plan(plan)
    after = snapshot(tree)
    for name, text in saved.items():
        assert (tree / "app" / name).read_text() == text

    def unsaved(files: dict[str, tuple[bytes, int]]) -> dict[str, tuple[bytes, int]]:
        return {k: v for k, v in files.items() if not any(k.endswith(name) for name in saved)}

    assert unsaved(after) == unsaved(before)
    assert not list(tree.rglob("*.pyc"))
    assert sorted(p.name for p in tree.rglob(".*")) == []  # nothing set aside or staged is left


def test_a_source_saved_after_the_commits_last_look_is_not_claimed_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an adversarial review: a source saved anew at its path after the commit checked it (no later look can
    close that window) stayed beside its pyc while the run said it had removed it. Now the run looks again once the
    commit is done: such a source is not counted stripped, and a warning names it."""
    from hatch_pyc import _compile

    tree = write_tree(tmp_path / "app", {"app/__init__.py": "X = 1\n", "app/core.py": "Y = 2\n"})
    plan = plan_compile([tree], PycOptions(strip=True, cache=False), python=sys.executable)
    check = _compile._check_unchanged

    def then_saved(*args: object) -> None:
        check(*args)  # type: ignore[arg-type]
        (tree / "app/core.py").write_text("Y = 3\n")  # where the source was, now free

    monkeypatch.setattr(_compile, "_check_unchanged", then_saved)
    result = compile_plan(plan)
    assert result.stripped == [tree / "app/__init__.py"]
    assert result.notes == [
        f"{tree / 'app/core.py'}: saved again while the run removed it; kept beside its pyc, which it hides "
        "(run again to compile it as it is)"
    ]
    assert sorted(os.listdir(tree / "app")) == ["__init__.pyc", "core.py", "core.pyc"]
    assert (tree / "app/core.py").read_text() == "Y = 3\n"


_ORPHANED = """
import json, os, sys
from hatch_pyc import PycOptions
from hatch_pyc._commit import new_token
from hatch_pyc._compile import _tasks
from hatch_pyc._plan import plan_compile
from hatch_pyc._pool import _Worker

plan = plan_compile([sys.argv[1]], PycOptions(strip=True, cache=False))
_, _, tasks, _ = _tasks(plan, plan.sources, new_token())
worker = _Worker(plan.interpreter)
worker.proc.stdin.write(json.dumps([task for _, task in tasks]).encode() + b"\\n")
worker.proc.stdin.flush()
print(worker.proc.pid, flush=True)
os._exit(0)  # as a SIGKILL would end it: the worker is neither told nor waited for
"""


def test_a_worker_whose_run_was_killed_writes_nothing_more(tmp_path: Path) -> None:
    """Found by an adversarial review: ``kill -9`` ends only the run's own process. Its workers went on with the
    batch they had, writing temporaries named for the dead run after the next run had cleaned up. A worker now checks
    before each module that the run that started it is still there, and stops if not: here the run dies with a batch
    of 40 modules sent and none begun, and not one temporary appears."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", **{f"pkg/m{n}.py": f"N = {n}\n" for n in range(40)}})
    done = subprocess.run(
        [sys.executable, "-c", _ORPHANED, str(tree)], capture_output=True, text=True, check=True, timeout=60
    )
    proc = Path(f"/proc/{int(done.stdout)}")
    deadline = time.monotonic() + 30
    while proc.exists() and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the orphaned worker is still running"
        time.sleep(0.05)
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", *sorted(f"m{n}.py" for n in range(40))]


def test_the_clean_up_keeps_to_what_a_run_leaves_where_the_user_pointed(tmp_path: Path) -> None:
    """Found by an adversarial review of the clean-up after a killed run; each case failed before its fix:

    - a ``.dist-info`` that is a link is not looked into (its leftovers were deleted where it pointed, outside the
      tree, before the run refused the link);
    - in a ``.dist-info`` the walk goes into (the site-packages named), only a RECORD's leftovers are touched (a
      set-aside ``LICENSE`` was renamed back; here one named as a source's, which a tree's rules would put back);
    - beside a file the user named, only that module's leftovers are (a sibling's set-aside source came back);
    - in a tree, only what a run sets aside is put back: a source, a pyc, a stub (a ``notes.txt`` came back);
    - a file with the name of a staged ``__pycache__`` (a run makes only a directory so named) stays, and one named
      as a ``__pycache__`` set aside is not renamed to ``__pycache__`` (no run sets one aside);
    - a ``.py`` in a ``.dist-info`` at the import root is not compiled or stripped (the walk went in, the clean-up
      did not); one deeper in a package is walked as any other directory (here kept: outside packages);
    - a killed run's stub temporary goes, though this run writes no stub;
    - a name ending in a newline after the form (``re.match``'s ``$`` took it) stays, and a killed run's leftover
      of a name holding a newline (``.`` did not match it) is put back.
    """
    dead = f"{_dead_pid()}-deadbeef"
    site = write_tree(
        tmp_path / "site",
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "A = 1\n",
            "pkg/b.pyc": "a sibling's pyc",
            f"pkg/.b.py.{dead}.hatch-pyc-old": "B = 1\n",
            "pkg-1.0.dist-info/RECORD": "pkg/__init__.py,,\npkg/a.py,,\npkg-1.0.dist-info/top.py,,\n",
            "pkg-1.0.dist-info/top.py": "metadata, not a module: neither compiled nor stripped\n",
            "pkg/data/x-1.0.dist-info/helper.py": "H = 1\n",  # not at the import root: walked as any other
            f"pkg-1.0.dist-info/.LICENSE.py.{dead}.hatch-pyc-old": "a user's (a run writes only a RECORD here)\n",
            f"top/.__pycache__.{dead}.hatch-pyc-tmp": "a file, not a staged directory\n",
            f"top/.__pycache__.{dead}.hatch-pyc-old": "a file: no run sets a __pycache__ aside\n",
            f"top/.t.pyi.{dead}.hatch-pyc-tmp": "a killed run's stub: removed, though this run writes none\n",
            f"top/.notes.py.{dead}.hatch-pyc-old\n": "a user's file\n",
            f"top/.notes.txt.{dead}.hatch-pyc-old": "a run sets aside only sources, pycs and stubs\n",
            f"top/.we\nird.py.{dead}.hatch-pyc-old": "W = 1\n",
            "top/t.py": "T = 1\n",
        },
    )
    outside = write_tree(tmp_path / "outside", {f"real.dist-info/.RECORD.{dead}.hatch-pyc-tmp": "not the tree's\n"})
    (site / "other-1.0.dist-info").symlink_to(outside / "real.dist-info", target_is_directory=True)
    before = full_snapshot(outside)

    done = run_cli("compile", "--strip", str(site / "pkg/a.py"))  # one file named
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(site / "pkg")) == sorted(
        ["__init__.py", "a.pyc", "b.pyc", f".b.py.{dead}.hatch-pyc-old", "data"]
    )

    done = run_cli("compile", "--strip", str(site))
    assert done.returncode == 0, done.stderr
    assert full_snapshot(outside) == before
    assert sorted(os.listdir(site / "pkg-1.0.dist-info")) == [f".LICENSE.py.{dead}.hatch-pyc-old", "RECORD", "top.py"]
    assert "; 1 kept as source (outside packages: templates or data);" in done.stderr  # pkg/data/x-1.0.dist-info
    assert (site / "pkg/b.py").exists() is False and (site / "pkg/b.pyc").read_bytes() != b"a sibling's pyc"
    top = sorted(os.listdir(site / "top"))
    user = [f".__pycache__.{dead}.hatch-pyc-{kind}" for kind in ("tmp", "old")]
    user += [f".notes.py.{dead}.hatch-pyc-old\n", f".notes.txt.{dead}.hatch-pyc-old"]
    assert top == sorted([*user, "t.pyc", "we\nird.pyc"])
    assert f"{site / 'top' / f'.__pycache__.{dead}.hatch-pyc-tmp'}: named like a killed run's leftover" in done.stderr


def test_what_the_clean_up_did_is_said_even_when_the_run_then_fails(tmp_path: Path) -> None:
    """Found by an adversarial review: a run that put back a killed run's set-aside source and then failed (a
    syntax error) said only "nothing was changed". The clean-up is now said as it is done, before the run's own
    work; a dry run says what it would put right, and changes nothing."""
    dead = f"{_dead_pid()}-deadbeef"
    tree = write_tree(
        tmp_path / "tree",
        {"pkg/__init__.py": "", "pkg/bad.py": "x = = 1\n", f"pkg/.e.py.{dead}.hatch-pyc-old": "E = 1\n"},
    )
    before = full_snapshot(tree)
    dry = run_cli("compile", "--strip", "--dry-run", str(tree))
    assert dry.returncode == 0, dry.stderr
    assert dry.stderr.splitlines()[0] == (
        "hatch-pyc: would put right what a killed run left: 1 set-aside files restored, 0 temporaries removed "
        "(the restored sources are compiled too)"
    )
    assert full_snapshot(tree) == before
    done = run_cli("compile", "--strip", str(tree))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "hatch-pyc: put right what a killed run left: 1 set-aside files restored, 0 temporaries removed",
        f"hatch-pyc: error: {tree / 'pkg/bad.py'}:1: SyntaxError: invalid syntax; nothing was changed "
        "(--on-error keep-source keeps it as source)",
    ]
    assert (tree / "pkg/e.py").read_text() == "E = 1\n"


def test_running_the_same_command_again_completes_a_killed_strip_of_one_file(tmp_path: Path) -> None:
    """Found by an adversarial review: a strip of one named file, killed once its source was set aside, could never
    be completed by running the same command again: the plan found no such file and failed before the clean-up.
    Now a named source a killed run set aside is put back first; a dry run says what happened and changes nothing."""
    dead = f"{_dead_pid()}-deadbeef"
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", f"pkg/.a.py.{dead}.hatch-pyc-old": "A = 1\n"})
    named = tree / "pkg/a.py"
    dry = run_cli("compile", "--strip", "--dry-run", str(named))
    assert (dry.returncode, dry.stderr) == (
        2,
        f"hatch-pyc: error: {named}: no such file; a killed run set it aside as .a.py.{dead}.hatch-pyc-old, which "
        "the run (not a dry run) puts back first\n",
    )
    done = run_cli("compile", "--strip", str(named))
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "hatch-pyc: put right what a killed run left: 1 set-aside files restored, 0 temporaries removed\n"
    )
    assert sorted(os.listdir(tree / "pkg")) == ["__init__.py", "a.pyc"]


def test_a_named_source_set_aside_behind_a_link_is_named_not_put_back(tmp_path: Path) -> None:
    """A named source a killed run set aside in a directory reached through a link is not put back (the run writes
    nothing through a link): the error names the newest of the set-aside copies, whole, which the user can put back."""
    older, newer = f"{_dead_pid()}-deadbeef", f"{_dead_pid()}-feedbeef"
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", f"pkg/.a.py.{older}.hatch-pyc-old": "A = 0\n"})
    time.sleep(0.05)  # the copies are told apart by when they were set aside
    (tree / f"pkg/.a.py.{newer}.hatch-pyc-old").write_text("A = 1\n")
    (tmp_path / "link").symlink_to(tree / "pkg", target_is_directory=True)
    before = full_snapshot(tree)
    done = run_cli("compile", "--strip", str(tmp_path / "link/a.py"))
    assert (done.returncode, done.stderr) == (
        2,
        f"hatch-pyc: error: {tmp_path / 'link/a.py'}: no such file; a killed run set it aside as "
        f"{tmp_path / 'link' / f'.a.py.{newer}.hatch-pyc-old'}\n",
    )
    assert full_snapshot(tree) == before
