"""Option validation: every problem reported at once, in words a user can act on."""

from __future__ import annotations

import pytest

from hatch_pyc import InvalidOptions, PycOptions
from hatch_pyc._layout import cache_path, is_cache_of, sourceless_path


def test_defaults() -> None:
    options = PycOptions()
    assert options.levels == (0,)
    assert options.invalidation_mode == "timestamp"
    assert PycOptions(strip=True).invalidation_mode == "unchecked-hash"
    assert PycOptions(levels=(2, 0, 2)).levels == (0, 2)
    assert PycOptions().worker_count >= 1


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(InvalidOptions) as info:
        PycOptions(levels=(0, 3), strip=True, invalidation="sometimes", on_error="ignore", workers=-1)  # type: ignore[arg-type]
    message = str(info.value)
    for part in (
        "optimisation level 3 must be 0, 1 or 2",
        "a sourceless tree holds one optimisation level",
        "invalidation mode 'sometimes'",
        "on-error 'ignore'",
        "workers -1",
    ):
        assert part in message


def test_layout_names() -> None:
    from pathlib import PurePosixPath as P

    assert cache_path(P("pkg/mod.py"), "cpython-312", 0) == P("pkg/__pycache__/mod.cpython-312.pyc")
    assert cache_path(P("pkg/mod.py"), "cpython-312", 2) == P("pkg/__pycache__/mod.cpython-312.opt-2.pyc")
    assert sourceless_path(P("pkg/mod.py")) == P("pkg/mod.pyc")
    assert is_cache_of("mod.cpython-312.opt-1.pyc", "mod")
    assert is_cache_of("mod.cpython-310.pyc", "mod")
    assert not is_cache_of("mod.other.cpython-312.pyc", "mod")
    assert not is_cache_of("module.cpython-312.pyc", "mod")
