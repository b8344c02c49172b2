"""Converting wheels: hand-made ones for every edge, hostile ones, and popular ones from PyPI."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import stat
import struct
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
    wheel_text: str | None = None,
    date_times: dict[str, tuple[int, int, int, int, int, int]] | None = None,
) -> Path:
    """A wheel built the way installer's tests do: from ``{arcname: content}``.

    ``wheel_text`` replaces the WHEEL file; ``date_times`` gives entries (RECORD too) a timestamp
    other than 2021-01-01.
    """
    dist_info = f"{name}-{version}.dist-info"
    payload = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    payload[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    payload[f"{dist_info}/WHEEL"] = (
        wheel_text or f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"
    ).encode()
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
            info = zipfile.ZipInfo(arcname, (date_times or {}).get(arcname, (2021, 1, 1, 0, 0, 0)))
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
        "pkg/templates/), "  # then how many of the 3 came from the compile cache
    ) in proc.stderr
    (entry,) = json.loads(report.read_text())
    assert entry["outside_packages"] == [
        "demo-1.0.data/purelib/other/examples/hello.py",
        "pkg/templates/generic/env.py",
    ]
    assert entry["kept_source"] == []
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "all"), "--outside-packages", "compile", check=True)
    assert "(5 modules compiled, " in proc.stderr and " of 5 from the compile cache)" in proc.stderr
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
    # stubs off: what this checks is that the modules work; stubs of real typed wheels are checked by
    # tests/test_stubs.py (packaging, with mypy) and the corpus session (idna, attrs, markupsafe)
    results = [r for w in wheels for r in convert_wheel(w, out, [target], PycOptions(stubs="none"))]
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


# Each rule of the converter, checked on the real output wheel: its exact entries, RECORD rows with
# hashes and sizes, WHEEL text, modes, timestamps and zip headers.

OWN = f"cp{sys.version_info[0]}{sys.version_info[1]}"
RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"


def record_of(wheel: Path) -> dict[str, tuple[str, str]]:
    """RECORD's rows of ``wheel`` by name, after checking that they list exactly the archive's entries,
    each with the sha256 and size of its bytes (RECORD's own row empty, and last)."""
    with zipfile.ZipFile(wheel) as zf:
        (record,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(zf.read(record).decode())))
        assert rows[-1] == [record, "", ""]
        assert sorted(row[0] for row in rows) == sorted(zf.namelist())
        for name, digest, size in rows[:-1]:
            data = zf.read(name)
            assert (digest, size) == (_hash(data), str(len(data))), name
    return {name: (digest, size) for name, digest, size in rows}


