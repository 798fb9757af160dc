"""Exact integer helpers shared by the metrics: cumulative counts on a common grid of bins."""

from __future__ import annotations

import numpy as np

from monitor.errors import StatsError
from monitor.stats.histogram import ScoreHistogram

# Products of two totals above this could overflow int64 sums; we switch to Python ints.
INT64_SAFE = 2**62


def check_pair(a: ScoreHistogram, b: ScoreHistogram) -> None:
    """Raise StatsError unless both are ScoreHistograms of the same resolution."""
    if not (isinstance(a, ScoreHistogram) and isinstance(b, ScoreHistogram)):
        raise StatsError("metrics take two ScoreHistogram objects")
    if a.resolution != b.resolution:
        raise StatsError(f"histograms of different resolutions ({a.resolution} vs {b.resolution})")


def int_dtype(n_a: int, n_b: int):
    """int64 when products of counts up to n_a * n_b cannot overflow, else exact Python ints."""
    return np.int64 if 2 * n_a * n_b < INT64_SAFE else object


def cumulative_at(h: ScoreHistogram, grid: np.ndarray, dtype) -> np.ndarray:
    """Number of scores of ``h`` in bins <= each grid bin (exact)."""
    cum = np.concatenate([[0], np.cumsum(h.counts)]).astype(dtype)
    return cum[np.searchsorted(h.bins, grid, side="right")]


def union_bins(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted distinct bins of two sorted arrays (a stable sort merges the two runs in O(n))."""
    merged = np.concatenate([a, b])
    merged.sort(kind="stable")
    keep = np.empty(merged.size, dtype=bool)
    keep[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def contains(sorted_bins: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, whether it is one of the sorted bins."""
    idx = np.searchsorted(sorted_bins, values)
    found = idx < sorted_bins.size
    found[found] = sorted_bins[idx[found]] == values[found]
    return found
