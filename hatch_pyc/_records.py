"""Keep installed distributions' RECORD files true when a run adds pycs or removes sources.

pip, uv and installer-based tools uninstall exactly what RECORD lists, and
``importlib.metadata.files()`` (hence ``packages_distributions()``) reads it. A run that
removes ``mod.py`` and writes ``mod.pyc`` must say so there, or an uninstall leaves the
package importable and metadata loses its modules. The rules follow pip's own RECORD:

- a removed source's line becomes its sourceless pyc's, with the pyc's sha256 and size (the
  pyc is now the distribution's file, as in a sourceless wheel);
- ``__pycache__`` pycs written for a listed source are listed without hash or size, as pip
  lists the pycs it compiles at install time (Python may rewrite them);
- lines of files the run removed (a stripped source's stale ``__pycache__`` entries) go;
- every other line is kept as it was, in its place.

The new RECORD is computed before the commit and replaces the old one inside it.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hatch_pyc._errors import InvalidInput
from hatch_pyc._layout import is_cache_of


@dataclass
class InstalledDistribution:
    """One ``*.dist-info`` directory and the rows of its RECORD."""

    dist_info: Path
    rows: list[list[str]]
    newline: str = "\n"  # kept as the installer wrote it (pip writes "\r\n")
    # each row's own text, as the installer wrote it: a line the run does not change is written back as it was
    lines: list[str] = field(default_factory=list)
    # normalised absolute path -> index of its row (its last, if it is listed more than once)
    index: dict[str, int] = field(default_factory=dict)
    # a path listed more than once -> its rows before the last
    earlier: dict[str, list[int]] = field(default_factory=dict)

    @property
    def record(self) -> Path:
        """The RECORD file."""
        return self.dist_info / "RECORD"


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.fspath(path))


def find_distributions(site_dirs: Iterable[Path]) -> list[InstalledDistribution]:
    """The distributions installed in ``site_dirs`` (the import roots of a run) that have a RECORD."""
    found: list[InstalledDistribution] = []
    for site in sorted(set(site_dirs)):
        try:
            names = sorted(os.listdir(site))
        except OSError:
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            dist_info = site / name
            record = dist_info / "RECORD"
            if not record.is_file():
                continue
            try:
                # bytes that are not UTF-8 survive a rewrite unchanged
                with open(record, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                    text = handle.read()
            except OSError as exc:
                raise InvalidInput(f"{record}: cannot read it ({exc.strerror or exc})") from exc
            dist = InstalledDistribution(dist_info, [], "\r\n" if "\r\n" in text else "\n")
            lines = io.StringIO(text).readlines()  # split at "\n" only, as csv reads them
            try:
                rows = list(csv.reader(lines))
                if len(rows) != len(lines):  # a quoted field with a line break in it: which lines are each row's
                    reader = csv.reader(lines)
                    spans = [(reader.line_num, row) for row in reader]
                    starts = [0] + [end for end, _ in spans[:-1]]
                    rows = [row for _, row in spans]
                    lines = ["".join(lines[a:b]) for a, (b, _) in zip(starts, spans, strict=True)]
            except csv.Error as exc:  # a bare CR in an unquoted field, a NUL byte (3.10)
                raise InvalidInput(
                    f"{record}: not a CSV file installers can read ({exc}); nothing was changed"
                ) from exc
            dist.rows = [row for row in rows if row]
            dist.lines = [line for row, line in zip(rows, lines, strict=True) if row]
            base = os.path.normpath(os.fspath(site))
            prefix = base if base.endswith(os.sep) else base + os.sep
            # A path that needs no normalising (relative, no empty part, no part that begins with a dot, no
            # trailing slash) is joined as it is: normpath on every line of a big RECORD costs more than the rest.
            slow = os.sep != "/"
            keys = [
                prefix + path
                if not slow
                and path
                and path[0] not in "./"
                and path[-1] != "/"
                and "/." not in path
                and "//" not in path
                else os.path.normpath(os.path.join(base, path))
                for path in (row[0] for row in dist.rows)
            ]
            dist.index = {key: i for i, key in enumerate(keys)}
            if len(dist.index) < len(keys):  # a path listed twice (or spelt two ways)
                for i, key in enumerate(keys):
                    if dist.index[key] != i:
                        dist.earlier.setdefault(key, []).append(i)
            found.append(dist)
    return found


def file_hash(path: Path) -> tuple[str, str]:
    """RECORD's hash and size fields for the file at ``path``."""
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}", str(len(data))


def _relative(key: str, base: str) -> str:
    """The normalised path ``key`` as RECORD lists it: relative to ``base`` (normalised, ending in a separator),
    posix (``../`` leads out of it)."""
    if key.startswith(base):  # what a run writes is in its import roots: relpath would make both absolute first
        return key[len(base) :].replace(os.sep, "/")
    return os.path.relpath(key, base).replace(os.sep, "/")


