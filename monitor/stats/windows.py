"""Month, rolling last-N-months and cumulative windows, all built by merging monthly histograms.

A window is the sum of its months, so its metrics are exactly those of the pooled
scores. ``H`` is anything with ``+`` and ``.copy()`` (ScoreHistogram, LabelledHistograms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import TypeVar

from monitor.errors import StatsError

H = TypeVar("H")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def _parse_month(month: str) -> tuple[int, int]:
    match = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise StatsError(f"a month is written 'YYYY-MM', got {month!r}")
    return int(match.group(1)), int(match.group(2))


def month_of(when: date | datetime | str) -> str:
    """The calendar month ``'YYYY-MM'`` of a date, datetime or ISO 8601 string; exact.

    A timezone-aware value keeps its own wall-clock month (no conversion): pass UTC
    timestamps if months must be UTC months.

    >>> month_of("2024-03-31T23:59:59Z"), month_of(date(2023, 12, 1)), month_of("2024-02")
    ('2024-03', '2023-12', '2024-02')
    """
    if isinstance(when, (date, datetime)):
        return f"{when.year:04d}-{when.month:02d}"
    if isinstance(when, str):
        if _MONTH.fullmatch(when):
            year, month = _parse_month(when)
            return f"{year:04d}-{month:02d}"
        try:
            return month_of(datetime.fromisoformat(when))
        except ValueError:
            pass
    raise StatsError(f"cannot read a month from {when!r}: give a date, datetime or ISO string")


def previous_months(month: str, n: int) -> list[str]:
    """The month and the ``n - 1`` months before it, oldest first; exact.

    >>> previous_months("2024-02", 3)
    ['2023-12', '2024-01', '2024-02']
    """
    if n < 1:
        raise StatsError(f"a window holds at least one month, got n={n}")
    year, mon = _parse_month(month)
    index = year * 12 + (mon - 1)
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - n + 1, index + 1)]


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
    _parse_month(month)
    for key in hists_by_month:
        _parse_month(key)  # 'YYYY-MM' keys compare as strings in calendar order
    parts = [h for m, h in sorted(hists_by_month.items()) if m <= month]
    return _sum(parts, empty, f"the months up to {month}")
