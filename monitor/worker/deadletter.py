"""The dead-letter topic: every message the worker cannot apply lands there, whatever its size.

A dead-letter record carries the original key and bytes and the headers ``dlq.reason``,
``dlq.topic``, ``dlq.partition``, ``dlq.offset``. The worker reads messages of up to 8 MiB
(``monitor.schema.MAX_MESSAGE_BYTES``), more than a producer or a broker takes by default (about
1 MB), so a message larger than ``MONITOR_DEAD_LETTER_MAX_BYTES``, or one that the producer or the
broker refuses as too large, is dead-lettered *truncated*: its first :data:`SAMPLE_BYTES` bytes
(key and value), with the headers ``dlq.truncated: true`` and ``dlq.original_bytes``.
Dead-lettering so never fails on size, and the batch behind the message is not held up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiokafka.errors

from monitor.worker.pipeline import KafkaMessage

log = logging.getLogger("monitor.worker.deadletter")

SAMPLE_BYTES = 4096
"""What a truncated dead-letter record keeps of the key and of the value: enough to find the producer."""

Headers = list[tuple[str, bytes]]
Send = Callable[[bytes | None, bytes, Headers], Awaitable[None]]
"""Publishes (key, value, headers) to the dead-letter topic and returns once the broker has it."""

TOO_LARGE = (aiokafka.errors.MessageSizeTooLargeError, aiokafka.errors.RecordTooLargeError)


def truncated(key: bytes | None, value: bytes, headers: Headers) -> tuple[bytes | None, bytes, Headers]:
    """The record to dead-letter instead of a message too large to publish whole.

    >>> key, value, headers = truncated(b"k", b"x" * 10_000, [("dlq.reason", b"too big")])
    >>> key, len(value), headers
    (b'k', 4096, [('dlq.reason', b'too big'), ('dlq.truncated', b'true'), ('dlq.original_bytes', b'10001')])
    """
    original = len(value) + len(key or b"")
    return ((key[:SAMPLE_BYTES] if key else key), value[:SAMPLE_BYTES],
            [*headers, ("dlq.truncated", b"true"), ("dlq.original_bytes", str(original).encode())])


class DeadLetterQueue:
    """``await queue(msg, reason)``: the message is on the dead-letter topic when it returns."""

    def __init__(self, send: Send, max_bytes: int):
        self.send = send
        self.max_bytes = max_bytes

    async def __call__(self, msg: KafkaMessage, reason: str) -> None:
        key, value = msg.key, msg.value or b""
        headers: Headers = [("dlq.reason", reason.encode()), ("dlq.topic", msg.topic.encode()),
                            ("dlq.partition", str(msg.partition).encode()), ("dlq.offset", str(msg.offset).encode())]
        if len(value) + len(key or b"") > self.max_bytes:
            key, value, headers = truncated(key, value, headers)
        try:
            await self.send(key, value, headers)
        except TOO_LARGE as exc:  # a producer or broker limit below max_bytes
            if any(name == "dlq.truncated" for name, _ in headers):
                raise
            log.warning("dead-letter record of %s:%s@%s refused as too large (%s); sending it truncated",
                        msg.topic, msg.partition, msg.offset, exc)
            await self.send(*truncated(key, value, headers))
        log.warning("dead-lettered %s:%s@%s: %s", msg.topic, msg.partition, msg.offset, reason)
