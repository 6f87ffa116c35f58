"""The learning rate against the other knobs: how each property the study attributes to large rates moves along
every swept axis, side by side, and whether a large rate plus an explicit penalty dominates either alone.

The study finds that raising the learning rate buys, at once, robustness (``unbiased_acc``, ``wga``),
compressibility (``retention@0.9``, ``max_sparsity@0.95``), core-feature use (``core_attr_share@ig``,
``probe_core``) and class separation (``class_separation``), and that batch size, momentum, L1 / L2 penalties,
focal loss or SAM give no such combination. :func:`compare_axes` asks each swept axis the same questions.

Orientation (:data:`ORIENTATIONS`, one declared table): every axis is read in the direction of *more
regularisation*, the direction in which the study's claims about large rates are stated: larger ``lr``, ``l1``,
``l2``, ``weight_decay``, ``momentum``, ``focal_gamma``, ``sam_rho``, ``label_smoothing``; adaptive SAM over plain;
*smaller* ``batch_size``. An axis that the table does not declare (any other name ``sweep.json`` lists) is read
towards larger values, and the table's ``orientation`` column says that this was assumed. ``seed`` is never an axis.

Units: a sweep may vary several axes (a grid ``lr x l2``); each varying axis is compared within each combination of
the others' values (``at``, e.g. ``"lr=0.3"``; empty when the sweep varies one axis). Each unit is judged by
:func:`probe.analyses.claims.evaluate_claims` with one claim per property metric, direction ``up`` along the oriented
axis, so the statistics and the verdict rules (``agrees`` / ``disagrees`` / ``no effect`` / ``cannot tell`` /
``not measurable``, Holm over the metrics of one unit) are the claims table's. The axis enters as its grid position:
the ``k``-th level in the oriented order (``k = 0`` the least regularised) is passed as ``10**k``, so Spearman's rho
and the effect (best level's mean minus the least regularised level's mean) are unchanged, ``slope`` is per grid step
and ``change`` is the fitted change across the grid (a zero penalty has no logarithm; grids are not equally spaced
in every axis's units).

Dominance (:func:`dominance`): in a sweep that grids ``lr`` with a penalty (:attr:`AxisOrientation.penalty`: ``l1``,
``l2``, ``weight_decay``), the runs at (largest lr, penalty p > 0) are compared with (largest lr, penalty 0) and
(smallest lr, penalty p) in robustness and compressibility (:data:`DOMINANCE_METRICS`). Per metric, the difference
of means ``d = mean(combination) - mean(baseline)`` has standard error ``s sqrt(1/n_c + 1/n_b)`` with the pooled
seed variance ``s^2`` of the two cells (:func:`probe.analyses.claims_stats.seed_variance`, ``n - 2`` degrees of
freedom), one-sided t-tests in both directions Holm-adjusted over the sweep's comparisons, and the equivalence test
of :func:`probe.analyses.claims_stats.equivalence_p` against the metric's floor. A metric is ``better`` / ``worse``
(adjusted p <= 0.05 and ``|d| >= floor`` in that direction), ``equivalent`` (equivalence p <= 0.05 and
``|d| < floor``) or ``cannot tell``. The combination ``dominates`` a baseline when no metric is worse, one is better
and the others better or equivalent; ``does not`` when some metric is worse or every one is equivalent;
``cannot tell`` otherwise; ``not measurable`` with fewer than 2 seeds (runs with status ``ok`` and a finite value)
in a cell (the largest and smallest lr are the grid's, whether or not their runs are ok). ``overall``:
``dominates`` when it dominates both baselines, ``does not`` when it fails to dominate either, else ``cannot tell``
(``not measurable`` when a baseline is and no other says ``does not``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analyses import claims_stats as st
from probe.analyses.claims import ALPHA_LEVEL, Claim, evaluate_claims
from probe.errors import ProbeInputError


@dataclass(frozen=True)
class AxisOrientation:
    """How one sweep axis is read: ``sign`` +1 when larger values regularise more, -1 when smaller values do;
    ``more`` says in words what "more regularisation" is; ``penalty``: an explicit penalty whose grid with ``lr`` is
    checked by :func:`dominance`; ``declared``: False for an axis this module does not know (orientation assumed)."""

    axis: str
    sign: int
    more: str
    penalty: bool = False
    declared: bool = True

    @property
    def orientation(self) -> str:
        """The table's ``orientation`` text, e.g. ``"smaller batch_size (more gradient noise)"``."""
        return self.more if self.declared else f"larger {self.axis} (orientation not declared: assumed)"


