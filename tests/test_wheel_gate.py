"""The one gate for wheels: every command that reads a wheel refuses the same hostile ones the same way.

Each hostile wheel is built here from a dict of entries and run through ``wheel``, ``layer``,
``verify`` and ``report``: exit 2, one line naming the wheel, no traceback, no output left and
nothing written anywhere else (the commands' scratch space is a directory the test watches).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import _require, pip_for, run_cli, run_python, snapshot
from test_wheel import make_wheel

from hatch_pyc import find_interpreter
from hatch_pyc._wheelcheck import InvalidWheel, open_wheel

RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"
SITE = f"/usr/local/lib/python{RUNNING}/site-packages"


def _hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_from(
    directory: Path,
    filename: str,
    entries: dict[str, bytes | str],
    *,
    links: dict[str, str] | None = None,
    extra_rows: tuple[tuple[str, str, str], ...] = (),
) -> Path:
    """A wheel named ``filename`` holding exactly ``entries`` (plus RECORD, written for them)."""
    payload = {k: v.encode() if isinstance(v, str) else v for k, v in entries.items()}
    dist_info = next(k.split("/")[0] for k in payload if k.split("/")[0].endswith(".dist-info"))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for arcname, data in payload.items():
        writer.writerow((arcname, _hash(data), len(data)))
    for arcname, target in (links or {}).items():
        writer.writerow((arcname, _hash(target.encode()), len(target)))
    writer.writerows(extra_rows)
    writer.writerow((f"{dist_info}/RECORD", "", ""))
    path = directory / filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in payload.items():
            info = zipfile.ZipInfo(arcname, (2021, 1, 1, 0, 0, 0))
            info.external_attr = (0o644 | stat.S_IFREG) << 16
            zf.writestr(info, data)
        for arcname, target in (links or {}).items():
            info = zipfile.ZipInfo(arcname, (2021, 1, 1, 0, 0, 0))
            info.external_attr = (0o777 | stat.S_IFLNK) << 16
            zf.writestr(info, target)
        zf.writestr(f"{dist_info}/RECORD", rows.getvalue())
    return path


def _meta(name: str = "demo", version: str = "1.0", extra: str = "") -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{extra}"


def _wheel_file(version: str = "1.0", purelib: str | None = "true", tags: tuple[str, ...] = ("py3-none-any",)) -> str:
    lines = [f"Wheel-Version: {version}", "Generator: test"]
    if purelib is not None:
        lines.append(f"Root-Is-Purelib: {purelib}")
    lines += [f"Tag: {t}" for t in tags]
    return "\n".join(lines) + "\n"


def _good(**dist: str) -> dict[str, bytes | str]:
    di = dist.get("dist_info", "demo-1.0.dist-info")
    return {
        "demo/__init__.py": "X = 1\n",
        f"{di}/METADATA": dist.get("metadata", _meta()),
        f"{di}/WHEEL": dist.get("wheel", _wheel_file()),
    }


GOOD = "demo-1.0-py3-none-any.whl"

# case -> (file name, entries, wheel_from keywords, words the one line must hold)
CASES: dict[str, tuple[str, dict[str, bytes | str], dict[str, object], str]] = {
    "dotdot": (GOOD, {**_good(), "demo/../../evil.py": "x"}, {}, "is not a plain relative path"),
    "absolute": (GOOD, {**_good(), "/tmp/hatch-pyc-gate-evil.py": "x"}, {}, "absolute or non-POSIX path"),
    "symlink": (GOOD, _good(), {"links": {"demo/link.py": "/etc/passwd"}}, "is a symbolic link"),
    "record-lists-missing-file": (
        GOOD,
        _good(),
        {"extra_rows": (("demo/gone.py", _hash(b"x"), "1"),)},
        "RECORD lists 'demo/gone.py', which the archive does not hold",
    ),
    "dist-info-name": (
        GOOD,
        _good(dist_info="other-1.0.dist-info"),
        {},
        "its .dist-info directory other-1.0.dist-info is not named for demo",
    ),
    "dist-info-version": (
        GOOD,
        _good(dist_info="demo-2.0.dist-info"),
        {},
        "its .dist-info directory demo-2.0.dist-info is not for version 1.0",
    ),
    "two-dist-infos": (
        GOOD,
        {**_good(), "demo-1.1.dist-info/METADATA": _meta()},
        {},
        "expected one .dist-info directory, found 2",
    ),
    "metadata-name": (GOOD, _good(metadata=_meta(name="other")), {}, "METADATA names 'other', not demo"),
    "metadata-version": (GOOD, _good(metadata=_meta(version="1.1")), {}, "METADATA says version '1.1', not 1.0"),
    "no-metadata": (
        GOOD,
        {k: v for k, v in _good().items() if "METADATA" not in k},
        {},
        "has no demo-1.0.dist-info/METADATA",
    ),
    "wheel-version-2": (GOOD, _good(wheel=_wheel_file(version="2.0")), {}, "Wheel-Version 2.0 is not supported"),
    "no-wheel-version": (GOOD, _good(wheel="Root-Is-Purelib: true\nTag: py3-none-any\n"), {}, "no valid Wheel-Version"),
    "no-tag": (GOOD, _good(wheel=_wheel_file(tags=())), {}, "WHEEL has no Tag line"),
    "root-is-purelib-True": (GOOD, _good(wheel=_wheel_file(purelib="True")), {}, "Root-Is-Purelib is 'True'"),
    "root-is-purelib-missing": (GOOD, _good(wheel=_wheel_file(purelib=None)), {}, "Root-Is-Purelib is None"),
    "unknown-data-scheme": (
        GOOD,
        {**_good(), "demo-1.0.data/elsewhere/x.txt": "x"},
        {},
        "entry 'demo-1.0.data/elsewhere/x.txt' is in no install scheme",
    ),
    "entry-dot": (GOOD, {**_good(), ".": "x"}, {}, "is not a plain relative path"),
    "scheme-directory-as-a-file": (
        GOOD,
        {**_good(), "demo-1.0.data/purelib": "x"},
        {},
        "entry 'demo-1.0.data/purelib' is in no install scheme",
    ),
    "file-where-a-directory-goes": (
        GOOD,
        {**_good(), "demo/mod.py": "A = 1\n", "demo/mod.py/inner.py": "B = 2\n"},
        {},
        "entry 'demo/mod.py' is a file where 'demo/mod.py/inner.py' needs a directory",
    ),
    "root-and-purelib-one-file": (
        GOOD,
        {**_good(), "demo-1.0.data/purelib/demo/__init__.py": "X = 2\n"},
        {},
        "entries 'demo-1.0.data/purelib/demo/__init__.py' and 'demo/__init__.py' install to the same path",
    ),
    "purelib-and-platlib-one-file": (
        GOOD,
        {**_good(), "demo-1.0.data/purelib/extra.py": "A = 1\n", "demo-1.0.data/platlib/extra.py": "B = 2\n"},
        {},
        "install to the same path",
    ),
    "names-equal-but-for-case": (
        GOOD,
        {**_good(), "demo/Mod.py": "A = 1\n", "demo/mod.py": "B = 2\n"},
        {},
        "entries 'demo/Mod.py' and 'demo/mod.py' install to the same path where names differing in case",
    ),
    "names-equal-but-for-unicode-form": (
        GOOD,
        {**_good(), "demo/caf\u00e9.py": "A = 1\n", "demo/cafe\u0301.py": "B = 2\n"},
        {},
        "install to the same path where names differing in case or Unicode form are one",
    ),
    "second-data-directory": (
        GOOD,
        {**_good(), "evil.data/purelib/demo/__init__.py": "X = 2\n"},
        {},
        "entry 'evil.data/purelib/demo/__init__.py' is in a .data directory other than demo-1.0",
    ),
    "data-directory-spelled-otherwise": (
        GOOD,
        {**_good(), "demo-1.00.data/purelib/demo/extra.py": "X = 2\n"},
        {},
        "is in a .data directory other than demo-1.0.data (named for the file name and demo-1.0.dist-info)",
    ),
    "file-named-like-the-data-directory": (  # sent installer (layer, verify) into an endless loop
        GOOD,
        {**_good(), "demo-1.0.data": "boom"},
        {},
        "entry 'demo-1.0.data' is a file named like the .data directory",
    ),
    "name-windows-cannot-write": (
        GOOD,
        {**_good(), "demo/mod.py.": "X = 1\n"},
        {},
        "entry 'demo/mod.py.' cannot be written on Windows",
    ),
    "wheel-file-not-utf-8": (
        GOOD,
        {**_good(), "demo-1.0.dist-info/WHEEL": _wheel_file().encode().replace(b"test", b"\xff\xfe")},
        {},
        "demo-1.0.dist-info/WHEEL is not UTF-8 text",
    ),
    "bad-requires-python": (
        GOOD,
        _good(metadata=_meta(extra="Requires-Python: >=3.x\n")),
        {},
        "Requires-Python '>=3.x' is not a valid specifier",
    ),
}


def _commands(wheel: Path, out: Path) -> dict[str, tuple[str, ...]]:
    return {
        "wheel": ("wheel", str(wheel), "-o", str(out), "--python", RUNNING),
        "layer": ("layer", str(wheel), "--python", RUNNING, "--prefix", SITE, "-o", str(out / "layer.tar.gz")),
        "verify": ("verify", str(wheel), "--python", RUNNING),
        "report": ("report", str(wheel), "--python", RUNNING, "--json", str(out / "report.json")),
    }


def _refused_everywhere(tmp_path: Path, wheel: Path, words: str) -> None:
    """Every reader: exit 2, one line naming the wheel and holding ``words``, nothing left anywhere."""
    out = tmp_path / "out"
    scratch = tmp_path / "scratch"
    out.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    for command, args in _commands(wheel, out).items():
        proc = run_cli(*args, env={"TMPDIR": str(scratch)})
        assert proc.returncode == 2, (command, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (command, proc.stderr)
        assert lines[0].startswith(f"hatch-pyc: error: {wheel}: "), (command, lines[0])
        assert words in lines[0], (command, lines[0])
        assert not proc.stdout.strip(), (command, proc.stdout)
        assert snapshot(tmp_path) == before, command  # no output, no scratch left, nothing outside
    assert not Path("/tmp/hatch-pyc-gate-evil.py").exists()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_wheels_are_refused_by_every_reader(tmp_path: Path, case: str) -> None:
    filename, entries, keywords, words = CASES[case]
    (tmp_path / "in").mkdir()
    wheel = wheel_from(tmp_path / "in", filename, entries, **keywords)  # type: ignore[arg-type]
    _refused_everywhere(tmp_path, wheel, words)


# once: the fixtures are the same bytes under every runner; each runner reads real wheels in test_wheel.py
@pytest.mark.once
def test_the_well_formed_control_passes_every_reader(tmp_path: Path) -> None:
    """The fixtures above differ from a wheel every reader accepts in one thing only."""
    (tmp_path / "in").mkdir()
    wheel = wheel_from(tmp_path / "in", GOOD, _good())
    out = tmp_path / "out"
    out.mkdir()
    for command, args in _commands(wheel, out).items():
        proc = run_cli(*args)
        assert proc.returncode == 0, (command, proc.stderr)
    with open_wheel(wheel) as checked:
        assert (checked.name, str(checked.version), checked.dist_info) == ("demo", "1.0", "demo-1.0.dist-info")
        assert checked.root_is_purelib and checked.requires_python is None


def test_names_are_compared_normalised(tmp_path: Path) -> None:
    """PEP 503: ``My.Pkg``, ``my_pkg`` and ``my-pkg`` are one name; 1.0 and 1.0.0 one version."""
    entries = {
        "my_pkg/__init__.py": "",
        "My.Pkg-1.0.0.dist-info/METADATA": _meta(name="my-pkg", version="1.0"),
        "My.Pkg-1.0.0.dist-info/WHEEL": _wheel_file(),
    }
    wheel = wheel_from(tmp_path, "my_pkg-1.0-py3-none-any.whl", entries)
    with open_wheel(wheel) as checked:
        assert checked.name == "my-pkg"


def _installed_value(converted: Path, site: Path) -> str:
    """``demo.mod.VALUE`` once pip has installed ``converted`` into ``site``."""
    subprocess.run(
        [*pip_for(find_interpreter(RUNNING)), "install", "-q", "--no-deps", "--target", str(site), str(converted)],
        check=True,
        capture_output=True,
    )
    return run_python(sys.executable, "import demo.mod; print(demo.mod.VALUE)", path=site).stdout.strip()


def test_a_shipped_pyc_beside_its_source_is_replaced_and_said(tmp_path: Path) -> None:
    """Item 1: ``pkg/mod.py`` + ``pkg/mod.pyc`` gives one ``pkg/mod.pyc``, the compiled one; pip installs it."""
    stale = b"\x00" * 16 + b"not bytecode"  # never loaded beside its source; would break the module
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/mod.py": "VALUE = 42\n", "demo/mod.pyc": stale})
    out = tmp_path / "out"
    proc = run_cli("wheel", str(wheel), "-o", str(out), "--python", RUNNING, check=True)
    assert "1 shipped .pyc replaced by the compiled module (demo/mod.pyc)" in proc.stderr
    (converted,) = out.iterdir()
    with zipfile.ZipFile(converted) as zf:
        names = zf.namelist()
        assert names.count("demo/mod.pyc") == 1 and zf.read("demo/mod.pyc") != stale
        record = zf.read("demo-1.0.dist-info/RECORD").decode()
    assert record.count("demo/mod.pyc,") == 1
    assert _installed_value(converted, tmp_path / "site") == "42"


def test_a_shipped_pyc_beside_an_excluded_source_stays(tmp_path: Path) -> None:
    """An excluded module keeps its source, so the shipped pyc stays too (one of each, as in the input)."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/mod.py": "V = 1\n", "demo/mod.pyc": b"x"})
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "o"), "--exclude", "demo/mod.py", check=True)
    assert "replaced" not in proc.stderr
    (converted,) = (tmp_path / "o").iterdir()
    with zipfile.ZipFile(converted) as zf:
        assert sorted(n for n in zf.namelist() if n.startswith("demo/mod")) == ["demo/mod.py", "demo/mod.pyc"]


