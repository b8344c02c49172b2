"""Plugins that format the inventory."""
