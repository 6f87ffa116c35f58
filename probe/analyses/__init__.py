"""Analyses of a run or sweep: pure functions over arrays, plus registered per-epoch analyses over runs.

Importing this package registers every per-epoch analysis in :data:`EPOCH_ANALYSES`, which ``probe analyze`` walks.
Each metric id's definition and code are listed in ``docs/metrics.md``.
"""

from probe.analyses.attribution import (
    Attributions,
    analysis_positions,
    attr_shares,
    attr_shares_per_sample,
    attribute_run,
    attribute_sweep,
    core_flip_rate,
    flip_rate,
    select_positions,
    shares_table,
    spurious_flip_rate,
)
from probe.analyses.attribution_methods import METHODS, attribute
from probe.analyses.base import EPOCH_ANALYSES, AnalysisContext, register_epoch_analysis
from probe.analyses.claims import CLAIMS, Claim, classify_run, evaluate_claims, failures_table
from probe.analyses.features import cached_features, extract_features, relu_layers
from probe.analyses.geometry import (
    attr_selectivity,
    attr_separation,
    class_selectivity,
    class_separation,
    selectivity,
    unit_selectivity,
)
from probe.analyses.groups import group_accuracy_metrics
from probe.analyses.logits import logit_metrics, margins, max_softmax, param_norms
from probe.analyses.losses import (
    bc_ba_loss_ratio,
    bc_ba_loss_ratio_sum,
    bc_loss_share,
    cmr,
    confidence_histogram,
    confidence_histograms,
    cross_entropy,
)
from probe.analyses.probes import balanced_probe_split, dfr_wga, linear_probe, probe_core, probe_spurious
from probe.analyses.proposition import (
    PropositionCheck,
    check_proposition,
    loss_ratio_curve,
    ratio_curves,
    ratio_vs_logit_norm,
    scaled_cross_entropy,
)
from probe.analyses.pruning import (
    global_magnitude_masks,
    max_sparsity_at,
    norm_compressibility,
    prune_curve,
    pruned_copy,
    retention,
)
from probe.analyses.sparsity import activation_sparsity, layer_activation_sparsity

__all__ = [
    "CLAIMS",
    "EPOCH_ANALYSES",
    "METHODS",
    "AnalysisContext",
    "Attributions",
    "Claim",
    "PropositionCheck",
    "activation_sparsity",
    "analysis_positions",
    "attr_selectivity",
    "attr_separation",
    "attr_shares",
    "attr_shares_per_sample",
    "attribute",
    "attribute_run",
    "attribute_sweep",
    "balanced_probe_split",
    "bc_ba_loss_ratio",
    "bc_ba_loss_ratio_sum",
    "bc_loss_share",
    "cached_features",
    "check_proposition",
    "class_selectivity",
    "class_separation",
    "classify_run",
    "cmr",
    "confidence_histogram",
    "confidence_histograms",
    "core_flip_rate",
    "cross_entropy",
    "dfr_wga",
    "evaluate_claims",
    "extract_features",
    "failures_table",
    "flip_rate",
    "global_magnitude_masks",
    "group_accuracy_metrics",
    "layer_activation_sparsity",
    "linear_probe",
    "logit_metrics",
    "loss_ratio_curve",
    "margins",
    "max_softmax",
    "max_sparsity_at",
    "norm_compressibility",
    "param_norms",
    "probe_core",
    "probe_spurious",
    "prune_curve",
    "pruned_copy",
    "ratio_curves",
    "ratio_vs_logit_norm",
    "register_epoch_analysis",
    "relu_layers",
    "retention",
    "scaled_cross_entropy",
    "select_positions",
    "selectivity",
    "shares_table",
    "spurious_flip_rate",
    "unit_selectivity",
]
