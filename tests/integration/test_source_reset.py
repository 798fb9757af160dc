"""A source log that lost its records (broker restarted on memory storage, topic re-created) is a
new lifetime of the partition: its records are counted, not skipped as already applied.

And a plain redelivery (restart, lost group offsets) is verified as the same log and skipped.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from monitor.ops import faults
from monitor.ops import infra
from monitor.ops.processes import stop_process
from monitor.state import Store
from producers.publish import publish

pytestmark = pytest.mark.integration

MODEL = "reset"


def month_records(month: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"record_id": f"{month}-{i}", "model": MODEL, "ref_date": f"{month}-{1 + i % 28:02d}",
             "score": round(rng.random(), 4), "target": rng.choice([0, 1, None])} for i in range(n)]


async def month_counts(settings) -> dict[str, int]:
    store = Store.connect(settings)
    try:
        return {m: (await store.counts(MODEL, "1", m))["n"] for m in await store.months(MODEL, "1")}
    finally:
        await store.close()


async def worker_counters(settings) -> dict[str, int]:
    store = Store.connect(settings)
    try:
        return await store.worker_counters()
    finally:
        await store.close()


def wait_for_counts(settings, expected: dict[str, int], timeout_s: float = 90) -> dict[str, int]:
    box: dict = {}

    def reached() -> bool:
        box["counts"] = asyncio.run(month_counts(settings))
        return box["counts"] == expected

    try:
        faults.wait_for(reached, timeout_s, f"counts {expected}", poll_s=0.5)
    except TimeoutError:
        pytest.fail(f"counts {box['counts']} never reached {expected}")
    return box["counts"]


async def alert_events(settings, timeout_s: float = 30) -> list[dict]:
    """Every event on the alerts topic (read until ``source_reset`` ones stop coming)."""
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"alerts-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                                enable_auto_commit=False, session_timeout_ms=3000, heartbeat_interval_ms=300)
    await consumer.start()
    events: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                events += [orjson.loads(m.value) for m in msgs]
            if any(e["rule"] == "source_reset" for e in events):
                break
    finally:
        await consumer.stop()
    return events


def test_records_of_a_log_the_broker_lost_are_counted_and_the_reset_is_reported(tmp_path):
    with faults.servers("tansu", tmp_path) as settings:
        workers = faults.Workers(settings, tmp_path)
        try:
            workers.start()
            asyncio.run(publish(month_records("2024-01", 5000, seed=1), settings))
            wait_for_counts(settings, {"2024-01": 5000})

            # `monitor infra down && monitor infra up`, the worker left running: the broker's memory
            # storage loses every topic, record and group offset; Redis comes back from its AOF.
            for line in infra.down(settings) + infra.up(settings):
                print(line)
            asyncio.run(publish(month_records("2024-02", 5000, seed=2), settings))

            counts = wait_for_counts(settings, {"2024-01": 5000, "2024-02": 5000})
            counters = asyncio.run(worker_counters(settings))
            print("counts", counts, "worker counters", counters)
            # Each of the 4 partitions held a stored offset of the lost log: one reset each.
            assert counters.get("source_resets") == settings.partitions
            events = [e for e in asyncio.run(alert_events(settings)) if e["rule"] == "source_reset"]
            assert events and all(e["model"] == MODEL and e["status"] == "firing" for e in events)
        finally:
            workers.stop_all()


async def recreate_records_topic(settings) -> None:
    """Delete the records topic and create it again (empty, offsets from 0), as an admin would."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.records_topic])
    finally:
        await admin.close()
    await infra.create_topics(settings)


def test_records_of_a_re_created_topic_are_counted_even_past_the_old_offsets(settings, worker_process):
    """The topic is re-created while the workers are stopped (a redeployment) and its new log grows
    past the stored offsets before they start: only the message at a stored offset (another one)
    tells it is a new log. The group's committed offsets went with the topic (Tansu, as Kafka)."""
    first = worker_process()
    asyncio.run(publish(month_records("2024-01", 1000, seed=1), settings))
    wait_for_counts(settings, {"2024-01": 1000})
    stop_process(first)
    asyncio.run(recreate_records_topic(settings))
    asyncio.run(publish(month_records("2024-02", 4000, seed=2), settings))
    worker_process()
    counts = wait_for_counts(settings, {"2024-01": 1000, "2024-02": 4000})
    counters = asyncio.run(worker_counters(settings))
    print("counts", counts, "worker counters", counters)
    assert counters.get("source_resets") == settings.partitions


