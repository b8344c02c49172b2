"""The Dockerfiles of examples/dockerfiles, built and run by a real engine, offline.

Needs an engine at ``DOCKER_HOST`` with the local base image: ``eval "$(scripts/docker-env.sh start)"``.
Without one these tests are skipped, or fail when ``CI`` is set. Every example is built once per session
against ``hatch-pyc/python:bookworm`` (Debian's python3 3.11, no stdlib pycs, like the official images)
with ``--network none``, from one build context of wheels made on this machine.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker_support as ds
import pytest
from conftest import run_cli

# --- static checks: no engine needed ------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions, continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(kw, rest.strip()) for kw, _, rest in (line.strip().partition(" ") for line in joined.splitlines()) if kw]


@pytest.mark.parametrize("example", [*ds.EXAMPLES, *ds.BUILDKIT])
def test_dockerfile_conventions(example: str) -> None:
    instructions = _instructions((ds.EXAMPLES_DIR / f"{example}.Dockerfile").read_text(encoding="utf-8"))
    assert instructions[0] == ("ARG", "PYTHON_IMAGE=python:3.12-slim")
    stages = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    assert stages and all(instructions[i][1].split()[0] == "${PYTHON_IMAGE}" for i in stages)
    for kw, body in instructions:
        if kw != "RUN":
            continue
        commands = [c.strip() for c in body.split("&&")]
        # Offline: every install reads the wheels of the build context, never an index.
        for command in commands:
            if re.search(r"\b(pip|uv pip)\b.*\binstall\b", command):
                assert "--no-index --find-links /wheels" in command, command
        # A deletion only shrinks the image in the RUN that created the files: no RUN of deletions alone.
        assert not all(c.startswith("rm ") for c in commands), f"a later layer's rm does not shrink the image: {body}"
    # What is shipped from a build stage is the venv alone.
    final = instructions[stages[-1] :]
    if len(stages) > 1:
        assert [body for kw, body in final if kw == "COPY"] == ["--from=build /opt/venv /opt/venv"]


def test_examples_are_documented() -> None:
    readme = (ds.EXAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert (len(ds.EXAMPLES), len(ds.BUILDKIT)) == (5, 1)
    for example in [*ds.EXAMPLES, *ds.BUILDKIT]:
        assert f"{example}.Dockerfile" in readme
    assert "TODO" not in readme and "XXX" not in readme


# --- with the engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    cli = ds.require_engine()
    before = {image.id for image in cli.images.list(all=True)}
    yield cli
    if os.environ.get("HATCH_PYC_DOCKER_KEEP"):
        return
    # Remove what this session built (its tags, and the build stages left untagged), nothing else.
    ds.cleanup(cli, [f"{ds.TAG_PREFIX}:{example[:2]}" for example in ds.EXAMPLES], before)
    cli.close()


@pytest.fixture(scope="session")
def contexts(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("docker")
    context = ds.make_context(root / "context")
    uv_context = ds.add_uv(context, root / "context-uv")
    return {example: uv_context if example in ds.USES_UV else context for example in ds.EXAMPLES}


@pytest.fixture(scope="session")
def image(engine: Any, contexts: dict[str, Path]) -> Callable[[str], str]:
    """``image(example)``: the example built once per session; its tag."""
    built: dict[str, str] = {}

    def get(example: str) -> str:
        if example not in built:
            if example == "04-prebuilt-layer" and not (contexts[example] / "app-layer.tar.gz").exists():
                ds.unavailable(f"04's layer needs a CPython {ds.BASE_PYTHON} on this machine to compile for the image")
            built[example] = ds.build(engine, contexts[example], example).tags[0]
        return built[example]

    return get


@pytest.mark.docker
@pytest.mark.parametrize("example", ds.EXAMPLES)
def test_example_builds_and_runs_from_pycs(engine: Any, image: Callable[[str], str], example: str) -> None:
    tag = image(example)
    ran = ds.run(engine, tag)  # the image's CMD: python -m demo_app
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[:3] == ds.DEMO_OUTPUT
    sourceless = example in ds.SOURCELESS
    loader = "__main__.pyc by SourcelessFileLoader" if sourceless else "__main__.py by SourceFileLoader"
    assert lines[3] == f"loaded from {loader}"
    # Every module of the app and of its dependencies comes from a pyc hatch-pyc wrote: none is compiled
    # at start-up (a stale or missing pyc would show as a code object read from the .py).
    ran = ds.run(engine, tag, "python", "-v", "-c", ds.APP_IMPORT)
    assert ran.code == 0, ran.err
    assert "demo_app" in ran.err and "rich/console" in ran.err
    assert ds.compiled_from_source(ran.err, ds.VENV) == []
    # no compile cache was left in the image (it would weigh as much as the pycs)
    assert ds.run(engine, tag, "sh", "-c", "test ! -e /root/.cache/hatch-pyc").code == 0


@pytest.mark.docker
def test_sourceless_image_holds_no_sources_and_no_hatch_pyc(engine: Any, image: Callable[[str], str]) -> None:
    tag = image("02-sourceless-multistage")
    found = ds.run(engine, tag, "find", ds.VENV, "-name", "*.py", "-path", "*demo_app*")
    assert found.code == 0 and found.out == ""
    assert ds.run(engine, tag, "find", ds.VENV, "-name", "*.py").out == ""  # rich and its deps too
    assert ds.run(engine, tag, "find", ds.VENV, "-name", "__pycache__").out == ""
    assert ds.run(engine, tag, "python", "-c", "import hatch_pyc").code != 0
    assert ds.run(engine, tag, "test", "-e", "/opt/hatch-pyc").code != 0
    # With sources, the same app keeps its .py files next to the pycs.
    kept = ds.run(engine, image("01-compile-in-place"), "find", ds.VENV, "-name", "*.py", "-path", "*demo_app*")
    assert len(kept.out.split()) == 5


@pytest.mark.docker
def test_sourceless_is_smaller_than_sources_and_pycs(engine: Any, image: Callable[[str], str]) -> None:
    sourceless, with_sources = image("02-sourceless-multistage"), image("03-uv-then-hatch-pyc")
    # Both copy only the venv into a fresh stage, so the images differ by the venv alone.
    assert ds.image_size(engine, sourceless) < ds.image_size(engine, with_sources)

    def du(tag: str) -> int:
        return int(ds.run(engine, tag, "du", "-sk", ds.VENV).out.split()[0])

    assert du(sourceless) < du(image("01-compile-in-place"))


@pytest.mark.docker
def test_hatch_pyc_images_compares_the_examples(engine: Any, image: Callable[[str], str], tmp_path: Path) -> None:
    # What CI runs on every change: sources + pycs (01) against sourceless (02), with the start-up of the app.
    with_sources, sourceless = image("01-compile-in-place"), image("02-sourceless-multistage")
    out, md = tmp_path / "examples.json", tmp_path / "examples.md"
    command = f"python -c '{ds.APP_IMPORT}'"
    args = ["images", with_sources, sourceless, "--command", command, "--runs", "3", "--json", str(out)]
    proc = run_cli(*args, "--markdown", str(md), "--max-size-increase", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "gate: passed (1 check)"
    first, second = json.loads(out.read_text(encoding="utf-8"))["images"]
    for entry, tag in ((first, with_sources), (second, sourceless)):
        assert entry["bytes"] == ds.image_size(engine, tag)
        assert entry["startup"]["median_ms"] > 0 and len(entry["startup"]["samples_ms"]) == 3
    versus = second["vs_baseline"]
    assert versus["delta_bytes"] < 0  # sourceless, and no wheels/ layer
    assert versus["shared_layers"] >= 1  # the base image's layer
    assert "| image | median \\[95% CI\\] | min-max | IQR | vs baseline |" in md.read_text(encoding="utf-8")


@pytest.mark.docker
def test_stdlib_example_compiles_the_standard_library(engine: Any, image: Callable[[str], str]) -> None:
    stdlib = f"/usr/lib/python{ds.BASE_PYTHON}"
    code = "import json, email.message, http.client, argparse"
    # The base ships no stdlib pycs (as the official images): each container compiles them again.
    base = ds.run(engine, ds.BASE_IMAGE, "python3", "-v", "-c", code)
    assert base.code == 0 and len(ds.compiled_from_source(base.err, stdlib)) > 20
    ran = ds.run(engine, image("05-stdlib"), "python", "-v", "-c", code)
    assert ran.code == 0, ran.err
    assert ds.compiled_from_source(ran.err, stdlib) == []
    assert ds.compiled_from_source(ran.err, ds.VENV) == []
