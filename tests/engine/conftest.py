"""Fixtures of the engine tests (defined in :mod:`tests.engine.helpers`, shared with ``tests/cli/test_analyze.py``)."""

from tests.engine.helpers import counting, parity_sweep  # noqa: F401
