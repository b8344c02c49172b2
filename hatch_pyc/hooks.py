"""Registers the ``pyc`` build hook with hatchling (entry point group ``hatch``)."""

from __future__ import annotations

from hatchling.plugin import hookimpl

from hatch_pyc.plugin import PycBuildHook


@hookimpl
def hatch_register_build_hook() -> type[PycBuildHook]:
    """The hook class hatchling selects by its ``PLUGIN_NAME``, ``pyc``."""
    return PycBuildHook
