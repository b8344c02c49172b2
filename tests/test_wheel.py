"""Converting wheels: hand-made ones for every edge, hostile ones, and popular ones from PyPI."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, pip_for, run_cli, run_python
from installer.sources import WheelFile
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from hatch_pyc import Interpreter, PycOptions, find_interpreter
from hatch_pyc._wheel import InvalidWheel, convert_wheel


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path,
    files: dict[str, bytes | str],
    *,
    name: str = "demo",
    version: str = "1.0",
    tag: str = "py3-none-any",
    modes: dict[str, int] | None = None,
    record_override: dict[str, tuple[str, str]] | None = None,
    extra: list[zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes]] | None = None,
) -> Path:
    """A wheel built the way installer's tests do: from ``{arcname: content}``."""
    dist_info = f"{name}-{version}.dist-info"
    payload = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    payload[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    payload[f"{dist_info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for arcname, data in payload.items():
        digest, size = (record_override or {}).get(arcname, (_hash(data), str(len(data))))
        writer.writerow((arcname, digest, size))
    writer.writerow((f"{dist_info}/RECORD", "", ""))
    payload[f"{dist_info}/RECORD"] = rows.getvalue().encode()
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in payload.items():
            info = zipfile.ZipInfo(arcname, (2021, 1, 1, 0, 0, 0))
            info.external_attr = ((modes or {}).get(arcname, 0o644) | stat.S_IFREG) << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
        for item in extra or []:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about duplicate names
                if isinstance(item, tuple):
                    zf.writestr(item[0], item[1])
                else:
                    zf.writestr(item, b"")
    return path


def entries(wheel: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(wheel) as zf:
        WheelFile(zf).validate_record(validate_contents=True)
        return {i.filename: i for i in zf.infolist()}


EDGE_FILES: dict[str, bytes | str] = {
    "demo/__init__.py": "from demo.core import VALUE\n",
    "demo/core.py": "VALUE = 41 + 1\n",
    "demo/core.pyi": "VALUE: int\n",
    "demo/py.typed": "",
    "demo/templates/page.html": "<p>{{ x }}</p>\n",
    "demo_hook.pth": "import sys\n",
    "demo-1.0.data/scripts/demo-tool": "#!python\nprint('tool')\n",
    "demo-1.0.data/scripts/helper.py": "#!python\nprint('helper')\n",
    "demo-1.0.data/purelib/demo_extra.py": "EXTRA = True\n",
    "demo-1.0.data/data/share/demo/notes.py": "not importable\n",
}


def test_only_importable_modules_change(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path,
        EDGE_FILES,
        modes={"demo-1.0.data/scripts/demo-tool": 0o755, "demo-1.0.data/scripts/helper.py": 0o755},
    )
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    out = entries(result.output)
    assert result.output.name == f"demo-1.0-cp{sys.version_info[0]}{sys.version_info[1]}-none-any.whl"
    assert sorted(result.compiled) == ["demo-1.0.data/purelib/demo_extra.py", "demo/__init__.py", "demo/core.py"]
    for kept in (
        "demo/core.pyi",
        "demo/py.typed",
        "demo/templates/page.html",
        "demo_hook.pth",
        "demo-1.0.data/scripts/demo-tool",
        "demo-1.0.data/scripts/helper.py",
        "demo-1.0.data/data/share/demo/notes.py",
    ):
        assert kept in out, kept
    assert "demo/core.pyc" in out and "demo/core.py" not in out
    assert "demo-1.0.data/purelib/demo_extra.pyc" in out
    assert stat.S_IMODE(out["demo-1.0.data/scripts/helper.py"].external_attr >> 16) == 0o755
    assert out["demo/core.pyc"].date_time == (2021, 1, 1, 0, 0, 0)
    assert list(out)[-1] == "demo-1.0.dist-info/RECORD"
    assert not [n for n in out if n.endswith("/")]


def test_conversion_is_reproducible_and_records_install_paths(tmp_path: Path, target: Interpreter) -> None:
    wheel = make_wheel(tmp_path, EDGE_FILES)
    (a,) = convert_wheel(wheel, tmp_path / "a", [target], PycOptions(levels=(2,), strip=True))
    (b,) = convert_wheel(wheel, tmp_path / "b", [target], PycOptions(levels=(2,), strip=True))
    assert a.output.read_bytes() == b.output.read_bytes()
    with zipfile.ZipFile(a.output) as zf:
        pyc = zf.read("demo-1.0.data/purelib/demo_extra.pyc")
        assert pyc[:4] == target.magic
    target_dir = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(target_dir),
            "--python-version",
            target.minor,
            "--only-binary",
            ":all:",
            str(a.output),
        ],
        check=True,
    )
    code = "import demo, demo_extra; print(demo.VALUE, demo_extra.EXTRA, demo.core.__loader__.get_code('demo.core').co_filename)"
    assert run_python(target, code, path=target_dir).stdout.split() == ["42", "True", "demo/core.py"]


def test_several_targets_give_one_wheel_each(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = 1\n"})
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--python", "3.10", "--python", "3.13", check=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "demo-1.0-cp310-none-any.whl",
        "demo-1.0-cp313-none-any.whl",
    ]
    assert proc.stderr.count("1 modules compiled") == 2


def test_binary_wheels_keep_abi_and_platform(tmp_path: Path) -> None:
    tag = "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"
    wheel = make_wheel(
        tmp_path,
        {"fast/__init__.py": "", "fast/_speed.cpython-312-x86_64-linux-gnu.so": b"\x7fELF"},
        name="fast",
        tag=tag,
    )

    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter("3.12")])
    assert result.output.name == f"fast-1.0-{tag}.whl"
    with zipfile.ZipFile(result.output) as zf:
        text = zf.read("fast-1.0.dist-info/WHEEL").decode()
    assert "Tag: cp312-cp312-manylinux2014_x86_64\nTag: cp312-cp312-manylinux_2_17_x86_64\n" in text
    with pytest.raises(InvalidWheel, match=r"do not include CPython 3\.13"):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter("3.13")])


