"""A generic registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named values of one type."""

    def __init__(self) -> None:
        self._items: dict[str, T] = {}

    def register(self, name: str, value: T) -> None:
        self._items[name] = value

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    async def fetch(self, name: str, load: Callable[[str], Awaitable[T]]) -> T:
        return self._items.get(name) or await load(name)
