"""Shared by the engine and `probe analyze` tests: a counting analysis, a small parity sweep to damage, helpers."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from probe.analyses.base import EPOCH_ANALYSES, EpochAnalysis, Option, load_analyses
from probe.train import run_sweep
from tests.conftest import tiny_parity_config

#: the option the counting analysis declares (its value enters the analysis's cache key).
COUNT_OPTION = Option("count_offset", "int", 0, "added to the counted records (for the cache tests)")


def strict_json(path: Path):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def counting(monkeypatch):
    """A registered record-level analysis ``count`` that counts its calls (removed after the test)."""
    calls = []

    def fn(ctx, epoch):
        calls.append((ctx.run.name, epoch))
        offset = ctx.option(COUNT_OPTION)
        return {"train": {"n_records": float(len(ctx.run.records("train", epoch)) + offset)}}

    load_analyses()
    monkeypatch.setitem(EPOCH_ANALYSES, "count", EpochAnalysis("count", fn, False, 1, (COUNT_OPTION,)))
    return calls


@pytest.fixture(scope="session")
def parity_sweep(tmp_path_factory):
    """Four parity runs (lr 0.03, 0.1, 0.3, 1), epochs 0..2 (the pass ends only: no early fractions); tests damage
    copies of it."""
    out = tmp_path_factory.mktemp("sweeps") / "parity"
    run_sweep(tiny_parity_config(epochs=2, early_fractions=()), out, {"lr": [0.03, 0.1, 0.3, 1.0]})
    return out


def copy_sweep(sweep: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sweep, tmp_path / "sweep", ignore=shutil.ignore_patterns(".lock")))


def flip_bit_in_place(path: Path, offset: int) -> None:
    """Flip one bit of ``path`` keeping its size and its modification time (bit rot, as a disk shows it)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