def test_abi3_and_generic_tags(tmp_path: Path) -> None:
    from hatch_pyc._wheel import wheel_target_tag

    py312 = find_interpreter("3.12")
    # abi3 would let 3.13 install bytecode that only 3.12 loads: the ABI tag becomes cp312.
    assert wheel_target_tag("x-1-cp38-abi3-manylinux_2_28_x86_64.whl", py312) == "cp312-cp312-manylinux_2_28_x86_64"
    from packaging import tags

    platforms = ["manylinux_2_28_x86_64"]
    on_313 = set(tags.cpython_tags((3, 13), platforms=platforms)) | set(
        tags.compatible_tags((3, 13), "cp313", platforms)
    )
    on_312 = set(tags.cpython_tags((3, 12), platforms=platforms))
    assert tags.Tag("cp312", "cp312", "manylinux_2_28_x86_64") in on_312
    assert tags.Tag("cp312", "cp312", "manylinux_2_28_x86_64") not in on_313
    assert tags.Tag("cp312", "none", "any") not in on_313
    assert wheel_target_tag("x-1-py2.py3-none-any.whl", py312) == "cp312-none-any"
    assert wheel_target_tag("x-1-py38-none-any.whl", py312) == "cp312-none-any"
    with pytest.raises(InvalidWheel):
        wheel_target_tag("x-1-py313-none-any.whl", py312)


# A package that ships a template directory (no __init__.py) and copies it for the user, as
# alembic's `alembic init` does; plus a top-level namespace package and a package in purelib.
TEMPLATE_ENV = "# Edit me: the template a user gets.\ntarget_metadata = None\n"
TEMPLATE_FILES: dict[str, bytes | str] = {
    "pkg/__init__.py": (
        "import pathlib, shutil\n"
        "TEMPLATES = pathlib.Path(__file__).parent / 'templates'\n"
        "def init(dest, template='generic'):\n"
        "    pathlib.Path(dest).mkdir()\n"
        "    for path in (TEMPLATES / template).iterdir():\n"
        "        if path.is_file():  # as alembic does: pip's __pycache__ is not a template\n"
        "            shutil.copy(path, dest)\n"
    ),
    "pkg/templates/generic/env.py": TEMPLATE_ENV,
    "pkg/templates/generic/script.py.mako": "revision = ${repr(up_revision)}\n",
    "ns/sub/mod.py": "NAME = 'namespace'\n",
    "demo-1.0.data/purelib/other/__init__.py": "",
    "demo-1.0.data/purelib/other/examples/hello.py": "print('hello')\n",
}


