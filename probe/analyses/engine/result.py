"""The result of ``analyze``: tidy tables, ``metrics.json`` and the CSV files, the text summary, and reading an
analysis folder back (:func:`load_analysis`).

The tables (:class:`AnalysisResult`):

- ``epochs``: long format, one row per (run, epoch, analysis, split, metric) with ``value``;
- ``runs``: one row per run with its configuration, ``status`` and the summary columns ``final:<split>/<metric>``
  (the last committed epoch) and ``early:<split>/<metric>`` (:func:`probe.analyses.engine.plan.early_epoch`);
- ``claims``: :func:`probe.analyses.claims.evaluate_claims` of the run table (with ``survives_control`` when a
  matched-budget sweep is analysed alongside a fixed-steps one);
- ``failures``: every run left out of the claims (diverged, collapsed, incomplete, empty, damaged);
- ``chain``, ``chain_runs``: the mechanism chain per budget and link, and per run and link
  (:func:`probe.analyses.chain.mechanism_chain`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.analyses.chain import CHAIN_COLUMNS, CHAIN_RUN_COLUMNS
from probe.analyses.comparison import COMPARISON_COLUMNS, DOMINANCE_COLUMNS
from probe.errors import RunDirectoryError
from probe.store.atomic import atomic_write_bytes, sha256_file

#: identity columns of the epochs table.
EPOCH_COLUMNS = ["run", "sweep", "lr", "seed", "budget", "epoch", "step", "analysis", "split", "metric", "value"]
#: configuration columns of the run table, before the summary columns.
RUN_COLUMNS = ["run", "sweep", "lr", "seed", "batch_size", "momentum", "weight_decay", "budget", "steps",
               "epochs_recorded", "train_status", "status", "final_train_acc", "diverged_epoch", "diverged_step",
               "early_epoch", "early_step", "final_epoch", "final_step", "damaged_file", "damage_reason",
               "distance_budget", "early_distance"]
#: columns of the ratio-curves table.
RATIO_COLUMNS = ["run", "sweep", "lr", "seed", "budget", "phase", "epoch", "alpha", "ratio", "log_ratio"]
#: columns of the proposition-steps table (:func:`probe.analyses.proposition.scale_direction_decomposition` per run).
STEPS_COLUMNS = ["run", "sweep", "lr", "seed", "budget", "epoch_from", "epoch_to", "step_from", "step_to",
                 "log_r_from", "log_r_to", "log_r_scaled", "total", "scale", "direction", "scale_share",
                 "both_applicable"]
#: the tables written as CSV files, by file name.
TABLE_FILES = {"epochs.csv": "epochs", "runs.csv": "runs", "claims.csv": "claims", "failures.csv": "failures",
                "ratio_curves.csv": "ratio_curves", "proposition_steps.csv": "proposition_steps",
                "chain.csv": "chain", "chain_runs.csv": "chain_runs", "comparison.csv": "comparison",
                "dominance.csv": "dominance"}


@dataclass
@dataclass
class AnalysisResult:
    """What ``probe analyze`` produced: tidy tables, the output folder and its files.

    Attributes:
        out: output folder (``metrics.json``, ``epochs.csv``, ``runs.csv``, ``claims.csv``, ``figures/``,
            ``report.html``).
        epochs: long table ``run, sweep, lr, seed, budget, epoch, step, analysis, split, metric, value``.
        runs: one row per run (see the module doc).
        claims: per claim and budget: rank correlation with the rate, uncertainty, verdict (and
            ``survives_control`` when both budgets are present).
        failures: runs left out of the claims, with status, where they diverged, and for a damaged run the file
            and the reason (``damaged_file``, ``damage_reason``).
        ratio_curves: ``log R(alpha)`` of the training split at each run's early and final epoch and at the epochs
            where the proposition applies: ``run, lr, seed, budget, phase, epoch, alpha, ratio, log_ratio``
            (``phase``: ``final``, ``early`` or ``window``).
        proposition_steps: per run, between consecutive analysed epochs of the training split, the change of
            ``log R(1)`` and its part due to the logits' scale alone (:data:`STEPS_COLUMNS`; see
            :func:`probe.analyses.proposition.scale_direction_decomposition`).
        chain: the mechanism chain per budget and link: counts of runs that hold / fail / cannot tell / are not
            measurable, ``p_value`` and ``verdict`` (:func:`probe.analyses.chain.mechanism_chain`).
        chain_runs: the chain per run and link: ``statistic, value, p_value, lag, resolution, verdict, reason``.
        comparison: per sweep, swept axis and property metric, how the metric moves towards more regularisation,
            with the claims' statistics and verdicts (:func:`probe.analyses.comparison.compare_axes`; empty unless
            the sources sweep an axis besides ``lr``).
        dominance: large lr + penalty against either alone (:func:`probe.analyses.comparison.dominance`).
        errors: one dict per failed (run, epoch, analysis): ``run, epoch, analysis, error, traceback``.
        timings: seconds per (run, epoch, analysis) and whether the cache answered.
        sources: the analysed sweeps / runs.
        config: how ``analyze`` was called.
        files: name -> path of every file written.

    Its figures are drawn by :mod:`probe.report` (``probe.report.plot_overview(result)`` ...).
    """

    out: Path
    epochs: pd.DataFrame
    runs: pd.DataFrame
    claims: pd.DataFrame
    failures: pd.DataFrame
    ratio_curves: pd.DataFrame
    proposition_steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STEPS_COLUMNS))
    chain: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CHAIN_COLUMNS))
    chain_runs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CHAIN_RUN_COLUMNS))
    comparison: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COMPARISON_COLUMNS))
    dominance: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DOMINANCE_COLUMNS))
    errors: list[dict[str, Any]] = field(default_factory=list)
    timings: pd.DataFrame = field(default_factory=pd.DataFrame)
    sources: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        statuses = self.runs["status"].value_counts().to_dict() if len(self.runs) else {}
        return (f"AnalysisResult(out={str(self.out)!r}, runs={len(self.runs)} {statuses}, "
                f"epoch rows={len(self.epochs)}, claims={self.claims['claim'].nunique() if len(self.claims) else 0}, "
                f"errors={len(self.errors)})")

    @property
    def damaged(self) -> pd.DataFrame:
        """Runs that could not be read (status ``damaged``), with ``damaged_file`` and ``damage_reason``."""
        if self.runs.empty:
            return self.runs
        return self.runs[self.runs["status"] == "damaged"].reset_index(drop=True)

    @property
    def report(self) -> Path | None:
        """Path of ``report.html`` (None when no report was written)."""
        return self.files.get("report.html")

    def metric(self, metric: str, split: str | None = None) -> pd.DataFrame:
        """Rows of the epochs table for one metric id (and split), e.g. ``result.metric("unbiased_acc", "test")``."""
        rows = self.epochs[self.epochs["metric"] == metric]
        if split is not None:
            rows = rows[rows["split"] == split]
        return rows.reset_index(drop=True)

    @property
    def proposition(self) -> pd.DataFrame:
        """Per run and epoch, the proposition check of the training split (one column per quantity)."""
        rows = self.epochs[self.epochs["analysis"] == "proposition"]
        if rows.empty:
            return pd.DataFrame(columns=["run", "sweep", "lr", "seed", "budget", "epoch", "step"])
        return (rows.pivot_table(index=["run", "sweep", "lr", "seed", "budget", "epoch", "step"], columns="metric",
                                 values="value", aggfunc="first").reset_index().rename_axis(columns=None))

    @property
    def ratio_vs_norm(self) -> pd.DataFrame:
        """Across epochs of every run: mean logit norm and measured BC/BA loss ratio of the training split."""
        want = {"logit_norm", "bc_ba_loss_ratio", "margin_min_ba"}
        rows = self.epochs[(self.epochs["split"] == "train") & self.epochs["metric"].isin(want)
                           & self.epochs["analysis"].isin(["logits", "losses"])]
        cols = ["run", "sweep", "lr", "seed", "budget", "epoch", "step"]
        if rows.empty:
            return pd.DataFrame(columns=[*cols, *sorted(want)])
        return rows.pivot_table(index=cols, columns="metric", values="value",
                                aggfunc="first").reset_index().rename_axis(columns=None)

    def verdicts(self) -> pd.DataFrame:
        """One row per claim: the verdict at each budget (and ``survives_control``); see :func:`claims_wide`."""
        return claims_wide(self.claims)

    def record_error(self, what: str, exc: BaseException, *, run: str = "-", epoch: int = -1) -> None:
        """Append a failure (an analysis, a figure, a panel) to :attr:`errors` and say so on stderr."""
        self.errors.append(error_record(exc, what, run=run, epoch=epoch))
        warn(f"ERROR in {what}{'' if run == '-' else f' on {run} epoch {epoch}'}: {type(exc).__name__}: {exc}")

    def summary(self) -> str:
        """Plain-text verdicts per claim, failed runs and errors (what ``probe analyze`` prints)."""
        return summary_text(self)


# --- tables ---------------------------------------------------------------------------------------------------------


def error_record(exc: BaseException, what: str, *, run: str = "-", epoch: int = -1) -> dict[str, Any]:
    """One entry of ``errors`` (and of ``metrics.json``): the run and epoch (``"-"`` and -1 when none), what failed,
    the error on one line and its traceback. Call it inside the ``except`` block."""
    return {"run": run, "epoch": int(epoch), "analysis": what, "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc()}


def warn(message: str) -> None:
    """One line on stderr, prefixed ``probe analyze:``."""
    print(f"probe analyze: {message}", file=sys.stderr, flush=True)


def summarise_runs(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Add ``final:<split>/<metric>`` and ``early:<split>/<metric>`` columns to the run table."""
    if runs.empty or epochs.empty:
        return runs
    wide = {}
    for phase, col in (("final", "final_epoch"), ("early", "early_epoch")):
        at = runs[["run", col]].rename(columns={col: "epoch"}).dropna()
        at["epoch"] = at["epoch"].astype(int)
        sel = epochs.merge(at, on=["run", "epoch"])
        if sel.empty:
            continue
        sel = sel.drop_duplicates(["run", "split", "metric"], keep="first")
        sel = sel.assign(column=phase + ":" + sel["split"] + "/" + sel["metric"])
        wide[phase] = sel.pivot(index="run", columns="column", values="value")
    summary = pd.concat([wide[p] for p in ("final", "early") if p in wide], axis=1)
    return runs.merge(summary, left_on="run", right_index=True, how="left")


