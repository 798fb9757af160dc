"""monitor.months: the one month arithmetic, and every former copy now uses it."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor import months
from monitor.errors import StatsError


@given(st.integers(1, 9998 * 12), st.integers(-500, 500))
def test_index_name_add_agree(i, n):
    month = months.name(i)
    assert months.is_month(month) and months.index(month) == i
    assert months.add(month, n) == months.name(i + n) if 0 <= i + n < 10000 * 12 else True


@given(st.integers(12, 9000 * 12), st.integers(0, 40))
def test_range_and_previous_months_are_consecutive_and_ordered(i, n):
    span = months.month_range(months.name(i), n)
    assert len(span) == n and span == sorted(span)
    assert [months.index(m) for m in span] == list(range(i, i + n))
    if n:
        assert months.previous_months(span[-1], n) == span


@pytest.mark.parametrize("bad", ["2024-13", "2024-00", "24-03", "2024-3", "", None, 202403])
def test_garbage_is_refused(bad):
    with pytest.raises(StatsError):
        months.index(bad)


def test_the_former_copies_use_it():
    from datasets import loaders
    from monitor.alerts import lifecycle
    from monitor.stats import windows
    from producers import synthetic
    for module in (lifecycle, windows, synthetic, loaders):
        assert "// 12" not in inspect.getsource(module), module.__name__
