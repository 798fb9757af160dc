"""All metric functions on score histograms, in one import place.

They live in :mod:`monitor.stats.roc`, :mod:`monitor.stats.ks` and :mod:`monitor.stats.psi`.

>>> from monitor.stats.metrics import roc_auc, ScoreHistogram
>>> roc_auc(ScoreHistogram.from_scores([0.9]), ScoreHistogram.from_scores([0.1]))
1.0
"""

from monitor.stats.histogram import ScoreHistogram
from monitor.stats.ks import (
    KSResult,
    ks_adherence,
    ks_critical_value,
    ks_good_bad,
)
from monitor.stats.psi import psi, psi_critical_value, psi_edges
from monitor.stats.roc import auc_quantization_bound, auc_standard_error, gini, roc_auc

__all__ = [
    "KSResult",
    "ScoreHistogram",
    "auc_quantization_bound",
    "auc_standard_error",
    "gini",
    "ks_adherence",
    "ks_critical_value",
    "ks_good_bad",
    "psi",
    "psi_critical_value",
    "psi_edges",
    "roc_auc",
]
