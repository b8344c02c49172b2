"""Helpers for the Docker example tests (tests/test_docker_examples.py) and the README's measurements.

The engine is the one ``DOCKER_HOST`` names (``eval "$(scripts/docker-env.sh start)"`` starts a private one
and builds the offline base image). Every build and every container runs with ``--network none``: the
build context holds all the wheels.

    python tests/docker_support.py measure [--runs N]   # builds all examples, prints the README table
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO / "examples" / "dockerfiles"
BUILDKIT = ("06-buildkit-cache-mount",)  # RUN --mount: built with buildx (tests/test_docker_cache.py), not the SDK
EXAMPLES = sorted(
    name for p in EXAMPLES_DIR.glob("*.Dockerfile") if (name := p.name.removesuffix(".Dockerfile")) not in BUILDKIT
)
BASE_IMAGE = os.environ.get("HATCH_PYC_BASE_IMAGE", "hatch-pyc/python:bookworm")
BASE_PYTHON = "3.11"  # Debian bookworm's python3, in the base image
VENV = "/opt/venv"
SITE = f"{VENV}/lib/python{BASE_PYTHON}/site-packages"
APP = "demo_app rich"  # the demo app plus a heavier dependency, so start-up differences show
APP_IMPORT = "import demo_app, rich.console"
TAG_PREFIX = "hatch-pyc-example"
SOURCELESS = ("02-sourceless-multistage",)
USES_UV = ("03-uv-then-hatch-pyc",)
DEMO_OUTPUT = ["  A-1  anvil    x3", "  B-2  bolt     x400", "total value: 435.00"]


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_context(dest: Path) -> Path:
    """The build context of the examples: wheels/ (app, rich, hatch-pyc and their dependencies),
    app-layer.tar.gz (for 04, when a CPython 3.11 is found here) and the Dockerfiles. The wheels come
    from the repo and from PyPI (or pip's cache)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = dest / "src" / "demo_app"
    shutil.copytree(REPO / "examples/demo_app", src, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = dest / "wheels"
    # hatchling is a dependency of hatch-pyc, so both local projects build without an isolated env.
    _pip("wheel", "-q", "--no-build-isolation", "-w", str(wheels), str(REPO), str(src), *APP.split()[1:])
    if _has_python(BASE_PYTHON):
        # 04's layer holds exactly the app's closure: pip resolves it from the wheels just made.
        app_wheels = dest / "src" / "app-wheels"
        _pip("download", "-q", "--no-index", "--find-links", str(wheels), "-d", str(app_wheels), *APP.split())
        _run(
            [sys.executable, "-m", "hatch_pyc", "layer", "-q", "--python", BASE_PYTHON, "--prefix", SITE,
             "-o", str(dest / "app-layer.tar.gz"), *map(str, sorted(app_wheels.glob("*.whl")))],
        )  # fmt: skip
    shutil.rmtree(dest / "src")
    for dockerfile in EXAMPLES_DIR.glob("*.Dockerfile"):
        shutil.copy2(dockerfile, dest / dockerfile.name)
    return dest


def add_uv(context: Path, dest: Path) -> Path:
    """A copy of ``context`` (hard links) whose wheels/ also hold uv's wheel, for 03. The other examples
    COPY wheels/ into a layer of their own, and uv's 17 MB there would skew their sizes."""
    shutil.copytree(context, dest, copy_function=os.link)
    _pip("download", "-q", "--only-binary=:all:", "--no-deps", "-d", str(dest / "wheels"), "uv")
    return dest


def _pip(*args: str) -> None:
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])


def _has_python(minor: str) -> bool:
    from hatch_pyc import InvalidTarget, find_interpreter

    try:
        find_interpreter(minor)
    except InvalidTarget:
        return False
    return True


class EngineUnavailable(RuntimeError):
    """No Docker engine answers at ``DOCKER_HOST``."""


def client() -> Any:
    """A Docker SDK client for ``DOCKER_HOST`` that answered a ping; EngineUnavailable when none does."""
    import docker
    import requests  # the SDK's transport

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        # Asked first without the SDK: its failed connections leave sockets open (ResourceWarning).
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            try:
                sock.connect(host.removeprefix("unix://"))
            except OSError as exc:
                raise EngineUnavailable(f"nothing listens at DOCKER_HOST={host} ({exc.strerror or exc})") from None
    # API 1.41 (Docker 20.10) is served by every engine since; "auto" would probe before the ping.
    cli = docker.from_env(version="1.41", timeout=900)
    try:
        cli.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        cli.close()
        raise EngineUnavailable(f"no Docker engine answers at DOCKER_HOST={host} ({exc})") from None
    return cli