def test_requires_python_excluding_the_target_is_refused(tmp_path: Path) -> None:
    """Item 3: the CLI checks Requires-Python as the hook does; nothing is written."""
    other = next(m for m in ("3.10", "3.11") if m != RUNNING)
    _require(other)
    (tmp_path / "in").mkdir()
    wheel = wheel_from(tmp_path / "in", GOOD, _good(metadata=_meta(extra="Requires-Python: >=3.12\n")))
    out = tmp_path / "out"
    proc = run_cli("wheel", str(wheel), "-o", str(out), "--python", other)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"{wheel}: its Requires-Python `>=3.12` excludes CPython {other} (installers would refuse" in line
    assert "nothing was written" in line
    assert not out.exists() or not list(out.iterdir())
    with open_wheel(wheel) as checked, pytest.raises(InvalidWheel) as caught:
        checked.check_target(find_interpreter(other))
    assert str(caught.value) == (
        f"{wheel}: its Requires-Python `>=3.12` excludes CPython {other} (installers would refuse the wheel); "
        "choose a target it allows"
    )


@pytest.mark.parametrize("binary_first", [True, False])
def test_every_wheel_and_target_is_checked_before_anything_is_written(tmp_path: Path, binary_first: bool) -> None:
    """Item 4: A (cp312 binary) and B (pure) for 3.12 and 3.13: exit 2 naming A and 3.13; nothing written."""
    for minor in ("3.12", "3.13"):
        _require(minor)
    binary = make_wheel(tmp_path, {"a/__init__.py": ""}, name="a", tag="cp312-cp312-linux_x86_64")
    pure = make_wheel(tmp_path, {"b/__init__.py": ""}, name="b")
    wheels = [binary, pure] if binary_first else [pure, binary]
    out = tmp_path / "out"
    proc = run_cli("wheel", *map(str, wheels), "-o", str(out), "--python", "3.12", "--python", "3.13")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"{binary}: its tags (cp312-cp312-linux_x86_64) do not include CPython 3.13" in line
    assert line.endswith("; nothing was written")
    assert not out.exists() or not list(out.iterdir())
    run_cli("wheel", *map(str, wheels), "-o", str(out), "--python", "3.12", check=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "a-1.0-cp312-cp312-linux_x86_64.whl",
        "b-1.0-cp312-none-any.whl",
    ]


