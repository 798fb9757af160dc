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


def message_key(line: bytes) -> bytes | None:
    """The Kafka key of a raw message: the record's ``record_id`` when the line is one JSON record.

    >>> message_key(b'{"record_id": "r1", "score": 0.3}'), message_key(b'[{"record_id": "r1"}]'), message_key(b'x')
    (b'r1', None, None)
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict) and value.get("record_id") is not None:
        return str(value["record_id"]).encode()
    return None


async def publish_lines(lines: Iterable[bytes], settings: Settings, *, topic: str | None = None) -> int:
    """Publish each non-blank line as one message, bytes as they are (like ``kcat -P``).

    Nothing is validated here: the worker dead-letters an invalid message with its reason, as for any
    other client. Returns the number of messages, all on the broker when it returns.
    """
    producer = kafka_producer(settings)
    await producer.start()
    sent = 0
    try:
        pending = []
        for line in lines:
            line = line.strip()
            if line:
                pending.append(await producer.send(topic or settings.records_topic, value=line, key=message_key(line)))
                sent += 1
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    return sent
