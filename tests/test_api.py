"""The public API: ``__all__`` names what the package exports, each imported on first use."""

from __future__ import annotations

import ast
import importlib

from conftest import REPO, modules_imported_by

import hatch_pyc


def test_every_public_name_is_its_modules_object() -> None:
    assert sorted(hatch_pyc.__all__) == sorted([*hatch_pyc._MODULE_OF, "__version__"])
    for name, module in hatch_pyc._MODULE_OF.items():
        assert getattr(hatch_pyc, name) is getattr(importlib.import_module(f"hatch_pyc.{module}"), name), name
    assert set(hatch_pyc.__all__) <= set(dir(hatch_pyc))


def test_type_checkers_see_the_same_names() -> None:
    """The ``if TYPE_CHECKING:`` imports, which mypy and IDEs read, match the run-time table."""
    tree = ast.parse((REPO / "hatch_pyc/__init__.py").read_text(encoding="utf-8"))
    (block,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imported = {
        node.module.removeprefix("hatch_pyc."): tuple(alias.name for alias in node.names)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported == hatch_pyc._MODULES


def test_unknown_names_still_fail() -> None:
    assert not hasattr(hatch_pyc, "convert")
    try:
        from hatch_pyc import convert  # type: ignore[attr-defined]  # noqa: F401
    except ImportError as exc:
        assert "cannot import name 'convert'" in str(exc)
    else:
        raise AssertionError("imported a name hatch_pyc does not have")


def test_importing_the_package_imports_no_module_of_it() -> None:
    """hatchling imports the package for every build (the hook's entry point): it must cost nothing."""
    new = modules_imported_by("import hatch_pyc")
    assert {m for m in new if m.startswith("hatch_pyc")} == {"hatch_pyc"}
    assert not new & {"dataclasses", "subprocess", "json", "packaging", "pathspec", "installer", "rich", "docker"}
    assert modules_imported_by("import hatch_pyc; hatch_pyc.PycOptions") >= {"hatch_pyc._options"}