def test_a_later_wheel_failing_to_compile_leaves_no_earlier_output(tmp_path: Path) -> None:
    """Outputs are renamed into place together: a failure in the last wheel leaves none of them (nor the
    output directory the run made)."""
    good = make_wheel(tmp_path, {"a/__init__.py": "A = 1\n"}, name="a")
    broken = make_wheel(tmp_path, {"b/__init__.py": "def (:\n"}, name="b")
    out = tmp_path / "out"
    proc = run_cli("wheel", str(good), str(broken), "-o", str(out))
    assert proc.returncode == 1 and "b/__init__.py:1" in proc.stderr
    assert not out.exists()


def test_two_wheels_with_one_output_name_are_refused(tmp_path: Path) -> None:
    """Two inputs that would be written under one name: the later would silently replace the earlier."""
    first = make_wheel(tmp_path, {"demo/__init__.py": ""})
    (tmp_path / "copy").mkdir()
    second = shutil.copy(first, tmp_path / "copy" / first.name)
    out = tmp_path / "out"
    proc = run_cli("wheel", str(first), str(second), "-o", str(out))
    assert proc.returncode == 2
    assert f"{first} and {second} would both be written as demo-1.0-cp" in proc.stderr
    assert not out.exists() or not list(out.iterdir())
    run_cli("wheel", str(first), str(first), "-o", str(out), check=True)  # the same file twice is one input
    assert len(list(out.iterdir())) == 1