#: The declared orientation of every axis the study compares with the learning rate (docs/compare.md).
ORIENTATIONS: tuple[AxisOrientation, ...] = (
    AxisOrientation("lr", +1, "larger lr"),
    AxisOrientation("batch_size", -1, "smaller batch_size (more gradient noise)"),
    AxisOrientation("momentum", +1, "larger momentum (larger effective step)"),
    AxisOrientation("weight_decay", +1, "larger weight_decay (L2 through the optimiser)", penalty=True),
    AxisOrientation("l1", +1, "larger l1 penalty", penalty=True),
    AxisOrientation("l2", +1, "larger l2 penalty", penalty=True),
    AxisOrientation("focal_gamma", +1, "larger focal_gamma (focal loss)"),
    AxisOrientation("sam_rho", +1, "larger sam_rho (SAM radius)"),
    AxisOrientation("sam_adaptive", +1, "adaptive SAM over plain SAM"),
    AxisOrientation("label_smoothing", +1, "larger label_smoothing"),
)
#: sweep axes that are replicates, never compared.
REPLICATE_AXES = ("seed",)


def orientation(axis: str) -> AxisOrientation:
    """The declared orientation of ``axis``, or larger-is-more (``declared=False``) for an axis not in
    :data:`ORIENTATIONS`."""
    for o in ORIENTATIONS:
        if o.axis == axis:
            return o
    return AxisOrientation(axis, +1, f"larger {axis}", declared=False)


@dataclass(frozen=True)
class Property:
    """One metric of a compared property: ``prop`` (robustness, compressibility, core utilisation, separation),
    the run-table ``column``, the smallest effect that matters (``floor``, absolute) and the ``count_column``
    of samples it rests on (as :class:`probe.analyses.claims.Claim`)."""

    prop: str
    column: str
    count_column: str | None = None
    floor: float = 0.02

    @property
    def metric(self) -> str:
        return self.column.split(":", 1)[1]

    def claim(self, axis: AxisOrientation) -> Claim:
        """The claim "``metric`` rises towards more regularisation along ``axis``"."""
        return Claim(self.metric, self.column, "up", self.column.split(":", 1)[0],
                     f"{self.metric} rises with {axis.more}.", floor=self.floor, count_column=self.count_column)


#: The compared properties and their metrics (final epoch), in table order; floors as the claims' (0.02 absolute).
PROPERTIES: tuple[Property, ...] = (
    Property("robustness", "final:test/unbiased_acc", "final:test/n"),
    Property("robustness", "final:test/wga", "final:test/wga_min_group_n"),
    Property("compressibility", "final:test/retention@0.9", "final:test/n_pruning"),
    Property("compressibility", "final:test/max_sparsity@0.95", "final:test/n_pruning"),
    Property("core utilisation", "final:test/core_attr_share@ig", "final:test/n_attributed"),
    Property("core utilisation", "final:val/probe_core", "final:val/n_probe_eval"),
    Property("separation", "final:test/class_separation", "final:test/n_features"),
)

#: robustness (y) and compressibility (x) of the Pareto figure and of :func:`dominance`.
ROBUSTNESS = "final:test/unbiased_acc"
COMPRESSIBILITY = "final:test/retention@0.9"
DOMINANCE_METRICS: tuple[Property, ...] = (Property("robustness", ROBUSTNESS), Property("compressibility",
                                                                                         COMPRESSIBILITY))

