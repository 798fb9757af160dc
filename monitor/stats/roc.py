"""AUC (Mann-Whitney, ties count 1/2), Gini, Hanley-McNeil standard error, quantization bound.

``pos`` holds the scores of label 1 (bad), ``neg`` those of label 0 (good); a score is
the predicted probability of label 1, so a good model puts bads above goods.
"""

from __future__ import annotations

import math

import numpy as np

from monitor.stats._cdf import check_pair, int_dtype
from monitor.stats.histogram import ScoreHistogram


def _below_and_tied(pos: ScoreHistogram, neg: ScoreHistogram, dtype):
    """For each pos bin: goods in lower bins, goods in the same bin (exact counts)."""
    cum_neg = np.concatenate([[0], np.cumsum(neg.counts)]).astype(dtype)
    lo = np.searchsorted(neg.bins, pos.bins, side="left")
    hi = np.searchsorted(neg.bins, pos.bins, side="right")
    return cum_neg[lo], cum_neg[hi] - cum_neg[lo]


def roc_auc(pos: ScoreHistogram, neg: ScoreHistogram) -> float | None:
    """AUC = P(score_bad > score_good) + P(tie) / 2, or None if either class is empty.

    Computed with exact integers and one final division, so it equals the AUC of the
    quantized scores to within one rounding of a float (see :func:`auc_quantization_bound`
    for the distance to the raw scores).

    >>> bad = ScoreHistogram.from_scores([0.9, 0.8, 0.4], resolution=0.1)
    >>> good = ScoreHistogram.from_scores([0.1, 0.4, 0.85], resolution=0.1)
    >>> round(roc_auc(bad, good), 4)
    0.7778
    >>> roc_auc(bad, ScoreHistogram(0.1)) is None
    True
    """
    check_pair(pos, neg)
    n_pos, n_neg = pos.n, neg.n
    if n_pos == 0 or n_neg == 0:
        return None
    dtype = int_dtype(n_pos, n_neg)
    below, tied = _below_and_tied(pos, neg, dtype)
    twice_wins = int(np.sum(pos.counts.astype(dtype) * (2 * below + tied)))
    return twice_wins / (2 * n_pos * n_neg)  # Python int division: correctly rounded


def auc_quantization_bound(pos: ScoreHistogram, neg: ScoreHistogram) -> float | None:
    """Exact bound on |AUC(quantized) - AUC(raw)|: half the share of (bad, good) pairs sharing a bin.

    Rounding to the resolution never reverses two scores, so pairs in different bins
    are ordered as the raw scores were; a pair in one bin counts 1/2 but its raw
    scores may count 0 or 1, so it moves the AUC by at most 1 / (2 n_pos n_neg).

    >>> bad = ScoreHistogram.from_scores([0.9, 0.4], resolution=0.1)
    >>> good = ScoreHistogram.from_scores([0.4, 0.1], resolution=0.1)
    >>> auc_quantization_bound(bad, good)
    0.125
    """
    check_pair(pos, neg)
    n_pos, n_neg = pos.n, neg.n
    if n_pos == 0 or n_neg == 0:
        return None
    dtype = int_dtype(n_pos, n_neg)
    _, tied = _below_and_tied(pos, neg, dtype)
    tied_pairs = int(np.sum(pos.counts.astype(dtype) * tied))
    return tied_pairs / (2 * n_pos * n_neg)


def gini(auc: float | None) -> float | None:
    """Gini (accuracy ratio) = 2 * AUC - 1; as exact as the AUC given, None if it is None.

    >>> gini(0.75), gini(None)
    (0.5, None)
    """
    return None if auc is None else 2.0 * auc - 1.0


def auc_standard_error(auc: float | None, n_pos: int, n_neg: int) -> float | None:
    """Hanley & McNeil (1982) standard error of the AUC; an approximation that assumes exponential-like score distributions.

    >>> round(auc_standard_error(0.8, 100, 400), 4)
    0.0279
    >>> auc_standard_error(None, 0, 10) is None
    True
    """
    if auc is None or n_pos < 1 or n_neg < 1:
        return None
    q1 = auc / (2.0 - auc)  # P(two random bads both outrank one good)
    q2 = 2.0 * auc * auc / (1.0 + auc)  # P(one bad outranks two random goods)
    variance = (
        auc * (1.0 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)
    ) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))  # >= 0 in exact arithmetic; guard float round-off
