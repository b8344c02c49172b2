"""RECORD is rewritten line by line: only the lines of files a run changed, everything else as it was."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import itertools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli, snapshot, write_tree

from hatch_pyc import InvalidInput
from hatch_pyc._records import find_distributions, pycs_by_source, updated_record

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


def _held(tmp_path: Path, files: dict[Path, bytes]) -> dict[str, tuple[Path, Path, bool]]:
    """``updated_record``'s ``written`` for ``files`` (final path -> bytes), each held in a file of its own, hashed."""
    written = {}
    for n, (final, data) in enumerate(files.items()):
        holder = tmp_path / f"held-{n}"
        holder.write_bytes(data)
        written[str(final)] = (final, holder, True)
    return written


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_a_stripped_source_becomes_its_pyc_and_its_stale_cache_lines_go(tmp_path: Path) -> None:
    site = _site(tmp_path)
    (dist,) = find_distributions([site])
    pyc_init, pyc_odd = site / "demo/__init__.pyc", site / "demo/odd, name.pyc"
    written = _held(tmp_path, {pyc_init: b"init pyc", pyc_odd: b"odd pyc!"})
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


def test_a_pyc_outside_the_distributions_directory_is_listed_the_way_its_source_is(tmp_path: Path) -> None:
    """A distribution whose ``*.dist-info`` is in one site directory and whose modules are in another (``lib64``
    and ``lib`` on Fedora: pip lists those as ``../../../lib/...``): a pyc written for such a module, and a sibling
    directory whose name begins like the site's, are listed by the same relative path as the source."""
    root = tmp_path / "venv"
    platlib = root / "lib64/site"
    purelib = root / "lib/site"
    sibling = root / "lib64/site2"  # starts with the dist's directory as a string, yet is outside it
    write_tree(
        root,
        {
            "lib64/site/demo-1.0.dist-info/RECORD": "../../lib/site/demo/m.py,sha256=aaa,1\n../site2/x.py,sha256=bbb,1\n",
            "lib/site/demo/m.py": "",
            "lib64/site2/x.py": "",
        },
    )
    (dist,) = find_distributions([platlib])
    pycs = [purelib / "demo/__pycache__/m.cpython-312.pyc", sibling / "__pycache__/x.cpython-312.pyc"]
    text = updated_record(dist, {str(p): (p, p, False) for p in pycs}, {})
    assert text is not None
    assert [row[0] for row in csv.reader(text.splitlines())] == [
        "../../lib/site/demo/m.py",
        "../../lib/site/demo/__pycache__/m.cpython-312.pyc",
        "../site2/x.py",
        "../site2/__pycache__/x.cpython-312.pyc",
    ]


def test_a_pyc_named_through_dot_dot_is_listed_by_its_plain_path(tmp_path: Path) -> None:
    """Found by an adversarial review: ``hatch-pyc compile ..`` from inside a package names its files through
    ``..``; RECORD lists them by their plain paths, as pip does (``pkg/__pycache__/m...pyc``, not
    ``pkg/../pkg/__pycache__/...``)."""
    site = _site(tmp_path)
    (dist,) = find_distributions([site])
    new = site / "demo/../demo/__pycache__/keep.cpython-312.pyc"
    text = updated_record(dist, {os.path.normpath(new): (new, new, False)}, {})
    assert text is not None
    assert "demo/__pycache__/keep.cpython-312.pyc" in [row[0] for row in csv.reader(text.splitlines())]
    assert ".." not in text.replace("../../../bin/demo", "")


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


def test_a_site_directory_that_cannot_be_listed_is_passed_over(tmp_path: Path) -> None:
    """An import root that is gone (or no directory) holds no distribution; the next one is still read."""
    site = _site(tmp_path)
    (tmp_path / "a-file").write_text("not a directory\n")
    found = find_distributions([tmp_path / "a-gone", tmp_path / "a-file", site])
    assert [(dist.dist_info, dist.rows, dist.newline) for dist in found] == [
        (
            site / "demo-1.0.dist-info",
            [
                ["demo/__init__.py", "sha256=aaa", "10"],
                ["demo/odd, name.py", "sha256=bbb", "20"],
                ["demo/__pycache__/__init__.cpython-312.pyc", "", ""],
                ["demo/keep.py", "sha256=ccc", "30"],
                ["../../../bin/demo", "sha256=ddd", "40"],
                ["demo-1.0.dist-info/RECORD", "", ""],
            ],
            "\n",
        )
    ]
    assert found[0].index[os.path.normpath(site / "../../../bin/demo")] == 4