def updated_record(
    dist: InstalledDistribution,
    written: Mapping[str, tuple[Path, Path, bool]],
    removed: Mapping[str, Path | None],
    cached: Mapping[str, list[str]] | None = None,
    beside: Mapping[str, list[Path]] | None = None,
) -> str | None:
    """RECORD's new text, or None when the run changed none of the distribution's files.

    ``written``: normalised final path -> (final, file holding its bytes, hashed in RECORD);
    ``removed``: normalised removed path -> the sourceless pyc that replaces it (None: just gone);
    ``cached``: :func:`pycs_by_source` of ``written`` (computed here when not given: a run with
    many distributions computes it once). A pyc is added only for a source the distribution lists.
    ``beside``: normalised removed path -> files written in its place besides its pyc (its ``.pyi`` stub).
    A line the run does not change is written back as the installer wrote it.
    """
    base = os.path.join(os.path.normpath(dist.dist_info.parent), "")
    rows = dist.rows
    index = dist.index
    replaced: dict[int, list[list[str]]] = {}  # row index -> the rows that take its place
    listed: set[str] = set()  # pycs and stubs that take a removed source's line: not added after it again

    def row_for(key: str) -> list[str]:
        _, holder, hashed = written[key]
        if hashed:
            digest, size = file_hash(holder)
            return [_relative(key, base), digest, size]
        return [_relative(key, base), "", ""]

    for key in removed.keys() & index.keys():
        i = index[key]
        pyc = removed[key]
        replaced[i] = [row_for(_key(pyc))] if pyc is not None and _key(pyc) in written else []
        if pyc is not None:
            listed.add(_key(pyc))
        for extra in (beside or {}).get(key, []):
            if _key(extra) in written:
                replaced[i].append(row_for(_key(extra)))
                listed.add(_key(extra))
    # What takes the place of a source this distribution lists (its sourceless pyc, its stub): a line the RECORD
    # already has for one of them (a sourceless install compiled again, a stub listed but gone) gives way to the
    # source's.
    for key in listed & index.keys():
        if key not in removed:
            replaced[index[key]] = []
    for key in written.keys() & index.keys():
        i = index[key]
        if i not in replaced:  # else taking a source's place, or removed: that decides
            old = rows[i]
            replaced[i] = [row_for(key) if len(old) < 2 or old[1] else [old[0], "", ""]]
    # A file the run removes or rewrites that RECORD lists more than once is listed once, as the run leaves it (the
    # last line decides; a removed source's earlier line would list a file that is gone).
    for key, before in dist.earlier.items():
        if index[key] in replaced:
            for j in before:
                replaced[j] = []
    # pycs written for a source this distribution lists (a __pycache__ entry, or a sourceless
    # pyc whose source stays because of --on-error keep-source is never written, so not here)
    if cached is None:
        cached = pycs_by_source(written)
    sources = cached.keys() & index.keys() if len(cached) < len(index) else index.keys() & cached.keys()
    for source in [source for source in sources if source not in removed]:
        new = [k for k in cached[source] if k not in index and k not in listed]
        if new:
            i = index[source]
            replaced[i] = replaced.get(i, [rows[i]]) + [row_for(k) for k in sorted(new)]
    changes = {i: new for i, new in replaced.items() if new != [rows[i]]}
    if not changes:
        return None  # no line changed (pycs pip had compiled, recompiled: listed as they are)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=dist.newline)
    lines = dist.lines if len(dist.lines) == len(rows) else None
    for i, row in enumerate(rows):
        new_rows = changes.get(i)
        if new_rows is not None:
            writer.writerows(new_rows)
        elif lines is None:
            writer.writerow(row)
        else:  # the last line may have no line break
            out.write(lines[i] if lines[i].endswith("\n") else lines[i].rstrip("\r") + dist.newline)
    return out.getvalue()


def pycs_by_source(written: Iterable[str]) -> dict[str, list[str]]:
    """The ``__pycache__`` pycs among ``written`` (normalised paths), by the source each belongs to
    (``pkg/__pycache__/m.cpython-312.opt-1.pyc`` -> ``pkg/m.py``)."""
    found: dict[str, list[str]] = {}
    for key in written:
        cache, _, name = key.rpartition(os.sep)
        directory, sep, last = cache.rpartition(os.sep)
        if last != "__pycache__" or not name.endswith(".pyc"):
            continue
        stem = _stem_of(name)
        if stem is not None:
            found.setdefault(f"{directory}{sep}{stem}.py", []).append(key)
    return found


def _stem_of(name: str) -> str | None:
    """The module a ``__pycache__`` entry belongs to: everything before its tag (``foo.bar.cpython-312.pyc`` is
    the pyc of ``foo.bar.py``); None if it is not a pyc's name."""
    # The tag and level are the last one or two dotted parts; the longest that can be is tried first. A shorter
    # stem leaves more dots after it than a pyc's name has.
    head, _, last = name[: -len(".pyc")].rpartition(".")
    if last.startswith("opt-"):
        head = head.rpartition(".")[0]
    if head and is_cache_of(name, head):
        return head
    return next((name[:i] for i, c in enumerate(name) if c == "." and is_cache_of(name, name[:i])), None)
