"""RECORD is rewritten line by line: only the lines of files a run changed, everything else as it was."""

from __future__ import annotations

import base64
import csv
import hashlib
from pathlib import Path

from conftest import write_tree

from hatch_pyc._records import find_distributions, updated_record

RECORD = (
    "demo/__init__.py,sha256=aaa,10\n"
    '"demo/odd, name.py",sha256=bbb,20\n'
    "demo/__pycache__/__init__.cpython-312.pyc,,\n"
    "demo/keep.py,sha256=ccc,30\n"
    "../../../bin/demo,sha256=ddd,40\n"
    "demo-1.0.dist-info/RECORD,,\n"
)


def _site(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "site",
        {"demo-1.0.dist-info/RECORD": RECORD, "demo/__init__.py": "", "demo/odd, name.py": "", "demo/keep.py": ""},
    )


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_a_stripped_source_becomes_its_pyc_and_its_stale_cache_lines_go(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (dist,) = find_distributions([site])
    pyc_init, pyc_odd = site / "demo/__init__.pyc", site / "demo/odd, name.pyc"
    tmp_init, tmp_odd = tmp_path / "t1", tmp_path / "t2"
    tmp_init.write_bytes(b"init pyc")
    tmp_odd.write_bytes(b"odd pyc!")
    written = {str(pyc_init): (pyc_init, tmp_init, True), str(pyc_odd): (pyc_odd, tmp_odd, True)}
    removed = {
        str(site / "demo/__init__.py"): pyc_init,
        str(site / "demo/odd, name.py"): pyc_odd,
        str(site / "demo/__pycache__/__init__.cpython-312.pyc"): None,
    }
    text = updated_record(dist, written, removed)
    assert text is not None
    assert list(csv.reader(text.splitlines())) == [
        ["demo/__init__.pyc", _digest(b"init pyc"), "8"],
        ["demo/odd, name.pyc", _digest(b"odd pyc!"), "8"],
        ["demo/keep.py", "sha256=ccc", "30"],
        ["../../../bin/demo", "sha256=ddd", "40"],
        ["demo-1.0.dist-info/RECORD", "", ""],
    ]


def test_cache_pycs_are_added_after_their_source_without_a_hash(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (dist,) = find_distributions([site])
    new = site / "demo/__pycache__/keep.cpython-312.opt-2.pyc"
    old = site / "demo/__pycache__/__init__.cpython-312.pyc"  # listed already, rewritten: unchanged line
    foreign = site / "other/__pycache__/x.cpython-312.pyc"  # a source no RECORD lists: not added
    written = {str(p): (p, p, False) for p in (new, old, foreign)}
    text = updated_record(dist, written, {})
    assert text is not None
    rows = [row[0] for row in csv.reader(text.splitlines())]
    assert rows == [
        "demo/__init__.py",
        "demo/odd, name.py",
        "demo/__pycache__/__init__.cpython-312.pyc",
        "demo/keep.py",
        "demo/__pycache__/keep.cpython-312.opt-2.pyc",
        "../../../bin/demo",
        "demo-1.0.dist-info/RECORD",
    ]


def test_a_run_that_changed_nothing_listed_leaves_record_alone(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (dist,) = find_distributions([site])
    old = site / "demo/__pycache__/__init__.cpython-312.pyc"
    assert updated_record(dist, {str(old): (old, old, False)}, {}) is None
    assert updated_record(dist, {}, {}) is None


def test_line_endings_are_kept_as_the_installer_wrote_them(tmp_path: Path) -> None:
    site = _site(tmp_path)
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_bytes(RECORD.replace("\n", "\r\n").encode())
    (dist,) = find_distributions([site])
    new = site / "demo/__pycache__/keep.cpython-312.pyc"
    text = updated_record(dist, {str(new): (new, new, False)}, {})
    assert text is not None and text.count("\r\n") == 7 and "\n" not in text.replace("\r\n", "")


def test_a_listed_pyc_that_takes_a_sources_place_is_listed_once(tmp_path: Path) -> None:
    site = _site(tmp_path)
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_text(RECORD + "demo/keep.pyc,sha256=old,3\n")
    (dist,) = find_distributions([site])
    pyc = site / "demo/keep.pyc"
    tmp = tmp_path / "t"
    tmp.write_bytes(b"pyc")
    text = updated_record(dist, {str(pyc): (pyc, tmp, True)}, {str(site / "demo/keep.py"): pyc})
    assert text is not None
    rows = [row for row in csv.reader(text.splitlines()) if row[0].startswith("demo/keep")]
    assert rows == [["demo/keep.pyc", _digest(b"pyc"), "3"]]
