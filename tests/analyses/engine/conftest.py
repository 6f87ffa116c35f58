"""Fixtures of the engine tests (defined in :mod:`tests.analyses.engine.helpers`, shared with
``tests/cli/test_analyze.py``)."""

from tests.analyses.engine.helpers import counting, parity_sweep  # noqa: F401
