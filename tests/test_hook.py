"""The ``pyc`` build hook, end to end: real projects built by real hatchling, installed by real pip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, _require, modules_imported_by, run_python, snapshot
from installer.sources import WheelFile

from hatch_pyc import Interpreter, InvalidOptions
from hatch_pyc._hookconfig import load_hook_config

PROJECTS = Path(__file__).parent / "projects"


def copy_project(name: str, dest: Path, python: str) -> Path:
    project = dest / name
    shutil.copytree(PROJECTS / name, project)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("@PYTHON@", python))
    return project


def build_isolated(project: Path, kind: str, outdir: Path) -> None:
    """``python -m build {kind}`` as users run it: build isolation installs hatch-pyc from this checkout."""
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"hatch-pyc"', f'"hatch-pyc @ {REPO.as_uri()}"'))
    proc = subprocess.run(
        [sys.executable, "-m", "build", kind, "--outdir", str(outdir), str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def hatchling_build(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", "dist", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def make_venv(interp: Interpreter, where: Path) -> Path:
    subprocess.run([interp.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return where / "bin" / "python"


def pip(venv_python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv_python), *args, "--disable-pip-version-check", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )


def validate(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        WheelFile(zf).validate_record(validate_contents=True)
        return zf.namelist()


def wheel_tags(wheel: Path) -> list[str]:
    """Every ``Tag`` of the wheel's WHEEL file, in order, as a parser of the format reads them."""
    from email.parser import BytesParser

    with zipfile.ZipFile(wheel) as zf:
        (name,) = (n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/WHEEL"))
        return BytesParser().parsebytes(zf.read(name)).get_all("Tag", [])


def test_src_layout_wheel_is_sourceless_installs_runs_and_uninstalls(tmp_path: Path, target: Interpreter) -> None:
    project = copy_project("src-layout", tmp_path, target.minor)
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode == 0, proc.stderr
    # srcpkg/extras/ (force-included, no __init__.py) is a plain directory inside a package: its
    # tool.py is kept as source by default, and still imports (a namespace package nested in srcpkg).
    assert (
        f"4 modules compiled to .pyc for CPython {target.minor}; kept as source: srcpkg/reads_source.py; "
        "1 kept as source (outside packages: srcpkg/extras/); 4 type stubs (.pyi) beside them"
    ) in proc.stderr
    wheel = project / "dist" / f"srcpkg-1.2.0-{target.python_tag}-none-any.whl"
    names = validate(wheel)
    assert sorted(n for n in names if n.endswith(".py")) == ["srcpkg/extras/tool.py", "srcpkg/reads_source.py"]
    assert {"srcpkg/__init__.pyc", "srcpkg/cli.pyc", "srcpkg/sub/data.txt", "srcpkg/py.typed"} <= set(names)
    # typed (py.typed): each compiled module has its stub, the modules kept as source need none
    assert sorted(n for n in names if n.endswith(".pyi")) == [
        "srcpkg/__init__.pyi",
        "srcpkg/__main__.pyi",
        "srcpkg/cli.pyi",
        "srcpkg/sub/__init__.pyi",
    ]
    assert names[-1] == "srcpkg-1.2.0.dist-info/RECORD"
    assert wheel_tags(wheel) == [f"{target.python_tag}-none-any"]
    with zipfile.ZipFile(wheel) as zf:
        assert zf.getinfo("srcpkg/__init__.pyc").date_time == (2020, 2, 2, 0, 0, 0)  # hatchling's reproducible time

    python = make_venv(target, tmp_path / "venv")
    pip(python, "install", "--no-index", str(wheel))
    script = tmp_path / "venv" / "bin" / "srcpkg-hello"
    out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"hello 42 from cli.pyc on {target.minor}"
    assert run_python(str(python), "", args=("-m", "srcpkg")).stdout.strip() == out.strip()
    code = """
        import srcpkg.sub, srcpkg.extras.tool as tool, srcpkg.reads_source as rs
        print(srcpkg.sub.DATA.strip(), '|', tool.NAME, '|', rs.SOURCE_LINES > 0, srcpkg.__file__.endswith('.pyc'))
    """
    assert run_python(str(python), code).stdout.strip() == "package data | force-included tool | True True"

    site = next((tmp_path / "venv").glob("lib/python3*/site-packages"))
    pip(python, "uninstall", "-y", "srcpkg")
    assert sorted(p.name for p in site.iterdir()) == []
    assert not script.exists()

    # Rebuilt from scratch: byte-identical.
    first = wheel.read_bytes()
    shutil.rmtree(project / "dist")
    assert hatchling_build(project, "-t", "wheel").returncode == 0
    assert wheel.read_bytes() == first


def test_sdist_is_untouched_and_editable_is_skipped(tmp_path: Path) -> None:
    project = copy_project("src-layout", tmp_path, f"{sys.version_info[0]}.{sys.version_info[1]}")
    proc = hatchling_build(project, "-t", "sdist", "-t", "wheel:editable")
    assert proc.returncode == 0, proc.stderr
    assert "hatch-pyc: editable wheel left as source" in proc.stderr
    (sdist,) = (project / "dist").glob("*.tar.gz")
    import tarfile

    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert "srcpkg-1.2.0/src/srcpkg/cli.py" in names
    assert not [n for n in names if n.endswith(".pyc")]
    (editable,) = (project / "dist").glob("*.whl")
    assert "py3-none-any" in editable.name
    assert not [n for n in validate(editable) if n.endswith(".pyc")]


def test_flat_layout_with_the_global_table_and_python_dash_m(tmp_path: Path, target: Interpreter) -> None:
    project = copy_project("flat-layout", tmp_path, target.minor)
    proc = hatchling_build(project)  # sdist and wheel: the global table is seen by both
    assert proc.returncode == 0, proc.stderr
    wheel = project / "dist" / f"flatpkg-0.1-{target.python_tag}-none-any.whl"
    assert sorted(n for n in validate(wheel) if n.startswith("flatpkg/")) == [
        "flatpkg/__init__.pyc",
        "flatpkg/__main__.pyc",
    ]
    python = make_venv(target, tmp_path / "venv")
    pip(python, "install", "--no-index", str(wheel))
    assert run_python(str(python), "", args=("-m", "flatpkg")).stdout.strip() == "flatpkg main ran"


def test_namespace_package(tmp_path: Path, target: Interpreter) -> None:
    project = copy_project("namespace", tmp_path, target.minor)
    assert hatchling_build(project, "-t", "wheel").returncode == 0
    (wheel,) = (project / "dist").glob("*.whl")
    assert "ns/part/mod.pyc" in validate(wheel)
    python = make_venv(target, tmp_path / "venv")
    pip(python, "install", "--no-index", str(wheel))
    assert run_python(str(python), "import ns.part.mod as m; print(m.NAME)").stdout.strip() == "namespace part"


def test_templates_keep_their_source_and_are_copied_as_source(tmp_path: Path, target: Interpreter) -> None:
    project = copy_project("templates", tmp_path, target.minor)
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"2 modules compiled to .pyc for CPython {target.minor}; 1 kept as source (outside packages: tmplpkg/templates/)"
        in proc.stderr
    )
    wheel = project / "dist" / f"tmplpkg-0.1-{target.python_tag}-none-any.whl"
    assert sorted(n for n in validate(wheel) if n.startswith("tmplpkg/")) == [
        "tmplpkg/__init__.pyc",
        "tmplpkg/__main__.pyc",
        "tmplpkg/templates/generic/env.py",
        "tmplpkg/templates/generic/script.py.mako",
    ]
    python = make_venv(target, tmp_path / "venv")
    pip(python, "install", "--no-index", str(wheel))
    out = run_python(str(python), "", args=("-m", "tmplpkg", "migrations"), cwd=tmp_path).stdout
    assert out.strip() == "tmplpkg: migrations created from the generic template"
    assert sorted(p.name for p in (tmp_path / "migrations").iterdir()) == ["env.py", "script.py.mako"]
    template = project / "tmplpkg/templates/generic/env.py"
    assert (tmp_path / "migrations/env.py").read_text() == template.read_text()
    # The copy is a script the user runs (and edits), with the sourceless package importable.
    ran = subprocess.run(
        [str(python), "env.py"], cwd=tmp_path / "migrations", capture_output=True, text=True, check=False
    )
    assert ran.stdout.strip() == "env.py ran from templates", ran.stderr

    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'outside-packages = "compile"\n')
    shutil.rmtree(project / "dist")
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode == 0, proc.stderr
    assert f"3 modules compiled to .pyc for CPython {target.minor}\n" in proc.stderr
    names = validate(wheel)
    assert "tmplpkg/templates/generic/env.pyc" in names and "tmplpkg/templates/generic/env.py" not in names


