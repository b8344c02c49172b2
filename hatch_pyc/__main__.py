"""``python -m hatch_pyc``."""

from __future__ import annotations

from hatch_pyc._cli import main_entry

if __name__ == "__main__":
    main_entry()