@pytest.mark.slow
@pytest.mark.once  # the guide's commands as written, with its fixed targets (3.12, 3.13)
def test_the_wheels_guide_example_runs_as_written(tmp_path: Path) -> None:
    """docs/wheels.md's ``hatch-pyc wheel`` examples, command for command, with real wheels from PyPI."""
    for minor in ("3.12", "3.13"):
        _require(minor)
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "--no-deps", "--only-binary", ":all:", "requests==2.32.3", "urllib3==2.2.3", "-d", "wheels"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    pure = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "wheels").glob("*.whl"))
    wheel_args = ("-o", "sourceless", "--python", "3.12", "--python", "3.13", "-O", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", "wheel", *pure, *wheel_args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HATCH_PYC_CACHE_DIR": str(tmp_path / "cache")},  # a first run: an empty cache
    )
    assert proc.stderr.splitlines()[:2] == [
        "hatch-pyc: sourceless/requests-2.32.3-cp312-none-any.whl (18 modules compiled, 0 of 18 from the compile cache)",
        "hatch-pyc: sourceless/requests-2.32.3-cp313-none-any.whl (18 modules compiled, 0 of 18 from the compile cache)",
    ]
    for minor in ("3.12", "3.13"):
        subprocess.run(
            [*pip, "--no-deps", "--only-binary", ":all:", "--python-version", minor, "pyyaml==6.0.2", "-d", "yaml"],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )
    yaml = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "yaml").glob("*.whl"))
    before = sorted(p.name for p in (tmp_path / "sourceless").iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "hatch_pyc", "wheel", *yaml, "-o", "sourceless", "--python", "3.12", "--python", "3.13"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "do not include CPython 3.13" in proc.stderr and "; nothing was written" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "sourceless").iterdir()) == before
    for minor, wheel in zip(("3.12", "3.13"), yaml, strict=True):
        run_cli("wheel", str(tmp_path / wheel), "-o", str(tmp_path / "sourceless"), "--python", minor, check=True)
    assert len(before) == 4 and len(list((tmp_path / "sourceless").iterdir())) == 6


