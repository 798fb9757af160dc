"""Kolmogorov-Smirnov D between two score histograms, with scipy's p-value and a quantization bound.

D is evaluated at every non-empty bin, as ``scipy.stats.ks_2samp`` evaluates it at every
data point, with exact integer arithmetic.

Bound on raw scores: rounding never reverses two scores, so the quantized CDFs are the
raw CDFs read at bin edges, hence D_q <= D_raw; and a raw x inside bin k lies above all
lower bins and below all higher ones, so F_a(x) - F_b(x) <= F_a(k) - F_b(k-1) (and the
mirror), hence D_raw <= max_k of those = D_q + ``bound``. The bound is 0 unless both
samples share a bin, and never exceeds the largest single-bin share of either sample.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

from monitor.stats._cdf import (
    check_pair,
    contains,
    cumulative_at,
    int_dtype,
    union_bins,
)
from monitor.stats._kstwo import kstwo_sf
from monitor.stats.histogram import ScoreHistogram

# scipy's ks_2samp(method='auto') is exact while max(n, m) <= this, asymptotic above.
EXACT_MAX_N = 10_000


@dataclass(frozen=True)
class KSResult:
    """One KS comparison: D, where it is reached, p-value (if computed), sizes and bound on |D - D_raw|.

    ``bound`` is exact: D on the raw (unquantized) scores lies in [d, d + bound].

    >>> r = KSResult(d=0.5, location=0.3, pvalue=None, n=4, m=4, bound=0.25)
    >>> r.to_dict()["d"]
    0.5
    """

    d: float
    location: float
    pvalue: float | None = None
    n: int = 0
    m: int = 0
    bound: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON types; exact copy of the fields.

        >>> KSResult(d=0.1, location=0.2).to_dict()["pvalue"] is None
        True
        """
        return asdict(self)


def _ks(a: ScoreHistogram, b: ScoreHistogram) -> KSResult | None:
    """D, location and bound of ks_2samp(a_scores, b_scores); None if either is empty."""
    check_pair(a, b)
    n, m = a.n, b.n
    if n == 0 or m == 0:
        return None
    dtype = int_dtype(n, m)
    grid = union_bins(a.bins, b.bins)
    cum_a, cum_b = cumulative_at(a, grid, dtype), cumulative_at(b, grid, dtype)
    diff = cum_a * m - cum_b * n  # n*m * (F_a - F_b), exact
    top, bottom = diff.max(), diff.min()
    # scipy keeps the positive side unless the negative one is strictly larger.
    extreme, d_scaled = (bottom, -bottom) if -bottom > top else (top, top)
    location = _scipy_location(grid, diff == extreme, a, b)
    # Raw scores inside bin k sit above every lower bin and below every higher one, so
    # F_a(x) - F_b(x) <= F_a(k) - F_b(k-1) there (and symmetrically): D_raw <= upper.
    prev_a, prev_b = np.r_[0, cum_a[:-1]].astype(dtype), np.r_[0, cum_b[:-1]].astype(dtype)
    upper = max((cum_a * m - prev_b * n).max(), (cum_b * n - prev_a * m).max())
    scale = n * m
    return KSResult(
        d=int(d_scaled) / scale,
        location=float(location),
        n=n,
        m=m,
        bound=int(upper - d_scaled) / scale,
    )


def _scipy_location(grid, reached, a, b) -> float:
    """scipy reports the first reaching point of sorted(a) + sorted(b): prefer a's bins."""
    candidates = grid[reached]
    in_a = candidates[contains(a.bins, candidates)]
    return (in_a[0] if in_a.size else candidates[0]) * a.resolution


def ks_good_bad(pos: ScoreHistogram, neg: ScoreHistogram) -> KSResult | None:
    """KS separation of bads (``pos``) and goods (``neg``): max |F_bad - F_good|, or None if a class is empty.

    Exact on the quantized scores (same D and location as ``ks_2samp(bads, goods)``);
    ``bound`` says how far D on the raw scores can be above it. No p-value: it is a
    measure of separation, not a test.

    >>> bad = ScoreHistogram.from_scores([0.6, 0.7, 0.9], resolution=0.1)
    >>> good = ScoreHistogram.from_scores([0.1, 0.2, 0.7], resolution=0.1)
    >>> r = ks_good_bad(bad, good)
    >>> round(r.d, 4), round(r.location, 4)
    (0.6667, 0.2)
    """
    return _ks(pos, neg)


def ks_adherence(live: ScoreHistogram, reference: ScoreHistogram) -> KSResult | None:
    """Two-sample KS of the live scores against the reference, with ks_2samp's p-value.

    D and its location match ``scipy.stats.ks_2samp(live, reference)`` on the quantized
    scores (exact integers); the p-value is ks_2samp's ``method='auto'``: exact when
    max(n, m) <= 10000 (computed by ks_2samp itself on the rebuilt samples), otherwise
    ``kstwo.sf(D, round(n*m/(n+m)))`` clipped to [0, 1], as scipy 1.17 does (computed by
    :func:`monitor.stats._kstwo.kstwo_sf`, scipy's value in ~0.5 ms instead of O(n)).
    Cost: the exact regime runs scipy's exact algorithm, up to ~60 ms near n = m = 10000.
    None if either sample is empty.

    >>> ref = ScoreHistogram.from_scores([0.1, 0.2, 0.3, 0.4], resolution=0.1)
    >>> live = ScoreHistogram.from_scores([0.3, 0.4, 0.5, 0.6], resolution=0.1)
    >>> r = ks_adherence(live, ref)
    >>> round(r.d, 4), round(r.location, 4), round(r.pvalue, 4)
    (0.5, 0.3, 0.7714)
    """
    result = _ks(live, reference)
    if result is None:
        return None
    n, m = result.n, result.m
    if max(n, m) <= EXACT_MAX_N:
        with warnings.catch_warnings():
            # ks_2samp warns when its exact method falls back to asymp; the value is still scipy's.
            warnings.simplefilter("ignore", RuntimeWarning)
            pvalue = sps.ks_2samp(
                np.repeat(live.values(), live.counts),
                np.repeat(reference.values(), reference.counts),
                method="auto",
            ).pvalue
    else:
        big, small = sorted([float(n), float(m)], reverse=True)
        pvalue = kstwo_sf(result.d, int(np.round(big * small / (big + small))))
    pvalue = float(np.clip(pvalue, 0.0, 1.0))
    return KSResult(result.d, result.location, pvalue, n, m, result.bound)


def ks_critical_value(n: int, m: int, alpha: float = 0.05) -> float | None:
    """Large-sample critical D at level alpha: c(alpha) * sqrt((n+m)/(n*m)), c = sqrt(-ln(alpha/2)/2).

    The asymptotic (Smirnov) value: c(alpha) is within 3e-5 (relative) of the Kolmogorov limit's
    quantile for alpha <= 0.1, but for samples of a few dozen the exact critical value is
    a few percent off. None if a sample is empty.

    >>> round(ks_critical_value(1000, 1000), 4)
    0.0607
    """
    if n < 1 or m < 1:
        return None
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