def test_a_dist_info_without_a_record_is_passed_over_and_the_next_is_updated(tmp_path: Path) -> None:
    """A ``.dist-info`` with no RECORD (an installer that writes none) sorts first; the run goes on to
    the distributions after it and updates theirs."""
    tree = write_tree(
        tmp_path / "tree",
        {
            "aaa-1.0.dist-info/METADATA": "Name: aaa\n",
            "aaa-1.0.dist-info/RECORD/README": "a directory, not a RECORD\n",
            "abc-1.0.dist-info/METADATA": "Name: abc\n",
            "demo/__init__.py": "X = 1\n",
            "demo-1.0.dist-info/RECORD": "demo/__init__.py,sha256=x,6\ndemo-1.0.dist-info/RECORD,,\n",
        },
    )
    proc = run_cli("compile", "--strip", str(tree), check=True)
    assert "; 1 RECORD files updated; " in proc.stderr
    pyc = tree / "demo/__init__.pyc"
    assert (tree / "demo-1.0.dist-info/RECORD").read_text() == (
        f"demo/__init__.pyc,{_digest(pyc.read_bytes())},{len(pyc.read_bytes())}\ndemo-1.0.dist-info/RECORD,,\n"
    )
    assert sorted(p.relative_to(tree).as_posix() for p in tree.glob("a*/**/*")) == [
        "aaa-1.0.dist-info/METADATA",
        "aaa-1.0.dist-info/RECORD",
        "aaa-1.0.dist-info/RECORD/README",
        "abc-1.0.dist-info/METADATA",
    ]


@contextlib.contextmanager
def _as_nobody() -> Iterator[None]:
    """Root reads any file: for a root test run, this process reads as ``nobody`` meanwhile."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_an_unreadable_record_is_an_error_naming_it() -> None:
    """Real permissions: the RECORD is mode 000 and read by a user that is not root."""
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        base.chmod(0o755)  # nobody may look inside, not read the RECORD
        site = _site(base)
        record = site / "demo-1.0.dist-info/RECORD"
        record.chmod(0o000)
        with _as_nobody(), pytest.raises(InvalidInput) as caught:
            find_distributions([site])
        assert str(caught.value) == f"{record}: cannot read it (Permission denied)"
        assert isinstance(caught.value.__cause__, PermissionError)


def test_a_record_that_is_not_csv_is_an_error_naming_it_and_the_tree_is_left_alone(tmp_path: Path) -> None:
    """A bare carriage return in an unquoted field: csv refuses the line, so would an installer; the run is
    refused with one line naming the RECORD (it was a traceback), before anything is compiled."""
    site = _site(tmp_path)
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_text(record.read_text() + "demo/odd\rname.txt,,\n", newline="")
    before = snapshot(site)
    proc = run_cli("compile", "--strip", str(site))
    assert (proc.returncode, proc.stdout) == (2, "")
    (line,) = proc.stderr.splitlines()
    said = f"hatch-pyc: error: {record}: not a CSV file installers can read (new-line character seen in unquoted field"
    assert line.startswith(said) and line.endswith("); nothing was changed"), line  # csv's words vary by version
    assert snapshot(site) == before


def test_a_listed_cache_pyc_the_run_rewrites_is_listed_without_its_old_hash(tmp_path: Path) -> None:
    """A wheel that shipped a ``__pycache__`` pyc listed it with a hash; the run rewrites that pyc (it
    was stale), so its line says no hash or size, as pip's lines for the pycs it compiles do. No other
    line changes, and no line is added for it."""
    tag = sys.implementation.cache_tag
    tree = write_tree(
        tmp_path / "tree",
        {
            "demo/__init__.py": "X = 1\n",
            f"demo/__pycache__/__init__.{tag}.pyc": b"stale",
            "demo-1.0.dist-info/RECORD": (
                f"demo/__init__.py,sha256=x,6\ndemo/__pycache__/__init__.{tag}.pyc,sha256=stale,5\n"
                "demo-1.0.dist-info/RECORD,,\n"
            ),
        },
    )
    proc = run_cli("compile", str(tree), check=True)
    assert "1 pyc; 1 RECORD files updated; " in proc.stderr
    assert (tree / f"demo/__pycache__/__init__.{tag}.pyc").read_bytes() != b"stale"
    assert (tree / "demo-1.0.dist-info/RECORD").read_text() == (
        f"demo/__init__.py,sha256=x,6\ndemo/__pycache__/__init__.{tag}.pyc,,\ndemo-1.0.dist-info/RECORD,,\n"
    )


def _strip_listed_pycs(tmp_path: Path, lines: dict[str, str]) -> tuple[Path, list[list[str]]]:
    """Strip ``demo/NAME.py`` for each NAME of ``lines``, in a tree whose RECORD lists not the sources but
    their sourceless pycs, each with the line given (a sourceless wheel's RECORD, or another tool's)."""
    record = "".join(f"{line}\n" for line in lines.values()) + "demo-1.0.dist-info/RECORD,,\n"
    files = {f"demo/{name}.py": f"NAME = {name!r}\n" for name in lines}
    tree = write_tree(tmp_path / "tree", {**files, "demo-1.0.dist-info/RECORD": record})
    proc = run_cli("compile", "--strip", str(tree), check=True)
    assert f"compiled {len(lines)} of {len(lines)} sources" in proc.stderr
    assert not list(tree.rglob("*.py"))
    return tree, list(csv.reader((tree / "demo-1.0.dist-info/RECORD").read_text().splitlines()))


def _hashed(tree: Path, rel: str) -> list[str]:
    data = (tree / rel).read_bytes()
    return [rel, _digest(data), str(len(data))]


def test_a_listed_pyc_keeps_no_hash_when_it_had_none_and_gets_the_new_one_when_it_had_one(tmp_path: Path) -> None:
    """The line of a pyc the run rewrites: one with a hash gets the new pyc's hash and size; one without
    a hash (whatever its size field says) stays without, as the installer wrote it."""
    tree, rows = _strip_listed_pycs(
        tmp_path,
        {
            "__init__": "demo/__init__.pyc,sha256=old,3",
            "bare": "demo/bare.pyc,,",
            "sized": "demo/sized.pyc,,12",
            "unsized": "demo/unsized.pyc,sha256=old,",
        },
    )
    assert rows == [
        _hashed(tree, "demo/__init__.pyc"),
        ["demo/bare.pyc", "", ""],
        ["demo/sized.pyc", "", ""],
        _hashed(tree, "demo/unsized.pyc"),
        ["demo-1.0.dist-info/RECORD", "", ""],
    ]


def test_short_lines_of_listed_pycs_are_completed(tmp_path: Path) -> None:
    """Lines with fewer than three fields (RECORD is read leniently): a bare path or a hash gets the new
    pyc's hash and size, an empty hash field stays empty and gains the empty size."""
    tree, rows = _strip_listed_pycs(
        tmp_path,
        {"__init__": "demo/__init__.pyc", "empty": "demo/empty.pyc,", "hash": "demo/hash.pyc,sha256=old"},
    )
    assert rows == [
        _hashed(tree, "demo/__init__.pyc"),
        ["demo/empty.pyc", "", ""],
        _hashed(tree, "demo/hash.pyc"),
        ["demo-1.0.dist-info/RECORD", "", ""],
    ]


