"""``hatch-pyc images``: real images of one app (sources + pycs, sourceless, slow to start) in a real engine.

The images are built once per module on the local base image, offline; every container runs with
``--network none``. Without an engine the docker tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker_support as ds
import pytest
from conftest import REPO, _require, run_cli, write_tree

from hatch_pyc._images import gate_images

SITE = "/usr/local/lib/python3.11/dist-packages"  # on sys.path of Debian's python3 (3.11 in bookworm)
SCHEMA = json.loads((REPO / "docs/images-schema.json").read_text(encoding="utf-8"))
IMPORT_APP = "python3 -c 'import app'"
TAGS = {
    "sources": "hatch-pyc-test/images:sources",
    "sourceless": "hatch-pyc-test/images:sourceless",
    "slow": "hatch-pyc-test/images:slow",
}
BIG_FUNCTION = '''
def f{i}(x, y={i}):
    """Function {i}: enough code and text that compiling it at every start costs something."""
    total = 0
    for k in range(x):
        total += k * y + {i}
    return {{"i": {i}, "total": total, "name": "f{i}"}}
'''
APP = {
    "app/__init__.py": "import os, time\nfrom app.big import f1\n"
    "time.sleep(float(os.environ.get('APP_DELAY', '0')))\nVALUE = f1(3)['total']\n",
    "app/big.py": "".join(BIG_FUNCTION.format(i=i) for i in range(800)),
}
DOCKERFILES = {
    # As pip installs from source: the sources, then compileall's __pycache__.
    "sources": f"FROM {ds.BASE_IMAGE}\nCOPY app/ {SITE}/app/\nRUN python3 -m compileall -q {SITE}/app\n"
    "ENV APP_VARIANT=sources\n",
    # Compiled by hatch-pyc on this machine for the image's CPython 3.11, sources removed.
    "sourceless": f"FROM {ds.BASE_IMAGE}\nCOPY sourceless/app/ {SITE}/app/\nENV APP_VARIANT=sourceless\n",
    # The sources image, one second slower to import app: every layer shared with it.
    "slow": f"FROM {TAGS['sources']}\nENV APP_DELAY=1\n",
}


@pytest.fixture(scope="module")
def images(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The three images, built once; removed afterwards."""
    _require("3.11")
    context = write_tree(tmp_path_factory.mktemp("images"), APP)
    shutil.copytree(context / "app", context / "sourceless/app")
    run_cli("compile", "--strip", "--python", "3.11", str(context / "sourceless/app"), check=True)
    try:
        for name, text in DOCKERFILES.items():  # in order: slow is built on sources
            (context / f"{name}.Dockerfile").write_text(text, encoding="utf-8")
            engine.images.build(
                path=str(context),
                dockerfile=f"{name}.Dockerfile",
                tag=TAGS[name],
                network_mode="none",
                rm=True,
                forcerm=True,
            )
        yield TAGS
    finally:
        for tag in reversed(TAGS.values()):
            try:
                engine.images.remove(tag, force=True)
            except Exception:  # noqa: BLE001 - a build that failed left nothing to remove
                pass


def inspect(tag: str) -> dict[str, Any]:
    """What the docker CLI says about the image: the figures the report must agree with."""
    proc = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)[0]
    return result


def containers(engine: Any) -> set[str]:
    return {container.id for container in engine.containers.list(all=True)}


