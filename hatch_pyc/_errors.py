"""The exception hierarchy: one root, each leaf also the builtin it resembles."""

from __future__ import annotations

from dataclasses import dataclass


class HatchPycError(Exception):
    """Every error hatch-pyc raises on purpose derives from this."""


class InvalidOptions(HatchPycError, ValueError):
    """Options that cannot work together, or values out of range."""


class InvalidTarget(HatchPycError, LookupError):
    """The target interpreter is missing, broken, or not a CPython."""


class InvalidInput(HatchPycError, ValueError):
    """An input path, tree or file that cannot be used as given."""


def first_problem(problems: list[str]) -> str:
    """The first of several problems, saying how many more there are (one line for the user)."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problems)" if more else "")


class InvalidPyc(InvalidInput):
    """A file that is not a readable pyc."""


@dataclass(frozen=True)
class SourceError:
    """One module that did not compile: where and why."""

    path: str
    lineno: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.lineno}" if self.lineno else self.path
        return f"{where}: {self.kind}: {self.message}"


class CompileFailed(HatchPycError):
    """One or more sources did not compile; nothing was changed on disk."""

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}")


class OutputFailed(HatchPycError, OSError):
    """An output could not be written (a full disk, a read-only directory); nothing was changed."""


class CommitFailed(HatchPycError, OSError):
    """A commit failed and undoing it failed too: the message names what is left to put right."""


class Interrupted(HatchPycError):
    """SIGINT or SIGTERM arrived during a commit, which was completed first: the run is done.

    ``result`` is the run's :class:`~hatch_pyc.CompileResult`; ``signum`` the signal.
    """

    def __init__(self, signum: int, result: object) -> None:
        self.signum = signum
        self.result = result
        super().__init__(f"signal {signum} arrived during the commit, which was completed first")


class Terminated(BaseException):
    """SIGTERM, raised as Ctrl-C raises ``KeyboardInterrupt`` (a ``BaseException`` for the same reason: an
    ``except Exception`` meant for errors must not swallow it), so a run stops and cleans up the same way."""


class ImageCommandFailed(HatchPycError, RuntimeError):
    """A command run in a container image did not exit 0: the image fails the check, not the usage."""

    def __init__(self, image: str, command: str, reason: str, output: list[str]) -> None:
        self.image = image
        self.command = command
        self.output = output  # the last lines of the container's stdout and stderr
        last = next((line.strip() for line in reversed(output) if line.strip()), "no output")
        super().__init__(f"image {image}: {command} {reason}: {last}")


__all__ = [
    "CommitFailed",
    "CompileFailed",
    "HatchPycError",
    "ImageCommandFailed",
    "InvalidInput",
    "InvalidOptions",
    "InvalidPyc",
    "Interrupted",
    "InvalidTarget",
    "OutputFailed",
    "SourceError",
]