def test_cache_pycs_are_told_by_their_directory_and_suffix(tmp_path: Path) -> None:
    """Only a ``.pyc`` directly in a ``__pycache__`` belongs to a source beside that directory (any
    optimisation level); a sourceless pyc, or another file in ``__pycache__``, belongs to none."""
    written = [
        str(tmp_path / "demo/keep.pyc"),  # sourceless, in a directory that sorts after __pycache__
        str(tmp_path / "Demo/keep.pyc"),  # sourceless, in one that sorts before it
        str(tmp_path / "demo/__pycache__/README"),
        str(tmp_path / "demo/__pycache__/m.cpython-312.opt-1.pyc"),
        str(tmp_path / "demo/__pycache__/m.cpython-312.pyc"),
        str(tmp_path / "__pycache__/top.cpython-313.opt-2.pyc"),
        str(tmp_path / "demo/__pycache__/foo.bar.cpython-312.pyc"),  # the pyc of foo.bar.py, not of foo.py
        str(tmp_path / "demo/__pycache__/untagged.pyc"),  # no tag: no source's cache
        str(tmp_path / "demo/x.cpython-312.pyc"),  # named like a cache pyc, but not in __pycache__: sourceless
        str(tmp_path / "Demo/y.cpython-312.pyc"),  # the same, in a directory that sorts before __pycache__
    ]
    assert pycs_by_source(written) == {
        str(tmp_path / "demo/m.py"): [written[3], written[4]],
        str(tmp_path / "top.py"): [written[5]],
        str(tmp_path / "demo/foo.bar.py"): [written[6]],
    }


