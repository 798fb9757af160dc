"""Month keys, rolling and cumulative windows built by merging monthly histograms."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import StatsError
from monitor.stats import (
    LabelledHistograms,
    ScoreHistogram,
    cumulative,
    month_of,
    previous_months,
    rolling,
)


@pytest.mark.parametrize(
    "when, month",
    [
        ("2024-03", "2024-03"),
        ("2024-03-31", "2024-03"),
        ("2024-03-31T23:59:59", "2024-03"),
        ("2024-03-31T23:59:59Z", "2024-03"),
        ("2024-03-31T23:59:59+02:00", "2024-03"),  # wall-clock month, no conversion
        (date(1999, 12, 31), "1999-12"),
        (datetime(2025, 1, 1, 0, 0, tzinfo=timezone.utc), "2025-01"),
    ],
)
def test_month_of(when, month):
    assert month_of(when) == month


@pytest.mark.parametrize("bad", ["2024-13", "2024-00", "24-03", "March 2024", "", 202403, None, "2024-03-32"])
def test_month_of_rejects_garbage(bad):
    with pytest.raises(StatsError):
        month_of(bad)


def test_previous_months_crosses_years_oldest_first():
    assert previous_months("2024-02", 3) == ["2023-12", "2024-01", "2024-02"]
    assert previous_months("2024-02", 1) == ["2024-02"]
    assert previous_months("2024-12", 13)[0] == "2023-12"
    assert len(previous_months("2024-12", 25)) == 25
    with pytest.raises(StatsError):
        previous_months("2024-02", 0)
    with pytest.raises(StatsError):
        previous_months("2024-2", 3)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2500, 1, 1)), st.integers(1, 40))
def test_previous_months_are_consecutive(day, n):
    months = previous_months(month_of(day), n)
    assert months[-1] == month_of(day) and len(months) == n == len(set(months))
    for earlier, later in zip(months, months[1:]):
        # the day before the 1st of `later` falls in `earlier`
        year, mon = map(int, later.split("-"))
        assert month_of(date(year, mon, 1) - timedelta(days=1)) == earlier


def monthly_data(seed=0):
    rng = np.random.default_rng(seed)
    months = ["2023-11", "2023-12", "2024-01", "2024-03"]  # 2024-02 missing on purpose
    raw = {m: np.round(rng.random(rng.integers(1, 50)), 2) for m in months}
    hists = {m: ScoreHistogram.from_scores(v, 0.01) for m, v in raw.items()}
    return raw, hists


def test_rolling_equals_histogram_of_pooled_scores():
    raw, hists = monthly_data()
    for month, n in [("2024-03", 3), ("2024-03", 5), ("2024-01", 2), ("2024-02", 1), ("2024-04", 2)]:
        window = previous_months(month, n)
        pooled = [s for m in window if m in raw for s in raw[m]]
        if pooled:
            assert rolling(hists, month, n) == ScoreHistogram.from_scores(pooled, 0.01)
        else:
            with pytest.raises(StatsError):
                rolling(hists, month, n)
            assert rolling(hists, month, n, empty=ScoreHistogram(0.01)).n == 0


def test_cumulative_equals_histogram_of_all_earlier_scores():
    raw, hists = monthly_data(1)
    for month in ["2023-11", "2024-02", "2024-03", "2030-01"]:
        pooled = [s for m in raw if m <= month for s in raw[m]]
        assert cumulative(hists, month) == ScoreHistogram.from_scores(pooled, 0.01)
    with pytest.raises(StatsError):
        cumulative(hists, "2023-10")
    assert cumulative(hists, "2023-10", empty=ScoreHistogram(0.01)).n == 0
    with pytest.raises(StatsError):
        cumulative({"bad-key": ScoreHistogram()}, "2024-01")


def test_windows_never_mutate_the_stored_months():
    raw, hists = monthly_data(2)
    before = {m: h.copy() for m, h in hists.items()}
    total = rolling(hists, "2024-03", 12)
    total.update(0.5)
    cumulative(hists, "2024-03").update(0.5)
    assert hists == before
    only = rolling(hists, "2023-11", 1)
    only.update(0.1)
    assert hists["2023-11"] == before["2023-11"]


def test_windows_of_labelled_histograms():
    def month(pos, neg, unl):
        h = LabelledHistograms.empty(0.1)
        h.pos.update_many(pos)
        h.neg.update_many(neg)
        h.unlabeled.update_many(unl)
        return h

    by_month = {"2024-01": month([0.9], [0.1], []), "2024-02": month([], [0.2, 0.3], [0.5]),
                "2024-03": month([0.8], [], [0.4])}
    window = rolling(by_month, "2024-03", 2)
    assert (window.pos.n, window.neg.n, window.unlabeled.n) == (1, 2, 2)
    total = cumulative(by_month, "2024-03")
    assert total == by_month["2024-01"] + by_month["2024-02"] + by_month["2024-03"]
    assert by_month["2024-01"].n == 2  # untouched
