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


def test_every_default_is_the_documented_one() -> None:
    options = PycOptions()
    assert (options.levels, options.strip, options.exclude, options.invalidation) == ((0,), False, (), None)
    assert (options.on_error, options.workers, options.force, options.ddir) == ("fail", 0, False, None)
    assert (options.source_date_epoch, options.outside_packages) == (None, "keep-source")
    with pytest.raises(AttributeError):  # frozen: options cannot change under a run that read them
        options.strip = True  # type: ignore[misc]


def test_worker_count_is_the_number_given_or_one_per_usable_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    assert PycOptions(workers=1).worker_count == 1
    assert PycOptions(workers=3).worker_count == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2} if pid == 0 else {0}, raising=False)
    assert PycOptions().worker_count == 3  # the CPUs this process may use, not the machine's
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert PycOptions().worker_count == 5
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown
    assert PycOptions().worker_count == 1


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"levels": (True,)}, "optimisation level True must be 0, 1 or 2"),
        ({"levels": ("1",)}, "optimisation level '1' must be 0, 1 or 2"),
        ({"workers": True}, "workers True must be a whole number"),
        ({"workers": 1.5}, "workers 1.5 must be a whole number"),
        ({"exclude": "tests/"}, "exclude must be a list of patterns, not one string"),
        ({"outside_packages": "drop"}, "outside-packages 'drop' must be one of keep-source, compile"),
    ],
)
def test_each_bad_value_is_named(options: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidOptions) as info:
        PycOptions(**options)  # type: ignore[arg-type]
    assert str(info.value).startswith(problem) and ";" not in str(info.value)  # that problem, and only it


def test_no_level_is_one_problem_not_two() -> None:
    with pytest.raises(InvalidOptions) as info:
        PycOptions(levels=(), strip=True)
    assert str(info.value) == "at least one optimisation level is needed"


def test_cache_names_belong_to_their_module_only() -> None:
    assert is_cache_of("mod.x.pyc", "mod")  # any tag, however short
    assert not is_cache_of("mod.cpython-312.opt-1.opt-2.pyc", "mod")
    assert not is_cache_of("ab.cpython312.pyc", "xy")  # another module's, with a tag of the same length
    assert not is_cache_of("mod.cpython-312.pyc.tmp", "mod")
    assert not is_cache_of("mod..pyc", "mod")


def test_a_plain_directory_below_a_package_inside_a_namespace_is_outside_packages() -> None:
    from hatch_pyc._layout import outside_packages

    packages = {"ns/pkg"}  # ns: a namespace directory; ns/pkg: a regular package; ns/pkg/templates: plain
    assert outside_packages("ns/pkg/templates/env.py", packages.__contains__)
    assert not outside_packages("ns/pkg/mod.py", packages.__contains__)
    assert not outside_packages("ns/mod.py", packages.__contains__)
    assert not outside_packages("top.py", packages.__contains__)


@pytest.mark.parametrize("bad", ["", 5, b"dir"])
def test_a_cache_directory_must_be_a_non_empty_path(bad: object) -> None:
    """``cache_dir``: a path or None (the default location); an empty string or another type is refused, named."""
    with pytest.raises(InvalidOptions, match=r"cache directory .* must be a non-empty path"):
        PycOptions(cache_dir=bad)  # type: ignore[arg-type]
    assert PycOptions(cache_dir="somewhere").cache_dir == "somewhere"
    assert PycOptions().cache_dir is None and PycOptions().cache is True and PycOptions().compact is False
