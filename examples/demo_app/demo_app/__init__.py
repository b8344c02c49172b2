"""demo_app: a tiny inventory service used to show what hatch-pyc does to a real package."""

from demo_app.inventory import Inventory, Item

__all__ = ["Inventory", "Item"]
__version__ = "1.0"
