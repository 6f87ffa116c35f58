"""Import: a run directory built from per-epoch checkpoints trained elsewhere.

A folder of state dicts (``.safetensors`` or ``.pth``/``.pt`` read with ``torch.load(weights_only=True)``; see
:func:`probe.models.weights.read_state_dict`) becomes a run directory exactly as the trainer writes one: each
checkpoint is loaded into the run's model, every recorded split is evaluated in eval mode with the trainer's own
evaluation (:func:`probe.train.trainer.evaluate_split`), and the epoch file (weights and per-sample records) is
committed through :class:`probe.store.writer.RunWriter`. The run's status is ``imported`` and ``run.json`` holds
``imported``: the source folder and each epoch's file with its sha256.

What an import cannot know is left out, never invented: the epoch files hold no ``/sgd`` group (the minibatches SGD
saw), so every metric of the split ``sgd`` is not measured, and there is no resume file (an imported run cannot be
resumed). The global step of epoch ``e`` is ``e x ceil(n_train / batch_size)`` (one full data pass per epoch at the
configured batch size) and its learning rate the configured schedule's (constant by default).

Epoch numbers come from the file names (:func:`epoch_of`): the last run of decimal digits in the name without its
ending, so ``epoch_3.pt``, ``ckpt-0012.safetensors`` and ``resnet18_e7.pth`` are epochs 3, 12 and 7.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from probe.data.base import SpuriousDataset
from probe.errors import ProbeInputError
from probe.models.weights import (
    WEIGHT_SUFFIXES,
    file_sha256,
    load_pretrained,
    read_state_dict,
    suffixes_text,
    to_probe_layout,
)
from probe.progress import progress_bar
from probe.store.epoch_file import EpochPayload
from probe.store.writer import RunWriter, check_new_run_dir
from probe.train.config import TrainConfig
from probe.train.schedule import lr_at

#: ``run.json``'s status of an imported run.
IMPORTED = "imported"

_DIGITS = re.compile(r"\d+")


def epoch_of(path: str | Path) -> int | None:
    """The epoch a checkpoint file names: the last run of decimal digits in its name without the ending
    (``ckpt-0012.safetensors`` -> 12, ``epoch_3.pt`` -> 3, ``model_v2_epoch10.pth`` -> 10); None without digits."""
    name = Path(path).name
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    digits = _DIGITS.findall(stem)
    return int(digits[-1]) if digits else None


def find_checkpoints(src: str | Path) -> dict[int, Path]:
    """``{epoch: file}`` of the checkpoint files (``.safetensors``, ``.pth``, ``.pt``) directly inside ``src``, in
    epoch order. Other files are ignored. A one-line :class:`ProbeInputError` when ``src`` is not a folder, holds no
    checkpoint, a checkpoint's name has no epoch number, or two name the same epoch."""
    src = Path(src)
    if not src.is_dir():
        raise ProbeInputError(f"{src}: not a folder of checkpoints")
    found: dict[int, Path] = {}
    for path in sorted(src.iterdir()):
        if not path.is_file() or path.suffix.lower() not in WEIGHT_SUFFIXES:
            continue
        epoch = epoch_of(path)
        if epoch is None:
            raise ProbeInputError(f"{path}: no epoch number in the file name (the last digits of the name give the "
                                  "epoch, e.g. epoch_3.pt or ckpt-0012.safetensors)")
        if epoch in found:
            raise ProbeInputError(f"{path}: names epoch {epoch}, as {found[epoch].name} does")
        found[epoch] = path
    if not found:
        raise ProbeInputError(f"{src}: no {suffixes_text()} checkpoint files")
    return dict(sorted(found.items()))


