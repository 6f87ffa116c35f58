"""``probe demo``: a learning-rate sweep, its matched-budget twin and their analysis, on the embedded digits.

The full demo trains colored-mnist (rho 0.99, native 8x8, scikit-learn's bundled digits) with the MLP (two hidden
layers of 256), plain SGD, batch 64:

- a fixed-steps sweep: 2000 steps at rates 0.01, 0.03, 0.1, 0.3, 1.0 (two seeds each);
- its matched-budget twin: rates 0.1, 0.3, 1.0 with rate x steps = 600 (6000, 2000 and 600 steps; two seeds);

recording about 25 log-spaced epochs per run, then runs :func:`probe.analyses.engine.analyze` on both (models analysed
at the last epoch only, deep feature reweighting with 5 re-samples), draws the report
(:func:`probe.report.write_report`, with the attribution grids of :func:`probe.analyses.engine.attribution_grids`) and
prints where it is.
Training and analysis run on one CPU thread, the fastest setting for a model this small. ``quick=True`` is a smaller
variant (3 rates, 100 steps, one seed) for tests.
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
    model_epochs: str = "last"
    dfr_retrains: int = 5


FULL = DemoPlan("demo", (0.01, 0.03, 0.1, 0.3, 1.0), 2000, (0, 1), (0.1, 0.3, 1.0), 600, "log:25")
QUICK = DemoPlan("demo-quick", (0.01, 0.1, 1.0), 100, (0,), (0.1, 1.0), 30, "log:4", dfr_retrains=2)

BASE = {"dataset": "colored-mnist", "dataset_options": {"rho": 0.99}, "model": "mlp",
        "model_options": {"width": 256, "depth": 2}, "optimizer": "sgd", "batch_size": 64}


def demo_paths(out: str | Path | None, plan: DemoPlan) -> tuple[Path, Path]:
    """(folder of the two sweeps, analysis folder): ``checkpoints/<name>`` and ``analyses/<name>`` under ``out``
    (default: the current directory)."""
    root = Path(".") if out is None else Path(out)
    return root / "checkpoints" / plan.name, root / "analyses" / plan.name


def _sweep(out: Path, rates: tuple[float, ...], plan: DemoPlan, budget: str, steps: int, overwrite: bool,
           progress: bool) -> list[tuple[str, str, Any]]:
    from probe.train import TrainConfig, run_sweep

    base = TrainConfig(lr=rates[0], steps=steps, record=plan.record, device="cpu", **BASE)
    axes = {"lr": list(rates), "seed": list(plan.seeds)}
    resume = (out / "sweep.json").is_file() and not overwrite
    return run_sweep(base, out, axes, budget=budget, steps=steps if budget == "matched" else None,
                     resume=resume, overwrite=overwrite, progress=progress)


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
    say = print if echo else (lambda *a, **k: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 256-wide MLP on 8x8 inputs trains several times faster on one thread
    try:
        return _run(plan, ckpt, report_dir, overwrite, progress, echo, say)
    finally:
        torch.set_num_threads(threads)


def _run(plan: DemoPlan, ckpt: Path, report_dir: Path, overwrite: bool, progress: bool, echo: bool,
         say) -> AnalysisResult:
    started = time.perf_counter()
    say(f"probe demo: colored-mnist (rho 0.99, 8x8 embedded digits), MLP 256-256, SGD batch 64; rates "
        f"{', '.join(f'{r:g}' for r in plan.rates)} for {plan.steps} steps, seeds {list(plan.seeds)}")
    _sweep(ckpt / "fixed", plan.rates, plan, "fixed", plan.steps, overwrite, progress)
    say(f"probe demo: matched-budget twin at rates {', '.join(f'{r:g}' for r in plan.matched_rates)} "
        f"(rate x steps = {max(plan.matched_rates) * plan.matched_steps:g})")
    _sweep(ckpt / "matched", plan.matched_rates, plan, "matched", plan.matched_steps, overwrite, progress)
    trained = time.perf_counter() - started
    result = analyze(ckpt, out=report_dir, model_epochs=plan.model_epochs, progress=progress,
                     options={"dfr_retrains": plan.dfr_retrains})
    write_report(result, attribution_grids(result))
    write_tables(result)  # again: metrics.json lists the figures that failed, if any
    if echo:
        print(summary_text(result))
        print(f"probe demo: trained in {trained:.0f} s, analysed in {time.perf_counter() - started - trained:.0f} s")
        print(f"probe demo: report at {result.report}")
    return result
