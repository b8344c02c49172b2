"""What the commands print, where, and how they end, as a CI log or a pipe sees them (issue 15, items 3 and
5-7): results on stdout at their natural width, progress and diagnostics on stderr, a closed pipe ends
quietly, a usage error is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli, write_tree

from hatch_pyc import find_interpreter

HERE = find_interpreter(sys.executable)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hatch-pyc`` with its output captured (not a terminal) and no ``COLUMNS`` from this environment."""
    clean = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "hatch_pyc", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        check=False,
    )


def _small_tree(root: Path, modules: int = 3) -> Path:
    files = {"pkg/__init__.py": ""}
    files.update({f"pkg/module_with_a_long_name_{i}.py": f"X = {i}\n" for i in range(modules)})
    return write_tree(root, files)


def test_tables_in_a_log_are_printed_whole_at_their_natural_width(tmp_path: Path) -> None:
    """Off a terminal the report's tables were cut to 80 columns (``sourceless-…``). Three modules, two levels:
    every row is named in full and no cell is cut; ``COLUMNS`` still sets a width when the user wants one."""
    tree = _small_tree(tmp_path / "t")
    modules = [f"pkg.module_with_a_long_name_{i}" for i in range(3)]
    args = ["report", str(tree), "-O", "0", "-O", "2", "--repeat", "2"] + [a for m in modules for a in ("--import", m)]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("│ ")]
    names = [row.split("│")[1].strip() for row in rows]
    variants = ["source", "cache-O0", "cache-O2", "sourceless-O0", "sourceless-O2"]
    assert names == variants * 2  # the size table, then the import-time table
    assert max(len(line) for line in proc.stdout.splitlines()) > 80
    assert all(f"import {m}" in proc.stdout for m in modules)
    narrow = _cli(*args, env={"COLUMNS": "60"})
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60


def test_a_report_of_sizes_only_says_so(tmp_path: Path) -> None:
    proc = _cli("report", str(_small_tree(tmp_path / "t")), "--sizes-only")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header.endswith("levels 0; sizes only (no import timing)"), header
    assert "interleaved rounds" not in proc.stdout


