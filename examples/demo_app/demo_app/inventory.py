"""An in-memory inventory with a couple of invariants checked by asserts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True)
class Item:
    """One stock-keeping unit."""

    sku: str
    name: str
    price_cents: int

    def __post_init__(self) -> None:
        assert self.price_cents >= 0, f"negative price for {self.sku}"


@dataclass
class Inventory:
    """Items and their counts."""

    counts: dict[str, int] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)

    @classmethod
    def load_default(cls) -> Inventory:
        """Load the inventory shipped as package data (``stock.json``)."""
        data = json.loads(resources.files("demo_app").joinpath("stock.json").read_text(encoding="utf-8"))
        inventory = cls()
        for row in data:
            inventory.add(Item(row["sku"], row["name"], row["price_cents"]), row["count"])
        return inventory

    def add(self, item: Item, count: int = 1) -> None:
        """Add ``count`` of ``item``."""
        self.items[item.sku] = item
        self.counts[item.sku] = self.counts.get(item.sku, 0) + count

    def value_cents(self) -> int:
        """Total value of the stock."""
        return sum(self.items[sku].price_cents * n for sku, n in self.counts.items())
