"""The run-directory format: atomic writer, readers, schema version (see ``docs/run-directory.md``).

The names below load their module on first access, so that ``probe.store.atomic`` (used by the analysis cache and
the result files) can be imported without torch or h5py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.lazy import lazy_attributes

#: public name -> module that defines it.
_LAZY = {
    "Dynamics": "probe.store.reader", "Records": "probe.store.reader", "Run": "probe.store.reader",
    "Sweep": "probe.store.reader", "open_path": "probe.store.reader", "open_run": "probe.store.reader",
    "open_sweep": "probe.store.reader", "SCHEMA_VERSION": "probe.store.schema", "Problem": "probe.store.verify",
    "RunVerification": "probe.store.verify", "verify_path": "probe.store.verify", "verify_run": "probe.store.verify",
    "RunWriter": "probe.store.writer",
}

__all__ = ["SCHEMA_VERSION", "Dynamics", "Problem", "Records", "Run", "RunVerification", "RunWriter", "Sweep",
           "open_path", "open_run", "open_sweep", "verify_path", "verify_run"]

if TYPE_CHECKING:
    from probe.store.reader import Dynamics, Records, Run, Sweep, open_path, open_run, open_sweep
    from probe.store.schema import SCHEMA_VERSION
    from probe.store.verify import Problem, RunVerification, verify_path, verify_run
    from probe.store.writer import RunWriter

__getattr__ = lazy_attributes(__name__, _LAZY)
