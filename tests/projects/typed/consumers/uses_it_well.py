from typedlib import DEFAULT_SCALE, Circle, __version__, area_sum, scale
from typedlib._native import fast_hash
from typedlib.shapes import describe, first
from typedlib.sub.registry import Registry

circle = Circle(radius=2.0)
total: float = area_sum([circle, Circle(1.0)])
bigger: Circle = scale(circle, DEFAULT_SCALE)
registry: Registry[int] = Registry()
registry.register("a", 1)
found: int | None = registry.get("a")
digest: int = fast_hash(b"x")
version: str = __version__
text: str = describe(first([circle]))