#: columns of the comparison table (:func:`compare_axes`).
COMPARISON_COLUMNS = ["sweep", "axis", "at", "orientation", "levels", "property", "metric", "column", "direction",
                      "budget", "n_levels", "n_runs", "n_excluded", "min_seeds", "spearman", "p_value", "p_adjusted",
                      "effect", "effect_low", "effect_high", "effect_level", "slope", "slope_low", "slope_high",
                      "change", "floor", "equivalence_p", "verdict", "reason"]
#: columns of the dominance table (:func:`dominance`).
DOMINANCE_COLUMNS = ["sweep", "penalty", "penalty_value", "large_lr", "small_lr", "baseline", "property", "metric",
                     "mean_combination", "mean_baseline", "difference", "low", "high", "df", "n_combination",
                     "n_baseline", "p_better", "p_worse", "p_adjusted_better", "p_adjusted_worse", "floor",
                     "equivalence_p", "outcome", "verdict", "overall", "reason"]
BASELINES = ("large lr, penalty 0", "small lr, same penalty")
DOMINANCE_VERDICTS = ("dominates", "does not", "cannot tell", "not measurable")


# --- which runs lie on which axis -----------------------------------------------------------------------------------


def axes_table(sources: Sequence[Mapping[str, Any]]):
    """One row per run of the analysed sweeps: ``sweep`` (the source's label), ``name`` (the run's folder) and one
    column per swept axis with the run's value (from ``sweep.json``'s run entries; NaN where a sweep does not sweep
    that axis). ``sources`` are :meth:`probe.analyses.engine.plan.Source.describe` dicts with ``axes`` and
    ``run_axes``; sources without them (single runs) contribute nothing."""
    import pandas as pd

    rows = []
    for source in sources:
        for name, values in (source.get("run_axes") or {}).items():
            rows.append({"sweep": source["label"], "name": name, **values})
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["sweep", "name"])


def varying_axes(sources: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per source label, the axes of its ``sweep.json`` with more than one value (replicate axes left out)."""
    out = {}
    for source in sources:
        axes = source.get("axes") or {}
        out[source["label"]] = [a for a, v in axes.items() if a not in REPLICATE_AXES and len(set(map(str, v))) > 1]
    return out


def has_comparison(sources: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the sources vary any axis besides ``lr`` (the claims table covers a learning-rate sweep alone)."""
    return any(a != "lr" for axes in varying_axes(sources).values() for a in axes)


def with_axes(run_table: Any, sources: Sequence[Mapping[str, Any]]):
    """``run_table`` (one row per run, ``run`` and ``sweep`` columns as the engine writes them) joined with
    :func:`axes_table` on (sweep, run folder); axis columns already in the run table are replaced by the sweep's
    values."""
    axes = axes_table(sources)
    table = run_table.copy()
    table["name"] = [str(r).removeprefix(f"{s}/") for r, s in zip(table["run"], table["sweep"])]
    extra = [c for c in axes.columns if c not in ("sweep", "name")]
    merged = table.merge(axes, on=["sweep", "name"], how="left", suffixes=("", "__sweep"))
    for column in extra:
        if column in table.columns:  # the sweep's value where it has one, the run table's elsewhere
            swept = merged.pop(f"{column}__sweep")
            merged[column] = swept.where(swept.notna(), merged[column])
    return merged


def _level_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _units(table: Any, sources: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, Any]]:
    """``(sweep, axis, at, rows)``: each varying axis of each sweep within each combination of its other varying
    axes."""
    units = []
    for label, axes in varying_axes(sources).items():
        part = table[table["sweep"] == label]
        for axis in axes:
            others = [a for a in axes if a != axis]
            if not others:
                units.append((label, axis, "", part))
                continue
            for key, rows in part.groupby(others, sort=True, dropna=False):
                key = key if isinstance(key, tuple) else (key,)
                at = ", ".join(f"{a}={_level_text(v)}" for a, v in zip(others, key))
                units.append((label, axis, at, rows))
    return units


