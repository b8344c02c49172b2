"""Write a whole image: a base's layers plus a hatch-pyc layer, in the format most tools load.

The output is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) that is
also a docker archive (``manifest.json`` naming the same blobs): Docker 20.10 refuses a pure
OCI archive, skopeo and umoci read the OCI side, and ``docker load`` (the only one of them
that checks diff_ids) reads the docker side. Written as a directory, or as one tar.
"""

from __future__ import annotations

import copy
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_pyc._errors import InvalidInput
from hatch_pyc._layer import DEFAULT_EPOCH, LayerResult

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class ImageResult:
    """The written image."""

    config_digest: str  # the image ID
    manifest_digest: str
    layout: Path | None
    tag: str


@dataclass
class _Blob:
    digest: str
    size: int
    media_type: str
    source: Path  # where its bytes are now


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _blob_path(root: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return root / "blobs" / algorithm / hexdigest


def _read_base(base: str, scratch: Path) -> tuple[dict[str, Any], list[_Blob]]:
    """Config and layers of a base given as an OCI layout (dir or tar) or a `docker save` archive."""
    path = Path(base)
    if not path.exists():
        raise InvalidInput(f"--base {base}: no such file or directory")
    root = path
    if path.is_file():
        root = scratch / "base"
        try:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if (
                        member.name.startswith("/")
                        or ".." in member.name.split("/")
                        or member.issym()
                        or member.islnk()
                    ):
                        raise InvalidInput(f"--base {base}: unsafe entry {member.name!r}")
                tar.extractall(root)
        except tarfile.TarError as exc:
            raise InvalidInput(f"--base {base}: not a tar archive ({exc})") from exc
    if (root / "index.json").is_file():
        index = json.loads((root / "index.json").read_text())
        entry = index["manifests"][0]
        manifest = json.loads(_blob_path(root, entry["digest"]).read_text())
        if manifest.get("mediaType") == OCI_INDEX or "manifests" in manifest:
            manifest = json.loads(_blob_path(root, manifest["manifests"][0]["digest"]).read_text())
        config = json.loads(_blob_path(root, manifest["config"]["digest"]).read_text())
        layers = [
            _Blob(layer["digest"], layer["size"], layer["mediaType"], _blob_path(root, layer["digest"]))
            for layer in manifest["layers"]
        ]
        return config, layers
    if (root / "manifest.json").is_file():
        (entry,) = json.loads((root / "manifest.json").read_text())[:1]
        config = json.loads((root / entry["Config"]).read_text())
        layers = []
        for rel in entry["Layers"]:
            layer_path = root / rel
            layers.append(
                _Blob(_sha256_file(layer_path), layer_path.stat().st_size, _layer_type(layer_path), layer_path)
            )
        return config, layers
    raise InvalidInput(f"--base {base}: neither an OCI layout (index.json) nor a docker archive (manifest.json)")


def _layer_type(path: Path) -> str:
    with open(path, "rb") as handle:
        return LAYER_GZIP if handle.read(2) == b"\x1f\x8b" else LAYER_TAR


def _diff_id(blob: _Blob) -> str:
    if blob.media_type == LAYER_TAR:
        return blob.digest
    digest = hashlib.sha256()
    with gzip.open(blob.source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _full_reference(tag: str) -> str:
    name, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    if "/" not in name:
        name = f"library/{name}"
    if "." not in name.split("/", 1)[0] and ":" not in name.split("/", 1)[0] and name.split("/", 1)[0] != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{version}"


def write_image(
    layer: LayerResult,
    *,
    base: str | None,
    layout: str | os.PathLike[str] | None,
    tag: str | None,
    created_by: str,
    docker: str | None = None,
) -> ImageResult:
    """Write base + ``layer`` as an OCI layout that is also a docker archive; optionally ``docker load`` it."""
    tag = tag or "hatch-pyc:latest"
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = int(epoch_text) if epoch_text and epoch_text.isdigit() else DEFAULT_EPOCH
    created = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-image-") as scratch_dir:
        scratch = Path(scratch_dir)
        if base:
            base_config, layers = _read_base(base, scratch)
        else:
            base_config, layers = (
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "history": [],
                },
                [],
            )
        config = copy.deepcopy(base_config)
        config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        diff_ids = list(config["rootfs"].get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            diff_ids = [_diff_id(blob) for blob in layers]
        config["rootfs"] = {"type": "layers", "diff_ids": [*diff_ids, layer.diff_id]}
        config["history"] = [
            *config.get("history", []),
            {"created": created, "created_by": created_by, "comment": "hatch-pyc"},
        ]
        config["created"] = created
        layers = [*layers, _Blob(layer.digest, layer.size, LAYER_GZIP, layer.path)]

        config_bytes = _canonical(config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
        }
        manifest_bytes = _canonical(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "annotations": {
                        "io.containerd.image.name": _full_reference(tag),
                        "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[-1] if ":" in tag else "latest",
                    },
                }
            ],
        }
        docker_manifest = [
            {
                "Config": f"blobs/sha256/{config_digest.split(':')[1]}",
                "RepoTags": [tag],
                "Layers": [f"blobs/sha256/{b.digest.split(':')[1]}" for b in layers],
            }
        ]
        files: dict[str, Path | bytes] = {
            "oci-layout": _canonical({"imageLayoutVersion": "1.0.0"}),
            "index.json": _canonical(index),
            "manifest.json": _canonical(docker_manifest),
            f"blobs/sha256/{config_digest.split(':')[1]}": config_bytes,
            f"blobs/sha256/{manifest_digest.split(':')[1]}": manifest_bytes,
        }
        for blob in layers:
            files[f"blobs/sha256/{blob.digest.split(':')[1]}"] = blob.source
        out = Path(layout) if layout else scratch / "image.tar"
        if out.suffix == ".tar" or not layout:
            _write_tar(files, out, epoch)
        else:
            _write_dir(files, out)
        if docker:
            _docker_load(files, scratch, epoch, docker)
        return ImageResult(config_digest, manifest_digest, Path(layout) if layout else None, tag)


def _write_dir(files: dict[str, Path | bytes], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(files):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        content = files[name]
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif not target.exists():
            shutil.copyfile(content, target)


def _write_tar(files: dict[str, Path | bytes], out: Path, epoch: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".hatch-pyc-tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            directories = sorted({str(Path(n).parent) for n in files if "/" in n} | {"blobs"})
            for name in sorted([*directories, *files]):
                info = tarfile.TarInfo(name)
                info.mtime = epoch
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if name in directories:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                    continue
                info.mode = 0o644
                content = files[name]
                if isinstance(content, bytes):
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
                else:
                    info.size = content.stat().st_size
                    with open(content, "rb") as handle:
                        tar.addfile(info, handle)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _docker_load(files: dict[str, Path | bytes], scratch: Path, epoch: int, tag: str) -> None:
    try:
        import docker  # the `docker` extra
    except ImportError as exc:
        raise InvalidInput("--docker needs the Docker SDK: pip install 'hatch-pyc[docker]'") from exc
    archive = scratch / "load.tar"
    _write_tar(files, archive, epoch)
    try:
        client = docker.from_env()
        with open(archive, "rb") as handle:
            client.images.load(handle.read())
    except docker.errors.DockerException as exc:
        raise InvalidInput(f"--docker {tag}: the Docker engine refused the image ({exc})") from exc
