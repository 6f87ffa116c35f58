"""Pretrained weights: torchvision-layout state dicts (random values) load strictly into probe's ResNets, and the
logits equal an independent functional forward over the torchvision-named tensors; hostile and mismatched files are
refused with one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from probe.errors import ProbeInputError
from probe.models import build_model
from probe.models.weights import (
    file_sha256,
    load_pretrained,
    probe_to_torchvision_key,
    read_state_dict,
    torchvision_to_probe_key,
)

#: name -> (bottleneck blocks?, blocks per stage, inner width factor of a bottleneck)
ARCHS = {
    "resnet18": (False, [2, 2, 2, 2], 1),
    "resnet50": (True, [3, 4, 6, 3], 1),
    "resnet101": (True, [3, 4, 23, 3], 1),
    "wide_resnet50_2": (True, [3, 4, 6, 3], 2),
    "wide_resnet101_2": (True, [3, 4, 23, 3], 2),
}


def torchvision_shapes(name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of torchvision's ``name`` (written from torchvision's ResNet definition:
    ``width = planes * width_per_group / 64``, expansion 4 for bottlenecks), without the BN counters."""
    bottleneck, layers, factor = ARCHS[name]
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    shapes.update(bn_shapes("bn1", 64))
    in_planes = 64
    for i, n in enumerate(layers):
        planes = 64 * 2**i
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                inner, out = planes * factor, planes * 4
                shapes[f"{p}.conv1.weight"] = (inner, in_planes, 1, 1)
                shapes.update(bn_shapes(f"{p}.bn1", inner))
                shapes[f"{p}.conv2.weight"] = (inner, inner, 3, 3)
                shapes.update(bn_shapes(f"{p}.bn2", inner))
                shapes[f"{p}.conv3.weight"] = (out, inner, 1, 1)
                shapes.update(bn_shapes(f"{p}.bn3", out))
            else:
                out = planes
                shapes[f"{p}.conv1.weight"] = (out, in_planes, 3, 3)
                shapes.update(bn_shapes(f"{p}.bn1", out))
                shapes[f"{p}.conv2.weight"] = (out, out, 3, 3)
                shapes.update(bn_shapes(f"{p}.bn2", out))
            if stride != 1 or in_planes != out:
                shapes[f"{p}.downsample.0.weight"] = (out, in_planes, 1, 1)
                shapes.update(bn_shapes(f"{p}.downsample.1", out))
            in_planes = out
    shapes["fc.weight"] = (num_classes, in_planes)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def bn_shapes(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")}


def random_torchvision_state(name: str, num_classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in torchvision's layout: He-scaled conv weights, BN scales in [0.5, 1], shifts and running
    means near 0, running variances in [0.5, 1.5] (positive), and the BN counters torchvision files carry."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_shapes(name, num_classes).items():
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN scale
            state[key] = 0.5 + 0.5 * torch.rand(shape, generator=g)
        else:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    for key in [k for k in state if k.endswith("running_var")]:
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    return state


def functional_resnet(state: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet forward in eval mode, written with torch.nn.functional over torchvision's key names."""
    bottleneck, layers, _ = ARCHS[name]

    def bn(t, p):
        return F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)

    out = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    out = F.max_pool2d(out, 3, 2, 1)
    for i, n in enumerate(layers):
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                h = F.relu(bn(F.conv2d(out, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
                h = F.relu(bn(F.conv2d(h, state[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
                h = bn(F.conv2d(h, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            else:
                h = F.relu(bn(F.conv2d(out, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
                h = bn(F.conv2d(h, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                short = bn(F.conv2d(out, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            else:
                short = out
            out = F.relu(h + short)
    features = F.adaptive_avg_pool2d(out, 1).flatten(1)
    return F.linear(features, state["fc.weight"], state["fc.bias"])


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------------------ key mapping

@pytest.mark.parametrize("tv, probe_key", [
    ("conv1.weight", "stem.0.weight"),
    ("bn1.running_var", "stem.1.running_var"),
    ("layer1.0.conv2.weight", "stages.0.0.conv2.weight"),
    ("layer4.2.bn3.bias", "stages.3.2.bn3.bias"),
    ("layer3.22.conv1.weight", "stages.2.22.conv1.weight"),
    ("layer2.0.downsample.0.weight", "stages.1.0.shortcut.0.weight"),
    ("layer2.0.downsample.1.num_batches_tracked", "stages.1.0.shortcut.1.num_batches_tracked"),
    ("fc.bias", "head.bias"),
])
def test_the_key_mapping_and_its_inverse(tv, probe_key):
    assert torchvision_to_probe_key(tv) == probe_key
    assert probe_to_torchvision_key(probe_key) == tv


@pytest.mark.parametrize("name", list(ARCHS))
def test_the_torchvision_layout_names_every_tensor_of_probes_model(name):
    """Key for key and shape for shape (on the meta device): the mapped torchvision layout is the model's."""
    with torch.device("meta"):
        model = build_model(name, (3, 224, 224), 1000)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapped = {torchvision_to_probe_key(k): s for k, s in torchvision_shapes(name, 1000).items()}
    assert own == mapped


@pytest.mark.parametrize("name, count", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("resnet101", 44_549_160),
    ("wide_resnet50_2", 68_883_240), ("wide_resnet101_2", 126_886_696),
])
def test_parameter_counts_are_torchvisions(name, count):
    """The parameter counts torchvision's model documentation lists for its ImageNet models (1000 classes)."""
    with torch.device("meta"):
        model = build_model(name, (3, 224, 224), 1000)
    assert sum(p.numel() for p in model.parameters()) == count


# ------------------------------------------------------------------------------------------------ logits

def check_logits(name: str, tmp_path: Path, batch: int, suffixes=(".safetensors", ".pth")) -> None:
    state = random_torchvision_state(name, num_classes=5)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = functional_resnet(state, name, x)
    scale = float(want.abs().max())
    assert 1e-2 < scale < 1e4  # the random weights keep the logits in a range where the tolerance means something
    for suffix in suffixes:
        path = save(state, tmp_path / f"{name}{suffix}")
        torch.manual_seed(123)
        model = build_model(name, (3, 224, 224), 5)
        assert load_pretrained(model, read_state_dict(path), source=str(path)) == "kept"
        with torch.no_grad():
            got = model.eval()(x)
        # float32 through up to 100 layers in two summation orders: agreement to 1e-5 of the logit scale
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_give_the_functional_logits(name, tmp_path):
    check_logits(name, tmp_path, batch=2)


@pytest.mark.slow(seconds=20)
@pytest.mark.parametrize("name", ["resnet101", "wide_resnet50_2", "wide_resnet101_2"])
def test_torchvision_weights_give_the_functional_logits_deep_and_wide(name, tmp_path):
    check_logits(name, tmp_path, batch=1, suffixes=(".safetensors",))  # .pth: resnet18 and resnet50 above


def test_a_checkpoint_wrapping_the_state_dict_loads(tmp_path):
    state = random_torchvision_state("resnet18", 5)
    for wrapper in ("state_dict", "model"):
        path = tmp_path / f"{wrapper}.pth"
        torch.save({wrapper: state, "epoch": 3}, path)
        got = read_state_dict(path)
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "dp.pt")
    assert read_state_dict(tmp_path / "dp.pt").keys() == state.keys()


def test_file_sha256_is_hashlibs(tmp_path):
    import hashlib

    path = tmp_path / "w.pth"
    path.write_bytes(os.urandom(3 << 20))
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ the head

def test_a_head_for_another_class_count_is_replaced_and_one_that_fits_is_kept():
    state = random_torchvision_state("resnet18", num_classes=1000)
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 224, 224), 2)
    fresh = {k: v.clone() for k, v in model.head.state_dict().items()}
    assert load_pretrained(model, state) == "replaced"
    assert all(torch.equal(model.head.state_dict()[k], fresh[k]) for k in fresh)
    assert torch.equal(model.stem[0].weight, state["conv1.weight"])
    assert torch.equal(model.stages[1][0].shortcut[1].running_var, state["layer2.0.downsample.1.running_var"])

    state2 = random_torchvision_state("resnet18", num_classes=2)
    assert load_pretrained(model, state2) == "kept"
    assert torch.equal(model.head.weight, state2["fc.weight"]) and torch.equal(model.head.bias, state2["fc.bias"])


def test_a_headless_file_keeps_the_fresh_head_and_counters_are_optional():
    state = random_torchvision_state("resnet18", 2)
    state = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    model = build_model("resnet18", (3, 224, 224), 2)
    assert load_pretrained(model, state) == "replaced"


# ------------------------------------------------------------------------------------------------ refusals

def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_key_is_named():
    state = random_torchvision_state("resnet18", 2)
    del state["layer3.1.bn2.running_mean"]
    with pytest.raises(ProbeInputError) as err:
        load_pretrained(build_model("resnet18", (3, 224, 224), 2), state, source="w.pth")
    message = one_line(err)
    assert message.startswith("w.pth: missing") and "stages.2.1.bn2.running_mean" in message
    assert "layer3.1.bn2.running_mean" in message


def test_a_shape_mismatch_is_named():
    state = random_torchvision_state("resnet18", 2)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    with pytest.raises(ProbeInputError) as err:
        load_pretrained(build_model("resnet18", (3, 224, 224), 2), state, source="w.pth")
    message = one_line(err)
    assert "layer2.0.conv1.weight" in message and "(128, 64, 1, 1)" in message and "(128, 64, 3, 3)" in message


def test_an_unexpected_key_is_named():
    state = random_torchvision_state("resnet18", 2)
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ProbeInputError) as err:
        load_pretrained(build_model("resnet18", (3, 224, 224), 2), state)
    assert "unexpected key" in one_line(err) and "layer5.0.conv1.weight" in str(err.value)


def test_resnet50_weights_do_not_fit_resnet101():
    with pytest.raises(ProbeInputError) as err:
        load_pretrained(build_model("resnet101", (3, 224, 224), 2), random_torchvision_state("resnet50", 2))
    assert "missing 'stages.2.6.conv1.weight'" in one_line(err)


def test_cifar_stem_refuses_imagenet_weights():
    with pytest.raises(ProbeInputError) as err:
        load_pretrained(build_model("resnet18", (3, 32, 32), 2), random_torchvision_state("resnet18", 2))
    assert "'stem.0.weight'" in one_line(err) and "(64, 3, 7, 7)" in str(err.value)


class _WritesAMarker:
    """Unpickling this object would call ``Path.touch(marker)``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pth_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _WritesAMarker(marker)}, path)
    assert not marker.exists()
    with pytest.raises(ProbeInputError) as err:
        read_state_dict(path)
    message = one_line(err)
    assert message.startswith(f"{path}: refused") and "weights_only" in message
    assert not marker.exists()


@pytest.mark.parametrize("content, expected", [
    (b"not a zip or a pickle", "not a readable torch file"),
    (b"", "not a readable torch file"),
])
def test_a_damaged_pth_is_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ProbeInputError) as err:
        read_state_dict(path)
    assert expected in one_line(err) or "refused" in str(err.value)


def test_a_damaged_safetensors_and_bad_names_are_one_line(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ProbeInputError) as err:
        read_state_dict(path)
    assert "not a readable safetensors file" in one_line(err)
    with pytest.raises(ProbeInputError, match="no such weights file"):
        read_state_dict(tmp_path / "absent.pth")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ProbeInputError, match=r"must be a \.safetensors, \.pth or \.pt file"):
        read_state_dict(tmp_path / "w.bin")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ProbeInputError, match="holds no state dict"):
        read_state_dict(tmp_path / "list.pt")


# ------------------------------------------------------------------------------------------------ input_norm

def test_imagenet_input_norm_standardises_the_inputs():
    torch.manual_seed(0)
    plain = build_model("resnet18", (3, 96, 96), 3)
    normed = build_model("resnet18", (3, 96, 96), 3, input_norm="imagenet")
    assert plain.state_dict().keys() == normed.state_dict().keys()  # the constants are not weights
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 96, 96)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(normed.eval()(x), plain.eval()((x - mean) / std))
    with pytest.raises(ProbeInputError, match="three-channel"):
        build_model("resnet18", (1, 96, 96), 3, input_norm="imagenet")
