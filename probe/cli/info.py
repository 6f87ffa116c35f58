"""``probe info``: configuration, epochs, status, sizes and divergence of a run, a sweep, a folder of runs (a
collection) or a folder of sweeps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from probe.errors import EXIT_IO_ERROR


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a run, a sweep, a folder of runs (a collection: runs trained separately, no ``sweep.json``) or a folder
    of sweeps (and runs). A damaged run is shown with status ``damaged`` and reported on stderr, one line each, and the
    exit code is 1, as for ``probe verify`` (``--verify`` checks every file; without it only the JSON files are read).
    A path that is none of these, or a single run whose own JSON cannot be read, is bad input (exit code 2)."""
    from probe.store.reader import RUN_JSON, SWEEP_JSON, Collection, folder_members, open_path

    folder = Path(args.path)
    sweeps, runs = ([], []) if (folder / SWEEP_JSON).is_file() or (folder / RUN_JSON).is_file() \
        else folder_members(folder)
    if sweeps or runs:  # e.g. a fixed-steps sweep and its matched-budget twin; runs trained one by one
        targets = [open_path(c) for c in sweeps] + ([Collection(folder)] if runs else [])
        payloads = [_info_payload(t, verify=args.verify) for t in targets]
        if args.json:
            document = {"sweeps": payloads[:len(sweeps)]} if sweeps else payloads[0]
            if sweeps and runs:
                document["collection"] = payloads[-1]
            print(json.dumps(document, indent=2))
        else:
            for target, payload in zip(targets, payloads):
                _info_one(target, payload)
                print()
        return _report_damaged(*payloads)
    target = open_path(args.path)
    payload = _info_payload(target, verify=args.verify)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        _info_one(target, payload)
    return _report_damaged(payload)


def _report_damaged(*payloads: dict[str, Any]) -> int:
    """One stderr line per damaged run; the exit code of ``probe info`` (1 when a run is damaged, else 0)."""
    damaged = [r for p in payloads for r in p["runs"] if r["status"] == "damaged"]
    for r in damaged:
        problem = r["problems"][0]
        print(f"probe: error: {r['path']}: damaged: {Path(problem['file']).name}: {problem['reason']}",
              file=sys.stderr)
    return EXIT_IO_ERROR if damaged else 0


def _run_summary(run_dir: Path, *, verify: bool) -> dict[str, Any]:
    """``Run.summary()``, or ``status: damaged`` with the problems; with ``verify`` every file is checked first."""
    from probe.errors import ProbeError
    from probe.store.reader import Run
    from probe.store.verify import Problem, verify_run

    problems: list[Problem] = []
    if verify:
        problems = verify_run(run_dir).problems
    summary: dict[str, Any] = {"name": run_dir.name, "path": str(run_dir)}
    if not problems:
        try:
            summary = Run(run_dir).summary()
        except (ProbeError, OSError) as err:  # run.json or manifest.json damaged
            problems = [Problem.from_error(run_dir / "run.json", err)]
    if problems:
        summary["status"] = "damaged"
    if verify or problems:
        summary["problems"] = [{"file": str(p.file), "reason": p.reason} for p in problems]
    return summary


def _info_payload(target, *, verify: bool = False) -> dict[str, Any]:
    from probe.store.reader import Sweep

    if isinstance(target, Sweep):  # a Collection too
        payload: dict[str, Any] = {"runs": [_run_summary(d, verify=verify) for d in target.run_dirs()]}
        kind = "collection" if target.config.get("collection") else "sweep"
        payload[kind] = {k: v for k, v in target.config.items() if k not in ("runs", "collection")}
        if kind == "collection":
            payload[kind]["path"] = str(target.path)
        return payload
    if not verify:
        return {"runs": [target.summary()]}  # a damaged run.json or manifest.json is an error (exit 2)
    return {"runs": [_run_summary(target.path, verify=True)]}


def _info_one(target, payload: dict[str, Any]) -> None:
    from probe.store.reader import Run, Sweep

    if isinstance(target, Sweep) and target.config.get("collection"):
        cfg = target.config
        print(f"collection {target.path}  {len(cfg['runs'])} runs (trained separately)  budget={cfg['budget']}  "
              "axes=" + ", ".join(f"{k}={v}" for k, v in cfg["axes"].items()))
        print(f"  dataset={', '.join(cfg['datasets'])}  model={', '.join(cfg['models'])}")
    elif isinstance(target, Sweep):
        cfg = target.config
        base = cfg["base_config"]
        print(f"sweep {target.path}  budget={cfg.get('budget')}  axes="
              + ", ".join(f"{k}={v}" for k, v in cfg["axes"].items()))
        print(f"  dataset={base['dataset']} {base.get('dataset_options') or ''}  model={base['model']} "
              f"{base.get('model_options') or ''}  optimizer={base.get('optimizer')}"
              + (f"  preset={base['preset']}" if base.get("preset") else ""))
        missing = len(cfg["runs"]) - len(payload["runs"])
        if missing:
            print(f"  {missing} run(s) not started yet")
    else:
        assert isinstance(target, Run)
        cfg = target.config
        print(f"run {target.path}")
        if cfg.get("preset"):
            print(f"  {'preset':16s} {cfg['preset']}")
        for key in ("dataset", "dataset_options", "model", "model_options", "optimizer", "lr", "momentum",
                    "weight_decay", "batch_size", "epochs", "steps", "seed", "schedule", "record", "keep_weights",
                    "record_logits", "logits_dtype", "budget"):
            print(f"  {key:16s} {cfg.get(key)}")
        for key in ("l1", "l2", "focal_gamma", "label_smoothing", "sam_rho", "sam_adaptive"):  # regularisers in use
            if cfg.get(key):
                print(f"  {key:16s} {cfg[key]}")
    header = (f"  {'run':28s} {'status':12s} {'lr':>8s} {'seed':>4s} {'epochs':>6s} {'weights':>7s} {'step':>7s} "
              f"{'MB':>8s} {'MB/epoch':>8s} {'resume MB':>9s}  divergence")
    print(header)
    for s in payload["runs"]:
        if s["status"] == "damaged":
            p = s["problems"][0]
            print(f"  {s['name']:28s} {'damaged':12s} {Path(p['file']).name}: {p['reason']}")
            continue
        d = s["diverged"]
        div = f"epoch {d['epoch']} step {d['step']} loss {d['loss']}" if d else "-"
        print(f"  {s['name']:28s} {s['status']:12s} {s['lr']:8g} {s['seed']:4d} {s['epochs_committed']:6d} "
              f"{s['epochs_with_weights']:7d} {s['last_step'] if s['last_step'] is not None else '-':>7} "
              f"{s['bytes'] / 1e6:8.2f} {s['bytes_per_epoch'] / 1e6:8.3f} {s['bytes_resume'] / 1e6:9.2f}  {div}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="describe a run, a sweep or a folder of runs",
                              description="Config, committed epochs, status, sizes and divergence of a run, a sweep, "
                                          "a folder of separately trained runs (a collection) or a folder of sweeps.")
    p.add_argument("path", help="run directory, sweep directory, or a folder of runs and/or sweeps")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--verify", action="store_true",
                   help="re-hash and check every file first (as probe verify); damaged runs show status 'damaged' "
                        "and the reason (exit code 1 when any run is damaged)")
    p.set_defaults(func=cmd_info)
