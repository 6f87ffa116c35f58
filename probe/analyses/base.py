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

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from probe.errors import ProbeInputError

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
    "probe.analyses.attribution",
)

#: the kinds an :class:`Option` can take.
OPTION_KINDS = ("int", "float", "str", "bool", "list[int]", "list[float]", "list[str]", "dict")
_SCALAR = {"int", "float", "str", "bool"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_PLACEHOLDER = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")


# --- declarations ---------------------------------------------------------------------------------------------------


class _Refused(ValueError):
    """Internal: a value that does not parse as its kind."""


@dataclass(frozen=True)
class Option:
    """One typed analysis option (``--option NAME=VALUE`` on the command line, ``options={NAME: value}`` in Python).

    Args:
        name: the key, a Python identifier (``attr_n``).
        kind: one of :data:`OPTION_KINDS`: ``int``, ``float``, ``str``, ``bool``, ``list[int]``, ``list[float]``,
            ``list[str]`` or ``dict``.
        default: the value when the option is not given (or given as None); list defaults are kept as tuples.
        help: one line saying what the option does.
        choices: the allowed values (of each item, for a list kind), or None for any.
        low, high: inclusive bounds of a numeric value (of each item, for a list kind), or None.

    :meth:`parse` turns a value into the declared kind: command-line strings are parsed (``"128"`` -> 128,
    ``"ig,saliency"`` -> ``["ig", "saliency"]``, ``"0.5,0.9"`` -> ``[0.5, 0.9]``, ``'{"smoothgrad": 0.1}'`` -> a
    dict, ``"true"`` -> True), a scalar given to a list kind becomes a one-item list, anything else that does not fit
    raises :class:`~probe.errors.ProbeInputError` naming the option, its kind and the value.
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} is not an identifier")
        if self.kind not in OPTION_KINDS:
            raise ValueError(f"option {self.name}: kind {self.kind!r} is not one of {', '.join(OPTION_KINDS)}")
        if not self.help or "\n" in self.help:
            raise ValueError(f"option {self.name}: help must be one line")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        default = self.parse(self.default)  # a default that does not fit its own declaration is a bug
        object.__setattr__(self, "default", tuple(default) if isinstance(default, list) else default)

    @property
    def item_kind(self) -> str:
        """The kind of one item: ``float`` for ``list[float]``, the kind itself for scalars and ``dict``."""
        return self.kind[5:-1] if self.kind.startswith("list[") else self.kind

    def default_value(self) -> Any:
        """The default as :meth:`parse` returns values (lists as fresh lists, dicts as fresh dicts)."""
        return self.parse(None)

    def parse(self, value: Any) -> Any:
        """``value`` (None for the default) as this option's kind; raises ProbeInputError when it does not fit."""
        if value is None:
            value = self.default
            if value is None:
                return None
        try:
            if self.kind == "dict":
                return _parse_dict(value)
            if self.kind in _SCALAR:
                out = _parse_scalar(self.kind, value)
                self._check_item(out)
                return out
            items = _split_list(value)
            out_list = [_parse_scalar(self.item_kind, item) for item in items]
            for item in out_list:
                self._check_item(item)
            return out_list
        except _Refused as exc:
            why = f" ({exc})" if str(exc) else ""
            raise ProbeInputError(f"analysis option {self.name} takes {self.describe()}, got {value!r}{why}") from None

    def _check_item(self, item: Any) -> None:
        if self.choices is not None and item not in self.choices:
            raise _Refused(f"{item!r} is not one of {', '.join(map(str, self.choices))}")
        if self.low is not None and item < self.low or self.high is not None and item > self.high:
            raise _Refused(f"{item!r} is out of range")

    def describe(self) -> str:
        """The kind with its choices or bounds, as error messages and the docs show it."""
        text = self.kind
        if self.choices is not None:
            text += " from " + ", ".join(map(str, self.choices))
        if self.low is not None and self.high is not None:
            text += f" in [{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            text += f" >= {self.low:g}"
        elif self.high is not None:
            text += f" <= {self.high:g}"
        return text


def _parse_scalar(kind: str, value: Any) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise _Refused("not a string")
        return value.strip()
    if kind == "bool":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise _Refused("")
        if isinstance(value, bool) or (_is_number(value) and value in (0, 1)):
            return bool(value)
        raise _Refused("")
    if isinstance(value, bool):
        raise _Refused("a boolean is not a number")
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise _Refused("") from None
    if not _is_number(value):
        raise _Refused("")
    if kind == "float":
        return float(value)
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise _Refused("not an integer")
    return int(value)


def _is_number(value: Any) -> bool:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return bool(np.issubdtype(type(value), np.number) or isinstance(value, np.bool_))
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return isinstance(value, (int, float))


def _split_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [part.strip().strip("'\"") for part in text.split(",") if part.strip()]
    if isinstance(value, Mapping):
        raise _Refused("a mapping is not a list")
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):
        value = value.tolist()  # numpy arrays and scalars, torch tensors
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def _parse_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise _Refused("write it as JSON, e.g. {\"key\": 1}") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _Refused("")
    return dict(value)


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
        raise ProbeInputError(f"unknown analysis {unknown[0]!r}{_did_you_mean(unknown[0], EPOCH_ANALYSES)}; "
                              f"known: {', '.join(sorted(EPOCH_ANALYSES))}")
    return [EPOCH_ANALYSES[n] for n in names]


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


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
            raise ProbeInputError(f"unknown analysis option {key!r}{_did_you_mean(key, known)}; known options: "
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
    """

    run: Run
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

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
