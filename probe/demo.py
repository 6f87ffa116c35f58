"""``probe demo``: a learning-rate sweep, its matched-budget twin and their analysis, on the embedded digits.

The full demo trains Double MNIST (a dim core digit on the left, a bright spurious digit on the right; rho 0.95, 4000
training samples rendered from scikit-learn's bundled 8x8 digits, 200 of them bias-conflicting; an unbiased test split
with every test digit beside every spurious digit) with the MLP (two hidden layers of 256), plain SGD, batch 64, three
seeds:

- a fixed-steps sweep: 1000 steps at rates 0.01, 0.03, 0.1, 0.3 (at rate 1 this model falls back on the spurious
  digit: a rate too large for the set-up, not part of the demo);
- its matched-budget twin: rates 0.03, 0.1, 0.3 with rate x steps = 150 (5000, 1500 and 500 steps);

recording about 8 log-spaced epochs per run plus the points at 1%, 3% and 10% of each sweep's distance budget, two
runs at a time. The core region is a mask, so every claim of the study and every link of the mechanism chain can be
measured. Then :func:`probe.analyses.engine.analyze` on both (models analysed at the last epoch only; 64 samples
attributed; the linear probes without deep feature reweighting, which ``probe analyze`` runs by default), the report
(:func:`probe.report.write_report`, with the attribution grids of :func:`probe.analyses.engine.attribution_grids`),
and where it is. Every run trains on one CPU thread, the fastest setting for a model this small. About 75 s on 2 CPU
cores. ``examples/double_mnist_sweep.sh`` is the same with the command line (:func:`sweep_arguments`). ``quick=True``
is a smaller variant (3 rates, 100 steps, one seed, 1000 training samples, 200 digits per evaluation split) for tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.analyses.engine import AnalysisResult, analyze, attribution_grids, summary_text, write_tables
from probe.report import write_report


@dataclass(frozen=True)
class DemoPlan:
    """What the demo trains and analyses."""

    name: str
    rates: tuple[float, ...]
    steps: int
    seeds: tuple[int, ...]
    matched_rates: tuple[float, ...]
    matched_steps: int  # steps of the largest matched rate
    record: str
    n_train: int = 4000
    max_eval_digits: int = 1000  # source digits of the validation and test splits (each beside every spurious digit)
    model_epochs: str = "last"
    dfr_retrains: int = 0
    attr_n: int = 64
    jobs: int = 2


FULL = DemoPlan("demo", (0.01, 0.03, 0.1, 0.3), 1000, (0, 1, 2), (0.03, 0.1, 0.3), 500, "log:8")
QUICK = DemoPlan("demo-quick", (0.01, 0.1, 1.0), 100, (0,), (0.1, 1.0), 30, "log:4", n_train=1000,
                 max_eval_digits=200, jobs=1)

BASE = {"dataset": "double-mnist", "model": "mlp", "model_options": {"width": 256, "depth": 2}, "optimizer": "sgd",
        "batch_size": 64}


def demo_paths(out: str | Path | None, plan: DemoPlan) -> tuple[Path, Path]:
    """(folder of the two sweeps, analysis folder): ``checkpoints/<name>`` and ``analyses/<name>`` under ``out``
    (default: the current directory)."""
    root = Path(".") if out is None else Path(out)
    return root / "checkpoints" / plan.name, root / "analyses" / plan.name


def sweep_arguments(plan: DemoPlan, budget: str) -> tuple[Any, dict[str, list], int | None]:
    """``(base config, axes, steps)`` of the demo's ``budget`` sweep (``"fixed"`` or ``"matched"``), as
    :func:`probe.train.run_sweep` takes them (``examples/double_mnist_sweep.sh`` is the same two sweeps with the
    command line)."""
    from probe.train import TrainConfig

    rates = plan.rates if budget == "fixed" else plan.matched_rates
    base = TrainConfig(lr=rates[0], steps=plan.steps if budget == "fixed" else plan.matched_steps, record=plan.record,
                       device="cpu", dataset_options={"n_train": plan.n_train, "max_eval_digits": plan.max_eval_digits},
                       **BASE)
    return base, {"lr": list(rates), "seed": list(plan.seeds)}, None if budget == "fixed" else plan.matched_steps


def _sweep(out: Path, plan: DemoPlan, budget: str, overwrite: bool, progress: bool) -> list[tuple[str, str, Any]]:
    from probe.train import run_sweep

    base, axes, steps = sweep_arguments(plan, budget)
    resume = (out / "sweep.json").is_file() and not overwrite
    return run_sweep(base, out, axes, budget=budget, steps=steps, resume=resume, overwrite=overwrite,
                     progress=progress, jobs=plan.jobs, threads=1)


def run_demo(out: str | Path | None = None, quick: bool = False, overwrite: bool = False,
             progress: bool = True, echo: bool = True) -> AnalysisResult:
    """Train the demo's two sweeps (or reuse them when already complete) and analyse them.

    Args:
        out: root folder (default: the current directory): sweeps go to ``<out>/checkpoints/demo/{fixed,matched}``,
            the report to ``<out>/analyses/demo/`` (``demo-quick`` with ``quick``).
        quick: the small variant.
        overwrite: retrain even when the sweeps exist.
        progress: progress bars.
        echo: print what happens and where the report is.

    Returns:
        The :class:`~probe.analyses.engine.result.AnalysisResult` of ``analyze``, with its report written.
    """
    import torch

    plan = QUICK if quick else FULL
    ckpt, report_dir = demo_paths(out, plan)
    say = (lambda *a: print(*a, flush=True)) if echo else (lambda *a: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 256-wide MLP on 8x8 inputs trains several times faster on one thread
    try:
        return _run(plan, ckpt, report_dir, overwrite, progress, echo, say)
    finally:
        torch.set_num_threads(threads)


def _run(plan: DemoPlan, ckpt: Path, report_dir: Path, overwrite: bool, progress: bool, echo: bool,
         say) -> AnalysisResult:
    started = time.perf_counter()
    say(f"probe demo: double-mnist (rho 0.95, {plan.n_train} training samples from the 8x8 embedded digits), MLP "
        f"256-256, SGD batch 64; rates {', '.join(f'{r:g}' for r in plan.rates)} for {plan.steps} steps, seeds "
        f"{list(plan.seeds)}")
    _sweep(ckpt / "fixed", plan, "fixed", overwrite, progress)
    say(f"probe demo: matched-budget twin at rates {', '.join(f'{r:g}' for r in plan.matched_rates)} "
        f"(rate x steps = {max(plan.matched_rates) * plan.matched_steps:g})")
    _sweep(ckpt / "matched", plan, "matched", overwrite, progress)
    trained = time.perf_counter() - started
    say("probe demo: analysing both sweeps")
    result = analyze(ckpt, out=report_dir, model_epochs=plan.model_epochs, progress=progress,
                     options={"dfr_retrains": plan.dfr_retrains, "attr_n": plan.attr_n})
    errors = len(result.errors)
    write_report(result, attribution_grids(result))
    if len(result.errors) != errors:
        write_tables(result)  # again: metrics.json lists the figures that failed
    if echo:
        print(summary_text(result))
        print(f"probe demo: trained in {trained:.0f} s, analysed in {time.perf_counter() - started - trained:.0f} s")
        print(f"probe demo: report at {result.report}")
    return result
