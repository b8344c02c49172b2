"""OCI layers and images written without an engine: reproducible, correct digests, loadable."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, run_python, snapshot
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


MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
PREFIX = f"/usr/local/lib/python{MINOR}/site-packages"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
Edit = Callable[[dict[str, Any]], object]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


BASE_LAYER = gzip.compress(_tar({"etc/base-release": b"base 1\n"}), mtime=0)


def _serialise(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def oci_base(config: Edit = lambda c: c, manifest: Edit = lambda m: m, index: Edit = lambda i: i) -> dict[str, bytes]:
    """The files of a one-layer OCI layout; each edit gets the valid document and returns what to write
    instead (a dict, or raw bytes); the blobs that name it are named by what is written."""
    config_bytes = _serialise(
        config(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/usr/bin"]},
                "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(BASE_LAYER))]},
                "history": [{"created_by": "base"}],
            }
        )
    )
    manifest_bytes = _serialise(
        manifest(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config_bytes),
                    "size": len(config_bytes),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": sha256(BASE_LAYER),
                        "size": len(BASE_LAYER),
                    }
                ],
            }
        )
    )
    entry = {"mediaType": OCI_MANIFEST, "digest": sha256(manifest_bytes), "size": len(manifest_bytes)}
    index_bytes = _serialise(index({"schemaVersion": 2, "manifests": [entry]}))
    blobs = {f"blobs/sha256/{sha256(b)[7:]}": b for b in (config_bytes, manifest_bytes, BASE_LAYER)}
    return {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index_bytes, **blobs}


def docker_base(manifest: Edit = lambda e: [e], config: Edit = lambda c: c) -> dict[str, bytes]:
    """The files of a legacy ``docker save`` archive: ``manifest.json``, ``<id>.json``, ``<layer>/layer.tar``;
    ``manifest`` gets the image's entry and returns what manifest.json holds."""
    layer = gzip.decompress(BASE_LAYER)
    config_bytes = _serialise(
        config({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}})
    )
    config_name = f"{sha256(config_bytes)[7:]}.json"
    entry = {"Config": config_name, "RepoTags": ["base:1"], "Layers": ["0123abcd/layer.tar"]}
    return {"manifest.json": _serialise(manifest(entry)), config_name: config_bytes, "0123abcd/layer.tar": layer}


def write_base(path: Path, files: Mapping[str, bytes], form: str) -> Path:
    """``files`` as a base directory, or as a tar when ``form`` is "tar"."""
    if form == "tar":
        path = path.with_suffix(".tar")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_tar(files))
        return path
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def layer_cli(
    wheel: Path, output: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hatch-pyc layer`` for the running CPython, writing ``output``."""
    return run_cli("layer", str(wheel), "--python", MINOR, "--prefix", PREFIX, "-o", str(output), *args, env=env)


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
    assert proc.returncode == 2 and "didn't match RECORD" in proc.stderr
    assert not (tmp_path / "l.tar.gz").exists()


def _check_layout(layout: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and config of a written layout, after checking that every blob hashes to its name."""
    for blob in (layout / "blobs/sha256").iterdir():
        assert sha256(blob.read_bytes()) == f"sha256:{blob.name}"
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    (docker_entry,) = json.loads((layout / "manifest.json").read_text())
    assert docker_entry["Layers"] == [f"blobs/sha256/{layer['digest'][7:]}" for layer in manifest["layers"]]
    return manifest, config


@pytest.mark.parametrize("form", ["dir", "tar"])
@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_image_on_a_base_keeps_its_layers_and_config(wheel: Path, tmp_path: Path, form: str, kind: str) -> None:
    base = write_base(tmp_path / "base", oci_base() if kind == "oci" else docker_base(), form)
    proc = layer_cli(wheel, tmp_path / "layer.tar.gz", "--base", str(base), "--oci-layout", str(tmp_path / "image"))
    assert proc.returncode == 0, proc.stderr
    digest = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("digest"))
    diff_id = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("diff_id"))
    manifest, config = _check_layout(tmp_path / "image")
    assert [layer["digest"] for layer in manifest["layers"]] == [
        sha256(BASE_LAYER if kind == "oci" else gzip.decompress(BASE_LAYER)),
        digest,
    ]
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(BASE_LAYER)), diff_id]
    assert config["os"] == "linux" and config["history"][-1]["comment"] == "hatch-pyc"
    if shutil.which("skopeo"):
        inspect = subprocess.run(
            ["skopeo", "inspect", f"oci:{tmp_path / 'image'}"], capture_output=True, text=True, check=True
        )
        assert json.loads(inspect.stdout)["Layers"][-1] == digest


