"""Presets: each resolves to the values docs/presets.md documents (one table here, compared with the page's), every
explicitly given value wins, and bad use is a one-line ProbeInputError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from probe.cli.options import parse_value
from probe.errors import ProbeInputError
from probe.train import TrainConfig
from probe.train.presets import PRESETS, apply_preset, get_preset

DOCS = Path(__file__).resolve().parents[2] / "docs" / "presets.md"

#: What each preset must resolve to (written from group_DRO's run_expt.py, train.py, README and data/*_dataset.py).
EXPECTED = {
    "waterbirds-erm": {
        "dataset": "waterbirds", "dataset_options": {"image_size": 224, "transform": "reference", "augment": False},
        "model": "resnet50", "optimizer": "sgd", "momentum": 0.9, "nesterov": False, "schedule": "constant",
        "warmup_steps": 0, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 128, "epochs": 300,
    },
    "celeba-erm": {
        "dataset": "celeba", "dataset_options": {"target": "Blond_Hair", "attribute": "Male", "image_size": 224,
                                                 "augment": False},
        "model": "resnet50", "optimizer": "sgd", "momentum": 0.9, "nesterov": False, "schedule": "constant",
        "warmup_steps": 0, "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 128, "epochs": 50,
    },
}


def test_the_presets_are_the_documented_ones():
    assert set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_preset_resolves_to_its_documented_values(name):
    values = apply_preset(name, {"weights": "w.pth"})
    assert values == {**EXPECTED[name], "weights": "w.pth", "preset": name}
    cfg = TrainConfig(**values).validate()  # every value is a valid configuration field
    assert cfg.preset == name and cfg.to_json()["preset"] == name


def _docs_table() -> dict[str, dict[str, object]]:
    """``field -> {preset: value}`` from the value table of docs/presets.md (rows ``| `field` | `v1` | `v2` | ...``)."""
    lines = DOCS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| value |"))
    names = [c.strip() for c in lines[start].strip("|").split("|")[1:3]]
    table: dict[str, dict[str, object]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):  # the end of the table
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key = cells[0].strip("`")
        table[key] = {n: _literal(c) for n, c in zip(names, cells[1:3])}
    return table


def _literal(cell: str) -> object:
    """A table cell's value, read as the command line reads ``KEY=VALUE`` (``1e-4`` -> 0.0001, ``true`` -> True)."""
    return parse_value(re.sub(r"^`|`$", "", cell))


def test_the_docs_table_equals_the_presets():
    table = _docs_table()
    for name, expected in EXPECTED.items():
        flat = {k: v for k, v in expected.items() if k != "dataset_options"}
        flat.update({f"dataset_options.{k}": v for k, v in expected["dataset_options"].items()})
        documented = {k: row[name] for k, row in table.items() if row[name] != "-"}
        assert documented == flat, name


def test_given_values_win_over_the_preset():
    values = apply_preset("waterbirds-erm", {
        "weights": "w.pth", "model": "resnet18", "lr": 0.05, "momentum": 0.0, "batch_size": 16, "nesterov": None,
        "dataset": "waterbirds", "dataset_options": {"image_size": 32, "data_root": "/d"}})
    assert values["model"] == "resnet18" and values["lr"] == 0.05 and values["momentum"] == 0.0
    assert values["batch_size"] == 16 and values["nesterov"] is False  # None counts as not given
    assert values["dataset_options"] == {"image_size": 32, "transform": "reference", "augment": False,
                                         "data_root": "/d"}
    assert values["weight_decay"] == 1e-4 and values["epochs"] == 300


def test_given_steps_replace_the_preset_epochs():
    values = apply_preset("celeba-erm", {"weights": "w.pth", "steps": 10})
    assert values["steps"] == 10 and "epochs" not in values
    TrainConfig(**values).validate()


def test_the_preset_is_read_only():
    with pytest.raises(TypeError):
        PRESETS["waterbirds-erm"].values["lr"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        PRESETS["waterbirds-erm"].values["dataset_options"]["transform"] = "probe"  # type: ignore[index]
    apply_preset("waterbirds-erm", {"weights": "w.pth", "dataset_options": {"transform": "probe"}})
    assert PRESETS["waterbirds-erm"].values["dataset_options"]["transform"] == "reference"


@pytest.mark.parametrize("name, explicit, message", [
    ("imagenet-erm", {"weights": "w.pth"}, "unknown preset 'imagenet-erm'; presets: waterbirds-erm, celeba-erm"),
    ("waterbirds-erm", {}, "--preset waterbirds-erm trains from ImageNet weights: give them with --weights FILE"),
    ("celeba-erm", {"weights": None}, "--preset celeba-erm trains from ImageNet weights"),
    ("celeba-erm", {"weights": "w.pth", "dataset": "waterbirds"}, "--dataset waterbirds contradicts it"),
])
def test_bad_use_is_one_line(name, explicit, message):
    with pytest.raises(ProbeInputError, match=re.escape(message)) as err:
        apply_preset(name, explicit)
    assert "\n" not in str(err.value)


def test_get_preset_names_its_source():
    assert "group_DRO" in get_preset("waterbirds-erm").source
