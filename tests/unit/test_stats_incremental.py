"""Windows walked incrementally (monitor.stats.incremental) equal the windows summed afresh, exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.months import month_range, previous_months
from monitor.stats import ScoreHistogram, cumulative, rolling
from monitor.stats.incremental import MonthSums, window_spans

RES = 0.1
CALENDAR = month_range("2019-11", 40)


def histogram(counts: list[int]) -> ScoreHistogram:
    hist = ScoreHistogram(RES)
    for bin_, count in enumerate(counts):
        if count:
            hist.update(bin_ * RES, count)
    return hist


hist_counts = st.lists(st.integers(0, 50), min_size=1, max_size=11)
rounds = st.lists(  # each round: months (re)written with new histograms
    st.dictionaries(st.sampled_from(CALENDAR), hist_counts, min_size=1, max_size=12), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(rounds, st.integers(1, 13))
def test_walked_windows_equal_resummed_windows(updates, n_rolling):
    sums: MonthSums[ScoreHistogram] = MonthSums(ScoreHistogram(RES))
    plain: dict[str, ScoreHistogram] = {}
    last: dict[tuple[str, str], ScoreHistogram] = {}
    handed: list[tuple[ScoreHistogram, ScoreHistogram]] = []  # (handed in, a copy of it then)
    for update in updates:
        new = {m: histogram(c) for m, c in update.items()}
        handed += [(h, h.copy()) for h in new.values()]
        sums.update(new)
        plain.update({m: h.copy() for m, h in new.items()})
        months = sorted(plain)
        changed = sorted(new)
        walked = []
        for window in sums.windows(months, changed, n_rolling):
            month = window.month
            walked.append(month)
            empty = ScoreHistogram(RES)
            assert window.sums["month"] == plain[month]
            assert window.sums["rolling"] == rolling(plain, month, n_rolling, empty)
            assert window.sums["cumulative"] == cumulative(plain, month, empty)
            assert window.spans == window_spans(months, months.index(month), n_rolling)
            rolling_months = set(previous_months(month, n_rolling))
            assert ("rolling" in window.changed) == bool(rolling_months & set(changed))
            assert ("month" in window.changed) == (month in changed)
            assert "cumulative" in window.changed
            for name in ("month", "rolling"):  # a window said unchanged is the one of the last walk
                if name not in window.changed and (month, name) in last:
                    assert window.sums[name] == last[(month, name)]
            for name, hist in window.sums.items():
                last[(month, name)] = hist.copy()
        assert walked == [m for m in months if m >= min(changed)]
        assert sums.total() == cumulative(plain, months[-1], ScoreHistogram(RES))
    assert all(hist == copy for hist, copy in handed)  # the monthly histograms handed in were never mutated


def test_stored_histograms_are_not_mutated():
    sums: MonthSums[ScoreHistogram] = MonthSums(ScoreHistogram(RES))
    stored = {"2024-01": histogram([1, 2]), "2024-02": histogram([0, 0, 3])}
    copies = {m: h.copy() for m, h in stored.items()}
    sums.update(stored)
    for _ in sums.windows(sorted(stored), ["2024-01"], 2):
        pass
    sums.update({"2024-02": histogram([5])})
    for _ in sums.windows(sorted(stored), ["2024-02"], 2):
        pass
    assert stored == copies
