"""faust's aiokafka transport, with the worker consumer's fetch wait taken from the settings.

faust-streaming 0.15 builds the worker's ``AIOKafkaConsumer`` with ``fetch_max_wait_ms=1500``
and no setting to change it. Apache Kafka answers a waiting fetch as soon as data arrives, so
there the wait only paces idle polling; a broker that holds the fetch for the whole wait (Tansu,
the local broker) delays every record by up to that much. ``MONITOR_CONSUMER_FETCH_WAIT_MS``
sets it.

>>> issubclass(transport_class(50).Consumer, faust_aiokafka.Consumer)
True
"""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def transport_class(fetch_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """faust's aiokafka Transport whose worker consumer waits at most ``fetch_wait_ms`` per fetch."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher: not started yet here.
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

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
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return self._transport_cls(self.conf.broker_consumer, self)
