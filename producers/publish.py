"""Publish records to the records topic with aiokafka: batching, rate control, progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from itertools import islice

import orjson
from monitor.connect import kafka_producer
from monitor.settings import Settings

__all__ = ["PUBLISH_CONCURRENCY", "kafka_producer", "publish"]  # kafka_producer: monitor.connect's

PUBLISH_CONCURRENCY = 512
"""Sends in flight at once: enough to fill aiokafka's batches, bounded so memory stays flat."""


async def publish(records: Iterable[dict], settings: Settings, *, topic: str | None = None,
                  per_message: int = 1, rate: float | None = None,
                  on_progress: Callable[[int], None] | None = None) -> int:
    """Publish records, ``per_message`` per Kafka message (a JSON array when > 1).

    ``rate`` caps records per second. Returns the number of records published; every send is
    awaited before returning, so a returned count is on the broker.
    """
    topic = topic or settings.records_topic
    producer = kafka_producer(settings)
    await producer.start()
    sent = 0
    started = time.monotonic()
    pending: set[asyncio.Future] = set()
    iterator = iter(records)
    try:
        while chunk := list(islice(iterator, per_message)):
            value = orjson.dumps(chunk[0] if per_message == 1 else chunk, option=orjson.OPT_SERIALIZE_NUMPY)
            key = str(chunk[0].get("record_id", sent)).encode()
            pending.add(await producer.send(topic, value=value, key=key))
            sent += len(chunk)
            if len(pending) >= PUBLISH_CONCURRENCY:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    fut.result()
            if on_progress:
                on_progress(len(chunk))
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        for fut in asyncio.as_completed(pending):
            await fut
    finally:
        await producer.stop()
    return sent
