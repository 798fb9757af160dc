"""The worker's agents, kept thin: decode -> store -> stats -> alerts.

``fold_records`` folds batches of records into Redis (monitor.worker.pipeline), ``join_outcomes`` moves
delayed labels onto them (monitor.worker.outcomes); a task recomputes the metrics of changed months,
on a timer and at once when a month reaches a checkpoint, and publishes alert transitions
(monitor.worker.engine). When Redis loses
the state the worker wrote, the worker restarts itself in place (exec) so that it rebuilds
the state from the topic (see monitor.state.state_epoch).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from monitor.errors import StateLost
from monitor.retry import apply_or_stop, exit_unapplied, is_transient, retry_forever
from monitor.settings import Settings
from monitor.state import Store
from monitor.worker.deadletter import DeadLetterQueue
from monitor.worker.engine import MetricsUpdater
from monitor.worker.looplag import GC_FREEZE_EVERY_S, GcPauses, LoopLagProbe, SurvivorFreezer, favour_the_loop
from monitor.worker.memory import release_free_memory
from monitor.worker.outcomes import OutcomeProcessor
from monitor.worker.pipeline import BatchProcessor

if TYPE_CHECKING:
    from monitor.worker.transport import MonitorApp

log = logging.getLogger("monitor.worker")


class Worker:
    """Per-process services, created inside the event loop on first use."""

    def __init__(self, settings: Settings, epoch: str):
        self.settings = settings
        self.epoch = epoch
        self.store: Store | None = None
        self.processor: BatchProcessor | None = None
        self.outcomes: OutcomeProcessor | None = None
        self.updater: MetricsUpdater | None = None

    def ensure_started(self, dead_letter) -> None:
        if self.store is None:
            self.store = Store.connect(self.settings)
            self.updater = MetricsUpdater(self.store, self.settings)
            self.processor = BatchProcessor(self.store, dead_letter, self.epoch, on_change=self.updater.on_change)
            self.outcomes = OutcomeProcessor(self.store, dead_letter, on_change=self.updater.on_change)

    async def restart_to_rebuild(self, lost: StateLost) -> None:
        """Exec this worker anew: it rejoins under the current (or a new) epoch's group.

        Called from inside an agent's loop body: nothing may raise out of it (faust would acknowledge
        the batch), so Redis is waited for, and a failed exec exits unacknowledged."""
        log.critical("Redis lost this worker's state (%s); restarting to rebuild it from the topic", lost)
        try:
            if lost.rebuild:
                if self.store is None:  # StateLost comes from the store: started by then
                    raise RuntimeError("no store to drop the lost epoch from")
                await retry_forever("dropping the lost state's epoch", self.store.drop_epoch)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, [sys.executable, "-m", "monitor", *sys.argv[1:]])  # noqa: S606 - re-exec ourselves
        except BaseException as exc:  # noqa: BLE001 - the batch must not be acknowledged
            exit_unapplied("restarting to rebuild the state", exc)


def register(app: MonitorApp, settings: Settings, epoch: str) -> None:
    """The worker's agents, tasks and timers on ``app``: folding records and outcomes, the metrics pass
    (which publishes the alert events), housekeeping (loop lag, memory), and the rebalance hooks."""
    raw: dict[str, Any] = {"value_serializer": "raw", "key_serializer": "raw"}
    records_topic = app.topic(settings.records_topic, **raw)
    outcomes_topic = app.topic(settings.outcomes_topic, **raw)
    dead_letter_topic = app.topic(settings.dead_letter_topic, **raw)
    alerts_topic = app.topic(settings.alerts_topic, **raw)
    worker = Worker(settings, epoch)

    async def send_dead_letter(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        delivery = await dead_letter_topic.send(key=key, value=value, headers=headers)
        await delivery  # on the broker before the record's offset can be committed

    dead_letter = DeadLetterQueue(send_dead_letter, settings.dead_letter_max_bytes)

    register_folding(app, settings, worker, dead_letter, records_topic, outcomes_topic)
    register_metrics(app, settings, worker, dead_letter, alerts_topic)
    register_housekeeping(app, settings, worker, dead_letter)
    register_rebalance_hooks(app, worker)


def register_folding(app: MonitorApp, settings: Settings, worker: Worker, dead_letter: DeadLetterQueue,
                     records_topic, outcomes_topic) -> None:
    """The agents that fold records and outcomes into Redis, a batch at a time."""
    # faust acknowledges a taken batch when the loop body ends, even by an exception: so no
    # exception leaves the body. A batch is applied (or dead-lettered), or the process exits
    # (monitor.retry.apply_or_stop) before faust can acknowledge it.
    @app.agent(records_topic, name="fold_records")
    async def fold_records(stream):
        worker.ensure_started(dead_letter)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            try:
                await apply_or_stop("a batch of records", worker.processor.process, [e.message for e in events],
                                    attempts=settings.apply_attempts, passes=(StateLost,))
            except StateLost as lost:
                await worker.restart_to_rebuild(lost)

    @app.agent(outcomes_topic, name="join_outcomes")
    async def join_outcomes(stream):
        worker.ensure_started(dead_letter)
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            await apply_or_stop("a batch of outcomes", worker.outcomes.process, [e.message for e in events],
                                attempts=settings.apply_attempts)


def register_metrics(app: MonitorApp, settings: Settings, worker: Worker, dead_letter: DeadLetterQueue,
                     alerts_topic) -> None:
    """The metrics pass, on a timer and at once on checkpoints; it publishes the alert events."""
    async def publish_alert(raw_event: bytes) -> None:
        event = orjson.loads(raw_event)
        delivery = await alerts_topic.send(key=event["alert_id"].encode(), value=raw_event)
        await delivery  # on the broker before the outbox lets it go
        log.info("alert %s %s %s (%s)", event["status"], event["severity"], event["alert_id"], event["month"])

    @app.task
    async def recompute_metrics():
        worker.ensure_started(dead_letter)
        epoch_checked = 0.0
        while True:
            wait = settings.metrics_interval_s
            try:
                if time.monotonic() - epoch_checked >= settings.metrics_interval_s:
                    epoch_checked = time.monotonic()
                    if await worker.store.current_epoch() != worker.epoch:
                        await worker.restart_to_rebuild(
                            StateLost(f"the state epoch {worker.epoch} is gone", rebuild=False))
                worker.updater.topic_partitions = app.consumer.topic_partitions(settings.records_topic) or 0
                wait = await worker.updater.step(publish_alert)
            except Exception as exc:  # a task that raises is gone for good: log it, keep computing
                if is_transient(exc):
                    log.warning("metrics pass skipped: Redis unavailable (%s)", exc)
                else:
                    log.exception("metrics pass failed")
            await worker.updater.wait(wait)


def register_housekeeping(app: MonitorApp, settings: Settings, worker: Worker, dead_letter: DeadLetterQueue) -> None:
    """The event-loop lag probe (with the GC pauses) and its reports; the GC freezer; handing freed memory
    back to the OS."""
    # The event loop's lag, measured all the time and reported to Redis for GET /metrics (issue 18).
    gc_pauses = GcPauses()
    gc_pauses.install()
    loop_lag = LoopLagProbe(gc_pauses=gc_pauses)
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    favour_the_loop()  # the metrics are computed in a thread: the loop gets the GIL back within 1 ms

    @app.task
    async def measure_loop_lag():
        await loop_lag.run()

    freezer = SurvivorFreezer()

    @app.timer(GC_FREEZE_EVERY_S)
    async def freeze_survivors():
        freezer.tick()  # what the worker keeps, out of the full collections' walks

    @app.timer(settings.loop_lag_report_s)
    async def report_loop_lag():
        worker.ensure_started(dead_letter)
        try:
            await worker.store.save_loop_lag(worker_id, loop_lag.snapshot(),
                                             stale_after_s=max(60.0, 10 * settings.loop_lag_report_s))
        except Exception as exc:  # a timer that raises is gone for good: the next report will do
            log.warning("loop lag not reported: %s", exc)

    if settings.memory_trim_interval_s > 0:
        @app.timer(settings.memory_trim_interval_s)
        async def release_memory():
            await asyncio.to_thread(release_free_memory)  # ~25 ms after a big backlog: off the loop


def register_rebalance_hooks(app: MonitorApp, worker: Worker) -> None:
    """Offsets cached by the processor are forgotten when a log is rewound or partitions are revoked."""
    def on_log_rewound(tp) -> None:
        if worker.processor is not None:  # its verified offsets may be of the lost log: check again
            worker.processor.forget_offsets()

    app.on_log_rewound = on_log_rewound

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's signal type omits the revoked set it passes
    async def on_revoked(app, revoked, **kwargs):
        if worker.processor is not None:
            worker.processor.forget_offsets()
