"""Does a stored offset still belong to the partition's log? (source reset detection)

The offsets in Redis say "every message up to here is applied". They are right only for the log
they were read from: a broker that lost its log (the local Tansu keeps topics in memory) or a
topic deleted and re-created starts the partition's offsets again from 0, and its new records
would be skipped as "already applied". Log end alone cannot tell: a new log may already have
grown past the stored offset. So each stored offset keeps a fingerprint of the message applied at
that offset (``cm:{m:v}:fingerprints``), and before records are skipped the message at the stored
offset is read back from the broker and compared (:class:`LogProbe`).

Skips only happen on redelivery (restart, rebalance, a group that lost its offsets, a new log), so
steady state costs nothing: the check runs once per (model, partition, stored offset) until the
partitions are reassigned, and not at all when the batch holds the message itself.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from typing import Literal

from monitor.settings import Settings

log = logging.getLogger("monitor.worker.sources")

PROBE_TIMEOUT_S = 10.0
"""How long one read of the message at a stored offset may take before it is retried."""


def fingerprint(key: bytes | None, value: bytes | None) -> str:
    """A short fingerprint of a message: crc32 of its key's length, key and value, 8 hex digits.

    The key's length makes ``("ab", "c")`` and ``("a", "bc")`` differ.

    >>> fingerprint(b"k", b'{"score": 0.3}'), fingerprint(None, b"")
    ('46aaac39', '2144df1c')
    >>> fingerprint(b"ab", b"c") != fingerprint(b"a", b"bc")
    True
    """
    key = key or b""
    crc = zlib.crc32(len(key).to_bytes(4, "big"))
    return f"{zlib.crc32(value or b'', zlib.crc32(key, crc)):08x}"


@dataclass(frozen=True)
class Probe:
    """What the log holds at an offset: a message (``found``, with its fingerprint), nothing yet
    (``beyond_end``: the offset is at or past the high watermark), or nothing any more
    (``below_start``: retention deleted it)."""

    state: Literal["found", "beyond_end", "below_start"]
    fingerprint: str | None = None
    high_watermark: int | None = None


def belongs(stored_fingerprint: str | None, probe: Probe) -> bool:
    """Whether a stored offset (and the fingerprint of the message applied there) belongs to the
    log as probed. An offset whose message retention deleted is taken as belonging (nothing says
    otherwise, and a new log's records would be at or above its start); so is one stored before
    fingerprints were kept, when the message is there.

    >>> belongs("aa", Probe("found", "aa")), belongs("aa", Probe("found", "bb")), belongs(None, Probe("found", "bb"))
    (True, False, True)
    >>> belongs("aa", Probe("beyond_end", high_watermark=10)), belongs("aa", Probe("below_start"))
    (False, True)
    """
    if probe.state == "beyond_end":
        return False
    if probe.state == "below_start" or stored_fingerprint is None:
        return True
    return probe.fingerprint == stored_fingerprint


class LogProbe:
    """Reads single messages by offset with a side consumer (no group: assign and seek)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._consumer = None
        self._lock = asyncio.Lock()

    async def _started(self):
        from monitor.connect import kafka_consumer

        if self._consumer is None:
            consumer = kafka_consumer(self.settings, group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="none", max_partition_fetch_bytes=8 * 1024 * 1024,
                                      fetch_max_wait_ms=100)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def message_at(self, topic: str, partition: int, offset: int) -> Probe:
        """The log's message at ``offset``, retried until the broker answers.

        The end of the log is the high watermark of a fetch (``end_offsets()`` is wrong on some
        brokers, Tansu among them); a fetch out of range is told apart from retention by the log
        start. A message read past ``offset`` (none at it: a gap) counts as another message.
        """
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        tp = TopicPartition(topic, partition)
        delay = 0.2
        async with self._lock:
            while True:
                try:
                    probe = await asyncio.wait_for(self._probe(tp, offset), PROBE_TIMEOUT_S)
                    log.info("%s:%s@%s holds %s", topic, partition, offset, probe)
                    return probe
                except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                    log.warning("reading %s:%s@%s to check the stored offset failed (%r); retrying in %.1f s",
                                topic, partition, offset, exc, delay)
                    await self.close()
                    await asyncio.sleep(delay)
                    delay = min(5.0, delay * 2)

    async def _probe(self, tp, offset: int) -> Probe:
        from aiokafka.errors import OffsetOutOfRangeError

        consumer = await self._started()
        consumer.assign([tp])
        consumer.seek(tp, offset)
        try:
            return await self._read(consumer, tp, offset)
        except OffsetOutOfRangeError:
            start = (await consumer.beginning_offsets([tp]))[tp]
            return Probe("below_start") if offset < start else Probe("beyond_end")

    @staticmethod
    async def _read(consumer, tp, offset: int) -> Probe:
        while True:
            fetched = await consumer.getmany(tp, timeout_ms=500, max_records=1)
            messages = fetched.get(tp) or []
            if messages:
                first = messages[0]
                found = fingerprint(first.key, first.value) if first.offset == offset else "gap"
                return Probe("found", found, consumer.highwater(tp))
            high = consumer.highwater(tp)
            if high is not None and high <= offset:
                return Probe("beyond_end", high_watermark=high)

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                await asyncio.wait_for(consumer.stop(), PROBE_TIMEOUT_S)
            except Exception as exc:  # a consumer that never connected: nothing to release
                log.debug("closing the probe consumer: %r", exc)


def source_reset_event(model: str, version: str, offset_field: str, stored: int, probe: Probe, month: str,
                       n: int):
    """The ``source_reset`` alert event: the partition's stored offset no longer belongs to its log.

    A one-shot event (``firing``, never ``resolved``, no alert state): nothing can be judged ok
    again; someone must decide about the records of the lost log (README, "Nothing lost").
    ``value`` is the stored offset, ``threshold`` the log's high watermark when read (else the
    stored offset), ``n`` the records of the new log in the batch that found it.
    """
    import datetime as dt
    import uuid

    from monitor.alerts.lifecycle import AlertEvent

    why = (f"the log ends at {probe.high_watermark}" if probe.state == "beyond_end"
           else "the message at that offset is another one")
    high = probe.high_watermark if probe.high_watermark is not None else stored
    return AlertEvent(
        alert_id=f"{model}:{version}:{offset_field}:source_reset", event_id=uuid.uuid4().hex, status="firing",
        severity="warning", rule="source_reset", model=model, model_version=version, window=offset_field,
        month=month, value=float(stored), threshold=float(high), n=n,
        message=(f"{offset_field} was applied up to offset {stored} but {why}: the topic was re-created or the "
                 f"broker lost its log. Its new records are counted from the log's start; records of the old "
                 f"log published again would be counted twice."),
        emitted_at=dt.datetime.now(dt.timezone.utc))
