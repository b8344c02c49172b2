"""The CLI reference documents every option the parser has."""

from __future__ import annotations

import argparse

from conftest import REPO

from hatch_pyc._cli import build_parser


def test_every_cli_option_is_documented() -> None:
    reference = (REPO / "docs/cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sub in subparsers.choices.items():
        assert f"## `hatch-pyc {name}`" in reference, name
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help") and f"`{option}" not in reference:
                    missing.append(f"{name} {option}")
    assert missing == []
