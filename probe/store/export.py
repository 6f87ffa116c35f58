"""Export: each epoch's weights as ``.safetensors``, and the per-epoch metrics and training records to experiment
trackers (TensorBoard event files, an MLflow file store). See ``docs/import-export.md``.

Weights: ``DIR/<run>/epoch_NNNNN.safetensors`` (five-digit epoch, as the run directory names its epoch files) for
every epoch that keeps weights, one folder per run of a run or sweep; the file's metadata holds ``run``, ``epoch``,
``global_step`` and ``lr``. ``probe import DIR/<run>`` reads such a folder back.

Trackers: one tracker run per probe run, named as the probe run. Scalars (step = epoch):

- ``<split>/<metric>``: every finite value ``probe analyze`` measured for that epoch (``metrics.json``'s
  ``epochs``); a value not measured (null) or non-finite is not exported;
- ``records/<split>/loss`` and ``records/<split>/acc``: mean cross-entropy and accuracy of the stored per-sample
  records of each recorded split; ``records/sgd/loss``: mean loss of the minibatches SGD trained on during the epoch
  (absent at epoch 0 and for imported runs).

Hyperparameters are ``run.json``'s ``config``, flattened (``dataset_options.rho``); lists and None as JSON text.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.errors import ProbeInputError
from probe.store.reader import Run, Sweep, open_path

__all__ = ["RunExport", "collect_exports", "export_weights", "mlflow_metric_name", "read_analysis_epochs",
           "target_runs", "weights_filename", "write_mlflow", "write_tensorboard"]


def weights_filename(epoch: int) -> str:
    """``epoch_00003.safetensors``."""
    return f"epoch_{epoch:05d}.safetensors"


def target_runs(path: str | os.PathLike) -> list[Run]:
    """The run at ``path``, or every readable run of the sweep at ``path``."""
    target: Run | Sweep = open_path(path)
    return [target] if isinstance(target, Run) else list(target.runs)


def export_weights(path: str | os.PathLike, out: str | os.PathLike) -> list[Path]:
    """Write every weight-keeping epoch of the run or sweep at ``path`` as ``out/<run>/epoch_NNNNN.safetensors``;
    returns the files written. A file that exists already is refused (one line, nothing written)."""
    from safetensors.torch import save_file

    out = Path(out)
    runs = target_runs(path)
    planned = [(run, epoch, out / run.name / weights_filename(epoch)) for run in runs for epoch in run.weight_epochs]
    if not planned:
        raise ProbeInputError(f"{path}: no epoch keeps weights; nothing to export")
    clash = next((file for _, _, file in planned if file.exists()), None)
    if clash is not None:
        raise ProbeInputError(f"{clash}: exists; export into a new or empty folder")
    if out.exists() and not out.is_dir():
        raise ProbeInputError(f"{out}: exists and is not a folder")
    written = []
    for run, epoch, file in planned:
        file.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in run.state_dict(epoch).items()}
        metadata = {"run": run.name, "epoch": str(epoch), "global_step": str(run.step_of(epoch)), "lr": repr(run.lr)}
        temp = file.with_name(f".tmp-{file.name}.{os.getpid()}")
        save_file(state, str(temp), metadata=metadata)
        os.replace(temp, file)
        written.append(file)
    return written


# -- trackers --------------------------------------------------------------------------------------------------------
@dataclass
class RunExport:
    """What a tracker receives of one probe run: its name, flattened config and ``(tag, epoch, value)`` scalars."""

    name: str
    params: dict[str, Any]
    scalars: list[tuple[str, int, float]] = field(default_factory=list)


def read_analysis_epochs(metrics_json: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``metrics.json``'s ``epochs``: run key -> epoch (as text) -> ``{"step", "metrics": {split: {metric:
    value}}}``."""
    path = Path(metrics_json)
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ProbeInputError(f"{path}: not a readable metrics.json ({' '.join(str(err).split())})"[:300]) from None
    epochs = document.get("epochs") if isinstance(document, dict) else None
    if not isinstance(epochs, dict):
        raise ProbeInputError(f"{path}: no 'epochs' object; not probe analyze's metrics.json")
    return epochs