def unavailable(reason: str) -> NoReturn:
    """Skip the test for want of an engine; on CI (``CI`` set) fail it instead."""
    import pytest

    hint = 'eval "$(scripts/docker-env.sh start)" starts an engine and builds the base image'
    if os.environ.get("CI"):
        pytest.fail(f"the Docker tests need an engine on CI: {reason}; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def require_engine() -> Any:
    """A client of the engine at ``DOCKER_HOST`` that holds the base image, for a test fixture."""
    try:
        import docker
    except ImportError:
        unavailable("the Docker SDK is not installed (pip install 'hatch-pyc[docker]')")
    try:
        cli = client()
    except EngineUnavailable as exc:
        unavailable(str(exc))
    try:
        cli.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        cli.close()
        unavailable(f"the base image {BASE_IMAGE} is missing")
    return cli


def build(cli: Any, context: Path, example: str, tag: str | None = None, **buildargs: str) -> Any:
    """Build one example on the local base image, offline; the image (BuildError carries the log)."""
    import docker

    args = {"PYTHON_IMAGE": BASE_IMAGE, "APP": APP, **buildargs}
    try:
        image, _ = cli.images.build(
            path=str(context),
            dockerfile=f"{example}.Dockerfile",
            tag=tag or f"{TAG_PREFIX}:{example[:2]}",
            buildargs=args,
            network_mode="none",
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log)
        raise RuntimeError(f"building {example} failed: {exc.msg}\n{log[-6000:]}") from None
    return image


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run(cli: Any, image: str, *cmd: str, volumes: dict[str, str] | None = None, timeout: int = 300) -> Ran:
    """Run ``cmd`` in a fresh container without network, ``volumes`` (name -> path) mounted; exit code, stdout
    and stderr."""
    mounts = {name: {"bind": path, "mode": "rw"} for name, path in (volumes or {}).items()}
    container = cli.containers.create(image, list(cmd), network_mode="none", volumes=mounts)
    try:
        container.start()
        code = container.wait(timeout=timeout)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return Ran(code, out, err)


def compiled_from_source(verbose_stderr: str, under: str) -> list[str]:
    """Modules under ``under`` that ``python -v`` compiled from their source (no usable pyc)."""
    found = re.findall(r"^# code object from '?([^'\n]+?)'?$", verbose_stderr, flags=re.MULTILINE)
    return [path for path in found if path.startswith(under) and path.endswith(".py")]


def cleanup(cli: Any, tags: list[str], before: set[str]) -> None:
    """Remove ``tags`` and the untagged images (build stages) made since ``before``; nothing else."""
    import docker

    for tag in tags:
        try:
            cli.images.remove(tag)
        except docker.errors.APIError:
            pass
    for image in cli.images.list(filters={"dangling": True}):
        if image.id not in before:
            try:
                cli.images.remove(image.id)
            except docker.errors.APIError:
                pass


def image_size(cli: Any, tag: str) -> int:
    return int(cli.images.get(tag).attrs["Size"])


# --- measurements for examples/dockerfiles/README.md --------------------------------------------

BASELINES = {
    # What the examples are compared with: the same venv (no pip in it), installed by pip with its
    # default compileall pass, and with --no-compile (no pycs at all: what uv does by default).
    name: f"""\
        ARG PYTHON_IMAGE
        FROM ${{PYTHON_IMAGE}} AS build
        ARG APP
        COPY wheels/ /wheels/
        RUN export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \\
         && python3 -m venv /opt/tools && python3 -m venv --without-pip /opt/venv \\
         && /opt/tools/bin/pip --python /opt/venv/bin/python install --no-index --find-links /wheels {flag} ${{APP}}
        FROM ${{PYTHON_IMAGE}}
        COPY --from=build /opt/venv /opt/venv
        """
    for name, flag in (("pip-default", ""), ("pip-no-compile", "--no-compile"))
}

TIMED = f"s=$(date +%s%N); {VENV}/bin/python -c '{APP_IMPORT}'; e=$(date +%s%N); echo $(( (e - s) / 1000 ))"


def _du(cli: Any, tag: str, path: str) -> int:
    ran = run(cli, tag, "du", "-sk", path)
    return int(ran.out.split()[0]) * 1024


def measure(runs: int, keep: bool = False) -> str:
    cli = client()
    before = {image.id for image in cli.images.list(all=True)}
    with tempfile.TemporaryDirectory() as tmp:
        context = make_context(Path(tmp) / "context")
        uv_context = add_uv(context, Path(tmp) / "context-uv")
        for name, text in BASELINES.items():
            (context / f"{name}.Dockerfile").write_text(textwrap.dedent(text), encoding="utf-8")
        variants = [*BASELINES, *EXAMPLES]
        for name in variants:
            build(cli, uv_context if name in USES_UV else context, name, tag=f"{TAG_PREFIX}-measure:{name}")
    base = image_size(cli, BASE_IMAGE)
    walls: dict[str, list[float]] = {name: [] for name in variants}
    inside: dict[str, list[float]] = {name: [] for name in variants}
    for name in variants:  # a warm-up run each, and a check that the import works at all
        assert run(cli, f"{TAG_PREFIX}-measure:{name}", f"{VENV}/bin/python", "-c", APP_IMPORT).code == 0
    for _ in range(runs):  # interleaved, so drift on the machine hits every variant alike
        for name in variants:
            start = time.perf_counter()
            proc = _run(
                ["docker", "run", "--rm", "--network", "none", f"{TAG_PREFIX}-measure:{name}", "sh", "-c", TIMED]
            )
            walls[name].append(time.perf_counter() - start)
            inside[name].append(int(proc.stdout.split()[-1]) / 1000)
    rows = []
    for name in variants:
        tag = f"{TAG_PREFIX}-measure:{name}"
        size = image_size(cli, tag)
        rows.append(
            f"| {name} | {size / 1e6:.1f} | {(size - base) / 1e6:.1f} | {_du(cli, tag, VENV) / 1e6:.1f} "
            f"| {statistics.median(inside[name]):.0f} | {statistics.median(walls[name]) * 1000:.0f} |"
        )
    head = (
        f'| image | size MB | added to base MB | {VENV} MB | `python -c "{APP_IMPORT}"` ms | `docker run` ms |\n'
        "|---|---:|---:|---:|---:|---:|"
    )
    if not keep:
        cleanup(cli, [f"{TAG_PREFIX}-measure:{name}" for name in variants], before)
    return "\n".join([head, *rows])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["measure", "context"])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the measured images")
    parser.add_argument("--dest", type=Path, default=Path("docker-context"))
    ns = parser.parse_args()
    if ns.command == "context":
        print(make_context(ns.dest))
    else:
        print(measure(ns.runs, ns.keep))
