"""Render a report for people: a terminal table, Markdown for CI summaries, one HTML page."""

from __future__ import annotations

import html
import os
import re
from typing import TYPE_CHECKING, Any

from hatch_pyc._text import terminal_safe

if TYPE_CHECKING:
    from rich.console import Console

Report = dict[str, Any]


def _size(value: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value} B"


def _signed_pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"


def _timing_cell(timing: dict[str, Any] | None) -> str:
    if timing is None:
        return "-"
    if "error" in timing:
        return f"FAILED: {timing['error']}"
    low, high = timing["ci_ms"]
    speed, spread = timing.get("speedup_vs_source"), timing.get("speedup_ci")
    extra = (
        f" ({speed:.2f}x [{spread[0]:.2f}-{spread[1]:.2f}])"
        if speed and spread
        else f" ({speed:.2f}x)"
        if speed
        else ""
    )
    return f"{timing['median_ms']:.1f} ms [{low:.1f}-{high:.1f}]{extra}"


def _header(report: Report) -> str:
    target = report["target"]
    measured = report["measurement"]
    startup = measured.get("startup_ms")
    start = f"; interpreter start-up {startup['median_ms']:.1f} ms (not included)" if startup else ""
    rounds = (
        f"{measured['repeat']} interleaved rounds after {measured['warmup']} warm-up{start}"
        if measured["repeat"]
        else "sizes only (no import timing)"
    )
    return (
        f"{target['name']} ({target['kind']}) for CPython {report['python']['version']}, "
        f"levels {', '.join(map(str, report['levels']))}; {rounds}"
    )


def size_rows(report: Report) -> list[list[str]]:
    """Rows of the size table, shared by every renderer."""
    rows = []
    for v in report["variants"]:
        s = v["size"]
        rows.append(
            [
                v["name"],
                str(s["files"]),
                _size(s["bytes"]),
                _signed_pct(s["delta_bytes_pct"]) if v["name"] != "source" else "",
                _size(s["disk_bytes"]),
                _size(s["wheel_bytes"]),
                _signed_pct(s["delta_wheel_bytes_pct"]) if v["name"] != "source" else "",
            ]
        )
    return rows


SIZE_HEADERS = ["variant", "files", "bytes", "vs source", "on disk", "zipped", "vs source"]


