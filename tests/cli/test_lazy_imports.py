"""Building the command line imports no heavy library: ``probe --help`` stays fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "scipy", "pandas", "sklearn", "matplotlib", "h5py", "captum")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_heavy_library():
    assert _loaded_after("import probe.cli; probe.cli.build_parser()") == []


def test_help_imports_no_heavy_library():
    code = "import probe.cli\ntry:\n    probe.cli.main(['analyze', '--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []


def test_the_help_text_lists_the_attribution_methods_torch_knows():
    from probe.analyses.attribution_methods import METHODS
    from probe.cli import attribute

    assert attribute.METHODS == METHODS


def test_the_modules_import_heavy_libraries_at_all():
    """The check above can fail: importing the attribution methods does load torch."""
    assert "torch" in _loaded_after("import probe.analyses.attribution_methods")
