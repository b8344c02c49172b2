"""The compile cache across image builds, on the real engine: a rebuild with one dependency added compiles only
that dependency, with the cache in a BuildKit cache mount (``examples/dockerfiles/06-buildkit-cache-mount``, built
with ``docker buildx build``) and, for the classic builder, in a named volume of a build run as a container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker_support as ds
import pytest

pytestmark = pytest.mark.docker

TOOL = """ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
COPY wheels/ /wheels/
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 python3 -m venv /opt/hatch-pyc \\
 && /opt/hatch-pyc/bin/pip install --no-index --find-links /wheels --no-compile hatch-pyc
"""
BUILD = (
    "set -e; export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 HATCH_PYC_CACHE_DIR=/cache; "
    "python3 -m venv --without-pip /opt/venv; "
    "/opt/hatch-pyc/bin/pip --python /opt/venv/bin/python install -q --no-index --find-links /wheels --no-compile {what}; "
    "/opt/hatch-pyc/bin/hatch-pyc compile --strip -q /opt/venv --json /tmp/summary.json; "
    "cat /tmp/summary.json; echo; "
    "find {site}/packaging -name '*.pyc' | wc -l"
)


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    cli = ds.require_engine()
    before = {image.id for image in cli.images.list(all=True)}
    context = ds.make_context(tmp_path_factory.mktemp("docker-cache") / "context")
    (context / "cache-tool.Dockerfile").write_text(TOOL)
    tag = f"{ds.TAG_PREFIX}:cache-tool"
    ds.build(cli, context, "cache-tool", tag=tag)
    try:
        yield cli, tag
    finally:
        if not os.environ.get("HATCH_PYC_DOCKER_KEEP"):
            ds.cleanup(cli, [tag], before)
        shutil.rmtree(context, ignore_errors=True)
        cli.close()


def _build(cli: Any, tag: str, volume: str, what: str) -> tuple[dict[str, Any], int]:
    """One "image build": a fresh venv with ``what`` installed, stripped with the cache in ``volume``."""
    ran = ds.run(cli, tag, "sh", "-c", BUILD.format(what=what, site=ds.SITE), volumes={volume: "/cache"}, timeout=600)
    assert ran.code == 0, ran.err
    out = ran.out
    summary_text, packaging = out.rsplit("\n", 2)[0], out.split()[-1]
    return json.loads(summary_text), int(packaging)


def test_a_rebuild_after_a_dependency_change_compiles_only_that_dependency(tool: tuple[Any, str]) -> None:
    """Build 1 (demo_app and rich) fills the cache; build 2 adds ``packaging``: every module of build 1 comes
    from the cache, and exactly packaging's modules are compiled."""
    cli, tag = tool
    volume = f"hatch-pyc-test-cache-{uuid.uuid4().hex[:8]}"
    cli.volumes.create(volume)
    try:
        first, none = _build(cli, tag, volume, ds.APP)
        assert none == 0 and first["cache_hits"] == 0 and first["cache_misses"] == first["compiled"] > 50
        second, packaging = _build(cli, tag, volume, f"{ds.APP} packaging")
        assert packaging > 10
        assert second["compiled"] == first["compiled"] + packaging
        assert (second["cache_hits"], second["cache_misses"]) == (first["compiled"], packaging)
    finally:
        cli.volumes.get(volume).remove(force=True)


SUMMARY = re.compile(r"hatch-pyc: compiled (\d+) of \d+ sources .*?; (\d+) of (\d+) from the compile cache")


def _buildx(context: Path, tag: str, app: str) -> tuple[int, int, int]:
    """``docker buildx build`` of example 06 for ``app``; (compiled, from the cache, looked up) as its log says."""
    if subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False).returncode != 0:
        ds.unavailable("docker buildx is not installed (scripts/docker-env.sh start installs it)")
    proc = subprocess.run(
        ["docker", "buildx", "build", "-f", str(context / "06-buildkit-cache-mount.Dockerfile"), "--network", "none",
         "--progress", "plain", "--build-arg", f"PYTHON_IMAGE={ds.BASE_IMAGE}", "--build-arg", f"APP={app}",
         "--load", "-t", tag, str(context)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    (found,) = SUMMARY.findall(proc.stderr)
    compiled, hits, lookups = map(int, found)
    return compiled, hits, lookups


def test_a_buildkit_cache_mount_rebuild_compiles_only_the_changed_dependency(
    tool: tuple[Any, str], tmp_path: Path
) -> None:
    """Example 06 built twice with ``docker buildx``, the second time with one more dependency: every module of
    the first build comes from the cache mount, only the new dependency's modules are compiled, the image runs,
    and no layer holds the cache. (The new dependency is made here, with modules no build has seen, so the
    builder's cache mount may hold anything from earlier runs.)"""
    cli, _ = tool
    from test_wheel import make_wheel

    context = ds.make_context(tmp_path / "context")
    stamp = uuid.uuid4().hex
    new = {f"fresh_dep/m{i}.py": f"STAMP = {stamp!r}\nN = {i}\n" for i in range(4)}
    make_wheel(context / "wheels", {"fresh_dep/__init__.py": f"STAMP = {stamp!r}\n", **new}, name="fresh_dep")
    before = {image.id for image in cli.images.list(all=True)}
    tags = [f"{ds.TAG_PREFIX}:06-first", f"{ds.TAG_PREFIX}:06-second"]
    try:
        first, _, first_lookups = _buildx(context, tags[0], ds.APP)
        assert first == first_lookups > 50
        second, hits, lookups = _buildx(context, tags[1], f"{ds.APP} fresh_dep")
        assert (second, lookups) == (first + 5, first + 5)
        assert hits == first  # every module of the first build; the five of fresh_dep compiled
        ran = ds.run(cli, tags[1], "sh", "-c", "python -m demo_app; ls -A /root/.cache/hatch-pyc | wc -l")
        assert ran.code == 0, ran.err
        lines = ran.out.splitlines()
        assert lines[: len(ds.DEMO_OUTPUT)] == ds.DEMO_OUTPUT and lines[-1] == "0", ran.out
    finally:
        if not os.environ.get("HATCH_PYC_DOCKER_KEEP"):
            ds.cleanup(cli, tags, before)
