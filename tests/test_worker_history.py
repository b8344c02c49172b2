"""A module's pyc does not depend on what its worker compiled before it.

Whether a one-character string is interned is process-wide before CPython 3.13 (they are singletons) and marshal
writes it. A worker compiles many modules: one whose compile() interns such a string (3.10 interns "{" and "}" when
it turns annotations into strings under ``from __future__ import annotations``; an identifier ``é`` interns "é"),
or the worker's own JSON answers (3.10 and 3.11's C encoder interns "[", "]", "{" and "}"), changed how every later
module with that string among its constants was written: the same tree gave other bytes with ``--workers 1`` than
with ``--workers 2``, and other bytes than CPython compiling the module in a process of its own. Found by an
adversarial review of the streamed compile (the pyc of charset_normalizer/constant.py differed between runs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, write_tree
from test_wheel import make_wheel

from hatch_pyc import Interpreter

PAD = '"""' + "Padding, so that this module is compiled before the small ones of its batch. " * 30 + '"""\n'
TREE = {
    # More than a batch (128 KB) on its own: the worker answers it (in JSON) before the next batch.
    "big/__init__.py": "".join(f"V{i} = {i!r}\n" for i in range(14000)),
    "ann/__init__.py": PAD
    + "from __future__ import annotations\n\n\ndef f(x: int) -> dict[str, int]:\n    return {'x': x}\n",
    "accent/__init__.py": PAD + "é = 1\n",
    "uses/__init__.py": 'X = "{"\nY = frozenset({"{", "}", "[", "]", "-", "a"})\nZ = [c for c in Y]\nM = "é"\n',
    "plain/__init__.py": 'W = frozenset({"-", "+", "a"})\n',
}


def _pycs(root: Path) -> dict[str, bytes]:
    """Each pyc's code (after its header, which holds the source's mtime)."""
    return {str(p.relative_to(root)): p.read_bytes()[16:] for p in sorted(root.rglob("*.pyc"))}


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
def test_a_modules_pyc_is_the_same_whatever_its_worker_compiled_before(
    target: Interpreter, tmp_path: Path, cache: bool
) -> None:
    """With the cache too: the worker loads the cache's pack code before it compiles anything (3.10 interned "{"
    and "}" there while that file said ``from __future__ import annotations``)."""
    source = write_tree(tmp_path / "src", TREE)

    def compiled(tree: Path, workers: str, cache_dir: Path) -> dict[str, bytes]:
        caching = ["--cache-dir", str(cache_dir)] if cache else ["--no-cache"]
        report = tree.parent / f"{tree.name}.json"
        run_cli(
            "compile",
            "--python",
            target.executable,
            *caching,
            "--workers",
            workers,
            "--json",
            str(report),
            str(tree),
            check=True,
        )
        if cache and not cache_dir.name.startswith("warm"):  # each module looked up once, though some were asked again
            counts = json.loads(report.read_text())
            assert (counts["cache_hits"], counts["cache_misses"]) == (0, len(_pycs(tree))), counts
        return _pycs(tree)

    alone = {}
    for package, text in TREE.items():
        tree = write_tree(tmp_path / "alone" / package.split("/")[0], {package: text})
        alone.update(compiled(tree, "1", tmp_path / "caches" / tree.name))
    assert len(alone) == len(TREE)
    runs = {}
    for workers in ("1", "2"):
        runs[workers] = compiled(shutil.copytree(source, tmp_path / f"w{workers}"), workers, tmp_path / f"c{workers}")
    if cache:  # and a warm run, every module from the cache
        shutil.copytree(tmp_path / "c2", tmp_path / "warm-cache")
        runs["warm"] = compiled(shutil.copytree(source, tmp_path / "warm"), "1", tmp_path / "warm-cache")
    for name, pycs in runs.items():
        assert pycs == alone, (name, sorted(n for n in alone if pycs.get(n) != alone[n]))


def test_a_wheels_pycs_are_the_same_whatever_their_workers_compiled_before(target: Interpreter, tmp_path: Path) -> None:
    """The same in a sourceless wheel, whose pycs the workers send back rather than write."""
    files = {name.replace("/__init__.py", ".py"): text for name, text in TREE.items()}
    (tmp_path / "in").mkdir()
    wheel = make_wheel(tmp_path / "in", files)
    wheels = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        run_cli(
            "wheel",
            "--python",
            target.executable,
            "--no-cache",
            "--workers",
            workers,
            "-o",
            str(out),
            str(wheel),
            check=True,
        )
        (made,) = out.glob("*.whl")
        wheels.append(made.read_bytes())
    assert wheels[0] == wheels[1]


def test_what_a_module_that_fails_to_compile_interned_is_seen_too(target: Interpreter, tmp_path: Path) -> None:
    """Found by an adversarial review: the parser interns ``é`` before the SyntaxError, and the next module's "é"
    was written marked interned (and stored so in the cache)."""
    files = {"a/bad.py": "é = 1\nx = (\n", "a/uses.py": 'M = "é"\nS = frozenset({"é", "-", "a"})\n'}
    tree = write_tree(tmp_path / "t", files)
    alone = write_tree(tmp_path / "alone", {"a/uses.py": files["a/uses.py"]})
    for root in (tree, alone):
        run_cli(
            "compile",
            "--python",
            target.executable,
            "--no-cache",
            "--workers",
            "1",
            "--on-error",
            "keep-source",
            str(root),
            check=True,
        )
    assert _pycs(tree) == _pycs(alone)
