"""A flat-layout package configured with the global hook table."""