def install_with_pip(wheel: Path, site: Path, interp: Interpreter) -> None:
    subprocess.run(
        [*pip_for(interp), "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )


class _Unseekable:
    """A write-only stream: zipfile writes each member's CRC and sizes after it, in a data descriptor."""

    def __init__(self, sink: io.BufferedWriter) -> None:
        self.sink = sink

    def write(self, data: bytes) -> int:
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()


def rezip(
    wheel: Path, *, streamed: bool = False, stored: tuple[str, ...] = (), extra_field: tuple[str, ...] = ()
) -> Path:
    """Write ``wheel`` again with the same entries and bytes, as other zip writers do: ``streamed``
    (data descriptors, the local headers without sizes), ``stored`` entries uncompressed, and
    ``extra_field`` entries with an extended-timestamp extra field in their local header."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with open(wheel, "wb") as raw, zipfile.ZipFile(_Unseekable(raw) if streamed else raw, "w") as out:  # type: ignore[arg-type]
        for old, data in members:
            info = zipfile.ZipInfo(old.filename, old.date_time)
            info.external_attr = old.external_attr
            info.compress_type = zipfile.ZIP_STORED if old.filename in stored else zipfile.ZIP_DEFLATED
            if old.filename in extra_field:
                info.extra = struct.pack("<HHBL", 0x5455, 5, 1, 1609459200)
            out.writestr(info, data)
    return wheel


def test_signatures_of_the_old_record_are_dropped(tmp_path: Path) -> None:
    """RECORD.jws and RECORD.p7s sign the input's RECORD, which the output no longer has: they are not
    copied (a stale signature would fail any check), and the output's RECORD lists exactly what it holds."""
    signatures = [(zipfile.ZipInfo(f"demo-1.0.dist-info/RECORD.{kind}"), b"signature") for kind in ("jws", "p7s")]
    # installers take a signature anywhere in .dist-info as one
    signatures.append((zipfile.ZipInfo("demo-1.0.dist-info/sub/RECORD.jws"), b"signature"))
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = 1\n", "demo/data.txt": "d\n"}, extra=signatures)
    with zipfile.ZipFile(wheel) as zf:
        WheelFile(zf).validate_record(validate_contents=True)  # the input is a valid signed wheel
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert list(entries(result.output)) == [
        "demo/__init__.pyc",
        "demo/data.txt",
        "demo-1.0.dist-info/METADATA",
        "demo-1.0.dist-info/WHEEL",
        "demo-1.0.dist-info/RECORD",
    ]
    assert sorted(record_of(result.output)) == sorted(entries(result.output))
    proc = run_cli("verify", str(result.output))
    assert proc.returncode == 0, proc.stderr


WHEEL_TEXT = (
    "Wheel-Version: 1.0\n"
    "Generator: test\n"
    "  a continued Generator line\n"
    "Tag: py2-none-any\n"
    "\tTAB-CONTINUED-TAG\n"
    "Root-Is-Purelib: true\n"
    "X-Custom: kept\n"
    "tag: py3-none-any\n"
    "\n"
)


def test_wheel_keeps_every_line_but_the_tags_and_ends_with_the_new_ones(tmp_path: Path) -> None:
    """WHEEL: every Tag line (any case, with its continuation lines, whether they start with a space or a
    tab) is dropped and the target's tag is appended; every other line, continuations included, is kept
    as it was; no blank line is left before the new Tag lines, where a parser would end the headers."""
    from email.parser import BytesParser

    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""}, tag="py2.py3-none-any", wheel_text=WHEEL_TEXT)
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    with zipfile.ZipFile(result.output) as zf:
        text = zf.read("demo-1.0.dist-info/WHEEL")
    assert text.decode() == (
        "Wheel-Version: 1.0\n"
        "Generator: test\n"
        "  a continued Generator line\n"
        "Root-Is-Purelib: true\n"
        "X-Custom: kept\n"
        f"Tag: {OWN}-none-any\n"
    )
    assert BytesParser().parsebytes(text).get_all("Tag") == [f"{OWN}-none-any"]
    assert record_of(result.output)["demo-1.0.dist-info/WHEEL"] == (_hash(text), str(len(text)))


def test_purelib_and_platlib_modules_are_compiled_for_their_install_path(tmp_path: Path) -> None:
    """Modules in ``<name>.data/purelib`` and ``.../platlib`` are importable: both are compiled, their code
    objects name the path they install to, and pip installs them as sourceless modules that import."""
    interp = find_interpreter(None)
    files = {
        "demo/__init__.py": "",
        "demo-1.0.data/purelib/demo_pure.py": "KIND = 'pure'\n",
        "demo-1.0.data/platlib/demo_plat.py": "KIND = 'plat'\n",
    }
    (result,) = convert_wheel(make_wheel(tmp_path, files), tmp_path / "out", [interp])
    assert result.compiled == [
        "demo-1.0.data/platlib/demo_plat.py",
        "demo-1.0.data/purelib/demo_pure.py",
        "demo/__init__.py",
    ]
    assert list(entries(result.output))[:3] == [
        "demo/__init__.pyc",
        "demo-1.0.data/purelib/demo_pure.pyc",
        "demo-1.0.data/platlib/demo_plat.pyc",
    ]
    site = tmp_path / "site"
    install_with_pip(result.output, site, interp)
    assert sorted(p.name for p in site.glob("demo_*")) == ["demo_plat.pyc", "demo_pure.pyc"]
    code = (
        "import demo_plat, demo_pure\n"
        "for m in (demo_plat, demo_pure):\n"
        "    print(m.KIND, type(m.__loader__).__name__, m.__loader__.get_code(m.__name__).co_filename)\n"
    )
    assert run_python(interp, code, path=site).stdout.splitlines() == [
        "plat SourcelessFileLoader demo_plat.py",
        "pure SourcelessFileLoader demo_pure.py",
    ]


def test_python_files_in_dist_info_are_metadata_and_stay_as_they_are(tmp_path: Path) -> None:
    """A ``.py`` in the ``.dist-info`` directory is metadata, never imported: it is copied byte for byte,
    not compiled."""
    source = "# a licence text that happens to end in .py\n"
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo-1.0.dist-info/licenses/LICENSE.py": source})
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert result.compiled == ["demo/__init__.py"] and result.kept_source == []
    out = entries(result.output)
    assert "demo-1.0.dist-info/licenses/LICENSE.pyc" not in out
    with zipfile.ZipFile(result.output) as zf:
        assert zf.read("demo-1.0.dist-info/licenses/LICENSE.py") == source.encode()