def claims_runs(run_table: Any, sources: Sequence[Mapping[str, Any]]):
    """The runs the claims about the learning rate judge when the sources sweep other axes too: the sweeps that vary
    only ``lr``; without one, the runs at the least regularised level (:data:`ORIENTATIONS`) of every other varying
    axis of their sweep (``l2 = 0`` of an ``lr x l2`` grid, the largest batch of an ``lr x batch_size`` grid), so that
    levels of another axis are never pooled as replicates of a rate. ``run_table`` unchanged when nothing but ``lr``
    varies."""
    varying = varying_axes(sources)
    if not any(a != "lr" for axes in varying.values() for a in axes):
        return run_table
    lr_only = [label for label, axes in varying.items() if set(axes) <= {"lr"}]
    if lr_only:
        return run_table[run_table["sweep"].isin(lr_only)]
    table = with_axes(run_table, sources)
    keep = np.ones(len(table), dtype=bool)
    for label, axes in varying.items():
        in_sweep = (table["sweep"] == label).to_numpy()
        for axis in axes:
            if axis == "lr":
                continue
            values = table.loc[in_sweep, axis].astype(np.float64)
            least = values.max() if orientation(axis).sign < 0 else values.min()
            keep[in_sweep] &= (values == least).to_numpy()
    return run_table[keep]


def oriented_positions(values: Any, sign: int) -> tuple[np.ndarray, list[Any]]:
    """``(x, levels)``: each value's grid position ``k`` in the oriented order as ``10**k`` (``k = 0`` the least
    regularised level), and the distinct levels in that order."""
    numeric = np.asarray(values, dtype=np.float64)
    if not np.isfinite(numeric).all():
        raise ProbeInputError("every run of a compared axis needs a finite value")
    levels = np.unique(numeric)[:: 1 if sign > 0 else -1]
    position = {float(v): k for k, v in enumerate(levels)}
    return np.array([10.0 ** position[float(v)] for v in numeric]), [float(v) for v in levels]


# --- the comparison table -------------------------------------------------------------------------------------------


def compare_axes(run_table: Any, sources: Sequence[Mapping[str, Any]], properties: Sequence[Property] = PROPERTIES,
                 *, n_permutations: int = st.N_PERMUTATIONS, n_bootstrap: int = st.N_BOOTSTRAP):
    """Per sweep, varying axis and property metric: how the metric moves towards more regularisation (module doc).

    Args:
        run_table: ``pandas.DataFrame``, one row per run: ``run``, ``sweep``, ``seed``, ``status``, ``budget`` and
            the properties' columns (the engine's run table).
        sources: the analysed sources as :meth:`~probe.analyses.engine.plan.Source.describe` dicts (``label``,
            ``axes``, ``run_axes``), or any dicts with those keys.
        properties: the metrics compared (default :data:`PROPERTIES`).
        n_permutations, n_bootstrap: as :func:`probe.analyses.claims.evaluate_claims`.

    Returns:
        ``pandas.DataFrame`` with :data:`COMPARISON_COLUMNS`: ``direction`` is the observed one (``up`` /
        ``down`` / ``flat`` by the sign of ``spearman``, or of ``slope`` with fewer than 3 runs; empty when neither
        exists); ``effect_level`` is the axis value of the level the effect is taken at; the other statistics are
        the claims table's.
    """
    import pandas as pd

    table = with_axes(run_table, sources)
    rows = []
    for label, axis, at, part in _units(table, sources):
        how = orientation(axis)
        if part.empty:
            continue
        x, levels = oriented_positions(part[axis], how.sign)
        unit = part.assign(**{"__position": x})
        judged = evaluate_claims(unit, [p.claim(how) for p in properties], axis="__position",
                                 n_permutations=n_permutations, n_bootstrap=n_bootstrap)
        by_column = {p.column: p for p in properties}
        for r in judged.to_dict(orient="records"):
            rho = r["spearman"]
            trend = rho if math.isfinite(rho) else r["slope"]  # the fitted slope where rho is undefined (< 3 runs)
            direction = "" if not math.isfinite(trend) else "up" if trend > 0 else "down" if trend < 0 else "flat"
            k = r["effect_rate"]
            rows.append({
                "sweep": label, "axis": axis, "at": at, "orientation": how.orientation,
                "levels": " ".join(_level_text(v) for v in levels), "property": by_column[r["column"]].prop,
                "metric": by_column[r["column"]].metric, "column": r["column"], "direction": direction,
                "budget": r["budget"], "n_levels": r["n_rates"], "n_runs": r["n_runs"], "n_excluded": r["n_excluded"],
                "min_seeds": r["min_seeds"], "spearman": rho, "p_value": r["p_value"], "p_adjusted": r["p_adjusted"],
                "effect": r["effect"], "effect_low": r["effect_low"], "effect_high": r["effect_high"],
                "effect_level": levels[round(math.log10(k))] if math.isfinite(k) else float("nan"),
                "slope": r["slope"], "slope_low": r["slope_low"], "slope_high": r["slope_high"],
                "change": r["change"], "floor": r["floor"], "equivalence_p": r["equivalence_p"],
                "verdict": r["verdict"], "reason": _levels_text(r["reason"]) if r["n_runs"] or not r["n_excluded"]
                else f"no run with status ok ({r['n_excluded']} left out: diverged, collapsed or incomplete)"})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _levels_text(reason: str) -> str:
    """A claims-table reason in the words of an axis: its levels, not learning rates."""
    return reason.replace("learning rates", "levels").replace("rates", "levels").replace("rate", "level")


def verdict_matrix(comparison: Any):
    """The comparison table as one row per (sweep, axis, at) and one column per metric holding its verdict (the
    report's side-by-side view)."""
    import pandas as pd

    if comparison.empty:
        return pd.DataFrame(columns=["sweep", "axis", "at"])
    wide = comparison.pivot_table(index=["sweep", "axis", "at", "orientation"], columns="metric", values="verdict",
                                  aggfunc="first", sort=False)
    order = [m for m in dict.fromkeys(comparison["metric"]) if m in wide.columns]
    return wide[order].reset_index().rename_axis(columns=None)


# --- the Pareto figure's points -------------------------------------------------------------------------------------


def comparison_points(run_table: Any, sources: Sequence[Mapping[str, Any]], x: str = COMPRESSIBILITY,
                      y: str = ROBUSTNESS):
    """Seed-averaged points per (sweep, axis, at, level), the levels in the oriented order (``step`` 0 the least
    regularised), over runs with status ``ok`` and finite ``x`` and ``y``: ``x_mean, x_sem, y_mean, y_sem, n`` (sem
    = standard deviation / sqrt(n), NaN with one seed) and ``pareto`` (no other point of the table is at least as
    good in both and better in one)."""
    import pandas as pd

    columns = ["sweep", "axis", "at", "orientation", "level", "step", "x_mean", "x_sem", "y_mean", "y_sem", "n",
               "pareto"]
    if x not in run_table.columns or y not in run_table.columns:
        return pd.DataFrame(columns=columns)
    table = with_axes(run_table, sources)
    rows = []
    for label, axis, at, part in _units(table, sources):
        how = orientation(axis)
        ok = part[(part.get("status", "ok") == "ok") & np.isfinite(part[x].astype(float))
                  & np.isfinite(part[y].astype(float))]
        if ok.empty:
            continue
        _, levels = oriented_positions(ok[axis], how.sign)
        for step, level in enumerate(levels):
            cell = ok[ok[axis].astype(float) == level]
            xs, ys = cell[x].to_numpy(float), cell[y].to_numpy(float)
            rows.append({"sweep": label, "axis": axis, "at": at, "orientation": how.orientation, "level": level,
                         "step": step, "x_mean": float(xs.mean()), "x_sem": _sem(xs), "y_mean": float(ys.mean()),
                         "y_sem": _sem(ys), "n": len(cell)})
    points = pd.DataFrame(rows, columns=columns[:-1])
    points["pareto"] = pareto_front(points["x_mean"].to_numpy(float), points["y_mean"].to_numpy(float))
    return points


def _sem(values: np.ndarray) -> float:
    """Standard error of the mean over seeds (NaN with one)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def pareto_front(x: Any, y: Any) -> np.ndarray:
    """``front[i]``: no point ``j`` has ``x_j >= x_i`` and ``y_j >= y_i`` with one of them strict (both maximised)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    geq = (x[None, :] >= x[:, None]) & (y[None, :] >= y[:, None])
    strict = (x[None, :] > x[:, None]) | (y[None, :] > y[:, None])
    return ~(geq & strict).any(axis=1)


# --- large rate + penalty against either alone ----------------------------------------------------------------------


def _cell_values(table: Any, lr: float, axis: str, value: float, column: str) -> np.ndarray:
    cell = table[(table["lr"].astype(float) == lr) & (table[axis].astype(float) == value)]
    v = cell[column].astype(float).to_numpy() if column in cell.columns else np.empty(0)
    return v[np.isfinite(v)]


def _difference_test(combo: np.ndarray, base: np.ndarray, floor: float) -> dict[str, Any]:
    """Difference of means with its t-interval, one-sided p-values and the equivalence p (module doc)."""
    d = float(combo.mean() - base.mean())
    var = st.seed_variance(np.r_[np.ones(len(combo)), np.full(len(base), 10.0)], np.r_[combo, base])
    se = math.sqrt(var.variance * (1 / len(combo) + 1 / len(base))) if var.df else float("nan")
    out = {"mean_combination": float(combo.mean()), "mean_baseline": float(base.mean()), "difference": d,
           "df": var.df, "floor": floor}
    if se == 0:  # no spread within the cells: the difference is exact
        out.update(low=d, high=d, p_better=0.0 if d > 0 else 1.0, p_worse=0.0 if d < 0 else 1.0,
                   equivalence_p=0.0 if abs(d) < floor else 1.0)
        return out
    est = st._t_estimate(d, se, var.df)
    from scipy import special

    out.update(low=est.low, high=est.high, p_better=float(special.stdtr(var.df, -d / se)),
               p_worse=float(special.stdtr(var.df, d / se)), equivalence_p=st.equivalence_p(est, floor))
    return out


def _outcome(row: Mapping[str, Any]) -> str:
    d, floor = row["difference"], row["floor"]
    if row["p_adjusted_better"] <= ALPHA_LEVEL and d >= floor:
        return "better"
    if row["p_adjusted_worse"] <= ALPHA_LEVEL and -d >= floor:
        return "worse"
    if math.isfinite(row["equivalence_p"]) and row["equivalence_p"] <= ALPHA_LEVEL and abs(d) < floor:
        return "equivalent"
    return "cannot tell"


def dominance_verdict(outcomes: Sequence[str]) -> str:
    """Whether a combination dominates a baseline from its per-metric outcomes (module doc)."""
    if "not measurable" in outcomes:
        return "not measurable"
    if "worse" in outcomes or all(o == "equivalent" for o in outcomes):
        return "does not"
    if "better" in outcomes and all(o in ("better", "equivalent") for o in outcomes):
        return "dominates"
    return "cannot tell"


def overall_verdict(verdicts: Sequence[str]) -> str:
    """Dominance over both baselines from the two per-baseline verdicts (module doc)."""
    if "does not" in verdicts:
        return "does not"
    if "not measurable" in verdicts:
        return "not measurable"
    return "dominates" if all(v == "dominates" for v in verdicts) else "cannot tell"


def dominance(run_table: Any, sources: Sequence[Mapping[str, Any]],
              metrics: Sequence[Property] = DOMINANCE_METRICS):
    """Whether (large lr, penalty p > 0) dominates (large lr, penalty 0) and (small lr, penalty p), per sweep that
    grids ``lr`` with a penalty axis and per ``p`` (module doc).

    Returns:
        ``pandas.DataFrame`` with :data:`DOMINANCE_COLUMNS`, one row per (sweep, penalty, p, baseline, metric);
        ``outcome`` per metric, ``verdict`` per baseline, ``overall`` per (sweep, penalty, p). Empty when no sweep
        grids ``lr`` with a penalty.
    """
    import pandas as pd

    table = with_axes(run_table, sources)
    ok = table[table["status"] == "ok"] if "status" in table.columns else table
    rows: list[dict[str, Any]] = []
    for label, axes in varying_axes(sources).items():
        penalties = [a for a in axes if orientation(a).penalty]
        if "lr" not in axes:
            continue
        grid, part = table[table["sweep"] == label], ok[ok["sweep"] == label]
        for axis in penalties:
            group: list[dict[str, Any]] = []
            lrs = np.unique(grid["lr"].astype(float))  # the sweep's grid; only runs with status ok are compared
            values = np.unique(grid[axis].astype(float))
            if len(lrs) < 2:
                continue
            large, small = float(lrs.max()), float(lrs.min())
            for p in values[values > 0]:
                for baseline, (b_lr, b_value) in zip(BASELINES, ((large, 0.0), (small, float(p)))):
                    for m in metrics:
                        combo = _cell_values(part, large, axis, float(p), m.column)
                        base = _cell_values(part, b_lr, axis, b_value, m.column)
                        row = {"sweep": label, "penalty": axis, "penalty_value": float(p), "large_lr": large,
                               "small_lr": small, "baseline": baseline, "property": m.prop, "metric": m.metric,
                               "n_combination": len(combo), "n_baseline": len(base), "floor": m.floor}
                        if len(combo) < 2 or len(base) < 2:
                            row.update(outcome="not measurable", reason=(
                                f"fewer than 2 seeds with status ok and a value in a cell ({len(combo)} at "
                                f"lr={large:g}, {axis}={p:g}; {len(base)} at lr={b_lr:g}, {axis}={b_value:g})"))
                        else:
                            row.update(_difference_test(combo, base, m.floor))
                        group.append(row)
            _judge(group)
            rows += group
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=DOMINANCE_COLUMNS) if len(frame) else pd.DataFrame(columns=DOMINANCE_COLUMNS)


def _judge(group: list[dict[str, Any]]) -> None:
    """Holm over the measured rows of one (sweep, penalty), then outcomes, verdicts and the overall verdict."""
    measured = [r for r in group if "difference" in r]
    for key in ("better", "worse"):
        adjusted = st.holm([r[f"p_{key}"] for r in measured])
        for r, p in zip(measured, adjusted):
            r[f"p_adjusted_{key}"] = float(p)
    for r in measured:
        r["outcome"] = _outcome(r)
        r["reason"] = (f"difference {r['difference']:+.3g} [{r['low']:.3g}, {r['high']:.3g}] vs floor "
                       f"{r['floor']:g}; adjusted p better {r['p_adjusted_better']:.2g}, worse "
                       f"{r['p_adjusted_worse']:.2g}; equivalence p {r['equivalence_p']:.2g}")
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in group:
        cells.setdefault((r["penalty_value"], r["baseline"]), []).append(r)
    for rows in cells.values():
        verdict = dominance_verdict([r["outcome"] for r in rows])
        for r in rows:
            r["verdict"] = verdict
    for value in {r["penalty_value"] for r in group}:
        rows = [r for r in group if r["penalty_value"] == value]
        overall = overall_verdict(list(dict.fromkeys(r["verdict"] for r in rows)))
        for r in rows:
            r["overall"] = overall
