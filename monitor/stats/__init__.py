"""Exact, mergeable metric engine: AUC, Gini, KS and PSI from sparse score histograms.

No raw scores are kept, only integer counts per bin of width ``resolution``; every
metric is exact on those quantized scores and states a bound on its distance to the
value on raw scores where one exists.

>>> from monitor.stats import LabelledHistograms, compute_metrics
>>> h = LabelledHistograms.empty(resolution=0.01)
>>> h.pos.update_many([0.8, 0.7]); h.neg.update_many([0.2, 0.75])
>>> compute_metrics(h, None).auc
0.75
"""

from monitor.stats.features import (
    CategoricalReference,
    FeatureCounter,
    FeatureDrift,
    FeatureProfile,
    NumericReference,
    feature_drift,
)
from monitor.stats.histogram import DEFAULT_RESOLUTION, ScoreHistogram, quantize
from monitor.stats.ks import (
    KSResult,
    ks_adherence,
    ks_critical_value,
    ks_good_bad,
)
from monitor.stats.psi import psi, psi_critical_value, psi_edges
from monitor.stats.roc import auc_quantization_bound, auc_standard_error, gini, roc_auc
from monitor.stats.summary import LabelledHistograms, MetricSet, compute_metrics
from monitor.stats.windows import cumulative, month_of, previous_months, rolling

__all__ = [
    "DEFAULT_RESOLUTION",
    "KSResult",
    "LabelledHistograms",
    "MetricSet",
    "ScoreHistogram",
    "auc_quantization_bound",
    "auc_standard_error",
    "compute_metrics",
    "cumulative",
    "gini",
    "ks_adherence",
    "ks_critical_value",
    "ks_good_bad",
    "month_of",
    "previous_months",
    "psi",
    "psi_critical_value",
    "psi_edges",
    "quantize",
    "roc_auc",
    "rolling",
    "CategoricalReference",
    "FeatureCounter",
    "FeatureDrift",
    "FeatureProfile",
    "NumericReference",
    "feature_drift",
]
