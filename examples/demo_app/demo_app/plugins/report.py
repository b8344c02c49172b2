"""A text report of the inventory."""

from __future__ import annotations

from demo_app.inventory import Inventory


def render(inventory: Inventory) -> str:
    """One line per item, then the total."""
    lines = [f"{sku:>5}  {inventory.items[sku].name:<8} x{n}" for sku, n in sorted(inventory.counts.items())]
    lines.append(f"total value: {inventory.value_cents() / 100:.2f}")
    return "\n".join(lines)
