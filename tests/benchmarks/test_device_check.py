"""benchmarks/device_check.py runs its checks on the CPU at tiny sizes, without captum (the GPU machine lacks it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "device_check.py"


@pytest.mark.slow(seconds=60)
def test_quick_cpu_check_passes_without_captum(tmp_path):
    blocked = tmp_path / "no_captum" / "captum"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('captum is not installed on the GPU machine')\n")
    path = os.pathsep.join([str(blocked.parent), str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path / "dc")],
                          capture_output=True, text=True, timeout=900, cwd=REPO, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for check in ("waterbirds release written", "resnet50 sweep at 32 px", "resume after SIGKILL",
                  "divergence caught"):
        assert any(ln.startswith(f"PASS  {check}:") for ln in lines), done.stdout
    assert "minibatch losses equal: True" in done.stdout and "status diverged" in done.stdout
    rate = re.search(r"(PASS|MISS)  resnet50 training throughput: probe trainer ([\d.]+) images/s, reference loop "
                     r"([\d.]+) images/s, ratio ([\d.]+)", done.stdout)
    assert rate is not None, done.stdout
    ours, ref, ratio = map(float, rate.groups()[1:])
    assert ours > 0 and ref > 0 and ratio == pytest.approx(ours / ref, rel=1e-2)
    assert (rate.group(1) == "PASS") == (ratio >= 0.95)
    assert re.search(r"^4 passed, 0 failed", done.stdout, re.M)
