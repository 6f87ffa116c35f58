"""No load path runs pickle: the only unpickler is the restricted CIFAR one; numpy and torch loads refuse pickles."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "probe"


def _sources():
    return {p: p.read_text() for p in PACKAGE.rglob("*.py")}


def test_no_unrestricted_unpickling_anywhere_in_the_package():
    offenders = []
    for path, text in _sources().items():
        for n, line in enumerate(text.splitlines(), 1):
            if re.search(r"\bpickle\.loads?\(|\bjoblib\.load\(|\bpd\.read_pickle\(|\bdill\.", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
            if "np.load(" in line and "allow_pickle=False" not in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []


def test_the_only_unpickler_subclasses_are_restricted():
    users = {p.name for p, text in _sources().items() if "pickle.Unpickler" in text}
    assert users == {"cifar.py"}
    text = (PACKAGE / "data" / "cifar.py").read_text()
    assert "def find_class" in text