def test_syntax_error_fails_the_build_naming_file_and_line(tmp_path: Path) -> None:
    project = copy_project("syntax-error", tmp_path, f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert hatchling_build(project, "-t", "sdist").returncode == 0  # an earlier build's output, to be kept
    before = snapshot(project / "dist")
    assert list(before) == ["badpkg-0.1.tar.gz"]
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode != 0
    assert "badpkg/broken.py:4: SyntaxError" in proc.stderr
    # hatchling wrote the wheel (with its sources, tagged for this CPython) before the hook failed:
    # it is removed, not left in dist/ looking like a good one.
    assert snapshot(project / "dist") == before


def test_enable_by_default_false_and_the_env_switch(tmp_path: Path) -> None:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = copy_project("flat-layout", tmp_path, minor)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "enable-by-default = false\n")
    assert hatchling_build(project, "-t", "wheel").returncode == 0
    assert (project / "dist/flatpkg-0.1-py3-none-any.whl").exists()
    proc = hatchling_build(project, "-t", "wheel", env={"HATCH_BUILD_HOOK_ENABLE_PYC": "1"})
    assert proc.returncode == 0, proc.stderr
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert "flatpkg/__init__.pyc" in validate(project / f"dist/flatpkg-0.1-{tag}-none-any.whl")


