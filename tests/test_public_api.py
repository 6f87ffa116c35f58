"""The public API: what ``import probe`` gives, each name documented with an example, loaded on first use."""

from __future__ import annotations

import configparser
import subprocess
import sys

import pytest

import probe
from tests.conftest import REPO, tiny_parity_config


def test_import_probe_loads_nothing_heavy():
    code = "import sys, probe; print(sorted(m for m in sys.modules if m.startswith(('probe', 'torch', 'h5py'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "['probe', 'probe.lazy']"


@pytest.mark.parametrize("name", sorted(set(probe.__all__) - {"__version__"}))
def test_every_public_name_resolves_with_a_docstring_and_an_example(name):
    value = getattr(probe, name)
    assert value.__doc__ and "Example" in value.__doc__, f"probe.{name} needs a docstring with an example"


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        probe.trian  # noqa: B018


def test_probe_train_is_the_package_and_trains_when_called(tmp_path):
    import probe.train

    assert probe.train.TrainConfig is probe.TrainConfig
    result = probe.train(tiny_parity_config(epochs=1), tmp_path / "run")
    assert result.status == "complete" and result.epochs_committed == [0, 1]
    assert probe.open_run(tmp_path / "run").status == "complete"


def test_the_version_has_one_place_and_the_package_is_typed():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: probe.__version__"
    assert "py.typed" in cfg["options.package_data"]["probe"]
    assert (REPO / "probe" / "py.typed").is_file()
    assert probe.__version__.count(".") == 2