def judge_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from probe.analyses.claims import evaluate_claims, failures_table

    if runs.empty:
        return pd.DataFrame(columns=["claim", "budget", "verdict"]), pd.DataFrame(columns=["run", "status"])
    failures = failures_table(runs, axis="lr")
    damage = runs.set_index("run")[["damaged_file", "damage_reason"]]
    return evaluate_claims(runs, axis="lr"), failures.join(damage, on="run")


def compare_sweeps(runs: pd.DataFrame, sources: list[dict[str, Any]],
                   errors: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison and dominance tables (:mod:`probe.analyses.comparison`) when the sources sweep an axis besides
    ``lr``, else empty ones; a failure is appended to ``errors`` (the other tables stand without them)."""
    from probe.analyses.comparison import compare_axes, dominance, has_comparison

    empty = pd.DataFrame(columns=COMPARISON_COLUMNS), pd.DataFrame(columns=DOMINANCE_COLUMNS)
    if runs.empty or not has_comparison(sources):
        return empty
    try:
        return compare_axes(runs, sources), dominance(runs, sources)
    except Exception as exc:  # noqa: BLE001
        errors.append(error_record(exc, "comparison"))
        warn(f"ERROR comparing the swept axes: {errors[-1]['error']}")
        return empty


#: per-scope statistics of :func:`claims_wide`.
WIDE_STATS = ["verdict", "reason", "spearman", "p_value", "p_adjusted", "effect", "effect_low", "effect_high",
              "effect_interval", "effect_rate", "slope", "slope_low", "slope_high", "change", "floor", "equivalence_p",
              "n_rates", "n_runs", "n_excluded", "min_seeds", "min_samples"]


def scope_key(budget: str, rates: str = "all") -> str:
    """The suffix of a judged scope in :func:`claims_wide`: ``fixed``, ``matched``, or ``fixed_over_matched_rates``
    (the fixed-steps sweep judged over the matched sweep's rates only)."""
    return budget if rates == "all" else f"{budget}_over_{rates}_rates"


def claims_wide(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: ``claim, column, description`` and, per judged scope ``s`` (:func:`scope_key`), the
    statistics :data:`WIDE_STATS` suffixed ``_s`` (``verdict_fixed``, ``effect_matched``,
    ``verdict_fixed_over_matched_rates`` ...); plus ``survives_control`` when present."""
    if claims.empty:
        return pd.DataFrame(columns=["claim", "column", "description"])
    base = claims.drop_duplicates("claim")[["claim", "column", "description"]].set_index("claim")
    rates = claims["rates"] if "rates" in claims.columns else pd.Series("all", index=claims.index)
    keys = [scope_key(b, r) for b, r in zip(claims["budget"], rates)]
    for key in dict.fromkeys(keys):
        part = claims[[k == key for k in keys]].set_index("claim")
        stats = [c for c in WIDE_STATS if c in part.columns]
        base = base.join(part[stats].add_suffix(f"_{key}"))
    if "survives_control" in claims.columns:
        base = base.join(claims.drop_duplicates("claim").set_index("claim")["survives_control"])
    return base.reset_index()


def summary_text(result: AnalysisResult) -> str:
    """Plain-text verdicts per claim (per budget, the control's outcome), failed runs and errors of an analysis."""
    lines = []
    wide = result.verdicts()
    has_control = "survives_control" in wide.columns
    for _, row in wide.iterrows():
        parts = [f"fixed steps: {row.get('verdict_fixed', 'n/a')}"]
        if "verdict_matched" in wide.columns:
            parts.append(f"matched budget: {row['verdict_matched']}")
        if has_control:
            parts.append(f"fixed steps over the matched rates: {row['verdict_fixed_over_matched_rates']}; "
                         f"survives the control: {row['survives_control']}")
        lines.append(f"  {row['claim']:24s} {'; '.join(parts)}")
    failed = result.failures
    if len(failed):
        for _, r in failed.iterrows():
            where = ""
            if r.get("status") == "diverged":
                where = f" at epoch {r['diverged_epoch']:.0f}, step {r['diverged_step']:.0f}"
            lines.append(f"  failed run {r['run']} (lr {r['lr']:g}): {r['status']}{where}")
    else:
        lines.append("  no run diverged or collapsed")
    if result.errors:
        lines.append(f"  {len(result.errors)} analysis error(s): see metrics.json and the report")
    return ("claims (does the sweep agree with the study? reasons and effect sizes: claims.csv and the report):\n"
            + "\n".join(lines))


# --- files ----------------------------------------------------------------------------------------------------------


_PLAIN = (str, int, bool, type(None))


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf -> None, numpy scalars -> Python, recursively."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind in _PLAIN:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in frame.to_dict(orient="records")]


def _per_epoch(epochs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{run: {str(epoch): {"step", "metrics": {split: {metric: value}}}}}`` of the epochs table, runs and epochs
    in sorted order, the first row of a repeated (split, metric) kept, non-finite values as None. One stable sort of
    the table, then one pass over plain Python lists (no per-group pandas work)."""
    if epochs.empty:
        return {}
    ordered = epochs.sort_values(["run", "epoch", "step"], kind="stable")  # stable: rows keep their order
    columns = [ordered[c].tolist() for c in ("run", "epoch", "step", "split", "metric")]
    values = ordered["value"].to_numpy(dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan).tolist()
    per_epoch: dict[str, dict[str, Any]] = {}
    last = None
    nested: dict[str, dict[str, Any]] = {}
    for run, epoch, step, split, metric, value in zip(*columns, values):
        if (run, epoch, step) != last:
            last = (run, epoch, step)
            nested = {}
            per_epoch.setdefault(str(run), {})[str(epoch)] = {"step": int(step), "metrics": nested}
        into = nested.get(split)
        if into is None:
            into = nested[split] = {}
        if metric not in into:
            into[metric] = None if value != value else value
    return per_epoch


def metrics_payload(result: AnalysisResult) -> dict[str, Any]:
    """Everything of ``result`` as one JSON-safe dict (the content of ``metrics.json``)."""
    from probe import __version__

    statuses = dict(zip(result.runs["run"], result.runs["status"])) if len(result.runs) else {}
    payload = _clean({
        "probe_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": result.config,
        "sources": result.sources,
        "statuses": statuses,
        "runs": _records(result.runs),
        "failures": _records(result.failures),
        "claims": _records(result.claims),
        "proposition": _records(result.proposition),
        "epochs": {},
        "errors": result.errors,
    })
    payload["epochs"] = _per_epoch(result.epochs)
    return payload


def write_tables(result: AnalysisResult) -> None:
    """``epochs.csv``, ``runs.csv``, ``claims.csv``, ``failures.csv``, ``ratio_curves.csv``,
    ``proposition_steps.csv``, ``chain.csv``, ``chain_runs.csv`` and ``metrics.json``."""
    out = result.out
    written = _read_table_digests(out)
    digests = {}
    for name, attribute in TABLE_FILES.items():
        digests[name] = _write_table(out / name, getattr(result, attribute), written.get(name))
        result.files[name] = out / name
    _store_table_digests(out, digests, written)
    path = out / "metrics.json"
    # one line: json's C encoder (an indented dump goes through the pure-Python one, about 10x slower)
    atomic_write_bytes(path, json.dumps(metrics_payload(result), allow_nan=False).encode())
    result.files["metrics.json"] = path


#: where :func:`write_tables` keeps the digest of each table it wrote (``<out>/cache/tables.json``).
TABLE_DIGESTS = Path("cache") / "tables.json"


def frame_digest(frame: pd.DataFrame) -> str:
    """sha256 (hex) of what ``frame.to_csv(index=False)`` writes: pandas' version, the frame's length, column names,
    dtypes and every value (numpy numbers by their bytes, other columns by the JSON of their values, non-JSON values
    by ``repr``)."""
    h = hashlib.sha256(json.dumps([pd.__version__, len(frame), [str(c) for c in frame.columns],
                                   [str(t) for t in frame.dtypes]]).encode())
    for column in range(frame.shape[1]):
        values = frame.iloc[:, column]
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biufcmM":
            h.update(b"array" + np.ascontiguousarray(values.to_numpy()).tobytes())
        else:
            h.update(b"json" + json.dumps(values.tolist(), default=repr).encode())
    return h.hexdigest()


def _read_table_digests(out: Path) -> dict[str, Any]:
    from probe.errors import ProbeError
    from probe.store.atomic import read_json

    try:
        document = read_json(out / TABLE_DIGESTS)
    except (OSError, ProbeError):
        return {}
    return document if isinstance(document, dict) else {}


def _store_table_digests(out: Path, digests: dict[str, Any], before: dict[str, Any]) -> None:
    if digests != before and (out / TABLE_DIGESTS.parent).is_dir():
        atomic_write_bytes(out / TABLE_DIGESTS, json.dumps(digests, sort_keys=True).encode())


def _write_table(path: Path, frame: pd.DataFrame, before: Any) -> dict[str, Any]:
    """Write ``frame`` as CSV to ``path`` unless the file there is the one written before from an equal frame
    (``before``: the digest of that frame and the file's size and sha256, both checked); returns the new record.
    Rendering a large table costs far more than its digest and the file's hash."""
    digest = frame_digest(frame)
    if isinstance(before, dict) and before.get("frame") == digest:
        with contextlib.suppress(OSError):
            if path.stat().st_size == before.get("size") and sha256_file(path) == before.get("sha256"):
                return before
    data = frame.to_csv(index=False).encode()
    atomic_write_bytes(path, data)
    return {"frame": digest, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def load_analysis(folder: str | Path) -> AnalysisResult:
    """Read an analysis folder written by ``analyze`` (``probe analyze``) back into an :class:`AnalysisResult`.

    The tables come from the CSV files, ``config``, ``sources`` and ``errors`` from ``metrics.json``; nothing is
    recomputed and no run is opened, so it takes well under a second. ``timings`` is empty (it is not written);
    ``files`` lists the tables, ``metrics.json``, ``report.html`` and the figures that exist.

    Args:
        folder: the ``--out`` folder of an analysis (for the demo, ``analyses/demo``).

    Raises:
        RunDirectoryError: ``folder`` holds no ``metrics.json`` (not an analysis folder, or an unfinished one).
        DamagedFileError: ``metrics.json`` is not valid JSON.

    Example:
        >>> import probe
        >>> result = probe.load_analysis("analyses/demo")          # doctest: +SKIP
        >>> result.verdicts()[["claim", "verdict_fixed"]]          # doctest: +SKIP
    """
    from probe.store.atomic import read_json

    out = Path(folder)
    metrics_path = out / "metrics.json"
    if not metrics_path.is_file():
        raise RunDirectoryError(f"{out}: no metrics.json; not an analysis folder (probe analyze --out)")
    payload = read_json(metrics_path)
    tables: dict[str, pd.DataFrame] = {}
    for name, attribute in TABLE_FILES.items():
        path = out / name
        try:
            # only empty cells are missing values: verdicts such as "n/a" stay words
            tables[attribute] = (pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file()
                                 else pd.DataFrame())
        except pd.errors.EmptyDataError:
            tables[attribute] = pd.DataFrame()
    if tables["epochs"].empty:
        tables["epochs"] = pd.DataFrame(columns=EPOCH_COLUMNS)
    if tables["runs"].empty:
        tables["runs"] = pd.DataFrame(columns=RUN_COLUMNS)
    if tables["ratio_curves"].empty:
        tables["ratio_curves"] = pd.DataFrame(columns=RATIO_COLUMNS)
    if tables["proposition_steps"].empty:
        tables["proposition_steps"] = pd.DataFrame(columns=STEPS_COLUMNS)
    for attribute, columns in (("chain", CHAIN_COLUMNS), ("chain_runs", CHAIN_RUN_COLUMNS),
                               ("comparison", COMPARISON_COLUMNS), ("dominance", DOMINANCE_COLUMNS)):
        if tables[attribute].empty:
            tables[attribute] = pd.DataFrame(columns=columns)
    for column in ("at", "direction"):  # empty words ("" in the CSV): an axis alone, an undefined direction
        if column in tables["comparison"].columns:
            tables["comparison"][column] = tables["comparison"][column].fillna("").astype(str)
    result = AnalysisResult(out=out, errors=list(payload.get("errors") or []),
                            sources=list(payload.get("sources") or []), config=dict(payload.get("config") or {}),
                            **tables)
    names = [*TABLE_FILES, "metrics.json", "report.html"]
    result.files = {name: out / name for name in names if (out / name).is_file()}
    for png in sorted((out / "figures").glob("*.png")):
        result.files[f"figures/{png.name}"] = png
    return result
