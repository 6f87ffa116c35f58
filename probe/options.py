"""Typed options, declared once and checked in one place: analysis options (``--option``) and model options
(``--model-option``) are :class:`Option` s with a kind, a default, a one-line help and optional choices or bounds.

:meth:`Option.parse` turns what a user gave (a command-line string or a Python value) into the declared kind, or
raises a one-line :class:`~probe.errors.ProbeInputError` naming the option, its kind and the value;
:func:`check_options` does that for a whole set of options and refuses unknown keys, naming the known ones.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from probe.errors import ProbeInputError

#: the kinds an :class:`Option` can take.
OPTION_KINDS = ("int", "float", "str", "bool", "list[int]", "list[float]", "list[str]", "dict")
_SCALAR = {"int", "float", "str", "bool"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class _Refused(ValueError):
    """Internal: a value that does not parse as its kind."""


@dataclass(frozen=True)
class Option:
    """One typed option of an analysis (``--option NAME=VALUE``, ``options={NAME: value}``) or a model
    (``--model-option NAME=VALUE``, ``model_options={NAME: value}``).

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

    def parse(self, value: Any, *, owner: str = "analysis") -> Any:
        """``value`` (None for the default) as this option's kind; raises ProbeInputError naming ``owner``
        (``"analysis"``, ``"model 'mlp'"``) and the option when it does not fit."""
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
            raise ProbeInputError(f"{owner} option {self.name} takes {self.describe()}, got {value!r}{why}") from None

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


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``known`` to ``key``, or an empty string."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_options(owner: str, declared: Sequence[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``declared``, with ``given`` values parsed and checked and the others at their defaults.

    An unknown key or a value that does not fit raises :class:`~probe.errors.ProbeInputError` naming ``owner``
    (``"model 'mlp'"``), the option and every known option with its kind and default.
    """
    known = {o.name: o for o in declared}
    listing = "; ".join(f"{o.name} ({o.describe()}, default {o.default})" for o in declared) or "none"
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ProbeInputError(f"{owner} takes no option {unknown[0]}{did_you_mean(unknown[0], known)}; its options: "
                              f"{listing}")
    out: dict[str, Any] = {}
    for name, option in known.items():
        try:
            out[name] = option.parse(given.get(name), owner=owner)
        except ProbeInputError as err:
            raise ProbeInputError(f"{err}; its options: {listing}") from None
    return out
