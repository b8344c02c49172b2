"""The messages errors carry: what a user reads, one line, counting the rest right."""

from __future__ import annotations

import dataclasses

import pytest

from hatch_pyc._errors import CompileFailed, ImageCommandFailed, Interrupted, SourceError, first_problem


def test_first_problem_names_the_first_and_counts_the_rest() -> None:
    assert first_problem(["only"]) == "only"
    assert first_problem(["first", "second"]) == "first (and 1 more problems)"
    assert first_problem(["first", "second", "third"]) == "first (and 2 more problems)"


def _error(name: str) -> SourceError:
    return SourceError(f"pkg/{name}.py", 3, "SyntaxError", "invalid syntax")


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (1, "pkg/m0.py:3: SyntaxError: invalid syntax"),
        (2, "pkg/m0.py:3: SyntaxError: invalid syntax (and 1 more)"),
        (3, "pkg/m0.py:3: SyntaxError: invalid syntax (and 2 more)"),
    ],
)
def test_compile_failed_names_the_first_error_and_counts_the_others(count: int, message: str) -> None:
    errors = [_error(f"m{i}") for i in range(count)]
    failure = CompileFailed(errors)
    assert str(failure) == message
    assert failure.errors == errors


def test_a_source_error_reads_as_file_line_kind_message_and_cannot_change() -> None:
    assert str(_error("m")) == "pkg/m.py:3: SyntaxError: invalid syntax"
    assert str(SourceError("pkg/m.py", None, "ValueError", "source code cannot contain null bytes")) == (
        "pkg/m.py: ValueError: source code cannot contain null bytes"
    )
    error = _error("m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        error.lineno = 4  # type: ignore[misc]
    assert {error, _error("m")} == {error}  # frozen, so hashable: a set of errors is one per place


def test_interrupted_keeps_the_signal_and_the_result() -> None:
    result = object()
    interrupted = Interrupted(15, result)
    assert (interrupted.signum, interrupted.result) == (15, result)
    assert str(interrupted) == "signal 15 arrived during the commit, which was completed first"


def test_image_command_failed_quotes_the_last_line_with_text() -> None:
    failure = ImageCommandFailed(
        "app:1", "python -c 'import app'", "exited 1", ["Traceback", "  ValueError: x  ", "", " "]
    )
    assert str(failure) == "image app:1: python -c 'import app' exited 1: ValueError: x"
    assert failure.output[-1] == " " and (failure.image, failure.command) == ("app:1", "python -c 'import app'")
    assert str(ImageCommandFailed("app:1", "true", "exited 1", [])).endswith("exited 1: no output")
