from typedlib import Circle, area_sum
from typedlib._native import fast_hash
from typedlib.sub.registry import Registry

area_sum(["not a shape"])
Circle(radius="big")
registry: Registry[int] = Registry()
registry.register("a", "one")
digest: str = fast_hash(b"x")
Circle(1.0).radius = 3.0
missing = registry.lookup("a")
