"""Delayed labels through the real pipeline: late outcomes give the same final metrics as inline labels."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from monitor.worker.outcomes import outcome_counters
from monitor.ops.processes import wait_until_caught_up
from monitor.state import Store
from producers.publish import publish
from producers.synthetic import Scenario, generate, monthly_counts

pytestmark = pytest.mark.integration


async def test_labels_two_months_late_give_the_inline_auc(settings, worker_process):
    inline = Scenario(name="inline", model="inline", months=5, monthly_volume=1200)
    late = replace(inline, model="late")
    records = list(generate(inline))
    worker = worker_process()
    await publish(records, settings, per_message=20)
    # The same records for "late", without their labels; each month's outcomes two months later.
    unlabeled = [{**r, "model": "late", "record_id": r["record_id"], "target": None} for r in records]
    months = inline.month_labels()
    store = Store.connect(settings)
    try:
        for i, month in enumerate(months + ["", ""]):
            if month:
                await publish([r for r in unlabeled if r["ref_date"].startswith(month)], settings)
            if i >= 2:
                labelled = months[i - 2]
                outcomes = [{"record_id": r["record_id"], "model": "late", "model_version": "1", "target": r["target"],
                             "observed_at": "2025-01-01T00:00:00Z"} for r in records if r["ref_date"].startswith(labelled)]
                await publish(outcomes, settings, topic=settings.outcomes_topic, per_message=50)
            await asyncio.sleep(0.5)
        expected = monthly_counts(inline)
        assert await wait_until_caught_up(store, expected, "inline", "1", 60, worker)
        assert await wait_until_caught_up(store, expected, "late", "1", 60, worker)
        for _ in range(120):  # until every outcome has moved its record
            counts = [await store.counts("late", "1", m) for m in months]
            if all(c["unlabeled"] == 0 for c in counts):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(3 * settings.metrics_interval_s)
        a, b = await store.metrics("inline", "1"), await store.metrics("late", "1")
        for month in months:
            for window in ("month", "rolling", "cumulative"):
                assert a[month]["windows"][window] == b[month]["windows"][window], (month, window)
            assert a[month]["windows"]["month"]["auc"] is not None
        counters = await outcome_counters(store, "late", "1")
        # Joined on arrival, or (outcome first) when the record came: every record exactly once.
        assert counters["joined"] + counters["pending_joined"] == len(records)
        assert (counters["orphans"], counters["duplicates"]) == (0, 0)
    finally:
        await store.close()
