"""OCI layers and images written without an engine: reproducible, correct digests, loadable."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import run_cli, run_python
from test_wheel import make_wheel

from hatch_pyc import Interpreter, PycOptions
from hatch_pyc._layer import DEFAULT_EPOCH, write_layer
from hatch_pyc._pycinfo import parse_header

APP = {
    "app/__init__.py": '"""The app."""\nfrom app.core import VALUE\n',
    "app/core.py": "VALUE = 7\nassert VALUE\n",
    "app/data.txt": "data\n",
    "app-1.0.data/scripts/app-tool": "#!python\nimport app\nprint('tool', app.VALUE)\n",
}


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, APP, name="app", modes={"app-1.0.data/scripts/app-tool": 0o755})


def _members(layer: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(layer) as tar:
        return tar.getmembers()


def test_layer_is_reproducible_with_correct_digests(wheel: Path, tmp_path: Path, target: Interpreter) -> None:
    prefix = f"/usr/local/lib/python{target.minor}/site-packages"
    options = PycOptions(levels=(0, 1, 2))
    first = write_layer([wheel], tmp_path / "a.tar.gz", target, prefix=prefix, options=options)
    second = write_layer([wheel], tmp_path / "b.tar.gz", target, prefix=prefix, options=options)
    data = first.path.read_bytes()
    assert data == second.path.read_bytes()
    assert first.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert first.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    assert data[4:8] == b"\0\0\0\0"  # gzip header time 0

    members = _members(first.path)
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == DEFAULT_EPOCH for m in members)
    site = prefix.lstrip("/")
    by_name = {m.name: m for m in members}
    tag = target.cache_tag
    # app/core.py has an assert: opt-1 differs from opt-0; opt-2 equals opt-1 (no docstrings) -> a hard link.
    assert by_name[f"{site}/app/__pycache__/core.{tag}.opt-2.pyc"].islnk()
    assert (
        by_name[f"{site}/app/__pycache__/core.{tag}.opt-2.pyc"].linkname
        == f"{site}/app/__pycache__/core.{tag}.opt-1.pyc"
    )
    script = by_name["usr/local/bin/app-tool"]
    assert stat.S_IMODE(script.mode) == 0o755
    with tarfile.open(first.path) as tar:
        body = tar.extractfile(script).read().decode()  # type: ignore[union-attr]
        header = parse_header(tar.extractfile(by_name[f"{site}/app/__pycache__/core.{tag}.pyc"]).read(16))  # type: ignore[union-attr]
    assert body.startswith(f"#!/usr/local/bin/python{target.minor}\n")
    # Timestamp pycs record the time every file has in the layer, so they are valid once unpacked.
    assert header.source_mtime == DEFAULT_EPOCH and header.magic == target.magic


def test_unpacked_layer_imports_and_runs(wheel: Path, tmp_path: Path, target: Interpreter) -> None:
    prefix = f"/usr/local/lib/python{target.minor}/site-packages"
    layer = write_layer([wheel], tmp_path / "l.tar.gz", target, prefix=prefix, options=PycOptions(strip=True))
    root = tmp_path / "root"
    with tarfile.open(layer.path) as tar:
        tar.extractall(root, filter="tar")
    site = root / prefix.lstrip("/")
    assert not list(site.rglob("*.py"))
    code = "import app, app.core; print(app.VALUE, app.core.__file__.endswith('.pyc'), app.core.__spec__.loader.get_code('app.core').co_filename)"
    assert run_python(target, code, path=site).stdout.split() == ["7", "True", f"{prefix}/app/core.py"]


def test_cli_writes_an_oci_layout_that_skopeo_and_umoci_read(wheel: Path, tmp_path: Path) -> None:
    for tool in ("skopeo", "umoci"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is required on CI")
            pytest.skip(f"{tool} not installed")
    layout = tmp_path / "image"
    proc = run_cli(
        "layer",
        str(wheel),
        "--python",
        "3.12",
        "--prefix",
        "/usr/local/lib/python3.12/site-packages",
        "-o",
        str(tmp_path / "layer.tar.gz"),
        "--oci-layout",
        str(layout),
        "--tag",
        "app:1.0",
        check=True,
    )
    digest = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("digest"))
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/app:1.0"
    (docker_manifest,) = json.loads((layout / "manifest.json").read_text())
    assert docker_manifest["RepoTags"] == ["app:1.0"]
    inspect = json.loads(
        subprocess.run(["skopeo", "inspect", f"oci:{layout}:1.0"], capture_output=True, text=True, check=True).stdout
    )
    assert inspect["Layers"] == [digest]
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1.0", str(tmp_path / "bundle")],
        capture_output=True,
        check=True,
    )
    assert (tmp_path / "bundle/rootfs/usr/local/lib/python3.12/site-packages/app/__pycache__").is_dir()
    # The same image as one tar is byte-identical from run to run.
    tars = []
    for name in ("one.tar", "two.tar"):
        run_cli(
            "layer",
            str(wheel),
            "--python",
            "3.12",
            "--prefix",
            "/usr/local/lib/python3.12/site-packages",
            "-o",
            str(tmp_path / "layer.tar.gz"),
            "--oci-layout",
            str(tmp_path / name),
            "-q",
            check=True,
        )
        tars.append((tmp_path / name).read_bytes())
    assert tars[0] == tars[1]


def test_bad_prefix_and_wheel_are_refused(wheel: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "layer",
        str(wheel),
        "--python",
        "3.12",
        "--prefix",
        "/usr/local/lib/python3.11/site-packages",
        "-o",
        str(tmp_path / "l.tar.gz"),
    )
    assert proc.returncode == 2 and "is for Python 3.11, but the target is 3.12" in proc.stderr
    (tmp_path / "b").mkdir()
    broken = make_wheel(
        tmp_path / "b",
        {"x/__init__.py": ""},
        name="x",
        record_override={"x/__init__.py": ("sha256=AAAA", "0")},
    )
    proc = run_cli(
        "layer",
        str(broken),
        "--python",
        "3.12",
        "--prefix",
        "/usr/local/lib/python3.12/site-packages",
        "-o",
        str(tmp_path / "l.tar.gz"),
    )
    assert proc.returncode == 2 and "cannot install it" in proc.stderr
    assert not (tmp_path / "l.tar.gz").exists()
