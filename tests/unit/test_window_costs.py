"""The cost of a metrics pass grows with the months that changed, not with all the months (issue 18).

Counted, not timed: histogram additions/subtractions, metric computations and the months the window
spans list, over a model of 3,000 months driven through ``MetricsUpdater.update_model`` with an
in-memory stand-in for the Redis reads (the engine's pure part is what is measured here; the same
pass against a real Redis is tests/integration/test_engine.py, which checks the metrics themselves).
"""

from __future__ import annotations

import pytest

from monitor.worker import engine
from monitor.worker.engine import MetricsUpdater
from monitor.months import month_range, previous_months
from monitor.settings import Settings
from monitor.stats import LabelledHistograms

MONTHS = 3000
RESOLUTION = 0.1


def one_record(month_index: int, count: int = 1) -> LabelledHistograms:
    hist = LabelledHistograms.empty(RESOLUTION)
    hist.unlabeled.update((month_index % 10) / 10, count)
    return hist


class MemoryStore:
    """The reads ``update_model`` makes, from dicts; no reference, no feature profile, no alert."""

    def __init__(self, months: list[str]):
        self.hists = {m: one_record(i) for i, m in enumerate(months)}
        self.revs = dict.fromkeys(months, 1)
        self.saved: dict[str, dict] = {}

    def change(self, month: str, count: int) -> None:
        self.hists[month] = self.hists[month] + one_record(0, count)
        self.revs[month] += 1

    async def closing_watermark(self, model, version, partitions):
        return None

    async def months(self, model, version):
        return sorted(self.hists)

    async def month_revisions(self, model, version, months):
        return {m: self.revs[m] for m in months}

    async def histograms(self, model, version, months):
        return {m: self.hists[m].copy() for m in months}

    async def reference_meta(self, model, version):
        return {}

    async def reference(self, model, version):
        return None, {}

    async def feature_profile(self, model, version):
        return None

    async def save_metrics(self, model, version, results):
        self.saved.update(results)  # a pass saves in chunks; the test clears saved before each pass

    async def metrics_of(self, model, version, months):
        return {}

    async def watermark(self, model, version):
        return None

    async def alert_states_raw(self, model, version):
        return {}


class Tally:
    def __init__(self):
        self.merges = 0  # histogram additions and subtractions
        self.metrics = 0  # compute_metrics calls
        self.span_months = 0  # months listed by the window spans handed to per_window


@pytest.fixture
def tally(monkeypatch):
    counts = Tally()
    for name in ("__iadd__", "__add__", "__isub__", "__sub__"):
        original = getattr(LabelledHistograms, name)

        def counted(self, other, _original=original):
            counts.merges += 1
            return _original(self, other)
        monkeypatch.setattr(LabelledHistograms, name, counted)

    class Metrics:  # what the engine keeps of compute_metrics: to_dict(); n is enough to check the sums
        def __init__(self, hist, reference):
            counts.metrics += 1
            self.n = hist.n

        def to_dict(self):
            return {"n": self.n}
    monkeypatch.setattr(engine, "compute_metrics", Metrics)
    original_per_window = engine.per_window

    def per_window(spans, sums, compute, *rest):
        counts.span_months += sum(len(span) for span in spans.values())
        return original_per_window(spans, sums, compute, *rest)
    monkeypatch.setattr(engine, "per_window", per_window)
    return counts


def expected_n(store: MemoryStore, months: list[str], month: str, rolling: int) -> dict[str, int]:
    window = set(previous_months(month, rolling))
    return {"month": store.hists[month].n, "rolling": sum(store.hists[m].n for m in months if m in window),
            "cumulative": sum(store.hists[m].n for m in months if m <= month)}


