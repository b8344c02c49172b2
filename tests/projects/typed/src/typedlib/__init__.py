"""A typed library whose users type-check against it (tests/test_stubs.py)."""

from typedlib.shapes import DEFAULT_SCALE, Circle, Shape, area_sum, scale

__all__ = ["DEFAULT_SCALE", "Circle", "Shape", "area_sum", "scale", "__version__"]
__version__ = "0.3.0"
