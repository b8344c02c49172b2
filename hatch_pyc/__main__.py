"""``python -m hatch_pyc``."""

from __future__ import annotations

import sys

from hatch_pyc._cli import main

if __name__ == "__main__":
    sys.exit(main())