def test_bad_options_are_reported_together(tmp_path: Path) -> None:
    project = copy_project("flat-layout", tmp_path, "3.12")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'optimize = "high"\nexclude = "tests"\nverbose = true\n')
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode != 0
    assert (
        "Option `optimize` for build hook `pyc` (tool.hatch.build.hooks.pyc.optimize) must be an integer from 0 to 2"
        in proc.stderr
    )
    assert "Option `exclude` for build hook `pyc` (tool.hatch.build.hooks.pyc.exclude) must be an array" in proc.stderr
    assert "Unknown option `verbose` for build hook `pyc`" in proc.stderr


def test_the_entry_point_imports_little() -> None:
    """hatchling imports the entry point for every build, whether or not a project uses the hook."""
    ours = {m for m in modules_imported_by("import hatch_pyc.hooks") if m.startswith("hatch_pyc")}
    assert ours == {f"hatch_pyc{m}" for m in ("", ".hooks", ".plugin", "._hookconfig", "._options", "._errors")}


def test_config_unit() -> None:
    config = load_hook_config({"optimize": 2, "exclude": ["a/"], "python": "3.12", "dependencies": ["x"]})
    assert config.options.levels == (2,)
    assert config.options.strip
    assert config.options.exclude == ("a/",)
    assert config.python == "3.12"
    with pytest.raises(InvalidOptions) as info:
        load_hook_config({"optimize": True, "on-error": "ignore", "python": "", "outside-packages": "drop"}, "t.pyc")
    assert str(info.value).splitlines() == [
        "Option `optimize` for build hook `pyc` (t.pyc.optimize) must be an integer from 0 to 2",
        "Option `python` for build hook `pyc` (t.pyc.python) must be a non-empty string (a version, command or path)",
        "Option `on-error` for build hook `pyc` (t.pyc.on-error) must be one of: fail, keep-source",
        "Option `outside-packages` for build hook `pyc` (t.pyc.outside-packages) must be one of: keep-source, compile",
    ]
    assert load_hook_config({}).options.outside_packages == "keep-source"
    assert load_hook_config({"outside-packages": "compile"}).options.outside_packages == "compile"


def test_target_outside_requires_python_is_refused(tmp_path: Path) -> None:
    project = copy_project("src-layout", tmp_path, "3.10")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('requires-python = ">=3.10"', 'requires-python = ">=3.11"'))
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode != 0
    assert "targets CPython 3.10" in proc.stderr and "outside requires-python `>=3.11`" in proc.stderr


