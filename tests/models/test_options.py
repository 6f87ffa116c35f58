"""Model options are declared with types and ranges and checked in one place: a bad value or an unknown key is one
line naming the option and the model's options, before anything is built or written."""

import inspect

import pytest

import probe.models as models
from probe.cli import main
from probe.errors import ProbeInputError
from probe.models import build_model, declared_options, model_names, model_options


@pytest.mark.parametrize(("name", "options", "message"), [
    ("mlp", {"width": "abc"}, r"model 'mlp' option width takes int in \[1, 65536\], got 'abc'"),
    ("mlp", {"width": -5}, r"model 'mlp' option width takes int in \[1, 65536\], got -5"),
    ("mlp", {"width": 2.5}, "option width takes int"),
    ("mlp", {"depth": True}, "option depth takes int"),
    ("cnn", {"channels": 0}, "option channels takes int"),
    ("resnet18", {"stem": "vit"}, "option stem takes str from auto, cifar, imagenet, got 'vit'"),
    ("resnet50", {"heads": 4}, "takes no option heads"),
])
def test_bad_options_name_the_option_and_list_the_known_ones(name, options, message):
    with pytest.raises(ProbeInputError, match=message) as err:
        build_model(name, (3, 8, 8), 2, **options)
    text = str(err.value)
    assert "\n" not in text
    for option in model_options(name):
        assert f"{option} (" in text  # the model's options, with their ranges and defaults


def test_good_options_are_converted():
    model = build_model("mlp", (4,), 2, width=8.0, depth=0)
    assert model.num_features == 4  # depth 0: a linear model on the input
    assert build_model("mlp", (4,), 2, width=8.0).num_features == 8


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "resnet50"])
def test_declared_options_match_the_builders(name):
    builder = models._MODELS[name][0]
    defaults = {p.name: p.default for p in inspect.signature(builder).parameters.values()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {o.name: o.default for o in declared_options(name)}
    assert set(model_names()) >= {name}


def test_parameter_count_is_bounded_before_allocating(monkeypatch):
    monkeypatch.setattr(models, "MAX_PARAMETERS", 10_000)
    assert build_model("mlp", (20,), 2, width=16).num_features == 16
    with pytest.raises(ProbeInputError, match=r"model 'mlp' with \{'width': 512, 'depth': 2\} would have \d+ param"):
        build_model("mlp", (20,), 2, width=512)


@pytest.mark.parametrize("option", ["width=abc", "width=-5", "heads=4"])
def test_cli_refuses_bad_model_options_before_writing(tmp_path, capsys, option):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "parity", "--model", "mlp", "--model-option", option, "--lr", "0.1",
                 "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("probe: error: model 'mlp'")
    assert option.split("=")[0] in err and "depth (" in err
    assert not out.exists()