def test_the_cache_pyc_of_a_module_with_a_dot_in_its_name_is_listed(tmp_path: Path) -> None:
    """``foo.bar.py`` (a file importlib can load by path) is compiled to ``foo.bar.cpython-XY.pyc``: its
    RECORD line follows ``foo.bar.py``'s, so an uninstall removes it (it was filed under ``foo.py``)."""
    tree = write_tree(
        tmp_path / "tree",
        {
            "demo/__init__.py": "",
            "demo/foo.bar.py": "X = 1\n",
            "demo-1.0.dist-info/RECORD": "demo/__init__.py,,\ndemo/foo.bar.py,,\ndemo-1.0.dist-info/RECORD,,\n",
        },
    )
    proc = run_cli("compile", str(tree), check=True)
    assert "; 1 RECORD files updated; " in proc.stderr
    (pyc,) = (tree / "demo/__pycache__").glob("foo.bar.*.pyc")
    (init,) = (tree / "demo/__pycache__").glob("__init__.*.pyc")
    assert (tree / "demo-1.0.dist-info/RECORD").read_text().splitlines() == [
        "demo/__init__.py,,",
        f"demo/__pycache__/{init.name},,",
        "demo/foo.bar.py,,",
        f"demo/__pycache__/{pyc.name},,",
        "demo-1.0.dist-info/RECORD,,",
    ]


def test_lines_the_run_does_not_change_are_written_back_byte_for_byte(tmp_path: Path) -> None:
    """Only a changed file's line is written anew: every other line keeps the installer's own quoting, a quoted
    name with a line break in it included; a last line without a line break gets one."""
    site = _site(tmp_path)
    kept = (
        '"demo/two\nlines.py",sha256=ddd,40\n'  # the first row, two lines long
        '"demo/keep.py",sha256=ccc,30\n'  # quoted with no need
        "\n"  # a blank line: no row, dropped as before
    )
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_bytes((kept + "demo/__init__.py,sha256=aaa,10\n" + "demo-1.0.dist-info/RECORD,,").encode())
    (dist,) = find_distributions([site])
    new = site / "demo/__pycache__/__init__.cpython-312.pyc"
    text = updated_record(dist, {str(new): (new, new, False)}, {})
    assert text == (
        '"demo/two\nlines.py",sha256=ddd,40\n'
        '"demo/keep.py",sha256=ccc,30\n'
        "demo/__init__.py,sha256=aaa,10\n"
        "demo/__pycache__/__init__.cpython-312.pyc,,\n"
        "demo-1.0.dist-info/RECORD,,\n"
    )


@pytest.mark.parametrize(
    "listed", ["demo/./keep.py", "demo//keep.py", "./demo/keep.py", "x/../demo/keep.py", "demo/keep.py/"]
)
def test_a_source_listed_by_a_path_that_needs_normalising_still_gets_its_pycs_line(tmp_path: Path, listed: str) -> None:
    """Most lines are joined to the site directory as they are; one that is not a plain relative path (a dot part,
    an empty part, a trailing slash) is normalised first, so its source is still found."""
    site = _site(tmp_path)
    (site / "demo-1.0.dist-info/RECORD").write_text(f"{listed},sha256=ccc,30\n.hidden/h.py,sha256=hhh,1\n")
    (dist,) = find_distributions([site])
    new = site / "demo/__pycache__/keep.cpython-312.pyc"
    hidden = site / ".hidden/__pycache__/h.cpython-312.pyc"
    text = updated_record(dist, {str(p): (p, p, False) for p in (new, hidden)}, {})
    assert text == (
        f"{listed},sha256=ccc,30\ndemo/__pycache__/keep.cpython-312.pyc,,\n"
        ".hidden/h.py,sha256=hhh,1\n.hidden/__pycache__/h.cpython-312.pyc,,\n"
    )


def test_a_cache_pycs_module_is_everything_before_its_tag() -> None:
    """pycs_by_source tries the tag and level as the last one or two dotted parts first, and else every dot: both
    give the module ``is_cache_of`` gives, for names built of awkward parts."""
    from hatch_pyc._layout import is_cache_of

    parts = ["m", "", "opt-1", "opt-", "cpython-312", "pyc", "a.b", ".opt-2"]
    names = [".".join(combo) + ".pyc" for k in range(1, 5) for combo in itertools.product(parts, repeat=k)]
    for name in names:
        expected = next((name[:i] for i, c in enumerate(name) if c == "." and is_cache_of(name, name[:i])), None)
        key = os.path.join("/site/pkg/__pycache__", name)
        assert pycs_by_source([key]) == ({} if expected is None else {f"/site/pkg/{expected}.py": [key]}), name