@pytest.mark.slow
@pytest.mark.once  # build isolation and its requirements; the hook under each runner: the tests above
def test_python_dash_m_build_with_the_plugin_from_a_file_url(tmp_path: Path) -> None:
    """The way users get it: build isolation installs hatch-pyc as a build requirement."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = copy_project("src-layout", tmp_path, minor)
    build_isolated(project, "--wheel", tmp_path / "out")
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert wheel.name == f"srcpkg-1.2.0-cp{sys.version_info[0]}{sys.version_info[1]}-none-any.whl"
    names = validate(wheel)
    assert sorted(n for n in names if n.endswith(".py")) == ["srcpkg/extras/tool.py", "srcpkg/reads_source.py"]
    # the project is typed: hatchling installed mypy into the isolated build environment for the stubs
    assert "srcpkg/cli.pyi" in names


def test_report_option_writes_the_report_beside_the_wheel(tmp_path: Path) -> None:
    import json

    import jsonschema

    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    project = copy_project("flat-layout", tmp_path, minor)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "report = true\n")
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode == 0, proc.stderr
    stem = f"flatpkg-0.1-cp{sys.version_info[0]}{sys.version_info[1]}-none-any"
    report = json.loads((project / "dist" / f"{stem}.report.json").read_text())
    jsonschema.validate(report, json.loads((REPO / "docs/report-schema.json").read_text()))
    assert report["target"]["path"] == str(project / "dist" / f"{stem}.whl")
    assert [v["name"] for v in report["variants"]] == ["source", "cache-O0", "sourceless-O0"]
    assert "median_ms" in report["variants"][2]["imports"]["flatpkg"]
    assert "### hatch-pyc report" in (project / "dist" / f"{stem}.report.md").read_text()
    assert "flatpkg/__init__.pyc" in validate(project / "dist" / f"{stem}.whl")


def test_a_pinned_target_building_from_an_sdist_on_another_cpython_fails(
    tmp_path: Path, other_target: Interpreter
) -> None:
    """An unpacked sdist (PKG-INFO at its root) built by a CPython other than the pinned one: refused."""
    project = copy_project("src-layout", tmp_path, other_target.minor)
    (project / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: srcpkg\nVersion: 1.2.0\n")
    assert hatchling_build(project, "-t", "sdist").returncode == 0  # an earlier build's output, to be kept
    before = snapshot(project / "dist")
    assert list(before) == ["srcpkg-1.2.0.tar.gz"]
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode != 0
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert f"building a wheel from an sdist with cpython {running}" in proc.stderr
    assert f"targets CPython {other_target.minor}" in proc.stderr and "bad magic number" in proc.stderr
    assert snapshot(project / "dist") == before
    # From the source tree (no PKG-INFO), the pinned target is a deliberate cross-build: allowed.
    (project / "PKG-INFO").unlink()
    assert hatchling_build(project, "-t", "wheel").returncode == 0


def test_a_pinned_target_building_from_its_sdist_on_the_same_cpython_works(tmp_path: Path) -> None:
    project = copy_project("src-layout", tmp_path, f"{sys.version_info[0]}.{sys.version_info[1]}")
    (project / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: srcpkg\nVersion: 1.2.0\n")
    proc = hatchling_build(project, "-t", "wheel")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.once  # pip and the build run under two fixed CPythons, not the one running pytest
def test_pip_installing_the_sdist_of_a_pinned_project(tmp_path: Path) -> None:
    """A real sdist from ``python -m build --sdist``, installed by real pip on two CPythons.

    On the pinned CPython it installs sourceless and imports; on another, the build fails with the
    reason (before, pip reported "Successfully installed" and the import failed: bad magic number).
    """
    pinned, other = _require("3.12"), _require("3.13")
    project = copy_project("src-layout", tmp_path, pinned.minor)
    build_isolated(project, "--sdist", tmp_path / "out")
    (sdist,) = (tmp_path / "out").glob("*.tar.gz")

    def pip_install(interp: Interpreter, venv: Path) -> subprocess.CompletedProcess[str]:
        python = make_venv(interp, venv)
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--disable-pip-version-check",
                str(sdist),
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    bad = pip_install(other, tmp_path / "venv313")
    assert bad.returncode != 0
    assert "building a wheel from an sdist with cpython 3.13" in bad.stdout + bad.stderr
    assert "bad magic number" in bad.stdout + bad.stderr
    assert not list((tmp_path / "venv313").glob("lib/python3.13/site-packages/srcpkg*"))

    good = pip_install(pinned, tmp_path / "venv312")
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    site = next((tmp_path / "venv312").glob("lib/python3.12/site-packages"))
    assert (site / "srcpkg" / "__init__.pyc").is_file() and not (site / "srcpkg" / "__init__.py").exists()
    out = run_python(str(tmp_path / "venv312" / "bin" / "python"), "import srcpkg; print(srcpkg.__version__)")
    assert out.stdout.strip() == "1.2.0"
