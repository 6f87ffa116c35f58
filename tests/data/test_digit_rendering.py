"""Digit datasets on the embedded scans: BC counts that scale with n_train, counterfactual-complete unbiased splits,
disjoint source pools, the palette, counterfactual rendering, option validation."""

import numpy as np
import pytest
import torch

from probe.data import build_dataset
from probe.data.colored_mnist import PALETTES, PRIMARIES, TAB10, colorize
from probe.data.digits import SOURCE_STRIDE, source_digit
from probe.errors import ProbeInputError

DIGIT_DATASETS = ("colored-mnist", "double-mnist")


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv("PROBE_DATA", raising=False)


@pytest.fixture(scope="module")
def colored():
    return build_dataset("colored-mnist", rho=0.99, seed=0)


@pytest.fixture(scope="module")
def double():
    return build_dataset("double-mnist", rho=0.99, seed=0)


def _group_counts(split, num_groups=100):
    counts = np.zeros(num_groups, dtype=int)
    for g in split.group.tolist():  # counted one sample at a time, independently of torch.bincount
        counts[g] += 1
    return counts


@pytest.mark.parametrize("name", DIGIT_DATASETS)
def test_default_gives_enough_bc_samples_and_full_test_groups(name, colored, double):
    ds = {"colored-mnist": colored, "double-mnist": double}[name]
    train = ds.train
    assert len(train) == 4000 and ds.options["n_train"] == 4000
    n_bc = sum(int(a != y) for a, y in zip(train.a.tolist(), train.y.tolist()))
    assert n_bc >= 40 and n_bc == int(train.is_bc.sum())
    counts = _group_counts(ds.splits["test"])
    assert counts.min() >= 20, counts.min()
    assert len(ds.splits["test"]) == 599 * 10  # every test digit of the embedded pool in all 10 attributes


@pytest.mark.parametrize("name", DIGIT_DATASETS)
@pytest.mark.parametrize(("n_train", "rho", "n_bc"), [(4000, 0.99, 40), (4000, 0.95, 200), (8000, 0.99, 80),
                                                     (1000, 0.9, 100)])
def test_bc_count_is_exactly_one_minus_rho_times_n_train(name, n_train, rho, n_bc):
    for seed in range(3):
        s = build_dataset(name, rho=rho, seed=seed, n_train=n_train).train
        assert sum(a != y for a, y in zip(s.a.tolist(), s.y.tolist())) == n_bc
        # the conflicting attributes are spread over the other classes: each of 10 x 9 (y, a != y) cells is allowed
        assert bool((s.a[s.is_bc] != s.y[s.is_bc]).all())


@pytest.mark.parametrize("name", DIGIT_DATASETS)
def test_splits_never_share_a_source_digit_and_indices_are_unique(name, colored, double):
    ds = {"colored-mnist": colored, "double-mnist": double}[name]
    sources = {}
    for split_name, s in ds.splits.items():
        index = s.index.tolist()
        assert len(set(index)) == len(index), split_name  # unique per sample within a split
        sources[split_name] = {i % SOURCE_STRIDE for i in index}
        assert torch.equal(source_digit(s.index), s.index % SOURCE_STRIDE)
    names = sorted(sources)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not sources[first] & sources[second], (first, second)
    assert sum(len(v) for v in sources.values()) == 1797  # every embedded digit is in exactly one split