def load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load the state dict in ``path`` into ``model``: every tensor of the model given with its shape (the
    classifier head included; BatchNorm's ``num_batches_tracked`` may be absent), nothing else given. A one-line
    :class:`ProbeInputError` naming the file and the first mismatch otherwise."""
    given = to_probe_layout(read_state_dict(path))
    own = model.state_dict()
    for key in ("head.weight", "head.bias"):
        if key in own and key not in given:
            raise ProbeInputError(f"{path}: missing {key} (model {type(model).__name__} needs it)")
        if key in own and tuple(given[key].shape) != tuple(own[key].shape):
            raise ProbeInputError(f"{path}: {key} has shape {tuple(given[key].shape)}, the model's is "
                                  f"{tuple(own[key].shape)}")
    load_pretrained(model, given, source=str(path))


@dataclass
class ImportResult:
    run_dir: Path
    epochs_committed: list[int]
    seconds: float


def import_checkpoints(src: str | Path, out: str | Path, cfg: TrainConfig, *, overwrite: bool = False,
                       dataset: SpuriousDataset | None = None, progress: bool = False) -> ImportResult:
    """Build the run directory ``out`` from the checkpoints in the folder ``src`` (module doc).

    ``cfg`` gives the dataset, model (with their options), learning rate, seed, batch size and the recording options
    (``record_splits``, ``record_logits`` ...); its training length is set from the largest epoch. Every checkpoint
    is read and checked against the model before anything is written: a file that is not a weights-only state dict
    or does not fit the model raises a one-line :class:`ProbeInputError` naming it and ``out`` is not created. A
    failure while writing removes ``out`` again.

    Example:
        >>> from probe.train import TrainConfig
        >>> from probe.train.importer import import_checkpoints
        >>> cfg = TrainConfig(dataset="colored-mnist", model="mlp", lr=0.1, epochs=1)
        >>> import_checkpoints("my_ckpts", "checkpoints/imported_lr0.1", cfg)   # doctest: +SKIP
    """
    from probe.train.trainer import Trainer

    started = time.perf_counter()
    out = Path(out)
    files = find_checkpoints(src)
    last = max(files)
    cfg = dataclasses.replace(cfg, epochs=max(last, 1), steps=None, record="all", record_steps=(),
                              keep_weights="all", weights=None, freeze=None).validate()
    check_new_run_dir(out, overwrite=overwrite)
    trainer = Trainer(cfg, out, dataset=dataset)
    model = trainer._fresh_model()
    for path in files.values():  # every file checked before anything is written
        load_checkpoint(model, path)
    eval_splits = {s: (trainer.dataset.split(s).to(trainer.device) if trainer.dataset.split(s).in_memory
                       else trainer.dataset.split(s)) for s in trainer.record_splits}
    info = trainer.run_info()
    info["imported"] = {"source": str(Path(src).resolve()),
                        "files": [{"epoch": e, "file": p.name, "sha256": file_sha256(p)} for e, p in files.items()]}
    steps_per_pass = trainer.steps_per_pass
    writer = RunWriter.create(out, info, overwrite=overwrite)
    try:
        bar = progress_bar(len(files), out.name, "epochs", enabled=progress, leave=False)
        for epoch, path in files.items():
            load_checkpoint(model, path)
            model.eval()
            records = trainer._evaluate(model, eval_splits)
            step = epoch * steps_per_pass
            payload = EpochPayload(
                epoch=epoch, global_step=step, lr=float(lr_at(max(step - 1, 0), trainer.total_steps, cfg)),
                model_state={k: v.detach().clone() for k, v in model.state_dict().items()},
                records={name: trainer._encode(fields) for name, fields in records.items()}, sgd=None,
                data_pass=epoch, pass_complete=True, pass_batches_done=steps_per_pass if epoch else 0)
            writer.commit_epoch(payload)
            bar.update(1)
        bar.close()
        writer.set_status(IMPORTED)
    except BaseException:
        writer.close()
        shutil.rmtree(out, ignore_errors=True)
        raise
    writer.close()
    return ImportResult(out, list(files), time.perf_counter() - started)
