"""``hatch-pyc report`` on real packages from PyPI: sizes that add up, schema, renderings, CI gates."""

from __future__ import annotations

import copy
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, run_cli, write_tree

from hatch_pyc import Interpreter, PycOptions, compile_tree, find_interpreter
from hatch_pyc._measure import median_ci, median_ci_level
from hatch_pyc._report import build_report, compare

SCHEMA = json.loads((REPO / "docs/report-schema.json").read_text())
# Rounds the timing tests measure: enough that a 95% interval of the median is narrower than the
# samples' range (at 5 rounds min..max is the only interval that reaches 95%, whatever the code does).
ROUNDS = 12


def _disk_bytes(root: Path) -> tuple[int, int]:
    """Independent count: (files, bytes), hard links once, nothing skipped."""
    seen, files, total = set(), 0, 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                files += 1
                total += st.st_size
    return files, total


@pytest.fixture(scope="module")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site-packages with real PyPI packages installed by pip, without pycs."""
    site = tmp_path_factory.mktemp("real") / "lib" / "python3.12" / "site-packages"
    interp = find_interpreter("3.12")
    subprocess.run(
        [
            interp.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",
            "--no-deps",
            "--target",
            str(site),
            "idna==3.10",
            "six==1.17.0",
            "attrs==25.4.0",
        ],
        check=True,
    )
    return site


def _order_statistic_rank(n: int, level: float = 0.95) -> int:
    """The largest r for which [x(r), x(n+1-r)] (1-based order statistics) holds the median with
    probability at least ``level``: 1 - 2 P(Binomial(n, 1/2) < r), worked out exactly."""
    rank = 0
    while 1 - 2 * sum(math.comb(n, i) for i in range(rank + 1)) / 2**n >= level:
        rank += 1
    return rank


def test_the_median_interval_is_exact_for_every_sample_count() -> None:
    """The narrowest order-statistic interval with 95% coverage, worked out from the binomial distribution for
    each n; below 6 samples none reaches 95%, the range is given and ``ci_level`` says how sure it is."""
    for n in range(1, 61):
        samples = [float(i) for i in range(n, 0, -1)]  # unsorted on purpose
        rank = max(1, _order_statistic_rank(n))
        assert median_ci(samples) == (float(rank), float(n + 1 - rank)), n
        coverage = 1 - 2 * sum(math.comb(n, i) for i in range(rank)) / 2**n
        assert median_ci_level(n) == pytest.approx(coverage)
        assert (median_ci_level(n) >= 0.95) == (n >= 6), n
    assert median_ci_level(5) == pytest.approx(0.9375)
    assert math.isnan(median_ci([])[0]) and median_ci_level(0) == 0.0


def assert_median_interval(timing: dict[str, Any]) -> None:
    """``ci_ms`` is the exact 95% order-statistic interval of ``samples_ms``: it leaves samples out at both ends."""
    samples = sorted(timing["samples_ms"])
    rank = _order_statistic_rank(len(samples))
    assert rank >= 2, f"{len(samples)} samples: a 95% interval would be min..max"
    assert timing["ci_ms"] == [samples[rank - 1], samples[-rank]], (timing["ci_ms"], samples)
    assert timing["ci_ms"][0] <= timing["median_ms"] <= timing["ci_ms"][1]


def validate_schema(report: dict[str, object]) -> None:
    import jsonschema

    jsonschema.validate(report, SCHEMA)


def test_sizes_add_up_to_what_is_on_disk(real_site: Path, tmp_path: Path) -> None:
    report = build_report(str(real_site), levels=(0, 2), measure_time=False)
    validate_schema(report)
    assert report["python"]["version"].startswith("3.12.")  # implied by .../python3.12/site-packages
    variants = {v["name"]: v for v in report["variants"]}
    assert list(variants) == ["source", "cache-O0", "cache-O2", "sourceless-O0", "sourceless-O2"]

    assert (variants["source"]["size"]["files"], variants["source"]["size"]["bytes"]) == _disk_bytes(real_site)
    for level in (0, 2):
        copy_dir = tmp_path / f"s{level}"
        shutil.copytree(real_site, copy_dir)
        compile_tree([copy_dir], PycOptions(levels=(level,), strip=True), python="3.12")
        size = variants[f"sourceless-O{level}"]["size"]
        assert (size["files"], size["bytes"]) == _disk_bytes(copy_dir)
        assert size["bytes"] < variants[f"cache-O{level}"]["size"]["bytes"]
        assert size["py_bytes"] == 0 and size["pyc_bytes"] > 0
    assert variants["sourceless-O2"]["size"]["bytes"] < variants["sourceless-O0"]["size"]["bytes"]
    assert report["docstrings"]["bytes"] > 0
    assert set(variants["source"]["size"]["by_package"]) >= {"idna", "six.py", "attrs"}
    assert report["modules"] == ["attr", "attrs", "idna", "six"]


@pytest.mark.once  # the figures are measured under the target; the rendering is the same under every runner
def test_import_times_and_renderings(real_site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    summary = out / "summary.md"
    summary.write_text("earlier step\n")
    proc = run_cli(
        "report",
        str(real_site),
        "--import",
        "idna",
        "--import",
        "attrs",
        "-O",
        "0",
        "--repeat",
        str(ROUNDS),
        "--json",
        str(out / "r.json"),
        "--markdown",
        str(out / "r.md"),
        "--html",
        str(out / "r.html"),
        env={"GITHUB_STEP_SUMMARY": str(summary), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "r.json").read_text())
    validate_schema(report)
    assert report["measurement"]["repeat"] == ROUNDS
    assert report["measurement"]["startup_ms"]["median_ms"] > 0
    assert_median_interval(report["measurement"]["startup_ms"])
    for variant in report["variants"]:
        for module in ("idna", "attrs"):
            timing = variant["imports"][module]
            assert len(timing["samples_ms"]) == ROUNDS
            assert_median_interval(timing)
            assert timing["slowest"], "-X importtime rows"
    source = report["variants"][0]["imports"]["attrs"]["median_ms"]
    cached = report["variants"][1]["imports"]["attrs"]["median_ms"]
    assert cached < source  # compiling attrs on every import is slower than loading pycs
    assert "Import time: median [95% CI]" in proc.stdout

    import markdown

    md_text = (out / "r.md").read_text()
    rendered = markdown.markdown(md_text, extensions=["tables"])
    assert rendered.count("<table>") >= 2 and "<td>sourceless-O0</td>" in rendered
    assert summary.read_text() == "earlier step\n" + md_text

    page = (out / "r.html").read_text()
    assert "<script" not in page and page.count("<svg") == 5  # three sizes, two modules
    # Each chart shows what its title says: the on-disk chart plots allocated bytes, the import bars the
    # medians with their intervals as whiskers, as in the JSON.
    charts = {
        html.unescape(m.group(1)): m.group(2) for m in re.finditer(r'aria-label="([^"]+)"(.*?)</svg>', page, re.S)
    }
    assert set(charts) == {
        "Size: the files' bytes",
        "Size: on disk (allocated blocks)",
        "Size: zipped (as in a wheel)",
        "import idna: median time",
        "import attrs: median time",
    }
    for title, key in (("Size: the files' bytes", "bytes"), ("Size: on disk (allocated blocks)", "disk_bytes")):
        drawn = [int(v) for v in re.findall(r'class="bar" data-value="(\d+)"', charts[title])]
        assert drawn == [v["size"][key] for v in report["variants"]], title
    for module in ("idna", "attrs"):
        chart = charts[f"import {module}: median time"]
        drawn = [float(v) for v in re.findall(r'class="bar" data-value="([\d.]+)"', chart)]
        assert drawn == [v["imports"][module]["median_ms"] for v in report["variants"]]
        whiskers = [[float(a), float(b)] for a, b in re.findall(r'data-low="([\d.]+)" data-high="([\d.]+)"', chart)]
        assert whiskers == [v["imports"][module]["ci_ms"] for v in report["variants"]]
        assert chart.count("x [") == len(report["variants"]) - 1  # a speed-up with its interval, but for source
        speed_ups = [v["imports"][module] for v in report["variants"][1:]]
        assert all(t["speedup_ci"][0] <= t["speedup_vs_source"] <= t["speedup_ci"][1] for t in speed_ups)
    assert page.count(f"Bars: median of {ROUNDS} interleaved rounds; whiskers: its 96% confidence interval") == 2
    _assert_charts_drawn(out / "r.html", tmp_path)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _assert_charts_drawn(page: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required on CI to check the HTML report renders")
        pytest.skip("chromium not installed")
    shot = tmp_path / "page.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,2600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    counts = {rgb: n for n, rgb in colours}
    # Bars are drawn in these three colours; each must cover a real area of the page.
    for rgb in ((0x9A, 0xA5, 0xB1), (0x3B, 0x82, 0xF6), (0x10, 0xB9, 0x81)):
        assert counts.get(rgb, 0) > 2000, f"no bars of colour {rgb} in the screenshot"


def _scaled(report: dict[str, Any], factors: dict[str, float]) -> dict[str, Any]:
    """``report`` with the samples of some variants (and ``startup``) multiplied: another run's figures."""
    scaled = copy.deepcopy(report)
    for variant in scaled["variants"]:
        for timing in variant["imports"].values():
            timing["samples_ms"] = [x * factors.get(variant["name"], 1.0) for x in timing["samples_ms"]]
    startup = scaled["measurement"]["startup_ms"]
    startup["samples_ms"] = [x * factors.get("startup", 1.0) for x in startup["samples_ms"]]
    return scaled


