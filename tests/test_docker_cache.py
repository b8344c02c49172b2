"""The compile cache across image builds, on the real engine: the cache kept in a volume between two builds of a
venv, the second with one dependency added, compiles only that dependency.

(A BuildKit ``RUN --mount=type=cache`` keeps the cache the same way; this engine's client has no BuildKit, so
the builds run as containers with the cache in a named volume: the same directory, kept by the engine.)
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
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
