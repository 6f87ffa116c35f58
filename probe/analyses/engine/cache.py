"""The metric cache of ``analyze``: the metrics of each (run, epoch, analysis), valid while nothing they depend on
changes.

One JSON entry per (run, epoch) of a :class:`~probe.analyses.cache.FileCache` (``<root>/<run>/epoch_XXXXX.json``),
mapping each analysis to ``{"epoch_sha256", "options", "format", "metrics"}``. An entry answers for analysis ``a`` at
an epoch only when all three parts of its key hold:

- ``epoch_sha256`` equals the manifest's sha256 of the epoch file (and ``analyze`` re-hashes the file against the
  manifest before any entry is used);
- ``options`` equals :func:`probe.analyses.base.options_key` of ``a``: its name, its declared ``version`` and the
  values of the options it declares, so bumping one analysis's version or changing one of its options recomputes that
  analysis only;
- ``format`` equals :data:`CACHE_FORMAT`, the engine's own number, bumped when the engine changes what it stores.

Errors are never cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.analyses.base import options_key
from probe.analyses.cache import FileCache

#: the engine's cache format: part of every entry's key.
CACHE_FORMAT = 2


@dataclass(frozen=True)
class EntryKey:
    """What a cached entry of one analysis at one epoch must match."""

    epoch_sha256: str | None
    options: str
    format: int = CACHE_FORMAT

    @classmethod
    def of(cls, epoch_sha256: str | None, analysis: str, resolved: Mapping[str, Any]) -> EntryKey:
        """The key of ``analysis`` at an epoch file with ``epoch_sha256`` under the resolved options."""
        return cls(epoch_sha256, options_key(analysis, resolved))

    def matches(self, entry: Mapping[str, Any]) -> bool:
        return (entry.get("epoch_sha256") == self.epoch_sha256 and entry.get("options") == self.options
                and entry.get("format") == self.format)


class MetricCache:
    """Per-(run, epoch) entries ``<root>/<run>/epoch_XXXXX.json``: analysis -> key and metrics (see the module doc)."""

    def __init__(self, root: Path | None):
        self.files = FileCache(root)

    @staticmethod
    def _name(run_name: str, epoch: int) -> str:
        return f"{run_name}/epoch_{int(epoch):05d}.json"

    def load(self, run_name: str, epoch: int) -> dict[str, Any]:
        """Every stored entry of (run, epoch), valid or not ({} when there is none or it is unreadable)."""
        stored = self.files.load_json(self._name(run_name, epoch))
        return stored if isinstance(stored, dict) else {}

    @staticmethod
    def matching(stored: Mapping[str, Any], keys: Mapping[str, EntryKey]) -> dict[str, Any]:
        """The entries of ``stored`` (what :meth:`load` returned) whose analysis is in ``keys`` and whose key
        matches."""
        return {name: entry for name, entry in stored.items()
                if name in keys and isinstance(entry, dict) and keys[name].matches(entry)}

    def store(self, run_name: str, epoch: int, entries: Mapping[str, Any]) -> None:
        """Replace the entries of (run, epoch), atomically."""
        self.files.store_json(self._name(run_name, epoch), dict(entries))

    @staticmethod
    def entry(key: EntryKey, metrics: list[tuple[str, str, float]]) -> dict[str, Any]:
        """A cache entry of ``metrics`` (``[(split, metric, value)]``) under ``key``."""
        return {"epoch_sha256": key.epoch_sha256, "options": key.options, "format": key.format,
                "metrics": [list(m) for m in metrics]}
