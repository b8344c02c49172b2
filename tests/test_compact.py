"""Compact pycs (``--compact``): no column positions, what CPython itself compiles under ``-X no_debug_ranges``,
smaller, and the same program: tracebacks keep file and line and lose only the carets."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli, write_tree
from test_wheel import make_wheel

from hatch_pyc import Interpreter, InvalidOptions
from hatch_pyc._hookconfig import load_hook_config
from hatch_pyc._oracle import check_against_cpython

FAILING = (
    "def divide(numbers, index):\n"
    "    total = sum(numbers) + len(numbers) * 2\n"
    "    return total / numbers[index] - numbers[0] ** 2\n"
)
SOURCES = {
    "calc/__init__.py": '"""Calculations."""\n',
    "calc/ops.py": FAILING
    + "".join(f"\ndef f{i}(a, b):\n    return (a + {i}) * b - a // (b or 1)\n" for i in range(60)),
}


def _zipped(pycs: dict[str, bytes]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(pycs.items()):
            archive.writestr(name, data)
    return len(buffer.getvalue())


def _wheel_pycs(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.endswith(".pyc")}


def test_a_compact_wheel_is_smaller_and_tracebacks_keep_file_and_line(tmp_path: Path, target: Interpreter) -> None:
    """``wheel --compact``: the pycs smaller zipped (3.11+); installed, the module works the same, and its
    traceback is the full pyc's: file, line and function (a sourceless traceback has no carets to lose)."""
    wheel = make_wheel(tmp_path, SOURCES, name="calc")
    made = {}
    for how in ("full", "compact"):
        out = tmp_path / how
        args = ["wheel", str(wheel), "-o", str(out), "--python", target.executable]
        proc = run_cli(*args, *(["--compact"] if how == "compact" else []), check=True)
        (made[how],) = out.glob("*.whl")
        if how == "compact" and target.version < (3, 11):
            assert f"CPython {target.minor} pycs have no column positions: compact changes nothing" in proc.stderr
    full, compact = _wheel_pycs(made["full"]), _wheel_pycs(made["compact"])
    assert sorted(full) == sorted(compact) == ["calc/__init__.pyc", "calc/ops.pyc"]
    if target.version < (3, 11):
        assert full == compact
    else:
        assert _zipped(compact) < _zipped(full)  # the saving on real wheels: benchmarks/bench_compact.py
        # not always smaller unzipped: a location entry without columns is not always shorter, but they
        # repeat, and deflate takes them (rich's wheel: 20% smaller; benchmarks/bench_compact.py)
    tracebacks = {}
    for how, path in made.items():
        site = tmp_path / f"site-{how}"
        with zipfile.ZipFile(path) as archive:
            archive.extractall(site)
        proc = subprocess.run(
            [target.executable, "-S", "-c", "import calc.ops\nprint(calc.ops.f3(2, 5))\ncalc.ops.divide([0, 1], 0)"],
            cwd=site,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.stdout == "25\n" and "ZeroDivisionError: division by zero" in proc.stderr
        assert 'File "calc/ops.py", line 3, in divide' in proc.stderr
        tracebacks[how] = proc.stderr
    # sourceless, a traceback has no source line to put carets under: compact loses nothing it shows
    assert tracebacks["full"] == tracebacks["compact"]


def test_with_sources_kept_compact_tracebacks_lose_only_the_carets(tmp_path: Path, target: Interpreter) -> None:
    """``compile --compact`` of a tree that keeps its sources: the traceback shows the file, line and source
    line, and no ``^^^`` under the failing expression (3.11+; a full pyc has them)."""
    tracebacks = {}
    for how in ("full", "compact"):
        tree = write_tree(tmp_path / how, SOURCES)
        args = ["compile", str(tree), "--python", target.executable]
        run_cli(*args, *(["--compact"] if how == "compact" else []), check=True)
        proc = subprocess.run(
            [target.executable, "-S", "-c", "import calc.ops\ncalc.ops.divide([0, 1], 0)"],
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
        assert "calc/ops.py" in proc.stderr and "line 3, in divide" in proc.stderr
        assert "return total / numbers[index] - numbers[0] ** 2" in proc.stderr
        # the frame of the compiled module (the -c line above it is compiled by the process itself)
        tracebacks[how] = proc.stderr.replace(str(tree), "TREE").split('File "TREE/calc/ops.py"', 1)[1]
    if target.version >= (3, 11):
        assert "^" in tracebacks["full"] and "^" not in tracebacks["compact"]
    else:
        assert tracebacks["full"] == tracebacks["compact"]


def test_compact_pycs_are_what_cpython_compiles_without_column_positions(tmp_path: Path, target: Interpreter) -> None:
    """The differential oracle on compact pycs: every code object, type-strictly, what the target's own
    ``compile()`` returns under ``-X no_debug_ranges``, at every level; and not what it returns without it."""
    tree = write_tree(tmp_path / "src", SOURCES)
    report = check_against_cpython([tree], target, tmp_path / "compact", compact=True, levels=(0, 1, 2))
    assert report.pycs >= 6 and report.differences == []
    if target.version >= (3, 11):  # the oracle tells them apart: full pycs are not the compact compile()
        (tmp_path / "full").mkdir()
        full = check_against_cpython([tree], target, tmp_path / "full", compact=False, levels=(0,))
        assert full.differences == []
        compact_pyc = next((tmp_path / "compact").rglob("ops.*.pyc")).read_bytes()
        full_pyc = next((tmp_path / "full").rglob("ops.*.pyc")).read_bytes()
        assert compact_pyc != full_pyc


def test_compact_output_is_reproducible_and_cached_apart(tmp_path: Path) -> None:
    """Two compact compiles give the same bytes; the cache keeps compact and full code apart (a full run after
    a compact one on the same cache writes full pycs)."""
    cache = tmp_path / "cache"
    outputs = []
    for run in ("compact-1", "compact-2", "full"):
        tree = write_tree(tmp_path / run, SOURCES)
        args = ["compile", str(tree), "--strip", "--cache-dir", str(cache)]
        run_cli(*args, *(["--compact"] if run.startswith("compact") else []), check=True)
        outputs.append((tree / "calc" / "ops.pyc").read_bytes())
    assert outputs[0] == outputs[1]
    if sys.version_info >= (3, 11):
        assert outputs[2] != outputs[0]


def test_the_hook_takes_compact_as_a_boolean() -> None:
    """``compact = true`` in the hook's table; anything else is refused with the option's name."""
    assert load_hook_config({"compact": True}).options.compact is True
    assert load_hook_config({}).options.compact is False
    with pytest.raises(InvalidOptions, match=r"Option `compact` for build hook `pyc` .* must be a boolean"):
        load_hook_config({"compact": "yes"})


def test_report_shows_the_compact_saving_as_its_own_variant(tmp_path: Path) -> None:
    """``report --compact``: a ``sourceless-compact-O<level>`` variant per level beside ``sourceless-O<level>``,
    smaller zipped, in a report the schema accepts."""
    import json

    import jsonschema
    from conftest import REPO

    wheel = make_wheel(tmp_path, SOURCES, name="calc")
    out = tmp_path / "report.json"
    run_cli("report", str(wheel), "--compact", "-O", "0", "-O", "2", "--sizes-only", "--json", str(out), check=True)
    report = json.loads(out.read_text())
    jsonschema.validate(report, json.loads((REPO / "docs" / "report-schema.json").read_text()))
    sizes = {v["name"]: v["size"] for v in report["variants"]}
    assert list(sizes) == [
        "source",
        "cache-O0",
        "cache-O2",
        "sourceless-O0",
        "sourceless-O2",
        "sourceless-compact-O0",
        "sourceless-compact-O2",
    ]
    for level in (0, 2):
        full, compact = sizes[f"sourceless-O{level}"], sizes[f"sourceless-compact-O{level}"]
        assert compact["files"] == full["files"]
        if sys.version_info >= (3, 11):
            assert compact["wheel_bytes"] < full["wheel_bytes"]


@pytest.mark.parametrize("mode", ["timestamp", "unchecked-hash"])
@pytest.mark.parametrize("asked", [["--compact"], ["--ddir", "/srv/app"]], ids=["compact", "ddir"])
def test_a_tree_compiled_otherwise_is_recompiled_as_asked(
    tmp_path: Path, target: Interpreter, asked: list[str], mode: str
) -> None:
    """Found by an adversarial review: ``compile --compact`` (or ``--ddir``) on a tree whose pycs were current said
    "already current" and left them as they were, full (or naming other files): the header cannot tell. Such pycs
    are now compared code and all, and rewritten; a second run with the same options finds them current."""
    tree = write_tree(tmp_path / "t", SOURCES)
    fresh = write_tree(tmp_path / "fresh", SOURCES)

    def code(root: Path) -> dict[Path, bytes]:  # each pyc after its header (which holds the source's mtime)
        return {p.relative_to(root): p.read_bytes()[16:] for p in root.rglob("*.pyc")}

    base = ["compile", "--python", target.executable, "--invalidation-mode", mode]
    run_cli(*base, str(tree), check=True)
    before = code(tree)
    proc = run_cli(*base, *asked, str(tree), check=True)
    run_cli(*base, *asked, str(fresh), check=True)
    assert code(tree) == code(fresh)
    changes = asked[0] == "--ddir" or target.version >= (3, 11)  # 3.10 has no column positions
    assert (code(tree) != before) == changes
    assert ("already current" in proc.stderr) != changes, proc.stderr
    again = run_cli(*base, *asked, str(tree), check=True)
    assert "2 already current" in again.stderr, again.stderr


def test_the_whole_pyc_check_compiles_once_and_reads_no_more_than_a_pyc(tmp_path: Path, target: Interpreter) -> None:
    """Found by an adversarial review: the first ``--compact`` run over a current tree compiled each module twice
    (once to compare, once to write; the cache counted both), and the comparison read whatever sat at the pyc's path
    whole (a 4 GB file there took 48 s and 8 GB of memory, or failed the source with a MemoryError)."""
    import resource

    tree = write_tree(tmp_path / "t", SOURCES)
    run_cli("compile", "--python", target.executable, "--no-cache", str(tree), check=True)
    (big,) = (tree / "calc/__pycache__").glob("ops.*.pyc")
    with big.open("r+b") as handle:  # its header kept (current), then 3 GiB of nothing
        handle.truncate(3 << 30)
    report = tmp_path / "r.json"
    limit = 1 << 31

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hatch_pyc",
            "compile",
            "--python",
            target.executable,
            "--compact",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(report),
            str(tree),
        ],
        capture_output=True,
        text=True,
        preexec_fn=limited,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(report.read_text())
    if target.version < (3, 11):  # no column positions: nothing to compare, the headers are current
        assert (counts["cache_hits"], counts["cache_misses"]) == (0, 0), counts
        return
    assert (counts["cache_hits"], counts["cache_misses"]) == (0, 2), counts  # two modules, each compiled once
    assert big.stat().st_size < 1 << 20
