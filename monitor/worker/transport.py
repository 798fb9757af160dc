"""faust's aiokafka transport, with the worker consumer's fetch wait taken from the settings.

faust-streaming 0.15 builds the worker's ``AIOKafkaConsumer`` with ``fetch_max_wait_ms=1500``
and no setting to change it. Apache Kafka answers a waiting fetch as soon as data arrives, so
there the wait only paces idle polling; a broker that holds the fetch for the whole wait (Tansu,
the local broker) delays every record by up to that much. ``MONITOR_CONSUMER_FETCH_WAIT_MS``
sets it.

It also makes the worker's consumer notice a partition log that lost its records under it
(:func:`rewind_lost_logs`): a fetch whose high watermark is below the consumer's position.

>>> issubclass(transport_class(50).Consumer, faust_aiokafka.Consumer)
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger("monitor.worker.transport")


def rewind_lost_logs(fetcher, on_rewind: Callable[[object], None]) -> None:
    """Make an aiokafka fetcher restart a partition from its log's start when the log lost the
    records the consumer had read (broker restarted on memory storage, topic re-created).

    Apache Kafka answers a fetch past the log's end with OFFSET_OUT_OF_RANGE, and aiokafka then
    resets the position (``auto_offset_reset``: earliest); Tansu answers with no records and a
    high watermark below the position, and the consumer would wait there, then read the new log
    from that position on, never delivering its first records. Both end here the same way: the
    partition is reset to the earliest offset and ``on_rewind(tp)`` is called (from the consumer's
    thread), so that faust forgets the offsets it read in the old log (it drops messages below
    them) and the batch processor checks its stored offsets against the new log.
    """
    from aiokafka.consumer.fetcher import OffsetResetStrategy

    process_response = fetcher._proc_fetch_request

    async def proc_fetch_request(assignment, node_id, request):
        had_position = {tp for tp in assignment.tps if assignment.state_value(tp).has_valid_position}
        wakeup = await process_response(assignment, node_id, request)
        for tp in assignment.tps:
            state = assignment.state_value(tp)
            if tp in had_position and not state.has_valid_position and state.awaiting_reset:
                # OFFSET_OUT_OF_RANGE (Apache Kafka): aiokafka resets the position itself, but faust
                # would still drop every message below the offset it last read in the old log.
                log.warning("%s:%s: the consumer's position is out of the log's range; reading it again "
                            "from its start", tp.topic, tp.partition)
                on_rewind(tp)
            elif state.has_valid_position and state.highwater is not None and state.highwater < state.position:
                log.warning("%s:%s: the log ends at %s, before this consumer's position %s: it lost its "
                            "records; reading it again from its start", tp.topic, tp.partition, state.highwater,
                            state.position)
                state.highwater = None
                state.await_reset(OffsetResetStrategy.EARLIEST)
                on_rewind(tp)
        return wakeup

    fetcher._proc_fetch_request = proc_fetch_request


def transport_class(fetch_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """faust's aiokafka Transport whose worker consumer waits at most ``fetch_wait_ms`` per fetch
    and rewinds partitions whose log was lost (:func:`rewind_lost_logs`)."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher: not started yet here.
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

        async def on_start(self) -> None:
            await super().on_start()
            fetcher = getattr(self._consumer, "_fetcher", None)
            if fetcher is not None:
                rewind_lost_logs(fetcher, self._forget_read_offset)

        def _forget_read_offset(self, tp) -> None:
            # faust drops a message below the offset it last read in the partition: the new log's
            # must pass. A dict pop is atomic; faust's own seek() does the same.
            self.consumer._read_offset.pop(tp, None)
            self.app.loop.call_soon_threadsafe(self._forget_old_log, tp)

        def _forget_old_log(self, tp) -> None:
            """On faust's loop: what it keeps of the old log's offsets (acks, commits, gaps), as
            a revocation would, then the app's hook (the batch processor's caches)."""
            consumer = self.consumer
            for offsets in (consumer._committed_offset, consumer._acked, consumer._acked_index, consumer._gap):
                offsets.pop(tp, None)
            on_log_rewound = getattr(self.app, "on_log_rewound", None)  # a MonitorApp's hook
            if on_log_rewound is not None:
                on_log_rewound(tp)

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class MonitorApp(faust.App):
    """A faust App whose consumer transport is :func:`transport_class` (``fetch_wait_ms`` given)."""

    def __init__(self, *args, fetch_wait_ms: int, **kwargs):
        self._transport_cls = transport_class(fetch_wait_ms)
        # Called (on the app's loop) with a partition whose log was lost and is read again from its
        # start (monitor.worker.agents sets it).
        self.on_log_rewound: Callable[[object], None] | None = None
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return self._transport_cls(self.conf.broker_consumer, self)
