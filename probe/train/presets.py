"""Reference training protocols as presets: ``probe train --preset waterbirds-erm --weights resnet50.pth ...``.

A preset fills the training values the command line leaves out; every value given explicitly wins. Both presets are
the ERM set-ups of group_DRO (Sagawa et al. 2020, github kohpangwei/group_DRO: the README's ``run_expt.py`` commands
without ``--reweight_groups --robust``): ResNet-50 from ImageNet weights, SGD with momentum 0.9, constant learning
rate, no augmentation, group_DRO's image geometry. ``docs/presets.md`` gives every value with its source and the DFR
(Kirichenko et al. 2022) values where they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from probe.errors import ProbeInputError


@dataclass(frozen=True)
class Preset:
    """One reference protocol: ``values`` are :class:`~probe.train.TrainConfig` field names -> values (the dataset
    options are merged key by key with the ones given), ``source`` names where they come from."""

    name: str
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)
    #: the weights the protocol starts from, named in the error when ``--weights`` is missing
    weights: str = "torchvision's ImageNet ResNet-50, IMAGENET1K_V1 (the references' pretrained=True)"


def _frozen(values: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in values.items()})


_SHARED = dict(model="resnet50", optimizer="sgd", momentum=0.9, nesterov=False, schedule="constant", warmup_steps=0)

#: Preset name -> :class:`Preset` (read-only).
PRESETS: Mapping[str, Preset] = MappingProxyType({
    "waterbirds-erm": Preset(
        name="waterbirds-erm",
        source="group_DRO run_expt.py / train.py, README Waterbirds command without --reweight_groups --robust",
        values=_frozen(dict(dataset="waterbirds", dataset_options=dict(image_size=224, transform="reference",
                                                                        augment=False),
                            **_SHARED, lr=1e-3, weight_decay=1e-4, batch_size=128, epochs=300)),
    ),
    "celeba-erm": Preset(
        name="celeba-erm",
        source="group_DRO run_expt.py / train.py, README CelebA command without --reweight_groups --robust",
        values=_frozen(dict(dataset="celeba", dataset_options=dict(target="Blond_Hair", attribute="Male",
                                                                    image_size=224, augment=False),
                            **_SHARED, lr=1e-4, weight_decay=1e-4, batch_size=128, epochs=50)),
    ),
})


def preset_names() -> str:
    return ", ".join(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a one-line :class:`ProbeInputError` listing the presets otherwise."""
    if name not in PRESETS:
        raise ProbeInputError(f"unknown preset {name!r}; presets: {preset_names()}")
    return PRESETS[name]


def apply_preset(name: str, explicit: Mapping[str, Any]) -> dict[str, Any]:
    """The training values of preset ``name`` with every explicitly given value in their place.

    ``explicit`` maps :class:`~probe.train.TrainConfig` field names to the values given on the command line (a value
    of None counts as not given). The result holds every field the preset sets, the given ones and ``preset``:
    ``dataset_options`` are the preset's updated by the given ones; a given ``steps`` drops the preset's ``epochs``.

    Raises :class:`ProbeInputError` (one line) for an unknown preset, for missing ``weights`` (the presets train from
    ImageNet weights) and for a ``dataset`` other than the preset's (its dataset options would not apply).
    """
    preset = get_preset(name)
    given = {k: v for k, v in explicit.items() if v is not None}
    if "weights" not in given:
        raise ProbeInputError(f"--preset {name} trains from ImageNet weights: give them with --weights FILE "
                              f"({preset.weights}; docs/presets.md)")
    dataset = preset.values["dataset"]
    if given.get("dataset", dataset) != dataset:
        raise ProbeInputError(f"--preset {name} trains {dataset}; --dataset {given['dataset']} contradicts it "
                              "(leave --dataset out, or leave out --preset)")
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in preset.values.items()}
    if "steps" in given:
        out.pop("epochs")
    options = {**out.pop("dataset_options"), **dict(given.pop("dataset_options", None) or {})}
    out.update(given)
    out["dataset_options"] = options
    out["preset"] = name
    return out
