"""Text the user's names go into: a name shown on one line, whatever it holds.

Standard library only: every command's module imports this to build the parser.
"""

from __future__ import annotations

import re

# What a message may not send to a terminal as it is: control characters (an escape sequence in a
# file name or an untrusted module's error rewrites the screen; a newline, or U+2028/U+2029, splits a
# one-line error), bidirectional controls (U+202E shows "exe.png" for "gnp.exe") and lone surrogates
# (a name that is not UTF-8, which cannot be printed at all), and the invisible ones that could hide text inside a
# name (zero-width spaces and joiners, the soft hyphen, the byte order mark).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def terminal_safe(text: str, *, lines: bool = False) -> str:
    """``text`` with control characters and lone surrogates written as escapes (``\\x1b``, ``\\udcff``).

    ``lines=True`` keeps newlines (and tabs): for text that is several lines by design.
    """
    if lines:
        return "\n".join(terminal_safe(line.replace("\t", "    ")) for line in text.split("\n"))
    return _UNSAFE.sub(_escaped, text)
