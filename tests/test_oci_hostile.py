"""Hostile base images for ``hatch-pyc layer --oci-layout OUT --base BASE``.

Each base is built here from dicts, as a directory and as a tar, and run through the CLI as a
user would: exit 2, one line naming the file and the problem, no traceback, no output left
(neither the layer nor the layout, nor a directory made for them), and nothing read from or
written outside the base and OUT (the whole test directory is compared byte for byte).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from test_layer import APP, BASE_LAYER, docker_base, layer_cli, oci_base, sha256, write_base
from test_wheel import make_wheel

ESCAPE = "sha256:../../../secret"
SECRET = b"do not ship me\n"
LAYER_BLOB = f"blobs/sha256/{sha256(BASE_LAYER)[7:]}"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DIGEST_RULE = "is not 'sha256:' and 64 lowercase hex digits"


def _entry(index: dict[str, Any], **change: object) -> dict[str, Any]:
    return {**index, "manifests": [{**index["manifests"][0], **change}]}


def _layer(manifest: dict[str, Any], **change: object) -> dict[str, Any]:
    return {**manifest, "layers": [{**manifest["layers"][0], **change}]}


def _config(manifest: dict[str, Any], **change: object) -> dict[str, Any]:
    return {**manifest, "config": {**manifest["config"], **change}}


def _swap_layer_bytes(files: dict[str, bytes]) -> dict[str, bytes]:
    """The layer blob replaced by other bytes of the same size: only hashing it can tell."""
    other = bytearray(files[LAYER_BLOB])
    other[-5] ^= 0xFF
    return {**files, LAYER_BLOB: bytes(other)}


def _nested_indexes(files: dict[str, bytes], depth: int) -> dict[str, bytes]:
    """index.json -> an index -> an index ... -> the manifest."""
    entry = json.loads(files["index.json"])["manifests"][0]
    for _ in range(depth):
        data = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
        )
        blob = data.encode()
        files = {**files, f"blobs/sha256/{sha256(blob)[7:]}": blob}
        entry = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(blob), "size": len(blob)}
    return {**files, "index.json": json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()}


# case: (the base's files, the file the message names, what it says)
CASES: dict[str, tuple[Callable[[], dict[str, bytes]], str, str]] = {
    # 6: digests become paths only when they are sha256 + 64 hex; blobs must hash to them
    "index-digest-escapes": (
        lambda: oci_base(index=lambda i: _entry(i, digest=ESCAPE, size=len(SECRET))),
        "index.json manifests[]",
        DIGEST_RULE,
    ),
    "layer-digest-escapes": (
        lambda: oci_base(manifest=lambda m: _layer(m, digest=ESCAPE, size=len(SECRET))),
        "layers[0]",
        DIGEST_RULE,
    ),
    "config-digest-escapes": (
        lambda: oci_base(manifest=lambda m: _config(m, digest=ESCAPE, size=len(SECRET))),
        "config",
        DIGEST_RULE,
    ),
    "diff-id-escapes": (
        lambda: oci_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": [ESCAPE]}}),
        "rootfs.diff_ids",
        DIGEST_RULE,
    ),
    "digest-in-upper-case": (
        lambda: oci_base(manifest=lambda m: _layer(m, digest=sha256(BASE_LAYER).upper().replace("SHA256", "sha256"))),
        "layers[0]",
        DIGEST_RULE,
    ),
    "layer-bytes-not-its-digest": (lambda: _swap_layer_bytes(oci_base()), LAYER_BLOB, "does not match its digest"),
    "layer-size-not-its-descriptor": (
        lambda: oci_base(manifest=lambda m: _layer(m, size=len(BASE_LAYER) + 1)),
        LAYER_BLOB,
        "but its descriptor says",
    ),
    "index-names-another-manifest": (
        lambda: oci_base(index=lambda i: _entry(i, digest=sha256(BASE_LAYER), size=len(BASE_LAYER))),
        LAYER_BLOB,
        "not valid JSON",
    ),
    "zstd-layer": (lambda: oci_base(manifest=lambda m: _layer(m, mediaType=ZSTD)), "layers[0]", "media type"),
    "gzip-layer-said-tar": (
        lambda: oci_base(manifest=lambda m: _layer(m, mediaType="application/vnd.oci.image.layer.v1.tar")),
        "layers[0]",
        "its bytes are gzip",
    ),
    "config-is-not-an-image-config": (
        lambda: oci_base(manifest=lambda m: _config(m, mediaType="application/vnd.cncf.helm.config.v1+json")),
        "config",
        "media type",
    ),
    "index-of-an-artifact": (
        lambda: oci_base(index=lambda i: _entry(i, mediaType="application/vnd.in-toto+json")),
        "index.json",
        "not an image manifest or index",
    ),
    "indexes-nested-too-deep": (lambda: _nested_indexes(oci_base(), 3), "blobs/sha256/", "indexes nested"),
    # diff_ids are digests too: the layers must unpack to them (docker load would refuse the image)
    "diff-id-not-the-layers": (
        lambda: oci_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": [sha256(b"other")]}}),
        "blobs/sha256/",
        f"rootfs.diff_ids[0] is {sha256(b'other')}, but layer {sha256(BASE_LAYER)} unpacks to",
    ),
    "diff-ids-more-than-layers": (
        lambda: oci_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": [sha256(b"a")] * 2}}),
        "blobs/sha256/",
        "rootfs.diff_ids lists 2 layers, the manifest 1",
    ),
    # 7: empty or malformed documents
    "index-empty": (lambda: oci_base(index=lambda i: b""), "index.json", "empty, not JSON"),
    "index-not-json": (lambda: oci_base(index=lambda i: b'{"manifests": ['), "index.json", "not valid JSON"),
    "index-a-list": (lambda: oci_base(index=lambda i: []), "index.json", "not a JSON object"),
    "index-without-manifests": (lambda: oci_base(index=lambda i: {"schemaVersion": 2}), "index.json", "manifests"),
    "index-manifests-empty": (lambda: oci_base(index=lambda i: {"manifests": []}), "index.json", "manifests"),
    "index-entry-without-size": (
        lambda: oci_base(index=lambda i: {"manifests": [{"digest": i["manifests"][0]["digest"]}]}),
        "index.json manifests[]",
        "size None",
    ),
    "index-nested-too-deeply": (lambda: oci_base(index=lambda i: b"[" * 100_000), "index.json", "nested too deeply"),
    "index-schema-version-1": (
        lambda: oci_base(index=lambda i: {**i, "schemaVersion": 1}),
        "index.json",
        "schemaVersion",
    ),
    "manifest-empty": (lambda: oci_base(manifest=lambda m: b""), "blobs/sha256/", "empty, not JSON"),
    "manifest-without-layers": (
        lambda: oci_base(manifest=lambda m: {k: v for k, v in m.items() if k != "layers"}),
        "blobs/sha256/",
        "layers is not a list",
    ),
    "manifest-without-config": (
        lambda: oci_base(manifest=lambda m: {k: v for k, v in m.items() if k != "config"}),
        "config",
        "not a descriptor",
    ),
    "config-not-json": (lambda: oci_base(config=lambda c: b"\xff\xfe{"), "blobs/sha256/", "not valid JSON"),
    "config-a-string": (lambda: oci_base(config=lambda c: "linux"), "blobs/sha256/", "not a JSON object"),
    "config-history-a-string": (lambda: oci_base(config=lambda c: {**c, "history": "x"}), "blobs/sha256/", "history"),
    "config-rootfs-a-string": (lambda: oci_base(config=lambda c: {**c, "rootfs": "x"}), "blobs/sha256/", "rootfs"),
    # docker save archives: the same, and their paths stay inside the archive
    "docker-manifest-empty": (lambda: docker_base(manifest=lambda e: b""), "manifest.json", "empty, not JSON"),
    "docker-manifest-not-json": (lambda: docker_base(manifest=lambda e: b"[{"), "manifest.json", "not valid JSON"),
    "docker-manifest-an-object": (lambda: docker_base(manifest=lambda e: e), "manifest.json", "not a non-empty list"),
    "docker-manifest-without-layers": (
        lambda: docker_base(manifest=lambda e: [{"Config": e["Config"]}]),
        "manifest.json",
        "Layers is not a list",
    ),
    "docker-config-escapes": (
        lambda: docker_base(manifest=lambda e: [{**e, "Config": "../secret"}]),
        "manifest.json",
        "not a relative path inside the archive",
    ),
    "docker-layer-absolute": (
        lambda: docker_base(manifest=lambda e: [{**e, "Layers": ["/etc/passwd"]}]),
        "manifest.json",
        "not a relative path inside the archive",
    ),
    "docker-config-not-its-name": (
        lambda: {
            **docker_base(),
            "manifest.json": json.dumps([{"Config": "0" * 64 + ".json", "Layers": []}]).encode(),
            "0" * 64 + ".json": b"{}",
        },
        "0000",
        "does not match its digest",
    ),
    "docker-layer-missing": (
        lambda: docker_base(manifest=lambda e: [{**e, "Layers": ["gone/layer.tar"]}]),
        "gone/layer.tar",
        "missing",
    ),
    "docker-config-malformed": (lambda: docker_base(config=lambda c: b"{"), ".json", "not valid JSON"),
    "docker-corrupt-gzip-layer": (
        lambda: {
            **docker_base(config=lambda c: {**c, "rootfs": {"type": "layers", "diff_ids": []}}),
            "0123abcd/layer.tar": gzip.compress(bytes(range(256)) * 64)[:-20],
        },
        "layer sha256:",
        "not a readable gzip stream",
    ),
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wheel(tmp_path_factory.mktemp("wheel"), APP, name="app")


def _refused(proc: Any) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hatch-pyc: error: --base "), proc.stderr
    return str(lines[0])


@pytest.mark.parametrize("form", ["dir", "tar"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_base_is_refused_and_leaves_nothing(wheel: Path, tmp_path: Path, case: str, form: str) -> None:
    files, names, says = CASES[case]
    base = write_base(tmp_path / "in/base", files(), form)
    (tmp_path / "in/secret").write_bytes(SECRET)  # what ../../../secret would reach from the base's blobs/sha256
    (tmp_path / "out/sibling").mkdir(parents=True)
    (tmp_path / "out/sibling/keep.txt").write_text("keep\n")
    layout = tmp_path / "out/new" / ("image" if form == "dir" else "image.tar")
    before = snapshot(tmp_path)
    line = _refused(
        layer_cli(wheel, tmp_path / "out/new/layer.tar.gz", "--base", str(base), "--oci-layout", str(layout))
    )
    assert names in line and says in line, line
    assert snapshot(tmp_path) == before  # no layer, no layout, no out/new, nothing beside or above them


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(("blobs/sha256", "symlink"), id="symlink"),
        pytest.param(("blobs/sha256/../../../secret", "traversal"), id="dotdot"),
        pytest.param(("index.json", "duplicate"), id="duplicate"),
        pytest.param(("./index.json", "duplicate"), id="duplicate-spelled-differently"),
    ],
)
def test_unsafe_tar_entries_are_refused(wheel: Path, tmp_path: Path, entry: tuple[str, str]) -> None:
    import io
    import tarfile

    name, kind = entry
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel, data in oci_base().items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(name)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "base.tar").write_bytes(buffer.getvalue())
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    line = _refused(
        layer_cli(wheel, out / "l.tar.gz", "--base", str(tmp_path / "base.tar"), "--oci-layout", str(out / "i"))
    )
    assert "unsafe entry" in line and repr(name) in line
    assert snapshot(tmp_path) == before


def test_a_blob_linked_out_of_a_base_directory_is_refused(wheel: Path, tmp_path: Path) -> None:
    """Even with the right digest, a blob is read only from inside the base: the link is refused, unread."""
    base = write_base(tmp_path / "base", oci_base(), "dir")
    (tmp_path / "elsewhere").write_bytes(BASE_LAYER)
    (base / LAYER_BLOB).unlink()
    (base / LAYER_BLOB).symlink_to(tmp_path / "elsewhere")
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    line = _refused(layer_cli(wheel, out / "l.tar.gz", "--base", str(base), "--oci-layout", str(out / "i")))
    assert f"{LAYER_BLOB}: a link out of the base" in line
    assert snapshot(tmp_path) == before


def test_base_not_a_layout_nor_an_archive(wheel: Path, tmp_path: Path) -> None:
    for name, content in (("empty", None), ("junk.tar", b"not a tar at all" * 100)):
        base = tmp_path / name
        if content is None:
            base.mkdir()
        else:
            base.write_bytes(content)
        out = tmp_path / "out"
        line = _refused(layer_cli(wheel, out / "l.tar.gz", "--base", str(base), "--oci-layout", str(out / "i")))
        assert line.startswith(f"hatch-pyc: error: --base {base}: ")
        assert not out.exists()


def test_a_layer_listed_many_times_is_inflated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking diff_ids costs one inflate per distinct blob: listing a layer N times does not multiply it."""
    from hatch_pyc import _oci_base

    def repeat(manifest: dict[str, Any]) -> dict[str, Any]:
        return {**manifest, "layers": manifest["layers"] * 8}

    def repeat_ids(config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "rootfs": {"type": "layers", "diff_ids": config["rootfs"]["diff_ids"] * 8}}

    base = write_base(tmp_path / "base", oci_base(manifest=repeat, config=repeat_ids), "dir")
    opened: list[object] = []
    real_open = _oci_base.gzip.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(_oci_base.gzip, "open", counting_open)
    image = _oci_base.read_base(str(base), tmp_path / "scratch")
    assert len(image.layers) == 8 and len(set(image.diff_ids)) == 1
    assert len(opened) == 1