def test_a_file_listed_twice_that_the_run_removes_is_listed_once_as_its_pyc(tmp_path: Path) -> None:
    """Found by an adversarial review: a RECORD that lists a source twice (or spells it two ways) kept a line for
    the removed source beside its pyc's, a file no longer there. Every line of a file the run removes or rewrites
    goes but the last, which takes the new line."""
    site = _site(tmp_path)
    record = site / "demo-1.0.dist-info/RECORD"
    record.write_text("demo/keep.py,sha256=ccc,30\n./demo/keep.py,sha256=ccc,30\nother.py,,\ndemo/keep.py,,\n")
    (dist,) = find_distributions([site])
    pyc, tmp = site / "demo/keep.pyc", tmp_path / "t"
    tmp.write_bytes(b"pyc")
    text = updated_record(dist, {str(pyc): (pyc, tmp, True)}, {str(site / "demo/keep.py"): pyc})
    assert text == f"other.py,,\ndemo/keep.pyc,{_digest(b'pyc')},3\n"
    listed_twice = site / "demo/__pycache__/__init__.cpython-312.pyc"  # rewritten: its one line has no hash
    record.write_text(f"demo/__init__.py,,\n{listed_twice.relative_to(site)},sha256=x,1\n" * 2)
    (dist,) = find_distributions([site])
    text = updated_record(dist, {str(listed_twice): (listed_twice, listed_twice, False)}, {})
    assert text == "demo/__init__.py,,\ndemo/__init__.py,,\ndemo/__pycache__/__init__.cpython-312.pyc,,\n"


def test_the_same_tree_named_through_dot_dot_or_a_link_gives_the_same_bytes(tmp_path: Path) -> None:
    """Found by an adversarial review: ``compile --strip pkg/../pkg`` wrote ``co_filename`` ``pkg/../pkg/m.py``, a
    different pyc from the one ``compile --strip pkg`` writes. A ``..`` is taken out as the system takes it: by the
    spelling when that names the same directory, else (a link before it) by resolving the link."""
    files = {
        "site-packages/toy/__init__.py": "",
        "site-packages/toy/m.py": "def f():\n    return 1\n",
        "site-packages/toy-1.0.dist-info/RECORD": "toy/__init__.py,,\ntoy/m.py,,\ntoy-1.0.dist-info/RECORD,,\n",
    }
    trees = [write_tree(tmp_path / name, files) for name in ("plain", "dots", "linked")]
    (tmp_path / "links").mkdir()
    (tmp_path / "links/lnk").symlink_to(trees[2] / "site-packages/toy", target_is_directory=True)
    named = [trees[0] / "site-packages/toy", trees[1] / "site-packages/toy/../toy", tmp_path / "links/lnk/../toy"]
    for tree, path in zip(trees, named, strict=True):
        os.utime(tree / "site-packages/toy/m.py", (1_700_000_000, 1_700_000_000))
        run_cli("compile", "--strip", str(path), check=True)
    outputs = [
        {
            rel: (tree / "site-packages" / rel).read_bytes()
            for rel in ("toy/m.pyc", "toy/__init__.pyc", "toy-1.0.dist-info/RECORD")
        }
        for tree in trees
    ]
    assert outputs[0] == outputs[1] == outputs[2]
    assert b"toy/m.py" in outputs[0]["toy/m.pyc"] and b".." not in outputs[0]["toy/m.pyc"]
    assert not (tmp_path / "links/toy").exists()


def test_a_stub_listed_already_that_the_run_writes_beside_its_source_is_listed_once(tmp_path: Path) -> None:
    """Seen by an adversarial review: a RECORD that lists ``keep.pyi`` (gone from the disk, so the run writes a new
    one beside the stripped ``keep.py``) listed the stub twice: beside the source's pyc, and at its own old line.
    Like a listed pyc that takes a source's place, its own line gives way."""
    site = _site(tmp_path)
    (site / "demo-1.0.dist-info/RECORD").write_text("demo/keep.py,sha256=ccc,30\ndemo/keep.pyi,sha256=old,9\n")
    (dist,) = find_distributions([site])
    pyc, stub = site / "demo/keep.pyc", site / "demo/keep.pyi"
    written = _held(tmp_path, {pyc: b"pyc", stub: b"def f() -> int: ...\n"})
    source = str(site / "demo/keep.py")
    text = updated_record(dist, written, {source: pyc}, beside={source: [stub]})
    assert text == (
        f"demo/keep.pyc,{_digest(b'pyc')},3\ndemo/keep.pyi,{_digest(b'def f() -> int: ...' + bytes([10]))},20\n"
    )
