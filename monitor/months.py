"""Calendar months written ``'YYYY-MM'``: the one place for month arithmetic, and the event-time
watermark that says up to which day a model's records have all arrived (months close on it).

A month maps to an integer index (``year * 12 + month - 1``), so adding months, ranges and
windows are integer steps and ``'YYYY-MM'`` strings compare in calendar order.

>>> index("2024-03") - index("2023-12"), add("2024-11", 3), month_range("2024-11", 3)
(3, '2025-02', ['2024-11', '2024-12', '2025-01'])
"""

from __future__ import annotations

import re
from datetime import date, datetime

from monitor.errors import StatsError

MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
"""A month key: four-digit year, two-digit month 01-12 (``fullmatch`` it)."""


def is_month(text: object) -> bool:
    """Whether ``text`` is a ``'YYYY-MM'`` month.

    >>> is_month("2024-12"), is_month("2024-13"), is_month("2024-2"), is_month(202412)
    (True, False, False, False)
    """
    return isinstance(text, str) and MONTH.fullmatch(text) is not None


def parse(month: str) -> tuple[int, int]:
    """``(year, month)`` of a ``'YYYY-MM'``; StatsError on anything else.

    >>> parse("2024-03")
    (2024, 3)
    >>> parse("2024-3")
    Traceback (most recent call last):
    ...
    monitor.errors.StatsError: a month is written 'YYYY-MM', got '2024-3'
    """
    match = MONTH.fullmatch(month) if isinstance(month, str) else None
    if not match:
        raise StatsError(f"a month is written 'YYYY-MM', got {month!r}")
    return int(match.group(1)), int(match.group(2))


def index(month: str) -> int:
    """The month's integer index, ``year * 12 + month - 1``: consecutive months differ by 1.

    >>> index("2024-01") - index("2023-12")
    1
    """
    year, mon = parse(month)
    return year * 12 + mon - 1


def name(month_index: int) -> str:
    """The ``'YYYY-MM'`` of a month index (the inverse of :func:`index`).

    >>> name(index("2024-12")), name(2024 * 12)
    ('2024-12', '2024-01')
    """
    return f"{month_index // 12:04d}-{month_index % 12 + 1:02d}"


def add(month: str, n: int) -> str:
    """The month ``n`` months after ``month`` (before it when ``n`` is negative).

    >>> add("2024-12", 1), add("2024-01", -1), add("2024-05", 0)
    ('2025-01', '2023-12', '2024-05')
    """
    return name(index(month) + n)


def month_range(first: str, n: int) -> list[str]:
    """``n`` consecutive months from ``first`` on, oldest first.

    >>> month_range("2023-11", 3), month_range("2024-01", 0)
    (['2023-11', '2023-12', '2024-01'], [])
    """
    start = index(first)
    return [name(i) for i in range(start, start + n)]


def previous_months(month: str, n: int) -> list[str]:
    """The month and the ``n - 1`` months before it, oldest first (a rolling window's months).

    >>> previous_months("2024-02", 3)
    ['2023-12', '2024-01', '2024-02']
    """
    if n < 1:
        raise StatsError(f"a window holds at least one month, got n={n}")
    return month_range(add(month, 1 - n), n)


def month_of(when: date | datetime | str) -> str:
    """The calendar month ``'YYYY-MM'`` of a date, datetime, month or ISO 8601 string; exact.

    A timezone-aware value keeps its own wall-clock month (no conversion): pass UTC
    timestamps if months must be UTC months.

    >>> month_of("2024-03-31T23:59:59Z"), month_of(date(2023, 12, 1)), month_of("2024-02")
    ('2024-03', '2023-12', '2024-02')
    """
    if isinstance(when, (date, datetime)):
        return f"{when.year:04d}-{when.month:02d}"
    if is_month(when):
        return when  # type: ignore[return-value]
    if isinstance(when, str):
        try:
            return month_of(datetime.fromisoformat(when))
        except ValueError:
            pass
    raise StatsError(f"cannot read a month from {when!r}: give a date, datetime or ISO string")


def event_time_watermark(partitions: dict[str, tuple[str, int]], now: int, idle_s: float, expected: int = 0,
                         first_seen: int | None = None) -> str | None:
    """The ref_date up to which a model's records have all arrived, from each partition's latest
    ref_date and the time it last delivered: the earliest among partitions still delivering.

    One partition can run far ahead of another (a backlog is read a fetch at a time), so the
    latest date seen would close a month whose records still wait in a slower partition. A
    partition that delivered nothing for ``idle_s`` seconds has caught up and holds nothing back;
    when all have, it is the latest date. A partition that has delivered none of the model's records
    yet holds everything back (None) for ``idle_s`` after the model's first records (``first_seen``),
    when fewer than the topic's ``expected`` partitions delivered: a backlog read one partition
    after another would otherwise close months on the first partition's dates alone.

    >>> parts = {"t:0": ("2024-12-31", 100), "t:1": ("2024-11-20", 95), "t:2": ("2024-06-01", 10)}
    >>> event_time_watermark(parts, now=101, idle_s=60), event_time_watermark(parts, now=200, idle_s=60)
    ('2024-11-20', '2024-12-31')
    >>> event_time_watermark({}, now=0, idle_s=60) is None
    True
    >>> one = {"t:0": ("2024-03-10", 100)}  # partition 0 read first; 1 to 3 have not delivered yet
    >>> event_time_watermark(one, 101, 60, expected=4, first_seen=99), event_time_watermark(one, 170, 60, 4, 99)
    (None, '2024-03-10')
    """
    if not partitions:
        return None
    if len(partitions) < expected and first_seen is not None and now - first_seen < idle_s:
        return None
    active = [day for day, seen in partitions.values() if now - seen < idle_s]
    return min(active) if active else max(day for day, _ in partitions.values())