async def test_a_pass_costs_what_changed_not_all_the_months(tally):
    settings = Settings(rolling_months=3, resolution=RESOLUTION)
    months = month_range("1700-01", MONTHS)
    store = MemoryStore(months)
    updater = MetricsUpdater(store, settings)  # type: ignore[arg-type]  # the reads it makes, in memory

    await updater.update_model("m", "1")  # first pass: every window of every month
    assert len(store.saved) == MONTHS
    assert tally.metrics <= 3 * MONTHS
    assert tally.merges <= 6 * MONTHS, f"{tally.merges} histogram merges for {MONTHS} months"
    assert tally.span_months <= 6 * MONTHS, f"window spans list {tally.span_months} months: quadratic"

    # Live traffic: only the last month changed. Its three windows, a handful of merges.
    tally.merges = tally.metrics = tally.span_months = 0
    store.change(months[-1], 5)
    store.saved = {}
    await updater.update_model("m", "1")
    assert list(store.saved) == [months[-1]]
    assert tally.metrics <= 3
    assert tally.merges <= 3 * settings.rolling_months + 6, f"{tally.merges} merges for one changed month"
    assert {w: v["n"] for w, v in store.saved[months[-1]]["windows"].items()} == expected_n(
        store, months, months[-1], settings.rolling_months)

    # A late record in the first month: every cumulative window changed (recomputed), but only the
    # rolling windows that hold the first month, and that month's own window.
    tally.merges = tally.metrics = tally.span_months = 0
    store.change(months[0], 7)
    store.saved = {}
    await updater.update_model("m", "1")
    assert len(store.saved) == MONTHS
    assert tally.metrics <= MONTHS + settings.rolling_months + 1, f"{tally.metrics} metrics for one changed month"
    assert tally.merges <= 4 * MONTHS
    for month in (months[0], months[1], months[2], months[3], months[MONTHS // 2], months[-1]):
        got = {w: v["n"] for w, v in store.saved[month]["windows"].items()}
        assert got == expected_n(store, months, month, settings.rolling_months), month


class FeatureStore(MemoryStore):
    """MemoryStore with a feature profile and per-month feature counts."""

    def __init__(self, months: list[str], profile, rng):
        super().__init__(months)
        self.profile = profile
        self.rng = rng
        self.counters = {m: self.counter() for m in months}

    def counter(self):
        from monitor.stats import FeatureCounter

        counter = FeatureCounter(self.profile)  # 150 names: past the first 100 they fold into __other__
        for _ in range(int(self.rng.integers(1, 6))):
            counter.update({"x": float(self.rng.normal()), "c": f"cat{int(self.rng.integers(0, 150))}"})
        return counter

    def change(self, month: str, count: int) -> None:
        super().change(month, count)
        self.counters[month] = self.counters[month] + self.counter()

    async def feature_profile(self, model, version):
        return self.profile

    async def feature_counts(self, model, version, months, profile):
        return {m: self.counters[m].copy() for m in months}


async def test_cumulative_feature_drift_equals_the_counts_summed_afresh():
    """The cumulative feature counts start from the last pass's sum before its first changed month:
    the drift equals that of the months' counts summed from the first month, in order (a counter folds
    unseen categories as they come), whichever months change."""
    import numpy as np
    import pandas as pd

    from monitor.stats import FeatureCounter, FeatureProfile, feature_drift

    rng = np.random.default_rng(3)
    profile = FeatureProfile.from_frame(pd.DataFrame({"x": rng.normal(size=200),
                                                      "c": rng.choice(["cat0", "cat1"], size=200).astype(object)}))
    months = month_range("2001-01", 60)
    store = FeatureStore(months, profile, rng)
    updater = MetricsUpdater(store, Settings(rolling_months=3, resolution=RESOLUTION))  # type: ignore[arg-type]
    for changed in ([], [months[-1]], [months[-1]], [months[40], months[-1]], [months[50]], [months[0]], [months[-1]]):
        for month in changed:
            store.change(month, 2)
        store.saved = {}
        await updater.update_model("m", "1")
        for month, result in store.saved.items():
            fresh = FeatureCounter(profile)
            for earlier in months:
                if earlier <= month:
                    fresh += store.counters[earlier]
            expected = {f: d.to_dict() for f, d in feature_drift(fresh, profile).items()}
            assert result["features"]["cumulative"] == expected, (changed, month)


async def test_the_windows_are_computed_off_the_event_loop(monkeypatch):
    """While a window's metrics are computed, the event loop runs other tasks: the computation waits
    for an event that only a coroutine on the loop sets (on the loop itself it would wait in vain)."""
    import asyncio
    import threading

    loop_ran = threading.Event()
    seen: list[bool] = []

    class Metrics:
        def __init__(self, hist, reference):
            seen.append(loop_ran.wait(timeout=10))
            self.n = hist.n

        def to_dict(self):
            return {"n": self.n}
    monkeypatch.setattr(engine, "compute_metrics", Metrics)

    async def on_the_loop():
        await asyncio.sleep(0.01)
        loop_ran.set()

    months = month_range("2020-01", 3)
    updater = MetricsUpdater(MemoryStore(months), Settings(resolution=RESOLUTION))  # type: ignore[arg-type]
    other = asyncio.create_task(on_the_loop())
    await updater.update_model("m", "1")
    await other
    assert seen and all(seen), "the loop did not run while the windows were computed"
