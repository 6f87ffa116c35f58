"""Model options declared with their types and ranges, and checked in one place before a model is built.

Each model declares a tuple of :class:`Option` s; :func:`check_options` turns the options a user gave (from Python or
``--model-option key=value``) into validated keyword arguments, or raises a one-line
:class:`~probe.errors.ProbeInputError` naming the option and every option the model knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from probe.errors import ProbeInputError


@dataclass(frozen=True)
class Option:
    """One model option: an ``int`` in ``minimum..maximum`` or a ``str`` among ``choices``."""

    name: str
    default: Any
    kind: type = int
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"width (an integer in 1..65536, default 256)"``."""
        return f"{self.name} ({self.rule()}, default {self.default})"

    def rule(self) -> str:
        if self.kind is str:
            return "one of " + ", ".join(self.choices)
        if self.minimum is not None and self.maximum is not None:
            return f"an integer in {self.minimum}..{self.maximum}"
        if self.minimum is not None:
            return f"an integer >= {self.minimum}"
        return "an integer"

    def check(self, value: Any) -> Any:
        """``value`` converted to the option's type, or None when it is not acceptable."""
        if self.kind is str:
            return value if isinstance(value, str) and (not self.choices or value in self.choices) else None
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            return None
        number = int(value)
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            return None
        return number


def check_options(model: str, declared: Sequence[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Validated keyword arguments for ``model`` from ``given``; options left out take their defaults."""
    known = {o.name: o for o in declared}
    listing = "; ".join(o.describe() for o in declared) or "none"
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ProbeInputError(f"model {model!r} takes no option {', '.join(unknown)}; its options: {listing}")
    out: dict[str, Any] = {}
    for name, value in given.items():
        checked = known[name].check(value)
        if checked is None:
            raise ProbeInputError(f"model {model!r}: option {name} must be {known[name].rule()}, got {value!r}; "
                                  f"its options: {listing}")
        out[name] = checked
    return out