def test_a_failing_move_puts_back_the_layout_files_it_replaced(tmp_path: Path) -> None:
    """The layout is merged into an existing one first and the layer file moved last; when that move
    fails (something took its name meanwhile), the replaced index.json is put back and the new blobs go."""
    from hatch_pyc._oci import StagedOutputs

    out = tmp_path / "out"
    layout = out / "image"
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}\n')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}\n')
    (layout / "blobs/sha256/old").write_text("an old blob\n")
    (out / "layer.tar.gz").mkdir()  # the layer's name, taken by a directory: its move fails
    before = snapshot(tmp_path)
    outputs = StagedOutputs()
    outputs.path(out / "layer.tar.gz").write_bytes(b"the new layer")
    staged = outputs.path(layout)
    (staged / "blobs/sha256").mkdir(parents=True)
    (staged / "blobs/sha256/new").write_text("a new blob\n")
    (staged / "index.json").write_text('{"schemaVersion": 2, "manifests": ["new"]}\n')
    with pytest.raises(IsADirectoryError):
        outputs.commit()
    outputs.discard()
    assert snapshot(tmp_path) == before


def test_recovery_in_a_layout_touches_only_its_own_files_and_follows_no_link(wheel: Path, tmp_path: Path) -> None:
    """Merging into an existing layout cleans a killed merge's leftovers of the layout's own files only:
    not a name of that form for another file, and nothing through a directory link out of the layout."""
    out = tmp_path / "out"
    layout = out / "lay"
    assert layer_cli(wheel, out / "l.tar.gz", "--oci-layout", str(layout)).returncode == 0
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.bin").write_text("p\n")
    (victim / ".data.bin.999999-deadbeef.hatch-pyc-old").write_text("o\n")
    (victim / ".cache.999999-deadbeef.hatch-pyc-tmp").mkdir()
    (victim / ".cache.999999-deadbeef.hatch-pyc-tmp/userfile").write_text("u\n")
    (layout / "sub").symlink_to(victim)
    (layout / ".user.txt.999999-deadbeef.hatch-pyc-tmp").write_text("not the layout's\n")
    (layout / ".index.json.999999-deadbeef.hatch-pyc-old").write_text("a killed merge's backup\n")
    kept = snapshot(victim)
    assert layer_cli(wheel, out / "l.tar.gz", "--oci-layout", str(layout)).returncode == 0
    assert snapshot(victim) == kept
    assert (layout / ".user.txt.999999-deadbeef.hatch-pyc-tmp").exists()
    assert not (layout / ".index.json.999999-deadbeef.hatch-pyc-old").exists()


