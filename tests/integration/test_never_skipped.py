"""A batch is applied or dead-lettered, never skipped: Redis busy, a failing call, an oversized message.

Real redis-server (and the real broker for the dead-letter size): no mock stands in.
"""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
import redis

from monitor.worker.pipeline import BatchProcessor, RawMessage
from monitor.state import Store

pytestmark = pytest.mark.integration

SPIN_LUA = """
local stop = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
while tonumber(redis.call('TIME')[1]) < stop do end
return 1
"""
# A read-only script that runs ARGV[1] seconds: past busy-reply-threshold every other client is
# answered BUSY until it ends (as one long outcome call did before outcome lookups were O(1)).


def record_message(offset: int, model: str = "busy") -> RawMessage:
    record = {"record_id": f"r{offset}", "model": model, "ref_date": "2024-05-10", "score": 0.5, "target": 1}
    return RawMessage("records", 0, offset, orjson.dumps(record))


class DeadLetters(list):
    async def __call__(self, msg, reason: str) -> None:
        self.append((msg.offset, reason))


@pytest.fixture
def busy_redis(settings):
    """Makes Redis busy: a script of another client runs 2 s, answering BUSY after 50 ms."""
    client = redis.Redis.from_url(settings.redis_url)
    threshold = client.config_get("busy-reply-threshold")["busy-reply-threshold"]
    client.config_set("busy-reply-threshold", 50)

    threads = []

    def spin() -> None:
        thread = threading.Thread(target=lambda: redis.Redis.from_url(settings.redis_url).eval(SPIN_LUA, 0, 2))
        thread.start()
        threads.append(thread)
        time.sleep(0.3)  # the script runs and Redis answers BUSY from now on

    yield spin
    for thread in threads:
        thread.join()
    client.config_set("busy-reply-threshold", threshold)
    client.close()


async def test_a_batch_waits_while_redis_answers_busy_and_is_applied(settings, busy_redis):
    store = Store.connect(settings)
    try:
        processor = BatchProcessor(store, DeadLetters(), "e1")
        await processor.process([record_message(0)])  # the model exists: the next batch is a plain write
        await asyncio.to_thread(busy_redis)
        started = time.monotonic()
        result = await processor.process([record_message(i) for i in range(1, 101)])
        waited = time.monotonic() - started
        assert result.records == 100
        assert (await store.counts("busy", "1", "2024-05"))["n"] == 101
        print(f"batch waited {waited:.2f} s while Redis was busy")
    finally:
        await store.close()


@pytest.fixture
def slowlog(settings):
    """Redis's SLOWLOG recording every command while the test runs: [(command, microseconds)]."""
    client = redis.Redis.from_url(settings.redis_url)
    before = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()

    def entries() -> list[tuple[str, int]]:
        return [(e["command"].split(b" ")[0].decode().upper(), e["duration"]) for e in client.slowlog_get(100_000)]

    yield entries
    client.config_set("slowlog-log-slower-than", before["slowlog-log-slower-than"])
    client.config_set("slowlog-max-len", before["slowlog-max-len"])
    client.close()


async def test_a_large_batch_is_applied_in_bounded_calls_each_moving_its_offsets(settings, slowlog):
    from monitor.worker.pipeline import MAX_RECORDS_PER_CALL

    store = Store.connect(settings)
    try:
        per_message = 100
        messages = []
        for offset in range(500):  # 50,000 records of one model over two partitions and three months
            records = [{"record_id": f"r{offset}-{i}", "model": "big", "ref_date": f"2024-0{1 + i % 3}-10",
                        "score": (offset * per_message + i) % 1000 / 1000, "target": i % 2} for i in range(per_message)]
            messages.append(RawMessage("records", offset % 2, offset // 2, orjson.dumps(records)))
        processor = BatchProcessor(store, DeadLetters(), "e1")
        result = await processor.process(messages)
        calls = [duration for command, duration in slowlog() if command in ("EVALSHA", "EVAL")]
        assert result.records == 50_000
        assert sum([(await store.counts("big", "1", m))["n"] for m in ("2024-01", "2024-02", "2024-03")]) == 50_000
        assert len(calls) == -(-50_000 // MAX_RECORDS_PER_CALL)
        print(f"{len(calls)} script calls, the longest {max(calls) / 1000:.1f} ms")
        # Replayed whole (a restart), nothing is counted twice: the offsets moved with every call.
        again = await BatchProcessor(store, DeadLetters(), "e1").process(messages)
        assert (again.records, again.duplicates_skipped) == (0, 50_000)
    finally:
        await store.close()