# Found by an adversarial review of the gate.


@pytest.mark.parametrize("entry", ["demo/__init__.py", "demo-1.0.dist-info/METADATA", "demo-1.0.dist-info/WHEEL"])
def test_an_entry_no_decoder_can_read_is_refused_in_one_line_everywhere(tmp_path: Path, entry: str) -> None:
    (tmp_path / "in").mkdir()
    wheel = wheel_from(tmp_path / "in", GOOD, _good())
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(entry)
    central = data.find(b"PK\x01\x02" + data[info.header_offset + 4 : info.header_offset + 6])
    while data[central + 46 : central + 46 + len(entry)] != entry.encode():
        central = data.find(b"PK\x01\x02", central + 1)
    for offset in (info.header_offset + 8, central + 10):  # the local and the central header's method
        data[offset : offset + 2] = (99).to_bytes(2, "little")  # 99: AES, which zipfile cannot decode
    wheel.write_bytes(bytes(data))
    _refused_everywhere(tmp_path, wheel, "cannot be read as a wheel")


def test_a_wheel_whose_requires_python_excludes_the_target_is_refused_by_every_reader(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    newer = f">={sys.version_info[0]}.{sys.version_info[1] + 1}"
    wheel = wheel_from(tmp_path / "in", GOOD, _good(metadata=_meta(extra=f"Requires-Python: {newer}\n")))
    _refused_everywhere(tmp_path, wheel, "excludes CPython")


def test_names_equal_but_for_case_pass_in_a_linux_only_wheel(tmp_path: Path) -> None:
    """Linux file systems tell ``Mod.py`` from ``mod.py``: a wheel only Linux installs may hold both."""
    name = "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    entries = {**_good(wheel=_wheel_file(purelib="false", tags=("cp311-cp311-manylinux_2_17_x86_64",)))}
    wheel = wheel_from(tmp_path, name, {**entries, "demo/Mod.py": "A = 1\n", "demo/mod.py": "B = 2\n"})
    with open_wheel(wheel) as checked:
        assert {"demo/Mod.py", "demo/mod.py"} <= checked.names


@pytest.mark.parametrize(
    ("requires", "admitted"),
    [
        (">={minor}.{later}", True),  # a later patch release of the target's minor version: the wheel serves it
        ("<={minor}.0", True),
        ("=={minor}.*", True),
        ("!={minor}.*", False),
        ("<{minor}", False),
        (">={next}", False),
    ],
)
def test_requires_python_is_checked_against_the_targets_minor_version(
    tmp_path: Path, requires: str, admitted: bool
) -> None:
    """The output is tagged cpXY and installs on every X.Y.z: refused only when no X.Y.z is allowed."""
    interp = find_interpreter(RUNNING)
    major, minor, patch = interp.version[:3]
    text = requires.format(minor=f"{major}.{minor}", later=patch + 1, next=f"{major}.{minor + 1}")
    wheel = wheel_from(tmp_path, GOOD, _good(metadata=_meta(extra=f"Requires-Python: {text}\n")))
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), "--python", RUNNING)
    if admitted:
        assert proc.returncode == 0, proc.stderr
        assert len(list((tmp_path / "out").iterdir())) == 1
    else:
        assert proc.returncode == 2, proc.stderr
        assert f"excludes CPython {major}.{minor} " in proc.stderr
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_hostile_mode_bits_are_not_copied_to_the_output(tmp_path: Path) -> None:
    """Set-id, sticky, world-writable bits and file types in external_attr become 0o644 or 0o755."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", "demo/data.txt": "d", "demo/tool.sh": "#!/bin/sh\n"})
    hostile = {"demo/data.txt": 0o106666, "demo/tool.sh": 0o107777, "demo/__init__.py": 0o020644}
    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        central = {i.filename: i for i in zf.infolist()}
    for name, mode in hostile.items():  # patch external_attr in each central directory record
        record = data.find(b"PK\x01\x02" + data[central[name].header_offset + 4 : central[name].header_offset + 6])
        while data[record + 46 : record + 46 + len(name)] != name.encode():
            record = data.find(b"PK\x01\x02", record + 1)
        data[record + 38 : record + 42] = (mode << 16).to_bytes(4, "little")
    wheel.write_bytes(bytes(data))
    with zipfile.ZipFile(wheel) as zf:
        assert {i.filename: i.external_attr >> 16 for i in zf.infolist() if i.filename in hostile} == hostile
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), check=True)
    (converted,) = (tmp_path / "out").iterdir()
    with zipfile.ZipFile(converted) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    assert modes["demo/data.txt"] == 0o100644
    assert modes["demo/tool.sh"] == 0o100755
    assert modes["demo/__init__.pyc"] == 0o100644
    assert all(mode in (0o100644, 0o100755) for mode in modes.values()), modes


def _outputs_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


FAIL_SECOND_MOVE = r"""
import sys
from hatch_pyc import _commit, _wheel
from hatch_pyc._targets import find_interpreter
real = _commit.Commit.install
moves = []
def install(self, tmp, final):
    moves.append(final)
    if len(moves) == 2:
        raise PermissionError(13, "Permission denied", str(final))  # as a read-only name would
    real(self, tmp, final)
