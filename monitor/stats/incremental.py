"""Windows of many months, updated by what changed instead of summed again (issue 18).

A model's month, rolling (last ``n`` calendar months) and cumulative windows are sums of its monthly
histograms. Summing each window afresh costs ``n`` or ``k`` additions for the ``k``-th month, so a
pass over ``M`` months cost ~M**2/2 additions, and one changed month cost ``M`` (the cumulative
window starts from the first month). :class:`MonthSums` keeps the monthly histograms with their
running total and walks the windows of the months from the earliest changed one:

- the cumulative window before that month is the sum of the months before it, or the total minus
  the months from it on, whichever is fewer additions (a change to
  month ``k`` changes the cumulative window of every month from ``k``: those are walked anyway);
- each next cumulative window adds the entering month; each next rolling window adds the entering
  month and subtracts the ones that left it (a sliding window over the calendar).

So a walk costs ~3 additions per month walked plus ``n``, whatever the months before; counts are
integers, so the windows are exactly the re-summed ones (tests/unit/test_stats_incremental.py).
Windows are named by their first and last month (:func:`window_spans`): a model's months are a
sorted list, so a window's months among them are a contiguous run.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from monitor.months import index as month_index
from monitor.months import name as month_name

__all__ = ["MonthSums", "WindowSet", "rolling_changed", "window_spans"]


class _Summable(Protocol):
    def copy(self) -> Self: ...

    def __iadd__(self, other: Any) -> Self: ...

    def __isub__(self, other: Any) -> Self: ...

    def __add__(self, other: Any) -> Any: ...

    def __sub__(self, other: Any) -> Any: ...


H = TypeVar("H", bound=_Summable)
Span = tuple[str, str]
"""A window's first and last month (among the model's months: they are all the months between)."""


def window_spans(months: list[str], position: int, rolling_months: int) -> dict[str, Span]:
    """First and last month of each window of ``months[position]`` among the sorted ``months``: O(log M).

    >>> window_spans(["2024-01", "2024-02", "2024-04"], 2, 2)
    {'month': ('2024-04', '2024-04'), 'rolling': ('2024-04', '2024-04'), 'cumulative': ('2024-01', '2024-04')}
    >>> window_spans(["2024-01", "2024-02", "2024-04"], 1, 3)["rolling"]
    ('2024-01', '2024-02')
    """
    month = months[position]
    first_rolling = bisect.bisect_left(months, month_name(month_index(month) - rolling_months + 1), 0, position)
    return {"month": (month, month), "rolling": (months[first_rolling], month), "cumulative": (months[0], month)}


def rolling_changed(month: str, changed_numbers: list[int], rolling_months: int) -> bool:
    """Whether the rolling window of ``month`` holds one of the changed months (their sorted
    :func:`monitor.months.index` numbers).

    >>> from monitor.months import index
    >>> changed = [index("2024-01")]
    >>> rolling_changed("2024-03", changed, 3), rolling_changed("2024-04", changed, 3)
    (True, False)
    """
    last = month_index(month)
    at = bisect.bisect_left(changed_numbers, last - rolling_months + 1)
    return at < len(changed_numbers) and changed_numbers[at] <= last


@dataclass
class WindowSet(Generic[H]):
    """The windows of one month: their spans, their sums (valid until the walk moves on: the rolling
    and cumulative sums are updated in place) and which of them changed since the last walk."""

    month: str
    spans: dict[str, Span]
    sums: dict[str, H]
    changed: frozenset[str]


class MonthSums(Generic[H]):
    """A model's monthly histograms (``month -> H``) with their running total.

    ``H`` adds and subtracts exactly (integer counts) and is never mutated here: sums are copies.

    >>> from monitor.stats.histogram import ScoreHistogram as SH
    >>> sums = MonthSums(SH(0.1))
    >>> sums.update({"2024-01": SH.from_scores([0.1], 0.1), "2024-02": SH.from_scores([0.2, 0.3], 0.1)})
    >>> [(w.month, w.sums["cumulative"].n, sorted(w.changed)) for w in sums.windows(["2024-01", "2024-02"], ["2024-02"], 2)]
    [('2024-02', 3, ['cumulative', 'month', 'rolling'])]
    """

    def __init__(self, empty: H):
        self.empty = empty
        self.hists: dict[str, H] = {}
        self._total: H | None = None  # sum of every month in hists, built on first use

    def __getitem__(self, month: str) -> H:
        return self.hists[month]

    def __contains__(self, month: object) -> bool:
        return month in self.hists

    def __len__(self) -> int:
        return len(self.hists)

    def update(self, new: Mapping[str, H]) -> None:
        """Replace (or add) months' histograms; the total follows by subtracting the old and adding the new."""
        for month, hist in new.items():
            if self._total is not None:
                old = self.hists.get(month)
                if old is not None:
                    self._total -= old
                self._total += hist
            self.hists[month] = hist

    def retain(self, months: list[str]) -> None:
        """Forget the months not in ``months`` (a model's state wiped under a running worker), with
        their share of the total; nothing to do (O(1)) when ``months`` are the months held.

        >>> from monitor.stats.histogram import ScoreHistogram as SH
        >>> sums = MonthSums(SH(0.1)); sums.update({"2024-01": SH.from_scores([0.1], 0.1)})
        >>> sums.total().n; sums.update({"2024-02": SH.from_scores([0.2], 0.1)}); sums.retain(["2024-02"])
        1
        >>> len(sums), sums.total().n
        (1, 1)
        """
        if len(months) == len(self.hists) and all(m in self.hists for m in months[-1:]):
            return
        listed = set(months)
        for month in [m for m in self.hists if m not in listed]:
            old = self.hists.pop(month)
            if self._total is not None:
                self._total -= old

    def total(self) -> H:
        """The sum of every month (kept up to date by :meth:`update` once built)."""
        if self._total is None:
            total = self.empty.copy()
            for hist in self.hists.values():
                total += hist
            self._total = total
        return self._total

    def _sum_before(self, months: list[str], start: int) -> H:
        """The sum of ``months[:start]``: summed when they are fewer than the rest, else the total
        minus the rest (the rest is walked anyway); min(start, M - start) additions."""
        if start <= len(months) - start:
            before = self.empty.copy()
            for month in months[:start]:
                before += self.hists[month]
            return before
        rest = self.empty.copy()
        for month in months[start:]:
            rest += self.hists[month]
        before = self.total().copy()
        before -= rest
        return before

    def windows(self, months: list[str], changed: list[str], rolling_months: int) -> Iterator[WindowSet[H]]:
        """The windows of every month of ``months`` (sorted, each held here) from the earliest
        ``changed`` one on, walked incrementally; nothing when nothing changed."""
        if not changed:
            return
        if len(months) != len(self.hists):  # months the caller does not list: the total is not theirs
            raise ValueError(f"{len(self.hists)} months held, {len(months)} listed")
        start = bisect.bisect_left(months, min(changed))
        changed_set = set(changed)
        changed_numbers = sorted(month_index(m) for m in changed_set)
        cumulative = self._sum_before(months, start)
        rolling = self.empty.copy()
        in_rolling: deque[tuple[int, str]] = deque()
        for position in range(start, len(months)):
            month = months[position]
            number = month_index(month)
            hist = self.hists[month]
            cumulative += hist
            if position == start:  # the first rolling window is summed; the next ones slide
                first = bisect.bisect_left(months, month_name(number - rolling_months + 1), 0, position)
                for earlier in months[first:position]:
                    rolling += self.hists[earlier]
                    in_rolling.append((month_index(earlier), earlier))
            rolling += hist
            in_rolling.append((number, month))
            while in_rolling[0][0] <= number - rolling_months:
                rolling -= self.hists[in_rolling.popleft()[1]]
            first_rolling = in_rolling[0][1]
            spans = {"month": (month, month), "rolling": (first_rolling, month), "cumulative": (months[0], month)}
            which = {"cumulative"}
            if month in changed_set:
                which.add("month")
            if rolling_changed(month, changed_numbers, rolling_months):
                which.add("rolling")
            yield WindowSet(month, spans, {"month": hist, "rolling": rolling, "cumulative": cumulative},
                            frozenset(which))
        if self._total is None:  # the last cumulative window is the total: kept from now on
            self._total = cumulative.copy()
