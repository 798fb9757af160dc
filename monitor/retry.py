"""What the worker does when a call fails: wait out what passes, stop loudly on the rest.

The invariant: a message's offset is never acknowledged (to faust, or in Redis) unless the
message was applied or dead-lettered. So a failure is never skipped:

- a *transient* failure (a lost connection, or Redis answering ``BUSY``, ``LOADING``, ``OOM``,
  ``READONLY``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``MASTERDOWN``; a retriable Kafka error) is retried
  with backoff for as long as it lasts (:func:`retry_forever`);
- anything else is retried a few times (:func:`apply_or_stop`), then the worker exits at once with
  :data:`EXIT_UNAPPLIED`, before faust can acknowledge the batch: its supervisor restarts it, and it
  resumes from the offsets stored in Redis and the group's last commit, which the batch never reached.

>>> import redis.exceptions as r
>>> is_transient(r.ResponseError("BUSY Redis is busy running a script."))
True
>>> is_transient(r.ReadOnlyError("You can't write against a read only replica.")), is_transient(ValueError())
(True, False)
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import aiokafka.errors
import redis.exceptions

log = logging.getLogger("monitor.retry")
T = TypeVar("T")

RETRY_FIRST_S, RETRY_MAX_S = 0.1, 5.0

TRANSIENT_REDIS_CODES = ("BUSY", "LOADING", "OOM", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN")
"""Redis error codes that say "not now": the same call succeeds once the server is ready again."""

_TRANSIENT_REDIS_CLASSES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                            redis.exceptions.BusyLoadingError, redis.exceptions.OutOfMemoryError,
                            redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError,
                            redis.exceptions.ClusterDownError, redis.exceptions.MasterDownError,
                            # a cluster's slot without a master for a moment: between a master's
                            # failure and its replica's promotion
                            redis.exceptions.SlotNotCoveredError)

EXIT_UNAPPLIED = 70
"""The worker's exit status when a batch could be neither applied nor dead-lettered (EX_SOFTWARE)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says "try again later" rather than "this cannot work".

    redis-py maps most codes to classes but leaves ``BUSY`` (a script running past
    ``busy-reply-threshold``) a plain ResponseError, so the code is read from the message too.
    """
    if isinstance(exc, _TRANSIENT_REDIS_CLASSES):
        return True
    if isinstance(exc, redis.exceptions.RedisClusterException):  # the base class, raised when no node answers
        return str(exc).startswith("Redis Cluster cannot be connected")
    if isinstance(exc, redis.exceptions.ResponseError):
        return str(exc).split(" ", 1)[0] in TRANSIENT_REDIS_CODES
    if isinstance(exc, aiokafka.errors.KafkaError):
        return bool(exc.retriable) or isinstance(exc, aiokafka.errors.KafkaTimeoutError)
    return writes_to_a_closed_redis_transport(exc)


def writes_to_a_closed_redis_transport(exc: BaseException) -> bool:
    """A command written on a connection closed under it: redis-py's asyncio client then leaks the
    transport's AttributeError / TypeError instead of a ConnectionError (redis/redis-py#4287; its cluster
    client closes every connection when one fails, so a command in flight on another gets it). The
    innermost frame tells: a write in redis-py's connection or asyncio's transport.

    >>> def torn_down():
    ...     writer = None
    ...     writer.writelines([b"PING"])
    >>> try:
    ...     torn_down()
    ... except AttributeError as exc:
    ...     writes_to_a_closed_redis_transport(exc)
    False
    """
    if not isinstance(exc, (AttributeError, TypeError)) or exc.__traceback__ is None:
        return False
    frame = exc.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    path = frame.tb_frame.f_code.co_filename.replace("\\", "/")
    return path.endswith(("redis/asyncio/connection.py", "asyncio/streams.py", "asyncio/selector_events.py"))


async def retry_forever(what: str, call: Callable[..., Awaitable[T]], *args) -> T:
    """Await ``call(*args)`` until it succeeds, backing off while the failure is transient.

    A batch is never dropped: the worker stalls (and says so) while Redis or the broker is away
    or busy, and goes on where it was when it is back. Any other error is raised.
    """
    delay = RETRY_FIRST_S
    while True:
        try:
            return await call(*args)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("%s: %s (%s); retrying in %.1f s", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)


def exit_unapplied(what: str, exc: BaseException) -> NoReturn:
    """Stop the process now: no ``finally`` of faust's runs, so the batch is never acknowledged."""
    log.critical("%s could be neither applied nor dead-lettered after retries (%s: %s); exiting with "
                 "status %d so that the worker restarts from the last applied offsets", what,
                 type(exc).__name__, exc, EXIT_UNAPPLIED, exc_info=exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_UNAPPLIED)


async def apply_or_stop(what: str, call: Callable[..., Awaitable[T]], *args, attempts: int,
                        passes: tuple[type[BaseException], ...] = (),
                        give_up: Callable[[str, BaseException], NoReturn] = exit_unapplied) -> T:
    """``call(*args)`` until it succeeds: transient failures for as long as they last, any other
    failure ``attempts`` times with backoff, then ``give_up`` (by default, exit the process).

    ``passes`` are exceptions the caller handles itself (raised as they are). The call must be
    safe to repeat: the batch processors are, through the offsets and outcomes kept in Redis.
    """
    delay, failures = RETRY_FIRST_S, 0
    while True:
        try:
            return await retry_forever(what, call, *args)
        except passes:
            raise
        except Exception as exc:
            failures += 1
            if failures >= attempts:
                give_up(what, exc)
            log.error("%s failed (%d of %d attempts): %s: %s; retrying in %.1f s", what, failures, attempts,
                      type(exc).__name__, exc, delay, exc_info=exc)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)