_commit.Commit.install = install
try:
    _wheel.convert_wheels(sys.argv[1:3], sys.argv[3], [find_interpreter(None)])
except PermissionError as exc:
    print("failed at", exc.filename)
"""


def test_a_failing_move_puts_back_what_earlier_moves_replaced(tmp_path: Path) -> None:
    """Outputs move into place together: when the second move fails, the first, which replaced an older
    wheel, is undone and the older wheel is back, byte for byte, with no temporary or backup left."""
    first = make_wheel(tmp_path, {"a/__init__.py": "A = 1\n"}, name="a")
    second = make_wheel(tmp_path, {"b/__init__.py": "B = 1\n"}, name="b")
    out = tmp_path / "out"
    out.mkdir()
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-none-any"
    (out / f"a-1.0-{tag}.whl").write_bytes(b"an older output\n")
    before = snapshot(out)
    proc = subprocess.run(
        [sys.executable, "-c", FAIL_SECOND_MOVE, str(first), str(second), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == f"failed at {out / f'b-1.0-{tag}.whl'}"
    assert snapshot(out) == before


def test_an_output_name_held_by_a_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    out = tmp_path / "out"
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-none-any"
    (out / f"demo-1.0-{tag}.whl").mkdir(parents=True)
    before = snapshot(tmp_path)
    proc = run_cli("wheel", str(wheel), "-o", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert (
        line
        == f"hatch-pyc: error: {out / f'demo-1.0-{tag}.whl'}: a directory, where the converted wheel goes; nothing was written"
    )
    assert snapshot(tmp_path) == before


def test_a_killed_runs_temporaries_are_removed_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL cannot be held: what a killed run left under its own names goes when the output is written again."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": ""})
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    pid = int(dead.stdout)
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-none-any"
    left = out / f".demo-1.0-{tag}.whl.{pid}-0badc0de.hatch-pyc-tmp"
    other = out / f".other-1.0-{tag}.whl.{pid}-0badc0de.hatch-pyc-tmp"  # not this run's output: kept
    mine = out / "notes.txt"
    for path in (left, other, mine):
        path.write_bytes(b"half a wheel")
    run_cli("wheel", str(wheel), "-o", str(out), check=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"demo-1.0-{tag}.whl", other.name, mine.name])


INTERRUPT_DURING_COMMIT = r"""
import os, signal, sys
from hatch_pyc import _commit, _wheel
from hatch_pyc._errors import Interrupted
from hatch_pyc._targets import find_interpreter
real = _commit.Commit.install
def install(self, tmp, final):
    real(self, tmp, final)
    os.kill(os.getpid(), signal.SIGINT)  # after the first output moved: held until the last
