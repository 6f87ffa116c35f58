"""The trainer: minibatch SGD (or AdamW) on a :class:`~probe.data.SpuriousDataset`, one committed HDF5 file per
recorded point.

Per optimiser step it keeps, on the device, the per-sample losses and logits of the minibatch (free: they are the
training forward pass). At each recorded point (the end of a data pass the ``record`` schedule names, or a step of
``record_steps``, which may fall inside a pass) it evaluates every split in eval mode and commits model, optimiser
and RNG states with the per-sample records, so that any committed epoch can be resumed bit-identically. Without
``record_steps`` the committed epochs are the recorded passes' numbers; with them they number the recorded points
0, 1, 2 ... and each says its data pass (``Run.data_pass_of``).
"""

from __future__ import annotations

import copy
import math
import os
import platform
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probe import __version__
from probe.data import build_dataset
from probe.data.base import Split, SpuriousDataset
from probe.data.registry import dataset_plugin
from probe.device import resolve_device
from probe.errors import DamagedFileError, ProbeInputError, RunDirectoryError
from probe.models import build_model, model_plugin
from probe.models.weights import (
    check_pretrained_model,
    check_weights_file,
    file_sha256,
    freeze_features,
    load_pretrained,
    pretrained_options,
    read_state_dict,
    set_train_mode,
)
from probe.progress import progress_bar
from probe.store.epoch_file import EpochPayload, ResumePayload
from probe.store.logit_records import encode_logits, parse_record_logits
from probe.store.reader import Run
from probe.store.writer import RunWriter, check_new_run_dir
from probe.train.config import TrainConfig
from probe.train.regularisers import SAM, Objective, batchnorm_stats_frozen, penalised_weights
from probe.train.schedule import final_epoch_number, lr_at, recorded_epochs, weight_epochs

#: ``probe train`` exit code for a run whose loss became non-finite.
EXIT_DIVERGED = 3


@dataclass
class TrainResult:
    status: str  # "complete" or "diverged"
    run_dir: Path
    epochs_committed: list[int]
    global_step: int
    diverged: dict[str, Any] | None
    seconds: float


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def versions() -> dict[str, str]:
    import h5py

    return {"probe": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "h5py": h5py.__version__, "python": platform.python_version()}


def plugin_modules(cfg: TrainConfig) -> list[str]:
    """The plugin modules that define ``cfg``'s dataset and model (``run.json``'s ``plugins``; empty for built-ins).

    A dataset given to the trainer as an object, under a name no builder is registered for, adds nothing."""
    try:
        dataset_module = dataset_plugin(cfg.dataset)
    except ProbeInputError:
        dataset_module = None
    return sorted({m for m in (dataset_module, model_plugin(cfg.model)) if m is not None})


def plan_length(n_train: int, cfg: TrainConfig) -> tuple[int, int, int]:
    """``(steps_per_epoch, num_epochs, total_steps)``; the last batch of an epoch may be smaller."""
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    if cfg.steps is not None:
        return steps_per_epoch, math.ceil(cfg.steps / steps_per_epoch), cfg.steps
    return steps_per_epoch, cfg.epochs, cfg.epochs * steps_per_epoch


@torch.inference_mode()
def evaluate_split(model: torch.nn.Module, split: Split, device: torch.device, batch_size: int,
                   autocast, num_workers: int = 0) -> dict[str, np.ndarray]:
    """Per-sample logits and cross-entropy of ``split`` in eval mode, as host arrays."""
    logits_parts, loss_parts = [], []
    y = split.y.to(device)
    channels_last = uses_channels_last(model)
    for positions, xb in split.batches(batch_size, device=device, num_workers=num_workers):
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(xb)
        logits = logits.float()
        logits_parts.append(logits)
        loss_parts.append(F.cross_entropy(logits, y[positions.to(device)], reduction="none"))
    logits = torch.cat(logits_parts).cpu().numpy()
    return {
        "index": split.index.cpu().numpy(),
        "y": split.y.cpu().numpy(),
        "a": split.a.cpu().numpy(),
        "group": split.group.cpu().numpy(),
        "is_bc": split.is_bc.cpu().numpy(),
        "logits": logits,
        "loss": torch.cat(loss_parts).cpu().numpy(),
    }


