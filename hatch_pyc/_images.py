"""Compare container images: total and per-layer size, and the start-up time of a command in each.

Works through the Docker SDK (the ``docker`` extra) against the engine ``DOCKER_HOST`` names; nothing
is pulled. Start-up is timed as honestly as a report's import times: every sample is a fresh container
(``--network none``, removed afterwards), the images take turns and the order rotates each round
(A B, B A, ...), one warm-up run per image is discarded, and each figure is a median with a
distribution-free confidence interval. The clock is the host's, from the container's start until
the engine reports its exit; creating and removing the container happen outside it.
"""

from __future__ import annotations

import datetime
import os
import shlex
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hatch_pyc._errors import HatchPycError, ImageCommandFailed, InvalidInput, InvalidOptions
from hatch_pyc._gate import GateCheck, GateResult, Ratio, not_checked, size_check, slowdown_check
from hatch_pyc._gate import pct as _pct
from hatch_pyc._measure import Timing, median_ci_level, rotated
from hatch_pyc._report import _version

SCHEMA_ID = "https://hatch-pyc.invalid/schemas/images-1.json"
SCHEMA_VERSION = 1
ImagesReport = dict[str, Any]


@dataclass(frozen=True)
class ImageLayer:
    """A history entry that added bytes: the instruction that made it, and its size."""

    created_by: str
    comment: str
    bytes: int
    created: str  # ISO 8601, UTC; "" when the engine does not know


@dataclass(frozen=True)
class ImageInfo:
    """One image as the engine describes it."""

    name: str  # as it was asked for
    id: str
    tags: tuple[str, ...]
    bytes: int
    diff_ids: tuple[str, ...]  # the rootfs layers, oldest first
    layers: tuple[ImageLayer, ...]  # oldest first; history entries of 0 bytes are left out
    empty_entries: int  # those entries: ENV, CMD, LABEL ... and layers that add no bytes

    def shared_with(self, base: ImageInfo) -> tuple[int, int | None]:
        """How many leading layers are ``base``'s own, and their bytes.

        Docker's history does not say which 0-byte entries are layers, so the bytes are only
        known when every layer added bytes (then the sized entries are exactly the layers)."""
        shared = 0
        for mine, theirs in zip(self.diff_ids, base.diff_ids, strict=False):
            if mine != theirs:
                break
            shared += 1
        if len(self.layers) != len(self.diff_ids):
            return shared, None
        return shared, sum(layer.bytes for layer in self.layers[:shared])


def _sdk() -> Any:
    try:
        import docker
    except ImportError as exc:
        raise InvalidInput("comparing images needs the Docker SDK: pip install 'hatch-pyc[docker]'") from exc
    return docker