def test_a_topic_re_created_under_a_running_worker_is_read_again_from_its_start(settings, worker_process):
    """The worker's consumer sits past the new log's end (Tansu answers such a fetch with no
    records and a lower high watermark, Kafka with "out of range"): it rewinds to the start."""
    worker_process()
    asyncio.run(publish(month_records("2024-01", 1000, seed=1), settings))
    wait_for_counts(settings, {"2024-01": 1000})
    asyncio.run(recreate_records_topic(settings))
    time.sleep(1)  # the consumer sees the empty log before the producers are back
    asyncio.run(publish(month_records("2024-02", 4000, seed=2), settings))
    counts = wait_for_counts(settings, {"2024-01": 1000, "2024-02": 4000})
    counters = asyncio.run(worker_counters(settings))
    print("counts", counts, "worker counters", counters)
    assert counters.get("source_resets") == settings.partitions


def test_a_redelivery_of_the_same_log_is_verified_and_skipped_not_reset(tmp_path):
    with faults.servers("tansu", tmp_path) as settings:
        workers = faults.Workers(settings, tmp_path)
        try:
            first = workers.start()
            asyncio.run(publish(month_records("2024-01", 5000, seed=1), settings))
            wait_for_counts(settings, {"2024-01": 5000})
            workers.kill(first)
            # A new consumer group: no committed offsets, every record is delivered again.
            again = faults.Workers(settings.model_copy(update={"consumer_group": f"again-{uuid.uuid4().hex[:6]}"}),
                                   tmp_path / "again")
            (tmp_path / "again").mkdir()
            workers.procs += [again.start()]
            asyncio.run(publish(month_records("2024-02", 2000, seed=2), settings))
            counts = wait_for_counts(settings, {"2024-01": 5000, "2024-02": 2000})
            counters = asyncio.run(worker_counters(settings))
            print("counts", counts, "worker counters", counters)
            assert counters.get("source_resets", 0) == 0
            assert counters.get("source_checks", 0) >= 1  # the skipped records were checked against the log
            assert counters["duplicates_skipped"] >= 5000
        finally:
            workers.stop_all()


def raw(offset: int, month: str, i: int) -> "RawMessage":
    from monitor.worker.pipeline import RawMessage

    record = {"record_id": f"{month}-{i}", "model": MODEL, "ref_date": f"{month}-10", "score": 0.5, "target": 1}
    return RawMessage("records", 0, offset, orjson.dumps(record), key=str(i).encode())


async def test_a_batch_holding_another_message_at_the_stored_offset_starts_a_new_lifetime(settings):
    """The check needs no broker when the batch holds the message at the stored offset."""
    from monitor.worker.pipeline import BatchProcessor
    from monitor.worker.sources import fingerprint

    store = Store.connect(settings)
    dead = []

    async def dead_letter(msg, reason):
        dead.append(reason)

    try:
        old = [raw(o, "2024-01", o) for o in range(10)]
        await BatchProcessor(store, dead_letter, "e1").process(old)
        base = store.base(MODEL, "1")
        assert await store.redis.hget(f"{base}:fingerprints", "records:0") == fingerprint(b"9", old[9].value).encode()
        # A restarted worker gets the same log again: skipped, nothing reset.
        again = await BatchProcessor(store, dead_letter, "e1").process(old[5:])
        assert (again.records, again.duplicates_skipped) == (0, 5)
        # A new log: offsets 0..11, other messages.
        new = [raw(o, "2024-02", 100 + o) for o in range(12)]
        result = await BatchProcessor(store, dead_letter, "e1").process(new)
        assert (result.records, result.duplicates_skipped) == (12, 0)
        assert await month_counts(settings) == {"2024-01": 10, "2024-02": 12}
        counters = await store.worker_counters()
        assert (counters["source_checks"], counters["source_resets"]) == (2, 1)
        [event] = [orjson.loads(e) for e in await store.redis.lrange(f"{base}:outbox", 0, -1)]
        assert (event["rule"], event["window"], event["value"], event["month"]) == ("source_reset", "records:0", 9, "2024-02")
        assert orjson.loads((await store.redis.lrange(store.history_key(), 0, 0))[0])["event_id"] == event["event_id"]
    finally:
        await store.close()


async def test_a_reset_forgets_a_stored_offset_only_if_no_one_moved_it(settings):
    from monitor.worker.pipeline import BatchProcessor

    store = Store.connect(settings)
    try:
        async def dead_letter(msg, reason):
            raise AssertionError(reason)

        await BatchProcessor(store, dead_letter, "e1").process([raw(o, "2024-01", o) for o in range(5)])
        held = await store.stored_fingerprint(MODEL, "1", "records:0")
        assert not await store.reset_source(MODEL, "1", "records:0", 3, held, b"{}")      # moved on to 4
        assert not await store.reset_source(MODEL, "1", "records:0", 4, "00000000", b"{}")  # another message
        assert await store.reset_source(MODEL, "1", "records:0", 4, held, b"{}")
        assert await store.stored_offsets(MODEL, "1", ["records:0"]) == ("e1", {"records:0": None})
        assert await store.stored_fingerprint(MODEL, "1", "records:0") is None
    finally:
        await store.close()