def uses_channels_last(model: torch.nn.Module) -> bool:
    """True for models the trainer keeps in channels-last memory format (those with 2-d convolutions)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def overlap_evaluation(device: torch.device) -> bool:
    """Whether the trainer evaluates recorded splits while training goes on: on CUDA (a separate stream), and on a
    CPU whose cores are not all busy with training (torch's intra-op threads at most half of the cores), where the
    evaluation gets cores of its own. Elsewhere the two would compete for the same cores, and evaluation runs between
    steps, as it does for splits streamed from disk."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return 2 * torch.get_num_threads() <= (os.cpu_count() or 1)


class Trainer:
    """Trains one run. Use :func:`train` unless you need the pieces."""

    def __init__(self, cfg: TrainConfig, out: str | Path, *, dataset: SpuriousDataset | None = None,
                 progress: bool = False, overlap_eval: bool | None = None):
        self.cfg = cfg.validate()
        self.out = Path(out)
        self.device = resolve_device(cfg.device)
        self.dataset = dataset if dataset is not None else build_dataset(cfg.dataset, **cfg.dataset_options)
        splits = cfg.record_splits or list(self.dataset.splits)
        for s in splits:
            self.dataset.split(s)
        self.record_splits = splits
        self.progress = progress
        #: evaluate recorded splits on a copy of the weights while training goes on (None: :func:`overlap_evaluation`)
        self.overlap_eval = overlap_eval
        self.steps_per_pass, self.num_passes, self.total_steps = plan_length(len(self.dataset.train), self.cfg)
        self.cfg.check_record_steps(self.total_steps)
        self.weights_info: dict[str, Any] | None = None
        self.final_epoch = final_epoch_number(self.num_passes, self.steps_per_pass, self.total_steps, cfg.record,
                                              tuple(cfg.record_steps))
        #: committed epochs whose file keeps the weights (``keep_weights``)
        self.weight_epochs = weight_epochs(self.final_epoch, cfg.keep_weights)
        self.topk = parse_record_logits(cfg.record_logits)

    # -- setup ---------------------------------------------------------------------------------------------------
    def _fresh_model(self, *, pretrained: bool = True) -> torch.nn.Module:
        """The run's model, initialised from ``cfg.seed``; with ``cfg.weights`` (unless ``pretrained`` is False: a
        resumed run takes its weights from its epoch file) those weights loaded, and with ``cfg.freeze`` the
        features' parameters frozen. Sets :attr:`weights_info` (``run.json``'s ``weights``)."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        if cfg.weights is not None:
            check_pretrained_model(cfg.model)
        model = build_model(cfg.model, self.dataset.input_shape, self.dataset.num_classes,
                            **pretrained_options(cfg.model_options, cfg.weights, self.dataset.options))
        if cfg.weights is not None and pretrained:
            path = check_weights_file(cfg.weights)
            head = load_pretrained(model, read_state_dict(path), source=str(path))
            self.weights_info = {"path": str(path), "sha256": file_sha256(path), "head": head}
        if cfg.freeze == "features":
            freeze_features(model)
        model = model.to(self.device)
        if uses_channels_last(model):  # faster convolutions on CPU and GPU; numerics are the same every run
            model = model.to(memory_format=torch.channels_last)
        return model

    def _autocast(self):
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def run_info(self) -> dict[str, Any]:
        ds = self.dataset.describe()
        return {
            "name": self.out.name,
            "config": self.cfg.to_json(),
            "dataset": ds,
            "recorded_splits": self.record_splits,
            "plan": self.plan(),
            "plugins": plugin_modules(self.cfg),
            **({"weights": self.weights_info} if self.weights_info is not None else {}),
            "device": str(self.device),
            "versions": versions(),
            "command": " ".join(sys.argv),
        }

    # -- main loop -----------------------------------------------------------------------------------------------
    def plan(self) -> dict[str, Any]:
        """``run.json``'s ``plan``: steps per data pass, passes, total steps, the distance budget ``lr x steps``
        (the sweep's, else the run's own ``lr x total_steps``) and its early fractions."""
        budget = self.cfg.distance_budget if self.cfg.distance_budget is not None else self.cfg.lr * self.total_steps
        return {"steps_per_pass": self.steps_per_pass, "passes": self.num_passes, "total_steps": self.total_steps,
                "final_epoch": self.final_epoch,
                "distance_budget": float(budget), "early_fractions": list(self.cfg.early_fractions)}

    def fit(self, *, resume: bool = False, overwrite: bool | str = False) -> TrainResult:
        cfg = self.cfg
        started = time.perf_counter()
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)
        if not resume:
            check_new_run_dir(self.out, overwrite=bool(overwrite))
        model = self._fresh_model(pretrained=not resume)
        optimizer = build_optimizer(model, cfg)
        objective = Objective(cfg)
        penalised = penalised_weights(model)
        sam = None if cfg.sam_rho is None else SAM([p for g in optimizer.param_groups for p in g["params"]],
                                                   cfg.sam_rho, adaptive=cfg.sam_adaptive)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        train = self.dataset.train.to(self.device) if self.dataset.train.in_memory else self.dataset.train
        n_train = len(train)
        steps_per_pass, num_passes, total_steps = self.steps_per_pass, self.num_passes, self.total_steps
        pass_ends = set(recorded_epochs(num_passes, cfg.record))  # passes whose end is recorded
        record_at = set(cfg.record_steps)  # steps recorded wherever they fall
        by_point = bool(record_at)  # then epochs number the recorded points 0, 1, 2 ...; else they are passes
        eval_splits = {s: (self.dataset.split(s).to(self.device) if self.dataset.split(s).in_memory
                           else self.dataset.split(s)) for s in self.record_splits}

        writer = RunWriter.resume(self.out) if resume else RunWriter.create(self.out, self.run_info(),
                                                                                overwrite=overwrite)
        self._committer = BackgroundCommitter(writer)
        # a split streamed from disk draws its loader's seed from the global generator: evaluate it between steps
        in_memory = all(split.in_memory for split in eval_splits.values())
        self.overlap_eval = in_memory and (overlap_evaluation(self.device) if self.overlap_eval is None
                                           else self.overlap_eval)
        self._snapshot: torch.nn.Module | None = None
        self._side_stream = None
        try:
            if resume:
                writer.update_info(plan=self.plan())
                start = self._restore(writer, model, optimizer, shuffle)
            else:
                start = _Position(0, 0, 0, True, None)
            if start.epoch == 0 and 0 not in writer.committed_epochs:
                self._commit(model, optimizer, shuffle, eval_splits, epoch=0, global_step=0, sgd=None,
                             lr=lr_at(0, total_steps, cfg), data_pass=0, pass_complete=True, batches_done=0)
            epoch, global_step = start.epoch, start.global_step
            if start.pass_complete:
                first_pass, skip = start.data_pass + 1, 0
            else:  # resume inside a pass: regenerate its permutation, skip the batches already trained on
                first_pass, skip = start.data_pass, global_step - (start.data_pass - 1) * steps_per_pass
                shuffle.set_state(start.pass_start_state)
            diverged = None
            bar = _progress(total_steps, global_step, self.progress, desc=self.out.name)
            y_train = train.y.to(self.device)
            a_train = train.a.to(self.device)
            bc_train = train.is_bc.to(self.device)
            idx_train = train.index.to(self.device)
            check_every = 1 if self.device.type == "cpu" else 25
            channels_last = uses_channels_last(model)
            for data_pass in range(first_pass, num_passes + 1):
                set_train_mode(model, cfg.freeze)
                pass_start_state = shuffle.get_state()
                order = torch.randperm(n_train, generator=shuffle)
                begin = skip if data_pass == first_pass else 0
                pass_first_step = (data_pass - 1) * steps_per_pass
                steps_this_pass = min(steps_per_pass, total_steps - pass_first_step)
                pass_last_step = pass_first_step + steps_this_pass
                # minibatch records are kept only for passes with a record in them
                keep = data_pass in pass_ends or any(pass_first_step + begin < s <= pass_last_step for s in record_at)
                buffers = _SgdBuffers()
                step_losses = torch.zeros(steps_this_pass, device=self.device)
                checked = begin  # step_losses[:checked] of this pass are known finite
                if not train.in_memory and cfg.workers > 0:
                    # the loader forks its workers: never while the commit thread may hold a lock (h5py's,
                    # logging's) that a forked child or the fork itself would wait on forever
                    self._committer.wait()
                for i, (positions, xb) in enumerate(
                    train.batches(cfg.batch_size, order=order[begin * cfg.batch_size:], device=self.device,
                                  num_workers=cfg.workers), start=begin
                ):
                    if i >= steps_this_pass:
                        break
                    lr = lr_at(global_step, total_steps, cfg)
                    if lr != optimizer.param_groups[0]["lr"]:
                        for group in optimizer.param_groups:
                            group["lr"] = lr
                    if positions.device != self.device:
                        positions = positions.to(self.device)
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    if objective.plain:
                        with self._autocast():
                            logits = model(xb)
                        logits = logits.float()
                        loss_vec = F.cross_entropy(logits, y_train[positions], reduction="none")
                        loss = loss_vec.mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                    else:
                        logits, loss_vec, loss = self._regularised_backward(model, optimizer, xb, y_train[positions],
                                                                            objective, sam, penalised)
                    optimizer.step()
                    if keep:
                        buffers.add(positions, loss_vec.detach(), logits.detach() if cfg.sgd_logits else None,
                                    global_step)
                    global_step += 1
                    inside = global_step in record_at and global_step != pass_last_step
                    bad = None  # position in the pass of the first non-finite loss
                    if check_every == 1:  # the loss is on the host: read it, no batched check needed
                        loss_value = loss.item()
                        if not math.isfinite(loss_value):
                            bad, bad_loss = i, loss_value
                    else:  # the device's losses since the last check, read together
                        step_losses[i] = loss.detach()
                        if (i + 1) % check_every == 0 or i + 1 == steps_this_pass or inside:
                            finite = torch.isfinite(step_losses[checked : i + 1])
                            if not bool(finite.all()):
                                bad = checked + int((~finite).nonzero()[0])
                                bad_loss = float(step_losses[bad])
                            checked = i + 1
                    if bad is not None:
                        diverged = {
                            "epoch": data_pass,
                            "step": global_step - (i + 1) + bad,
                            "loss": str(bad_loss),
                            "lr": lr_at(global_step - (i + 1) + bad, total_steps, cfg),
                        }
                        break
                    bar.update(1)
                    if inside:  # a recorded step inside the pass
                        epoch += 1
                        self._commit(model, optimizer, shuffle, eval_splits, epoch=epoch, global_step=global_step,
                                     sgd=buffers.take(train, idx_train, y_train, a_train, bc_train, cfg.sgd_logits),
                                     lr=lr_at(global_step - 1, total_steps, cfg), data_pass=data_pass,
                                     pass_complete=False, batches_done=i + 1, pass_start_state=pass_start_state)
                if diverged is not None:
                    self._committer.wait()
                    diverged["last_committed_epoch"] = writer.committed_epochs[-1]
                    writer.write_diverged(diverged)
                    writer.set_status("diverged", diverged=diverged)
                    bar.close()
                    return TrainResult("diverged", self.out, writer.committed_epochs, global_step, diverged,
                                       time.perf_counter() - started)
                if data_pass in pass_ends or pass_last_step in record_at:
                    epoch = epoch + 1 if by_point else data_pass
                    self._commit(model, optimizer, shuffle, eval_splits, epoch=epoch, global_step=global_step,
                                 sgd=buffers.take(train, idx_train, y_train, a_train, bc_train, cfg.sgd_logits),
                                 lr=lr_at(global_step - 1, total_steps, cfg), data_pass=data_pass,
                                 pass_complete=True, batches_done=steps_this_pass)
                if global_step >= total_steps:
                    break
            bar.close()
            self._committer.wait()
            writer.set_status("complete")
            return TrainResult("complete", self.out, writer.committed_epochs, global_step, None,
                               time.perf_counter() - started)
        # the run directory exists: never leave it "running" behind a writer that stopped
        except (KeyboardInterrupt, SystemExit):
            self._committer.abandon()
            writer.record_stop("interrupted")
            raise
        except BaseException as err:
            self._committer.abandon()
            writer.record_stop("failed", err)
            raise
        finally:
            self._committer.close()
            writer.close()

    def _regularised_backward(self, model, optimizer, xb, yb, objective: Objective, sam: SAM | None,
                              penalised: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Leave the gradient of the training objective (:mod:`probe.train.regularisers`) in the parameters' grads:
        the data term's (focal loss, smoothed targets) at ``w`` or, with ``sam``, at SAM's ``w + e``, plus the weight
        penalty's at ``w``. Returns the logits at ``w``, their per-sample cross-entropy (what probe records) and the
        objective's value at ``w``."""
        with self._autocast():
            logits = model(xb)
        logits = logits.float()
        if objective.plain_loss:
            loss_vec = F.cross_entropy(logits, yb, reduction="none")
            data = loss_vec.mean()
        else:
            data = objective.sample_losses(logits, yb).mean()
            loss_vec = F.cross_entropy(logits.detach(), yb, reduction="none")
        optimizer.zero_grad(set_to_none=True)
        if sam is not None:
            data.backward()
            sam.ascend()
            optimizer.zero_grad(set_to_none=True)
            with batchnorm_stats_frozen(model), self._autocast():
                perturbed = model(xb)
            objective.sample_losses(perturbed.float(), yb).mean().backward()
            sam.descend()
            data = data.detach()
        penalty = objective.penalty(penalised)
        loss = data if penalty is None else data + penalty
        if sam is None:
            loss.backward()
        elif penalty is not None:
            penalty.backward()
        return logits, loss_vec, loss.detach()

    def _commit(self, model, optimizer, shuffle, eval_splits, *, epoch, global_step, sgd, lr, data_pass,
                pass_complete, batches_done, pass_start_state=None) -> None:
        """Snapshot all state and hand the commit (evaluating every recorded split, writing the files) to the
        background committer.

        With :attr:`overlap_eval` the weights are copied into a second model that the committer evaluates while
        training goes on (on CUDA in a separate stream); otherwise every split is evaluated here first. The records
        are the same either way. A record inside a data pass also keeps the shuffle generator's state from before the
        pass's permutation (``shuffle_pass_start``), so that resuming regenerates the same order and skips
        ``batches_done`` batches."""
        self._committer.wait()  # the previous commit is done with the snapshot model
        keep = epoch in self.weight_epochs
        optimizer_state = copy.deepcopy(optimizer.state_dict())
        if self.overlap_eval:
            snapshot = self._snapshot_of(model)
            model_state = {k: v.detach() for k, v in snapshot.state_dict().items()}
            stream = self._side_stream

            def evaluate() -> dict[str, dict[str, np.ndarray]]:
                with torch.cuda.stream(stream) if stream is not None else nullcontext():
                    return self._evaluate(snapshot, eval_splits)
        else:
            was_training = any(m.training for m in model.modules())
            model.eval()
            records = self._evaluate(model, eval_splits)
            if was_training:
                set_train_mode(model, self.cfg.freeze)
            model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

            def evaluate() -> dict[str, dict[str, np.ndarray]]:
                return records
        # after a serial evaluation, which may draw from the global generator (a DataLoader's base seed)
        rng = {"shuffle": shuffle.get_state(), "torch_cpu": torch.get_rng_state()}
        if not pass_complete:
            rng["shuffle_pass_start"] = pass_start_state
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)

        def build() -> tuple[EpochPayload, ResumePayload]:
            payload = EpochPayload(
                epoch=epoch, global_step=global_step, lr=float(lr), model_state=model_state if keep else None,
                records={name: self._encode(fields) for name, fields in evaluate().items()},
                sgd=None if sgd is None else self._encode(sgd, subset=False),
                data_pass=data_pass, pass_complete=pass_complete, pass_batches_done=batches_done)
            resume = ResumePayload(epoch=epoch, global_step=global_step, optimizer_state=optimizer_state,
                                   rng_states=rng, model_state=None if keep else model_state)
            return payload, resume

        self._committer.submit(build)

    def _evaluate(self, model, eval_splits) -> dict[str, dict[str, np.ndarray]]:
        return {name: evaluate_split(model, split, self.device, self.cfg.eval_batch_size, self._autocast,
                                     self.cfg.workers)
                for name, split in eval_splits.items()}

    def _snapshot_of(self, model: torch.nn.Module) -> torch.nn.Module:
        """The evaluation copy of ``model`` (made once, in eval mode) holding ``model``'s current weights and
        buffers; on CUDA its side stream first waits for the copy."""
        if self._snapshot is None:
            self._snapshot = copy.deepcopy(model).eval()
            if self.device.type == "cuda":
                self._side_stream = torch.cuda.Stream(self.device)
        with torch.no_grad():
            for target, source in zip(self._snapshot.state_dict().values(), model.state_dict().values()):
                target.copy_(source)
        if self._side_stream is not None:
            self._side_stream.wait_stream(torch.cuda.current_stream(self.device))
        return self._snapshot

    def _encode(self, fields: dict[str, np.ndarray], *, subset: bool = True) -> dict[str, np.ndarray]:
        """Records with their logits as ``record_logits`` and ``logits_dtype`` keep them (full float32 logits
        unchanged; an ``(n, 0)`` array of minibatch logits not kept stays as it is)."""
        cfg = self.cfg
        logits = fields["logits"]
        if logits.shape[1] == 0 or (self.topk is None and cfg.logits_dtype == "float32"):
            return fields
        out = {k: v for k, v in fields.items() if k != "logits"}
        out.update(encode_logits(torch.from_numpy(logits), torch.from_numpy(fields["y"]), fields["group"],
                                 topk=self.topk, dtype=cfg.logits_dtype, subset_size=cfg.full_logits_subset,
                                 subset=subset))
        return out

    def _restore(self, writer: RunWriter, model, optimizer, shuffle) -> _Position:
        committed = writer.committed_epochs
        if not committed:
            return _Position(0, 0, 0, True, None)
        run = Run(self.out)
        state = run.resume_state()
        last = state.epoch
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
        rng = state.rng
        shuffle.set_state(rng["shuffle"])
        torch.set_rng_state(rng["torch_cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        data_pass, complete = run.data_pass_of(last)
        step = run.step_of(last)
        pass_start = None
        if not complete:
            if "shuffle_pass_start" not in rng:
                raise DamagedFileError(f"{run.path}: resume state of epoch {last} lacks /rng/shuffle_pass_start; the "
                                       "record lies inside a data pass and cannot be resumed without it")
            done = step - (data_pass - 1) * self.steps_per_pass
            if not 0 < done < self.steps_per_pass:
                raise DamagedFileError(f"{run.path}: epoch {last} at step {step} does not lie inside data pass "
                                       f"{data_pass} of {self.steps_per_pass} steps")
            pass_start = rng["shuffle_pass_start"]
        return _Position(last, step, data_pass, complete, pass_start)


@dataclass
class _Position:
    """Where training resumes: the last committed epoch, its global step and data pass, whether it ended the pass,
    and (inside a pass) the shuffle generator's state before that pass's permutation."""

    epoch: int
    global_step: int
    data_pass: int
    pass_complete: bool
    pass_start_state: torch.Tensor | None


class _SgdBuffers:
    """Per-sample records of the minibatches SGD trained on since the last record, kept on the device."""

    def __init__(self):
        self.positions, self.losses, self.logits, self.steps = [], [], [], []

    def add(self, positions, loss_vec, logits, step: int) -> None:
        """Keep one minibatch's records (references, no copies); ``step`` is kept as a number."""
        self.positions.append(positions)
        self.losses.append(loss_vec)
        if logits is not None:
            self.logits.append(logits)
        self.steps.append(step)

    def take(self, train, idx_train, y_train, a_train, bc_train, sgd_logits: bool) -> dict[str, np.ndarray]:
        """The ``/sgd`` records of what was added since the last call (at least one step), as host arrays; the
        buffers are emptied."""
        pos = torch.cat(self.positions)
        sgd = {
            "index": idx_train[pos].cpu().numpy(),
            "y": y_train[pos].cpu().numpy(),
            "a": a_train[pos].cpu().numpy(),
            "group": (y_train[pos] * train.num_attrs + a_train[pos]).cpu().numpy(),
            "is_bc": bc_train[pos].cpu().numpy(),
            "logits": (torch.cat(self.logits).cpu().numpy() if sgd_logits
                       else np.zeros((len(pos), 0), np.float32)),
            "loss": torch.cat(self.losses).cpu().numpy(),
            "step": np.repeat(np.asarray(self.steps, dtype=np.int64), [len(p) for p in self.positions]),
        }
        self.__init__()
        return sgd


class BackgroundCommitter:
    """Commits epochs (evaluating the recorded splits first when they overlap training) on one background thread
    while the next steps train.

    At most one commit is pending: :meth:`submit` first waits for the previous one, so epochs are committed in
    order and memory holds at most one snapshot. A failed commit re-raises in the training thread.
    """

    def __init__(self, writer: RunWriter):
        self.writer = writer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-commit")
        self._pending: Future | None = None

    def submit(self, build) -> None:
        """Commit ``build()``'s ``(payload, resume)``, calling it on the committer's thread (after the previous
        commit)."""
        self.wait()
        self._pending = self._pool.submit(lambda: self.writer.commit_epoch(*build()))

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def abandon(self) -> None:
        """Wait for the pending commit, ignoring its failure (training already failed for another reason)."""
        try:
            self.wait()
        except BaseException:
            pass

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    return progress_bar(total, desc, "steps", enabled=enabled, initial=initial, leave=False)


def train(cfg: TrainConfig, out: str | Path | None = None, *, resume: bool = False, overwrite: bool | str = False,
          progress: bool = False, dataset: SpuriousDataset | None = None) -> TrainResult:
    """Train one run into the run directory ``out`` (``probe.train(cfg, out)`` calls this function).

    ``resume`` continues from the last committed epoch with the configuration ``run.json`` holds; ``overwrite``
    replaces an inactive probe run directory (``"unstarted"``: only one without ``run.json``, raising
    :class:`~probe.errors.RunStartedError` for a run another process started); ``dataset`` is a dataset built
    already (else it is built from ``cfg``).
    Returns the status (``complete`` or ``diverged``), the committed epochs, the steps and the seconds taken.

    Example:
        >>> import probe
        >>> cfg = probe.TrainConfig(dataset="parity", model="mlp", lr=0.1, epochs=3)
        >>> result = probe.train(cfg, "checkpoints/parity_lr0.1")    # doctest: +SKIP
        >>> result.status, result.epochs_committed                   # doctest: +SKIP
        ('complete', [0, 1, 2, 3])
    """
    if out is None:
        raise RunDirectoryError("an output run directory is required")
    if resume:
        run = Run(out)
        run.load_plugins()
        cfg = TrainConfig.from_json(run.config)
    return Trainer(cfg, out, dataset=dataset, progress=progress).fit(resume=resume, overwrite=overwrite)
