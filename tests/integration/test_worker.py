"""The real data path: aiokafka -> broker -> faust worker -> Redis -> metrics -> alerts topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from monitor.ops.processes import wait_until_caught_up
from monitor.ops.reference import save_reference
from monitor.state import Store
from monitor.stats import LabelledHistograms, ScoreHistogram, compute_metrics
from producers.publish import kafka_producer, publish
from producers.synthetic import SCENARIOS, generate, monthly_counts, reference_frame

pytestmark = pytest.mark.integration

SCENARIO = replace(SCENARIOS["demo"], months=4, monthly_volume=1500, drift_start=2, name="test-drift")

MALFORMED = [
    b"not json at all",
    b"\xff\xfe\x00garbage",
    b'{"record_id": "x1", "model": "synthetic", "ref_date": "2024-01-05", "score": 1.5}',
    b'{"record_id": "x2", "model": "synthetic", "ref_date": "2024-01-05", "score": NaN}',
    b'{"record_id": "x3", "model": "synthetic", "score": 0.3}',
    b'{"record_id": "x4", "model": "synthetic", "ref_date": "2024-13-45", "score": 0.3}',
    b'{"record_id": "x5", "model": "synthetic", "ref_date": "2024-01-05", "score": 0.3, "target": 2}',
    b'[{"record_id": "x6", "model": "synthetic", "ref_date": "2024-01-05", "score": 0.3}, 7]',
    b"[]",
    b"42",
]


async def consume_all(settings, topic: str, expected: int, timeout_s: float = 60.0):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=f"reader-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=3000, heartbeat_interval_ms=300)
    await consumer.start()
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for msgs in batches.values():
                out += msgs
    finally:
        await consumer.stop()
    return out


async def test_worker_folds_records_exactly_and_alerts(settings, worker_process):
    ref = reference_frame(SCENARIO, n=5000)
    await save_reference(settings, SCENARIO.model, SCENARIO.model_version, ref["score"].to_numpy(),
                         ref["TARGET"].to_numpy(), source="test")
    worker = worker_process()
    records = list(generate(SCENARIO))
    # Half the records one per message, half in JSON arrays of 50: both forms are the contract.
    half = len(records) // 2
    await publish(records[:half], settings)
    await publish(records[half:], settings, per_message=50)
    producer = kafka_producer(settings)
    await producer.start()
    try:
        for i, bad in enumerate(MALFORMED):
            await producer.send_and_wait(settings.records_topic, value=bad, key=f"bad-{i}".encode())
    finally:
        await producer.stop()

    store = Store.connect(settings)
    try:
        expected = monthly_counts(SCENARIO)
        assert await wait_until_caught_up(store, expected, SCENARIO.model, SCENARIO.model_version, 90, worker)

        # Histograms in Redis are exactly the published scores, binned, per label.
        months = sorted(expected)
        stored = await store.histograms(SCENARIO.model, SCENARIO.model_version, months)
        for month in months:
            mine = [r for r in records if r["ref_date"].startswith(month)]
            want = LabelledHistograms(
                ScoreHistogram.from_scores([r["score"] for r in mine if r["target"] == 1]),
                ScoreHistogram.from_scores([r["score"] for r in mine if r["target"] == 0]),
                ScoreHistogram.from_scores([r["score"] for r in mine if r["target"] is None]))
            assert stored[month].pos == want.pos and stored[month].neg == want.neg
            assert stored[month].unlabeled == want.unlabeled

        # Metrics in Redis are the engine's on those histograms.
        reference, _ = await store.reference(SCENARIO.model, SCENARIO.model_version)
        metrics = await store.metrics(SCENARIO.model, SCENARIO.model_version)
        for month in months:
            assert metrics[month]["windows"]["month"] == compute_metrics(stored[month], reference).to_dict()
        cumulative = sum((stored[m] for m in months[1:]), stored[months[0]].copy())
        assert metrics[months[-1]]["windows"]["cumulative"] == compute_metrics(cumulative, reference).to_dict()

        counters = await store.worker_counters()
        assert counters["records"] == len(records)
        assert counters["dead_lettered"] == len(MALFORMED)
    finally:
        await store.close()

    dead = await consume_all(settings, settings.dead_letter_topic, len(MALFORMED))
    assert sorted(m.value for m in dead) == sorted(v for v in MALFORMED)
    for msg in dead:
        headers = dict(msg.headers)
        assert headers["dlq.reason"] and headers["dlq.topic"] == settings.records_topic.encode()
        assert int(headers["dlq.offset"]) >= 0

    # Drift from month 2: the alerts topic carries firing events for the drifted months only.
    await asyncio.sleep(2)
    messages = await consume_all(settings, settings.alerts_topic, 1, timeout_s=20)
    alerts = [orjson.loads(m.value) for m in messages]
    firing_months = {a["month"] for a in alerts if a["status"] == "firing"}
    assert firing_months and firing_months <= set(months[SCENARIO.drift_start:])
    assert [m.key.decode() for m in messages] == [a["alert_id"] for a in alerts]


async def test_worker_restart_counts_each_record_once(settings, worker_process):
    """A restarted worker re-reads uncommitted messages; the offsets in Redis make them no-ops."""
    spec = replace(SCENARIOS["baseline"], months=2, monthly_volume=2000, name="restart")
    records = list(generate(spec))
    worker = worker_process()
    await publish(records[:2000], settings)
    store = Store.connect(settings)
    try:
        deadline = time.monotonic() + 60
        while (await store.counts(spec.model, spec.model_version, "2024-01"))["n"] < 2000:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        worker.kill()  # SIGKILL: no commit, no goodbye
        worker.wait()
        worker_process()
        await publish(records[2000:], settings)
        assert await wait_until_caught_up(store, monthly_counts(spec), spec.model, spec.model_version, 90)
        counts = {m: (await store.counts(spec.model, spec.model_version, m))["n"] for m in monthly_counts(spec)}
        assert counts == monthly_counts(spec)
    finally:
        await store.close()


def test_reference_histogram_round_trip(settings):
    scores = np.random.default_rng(3).beta(2, 5, 3000)

    async def go():
        await save_reference(settings, "ref-model", "2", scores, None, source="test")
        store = Store.connect(settings)
        try:
            return await store.reference("ref-model", "2")
        finally:
            await store.close()

    hist, meta = asyncio.run(go())
    assert hist == ScoreHistogram.from_scores(scores)
    assert meta["n"] == "3000" and "auc" not in meta
