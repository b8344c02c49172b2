"""Shapes: a protocol, a frozen dataclass, overloads and a version branch."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar, overload

DEFAULT_SCALE: Final = 2
_S = TypeVar("_S", bound="Shape")


class Shape(Protocol):
    """Anything with an area."""

    def area(self) -> float: ...


@dataclass(frozen=True)
class Circle:
    """A circle."""

    radius: float

    def area(self) -> float:
        """Its area."""
        note = "the implementation of Circle.area, which no stub may hold"
        assert note
        return math.pi * self.radius**2

    def scaled(self, factor: float) -> Circle:
        return Circle(self.radius * factor)


def area_sum(shapes: Iterable[Shape]) -> float:
    """The sum of the areas."""
    return sum(shape.area() for shape in shapes)


@overload
def scale(shape: Circle, factor: int = ...) -> Circle: ...
@overload
def scale(shape: Circle, factor: float) -> Circle: ...
def scale(shape: Circle, factor: float = DEFAULT_SCALE) -> Circle:
    return shape.scaled(factor)


def first(items: list[_S]) -> _S:
    return items[0]


if sys.version_info >= (3, 12):

    def describe(shape: Shape) -> str:
        return f"{type(shape).__name__} {shape.area():.2f}"

else:

    def describe(shape: Shape) -> str:
        return "shape"
