"""The dead-letter queue never fails on size: too large, it sends the message truncated."""

from __future__ import annotations

import aiokafka.errors

from monitor.worker.deadletter import SAMPLE_BYTES, DeadLetterQueue
from monitor.worker.pipeline import RawMessage


class Broker(list):
    """Takes records up to ``limit`` bytes, refuses larger ones as the real producer does."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    async def __call__(self, key, value, headers):
        if len(value) + len(key or b"") > self.limit:
            raise aiokafka.errors.MessageSizeTooLargeError()
        self.append((key, value, dict(headers)))


async def test_a_small_message_is_dead_lettered_whole_with_its_reason():
    broker = Broker(limit=10_000)
    await DeadLetterQueue(broker, max_bytes=5_000)(RawMessage("records", 2, 41, b"{bad", b"k"), "not JSON")
    [(key, value, headers)] = broker
    assert (key, value) == (b"k", b"{bad")
    assert headers == {"dlq.reason": b"not JSON", "dlq.topic": b"records", "dlq.partition": b"2", "dlq.offset": b"41"}


async def test_a_message_over_the_limit_is_dead_lettered_truncated():
    broker = Broker(limit=10_000)
    await DeadLetterQueue(broker, max_bytes=5_000)(RawMessage("records", 0, 7, b"x" * 1_200_000), "too large")
    [(_, value, headers)] = broker
    assert len(value) == SAMPLE_BYTES
    assert (headers["dlq.truncated"], headers["dlq.original_bytes"], headers["dlq.offset"]) == (b"true", b"1200000", b"7")


async def test_a_message_the_broker_refuses_as_too_large_is_sent_again_truncated():
    broker = Broker(limit=6_000)  # below the queue's own limit: a stricter broker
    await DeadLetterQueue(broker, max_bytes=50_000)(RawMessage("records", 0, 9, b"y" * 20_000), "bad")
    [(_, value, headers)] = broker
    assert len(value) == SAMPLE_BYTES and headers["dlq.truncated"] == b"true"
