"""Plugins: a dataset and a model defined in a module outside the package, loaded with ``--plugin``, recorded in
``run.json`` and imported again by name in fresh processes (``probe analyze``, ``probe attribute``, the reader)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from probe.analyses.claims import CLAIMS
from probe.cli import main, split_plugin_arguments
from probe.errors import ProbeInputError
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "plugin_example.py"
#: the example plugin, copied under another module name into a folder outside the package
MODULE = "my_probe_plugin"
SWEEP_ARGS = ["--model-option", "width=16", "--lr", "0.05", "0.5", "--epochs", "2", "--batch-size", "32",
              "--threads", "1", "--quiet"]
ANALYZE_ARGS = ["--model-epochs", "last", "--no-report", "--quiet"]


def run_probe(*args: str, plugin_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m probe.cli ARGS`` in a fresh process that finds the plugin only through ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(plugin_dir)])}
    return subprocess.run([sys.executable, "-m", "probe.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugins")
    shutil.copy(EXAMPLE, folder / f"{MODULE}.py")
    return folder


def unmeasured(analysis: Path) -> set[str]:
    """The claims whose metric an analysis did not produce: its column is missing from ``runs.csv`` or empty in every
    run."""
    runs = pd.read_csv(analysis / "runs.csv")
    return {c.name for c in CLAIMS if c.column not in runs or runs[c.column].isna().all()}


@pytest.mark.slow(seconds=35)
def test_a_plugin_run_is_analysed_and_attributed_in_fresh_processes(plugin_dir, tmp_path):
    sweep = tmp_path / "bars"
    res = run_probe("sweep", "--plugin", MODULE, "--dataset", "bars", "--data-option", "n_train=256",
                    "--data-option", "n_test=128", "--model", "plain-mlp", *SWEEP_ARGS, "--out", str(sweep),
                    plugin_dir=plugin_dir, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    for run_json in sweep.glob("*/run.json"):
        assert json.loads(run_json.read_text())["plugins"] == [MODULE]
    assert json.loads((sweep / "sweep.json").read_text())["plugins"] == [MODULE]
    res = run_probe("sweep", "--resume", "--quiet", "--out", str(sweep), plugin_dir=plugin_dir, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]  # sweep.json names the plugin

    # fresh processes without --plugin: run.json names the module
    res = run_probe("analyze", str(sweep), "--out", str(tmp_path / "analysis"), *ANALYZE_ARGS,
                    plugin_dir=plugin_dir, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "analysis" / "metrics.json").read_text())
    assert metrics["errors"] == [] and metrics["failures"] == []
    res = run_probe("attribute", str(sweep), "--method", "ig", "--n", "4", "--out", str(tmp_path / "attr"),
                    plugin_dir=plugin_dir, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert list((tmp_path / "attr").glob("*_ig_bc_test.png"))

    # the plugin's dataset has groups, a validation split and masks: the analysis measures every claim's metric
    assert unmeasured(tmp_path / "analysis") == set()


@pytest.mark.slow
def test_the_reader_imports_the_recorded_plugin_in_a_fresh_process(plugin_dir, tmp_path):
    out = tmp_path / "run"
    res = run_probe("train", "--dataset", "bars", "--data-option", "n_train=64", "--data-option", "n_test=32",
                    "--model", "plain-mlp", "--lr", "0.1", "--epochs", "1", "--quiet", "--out", str(out),
                    "--plugin", MODULE, plugin_dir=plugin_dir, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    script = (f"import probe; run = probe.open_run({str(out)!r}); m = run.model(); d = run.dataset(); "
              "print(type(m).__name__, m.head.out_features, d.name, sorted(m.state_dict())[0], run.plugins)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(plugin_dir)])}
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == ["LastLinearSplit", "2", "bars", "1.bias", f"[{MODULE!r}]"]

    # the plugin gone from the import path: a one-line error naming it, exit 2, before anything is analysed
    for command in (["attribute", str(out), "--n", "2"], ["analyze", str(out), "--quiet"]):
        res = run_probe(*command, "--out", str(tmp_path / command[0]), plugin_dir=tmp_path / "elsewhere",
                        cwd=tmp_path)
        assert res.returncode == 2
        assert res.stderr.strip().splitlines() == [f"probe: error: plugin module {MODULE!r} cannot be imported; "
                                                   "install it or put its folder on PYTHONPATH"]


def test_a_plugin_that_fails_to_import_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('no GPU here')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["--plugin", "broken_plugin", "info", str(tmp_path)]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["probe: error: plugin module 'broken_plugin' failed to import: RuntimeError: no GPU here"]
    assert main(["info", str(tmp_path), "--plugin", "no_such_plugin_module"]) == 2
    assert "plugin module 'no_such_plugin_module' cannot be imported" in capsys.readouterr().err
    assert main(["info", str(tmp_path), "--plugin", "../evil.py"]) == 2
    assert "is not a module name" in capsys.readouterr().err


def test_plugin_arguments_are_taken_before_and_after_the_command():
    assert split_plugin_arguments(["--plugin", "a", "train", "--plugin=b.c", "--lr", "1", "--", "--plugin", "x"]) == (
        ["a", "b.c"], ["train", "--lr", "1", "--", "--plugin", "x"])
    with pytest.raises(ProbeInputError, match="--plugin needs a module name"):
        split_plugin_arguments(["train", "--plugin"])


def test_run_json_names_plugins_by_module_name_only(tiny_parity_run, tmp_path):
    import probe
    from probe.errors import DamagedFileError

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_parity_run, run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["plugins"] == []  # built-in dataset and model
    for stored in (["/tmp/evil.py"], ["../evil"], "evil", [3]):
        (run_dir / "run.json").write_text(json.dumps({**info, "plugins": stored}))
        run = probe.open_run(run_dir)
        with pytest.raises(DamagedFileError, match="plugins must be a list of module names"):
            run.model()
    assert "evil" not in sys.modules


def test_installed_packages_declare_plugins_as_entry_points(tmp_path):
    """A distribution's ``probe.plugins`` entry point is loaded by every command, without --plugin."""
    (tmp_path / "ep_plugin.py").write_text(
        "import probe\nfrom probe.data.parity import parity\nprobe.register_dataset('parity-copy')(parity)\n")
    dist = tmp_path / "ep_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[probe.plugins]\nparity_copy = ep_plugin\n")
    res = run_probe("data", "list", plugin_dir=tmp_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "parity-copy: rho=0.95" in res.stdout

    (dist / "entry_points.txt").write_text("[probe.plugins]\nbroken = ep_plugin_missing\n")
    res = run_probe("data", "list", plugin_dir=tmp_path, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "probe: error: plugin entry point 'broken' (ep_plugin_missing) failed to load: ModuleNotFoundError: No module "
        "named 'ep_plugin_missing'"]