@pytest.mark.docker
def test_images_compares_sizes_layers_and_startup(engine: Any, images: dict[str, str], tmp_path: Path) -> None:
    import jsonschema

    before = containers(engine)
    base, other = images["sources"], images["sourceless"]
    out, md = tmp_path / "images.json", tmp_path / "images.md"
    proc = run_cli(
        "images", base, other, "--command", IMPORT_APP, "--runs", "3", "--json", str(out), "--markdown", str(md)
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(report, SCHEMA)
    assert report["command"] == ["python3", "-c", "import app"]
    assert report["measurement"] == {"runs": 3, "warmup": 1, "interleaved": True, "network": "none", "timeout_s": 120.0}
    first, second = report["images"]
    for entry, tag in ((first, base), (second, other)):
        engine_view = inspect(tag)
        assert entry["name"] == tag and entry["id"] == engine_view["Id"] and tag in entry["tags"]
        assert entry["bytes"] == engine_view["Size"]
        assert entry["rootfs_layers"] == len(engine_view["RootFS"]["Layers"])
        assert sum(layer["bytes"] for layer in entry["layers"]) == entry["bytes"]
        assert entry["empty_entries"] >= 1  # ENV APP_VARIANT
        assert "ENV APP_VARIANT" not in json.dumps(entry["layers"])
        startup = entry["startup"]
        assert len(startup["samples_ms"]) == 3
        assert 0 < startup["min_ms"] <= startup["median_ms"] <= startup["max_ms"]
        assert startup["ci_ms"] == [startup["min_ms"], startup["max_ms"]]  # below 6 runs: the range
    # The base image's layer, then COPY (and compileall in the sources image).
    assert len(first["layers"]) == 3 and "compileall" in first["layers"][2]["created_by"]
    assert len(second["layers"]) == 2 and "COPY" in second["layers"][1]["created_by"]
    assert first["vs_baseline"] is None
    versus = second["vs_baseline"]
    base_layer = inspect(ds.BASE_IMAGE)["Size"]
    assert versus["shared_layers"] == 1 and versus["shared_bytes"] == base_layer
    assert versus["delta_bytes"] == second["bytes"] - first["bytes"] < 0  # sourceless is smaller
    assert versus["delta_bytes_pct"] < 0
    ratio = second["startup"]["median_ms"] / first["startup"]["median_ms"]
    assert versus["startup_ratio"] == pytest.approx(ratio, abs=1e-3)

    markdown = md.read_text(encoding="utf-8")
    assert markdown.startswith(f"### hatch-pyc images: `{base}` vs `{other}`")
    assert "| image | size | vs baseline | layers | shared with baseline |" in markdown
    assert "| image | median \\[95% CI\\] | min-max | IQR | vs baseline |" in markdown
    assert f"<details><summary>Layers of {other} (oldest first; not shown: 1 history entries of 0 B" in markdown
    assert "`python3 -c 'import app'`: 3 interleaved runs per image after 1 warm-up" in markdown
    assert "Start-up" in proc.stdout and f"Layers of {base}" in proc.stdout  # the terminal tables
    assert containers(engine) == before  # every container removed


@pytest.mark.docker
def test_size_threshold_against_the_first_image(images: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "sizes.json"
    small, big = images["sourceless"], images["sources"]
    proc = run_cli("images", small, big, "--sizes-only", "--json", str(out), "-q")
    assert proc.returncode == 0 and proc.stdout == ""
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [image["startup"] for image in report["images"]] == [None, None]
    assert report["measurement"]["runs"] == 0
    growth = report["images"][1]["vs_baseline"]["delta_bytes_pct"]
    assert growth > 0

    failed = run_cli("images", small, big, "--sizes-only", "--max-size-increase", f"{growth / 2:g}", "-q")
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith(f"FAIL: size {big}: ") and f"(+{growth}%, limit +{growth / 2:g}%)" in failed.stdout
    passed = run_cli("images", small, big, "--sizes-only", "--max-size-increase", f"{growth * 2:g}", "-q")
    assert passed.returncode == 0
    assert passed.stdout.splitlines() == [
        f"PASS: size {big}: {report['images'][0]['bytes']} ({small}, the baseline) -> {report['images'][1]['bytes']} "
        f"bytes (+{growth}%, limit +{growth * 2:g}%)",
        "gate: passed (1 check)",
    ]


@pytest.mark.docker
def test_startup_threshold_fails_a_clearly_slower_image(images: dict[str, str], tmp_path: Path) -> None:
    out, summary = tmp_path / "startup.json", tmp_path / "summary.md"
    proc = run_cli(
        "images",
        images["sources"],
        images["slow"],
        "--command",
        IMPORT_APP,
        "--runs",
        "3",
        "--max-startup-regression",
        "50",
        "--json",
        str(out),
        "-q",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(f"FAIL: start-up {images['slow']}: ")
    report = json.loads(out.read_text(encoding="utf-8"))
    fast, slow = report["images"]
    assert slow["startup"]["min_ms"] - fast["startup"]["max_ms"] > 500  # the one-second sleep
    assert slow["vs_baseline"]["startup_ratio"] > 1.5
    # Built on the sources image with ENV only: every layer, every byte shared.
    assert slow["vs_baseline"]["shared_layers"] == slow["rootfs_layers"] == fast["rootfs_layers"]
    assert slow["vs_baseline"]["shared_bytes"] == slow["bytes"] == fast["bytes"]
    assert "- FAIL: start-up" in summary.read_text(encoding="utf-8")  # the step summary got the Markdown


@pytest.mark.docker
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["hatch-pyc-test/images:missing"], 2, "image hatch-pyc-test/images:missing: not found in the engine at "),
        (
            ["{sources}", "{sourceless}", "--command", "python3 -c 'import missing_module'"],
            1,
            "`python3 -c 'import missing_module'` exited with status 1: "
            "ModuleNotFoundError: No module named 'missing_module'",
        ),
        (["{sources}", "--command", "no-such-program"], 1, "`no-such-program` did not start: "),
        (["{sources}", "--command", "sleep 30", "--timeout", "1"], 1, "`sleep 30` did not exit within 1 s"),
    ],
    ids=["unknown-image", "command-fails", "no-such-program", "timeout"],
)
def test_image_errors_are_one_line(
    engine: Any, images: dict[str, str], args: list[str], code: int, message: str
) -> None:
    before = containers(engine)
    proc = run_cli("images", *(arg.format(**images) for arg in args), "--runs", "2")
    assert proc.returncode == code
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("hatch-pyc: error: ") and message in proc.stderr
    assert containers(engine) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runs", "0"], "--runs must be at least 1 (got 0)"),
        (["--command", "python3 -c 'open"], '--command "python3 -c \'open": No closing quotation'),
    ],
    ids=["runs", "command-quoting"],
)
def test_bad_usage_exits_2(args: list[str], message: str) -> None:
    proc = run_cli("images", "some/image:1", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr


def test_no_engine_names_docker_host() -> None:
    if os.environ.get("CI"):
        import docker  # noqa: F401 - the test sessions install the extra: missing on CI is a failure
    else:
        pytest.importorskip("docker")
    proc = run_cli("images", "some/image:1", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("hatch-pyc: error: no Docker engine answers at unix:///nonexistent/docker.sock: ")
    assert proc.stderr.endswith("; start one or set DOCKER_HOST\n")


def test_missing_sdk_names_the_extra() -> None:
    code = "import sys; sys.modules['docker'] = None\nfrom hatch_pyc._cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, "images", "some/image:1"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == "hatch-pyc: error: comparing images needs the Docker SDK: pip install 'hatch-pyc[docker]'\n"


def _timing(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {"median_ms": ordered[len(ordered) // 2], "ci_ms": [ordered[0], ordered[-1]], "samples_ms": samples}


def _comparison(base_ms: list[float], other_ms: list[float] | None) -> dict[str, Any]:
    base, other = _timing(base_ms), _timing(other_ms) if other_ms else None
    change = round((other["median_ms"] / base["median_ms"] - 1) * 100, 2) if other else None
    return {
        "images": [
            {"name": "a", "bytes": 100, "startup": base, "vs_baseline": None},
            {
                "name": "b",
                "bytes": 100,
                "startup": other,
                "vs_baseline": {"delta_bytes_pct": 0.0, "startup_delta_pct": change},
            },
        ]
    }


def test_startup_gate_compares_run_by_run_and_does_not_fail_within_the_noise() -> None:
    """The images ran interleaved: each run of b is compared with the run of a beside it. b slower by a median
    14% of its runs, but one run faster than a's: the interval holds 1, a note. Every run slower: a failure."""
    noisy = gate_images(
        _comparison([100, 110, 140], [130, 100, 160]), max_size_increase=None, max_startup_regression=10
    )
    assert noisy.failures == [] and "within the measured noise" in noisy.notes[0]
    assert noisy.checks[0].verdict == "within-noise" and noisy.checks[0].change_pct == 14.29
    clear = gate_images(
        _comparison([100, 110, 120], [150, 160, 170]), max_size_increase=None, max_startup_regression=10
    )
    assert clear.failures == [
        "FAIL: start-up b: b / a (the baseline), round by round: 1.455 [1.417-1.500, 75% over 3 rounds] "
        "(+45.45%, limit +10%)"
    ]
    unmeasured = gate_images(_comparison([100], None), max_size_increase=0, max_startup_regression=10)
    assert unmeasured.failures == [] and "not measured" in unmeasured.notes[0]
