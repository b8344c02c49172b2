"""Guards of the base-image reader that the mutation run found untested."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from test_layer import APP, BASE_LAYER, _check_layout, docker_base, layer_cli, oci_base, sha256, write_base
from test_oci_hostile import _config, _entry, _layer, _nested_indexes, _refused
from test_wheel import make_wheel

TAR_LAYER = gzip.decompress(BASE_LAYER)
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LOW, HIGH = "0" * 64, "f" * 64  # hex names sorting before and after any real digest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wheel(tmp_path_factory.mktemp("wheel"), APP, name="app")


def _refused_leaving_nothing(wheel: Path, tmp_path: Path, base: Path) -> str:
    """Run ``layer --base BASE --oci-layout``: exit 2, one line naming the base, nothing written anywhere."""
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    line = _refused(layer_cli(wheel, out / "l.tar.gz", "--base", str(base), "--oci-layout", str(out / "image")))
    assert line.startswith(f"hatch-pyc: error: --base {base}: "), line
    assert snapshot(tmp_path) == before
    return line


def _accepted(wheel: Path, tmp_path: Path, base: Path) -> dict[str, Any]:
    """Run ``layer --base BASE --oci-layout``: it works, and skopeo reads the image (when installed)."""
    layout = tmp_path / "image"
    proc = layer_cli(wheel, tmp_path / "layer.tar.gz", "--base", str(base), "--oci-layout", str(layout))
    assert proc.returncode == 0, proc.stderr
    manifest, _ = _check_layout(layout)
    if shutil.which("skopeo"):
        inspect = subprocess.run(["skopeo", "inspect", f"oci:{layout}"], capture_output=True, text=True, check=True)
        assert json.loads(inspect.stdout)["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    return manifest


@pytest.mark.parametrize("wrong", [LOW, HIGH])
def test_a_diff_id_is_refused_whichever_way_it_differs(wheel: Path, tmp_path: Path, wrong: str) -> None:
    """A diff_id that is not what its layer unpacks to is refused, whether it sorts before or after it."""
    files = oci_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": [f"sha256:{wrong}"]}})
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert (
        f"rootfs.diff_ids[0] is sha256:{wrong}, but layer {sha256(BASE_LAYER)} unpacks to {sha256(TAR_LAYER)}" in line
    )


@pytest.mark.parametrize("name", ["a-elsewhere", "z-elsewhere"])
def test_a_link_out_of_the_base_is_refused_wherever_it_points(wheel: Path, tmp_path: Path, name: str) -> None:
    """A blob linked to a file outside the base is refused, whether that file's path sorts before or
    after the base's (the check is containment, not an order of paths)."""
    base = write_base(tmp_path / "base", oci_base(), "dir")
    blob = base / "blobs/sha256" / sha256(BASE_LAYER)[7:]
    (tmp_path / name).write_bytes(BASE_LAYER)
    blob.unlink()
    blob.symlink_to(tmp_path / name)
    line = _refused_leaving_nothing(wheel, tmp_path, base)
    assert line.endswith(f"blobs/sha256/{sha256(BASE_LAYER)[7:]}: a link out of the base"), line


def test_a_symlink_loop_is_refused_naming_the_link_that_loops(wheel: Path, tmp_path: Path) -> None:
    """A base whose ``blobs`` is a link to itself is refused as unreadable, and the reason names that
    link (where the loop is), not the blob path that runs through it."""
    base = write_base(tmp_path / "base", {k: v for k, v in oci_base().items() if not k.startswith("blobs/")}, "dir")
    (base / "blobs").symlink_to("blobs")
    line = _refused_leaving_nothing(wheel, tmp_path, base)
    assert ": cannot read it (" in line and line.endswith(f"'{base / 'blobs'}')"), line


@pytest.mark.parametrize("name", [LOW, HIGH])
def test_a_manifest_not_matching_its_digest_is_refused(wheel: Path, tmp_path: Path, name: str) -> None:
    """The manifest an index names must hash to the digest it is named by, whichever way it differs."""
    files = oci_base()
    manifest = files.pop("blobs/sha256/" + json.loads(files["index.json"])["manifests"][0]["digest"][7:])
    files[f"blobs/sha256/{name}"] = manifest
    files["index.json"] = json.dumps(
        _entry(json.loads(files["index.json"]), digest=f"sha256:{name}", size=len(manifest))
    ).encode()
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"blobs/sha256/{name}: its content does not match its digest"), line


