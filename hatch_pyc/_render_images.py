"""Render an image comparison for people: terminal tables, and Markdown for CI job summaries."""

from __future__ import annotations

import shlex
from typing import Any

from hatch_pyc._render import (
    _md_table,
    _signed_pct,
    _size,
    md_code,
    md_html,
    md_text,
    print_gate,
    print_table,
    print_title,
    table_console,
)

ImagesReport = dict[str, Any]

SIZE_HEADERS = ["image", "size", "vs baseline", "layers", "shared with baseline"]
STARTUP_HEADERS = ["image", "median [95% CI]", "min-max", "IQR", "vs baseline"]
LAYER_HEADERS = ["created by", "size"]


def _header(report: ImagesReport, markdown: bool = False) -> str:
    measured = report["measurement"]
    engine = f"Docker {report['engine']['version']}"
    if markdown:
        engine = md_text(engine)
    if not measured["runs"]:
        return f"{len(report['images'])} image(s), sizes only; {engine}; the first is the baseline"
    command = report["command"]
    if not command:
        what = "each image's default command"
    else:
        what = md_code(shlex.join(command)) if markdown else f"`{shlex.join(command)}`"
    return (
        f"start-up of {what}: {measured['runs']} interleaved runs per image after {measured['warmup']} warm-up, "
        f"fresh containers with --network none, host wall clock from start to exit; {engine}; "
        "the first image is the baseline"
    )


def _signed_size(value: int) -> str:
    return ("+" if value >= 0 else "") + _size(value)


def size_rows(report: ImagesReport) -> list[list[str]]:
    """Size, layers, and what each image shares with the first (the baseline)."""
    rows = []
    for image in report["images"]:
        versus = image["vs_baseline"]
        change = shared = ""
        if versus:
            change = f"{_signed_size(versus['delta_bytes'])} ({_signed_pct(versus['delta_bytes_pct'])})"
            count = versus["shared_layers"]
            shared = f"{count} layer{'' if count == 1 else 's'}"
            if versus["shared_bytes"] is not None:
                shared += f", {_size(versus['shared_bytes'])}"
        rows.append([image["name"], _size(image["bytes"]), change, str(image["rootfs_layers"]), shared])
    return rows


def startup_rows(report: ImagesReport) -> list[list[str]]:
    """Start-up per image: median with its ~95% confidence interval, range, IQR, ratio to the baseline."""
    rows = []
    for image in report["images"]:
        startup, versus = image["startup"], image["vs_baseline"] or {}
        low, high = startup["ci_ms"]
        ratio = versus.get("startup_ratio")
        rows.append(
            [
                image["name"],
                f"{startup['median_ms']:.1f} ms [{low:.1f}-{high:.1f}]",
                f"{startup['min_ms']:.1f}-{startup['max_ms']:.1f} ms",
                f"{startup['iqr_ms']:.1f} ms",
                f"{ratio:.2f}x ({_signed_pct(versus['startup_delta_pct'])})" if ratio else "",
            ]
        )
    return rows


def _step(layer: dict[str, Any], width: int) -> str:
    """The instruction as a Dockerfile says it: the classic builder records ``/bin/sh -c #(nop) COPY ...``
    and ``|2 ARG=... /bin/sh -c <command>`` for a RUN with build arguments."""
    text = " ".join(layer["created_by"].split())
    if text.startswith("/bin/sh -c #(nop) "):
        text = text.removeprefix("/bin/sh -c #(nop) ")
    elif text.startswith(("/bin/sh -c ", "|")) and "/bin/sh -c " in text:
        text = "RUN " + text.split("/bin/sh -c ", 1)[1]
    text = text or layer["comment"] or "?"
    return text if len(text) <= width else text[: width - 3] + "..."


def layer_rows(image: dict[str, Any], width: int = 100) -> list[list[str]]:
    """The layers that add bytes, oldest first: the instruction that made each, and its size."""
    return [[_step(layer, width), _size(layer["bytes"])] for layer in image["layers"]]


def _layers_title(image: dict[str, Any]) -> str:
    hidden = image["empty_entries"]
    note = f"; not shown: {hidden} history entries of 0 B, as ENV, CMD or empty layers" if hidden else ""
    return f"Layers of {image['name']} (oldest first{note})"


def render_images_terminal(report: ImagesReport, gate_lines: list[str] | None = None) -> None:
    """Print the comparison as tables with rich."""
    console = table_console()
    print_title(console, "hatch-pyc images", _header(report))
    print_table(console, "Size", SIZE_HEADERS, size_rows(report), overflow="fold")
    if report["measurement"]["runs"]:
        print_table(console, "Start-up", STARTUP_HEADERS, startup_rows(report), overflow="fold")
    for image in report["images"]:
        print_table(console, _layers_title(image), LAYER_HEADERS, layer_rows(image, width=60), overflow="fold")
    print_gate(gate_lines)


def render_images_markdown(report: ImagesReport, gate_lines: list[str] | None = None) -> str:
    """GitHub-flavoured Markdown: fits a step summary and a PR comment."""
    names = " vs ".join(md_code(image["name"]) for image in report["images"])
    parts = [f"### hatch-pyc images: {names}", "", _header(report, markdown=True), "", "**Size**", ""]
    parts.append(_md_table(SIZE_HEADERS, size_rows(report)))
    if report["measurement"]["runs"]:
        parts += ["", "**Start-up**", "", _md_table(STARTUP_HEADERS, startup_rows(report))]
    for image in report["images"]:
        rows = [[f"`{step}`" if "`" not in step else step, size] for step, size in layer_rows(image)]
        title = md_html(_layers_title(image))
        parts += ["", f"<details><summary>{title}</summary>", "", _md_table(LAYER_HEADERS, rows)]
        parts += ["", "</details>"]
    if gate_lines:
        parts += ["", *[f"- {md_text(line)}" for line in gate_lines]]
    return "\n".join(parts) + "\n"