def test_gates_fail_and_pass_as_they_should(real_site: Path) -> None:
    report = build_report(str(real_site), levels=(0,), modules=("idna",), repeat=ROUNDS)
    for variant in report["variants"]:
        assert_median_interval(variant["imports"]["idna"])
    same = compare(report, report, max_size_increase=1, max_import_regression=5)
    assert same.failures == [] and same.passed
    assert [(c.kind, c.subject, c.verdict, c.change_pct) for c in same.checks if c.kind == "import"] == [
        ("import", f"{name} `idna`", "pass", 0.0) for name in ("source", "cache-O0", "sourceless-O0")
    ]

    smaller = copy.deepcopy(report)
    for variant in smaller["variants"]:
        variant["size"]["bytes"] = int(variant["size"]["bytes"] / 1.2)
    grown = compare(report, smaller, max_size_increase=10, max_import_regression=None)
    assert any(f.startswith("FAIL: size source bytes: ") and "limit +10%" in f for f in grown.failures)

    # A machine 1.6 times slower for the whole run (every variant and the interpreter's start-up alike) is
    # not a regression: each figure is compared as a ratio measured in the same rounds.
    slower_machine = _scaled(report, {"source": 1.6, "cache-O0": 1.6, "sourceless-O0": 1.6, "startup": 1.6})
    assert compare(slower_machine, report, max_size_increase=None, max_import_regression=5).failures == []

    # The baseline's sourceless variant was 3 times faster against the sources beside it: now it is not.
    faster = _scaled(report, {"sourceless-O0": 1 / 3})
    slow = compare(report, faster, max_size_increase=None, max_import_regression=20)
    (failure,) = slow.failures
    assert failure.startswith("FAIL: import time sourceless-O0 `idna`: sourceless-O0 / source, round by round: ")
    assert failure.endswith("(+200.0%, limit +20%)")
    # Every module 3 times slower to import, against the interpreter's start-up: the sources-only variant
    # fails (the compiled variants, slower alike, keep their ratio to it).
    heavier = compare(
        _scaled(report, {"source": 3, "cache-O0": 3, "sourceless-O0": 3}),
        report,
        max_size_increase=None,
        max_import_regression=20,
    )
    assert [f.split(":")[1] for f in heavier.failures] == [" import time source `idna`"]