def test_source_index_names_the_digit_that_was_rendered(colored):
    """``index % SOURCE_STRIDE`` is the position among scikit-learn's digits of the digit the sample shows."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16)
    labels = torch.from_numpy(load_digits().target)
    for s in colored.splits.values():
        src = source_digit(s.index)
        assert torch.equal(labels[src], s.y)
        # the strokes: x = gray * colour + noise, so the per-pixel channel sum correlates with the source digit
        picked = torch.arange(0, len(s), max(1, len(s) // 200))
        strokes = s.x[picked].sum(dim=1).flatten(1)
        grays = images[src[picked]].flatten(1)
        corr = torch.nn.functional.cosine_similarity(strokes, grays, dim=1)
        assert corr.min() > 0.9


@pytest.mark.parametrize("name", DIGIT_DATASETS)
def test_unbiased_splits_are_counterfactual_complete(name, colored, double):
    ds = {"colored-mnist": colored, "double-mnist": double}[name]
    for split_name in ("val", "test"):
        s = ds.splits[split_name]
        by_source: dict[int, set[int]] = {}
        for src, a in zip(source_digit(s.index).tolist(), s.a.tolist()):
            by_source.setdefault(src, set()).add(a)
        assert all(v == set(range(10)) for v in by_source.values())  # every digit once with every attribute
        assert len(s) == 10 * len(by_source)
    val_counts = _group_counts(ds.splits["val"])
    assert val_counts.min() >= 15  # 240 stratified validation digits: about 24 per group


def test_palette_has_no_zero_channel_and_primaries_keep_the_old_set():
    assert TAB10.min() > 0.05 and TAB10.max() <= 1
    assert (PRIMARIES == 0).sum() == 12
    # no two tab10 colours are orthogonal (disjoint channels), 18 pairs of the primaries are
    dots = TAB10 @ TAB10.T
    assert dots.min() > 0.05
    p_dots = PRIMARIES @ PRIMARIES.T
    assert int((p_dots == 0).sum()) == 18  # ordered pairs: 9 unordered orthogonal pairs counted twice
    ds = build_dataset("colored-mnist", palette="primaries", color_noise=0.0, pixel_noise=0.0, n_train=200)
    s = ds.train
    expected = colorize(s.x.amax(dim=1) / PRIMARIES[s.a].amax(dim=1)[:, None, None], s.a, torch.zeros(len(s), 3),
                        PRIMARIES)
    torch.testing.assert_close(s.x, expected)
    assert set(PALETTES) == {"tab10", "primaries"}


def test_pixels_are_gray_times_colour_plus_noise(colored):
    """Noise-free rebuild = gray * (palette + jitter); the default adds pixel noise with sd 0.02."""
    clean = build_dataset("colored-mnist", seed=0, color_noise=0.0, pixel_noise=0.0)
    s = clean.splits["test"]
    ratio = s.x / s.x.amax(dim=1, keepdim=True).clamp_min(1e-6)
    on = s.x.amax(dim=1) > 0.2
    colour = TAB10[s.a] / TAB10[s.a].amax(dim=1, keepdim=True)
    diff = (ratio.permute(0, 2, 3, 1) - colour[:, None, None, :]).abs()[on]
    assert diff.max() < 1e-5  # every stroke pixel has exactly the class colour's direction
    noise = colored.splits["test"].x - s.x  # same seed: same digits and attributes, the noises on top
    background = s.x.amax(dim=1, keepdim=True).expand_as(s.x) == 0
    assert abs(float(noise[background].std()) - 0.02) < 0.002


def test_colored_counterfactual_recolours_and_keeps_the_noise(colored):
    for split_name in ("train", "test"):
        s = colored.splits[split_name]
        pos = torch.arange(0, len(s), 37)
        same = colored.render_spurious(split_name, pos, s.a[pos])
        torch.testing.assert_close(same, s.x[pos])
        new_a = (s.a[pos] + 3) % 10
        flipped = colored.render_spurious(split_name, pos, new_a)
        if split_name == "test":  # the test split holds that very sample: same digit, same noise, colour new_a
            src = source_digit(s.index[pos])
            target = [int(torch.nonzero((source_digit(s.index) == sd) & (s.a == na)).item())
                      for sd, na in zip(src.tolist(), new_a.tolist())]
            # the rendered sample and the stored one differ only by their own jitter and pixel noise draws
            assert (flipped - s.x[target]).abs().mean() < 0.05
        assert (flipped - s.x[pos]).abs().mean() > 0.02


def test_double_counterfactuals_and_right_digits_from_the_same_pool(double):
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images.astype(np.float32) / 16).flatten(1)
    side = double.input_shape[1]
    for split_name, s in double.splits.items():
        pos = torch.arange(0, len(s), 53)
        cf = double.render_spurious(split_name, pos, (s.a[pos] + 1) % 10)
        torch.testing.assert_close(cf[..., :side], s.x[pos][..., :side])
        cc = double.render_core(split_name, pos, (s.y[pos] + 1) % 10)
        torch.testing.assert_close(cc[..., side:], s.x[pos][..., side:])
        # the right digit of every sample is a digit of this split's pool (found by exact pixel match)
        pool = set(source_digit(s.index).tolist())
        right = s.x[pos, 0, :, side:].flatten(1)
        for r in right:
            matches = set(torch.nonzero((images == r).all(dim=1)).flatten().tolist())
            assert matches & pool, split_name


@pytest.mark.parametrize(("option", "value", "match"), [
    ("palette", "rainbow", "palette must be one of tab10, primaries"),
    ("n_train", 0, "n_train must be a positive whole number"),
    ("n_train", 2.5, "n_train must be a positive whole number"),
    ("pixel_noise", -0.1, "pixel_noise must lie in"),
    ("color_noise", 2.0, "color_noise must lie in"),
    ("max_eval_digits", 0, "max_eval_digits must be a positive whole number"),
])
def test_bad_options_are_input_errors(option, value, match):
    with pytest.raises(ProbeInputError, match=match):
        build_dataset("colored-mnist", **{option: value})


def test_double_mnist_bad_n_train_and_eval_cap():
    with pytest.raises(ProbeInputError, match="n_train"):
        build_dataset("double-mnist", n_train=-3)
    ds = build_dataset("double-mnist", max_eval_digits=100, n_train=500)
    assert len(ds.splits["test"]) == 1000 and len(ds.splits["val"]) == 1000 and len(ds.train) == 500