def test_a_layer_said_gzip_but_not_gzip_is_refused_for_that(wheel: Path, tmp_path: Path) -> None:
    """A layer whose media type says gzip but whose bytes are a plain tar is refused for that mismatch."""
    files = oci_base(manifest=lambda m: _layer(m, digest=sha256(TAR_LAYER), size=len(TAR_LAYER)))
    files[f"blobs/sha256/{sha256(TAR_LAYER)[7:]}"] = TAR_LAYER
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith("layers[0]: its bytes are not gzip, but its media type is " + GZIP), line


@pytest.mark.parametrize("more", [1, -1])
def test_a_blob_of_another_size_than_its_descriptor_says_is_refused_either_way(
    wheel: Path, tmp_path: Path, more: int
) -> None:
    """A layer descriptor claiming a byte more or a byte less than its blob holds is refused for the size, before
    the blob is read (its bytes still match the digest the descriptor gives)."""
    files = oci_base(manifest=lambda m: _layer(m, size=len(BASE_LAYER) + more))
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"{len(BASE_LAYER)} bytes, but its descriptor says {len(BASE_LAYER) + more}"), line


@pytest.mark.parametrize(("size", "shown"), [(-1, "-1"), (True, "True")])
def test_a_descriptor_size_must_be_a_byte_count(wheel: Path, tmp_path: Path, size: object, shown: str) -> None:
    """A descriptor's size is a non-negative integer: -1 and true are refused as such, not read as sizes."""
    files = oci_base(manifest=lambda m: _layer(m, size=size))
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"layers[0]: size {shown} is not a byte count"), line


@pytest.mark.parametrize(("length", "shown"), [(78, "'" + "x" * 78 + "'"), (79, "'" + "x" * 76 + "...")])
def test_a_bad_value_is_shown_whole_up_to_80_characters(wheel: Path, tmp_path: Path, length: int, shown: str) -> None:
    """The bad value a message quotes is shown whole when its repr is 80 characters, cut to 77 and
    '...' when it is longer."""
    files = oci_base(manifest=lambda m: _config(m, digest="x" * length))
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert f"config: digest {shown} is not 'sha256:'" in line, line


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_a_document_over_8_mib_is_refused_unread(wheel: Path, tmp_path: Path, form: str) -> None:
    """index.json (any JSON document) of 8 MiB is read; one byte more is refused, saying the limit."""
    index = json.dumps(json.loads(oci_base()["index.json"])).encode()
    files = {**oci_base(), "index.json": index.ljust((8 << 20) + 1)}
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "big", files, form))
    assert line.endswith("index.json: larger than 8 MiB"), line
    if form == "dir":
        _accepted(wheel, tmp_path, write_base(tmp_path / "base", {**files, "index.json": index.ljust(8 << 20)}, form))


@pytest.mark.parametrize("value", [5, ""])
@pytest.mark.parametrize("key", ["Config", "Layers"])
def test_a_docker_path_that_is_not_a_path_is_refused(wheel: Path, tmp_path: Path, key: str, value: object) -> None:
    """manifest.json's Config and Layers name files by relative paths: a number or an empty string is refused."""
    files = docker_base(manifest=lambda e: [{**e, key: value if key == "Config" else [value]}])
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"manifest.json: {key} {value!r} is not a relative path inside the archive"), line


def _docker_by_digest(config_name: str | None = None, config: bytes | None = None) -> dict[str, bytes]:
    """A docker archive whose files are named by their digests, as docker 25 writes them (no index.json)."""
    config = (
        config
        or json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha256(TAR_LAYER)]}}
        ).encode()
    )
    config_name = config_name or f"blobs/sha256/{sha256(config)[7:]}"
    layer_name = f"blobs/sha256/{sha256(TAR_LAYER)[7:]}"
    manifest = [{"Config": config_name, "RepoTags": ["base:1"], "Layers": [layer_name]}]
    return {"manifest.json": json.dumps(manifest).encode(), config_name: config, layer_name: TAR_LAYER}


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_a_docker_archive_named_by_digests_is_read(wheel: Path, tmp_path: Path, form: str) -> None:
    """A docker archive whose layers and config are ``blobs/sha256/<hex>`` is checked and used as a base."""
    manifest = _accepted(wheel, tmp_path, write_base(tmp_path / "base", _docker_by_digest(), form))
    assert manifest["layers"][0]["digest"] == sha256(TAR_LAYER)


