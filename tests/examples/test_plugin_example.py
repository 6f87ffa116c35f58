"""examples/plugin_sweep.sh runs, and runs again in the same folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.examples.helpers import files, run_script


@pytest.mark.slow(seconds=38)
def test_plugin_sweep_runs_twice_in_one_folder(tmp_path):
    """A second run in the same folder succeeds, reusing the trained runs (their epoch files are not written again)
    and writing the analysis and the heatmaps again."""
    first = run_script("plugin_sweep.sh", "checkpoints/bars", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = tmp_path / "checkpoints" / "bars"
    trained = {k: v for k, v in files(runs).items() if k.endswith(".h5")}
    assert len({Path(k).parent for k in trained}) == 4  # 2 rates x 2 seeds
    second = run_script("plugin_sweep.sh", "checkpoints/bars", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert {k: v for k, v in files(runs).items() if k.endswith(".h5")} == trained
    assert (tmp_path / "analyses" / "bars" / "claims.csv").is_file()
    assert list((tmp_path / "analyses" / "bars" / "attributions").glob("*_ig_bc_test.png"))
