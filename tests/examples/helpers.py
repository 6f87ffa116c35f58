"""What the example tests share: where the examples are, the environment of a script, a folder's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def script_env() -> dict[str, str]:
    """The environment of a script: this interpreter's ``probe`` console script first on ``PATH``."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bash examples/<name> args...`` in ``cwd``, output captured."""
    return subprocess.run(["bash", str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True,
                          env=script_env(), timeout=600)


def files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: relative name -> (size, modification time in ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}
