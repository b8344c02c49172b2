"""Images written by ``hatch-pyc layer --oci-layout`` loaded and run by a real Docker engine."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import docker_support as ds
import pytest
from conftest import run_cli
from test_wheel import make_wheel

BASE = ds.BASE_IMAGE
PREFIX = "/usr/local/lib/python3.11/dist-packages"  # on sys.path of Debian's python3 (3.11 in bookworm)
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def base_archive(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = tmp_path_factory.mktemp("base") / "base.tar"
    with open(archive, "wb") as handle:
        for chunk in engine.images.get(BASE).save(named=True):
            handle.write(chunk)
    return archive


APP = {
    "app/__init__.py": '"""App."""\nfrom app.core import VALUE\n',
    "app/core.py": "VALUE = 41 + 1\n",
    "app-1.0.data/scripts/app-tool": "#!python\nimport app, sys\nprint('tool', app.VALUE, sys.version_info[:2])\n",
}


@pytest.mark.parametrize("strip", [False, True], ids=["sources", "sourceless"])
def test_docker_loads_and_runs_the_image(engine: Any, base_archive: Path, tmp_path: Path, strip: bool) -> None:
    wheel = make_wheel(tmp_path, APP, name="app", modes={"app-1.0.data/scripts/app-tool": 0o755})
    tag = f"hatch-pyc-test/layer:{'sourceless' if strip else 'sources'}"
    image = tmp_path / "image.tar"
    args = [
        "layer",
        str(wheel),
        "--python",
        "3.11",
        "--prefix",
        PREFIX,
        "-o",
        str(tmp_path / "app.tar.gz"),
        "--oci-layout",
        str(image),
        "--base",
        str(base_archive),
        "--tag",
        tag,
        "-O",
        "0",
        "--interpreter-path",
        "/usr/bin/python3.11",
    ]  # Debian's interpreter is not under /usr/local
    if strip:
        args.append("--strip")
    run_cli(*args, check=True)
    # docker load checks every diff_id against the layer it unpacks.
    subprocess.run(["docker", "load", "-i", str(image)], check=True, capture_output=True, text=True)
    try:
        out = engine.containers.run(tag, ["/usr/local/bin/app-tool"], network_mode="none", remove=True)
        assert out.decode().strip() == "tool 42 (3, 11)"
        listing = engine.containers.run(tag, ["find", PREFIX + "/app"], network_mode="none", remove=True).decode()
        names = sorted(Path(line).name for line in listing.split())
        if strip:
            assert names == ["__init__.pyc", "app", "core.pyc"]
        else:
            assert "core.cpython-311.pyc" in names and "core.py" in names
        # The timestamp pycs are valid in the image: importing does not recompile (no write attempted in a
        # read-only container).
        check = "import app.core, sys; print(app.core.__cached__ if hasattr(app.core, '__cached__') else '')"
        out = engine.containers.run(tag, ["python3", "-c", check], network_mode="none", remove=True, read_only=True)
        assert out.decode().strip().endswith(".pyc")
    finally:
        engine.images.remove(tag, force=True)


def test_layer_added_to_an_oci_layout_base_is_read_by_skopeo(engine: Any, base_archive: Path, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, APP, name="app")
    first = tmp_path / "one"
    run_cli(
        "layer",
        str(wheel),
        "--python",
        "3.11",
        "--prefix",
        PREFIX,
        "-o",
        str(tmp_path / "a.tar.gz"),
        "--oci-layout",
        str(first),
        "--base",
        str(base_archive),
        "--tag",
        "t:1",
        check=True,
    )
    # An OCI layout as the base of the next image: two hatch-pyc layers on Debian.
    second = tmp_path / "two.tar"
    run_cli(
        "layer",
        str(wheel),
        "--python",
        "3.11",
        "--prefix",
        "/opt/extra/lib/python3.11/site-packages",
        "-o",
        str(tmp_path / "b.tar.gz"),
        "--oci-layout",
        str(second),
        "--base",
        str(first),
        "--tag",
        "t:2",
        check=True,
    )
    proc = subprocess.run(["skopeo", "inspect", f"oci-archive:{second}:2"], capture_output=True, text=True, check=True)
    import json

    inspect = json.loads(proc.stdout)
    base_layers = len(engine.images.get(BASE).attrs["RootFS"]["Layers"])
    assert len(inspect["Layers"]) == base_layers + 2
    subprocess.run(["docker", "load", "-i", str(second)], check=True, capture_output=True)
    try:
        out = engine.containers.run(
            "t:2", ["python3", "-c", "import app; print(app.VALUE)"], network_mode="none", remove=True
        )
        assert out.decode().strip() == "42"
    finally:
        engine.images.remove("t:2", force=True)


def test_docker_option_loads_the_image_through_the_sdk(engine: Any, base_archive: Path, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, APP, name="app")
    tag = "hatch-pyc-test/layer:sdk"
    layout = tmp_path / "layout"
    layer = ["layer", str(wheel), "--python", "3.11", "--prefix", PREFIX, "--strip", "-o", str(tmp_path / "a.tar.gz")]
    proc = run_cli(*layer, "--oci-layout", str(layout), "--base", str(base_archive), "--docker", tag, check=True)
    try:
        # No `docker load`: the image is in the engine, under the --docker name, with the ID the layout names.
        loaded = engine.images.get(tag)
        printed = dict(line.split(None, 1) for line in proc.stdout.splitlines())
        assert printed["image"].split()[0] == loaded.id
        assert (layout / "blobs/sha256" / loaded.id.removeprefix("sha256:")).is_file()
        base_layers = engine.images.get(BASE).attrs["RootFS"]["Layers"]
        assert loaded.attrs["RootFS"]["Layers"][:-1] == base_layers
        assert loaded.attrs["RootFS"]["Layers"][-1] == printed["diff_id"]
        check = "import app, app.core; print(app.VALUE, app.core.__spec__.loader.__class__.__name__)"
        out = engine.containers.run(tag, ["python3", "-c", check], network_mode="none", remove=True)
        assert out.decode().split() == ["42", "SourcelessFileLoader"]
    finally:
        engine.images.remove(tag, force=True)
