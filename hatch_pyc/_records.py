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
    # normalised absolute path -> index of its row
    index: dict[str, int] = field(default_factory=dict)

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
            try:
                rows = [row for row in csv.reader(io.StringIO(text)) if row]
            except csv.Error as exc:  # a bare CR in an unquoted field, a NUL byte (3.10)
                raise InvalidInput(
                    f"{record}: not a CSV file installers can read ({exc}); nothing was changed"
                ) from exc
            dist = InstalledDistribution(dist_info, rows, "\r\n" if "\r\n" in text else "\n")
            base = os.fspath(site)
            for i, row in enumerate(rows):
                dist.index[os.path.normpath(os.path.join(base, row[0]))] = i
            found.append(dist)
    return found


def file_hash(path: Path) -> tuple[str, str]:
    """RECORD's hash and size fields for the file at ``path``."""
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}", str(len(data))


def _relative(path: Path, site: Path) -> str:
    """``path`` as RECORD lists it: relative to ``site``, posix (``../`` leads out of it)."""
    text, base = os.path.normpath(path), os.path.join(os.path.normpath(site), "")
    if text.startswith(base):  # what a run writes is in its import roots: relpath would make both absolute first
        return text[len(base) :].replace(os.sep, "/")
    return os.path.relpath(path, site).replace(os.sep, "/")


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
    """
    site = dist.dist_info.parent
    rows = [list(row) for row in dist.rows]
    changed = False
    replaced: dict[int, list[list[str]]] = {}  # row index -> the rows that take its place
    listed = set(dist.index)

    def row_for(final: Path) -> list[str]:
        key = _key(final)
        _, holder, hashed = written[key]
        if hashed:
            digest, size = file_hash(holder)
            return [_relative(final, site), digest, size]
        return [_relative(final, site), "", ""]

    # The sourceless pycs that take the place of sources this distribution lists: a line the RECORD
    # already has for one of them (a sourceless install compiled again) gives way to the source's.
    taking_place = {_key(pyc) for k in dist.index if (pyc := removed.get(k)) is not None}
    for key, i in dist.index.items():
        if key in taking_place and key not in removed:
            changed = True
            replaced[i] = []
        elif key in removed:
            changed = True
            pyc = removed[key]
            replaced[i] = [row_for(pyc)] if pyc is not None and _key(pyc) in written else []
            if pyc is not None:
                listed.add(_key(pyc))
            for extra in (beside or {}).get(key, []):
                if _key(extra) in written:
                    replaced[i].append(row_for(extra))
                    listed.add(_key(extra))
        elif key in written:
            changed = True
            final = written[key][0]
            old = rows[i]
            replaced[i] = [row_for(final) if len(old) < 2 or old[1] else [old[0], "", ""]]
    # pycs written for a source this distribution lists (a __pycache__ entry, or a sourceless
    # pyc whose source stays because of --on-error keep-source is never written, so not here)
    if cached is None:
        cached = pycs_by_source(written)
    by_source = {
        source: new
        for source, keys in cached.items()
        if source in dist.index and source not in removed and (new := [k for k in keys if k not in listed])
    }
    for source, keys in by_source.items():
        i = dist.index[source]
        current = replaced.get(i, [rows[i]])
        replaced[i] = current + [row_for(written[k][0]) for k in sorted(keys)]
        changed = True
    if not changed:
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=dist.newline)
    for i, row in enumerate(rows):
        for new in replaced.get(i, [row]):
            writer.writerow(new)
    if all(replaced.get(i, [row]) == [row] for i, row in enumerate(rows)):
        return None  # every changed file was listed as it is now (pycs pip had compiled, recompiled)
    return out.getvalue()


def pycs_by_source(written: Iterable[str]) -> dict[str, list[str]]:
    """The ``__pycache__`` pycs among ``written`` (normalised paths), by the source each belongs to
    (``pkg/__pycache__/m.cpython-312.opt-1.pyc`` -> ``pkg/m.py``)."""
    found: dict[str, list[str]] = {}
    for key in written:
        cache, name = os.path.split(key)
        directory, last = os.path.split(cache)
        if last != "__pycache__":
            continue
        # the stem is everything before the tag (``foo.bar.cpython-312.pyc`` is the pyc of ``foo.bar.py``)
        stem = next((name[:i] for i, c in enumerate(name) if c == "." and is_cache_of(name, name[:i])), None)
        if stem is not None:
            found.setdefault(os.path.join(directory, stem + ".py"), []).append(key)
    return found