def test_a_step_failing_after_the_layer_leaves_no_output(wheel: Path, tmp_path: Path) -> None:
    """The Docker load is the last step: when it fails, neither the layer nor the layout is left, and an
    older layer file at -o keeps its bytes (outputs are renamed into place only when every step worked)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out/layer.tar.gz").write_bytes(b"an older layer")
    before = snapshot(tmp_path)
    proc = layer_cli(
        wheel,
        tmp_path / "out/layer.tar.gz",
        "--oci-layout",
        str(tmp_path / "out/new/image"),
        "--docker",
        "app:1",
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("hatch-pyc: error: --docker app:1")
    assert snapshot(tmp_path) == before


def test_base_from_a_multi_platform_index_skips_attestations(wheel: Path, tmp_path: Path) -> None:
    """index.json -> an image index (as buildkit writes) whose first entry is an attestation manifest."""
    files = oci_base()
    entry = json.loads(files["index.json"])["manifests"][0]
    attestation = {**entry, "platform": {"os": "unknown", "architecture": "unknown"}, "digest": sha256(b"x")}
    nested = json.dumps({"schemaVersion": 2, "manifests": [attestation, {**entry, "platform": {"os": "linux"}}]})
    files[f"blobs/sha256/{sha256(nested.encode())[7:]}"] = nested.encode()
    index = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(nested.encode())}
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{**index, "size": len(nested)}]}).encode()
    base = write_base(tmp_path / "base", files, "dir")
    proc = layer_cli(wheel, tmp_path / "layer.tar.gz", "--base", str(base), "--oci-layout", str(tmp_path / "i.tar"))
    assert proc.returncode == 0, proc.stderr


def test_base_without_an_image_is_refused_before_any_work(wheel: Path, tmp_path: Path) -> None:
    base = write_base(tmp_path / "base", oci_base(), "dir")
    proc = layer_cli(wheel, tmp_path / "layer.tar.gz", "--base", str(base))
    assert proc.returncode == 2 and proc.stderr.startswith("hatch-pyc: error: --base is the base of --oci-layout")
    assert not (tmp_path / "layer.tar.gz").exists()


def test_rerun_into_a_layout_directory_replaces_its_image(wheel: Path, tmp_path: Path) -> None:
    base = write_base(tmp_path / "base", oci_base(), "dir")
    for tag in ("app:1", "app:2"):
        proc = layer_cli(
            wheel, tmp_path / "layer.tar.gz", "--base", str(base), "--oci-layout", str(tmp_path / "image"), "--tag", tag
        )
        assert proc.returncode == 0, proc.stderr
    manifest, _ = _check_layout(tmp_path / "image")
    assert len(manifest["layers"]) == 2
    (docker_entry,) = json.loads((tmp_path / "image/manifest.json").read_text())
    assert docker_entry["RepoTags"] == ["app:2"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".hatch-pyc-tmp")]


UP = "../" * 12


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--prefix", f"{PREFIX}/{UP}ESCAPE/lib/python{MINOR}/site-packages", "must not contain '..'"),
        ("--scripts-dir", f"/{UP}ESCAPE", "must not contain '..'"),
        ("--scripts-dir", "bin", "must be an absolute path"),
        ("--interpreter-path", "/usr/bin/python3\nimport os; os.system('id')", "must not contain control characters"),
        ("--interpreter-path", f"/{UP}ESCAPE/python", "must not contain '..'"),
    ],
    ids=["prefix-dotdot", "scripts-dotdot", "scripts-relative", "interpreter-newline", "interpreter-dotdot"],
)
def test_an_image_path_that_leaves_the_image_is_refused(
    wheel: Path, tmp_path: Path, option: str, value: str, reason: str
) -> None:
    """Found by an adversarial review: the layer is built under a staging root on this machine, and `..` in
    --prefix or --scripts-dir reached out of it (a wheel's files were installed on the host); a relative
    --scripts-dir ended in a traceback; a newline in --interpreter-path went into every script's first line."""
    escape = tmp_path / "ESCAPE"
    value = value.replace("ESCAPE", str(escape).lstrip("/"))
    args = [a for a in ("--prefix", PREFIX) if option != "--prefix"]
    proc = run_cli("layer", str(wheel), "--python", MINOR, *args, option, value, "-o", str(tmp_path / "l.tar.gz"))
    assert proc.returncode == 2, proc.stderr
    assert reason in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not escape.exists() and not (tmp_path / "l.tar.gz").exists()