def _one_error(proc: Any) -> str:
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.splitlines()
    return str(line)


def test_a_directory_that_is_not_a_layout_is_refused_as_the_layout(wheel: Path, tmp_path: Path) -> None:
    """``--oci-layout DIR`` merges the image into DIR only when DIR is a layout (it has ``oci-layout``)
    or is empty: a project directory named by mistake would get blobs/ and an index.json mixed in."""
    out = tmp_path / "out"
    project = out / "src"
    project.mkdir(parents=True)
    (project / "index.json").write_text('{"mine": true}\n')
    (project / "notes.txt").write_text("keep\n")
    before = snapshot(tmp_path)
    line = _one_error(layer_cli(wheel, out / "l.tar.gz", "--oci-layout", str(project)))
    assert line == (
        f"hatch-pyc: error: {project}: a directory that is not an OCI layout (it has no oci-layout file); "
        "give a new or empty directory, or a layout to add the image to"
    )
    assert snapshot(tmp_path) == before
    empty = out / "empty"
    empty.mkdir()
    assert layer_cli(wheel, out / "l.tar.gz", "--oci-layout", str(empty)).returncode == 0
    assert json.loads((empty / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


@pytest.mark.parametrize("inside", ["layer-in-layout", "layout-in-layer", "through-a-link"])
def test_outputs_inside_each_other_are_refused(wheel: Path, tmp_path: Path, inside: str) -> None:
    """``-o lay/index.json --oci-layout lay`` would overwrite the layout's own index with the layer (and
    ``-o x --oci-layout x/lay`` needs x both a file and a directory): refused before any work. So is the first named
    through a link and ``..`` (``links/blobs/../index.json`` is ``lay/index.json`` when ``links/blobs`` is
    ``lay/blobs``), which the names' spelling alone does not show."""
    lay = tmp_path / "lay"
    assert layer_cli(wheel, tmp_path / "first.tar.gz", "--oci-layout", str(lay)).returncode == 0
    (tmp_path / "links").mkdir()
    (tmp_path / "links/blobs").symlink_to(lay / "blobs", target_is_directory=True)
    layer, layout = {
        "layer-in-layout": (lay / "index.json", lay),
        "layout-in-layer": (tmp_path / "x", tmp_path / "x/lay"),
        "through-a-link": (tmp_path / "links/blobs/../index.json", lay),
    }[inside]
    before = snapshot(tmp_path)
    line = _one_error(layer_cli(wheel, layer, "--oci-layout", str(layout)))
    assert line == f"hatch-pyc: error: {layer} and {layout}: one output inside the other; give each its own place"
    assert snapshot(tmp_path) == before


def test_an_output_named_by_a_link_replaces_the_link_and_is_not_taken_for_one_inside_the_other(
    wheel: Path, tmp_path: Path
) -> None:
    """Found by an adversarial review: outputs compared through their own last link were refused as one inside the
    other (``-o dl --oci-layout lay``, ``dl`` a link to ``lay/index.json``), untrue: an output replaces a link at its
    name and never writes through it. Its directory is still taken as the system names it."""
    (tmp_path / "dl").symlink_to(tmp_path / "lay/index.json")
    proc = layer_cli(wheel, tmp_path / "dl", "--oci-layout", str(tmp_path / "lay"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "dl").is_symlink() and (tmp_path / "dl").stat().st_size > 0
    assert json.loads((tmp_path / "lay/index.json").read_text())["manifests"]


def test_a_users_directory_named_like_an_outputs_temporary_stays(tmp_path: Path) -> None:
    """Found by an adversarial review: ``layer -o FILE`` took a directory with its output's temporary name (a killed
    run's pid, gone) for a staged OCI layout, and removed it with all it held. A file output's temporary is only ever
    a file; a layout's is removed only if it holds nothing but a layout's files."""
    from test_commit import _dead_pid

    from hatch_pyc._oci import StagedOutputs

    dead = f"{_dead_pid()}-deadbeef"
    users = tmp_path / f".layer.tar.gz.{dead}.hatch-pyc-tmp"
    (users / "photos").mkdir(parents=True)
    (users / "photos/p1").write_text("mine\n")
    not_a_layout = tmp_path / f".mine.{dead}.hatch-pyc-tmp"
    (not_a_layout / "blobs/sha256").mkdir(parents=True)
    (not_a_layout / "mydata.txt").write_text("mine\n")
    killed = tmp_path / f".image.{dead}.hatch-pyc-tmp"
    (killed / "blobs/sha256").mkdir(parents=True)
    (killed / "oci-layout").write_text("{}")
    (killed / "blobs/sha256" / ("0" * 64)).write_bytes(b"half a blob")
    outputs = StagedOutputs()
    outputs.path(tmp_path / "layer.tar.gz")
    outputs.path(tmp_path / "mine", layout=True)
    outputs.path(tmp_path / "image", layout=True)
    outputs.discard()
    assert (users / "photos/p1").read_text() == "mine\n"
    assert (not_a_layout / "mydata.txt").read_text() == "mine\n"
    assert not killed.exists()
