"""What every per-epoch analysis shares: the context it runs in, and the registry of declared analyses.

An epoch analysis is a function ``fn(ctx, epoch) -> {split: {metric_id: value}}``. ``split`` is a split name
(``"train"``, ``"val"``, ``"test"``), ``"sgd"`` for the minibatches SGD saw in that epoch, or ``"model"`` for
metrics of the weights alone (``param_norm``, ``norm_compressibility@kappa``). Metric ids are the SPEC's
(``wga``, ``acc_group/3``, ``cmr@0.9`` ...). Analyses that need the model or the inputs (features, pruning,
attributions) set ``needs_model=True`` and run on a chosen subset of epochs; analyses over the stored records run
on every epoch.

Each analysis is declared once, where it is registered::

    @register_epoch_analysis(
        "losses", needs_model=False, version=1,
        options=(Option("cmr_taus", "list[float]", (0.5, 0.9, 0.99), "thresholds tau of cmr@tau", low=0, high=1),),
        metrics=(Metric("cmr@<tau>", "fraction of BC samples mispredicted with max softmax >= tau",
                        "metrics-logits.md#confident-...", "probe.analyses.losses:cmr"), ...),
    )
    def losses_epoch(ctx, epoch): ...

Everything else is derived from these declarations: option validation (:func:`resolve_options`), the per-analysis
cache key (:func:`options_key`), the lookup of a concrete metric id (:func:`metric_declaration`), the report's
glossary and the tables of ``docs/metrics.md`` and ``docs/analyze.md`` (:mod:`probe.analyses.docs`).
:func:`load_analyses` imports the built-in analysis modules and returns the registry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probe.errors import ProbeInputError
from probe.options import Option, did_you_mean

if TYPE_CHECKING:
    from probe.data.base import SpuriousDataset
    from probe.store.reader import Run

EpochMetrics = dict[str, dict[str, float]]

#: modules whose import registers the built-in epoch analyses (:func:`load_analyses`).
ANALYSIS_MODULES = (
    "probe.analyses.groups",
    "probe.analyses.logits",
    "probe.analyses.losses",
    "probe.analyses.proposition",
    "probe.analyses.probes",
    "probe.analyses.geometry",
    "probe.analyses.sparsity",
    "probe.analyses.pruning",
    "probe.analyses.transforms",
    "probe.analyses.attribution",
)

_PLACEHOLDER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


# --- declarations ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One metric id an analysis emits.

    Args:
        id: the id in ``metrics.json`` and the tables; ``<name>`` stands for a variable part (one or more characters):
            ``acc_group/<g>``, ``cmr@<tau>``, ``core_attr_share@<method>``, ``param_norm/<tensor>``.
        definition: one line saying what the number is.
        docs: where it is defined, ``page#anchor`` relative to ``docs/`` (``metrics-logits.md#logit-dynamics...``).
        code: the function that computes it, ``module:function`` (``probe.analyses.losses:cmr``).
    """

    id: str
    definition: str
    docs: str
    code: str

    def __post_init__(self) -> None:
        if not self.id or not self.definition or "\n" in self.definition:
            raise ValueError(f"metric {self.id!r}: needs an id and a one-line definition")
        page, sep, anchor = self.docs.partition("#")
        if not sep or not page.endswith(".md") or not anchor:
            raise ValueError(f"metric {self.id}: docs must read 'page.md#anchor', got {self.docs!r}")
        module, sep, name = self.code.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"metric {self.id}: code must read 'module:function', got {self.code!r}")

    @property
    def is_pattern(self) -> bool:
        """True when the id holds a ``<placeholder>``."""
        return bool(_PLACEHOLDER.search(self.id))

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The regular expression a concrete id must match in full."""
        parts = _PLACEHOLDER.split(self.id)  # literal, name, literal, name, ..., literal
        regex = "".join(re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(parts))
        return re.compile(regex)

    def matches(self, metric_id: str) -> bool:
        """Whether the concrete ``metric_id`` (``cmr@0.9``) is this declaration (``cmr@<tau>``)."""
        return metric_id == self.id or (self.is_pattern and self.pattern.fullmatch(metric_id) is not None)


@dataclass(frozen=True)
class EpochAnalysis:
    """A registered epoch analysis and its declaration (see :func:`register_epoch_analysis`)."""

    name: str
    fn: Callable[[AnalysisContext, int], EpochMetrics]
    needs_model: bool
    version: int = 1
    options: tuple[Option, ...] = ()
    metrics: tuple[Metric, ...] = ()


#: the registry: analysis name -> :class:`EpochAnalysis`, filled by :func:`register_epoch_analysis`.
EPOCH_ANALYSES: dict[str, EpochAnalysis] = {}


def register_epoch_analysis(
    name: str,
    *,
    needs_model: bool,
    version: int,
    options: Sequence[Option] = (),
    metrics: Sequence[Metric] = (),
) -> Callable[[Callable[[AnalysisContext, int], EpochMetrics]], Callable[[AnalysisContext, int], EpochMetrics]]:
    """Decorator registering ``fn(ctx, epoch) -> {split: {metric: value}}`` under ``name`` for ``probe analyze``.

    Args:
        name: the analysis name (``--analyses NAME``, the ``analysis`` column of the epochs table).
        needs_model: True when it loads the model (then it runs on the model epochs only).
        version: an integer, bumped whenever a change makes its numbers differ; part of its cache key.
        options: the :class:`Option` s it reads (through :meth:`AnalysisContext.option`).
        metrics: the :class:`Metric` s it emits, every id it can produce.

    An option name declared by several analyses (``batch_size``) must be declared alike (kind, default, choices,
    bounds); a metric id belongs to one analysis. Registering a name again replaces its declaration.
    """
    if not name or not isinstance(name, str):
        raise ValueError("an analysis needs a name")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"analysis {name}: version must be a positive integer, got {version!r}")
    options, metrics = tuple(options), tuple(metrics)
    _check_unique(name, "option", [o.name for o in options])
    _check_unique(name, "metric", [m.id for m in metrics])
    others = [a for n, a in EPOCH_ANALYSES.items() if n != name]
    shared = {o.name: (a.name, o) for a in others for o in a.options}
    for opt in options:
        if opt.name in shared:
            other, theirs = shared[opt.name]
            if _signature(opt) != _signature(theirs):
                raise ValueError(f"option {opt.name} of analysis {name} is declared differently by analysis {other} "
                                 f"({_signature(opt)} vs {_signature(theirs)})")
    taken = {m.id: a.name for a in others for m in a.metrics}
    for metric in metrics:
        if metric.id in taken:
            raise ValueError(f"metric {metric.id} of analysis {name} is already declared by analysis "
                             f"{taken[metric.id]}")

    def wrap(fn: Callable[[AnalysisContext, int], EpochMetrics]) -> Callable[[AnalysisContext, int], EpochMetrics]:
        EPOCH_ANALYSES[name] = EpochAnalysis(name, fn, needs_model, version, options, metrics)
        return fn

    return wrap


def _check_unique(name: str, what: str, keys: list[str]) -> None:
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"analysis {name} declares the {what}(s) {', '.join(dupes)} twice")


def _signature(opt: Option) -> tuple[Any, ...]:
    return (opt.kind, opt.default, opt.choices, opt.low, opt.high)


def load_analyses() -> dict[str, EpochAnalysis]:
    """Import the built-in analysis modules (:data:`ANALYSIS_MODULES`, registering their analyses) and return the
    registry :data:`EPOCH_ANALYSES` (analyses registered from elsewhere stay in it). A module that is not installed
    is skipped."""
    import importlib
    import importlib.util

    for module in ANALYSIS_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return EPOCH_ANALYSES


# --- what is derived from the declarations ------------------------------------------------------------------------


def _selected(analyses: Iterable[str] | None) -> list[EpochAnalysis]:
    if analyses is None:
        return list(EPOCH_ANALYSES.values())
    names = list(analyses)
    unknown = [n for n in names if n not in EPOCH_ANALYSES]
    if unknown:
        raise ProbeInputError(f"unknown analysis {unknown[0]!r}{did_you_mean(unknown[0], EPOCH_ANALYSES)}; "
                              f"known: {', '.join(sorted(EPOCH_ANALYSES))}")
    return [EPOCH_ANALYSES[n] for n in names]


def declared_options(analyses: Iterable[str] | None = None) -> dict[str, Option]:
    """Every option declared by ``analyses`` (default: every registered analysis), by name, in declaration order."""
    out: dict[str, Option] = {}
    for analysis in _selected(analyses):
        for opt in analysis.options:
            out.setdefault(opt.name, opt)
    return out


def resolve_options(user: Mapping[str, Any] | None, analyses: Iterable[str] | None = None) -> dict[str, Any]:
    """The typed value of every option the analyses ``analyses`` declare (default: every registered one).

    Args:
        user: option values by name, as typed Python values or as command-line strings (``{"attr_n": "128",
            "attr_methods": "ig,saliency"}``); a missing key or None takes the declared default.
        analyses: names of registered analyses (call :func:`load_analyses` first), or None for all.

    Returns:
        ``{option name: value}`` for every option of those analyses, parsed into its kind (lists as lists). A key
        declared only by a registered analysis outside ``analyses`` is validated, then left out.

    Raises:
        ProbeInputError: an unknown key (naming it, a close match and the known keys), a value of the wrong kind or
            outside its choices or bounds (naming the option, its kind and the value), or an unknown analysis name.
    """
    user = dict(user or {})
    selected = declared_options(analyses)
    known = declared_options(None)
    for key in user:
        if key not in known:
            raise ProbeInputError(f"unknown analysis option {key!r}{did_you_mean(key, known)}; known options: "
                                  f"{', '.join(sorted(known)) or 'none'}")
    for key, value in user.items():
        if key not in selected:
            known[key].parse(value)
    return {name: opt.parse(user.get(name)) for name, opt in selected.items()}


def options_key(analysis_name: str, resolved: Mapping[str, Any]) -> str:
    """A 16-hex-digit key of analysis ``analysis_name``'s name, version and the values of its own declared options
    in ``resolved`` (values are parsed, so raw and resolved values give the same key; a missing option counts as its
    default). Options of other analyses do not enter it: bumping one analysis's version, or changing an option only
    it declares, changes only its key."""
    analysis = _selected([analysis_name])[0]
    values = {opt.name: opt.parse(resolved.get(opt.name)) for opt in analysis.options}
    text = json.dumps({"analysis": analysis.name, "version": analysis.version, "options": values}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def metric_declaration(metric_id: str) -> tuple[str, Metric] | None:
    """The (analysis name, :class:`Metric`) declaring the concrete id ``metric_id`` (``acc_group/3`` ->
    ``acc_group/<g>``, ``cmr@0.9`` -> ``cmr@<tau>``), or None when no registered analysis declares it. An exact id
    wins over a pattern; among patterns, the one with the longest literal text."""
    best: tuple[int, str, Metric] | None = None
    for analysis in EPOCH_ANALYSES.values():
        for metric in analysis.metrics:
            if metric.id == metric_id:
                return analysis.name, metric
            if metric.is_pattern and metric.matches(metric_id):
                literal = len(_PLACEHOLDER.sub("", metric.id))
                if best is None or literal > best[0]:
                    best = (literal, analysis.name, metric)
    return None if best is None else (best[1], best[2])


def declared_metrics(analyses: Iterable[str] | None = None) -> list[tuple[str, Metric]]:
    """Every (analysis name, :class:`Metric`) of ``analyses`` (default: all registered), in declaration order."""
    return [(a.name, m) for a in _selected(analyses) for m in a.metrics]


# --- the context ------------------------------------------------------------------------------------------------------


@dataclass
class AnalysisContext:
    """One run, opened once for all analyses of ``probe analyze``.

    Attributes:
        run: the run being analysed.
        device: where models run (``cpu`` unless a GPU is available and asked for).
        cache_dir: folder for reusable intermediate results (features), or None for no caching.
        options: analysis option values by name (as given, or as :func:`resolve_options` returns them); analyses
            read them through :meth:`option`, which applies the declared kind and default.
        shared: what the analyses of this context share, by name (the model of the epoch being analysed and its
            forward passes: :func:`probe.analyses.features.model_epoch`).
    """

    run: Run
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def dataset(self) -> SpuriousDataset:
        """The run's dataset, rebuilt deterministically from ``run.json`` (built once per context)."""
        return self.run.dataset()

    def model(self, epoch: int) -> torch.nn.Module:
        """The model at ``epoch`` in eval mode on ``self.device`` (a fresh copy each call)."""
        return self.run.model(epoch).to(self.device).eval()

    def option(self, option: Option | str) -> Any:
        """The value of a declared option (an :class:`Option`, or the name of one a registered analysis declares):
        ``self.options[name]`` parsed into its kind, or its default when absent or None."""
        if isinstance(option, str):
            declared = declared_options(None)
            if option not in declared:
                raise KeyError(f"option {option!r} is declared by no registered analysis")
            option = declared[option]
        return option.parse(self.options.get(option.name))
