"""Alert rules through the real pipeline: each fires and resolves, once, and stays quiet without drift."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import orjson
import pytest

from monitor.demo import wait_until_caught_up
from monitor.reference import save_reference
from monitor.store import Store
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
EXPECTED_ALERTS = {  # (model, rule, window) that must fire and then resolve
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
    by_alert = defaultdict(list)
    for e in events:
        by_alert[(e["model"], e["rule"], e["window"])].append((e["status"], e["severity"], e["month"]))
    return by_alert


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers-one-group"])
async def test_each_rule_fires_then_resolves_exactly_once(settings, worker_process, workers):
    await load_references(settings, list(SCENARIOS.values()))
    procs = [worker_process() for _ in range(workers)]
    await stream_month_by_month(settings, list(SCENARIOS.values()), procs[0])
    assert all(p.poll() is None for p in procs), "a worker died"

    messages = await consume_all(settings, settings.alerts_topic, 10_000, timeout_s=8)
    events = [orjson.loads(m.value) for m in messages]
    assert len({e["event_id"] for e in events}) == len(events)
    by_alert = transitions(events)
    assert set(by_alert) == EXPECTED_ALERTS, by_alert
    for alert, seq in by_alert.items():
        assert seq[0][0] == "firing" and seq[-1][0] == "resolved", (alert, seq)
        # Exactly once: consecutive events of one alert always differ (a transition, never a repeat).
        states = [(status, severity if status == "firing" else None) for status, severity, _ in seq]
        assert all(a != b for a, b in zip(states, states[1:])), (alert, seq)
    # Firing for the drifted months, resolved by a later, healthy one.
    for (model, rule, window), seq in by_alert.items():
        first_fire = seq[0][2]
        assert first_fire >= "2024-04", (model, rule, window, seq)
        assert seq[-1][2] > first_fire
    assert by_alert[("drift-volume", "volume", "month")] == [("firing", "warning", "2024-04"),
                                                               ("resolved", "warning", "2024-05")]

    # The history in Redis and `firing` states agree with the topic.
    store = Store.connect(settings)
    try:
        history = [orjson.loads(x) for x in await store.redis.lrange(store.history_key(), 0, -1)]
        assert sorted(e["event_id"] for e in history) == sorted(e["event_id"] for e in events)
        for spec in SCENARIOS.values():
            assert all(s["status"] == "ok" for s in (await store.alert_states(spec.model, "1")).values())
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