def test_progress_goes_to_stderr_and_stdout_keeps_only_results(tmp_path: Path) -> None:
    """``--progress`` draws the bar where diagnostics go (stderr), even when that is not a terminal; stdout,
    redirected, gets nothing (it got a stray newline, and the bar went nowhere)."""
    tree = _small_tree(tmp_path / "t", modules=3000)  # long enough for the bar to be drawn
    proc = _cli("compile", "--progress", "--workers", "1", str(tree), env={"CI": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "compiling for CPython" in proc.stderr  # the bar's label
    assert "\x1b[2Khatch-pyc: compiled 3001 of 3001 sources for CPython " in proc.stderr  # the bar erased first


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """``hatch-pyc compile --dry-run TREE | head -1``: the reader goes away after one line; the command ends
    as other Unix tools do, with no error message, exit 141 (128 + SIGPIPE), and nothing written."""
    tree = _small_tree(tmp_path / "t", modules=3000)  # a listing larger than a pipe holds
    with subprocess.Popen(
        [sys.executable, "-m", "hatch_pyc", "compile", "--dry-run", str(tree)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
    assert first.startswith(str(tree / "pkg"))
    assert (proc.returncode, err) == (141, "")
    assert not list(tree.rglob("__pycache__"))


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["report", "x", "-O", "5"],
            "hatch-pyc report: error: argument -O/--optimize: invalid choice: 5 (choose from 0, 1, 2); "
            "see hatch-pyc report --help",
        ),
        (
            ["compile", "--workers", "0", "x"],
            "hatch-pyc compile: error: argument --workers: must be at least 1 (got 0); leave it out for one per "
            "CPU; see hatch-pyc compile --help",
        ),
        (
            ["wheel", "--workers", "two", "x.whl", "-o", "out"],
            "hatch-pyc wheel: error: argument --workers: not a whole number: 'two'; see hatch-pyc wheel --help",
        ),
        (
            ["verify", "--workers", "-3", "x"],
            "hatch-pyc verify: error: argument --workers: must be at least 1 (got -3); leave it out for one per "
            "CPU; see hatch-pyc verify --help",
        ),
        ([], "hatch-pyc: error: the following arguments are required: COMMAND; see hatch-pyc --help"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option_and_what_it_allows(args: list[str], line: str) -> None:
    proc = _cli(*args)
    # argparse quotes the choices from CPython 3.14 on ('5', '0'); the line is otherwise the same
    assert (proc.returncode, proc.stdout, proc.stderr.replace("'", "").splitlines()) == (2, "", [line.replace("'", "")])


def test_one_level_says_nothing_of_hard_links(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "t", modules=1)
    one = run_cli("compile", str(tree), check=True)
    assert "hard links" not in one.stderr and "; 2 pyc; " in one.stderr
    two = run_cli("compile", "-O", "0", "-O", "2", str(tree), check=True)
    assert "; 4 pyc (2 hard links to identical levels); " in two.stderr


def test_a_tree_stripped_for_another_cpython_is_named_when_nothing_compiles(
    tmp_path: Path, other_target: object
) -> None:
    """Compiling a sourceless tree for another CPython finds nothing to compile: the run still says "compiled
    0 of 0", and a warning names the pycs that target cannot load and the version they are for."""
    other = find_interpreter(other_target.minor)  # type: ignore[attr-defined]
    tree = _small_tree(tmp_path / "t", modules=2)
    run_cli("compile", "--strip", "--python", other.minor, str(tree), check=True)
    proc = run_cli("compile", "--python", HERE.minor, "--allow-other-python", str(tree))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"hatch-pyc: compiled 0 of 0 sources for CPython {HERE.minor}.")
    assert lines[1:] == [
        f"hatch-pyc: warning: {tree / 'pkg/__init__.pyc'} and 2 more sourceless pycs are for CPython "
        f"{other.minor}, which CPython {HERE.minor} cannot load; they have no sources here to compile (rebuild "
        f"them from their sources, or target {other.minor})"
    ]


def test_a_baseline_that_is_not_a_report_is_refused_in_one_line(tmp_path: Path) -> None:
    """An ``images`` comparison, a list, a report whose variants are broken: one error line, exit 2, never a
    traceback and never a gate that passes by comparing nothing."""
    tree = _small_tree(tmp_path / "t")
    good = tmp_path / "good.json"
    assert _cli("report", str(tree), "--sizes-only", "-q", "--json", str(good)).returncode == 0
    report = json.loads(good.read_text())
    broken = json.loads(good.read_text())
    broken["variants"][1]["size"]["bytes"] = "517"
    cases = {
        "images.json": {"$schema": "https://hatch-pyc.invalid/schemas/images-1.json", "schema_version": 1},
        "list.json": [1, 2],
        "broken.json": broken,
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(data))
        proc = _cli("report", str(tree), "--sizes-only", "-q", "--baseline", str(path), "--max-size-increase", "5")
        (line,) = proc.stderr.splitlines()
        assert (proc.returncode, proc.stdout) == (2, ""), line
        assert line.startswith(f"hatch-pyc: error: {path}: not a hatch-pyc report"), line
    zero = dict(report, variants=[dict(v, size=dict(v["size"], bytes=0)) for v in report["variants"]])
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    proc = _cli(
        "report", str(tree), "--sizes-only", "-q", "--baseline", str(tmp_path / "zero.json"), "--max-size-increase", "5"
    )
    assert proc.returncode == 0
    assert [line for line in proc.stdout.splitlines() if line.startswith("SKIP: size ") and " bytes:" in line]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-size-increase", "nan"], "argument --max-size-increase: must be a percentage of 0 or more (got nan)"),
        (
            ["--max-import-regression", "-5"],
            "argument --max-import-regression: must be a percentage of 0 or more (got -5)",
        ),
        (
            ["--sizes-only", "--max-import-regression", "10"],
            "--max-import-regression needs import times: leave out --sizes-only",
        ),
    ],
)
def test_a_threshold_that_could_check_nothing_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _cli("report", str(_small_tree(tmp_path / "t")), *args)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert message in line, line


def test_a_closed_pipe_under_the_tables_ends_quietly_too(tmp_path: Path) -> None:
    """The tables are printed by rich, whose own broken-pipe handling exits 1 (a failed check, to CI)."""
    tree = _small_tree(tmp_path / "t", modules=30)
    # `true` reads nothing and is gone long before the report (seconds of measuring) writes its first line
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m hatch_pyc report {tree} --sizes-only | true"],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
    )
    assert (proc.returncode, proc.stderr) == (141, "")
