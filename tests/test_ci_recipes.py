"""The CI recipes of docs/ci.md, run as written (issue 15): every shell command of the GitHub Actions workflow
and of the GitLab CI job, on a real project, with only the CI services stood in for (the artifact store, the
package index)."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, write_tree

from hatch_pyc import find_interpreter

pytestmark = [pytest.mark.slow, pytest.mark.once]

APP = {
    "pyproject.toml": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
    '[project]\nname = "myapp"\nversion = "1.0"\n',
    "myapp/__init__.py": "from myapp import data, models, views\n",
    "myapp/models.py": "import dataclasses\n\n@dataclasses.dataclass\nclass Item:\n    name: str\n    count: int = 0\n",
    "myapp/views.py": "import json\n\ndef show(item):\n    return json.dumps(item.__dict__)\n",
    # enough code that the few lines SLOWER adds stay well within the 5% size limit
    "myapp/data.py": "".join(f"def unit_{i}(x):\n    return x * {i} + {i * i}\n\n" for i in range(150)),
}
SLOWER = "import time as _t\n_s = _t.perf_counter()\nwhile _t.perf_counter() - _s < 0.05:\n    pass\n"


def _recipes() -> list[Any]:
    text = (REPO / "docs/ci.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]
    return [yaml.safe_load(block) for block in blocks]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package index the recipes' pip commands see: hatch-pyc built from this checkout, and what it and
    the project's build need (from PyPI, once)."""
    house = tmp_path_factory.mktemp("wheelhouse")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(house), str(REPO)], check=True)
    needs = ["hatchling", "installer", "packaging", "pathspec", "rich", "pip"]
    subprocess.run([*pip, "download", "-d", str(house), *needs], check=True)
    # the stubs extra: mypy's wheels are compiled, and the recipes' runner is CPython 3.12
    binary = ["--only-binary", ":all:", "--python-version", "3.12"]
    subprocess.run([*pip, "download", *binary, "-d", str(house), "mypy"], check=True)
    return house


@pytest.fixture
def runner(tmp_path: Path, wheelhouse: Path) -> dict[str, str]:
    """A fresh CPython 3.12 first on PATH (setup-python), pip reading only the wheelhouse."""
    python = tmp_path / "runner"
    subprocess.run([find_interpreter("3.12").executable, "-m", "venv", str(python)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "GITHUB_"))}
    env.update(
        PATH=f"{python / 'bin'}{os.pathsep}{env['PATH']}",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        CI="true",
    )
    return env


def _shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _github_run(workflow: Any, work: Path, env: dict[str, str], store: Path) -> subprocess.CompletedProcess[str]:
    """One run of the workflow's job in ``work`` (a fresh checkout): ``run`` steps as GitHub runs them
    (``bash -e``), ``uses`` steps done by hand: the artifact download copies what the store holds."""
    (step_list,) = [job["steps"] for job in workflow["jobs"].values()]
    failed = None
    for step in step_list:
        action = step.get("uses", "")
        if action.startswith("dawidd6/action-download-artifact"):
            if (store / "report.json").exists():
                shutil.copytree(store, work / step["with"]["path"])
        elif action.startswith("actions/upload-artifact"):
            for path in work.glob(step["with"]["path"]):
                shutil.copy(path, store / path.name)
        elif "run" in step and failed is None:
            proc = _shell(step["run"], work, env)
            if proc.returncode != 0:
                failed = proc
            last = proc
    return failed or last


def _checkout(where: Path, slower: bool = False) -> Path:
    files = dict(APP)
    if slower:
        files["myapp/views.py"] += SLOWER
    return write_tree(where, files)


def test_the_github_actions_workflow_gates_on_the_kept_baseline(tmp_path: Path, runner: dict[str, str]) -> None:
    workflow = _recipes()[0]
    store = tmp_path / "artifacts"
    store.mkdir()
    first = _github_run(workflow, _checkout(tmp_path / "run1"), runner, store)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(p.name for p in store.iterdir()) == ["report.html", "report.json", "report.md"]
    assert "gate:" not in first.stdout  # no baseline yet: reported and kept, not gated

    second = _github_run(workflow, _checkout(tmp_path / "run2"), runner, store)
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((store / "report.json").read_text())
    assert report["gate"]["passed"] and {c["kind"] for c in report["gate"]["checks"]} == {"size", "import"}

    third = _github_run(workflow, _checkout(tmp_path / "run3", slower=True), runner, store)
    assert third.returncode == 1, third.stdout + third.stderr
    failed = [line for line in third.stdout.splitlines() if line.startswith("FAIL: ")]
    # The slower module fails the import gate, and only that gate (its few lines stay within the size limit).
    assert failed and all(line.startswith("FAIL: import time ") and "`myapp`" in line for line in failed), failed
    assert not json.loads((store / "report.json").read_text())["gate"]["passed"]  # kept even when it failed


class _Artifacts(http.server.BaseHTTPRequestHandler):
    """GitLab's ``jobs/artifacts/<ref>/download?job=`` on loopback: the zip of what the store holds, else 404."""

    store: Path
    token: str

    def do_GET(self) -> None:
        wanted = "/api/v4/projects/7/jobs/artifacts/main/download?job=pyc-report"
        files = sorted(self.store.iterdir())
        if self.path != wanted or self.headers.get("JOB-TOKEN") != self.token or not files:
            self.send_error(404)
            return
        data = io.BytesIO()
        with zipfile.ZipFile(data, "w") as archive:
            for path in files:
                archive.write(path, path.name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data.getvalue())))
        self.end_headers()
        self.wfile.write(data.getvalue())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gitlab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "gitlab-artifacts"
    store.mkdir()
    handler = type("Handler", (_Artifacts,), {"store": store, "token": "t0ken"})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v4", store
    finally:
        server.shutdown()
        server.server_close()


