"""Public names of a package loaded on first access (a module ``__getattr__``, PEP 562), so that importing the
package imports nothing heavy: ``import probe`` loads neither torch nor h5py, and reading an analysis back
(``probe.load_analysis``) needs neither."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str | tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``. ``names`` maps each public name to the module that defines it, or to
    ``(module, attribute)`` where the attribute has another name there; the value is imported on first access and
    kept in the package's namespace, so later accesses cost nothing."""

    def __getattr__(name: str) -> Any:
        try:
            target = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, attribute = (target, name) if isinstance(target, str) else target
        value = getattr(importlib.import_module(module), attribute)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
