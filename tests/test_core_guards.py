"""Guards of the planner, the commit and the install records that the mutation run found untested."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import write_tree

from hatch_pyc import PycOptions, plan_compile

TAG = sys.implementation.cache_tag


def test_a_printed_plan_shows_what_the_run_does_and_not_how_it_replans(tmp_path: Path) -> None:
    """``CompilePlan`` is public and API users print it: its repr lists the sources and pycs the run
    will write, and leaves out the ``replan`` callable (an internal hook whose repr is a memory
    address), so two plans of the same tree print the same."""
    tree = write_tree(tmp_path / "tree", {"pkg/__init__.py": "", "pkg/mod.py": "X = 1\n"})
    first = plan_compile([tree], PycOptions(), python=sys.executable)
    second = plan_compile([tree], PycOptions(), python=sys.executable)
    assert first.replan is not None  # the plan does carry one: only its printing leaves it out
    printed = repr(first)
    assert "replan" not in printed
    assert "lambda" not in printed and " at 0x" not in printed
    assert str(tree / "pkg" / "mod.py") in printed
    assert f"mod.{TAG}.pyc" in printed
    assert printed == repr(second)