@pytest.mark.parametrize("name", [LOW, HIGH])
@pytest.mark.parametrize("pattern", ["blobs/sha256/{}", "{}.json"])
def test_a_docker_file_not_matching_its_name_is_refused(wheel: Path, tmp_path: Path, pattern: str, name: str) -> None:
    """A docker archive's config named by a digest must hash to it, whichever way it differs."""
    files = _docker_by_digest(config_name=pattern.format(name))
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"{pattern.format(name)}: its content does not match its digest"), line


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux /proc: a file whose read fails")
def test_a_base_file_that_cannot_be_read_is_refused_naming_it(wheel: Path, tmp_path: Path) -> None:
    """A base that is a file whose reading fails (an I/O error) is refused in one line naming the base."""
    line = _refused_leaving_nothing(wheel, tmp_path, Path("/proc/self/mem"))
    assert line.startswith("hatch-pyc: error: --base /proc/self/mem: cannot read it ("), line


def test_a_tar_base_is_unpacked_with_safe_modes(tmp_path: Path) -> None:
    """A base tar's files are unpacked without the modes it asks for: no setuid bit, no group or other write."""
    from hatch_pyc._oci_base import read_base

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel, data in oci_base().items():
            info = tarfile.TarInfo(rel)
            info.size, info.mode = len(data), 0o6777
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "base.tar").write_bytes(buffer.getvalue())
    (tmp_path / "scratch").mkdir()
    image = read_base(str(tmp_path / "base.tar"), tmp_path / "scratch")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "scratch").rglob("*") if p.is_file()}
    assert image.layers[0].source.name in modes and len(modes) == 5
    assert set(modes.values()) == {0o755}, modes


@pytest.mark.parametrize("name", [LOW, HIGH])
def test_a_layer_blob_not_matching_its_digest_is_refused_whichever_way_it_differs(
    wheel: Path, tmp_path: Path, name: str
) -> None:
    """A layer stored under a digest it does not hash to is refused, whether the name sorts before or after the
    real digest (the config's diff_ids name the real content, so nothing later would notice)."""
    files = oci_base(manifest=lambda m: _layer(m, digest=f"sha256:{name}"))
    files[f"blobs/sha256/{name}"] = files.pop(f"blobs/sha256/{sha256(BASE_LAYER)[7:]}")
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"blobs/sha256/{name}: its content does not match its digest"), line


def test_a_history_holding_anything_but_objects_is_refused(wheel: Path, tmp_path: Path) -> None:
    files = oci_base(config=lambda c: {**c, "history": [{"created_by": "base"}, 1]})
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith("history is not a list of objects"), line


def test_fewer_diff_ids_than_layers_is_refused(wheel: Path, tmp_path: Path) -> None:
    """Two layers, one diff_id: refused for the count, though the first one matches."""
    files = oci_base(manifest=lambda m: {**m, "layers": [m["layers"][0], m["layers"][0]]})
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith("rootfs.diff_ids lists 1 layers, the manifest 2"), line


EMPTY_TAR = b"\0" * 10240  # what tarfile writes for an archive of no members: it starts with NULs
TAR = "application/vnd.oci.image.layer.v1.tar"


