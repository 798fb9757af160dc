"""Alert rules through the real pipeline: each fires and resolves, once, and stays quiet without drift."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import orjson
import pytest

from monitor.ops.processes import wait_until_caught_up
from monitor.ops.reference import save_reference
from monitor.state import Store
from producers.publish import publish
from producers.synthetic import Scenario, generate, monthly_counts, reference_frame
from tests.integration.test_worker import consume_all

pytestmark = pytest.mark.integration

# Three models on one topic, drifting in months 2024-04 and 2024-05 (the volume one in 2024-04 only).
BASE = Scenario(months=8, monthly_volume=1500, drift_start=3, drift_end=5)
SCENARIOS = {
    "drift-score": replace(BASE, name="score", model="drift-score", score_shift=0.8),
    "drift-auc": replace(BASE, name="auc", model="drift-auc", performance_decay=0.85),
    "drift-volume": replace(BASE, name="volume", model="drift-volume", volume_factor=0.5, drift_end=4),
}
EXPECTED_ALERTS = {  # (model, rule, window) that must fire on the drifted months
    ("drift-score", "ks_adherence", "month"), ("drift-score", "ks_adherence", "rolling"),
    ("drift-score", "psi", "month"), ("drift-score", "psi", "rolling"),
    ("drift-auc", "auc", "month"), ("drift-auc", "auc", "rolling"),
    ("drift-volume", "volume", "month"),
}


async def load_references(settings, scenarios) -> None:
    for spec in scenarios:
        ref = reference_frame(spec, n=10_000)
        await save_reference(settings, spec.model, spec.model_version, ref["score"].to_numpy(),
                             ref["TARGET"].to_numpy(), source="test")


async def stream_month_by_month(settings, scenarios, worker=None) -> None:
    """Publish one month of every model at a time and wait until its metrics are computed,
    as a live stream would arrive; the rules see each month complete."""
    records = {spec.model: list(generate(spec)) for spec in scenarios}
    months = scenarios[0].month_labels()
    store = Store.connect(settings)
    try:
        for i, month in enumerate(months):
            batch = [r for spec in scenarios for r in records[spec.model] if r["ref_date"].startswith(month)]
            await publish(batch, settings, per_message=20)
            for spec in scenarios:
                expected = {m: n for m, n in monthly_counts(spec).items() if m in months[:i + 1] and n}
                assert await wait_until_caught_up(store, expected, spec.model, spec.model_version, 60, worker)
        await asyncio.sleep(3 * settings.metrics_interval_s)  # the last transitions leave the outbox
    finally:
        await store.close()


def transitions(events: list[dict]) -> dict[tuple, list[tuple]]:
    """(model, rule, window, month) -> [(status, phase, severity), ...] in the order emitted."""
    by_alert = defaultdict(list)
    for e in events:
        by_alert[(e["model"], e["rule"], e["window"], e["month"])].append((e["status"], e["phase"], e["severity"]))
    return by_alert


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers-one-group"])
async def test_each_drifted_month_fires_provisionally_then_finally_once(settings, worker_process, workers):
    settings = settings.model_copy(update={"month_settle_s": 2.0})
    await load_references(settings, list(SCENARIOS.values()))
    procs = [worker_process(settings) for _ in range(workers)]
    await stream_month_by_month(settings, list(SCENARIOS.values()), procs[0])
    await asyncio.sleep(3.0)  # the last closed month settles: final verdicts
    assert all(p.poll() is None for p in procs), "a worker died"

    messages = await consume_all(settings, settings.alerts_topic, 10_000, timeout_s=8)
    events = [orjson.loads(m.value) for m in messages]
    assert len({e["event_id"] for e in events}) == len(events)
    by_alert = transitions(events)
    for alert, seq in by_alert.items():
        # Once each: at most one provisional event (a firing), then at most one final one.
        assert [phase for _, phase, _ in seq] in (["provisional"], ["final"], ["provisional", "final"]), (alert, seq)
        assert seq[0][0] == "firing", (alert, seq)
    # Every expected rule fires, finally, on the month window of the first drifted month; the
    # months before the drift stay silent.
    final_month_firing = {(model, rule, window) for (model, rule, window, month), seq in by_alert.items()
                          if month == "2024-04" and seq[-1][:2] == ("firing", "final")}
    assert {a for a in EXPECTED_ALERTS if a[2] == "month"} <= final_month_firing, by_alert
    assert not [a for a in by_alert if a[3] < "2024-04"], by_alert
    # The volume rule judges closed months only: final at once.
    assert by_alert[("drift-volume", "volume", "month", "2024-04")] == [("firing", "final", "warning")]
    assert [a for a in by_alert if a[0] == "drift-volume" and a[1] == "volume"] == [
        ("drift-volume", "volume", "month", "2024-04")]

    # The history in Redis and the `firing` states agree with the topic.
    store = Store.connect(settings)
    try:
        history = [orjson.loads(x) for x in await store.redis.lrange(store.history_key(), 0, -1)]
        assert sorted(e["event_id"] for e in history) == sorted(e["event_id"] for e in events)
        for spec in SCENARIOS.values():
            for field, state in (await store.alert_states(spec.model, "1")).items():
                last = by_alert[(spec.model, state["rule"], state["window"], state["month"])][-1]
                assert (state["status"], state["phase"]) == (("firing" if last[0] == "firing" else "ok"), last[1])
    finally:
        await store.close()


async def test_no_drift_for_a_year_fires_nothing(settings, worker_process):
    spec = Scenario(name="quiet", model="quiet", months=12, monthly_volume=5000)
    await load_references(settings, [spec])
    worker = worker_process()
    await publish(generate(spec), settings, per_message=50)
    store = Store.connect(settings)
    try:
        assert await wait_until_caught_up(store, monthly_counts(spec), spec.model, "1", 120, worker)
        await asyncio.sleep(3 * settings.metrics_interval_s)
        history = [orjson.loads(x) for x in await store.redis.lrange(store.history_key(), 0, -1)]
        assert history == []
        metrics = await store.metrics(spec.model, "1")
        assert len(metrics) == 12 and all(m["windows"]["month"]["ks_pvalue"] is not None for m in metrics.values())
    finally:
        await store.close()
    assert await consume_all(settings, settings.alerts_topic, 1, timeout_s=4) == []
