"""Sparse parity with a spurious bit: ``x`` in {-1, +1}^d, ``y`` = parity of ``k`` core bits, and one (or a few)
spurious bits that agree with ``y`` with probability ``rho`` in training and are independent of it at test time.

BA/BC rule: label space, bias-aligned iff ``a == y`` (``a`` is the label the spurious bits encode). Masks mark the
core bits and the spurious bits (feature masks of shape ``(d,)``). Counterfactuals flip the spurious bits (new ``a``)
or one core bit (new ``y``).
"""

from __future__ import annotations

import torch

from probe.data.base import (
    BC_RULE_LABEL_SPACE,
    Split,
    SpuriousDataset,
    check_rho,
    label_space_bc,
    spurious_attributes,
    unbiased_attributes,
)
from probe.errors import ProbeInputError


def parity(
    rho: float = 0.95,
    seed: int = 0,
    dim: int = 20,
    core_bits: int = 3,
    spurious_bits: int = 1,
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 1000,
) -> SpuriousDataset:
    """Build the parity dataset.

    Args:
        rho: fraction of training samples whose spurious bits agree with ``y``.
        seed: seed of every draw.
        dim: ``d``, total number of bits.
        core_bits: ``k``, bits ``0..k-1`` whose parity is the label.
        spurious_bits: bits ``k..k+s-1``, each equal to ``+1`` if ``a == 1`` else ``-1``.
        n_train, n_val, n_test: split sizes (validation and test are unbiased).
    """
    rho = check_rho(rho, "parity")
    if core_bits < 1 or spurious_bits < 1 or core_bits + spurious_bits > dim:
        raise ProbeInputError(
            f"parity: need 1 <= core_bits, 1 <= spurious_bits and core_bits + spurious_bits <= dim, "
            f"got core_bits={core_bits}, spurious_bits={spurious_bits}, dim={dim}"
        )
    g = torch.Generator().manual_seed(seed)
    core = torch.zeros(dim, dtype=torch.bool)
    core[:core_bits] = True
    spur = torch.zeros(dim, dtype=torch.bool)
    spur[core_bits : core_bits + spurious_bits] = True

    splits: dict[str, Split] = {}
    offset = 0
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        x = torch.randint(0, 2, (n, dim), generator=g).float() * 2 - 1
        y = ((x[:, :core_bits] < 0).sum(dim=1) % 2).long()
        a = spurious_attributes(y, rho, 2, g) if name == "train" else unbiased_attributes(n, 2, g)
        x[:, spur] = (a.float() * 2 - 1)[:, None]
        splits[name] = Split(
            name=name,
            x=x,
            y=y,
            a=a,
            is_bc=label_space_bc(y, a),
            index=torch.arange(n) + offset,
            num_attrs=2,
            core_mask=core.expand(n, dim).clone(),
            spurious_mask=spur.expand(n, dim).clone(),
        )
        offset += 1_000_000

    def render_spurious(split: str, positions: torch.Tensor, new_a: torch.Tensor) -> torch.Tensor:
        x = splits[split].x[positions.to(splits[split].x.device)].clone()
        x[:, spur] = (new_a.to(x.device).float() * 2 - 1)[:, None]
        return x

    def render_core(split: str, positions: torch.Tensor, new_y: torch.Tensor) -> torch.Tensor:
        s = splits[split]
        x = s.x[positions.to(s.x.device)].clone()
        flip = new_y.to(x.device) != s.y[positions.to(s.y.device)].to(x.device)
        x[flip, 0] = -x[flip, 0]
        return x

    return SpuriousDataset(
        name="parity",
        num_classes=2,
        num_attrs=2,
        input_shape=(dim,),
        splits=splits,
        bc_rule=BC_RULE_LABEL_SPACE,
        source=f"generated: d={dim}, {core_bits} core bits, {spurious_bits} spurious bit(s)",
        options=dict(rho=rho, seed=seed, dim=dim, core_bits=core_bits, spurious_bits=spurious_bits,
                     n_train=n_train, n_val=n_val, n_test=n_test),
        mask_note="feature masks: core bits and spurious bits",
        render_spurious=render_spurious,
        render_core=render_core,
    )
