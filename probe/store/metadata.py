"""Validation of the JSON files of run and sweep directories: ``run.json``, ``manifest.json`` and ``sweep.json``.

Each ``check_*`` function returns its argument unchanged or raises :class:`~probe.errors.DamagedFileError` naming
the file and the key, so that a reader never meets a ``KeyError`` or a string where a number belongs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from probe.errors import DamagedFileError
from probe.store.ownership import epoch_filename, resume_filename
from probe.store.schema import check_schema

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: ``run.json``'s ``status`` values: written by the trainer (``running`` until it stops, then ``complete``,
#: ``diverged``, ``failed`` or ``interrupted``) or by ``probe import`` (``imported``: epochs evaluated from checkpoints
#: trained elsewhere, with no minibatch records).
RUN_STATUSES = ("running", "complete", "diverged", "failed", "interrupted", "imported")


def check_run_info(info: Any, path: Path) -> dict[str, Any]:
    """``run.json``: schema version, the config keys readers use, the dataset summary, the status (one of
    :data:`RUN_STATUSES`) and, for an imported run, ``imported`` (source folder and files)."""
    _require(isinstance(info, dict), path, "is not a JSON object")
    check_schema(info.get("schema_version"), str(path))
    config = _key(info, "config", dict, path)
    _key(config, "dataset", str, path, "config.dataset")
    _key(config, "model", str, path, "config.model")
    lr = _key(config, "lr", (int, float), path, "config.lr")
    _require(math.isfinite(lr) and lr > 0, path, f"config.lr must be a positive finite number, got {lr!r}")
    _key(config, "seed", int, path, "config.seed")
    for key in ("dataset_options", "model_options"):
        if config.get(key) is not None:
            _key(config, key, dict, path, f"config.{key}")
    if "sgd_logits" in config:
        _key(config, "sgd_logits", bool, path, "config.sgd_logits")
    dataset = _key(info, "dataset", dict, path)
    for key in ("num_classes", "num_attrs"):
        value = _key(dataset, key, int, path, f"dataset.{key}")
        _require(value >= 1, path, f"dataset.{key} must be >= 1, got {value}")
    shape = _key(dataset, "input_shape", list, path, "dataset.input_shape")
    _require(all(_is_int(d) and d >= 1 for d in shape), path, f"dataset.input_shape must be positive ints: {shape}")
    splits = info.get("recorded_splits", [])
    _require(isinstance(splits, list) and all(isinstance(s, str) for s in splits), path,
             "recorded_splits must be a list of split names")
    status = _key(info, "status", str, path)
    _require(status in RUN_STATUSES, path, f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}"[:300])
    if "imported" in info:
        imported = _key(info, "imported", dict, path)
        _key(imported, "source", str, path, "imported.source")
        for i, entry in enumerate(_key(imported, "files", list, path, "imported.files")):
            _require(isinstance(entry, dict), path, f"imported.files[{i}] is not a JSON object")
            _key(entry, "epoch", int, path, f"imported.files[{i}].epoch")
            _key(entry, "file", str, path, f"imported.files[{i}].file")
    return info


def check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    """``manifest.json``: one entry per committed epoch, each naming ``epoch_NNNNN.h5`` in the run directory (with its
    ``data_pass`` and ``pass_complete`` where the writer recorded them, and ``weights``: whether the file holds the
    model's weights; schema 1 files always did), and (schema 2) ``resume``: the resume file of a committed epoch."""
    _require(isinstance(manifest, dict), path, "is not a JSON object")
    check_schema(manifest.get("schema_version"), str(path))
    entries = _key(manifest, "epochs", list, path)
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"epochs[{i}]"
        _require(isinstance(entry, dict), path, f"{where} is not a JSON object")
        epoch = _key(entry, "epoch", int, path, f"{where}.epoch")
        _require(epoch >= 0 and epoch not in seen, path, f"{where}.epoch {epoch} is negative or listed twice")
        seen.add(epoch)
        name = _key(entry, "file", str, path, f"{where}.file")
        _require(name == epoch_filename(epoch), path,
                 f"{where}.file must be {epoch_filename(epoch)!r} (a file of the run directory), got {name!r}")
        size = _key(entry, "size", int, path, f"{where}.size")
        _require(size >= 0, path, f"{where}.size is negative")
        step = _key(entry, "global_step", int, path, f"{where}.global_step")
        _require(step >= 0, path, f"{where}.global_step is negative")
        if "data_pass" in entry or "pass_complete" in entry:  # written since records inside a data pass exist
            data_pass = _key(entry, "data_pass", int, path, f"{where}.data_pass")
            _require(data_pass >= 0, path, f"{where}.data_pass is negative")
            _key(entry, "pass_complete", bool, path, f"{where}.pass_complete")
        if "weights" in entry:
            _key(entry, "weights", bool, path, f"{where}.weights")
        digest = _key(entry, "sha256", str, path, f"{where}.sha256")
        _require(_SHA256.fullmatch(digest) is not None, path, f"{where}.sha256 is not 64 hex digits")
    if "resume" in manifest:
        resume = _key(manifest, "resume", dict, path)
        epoch = _key(resume, "epoch", int, path, "resume.epoch")
        _require(epoch in seen, path, f"resume.epoch {epoch} is not a committed epoch")
        name = _key(resume, "file", str, path, "resume.file")
        _require(name == resume_filename(epoch), path,
                 f"resume.file must be {resume_filename(epoch)!r} (a file of the run directory), got {name!r}")
        size = _key(resume, "size", int, path, "resume.size")
        _require(size >= 0, path, "resume.size is negative")
        digest = _key(resume, "sha256", str, path, "resume.sha256")
        _require(_SHA256.fullmatch(digest) is not None, path, "resume.sha256 is not 64 hex digits")
    return manifest


def check_sweep_config(config: Any, path: Path) -> dict[str, Any]:
    """``sweep.json``: axes, base config and one entry per run, each naming a folder inside the sweep."""
    _require(isinstance(config, dict), path, "is not a JSON object")
    check_schema(config.get("schema_version"), str(path))
    axes = _key(config, "axes", dict, path)
    _require(all(isinstance(v, list) for v in axes.values()), path, "every axis must be a list of values")
    base = _key(config, "base_config", dict, path)
    _key(base, "dataset", str, path, "base_config.dataset")
    _key(base, "model", str, path, "base_config.model")
    for i, entry in enumerate(_key(config, "runs", list, path)):
        _require(isinstance(entry, dict), path, f"runs[{i}] is not a JSON object")
        name = _key(entry, "name", str, path, f"runs[{i}].name")
        _require(name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name, path,
                 f"runs[{i}].name must be a folder name inside the sweep, got {name!r}")
    return config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _key(obj: dict[str, Any], key: str, kind, path: Path, label: str | None = None) -> Any:
    label = label or key
    _require(key in obj, path, f"no {label}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))
    _require(ok, path, f"{label} must be {_kind_name(kinds)}, got {value!r}"[:300])
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list",
             bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds if not (k is int and float in kinds))


def _require(condition: bool, path: Path, reason: str) -> None:
    if not condition:
        raise DamagedFileError(f"{path}: {reason}")


def check_diverged(record: Any, path: Path) -> dict[str, Any]:
    """``diverged.json``: where the loss became non-finite."""
    _require(isinstance(record, dict), path, "is not a JSON object")
    for key in ("epoch", "step"):
        _key(record, key, int, path)
    _require("loss" in record, path, "no loss")
    return record
