"""Write a whole image: a base's layers plus a hatch-pyc layer, in the format most tools load.

The output is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/...``) that is
also a docker archive (``manifest.json`` naming the same blobs): Docker 20.10 refuses a pure
OCI archive, skopeo and umoci read the OCI side, and ``docker load`` (the only one of them
that checks diff_ids) reads the docker side. Written as a directory, or as one tar.

The base is read and checked by :mod:`hatch_pyc._oci_base` before anything is written. Outputs
are staged beside their final names and moved into place together at the end
(:class:`StagedOutputs`), so a run that fails at any step leaves none of them and puts back
any file they were to replace.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_pyc._commit import Commit, is_regular_file, make_parents, new_token, one_commit, recover, write_name
from hatch_pyc._errors import InvalidInput
from hatch_pyc._layer import DEFAULT_EPOCH, LayerResult
from hatch_pyc._oci_base import (
    LAYER_GZIP,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    BaseImage,
    _Blob,
    _blob_path,
    _reason,
    read_base,
)
from hatch_pyc._overlap import as_written


@dataclass(frozen=True)
class ImageResult:
    """The written image."""

    config_digest: str  # the image ID
    manifest_digest: str
    layout: Path | None
    tag: str


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _full_reference(tag: str) -> str:
    name, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    if "/" not in name:
        name = f"library/{name}"
    if "." not in name.split("/", 1)[0] and ":" not in name.split("/", 1)[0] and name.split("/", 1)[0] != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{version}"


_DIGEST_HEX = re.compile(r"[0-9a-f]{64}")


def check_outputs(paths: list[Path]) -> None:
    """Refuse outputs one run cannot write: one inside another (``-o lay/index.json --oci-layout lay``
    would overwrite a file of the layout) or a directory output that exists and is not an OCI layout
    (a layout is merged into; any other directory would get ``blobs/`` and an ``index.json`` mixed into it)."""
    absolute = [as_written(p) for p in paths]
    for i, one in enumerate(absolute):
        for j in range(i + 1, len(absolute)):
            other = absolute[j]
            if one == other or one in other.parents or other in one.parents:
                raise InvalidInput(f"{paths[i]} and {paths[j]}: one output inside the other; give each its own place")
    for path in paths:
        directory = path.suffix != ".tar" and path.is_dir() and not path.is_symlink()
        if directory and any(path.iterdir()) and not (path / "oci-layout").is_file():
            raise InvalidInput(
                f"{path}: a directory that is not an OCI layout (it has no oci-layout file); "
                "give a new or empty directory, or a layout to add the image to"
            )


# What a run writes in an OCI layout directory: each directory's files (None: blobs, named by their digest) and
# subdirectories.
_LAYOUT_TREE: dict[str, tuple[frozenset[str] | None, frozenset[str]]] = {
    ".": (frozenset({"oci-layout", "index.json", "manifest.json"}), frozenset({"blobs"})),
    "blobs": (frozenset(), frozenset({"sha256"})),
    "blobs/sha256": (None, frozenset()),
}


def _staged_layout(found: Path) -> bool:
    """Whether ``found`` (a killed run's temporary for an OCI layout directory) holds nothing but what a run writes
    there: the layout's own files and ``blobs/sha256/<digest>``, regular files, no link. Anything else is a
    user's, and stays."""
    try:
        if not stat.S_ISDIR(found.lstat().st_mode):
            return False
        for here, dirs, files in os.walk(found):
            names, subdirs = _LAYOUT_TREE.get(Path(here).relative_to(found).as_posix(), (frozenset(), frozenset()))
            if not set(dirs) <= subdirs or any(os.path.islink(os.path.join(here, d)) for d in dirs):
                return False
            for name in files:
                if (name not in names) if names is not None else (_DIGEST_HEX.fullmatch(name) is None):
                    return False
                if not stat.S_ISREG(os.lstat(os.path.join(here, name)).st_mode):
                    return False
    except OSError:
        return False
    return True


class StagedOutputs:
    """Outputs written beside their final names and moved into place together by :meth:`commit`.

    The moves are one :class:`~hatch_pyc._commit.Commit`: a file an output replaces is kept until
    every move succeeded and put back when one fails, and SIGINT and SIGTERM wait until the moves
    are done. :meth:`discard` removes every staged file and the directories made for them: a run
    that fails at any step, before or during the commit, leaves no output of its own. Staged names
    are ``.<name>.<pid>-<hex>.hatch-pyc-tmp``; one a killed run left is removed by the next run
    that writes the same output.
    """

    def __init__(self) -> None:
        self._made: list[Path] = []  # directories created for outputs, deepest first
        self._staged: dict[Path, Path] = {}  # final path -> staged path

    def path(self, final: str | os.PathLike[str], *, layout: bool = False) -> Path:
        """Where to write ``final`` for now: a hidden name in its directory (created if missing); ``layout``: an OCI
        layout directory (a killed run's staged one is removed only if it holds nothing but a layout's files).

        Refused (:func:`check_outputs`): a path inside another output of this run, or holding one,
        and an existing directory that is not an OCI layout.
        """
        final = Path(final)
        check_outputs([*self._staged, final])
        self._made = [*make_parents(final), *self._made]
        if final.is_dir() and not final.is_symlink():  # a layout merged into: a killed merge's backups in it
            blobs = final / "blobs" / "sha256"
            own = {final / name for name in ("oci-layout", "index.json", "manifest.json")}
            # only the layout's own files, and never through a link (blobs/sha256 must be a real directory)
            places = [
                final,
                *([blobs] if blobs.is_dir() and not any(p.is_symlink() for p in (blobs, blobs.parent)) else []),
            ]
            recover(
                places,
                lambda path: path in own or (path.parent == blobs and _DIGEST_HEX.fullmatch(path.name) is not None),
                staged=is_regular_file,
            )
        staged = write_name(final, staged=_staged_layout if layout else None)
        self._staged[final] = staged
        return staged

    def commit(self) -> None:
        """Move each output into place: a layout directory is merged into an existing one, index.json last."""
        with one_commit(new_token()) as commit:
            for final, staged in reversed(self._staged.items()):  # the layout (staged last) first
                if staged.is_dir() and final.is_dir() and not final.is_symlink():
                    self._merge(commit, staged, final)
                elif staged.is_dir():
                    commit.place_directory(staged, final)
                elif staged.exists():
                    commit.install(staged, final)
        if commit.signals:  # every output is in place; the signal is acted on now
            signal.raise_signal(commit.signals[0])

    def _merge(self, commit: Commit, staged: Path, final: Path) -> None:
        names = sorted(p.relative_to(staged) for p in staged.rglob("*") if not p.is_dir())
        for rel in sorted(names, key=lambda p: (p.parts[0] != "blobs", p.name == "index.json", p)):
            self._made = [*make_parents(final / rel), *self._made]
            commit.install(staged / rel, final / rel)
        commit.then.append(lambda: shutil.rmtree(staged, ignore_errors=True))  # its directories, emptied

    def discard(self) -> None:
        """Remove what was staged and made; best effort (this runs while another error is raised)."""
        for path in self._staged.values():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for directory in self._made:
            try:
                directory.rmdir()
            except OSError:
                pass


def write_image(
    layer: LayerResult,
    *,
    base: str | BaseImage | None,
    layout: str | os.PathLike[str] | None,
    tag: str | None,
    created_by: str,
    docker: str | None = None,
    outputs: StagedOutputs | None = None,
) -> ImageResult:
    """Write base + ``layer`` as an OCI layout that is also a docker archive; optionally ``docker load`` it.

    With ``outputs`` the layout is only staged there (the caller commits it with its other outputs);
    without, it is committed here, or nothing is left when a step fails.
    """
    own = outputs is None
    staging = outputs or StagedOutputs()
    try:
        result = _write_image(
            layer,
            base=base,
            layout=layout,
            tag=tag or "hatch-pyc:latest",
            created_by=created_by,
            docker=docker,
            outputs=staging,
        )
        if own:
            staging.commit()
    except BaseException:
        if own:
            staging.discard()
        raise
    return result


def _write_image(
    layer: LayerResult,
    *,
    base: str | BaseImage | None,
    layout: str | os.PathLike[str] | None,
    tag: str,
    created_by: str,
    docker: str | None,
    outputs: StagedOutputs,
) -> ImageResult:
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH")
    epoch = int(epoch_text) if epoch_text and epoch_text.isdigit() else DEFAULT_EPOCH
    created = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="hatch-pyc-image-") as scratch_dir:
        scratch = Path(scratch_dir)
        if isinstance(base, str):
            base = read_base(base, scratch)
        if base is None:
            empty = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers"}}
            base = BaseImage(empty, [], [])
        config = copy.deepcopy(base.config)
        config["rootfs"] = {"type": "layers", "diff_ids": [*base.diff_ids, layer.diff_id]}
        config["history"] = [
            *config.get("history", []),
            {"created": created, "created_by": created_by, "comment": "hatch-pyc"},
        ]
        config["created"] = created
        layers = [*base.layers, _Blob(layer.digest, layer.size, LAYER_GZIP, layer.path)]

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
                "Config": _blob_path(Path(), config_digest).as_posix(),
                "RepoTags": [tag],
                "Layers": [_blob_path(Path(), b.digest).as_posix() for b in layers],
            }
        ]
        files: dict[str, Path | bytes] = {
            "oci-layout": _canonical({"imageLayoutVersion": "1.0.0"}),
            "index.json": _canonical(index),
            "manifest.json": _canonical(docker_manifest),
            _blob_path(Path(), config_digest).as_posix(): config_bytes,
            _blob_path(Path(), manifest_digest).as_posix(): manifest_bytes,
        }
        for blob in layers:
            files[_blob_path(Path(), blob.digest).as_posix()] = blob.source
        if layout:
            out = outputs.path(layout, layout=Path(layout).suffix != ".tar")
            if Path(layout).suffix == ".tar":
                _write_tar(files, out, epoch)
            else:
                _write_dir(files, out)
        if docker:
            _docker_load(files, scratch, epoch, docker)
        return ImageResult(config_digest, manifest_digest, Path(layout) if layout else None, tag)


def _write_dir(files: dict[str, Path | bytes], out: Path) -> None:
    out.mkdir()
    for name in sorted(files):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        content = files[name]
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copyfile(content, target)


def _write_tar(files: dict[str, Path | bytes], out: Path, epoch: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_name(out)
    try:
        with open(tmp, "xb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
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
        raise InvalidInput(f"--docker {tag}: the Docker engine refused the image ({_reason(exc)})") from exc