def import_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the import-time table: median [95% CI] (speed-up vs sources only)."""
    modules = report["modules"]
    rows = [[v["name"], *(_timing_cell(v["imports"].get(m)) for m in modules)] for v in report["variants"]]
    return ["variant", *(f"import {m}" for m in modules)], rows


def table_console() -> Console:
    """A rich console for result tables on stdout. Off a terminal (a CI log, a file) tables print at their
    natural width, never cut to 80 columns, unless ``COLUMNS`` sets a width. Markup and emoji codes are off: every
    string given to it (titles and cells, which hold the user's names) is shown as it is, never read as ``[style]``
    or ``:emoji:``."""
    from rich.console import Console

    console = Console(stderr=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=False, markup=False, emoji=False, width=100_000)
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]  # rich would exit 1: a failed check
    return console


def _broken_pipe() -> None:
    """The reader of stdout went away: the CLI ends quietly with 141 (rich's own handler exits 1)."""
    raise BrokenPipeError(32, "Broken pipe")


def print_title(console: Console, title: str, text: str) -> None:
    """``title: text``, the title in bold, ``text`` escaped by :func:`~hatch_pyc._text.terminal_safe`. Wider than the
    console, it is cut at the width and each further line is indented: no name can begin a line of its own (a
    "gate: passed" placed where a word-wrap would break the line, or a CI runner's ``::command::``)."""
    from rich.text import Text

    line = Text.assemble((title, "bold"), ": ", terminal_safe(text))
    width = max(console.width, 20)
    pieces = [line[:width]]
    pieces += [Text("  ") + line[start : start + width - 2] for start in range(width, len(line), width - 2)]
    for piece in pieces:
        console.print(piece, soft_wrap=True)


def print_table(console: Console, title: str, headers: list[str], rows: list[list[str]], **column: Any) -> None:
    """A table whose first column is left-aligned, the others right; every title, header and cell escaped by
    :func:`~hatch_pyc._text.terminal_safe` (and the console has no markup)."""
    from rich.table import Table

    table = Table(title=terminal_safe(title))
    for i, name in enumerate(headers):
        table.add_column(terminal_safe(name), justify="left" if i == 0 else "right", **column)
    for row in rows:
        table.add_row(*map(terminal_safe, row))
    console.print(table)


def print_gate(gate_lines: list[str] | None) -> None:
    """The gate's lines, not through rich (CI logs must not wrap or style them), each kept to one line."""
    for line in gate_lines or []:
        print(terminal_safe(line))


def render_terminal(report: Report, gate_lines: list[str] | None = None) -> None:
    """Print the report as tables with rich."""
    console = table_console()
    print_title(console, "hatch-pyc report", _header(report))
    print_table(console, "Size", SIZE_HEADERS, size_rows(report))
    if report["measurement"]["repeat"]:
        headers, rows = import_rows(report)
        print_table(console, "Import time: median [95% CI] (speed-up vs sources only)", headers, rows)
    if report.get("docstrings"):
        d = report["docstrings"]
        console.print(
            terminal_safe(
                f"-OO (no docstrings) saves {_size(d['bytes'])} of pyc ({_signed_pct(d['pct'])} vs {d['compared']})"
            )
        )
    print_gate(gate_lines)


# What Markdown (and the HTML GitHub renders inside it) makes of a name: a module, file or target name is shown as
# text, never as markup or as a line of its own (a name holding "\n**gate: PASS**" forged a line of the summary;
# "~~x~~" struck it through, "&#42;" became "*"). "&" and "~" are written as character references, which every
# Markdown reads (Python-Markdown has no backslash escape for them); the rest of the punctuation is backslashed.
# What would begin a block where the text begins a line ("- gate: passed" a list item, "1." or "1)" a numbered
# one, four spaces a code block) is escaped too, at its start (the text is one line: that is its only start).
_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>#|!~&]")
_MD_REFERENCE = {"&": "&amp;", "~": "&#126;"}
_MD_START = re.compile(r"^(?: +|[-+]|\d+[.)])")


def _md_escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _MD_REFERENCE.get(char) or "\\" + char


def _md_start(match: re.Match[str]) -> str:
    start = match.group()
    if start.startswith(" "):
        return "&#32;" * len(start)
    return start[:-1] + "\\" + start[-1]


def md_text(text: str) -> str:
    """``text`` as Markdown shows it literally, wherever it stands: control characters escaped (``\\x0a``,
    ``\\u202e``, see :func:`~hatch_pyc._text.terminal_safe`), Markdown's and HTML's punctuation escaped, and
    nothing at its start read as a list, a numbered list or a code block."""
    return _MD_START.sub(_md_start, _MD_SPECIAL.sub(_md_escaped, terminal_safe(text)))


def md_html(text: str) -> str:
    """``text`` inside an HTML block of Markdown (``<summary>``), where Markdown reads nothing and shows a backslash
    as one: control characters escaped (:func:`~hatch_pyc._text.terminal_safe`), then HTML's characters."""
    return html.escape(terminal_safe(text))


def md_code(text: str) -> str:
    """``text`` as a code span where one can hold it (printable, no backtick), else as :func:`md_text`."""
    if text and text.isprintable() and "`" not in text:
        return f"`{text}`"
    return md_text(text)


def _md_cell(cell: str) -> str:
    """A table cell: one code span (`...`, nothing but printable text between its two backticks, where Markdown reads
    nothing) as it is but for ``|``; any other text through :func:`md_text` (a cell `x` <img> `y` is two spans with
    HTML between them)."""
    if len(cell) > 1 and cell.startswith("`") and cell.endswith("`") and cell.count("`") == 2 and cell.isprintable():
        return cell.replace("|", "\\|")
    return md_text(cell)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = [
        "| " + " | ".join(map(_md_cell, headers)) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    out += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(out)


def render_markdown(report: Report, gate_lines: list[str] | None = None) -> str:
    """GitHub-flavoured Markdown: fits a step summary and a PR comment."""
    parts = [
        f"### hatch-pyc report: {md_text(report['target']['name'])}",
        "",
        md_text(_header(report)),
        "",
        "**Size**",
        "",
        _md_table(SIZE_HEADERS, size_rows(report)),
    ]
    if report["measurement"]["repeat"]:
        headers, rows = import_rows(report)
        parts += ["", "**Import time**: median [95% CI] (speed-up vs sources only)", "", _md_table(headers, rows)]
        slow = _slowest_md(report)
        if slow:
            parts += [
                "",
                "<details><summary>Slowest modules (-X importtime, self time)</summary>",
                "",
                slow,
                "",
                "</details>",
            ]
    if report.get("docstrings"):
        d = report["docstrings"]
        parts += [
            "",
            f"-OO (no docstrings) saves {_size(d['bytes'])} of pyc ({_signed_pct(d['pct'])} vs {d['compared']}).",
        ]
    if gate_lines:
        parts += ["", *[f"- {md_text(line)}" for line in gate_lines]]
    return "\n".join(parts) + "\n"


def _slowest_md(report: Report) -> str:
    blocks = []
    for variant in report["variants"]:
        for module, timing in variant["imports"].items():
            if timing.get("slowest"):
                rows = [[r["module"], f"{r['self_ms']:.2f}", f"{r['cumulative_ms']:.2f}"] for r in timing["slowest"]]
                blocks.append(
                    f"{md_text(variant['name'])} / import {md_text(module)}\n\n"
                    + _md_table(["module", "self ms", "cumulative ms"], rows)
                )
    return "\n\n".join(blocks)


_COLOURS = {"source": "#9aa5b1", "cache": "#3b82f6", "sourceless": "#10b981"}


Bar = tuple[str, float, str, str, tuple[float, float] | None]  # label, value, text, colour, interval


def _bars(title: str, items: list[Bar], unit: str, note: str = "") -> str:
    """An inline SVG bar chart: (label, value, text, colour, interval) per bar; an interval is drawn as a
    whisker across the bar's end. Each bar and whisker carries its figures (``data-*``) for checking."""
    width, bar_h, gap, left = 720, 22, 8, 170
    height = len(items) * (bar_h + gap) + 40
    top = max((max(v, (w or (0, 0))[1]) for _, v, _, _, w in items), default=1) or 1
    scale = (width - left - 190) / top
    rows = []
    for i, (label, value, text, colour, interval) in enumerate(items):
        y = 30 + i * (bar_h + gap)
        w = max(1.0, scale * value)
        end = left + max(w, scale * interval[1] if interval else 0)
        rows.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect class="bar" data-value="{value}" x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{colour}" rx="3"/>'
        )
        if interval:
            low, high = left + scale * interval[0], left + scale * interval[1]
            mid = y + bar_h / 2
            rows.append(
                f'<g class="interval" data-low="{interval[0]}" data-high="{interval[1]}" stroke="#1f2933" '
                f'stroke-width="1.5"><line x1="{low:.1f}" y1="{mid}" x2="{high:.1f}" y2="{mid}"/>'
                f'<line x1="{low:.1f}" y1="{y + 5}" x2="{low:.1f}" y2="{y + bar_h - 5}"/>'
                f'<line x1="{high:.1f}" y1="{y + 5}" x2="{high:.1f}" y2="{y + bar_h - 5}"/></g>'
            )
        rows.append(f'<text x="{end + 6:.1f}" y="{y + 15}">{html.escape(text)}</text>')
    caption = f"<figcaption>{html.escape(note)}</figcaption>" if note else ""
    return (
        f'<figure><svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="13">'
        f'<text x="0" y="16" font-weight="bold">{html.escape(title)} ({unit})</text>{"".join(rows)}</svg>'
        f"{caption}</figure>"
    )


def render_html(report: Report, gate_lines: list[str] | None = None) -> str:
    """One self-contained page (inline CSS and SVG, no scripts) with bar charts of sizes and import times."""
    from hatch_pyc._measure import median_ci_level

    variants = report["variants"]
    charts = [
        _bars(
            f"Size: {label}",
            [(v["name"], v["size"][key], _size(v["size"][key]), _COLOURS[v["kind"]], None) for v in variants],
            "bytes",
        )
        for key, label in (
            ("bytes", "the files' bytes"),
            ("disk_bytes", "on disk (allocated blocks)"),
            ("wheel_bytes", "zipped (as in a wheel)"),
        )
    ]
    rounds = report["measurement"]["repeat"]
    note = (
        f"Bars: median of {rounds} interleaved rounds; whiskers: its {median_ci_level(rounds):.0%} confidence "
        "interval; speed-up: median of round-by-round ratios to sources only, with its interval."
    )
    for module in report["modules"]:
        items: list[Bar] = []
        for v in variants:
            t = v["imports"].get(module)
            if t and "median_ms" in t:
                low, high = t["ci_ms"]
                speed, spread = t.get("speedup_vs_source"), t.get("speedup_ci")
                versus = (
                    f", {speed:.2f}x [{spread[0]:.2f}-{spread[1]:.2f}] vs sources"
                    if speed and spread and v["kind"] != "source"
                    else ""
                )
                text = f"{t['median_ms']:.1f} ms [{low:.1f}-{high:.1f}]{versus}"
                items.append((v["name"], t["median_ms"], text, _COLOURS[v["kind"]], (low, high)))
            elif t:
                items.append((v["name"], 0.0, f"FAILED: {t['error']}", "#ef4444", None))
        if items:
            charts.append(_bars(f"import {module}: median time", items, "ms", note))

    def table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    sections = [table(SIZE_HEADERS, size_rows(report))]
    if report["measurement"]["repeat"]:
        sections.append(table(*import_rows(report)))
    gates = "".join(f"<li>{html.escape(line)}</li>" for line in gate_lines or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hatch-pyc report: {html.escape(report["target"]["name"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #1f2933; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ padding: .3rem .7rem; border-bottom: 1px solid #e4e7eb; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} figure {{ margin: 1.5rem 0; }} figcaption {{ color: #52606d; font-size: .85rem; }} .legend span {{ padding: 0 .6rem; }}
</style></head><body>
<h1>hatch-pyc report: {html.escape(report["target"]["name"])}</h1>
<p>{html.escape(_header(report))}</p>
<p class="legend"><span style="color:{_COLOURS["source"]}">&#9632; sources only</span><span style="color:{_COLOURS["cache"]}">&#9632; sources + __pycache__</span><span style="color:{_COLOURS["sourceless"]}">&#9632; sourceless</span></p>
{"".join(charts)}
{"".join(sections)}
<ul>{gates}</ul>
</body></html>
"""