def _analysis_of(run: Run, epochs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The analysis entry of ``run``: its name, or ``<source>/<name>`` when analyze saw several sources."""
    if run.name in epochs:
        return epochs[run.name]
    matches = [key for key in epochs if key.endswith("/" + run.name)]
    return epochs[matches[0]] if len(matches) == 1 else None


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"dataset_options": {"rho": 0.9}}`` -> ``{"dataset_options.rho": 0.9}``; lists and None as JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_params(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def collect_exports(runs: Iterable[Run], analysis_epochs: dict[str, dict[str, Any]] | None) -> list[RunExport]:
    """One :class:`RunExport` per run: the analysis values of ``analysis_epochs`` (``metrics.json``'s ``epochs``;
    None: training records only) and the training records (module doc)."""
    exports = []
    for run in runs:
        export = RunExport(run.name, flatten_params(run.config))
        analysed = _analysis_of(run, analysis_epochs) if analysis_epochs is not None else None
        for epoch_text, entry in sorted((analysed or {}).items(), key=lambda item: int(item[0])):
            for split, metrics in (entry.get("metrics") or {}).items():
                for metric, value in metrics.items():
                    if _finite(value):
                        export.scalars.append((f"{split}/{metric}", int(epoch_text), float(value)))
        for epoch in run.epochs:
            with run.reading_epoch(epoch):
                for split in run.splits:
                    rec = run.records(split, epoch)
                    if len(rec):
                        export.scalars.append((f"records/{split}/loss", epoch, float(np.mean(rec.loss))))
                        export.scalars.append((f"records/{split}/acc", epoch, float(np.mean(rec.pred == rec.y))))
                sgd = run.sgd_records(epoch)
                if len(sgd):
                    export.scalars.append(("records/sgd/loss", epoch, float(np.mean(sgd.loss))))
        exports.append(export)
    return exports


def write_tensorboard(exports: list[RunExport], out: str | os.PathLike) -> list[Path]:
    """One TensorBoard run folder ``out/<run>`` per export: every scalar (step = epoch) and the params as hparams
    (the hparams plugin's session with the last value of each ``records/*`` tag as its metrics). Refuses (one line,
    nothing written) a run folder that exists already."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    out = Path(out)
    clash = next((out / e.name for e in exports if (out / e.name).exists()), None)
    if clash is not None:
        raise ProbeInputError(f"{clash}: exists; export into a new or empty folder")
    folders = []
    for export in exports:
        folder = out / export.name
        writer = SummaryWriter(log_dir=str(folder))
        try:
            for tag, step, value in export.scalars:
                writer.add_scalar(tag, value, global_step=step)
            last = {tag: value for tag, _, value in export.scalars if tag.startswith("records/")}
            for summary in hparams(export.params, last):
                writer._get_file_writer().add_summary(summary)
        finally:
            writer.close()
        folders.append(folder)
    return folders


_MLFLOW_BAD = re.compile(r"[^A-Za-z0-9_\-. :]")


def mlflow_metric_name(tag: str) -> str:
    """The tag as MLflow's file store keeps it: ``/`` becomes ``.`` (the store makes a folder of each ``/``, so
    ``model/param_norm`` and ``model/param_norm/head.weight`` could not both be kept), ``@`` becomes ``_at_``, any
    other character MLflow refuses becomes ``_``: ``train/cmr@0.9`` -> ``train.cmr_at_0.9``."""
    return _MLFLOW_BAD.sub("_", tag.replace("/", ".").replace("@", "_at_"))


def write_mlflow(exports: list[RunExport], out: str | os.PathLike, experiment: str = "probe") -> list[str]:
    """One MLflow run per export in the local file store ``out`` (``file:`` URI), in experiment ``experiment``
    (created when missing): params = the flattened config, metrics (names by :func:`mlflow_metric_name`) with step =
    epoch, tag ``probe.run`` = the run's name. Returns the MLflow run ids."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ProbeInputError(f"{out}: exists and is not a folder")
    # MLflow 3 keeps its file store in maintenance mode and refuses it unless this is set; the file store is what
    # the export writes (a folder that any MLflow reads with a file: URI)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=out.as_uri())
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    ids = []
    for export in exports:
        run = client.create_run(experiment_id, run_name=export.name, tags={"probe.run": export.name})
        run_id = run.info.run_id
        params = [Param(key, str(value)[:6000]) for key, value in export.params.items()]
        metrics = [Metric(mlflow_metric_name(tag), value, 0, step) for tag, step, value in export.scalars]
        for start in range(0, len(params), 100):  # MLflow's limits per batch: 100 params, 1000 metrics
            client.log_batch(run_id, params=params[start:start + 100])
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start:start + 1000])
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids
