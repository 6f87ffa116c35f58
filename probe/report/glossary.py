"""Definitions of every metric id the report shows, and where each is documented.

:func:`glossary_key` maps a metric id (``wga``, ``acc_group/3``, ``cmr@0.9``, ``retention@0.9`` ...) or a run-table
column (``final:test/unbiased_acc``) to its glossary entry; the report links each metric name to that entry, which
gives the definition and the module and docs page that document it.
"""

from __future__ import annotations

import html
import re

#: where each family of metrics is documented (docs page, Python module).
DOCS = {
    "groups": ("docs/metrics-logits.md#accuracy-and-groups--analysis-groups-splits-every-recorded-split",
               "probe.analyses.groups"),
    "logits": ("docs/metrics-logits.md#logit-dynamics--analysis-logits-every-recorded-split-plus-model",
               "probe.analyses.logits"),
    "losses": ("docs/metrics-logits.md#confident-bc-mispredictions-and-loss-shares--analysis-losses-every-recorded"
               "-split-plus-sgd", "probe.analyses.losses"),
    "proposition": ("docs/metrics-logits.md#the-logit-scaling-proposition--analysis-proposition-split-train",
                    "probe.analyses.proposition"),
    "representations": ("docs/metrics-representations.md", "probe.analyses.probes / geometry / sparsity"),
    "pruning": ("docs/metrics-representations.md#pruning-prune_curve-retentions-max_sparsity095",
                "probe.analyses.pruning"),
    "attribution": ("docs/metrics-attributions.md#numbers", "probe.analyses.attribution"),
    "analyze": ("docs/analyze.md", "probe.analyses.pipeline"),
}

#: key -> (family, display name, definition).
ENTRIES: dict[str, tuple[str, str, str]] = {
    "acc": ("groups", "acc", "micro accuracy: fraction of samples whose argmax logit is the core label y."),
    "acc_group": ("groups", "acc_group/<g>", "accuracy within group g = y * A + a (NaN for an empty group)."),
    "wga": ("groups", "wga", "worst-group accuracy: the minimum of acc_group over non-empty groups."),
    "mean_group_acc": ("groups", "mean_group_acc", "unweighted mean of acc_group over non-empty groups."),
    "avg_acc_trainweighted": ("groups", "avg_acc_trainweighted",
                              "group accuracies weighted by the training split's group proportions "
                              "(the Waterbirds papers' 'average accuracy')."),
    "acc_ba": ("groups", "acc_ba", "accuracy on bias-aligned (BA) samples."),
    "acc_bc": ("groups", "acc_bc", "accuracy on bias-conflicting (BC) samples."),
    "unbiased_acc": ("groups", "unbiased_acc",
                     "accuracy on the unbiased split; for datasets with groups the same as mean_group_acc."),
    "logit_norm": ("logits", "logit_norm, logit_norm_ba, logit_norm_bc",
                   "mean over samples (all / BA / BC) of the Euclidean norm ||z||_2 of the logit vector."),
    "margin": ("logits", "margin_mean, margin_median, margin_min_ba",
               "margin m = z_y - max_{k != y} z_k: its mean, median, and the smallest margin over BA samples."),
    "max_softmax": ("logits", "max_softmax_mean", "mean over samples of the largest softmax probability."),
    "param_norm": ("logits", "param_norm, param_norm/<tensor>",
                   "L2 norm of all parameters together (and of each tensor); BatchNorm running statistics excluded."),
    "cmr": ("losses", "cmr@tau",
            "confident misprediction rate: fraction of BC samples mispredicted with max softmax >= tau."),
    "bc_loss_share": ("losses", "bc_loss_share",
                      "sum of cross-entropy over BC samples / sum over all samples (split 'sgd': over the "
                      "minibatches SGD trained on in that epoch)."),
    "bc_ba_loss_ratio": ("losses", "bc_ba_loss_ratio",
                         "mean cross-entropy over BC samples / mean over BA samples."),
    "bc_ba_loss_ratio_sum": ("losses", "bc_ba_loss_ratio_sum",
                             "sum of cross-entropy over BC samples / sum over BA samples."),
    "proposition": ("proposition", "R(alpha), fitted_rate, min_ba_margin, rate_rel_error, turning_alpha",
                    "R(alpha) = mean_BC CE(softmax(alpha z), y) / mean_BA CE(softmax(alpha z), y) on an alpha grid; "
                    "fitted_rate: asymptotic slope of log R(alpha) - log alpha; min_ba_margin: the smallest BA "
                    "margin it should equal; rate_rel_error = |fitted_rate - min_ba_margin| / min_ba_margin; "
                    "turning_alpha: argmin of R on the grid; convex / bound_correct_ok / bound_mispredicted_ok: "
                    "the proposition's three statements verified sample by sample; applicable: every BA sample "
                    "correct and some BC sample mispredicted."),
    "probe_core": ("representations", "probe_core, probe_spurious, probe_gap",
                   "balanced accuracy of a linear probe on standardised penultimate features, fit on a "
                   "group-balanced held-out subset, predicting y (core) or a (spurious); probe_gap = core - "
                   "spurious."),
    "dfr_wga": ("representations", "dfr_wga",
                "worst-group accuracy after deep feature reweighting (last layer retrained on a group-balanced "
                "held-out split)."),
    "class_separation": ("representations", "class_separation, attr_separation",
                         "1 - mean within-class cosine distance / mean cosine distance over all class pairs, on "
                         "|features| (attr_: grouped by the spurious attribute)."),
    "selectivity": ("representations", "class_selectivity, attr_selectivity",
                    "per unit (mu_max - mu_rest) / (mu_max + mu_rest), averaged over active units."),
    "activation_sparsity": ("representations", "activation_sparsity, activation_sparsity/<layer>",
                            "fraction of post-ReLU activations exactly zero (per layer; unsuffixed: their mean)."),
    "retention": ("pruning", "retention@s",
                  "accuracy after global magnitude pruning of a fraction s of the weights / dense accuracy."),
    "prune": ("pruning", "prune_acc@s, prune_wga@s, prune_unbiased_acc@s",
              "accuracy, worst-group and unbiased accuracy after pruning a fraction s of the weights."),
    "max_sparsity": ("pruning", "max_sparsity@0.95",
                     "largest pruned fraction that keeps 95% of the dense accuracy."),
    "norm_compressibility": ("pruning", "norm_compressibility@kappa",
                             "1 - ||w - top_kappa(w)|| / ||w|| over all weight tensors concatenated."),
    "attr_share": ("attribution", "core_attr_share@m, spurious_attr_share@m, pointing_game@m",
                   "attribution mass (method m) inside the core / spurious region over the total; pointing game: "
                   "the top pixel lies in the core region."),
    "flip_rate": ("attribution", "spurious_flip_rate, core_flip_rate",
                  "fraction of predictions that change when only the spurious (core) feature of a sample is "
                  "re-rendered."),
    "status": ("analyze", "status: ok, diverged, collapsed, incomplete, empty, damaged",
               "diverged: the training loss became non-finite; collapsed: finite, but the final training accuracy "
               "is below 1.5x chance (1.5 / K); incomplete: training is still running, was interrupted or failed; "
               "empty: no epoch committed; damaged: a file of the run is truncated, altered or unreadable "
               "(damaged_file, damage_reason). Only 'ok' runs enter the claims."),
    "phase": ("analyze", "final: / early:",
              "run-table prefixes: final = the last committed epoch; early = the recorded epoch (after step 0) "
              "whose step is closest to 10% of the run's steps."),
    "verdict": ("analyze", "verdict, survives_control",
                "agrees / disagrees: with 3 or more rates, a one-sided permutation p-value <= 0.05 for the Spearman "
                "correlation with the rate (and the seed-bootstrap interval on the same side of 0); cannot tell "
                "otherwise; not measured when the metric is missing. survives_control: the claim agrees at fixed "
                "steps and at matched budget (yes), disagrees at matched budget (no), or neither (cannot tell)."),
}

_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"acc_group/.+", "acc_group"),
    (r"logit_norm(_ba|_bc)?", "logit_norm"),
    (r"margin_.*", "margin"),
    (r"max_softmax.*", "max_softmax"),
    (r"param_norm(/.*)?", "param_norm"),
    (r"cmr@.*", "cmr"),
    (r"(log_)?bc_ba_loss_ratio", "bc_ba_loss_ratio"),
    (r"(fitted_rate|min_ba_margin|rate_rel_error|turning_alpha|monotone_after_turning|convex|bound_correct_ok"
     r"|bound_mispredicted_ok|applicable|ratio|log_ratio)", "proposition"),
    (r"probe_(core|spurious|gap)", "probe_core"),
    (r"(class|attr)_separation", "class_separation"),
    (r"(class|attr)_selectivity", "selectivity"),
    (r"activation_sparsity(/.*)?", "activation_sparsity"),
    (r"retention@.*", "retention"),
    (r"prune_.*@.*", "prune"),
    (r"max_sparsity@.*", "max_sparsity"),
    (r"norm_compressibility@.*", "norm_compressibility"),
    (r"(core|spurious)_attr_share@.*|pointing_game@.*", "attr_share"),
    (r"(spurious|core)_flip_rate", "flip_rate"),
)


def metric_of(name: str) -> str:
    """The metric id inside a run-table column: ``final:test/unbiased_acc`` -> ``unbiased_acc``."""
    if ":" in name:
        name = name.split(":", 1)[1]
        if "/" in name:
            name = name.split("/", 1)[1]
    return name


def glossary_key(name: str) -> str | None:
    """The glossary entry of a metric id or run-table column, or None when the report does not define it."""
    metric = metric_of(name)
    if metric in ENTRIES:
        return metric
    for pattern, key in _PATTERNS:
        if re.fullmatch(pattern, metric):
            return key
    return None


def anchor(key: str) -> str:
    return "metric-" + re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def metric_link(name: str, text: str | None = None) -> str:
    """``<a href="#metric-...">`` around ``name`` (HTML-escaped) when the glossary defines it, else ``<code>``."""
    shown = html.escape(text if text is not None else name)
    key = glossary_key(name)
    if key is None:
        return f"<code>{shown}</code>"
    return f'<a class="metric" href="#{anchor(key)}"><code>{shown}</code></a>'


def glossary_html(keys: list[str] | None = None) -> str:
    """A definition list of the entries ``keys`` (default all), each with its anchor and where it is documented."""
    keys = list(ENTRIES) if keys is None else [k for k in ENTRIES if k in set(keys)]
    items = []
    for key in keys:
        family, shown, text = ENTRIES[key]
        doc, module = DOCS[family]
        items.append(f'<dt id="{anchor(key)}"><code>{html.escape(shown)}</code></dt>'
                     f"<dd>{html.escape(text)} <span class=\"doc\">Documented in <code>{html.escape(doc)}</code> "
                     f"and <code>{html.escape(module)}</code>.</span></dd>")
    return "<dl class=\"glossary\">" + "".join(items) + "</dl>"