def _host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (DOCKER_HOST is not set)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "explanation", None) or exc).split())


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Turn a failing engine (gone, refusing a request) into one line naming DOCKER_HOST."""
    docker = _sdk()
    import requests  # the SDK's transport

    try:
        yield
    except HatchPycError:
        raise
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise InvalidInput(f"the Docker engine at {_host()} failed: {_one_line(exc)}") from exc


def connect() -> Any:
    """A Docker SDK client for ``DOCKER_HOST`` that answered a ping."""
    docker = _sdk()
    import requests

    client = None
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        if client is not None:
            client.close()
        raise InvalidInput(
            f"no Docker engine answers at {_host()}: {_one_line(exc)}; start one or set DOCKER_HOST"
        ) from None
    return client


def _iso(epoch: object) -> str:
    if not isinstance(epoch, int) or epoch <= 0:
        return ""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def describe_image(client: Any, ref: str) -> ImageInfo:
    """Size, rootfs layers and history of the image ``ref`` (a tag or an ID) in the engine."""
    docker = _sdk()
    try:
        image = client.images.get(ref)
        history = image.history()
    except docker.errors.ImageNotFound:
        raise InvalidInput(
            f"image {ref}: not found in the engine at {_host()} (hatch-pyc never pulls: build or pull it first)"
        ) from None
    except docker.errors.APIError as exc:
        raise InvalidInput(f"image {ref}: {_one_line(exc)}") from None
    entries = list(reversed(history))  # the engine lists the newest first
    layers = tuple(
        ImageLayer(str(e.get("CreatedBy") or ""), str(e.get("Comment") or ""), int(e["Size"]), _iso(e.get("Created")))
        for e in entries
        if e.get("Size")
    )
    return ImageInfo(
        name=ref,
        id=image.id,
        tags=tuple(image.tags),
        bytes=int(image.attrs["Size"]),
        diff_ids=tuple(image.attrs.get("RootFS", {}).get("Layers") or ()),
        layers=layers,
        empty_entries=len(entries) - len(layers),
    )


def _output_tail(container: Any, lines: int = 20) -> list[str]:
    try:
        text: str = container.logs(stdout=True, stderr=True, tail=lines).decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the output only decorates the error being raised
        return []
    return text.splitlines()


def time_command(client: Any, image: ImageInfo, command: Sequence[str] | None, timeout: float) -> float:
    """Run ``command`` (None: the image's own) once in a fresh container without network; milliseconds
    from start to exit. ImageCommandFailed when it does not start, exits non-zero or outlives ``timeout``."""
    docker = _sdk()
    import requests

    shown = f"`{shlex.join(command)}`" if command else "its default command"
    try:
        container = client.containers.create(image.id, list(command) if command else None, network_mode="none")
    except docker.errors.APIError as exc:
        raise ImageCommandFailed(image.name, shown, "could not be created", [_one_line(exc)]) from None
    try:
        started = time.perf_counter()
        try:
            container.start()
            status = container.wait(timeout=timeout)
        except docker.errors.APIError as exc:
            raise ImageCommandFailed(image.name, shown, "did not start", [_one_line(exc)]) from None
        except requests.RequestException:
            raise ImageCommandFailed(
                image.name, shown, f"did not exit within {timeout:g} s", _output_tail(container)
            ) from None
        elapsed = (time.perf_counter() - started) * 1e3
        code = status.get("StatusCode")
        if code != 0:
            raise ImageCommandFailed(image.name, shown, f"exited with status {code}", _output_tail(container))
        return elapsed
    finally:
        container.remove(force=True)


def time_startup(
    client: Any,
    images: Sequence[ImageInfo],
    command: Sequence[str] | None,
    *,
    runs: int,
    warmup: int = 1,
    timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Timing]:
    """Start-up samples per image: rounds of one run each, the order rotating; warm-up rounds dropped."""
    timings = [Timing() for _ in images]
    total = (warmup + runs) * len(images)
    done = 0
    for round_no in range(warmup + runs):
        for index in rotated(range(len(images)), round_no):
            elapsed = time_command(client, images[index], command, timeout)
            if round_no >= warmup:
                timings[index].samples.append(elapsed)
            done += 1
            if progress:
                progress(done, total)
    return timings


def _startup_json(timing: Timing) -> dict[str, Any]:
    samples = timing.samples
    quartiles = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else [0.0, 0.0, 0.0]
    low, high = timing.ci
    return {
        "median_ms": round(timing.median, 3),
        "ci_ms": [round(low, 3), round(high, 3)],
        "ci_level": round(median_ci_level(len(samples)), 4),
        "min_ms": round(min(samples), 3),
        "max_ms": round(max(samples), 3),
        "iqr_ms": round(quartiles[2] - quartiles[0], 3),
        "samples_ms": [round(s, 3) for s in samples],
    }


def _image_json(info: ImageInfo, timing: Timing | None, base: ImageInfo, base_timing: Timing | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": info.name,
        "id": info.id,
        "tags": list(info.tags),
        "bytes": info.bytes,
        "rootfs_layers": len(info.diff_ids),
        "empty_entries": info.empty_entries,
        "layers": [
            {"created_by": layer.created_by, "comment": layer.comment, "bytes": layer.bytes, "created": layer.created}
            for layer in info.layers
        ],
        "startup": _startup_json(timing) if timing else None,
        "vs_baseline": None,
    }
    if info is base:
        return entry
    shared, shared_bytes = info.shared_with(base)
    versus: dict[str, Any] = {
        "delta_bytes": info.bytes - base.bytes,
        "delta_bytes_pct": _pct(info.bytes, base.bytes),
        "shared_layers": shared,
        "shared_bytes": shared_bytes,
        "startup_ratio": None,
        "startup_delta_pct": None,
    }
    if timing and base_timing and base_timing.median:
        versus["startup_ratio"] = round(timing.median / base_timing.median, 3)
        versus["startup_delta_pct"] = _pct(timing.median, base_timing.median)
    entry["vs_baseline"] = versus
    return entry


def compare_images(
    images: Sequence[str],
    *,
    command: Sequence[str] | None = None,
    runs: int = 10,
    warmup: int = 1,
    timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
) -> ImagesReport:
    """Describe each image and time ``command`` in it (``runs`` 0: sizes only); the first is the
    baseline every other image is compared with. A JSON-able dict, docs/images-schema.json."""
    if not images:
        raise InvalidOptions("name at least one image to compare")
    if runs < 0 or warmup < 0:
        raise InvalidOptions(f"runs and warm-up runs cannot be negative (got {runs} and {warmup})")
    if timeout <= 0:
        raise InvalidOptions(f"the timeout must be positive (got {timeout:g} s)")
    client = connect()
    try:
        with _engine_errors():
            infos = [describe_image(client, ref) for ref in images]
            timings: Sequence[Timing | None] = [None] * len(infos)
            if runs:
                timings = time_startup(
                    client, infos, command, runs=runs, warmup=warmup, timeout=timeout, progress=progress
                )
            version = client.version()
    finally:
        client.close()
    return {
        "$schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "hatch-pyc", "version": _version()},
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "engine": {
            "host": os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
            "version": str(version.get("Version", "")),
            "api_version": str(version.get("ApiVersion", "")),
            "os": str(version.get("Os", "")),
            "arch": str(version.get("Arch", "")),
        },
        "command": list(command) if command else None,
        "measurement": {
            "runs": runs,
            "warmup": warmup if runs else 0,
            "interleaved": True,
            "network": "none",
            "timeout_s": timeout,
        },
        "images": [
            _image_json(info, timing, infos[0], timings[0]) for info, timing in zip(infos, timings, strict=True)
        ],
    }


def gate_images(
    report: ImagesReport, *, max_size_increase: float | None, max_startup_regression: float | None
) -> GateResult:
    """Check every image against the first (the baseline). Start-up is compared run by run (the images ran
    interleaved, so each run of an image has a run of the baseline beside it); a slow-down whose interval
    overlaps 1 is within the measured noise: never a failure."""
    checks: list[GateCheck] = []
    base = report["images"][0]
    for image in report["images"][1:]:
        if max_size_increase is not None:
            against = f"{base['name']}, the baseline"
            checks.append(size_check(image["name"], base["bytes"], image["bytes"], max_size_increase, against))
        if max_startup_regression is None:
            continue
        new, old = image["startup"], base["startup"]
        ratio = None
        if new and old and len(new.get("samples_ms", [])) == len(old.get("samples_ms", [])):
            ratio = Ratio.of(new["samples_ms"], old["samples_ms"])
        if ratio is None:
            checks.append(not_checked("startup", image["name"], max_startup_regression, "start-up not measured"))
            continue
        reference = f"{base['name']} (the baseline)"
        checks.append(
            slowdown_check("startup", image["name"], max_startup_regression, new=ratio, old=None, reference=reference)
        )
    return GateResult(checks)
