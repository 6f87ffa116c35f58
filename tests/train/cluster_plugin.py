"""A probe plugin for the cluster tests: ``paced-mlp``, a plain MLP whose training forward passes sleep
``PROBE_TEST_PACE_S`` seconds when that variable is set (the numbers it computes never depend on it), so that a test
can interrupt a run between two committed epochs."""

from __future__ import annotations

import os
import time

from torch import nn

import probe
from tests.train.pace import PACE_ENV


class Pace(nn.Module):
    """Identity; sleeps ``$PROBE_TEST_PACE_S`` seconds per forward pass in training mode."""

    def forward(self, x):
        pace = float(os.environ.get(PACE_ENV, "0") or 0)
        if self.training and pace > 0:
            time.sleep(pace)
        return x


@probe.register_model("paced-mlp")
def paced_mlp(input_shape: tuple[int, ...], num_classes: int, width: int = 8) -> nn.Module:
    fan_in = 1
    for d in input_shape:
        fan_in *= d
    return nn.Sequential(Pace(), nn.Flatten(), nn.Linear(fan_in, width), nn.ReLU(), nn.Linear(width, num_classes))
