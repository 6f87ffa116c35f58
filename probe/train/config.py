"""Training configuration, validated in one place before anything is written."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from probe.errors import ProbeInputError
from probe.models.weights import WEIGHT_SUFFIXES, suffixes_text

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "step")
BUDGETS = ("fixed", "matched")
#: ``freeze`` values: None (everything trains) or ``features`` (only the head trains).
FREEZE_CHOICES = (None, "features")

MAX_SEED = 2**63 - 1
#: Fractions of the distance budget (``lr x steps``) that are "early" in training (SPEC section 5); a sweep records
#: every run at these points, and analyses take the last of them as the claims' early point.
EARLY_DISTANCE_FRACTIONS = (0.01, 0.03, 0.1)

#: Fields that may differ between a run and its ``--resume`` because they do not change its results: the number of
#: data-decoding processes. Everything else (data, model, optimiser, length, recording, device) must match.
RESULT_NEUTRAL_FIELDS = frozenset({"workers"})


@dataclass
class TrainConfig:
    """Everything that defines one training run (stored verbatim in ``run.json``).

    Attributes:
        dataset, dataset_options: registry name and builder options (``rho``, ``seed``, ``image_size`` ...).
        model, model_options: registry name and options (``width``, ``depth`` ...).
        lr: base learning rate (> 0).
        optimizer: ``sgd`` (with ``momentum``, ``nesterov``, ``weight_decay``) or ``adamw``.
        schedule: ``constant``, ``cosine`` (to 0 at the last step) or ``step`` (times ``gamma`` at each milestone,
            given as fractions of the total steps); ``warmup_steps`` of linear warm-up first.
        batch_size: minibatch size.
        epochs / steps: training length, exactly one of them (steps may end inside an epoch).
        seed: seeds the model initialisation and the minibatch order (the dataset has its own seed).
        record: ``all``, ``every:K`` (every K-th epoch) or ``log:N`` (about N log-spaced epochs); epoch 0 and the
            last epoch are always recorded.
        keep_weights: which committed epochs keep the model's weights in their file: ``all`` (every one; the
            default), ``every:K`` (epoch numbers that are multiples of K), ``log:N`` (about N log-spaced epoch
            numbers) or ``none``; with ``every``/``log`` epoch 0 and the last planned epoch always keep them. The
            optimizer and RNG states live in the run's resume file either way.
        record_logits: ``full`` (every logit of every sample) or ``topk:K``: per sample the true-class logit, the K
            largest logits with their classes, the log-sum-exp and the norm, plus full logits for a fixed subset of
            ``full_logits_subset`` samples per split (:mod:`probe.store.logit_records`).
        logits_dtype: ``float32`` or ``float16``: the stored precision of full logits.
        full_logits_subset: samples per split whose full logits a ``topk`` record keeps.
        record_splits: splits recorded each epoch (default: all of the dataset's splits).
        sgd_logits: keep the logits of every minibatch sample SGD saw (their losses are always kept); turn off for
            datasets with many samples and classes, where they would dominate the epoch files.
        device: ``auto`` (CUDA, then MPS, then CPU) or a torch device string.
        amp: bfloat16 autocast on CUDA.
        eval_batch_size: batch size of the per-epoch evaluation passes.
        workers: decoding processes for datasets streamed from disk (in-memory datasets ignore it).
        budget: ``fixed`` or ``matched`` (metadata written by ``probe sweep --budget``).
        record_steps: global steps (strictly increasing, each in ``[1, total steps]``) at which a record is committed
            besides the ``record`` schedule, even inside a data pass; a sweep sets them to
            ``round(f * distance_budget / lr)`` for each ``f`` of ``early_fractions``.
        distance_budget: the distance budget ``B = lr x steps`` that "early" is measured in (metadata written by
            ``probe sweep``: ``max(lr) x S`` for a matched sweep, ``min over runs of lr x total steps`` for a fixed
            one); None for a lone run, whose budget is its own ``lr x total steps``.
        early_fractions: fractions of ``B`` that are early in training (default :data:`EARLY_DISTANCE_FRACTIONS`);
            a sweep records every run at them (none when empty).
        weights: a ``.safetensors`` or ``.pth``/``.pt`` state dict loaded into the model before training
            (torchvision's or timm's ResNet key names; ``docs/models.md``); its sha256 goes to ``run.json``'s
            ``weights``, and the model standardises its inputs with ImageNet's means and stds (``input_norm``).
        freeze: None, or ``features``: only the classifier head trains (the features keep their weights and their
            BatchNorm statistics).
        l1, l2: explicit weight penalties added to the training loss, ``l1 * sum |w| + (l2 / 2) * sum w^2`` over
            the weights of the Linear and Conv layers that train (no biases, no norm parameters); separate from
            ``weight_decay``, which the optimiser applies (:mod:`probe.train.regularisers`).
        focal_gamma: focal loss exponent: the training loss is ``-(1 - p_t)^gamma log p_t`` averaged over the
            minibatch (0: cross-entropy; not the schedule's ``gamma``).
        label_smoothing: ``s`` in ``[0, 1)``: targets ``(1 - s) onehot(y) + s / K``.
        sam_rho: SAM's radius (> 0): each step takes the gradient at ``w + rho g / ||g||`` and applies it at ``w``;
            None (the default) for ordinary steps.
        sam_adaptive: adaptive SAM (ASAM): ``w + rho T^2 g / ||T g||`` with ``T = |w| + 0.01``; needs ``sam_rho``.
            The recorded minibatch losses stay the plain cross-entropy whatever these options are.
        preset: the reference protocol (:mod:`probe.train.presets`) the values came from, None when none did; the
            values themselves are in the other fields.

    Example:
        >>> cfg = TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=3, model_options={"width": 32})
        >>> cfg.validate().to_json()["model_options"]
        {'width': 32}
    """

    dataset: str
    model: str
    lr: float
    dataset_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "constant"
    warmup_steps: int = 0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    batch_size: int = 64
    epochs: int | None = None
    steps: int | None = None
    seed: int = 0
    record: str = "all"
    keep_weights: str = "all"
    record_logits: str = "full"
    logits_dtype: str = "float32"
    full_logits_subset: int = 2048
    record_splits: list[str] | None = None
    sgd_logits: bool = True
    device: str = "auto"
    amp: bool = False
    eval_batch_size: int = 2048
    workers: int = 2
    budget: str = "fixed"
    record_steps: tuple[int, ...] = ()
    distance_budget: float | None = None
    early_fractions: tuple[float, ...] = EARLY_DISTANCE_FRACTIONS
    weights: str | None = None
    freeze: str | None = None
    preset: str | None = None
    l1: float = 0.0
    l2: float = 0.0
    focal_gamma: float = 0.0
    label_smoothing: float = 0.0
    sam_rho: float | None = None
    sam_adaptive: bool = False

    def validate(self) -> TrainConfig:
        """Raise :class:`ProbeInputError` naming the first bad field; returns self."""
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ProbeInputError(f"lr must be a positive number, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ProbeInputError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ProbeInputError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.budget not in BUDGETS:
            raise ProbeInputError(f"unknown budget {self.budget!r}; known: {', '.join(BUDGETS)}")
        if (self.epochs is None) == (self.steps is None):
            raise ProbeInputError("give the training length as exactly one of epochs or steps")
        if self.epochs is not None and self.epochs < 1:
            raise ProbeInputError(f"epochs must be >= 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ProbeInputError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ProbeInputError(f"batch size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ProbeInputError(f"workers must be >= 0, got {self.workers}")
        if self.eval_batch_size < 1:
            raise ProbeInputError(f"eval batch size must be >= 1, got {self.eval_batch_size}")
        if not 0 <= self.momentum < 1:
            raise ProbeInputError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.nesterov and self.momentum == 0:
            raise ProbeInputError("nesterov needs momentum > 0")
        if self.weight_decay < 0:
            raise ProbeInputError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ProbeInputError(f"warmup steps must be >= 0, got {self.warmup_steps}")
        if not all(0 < m < 1 for m in self.milestones):
            raise ProbeInputError(f"step milestones are fractions of training in (0, 1), got {list(self.milestones)}")
        if not _is_seed(self.seed):
            raise ProbeInputError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if "seed" in self.dataset_options and not _is_seed(self.dataset_options["seed"]):
            raise ProbeInputError(
                f"dataset seed must be an integer in [0, 2**63), got {self.dataset_options['seed']!r}")
        parse_record(self.record)
        parse_keep_weights(self.keep_weights)
        from probe.store.logit_records import LOGIT_DTYPES, parse_record_logits

        parse_record_logits(self.record_logits)
        if self.logits_dtype not in LOGIT_DTYPES:
            raise ProbeInputError(f"logits dtype must be one of {', '.join(LOGIT_DTYPES)}, got {self.logits_dtype!r}")
        if not _is_int(self.full_logits_subset) or self.full_logits_subset < 1:
            raise ProbeInputError(f"full_logits_subset must be an integer >= 1, got {self.full_logits_subset!r}")
        self._validate_early()
        if self.weights is not None and not (isinstance(self.weights, str) and
                                             self.weights.lower().endswith(WEIGHT_SUFFIXES)):
            raise ProbeInputError(f"weights must be a {suffixes_text()} file, got {self.weights!r}")
        if self.freeze not in FREEZE_CHOICES:
            choices = ", ".join(repr(c) for c in FREEZE_CHOICES if c is not None)
            raise ProbeInputError(f"freeze (--freeze) must be {choices} or not given, got {self.freeze!r}")
        if self.preset is not None and not isinstance(self.preset, str):
            raise ProbeInputError(f"preset must be a preset name or None, got {self.preset!r}")
        self._validate_regularisers()
        return self

    def _validate_regularisers(self) -> None:
        for name in ("l1", "l2", "focal_gamma"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ProbeInputError(f"{name} (--{name.replace('_', '-')}) must be a number >= 0, got {value!r}")
        s = self.label_smoothing
        if not (_is_number(s) and 0 <= s < 1):
            raise ProbeInputError(f"label_smoothing (--label-smoothing) must lie in [0, 1), got {s!r}")
        rho = self.sam_rho
        if rho is not None and not (_is_number(rho) and rho > 0):
            raise ProbeInputError(f"sam_rho (--sam-rho) must be a number > 0 (leave it out for no SAM), got {rho!r}")
        if not isinstance(self.sam_adaptive, bool):
            raise ProbeInputError(f"sam_adaptive (--sam-adaptive) must be true or false, got {self.sam_adaptive!r}")
        if self.sam_adaptive and rho is None:
            raise ProbeInputError("sam_adaptive (--sam-adaptive) needs sam_rho (--sam-rho)")

    def _validate_early(self) -> None:
        steps = self.record_steps
        if not isinstance(steps, (tuple, list)) or not all(_is_int(s) for s in steps):
            raise ProbeInputError(f"record_steps must be a list of integer steps, got {steps!r}")
        if any(s < 1 for s in steps):
            raise ProbeInputError(f"record_steps must be >= 1 (step 0 is always recorded), got {list(steps)}")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ProbeInputError(f"record_steps must be strictly increasing, got {list(steps)}")
        if self.steps is not None and steps and steps[-1] > self.steps:
            raise ProbeInputError(f"record_steps must lie in [1, {self.steps}] (the run's steps), got {list(steps)}")
        budget = self.distance_budget
        if budget is not None and not (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                                       and math.isfinite(budget) and budget > 0):
            raise ProbeInputError(f"distance_budget (lr x steps) must be a positive number, got {budget!r}")
        fractions = self.early_fractions
        if not isinstance(fractions, (tuple, list)) or not all(
                isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in fractions):
            raise ProbeInputError(f"early_fractions must be fractions in (0, 1], got {fractions!r}")
        if any(b <= a for a, b in zip(fractions, fractions[1:])):
            raise ProbeInputError(f"early_fractions must be strictly increasing, got {list(fractions)}")

    def check_record_steps(self, total_steps: int) -> None:
        """Raise :class:`ProbeInputError` unless every ``record_steps`` entry lies in ``[1, total_steps]`` (the run's
        planned steps, known once the training split's size is)."""
        if self.record_steps and self.record_steps[-1] > total_steps:
            raise ProbeInputError(f"record_steps must lie in [1, {total_steps}] (the run's planned steps), got "
                                  f"{list(self.record_steps)}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        out["milestones"] = list(self.milestones)
        out["record_steps"] = list(self.record_steps)
        out["early_fractions"] = list(self.early_fractions)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """The configuration stored by :meth:`to_json`; :class:`ProbeInputError` when it is not one."""
        if not isinstance(data, dict):
            raise ProbeInputError(f"a stored training configuration must be a JSON object, got {type(data).__name__}")
        missing = [name for name in ("dataset", "model", "lr") if name not in data]
        if missing:
            raise ProbeInputError(f"the stored training configuration lacks {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        for name in ("milestones", "record_steps", "early_fractions"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)


def _is_seed(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= MAX_SEED


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_differences(stored: dict[str, Any], asked: dict[str, Any], *, source: str = "stored",
                       ignore: frozenset[str] = RESULT_NEUTRAL_FIELDS) -> list[str]:
    """``"lr (run.json 0.1, asked 0.2)"`` (``source`` names the stored side) for every field that differs between
    two configurations in ``TrainConfig.to_json()`` form, except the fields in ``ignore``. Values are compared as
    they read back from JSON."""
    stored, asked = json.loads(json.dumps(stored)), json.loads(json.dumps(asked))
    return [f"{k} ({source} {stored.get(k)!r}, asked {asked.get(k)!r})"
            for k in sorted(set(stored) | set(asked)) if k not in ignore and stored.get(k) != asked.get(k)]


def parse_record(spec: str) -> tuple[str, int]:
    """``all`` -> ("all", 1); ``every:K`` -> ("every", K); ``log:N`` -> ("log", N)."""
    if spec == "all":
        return "all", 1
    kind, _, num = spec.partition(":")
    if kind in ("every", "log") and num.isdigit() and int(num) >= 1:
        return kind, int(num)
    raise ProbeInputError(f"record schedule must be 'all', 'every:K' or 'log:N' with K, N >= 1, got {spec!r}")


def parse_keep_weights(spec: str) -> tuple[str, int]:
    """The ``keep_weights`` schedule: ``none`` -> ("none", 0), else as :func:`parse_record`."""
    if spec == "none":
        return "none", 0
    try:
        return parse_record(spec)
    except ProbeInputError:
        raise ProbeInputError(f"keep_weights must be 'all', 'every:K', 'log:N' or 'none' with K, N >= 1, "
                              f"got {spec!r}") from None