def test_the_gitlab_ci_job_gates_on_the_kept_baseline(
    tmp_path: Path, runner: dict[str, str], gitlab: tuple[str, Path]
) -> None:
    job = _recipes()[1]["pyc-report"]
    api, store = gitlab
    env = {**runner, "CI_API_V4_URL": api, "CI_PROJECT_ID": "7", "CI_JOB_TOKEN": "t0ken"}
    script = "\n".join(job["script"])  # one shell, as the runner runs a job's script

    def run(work: Path) -> subprocess.CompletedProcess[str]:
        proc = _shell(script, work, env)
        for name in job["artifacts"]["paths"]:  # artifacts: when: always
            if (work / name).exists():
                shutil.copy(work / name, store / name)
        return proc

    first = run(_checkout(tmp_path / "run1"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no baseline yet" in first.stdout
    second = run(_checkout(tmp_path / "run2"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "no baseline yet" not in second.stdout
    # The import gate compared with the kept baseline. Both runs are one code, so it passes: PASS, or NOISE when a
    # loaded machine made one run slower within what each run measured of its own noise (still exit 0).
    gated = [line for line in second.stdout.splitlines() if line.startswith(("PASS: ", "NOISE: "))]
    assert any(" import time source `myapp`" in line and "(baseline)" in line for line in gated), second.stdout
    assert json.loads((store / "report.json").read_text())["gate"]["passed"]  # the slower run: the workflow's test


def _wheels(where: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(where.glob("*.whl"))}


def test_the_compile_cache_recipes_serve_a_second_job_from_the_cache(
    tmp_path: Path, runner: dict[str, str], wheelhouse: Path
) -> None:
    """Both cache recipes, each run twice on fresh checkouts with the cache kept in between (GitHub: the home
    directory actions/cache restores; GitLab: the project's cache path): the second job compiles nothing and
    writes the first job's wheels byte for byte."""
    github, gitlab = _recipes()[2], _recipes()[3]["sourceless-wheels"]
    (steps,) = [job["steps"] for job in github["jobs"].values()]
    assert any(
        s.get("uses", "").startswith("actions/cache") and s["with"]["path"] == "~/.cache/hatch-pyc" for s in steps
    )
    home = tmp_path / "home"  # what actions/cache saves and restores
    home.mkdir()
    env = {**runner, "HOME": str(home), "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("HATCH_PYC_CACHE_DIR", None)
    env.pop("XDG_CACHE_HOME", None)
    made = []
    for run in ("github-1", "github-2"):
        work = _checkout_with_a_dependency(tmp_path / run)
        for step in steps:
            if "run" in step:
                proc = _shell(step["run"], work, env)
                assert proc.returncode == 0, proc.stdout + proc.stderr
        made.append(_wheels(work / "sourceless"))
        summary = [line for line in proc.stderr.splitlines() if "from the compile cache" in line]
        assert summary, proc.stderr
        if run == "github-2":
            assert all(re.search(r"(\d+) of \1 from the compile cache", line) for line in summary), summary
        else:
            assert all(" 0 of " in line for line in summary), summary
    assert made[0] == made[1]
    assert sorted(made[0]) == [
        "myapp-1.0-cp312-none-any.whl",
        f"packaging-{_version(wheelhouse, 'packaging')}-cp312-none-any.whl",
    ]
    assert (home / ".cache" / "hatch-pyc" / "code").is_dir()

    cache_dir = tmp_path / "gitlab-cache"  # the project's .cache/hatch-pyc, restored between jobs
    gitlab_made = []
    for run in ("gitlab-1", "gitlab-2"):
        work = _checkout_with_a_dependency(tmp_path / run)
        if cache_dir.exists():
            shutil.copytree(cache_dir, work / ".cache" / "hatch-pyc")
            (work / ".cache" / "hatch-pyc").chmod(0o775)  # restored group-writable: the recipe makes it private
        job_env = {**env, "CI_PROJECT_DIR": str(work)}
        job_env["HATCH_PYC_CACHE_DIR"] = gitlab["variables"]["HATCH_PYC_CACHE_DIR"].replace(
            "$CI_PROJECT_DIR", str(work)
        )
        for line in gitlab["script"]:
            proc = _shell(line, work, job_env)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "not used" not in proc.stderr
        if run == "gitlab-2":
            assert re.search(r"(\d+) of \1 from the compile cache", proc.stderr), proc.stderr
        shutil.rmtree(cache_dir, ignore_errors=True)
        shutil.copytree(work / ".cache" / "hatch-pyc", cache_dir)
        gitlab_made.append(_wheels(work / "sourceless"))
    assert gitlab_made[0] == gitlab_made[1] == made[0]


def _version(wheelhouse: Path, name: str) -> str:
    (wheel,) = wheelhouse.glob(f"{name}-*.whl")
    return wheel.name.split("-")[1]


def _checkout_with_a_dependency(where: Path) -> Path:
    """The app, depending on ``packaging`` (in the wheelhouse)."""
    work = _checkout(where)
    pyproject = work / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'dependencies = ["packaging"]\n')
    return work
