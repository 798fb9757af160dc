"""The worker's agents, kept thin: decode -> store -> stats -> alerts.

``fold_records`` folds batches of records into Redis (monitor.pipeline); a timer recomputes the
metrics of changed months and publishes alert transitions (monitor.engine).
"""

from __future__ import annotations

import logging

import faust
import orjson

from monitor.engine import MetricsUpdater
from monitor.pipeline import BatchProcessor, RawMessage
from monitor.settings import Settings
from monitor.store import Store

log = logging.getLogger("monitor.worker")


class Worker:
    """Per-process services, created inside the event loop on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: Store | None = None
        self.processor: BatchProcessor | None = None
        self.updater: MetricsUpdater | None = None

    def ensure_started(self, dead_letter) -> None:
        if self._store is None:
            self._store = Store.connect(self.settings)
            self.processor = BatchProcessor(self._store, dead_letter)
            self.updater = MetricsUpdater(self._store, self.settings)


def register(app: faust.App, settings: Settings) -> None:
    raw = {"value_serializer": "raw", "key_serializer": "raw"}
    records_topic = app.topic(settings.records_topic, **raw)
    dead_letter_topic = app.topic(settings.dead_letter_topic, **raw)
    alerts_topic = app.topic(settings.alerts_topic, **raw)
    worker = Worker(settings)

    async def dead_letter(msg: RawMessage, reason: str) -> None:
        headers = [("dlq.reason", reason.encode()), ("dlq.topic", msg.topic.encode()),
                   ("dlq.partition", str(msg.partition).encode()), ("dlq.offset", str(msg.offset).encode())]
        await dead_letter_topic.send(key=msg.key, value=msg.value or b"", headers=headers)
        log.warning("dead-lettered %s:%s@%s: %s", msg.topic, msg.partition, msg.offset, reason)

    @app.agent(records_topic, name="fold_records")
    async def fold_records(stream):
        worker.ensure_started(dead_letter)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            await worker.processor.process([
                RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.value, e.message.key)
                for e in events])

    async def publish_alert(raw_event: bytes) -> None:
        event = orjson.loads(raw_event)
        delivery = await alerts_topic.send(key=event["alert_id"].encode(), value=raw_event)
        await delivery  # on the broker before the outbox lets it go
        log.info("alert %s %s %s (%s)", event["status"], event["severity"], event["alert_id"], event["month"])

    @app.timer(settings.metrics_interval_s)
    async def recompute_metrics():
        worker.ensure_started(dead_letter)
        await worker.updater.run_once(publish_alert)

    @app.on_partitions_revoked.connect
    async def on_revoked(app, revoked, **kwargs):
        if worker.processor is not None:
            worker.processor.forget_offsets()
