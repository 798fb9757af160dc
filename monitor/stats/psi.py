"""Population Stability Index over the reference's deciles, computed on histogram bins."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats as sps

from monitor.stats._cdf import check_pair
from monitor.stats.histogram import ScoreHistogram

DEFAULT_EPSILON = 1e-4


def psi_edges(reference: ScoreHistogram, buckets: int = 10) -> np.ndarray:
    """Upper bins (inclusive) of all buckets but the last: the reference's quantiles on bins.

    Edge k is the first bin where the reference CDF reaches k / buckets. Duplicate
    edges collapse and an edge at the reference's top bin is dropped, so heavy ties
    give fewer buckets but every bucket holds reference mass. Exact (integer CDF).

    >>> ref = ScoreHistogram.from_scores([0.1] * 5 + [0.2, 0.3, 0.4, 0.5, 0.6], resolution=0.1)
    >>> psi_edges(ref, buckets=5).tolist()
    [1, 2, 4]
    """
    n = reference.n
    if n == 0 or buckets < 1:
        return np.empty(0, dtype=np.int64)
    cdf_times_buckets = np.cumsum(reference.counts) * buckets
    targets = np.arange(1, buckets, dtype=np.int64) * n
    edges = np.unique(reference.bins[np.searchsorted(cdf_times_buckets, targets, side="left")])
    return edges[edges < reference.bins[-1]]


def _shares(h: ScoreHistogram, edges: np.ndarray) -> np.ndarray:
    bucket = np.searchsorted(edges, h.bins, side="left")  # bin <= edge j -> bucket j
    counts = np.bincount(bucket, weights=h.counts, minlength=edges.size + 1)
    return counts / h.n


def psi(
    live: ScoreHistogram, reference: ScoreHistogram, buckets: int = 10, epsilon: float = DEFAULT_EPSILON
) -> float | None:
    """PSI = sum over buckets of (l - r) * ln(l / r), with buckets at the reference's deciles.

    A bucket that a sample never reaches gets the share ``epsilon`` (default 1e-4, i.e.
    0.01%) instead of 0, which keeps the logarithm finite; such a bucket adds about
    r * ln(r / epsilon). Exact on the quantized scores apart from float rounding of
    the shares (the buckets themselves are found with integer counts). PSI(h, h) is exactly 0. None if
    either sample is empty.

    >>> ref = ScoreHistogram.from_scores(np.linspace(0, 1, 101), resolution=0.01)
    >>> live = ScoreHistogram.from_scores(np.linspace(0.2, 1, 101), resolution=0.01)
    >>> round(psi(live, ref), 4), psi(ref, ref)
    (1.0117, 0.0)
    """
    check_pair(live, reference)
    if live.n == 0 or reference.n == 0:
        return None
    edges = psi_edges(reference, buckets)
    p, q = _shares(live, edges), _shares(reference, edges)
    p = np.where(p > 0, p, epsilon)
    q = np.where(q > 0, q, epsilon)
    return float(np.sum((p - q) * np.log(p / q)))


def psi_critical_value(n: int, m: int, buckets: int = 10, alpha: float = 0.05) -> float | None:
    """PSI above which the shift is significant at alpha: chi2.ppf(1 - alpha, buckets - 1) * (1/n + 1/m).

    Yurdakul (2018); an asymptotic (chi-square) value, rough for buckets with a handful
    of records. None with fewer than 2 buckets or an empty sample.

    >>> round(psi_critical_value(1000, 1000), 4)
    0.0338
    """
    if n < 1 or m < 1 or buckets < 2:
        return None
    return _chi2_quantile(1 - alpha, buckets - 1) * (1 / n + 1 / m)


@lru_cache(maxsize=64)
def _chi2_quantile(q: float, df: int) -> float:
    """scipy's chi2.ppf, remembered: a pass asks for the same few (q, df) hundreds of times."""
    return float(sps.chi2.ppf(q, df))
