"""Declared analyses: typed options, per-analysis cache keys, metric lookup, and what is derived from them."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from probe.analyses import base
from probe.analyses.base import (
    EPOCH_ANALYSES,
    AnalysisContext,
    Metric,
    Option,
    declared_metrics,
    declared_options,
    load_analyses,
    metric_declaration,
    options_key,
    register_epoch_analysis,
    resolve_options,
)
from probe.analyses.docs import DOCS_DIR, REGENERATE, github_slug, page_headings, render_page, stale_pages
from probe.analyses.engine import analyze
from probe.errors import ProbeInputError
from probe.train import TrainConfig, train

BUILT_IN = ("groups", "logits", "losses", "proposition", "probes", "geometry", "sparsity", "pruning", "transforms",
            "attribution")


@pytest.fixture(autouse=True)
def registry():
    """The loaded registry, restored after each test (tests register and replace analyses)."""
    reg = load_analyses()
    saved = dict(reg)
    yield reg
    reg.clear()
    reg.update(saved)


def _noop(ctx, epoch):
    return {}


# --- options -------------------------------------------------------------------------------------------------------


def test_every_declared_option_with_its_default():
    resolved = resolve_options({})
    assert set(BUILT_IN) <= set(EPOCH_ANALYSES)
    assert resolved["attr_methods"] == ["ig"] and resolved["attr_n"] == 256 and resolved["attr_split"] == "test"
    assert resolved["cmr_taus"] == [0.5, 0.9, 0.99] and resolved["dfr_retrains"] == 20
    assert resolved["batch_size"] == 512 and resolved["attr_method_options"] == {}
    assert len(resolved["alphas"]) == 61 and resolved["prune_sparsities"][0] == 0.0
    # every option an analysis reads is declared: the declared set is exactly the known one
    assert set(resolved) == {"cmr_taus", "alphas", "probe_seed", "dfr_retrains", "batch_size", "prune_sparsities",
                             "attr_methods", "attr_split", "attr_n", "attr_seed", "attr_method_options",
                             "gradcam_layer", "min_group_size", "transform_split", "transform_n", "transform_seed",
                             "shuffle_grids", "lowpass_sigma", "centre_fraction"}
    assert resolved["gradcam_layer"] == ""
    assert resolved["min_group_size"] == 20
    resolved["attr_methods"].append("saliency")  # values are fresh copies, never the declared default
    assert resolve_options({})["attr_methods"] == ["ig"]


def test_command_line_strings_parse_into_the_declared_kinds():
    resolved = resolve_options({"attr_methods": "ig,saliency", "attr_n": "128", "cmr_taus": "0.5,0.9",
                                "attr_method_options": '{"smoothgrad": 0.1}', "prune_sparsities": "[0, 0.5]",
                                "attr_split": "val", "batch_size": 64.0})
    assert resolved["attr_methods"] == ["ig", "saliency"]
    assert resolved["attr_n"] == 128 and isinstance(resolved["attr_n"], int)
    assert resolved["cmr_taus"] == [0.5, 0.9]
    assert resolved["attr_method_options"] == {"smoothgrad": 0.1}
    assert resolved["prune_sparsities"] == [0.0, 0.5]
    assert resolved["attr_split"] == "val" and resolved["batch_size"] == 64
    # one method is a one-item list, never list("ig") == ['i', 'g']; a scalar given to a list option too
    assert resolve_options({"attr_methods": "ig"})["attr_methods"] == ["ig"]
    assert resolve_options({"cmr_taus": 0.9})["cmr_taus"] == [0.9]
    assert resolve_options({"attr_methods": ("saliency",)})["attr_methods"] == ["saliency"]
    assert resolve_options({"attr_n": None})["attr_n"] == 256  # None is the default
    flag = Option("flag", "bool", False, "a flag")
    assert [flag.parse(v) for v in ("true", "no", "1", True, 0)] == [True, False, True, True, False]


def test_unknown_key_is_refused_naming_the_known_ones():
    with pytest.raises(ProbeInputError) as info:
        resolve_options({"atr_methods": "ig"})
    message = str(info.value)
    assert "'atr_methods'" in message and "did you mean attr_methods" in message
    for known in ("attr_methods", "cmr_taus", "batch_size", "dfr_retrains"):
        assert known in message
    with pytest.raises(ProbeInputError, match="unknown analysis 'grups'.*did you mean groups"):
        resolve_options({}, ["grups"])


@pytest.mark.parametrize("key, value, kind", [
    ("attr_n", "many", "int"),
    ("attr_n", 1.5, "int"),
    ("attr_n", True, "int"),
    ("attr_n", -1, "int >= 0"),
    ("cmr_taus", "0.5,x", "list[float]"),
    ("cmr_taus", [1.5], "list[float] in [0, 1]"),
    ("attr_methods", "ig,nope", "list[str] from ig, saliency"),
    ("attr_split", 3, "str from train, val, test"),
    ("attr_method_options", "smoothgrad=0.1", "dict"),
    ("dfr_retrains", -1, "int >= 0"),
])
def test_ill_typed_values_are_refused_naming_option_kind_and_value(key, value, kind):
    with pytest.raises(ProbeInputError) as info:
        resolve_options({key: value})
    message = str(info.value)
    assert f"analysis option {key} takes {kind}" in message and repr(value) in message


def test_selected_analyses_only():
    assert resolve_options({"cmr_taus": "0.5"}, ["losses"]) == {"cmr_taus": [0.5]}
    assert resolve_options({"attr_n": 5}, ["logits"]) == {}  # known elsewhere: checked, then left out
    assert resolve_options({"attr_n": 5}, ["groups"]) == {"min_group_size": 20}
    with pytest.raises(ProbeInputError, match="attr_n"):
        resolve_options({"attr_n": "x"}, ["groups"])
    assert set(declared_options(["probes"])) == {"probe_seed", "dfr_retrains", "batch_size", "min_group_size"}


def test_context_reads_typed_options():
    ctx = AnalysisContext(run=None, options={"attr_methods": "ig", "attr_n": "16"})  # type: ignore[arg-type]
    assert ctx.option("attr_methods") == ["ig"] and ctx.option("attr_n") == 16
    assert ctx.option("cmr_taus") == [0.5, 0.9, 0.99]
    assert ctx.option(Option("local", "int", 3, "not registered")) == 3
    with pytest.raises(KeyError, match="no_such_option"):
        ctx.option("no_such_option")


def test_registration_checks_the_declarations():
    with pytest.raises(ValueError, match="batch_size .* declared differently"):
        register_epoch_analysis("mine", needs_model=True, version=1,
                                options=(Option("batch_size", "int", 64, "another default"),))
    with pytest.raises(ValueError, match="wga .* already declared by analysis groups"):
        register_epoch_analysis("mine", needs_model=False, version=1,
                                metrics=(Metric("wga", "again", "metrics.md#metric-index", "m:f"),))
    with pytest.raises(ValueError, match="version"):
        register_epoch_analysis("mine", needs_model=False, version=0)
    with pytest.raises(ValueError, match="kind"):
        Option("x", "list[bool]", (), "help")
    with pytest.raises(ProbeInputError):
        Option("x", "int", "default", "a default that does not fit")
    with pytest.raises(ValueError, match="page.md#anchor"):
        Metric("x", "definition", "metrics.md", "m:f")
    assert "mine" not in EPOCH_ANALYSES
    # the same declaration of a shared option is accepted
    shared = EPOCH_ANALYSES["pruning"].options[-1]
    register_epoch_analysis("mine", needs_model=True, version=1, options=(shared,))(_noop)
    assert "batch_size" in declared_options(["mine"])


# --- cache keys ------------------------------------------------------------------------------------------------------


def _keys(options):
    return {name: options_key(name, options) for name in BUILT_IN}


def test_options_key_changes_for_exactly_the_analysis_that_changed(registry):
    defaults = resolve_options({})
    before = _keys(defaults)
    assert len(set(before.values())) == len(BUILT_IN)
    assert _keys({}) == before  # missing options count as their defaults
    assert _keys({"cmr_taus": "0.5,0.9,0.99"}) == before  # raw and parsed values give the same key

    changed = _keys({**defaults, "cmr_taus": [0.9]})
    assert {n for n in BUILT_IN if changed[n] != before[n]} == {"losses"}
    changed = _keys(resolve_options({"batch_size": 128}))
    assert {n for n in BUILT_IN if changed[n] != before[n]} == {"probes", "geometry", "sparsity", "pruning",
                                                                "transforms"}
    changed = _keys(resolve_options({"attr_methods": "ig,saliency"}))
    assert {n for n in BUILT_IN if changed[n] != before[n]} == {"attribution"}

    bumped = registry["proposition"].version + 1  # a formula changed
    registry["proposition"] = dataclasses.replace(registry["proposition"], version=bumped)
    changed = _keys(defaults)
    assert {n for n in BUILT_IN if changed[n] != before[n]} == {"proposition"}


# --- metric ids ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric_id, analysis, declared", [
    ("acc_group/3", "groups", "acc_group/<g>"),
    ("cmr@0.9", "losses", "cmr@<tau>"),
    ("retention@0.9", "pruning", "retention@<s>"),
    ("core_attr_share@ig", "attribution", "core_attr_share@<method>"),
    ("core_attr_share@ig+smoothgrad", "attribution", "core_attr_share@<method>"),
    ("param_norm/fc1.weight", "logits", "param_norm/<tensor>"),
    ("param_norm", "logits", "param_norm"),
    ("max_sparsity@0.95", "pruning", "max_sparsity@0.95"),
    ("activation_sparsity/features.2", "sparsity", "activation_sparsity/<layer>"),
    ("wga", "groups", "wga"),
])
def test_metric_declaration_of_concrete_ids(metric_id, analysis, declared):
    found = metric_declaration(metric_id)
    assert found is not None and found[0] == analysis and found[1].id == declared


def test_undeclared_ids_have_no_declaration():
    for metric_id in ("nope", "acc_group", "cmr@", "wga2", "max_sparsity@0.9"):
        assert metric_declaration(metric_id) is None, metric_id


def _anchors(page: str) -> set[str]:
    return set(page_headings((DOCS_DIR / page).read_text()))


def test_github_slugs():
    assert github_slug("Accuracy and groups — analysis `groups` (splits: every recorded split)") == \
        "accuracy-and-groups--analysis-groups-splits-every-recorded-split"
    assert github_slug("Pruning: `prune_curve`, `retention@s`, `max_sparsity@0.95`") == \
        "pruning-prune_curve-retentions-max_sparsity095"
    assert set(page_headings("# A\n```\n# not a heading\n```\n## A\n")) == {"a", "a-1"}


def test_every_declaration_is_documented_and_its_code_exists():
    declared = declared_metrics(BUILT_IN)
    assert len(declared) >= 50
    for analysis, metric in declared:
        page, _, anchor = metric.docs.partition("#")
        assert anchor in _anchors(page), f"{metric.id} ({analysis}): no heading {anchor!r} in docs/{page}"
        module, _, name = metric.code.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), metric.code
    for name in BUILT_IN:
        assert EPOCH_ANALYSES[name].version >= 1


def _tiny_double_mnist(tmp: Path) -> Path:
    out = tmp / "dm"
    train(TrainConfig(dataset="double-mnist", dataset_options={"n_train": 256, "max_eval_digits": 100}, model="mlp",
                      model_options={"width": 16}, lr=0.1, steps=4, batch_size=64, seed=0), out)
    return out


def test_every_emitted_metric_id_is_declared_and_documented(tiny_colored_sweep, tmp_path):
    """All built-in analyses on two tiny sources (colored-mnist: every epoch, the model analyses on the last one;
    double-mnist, whose masks give the attribution shares): every emitted id has a declaration of the analysis that
    emitted it, documented on an existing heading, and every declared id is emitted by one of the two."""
    options = {"attr_n": 16, "attr_methods": ["ig", "saliency"], "prune_sparsities": [0, 0.9]}
    emitted = set()
    for source, dfr_retrains in ((tiny_colored_sweep, 0), (_tiny_double_mnist(tmp_path), 2)):  # DFR on the small one
        result = analyze(source, out=tmp_path / f"an_{source.name}", model_epochs="last", progress=False,
                         options={**options, "dfr_retrains": dfr_retrains})
        assert result.errors == []
        emitted |= set(zip(result.epochs["analysis"], result.epochs["metric"]))
    used = set()
    for analysis, metric_id in sorted(emitted):
        found = metric_declaration(metric_id)
        assert found is not None, f"{metric_id} (analysis {analysis}) has no declaration"
        assert found[0] == analysis, f"{metric_id} is emitted by {analysis} but declared by {found[0]}"
        page, _, anchor = found[1].docs.partition("#")
        assert anchor in _anchors(page), f"{metric_id}: no heading {anchor!r} in docs/{page}"
        used.add(found[1].id)
    assert used == {m.id for _, m in declared_metrics(BUILT_IN)}


# --- derived: docs tables and the glossary ----------------------------------------------------------------------------


def test_docs_tables_are_current():
    stale = stale_pages()
    assert stale == [], f"docs/{', docs/'.join(stale)} out of date with the declarations: run `{REGENERATE}`"


def test_render_page_replaces_only_between_the_markers():
    from probe.analyses.docs import begin_marker, end_marker

    begin, end = begin_marker("metrics"), end_marker("metrics")
    text = f"intro\n{begin}\nold\n{end}\nrest\n"
    assert render_page(text, "metrics", "new") == f"intro\n{begin}\nnew\n{end}\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        render_page("no markers", "metrics", "new")


def test_glossary_comes_from_the_declarations():
    from probe.report import glossary

    entries = glossary.entries()
    for _, metric in declared_metrics(BUILT_IN):
        assert entries[metric.id].definition.startswith(metric.definition)
        assert entries[metric.id].docs == "docs/" + metric.docs
    assert glossary.glossary_key("final:test/acc_group/3") == "acc_group/<g>"
    assert glossary.glossary_key("early:train/cmr@0.9") == "cmr@<tau>"
    assert glossary.glossary_key("survives_control") is None
    anchors = [glossary.anchor(k) for k in entries]
    assert len(set(anchors)) == len(anchors)
    for key, entry in entries.items():  # report terms too
        page, _, anchor = entry.docs.removeprefix("docs/").partition("#")
        assert anchor in _anchors(page), f"glossary {key}: no heading {anchor!r} in docs/{page}"
    assert 'id="metric-cmr-tau"' in glossary.glossary_html(["cmr@<tau>"])


def test_base_stays_light():
    """Declaring an analysis needs only probe.analyses.base (no Captum, scikit-learn or matplotlib)."""
    import subprocess
    import sys

    code = ("import sys, probe.analyses.base; "
            "print([m for m in ('captum', 'sklearn', 'matplotlib', 'probe.report') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert base.ANALYSIS_MODULES[0] == "probe.analyses.groups"
