"""Fixtures of the store tests: a private copy of the tiny parity run, to damage at will."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def run_copy(tiny_parity_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny_parity_run, dst)
    return dst