def test_templates_inside_packages_keep_their_source(tmp_path: Path, target: Interpreter) -> None:
    wheel = make_wheel(tmp_path, TEMPLATE_FILES)
    (result,) = convert_wheel(wheel, tmp_path / "out", [target], PycOptions(strip=True))
    out = entries(result.output)
    assert result.outside_packages == ["demo-1.0.data/purelib/other/examples/hello.py", "pkg/templates/generic/env.py"]
    assert result.outside_package_dirs == ["demo-1.0.data/purelib/other/examples/", "pkg/templates/"]
    assert result.compiled == ["demo-1.0.data/purelib/other/__init__.py", "ns/sub/mod.py", "pkg/__init__.py"]
    assert result.kept_source == []
    assert {"pkg/__init__.pyc", "ns/sub/mod.pyc", "pkg/templates/generic/env.py"} <= set(out)
    assert "pkg/templates/generic/env.pyc" not in out and "pkg/templates/generic/script.py.mako" in out
    site = tmp_path / "site"
    subprocess.run(
        [*pip_for(target), "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(result.output)],
        check=True,
    )
    code = "import pkg, ns.sub.mod as m; pkg.init('proj'); print(pkg.__file__.endswith('.pyc'), m.NAME)"
    assert run_python(target, code, path=site, cwd=tmp_path).stdout.split() == ["True", "namespace"]
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["env.py", "script.py.mako"]
    assert (tmp_path / "proj/env.py").read_text() == TEMPLATE_ENV


def test_templates_compile_when_asked_and_exclude_comes_first(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, TEMPLATE_FILES)
    options = PycOptions(strip=True, outside_packages="compile")
    (result,) = convert_wheel(wheel, tmp_path / "compiled", [find_interpreter(None)], options)
    assert result.outside_packages == [] and result.kept_source == []
    assert "pkg/templates/generic/env.py" in result.compiled
    out = entries(result.output)
    assert "pkg/templates/generic/env.pyc" in out and "pkg/templates/generic/env.py" not in out
    # A template that is also excluded is reported as excluded: the user said so.
    options = PycOptions(strip=True, exclude=("pkg/templates/",))
    (result,) = convert_wheel(wheel, tmp_path / "excluded", [find_interpreter(None)], options)
    assert result.kept_source == ["pkg/templates/generic/env.py"]
    assert result.outside_packages == ["demo-1.0.data/purelib/other/examples/hello.py"]


def test_the_cli_says_what_it_kept_outside_packages(tmp_path: Path) -> None:
    import json

    wheel = make_wheel(tmp_path, TEMPLATE_FILES)
    report = tmp_path / "wheels.json"
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--json", str(report), check=True)
    assert (
        "(3 modules compiled, 2 kept as source (outside packages: demo-1.0.data/purelib/other/examples/, "
        "pkg/templates/))"
    ) in proc.stderr
    (entry,) = json.loads(report.read_text())
    assert entry["outside_packages"] == [
        "demo-1.0.data/purelib/other/examples/hello.py",
        "pkg/templates/generic/env.py",
    ]
    assert entry["kept_source"] == []
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "all"), "--outside-packages", "compile", check=True)
    assert "(5 modules compiled)" in proc.stderr
    (converted,) = (tmp_path / "all").iterdir()
    assert not [n for n in entries(converted) if n.endswith(".py")]


HOSTILE = {
    "absolute path": ({"demo/__init__.py": ""}, [zipfile.ZipInfo("/etc/evil")], "absolute"),
    "dot-dot": ({"demo/__init__.py": ""}, [zipfile.ZipInfo("demo/../../evil.py")], "'..'"),
    "duplicate": ({"demo/__init__.py": ""}, [(zipfile.ZipInfo("demo/__init__.py"), b"X = 2\n")], "more than once"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_names_are_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    files, extra, message = HOSTILE[case]
    wheel = make_wheel(tmp_path, files, extra=extra)  # type: ignore[arg-type]
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr and str(wheel) in proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("demo/link.py")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""}, extra=[(link, b"/etc/passwd")])
    with pytest.raises(InvalidWheel, match="is a symbolic link"):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("sha256=AAAA", "2"), "demo/core.py"),
        (None, "demo/core.py"),
    ],
)
def test_record_lies_are_refused(tmp_path: Path, override: tuple[str, str] | None, message: str) -> None:
    files = {"demo/__init__.py": "", "demo/core.py": "X = 1\n"}
    lie = override or (_hash(b"X = 1\n"), "99")
    wheel = make_wheel(tmp_path, files, record_override={"demo/core.py": lie})
    with pytest.raises(InvalidWheel, match=message):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("syntax_error", [False, True])
def test_record_lies_about_data_are_refused_even_when_compiling_fails(tmp_path: Path, syntax_error: bool) -> None:
    # Entries that are not compiled are checked beside compilation; their lie still wins.
    files = {"demo/__init__.py": "X = (\n" if syntax_error else "", "demo/data.json": "{}\n", "demo/b.json": "[]\n"}
    lies = {"demo/data.json": (_hash(b"{ }\n"), "3"), "demo/b.json": ("sha256=AAAA", "3")}
    wheel = make_wheel(tmp_path, files, record_override=lies)
    with pytest.raises(InvalidWheel, match=r"of demo/(data|b)\.json didn't match RECORD \(and 1 more problems\)"):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert not (tmp_path / "out").exists()


