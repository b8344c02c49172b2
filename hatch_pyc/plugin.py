"""The hatchling build hook ``pyc``: makes the wheel sourceless for one CPython.

``initialize`` validates the options and sets the wheel's tag (the file name is fixed
before ``finalize``); ``finalize`` rewrites the finished wheel with the same function
``hatch-pyc wheel`` uses. sdists are untouched and editable wheels are skipped.
"""

from __future__ import annotations

import os
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

from hatch_pyc._hookconfig import PLUGIN_NAME, HookConfig, load_hook_config


class PycBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compile the wheel's modules to ``mod.pyc`` and drop their sources."""

    PLUGIN_NAME = PLUGIN_NAME

    # hatchling also instantiates the hook just to ask for dependencies(): __init__ is
    # inherited untouched and all work happens in initialize/finalize.

    def dependencies(self) -> list[str]:
        """mypy (its ``stubgen``) in the build environment when the wheel will carry type stubs.

        That is when ``stubs`` is ``"all"``, or ``"typed"`` (the default) and the project holds a
        ``py.typed`` marker. hatchling instantiates the hook just to ask this, before any build.
        """
        if self.target_name != "wheel":
            return []
        stubs = self.config.get("stubs", "typed")
        if stubs == "all" or (stubs == "typed" and _holds_py_typed(self.root)):
            from hatch_pyc._stubs import STUBGEN_REQUIREMENT

            return [STUBGEN_REQUIREMENT]
        return []

    def _table(self) -> str:
        target_hooks = self.build_config.target_config.get("hooks", {})
        if PLUGIN_NAME in target_hooks:
            return f"tool.hatch.build.targets.{self.target_name}.hooks.{PLUGIN_NAME}"
        return f"tool.hatch.build.hooks.{PLUGIN_NAME}"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Validate options and set the ``cpXY`` tag, before the wheel is written."""
        self._pyc: tuple[HookConfig, Any] | None = None
        if self.target_name != "wheel":
            return
        if version == "editable":
            self.app.display_info("hatch-pyc: editable wheel left as source (the pyc hook applies to regular wheels)")
            return
        from hatch_pyc._errors import HatchPycError
        from hatch_pyc._targets import find_interpreter

        try:
            config = load_hook_config(self.config, self._table())
            interp = find_interpreter(config.python)
        except HatchPycError as exc:
            raise ValueError(str(exc)) from None
        from hatch_pyc._wheelcheck import admits

        constraint = self.metadata.core.python_constraint
        full = ".".join(map(str, interp.version))
        if not admits(constraint or None, interp):
            raise ValueError(
                f"build hook `{PLUGIN_NAME}` targets CPython {full} ({interp.executable}), which is outside "
                f"requires-python `{constraint}`; set `python` in {self._table()} to a version it allows"
            )
        self._refuse_sdist_trap(config, interp)
        existing = build_data.get("tag")
        if existing:
            if not str(existing).startswith(interp.python_tag + "-"):
                raise ValueError(
                    f"another hook set the wheel tag {existing!r}, which is not for CPython {interp.minor}: "
                    f"the pyc bytecode would not load; set `python` to match"
                )
        elif build_data.get("infer_tag"):
            from packaging.tags import sys_tags

            best = next(iter(sys_tags()))
            if best.interpreter != interp.python_tag:
                raise ValueError(
                    f"this binary wheel is built for {best.interpreter} but the pyc target is CPython {interp.minor}; "
                    "build with the target interpreter"
                )
        else:
            build_data["tag"] = f"{interp.python_tag}-none-any"
        self._pyc = (config, interp)

    def _refuse_sdist_trap(self, config: HookConfig, interp: Any) -> None:
        """Building from an sdist (pip installing it) for a CPython other than the one running: refuse.

        ``pip install project.tar.gz`` builds the wheel with the interpreter it installs for and
        installs it whatever its tag says, so bytecode pinned to another CPython would be
        installed and fail at import with "bad magic number". An sdist is recognised by its
        PKG-INFO, which a source checkout does not have.
        """
        import sys

        if not os.path.isfile(os.path.join(self.root, "PKG-INFO")):
            return
        running = f"cp{sys.version_info[0]}{sys.version_info[1]}"
        if sys.implementation.name == "cpython" and running == interp.python_tag:
            return
        here = f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}"
        raise ValueError(
            f"hatch-pyc: building a wheel from an sdist with {here}, but build hook `{PLUGIN_NAME}` targets "
            f"CPython {interp.minor} (`python = {config.python!r}` in {self._table()}): the installed modules "
            f"would fail to import with 'bad magic number'. Install a {interp.python_tag} wheel, or build this sdist "
            f"with CPython {interp.minor} (`python{interp.minor} -m build --wheel` / `python{interp.minor} -m pip "
            "install`); a project that wants sdist installs to work everywhere leaves `python` unset"
        )

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Rewrite the finished wheel in place: ``.py`` -> ``.pyc``, RECORD regenerated.

        hatchling has written the wheel (sources, and the ``cpXY`` tag set in ``initialize``) into
        the output directory before calling this: if the rewrite fails, that wheel is removed with
        the report beside it, so a failed build leaves nothing that looks like a built wheel.
        """
        state = getattr(self, "_pyc", None)
        if state is None:
            return
        config, interp = state
        try:
            self._convert(artifact_path, config, interp)
        except BaseException:
            _discard(artifact_path, report=config.report)
            raise

    def _convert(self, artifact_path: str, config: HookConfig, interp: Any) -> None:
        """The rewrite itself (and the report and verification asked for): any failure fails the build."""
        from hatch_pyc._errors import CompileFailed, HatchPycError
        from hatch_pyc._wheel import convert_wheel

        if config.report:
            self._write_report(artifact_path, config, interp)
        self.app.display_waiting(
            f"hatch-pyc: compiling for CPython {interp.minor} (optimize={config.options.levels[0]})"
        )
        original = None
        if config.verify:
            import tempfile

            original = tempfile.TemporaryDirectory(prefix="hatch-pyc-verify-")
            import shutil

            shutil.copyfile(artifact_path, f"{original.name}/{os.path.basename(artifact_path)}")
        try:
            (result,) = convert_wheel(artifact_path, None, [interp], config.options, output=artifact_path)
        except CompileFailed as exc:
            lines = "\n".join(f"  {e}" for e in exc.errors)
            what = "did not compile" if any(e.kind != "stub" for e in exc.errors) else "got no type stub"
            raise ValueError(f"hatch-pyc: {len(exc.errors)} module(s) {what}:\n{lines}") from None
        except HatchPycError as exc:
            raise ValueError(f"hatch-pyc: {exc}") from None
        if original is not None:
            with original:
                self._verify(f"{original.name}/{os.path.basename(artifact_path)}", artifact_path, interp)
        kept = f"; kept as source: {', '.join(result.kept_source)}" if result.kept_source else ""
        if result.replaced:
            kept += f"; shipped .pyc replaced by the compiled module: {', '.join(result.replaced)}"
        if result.outside_packages:
            dirs = ", ".join(result.outside_package_dirs)
            kept += f"; {len(result.outside_packages)} kept as source (outside packages: {dirs})"
        if result.stubs:
            kept += f"; {len(result.stubs)} type stubs (.pyi) beside them"
        for note in result.notes:
            self.app.display_warning(f"hatch-pyc: {note}")
        self.app.display_info(
            f"hatch-pyc: {len(result.compiled)} modules compiled to .pyc for CPython {interp.minor}{kept}"
        )

    def _write_report(self, artifact_path: str, config: HookConfig, interp: Any) -> None:
        """``report = true``: measure the wheel as built (with sources) and write the report beside it."""
        import json
        import shutil
        import tempfile
        from pathlib import Path

        from hatch_pyc._render import render_markdown
        from hatch_pyc._report import build_report

        wheel = Path(artifact_path).absolute()
        self.app.display_waiting("hatch-pyc: measuring sizes and import times for the report")
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / wheel.name
            shutil.copyfile(wheel, copy)
            report = build_report(str(copy), python=interp.executable, levels=config.options.levels)
        report["target"]["path"] = str(wheel)
        stem = wheel.name[: -len(".whl")]
        (wheel.parent / f"{stem}.report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (wheel.parent / f"{stem}.report.md").write_text(render_markdown(report), encoding="utf-8")
        self.app.display_info(f"hatch-pyc: report written to {wheel.parent / (stem + '.report.json')} and .md")

    def _verify(self, source_wheel: str, artifact_path: str, interp: Any) -> None:
        """``verify = true``: import every module of the sourceless wheel; fail on sourceless-only failures."""
        import tempfile
        from pathlib import Path

        from hatch_pyc._variants import stage_target
        from hatch_pyc._verify import verify_tree

        self.app.display_waiting("hatch-pyc: importing every module of the sourceless wheel")
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            sources = stage_target(source_wheel, Path(a), interp)
            compiled = stage_target(artifact_path, Path(b), interp)
            result = verify_tree(sources.tree, interp, compiled=compiled.tree)
        if not result.ok:
            lines = [f"  {m}: {e} ({_fix_hint(result, m, p)})" for m, e, p in result.sourceless_only]
            # a module the project ships only as a pyc: nothing to compare with, so it fails the build too
            lines += [f"  {m}: {e} (no source to compare with: {p})" for m, e, p in result.no_source]
            joined = "\n".join(lines)
            raise ValueError(f"hatch-pyc: modules that do not import sourceless:\n{joined}")
        self.app.display_info(
            f"hatch-pyc: verified {result.modules} modules sourceless ({len(result.both)} fail with sources too)"
        )


def _holds_py_typed(root: str) -> bool:
    """Whether the project under ``root`` has a ``py.typed`` marker (outside hidden, build and venv directories)."""
    for directory, dirs, files in os.walk(root):
        if "py.typed" in files:
            return True
        skip = {"__pycache__", "node_modules", "site-packages"} | ({"build", "dist"} if directory == root else set())
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".") and d not in skip and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
        ]
    return False


def _discard(artifact_path: str, *, report: bool) -> None:
    """Remove what a failed build wrote to the output directory: the wheel, and its report if asked for."""
    stem = artifact_path[: -len(".whl")]
    for path in (artifact_path, *((f"{stem}.report.json", f"{stem}.report.md") if report else ())):
        try:
            os.unlink(path)
        except OSError:
            pass  # already gone (or not ours to remove): the build's own error is the one to show


def _fix_hint(result: Any, module: str, first: str) -> str:
    """The hook's ``exclude`` value that fixes ``module``, as verify found and proved it (often not its own file)."""
    fix = result.fixes.get(module)
    patterns = tuple(fix.patterns) if fix is not None else (first,)
    listed = ", ".join(f'"{p}"' for p in patterns)
    return f"exclude = [{listed}]" + ("" if fix is not None and fix.checked else ", not checked")
