"""The notebook executes in a folder it is given (writing nothing into the repository) and its saved outputs have the
structure of a fresh execution."""

from __future__ import annotations

import json

import pytest

from tests.examples.helpers import EXAMPLES, files

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def _outputs(cell) -> list:
    """A code cell's outputs with consecutive pieces of one stream joined (how a stream is cut into pieces depends on
    timing, not on the notebook)."""
    merged: list = []
    for out in cell.get("outputs", []):
        if merged and out["output_type"] == "stream" == merged[-1]["output_type"] and out["name"] == merged[-1]["name"]:
            continue
        merged.append(out)
    return merged


def structure(nb) -> list[tuple]:
    """Per cell: its type and, per output, the output type, the stream name and the sorted MIME types (no values)."""
    return [(cell.cell_type, tuple((out["output_type"], out.get("name", ""), tuple(sorted(out.get("data", {}))))
                                   for out in _outputs(cell)))
            for cell in nb.cells]


def n_images(nb) -> list[int]:
    """Per cell, the number of ``image/png`` outputs."""
    return [sum("image/png" in out.get("data", {}) for out in cell.get("outputs", [])) for cell in nb.cells]


def test_structure_ignores_values_but_not_shape():
    """The comparison sees a lost figure or a new output type, and not a changed number or a stream cut in two."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("x", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="a 1\n"),
            nbformat.v4.new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"})])])
    same = nbformat.from_dict(nb)
    same.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="a "),
                             nbformat.v4.new_output("stream", name="stdout", text="2\n"),
                             nbformat.v4.new_output("display_data", data={"image/png": "BBBB", "text/plain": "<F>"})]
    assert structure(same) == structure(nb) and n_images(same) == n_images(nb)
    lost = nbformat.from_dict(nb)
    lost.cells[1].outputs = lost.cells[1].outputs[:1]
    assert structure(lost) != structure(nb) and n_images(lost) != n_images(nb)
    stderr = nbformat.from_dict(nb)
    stderr.cells[1].outputs[0]["name"] = "stderr"
    assert structure(stderr) != structure(nb)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_saved_with_its_outputs(name):
    """Every code cell was executed and kept its outputs; none is an error; no temporary folder shows."""
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code)
    outputs = [out for cell in code for out in cell.outputs]
    assert outputs and not [out for out in outputs if out["output_type"] == "error"]
    assert sum(n_images(nb)) >= 4
    shown = json.dumps([out for cell in code for out in cell.outputs])
    assert "/tmp/" not in shown and "probe-example-" not in shown


@pytest.mark.slow(seconds=40)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_like_its_saved_outputs(name, tmp_path, monkeypatch):
    """A fresh execution (from ``examples/``, writing into ``PROBE_EXAMPLE_DIR``) has the saved notebook's cells,
    output types and figures, writes nothing under ``examples/``, and leaves the report in its folder."""
    saved = nbformat.read(EXAMPLES / name, as_version=4)
    fresh = nbformat.read(EXAMPLES / name, as_version=4)
    work = tmp_path / "work"
    monkeypatch.setenv("PROBE_EXAMPLE_DIR", str(work))
    before = files(EXAMPLES)
    nbclient.NotebookClient(fresh, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    assert files(EXAMPLES) == before
    errors = [out for cell in fresh.cells for out in cell.get("outputs", []) if out["output_type"] == "error"]
    assert not errors
    assert len(fresh.cells) == len(saved.cells)
    assert [c.cell_type for c in fresh.cells] == [c.cell_type for c in saved.cells]
    assert n_images(fresh) == n_images(saved)
    assert structure(fresh) == structure(saved)
    assert (work / "analyses" / "report.html").is_file()
