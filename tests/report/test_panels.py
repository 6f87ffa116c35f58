"""The representation panel's notes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.report.panels import _retention_note


def test_retention_above_one_is_explained_where_it_appears():
    table = pd.DataFrame({"budget": ["fixed", "fixed"], "lr": [0.01, 1.0], "test/retention@0.9": [1.07, 0.93]})
    note = _retention_note(table)
    assert "lr 0.01 (fixed): 1.07" in note and "more accurate than the dense one" in note and "lr 1 " not in note
    assert _retention_note(table.assign(**{"test/retention@0.9": [0.9, np.nan]})) == ""