def test_modes_follow_the_execute_bits_and_are_unix_modes(tmp_path: Path) -> None:
    """Any execute bit (owner, group or other) makes an entry 0o755, a compiled module's included; every
    entry is marked as made on Unix, so that unzip and installers read its mode."""
    files = {
        "demo/__init__.py": "",
        "demo/__main__.py": "print('run')\n",
        "demo-1.0.data/scripts/group-exec": "#!/bin/sh\n",
        "demo-1.0.data/scripts/other-exec": "#!/bin/sh\n",
        "demo/data.txt": "d\n",
    }
    modes = {
        "demo/__main__.py": 0o755,
        "demo-1.0.data/scripts/group-exec": 0o654,
        "demo-1.0.data/scripts/other-exec": 0o645,
        "demo/data.txt": 0o640,
    }
    (result,) = convert_wheel(make_wheel(tmp_path, files, modes=modes), tmp_path / "out", [find_interpreter(None)])
    out = entries(result.output)
    assert {name: info.external_attr >> 16 for name, info in out.items()} == {
        "demo/__init__.pyc": 0o100644,
        "demo/__main__.pyc": 0o100755,
        "demo-1.0.data/scripts/group-exec": 0o100755,
        "demo-1.0.data/scripts/other-exec": 0o100755,
        "demo/data.txt": 0o100644,
        "demo-1.0.dist-info/METADATA": 0o100644,
        "demo-1.0.dist-info/WHEEL": 0o100644,
        "demo-1.0.dist-info/RECORD": 0o100644,
    }
    assert {info.create_system for info in out.values()} == {3}


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (None, None),
        ("1700000000", (2023, 11, 14, 22, 13, 20)),
        ("0", (1980, 1, 1, 0, 0, 0)),  # zip cannot hold a time before 1980: clamped
        ("", None),
        ("soon", None),  # not a number of seconds: ignored, not a crash
    ],
)
def test_source_date_epoch_sets_every_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epoch: str | None, expected: tuple[int, ...] | None
) -> None:
    """With SOURCE_DATE_EPOCH (seconds) every entry, RECORD and WHEEL included, is dated then (1980 at
    the earliest); without it, or with something that is not a number, each keeps its input's date."""
    if epoch is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    dates = {
        "demo/core.py": (2022, 2, 2, 2, 2, 2),
        "demo-1.0.dist-info/WHEEL": (2023, 3, 3, 3, 3, 4),
        "demo-1.0.dist-info/RECORD": (2024, 4, 4, 4, 4, 4),
    }
    # a signature after RECORD, as signed wheels have it: dropped, and RECORD keeps its own date, not its
    signature = zipfile.ZipInfo("demo-1.0.dist-info/RECORD.jws", (2025, 5, 5, 5, 5, 6))
    files = {"demo/__init__.py": "", "demo/core.py": "X = 1\n"}
    wheel = make_wheel(tmp_path, files, date_times=dates, extra=[(signature, b"signature")])
    (result,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    stamps = {name: info.date_time for name, info in entries(result.output).items()}
    if expected is None:
        assert stamps == {
            "demo/__init__.pyc": (2021, 1, 1, 0, 0, 0),
            "demo/core.pyc": (2022, 2, 2, 2, 2, 2),
            "demo-1.0.dist-info/METADATA": (2021, 1, 1, 0, 0, 0),
            "demo-1.0.dist-info/WHEEL": (2023, 3, 3, 3, 3, 4),
            "demo-1.0.dist-info/RECORD": (2024, 4, 4, 4, 4, 4),
        }
    else:
        assert set(stamps.values()) == {expected} and len(stamps) == 5


def test_timestamp_pycs_record_the_sources_time_and_size_from_the_wheel(tmp_path: Path) -> None:
    """A timestamp-invalidated pyc's header holds its source's time (the wheel entry's) and size, as the
    pyc CPython would write beside that source."""
    wheel = make_wheel(
        tmp_path, {"demo/__init__.py": "X = 1\n"}, date_times={"demo/__init__.py": (2022, 2, 2, 2, 2, 2)}
    )
    interp = find_interpreter(None)
    (result,) = convert_wheel(wheel, tmp_path / "out", [interp], PycOptions(invalidation="timestamp"))
    with zipfile.ZipFile(result.output) as zf:
        header = zf.read("demo/__init__.pyc")[:16]
    assert header == interp.magic + struct.pack("<III", 0, 1643767322, len(b"X = 1\n"))


def test_an_output_name_keeps_the_build_tag_and_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the tags of the file name change: name, version and build tag stay. Without a directory the
    output goes to the working directory."""
    built = make_wheel(tmp_path, {"demo/__init__.py": ""}).rename(tmp_path / "demo-1.0-7build-py3-none-any.whl")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    (result,) = convert_wheel(built, None, [find_interpreter(None)])
    assert result.output.name == f"demo-1.0-7build-{OWN}-none-any.whl"
    assert (result.source, result.tag, result.interpreter.minor) == (built, f"{OWN}-none-any", RUNNING)
    assert [p.name for p in here.iterdir()] == [result.output.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [built.name, "here"]
    record_of(here / result.output.name)


def test_an_output_is_0o644_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    """A new wheel is readable by all (0o644, whatever the umask); writing over an existing output keeps
    that file's mode."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    (first,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert stat.S_IMODE(first.output.stat().st_mode) == 0o644
    first.output.chmod(0o600)
    first.output.write_bytes(b"old")
    (second,) = convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert second.output == first.output and stat.S_IMODE(second.output.stat().st_mode) == 0o600
    record_of(second.output)


def test_a_symlink_at_the_output_name_is_replaced_not_followed(tmp_path: Path) -> None:
    """A link where the output goes (even to a directory) is replaced by the wheel; what it points to is
    left alone."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    out = tmp_path / "out"
    out.mkdir()
    pointed = tmp_path / "pointed"
    pointed.mkdir()
    link = out / f"demo-1.0-{OWN}-none-any.whl"
    link.symlink_to(pointed, target_is_directory=True)
    (result,) = convert_wheel(wheel, out, [find_interpreter(None)])
    assert result.output == link and not link.is_symlink() and link.is_file()
    assert stat.S_IMODE(link.stat().st_mode) == 0o644  # not the mode of the directory the link pointed to
    assert list(pointed.iterdir()) == []
    record_of(link)


def test_exclude_patterns_match_the_install_path_of_data_modules(tmp_path: Path) -> None:
    """``exclude`` patterns are relative to site-packages: ``/demo_extra.py`` matches the module installed
    from ``<name>.data/purelib/demo_extra.py``, which then keeps its source."""
    files = {"demo/__init__.py": "", "demo-1.0.data/purelib/demo_extra.py": "E = 1\n"}
    options = PycOptions(exclude=("/demo_extra.py",))
    (result,) = convert_wheel(make_wheel(tmp_path, files), tmp_path / "out", [find_interpreter(None)], options)
    assert result.kept_source == ["demo-1.0.data/purelib/demo_extra.py"]
    assert result.compiled == ["demo/__init__.py"]
    out = entries(result.output)
    assert "demo-1.0.data/purelib/demo_extra.py" in out and "demo-1.0.data/purelib/demo_extra.pyc" not in out


def test_ddir_prefixes_the_install_path_in_code_objects(tmp_path: Path) -> None:
    """``ddir`` (with or without a trailing slash) is joined to each module's install path, root and
    purelib alike, for the file names tracebacks show."""
    import marshal

    files = {"demo/__init__.py": "", "demo-1.0.data/purelib/demo_extra.py": "E = 1\n"}
    wheel = make_wheel(tmp_path, files)
    for ddir in ("/opt/app/", "/opt/app"):
        options = PycOptions(ddir=ddir)
        (result,) = convert_wheel(wheel, tmp_path / ddir.replace("/", "_"), [find_interpreter(None)], options)
        with zipfile.ZipFile(result.output) as zf:
            names = {n: marshal.loads(zf.read(n)[16:]).co_filename for n in zf.namelist() if n.endswith(".pyc")}
        assert names == {
            "demo/__init__.pyc": "/opt/app/demo/__init__.py",
            "demo-1.0.data/purelib/demo_extra.pyc": "/opt/app/demo_extra.py",
        }


def test_members_are_copied_whatever_zip_writer_made_the_input(tmp_path: Path) -> None:
    """An input written by a streaming zip writer (data descriptors), with stored members and local extra
    fields, converts to a valid wheel: stored members stay stored, every local header carries its CRC and
    sizes (no data descriptor, so a streaming reader can unpack it), and pip installs it."""
    files = {"demo/__init__.py": "X = 1\n", "demo/blob.bin": b"\x00\x01" * 500, "demo/notes.txt": "n\n" * 50}
    wheel = rezip(
        make_wheel(tmp_path, files),
        streamed=True,
        stored=("demo/blob.bin",),
        extra_field=("demo/notes.txt", "demo-1.0.dist-info/METADATA"),
    )
    with zipfile.ZipFile(wheel) as zf:
        assert all(info.flag_bits & 0x08 for info in zf.infolist())
    interp = find_interpreter(None)
    (result,) = convert_wheel(wheel, tmp_path / "out", [interp])
    out = entries(result.output)
    record_of(result.output)
    assert out["demo/blob.bin"].compress_type == zipfile.ZIP_STORED
    data = result.output.read_bytes()
    for name, info in out.items():
        sig, _, _, flags, _, _, _, crc, csize, usize, _, _ = struct.unpack_from(
            "<4s2B4HL2L2H", data, info.header_offset
        )
        assert sig == b"PK\x03\x04" and not flags & 0x08, name
        assert (crc, csize, usize) == (info.CRC, info.compress_size, info.file_size), name
    site = tmp_path / "site"
    install_with_pip(result.output, site, interp)
    assert (site / "demo/blob.bin").read_bytes() == b"\x00\x01" * 500
    assert (site / "demo/notes.txt").read_text() == "n\n" * 50


def test_a_shipped_pyc_beside_a_source_kept_after_an_error_stays(tmp_path: Path) -> None:
    """With on_error="keep-source", a module that does not compile keeps its source and the pyc the wheel
    shipped beside it stays as it was: only a compiled module replaces a shipped pyc."""
    files = {"demo/__init__.py": "", "demo/bad.py": "X = (\n", "demo/bad.pyc": b"shipped", "demo/ok.py": "Y = 1\n"}
    options = PycOptions(on_error="keep-source")
    (result,) = convert_wheel(make_wheel(tmp_path, files), tmp_path / "out", [find_interpreter(None)], options)
    assert result.compiled == ["demo/__init__.py", "demo/ok.py"]
    assert result.kept_source == ["demo/bad.py"] and result.replaced == []
    out = entries(result.output)
    assert sorted(n for n in out if n.startswith("demo/")) == [
        "demo/__init__.pyc",
        "demo/bad.py",
        "demo/bad.pyc",
        "demo/ok.pyc",
    ]
    with zipfile.ZipFile(result.output) as zf:
        assert zf.read("demo/bad.pyc") == b"shipped"


def test_the_same_wheel_named_twice_is_converted_once(tmp_path: Path) -> None:
    """``convert_wheels`` takes a wheel given twice as one input: one conversion reported, one file written."""
    from hatch_pyc._wheel import convert_wheels

    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    results = convert_wheels([wheel, wheel], tmp_path / "out", [find_interpreter(None)])
    assert [r.output.name for r in results] == [f"demo-1.0-{OWN}-none-any.whl"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"demo-1.0-{OWN}-none-any.whl"]


def test_options_a_wheel_cannot_honour_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A sourceless wheel holds one optimisation level, and an explicit output name is for one target."""
    from hatch_pyc._errors import InvalidInput

    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    interp = find_interpreter(None)
    with pytest.raises(InvalidInput, match=r"^a sourceless wheel holds one optimisation level$"):
        convert_wheel(wheel, tmp_path / "out", [interp], PycOptions(levels=(0, 1)))
    with pytest.raises(InvalidInput, match=r"^an explicit output name takes exactly one target$"):
        convert_wheel(wheel, None, [interp, interp], output=tmp_path / "out" / "x.whl")
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]


def test_a_failed_conversion_leaves_no_directory_it_made(tmp_path: Path) -> None:
    """``convert_wheel`` (the build hook's path): a module that does not compile leaves neither a
    temporary nor the output directories the run created."""
    from hatch_pyc._errors import CompileFailed

    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = (\n"})
    with pytest.raises(CompileFailed, match=r"demo/__init__\.py"):
        convert_wheel(wheel, tmp_path / "new" / "deeper", [find_interpreter(None)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]


def test_a_wheel_changed_on_disk_during_the_conversion_is_an_error_not_a_corrupt_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members are copied from the file by the offsets read when it was checked: if the file changed
    meanwhile (here four bytes are put in front), the copy stops at the first member whose local
    header is not where it was, and neither an output nor a temporary is left."""
    from hatch_pyc import _wheel

    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/data.txt": "d\n"})
    real = _wheel._write_wheel

    def changed_first(*args: object, **kwargs: object) -> Path:
        wheel.write_bytes(b"JUNK" + wheel.read_bytes())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_wheel, "_write_wheel", changed_first)
    with pytest.raises(zipfile.BadZipFile, match=r"bad local header for demo/data\.txt"):
        convert_wheel(wheel, tmp_path / "out", [find_interpreter(None)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.name]
