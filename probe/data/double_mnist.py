"""Double MNIST: two digits side by side, a dim core digit on the left and a bright spurious digit on the right.

An image is ``(1, S, 2S)``: the left half holds a digit of class ``y`` scaled to ``core_brightness`` (default 0.5),
the right half a digit of class ``a`` at full brightness. BA/BC rule: label space, bias-aligned iff ``a == y``.
Training: ``n_train`` samples rendered from the training digits, each copy of a left digit with its own draw of
``a`` and of the right digit: exactly ``round((1 - rho) * n_train)`` samples, at random, get ``a`` uniform over the
other classes, the rest ``a = y``. Validation and test:
every left digit of the pool once beside a right digit of each of the 10 classes (unbiased and
counterfactual-complete). Both digits of a sample come from its split's pool. The sample index names the left
(core) digit. Masks: the left half is the core region, the right half the spurious region. Counterfactuals put
another digit of the requested class (from the same pool) in the right (spurious) or left (core) half.
"""

from __future__ import annotations

import torch

from probe.data.base import (
    BC_RULE_LABEL_SPACE,
    Split,
    SpuriousDataset,
    check_image_size,
    check_rho,
    label_space_bc,
)
from probe.data.digits import (
    MAX_EVAL_DIGITS,
    check_count,
    check_n_train,
    counterfactual_complete,
    digit_pools,
    exact_spurious_attributes,
    sample_index,
    training_copies,
)
from probe.data.mnist import digit_pool
from probe.errors import ProbeInputError


def draw_of_class(labels: torch.Tensor, wanted: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each entry of ``wanted``, a random position ``j`` with ``labels[j] == wanted`` (uniform within class)."""
    out = torch.empty(len(wanted), dtype=torch.long)
    for c in wanted.unique().tolist():
        pool = torch.nonzero(labels == c).flatten()
        if len(pool) == 0:
            raise ProbeInputError(f"no digit of class {c} in the pool of {len(labels)} digits to draw from")
        sel = torch.nonzero(wanted == c).flatten()
        out[sel] = pool[torch.randint(0, len(pool), (len(sel),), generator=generator)]
    return out


def compose_pair(left: torch.Tensor, right: torch.Tensor, core_brightness: float) -> torch.Tensor:
    """``(n, S, S)`` left and right digits -> ``(n, 1, S, 2S)`` with ``x = [core_brightness * left | right]``."""
    return torch.cat([left * core_brightness, right], dim=-1).unsqueeze(1)


def double_mnist(
    rho: float = 0.95,
    seed: int = 0,
    image_size: int | None = None,
    n_train: int | None = None,
    core_brightness: float = 0.5,
    val_fraction: float = 0.2,
    max_eval_digits: int = MAX_EVAL_DIGITS,
    data_root: str | None = None,
) -> SpuriousDataset:
    """Build Double MNIST.

    Args:
        rho: fraction of bias-aligned training samples (default 0.95).
        seed: seed of the split and of every draw.
        image_size: side ``S`` of each digit; ``None`` keeps the source's size (8 embedded, 28 MNIST: 28x56).
        n_train: training samples rendered from the training digits; ``None``: 4000 for the embedded digits, one per
            training digit for MNIST.
        core_brightness: intensity of the left (core) digit in (0, 1]; the right digit has intensity 1.
        val_fraction: share of the training digits held out for the unbiased validation split (0: none).
        max_eval_digits: at most this many left digits in the validation and the test split (each beside all 10
            classes).
        data_root: folder with MNIST IDX files (or ``$PROBE_DATA``); ``None`` uses the embedded default digits.
    """
    rho = check_rho(rho, "double-mnist")
    if image_size is not None:
        image_size = check_image_size(image_size, "double-mnist")
    if not 0.0 < core_brightness <= 1.0:
        raise ProbeInputError(f"double-mnist: core_brightness must lie in (0, 1], got {core_brightness}")
    max_eval_digits = check_count(max_eval_digits, "double-mnist", "max_eval_digits")
    digits, root = digit_pool(data_root, seed)
    g = torch.Generator().manual_seed(seed)
    pools = digit_pools(digits, image_size, val_fraction, g, "double-mnist", max_eval_digits)
    n_train = check_n_train(n_train, digits, len(pools["train"]), "double-mnist")
    side = pools["train"].images.shape[-1]
    left_half = torch.zeros(side, 2 * side, dtype=torch.bool)
    left_half[:, :side] = True
    pair: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # per split: (left, right) positions in the pool
    splits: dict[str, Split] = {}
    for name, pool in pools.items():
        missing = sorted(set(range(10)) - set(pool.labels.tolist()))
        if missing:
            raise ProbeInputError(f"double-mnist: the {name} pool ({len(pool)} digits) has no digit of class "
                                  f"{missing[0]} to place on the right; give more digits or val_fraction=0")
        if name == "train":
            left, copy = training_copies(len(pool), n_train, g)
            y = pool.labels[left]
            a = exact_spurious_attributes(y, rho, 10, g)
        else:
            left, a = counterfactual_complete(len(pool), 10)
            y, copy = pool.labels[left], a
        right = draw_of_class(pool.labels, a, g)
        pair[name] = (left, right)
        n = len(y)
        splits[name] = Split(
            name=name,
            x=compose_pair(pool.images[left], pool.images[right], core_brightness),
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=sample_index(pool.ids[left], copy),
            num_attrs=10,
            core_mask=left_half.expand(n, side, 2 * side),
            spurious_mask=(~left_half).expand(n, side, 2 * side),
        )
    cf = torch.Generator().manual_seed(seed + 7919)

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        pool, positions = pools[split], positions.cpu()
        right = draw_of_class(pool.labels, new_a.cpu(), cf)
        return compose_pair(pool.images[pair[split][0][positions]], pool.images[right], core_brightness)

    def render_core(split: str, positions: torch.Tensor, new_y: torch.Tensor) -> torch.Tensor:
        pool, positions = pools[split], positions.cpu()
        left = draw_of_class(pool.labels, new_y.cpu(), cf)
        return compose_pair(pool.images[left], pool.images[pair[split][1][positions]], core_brightness)

    return SpuriousDataset(
        name="double-mnist",
        num_classes=10,
        num_attrs=10,
        input_shape=(1, side, 2 * side),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=digits.source,
        options=dict(rho=rho, seed=seed, image_size=image_size, n_train=n_train, core_brightness=core_brightness,
                     val_fraction=val_fraction, max_eval_digits=max_eval_digits, data_root=root),
        mask_note="core: left half (the dim digit); spurious: right half (the bright digit)",
        render_spurious=render_spurious,
        render_core=render_core,
    )
