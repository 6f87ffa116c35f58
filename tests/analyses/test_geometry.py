"""Class separation and selectivity: constructed cases with known values and brute-force loops on random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cosine

from probe.analyses.geometry import (
    attr_selectivity,
    attr_separation,
    class_selectivity,
    class_separation,
    selectivity,
    separation_sample_count,
    unit_selectivity,
)
from probe.errors import ProbeInputError

E1, E2 = [1.0, 0.0], [0.0, 1.0]


def _brute_separation(x, labels):
    """Kornblith et al.'s definition term by term with scipy's cosine distance (zero rows left out)."""
    x = np.abs(np.asarray(x, dtype=float))
    keep = [i for i in range(len(x)) if np.any(x[i] != 0)]
    classes = sorted({labels[i] for i in keep})
    members = {c: [i for i in keep if labels[i] == c] for c in classes}

    def mean_distance(j, k):
        return np.mean([cosine(x[m], x[n]) for m in members[j] for n in members[k]])

    within = np.mean([mean_distance(c, c) for c in classes])
    total = np.mean([mean_distance(j, k) for j, k in itertools.product(classes, classes)])
    return 1 - within / total


def _brute_selectivity(x, labels):
    x = np.abs(np.asarray(x, dtype=float))
    classes = sorted(set(labels.tolist()))
    values = []
    for u in range(x.shape[1]):
        means = [np.mean([x[i, u] for i in range(len(x)) if labels[i] == c]) for c in classes]
        top = max(means)
        if top == 0:
            continue
        rest = (sum(means) - top) / (len(means) - 1)
        values.append((top - rest) / (top + rest))
    return float(np.mean(values))


def test_separation_of_constructed_features():
    assert class_separation([E1, E1, E2, E2], [0, 0, 1, 1]) == pytest.approx(1.0)  # orthogonal classes
    assert class_separation([E1, E2, E1, E2], [0, 0, 1, 1]) == pytest.approx(0.0)  # same mix in both
    # class 0 = {e1, e1}, class 1 = {e1, e2}: d_within = 0.25, d_total = 0.375
    assert class_separation([E1, E1, E1, E2], [0, 0, 1, 1]) == pytest.approx(1 / 3)
    # |features|: a negated copy has the same direction
    assert class_separation([[-1.0, 0.0], E1, E2, E2], [0, 0, 1, 1]) == pytest.approx(1.0)
    # every sample along one direction: no spread at all
    assert np.isnan(class_separation([E1, E1, E1, E1], [0, 0, 1, 1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separation_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(23, 5)), 0)
    x[3] = 0.0  # a dead sample is left out
    labels = rng.integers(0, 3, 23)
    assert class_separation(x, labels) == pytest.approx(_brute_separation(x, labels), abs=1e-12)
    a = rng.integers(0, 2, 23)
    assert attr_separation(x, a) == pytest.approx(_brute_separation(x, a), abs=1e-12)


def test_selectivity_of_constructed_units():
    labels = np.array([0, 0, 1, 1])
    x = np.array(
        [
            # unit 0 fires for class 0 only -> 1; unit 1 equal in both -> 0;
            # unit 2 class means 3 and 1 -> 0.5; unit 3 dead -> inactive, left out
            [2.0, 1.0, 3.0, 0.0],
            [4.0, 1.0, 3.0, 0.0],
            [0.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, 1.0, 0.0],
        ]
    )
    per_unit = unit_selectivity(x, labels)
    assert per_unit[:3] == pytest.approx([1.0, 0.0, 0.5])
    assert np.isnan(per_unit[3])
    assert selectivity(x, labels) == pytest.approx(0.5)
    # three classes with means 4, 1, 3: mu_rest = 2 -> (4 - 2) / (4 + 2)
    assert selectivity([[4.0], [1.0], [3.0]], [0, 1, 2]) == pytest.approx(1 / 3)
    assert np.isnan(selectivity(np.zeros((4, 2)), labels))


@pytest.mark.parametrize("seed", [0, 1])
def test_selectivity_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(30, 6)), 0)
    x[:, 2] = 0.0
    y, a = rng.integers(0, 4, 30), rng.integers(0, 2, 30)
    assert class_selectivity(x, y) == pytest.approx(_brute_selectivity(x, y), abs=1e-12)
    assert attr_selectivity(x, a) == pytest.approx(_brute_selectivity(x, a), abs=1e-12)


def test_geometry_rejects_bad_input():
    with pytest.raises(ProbeInputError):
        class_separation([E1, E2], [0, 0])
    with pytest.raises(ProbeInputError):
        selectivity([E1, E2], [0, 1, 1])
    with pytest.raises(ProbeInputError):
        class_separation([1.0, 2.0], [0, 1])


def test_n_features_counts_the_samples_separation_uses():
    rng = np.random.default_rng(3)
    x = np.abs(rng.normal(size=(30, 4))) + 0.1
    x[[2, 7, 11]] = 0.0  # three samples without a direction
    x[5] = [-0.0, 0.0, 0.0, -0.0]  # negative zero is zero too
    x[9, :3] = 0.0  # one non-zero entry is enough
    labels = rng.integers(0, 3, 30)
    assert separation_sample_count(x) == sum(1 for row in x if any(v != 0 for v in row)) == 26
    keep = np.any(x != 0, axis=1)
    # separation of all samples equals separation of the counted ones alone
    assert class_separation(x, labels) == pytest.approx(class_separation(x[keep], labels[keep]))
    with pytest.raises(ProbeInputError):
        separation_sample_count(np.zeros(4))
