"""Month, rolling last-N-months and cumulative windows, all built by merging monthly histograms.

A window is the sum of its months, so its metrics are exactly those of the pooled
scores. ``H`` is anything with ``+`` and ``.copy()`` (ScoreHistogram, LabelledHistograms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Self, TypeVar

from monitor.errors import StatsError
from monitor.months import month_of, parse, previous_months

__all__ = ["cumulative", "month_of", "previous_months", "rolling"]



class _Mergeable(Protocol):
    def copy(self) -> Self: ...

    def __add__(self, other: Any) -> Any: ...


H = TypeVar("H", bound=_Mergeable)


def _sum(parts: list[H], empty: H | None, what: str) -> H:
    if not parts:
        if empty is None:
            raise StatsError(f"no histogram in {what}; pass empty= to get an empty window")
        return empty.copy()
    result = parts[0].copy()  # never mutate the stored monthly histograms
    for part in parts[1:]:
        result += part
    return result


def rolling(hists_by_month: Mapping[str, H], month: str, n: int, empty: H | None = None) -> H:
    """Sum of the histograms of ``month`` and the ``n - 1`` months before; exact (counts add).

    Months without a histogram count as empty; if none has one, ``empty.copy()`` is
    returned (StatsError when ``empty`` is not given).

    >>> from monitor.stats.histogram import ScoreHistogram as SH
    >>> by_month = {"2024-01": SH.from_scores([0.1]), "2024-03": SH.from_scores([0.2, 0.3])}
    >>> rolling(by_month, "2024-03", 2).n, rolling(by_month, "2024-03", 3).n
    (2, 3)
    """
    window = previous_months(month, n)
    parts = [hists_by_month[m] for m in window if m in hists_by_month]
    return _sum(parts, empty, f"the {n} months up to {month}")


def cumulative(hists_by_month: Mapping[str, H], month: str, empty: H | None = None) -> H:
    """Sum of the histograms of every month up to and including ``month``; exact.

    >>> from monitor.stats.histogram import ScoreHistogram as SH
    >>> by_month = {"2023-11": SH.from_scores([0.1]), "2024-03": SH.from_scores([0.2]),
    ...             "2024-04": SH.from_scores([0.3])}
    >>> cumulative(by_month, "2024-03").n
    2
    """
    parse(month)
    for key in hists_by_month:
        parse(key)  # 'YYYY-MM' keys compare as strings in calendar order
    parts = [h for m, h in sorted(hists_by_month.items()) if m <= month]
    return _sum(parts, empty, f"the months up to {month}")