def test_an_uncompressed_layer_starting_with_nul_bytes_is_read_as_tar(wheel: Path, tmp_path: Path) -> None:
    """An empty, uncompressed tar layer (all NUL bytes) is a tar, not gzip: the base is taken, with its diff_id."""
    files = oci_base(
        manifest=lambda m: _layer(m, digest=sha256(EMPTY_TAR), size=len(EMPTY_TAR), mediaType=TAR),
        config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": [sha256(EMPTY_TAR)]}},
    )
    files[f"blobs/sha256/{sha256(EMPTY_TAR)[7:]}"] = EMPTY_TAR
    manifest = _accepted(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert manifest["layers"][0]["digest"] == sha256(EMPTY_TAR)


def test_a_docker_archive_with_an_empty_uncompressed_layer_is_read_as_tar(wheel: Path, tmp_path: Path) -> None:
    files = docker_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": [sha256(EMPTY_TAR)]}})
    files["0123abcd/layer.tar"] = EMPTY_TAR
    manifest = _accepted(wheel, tmp_path, write_base(tmp_path / "base", files, "tar"))
    assert len(manifest["layers"]) == 2


def test_documents_without_a_media_type_are_told_apart_by_their_shape(wheel: Path, tmp_path: Path) -> None:
    """mediaType is optional in an index, its entries and a manifest: a manifest reached through an entry that
    names no type is taken for a manifest because it has no ``manifests``."""
    untyped = oci_base(manifest=lambda m: {k: v for k, v in m.items() if k != "mediaType"})
    index = json.loads(untyped["index.json"])
    untyped["index.json"] = json.dumps(
        {**index, "manifests": [{k: v for k, v in index["manifests"][0].items() if k != "mediaType"}]}
    ).encode()
    manifest = _accepted(wheel, tmp_path, write_base(tmp_path / "base", untyped, "dir"))
    assert len(manifest["layers"]) == 2


def test_an_index_entry_typed_as_a_manifest_must_lead_to_one(wheel: Path, tmp_path: Path) -> None:
    """An entry that says "image manifest" but names an index is refused: the entry's type is what may stand there."""
    files = _nested_indexes(oci_base(), 1)
    index = json.loads(files["index.json"])
    index["manifests"][0]["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    files["index.json"] = json.dumps(index).encode()
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert "media type 'application/vnd.oci.image.index.v1+json' is not one of" in line, line
    assert line.endswith("is not one of application/vnd.oci.image.manifest.v1+json"), line


def test_indexes_nested_too_deep_are_refused_naming_the_depth(wheel: Path, tmp_path: Path) -> None:
    line = _refused_leaving_nothing(
        wheel, tmp_path, write_base(tmp_path / "base", _nested_indexes(oci_base(), 3), "dir")
    )
    assert line.endswith("indexes nested more than 2 deep"), line
    _accepted(wheel, tmp_path / "two", write_base(tmp_path / "two" / "base", _nested_indexes(oci_base(), 1), "dir"))


def test_the_first_image_of_an_index_is_taken_whatever_its_platform_but_attestations(
    wheel: Path, tmp_path: Path
) -> None:
    """Only ``unknown/unknown`` entries (attestations) are passed over; an image of any other platform, even one
    sorting after "unknown", is the one taken."""
    files = oci_base(index=lambda i: _entry(i, platform={"os": "windows", "architecture": "amd64"}))
    manifest = _accepted(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert len(manifest["layers"]) == 2


def test_the_first_image_of_a_docker_archive_is_the_one_taken(wheel: Path, tmp_path: Path) -> None:
    files = docker_base(manifest=lambda e: [e, {**e, "Config": "missing.json"}])
    manifest = _accepted(wheel, tmp_path, write_base(tmp_path / "base", files, "tar"))
    assert len(manifest["layers"]) == 2


def test_a_config_listing_no_diff_ids_is_taken_with_the_ones_computed(wheel: Path, tmp_path: Path) -> None:
    """An empty rootfs.diff_ids is not checked against the layers (there is nothing to check); the image written
    names the diff_ids computed from the layers themselves."""
    files = oci_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": []}})
    _accepted(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    layout = tmp_path / "image"
    _, config = _check_layout(layout)
    assert config["rootfs"]["diff_ids"][0] == sha256(TAR_LAYER)


@pytest.mark.parametrize("version", [1, 3])
def test_a_schema_version_other_than_2_is_refused_either_way(wheel: Path, tmp_path: Path, version: int) -> None:
    files = oci_base(index=lambda i: {**i, "schemaVersion": version})
    line = _refused_leaving_nothing(wheel, tmp_path, write_base(tmp_path / "base", files, "dir"))
    assert line.endswith(f"index.json: schemaVersion {version} is not 2"), line
