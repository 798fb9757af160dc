"""Consumer lag of the worker's group: per partition, high watermark minus committed offset.

How each number is obtained, and why (measured on the local Tansu broker and valid on Kafka):

* the **committed offset** is the worker group's OffsetFetch answer (the group is faust's app id:
  ``<consumer_group>.<state epoch>``, the epoch read from Redis ``{prefix}:epoch``; see
  monitor/worker/app.py), read by a consumer that joins no group (manual ``assign``, no commit), so
  the probe never triggers a rebalance of the workers;
* the **high watermark** is the one a Fetch response carries. ``end_offsets()`` /
  ``seek_to_end()`` (ListOffsets "latest") are *not* used: the local Tansu broker answers
  ListOffsets with the first offset of the partition's last record batch + 1, not the end of the
  log (e.g. 1 after one batch of 100 records), while its Fetch responses carry the right high
  watermark. So the probe seeks each partition to the committed offset (or the log start) and
  fetches once; the fetch returns at most ``max_partition_fetch_bytes`` and the high watermark.

Faust commits every few seconds (``broker_commit_every``), so the lag can read a few seconds of
records higher than what Redis already holds; it is never lower than the true lag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass

from monitor.settings import Settings

log = logging.getLogger("monitor.api.lag")


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    high_watermark: int
    committed: int | None  # None: the group never committed on this partition
    lag: int

    def to_dict(self) -> dict:
        return asdict(self)


async def worker_group(store) -> str:
    """The worker's consumer group: ``<consumer_group>.<epoch>`` once a worker created the state epoch."""
    epoch = await store.current_epoch()
    return f"{store.settings.consumer_group}.{epoch}" if epoch else store.settings.consumer_group


async def measure_lag(settings: Settings, group: str | None = None, topics: tuple[str, ...] | None = None,
                      timeout_s: float = 5.0) -> list[PartitionLag]:
    """Lag of the consumer ``group`` (default ``settings.consumer_group``) on each partition of
    ``topics`` (default: the records topic)."""
    from aiokafka import TopicPartition

    from monitor.connect import kafka_consumer

    topics = topics or (settings.records_topic,)
    deadline = time.monotonic() + timeout_s
    consumer = kafka_consumer(
        settings, group_id=group or settings.consumer_group, enable_auto_commit=False,
        max_partition_fetch_bytes=4096, fetch_max_bytes=65536, fetch_max_wait_ms=20,
        request_timeout_ms=int(timeout_s * 1000) + 1000, client_id="credit-monitor-lag-probe")
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        await asyncio.wait_for(consumer.topics(), max(deadline - time.monotonic(), 0.1))
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        committed = {}
        for tp in tps:
            committed[tp] = await asyncio.wait_for(consumer.committed(tp), max(deadline - time.monotonic(), 0.1))
            if committed[tp] is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed[tp])
        start = {tp: committed[tp] if committed[tp] is not None else await consumer.position(tp) for tp in tps}
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                missing = [f"{tp.topic}:{tp.partition}" for tp in tps if consumer.highwater(tp) is None]
                raise TimeoutError(f"no fetch answer within {timeout_s} s for {', '.join(missing)}")
            await consumer.getmany(timeout_ms=50)
        return [PartitionLag(tp.topic, tp.partition, consumer.highwater(tp), committed[tp],
                             max(consumer.highwater(tp) - start[tp], 0)) for tp in tps]
    finally:
        await consumer.stop()


class LagProbe:
    """``measure_lag`` at most once per ``ttl_s``; concurrent callers share one measurement.

    ``get(group)`` returns (partitions, error): partitions is None when the last measurement failed.
    """

    def __init__(self, settings: Settings, ttl_s: float = 5.0, timeout_s: float = 5.0):
        self.settings = settings
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._at = -1e18
        self._group: str | None = None
        self._value: list[PartitionLag] | None = None
        self._error: str | None = None

    async def get(self, group: str) -> tuple[list[PartitionLag] | None, str | None]:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl_s or group != self._group:
                self._group = group
                try:
                    self._value, self._error = await measure_lag(self.settings, group, timeout_s=self.timeout_s), None
                except Exception as exc:  # the exporter reports lag_up 0 instead of failing the scrape
                    log.warning("consumer lag not measured: %s: %s", type(exc).__name__, exc)
                    self._value, self._error = None, f"{type(exc).__name__}: {exc}"
                self._at = time.monotonic()
            return self._value, self._error
