"""``scipy.stats.kstwo.sf(d, n)`` with the same value, without its O(n) cost.

ks_2samp's asymptotic p-value is ``kstwo.sf(D, round(n*m/(n+m)))``. scipy computes it
(Simard & L'Ecuyer) by regime; in the regime that matters for drift alarms,
2.2 <= n*D^2 < 370, it is ``2 * smirnov(n, D)``, an exact sum of ~n terms that takes
~1.2 ms per 1,000 of n (1.2 s at n = 10^6). Here that sum is replaced by a trapezoid
rule on 4,096 points: the summand is smooth on a scale of hundreds of terms, so the
trapezoid equals the sum to within rounding (1e-10 relative or better, checked against
scipy in tests/unit/test_stats_metrics.py). Every other regime calls scipy itself,
except one where scipy's exact Durbin matrix costs up to 30 ms and its answer is 1
to within 3e-11 (see :func:`kstwo_sf`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

try:  # what kstwo.sf calls, without the distribution machinery's argument checks (half its cost)
    from scipy.stats._ksstats import kolmogn as _kolmogn

    def _scipy_sf(d: float, n: int) -> float:
        return float(_kolmogn(n, d, cdf=False))
except ImportError:  # a scipy that moved it: the public path, same value
    def _scipy_sf(d: float, n: int) -> float:
        return float(stats.kstwo.sf(d, n))

_POINTS = 4096
_SCIPY_SUM_MAX_N = 1000  # below this scipy's own sum costs < 1.2 ms
_SMIRNOV_MAX_COMPUTE_N = 1_000_000  # above it scipy uses a closed-form approximation (O(1))
_DURBIN_ONE_MIN_N = 40_000  # Durbin regime: 1 - sf <= 2.8e-11 from here on


def _stirling_error(z: np.ndarray) -> np.ndarray:
    """ln Gamma(z+1) - (z ln z - z + ln(2 pi z) / 2), accurate for z >= 1 (no cancellation)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    small = z < 15
    zs = z[small]
    out[small] = special.gammaln(zs + 1) - (zs * np.log(zs) - zs + 0.5 * np.log(2 * np.pi * zs))
    zl = z[~small]
    inv2 = 1.0 / (zl * zl)
    out[~small] = (1 / 12 - inv2 * (1 / 360 - inv2 * (1 / 1260 - inv2 * (1 / 1680 - inv2 / 1188)))) / zl
    return out


def _log_smirnov_terms(n: int, x: float, t: np.ndarray) -> np.ndarray:
    """ln of C(n,t) (x + t/n)^(t-1) (1 - x - t/n)^(n-t) for 1 <= t < n(1-x), without big cancelling logs."""
    p = t / n
    return (
        _stirling_error(np.array([float(n)]))[0]
        - _stirling_error(t)
        - _stirling_error(n - t)
        + 0.5 * np.log(n / (2 * np.pi * t * (n - t)))
        - np.log(x + p)
        + t * np.log1p(n * x / t)  # t ln((x+p)/p), bounded by n*x
        + (n - t) * np.log1p(-n * x / (n - t))  # (n-t) ln((1-x-p)/(1-p))
    )


def smirnov_sf(n: int, x: float) -> float:
    """One-sided ``scipy.special.smirnov(n, x)``; a 4,096-point trapezoid over its sum for n > 1000.

    Within 1e-10 relative of scipy where 2.2 <= n x^2 and x < 0.5 (the only place
    :func:`kstwo_sf` uses it); scipy itself elsewhere.

    >>> round(smirnov_sf(115000, 0.005), 12) == round(float(special.smirnov(115000, 0.005)), 12)
    True
    """
    if n <= _SCIPY_SUM_MAX_N or n > _SMIRNOV_MAX_COMPUTE_N or x >= 0.5 or n * x * x < 2.2:
        return float(special.smirnov(n, x))
    last = math.floor(n * (1 - x))
    if n * (1 - x) == last:
        last -= 1  # that term is 0^(n - last) = 0
    if last + 1 <= _POINTS:
        t = np.arange(1, last + 1, dtype=np.float64)
        log_terms, weights = _log_smirnov_terms(n, x, t), np.ones(t.size)
    else:
        t = np.linspace(0.0, float(last), _POINTS)[1:]
        h = last / (_POINTS - 1)
        log_terms = _log_smirnov_terms(n, x, t)
        weights = np.full(t.size, h)
        weights[-1] = h / 2  # the t=0 term gets weight h/2 below
    log_first = -math.log(x) + n * math.log1p(-x)  # t = 0: (1-x)^n / x
    first_weight = 1.0 if last + 1 <= _POINTS else last / (_POINTS - 1) / 2
    total = special.logsumexp(np.r_[log_first, log_terms], b=np.r_[first_weight, weights])
    return float(min(1.0, x * math.exp(total)))


def kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)`` (two-sided one-sample KS survival function), fast.

    Same regimes as scipy 1.17 (``_kolmogn``); within 1e-12 absolute of it, except
    for n >= 40,000 with n d^1.5 <= 1.4 where scipy's Durbin matrix gives 1 - c with
    c <= 2.8e-11 and this returns 1.0.

    >>> round(kstwo_sf(0.005, 115000), 10) == round(float(stats.kstwo.sf(0.005, 115000)), 10)
    True
    """
    n = int(n)
    if n <= 140 or d >= 0.5 or d <= 0 or n * d <= 1.0 or n * d >= n - 1:
        return _scipy_sf(d, n)  # cheap regimes
    nd2 = n * d * d
    if nd2 >= 370.0:
        return 0.0
    if nd2 >= 2.2:
        return float(np.clip(2 * smirnov_sf(n, d), 0.0, 1.0))
    if n <= 100_000 and n * d**1.5 <= 1.4 and n >= _DURBIN_ONE_MIN_N:
        return 1.0
    return _scipy_sf(d, n)
