"""Plugins: user modules that register datasets and models (see ``docs/plugins.md``).

A plugin is an importable module that calls :func:`probe.register_dataset` and/or :func:`probe.register_model` when
it is imported. The command line imports it with ``--plugin MODULE``; an installed package declares it in the
entry-point group ``probe.plugins`` instead. The trainer records in ``run.json`` (``"plugins"``) the modules that
define the run's dataset and model, so that a new process (``probe analyze``, ``probe.open_run(...).model()``)
imports them again, by module name through the normal import system only; a file path is never imported.

This module sits at the bottom of the package (it imports nothing of probe but :mod:`probe.errors`), so the store,
the trainer and the command line all use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from probe.errors import ProbeInputError

#: Entry-point group of installed plugins: ``[options.entry_points] probe.plugins = name = my_pkg.probe_plugin``.
ENTRY_POINT_GROUP = "probe.plugins"


class PluginError(ProbeInputError):
    """A plugin module could not be found or raised an error while it was imported (one line, exit code 2)."""


def is_module_name(name: object) -> bool:
    """True for a dotted Python module name such as ``my_pkg.datasets`` (never a path)."""
    return isinstance(name, str) and bool(name) and all(part.isidentifier() for part in name.split("."))


def import_plugin(name: str) -> None:
    """Import the plugin module ``name`` (a no-op when it is imported already).

    Raises :class:`PluginError` naming the module when ``name`` is not a module name, when it cannot be found on
    ``sys.path``, or when importing it raises.
    """
    if not is_module_name(name):
        raise PluginError(f"plugin {name!r} is not a module name (give a dotted name such as my_pkg.plugin, not a "
                          "path)")
    if name in sys.modules:
        return
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = err.name or name
        where = "" if missing == name else f" (it imports {missing!r}, which is missing)"
        raise PluginError(f"plugin module {name!r} cannot be imported{where}; install it or put its folder on "
                          "PYTHONPATH") from None
    except Exception as err:  # the plugin's own code failed: name it on one line
        raise PluginError(f"plugin module {name!r} failed to import: {type(err).__name__}: {err}") from None


def import_plugins(names: Iterable[str]) -> list[str]:
    """Import every plugin module of ``names`` in order; returns the names."""
    names = list(names)
    for name in names:
        import_plugin(name)
    return names


def load_entry_point_plugins() -> list[str]:
    """Load the plugins installed packages declare in the entry-point group :data:`ENTRY_POINT_GROUP`.

    An entry point names a module (``my_pkg.probe_plugin``), imported for its registrations, or a function
    (``my_pkg.probe_plugin:register``), called with no arguments. Returns the entry-point names loaded.
    """
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if ep.attr and callable(target):
                target()
        except Exception as err:
            raise PluginError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(err).__name__}: {err}") from None
        loaded.append(ep.name)
    return loaded


def defining_module(obj: object) -> str | None:
    """The module that defines ``obj`` when it is a plugin's (not probe's own, not ``__main__``), else None."""
    module = getattr(obj, "__module__", None)
    if not is_module_name(module) or module == "__main__" or module == "probe" or module.startswith("probe."):
        return None
    return module