def _timed(source: list[float], sourceless: list[float], startup: list[float]) -> dict[str, Any]:
    def timing(samples: list[float]) -> dict[str, Any]:
        return {"median_ms": sorted(samples)[len(samples) // 2], "samples_ms": samples}

    return {
        "measurement": {"startup_ms": timing(startup)},
        "variants": [
            {"name": name, "size": {"bytes": 1, "wheel_bytes": 1}, "imports": {"m": timing(samples)}}
            for name, samples in (("source", source), ("sourceless-O0", sourceless))
        ],
    }


def test_a_slowdown_whose_rounds_disagree_is_within_the_noise_and_does_not_fail() -> None:
    """Round by round, sourceless / source was 0.5 in the baseline; now a median 0.6 (+20%), but two of the six
    rounds still say 0.5 or less: the intervals overlap, a note. When every round says 0.6, a failure."""
    baseline = _timed([10] * 6, [5] * 6, [20] * 6)
    mixed = _timed([10] * 6, [4, 5, 6, 6, 6, 7], [20] * 6)
    noisy = compare(mixed, baseline, max_size_increase=None, max_import_regression=10)
    check = next(c for c in noisy.checks if c.subject == "sourceless-O0 `m`")
    assert (check.verdict, check.change_pct, noisy.failures) == ("within-noise", 20.0, [])
    assert check.line in noisy.notes and "within the measured noise, not failing" in check.line
    clear = compare(_timed([10] * 6, [6] * 6, [20] * 6), baseline, max_size_increase=None, max_import_regression=10)
    assert clear.failures == [
        "FAIL: import time sourceless-O0 `m`: sourceless-O0 / source, round by round: 0.500 [0.500-0.500, 97% over "
        "6 rounds] (baseline) -> 0.600 [0.600-0.600, 97% over 6 rounds] (+20.0%, limit +10%)"
    ]
    assert clear.lines()[-1] == "gate: 1 of 2 checks failed"
    # A baseline written before the samples were kept, or with other rounds: not compared, and said so.
    del baseline["variants"][1]["imports"]["m"]["samples_ms"]
    unknown = compare(_timed([10] * 6, [6] * 6, [20] * 6), baseline, max_size_increase=None, max_import_regression=10)
    assert unknown.failures == []
    assert "SKIP: import time sourceless-O0 `m`: the baseline has no sourceless-O0 / source samples" in unknown.notes


def test_cli_gate_exit_codes(real_site: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert run_cli("report", str(real_site), "--sizes-only", "-q", "--json", str(base)).returncode == 0
    data = json.loads(base.read_text())
    for variant in data["variants"]:
        variant["size"]["wheel_bytes"] = variant["size"]["wheel_bytes"] // 2
    base.write_text(json.dumps(data))
    proc = run_cli("report", str(real_site), "--sizes-only", "--baseline", str(base), "--max-size-increase", "5")
    assert proc.returncode == 1
    assert "FAIL: size source wheel_bytes:" in proc.stdout
    ok = run_cli("report", str(real_site), "--sizes-only", "--baseline", str(base), "--max-size-increase", "500")
    assert ok.returncode == 0 and "PASS" in ok.stdout
    # Without a baseline the thresholds apply against the sources-only variant.
    within = run_cli("report", str(real_site), "--sizes-only", "-O", "2", "--max-size-increase", "200")
    assert within.returncode == 0
    cache = run_cli("report", str(real_site), "--sizes-only", "--max-size-increase", "10")
    assert cache.returncode == 1 and "FAIL: size cache-O0 bytes:" in cache.stdout


def test_a_module_that_fails_sourceless_is_named(tmp_path: Path, target: Interpreter) -> None:
    tree = write_tree(
        tmp_path / "t",
        {
            "fine/__init__.py": "X = 1\n",
            "needs_source/__init__.py": "import inspect\nSRC = inspect.getsource(inspect.currentframe())\n",
        },
    )
    report = build_report(str(tree), python=target.executable, levels=(0,), repeat=ROUNDS)
    validate_schema(report)
    variants = {v["name"]: v for v in report["variants"]}
    assert_median_interval(variants["sourceless-O0"]["imports"]["fine"])
    assert "median_ms" in variants["source"]["imports"]["needs_source"]
    assert "median_ms" in variants["cache-O0"]["imports"]["needs_source"]
    failed = variants["sourceless-O0"]["imports"]["needs_source"]
    assert list(failed) == ["error"]
    assert failed["error"] in ("OSError: could not get source code", "OSError: source code not available")
    assert "median_ms" in variants["sourceless-O0"]["imports"]["fine"]
    from hatch_pyc._render import render_markdown

    assert f"FAILED: {failed['error']}" in render_markdown(report)


def test_report_on_a_wheel_and_a_project(tmp_path: Path) -> None:
    project = write_tree(
        tmp_path / "proj",
        {
            "pyproject.toml": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
            '[project]\nname = "tiny"\nversion = "1"\n',
            "tiny/__init__.py": '"""Tiny."""\nVALUE = 1\n',
        },
    )
    report = build_report(str(project), levels=(0,), measure_time=False)
    assert report["target"]["kind"] == "project" and report["modules"] == ["tiny"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"), str(project)], check=True
    )
    (wheel,) = (tmp_path / "w").glob("*.whl")
    from_wheel = build_report(str(wheel), levels=(0,), measure_time=False)
    assert from_wheel["target"]["kind"] == "wheel"
    assert from_wheel["variants"][0]["size"]["files"] == report["variants"][0]["size"]["files"]


def _sizes_baseline(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    tree = write_tree(tmp_path / "tree", {"okpkg/__init__.py": "X = 1\n", "okpkg/m.py": "def f():\n    return 1\n"})
    run_cli("report", str(tree), "--sizes-only", "-q", "--json", str(tmp_path / "base.json"), check=True)
    return tree, json.loads((tmp_path / "base.json").read_text())


@pytest.mark.parametrize("value", ["Infinity", "true", "-5", "1.5", '"12"', "1" + "0" * 400, "[" * 1100 + "]" * 1100])
def test_a_crafted_baseline_is_refused_not_passed(tmp_path: Path, value: str) -> None:
    """Found by an adversarial review: sizes of Infinity (which Python's JSON reader takes), true or a negative
    number made every size check pass or be skipped, and the gate said "passed"."""
    tree, report = _sizes_baseline(tmp_path)
    text = json.dumps(report).replace('"bytes": ', '"bytes": X', 1)
    text = re.sub(r'"bytes": X\d+', f'"bytes": {value}', text)
    (tmp_path / "crafted.json").write_text(text)
    proc = run_cli(
        "report",
        str(tree),
        "--sizes-only",
        "-q",
        "--baseline",
        str(tmp_path / "crafted.json"),
        "--max-size-increase",
        "5",
    )
    assert proc.returncode == 2, proc.stderr
    assert "crafted.json" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_baseline_naming_a_variant_twice_is_refused(tmp_path: Path) -> None:
    """Found by an adversarial review: the gate compared with the last of two variants of one name."""
    tree, report = _sizes_baseline(tmp_path)
    report["variants"].append(dict(report["variants"][0]))
    (tmp_path / "twice.json").write_text(json.dumps(report))
    proc = run_cli(
        "report", str(tree), "--sizes-only", "-q", "--baseline", str(tmp_path / "twice.json"),
        "--max-size-increase", "5",
    )  # fmt: skip
    assert proc.returncode == 2 and "twice" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_a_gate_that_could_check_nothing_fails(tmp_path: Path) -> None:
    """A baseline whose every size is 0 (nothing to compare with): no check can be made, and the gate must not say
    it passed."""
    tree, report = _sizes_baseline(tmp_path)
    for variant in report["variants"]:
        variant["size"]["bytes"] = variant["size"]["wheel_bytes"] = 0
    (tmp_path / "zero.json").write_text(json.dumps(report))
    proc = run_cli(
        "report", str(tree), "--sizes-only", "--baseline", str(tmp_path / "zero.json"), "--max-size-increase", "5"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gate: failed: none of the" in proc.stdout + proc.stderr


def test_a_baseline_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path: Path) -> None:
    tree, _ = _sizes_baseline(tmp_path)
    os.mkfifo(tmp_path / "fifo.json")
    for baseline in (tmp_path / "fifo.json", Path("/dev/zero")):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hatch_pyc",
                "report",
                str(tree),
                "--sizes-only",
                "-q",
                "--baseline",
                str(baseline),
                "--max-size-increase",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr


def test_markdown_shows_a_hostile_name_as_text(tmp_path: Path) -> None:
    """Found by an adversarial review: a target named with newlines and HTML forged a line of the step summary."""
    name = "t5\n\n**gate: PASS (all thresholds met)**\n\n<img src=x onerror=alert(1)>"
    tree = write_tree(tmp_path / name, {"okpkg/__init__.py": "X = 1\n"})
    run_cli("report", str(tree), "--sizes-only", "-q", "--markdown", str(tmp_path / "r.md"), check=True)
    text = (tmp_path / "r.md").read_text()
    assert re.search(r"(?<!\\)<img", text) is None and re.search(r"(?<!\\)\*\*gate", text) is None, text
    assert not any(line.startswith(("**gate", "<img")) for line in text.splitlines()), text
    assert text.splitlines()[0].startswith("### hatch-pyc report: t5\\\\x0a\\\\x0a\\*\\*gate: PASS"), text.splitlines()[
        0
    ]


def test_terminal_report_shows_a_hostile_name_as_it_is(tmp_path: Path) -> None:
    """Found by an adversarial review: the terminal header handed the target's name to rich as markup (a directory
    named ``[bold red]R[blink]`` was styled, and its brackets were lost) and a line break in it added a line of its
    own to the output, where a CI log reads "gate: passed"."""
    name = "[bold red]R[blink]\ngate: passed (9 checks)\x1b[2K"
    tree = write_tree(tmp_path / name, {"okpkg/__init__.py": "X = 1\n"})
    proc = run_cli("report", str(tree), "--sizes-only", env={"COLUMNS": "400", "TERM": "xterm"}, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(
        "hatch-pyc report: [bold red]R[blink]\\x0agate: passed (9 checks)\\x1b[2K (tree) for "
    ), lines[0]
    assert not any(line.startswith("gate") for line in lines), proc.stdout
    assert "\x1b" not in proc.stdout, proc.stdout
    # Nor where the line is folded: the title is one line on an 80-column terminal (the name's " gate: passed" fell
    # at the start of the second line), and an :emoji: code is shown as typed.
    long = "p" * 61 + " gate: passed (4 checks) :white_check_mark:"
    tree = write_tree(tmp_path / long, {"okpkg/__init__.py": "X = 1\n"})
    for env in ({"COLUMNS": "80"}, {"FORCE_COLOR": "1"}):
        proc = run_cli("report", str(tree), "--sizes-only", env=env, check=True)
        assert not any(re.sub(r"\x1b\[[0-9;]*m", "", line).startswith("gate") for line in proc.stdout.splitlines())
        assert ":white_check_mark:" in proc.stdout and "\u2705" not in proc.stdout, proc.stdout


def test_markdown_shows_code_spans_headers_and_line_starts_as_text() -> None:
    """Found by an adversarial review (with GitHub's own parser): a cell that began and ended with a backtick was
    taken for a code span as it was (`x` <img> `y` is two spans with HTML between them), table headers were not
    escaped at all, and a name at the start of a line began a list ("- gate: passed"), a numbered list or a code
    block."""
    import markdown

    from hatch_pyc._render import _md_table, md_text

    hostile = "`x` [click me](https://evil.example) <img src=x onerror=alert(1)> **gate: passed** `y`"
    table = _md_table(["variant", f"import {hostile}"], [[hostile, "`plain code`"]])
    rendered = markdown.markdown(table, extensions=["tables"])
    assert "<img" not in rendered and "<a " not in rendered and "<strong>" not in rendered, rendered
    assert rendered.count("<code>plain code</code>") == 1, rendered
    for start, block in (("- gate: passed (8 checks)", "<li>"), ("1. gate", "<ol>"), ("2) x", "<ol>")):
        rendered = markdown.markdown(md_text(start) + " (tree) for CPython 3.12")
        assert block not in rendered and html.unescape(re.sub("<[^>]+>", "", rendered)).startswith(start), rendered
    rendered = markdown.markdown(md_text("    indented") + "\n")
    assert "<pre>" not in rendered and html.unescape(re.sub("<[^>]+>", "", rendered)) == "    indented", rendered


def test_a_module_name_that_is_not_one_is_refused(tmp_path: Path) -> None:
    """``--import`` takes what ``import`` takes; a name with a line break, HTML or a table's ``|`` is refused."""
    tree = write_tree(tmp_path / "t", {"okpkg/__init__.py": "X = 1\n"})
    for name in ("a\n### forged heading", "<img src=x>|**forged**", "okpkg.", "1pkg", ""):
        proc = run_cli("report", str(tree), "--import", name, "--repeat", "2")
        assert proc.returncode == 2 and "not a module name" in proc.stderr and "Traceback" not in proc.stderr, (
            name,
            proc.stderr,
        )


def test_what_an_imported_module_prints_is_not_taken_for_a_measurement(tmp_path: Path) -> None:
    """Found by an adversarial review: a module's own output ended the report with a traceback (bytes that are not
    UTF-8 on stderr, a print at exit after the timer's line, ``os._exit(0)`` during its import), and an
    ``import time:`` line it wrote itself became a row of the slowest modules."""
    from hatch_pyc._measure import is_module_name

    forged = "import time: 999999 | 999999 | `x` <img src=x> [click](https://evil.example) `y`"
    tree = write_tree(
        tmp_path / "t",
        {
            "forges/__init__.py": f"import sys\nsys.stderr.write({forged!r} + '\\n')\n",
            "raw/__init__.py": "import os\nos.write(2, b'\\xff\\xfe not UTF-8\\n')\n",
            "late/__init__.py": "import atexit\natexit.register(print, 'not a number')\n",
            "leaves/__init__.py": "import os\nos._exit(0)\n",
        },
    )
    out = tmp_path / "r.json"
    args = ["report", str(tree), "--repeat", "2", "--json", str(out), "--markdown", str(tmp_path / "r.md")]
    proc = run_cli(*args, *(f"--import={m}" for m in ("forges", "raw", "late", "leaves")))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(out.read_text())
    for variant in report["variants"]:
        imports = variant["imports"]
        for module in ("forges", "raw", "late"):
            assert "error" not in imports[module] and imports[module]["median_ms"] >= 0, (module, imports[module])
            slowest = [row["module"] for row in imports[module].get("slowest", [])]
            assert slowest and all(map(is_module_name, slowest)), slowest
        assert "ended without finishing the import" in imports["leaves"]["error"], imports["leaves"]
    assert "<img" not in (tmp_path / "r.md").read_text()
    assert "999999" not in out.read_text()


def test_html_report_of_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """Found by an adversarial review: a directory name that is not UTF-8 ended ``--html`` with a traceback and left
    an empty file; it is written escaped, as in the Markdown."""
    root = os.fsencode(tmp_path) + b"/bad\xff\xfename"
    os.makedirs(root + b"/okpkg")
    Path(os.fsdecode(root + b"/okpkg/__init__.py")).write_text("X = 1\n")
    page = tmp_path / "r.html"
    proc = run_cli("report", os.fsdecode(root), "--sizes-only", "-q", "--html", str(page))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "bad\\udcff\\udcfename" in page.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")[:2000]


def test_markdown_escapes_strikethrough_and_entities() -> None:
    """``~~x~~`` would render struck through and ``&#42;`` as ``*``: both are shown as typed."""
    import markdown

    from hatch_pyc._render import md_text

    rendered = markdown.markdown(md_text("~~old~~ &#42;new&#42; &amp;"), extensions=["tables"])
    assert "<del>" not in rendered and "<s>" not in rendered
    assert html.unescape(re.sub("<[^>]+>", "", rendered)) == "~~old~~ &#42;new&#42; &amp;", rendered


def test_images_markdown_shows_names_as_code_and_a_hostile_one_as_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image names and the measured command are code spans where one can hold them; a name or command with a
    backtick or a line break is escaped text, so neither can forge a line of the step summary."""
    from hatch_pyc._render_images import render_images_markdown, render_images_terminal

    def image(name: str) -> dict[str, object]:
        startup = {"median_ms": 100.0, "ci_ms": [90.0, 110.0], "min_ms": 90.0, "max_ms": 110.0, "iqr_ms": 5.0}
        return {
            "name": name,
            "bytes": 1000,
            "rootfs_layers": 1,
            "vs_baseline": None,
            "layers": [],
            "empty_entries": 0,
            "startup": startup,
        }

    def report(name: str, command: list[str]) -> dict[str, object]:
        return {
            "images": [image("app:plain"), image(name)],
            "command": command,
            "engine": {"version": "27.0"},
            "measurement": {"runs": 3, "warmup": 1},
        }

    plain = render_images_markdown(report("app:pyc", ["python3", "-c", "import app"]))
    assert plain.startswith("### hatch-pyc images: `app:plain` vs `app:pyc`\n"), plain
    assert "start-up of `python3 -c 'import app'`: 3 interleaved runs" in plain
    hostile = "x`\n\n**gate: PASS**\n<img src=x>"
    text = render_images_markdown(report(hostile, ["sh", "-c", "`\n**gate: PASS**"]))
    markdown_lines = "\n".join(line for line in text.splitlines() if not line.startswith("<details><summary>"))
    assert re.search(r"(?<!\\)<img", text) is None and re.search(r"(?<!\\)\*\*gate", markdown_lines) is None, text
    assert not any(line.startswith(("**gate", "<img")) for line in text.splitlines()), text
    # The terminal tables: no markup read from a name, no line of its own (wide enough that no cell is folded).
    monkeypatch.setenv("COLUMNS", "400")
    render_images_terminal(report("[bold]app[blink]\ngate: passed", ["sh", "-c", "[red]x\ny"]), ["gate: ok\nforged"])
    out = capsys.readouterr().out
    assert "[bold]app[blink]\\x0agate: passed" in out and "`sh -c '[red]x\\x0ay'`" in out, out
    assert "gate: ok\\x0aforged" in out and not any(
        line.startswith(("gate: passed", "forged")) for line in out.splitlines()
    )
