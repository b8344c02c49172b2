"""``python -m demo_app``: print the report and say how the code was loaded."""

from demo_app import Inventory
from demo_app.plugins import report

print(report.render(Inventory.load_default()))
print(f"loaded from {__spec__.origin.rsplit('/', 1)[-1]} by {type(__loader__).__name__}")
print("docstrings:", "kept" if Inventory.add.__doc__ else "stripped (-OO)")