def test_truncated_and_non_zip_files(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = 1\n" * 100})
    data = wheel.read_bytes()
    wheel.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidWheel, match="not a zip archive"):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    fake = tmp_path / "fake-1.0-py3-none-any.whl"
    fake.write_text("hello")
    with pytest.raises(InvalidWheel, match="not a zip archive"):
        convert_wheel(fake, tmp_path / "out", [find_interpreter(None)])
    badly_named = tmp_path / "nodashes.whl"
    badly_named.write_bytes(data)
    with pytest.raises(InvalidWheel, match=r"nodashes\.whl: Invalid wheel filename"):
        convert_wheel(badly_named, tmp_path / "out", [find_interpreter(None)])


def test_decompression_bombs_are_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/zeros.bin": b"\0" * (64 << 20)})
    with pytest.raises(InvalidWheel, match="decompression bomb"):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])


# Popular wheels from PyPI, pure and binary (pinned to releases with wheels for every target, cp310-cp315),
# each with a smoke test of what it does.
REAL_WHEELS = {
    "requests==2.32.5": "import requests; assert requests.Request('GET', 'http://x/a', params={'q': 1}).prepare().url == 'http://x/a?q=1'",
    "urllib3==2.5.0": "import urllib3; assert urllib3.util.parse_url('https://h:8/p').port == 8",
    "idna==3.10": "import idna; assert idna.encode('ドメイン.テスト') == b'xn--eckwd4c7c.xn--zckzah'",
    "certifi==2025.10.5": "import certifi, os; assert os.path.getsize(certifi.where()) > 100000",
    "charset-normalizer==3.4.4": "import charset_normalizer as c; assert c.from_bytes('héllo wörld'.encode('cp1252')).best() is not None",
    "six==1.17.0": "import six; assert six.PY3 and six.moves.range(3)",
    "attrs==25.4.0": "import attrs\n@attrs.define\nclass P:\n    x: int\nassert P(1) == P(1)",
    "click==8.3.0": "import click\n@click.command()\ndef c(): pass\nassert c.name == 'c'",
    "packaging==25.0": "from packaging.version import Version; assert Version('1.0') < Version('1.1')",
    "typing_extensions==4.15.0": "import typing_extensions as t; assert t.Literal",
    "jinja2==3.1.6": "import jinja2; assert jinja2.Template('{{ x }}!').render(x=1) == '1!'",
    "markupsafe==3.0.4": "import markupsafe; assert str(markupsafe.escape('<a>')) == '&lt;a&gt;'",
    "pyyaml==6.0.4": "import yaml; assert yaml.safe_load('a: [1, 2]') == {'a': [1, 2]}; assert yaml.__with_libyaml__",
    "python-dateutil==2.9.0.post0": "from dateutil import parser; assert parser.parse('2024-01-02').day == 2",
}


@pytest.mark.slow
def test_popular_wheels_convert_install_and_work(tmp_path: Path, target: Interpreter) -> None:
    cache = REPO / ".cache" / "wheels" / target.minor
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *pip_for(target),
            "download",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-d",
            str(cache),
            *REAL_WHEELS,
        ],
        check=True,
    )
    pinned = {(canonicalize_name(n), Version(v)) for n, v in (spec.split("==") for spec in REAL_WHEELS)}
    # (the cache may also hold wheels of earlier pins)
    wheels = sorted(w for w in cache.glob("*.whl") if parse_wheel_filename(w.name)[:2] in pinned)
    assert len(wheels) == len(REAL_WHEELS)
    out = tmp_path / "out"
    results = [r for w in wheels for r in convert_wheel(w, out, [target])]
    assert all(target.python_tag in r.output.name for r in results)
    assert any("manylinux" in r.output.name for r in results)  # binary wheels are in the set
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            "--python-version",
            target.minor,
            "--only-binary",
            ":all:",
            *(str(r.output) for r in results),
        ],
        check=True,
    )
    assert not list(site.glob("requests/*.py"))
    smoke = "\n".join(REAL_WHEELS.values())
    run_python(target, smoke, path=site)
    check = "import requests, yaml; print(requests.__file__.endswith('.pyc'), type(yaml.__loader__).__name__)"
    assert run_python(target, check, path=site).stdout.split() == ["True", "SourcelessFileLoader"]


def test_a_failed_multi_wheel_run_leaves_no_directory_it_made(tmp_path: Path) -> None:
    """The first wheel is written (staged) before the second fails to compile: the run leaves neither
    its temporary nor the -o directories it created, and a directory that was there stays."""
    good = make_wheel(tmp_path, {"demo/__init__.py": "X = 1\n"})
    bad = make_wheel(tmp_path, {"other/__init__.py": "X = (\n"}, name="other")
    proc = run_cli("wheel", str(good), str(bad), "-o", str(tmp_path / "out/new/deeper"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("hatch-pyc: error:") and "other/__init__.py:1" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([good.name, bad.name])
    (tmp_path / "kept").mkdir()
    assert run_cli("wheel", str(good), str(bad), "-o", str(tmp_path / "kept")).returncode == 1
    assert list((tmp_path / "kept").iterdir()) == []