_commit.Commit.install = install
try:
    _wheel.convert_wheels(sys.argv[1:3], sys.argv[3], [find_interpreter(None)])
except Interrupted as exc:
    print("interrupted after", len(exc.result), "outputs:", sorted(os.listdir(sys.argv[3])))
"""


def test_an_interrupt_while_outputs_move_lands_after_the_last(tmp_path: Path) -> None:
    first = make_wheel(tmp_path, {"a/__init__.py": ""}, name="a")
    second = make_wheel(tmp_path, {"b/__init__.py": ""}, name="b")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_DURING_COMMIT, str(first), str(second), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-none-any"
    assert proc.stdout.strip() == f"interrupted after 2 outputs: ['a-1.0-{tag}.whl', 'b-1.0-{tag}.whl']"


def test_names_equal_only_once_case_folded_are_two_files(tmp_path: Path) -> None:
    """NTFS and APFS compare names by simple case mapping: "straße" and "strasse" are two files."""
    wheel = wheel_from(tmp_path, GOOD, {**_good(), "demo/straße.py": "A = 1\n", "demo/strasse.py": "B = 2\n"})
    with open_wheel(wheel) as checked:
        assert {"demo/straße.py", "demo/strasse.py"} <= checked.names


def test_an_output_that_would_replace_an_input_wheel_is_refused(tmp_path: Path) -> None:
    """``-o`` the input's own directory, with a tag that gives the output the input's name: refused."""
    cp = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "X = 1\n"}, tag=f"{cp}-none-any")
    before = snapshot(tmp_path)
    proc = run_cli("wheel", str(wheel), "-o", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"its output {wheel} would replace an input wheel" in line and line.endswith("; nothing was written")
    assert snapshot(tmp_path) == before


def test_tag_lines_in_any_letter_case_are_replaced(tmp_path: Path) -> None:
    """Header names are read in any case: a ``tag:`` line (and its continuation) must not survive."""
    from email.parser import BytesParser

    wheel_text = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\ntag: py3-none-any\n  TAG-CONTINUED\n"
    wheel = wheel_from(tmp_path, GOOD, _good(wheel=wheel_text))
    run_cli("wheel", str(wheel), "-o", str(tmp_path / "out"), check=True)
    (converted,) = (tmp_path / "out").iterdir()
    with zipfile.ZipFile(converted) as zf:
        text = zf.read("demo-1.0.dist-info/WHEEL")
    cp = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert BytesParser().parsebytes(text).get_all("Tag") == [f"{cp}-none-any"]
    assert b"TAG-CONTINUED" not in text


def test_a_shipped_pyc_at_a_compiled_modules_install_path_is_replaced(tmp_path: Path) -> None:
    """Found by an adversarial review: ``demo/mod.py`` beside a shipped ``demo-1.0.data/purelib/demo/mod.pyc``
    (one install path, two entries) gave a wheel with both pycs; pip installed the shipped one last, and the module
    failed to import (bad magic number). The shipped pyc is replaced, as one beside its source is."""
    stale = b"\x00" * 16 + b"not bytecode"
    wheel = make_wheel(
        tmp_path, {"demo/__init__.py": "", "demo/mod.py": "VALUE = 42\n", "demo-1.0.data/purelib/demo/mod.pyc": stale}
    )
    out = tmp_path / "out"
    proc = run_cli("wheel", str(wheel), "-o", str(out), "--python", RUNNING, check=True)
    assert "1 shipped .pyc replaced by the compiled module (demo-1.0.data/purelib/demo/mod.pyc)" in proc.stderr
    (converted,) = out.iterdir()
    with zipfile.ZipFile(converted) as zf:
        assert [n for n in zf.namelist() if n.endswith("mod.pyc")] == ["demo/mod.pyc"]
    assert _installed_value(converted, tmp_path / "site") == "42"


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"demo/mod.py": "M = 1\n", "demo/mod.pyc/x.txt": "x\n"}, "is a file where"),
        ({"demo/A.py": "A = 1\n", "demo/a.pyc": b"\x00" * 20}, "install to the same path"),
    ],
    ids=["pyc-where-a-directory-goes", "case-folded-pair"],
)
def test_a_wheel_whose_sourceless_form_could_not_be_installed_is_refused(
    tmp_path: Path, files: dict[str, str | bytes], why: str
) -> None:
    """The sourceless wheel's names go through the gate's install-path rules too: ``demo/mod.pyc/x.txt`` beside
    ``demo/mod.py`` (pip: Not a directory, a half-done install), ``demo/A.py`` beside ``demo/a.pyc`` in a ``-any``
    wheel (two names one file on macOS and Windows)."""
    wheel = make_wheel(tmp_path, {"demo/__init__.py": "", **files})
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    proc = run_cli("wheel", str(wheel), "-o", str(out), "--python", RUNNING)
    assert proc.returncode != 0 and why in proc.stderr and "once its modules are compiled" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(tmp_path) == before
