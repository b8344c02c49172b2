"""Read a base image as untrusted input: every file, digest and document checked before use.

A base is an OCI image layout (a directory or a tar) or a ``docker save`` archive. :func:`read_base`
checks it whole before anything is written: a digest is ``sha256:`` and 64 hex digits before it
becomes a path, a docker archive's paths stay inside it, every blob must hash to its digest,
every gzip layer must decompress to the ``diff_id`` the config gives it, and each problem is one
:class:`InvalidInput` naming the base and the file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatch_pyc._errors import InvalidInput

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
_MANIFESTS = {OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"}
_INDEXES = {OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}
_CONFIGS = {OCI_CONFIG, "application/vnd.docker.container.image.v1+json"}
# Layer types a base may use, and the OCI name written for each. zstd, foreign and non-distributable
# layers are refused: the docker side of the output could not be loaded, or the blob is not there.
_LAYERS = {
    LAYER_GZIP: LAYER_GZIP,
    LAYER_TAR: LAYER_TAR,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_GZIP,
}
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_JSON = 8 << 20  # no index, manifest or config is this large; a bigger one is refused unread
_MAX_NESTING = 3  # index.json -> a (multi-platform) index -> a manifest, with room for one more


@dataclass
class _Blob:
    digest: str
    size: int
    media_type: str
    source: Path  # where its bytes are now


@dataclass(frozen=True)
class BaseImage:
    """A checked base: its config, its layers (files whose digests were verified) and their diff_ids."""

    config: dict[str, Any]
    layers: list[_Blob]
    diff_ids: list[str]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _blob_path(root: Path, digest: str) -> Path:
    """The file of a blob; ``digest`` must have passed :func:`_Reader.digest` (it becomes a path)."""
    if not _DIGEST.fullmatch(digest):
        raise AssertionError(f"unchecked digest {digest!r}")
    return root / "blobs" / "sha256" / digest.split(":", 1)[1]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reason(exc: BaseException) -> str:
    """An exception's message on one line (tarfile's can span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class _Reader:
    """Reads the files of one base, each checked; every problem names the base and the file."""

    def __init__(self, base: str, root: Path) -> None:
        self.base = base
        self.root = root
        self.real_root = root.resolve()
        self._inflated: dict[str, str] = {}  # a gzip layer's digest -> its diff_id

    def refuse(self, where: str, problem: str) -> InvalidInput:
        return InvalidInput(f"--base {self.base}: {where}: {problem}")

    def digest(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not _DIGEST.fullmatch(value):
            raise self.refuse(where, f"digest {_shown(value)} is not 'sha256:' and 64 lowercase hex digits")
        return value

    def file(self, rel: str, size: int | None = None) -> Path:
        """The regular file ``rel`` inside the base (not through a link out of it), of ``size`` bytes if given."""
        path = self.root / rel
        try:
            real = path.resolve(strict=True)
            st = real.stat()
        except FileNotFoundError:
            raise self.refuse(rel, "missing") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on Python 3.10-3.12
            raise self.refuse(rel, f"cannot read it ({_reason(exc)})") from None
        if real != self.real_root and self.real_root not in real.parents:
            raise self.refuse(rel, "a link out of the base")
        if not stat.S_ISREG(st.st_mode):
            raise self.refuse(rel, "not a regular file")
        if size is not None and st.st_size != size:
            raise self.refuse(rel, f"{st.st_size} bytes, but its descriptor says {size}")
        return real

    def blob(self, digest: str, size: int) -> Path:
        """A blob's file, hashed: a blob whose bytes do not match its digest is refused."""
        rel = _blob_path(Path(), digest).as_posix()
        path = self.file(rel, size)
        if _sha256_file(path) != digest:
            raise self.refuse(rel, "its content does not match its digest")
        return path

    def json(self, rel: str, digest: str | None = None, size: int | None = None) -> Any:
        path = self.file(rel, size)
        if path.stat().st_size > _MAX_JSON:
            raise self.refuse(rel, f"larger than {_MAX_JSON >> 20} MiB")
        data = path.read_bytes()
        if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise self.refuse(rel, "its content does not match its digest")
        if not data.strip():
            raise self.refuse(rel, "empty, not JSON")
        try:
            return json.loads(data)
        except RecursionError:
            raise self.refuse(rel, "JSON nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise self.refuse(rel, f"not valid JSON ({_reason(exc)})") from None

    def descriptor(self, value: object, where: str, media_types: set[str] | None) -> tuple[str, int, str | None]:
        """Digest, size and media type of an OCI descriptor; ``media_types``: those allowed (None: any or none)."""
        if not isinstance(value, dict):
            raise self.refuse(where, f"{_shown(value)} is not a descriptor (an object with a digest and a size)")
        digest = self.digest(value.get("digest"), where)
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self.refuse(where, f"size {_shown(size)} is not a byte count")
        media_type = value.get("mediaType")
        if media_types is not None and media_type not in media_types:
            raise self.refuse(where, f"media type {_shown(media_type)} is not one of {', '.join(sorted(media_types))}")
        return digest, size, media_type

    def config(self, config: Any, where: str, layers: list[_Blob]) -> BaseImage:
        """Check the parts of the config this tool reads and extends, and every layer against its diff_id.

        A config without diff_ids gets them computed; one whose diff_ids do not match the layers
        is refused (``docker load`` would refuse the image written from it).
        """
        if not isinstance(config, dict):
            raise self.refuse(where, "the image config is not a JSON object")
        rootfs = config.get("rootfs", {"type": "layers", "diff_ids": []})
        diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            raise self.refuse(where, "rootfs.diff_ids is not a list")
        diff_ids = [self.digest(d, f"{where} rootfs.diff_ids") for d in diff_ids]
        history = config.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise self.refuse(where, "history is not a list of objects")
        computed = [self.diff_id(blob) for blob in layers]
        if diff_ids and len(diff_ids) != len(layers):
            raise self.refuse(where, f"rootfs.diff_ids lists {len(diff_ids)} layers, the manifest {len(layers)}")
        for number, (claimed, actual) in enumerate(zip(diff_ids, computed, strict=False)):
            if claimed != actual:
                raise self.refuse(
                    where,
                    f"rootfs.diff_ids[{number}] is {claimed}, but layer {layers[number].digest} unpacks to {actual}",
                )
        return BaseImage(config, layers, computed)

    def diff_id(self, blob: _Blob) -> str:
        """The digest of a layer's uncompressed tar; each distinct blob is inflated once, however often listed.

        Inflating costs at most what deflate allows (about 1032 times the compressed size), so a base
        costs time in proportion to its size; no cap on top of that, which would refuse real images
        holding large sparse files (``/var/log/lastlog``).
        """
        if blob.media_type == LAYER_TAR:
            return blob.digest
        if blob.digest in self._inflated:
            return self._inflated[blob.digest]
        digest = hashlib.sha256()
        try:
            with gzip.open(blob.source, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise self.refuse(f"layer {blob.digest}", f"not a readable gzip stream ({_reason(exc)})") from None
        self._inflated[blob.digest] = "sha256:" + digest.hexdigest()
        return self._inflated[blob.digest]

    def layer(self, source: Path, digest: str, size: int, media_type: str, where: str) -> _Blob:
        with open(source, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        if gzipped != (media_type == LAYER_GZIP):
            raise self.refuse(
                where, f"its bytes are {'' if gzipped else 'not '}gzip, but its media type is {media_type}"
            )
        return _Blob(digest, size, media_type, source)


def read_base(base: str, scratch: Path) -> BaseImage:
    """Config and layers of a base given as an OCI layout (dir or tar) or a `docker save` archive, checked.

    A tar is unpacked into ``scratch``, which must outlive the result (its layers are files there).
    """
    path = Path(base)
    if not path.exists():
        raise InvalidInput(f"--base {base}: no such file or directory")
    root = path
    if not path.is_dir():
        if not path.is_file():
            raise InvalidInput(f"--base {base}: not a directory or a tar archive")
        root = scratch / "base"
        _unpack(base, root)
    reader = _Reader(base, root)
    if (root / "index.json").exists():
        return _read_oci(reader)
    if (root / "manifest.json").exists():
        return _read_docker(reader)
    raise InvalidInput(f"--base {base}: neither an OCI layout (index.json) nor a docker archive (manifest.json)")


def _unpack(base: str, root: Path) -> None:
    try:
        tar = tarfile.open(base)
    except tarfile.ReadError:
        raise InvalidInput(f"--base {base}: not a directory or a tar archive") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InvalidInput(f"--base {base}: cannot read it ({_reason(exc)})") from exc
    try:
        with tar:
            members = tar.getmembers()
            seen: set[str] = set()
            for member in members:
                name = posixpath.normpath(member.name)  # ./index.json and index.json are one file
                if (
                    member.name.startswith("/")
                    or ".." in member.name.split("/")
                    or not (member.isdir() or (member.isfile() and not member.issparse()))
                    or (name in seen and not member.isdir())
                ):
                    raise InvalidInput(
                        f"--base {base}: unsafe entry {_shown(member.name)} (a link, a device, "
                        "a path out of the archive, or a second entry with one name)"
                    )
                seen.add(name)
            root.mkdir()
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members, filter="data")
            else:  # pragma: no cover - Python without PEP 706; the entries were checked above
                tar.extractall(root, members)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InvalidInput(f"--base {base}: not a directory or a readable tar archive ({_reason(exc)})") from exc


def _read_oci(reader: _Reader) -> BaseImage:
    where = "index.json"
    document: Any = reader.json(where)
    media_types = _INDEXES
    for _ in range(_MAX_NESTING):
        if not isinstance(document, dict):
            raise reader.refuse(where, "not a JSON object")
        if document.get("schemaVersion", 2) != 2:
            raise reader.refuse(where, f"schemaVersion {_shown(document.get('schemaVersion'))} is not 2")
        media_type = document.get("mediaType")
        if media_type is None:  # optional in a document; its shape (or what may stand here) says which
            media_type = OCI_INDEX if "manifests" in document or not media_types & _MANIFESTS else OCI_MANIFEST
        if media_type not in media_types:
            raise reader.refuse(
                where, f"media type {_shown(media_type)} is not one of {', '.join(sorted(media_types))}"
            )
        if media_type in _MANIFESTS:
            return _read_manifest(reader, document, where)
        entry = _pick(reader, document.get("manifests"), where)
        digest, size, entry_type = reader.descriptor(entry, f"{where} manifests[]", None)
        if entry_type is not None and entry_type not in _MANIFESTS | _INDEXES:
            raise reader.refuse(where, f"manifests[] names a {_shown(entry_type)}, not an image manifest or index")
        where = _blob_path(Path(), digest).as_posix()
        document = reader.json(where, digest, size)
        media_types = {entry_type} if entry_type else _MANIFESTS | _INDEXES
    raise reader.refuse(where, f"indexes nested more than {_MAX_NESTING - 1} deep")


def _pick(reader: _Reader, entries: object, where: str) -> object:
    """The first image of an index, passing over attestation manifests (platform ``unknown/unknown``)."""
    if not isinstance(entries, list) or not entries:
        raise reader.refuse(where, "manifests is not a non-empty list")
    for entry in entries:
        platform = entry.get("platform") if isinstance(entry, dict) else None
        if not (isinstance(platform, dict) and platform.get("os") == "unknown"):
            return entry
    raise reader.refuse(where, "it lists no image, only attestations")


def _read_manifest(reader: _Reader, manifest: dict[str, Any], where: str) -> BaseImage:
    digest, size, _ = reader.descriptor(manifest.get("config"), f"{where} config", _CONFIGS)
    descriptors = manifest.get("layers")
    if not isinstance(descriptors, list):
        raise reader.refuse(where, "layers is not a list")
    layers = []
    for number, value in enumerate(descriptors):
        at = f"{where} layers[{number}]"
        layer_digest, layer_size, media_type = reader.descriptor(value, at, set(_LAYERS))
        source = reader.blob(layer_digest, layer_size)
        layers.append(reader.layer(source, layer_digest, layer_size, _LAYERS[str(media_type)], at))
    config_where = _blob_path(Path(), digest).as_posix()
    return reader.config(reader.json(config_where, digest, size), config_where, layers)


def _read_docker(reader: _Reader) -> BaseImage:
    entries = reader.json("manifest.json")
    entry = entries[0] if isinstance(entries, list) and entries else None
    if not isinstance(entry, dict):
        raise reader.refuse("manifest.json", "not a non-empty list of images")
    config_name = _member(reader, entry.get("Config"), "Config")
    names = entry.get("Layers")
    if not isinstance(names, list):
        raise reader.refuse("manifest.json", "Layers is not a list")
    layers = []
    for name in names:
        rel = _member(reader, name, "Layers")
        path = reader.file(rel)
        digest = _sha256_file(path)
        _check_named_digest(reader, rel, digest)
        with open(path, "rb") as handle:
            media_type = LAYER_GZIP if handle.read(2) == b"\x1f\x8b" else LAYER_TAR
        layers.append(_Blob(digest, path.stat().st_size, media_type, path))
    config = reader.json(config_name)
    _check_named_digest(reader, config_name, _sha256_file(reader.file(config_name)))
    return reader.config(config, config_name, layers)


def _member(reader: _Reader, value: object, key: str) -> str:
    """A path named by manifest.json: relative, inside the archive."""
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in value.split("/") or "\\" in value:
        raise reader.refuse("manifest.json", f"{key} {_shown(value)} is not a relative path inside the archive")
    return value


def _check_named_digest(reader: _Reader, rel: str, digest: str) -> None:
    """A file that docker names by its digest (``blobs/sha256/<hex>``, ``<hex>.json``) must hash to it."""
    match = re.fullmatch(r"(?:blobs/sha256/([0-9a-f]{64}))|([0-9a-f]{64})\.json", rel)
    if match and digest != "sha256:" + (match.group(1) or match.group(2)):
        raise reader.refuse(rel, "its content does not match its digest")
