"""The run-directory format: atomic writer, readers, schema version (see ``docs/run-directory.md``)."""

from probe.store.reader import Dynamics, Records, Run, Sweep, open_path, open_run, open_sweep
from probe.store.schema import SCHEMA_VERSION
from probe.store.verify import Problem, RunVerification, verify_path, verify_run
from probe.store.writer import RunWriter

__all__ = ["SCHEMA_VERSION", "Dynamics", "Problem", "Records", "Run", "RunVerification", "RunWriter", "Sweep",
           "open_path", "open_run", "open_sweep", "verify_path", "verify_run"]
