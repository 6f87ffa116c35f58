"""The example notebook executes from top to bottom (in a temporary folder) without an error."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
def test_notebook_executes(name, tmp_path):
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert (tmp_path / "analyses" / "example" / "report.html").is_file()
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figures rendered inline


@pytest.mark.slow
def test_double_mnist_example_gives_what_the_readme_states(tmp_path):
    """examples/double_mnist_sweep.sh runs end to end, and the verdicts the README quotes are the ones it produces."""
    import os
    import subprocess
    import sys

    import pandas as pd

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(EXAMPLES / "double_mnist_sweep.sh"), "checkpoints/dm"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    claims = pd.read_csv(tmp_path / "analyses" / "dm" / "claims.csv").set_index("claim")["verdict"]
    # the verdicts the README quotes that have a wide margin (effects 9 to 20 floors, adjusted p <= 0.002)
    agreeing = {"unbiased_acc_up", "probe_core_up", "probe_gap_up", "class_separation_up", "core_attr_share_up"}
    assert {c for c, v in claims.items() if v == "agrees"} == agreeing
    assert claims["wga_up"] == "not measurable" and claims["early_cmr_up"] == "not measurable"
    assert "disagrees" not in set(claims)
    runs = pd.read_csv(tmp_path / "analyses" / "dm" / "runs.csv")
    share = runs.groupby("lr")["final:test/core_attr_share@ig"].mean()
    assert share.iloc[0] < 0.3 and share.iloc[2:].min() > 0.4  # from the right digit to the left one
    assert list((tmp_path / "analyses" / "dm" / "attributions").glob("*_ig_bc_test.png"))
